//! The monthly summary as an output: each step sends the due month to whoever has not
//! got it (`schedule::tick`) and asks to be woken at the next occurrence, or after
//! `summary.retry_interval` while something is still to be sent.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures_util::future::BoxFuture;

use super::schedule::{self, next_run};
use crate::config::Config;
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::output::{Context, Kind, Output, Report, Step, Wake};

/// Re-check at least this often: wall-clock jumps and suspended nodes do not delay a send
/// by more than this.
const MAX_SLEEP: Duration = Duration::from_secs(300);
/// Wake a little after the occurrence, never before it.
const AFTER_OCCURRENCE: Duration = Duration::from_millis(200);

pub struct SummaryOutput {
    config: Config,
    mailer: Mailer,
    metrics: Option<Arc<Metrics>>,
}

impl SummaryOutput {
    /// `None` without an `smtp` section or without recipients.
    pub fn new(config: &Config, metrics: Option<Arc<Metrics>>) -> Result<Option<SummaryOutput>> {
        let Some(smtp) = config.smtp.as_ref() else {
            tracing::debug!("monthly summary: no smtp section; not scheduled");
            return Ok(None);
        };
        if !config.summary.has_recipients(config.teams.any_email()) {
            tracing::debug!("monthly summary: no recipients; not scheduled");
            return Ok(None);
        }
        // Said now, not at shutdown: no summary will be sent until this is fixed.
        let mailer = Mailer::new(smtp).context("monthly summary: smtp; no summary will be sent")?;
        let tz = config.summary.timezone.tz();
        tracing::info!(
            schedule = config.summary.schedule.source(),
            timezone = tz.name(),
            next = ?next_run(config.summary.schedule.schedule(), tz, chrono::Utc::now()),
            "monthly summary scheduled"
        );
        Ok(Some(SummaryOutput {
            config: config.clone(),
            mailer,
            metrics,
        }))
    }

    async fn send(&self, ctx: Context<'_>) -> Result<Step> {
        let now = ctx.now;
        // A send cut by the shutdown grace keeps its claim until the claim expires; it is
        // sent again later with the same Message-ID.
        let tick = schedule::tick(
            &self.config,
            ctx.store,
            &self.mailer,
            now,
            self.metrics.as_deref(),
        )
        .await;
        let tick = match tick {
            Ok(t) => t,
            Err(e) => {
                if let Some(m) = &self.metrics {
                    m.summary_failures.inc();
                }
                return Err(e.context("monthly summary"));
            }
        };
        let tz = self.config.summary.timezone.tz();
        let mut wait = next_run(self.config.summary.schedule.schedule(), tz, now)
            .and_then(|n| (n - now).to_std().ok())
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        if tick.pending() {
            wait = wait.min(self.config.summary.retry_interval.0);
        }
        Ok(Step {
            report: Report::Summary(tick),
            next: Some(wait + AFTER_OCCURRENCE),
        })
    }
}

impl Output for SummaryOutput {
    fn kind(&self) -> Kind {
        Kind::Summary
    }

    fn wake(&self) -> Wake {
        Wake {
            debounce: None,
            idle: None,
            first: Duration::ZERO,
            retry: self.config.summary.retry_interval.0,
        }
    }

    fn step<'a>(&'a self, ctx: Context<'a>) -> BoxFuture<'a, Result<Step>> {
        Box::pin(self.send(ctx))
    }
}
