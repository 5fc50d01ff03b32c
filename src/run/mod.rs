//! `run`: the controller. Elects a leader; the leader watches every report kind, stores
//! each event in its compact form, exports to DefectDojo on a debounce, and serves
//! health and metrics. SIGTERM stops the watches, lets in-flight pushes finish within the
//! grace period (the outbox keeps the rest), and exits 0.

mod controller;
mod export;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::config::Config;
use crate::events::Events;
use crate::leader::Elector;
use crate::metrics::Metrics;
use crate::serve::{self, AppState, Health};

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<i32> {
    let client = crate::source::cluster::connect::client()
        .await
        .context("run: no usable kubeconfig or in-cluster configuration")?;
    run_with(config, client, shutdown_signal()).await
}

/// Runs until `shutdown` resolves (tests pass their own).
pub async fn run_with(
    config: Config,
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<i32> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let listener = serve::bind(&config.run.listen).await?;
    tracing::info!(listen = %config.run.listen, "serving /healthz, /readyz, /metrics");

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });

    let summary_web = config.summary.serve.then(|| {
        tracing::warn!(
            listen = %config.run.listen,
            "summary.serve is on: /summary/ shows vulnerability data to anyone who reaches this \
             port; keep it behind a port-forward or an authenticated ingress"
        );
        Arc::new(crate::summary::web::SummaryWeb::new(config.clone()))
    });
    let state = Arc::new(AppState {
        health: health.clone(),
        metrics: metrics.clone(),
        summary: summary_web,
    });
    let mut http_stop = stop_rx.clone();
    let limits = serve::HttpLimits::from_config(&config.run);
    let http = tokio::spawn(serve::serve_with(listener, state, limits, async move {
        until(&mut http_stop, true).await;
    }));

    let (lead_tx, lead_rx) = watch::channel(false);
    // Without election this process leads; the sender stays alive (in `_always`) so
    // receivers never see a closed channel.
    let (elector, _always) = if config.run.leader_election.enabled {
        let elector = Elector::new(client.clone(), &config.run.leader_election);
        tracing::info!(identity = elector.identity(), "leader election on");
        (
            Some(tokio::spawn(elector.run(lead_tx, stop_rx.clone()))),
            None,
        )
    } else {
        lead_tx.send_replace(true);
        (None, Some(lead_tx))
    };

    // Monthly summaries: sent by the leader only (and claimed in the store besides).
    let summaries = tokio::spawn(crate::summary::schedule::summary_loop(
        config.clone(),
        metrics.clone(),
        lead_rx.clone(),
        stop_rx.clone(),
        crate::summary::schedule::system_clock(),
    ));

    let events = Events::from_env(client.clone()).map(Arc::new);
    let mut stop = stop_rx.clone();
    let mut leading = lead_rx.clone();
    loop {
        tokio::select! {
            _ = until(&mut stop, true) => break,
            led = until(&mut leading, true) => if !led { break },
        }
        if *stop.borrow() {
            break;
        }
        health.leading.store(true, Ordering::SeqCst);
        metrics.leader.set(1);
        if let Some(ev) = &events {
            ev.publish(
                false,
                "Leading",
                "Elect",
                "this replica now watches and exports".into(),
            )
            .await;
        }
        // New-finding alerts, for this term of leadership; the baseline waits for `listed`.
        let listed = health.clone();
        let alerts = tokio::spawn(crate::alert::alert_loop(
            config.clone(),
            Arc::new(move || listed.listed.load(Ordering::SeqCst)),
            Some(metrics.clone()),
            lead_rx.clone(),
            stop_rx.clone(),
        ));
        let ctx = controller::Ctx {
            config: &config,
            client: client.clone(),
            health: &health,
            metrics: &metrics,
            events: events.clone(),
        };
        let result = controller::lead(ctx, lead_rx.clone(), stop_rx.clone()).await;
        if result.is_err() {
            alerts.abort();
        }
        // In-flight alerts finish within the shutdown grace; the rest stays queued.
        match alerts.await {
            Ok(Err(e)) => tracing::error!("alerts: {e:#}"),
            Err(e) if !e.is_cancelled() => tracing::error!("alerts task: {e}"),
            _ => {}
        }
        health.leading.store(false, Ordering::SeqCst);
        health.listed.store(false, Ordering::SeqCst);
        metrics.leader.set(0);
        metrics.ready.set(0);
        if let Err(e) = result {
            // A store or setup failure: stop rather than run without doing the job.
            tracing::error!("controller failed: {e:#}");
            return Err(e);
        }
    }
    if let Some(e) = elector {
        let _ = e.await;
    }
    match summaries.await {
        Ok(Err(e)) => tracing::warn!("monthly summary task: {e:#}"),
        Err(e) => tracing::warn!("monthly summary task: {e}"),
        Ok(Ok(())) => {}
    }
    match http.await {
        Ok(r) => r?,
        Err(e) => tracing::warn!("HTTP server task: {e}"),
    }
    Ok(0)
}

/// Waits until the flag is `want`; false when its sender is gone. The guard `wait_for`
/// returns is dropped here, so callers' futures stay `Send`.
pub(crate) async fn until(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    rx.wait_for(|v| *v == want).await.is_ok()
}

/// SIGTERM (Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
