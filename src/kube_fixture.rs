//! Test fixture: a small stateful Kubernetes API behind kube-rs's tower-test mock, for
//! what the real test server (apiextensions-apiserver) does not serve: Leases (with
//! resourceVersion conflicts), Pods, Namespaces and Events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Default)]
pub struct FakeState {
    pub leases: HashMap<(String, String), Value>,
    pub pods: HashMap<String, Vec<Value>>,
    pub namespaces: Vec<Value>,
    pub events: Vec<Value>,
    /// The next Lease replace loses a race (another writer got in first): 409.
    pub conflict_next_put: bool,
    /// `METHOD path` of every request, in order.
    pub requests: Vec<String>,
    rv: u64,
}

#[derive(Clone)]
pub struct FakeKube {
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeKube {
    /// A client talking to a fresh fake; the fake serves on the current runtime.
    pub fn start() -> (Client, FakeKube) {
        let fake = FakeKube {
            state: Arc::new(Mutex::new(FakeState::default())),
        };
        let (client, _) = fake.connect();
        (client, fake)
    }

    /// Another client of the same fake (another replica), with a switch that makes its
    /// requests hang unanswered, as a half-open connection does.
    pub fn connect(&self) -> (Client, Arc<AtomicBool>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let hang = Arc::new(AtomicBool::new(false));
        let server = self.clone();
        let hung = hang.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let server = server.clone();
                let hung = hung.clone();
                // Each request on its own task: a held watch must not block the others.
                tokio::spawn(async move {
                    if hung.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    let resp = server.handle(req).await;
                    send.send_response(resp);
                });
            }
        });
        (Client::new(service, "default"), hang)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let body = http_body_util::BodyExt::collect(req.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.lock().requests.push(format!("{method} {path}"));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.clone(), parts.as_slice()) {
            (
                Method::GET,
                [
                    "apis",
                    "coordination.k8s.io",
                    "v1",
                    "namespaces",
                    ns,
                    "leases",
                    name,
                ],
            ) => match self.lock().leases.get(&(ns.to_string(), name.to_string())) {
                Some(l) => ok(StatusCode::OK, l),
                None => status(StatusCode::NOT_FOUND, "NotFound", "leases not found"),
            },
            (
                Method::POST,
                [
                    "apis",
                    "coordination.k8s.io",
                    "v1",
                    "namespaces",
                    ns,
                    "leases",
                ],
            ) => {
                let mut lease: Value = serde_json::from_slice(&body).unwrap_or_default();
                let name = lease["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let mut st = self.lock();
                let key = (ns.to_string(), name);
                if st.leases.contains_key(&key) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        "lease already exists",
                    );
                }
                st.rv += 1;
                lease["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                lease["metadata"]["namespace"] = json!(ns);
                st.leases.insert(key, lease.clone());
                ok(StatusCode::CREATED, &lease)
            }
            (
                Method::PUT,
                [
                    "apis",
                    "coordination.k8s.io",
                    "v1",
                    "namespaces",
                    ns,
                    "leases",
                    name,
                ],
            ) => {
                let mut lease: Value = serde_json::from_slice(&body).unwrap_or_default();
                let mut st = self.lock();
                let key = (ns.to_string(), name.to_string());
                let current = st
                    .leases
                    .get(&key)
                    .map(|l| l["metadata"]["resourceVersion"].clone());
                if std::mem::take(&mut st.conflict_next_put) {
                    st.rv += 1;
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified",
                    );
                }
                match current {
                    None => status(StatusCode::NOT_FOUND, "NotFound", "leases not found"),
                    // Optimistic concurrency, as the API server does it.
                    Some(rv) if rv != lease["metadata"]["resourceVersion"] => status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified; please apply your changes to the latest version",
                    ),
                    Some(_) => {
                        st.rv += 1;
                        lease["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                        st.leases.insert(key, lease.clone());
                        ok(StatusCode::OK, &lease)
                    }
                }
            }
            (Method::GET, ["api", "v1", "namespaces", ns, "pods"]) => {
                let items = self.lock().pods.get(*ns).cloned().unwrap_or_default();
                ok(
                    StatusCode::OK,
                    &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            (Method::GET, ["api", "v1", "namespaces"]) if query.contains("watch=true") => {
                // Nothing changes: hold the watch a while, then end it as the server does.
                tokio::time::sleep(Duration::from_secs(5)).await;
                Response::new(Body::empty())
            }
            (Method::GET, ["api", "v1", "namespaces"]) => {
                let items = self.lock().namespaces.clone();
                ok(
                    StatusCode::OK,
                    &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "7"}, "items": items}),
                )
            }
            (Method::POST, ["apis", "events.k8s.io", "v1", "namespaces", _ns, "events"]) => {
                let ev: Value = serde_json::from_slice(&body).unwrap_or_default();
                self.lock().events.push(ev.clone());
                ok(StatusCode::CREATED, &ev)
            }
            _ => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{method} {path} is not served"),
            ),
        }
    }
}

fn ok(code: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = code;
    r
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    ok(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16()
        }),
    )
}
