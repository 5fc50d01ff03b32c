//! When summaries go out: the cron schedule in the configured time zone, with catch-up.
//!
//! Each occurrence sends the last complete month at that moment. The scheduler does not
//! remember "the next run" (which a restart would lose): at every wake-up it asks which
//! occurrence is the latest one at or before now, and sends that month to every
//! audience that has not got it. So an occurrence missed while the process was down is
//! sent when it comes back, once, and a restart after sending sends nothing. Only
//! occurrences after the scheduler first ran against this store count (`meta`
//! `summary_armed_at`), so a fresh install does not mail last month on its first start.

use crate::store::db::{OptionalExtension, params};
use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::deliver::{self, Outcome, SendOptions};
use super::month::Month;
use crate::config::Config;
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::store::Store;

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

    /// Summaries that could not be sent, as Events.
    pub fn problems(&self) -> Vec<crate::output::Problem> {
        self.outcomes
            .iter()
            .filter(|(_, o)| o.is_failure())
            .map(|(a, o)| crate::output::Problem {
                reason: "SummaryFailed",
                message: match &self.month {
                    Some(m) => format!("{m} {} ({}): {o}", a.scope.id(), a.to.join(", ")),
                    None => format!("{} ({}): {o}", a.scope.id(), a.to.join(", ")),
                },
            })
            .collect()
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
