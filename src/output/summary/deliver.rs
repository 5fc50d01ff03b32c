//! Mailing a month: once per month and audience (scope + recipient list), whatever the
//! number of replicas or restarts.
//!
//! Each send is claimed in the store first (`sent_summaries`, state `sending`, in a
//! write transaction, so two processes cannot both claim), then mailed, then marked
//! `sent`. A claim older than `CLAIM_LEASE` is taken to be abandoned (the process died
//! mid-send) and is taken over: the one case where a message can go out twice, with the
//! same Message-ID, so mail clients show it once.

use std::collections::{BTreeSet, HashMap};

use crate::store::db::{OptionalExtension, params};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::history::{self, History};
use super::month::Month;
use super::render;
use super::report::{self, Options, Scope};
use crate::config::Config;
use crate::mail::{Mail, Mailer};
use crate::metrics::Metrics;
use crate::store::Store;

/// Longer than a send with every retry (6 attempts, backoff up to a minute, 30 s timeouts).
pub const CLAIM_LEASE: i64 = 30 * 60;

/// Who gets which view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    pub scope: Scope,
    /// Sorted, deduplicated.
    pub to: Vec<String>,
}

impl Audience {
    pub fn new(scope: Scope, to: &[String]) -> Audience {
        let to: BTreeSet<String> = to.iter().map(|a| a.trim().to_owned()).collect();
        Audience {
            scope,
            to: to.into_iter().collect(),
        }
    }

    /// The idempotency key: scope and a hash of the recipients (a changed list is a new
    /// audience and gets the month too).
    pub fn key(&self) -> String {
        format!("{}#{}", self.scope.id(), &self.recipients_hash()[..16])
    }

    fn recipients_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.scope.id().as_bytes());
        for t in &self.to {
            h.update([0]);
            h.update(t.to_ascii_lowercase().as_bytes());
        }
        crate::model::hex(&h.finalize())
    }

    /// Stable per cluster, month and audience.
    pub fn message_id(&self, cluster: &str, month: Month, domain: &str) -> String {
        let mut h = Sha256::new();
        h.update(cluster.as_bytes());
        h.update([0]);
        h.update(self.key().as_bytes());
        let hash = crate::model::hex(&h.finalize());
        format!("summary-{month}-{}@{domain}", &hash[..20])
    }
}

/// Everyone to mail: `summary.to` gets the cluster, each team route with email its view.
pub fn audiences(config: &Config) -> Vec<Audience> {
    let mut out = Vec::new();
    if !config.summary.to.is_empty() {
        out.push(Audience::new(Scope::Cluster, &config.summary.to));
    }
    if config.summary.teams {
        for (name, route) in &config.teams.routes {
            if !route.email.is_empty() {
                out.push(Audience::new(Scope::Team(name.clone()), &route.email));
            }
        }
    }
    out
}

/// What happened for one audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    AlreadySent,
    /// Another process claimed it within the lease.
    InProgressElsewhere,
    /// The team has no namespace: nothing to report.
    NoNamespaces,
    /// Failed within the retry interval; tried again later.
    Waiting,
    /// The server refused for good earlier; not retried automatically.
    RefusedEarlier(String),
    /// The server refused for good (5xx).
    Refused(String),
    /// Not sent this time; retried after `summary.retry_interval`.
    Failed(String),
}

impl Outcome {
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Refused(_) | Outcome::Failed(_) | Outcome::RefusedEarlier(_)
        )
    }
    /// Still to be sent by a later attempt.
    pub fn pending(&self) -> bool {
        matches!(
            self,
            Outcome::Failed(_) | Outcome::Waiting | Outcome::InProgressElsewhere
        )
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Sent => f.write_str("sent"),
            Outcome::AlreadySent => f.write_str("already sent"),
            Outcome::InProgressElsewhere => f.write_str("being sent by another process"),
            Outcome::NoNamespaces => f.write_str("no namespace names this team; nothing sent"),
            Outcome::Waiting => f.write_str("failed earlier; waiting to retry"),
            Outcome::RefusedEarlier(e) => write!(f, "refused earlier, not retried: {e}"),
            Outcome::Refused(e) => write!(f, "refused: {e}"),
            Outcome::Failed(e) => write!(f, "failed, will retry: {e}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// Automatic (scheduled) sends skip refused ones and wait `retry_after` after a failure;
    /// a person running `summary --send` retries both.
    pub automatic: bool,
    pub retry_after: i64,
}

enum Claim {
    Claimed,
    Skip(Outcome),
}

/// This process, in claims (for the log and for a human reading the table).
fn me() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

fn claim(
    store: &mut Store,
    month: Month,
    aud: &Audience,
    message_id: &str,
    now: i64,
    opts: SendOptions,
) -> Result<Claim> {
    let key = aud.key();
    let owner = me();
    store.write(|conn| {
        let row: Option<(String, i64, Option<String>)> = conn
            .query_row(
                "SELECT state, claimed_at, last_error FROM sent_summaries
                 WHERE month = ?1 AND audience = ?2",
                params![month.to_string(), key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((state, at, err)) = row {
            match state.as_str() {
                "sent" => return Ok(Claim::Skip(Outcome::AlreadySent)),
                "sending" if now - at < CLAIM_LEASE => {
                    return Ok(Claim::Skip(Outcome::InProgressElsewhere));
                }
                "refused" if opts.automatic => {
                    return Ok(Claim::Skip(Outcome::RefusedEarlier(
                        err.unwrap_or_default(),
                    )));
                }
                "failed" if opts.automatic && now - at < opts.retry_after => {
                    return Ok(Claim::Skip(Outcome::Waiting));
                }
                _ => {}
            }
        }
        conn.execute(
            "INSERT INTO sent_summaries(month, audience, scope, recipients, message_id, state,
                                        claimed_by, claimed_at, attempts)
             VALUES(?1, ?2, ?3, ?4, ?5, 'sending', ?6, ?7, 1)
             ON CONFLICT(month, audience) DO UPDATE SET state = 'sending',
                 claimed_by = excluded.claimed_by, claimed_at = excluded.claimed_at,
                 attempts = sent_summaries.attempts + 1, message_id = excluded.message_id",
            params![
                month.to_string(),
                key,
                aud.scope.id(),
                aud.to.join(", "),
                message_id,
                owner,
                now
            ],
        )?;
        Ok(Claim::Claimed)
    })
}

fn finish(
    store: &mut Store,
    month: Month,
    aud: &Audience,
    outcome: &Outcome,
    now: i64,
) -> Result<()> {
    let (state, err) = match outcome {
        Outcome::Sent => ("sent", None),
        Outcome::Refused(e) => ("refused", Some(e.as_str())),
        Outcome::Failed(e) => ("failed", Some(e.as_str())),
        _ => return Ok(()),
    };
    store.write(|conn| {
        conn.execute(
            "UPDATE sent_summaries SET state = ?3, last_error = ?4,
                 sent_at = CASE WHEN ?3 = 'sent' THEN ?5 ELSE sent_at END,
                 claimed_at = ?5
             WHERE month = ?1 AND audience = ?2",
            params![month.to_string(), aud.key(), state, err, now],
        )?;
        Ok(())
    })
}

/// The options a month of this config is computed with.
pub fn options(config: &Config, month: Month, scope: Scope, now: DateTime<Utc>) -> Options {
    let fleet = config.store.is_postgres();
    Options {
        // A fleet store's summary is the fleet's.
        cluster: if fleet {
            config.fleet.clone()
        } else {
            config.cluster.clone()
        },
        fleet,
        month,
        tz: config.summary.timezone.tz(),
        now,
        scope,
        top: config.summary.top,
        team_annotation: config.teams.annotation.clone(),
        dojo_url: config.defectdojo.as_ref().map(|d| d.url.clone()),
        dojo_per_workload: config.defectdojo.as_ref().is_some_and(|d| {
            [&d.product_type, &d.product, &d.engagement, &d.test]
                .iter()
                .any(|t| t.uses_workload_fields())
        }),
    }
}

fn sender_domain(config: &Config) -> String {
    config
        .smtp
        .as_ref()
        .and_then(|s| crate::mail::parse_mailbox(&s.from).ok())
        .map(|m| m.email.domain().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "trivy-digest".into())
}

/// Mails `month` to `audiences`, each at most once. Errors are about the store; mail
/// failures are outcomes (logged, counted in metrics, retried later).
#[allow(clippy::too_many_arguments)] // each is a distinct input of one send
pub async fn send_month(
    config: &Config,
    store: &mut Store,
    mailer: &Mailer,
    month: Month,
    now: DateTime<Utc>,
    audiences: &[Audience],
    opts: SendOptions,
    metrics: Option<&Metrics>,
) -> Result<Vec<(Audience, Outcome)>> {
    let domain = sender_domain(config);
    // One history for every audience (the window depends on the month, not the scope),
    // loaded only once something is to be sent: the scheduler calls this at every
    // wake-up, long after the month went out.
    let (since, until) = report::history_window(&options(config, month, Scope::Cluster, now));
    let mut history: Option<History> = None;
    let mut annotations = None;
    let mut out = Vec::with_capacity(audiences.len());
    for aud in audiences {
        let message_id = aud.message_id(&config.cluster, month, &domain);
        if let Scope::Team(team) = &aud.scope {
            let a = match &annotations {
                Some(a) => a,
                None => annotations.insert(history::namespace_annotations(store)?),
            };
            if history::namespaces_of(a, &config.teams.annotation, team).is_empty() {
                tracing::info!(team = %team, month = %month,
                    "no namespace has {}={team}; no summary for this team", config.teams.annotation);
                out.push((aud.clone(), Outcome::NoNamespaces));
                continue;
            }
        }
        match claim(store, month, aud, &message_id, now.timestamp(), opts)? {
            Claim::Skip(o) => {
                tracing::debug!(month = %month, audience = %aud.key(), "summary: {o}");
                out.push((aud.clone(), o));
                continue;
            }
            Claim::Claimed => {}
        }
        // Claimed: whatever fails from here is recorded as a failure (retried after
        // summary.retry_interval), not left as a claim that blocks the month for the
        // lease, and the other audiences still get theirs.
        let built = (|| -> Result<Mail> {
            let h = match &mut history {
                Some(h) => h,
                None => history.insert(History::load(store, since, until)?),
            };
            let summary =
                report::compute(store, h, &options(config, month, aud.scope.clone(), now))?;
            Ok(Mail {
                to: aud.to.clone(),
                subject: summary.subject(),
                text: render::text_with(&summary, &config.summary.templates)?,
                html: render::html_with(&summary, &config.summary.templates)?,
                message_id: Some(message_id),
            })
        })();
        let mail = match built {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(month = %month, scope = %aud.scope.id(), error = %format!("{e:#}"),
                    "monthly summary not built; retrying in {}",
                    humantime::format_duration(config.summary.retry_interval.0));
                if let Some(m) = metrics {
                    m.summary_failures.inc();
                }
                let outcome = Outcome::Failed(format!("{e:#}"));
                finish(store, month, aud, &outcome, now.timestamp())
                    .context("store: recording the summary send")?;
                out.push((aud.clone(), outcome));
                continue;
            }
        };
        let outcome = match mailer.send(&mail).await {
            Ok(()) => {
                tracing::info!(month = %month, scope = %aud.scope.id(), to = %aud.to.join(", "),
                    bytes = mail.html.len() + mail.text.len(), "monthly summary sent");
                if let Some(m) = metrics {
                    m.summaries_sent.inc();
                }
                Outcome::Sent
            }
            Err(e) => {
                if let Some(m) = metrics {
                    m.summary_failures.inc();
                }
                if e.is_retryable() {
                    tracing::error!(month = %month, scope = %aud.scope.id(), error = %e,
                        "monthly summary not sent; retrying in {}",
                        humantime::format_duration(config.summary.retry_interval.0));
                    Outcome::Failed(e.to_string())
                } else {
                    tracing::error!(month = %month, scope = %aud.scope.id(), error = %e,
                        "monthly summary refused; not retried automatically (run `trivy-digest summary --send` once fixed)");
                    Outcome::Refused(e.to_string())
                }
            }
        };
        // The injected clock, like the claim: retry waits are measured in one time line.
        finish(store, month, aud, &outcome, now.timestamp())
            .context("store: recording the summary send")?;
        out.push((aud.clone(), outcome));
    }
    Ok(out)
}

/// What the store recorded per audience for `month` (state, attempts), for tests and logs.
pub fn recorded(store: &Store, month: Month) -> Result<HashMap<String, (String, i64)>> {
    let mut stmt = store
        .conn()
        .prepare("SELECT audience, state, attempts FROM sent_summaries WHERE month = ?1")?;
    let rows = stmt.query_map(params![month.to_string()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            (r.get::<_, String>(1)?, r.get::<_, i64>(2)?),
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (k, v) = row?;
        out.insert(k, v);
    }
    Ok(out)
}
