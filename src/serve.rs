//! The controller's HTTP endpoints: `/healthz` (the process runs), `/readyz` (the leader
//! has listed every watched kind, or this replica is a healthy standby) and `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What the endpoints report, shared with the controller.
#[derive(Default)]
pub struct Health {
    /// This replica holds the Lease (or leader election is off).
    pub leading: AtomicBool,
    /// The leader has listed every watched kind once.
    pub listed: AtomicBool,
}

impl Health {
    /// A standby is ready (it can take over); a leader once its first lists are done.
    pub fn ready(&self) -> bool {
        !self.leading.load(Ordering::SeqCst) || self.listed.load(Ordering::SeqCst)
    }
}

pub struct AppState {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// `/summary/` pages, when `summary.serve` is on.
    pub summary: Option<Arc<crate::summary::web::SummaryWeb>>,
}

pub fn router(state: Arc<AppState>) -> Router {
    let summary = state.summary.clone();
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    match summary {
        Some(web) => router.merge(crate::summary::web::router(web)),
        None => router,
    }
}

async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    if s.health.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "listing report kinds\n")
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Binds `listen` (an error names the address) and serves until `shutdown` resolves.
pub async fn bind(listen: &str) -> Result<tokio::net::TcpListener> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("run.listen {listen:?} is not an address"))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("run.listen {listen}: cannot listen"))
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server")
}
