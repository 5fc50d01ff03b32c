//! A Microsoft Teams webhook fake that answers as Teams does (sources in
//! src/output/alert/channel/msteams.rs): Workflows' `202 Accepted` with no body, or, as
//! a classic connector, `200` and `1`; `413` for a message over 28 KB; `400` with a
//! message for a body that is not JSON, not a `message` with one Adaptive Card attachment
//! (`contentType`, `content.type: AdaptiveCard`, a known `version`); and, on demand,
//! `429` with `Retry-After`, another status, or a connector's `200` with an error text.
//! It records each accepted card with what Teams would render: the texts, the links a
//! click opens, and whether the card displays at all (Workflows shows "We're sorry, this
//! card couldn't be displayed" above version 1.4).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The documented message limit.
pub const MAX_BODY: usize = 28 * 1024;
const KNOWN_VERSIONS: &[&str] = &["1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6"];
/// What Workflows renders.
const WORKFLOWS_MAX: &str = "1.4";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Power Automate Workflows: `202`, empty body.
    Workflows,
    /// A classic Office 365 connector: `200`, body `1`.
    Connector,
}

#[derive(Clone, Debug)]
pub enum Fault {
    /// `429` with `Retry-After: secs`; not posted.
    RateLimited { retry_after_secs: u64 },
    /// This status with a short text; not posted.
    Status(u16),
    /// A connector's throttling answer: `200` with an error text; not posted.
    ConnectorError,
    /// `400 Bad payload received by generic incoming webhook.`, as for a card the
    /// service cannot read; not posted.
    BadPayload,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub at: Instant,
    pub status: u16,
    pub posted: bool,
    pub size: usize,
    pub body: Option<Value>,
    /// The body of a refusal.
    pub reason: String,
    /// Every text shown (TextRun, TextBlock, FactSet), in order.
    pub texts: Vec<String>,
    /// Every URL a click would open: `selectAction`s, card actions, and the Markdown
    /// links Teams makes of `[title](url)` in TextBlocks and facts.
    pub links: Vec<String>,
    /// Markdown that Teams would format in TextBlocks and facts (`**`, `_`, `- `).
    pub formatted: Vec<String>,
    /// Teams would show the card (not "this card couldn't be displayed").
    pub rendered: bool,
}

#[derive(Default)]
struct Shared {
    connector: Mutex<bool>,
    faults: Mutex<VecDeque<Fault>>,
    log: Mutex<Vec<Request>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct TeamsFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _served: super::http_thread::Served,
}

impl TeamsFake {
    pub fn start(flavour: Flavour) -> TeamsFake {
        let shared = Arc::new(Shared::default());
        *lock(&shared.connector) = flavour == Flavour::Connector;
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let served = super::http_thread::serve("teams-fake", app);
        TeamsFake {
            shared,
            addr: served.addr,
            _served: served,
        }
    }

    /// A webhook URL; `token` is its secret part. Plain http on loopback, as the
    /// channel allows for a local relay.
    pub fn url(&self, token: &str) -> String {
        format!(
            "http://127.0.0.1:{}/workflows/{token}/triggers/manual/paths/invoke",
            self.addr.port()
        )
    }

    pub fn push_fault(&self, f: Fault) {
        lock(&self.shared.faults).push_back(f);
    }

    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    pub fn posted(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.posted).collect()
    }

    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        super::http_thread::wait_for(
            "Teams cards",
            n,
            timeout,
            || self.posted(),
            || format!("{:#?}", self.requests()),
        )
    }
}

const BAD_PAYLOAD: &str = "Bad payload received by generic incoming webhook.";

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri, body: Bytes) -> Response {
    let mut req = Request {
        path: uri.path().to_owned(),
        at: Instant::now(),
        status: 0,
        posted: false,
        size: body.len(),
        body: serde_json::from_slice(&body).ok(),
        reason: String::new(),
        texts: Vec::new(),
        links: Vec::new(),
        formatted: Vec::new(),
        rendered: false,
    };
    let log = |mut req: Request, status: u16, reason: &str| {
        req.status = status;
        req.reason = reason.to_owned();
        lock(&shared.log).push(req);
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, reason.to_owned()).into_response()
    };
    match lock(&shared.faults).pop_front() {
        Some(Fault::RateLimited { retry_after_secs }) => {
            req.status = 429;
            lock(&shared.log).push(req);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                "Too many requests",
            )
                .into_response();
        }
        Some(Fault::Status(code)) => return log(req, code, "the service failed"),
        Some(Fault::BadPayload) => return log(req, 400, BAD_PAYLOAD),
        Some(Fault::ConnectorError) => {
            return log(
                req,
                200,
                "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId tcid=0",
            );
        }
        None => {}
    }
    if body.len() > MAX_BODY {
        return log(req, 413, "Request Entity too large");
    }
    let Some(v) = req.body.clone() else {
        return log(req, 400, BAD_PAYLOAD);
    };
    let card = match check(&v) {
        Ok(c) => c,
        Err(why) => return log(req, 400, &format!("{BAD_PAYLOAD} {why}")),
    };
    let connector = *lock(&shared.connector);
    let version = card["version"].as_str().unwrap_or("");
    req.rendered = connector || version <= WORKFLOWS_MAX;
    render(&card["body"], &mut req);
    render(&card["actions"], &mut req);
    req.posted = true;
    if connector {
        log(req, 200, "1")
    } else {
        req.status = 202;
        lock(&shared.log).push(req);
        StatusCode::ACCEPTED.into_response()
    }
}

/// The message shape both flavours require; the card on success.
fn check(v: &Value) -> Result<Value, String> {
    if v["type"] != "message" {
        return Err("type is not \"message\"".into());
    }
    let a = v["attachments"]
        .as_array()
        .ok_or("attachments is not an array")?;
    let [a] = a.as_slice() else {
        return Err(format!("{} attachments, expected one card", a.len()));
    };
    if a["contentType"] != "application/vnd.microsoft.card.adaptive" {
        return Err(format!(
            "contentType {} is not an Adaptive Card",
            a["contentType"]
        ));
    }
    let c = &a["content"];
    if c["type"] != "AdaptiveCard" {
        return Err("content.type must be AdaptiveCard".into());
    }
    let version = c["version"].as_str().unwrap_or("");
    if !KNOWN_VERSIONS.contains(&version) {
        return Err(format!("unknown card version {:?}", c["version"]));
    }
    if !c["body"].is_array() {
        return Err("content.body is not an array".into());
    }
    Ok(c.clone())
}

/// What Teams shows of `v`: TextRuns verbatim; TextBlock and fact text as Markdown.
fn render(v: &Value, req: &mut Request) {
    match v {
        Value::Object(m) => {
            match m.get("type").and_then(Value::as_str) {
                Some("TextRun") => {
                    req.texts
                        .push(m.get("text").and_then(Value::as_str).unwrap_or("").into());
                }
                Some("TextBlock") => {
                    markdown(m.get("text").and_then(Value::as_str).unwrap_or(""), req)
                }
                Some("FactSet") => {
                    for f in m
                        .get("facts")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        markdown(f["title"].as_str().unwrap_or(""), req);
                        markdown(f["value"].as_str().unwrap_or(""), req);
                    }
                }
                Some("Action.OpenUrl") => {
                    req.links
                        .push(m.get("url").and_then(Value::as_str).unwrap_or("").into());
                }
                _ => {}
            }
            for (k, x) in m {
                if k != "facts" {
                    render(x, req);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| render(x, req)),
        _ => {}
    }
}

/// The Markdown subset Adaptive Cards format: `**bold**`, `_italic_`, lists, links.
fn markdown(t: &str, req: &mut Request) {
    req.texts.push(t.to_owned());
    for m in ["**", "_", "- ", "1. "] {
        if t.contains(m) {
            req.formatted.push(m.to_owned());
        }
    }
    let mut rest = t;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let end = after.find(')').unwrap_or(after.len());
        req.links.push(after[..end].to_owned());
        rest = &after[end..];
    }
}
