//! The `summary:` section of the configuration.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::output::custom_template::{Escape, TemplateFile};
use crate::settings::{ConfigError, HumanDuration};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SummaryConfig {
    /// Cron expression with seconds (`sec min hour day-of-month month day-of-week`), in
    /// `timezone`. Each run sends the last complete month.
    pub schedule: CronSchedule,
    /// IANA time zone of the schedule and of month boundaries (`Europe/Berlin`).
    pub timezone: TimeZone,
    /// Recipients of the whole-cluster summary.
    pub to: Vec<String>,
    /// Also send each team in `teams.routes` with an `email` list the summary of its
    /// namespaces (namespaces name their team with the `teams.annotation` annotation).
    pub teams: bool,
    /// Serve summaries read-only at `/summary/` on `run.listen`. Off by default: the
    /// pages show vulnerability data to whoever reaches the port.
    pub serve: bool,
    /// Rows in each top list (images, namespaces, oldest criticals, accepted risks);
    /// the rest is counted as "and N more".
    pub top: usize,
    /// How often a summary that could not be sent is tried again.
    pub retry_interval: HumanDuration,
    /// Override files for the summary (README, "Message templates").
    #[serde(skip_serializing_if = "SummaryTemplates::is_empty")]
    pub templates: SummaryTemplates,
}

/// `summary.templates`: override files, each optional (the built-in template otherwise).
/// They render the mail, the `summary` command's output and the `/summary/` pages alike.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SummaryTemplates {
    /// The HTML part (autoescaped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<TemplateFile>,
    /// The plain text part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TemplateFile>,
}

impl SummaryTemplates {
    pub fn is_empty(&self) -> bool {
        self.html.is_none() && self.text.is_none()
    }

    /// Reads and compiles every configured file (at config load).
    pub(crate) fn load(&mut self) -> Result<(), ConfigError> {
        if let Some(f) = &mut self.html {
            f.load("summary.templates.html", Escape::Html)?;
        }
        if let Some(f) = &mut self.text {
            f.load("summary.templates.text", Escape::Text)?;
        }
        Ok(())
    }

    /// Every configured template, for `config check`.
    pub fn files(&self) -> impl Iterator<Item = &TemplateFile> {
        [&self.html, &self.text].into_iter().flatten()
    }
}

impl Default for SummaryConfig {
    fn default() -> Self {
        SummaryConfig {
            schedule: CronSchedule::default(),
            timezone: TimeZone::default(),
            to: Vec::new(),
            teams: true,
            serve: false,
            top: 10,
            retry_interval: HumanDuration(Duration::from_secs(15 * 60)),
            templates: SummaryTemplates::default(),
        }
    }
}

impl SummaryConfig {
    /// `smtp_configured`: whether an `smtp` section exists to send with.
    pub(crate) fn validate(&self, smtp_configured: bool) -> Result<(), ConfigError> {
        for addr in &self.to {
            crate::mail::parse_mailbox(addr)
                .map_err(|e| ConfigError::Invalid(format!("summary.to {addr:?}: {e}")))?;
        }
        if !self.to.is_empty() && !smtp_configured {
            return Err(ConfigError::Invalid(
                "summary.to: no smtp section to send with".into(),
            ));
        }
        if self.top == 0 {
            return Err(ConfigError::Invalid(
                "summary.top: must be at least 1".into(),
            ));
        }
        // summary.retry_interval is bounded with every other duration in Config::validate.
        Ok(())
    }

    /// True when `run` has anyone to mail.
    /// `team_email`: some team route has email recipients.
    pub fn has_recipients(&self, team_email: bool) -> bool {
        !self.to.is_empty() || (self.teams && team_email)
    }
}

/// A parsed cron expression, written as its source text.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    source: String,
    schedule: cron::Schedule,
}

pub const DEFAULT_SCHEDULE: &str = "0 0 8 1 * *";

impl CronSchedule {
    pub fn parse(s: &str) -> Result<CronSchedule, String> {
        let schedule = super::cron::parse(s)?;
        Ok(CronSchedule {
            source: s.trim().to_owned(),
            schedule,
        })
    }

    pub fn schedule(&self) -> &cron::Schedule {
        &self.schedule
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

impl Default for CronSchedule {
    fn default() -> Self {
        CronSchedule::parse(DEFAULT_SCHEDULE)
            .unwrap_or_else(|e| unreachable!("built-in schedule: {e}"))
    }
}

impl Serialize for CronSchedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CronSchedule::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An IANA time zone such as `Europe/Berlin`; `UTC` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeZone(pub chrono_tz::Tz);

impl TimeZone {
    pub fn tz(self) -> chrono_tz::Tz {
        self.0
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        chrono_tz::Tz::from_str(s.trim())
            .map(TimeZone)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "unknown time zone {s:?}; use an IANA name such as Europe/Berlin or UTC"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn defaults_and_errors_name_the_field() {
        let c = Config::from_yaml("summary: {}\n").expect("ok");
        assert_eq!(c.summary.schedule.source(), "0 0 8 1 * *");
        assert_eq!(c.summary.timezone.tz(), chrono_tz::UTC);
        assert!(!c.summary.serve);
        let c =
            Config::from_yaml("summary:\n  timezone: Europe/Berlin\n  schedule: '0 30 7 1 * *'\n")
                .expect("ok");
        assert_eq!(c.summary.timezone.tz(), chrono_tz::Europe::Berlin);
        let e = Config::from_yaml("summary:\n  schedule: 'every monday'\n").expect_err("bad cron");
        assert!(e.contains("schedule") || e.contains("cron"), "{e}");
        // Five fields, as CronJobs write them, mean what they mean there.
        let c = Config::from_yaml("summary:\n  schedule: '0 8 1 * *'\n").expect("5 fields");
        assert_eq!(c.summary.schedule.source(), "0 8 1 * *");
        let e = Config::from_yaml("summary:\n  schedule: '0 8 32 * *'\n").expect_err("day 32");
        assert!(e.contains("day-of-month field \"32\""), "{e}");
        let e = Config::from_yaml("summary:\n  timezone: Mars/Olympus\n").expect_err("bad tz");
        assert!(e.contains("Mars/Olympus"), "{e}");
        let mut c = Config::from_yaml("summary:\n  to: [lead@example.com]\n").expect("parses");
        let e = c.summary.validate(c.smtp.is_some()).expect_err("no smtp");
        assert!(e.to_string().contains("summary.to"), "{e}");
        c.summary.to = vec!["not an address".into()];
        let e = c
            .summary
            .validate(c.smtp.is_some())
            .expect_err("bad address");
        assert!(e.to_string().contains("not an address"), "{e}");
    }
}
