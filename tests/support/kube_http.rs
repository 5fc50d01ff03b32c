//! A Kubernetes API for the real binary (`run`), over plain HTTP on 127.0.0.1: the
//! VulnerabilityReport resource (paged list, then watches) and namespaces (metadata
//! list, a watch that stays open). Enough for a controller to list, fail a watch once,
//! and see a report appear; no kube test server needed. Everything else answers 404
//! with a Status, as the API server does for an unknown resource.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Default)]
struct Shared {
    reports: Mutex<Vec<Value>>,
    /// Reports the open watches announce as ADDED (taken by the first watch that polls).
    announce: Mutex<Vec<Value>>,
    watches: AtomicUsize,
    /// The first this-many report watches fail with a 500.
    failing_watches: usize,
    log: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct KubeHttp {
    shared: Arc<Shared>,
    served: super::http_thread::Served,
}

const REPORTS: &str = "/apis/aquasecurity.github.io/v1alpha1/vulnerabilityreports";

impl KubeHttp {
    /// Serves `reports` (objects as the operator writes them); the first
    /// `failing_watches` watches of reports answer 500.
    pub fn start(reports: Vec<Value>, failing_watches: usize) -> KubeHttp {
        let shared = Arc::new(Shared {
            reports: Mutex::new(reports),
            failing_watches,
            ..Shared::default()
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let served = super::http_thread::serve("kube-http-fake", app);
        KubeHttp { shared, served }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.served.addr)
    }

    /// A kubeconfig for this server (no credentials: it asks for none).
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig.yaml");
        let cfg = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url()}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
        });
        std::fs::write(&path, serde_json::to_string_pretty(&cfg).expect("json"))
            .expect("write kubeconfig");
        path
    }

    /// The open watch announces `report` as ADDED (and later lists include it).
    pub fn add(&self, report: Value) {
        lock(&self.shared.reports).push(report.clone());
        lock(&self.shared.announce).push(report);
    }

    /// Report watches requested so far.
    pub fn watches(&self) -> usize {
        self.shared.watches.load(Ordering::SeqCst)
    }

    /// `METHOD path?query` of every request.
    pub fn log(&self) -> Vec<String> {
        lock(&self.shared.log).clone()
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code.as_u16()});
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json_response(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A watch that stays open: ADDED events for announced reports, nothing otherwise.
fn open_watch(shared: Option<Arc<Shared>>) -> Response {
    let stream = futures_util::stream::unfold(shared, |shared| async move {
        loop {
            if let Some(s) = &shared {
                let next = lock(&s.announce).pop();
                if let Some(obj) = next {
                    let line = format!("{}\n", json!({"type": "ADDED", "object": obj}));
                    return Some((Ok::<Bytes, std::io::Error>(Bytes::from(line)), shared));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    lock(&shared.log).push(format!("{} {path}?{query}", req.method()));
    if req.method() != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "read only",
        );
    }
    let watch =
        query_param(&query, "watch") == Some("true") || query_param(&query, "watch") == Some("1");
    match path.as_str() {
        REPORTS if watch => {
            let n = shared.watches.fetch_add(1, Ordering::SeqCst);
            if n < shared.failing_watches {
                return status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "etcd leader changed",
                );
            }
            open_watch(Some(shared))
        }
        REPORTS => {
            // Paged as the API server pages: `limit`, then `continue` = the next offset.
            let items = lock(&shared.reports).clone();
            let limit = query_param(&query, "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0)
                .unwrap_or(items.len().max(1));
            let from = query_param(&query, "continue")
                .and_then(|c| c.parse::<usize>().ok())
                .unwrap_or(0);
            let page: Vec<Value> = items.iter().skip(from).take(limit).cloned().collect();
            let next = from + page.len();
            let cont = if next < items.len() {
                next.to_string()
            } else {
                String::new()
            };
            json_response(&json!({
                "apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "VulnerabilityReportList",
                "metadata": {"resourceVersion": "100", "continue": cont}, "items": page,
            }))
        }
        "/api/v1/namespaces" if watch => open_watch(None),
        "/api/v1/namespaces" => json_response(&json!({
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "7"},
            "items": [{"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                       "metadata": {"name": "shop", "resourceVersion": "5", "labels": {"team": "shop"}}}],
        })),
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
        ),
    }
}
