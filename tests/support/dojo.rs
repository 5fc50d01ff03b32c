//! A fake DefectDojo 3.2.0 API server for integration tests.
//!
//! It reproduces the behaviour recorded against a real 3.2.0 server in
//! the DefectDojo research notes (`defectdojo-real.md`) (status codes, error body shapes,
//! reimport matching/closing/reactivation and the `statistics` shapes), reading
//! DefectDojo's source where that file is silent. It is deliberately strict: a client
//! that works against it should work against the real server.
//!
//! Layout: `model` (rows and their JSON), `parse` (report parsers, hash, Python-isms),
//! `reimport` (`POST /api/v2/reimport-scan/`), `api` (every other endpoint),
//! `reply` (response shapes). This file holds the server, auth and fault injection.

mod api;
mod model;
mod parse;
mod reimport;
mod reply;

pub use model::{Engagement, Finding, Product, ProductType, Test};

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State as AxState};
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

use reply::Reply;

/// `DD_SCAN_FILE_MAX_SIZE` is 100 MB; leave room for the multipart envelope.
const BODY_LIMIT: usize = 110 * 1024 * 1024;

/// Something to do to one request instead of (or around) answering it normally.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and a generic body; the request is not processed.
    /// 500 gets DefectDojo's body, 502/503/504 the HTML page of the nginx in front.
    Status(u16),
    /// 429 with a `Retry-After` header; not processed. (DefectDojo itself has no API
    /// throttling, anchors.md §4(f); a proxy in front would answer like this.)
    TooManyRequests { retry_after_secs: u64 },
    /// A redirect (301, 302, 307, 308) to `location`, as a proxy or an ingress answers
    /// (http to https, a moved path prefix); not processed.
    Redirect { status: u16, location: String },
    /// Sleep, then process normally.
    Delay(Duration),
    /// Close the TCP connection without any response; the request is not applied.
    DropBeforeProcessing,
    /// Apply the request, then close the connection without sending the response.
    DropAfterProcessing,
    /// Apply the request, then never answer (the connection stays open).
    HangAfterProcessing,
}

/// One request as the fake saw it.
#[derive(Clone, Debug, Default)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The status of the answer; for `DropAfterProcessing`/`HangAfterProcessing` the
    /// status that was computed but never sent; 0 when dropped before processing.
    pub status: u16,
    /// False when no response reached the client (drop/hang faults).
    pub answered: bool,
    /// Reimport form fields (everything but `file`); the last value of repeated keys.
    pub form: BTreeMap<String, String>,
    /// The uploaded report of a reimport.
    pub file: Option<Vec<u8>>,
    /// The parsed body of a JSON request.
    pub json_body: Option<Value>,
}

/// What a request carried, for the log.
#[derive(Default)]
pub(crate) struct Captured {
    pub form: BTreeMap<String, String>,
    pub file: Option<Vec<u8>>,
    pub json_body: Option<Value>,
}

pub(crate) struct Shared {
    pub state: Mutex<model::State>,
    faults: Mutex<VecDeque<(Option<String>, Fault)>>,
    latency: Mutex<Duration>,
    pub create_latency: Mutex<Duration>,
    log: Mutex<Vec<(u64, LoggedRequest)>>,
    next_seq: AtomicU64,
}

/// Locks ignoring poison: one panicking test task must not hide the state from others.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let index = faults
            .iter()
            .position(|(prefix, _)| prefix.as_deref().is_none_or(|p| path.starts_with(p)))?;
        faults.remove(index).map(|(_, f)| f)
    }

    fn log_arrival(&self, method: &str, path: &str, query: &str) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        lock(&self.log).push((
            seq,
            LoggedRequest {
                method: method.to_string(),
                path: path.to_string(),
                query: query.to_string(),
                ..LoggedRequest::default()
            },
        ));
        seq
    }

    fn log_done(&self, seq: u64, status: u16, answered: bool, captured: Captured) {
        let mut log = lock(&self.log);
        if let Some((_, entry)) = log.iter_mut().find(|(s, _)| *s == seq) {
            entry.status = status;
            entry.answered = answered;
            entry.form = captured.form;
            entry.file = captured.file;
            entry.json_body = captured.json_body;
        }
    }
}

/// A running fake. It serves from its own thread and tokio runtime, so a test may
/// block its own runtime (e.g. wait for a client process) while the fake answers.
/// Dropping it shuts the server down, including connections held by hang faults.
pub struct DojoFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for DojoFake {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl DojoFake {
    /// The admin's API key (`Authorization: Token <TOKEN>`).
    pub const TOKEN: &'static str = "3f2b8c1d9e4a7f6b5c0d1e2f3a4b5c6d7e8f9a0b";

    /// Starts on 127.0.0.1 with a free port.
    pub async fn start() -> DojoFake {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind DefectDojo fake");
        listener
            .set_nonblocking(true)
            .expect("non-blocking fake listener");
        let addr = listener.local_addr().expect("fake local addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(model::State::default()),
            faults: Mutex::new(VecDeque::new()),
            latency: Mutex::new(Duration::ZERO),
            create_latency: Mutex::new(Duration::ZERO),
            log: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(1),
        });
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let server_shared = shared.clone();
        std::thread::Builder::new()
            .name("dojo-fake".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("DefectDojo fake runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("fake tokio listener");
                    let accept = async {
                        loop {
                            match listener.accept().await {
                                Ok((stream, _)) => {
                                    tokio::spawn(serve_connection(stream, server_shared.clone()));
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = shutdown_rx => {}
                    }
                });
                // Drops every connection task, hung ones included, without waiting.
                runtime.shutdown_background();
            })
            .expect("spawn DefectDojo fake thread");
        DojoFake {
            shared,
            addr,
            shutdown: Some(shutdown),
        }
    }

    /// Starts the fake from a test that is not async: the fake runs on its own thread,
    /// so the runtime that started it may go away.
    pub fn start_blocking() -> DojoFake {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(DojoFake::start())
    }

    /// The environment that points the binary at this fake as its admin.
    pub fn env(&self) -> [(String, String); 2] {
        [
            ("DEFECTDOJO_URL".into(), self.url()),
            ("DEFECTDOJO_TOKEN".into(), DojoFake::TOKEN.into()),
        ]
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies to the next request of any path (FIFO with the other queued faults).
    pub fn push_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push_back((None, fault));
    }

    /// Applies to the next request whose path starts with `path_prefix`.
    pub fn push_fault_for(&self, path_prefix: &str, fault: Fault) {
        lock(&self.shared.faults).push_back((Some(path_prefix.to_string()), fault));
    }

    /// Every request sleeps this long before it is handled.
    pub fn set_latency(&self, d: Duration) {
        *lock(&self.shared.latency) = d;
    }

    /// Extra sleep between "look up" and "create" when a reimport auto-creates its
    /// engagement, without holding any lock. Two first reimports racing into a missing
    /// engagement then create two engagements of the same name, as the real server does
    /// (DefectDojo #10607, telekom-mms/trivy-dojo-report-operator #71).
    pub fn set_create_latency(&self, d: Duration) {
        *lock(&self.shared.create_latency) = d;
    }

    /// Every request received, in arrival order.
    pub fn log(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log)
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// The reimport requests received, in arrival order.
    pub fn reimports(&self) -> Vec<LoggedRequest> {
        self.log()
            .into_iter()
            .filter(|r| r.path == "/api/v2/reimport-scan/")
            .collect()
    }

    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }

    pub fn product_types(&self) -> Vec<ProductType> {
        lock(&self.shared.state).product_types.clone()
    }

    pub fn products(&self) -> Vec<Product> {
        lock(&self.shared.state).products.clone()
    }

    pub fn engagements(&self) -> Vec<Engagement> {
        lock(&self.shared.state).engagements.clone()
    }

    pub fn tests(&self) -> Vec<Test> {
        lock(&self.shared.state).tests.clone()
    }

    pub fn findings(&self) -> Vec<Finding> {
        lock(&self.shared.state).findings.clone()
    }

    pub fn findings_of_test(&self, test_id: u64) -> Vec<Finding> {
        lock(&self.shared.state)
            .findings
            .iter()
            .filter(|f| f.test == test_id)
            .cloned()
            .collect()
    }

    /// Same effect as `POST /api/v2/risk_acceptance/` with these findings (unknown ids
    /// are skipped).
    pub fn accept_risk(&self, finding_ids: &[u64]) {
        let mut state = lock(&self.shared.state);
        let ids: Vec<u64> = finding_ids
            .iter()
            .copied()
            .filter(|id| state.finding_index(*id).is_some())
            .collect();
        state.create_risk_acceptance("Accepted by test".into(), ids, "A".into(), "A".into(), None);
    }

    /// What moving a product to another product type in the UI does (the type is
    /// created when missing).
    pub fn move_product(&self, product: &str, product_type: &str) {
        let mut state = lock(&self.shared.state);
        let type_id = match state.product_type_by_name(product_type) {
            Some(t) => t.id,
            None => {
                let id = state.next_id("product_type");
                state.product_types.push(ProductType {
                    id,
                    name: product_type.to_string(),
                });
                id
            }
        };
        if let Some(p) = state.products.iter_mut().find(|p| p.name == product) {
            p.prod_type = type_id;
        }
    }

    /// What editing a test's build id in the UI does (`None` clears it).
    pub fn set_build_id(&self, test_id: u64, build_id: Option<&str>) {
        let mut state = lock(&self.shared.state);
        if let Some(t) = state.tests.iter_mut().find(|t| t.id == test_id) {
            t.meta.build_id = build_id.map(str::to_owned);
        }
    }

    /// What deleting a finding in the UI does.
    pub fn delete_finding(&self, finding_id: u64) {
        lock(&self.shared.state)
            .findings
            .retain(|f| f.id != finding_id);
    }

    /// What marking a finding as false positive in the UI does.
    pub fn mark_false_positive(&self, finding_id: u64) {
        let mut state = lock(&self.shared.state);
        if let Some(i) = state.finding_index(finding_id) {
            let f = &mut state.findings[i];
            f.false_p = true;
            f.active = false;
            f.verified = false;
        }
    }
}

#[derive(Clone)]
struct ConnState {
    shared: Arc<Shared>,
    kill: Arc<Notify>,
}

/// Serves one TCP connection. A drop fault notifies `kill`; dropping the hyper
/// connection future then closes the socket without writing a response.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let kill = Arc::new(Notify::new());
    let app = Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(ConnState {
            shared,
            kill: kill.clone(),
        });
    let builder = Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::select! {
        _ = connection => {}
        _ = kill.notified() => {}
    }
}

enum Outcome {
    Respond(Reply),
    Kill,
    Hang,
}

async fn handle(AxState(conn): AxState<ConnState>, req: Request) -> Response {
    // The work runs in its own task so that a client giving up (timeout) does not
    // cancel it: like Django, the server finishes what it started.
    let shared = conn.shared.clone();
    let work = tokio::spawn(async move { run(shared, req).await });
    match work.await {
        Ok(Outcome::Respond(reply)) => reply.into_response(),
        Ok(Outcome::Kill) => {
            conn.kill.notify_one();
            std::future::pending().await
        }
        Ok(Outcome::Hang) => std::future::pending().await,
        Err(_) => Reply::internal().into_response(),
    }
}

async fn run(shared: Arc<Shared>, req: Request) -> Outcome {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let seq = shared.log_arrival(method.as_str(), &path, &query);

    // Take the whole body first, as uWSGI does before Django runs.
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            let reply = Reply::detail(400, "Request body could not be read.");
            shared.log_done(seq, reply.status, true, Captured::default());
            return Outcome::Respond(reply);
        }
    };
    let snapshot = (
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.clone(),
        bytes.clone(),
    );
    let req = Request::from_parts(parts, Body::from(bytes));

    let latency = *lock(&shared.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // Faults come before authentication: they model the network and the proxy.
    let fault = shared.take_fault(&path);
    match &fault {
        Some(Fault::Status(code)) => {
            let reply = status_fault_reply(*code);
            shared.log_done(seq, reply.status, true, capture(snapshot).await);
            return Outcome::Respond(reply);
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let reply = Reply::detail(
                429,
                &format!(
                    "Request was throttled. Expected available in {retry_after_secs} seconds."
                ),
            )
            .with_header("retry-after", retry_after_secs.to_string());
            shared.log_done(seq, reply.status, true, capture(snapshot).await);
            return Outcome::Respond(reply);
        }
        Some(Fault::Redirect { status, location }) => {
            let reply = redirect_reply(*status, location);
            shared.log_done(seq, reply.status, true, capture(snapshot).await);
            return Outcome::Respond(reply);
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        Some(Fault::DropBeforeProcessing) => {
            shared.log_done(seq, 0, false, capture(snapshot).await);
            return Outcome::Kill;
        }
        _ => {}
    }

    let (reply, captured) = process(&shared, req).await;
    match fault {
        Some(Fault::DropAfterProcessing) => {
            shared.log_done(seq, reply.status, false, captured);
            Outcome::Kill
        }
        Some(Fault::HangAfterProcessing) => {
            shared.log_done(seq, reply.status, false, captured);
            Outcome::Hang
        }
        _ => {
            shared.log_done(seq, reply.status, true, captured);
            Outcome::Respond(reply)
        }
    }
}

/// What an unprocessed (faulted) request carried, so tests can still see what the
/// client sent.
async fn capture(
    (method, uri, headers, body): (Method, axum::http::Uri, HeaderMap, Bytes),
) -> Captured {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        let mut req = Request::new(Body::from(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        reimport::capture_form(req).await
    } else {
        Captured {
            json_body: serde_json::from_slice(&body).ok(),
            ..Captured::default()
        }
    }
}

/// nginx's redirect page with its `Location`.
fn redirect_reply(code: u16, location: &str) -> Reply {
    let reason = axum::http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Redirect");
    Reply::html(
        code,
        format!(
            "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        ),
    )
    .with_header("location", location.to_string())
}

fn status_fault_reply(code: u16) -> Reply {
    let reason = axum::http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    match code {
        500 => Reply::internal(),
        // nginx answers 413 itself when a body exceeds `client_max_body_size`.
        413 | 502..=504 => Reply::html(
            code,
            format!(
                "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            ),
        ),
        _ => Reply::detail(code, reason),
    }
}

/// DRF authentication as configured by DefectDojo. Session authentication comes
/// first, so failures are 403 (never 401) — defectdojo-real.md, "Authentication".
fn check_auth(headers: &HeaderMap) -> Result<(), Reply> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Reply::detail(
            403,
            "Authentication credentials were not provided.",
        ));
    };
    let value = String::from_utf8_lossy(value.as_bytes()).to_string();
    let parts: Vec<&str> = value.split_whitespace().collect();
    match parts.first().map(|p| p.to_ascii_lowercase()) {
        Some(keyword) if keyword == "token" => match parts.len() {
            1 => Err(Reply::detail(
                403,
                "Invalid token header. No credentials provided.",
            )),
            2 if parts[1] == DojoFake::TOKEN => Ok(()),
            2 => Err(Reply::detail(403, "Invalid token.")),
            _ => Err(Reply::detail(
                403,
                "Invalid token header. Token string should not contain spaces.",
            )),
        },
        // There are no passwords in the fake: Basic credentials are always wrong.
        Some(keyword) if keyword == "basic" => {
            Err(Reply::detail(403, "Invalid username/password."))
        }
        _ => Err(Reply::detail(
            403,
            "Authentication credentials were not provided.",
        )),
    }
}

async fn process(shared: &Arc<Shared>, req: Request) -> (Reply, Captured) {
    let path = req.uri().path().to_string();
    let route = match api::route(&path) {
        api::RouteMatch::Found(route) => route,
        api::RouteMatch::AppendSlash => {
            // Django's CommonMiddleware (APPEND_SLASH) answers before DRF runs.
            let mut location = format!("{path}/");
            if let Some(q) = req.uri().query() {
                location.push('?');
                location.push_str(q);
            }
            return (
                Reply::html(301, String::new()).with_header("location", location),
                Captured::default(),
            );
        }
        api::RouteMatch::NotFound => return (Reply::not_found(), Captured::default()),
    };
    if let Err(reply) = check_auth(req.headers()) {
        return (reply, Captured::default());
    }
    if !route.allows(req.method()) {
        let reply = Reply::detail(405, &format!("Method \"{}\" not allowed.", req.method()));
        return (reply, Captured::default());
    }
    if matches!(route, api::Route::Reimport) {
        return reimport::handle(shared, req).await;
    }
    let base_url = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
        .await
        .unwrap_or_default();
    let mut captured = Captured::default();
    let json_body = if method == Method::PATCH || method == Method::POST {
        if !content_type.starts_with("application/json") {
            let media = if content_type.is_empty() {
                String::new()
            } else {
                content_type.clone()
            };
            let reply = Reply::detail(
                415,
                &format!("Unsupported media type \"{media}\" in request."),
            );
            return (reply, captured);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => {
                captured.json_body = Some(v.clone());
                Some(v)
            }
            // The exception handler replaces DRF's "JSON parse error - ..." detail.
            Err(_) => {
                return (
                    Reply::json(400, json!({"message": "JSON request content is malformed"})),
                    captured,
                );
            }
        }
    } else {
        None
    };
    let ctx = api::RequestCtx {
        method,
        query,
        base_url,
        path,
        json: json_body,
    };
    (api::handle(shared, route, ctx), captured)
}

/// The `result` of every DefectDojo test in a `scan --format json` summary, in order.
pub fn results(summary: &Value) -> Vec<String> {
    summary["defectdojo"]["tests"]
        .as_array()
        .expect("the summary lists DefectDojo tests")
        .iter()
        .map(|t| t["result"].as_str().unwrap_or("?").to_owned())
        .collect()
}
