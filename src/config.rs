//! Configuration: one YAML file plus environment overrides for the essentials and every
//! secret. Secrets come from the environment or from files only (`*_FILE` variables for
//! mounted Kubernetes Secrets), never from the YAML itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

pub use crate::mail::{SmtpConfig, SmtpTls};
pub use crate::retry::RetryConfig;
use crate::secret::{Secret, read_secret_file};
pub use crate::settings::{ConfigError, HumanDuration};
use crate::store::StoreLocation;
use crate::template::Template;

pub const DEFAULT_CONFIG_FILE: &str = "trivy-digest.yaml";
pub const DEFAULT_STORE_FILE: &str = "trivy-digest.db";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Cluster name: the default DefectDojo product, and a guard against mixing clusters in one store.
    pub cluster: String,
    /// The store: an SQLite file (the default), or a `postgres://` URL (fleet mode).
    pub store: StoreLocation,
    /// The fleet's name, in fleet mode: the default DefectDojo product (`{{ fleet }}`)
    /// and the summary's title.
    pub fleet: String,
    /// A file holding the PostgreSQL store's password (a mounted Secret); or
    /// TRIVY_DIGEST_STORE_PASSWORD (or _FILE) in the environment.
    pub store_password_file: Option<PathBuf>,
    /// The password read from `store_password_file` or the environment.
    #[serde(skip)]
    pub store_password: Option<Secret>,
    /// How long an image stays exported after the last workload using it disappeared.
    /// Longer than the operator's report TTL (24h), so daily re-creation changes nothing.
    pub grace_period: HumanDuration,
    /// Which reports are read from the cluster (`run`, `scan --from cluster`).
    pub kube: KubeConfig,
    /// The controller (`run`).
    pub run: RunConfig,
    pub defectdojo: Option<DojoConfig>,
    /// Outgoing mail (alerts and summaries); none configured means no email is sent.
    pub smtp: Option<SmtpConfig>,
    /// Team routes: a namespace names one with an annotation; alerts and summaries for
    /// its namespaces go to the route's destinations.
    pub teams: TeamsConfig,
    /// Critical alerts (Slack, email).
    pub alerts: crate::output::alert::config::AlertsConfig,
    /// Monthly summary.
    pub summary: crate::output::summary::config::SummaryConfig,
    /// The inventory as read-only JSON at `/api/v1/` (`run`).
    pub api: crate::api::ApiConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: "kubernetes".into(),
            store: StoreLocation::Sqlite(PathBuf::from(DEFAULT_STORE_FILE)),
            store_password_file: None,
            store_password: None,
            fleet: "fleet".into(),
            grace_period: HumanDuration(Duration::from_secs(24 * 3600)),
            kube: KubeConfig::default(),
            run: RunConfig::default(),
            defectdojo: None,
            smtp: None,
            teams: TeamsConfig::default(),
            alerts: Default::default(),
            summary: Default::default(),
            api: Default::default(),
        }
    }
}

/// Namespaces route themselves to a team by annotation; the team's destinations are
/// defined here, never in the annotation (a namespace owner cannot send data elsewhere).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeamsConfig {
    /// Namespace annotation whose value names a team below.
    pub annotation: String,
    pub routes: std::collections::BTreeMap<String, TeamRoute>,
}

impl Default for TeamsConfig {
    fn default() -> Self {
        TeamsConfig {
            annotation: "trivy-digest.io/team".into(),
            routes: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamRoute {
    /// Recipients of this team's alerts and monthly summary.
    pub email: Vec<String>,
    /// Slack incoming webhook URL, read from `slack_webhook_file` (a mounted Secret) or
    /// `slack_webhook_env`.
    #[serde(flatten)]
    pub slack_webhook: crate::output::alert::config::SlackWebhook,
    /// Microsoft Teams incoming webhook or Workflows URL, from `msteams_webhook_file` or
    /// `msteams_webhook_env`.
    #[serde(flatten)]
    pub msteams_webhook: crate::output::alert::config::MsTeamsWebhook,
    /// A generic JSON webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<crate::output::alert::config::WebhookConfig>,
    #[serde(flatten, skip_serializing)]
    pub unknown: crate::secret::DenyUnknown<TeamRoute>,
}

impl TeamsConfig {
    /// Some team route has email recipients.
    pub fn any_email(&self) -> bool {
        self.routes.values().any(|r| !r.email.is_empty())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (name, route) in &self.routes {
            let field = format!("teams.routes.{name}");
            route.slack_webhook.check_url(&field)?;
            crate::output::alert::config::check_msteams_url(&route.msteams_webhook, &field)?;
            if let Some(w) = &route.webhook {
                w.validate(&field)?;
            }
        }
        Ok(())
    }
}

impl crate::secret::KnownKeys for TeamRoute {
    const KEYS: &'static [&'static str] = &[
        "email",
        "slack_webhook_file",
        "slack_webhook_env",
        "msteams_webhook_file",
        "msteams_webhook_env",
        "webhook",
    ];
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeConfig {
    /// Namespace globs (`*`, `?`) to read; empty reads all.
    pub include_namespaces: Vec<String>,
    /// Namespace globs to skip (`kube-system`, `calico-*`); wins over include.
    pub exclude_namespaces: Vec<String>,
    /// Kubernetes label selector on the report objects, e.g. `!trivy-digest.io/ignore`.
    pub label_selector: Option<String>,
    /// Report kinds to read; empty reads all twelve.
    pub kinds: Vec<crate::model::ReportKind>,
    /// Objects per list page: bounds memory during a (re)list.
    pub page_size: u32,
    /// Read Pods for the digest of reports that have none.
    pub digest_recovery: bool,
    /// How often kinds whose CRD is absent are looked for again.
    pub crd_recheck: HumanDuration,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            include_namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            label_selector: None,
            kinds: Vec::new(),
            page_size: 25,
            digest_recovery: true,
            crd_recheck: HumanDuration(Duration::from_secs(60)),
        }
    }
}

impl KubeConfig {
    pub fn kinds(&self) -> Vec<crate::model::ReportKind> {
        if self.kinds.is_empty() {
            crate::model::ReportKind::ALL.to_vec()
        } else {
            self.kinds.clone()
        }
    }

    /// True when reports of `namespace` are read (cluster-scoped reports, namespace "",
    /// are read unless `""` is excluded explicitly).
    pub fn namespace_wanted(&self, namespace: &str) -> bool {
        self.namespace_filter().admits(namespace)
    }

    pub fn namespace_filter(&self) -> crate::scope::NamespaceFilter {
        crate::scope::NamespaceFilter {
            include: self.include_namespaces.clone(),
            exclude: self.exclude_namespaces.clone(),
        }
    }

    /// What a complete list of `kinds` under these filters covers.
    pub fn coverage(
        &self,
        kinds: impl IntoIterator<Item = crate::model::ReportKind>,
    ) -> crate::scope::Coverage {
        crate::scope::Coverage {
            kinds: kinds.into_iter().collect(),
            namespaces: self.namespace_filter(),
            label_selector: self.label_selector.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: String,
    /// Changes are pushed to DefectDojo at most once per test per interval.
    pub export_interval: HumanDuration,
    /// Events are written to the store in batches of at most this long.
    pub batch_window: HumanDuration,
    /// On SIGTERM: time allowed to finish in-flight pushes before exiting.
    pub shutdown_grace: HumanDuration,
    /// An HTTP client must send its request head within this long (also the keep-alive
    /// idle limit); slow or idle connections are closed.
    pub header_read_timeout: HumanDuration,
    /// Open HTTP connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    pub leader_election: LeaderConfig,
    /// With a fleet store (PostgreSQL): how long the store's lease on the outputs lasts
    /// unrenewed. One replica of one cluster runs DefectDojo, alerts and summaries for
    /// the fleet; if it dies, another cluster's takes over within this long.
    pub fleet_lease: HumanDuration,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            listen: "0.0.0.0:8080".into(),
            export_interval: HumanDuration(Duration::from_secs(30)),
            batch_window: HumanDuration(Duration::from_secs(1)),
            shutdown_grace: HumanDuration(Duration::from_secs(20)),
            header_read_timeout: HumanDuration(Duration::from_secs(10)),
            max_connections: 256,
            leader_election: LeaderConfig::default(),
            fleet_lease: HumanDuration(Duration::from_secs(15)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderConfig {
    /// Off: this process always leads (one replica, or local use).
    pub enabled: bool,
    /// Namespace of the Lease (env POD_NAMESPACE when empty).
    pub namespace: Option<String>,
    pub lease_name: String,
    /// A leader that has not renewed for this long is replaced.
    pub lease_duration: HumanDuration,
    pub renew_interval: HumanDuration,
    /// This replica's name in the Lease (env POD_NAME, else the host name).
    pub identity: Option<String>,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            enabled: true,
            namespace: None,
            lease_name: "trivy-digest".into(),
            lease_duration: HumanDuration(Duration::from_secs(15)),
            renew_interval: HumanDuration(Duration::from_secs(5)),
            identity: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DojoConfig {
    /// Base URL, e.g. `https://defectdojo.example.com` (env `DEFECTDOJO_URL`).
    #[serde(serialize_with = "serialize_redacted_url")]
    pub url: String,
    /// File holding the API token (env `DEFECTDOJO_TOKEN` or `DEFECTDOJO_TOKEN_FILE` win).
    pub token_file: Option<PathBuf>,
    #[serde(skip_deserializing)]
    pub token: Option<Secret>,
    pub product_type: Template,
    pub product: Template,
    pub engagement: Template,
    /// Test title, also sent as `service` so that fixed findings are closed.
    pub test: Template,
    /// Off (unset): findings of images that run nowhere, only seen in CI results, are not
    /// exported. Set: they go to this engagement (under the product the mapping gives
    /// without a namespace), one test per image repository, from its newest CI scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci_engagement: Option<Template>,
    /// Report families exported; SBOMs have no findings and are never exported.
    pub families: Vec<crate::model::Family>,
    pub environment: Option<String>,
    pub tags: Vec<String>,
    pub active: bool,
    pub verified: bool,
    pub do_not_reactivate: bool,
    /// Take over existing tests that carry no owner mark (made before owner marks, by
    /// another tool, or by an earlier store of this cluster whose data was lost). Off:
    /// only tests this store pushed to before are adopted; the rest are refused.
    pub adopt_tests: bool,
    /// `sync` makes the answer's statistics final; null leaves the server's default.
    pub deduplication_execution_mode: Option<String>,
    /// Parallel pushes; the first push into a new engagement is always alone.
    pub concurrency: usize,
    pub timeout: HumanDuration,
    pub retry: RetryConfig,
    /// PEM bundle of extra CA certificates.
    pub ca_bundle: Option<PathBuf>,
    /// Turns off TLS verification; logs a warning on every start.
    pub insecure_skip_tls_verify: bool,
}

impl Default for DojoConfig {
    fn default() -> Self {
        let t =
            |s: &str| Template::parse(s).unwrap_or_else(|e| unreachable!("built-in template: {e}"));
        DojoConfig {
            url: String::new(),
            token_file: None,
            token: None,
            product_type: t("Kubernetes"),
            product: t("{{ fleet | cluster }}"),
            engagement: t("trivy-digest"),
            test: t("{{ subject }}"),
            ci_engagement: None,
            families: vec![
                crate::model::Family::Vulnerability,
                crate::model::Family::Secret,
                crate::model::Family::ConfigAudit,
                crate::model::Family::Rbac,
                crate::model::Family::Infra,
                crate::model::Family::Compliance,
            ],
            environment: None,
            tags: Vec::new(),
            active: true,
            verified: false,
            do_not_reactivate: false,
            adopt_tests: false,
            deduplication_execution_mode: None,
            concurrency: 2,
            timeout: HumanDuration(Duration::from_secs(120)),
            retry: RetryConfig::default(),
            ca_bundle: None,
            insecure_skip_tls_verify: false,
        }
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
const fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The allowed range of one duration key, both ends included (docs/configuration.md
/// lists them). Zero makes timers spin or panic, huge values overflow timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub min: Duration,
    pub max: Duration,
}

impl Bounds {
    const fn new(min: Duration, max: Duration) -> Bounds {
        Bounds { min, max }
    }

    fn check(self, key: &str, value: HumanDuration) -> Result<(), ConfigError> {
        if value.0 < self.min || value.0 > self.max {
            return Err(ConfigError::Invalid(format!(
                "{key} {}: must be between {} and {}",
                humantime::format_duration(value.0),
                short(self.min),
                short(self.max)
            )));
        }
        Ok(())
    }
}

/// A bound as the docs write it: `10ms`, `1s`, `1h`, `3650d`.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match (s, d.subsec_millis()) {
        (0, 0) => "0s".into(),
        (0, ms) => format!("{ms}ms"),
        (s, _) if s % DAY == 0 => format!("{}d", s / DAY),
        (s, _) if s % HOUR == 0 => format!("{}h", s / HOUR),
        (s, _) if s % 60 == 0 => format!("{}m", s / 60),
        (s, _) => format!("{s}s"),
    }
}

const TIMEOUT: Bounds = Bounds::new(secs(1), secs(HOUR));
const INITIAL_BACKOFF: Bounds = Bounds::new(millis(10), secs(HOUR));
const MAX_BACKOFF: Bounds = Bounds::new(millis(10), secs(HOUR));
/// Upper bound of `run.max_connections` (beyond it the fd limit is the real limit).
pub const MAX_CONNECTIONS_LIMIT: usize = 65_536;

fn retry_durations(prefix: &str, r: &RetryConfig) -> [(String, HumanDuration, Bounds); 2] {
    [
        (
            format!("{prefix}.retry.initial_backoff"),
            r.initial_backoff,
            INITIAL_BACKOFF,
        ),
        (
            format!("{prefix}.retry.max_backoff"),
            r.max_backoff,
            MAX_BACKOFF,
        ),
    ]
}

impl Config {
    /// Every duration key with its value and allowed range.
    fn durations(&self) -> Vec<(String, HumanDuration, Bounds)> {
        let mut v: Vec<(String, HumanDuration, Bounds)> = vec![
            // Zero is allowed: gone means gone at once (one complete `scan` per run).
            (
                "grace_period".into(),
                self.grace_period,
                Bounds::new(Duration::ZERO, secs(3650 * DAY)),
            ),
            (
                "kube.crd_recheck".into(),
                self.kube.crd_recheck,
                Bounds::new(secs(1), secs(DAY)),
            ),
            (
                "run.export_interval".into(),
                self.run.export_interval,
                Bounds::new(millis(100), secs(DAY)),
            ),
            (
                "run.fleet_lease".into(),
                self.run.fleet_lease,
                Bounds::new(secs(1), secs(HOUR)),
            ),
            (
                "run.batch_window".into(),
                self.run.batch_window,
                Bounds::new(millis(10), secs(600)),
            ),
            (
                "run.shutdown_grace".into(),
                self.run.shutdown_grace,
                Bounds::new(Duration::ZERO, secs(HOUR)),
            ),
            (
                "run.header_read_timeout".into(),
                self.run.header_read_timeout,
                Bounds::new(millis(100), secs(600)),
            ),
            // The Lease stores whole seconds.
            (
                "run.leader_election.lease_duration".into(),
                self.run.leader_election.lease_duration,
                Bounds::new(secs(1), secs(HOUR)),
            ),
            (
                "run.leader_election.renew_interval".into(),
                self.run.leader_election.renew_interval,
                Bounds::new(millis(100), secs(HOUR)),
            ),
            ("alerts.timeout".into(), self.alerts.timeout, TIMEOUT),
            (
                "alerts.batch_window".into(),
                self.alerts.batch_window,
                Bounds::new(millis(100), secs(DAY)),
            ),
            (
                "summary.retry_interval".into(),
                self.summary.retry_interval,
                Bounds::new(secs(1), secs(31 * DAY)),
            ),
        ];
        v.extend(retry_durations("alerts", &self.alerts.retry));
        if let Some(d) = &self.defectdojo {
            v.push(("defectdojo.timeout".into(), d.timeout, TIMEOUT));
            v.extend(retry_durations("defectdojo", &d.retry));
        }
        if let Some(m) = &self.smtp {
            v.push(("smtp.timeout".into(), m.timeout, TIMEOUT));
            v.extend(retry_durations("smtp", &m.retry));
        }
        v
    }
}

/// An empty path makes SQLite open a temporary database: every sweep would start from
/// nothing and its history be thrown away.
fn check_store(location: &StoreLocation, key: &str) -> Result<(), ConfigError> {
    let Some(path) = location.sqlite_path() else {
        return Ok(());
    };
    if path.as_os_str().to_string_lossy().trim().is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{key}: the store path must not be empty (an empty path would be a temporary \
             database, losing all history)"
        )));
    }
    Ok(())
}

/// `https://user:pass@host/x` as `https://<redacted>@host/x`; anything else unchanged.
/// Works on text that is not a valid URL too, so that an error can show it.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at a path, query, fragment, quote, line end or the next URL;
        // at a space only if the text before it already has the `@`: an invalid URL
        // may hold a space inside its password.
        let delim = tail
            .find(['/', '?', '#', '"', '\'', '`', '\n'])
            .unwrap_or(tail.len());
        let next_url = tail.find("://").map_or(tail.len(), |j| {
            tail[..j].rfind(char::is_whitespace).unwrap_or(0)
        });
        let hard_end = delim.min(next_url);
        let ws_end = tail[..hard_end]
            .find(char::is_whitespace)
            .unwrap_or(hard_end);
        let end = if tail[..ws_end].contains('@') {
            ws_end
        } else {
            hard_end
        };
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("<redacted>");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn serialize_redacted_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_userinfo(url))
}

/// Key names whose values are secrets (or may be, when written where they do not belong).
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k.ends_with("_file") || k.ends_with("_env") {
        return false;
    }
    [
        "token",
        "password",
        "passwd",
        "secret",
        "webhook",
        "api_key",
        "apikey",
        "credential",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// Removes from a parse error message every value the YAML gives a secret-looking key,
/// and any password in a URL.
fn redact_secrets(message: &str, yaml: &str) -> String {
    let mut values: Vec<&str> = Vec::new();
    for line in yaml.lines() {
        let line = line.trim_start().trim_start_matches("- ").trim_start();
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'').trim();
        if secret_key(key) && value.len() >= 3 {
            values.push(value);
        }
    }
    // Longest first, so that a value containing another is removed whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = redact_userinfo(message);
    for v in values {
        out = out.replace(v, "<redacted>");
    }
    out
}

/// Reads an environment variable, or the file named by `<NAME>_FILE`.
fn env_or_file(name: &str) -> Result<Option<String>, ConfigError> {
    if let Some(v) = std::env::var_os(name) {
        let v = v.into_string().map_err(|_| ConfigError::Env {
            name: name.into(),
            message: "not valid UTF-8".into(),
        })?;
        if !v.trim().is_empty() {
            return Ok(Some(v.trim().to_owned()));
        }
    }
    let file_var = format!("{name}_FILE");
    if let Some(p) = std::env::var_os(&file_var) {
        let path = PathBuf::from(p);
        return read_secret_file(&path)
            .map(Some)
            .map_err(|message| ConfigError::Env {
                name: file_var,
                message,
            });
    }
    Ok(None)
}

/// `name` (or `<name>_FILE`), else `alias`: the variable the peer importers
/// (trivy-dojo-report-operator and others) read, so their Secrets work unchanged.
fn env_or_alias(name: &str, alias: &str) -> Result<Option<String>, ConfigError> {
    let own = env_or_file(name)?;
    let theirs = std::env::var(alias)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    match (own, theirs) {
        (Some(v), Some(_)) => {
            tracing::warn!("{alias} is set beside {name}; using {name}");
            Ok(Some(v))
        }
        (Some(v), None) => Ok(Some(v)),
        (None, Some(v)) => {
            tracing::warn!(
                "reading {alias} as {name} (the name other importers use); prefer {name}"
            );
            Ok(Some(v))
        }
        (None, None) => Ok(None),
    }
}

impl DojoConfig {
    /// Why two clusters exporting with this mapping into one DefectDojo would push into
    /// the same tests, if they would: no template of the mapping always includes the
    /// cluster name. DefectDojo then treats each cluster's push as the whole test and
    /// closes the other cluster's findings (and their risk acceptances).
    pub fn cluster_collision(&self, cluster: &str) -> Option<String> {
        let keys = [
            ("product_type", &self.product_type),
            ("product", &self.product),
            ("engagement", &self.engagement),
            ("test", &self.test),
        ];
        if keys.iter().any(|(_, t)| t.always_includes_cluster()) {
            return None;
        }
        Some(format!(
            "the DefectDojo mapping gives cluster {cluster:?} the same product, engagement and test \
             as any other cluster (none of defectdojo.product_type, product, engagement or test \
             always contains {{{{ cluster }}}}; {}). If a second cluster exports into the same \
             DefectDojo with it, each push closes the other cluster's findings and removes their \
             risk acceptances. Put {{{{ cluster }}}} first in product or engagement, e.g. \
             product: \"{{{{ cluster }}}}\" or engagement: \"{{{{ cluster }}}}\", or export from one \
             cluster only",
            keys.iter()
                .map(|(k, t)| format!("{k}: {:?}", t.source()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

impl Config {
    /// Warnings about a configuration that is valid but risky; `config check` prints
    /// them and `run` and `scan` log them at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(d) = &self.defectdojo
            && let Some(w) = d.cluster_collision(&self.cluster)
        {
            out.push(w);
        }
        out
    }

    /// Loads `path`, or `trivy-digest.yaml` in the working directory if present, or the
    /// defaults; then applies the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(p) => Config::from_file(p)?,
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                Config::from_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => Config::default(),
        };
        config.apply_env()?;
        config.load_templates()?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and compiles the message template overrides (`alerts.templates`,
    /// `summary.templates`): a missing file or a syntax error stops the start.
    pub fn load_templates(&mut self) -> Result<(), ConfigError> {
        self.alerts.templates.load()?;
        self.summary.templates.load()
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let file_err = |message: String| ConfigError::File {
            path: path.display().to_string(),
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
        Config::from_yaml(&text).map_err(file_err)
    }

    pub fn from_yaml(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        // No snippet of the offending lines: they may hold a secret written inline by
        // mistake. Position and message are enough, and secret-looking values are
        // scrubbed from the message too.
        let options = serde_saphyr::options! { with_snippet: false };
        serde_saphyr::from_str_with_options::<Config>(text, options)
            .map_err(|e| redact_secrets(&e.to_string(), text))
    }

    fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Some(c) = env_or_file("TRIVY_DIGEST_CLUSTER")? {
            self.cluster = c;
        }
        if let Some(s) = env_or_file("TRIVY_DIGEST_STORE")? {
            self.store = StoreLocation::parse(&s)
                .map_err(|m| ConfigError::Invalid(format!("TRIVY_DIGEST_STORE: {m}")))?;
        }
        self.store_password = match (
            env_or_file("TRIVY_DIGEST_STORE_PASSWORD")?,
            &self.store_password_file,
        ) {
            (Some(p), _) => Some(Secret::new(p)),
            (None, Some(f)) => {
                Some(Secret::new(read_secret_file(f).map_err(|m| {
                    ConfigError::Invalid(format!("store_password_file: {m}"))
                })?))
            }
            (None, None) => None,
        };
        self.attach_store_password("store")?;
        let url = env_or_alias("DEFECTDOJO_URL", "DEFECT_DOJO_URL")?;
        let token = env_or_alias("DEFECTDOJO_TOKEN", "DEFECT_DOJO_API_KEY")?;
        // DEFECTDOJO_URL alone turns the export on with default mapping.
        if self.defectdojo.is_none() && url.is_some() {
            self.defectdojo = Some(DojoConfig::default());
        }
        if let Some(d) = &mut self.defectdojo {
            if let Some(u) = url {
                d.url = u;
            }
            d.token =
                match (token, &d.token_file) {
                    (Some(t), _) => Some(Secret::new(t)),
                    (None, Some(f)) => Some(Secret::new(read_secret_file(f).map_err(|m| {
                        ConfigError::Invalid(format!("defectdojo.token_file: {m}"))
                    })?)),
                    (None, None) => None,
                };
        }
        if let Some(m) = &mut self.smtp {
            let password = env_or_file("SMTP_PASSWORD")?;
            m.password = match (password, &m.password_file) {
                (Some(p), _) => Some(Secret::new(p)),
                (None, Some(f)) => {
                    Some(Secret::new(read_secret_file(f).map_err(|m| {
                        ConfigError::Invalid(format!("smtp.password_file: {m}"))
                    })?))
                }
                (None, None) => None,
            };
        }
        for (name, route) in &mut self.teams.routes {
            let field = format!("teams.routes.{name}");
            route.slack_webhook.resolve(&field)?;
            route.msteams_webhook.resolve(&field)?;
            if let Some(w) = &mut route.webhook {
                w.resolve(&field)?;
            }
        }
        self.alerts.resolve_secrets()?;
        Ok(())
    }

    /// Replaces the store (`--store`): a path, refusing an empty one, or a PostgreSQL URL.
    pub fn set_store(&mut self, store: &str) -> Result<(), ConfigError> {
        let location = StoreLocation::parse(store)
            .map_err(|m| ConfigError::Invalid(format!("--store: {m}")))?;
        check_store(&location, "--store")?;
        self.store = location;
        self.attach_store_password("--store")
    }

    /// The password read from TRIVY_DIGEST_STORE_PASSWORD or `store_password_file` goes
    /// to a PostgreSQL store; a URL holding one too is refused (which one was meant?).
    fn attach_store_password(&mut self, key: &str) -> Result<(), ConfigError> {
        let StoreLocation::Postgres(t) = &mut self.store else {
            return Ok(());
        };
        match (&self.store_password, &t.password) {
            (Some(_), Some(existing)) if Some(existing) != self.store_password.as_ref() => {
                Err(ConfigError::Invalid(format!(
                    "{key}: the URL holds a password and TRIVY_DIGEST_STORE_PASSWORD or \
                     store_password_file gives another; keep one (the file or the variable)"
                )))
            }
            (Some(p), _) => {
                t.password = Some(p.clone());
                Ok(())
            }
            (None, _) => Ok(()),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster.trim().is_empty() {
            return Err(ConfigError::Invalid("cluster: must not be empty".into()));
        }
        check_store(&self.store, "store")?;
        for (key, value, bounds) in self.durations() {
            bounds.check(&key, value)?;
        }
        if self.run.max_connections == 0 || self.run.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(ConfigError::Invalid(format!(
                "run.max_connections {}: must be between 1 and {MAX_CONNECTIONS_LIMIT}",
                self.run.max_connections
            )));
        }
        if self.kube.page_size == 0 {
            return Err(ConfigError::Invalid(
                "kube.page_size: must be at least 1".into(),
            ));
        }
        if self.run.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "run.listen {:?}: expected an address such as 0.0.0.0:8080",
                self.run.listen
            )));
        }
        let le = &self.run.leader_election;
        // A leader steps down two thirds of a lease duration after its last renewal
        // started (leader.rs): it must get to try again well before that.
        if le.renew_interval.0 * 3 >= le.lease_duration.0 * 2 {
            return Err(ConfigError::Invalid(format!(
                "run.leader_election: renew_interval ({}) must be shorter than two thirds of \
                 lease_duration ({}), the deadline after which a leader that could not renew \
                 steps down; e.g. lease_duration 15s, renew_interval 5s",
                humantime::format_duration(le.renew_interval.0),
                humantime::format_duration(le.lease_duration.0)
            )));
        }
        if let Some(d) = &self.defectdojo {
            // The URL is printed redacted: it may carry a password until refused below.
            let shown = redact_userinfo(&d.url);
            let url = reqwest::Url::parse(&d.url)
                .map_err(|e| ConfigError::Invalid(format!("defectdojo.url {shown:?}: {e}")))?;
            if !url.username().is_empty() || url.password().is_some() {
                // Credentials in the URL would be sent as Basic auth beside the token and
                // show in logs, links and `scan --format json`.
                return Err(ConfigError::Invalid(
                    "defectdojo.url must not contain a user name or password; put the API \
                     token in DEFECTDOJO_TOKEN"
                        .into(),
                ));
            }
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::Invalid(format!(
                    "defectdojo.url {shown:?}: must be http or https"
                )));
            }
            if d.token.is_none() {
                return Err(ConfigError::Invalid(
                    "defectdojo: no API token; set DEFECTDOJO_TOKEN, DEFECTDOJO_TOKEN_FILE or \
                     defectdojo.token_file"
                        .into(),
                ));
            }
            if d.concurrency == 0 {
                return Err(ConfigError::Invalid(
                    "defectdojo.concurrency: must be at least 1".into(),
                ));
            }
            if d.retry.max_attempts == 0 {
                return Err(ConfigError::Invalid(
                    "defectdojo.retry.max_attempts: must be at least 1".into(),
                ));
            }
            if d.families.contains(&crate::model::Family::Sbom) {
                return Err(ConfigError::Invalid(
                    "defectdojo.families: sbom reports have no findings to export".into(),
                ));
            }
            if let Some(m) = &d.deduplication_execution_mode
                && !matches!(m.as_str(), "async" | "async_wait" | "sync")
            {
                return Err(ConfigError::Invalid(format!(
                    "defectdojo.deduplication_execution_mode {m:?}: one of async, async_wait, sync"
                )));
            }
        }
        if let Some(m) = &self.smtp {
            if m.host.trim().is_empty() {
                return Err(ConfigError::Invalid("smtp.host: must not be empty".into()));
            }
            if m.from.trim().is_empty() {
                return Err(ConfigError::Invalid(
                    "smtp.from: a sender address is required".into(),
                ));
            }
            crate::mail::parse_mailbox(&m.from)
                .map_err(|e| ConfigError::Invalid(format!("smtp.from: {e}")))?;
            if m.password.is_some() && m.username.is_none() {
                return Err(ConfigError::Invalid(
                    "smtp: a password is set but no username".into(),
                ));
            }
        }
        if self.teams.annotation.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "teams.annotation: must not be empty".into(),
            ));
        }
        for (name, route) in &self.teams.routes {
            for addr in &route.email {
                crate::mail::parse_mailbox(addr).map_err(|e| {
                    ConfigError::Invalid(format!("teams.routes.{name}.email {addr:?}: {e}"))
                })?;
            }
            if !route.email.is_empty() && self.smtp.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "teams.routes.{name}.email: no smtp section to send with"
                )));
            }
        }
        let smtp = self.smtp.is_some();
        self.alerts.validate(smtp)?;
        self.summary.validate(smtp)?;
        self.teams.validate()?;
        Ok(())
    }

    /// The configuration as YAML, secrets redacted (for `config check`).
    pub fn to_redacted_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c = Config::from_yaml("cluster: prod\n").expect("ok");
        assert_eq!(c.cluster, "prod");
        assert_eq!(c.grace_period.0, Duration::from_secs(86400));
        let e = Config::from_yaml("clustr: prod\n").expect_err("typo");
        assert!(e.contains("clustr"), "{e}");
        let e =
            Config::from_yaml("defectdojo:\n  product: '{{ nope }}'\n").expect_err("bad template");
        assert!(e.contains("unknown field `nope`"), "{e}");
        let c = Config::from_yaml(
            "grace_period: 36h\ndefectdojo:\n  url: https://x\n  concurrency: 4\n",
        )
        .expect("ok");
        assert_eq!(c.grace_period.0, Duration::from_secs(36 * 3600));
        assert_eq!(c.defectdojo.expect("dojo").concurrency, 4);
    }

    /// The documented example must stay a valid configuration.
    #[test]
    fn the_example_config_parses() {
        let c = Config::from_yaml(include_str!("../examples/trivy-digest.yaml"))
            .expect("examples/trivy-digest.yaml");
        assert_eq!(c.teams.annotation, "trivy-digest.io/team");
        assert!(c.defectdojo.is_some());
    }

    #[test]
    fn userinfo_is_redacted_even_in_invalid_urls() {
        for (i, o) in [
            ("https://u:p@h/x", "https://<redacted>@h/x"),
            (
                "url \"https://u:p w@h x\": bad",
                "url \"https://<redacted>@h x\": bad",
            ),
            ("https://h/a@b", "https://h/a@b"),
            ("no url", "no url"),
            (
                "a http://u@h b https://x:y@z",
                "a http://<redacted>@h b https://<redacted>@z",
            ),
        ] {
            assert_eq!(redact_userinfo(i), o);
        }
    }

    #[test]
    fn parse_errors_drop_secret_values() {
        let yaml = "smtp:\n  password: \"hunter2hunter2\"\n  password_file: /p\n";
        let m = redact_secrets("bad value hunter2hunter2 near /p", yaml);
        assert_eq!(m, "bad value <redacted> near /p");
    }

    #[test]
    fn huge_durations_saturate() {
        assert_eq!(HumanDuration(Duration::MAX).as_secs_i64(), i64::MAX);
        assert_eq!(HumanDuration(Duration::from_secs(5)).as_secs_i64(), 5);
        assert_eq!(short(Duration::from_millis(100)), "100ms");
        assert_eq!(short(Duration::from_secs(3650 * DAY)), "3650d");
    }

    #[test]
    fn token_is_not_accepted_inline() {
        let e = Config::from_yaml("defectdojo:\n  token: abc\n").expect_err("inline token");
        assert!(e.contains("token"), "{e}");
    }

    #[test]
    fn redacted_yaml_hides_token() {
        let mut c = Config::default();
        let mut d = DojoConfig {
            url: "https://dojo".into(),
            ..Default::default()
        };
        d.token = Some(Secret::new("supersecrettoken"));
        c.defectdojo = Some(d);
        let y = c.to_redacted_yaml();
        assert!(!y.contains("supersecrettoken"), "{y}");
        assert!(y.contains("<redacted>"), "{y}");
    }

    /// The SMTP password and team webhooks, read from files, never show in `config check`
    /// or Debug.
    #[test]
    fn smtp_password_and_team_webhook_are_read_from_files_and_redacted() {
        let dir = tempfile::tempdir().expect("tmp");
        let pw = dir.path().join("password");
        let hook = dir.path().join("hook");
        std::fs::write(&pw, "smtp-pa55word\n").expect("write");
        std::fs::write(&hook, "https://hooks.slack.com/services/T0/B0/teamsecret").expect("write");
        let mut c = Config::from_yaml(&format!(
            "smtp:\n  host: mail.example.com\n  from: td@example.com\n  username: td\n  password_file: {}\nteams:\n  routes:\n    payments:\n      email: [pay@example.com]\n      slack_webhook_file: {}\n",
            pw.display(),
            hook.display()
        ))
        .expect("config");
        c.apply_env().expect("secrets");
        c.validate().expect("valid");
        let smtp = c.smtp.as_ref().expect("smtp");
        assert_eq!(
            smtp.password.as_ref().map(Secret::expose),
            Some("smtp-pa55word")
        );
        let route = &c.teams.routes["payments"];
        assert!(route.slack_webhook.is_some());
        for text in [c.to_redacted_yaml(), format!("{c:?}")] {
            assert!(!text.contains("pa55word"), "{text}");
            assert!(!text.contains("teamsecret"), "{text}");
        }
        // A missing file names the field.
        std::fs::remove_file(&pw).expect("rm");
        let e = c.apply_env().expect_err("missing password file");
        assert!(e.to_string().contains("smtp.password_file"), "{e}");
    }
}
