//! When summaries go out: the cron schedule in the configured time zone, with catch-up.
//!
//! Each occurrence sends the last complete month at that moment. The scheduler does not
//! remember "the next run" (which a restart would lose): at every wake-up it asks which
//! occurrence is the latest one at or before now, and sends that month to every
//! audience that has not got it. So an occurrence missed while the process was down is
//! sent when it comes back, once, and a restart after sending sends nothing. Only
//! occurrences after the scheduler first ran against this store count (`meta`
//! `summary_armed_at`), so a fresh install does not mail last month on its first start.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rusqlite::{OptionalExtension, params};
use tokio::sync::watch;

use super::deliver::{self, Outcome, SendOptions};
use super::month::Month;
use crate::config::Config;
use crate::flag::until;
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::store::Store;

/// Re-check at least this often: wall-clock jumps and suspended nodes do not delay a send
/// by more than this.
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// The first occurrence strictly after `after`.
pub fn next_run(schedule: &cron::Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule
        .after(&after.with_timezone(&tz))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

/// The latest occurrence at or before `now`.
pub fn last_run(schedule: &cron::Schedule, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let probe = (now + TimeDelta::seconds(1)).with_timezone(&tz);
    schedule
        .after(&probe)
        .next_back()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| *t <= now)
}

/// The month an occurrence at `at` sends: the last complete one then.
pub fn month_for(at: DateTime<Utc>, tz: Tz) -> Month {
    Month::last_complete(at, tz)
}

/// The occurrence due at `now` (latest one, not before `armed_at`) and its month.
pub fn due(
    schedule: &cron::Schedule,
    tz: Tz,
    armed_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, Month)> {
    let at = last_run(schedule, tz, now)?;
    (at >= armed_at).then(|| (at, month_for(at, tz)))
}

/// When the scheduler first ran against this store (set now if never).
pub fn armed_at(store: &mut Store, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    store.write(|conn| {
        let v: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'summary_armed_at'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(v) = v {
            match v
                .parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
            {
                Some(t) => return Ok(t),
                None => tracing::warn!(
                    value = %v,
                    "store: meta summary_armed_at {v:?} is not a Unix time; re-arming now"
                ),
            }
        }
        conn.execute(
            "INSERT INTO meta(key, value) VALUES('summary_armed_at', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![now.timestamp().to_string()],
        )?;
        Ok(now)
    })
}

/// What one wake-up did.
#[derive(Debug, Default)]
pub struct Tick {
    pub month: Option<Month>,
    pub outcomes: Vec<(deliver::Audience, Outcome)>,
}

impl Tick {
    /// Something is still to be sent: wake up again after the retry interval.
    pub fn pending(&self) -> bool {
        self.outcomes.iter().any(|(_, o)| o.pending())
    }
}

/// One wake-up at `now`: sends the due month to whoever has not got it.
pub async fn tick(
    config: &Config,
    store: &mut Store,
    mailer: &Mailer,
    now: DateTime<Utc>,
    metrics: Option<&Metrics>,
) -> Result<Tick> {
    let tz = config.summary.timezone.tz();
    let armed = armed_at(store, now)?;
    let Some((at, month)) = due(config.summary.schedule.schedule(), tz, armed, now) else {
        return Ok(Tick::default());
    };
    let audiences = deliver::audiences(config);
    let opts = SendOptions {
        automatic: true,
        retry_after: config.summary.retry_interval.as_secs_i64(),
    };
    let late = now - at;
    if late > TimeDelta::minutes(10) {
        // Only worth a line when something is actually sent late (checked below).
        tracing::debug!(month = %month, scheduled = %at, "summary occurrence is {} min old", late.num_minutes());
    }
    let outcomes =
        deliver::send_month(config, store, mailer, month, now, &audiences, opts, metrics).await?;
    if late > TimeDelta::minutes(10) && outcomes.iter().any(|(_, o)| *o == Outcome::Sent) {
        tracing::info!(month = %month, scheduled = %at, "sent a summary missed at its scheduled time");
    }
    Ok(Tick {
        month: Some(month),
        outcomes,
    })
}

/// A source of the current time (tests inject their own).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// The controller's summary task: while this replica leads, wakes at each occurrence (and
/// after failures, every `retry_interval`) and sends what is due.
pub async fn summary_loop(
    config: Config,
    metrics: Arc<Metrics>,
    mut leading: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    clock: Clock,
) -> Result<()> {
    if config.smtp.is_none() || !config.summary.has_recipients(&config) {
        tracing::debug!("monthly summary: no smtp section or no recipients; not scheduled");
        return Ok(());
    }
    let Some(smtp) = config.smtp.as_ref() else {
        return Ok(());
    };
    let mailer = match Mailer::new(smtp) {
        Ok(m) => m,
        Err(e) => {
            // Said now, not at shutdown: no summary will be sent until this is fixed.
            tracing::error!("monthly summary: smtp: {e}; no summary will be sent");
            return Err(e).context("monthly summary: smtp");
        }
    };
    let tz = config.summary.timezone.tz();
    let schedule = config.summary.schedule.schedule().clone();
    tracing::info!(
        schedule = config.summary.schedule.source(),
        timezone = tz.name(),
        next = ?next_run(&schedule, tz, clock()),
        "monthly summary scheduled"
    );
    loop {
        tokio::select! {
            _ = until(&mut stop, true) => return Ok(()),
            led = until(&mut leading, true) => if !led { return Ok(()) },
        }
        let mut store = Store::open(&config.store)?;
        loop {
            if *stop.borrow() || !*leading.borrow() {
                break;
            }
            let now = clock();
            // On shutdown a send in flight gets the grace period; if cut, its claim
            // expires and it is sent again later with the same Message-ID.
            let mut stop_then_grace = stop.clone();
            let grace = config.run.shutdown_grace.0;
            let deadline = async move {
                until(&mut stop_then_grace, true).await;
                tokio::time::sleep(grace).await;
            };
            let result = tokio::select! {
                r = tick(&config, &mut store, &mailer, now, Some(&metrics)) => r,
                _ = deadline => return Ok(()),
            };
            let retry = match result {
                Ok(t) => t.pending(),
                Err(e) => {
                    tracing::error!("monthly summary: {e:#}");
                    metrics.summary_failures.inc();
                    true
                }
            };
            let mut wait = next_run(&schedule, tz, now)
                .and_then(|n| (n - now).to_std().ok())
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            if retry {
                wait = wait.min(config.summary.retry_interval.0);
            }
            // Wake a little after the occurrence, never before it.
            let wait = wait + Duration::from_millis(200);
            tokio::select! {
                _ = until(&mut stop, true) => return Ok(()),
                _ = until(&mut leading, false) => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::summary::utc;
    use std::str::FromStr;

    #[test]
    fn default_schedule_in_utc() {
        let s = cron::Schedule::from_str("0 0 8 1 * *").expect("cron");
        let tz = chrono_tz::UTC;
        assert_eq!(
            next_run(&s, tz, utc("2026-10-31T23:59:59Z")),
            Some(utc("2026-11-01T08:00:00Z"))
        );
        assert_eq!(
            next_run(&s, tz, utc("2026-11-01T08:00:00Z")),
            Some(utc("2026-12-01T08:00:00Z"))
        );
        assert_eq!(
            last_run(&s, tz, utc("2026-11-01T08:00:00Z")),
            Some(utc("2026-11-01T08:00:00Z"))
        );
        assert_eq!(
            last_run(&s, tz, utc("2026-11-01T07:59:59Z")),
            Some(utc("2026-10-01T08:00:00Z"))
        );
        // December → January crosses the year.
        assert_eq!(
            next_run(&s, tz, utc("2026-12-15T00:00:00Z")),
            Some(utc("2027-01-01T08:00:00Z"))
        );
        assert_eq!(
            month_for(utc("2027-01-01T08:00:00Z"), tz).to_string(),
            "2026-12"
        );
    }
}
