//! Alerts as an output. A new finding event starts a batch window; when it ends, what is
//! new is queued and sent, one message per image. Queued alerts that could not be sent
//! are retried every window. Before the first full list of every kind, no baseline is
//! taken, so the baseline is the whole cluster. At start, what a previous process left
//! queued is sent at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures_util::future::BoxFuture;

use super::{AlertSummary, Alerter, PlanStats, queue};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::output::{Context, Kind, Output, Report, Step, Wake};

/// How soon to look again while the baseline waits for the first full list.
const BASELINE_POLL: Duration = Duration::from_millis(100);

pub struct AlertOutput {
    alerter: Alerter,
    window: Duration,
    baseline_first_run: bool,
}

impl AlertOutput {
    /// `None` when no channel or team route is configured.
    pub fn new(config: &Config, metrics: Option<Arc<Metrics>>) -> Result<Option<AlertOutput>> {
        let Some(alerter) = Alerter::new(config, metrics)? else {
            return Ok(None);
        };
        tracing::info!(
            destinations = alerter.destinations().len(),
            batch_window = %humantime::format_duration(config.alerts.batch_window.0),
            "alerts on"
        );
        Ok(Some(AlertOutput {
            alerter,
            window: config.alerts.batch_window.0,
            baseline_first_run: config.alerts.baseline_first_run,
        }))
    }

    fn retry_every(&self) -> Duration {
        self.window.max(Duration::from_secs(1))
    }

    async fn alert(&self, ctx: Context<'_>) -> Result<Step> {
        if self.baseline_first_run && !ctx.listed && !queue::has_cursor(ctx.store.conn())? {
            // The baseline is the whole first list, taken once it is complete.
            return Ok(Step {
                report: Report::Alerts(AlertSummary {
                    plan: PlanStats {
                        waiting_for_baseline: true,
                        ..PlanStats::default()
                    },
                    ..AlertSummary::default()
                }),
                next: Some(BASELINE_POLL),
            });
        }
        let plan = self.alerter.plan(ctx.store, ctx.now, ctx.listed)?;
        let (summary, retry) = match self.alerter.deliver(ctx.store, ctx.now, ctx.stopping).await {
            Ok(delivery) => {
                let retry = delivery.pending > 0;
                (
                    AlertSummary {
                        plan,
                        delivery,
                        error: None,
                    },
                    retry,
                )
            }
            Err(e) => {
                // What was queued stays queued; the plan's figures still stand.
                tracing::error!("alerts: delivering: {e:#}");
                (
                    AlertSummary {
                        plan,
                        error: Some(format!("{e:#}")),
                        ..AlertSummary::default()
                    },
                    true,
                )
            }
        };
        Ok(Step {
            report: Report::Alerts(summary),
            next: retry.then(|| self.retry_every()),
        })
    }
}

impl Output for AlertOutput {
    fn kind(&self) -> Kind {
        Kind::Alerts
    }

    fn wake(&self) -> Wake {
        Wake {
            debounce: Some(self.window),
            idle: None,
            first: Duration::ZERO,
            retry: self.retry_every(),
        }
    }

    fn step<'a>(&'a self, ctx: Context<'a>) -> BoxFuture<'a, Result<Step>> {
        Box::pin(self.alert(ctx))
    }
}
