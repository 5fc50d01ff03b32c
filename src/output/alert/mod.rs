//! Critical alerts: a finding new for its image repository, sent once per image per
//! batch window to Slack and email.
//!
//! The store's `opened` finding events (never `reopened`) past a cursor are routed to
//! destinations (channels and team routes, each with its filters and the ignore list) and
//! queued in `alert_items` in the same transaction that advances the cursor. Delivery
//! groups a destination's queue per image repository, checks DefectDojo's triage state
//! at send time, respects the hourly cap (a flood becomes one digest message), and marks
//! items sent only after the server accepted the message. Restarts, report re-creation
//! and rollouts create no `opened` event, so they never alert again.

pub mod channel;
pub(crate) mod compose;
pub mod config;
mod decide;
mod output;
mod queue;
pub mod template;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use compose::{Group, Message};
pub use decide::{Destination, destinations};
pub use output::AlertOutput;
pub use queue::PlanStats;

use crate::config::Config;
use crate::mail::Mailer;
use crate::metrics::{AlertLabel, Metrics};
use crate::output::dojo::DojoClient;
use crate::retry::Backoff;
use crate::store::Store;
use crate::store::triage::{self, TriageFlags};

/// A delivery failure, without the webhook URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// The destination refused for good (Slack 4xx such as `no_service`, SMTP 5xx, a
    /// message that cannot be rendered): not retried until the next start or an hour.
    #[error("{0}")]
    Permanent(String),
    /// Retries ran out (server down, rate limited, timeouts): retried next round.
    #[error("{0}")]
    Transient(String),
}

/// A destination that refused for good is left alone this long (the queue keeps its
/// alerts; a restart with a fixed configuration sends them at once).
const PARK: Duration = Duration::from_secs(3600);
/// How long a sender holds the store's alert-sending lease if it dies without releasing
/// it; longer than a round of sends with their retries.
const SENDER_LEASE: Duration = Duration::from_secs(600);

/// One message's fate.
#[derive(Debug, Clone, Serialize)]
pub struct SentMessage {
    pub destination: String,
    pub kind: &'static str,
    pub title: String,
    pub findings: usize,
    pub sent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DeliverReport {
    pub messages: Vec<SentMessage>,
    /// Alerts dropped at send time: triaged in DefectDojo (risk accepted, false positive,
    /// out of scope).
    pub accepted: u64,
    /// Dropped at send time by the ignore list (an entry added since they were queued).
    pub ignored_at_send: u64,
    /// Findings resolved before they could be sent.
    pub resolved: u64,
    /// Destinations over their hourly cap: their alerts wait.
    pub capped: Vec<String>,
    /// (destination, finding) alerts still queued.
    pub pending: u64,
    /// Another process sharing the store was sending: this one sent nothing, and the
    /// pending alerts are left to it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub other_sender: bool,
}

impl DeliverReport {
    pub fn failed(&self) -> usize {
        self.messages.iter().filter(|m| !m.sent).count()
    }
}

impl AlertSummary {
    /// Failed messages and a failed delivery, as Events.
    pub fn problems(&self) -> Vec<crate::output::Problem> {
        let mut out: Vec<crate::output::Problem> = self
            .delivery
            .messages
            .iter()
            .filter_map(|m| {
                m.error.as_ref().map(|e| crate::output::Problem {
                    reason: "AlertFailed",
                    message: format!("{}: {}: {e}", m.destination, m.title),
                })
            })
            .collect();
        if let Some(e) = &self.error {
            out.push(crate::output::Problem {
                reason: "AlertFailed",
                message: e.clone(),
            });
        }
        out
    }
}

/// What `scan` reports about alerts.
#[derive(Debug, Default, Clone, Serialize)]
pub struct AlertSummary {
    #[serde(flatten)]
    pub plan: PlanStats,
    #[serde(flatten)]
    pub delivery: DeliverReport,
    /// Why alerting could not run (setup or store); the sweep itself is committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct Alerter {
    cfg: config::AlertsConfig,
    team_annotation: String,
    /// The teams `teams.routes` defines.
    team_routes: BTreeSet<String>,
    /// (namespace, team) annotations naming an undefined team, warned about once.
    warned_teams: Mutex<HashSet<(String, String)>>,
    dests: Vec<Destination>,
    dojo: Option<(DojoClient, String)>,
    metrics: Option<Arc<Metrics>>,
    parked: Mutex<HashMap<String, Instant>>,
    /// This process's name in the sender lease.
    sender_id: String,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<String> = self.dests.iter().map(Destination::label).collect();
        f.debug_struct("Alerter")
            .field("destinations", &labels)
            .finish_non_exhaustive()
    }
}

impl Alerter {
    /// `None` when no channel or team route is configured: alerting is off.
    pub fn new(config: &Config, metrics: Option<Arc<Metrics>>) -> Result<Option<Alerter>> {
        if config.alerts.channels.is_empty() && config.teams.routes.is_empty() {
            return Ok(None);
        }
        let any_email = config.alerts.channels.iter().any(|c| !c.email.is_empty())
            || config.teams.routes.values().any(|r| !r.email.is_empty());
        let mailer = match (&config.smtp, any_email) {
            (Some(s), true) => Some(Mailer::new(s)?),
            _ => None,
        };
        let shared = Arc::new(channel::Shared {
            cluster: config.cluster.clone(),
            max_findings: config.alerts.max_findings_per_message,
            http: channel::client(config.alerts.timeout.0)?,
            backoff: Backoff::from_config(&config.alerts.retry),
            mailer,
            templates: config.alerts.templates.clone(),
        });
        let dests = destinations(config, &shared);
        if dests.is_empty() {
            return Ok(None);
        }
        // Asking DefectDojo is a refinement: quick and with few retries, so a DefectDojo
        // outage never holds an alert back for long (the stored read-back decides then).
        let dojo = match &config.defectdojo {
            Some(d) => {
                let mut quick = d.clone();
                quick.timeout.0 = quick.timeout.0.min(Duration::from_secs(15));
                quick.retry.max_attempts = quick.retry.max_attempts.min(2);
                Some((
                    DojoClient::new(&quick)?,
                    d.url.trim_end_matches('/').to_owned(),
                ))
            }
            None => None,
        };
        for e in config.alerts.expired_ignores(Utc::now()) {
            tracing::warn!(entry = %e.describe(), "alerts.ignore entry has expired: it no longer ignores anything");
        }
        Ok(Some(Alerter {
            cfg: config.alerts.clone(),
            team_annotation: config.teams.annotation.clone(),
            team_routes: config.teams.routes.keys().cloned().collect(),
            warned_teams: Mutex::new(HashSet::new()),
            dests,
            dojo,
            metrics,
            parked: Mutex::new(HashMap::new()),
            sender_id: format!("{}-{:016x}", std::process::id(), fastrand::u64(..)),
        }))
    }

    pub fn destinations(&self) -> &[Destination] {
        &self.dests
    }

    /// Routes and queues the findings opened since the last call (see `queue::plan`).
    pub fn plan(
        &self,
        store: &mut Store,
        now: DateTime<Utc>,
        baseline_allowed: bool,
    ) -> Result<PlanStats> {
        let stats = store.write(|c| {
            let teams = crate::store::query::teams_by_namespace(c, &self.team_annotation)?;
            if let Ok(mut warned) = self.warned_teams.lock() {
                for (ns, team) in unknown_teams(&teams, &self.team_routes, &mut warned) {
                    tracing::warn!(namespace = %ns, team = %team, annotation = %self.team_annotation,
                        "namespace names a team that teams.routes does not define: no team route receives its alerts");
                }
            }
            queue::plan(c, &self.cfg, &self.dests, &teams, now, baseline_allowed)
        })?;
        if stats.queued + stats.ignored + stats.released > 0 {
            tracing::info!(
                new_findings = stats.new_findings,
                queued = stats.queued,
                ignored = stats.ignored,
                released = stats.released,
                "alerts queued"
            );
        }
        Ok(stats)
    }

    /// Sends what is queued. Once `stopping()` is true no new message starts; the one in
    /// flight finishes and everything else stays queued.
    /// Sends what is pending, as the store's only sender: a `scan` beside `run` (or any
    /// two processes on one store) would otherwise both send the same pending alerts.
    pub async fn deliver(
        &self,
        store: &mut Store,
        now: DateTime<Utc>,
        stopping: &(dyn Fn() -> bool + Sync),
    ) -> Result<DeliverReport> {
        let ts = now.timestamp();
        let me = self.sender_id.as_str();
        if !store.write(|c| queue::claim_sender(c, me, ts, SENDER_LEASE.as_secs() as i64))? {
            tracing::info!(
                "another process sharing the store is sending alerts; leaving them to it"
            );
            return Ok(DeliverReport {
                pending: queue::pending_count(store.conn())?,
                other_sender: true,
                ..DeliverReport::default()
            });
        }
        let result = self.deliver_claimed(store, now, stopping).await;
        if let Err(e) = store.write(|c| queue::release_sender(c, me)) {
            tracing::warn!("cannot release the alert sender lease (it expires by itself): {e:#}");
        }
        result
    }

    async fn deliver_claimed(
        &self,
        store: &mut Store,
        now: DateTime<Utc>,
        stopping: &(dyn Fn() -> bool + Sync),
    ) -> Result<DeliverReport> {
        let ts = now.timestamp();
        let mut report = DeliverReport::default();
        let items = queue::pending(store.conn())?;
        let ci_items = queue::pending_ci(store.conn())?;
        let known: HashSet<&str> = self.dests.iter().map(|d| d.key.as_str()).collect();
        let orphans: Vec<i64> = items
            .iter()
            .filter(|i| !known.contains(i.destination.as_str()))
            .map(|i| i.id)
            .collect();
        let ci_orphans: Vec<i64> = ci_items
            .iter()
            .filter(|i| !known.contains(i.destination.as_str()))
            .map(|i| i.id)
            .collect();
        if !orphans.is_empty() || !ci_orphans.is_empty() {
            tracing::warn!(
                alerts = orphans.len() + ci_orphans.len(),
                "queued alerts for a destination no longer configured: dropped"
            );
            store.write(|c| {
                queue::settle(c, &orphans, "orphaned", "destination removed")?;
                queue::settle_ci(c, &ci_orphans, "orphaned", "destination removed")
            })?;
        }
        // A destination left alone (refused for good) or over its hourly cap sends nothing
        // this round: its alerts wait unchecked, so they cost no DefectDojo request.
        let mut room: HashMap<&str, usize> = HashMap::new();
        for d in &self.dests {
            let queued = items.iter().any(|i| i.destination == d.key)
                || ci_items.iter().any(|i| i.destination == d.key);
            if !queued || self.is_parked(&d.key) {
                continue;
            }
            let used = queue::sent_in_last_hour(store.conn(), &d.key, ts)?;
            let available = d.max_per_hour.saturating_sub(used) as usize;
            if available == 0 {
                tracing::info!(destination = %d.label(), cap = d.max_per_hour,
                    "hourly cap reached: alerts wait");
                report.capped.push(d.label());
                continue;
            }
            room.insert(d.key.as_str(), available);
        }
        let mut items: Vec<queue::Item> = items
            .into_iter()
            .filter(|i| room.contains_key(i.destination.as_str()))
            .collect();
        let mut ci_items: Vec<queue::CiItem> = ci_items
            .into_iter()
            .filter(|i| room.contains_key(i.destination.as_str()))
            .collect();
        if !ci_items.is_empty() {
            self.check_ci(store, &mut ci_items, now, &mut report)?;
        }
        if items.is_empty() && ci_items.is_empty() {
            report.pending = queue::pending_count(store.conn())?;
            self.gauges(store)?;
            return Ok(report);
        }

        // Checked at send time: the finding may be gone, ignored or triaged by now. Each
        // finding is read once, however many destinations it is queued for.
        let mut facts: HashMap<i64, queue::FindingFacts> = HashMap::new();
        for fid in items.iter().map(|i| i.finding_id).collect::<BTreeSet<_>>() {
            if let Some(f) = queue::finding_facts(store.conn(), fid)? {
                facts.insert(fid, f);
            }
        }
        let mut drop: BTreeMap<i64, (&'static str, String)> = BTreeMap::new();
        for it in &items {
            let Some(facts) = facts.get(&it.finding_id) else {
                drop.insert(it.id, ("resolved", "finding removed".into()));
                continue;
            };
            if facts.resolved {
                drop.insert(it.id, ("resolved", "resolved before it was sent".into()));
                continue;
            }
            let all_ignored = !it.namespaces.is_empty()
                && it.namespaces.iter().all(|ns| {
                    self.cfg
                        .ignore
                        .iter()
                        .any(|e| e.active(now) && decide::ignores(e, &facts.id, &facts.repo, ns))
                });
            if all_ignored {
                drop.insert(it.id, ("ignored", "ignore list".into()));
            }
        }
        facts.retain(|_, f| !f.resolved);
        let triaged = self.triaged(store, &facts, ts).await?;
        for it in &items {
            if let Some(reason) = triaged.get(&it.finding_id) {
                drop.entry(it.id).or_insert(("accepted", reason.clone()));
            }
        }
        if !drop.is_empty() {
            store.write(|c| {
                for (id, (state, reason)) in &drop {
                    queue::settle(c, &[*id], state, reason)?;
                }
                Ok(())
            })?;
            for (state, _) in drop.values() {
                match *state {
                    "accepted" => report.accepted += 1,
                    "ignored" => report.ignored_at_send += 1,
                    _ => report.resolved += 1,
                }
            }
            items.retain(|i| !drop.contains_key(&i.id));
        }

        for d in &self.dests {
            if stopping() {
                break;
            }
            let Some(&available) = room.get(d.key.as_str()) else {
                continue;
            };
            let mine: Vec<&queue::Item> = items.iter().filter(|i| i.destination == d.key).collect();
            let mine_ci: Vec<&queue::CiItem> =
                ci_items.iter().filter(|i| i.destination == d.key).collect();
            if mine.is_empty() && mine_ci.is_empty() {
                continue;
            }
            let mut groups = compose::groups(
                store.conn(),
                &mine,
                self.dojo.as_ref().map(|(_, u)| u.as_str()),
            )?;
            if !mine_ci.is_empty() {
                groups.extend(compose::ci_groups(store.conn(), &mine_ci)?);
                compose::sort_groups(&mut groups);
            }
            if groups.is_empty() {
                continue;
            }
            let messages: Vec<Message> = if groups.len() <= available {
                groups.into_iter().map(Message::Image).collect()
            } else {
                tracing::info!(destination = %d.label(), images = groups.len(), cap = d.max_per_hour,
                    "more images than the hourly cap allows: sending one digest message");
                vec![Message::Digest(groups)]
            };
            for msg in messages {
                if stopping() {
                    break;
                }
                let title = msg.title();
                let ids = msg.item_ids();
                let ci_ids = msg.ci_item_ids();
                let message_id =
                    store.write(|c| queue::begin_message(c, &d.key, msg.kind(), &title, ts))?;
                let result = self.send(d, &msg).await;
                let (sent, error) = match result {
                    Ok(()) => {
                        // Recorded only now that the server accepted it.
                        store.write(|c| queue::message_sent(c, message_id, &ids, &ci_ids, ts))?;
                        tracing::info!(destination = %d.label(), title = %title,
                            findings = ids.len() + ci_ids.len(), "alert sent");
                        (true, None)
                    }
                    Err(e) => {
                        let text = e.to_string();
                        store.write(|c| queue::message_failed(c, message_id, &text))?;
                        tracing::error!(destination = %d.label(), title = %title, error = %text,
                            "alert not sent; it stays queued");
                        if matches!(e, SendError::Permanent(_)) {
                            self.park(&d.key);
                        }
                        (false, Some(text))
                    }
                };
                self.count(d, sent);
                report.messages.push(SentMessage {
                    destination: d.label(),
                    kind: msg.kind(),
                    title,
                    findings: ids.len() + ci_ids.len(),
                    sent,
                    error,
                });
                if !sent {
                    // The destination is down or refusing: the rest waits for the next round.
                    break;
                }
            }
        }
        report.pending = queue::pending_count(store.conn())?;
        self.gauges(store)?;
        Ok(report)
    }

    /// Checked at send time, as for runtime items: a CI finding resolved by a newer CI
    /// scan (or removed), or now under an ignore entry, is not sent. (CI findings are not
    /// in DefectDojo: there is no triage to read back.)
    fn check_ci(
        &self,
        store: &mut Store,
        items: &mut Vec<queue::CiItem>,
        now: DateTime<Utc>,
        report: &mut DeliverReport,
    ) -> Result<()> {
        let mut drop: BTreeMap<i64, (&'static str, String)> = BTreeMap::new();
        for it in items.iter() {
            match queue::ci_facts(store.conn(), it.image_id, it.subject_id, &it.fkey)? {
                None => {
                    drop.insert(it.id, ("resolved", "finding removed".into()));
                }
                Some(f) if f.resolved => {
                    drop.insert(it.id, ("resolved", "resolved before it was sent".into()));
                }
                Some(f) => {
                    if decide::ignores_ci(&self.cfg.ignore, &f.id, &f.repo, now).is_some() {
                        drop.insert(it.id, ("ignored", "ignore list".into()));
                    }
                }
            }
        }
        if drop.is_empty() {
            return Ok(());
        }
        store.write(|c| {
            for (id, (state, reason)) in &drop {
                queue::settle_ci(c, &[*id], state, reason)?;
            }
            Ok(())
        })?;
        for (state, _) in drop.values() {
            match *state {
                "ignored" => report.ignored_at_send += 1,
                _ => report.resolved += 1,
            }
        }
        items.retain(|i| !drop.contains_key(&i.id));
        Ok(())
    }

    /// One message to one destination.
    pub async fn send(&self, d: &Destination, msg: &Message) -> Result<(), SendError> {
        d.channel.send(msg).await
    }

    fn is_parked(&self, key: &str) -> bool {
        self.parked
            .lock()
            .map(|p| p.get(key).is_some_and(|until| Instant::now() < *until))
            .unwrap_or(false)
    }

    fn park(&self, key: &str) {
        if let Ok(mut p) = self.parked.lock() {
            p.insert(key.to_owned(), Instant::now() + PARK);
        }
    }

    fn count(&self, d: &Destination, sent: bool) {
        if let Some(m) = &self.metrics {
            if sent {
                m.alerts_sent.inc();
            }
            m.alert_messages
                .get_or_create(&AlertLabel {
                    channel: d.channel_label(),
                    outcome: if sent { "sent" } else { "failed" }.into(),
                })
                .inc();
        }
    }

    fn gauges(&self, store: &Store) -> Result<()> {
        if let Some(m) = &self.metrics {
            m.alerts_pending
                .set(queue::pending_count(store.conn())? as i64);
            m.alerts_failing_channels
                .set(queue::failing_destinations(store.conn())? as i64);
        }
        Ok(())
    }

    /// Findings triaged in DefectDojo (risk accepted, false positive, out of scope): the
    /// read-back the exporter stored, refreshed by asking DefectDojo for the findings it
    /// holds, since a triage made after the last push is only there.
    async fn triaged(
        &self,
        store: &mut Store,
        facts: &HashMap<i64, queue::FindingFacts>,
        now: i64,
    ) -> Result<HashMap<i64, String>> {
        let mut out = HashMap::new();
        // dd_id → (local test id, uid, finding id)
        let mut ask: HashMap<i64, (i64, String, i64)> = HashMap::new();
        for &fid in facts.keys() {
            for copy in triage::copies(store.conn(), fid)? {
                if let Some(t) = copy.flags.verdict() {
                    out.insert(fid, format!("{} in DefectDojo", t.label()));
                } else if let Some(dd) = copy.dd_id {
                    ask.insert(dd, (copy.test_id, copy.uid, fid));
                }
            }
        }
        let Some((client, _)) = &self.dojo else {
            return Ok(out);
        };
        ask.retain(|_, (_, _, fid)| !out.contains_key(fid));
        if ask.is_empty() {
            return Ok(out);
        }
        let ids: Vec<i64> = ask.keys().copied().collect();
        match client.findings_by_id(&ids).await {
            Ok(list) => {
                store.write(|c| {
                    for f in &list {
                        let Some((test_id, uid, fid)) = ask.get(&f.id) else {
                            continue;
                        };
                        let flags = TriageFlags {
                            active: f.active,
                            risk_accepted: f.risk_accepted,
                            false_p: f.false_p,
                            out_of_scope: f.out_of_scope,
                        };
                        triage::record(c, *test_id, uid, f.id, Some(flags), None, now)?;
                        if let Some(t) = flags.verdict() {
                            out.insert(*fid, format!("{} in DefectDojo", t.label()));
                        }
                    }
                    Ok(())
                })?;
            }
            Err(e) => {
                // DefectDojo down must not hold alerts back: the stored read-back decides.
                tracing::warn!(error = %e, "cannot read triage state from DefectDojo; using the last read-back");
            }
        }
        Ok(out)
    }
}

/// The (namespace, team) pairs whose annotation names a team `routes` does not define
/// and that were not reported yet (each is reported once per process).
fn unknown_teams(
    teams: &BTreeMap<String, String>,
    routes: &BTreeSet<String>,
    warned: &mut HashSet<(String, String)>,
) -> Vec<(String, String)> {
    teams
        .iter()
        .filter(|(_, team)| !team.is_empty() && !routes.contains(team.as_str()))
        .map(|(ns, team)| (ns.clone(), team.clone()))
        .filter(|pair| warned.insert(pair.clone()))
        .collect()
}

/// The result of `alert --test` for one destination.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub destination: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `alert --test`: one test message to every channel and team route.
pub async fn send_test(config: &Config) -> Result<Vec<TestResult>> {
    let Some(alerter) = Alerter::new(config, None)? else {
        anyhow::bail!(
            "no alert destination configured: add alerts.channels, or teams.routes with a Slack webhook or email"
        );
    };
    let mut out = Vec::new();
    for d in alerter.destinations() {
        let msg = Message::Test {
            destination: d.label(),
        };
        let r = alerter.send(d, &msg).await;
        out.push(TestResult {
            destination: d.label(),
            ok: r.is_ok(),
            error: r.err().map(|e| e.to_string()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undefined_team_is_reported_once_per_namespace_and_name() {
        let routes: BTreeSet<String> = ["payments".to_owned()].into();
        let mut teams: BTreeMap<String, String> = [
            ("pay".to_owned(), "payments".to_owned()),
            ("shop".to_owned(), "paymnets".to_owned()),
            ("blank".to_owned(), String::new()),
        ]
        .into();
        let mut warned = HashSet::new();
        assert_eq!(
            unknown_teams(&teams, &routes, &mut warned),
            [("shop".to_owned(), "paymnets".to_owned())]
        );
        // Every later poll: nothing more to say.
        assert!(unknown_teams(&teams, &routes, &mut warned).is_empty());
        // The annotation changes: the new name is reported.
        teams.insert("shop".into(), "web".into());
        assert_eq!(
            unknown_teams(&teams, &routes, &mut warned),
            [("shop".to_owned(), "web".to_owned())]
        );
    }
}
