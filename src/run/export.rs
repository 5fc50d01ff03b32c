//! The controller's DefectDojo export: after a change, wait one interval (so a burst of
//! events makes one push per test), plan, queue and deliver. The interval also retries
//! whatever waits in the outbox.

use std::sync::Arc;

use anyhow::Result;
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::events::Events;
use crate::flag::until;
use crate::metrics::{Metrics, OutcomeLabel};
use crate::output::dojo::{self, DojoClient, Outcome, outbox};
use crate::store::Store;

pub async fn export_loop(
    config: Config,
    dirty: Arc<Notify>,
    metrics: Arc<Metrics>,
    events: Option<Arc<Events>>,
    mut leading: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let Some(dojo_cfg) = config.defectdojo.clone() else {
        return Ok(());
    };
    let client = DojoClient::new(&dojo_cfg)?;
    let mut store = Store::open(&config.store)?;
    let interval = config.run.export_interval.0;
    loop {
        // Wake on a change, or after an interval to retry the outbox.
        tokio::select! {
            _ = until(&mut stop, true) => return Ok(()),
            _ = until(&mut leading, false) => return Ok(()),
            _ = dirty.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        // Debounce: let the burst finish.
        tokio::select! {
            _ = until(&mut stop, true) => return Ok(()),
            _ = until(&mut leading, false) => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
        let now = chrono::Utc::now().timestamp();
        let plan = store.write(|conn| {
            dojo::plan(conn, &dojo_cfg, &config.cluster, false, &mut |t| {
                match outbox::enqueue(conn, &t, now, false)? {
                    outbox::Enqueued::StillRefused(e) => {
                        tracing::debug!(test = %t.title, error = %e, "refused earlier; not resent yet");
                    }
                    outbox::Enqueued::RetryRefused => {
                        tracing::info!(test = %t.title, "refused earlier; sending again to see whether DefectDojo takes it now");
                    }
                    outbox::Enqueued::New | outbox::Enqueued::Replaced => {}
                }
                Ok(())
            })
        })?;
        if plan.reimports + plan.syncs > 0 {
            tracing::info!(
                reimports = plan.reimports,
                patches = plan.syncs,
                unchanged = plan.unchanged,
                "DefectDojo: pushing changes"
            );
        }
        for l in &plan.left_alone {
            tracing::warn!(test = %l, "DefectDojo test no longer produced by the mapping; left as it is");
        }
        // On shutdown, in-flight pushes get the grace period; the outbox keeps the rest.
        let mut stop_then_grace = stop.clone();
        let grace = config.run.shutdown_grace.0;
        let deadline = async move {
            until(&mut stop_then_grace, true).await;
            tokio::time::sleep(grace).await;
        };
        let stopping_rx = stop.clone();
        let stopping = move || *stopping_rx.borrow();
        let report = tokio::select! {
            r = dojo::deliver(&mut store, &client, dojo_cfg.concurrency, now, &stopping) => Some(r?),
            _ = deadline => {
                tracing::warn!("shutdown grace over: unfinished pushes stay in the outbox");
                None
            }
        };
        if let Some(report) = report {
            for t in &report.tests {
                let outcome = match &t.result {
                    Outcome::Done { .. } => {
                        metrics
                            .last_dojo_push_timestamp_seconds
                            .set(chrono::Utc::now().timestamp() as f64);
                        "done"
                    }
                    Outcome::Refused { error } => {
                        if let Some(ev) = &events {
                            ev.publish(
                                true,
                                "ExportRefused",
                                "Export",
                                format!("{}: {error}", t.test),
                            )
                            .await;
                        }
                        "refused"
                    }
                    Outcome::Pending { .. } => "pending",
                };
                metrics
                    .exports
                    .get_or_create(&OutcomeLabel {
                        outcome: outcome.into(),
                    })
                    .inc();
            }
            if let Some(why) = &report.stopped {
                tracing::error!(reason = %why, "DefectDojo export stopped; retrying next interval");
                if let Some(ev) = &events {
                    ev.publish(true, "ExportStopped", "Export", why.clone())
                        .await;
                }
            }
        }
        let (pending, _) = outbox::depth(store.conn())?;
        metrics.outbox_depth.set(pending as i64);
        let oldest = outbox::oldest_pending_age(store.conn(), chrono::Utc::now().timestamp())?;
        metrics
            .outbox_oldest_pending_seconds
            .set(oldest.unwrap_or(0));
        if *stop.borrow() {
            return Ok(());
        }
    }
}
