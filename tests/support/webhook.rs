//! A strict JSON webhook receiver: `204` for an accepted document; `415` without
//! `Content-Type: application/json`; `400` with a reason for a body that is not JSON
//! or not trivy-digest's `version` 1 shape; `401` when an `Authorization` value is
//! required and missing or wrong; and, on demand, `429` with `Retry-After` or `500`.
//! It records every request (headers and body) so tests can check what was sent.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

#[derive(Clone, Debug)]
pub enum Fault {
    /// `429` with `Retry-After: secs`; not accepted.
    RateLimited { retry_after_secs: u64 },
    /// This status, not accepted.
    Status(u16),
}

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub at: Instant,
    pub status: u16,
    pub accepted: bool,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub body: Option<Value>,
    /// Why it was refused (the body of a 4xx).
    pub reason: String,
}

#[derive(Default)]
struct Shared {
    authorization: Mutex<Option<String>>,
    faults: Mutex<VecDeque<Fault>>,
    log: Mutex<Vec<Request>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct WebhookFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _served: super::http_thread::Served,
}

impl WebhookFake {
    pub fn start() -> WebhookFake {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let served = super::http_thread::serve("webhook-fake", app);
        WebhookFake {
            shared,
            addr: served.addr,
            _served: served,
        }
    }

    /// The receiver's URL; `token` is the secret part of the path.
    pub fn url(&self, token: &str) -> String {
        format!("http://{}/hooks/{token}", self.addr)
    }

    /// From now on only requests with exactly this `Authorization` value are accepted.
    pub fn require_authorization(&self, value: &str) {
        *lock(&self.shared.authorization) = Some(value.to_owned());
    }

    pub fn push_fault(&self, f: Fault) {
        lock(&self.shared.faults).push_back(f);
    }

    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    pub fn accepted(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.accepted).collect()
    }

    /// Waits until `n` documents were accepted; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        super::http_thread::wait_for(
            "webhook documents",
            n,
            timeout,
            || self.accepted(),
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
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut req = Request {
        path: uri.path().to_owned(),
        at: Instant::now(),
        status: 0,
        accepted: false,
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: serde_json::from_slice(&body).ok(),
        reason: String::new(),
    };
    let answer = |mut req: Request, status: u16, reason: String| {
        req.status = status;
        req.accepted = (200..300).contains(&status);
        req.reason = reason.clone();
        lock(&shared.log).push(req);
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == 204 {
            code.into_response()
        } else {
            (code, reason).into_response()
        }
    };
    let required = lock(&shared.authorization).clone();
    if let Some(want) = required
        && req.authorization.as_deref() != Some(want.as_str())
    {
        return answer(req, 401, "missing or wrong Authorization".into());
    }
    match lock(&shared.faults).pop_front() {
        Some(Fault::RateLimited { retry_after_secs }) => {
            req.status = 429;
            lock(&shared.log).push(req);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                "slow down",
            )
                .into_response();
        }
        Some(Fault::Status(code)) => return answer(req, code, "receiver failed".into()),
        None => {}
    }
    if !req
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return answer(req, 415, "Content-Type must be application/json".into());
    }
    let Some(v) = req.body.clone() else {
        return answer(req, 400, "body is not JSON".into());
    };
    if let Err(why) = check_shape(&v) {
        return answer(req, 400, format!("malformed payload: {why}"));
    }
    answer(req, 204, String::new())
}

fn string(v: &Value, key: &str) -> Result<(), String> {
    v[key]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(|_| ())
        .ok_or_else(|| format!("{key} is not a non-empty string"))
}

fn opt_string(v: &Value, key: &str) -> Result<(), String> {
    match &v[key] {
        Value::Null | Value::String(_) => Ok(()),
        _ => Err(format!("{key} is neither a string nor null")),
    }
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>, String> {
    v[key]
        .as_array()
        .ok_or_else(|| format!("{key} is not an array"))
}

fn count(v: &Value, key: &str) -> Result<(), String> {
    v[key]
        .as_u64()
        .map(|_| ())
        .ok_or_else(|| format!("{key} is not a count"))
}

/// The documented `version` 1 document.
fn check_shape(v: &Value) -> Result<(), String> {
    if v["version"] != 1 {
        return Err("version is not 1".into());
    }
    string(v, "cluster")?;
    string(v, "title")?;
    match v["kind"].as_str() {
        Some("test") => string(v, "destination"),
        Some("image") => {
            string(v, "id")?;
            string(&v["image"], "repository")?;
            for d in array(&v["image"], "digests")? {
                opt_string(d, "digest")?;
                opt_string(d, "tag")?;
            }
            array(v, "namespaces")?;
            let findings = array(v, "findings")?;
            if findings.is_empty() {
                return Err("an image message without findings".into());
            }
            for f in findings {
                for k in ["id", "family", "severity"] {
                    string(f, k)?;
                }
                for k in ["package", "installed", "fixed", "title", "path"] {
                    f[k].as_str()
                        .ok_or(format!("findings[].{k} is not a string"))?;
                }
                opt_string(f, "link")?;
            }
            count(v, "more")?;
            for w in array(v, "workloads")? {
                for k in ["namespace", "kind", "name"] {
                    w[k].as_str()
                        .ok_or(format!("workloads[].{k} is not a string"))?;
                }
            }
            count(v, "more_workloads")?;
            opt_string(v, "defectdojo_url")
        }
        Some("digest") => {
            string(v, "id")?;
            for i in array(v, "images")? {
                string(i, "repository")?;
                i["counts"]
                    .as_object()
                    .ok_or("images[].counts is not an object")?;
                array(i, "findings")?;
                array(i, "namespaces")?;
                opt_string(i, "defectdojo_url")?;
            }
            count(v, "more")
        }
        other => Err(format!("unknown kind {other:?}")),
    }
}
