//! Capped exponential backoff with full jitter, honouring a server's `Retry-After`.
//! Shared by every output that talks to a server (DefectDojo, Slack, SMTP).

use std::time::Duration;

use crate::config::RetryConfig;

/// Longest `Retry-After` we wait for within one run; longer ones leave the work queued.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn from_config(c: &RetryConfig) -> Backoff {
        Backoff {
            max_attempts: c.max_attempts.max(1),
            initial: c.initial_backoff.0,
            max: c.max_backoff.0.max(c.initial_backoff.0),
        }
    }

    /// The wait before attempt `attempt + 1` (after `attempt` failures, 1-based), or
    /// `None` when no attempt is left. A server's `Retry-After` replaces the jittered wait
    /// (it is the server saying when it can take us), up to `MAX_RETRY_AFTER`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        if let Some(ra) = retry_after {
            return (ra <= MAX_RETRY_AFTER).then_some(ra);
        }
        let exp = self.initial.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let cap = exp.min(self.max);
        // Full jitter: uniform in [cap/2, cap] keeps some spacing while spreading replicas.
        let half = cap / 2;
        let jitter = half.mul_f64(fastrand::f64());
        Some(half + jitter)
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
}
