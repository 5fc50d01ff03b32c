//! The `alerts:` section of the configuration.
//!
//! Channels (Slack incoming webhooks, email routes) each with their own filters; team
//! routes (`teams.routes`, chosen by a namespace annotation) get the section's defaults.
//! Webhook URLs are secrets: read from a file or an environment variable, never inline.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{Family, Severity};
use crate::retry::RetryConfig;
use crate::secret::read_secret_ref;
use crate::secret::{DenyUnknown, KnownKeys, RefKeys, SecretRef};
use crate::settings::{ConfigError, HumanDuration};

// A generic JSON webhook's settings (the channel itself is `channel::webhook`).
pub struct UrlKeys;

impl RefKeys for UrlKeys {
    const FILE: &'static str = "url_file";
    const ENV: &'static str = "url_env";
    const VALUE: &'static str = "url";
    const WHAT: &'static str = "the webhook URL";
}

pub struct AuthorizationKeys;

impl RefKeys for AuthorizationKeys {
    const FILE: &'static str = "authorization_file";
    const ENV: &'static str = "authorization_env";
    const VALUE: &'static str = "authorization";
    const WHAT: &'static str = "the Authorization header";
}

/// `webhook:` under an alert channel or a team route.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    /// The receiver's URL, from `url_file` or `url_env`.
    #[serde(flatten)]
    pub url: SecretRef<UrlKeys>,
    /// The whole `Authorization` header value (`Bearer …`), from `authorization_file`
    /// or `authorization_env`; none sent without.
    #[serde(flatten)]
    pub authorization: SecretRef<AuthorizationKeys>,
    #[serde(flatten, skip_serializing)]
    pub unknown: DenyUnknown<WebhookConfig>,
}

impl KnownKeys for WebhookConfig {
    const KEYS: &'static [&'static str] = &[
        "url_file",
        "url_env",
        "authorization_file",
        "authorization_env",
    ];
}

impl WebhookConfig {
    /// `field` is the channel or route (`alerts.channels.siem`).
    pub(crate) fn resolve(&mut self, field: &str) -> Result<(), ConfigError> {
        self.url.resolve(&format!("{field}.webhook"))?;
        self.authorization
            .resolve(&format!("{field}.webhook.authorization"))
    }

    pub(crate) fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let field = format!("{field}.webhook");
        if !self.url.is_some() {
            return Err(ConfigError::Invalid(format!(
                "{field}: set url_file or url_env"
            )));
        }
        self.url.check_url(&field)?;
        if let Some(a) = self.authorization.get()
            && reqwest::header::HeaderValue::from_str(a.expose()).is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "{field}.authorization: not a valid header value (one line of visible ASCII)"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Lowest severity that alerts (CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN).
    #[serde(with = "severity_name")]
    pub min_severity: Severity,
    /// Report families that alert.
    pub families: Vec<Family>,
    /// Only findings with a fixed version.
    pub fixable_only: bool,
    /// Namespace globs; empty alerts for all. Apply to every channel and team route.
    pub include_namespaces: Vec<String>,
    pub exclude_namespaces: Vec<String>,
    /// Findings never alerted (until `expires`).
    pub ignore: Vec<IgnoreEntry>,
    pub channels: Vec<ChannelConfig>,
    /// New findings are collected this long, then sent as one message per image.
    pub batch_window: HumanDuration,
    /// Messages per channel per hour; beyond it, what waits goes out as one digest.
    pub max_per_hour: u32,
    /// On the first run against a store, record what exists as the baseline and alert
    /// on nothing (`run`: everything listed before ready; `scan`: the first sweep).
    pub baseline_first_run: bool,
    /// Findings listed per message (the rest is counted as "and N more").
    pub max_findings_per_message: usize,
    /// Per Slack request.
    pub timeout: HumanDuration,
    pub retry: RetryConfig,
    /// Override files for the messages (README, "Message templates").
    #[serde(skip_serializing_if = "AlertTemplates::is_empty")]
    pub templates: AlertTemplates,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            min_severity: Severity::Critical,
            families: vec![Family::Vulnerability, Family::Secret],
            fixable_only: false,
            include_namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            ignore: Vec::new(),
            channels: Vec::new(),
            batch_window: HumanDuration(Duration::from_secs(60)),
            max_per_hour: 20,
            baseline_first_run: true,
            max_findings_per_message: 10,
            timeout: HumanDuration(Duration::from_secs(15)),
            retry: RetryConfig {
                max_attempts: 4,
                initial_backoff: HumanDuration(Duration::from_secs(1)),
                max_backoff: HumanDuration(Duration::from_secs(30)),
            },
            templates: Default::default(),
        }
    }
}

/// One destination: a Slack webhook, an email route, or both, with optional filters that
/// narrow the section's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelConfig {
    pub name: String,
    /// Slack incoming webhook URL, read from `slack_webhook_file` (a mounted Secret) or
    /// `slack_webhook_env`.
    #[serde(flatten)]
    pub slack_webhook: SlackWebhook,
    /// Microsoft Teams incoming webhook or Workflows URL, read from
    /// `msteams_webhook_file` or `msteams_webhook_env`.
    #[serde(flatten)]
    pub msteams_webhook: MsTeamsWebhook,
    /// Recipients (sent through the `smtp` section).
    pub email: Vec<String>,
    /// A generic JSON webhook (`webhook.url_file`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    /// Overrides the section's `min_severity`.
    #[serde(with = "opt_severity_name", skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Overrides the section's `families`.
    pub families: Option<Vec<Family>>,
    /// Overrides the section's `fixable_only`.
    pub fixable_only: Option<bool>,
    /// Namespace globs, in addition to the section's.
    pub include_namespaces: Vec<String>,
    pub exclude_namespaces: Vec<String>,
    /// Overrides the section's `max_per_hour`.
    pub max_per_hour: Option<u32>,
    /// Which new findings: seen at runtime (default), in CI results, or both.
    pub origin: AlertOrigin,
    #[serde(flatten, skip_serializing)]
    pub unknown: DenyUnknown<ChannelConfig>,
}

/// Where a finding must be new for a channel to alert on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertOrigin {
    /// New in the cluster's reports (what runs).
    #[default]
    Runtime,
    /// New in CI results (`scan --from` of Trivy CLI JSON or CycloneDX), not yet seen at
    /// runtime.
    Ci,
    /// Either, once: a finding alerted from CI is not alerted again when it runs.
    Any,
}

impl AlertOrigin {
    pub fn runtime(self) -> bool {
        self != AlertOrigin::Ci
    }

    pub fn ci(self) -> bool {
        self != AlertOrigin::Runtime
    }
}

impl KnownKeys for ChannelConfig {
    const KEYS: &'static [&'static str] = &[
        "name",
        "slack_webhook_file",
        "slack_webhook_env",
        "msteams_webhook_file",
        "msteams_webhook_env",
        "email",
        "webhook",
        "min_severity",
        "families",
        "fixable_only",
        "include_namespaces",
        "exclude_namespaces",
        "max_per_hour",
        "origin",
    ];
}

/// The Slack incoming webhook's keys: `slack_webhook_file`, `slack_webhook_env`.
pub struct SlackKeys;

impl RefKeys for SlackKeys {
    const FILE: &'static str = "slack_webhook_file";
    const ENV: &'static str = "slack_webhook_env";
    const VALUE: &'static str = "slack_webhook";
    const WHAT: &'static str = "the Slack webhook";
}

pub type SlackWebhook = SecretRef<SlackKeys>;

/// The Microsoft Teams webhook's keys. `msteams_`, not `teams_`: `teams:` is the team
/// routes section, and a route has a Teams webhook too (`teams.routes.x.msteams_webhook_file`).
pub struct MsTeamsKeys;

impl RefKeys for MsTeamsKeys {
    const FILE: &'static str = "msteams_webhook_file";
    const ENV: &'static str = "msteams_webhook_env";
    const VALUE: &'static str = "msteams_webhook";
    const WHAT: &'static str = "the Microsoft Teams webhook";
}

pub type MsTeamsWebhook = SecretRef<MsTeamsKeys>;

/// A Teams webhook URL: https (the URL is the credential), no user or password in it.
/// Plain http only to a loopback address (a relay beside the process, or a test).
/// The error never repeats the URL.
pub(crate) fn check_msteams_url(hook: &MsTeamsWebhook, field: &str) -> Result<(), ConfigError> {
    let Some(url) = hook.get() else {
        return Ok(());
    };
    let bad = |why: &str| {
        Err(ConfigError::Invalid(format!(
            "{field}: {} {why}",
            MsTeamsKeys::WHAT
        )))
    };
    let Ok(u) = reqwest::Url::parse(url.expose()) else {
        return bad("is not a URL");
    };
    let Some(host) = u.host_str().filter(|h| !h.is_empty()) else {
        return bad("has no host");
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    if !(u.scheme() == "https" || (u.scheme() == "http" && loopback)) {
        return bad("must be an https URL");
    }
    if !u.username().is_empty() || u.password().is_some() {
        return bad("must not carry a user name or password");
    }
    Ok(())
}

/// A finding not to alert on. Every field given must match; at least one of `id`,
/// `image`, `namespace` is required, and a reason always.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IgnoreEntry {
    /// Vulnerability, secret rule or check ID; globs allowed (`CVE-2026-*`).
    pub id: Option<String>,
    /// Image repository glob (`ghcr.io/org/*`, `docker.io/library/nginx`).
    pub image: Option<String>,
    /// Namespace glob: the finding is not alerted for these namespaces.
    pub namespace: Option<String>,
    pub reason: String,
    /// `2026-12-31` (ignores through that day, UTC) or an RFC 3339 time.
    pub expires: Option<Expiry>,
}

impl IgnoreEntry {
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.expires.as_ref().is_none_or(|e| now < e.at)
    }

    /// A short description for logs and the store.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(i) = &self.id {
            parts.push(format!("id {i}"));
        }
        if let Some(i) = &self.image {
            parts.push(format!("image {i}"));
        }
        if let Some(n) = &self.namespace {
            parts.push(format!("namespace {n}"));
        }
        format!("ignore {}: {}", parts.join(", "), self.reason)
    }
}

/// When an ignore entry stops ignoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub at: DateTime<Utc>,
    text: String,
}

impl Expiry {
    pub fn parse(s: &str) -> Result<Expiry, String> {
        let t = s.trim();
        if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            // A date ignores through that whole day.
            let next = d
                .succ_opt()
                .and_then(|n| n.and_hms_opt(0, 0, 0))
                .ok_or_else(|| format!("invalid date {t:?}"))?;
            return Ok(Expiry {
                at: next.and_utc(),
                text: t.to_owned(),
            });
        }
        DateTime::parse_from_rfc3339(t)
            .map(|d| Expiry {
                at: d.with_timezone(&Utc),
                text: t.to_owned(),
            })
            .map_err(|_| format!("invalid expiry {t:?}: expected 2026-12-31 or an RFC 3339 time"))
    }
}

impl Serialize for Expiry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Expiry::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    if Severity::is_canonical(s) {
        Ok(Severity::parse_lenient(s))
    } else {
        Err(format!(
            "invalid severity {s:?}: one of CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN"
        ))
    }
}

/// Severities in the config are case-insensitive but must be one of the five levels.
mod severity_name {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Severity, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Severity, D::Error> {
        let s = String::deserialize(d)?;
        parse_severity(&s).map_err(serde::de::Error::custom)
    }
}

mod opt_severity_name {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Option<Severity>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v.as_str()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Severity>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| parse_severity(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `SLACK_WEBHOOK_URL` (or `SLACK_WEBHOOK_URL_FILE`) alone adds a channel of this name.
pub const ENV_CHANNEL: &str = "slack";
const ENV_WEBHOOK: &str = "SLACK_WEBHOOK_URL";

impl AlertsConfig {
    /// Reads the secrets this section names (webhook files, environment variables).
    pub(crate) fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        for (i, ch) in self.channels.iter_mut().enumerate() {
            let field = if ch.name.is_empty() {
                format!("alerts.channels[{i}]")
            } else {
                format!("alerts.channels.{}", ch.name)
            };
            ch.slack_webhook.resolve(&field)?;
            ch.msteams_webhook.resolve(&field)?;
            if let Some(w) = &mut ch.webhook {
                w.resolve(&field)?;
            }
        }
        // The design's one-variable setup: a webhook in the environment is a channel.
        let already = self
            .channels
            .iter()
            .any(|c| c.slack_webhook.env.as_deref() == Some(ENV_WEBHOOK));
        if !already {
            let from_env = if std::env::var_os(ENV_WEBHOOK).is_some() {
                read_secret_ref(ENV_WEBHOOK, None, Some(ENV_WEBHOOK))?
            } else if let Some(f) = std::env::var_os(format!("{ENV_WEBHOOK}_FILE")) {
                read_secret_ref(
                    &format!("{ENV_WEBHOOK}_FILE"),
                    Some(std::path::Path::new(&f)),
                    None,
                )?
            } else {
                None
            };
            if let Some(url) = from_env {
                self.channels.push(ChannelConfig {
                    name: ENV_CHANNEL.into(),
                    slack_webhook: SlackWebhook::from_env(ENV_WEBHOOK, url),
                    ..ChannelConfig::default()
                });
            }
        }
        Ok(())
    }

    /// `smtp_configured`: whether an `smtp` section exists to send email with.
    pub(crate) fn validate(&self, smtp_configured: bool) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.max_per_hour == 0 {
            return bad("alerts.max_per_hour: must be at least 1".into());
        }
        if self.max_findings_per_message == 0 {
            return bad("alerts.max_findings_per_message: must be at least 1".into());
        }
        if self.retry.max_attempts == 0 {
            return bad("alerts.retry.max_attempts: must be at least 1".into());
        }
        check_families("alerts.families", &self.families)?;
        let mut names = std::collections::BTreeSet::new();
        for (i, ch) in self.channels.iter().enumerate() {
            let name = ch.name.trim();
            if name.is_empty() {
                return bad(format!("alerts.channels[{i}].name: must not be empty"));
            }
            if !names.insert(name) {
                return bad(format!("alerts.channels.{name}: the name is used twice"));
            }
            if !ch.slack_webhook.is_some()
                && !ch.msteams_webhook.is_some()
                && ch.email.is_empty()
                && ch.webhook.is_none()
            {
                return bad(format!(
                    "alerts.channels.{name}: set slack_webhook_file, slack_webhook_env, msteams_webhook_file, msteams_webhook_env, email or webhook"
                ));
            }
            let field = format!("alerts.channels.{name}");
            ch.slack_webhook.check_url(&field)?;
            check_msteams_url(&ch.msteams_webhook, &field)?;
            if let Some(w) = &ch.webhook {
                w.validate(&field)?;
            }
            for addr in &ch.email {
                crate::mail::parse_mailbox(addr).map_err(|e| {
                    ConfigError::Invalid(format!("alerts.channels.{name}.email {addr:?}: {e}"))
                })?;
            }
            if !ch.email.is_empty() && !smtp_configured {
                return bad(format!(
                    "alerts.channels.{name}.email: no smtp section to send with"
                ));
            }
            if let Some(f) = &ch.families {
                check_families(&format!("alerts.channels.{name}.families"), f)?;
            }
            if ch.max_per_hour == Some(0) {
                return bad(format!(
                    "alerts.channels.{name}.max_per_hour: must be at least 1"
                ));
            }
            if ch.origin == AlertOrigin::Ci
                && (!ch.include_namespaces.is_empty() || !ch.exclude_namespaces.is_empty())
            {
                return bad(format!(
                    "alerts.channels.{name}: origin: ci takes no include_namespaces or \
                     exclude_namespaces (a CI result has no namespace; use origin: any to \
                     filter the runtime side)"
                ));
            }
        }
        for (i, e) in self.ignore.iter().enumerate() {
            if e.id.is_none() && e.image.is_none() && e.namespace.is_none() {
                return bad(format!(
                    "alerts.ignore[{i}]: give at least one of id, image, namespace"
                ));
            }
            if e.reason.trim().is_empty() {
                return bad(format!(
                    "alerts.ignore[{i}] ({}): a reason is required",
                    e.describe()
                ));
            }
        }
        Ok(())
    }

    /// Entries whose expiry has passed (logged so that someone renews or removes them).
    pub fn expired_ignores(&self, now: DateTime<Utc>) -> Vec<&IgnoreEntry> {
        self.ignore.iter().filter(|e| !e.active(now)).collect()
    }
}

fn check_families(field: &str, families: &[Family]) -> Result<(), ConfigError> {
    if families.contains(&Family::Sbom) {
        return Err(ConfigError::Invalid(format!(
            "{field}: sbom reports have no findings to alert on"
        )));
    }
    Ok(())
}

/// `alerts.templates`: override files, each optional (the built-in template otherwise).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertTemplates {
    /// The mrkdwn text of a Slack message's body; the channel adds the header and footer
    /// and splits it into sections within Slack's limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack: Option<crate::output::custom_template::TemplateFile>,
    /// The HTML part of alert emails (autoescaped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_html: Option<crate::output::custom_template::TemplateFile>,
    /// The plain text part of alert emails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_text: Option<crate::output::custom_template::TemplateFile>,
}

impl AlertTemplates {
    pub fn is_empty(&self) -> bool {
        self.slack.is_none() && self.email_html.is_none() && self.email_text.is_none()
    }

    /// Reads and compiles every configured file (at config load).
    pub(crate) fn load(&mut self) -> Result<(), crate::settings::ConfigError> {
        use crate::output::custom_template::Escape;
        let files = [
            (&mut self.slack, "alerts.templates.slack", Escape::Slack),
            (
                &mut self.email_html,
                "alerts.templates.email_html",
                Escape::Html,
            ),
            (
                &mut self.email_text,
                "alerts.templates.email_text",
                Escape::Text,
            ),
        ];
        for (file, key, escape) in files {
            if let Some(f) = file {
                f.load(key, escape)?;
            }
        }
        Ok(())
    }

    /// Every configured template, for `config check`.
    pub fn files(&self) -> impl Iterator<Item = &crate::output::custom_template::TemplateFile> {
        [&self.slack, &self.email_html, &self.email_text]
            .into_iter()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn defaults_and_parsing() {
        let c = Config::from_yaml(
            "alerts:\n  min_severity: high\n  ignore:\n    - id: CVE-2026-*\n      reason: vendor says not reachable\n      expires: 2026-12-31\n",
        )
        .expect("ok");
        assert_eq!(c.alerts.min_severity, Severity::High);
        assert_eq!(c.alerts.batch_window.0, Duration::from_secs(60));
        assert_eq!(c.alerts.families, [Family::Vulnerability, Family::Secret]);
        let e = &c.alerts.ignore[0];
        let day = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("date")
                .with_timezone(&Utc)
        };
        assert!(e.active(day("2026-12-31T23:59:00Z")));
        assert!(!e.active(day("2027-01-01T00:00:00Z")));
        let err = Config::from_yaml("alerts:\n  min_severity: severe\n").expect_err("bad");
        assert!(err.contains("severe"), "{err}");
        let err = Config::from_yaml(
            "alerts:\n  ignore:\n    - id: X\n      reason: r\n      expires: soon\n",
        )
        .expect_err("bad expiry");
        assert!(err.contains("soon"), "{err}");
        let err = Config::from_yaml("alerts:\n  channels:\n    - name: a\n      slack_webhook: https://hooks.example.com/x\n")
            .expect_err("inline webhook");
        assert!(err.contains("slack_webhook"), "{err}");
    }

    #[test]
    fn validation_names_the_field_and_hides_the_url() {
        let dir = tempfile::tempdir().expect("dir");
        let hook = dir.path().join("hook");
        std::fs::write(&hook, "not a url with secret-part-123\n").expect("write");
        let yaml = format!(
            "alerts:\n  channels:\n    - name: sec\n      slack_webhook_file: {}\n",
            hook.display()
        );
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).expect("write");
        let e = Config::load(Some(&path)).expect_err("bad url").to_string();
        assert!(e.contains("alerts.channels.sec"), "{e}");
        assert!(!e.contains("secret-part-123"), "{e}");

        std::fs::write(
            &hook,
            "https://hooks.example.com/services/T0/B0/secret-part-123\n",
        )
        .expect("write");
        let c = Config::load(Some(&path)).expect("valid");
        let y = c.to_redacted_yaml();
        assert!(!y.contains("secret-part-123"), "{y}");
        assert!(format!("{c:?}").contains("<redacted>"));
        assert!(!format!("{c:?}").contains("secret-part-123"));

        let yaml = "alerts:\n  channels:\n    - name: mail\n      email: [a@example.com]\n";
        std::fs::write(&path, yaml).expect("write");
        let e = Config::load(Some(&path)).expect_err("no smtp").to_string();
        assert!(e.contains("alerts.channels.mail.email"), "{e}");
        let yaml = "alerts:\n  ignore:\n    - id: CVE-1\n";
        std::fs::write(&path, yaml).expect("write");
        let e = Config::load(Some(&path))
            .expect_err("no reason")
            .to_string();
        assert!(e.contains("reason"), "{e}");
    }

    #[test]
    fn a_teams_webhook_is_https_without_credentials_and_never_printed() {
        let dir = tempfile::tempdir().expect("dir");
        let hook = dir.path().join("hook");
        let path = dir.path().join("c.yaml");
        let yaml = format!(
            "teams:\n  routes:\n    pay:\n      msteams_webhook_file: {h}\nalerts:\n  channels:\n    - name: sec\n      msteams_webhook_file: {h}\n",
            h = hook.display()
        );
        std::fs::write(&path, yaml).expect("write");
        for (url, why) in [
            (
                "http://example.webhook.office.com/webhookb2/secret-part-123",
                "https",
            ),
            (
                "https://u:secret-part-123@example.webhook.office.com/x",
                "user name",
            ),
            ("not a url secret-part-123", "not a URL"),
        ] {
            std::fs::write(&hook, url).expect("write");
            let e = Config::load(Some(&path)).expect_err(url).to_string();
            assert!(e.contains("msteams") || e.contains("Teams"), "{e}");
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("secret-part-123"), "{e}");
        }
        for ok in [
            "https://prod-01.westeurope.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=secret-part-123",
            "http://127.0.0.1:8080/relay/secret-part-123",
        ] {
            std::fs::write(&hook, ok).expect("write");
            let c = Config::load(Some(&path)).expect(ok);
            assert!(c.alerts.channels[0].msteams_webhook.is_some());
            assert!(c.teams.routes["pay"].msteams_webhook.is_some());
            assert!(!format!("{c:?}").contains("secret-part-123"));
            assert!(!c.to_redacted_yaml().contains("secret-part-123"));
        }
        // Inline, it is refused like every secret.
        let e = Config::from_yaml(
            "alerts:\n  channels:\n    - name: a\n      msteams_webhook: https://x.example/y\n",
        )
        .expect_err("inline");
        assert!(e.contains("msteams_webhook"), "{e}");
    }
}
