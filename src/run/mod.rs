//! `run`: the controller. Elects a leader; the leader watches every report kind and
//! stores each event in its compact form, and the output runner drives DefectDojo
//! export, alerts and the monthly summary while it leads. Health and metrics are served
//! throughout. SIGTERM stops the watches, lets in-flight work finish within the grace
//! period (the store keeps the rest), and exits 0. Losing leadership stops the outputs
//! at once.

mod controller;
mod fleet;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::config::Config;
use crate::events::Events;
use crate::flag::until;
use crate::leader::Elector;
use crate::metrics::Metrics;
use crate::output::factory::{self, Mode};
use crate::output::runner::{Runner, Signals};
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
    metrics.set_cluster(&config.cluster);
    let health = Arc::new(Health::default());
    let listener = serve::bind(&config.run.listen).await?;
    tracing::info!(listen = %config.run.listen, "serving /healthz, /readyz, /metrics");

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });

    let state = Arc::new(AppState::new(&config, health.clone(), metrics.clone()));
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

    let events = Events::from_env(client.clone()).map(Arc::new);
    let runner = Runner::new(&config, Some(metrics.clone()), events.clone());
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
        // The outputs, for this term of leadership (built afresh, so a term starts clean).
        let built = factory::build(&config, Mode::Run, Some(metrics.clone()));
        if let Some(ev) = &events {
            for (kind, e) in &built.failed {
                ev.publish(true, kind.failed_reason(), kind.action(), format!("{e:#}"))
                    .await;
            }
        }
        let (changes, changes_rx) = watch::channel(0u64);
        let listed = health.clone();
        let signals = Signals {
            stop: stop_rx.clone(),
            leading: lead_rx.clone(),
            listed: Arc::new(move || listed.listed.load(Ordering::SeqCst)),
            changes: Some(changes_rx),
        };
        let runner = runner.clone();
        let outputs = if config.store.is_postgres() {
            // A fleet store: the outputs run where the store's lease is held.
            let (fence_tx, fence_rx) = watch::channel(None);
            tokio::spawn(fleet::keep_lease(
                config.store.clone(),
                fleet::holder(&config.cluster),
                config.run.fleet_lease.0,
                fence_tx,
                stop_rx.clone(),
                lead_rx.clone(),
            ));
            tokio::spawn(fleet::drive_outputs(
                runner,
                built.outputs,
                signals,
                fence_rx,
            ))
        } else {
            tokio::spawn(async move { runner.run(built.outputs, signals).await })
        };
        let ctx = controller::Ctx {
            config: &config,
            client: client.clone(),
            health: &health,
            metrics: &metrics,
            changes,
        };
        let result = controller::lead(ctx, lead_rx.clone(), stop_rx.clone()).await;
        if result.is_err() {
            outputs.abort();
        }
        // In-flight work finishes within the shutdown grace; the rest stays queued.
        if let Err(e) = outputs.await
            && !e.is_cancelled()
        {
            tracing::error!("outputs task: {e}");
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
    match http.await {
        Ok(r) => r?,
        Err(e) => tracing::warn!("HTTP server task: {e}"),
    }
    Ok(0)
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
