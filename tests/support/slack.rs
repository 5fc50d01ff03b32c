//! A Slack incoming-webhook fake that answers as Slack does: `200 ok`; `400
//! invalid_payload` for a body that is not JSON, `400 no_text` without a `text`, `400
//! invalid_blocks` for blocks outside Block Kit's limits; `404 no_service` for an unknown
//! hook; and, on demand, `429` with `Retry-After`, 5xx, or an accepted request that is
//! never answered (a crash between send and record). It parses the mrkdwn it accepts the
//! way Slack renders it, so tests can see every mention (`<!channel>`) and link it would
//! have made.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Something to do instead of answering normally (FIFO, one per request).
#[derive(Clone, Debug)]
pub enum Fault {
    /// `429 rate_limited` with `Retry-After: secs`; the message is not posted.
    RateLimited { retry_after_secs: u64 },
    /// This status with Slack's body for it; not posted.
    Status(u16),
    /// Post the message, then never answer (the client sees a timeout or is killed).
    PostThenHang,
    /// Answer this long after the request arrived (then normally).
    Delay(Duration),
    /// Answer normally (to place a fault after N good requests).
    Pass,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub hook: String,
    pub at: Instant,
    pub status: u16,
    /// Slack posted it to the channel.
    pub posted: bool,
    pub body: Option<Value>,
    /// Mentions Slack would have made: `<!channel>`, `<!here>`, `<@U123>`, `<#C1>`.
    pub mentions: Vec<String>,
    /// Link targets Slack would have rendered.
    pub links: Vec<String>,
}

impl Request {
    pub fn text(&self) -> String {
        self.body
            .as_ref()
            .and_then(|b| b["text"].as_str())
            .unwrap_or("")
            .to_owned()
    }
}

#[derive(Default)]
struct Shared {
    hooks: Mutex<HashSet<String>>,
    faults: Mutex<VecDeque<Fault>>,
    log: Mutex<Vec<Request>>,
    arrived: std::sync::atomic::AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct SlackFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _served: super::http_thread::Served,
}

impl SlackFake {
    /// Serves on 127.0.0.1 from its own thread, so tests may block while it answers.
    pub fn start() -> SlackFake {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let served = super::http_thread::serve("slack-fake", app);
        SlackFake {
            shared,
            addr: served.addr,
            _served: served,
        }
    }

    /// A webhook URL this fake accepts; `name` tells hooks apart in the log.
    pub fn hook(&self, name: &str) -> String {
        lock(&self.shared.hooks).insert(name.to_owned());
        format!("http://{}/services/T0000/B0000/{name}", self.addr)
    }

    /// A URL of this server that is no (longer a) webhook: answers 404 no_service.
    pub fn revoked_hook(&self, name: &str) -> String {
        format!("http://{}/services/T0000/B0000/{name}", self.addr)
    }

    pub fn push_fault(&self, f: Fault) {
        lock(&self.shared.faults).push_back(f);
    }

    /// Requests received so far, answered or not (the log holds answered ones).
    pub fn arrived(&self) -> usize {
        self.shared
            .arrived
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// Messages posted to channels, in order.
    pub fn posted(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.posted).collect()
    }

    pub fn posted_to(&self, hook: &str) -> Vec<Request> {
        self.posted()
            .into_iter()
            .filter(|r| r.hook == hook)
            .collect()
    }

    /// Waits until `n` messages were posted; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        super::http_thread::wait_for(
            "Slack messages",
            n,
            timeout,
            || self.posted(),
            || format!("{:?}", self.requests()),
        )
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    shared
        .arrived
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let hook = uri
        .path()
        .strip_prefix("/services/T0000/B0000/")
        .unwrap_or("")
        .to_owned();
    let mut req = Request {
        hook: hook.clone(),
        at,
        status: 0,
        posted: false,
        body: None,
        mentions: Vec::new(),
        links: Vec::new(),
    };
    let answer = |shared: &Shared, mut req: Request, status: u16, text: &'static str| {
        req.status = status;
        lock(&shared.log).push(req);
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            text,
        )
            .into_response()
    };
    if !lock(&shared.hooks).contains(&hook) {
        return answer(&shared, req, 404, "no_service");
    }
    let fault = lock(&shared.faults).pop_front();
    match fault {
        Some(Fault::RateLimited { retry_after_secs }) => {
            req.status = 429;
            lock(&shared.log).push(req);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                "rate_limited",
            )
                .into_response();
        }
        Some(Fault::Status(code)) => {
            let text = if code >= 500 {
                "internal_error"
            } else {
                "invalid_token"
            };
            return answer(&shared, req, code, text);
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let Some(v) = json_type
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
    else {
        return answer(&shared, req, 400, "invalid_payload");
    };
    req.body = Some(v.clone());
    if v["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
        return answer(&shared, req, 400, "no_text");
    }
    if let Err(why) = check_blocks(&v) {
        eprintln!("Slack fake: invalid_blocks: {why}");
        return answer(&shared, req, 400, "invalid_blocks");
    }
    let mut texts = vec![v["text"].as_str().unwrap_or("").to_owned()];
    collect_mrkdwn(&v["blocks"], &mut texts);
    for t in &texts {
        parse_markup(t, &mut req.mentions, &mut req.links);
    }
    req.posted = true;
    if matches!(fault, Some(Fault::PostThenHang)) {
        req.status = 200;
        lock(&shared.log).push(req);
        return std::future::pending::<Response>().await;
    }
    answer(&shared, req, 200, "ok")
}

fn len(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn check_text(t: &Value, max: usize, what: &str) -> Result<(), String> {
    match t["type"].as_str() {
        Some("plain_text" | "mrkdwn") => {}
        other => return Err(format!("{what}: text type {other:?}")),
    }
    let n = len(&t["text"]);
    if n == 0 || n > max {
        return Err(format!("{what}: text length {n} (1..={max})"));
    }
    Ok(())
}

/// Block Kit limits for the blocks we use.
fn check_blocks(v: &Value) -> Result<(), String> {
    let Some(blocks) = v.get("blocks") else {
        return Ok(());
    };
    let blocks = blocks.as_array().ok_or("blocks is not an array")?;
    if blocks.len() > 50 {
        return Err(format!("{} blocks (max 50)", blocks.len()));
    }
    for (i, b) in blocks.iter().enumerate() {
        let what = format!("blocks[{i}]");
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text" {
                    return Err(format!("{what}: header text must be plain_text"));
                }
                check_text(&b["text"], 150, &what)?;
            }
            Some("section") => {
                let has_text = b.get("text").is_some();
                let fields = b.get("fields").and_then(Value::as_array);
                if !has_text && fields.is_none() {
                    return Err(format!("{what}: section needs text or fields"));
                }
                if has_text {
                    check_text(&b["text"], 3000, &what)?;
                }
                if let Some(f) = fields {
                    if f.is_empty() || f.len() > 10 {
                        return Err(format!("{what}: {} fields (1..=10)", f.len()));
                    }
                    for x in f {
                        check_text(x, 2000, &what)?;
                    }
                }
            }
            Some("context") => {
                let e = b["elements"].as_array().ok_or("context without elements")?;
                if e.is_empty() || e.len() > 10 {
                    return Err(format!("{what}: {} context elements (1..=10)", e.len()));
                }
                for x in e {
                    check_text(x, 3000, &what)?;
                }
            }
            Some("divider") => {}
            other => return Err(format!("{what}: unsupported block type {other:?}")),
        }
        if let Some(id) = b.get("block_id")
            && len(id) > 255
        {
            return Err(format!("{what}: block_id too long"));
        }
    }
    Ok(())
}

/// The mrkdwn texts (plain_text is never parsed for mentions or links).
fn collect_mrkdwn(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if m.get("type").and_then(Value::as_str) == Some("mrkdwn")
                && let Some(t) = m.get("text").and_then(Value::as_str)
            {
                out.push(t.to_owned());
            }
            m.values().for_each(|x| collect_mrkdwn(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_mrkdwn(x, out)),
        _ => {}
    }
}

/// What Slack does with `<...>` in mrkdwn: mentions and links.
fn parse_markup(t: &str, mentions: &mut Vec<String>, links: &mut Vec<String>) {
    let mut rest = t;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        let inner = &after[..end];
        let target = inner.split('|').next().unwrap_or("");
        if target.starts_with('!') || target.starts_with('@') || target.starts_with('#') {
            mentions.push(format!("<{inner}>"));
        } else {
            links.push(target.to_owned());
        }
        rest = &after[end + 1..];
    }
}
