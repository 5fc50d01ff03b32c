//! Capped exponential backoff with full jitter, honouring a server's `Retry-After`.
//! Shared by every output that talks to a server (DefectDojo, Slack, SMTP).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::HumanDuration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per push within one run (then it waits in the outbox for the next run).
    pub max_attempts: u32,
    pub initial_backoff: HumanDuration,
    pub max_backoff: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 6,
            initial_backoff: HumanDuration(Duration::from_secs(1)),
            max_backoff: HumanDuration(Duration::from_secs(60)),
        }
    }
}

/// A `Retry-After` up to this long is always waited for, even when `max_backoff` is
/// shorter: a server asking for a few seconds knows better than our own backoff.
pub const RETRY_AFTER_FLOOR: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again. `asked` is true when the wait is the server's
    /// `Retry-After`.
    Wait { wait: Duration, asked: bool },
    /// No attempt left.
    Exhausted,
    /// The server asked to wait longer than we wait within one run: give up now, the
    /// work stays queued for the next run (waiting out e.g. 600 s per attempt would stall
    /// a `scan` for most of an hour).
    TooLong { asked: Duration, cap: Duration },
}

impl Next {
    pub fn wait(self) -> Option<Duration> {
        match self {
            Next::Wait { wait, .. } => Some(wait),
            Next::Exhausted | Next::TooLong { .. } => None,
        }
    }

    /// Logs the decision for `service` (e.g. "DefectDojo") so a long or refused wait is
    /// visible; returns the text to add to the error when giving up.
    pub fn log(self, service: &str, call: &str, attempt: u32, error: &str) -> Option<String> {
        match self {
            Next::Wait { wait, asked: true } => {
                tracing::warn!(
                    call,
                    attempt,
                    wait_s = wait.as_secs_f64(),
                    error,
                    "{service} asked to wait (Retry-After) before the next attempt; waiting"
                );
                None
            }
            Next::Wait { wait, asked: false } => {
                tracing::warn!(
                    call,
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    error,
                    "{service}: retrying"
                );
                None
            }
            Next::Exhausted => None,
            Next::TooLong { asked, cap } => {
                let note = format!(
                    "{service} asks to wait {} s (Retry-After), longer than the {} s waited within a run (the larger of retry.max_backoff and {} s); not waiting, the work stays queued for the next run",
                    asked.as_secs(),
                    cap.as_secs(),
                    RETRY_AFTER_FLOOR.as_secs()
                );
                tracing::warn!(call, attempt, error, "{note}");
                Some(note)
            }
        }
    }
}

impl Backoff {
    pub fn from_config(c: &RetryConfig) -> Backoff {
        Backoff {
            max_attempts: c.max_attempts.max(1),
            initial: c.initial_backoff.0,
            max: c.max_backoff.0.max(c.initial_backoff.0),
        }
    }

    /// The longest `Retry-After` waited for: `max_backoff`, but at least
    /// `RETRY_AFTER_FLOOR`.
    pub fn retry_after_cap(&self) -> Duration {
        self.max.max(RETRY_AFTER_FLOOR)
    }

    /// What to do after `attempt` failures (1-based). A server's `Retry-After` replaces
    /// the jittered wait (it is the server saying when it can take us), up to
    /// `retry_after_cap`; a longer one ends the retries of this run.
    pub fn next(&self, attempt: u32, retry_after: Option<Duration>) -> Next {
        if attempt >= self.max_attempts {
            return Next::Exhausted;
        }
        if let Some(ra) = retry_after {
            let cap = self.retry_after_cap();
            return if ra <= cap {
                Next::Wait {
                    wait: ra,
                    asked: true,
                }
            } else {
                Next::TooLong { asked: ra, cap }
            };
        }
        let exp = self.initial.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let cap = exp.min(self.max);
        // Full jitter: uniform in [cap/2, cap] keeps some spacing while spreading replicas.
        let half = cap / 2;
        let jitter = half.mul_f64(fastrand::f64());
        Next::Wait {
            wait: half + jitter,
            asked: false,
        }
    }

    /// The wait before attempt `attempt + 1`, or `None` when no attempt is left (or the
    /// server asked for longer than `retry_after_cap`).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        self.next(attempt, retry_after).wait()
    }
}

/// The wait an HTTP answer asks for in its `Retry-After` header, if any.
pub fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
}

/// Parses `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff {
            max_attempts: 5,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
        }
    }

    #[test]
    fn grows_then_caps_then_stops() {
        let b = b();
        for (attempt, cap) in [(1, 1), (2, 2), (3, 4), (4, 8)] {
            let d = b.delay(attempt, None).expect("attempt left");
            let cap = Duration::from_secs(cap);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?}");
        }
        assert_eq!(b.delay(5, None), None);
        let big = Backoff {
            max_attempts: 100,
            ..b
        };
        assert!(big.delay(60, None).expect("left") <= Duration::from_secs(8));
    }

    #[test]
    fn retry_after_wins() {
        let b = b();
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(30))),
            Some(Duration::from_secs(30))
        );
        assert_eq!(b.delay(1, Some(Duration::from_secs(3600))), None);
        // Up to the floor a Retry-After is waited for even when max_backoff is smaller.
        assert_eq!(
            b.next(1, Some(Duration::from_secs(10))),
            Next::Wait {
                wait: Duration::from_secs(10),
                asked: true
            }
        );
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .expect("date")
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_long_retry_after_is_capped_by_max_backoff() {
        // retry.max_backoff: 2s; the server asks for 600 s.
        let b = Backoff {
            max_attempts: 6,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert_eq!(b.delay(1, Some(Duration::from_secs(600))), None);
        assert_eq!(
            b.next(1, Some(Duration::from_secs(600))),
            Next::TooLong {
                asked: Duration::from_secs(600),
                cap: RETRY_AFTER_FLOOR
            }
        );
        assert_eq!(b.delay(1, Some(Duration::from_secs(31))), None);
        // A larger max_backoff raises the cap.
        let patient = Backoff {
            max: Duration::from_secs(900),
            ..b
        };
        assert_eq!(
            patient.delay(1, Some(Duration::from_secs(600))),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            patient.next(6, Some(Duration::from_secs(1))),
            Next::Exhausted
        );
    }
}
