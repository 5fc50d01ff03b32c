//! The controller's HTTP endpoints: `/healthz` (the process runs), `/readyz` (the leader
//! has listed every watched kind, or this replica is a healthy standby) and `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use tokio::sync::{Semaphore, watch};

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
    pub summary: Option<Arc<crate::output::summary::web::SummaryWeb>>,
    /// `/api/v1/` inventory answers, when `api.serve` is on.
    pub api: Option<Arc<crate::api::ApiWeb>>,
}

impl AppState {
    /// The endpoints `config` turns on. The pages and answers beside health and metrics
    /// carry vulnerability data: each one on is warned about.
    pub fn new(
        config: &crate::config::Config,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> AppState {
        let listen = &config.run.listen;
        let summary = config.summary.serve.then(|| {
            tracing::warn!(
                %listen,
                "summary.serve is on: /summary/ shows vulnerability data to anyone who reaches \
                 this port; keep it behind a port-forward or an authenticated ingress"
            );
            Arc::new(crate::output::summary::web::SummaryWeb::new(config.clone()))
        });
        let api = config.api.serve.then(|| {
            tracing::warn!(
                %listen,
                "api.serve is on: /api/v1/ shows vulnerability data (images, findings, \
                 packages, workloads) to anyone who reaches this port; keep it behind a \
                 port-forward or an authenticated ingress"
            );
            Arc::new(crate::api::ApiWeb::new(config))
        });
        AppState {
            health,
            metrics,
            summary,
            api,
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let summary = state.summary.clone();
    let api = state.api.clone();
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    let router = match summary {
        Some(web) => router.merge(crate::output::summary::web::router(web)),
        None => router,
    };
    match api {
        Some(web) => router.merge(crate::api::router(web)),
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

/// Limits that keep slow or idle clients from holding the port (a slowloris stops
/// `/healthz` answering, and each open connection costs a file descriptor).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A request head must arrive within this long, the first one and each one after
    /// on a kept-alive connection: so it is the idle limit too.
    pub header_read_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// A connection is asked to close after this long, however busy (a client reading
    /// a response very slowly cannot hold it for ever).
    pub max_connection_age: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::from_config(&crate::config::RunConfig::default())
    }
}

impl HttpLimits {
    pub fn from_config(run: &crate::config::RunConfig) -> HttpLimits {
        HttpLimits {
            header_read_timeout: run.header_read_timeout.0,
            max_connections: run.max_connections.max(1),
            max_connection_age: Duration::from_secs(300),
        }
    }
}

/// Serves with the default limits until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_with(listener, state, HttpLimits::default(), shutdown).await
}

/// Serves until `shutdown` resolves, then lets open connections finish their request
/// (bounded by the header timeout).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = router(state);
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // The permit comes before accept: beyond the limit, clients wait in the kernel's
        // backlog and cost this process nothing.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => p.context("HTTP connection limit")?,
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("HTTP accept: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            connection(stream, service, limits, stop).await;
            // Released only once the socket is closed.
            drop(permit);
        });
    }
    stop_tx.send_replace(true);
    // Every connection ends within its header timeout once asked to; wait for them.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        limits.header_read_timeout.saturating_mul(2),
        permits.acquire_many(all),
    )
    .await;
    Ok(())
}

async fn connection<S>(
    stream: tokio::net::TcpStream,
    service: S,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
        > + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("HTTP connection: {e}");
            }
            return;
        }
        _ = tokio::time::sleep(limits.max_connection_age) => {}
        _ = crate::flag::until(&mut stop, true) => {}
    }
    // Finish the request in flight, then close; a client that does not read is cut off.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.header_read_timeout, conn).await;
}
