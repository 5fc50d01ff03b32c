//! The alert outbox in the store: new findings (`opened` events past a cursor) routed to
//! destinations and queued, durably, in the same transaction that advances the cursor.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::store::db::{Db, OptionalExtension, params};
use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::config::AlertsConfig;
use super::decide::{Candidate, Destination, Verdict, decide, decide_ci};
use crate::model::{Family, Severity};
use crate::store::inventory::{join_key, seen_at_runtime};

const CURSOR: &str = "alerts.cursor";
const BASELINE_AT: &str = "alerts.baseline_at";
/// The last `ci_events` id routed.
const CI_CURSOR: &str = "alerts.ci_cursor";
/// `<expires> <holder>`: the one process sending this store's alerts.
const SENDER: &str = "alerts.sender";

/// What routing the new findings did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PlanStats {
    /// Set when this run recorded the baseline: the open findings it holds (never alerted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<u64>,
    /// True while the baseline waits for the controller's first full list.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub waiting_for_baseline: bool,
    /// New findings looked at.
    pub new_findings: u64,
    /// New CI findings (not yet seen at runtime) looked at, for `origin: ci|any`.
    #[serde(skip_serializing_if = "is_zero")]
    pub new_ci_findings: u64,
    /// (destination, finding) pairs queued.
    pub queued: u64,
    /// Pairs the ignore list holds back.
    pub ignored: u64,
    /// Pairs released because their ignore entry expired.
    pub released: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub fn meta_get(conn: &Db, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()?)
}

fn meta_set(conn: &Db, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES(?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Takes (or renews) the sending lease for `holder` until `now + ttl`; false while
/// another holder's lease runs. Call inside a write transaction.
pub fn claim_sender(conn: &Db, holder: &str, now: i64, ttl: i64) -> Result<bool> {
    if let Some(v) = meta_get(conn, SENDER)? {
        let (expires, other) = v.split_once(' ').unwrap_or(("0", ""));
        if other != holder && expires.parse::<i64>().unwrap_or(0) > now {
            return Ok(false);
        }
    }
    meta_set(conn, SENDER, &format!("{} {holder}", now + ttl))?;
    Ok(true)
}

/// Gives the lease back, if `holder` still has it.
pub fn release_sender(conn: &Db, holder: &str) -> Result<()> {
    if let Some(v) = meta_get(conn, SENDER)?
        && v.split_once(' ').map(|(_, h)| h) == Some(holder)
    {
        conn.execute("DELETE FROM meta WHERE key = ?1", params![SENDER])?;
    }
    Ok(())
}

/// True once a baseline (or a first alert run) has been recorded in this store.
pub fn has_cursor(conn: &Db) -> Result<bool> {
    Ok(meta_get(conn, CURSOR)?.is_some())
}

/// The routing facts of one finding.
pub struct FindingFacts {
    pub family: Family,
    pub severity: Severity,
    pub fixable: bool,
    pub id: String,
    pub repo: String,
    pub resolved: bool,
    pub namespaces: Vec<String>,
}

impl FindingFacts {
    /// What routing decides on.
    pub fn candidate(&self) -> Candidate<'_> {
        Candidate {
            family: self.family,
            severity: self.severity,
            fixable: self.fixable,
            id: &self.id,
            repo: &self.repo,
            namespaces: &self.namespaces,
        }
    }
}

pub fn finding_facts(conn: &Db, finding_id: i64) -> Result<Option<FindingFacts>> {
    let Some(RoutingRow {
        family,
        repo,
        severity,
        fixable,
        id,
        resolved,
    }) = routing_row(
        conn,
        "SELECT s.family, s.key, f.severity, f.fixable, f.data, f.resolved_at IS NOT NULL
         FROM findings f JOIN subjects s ON s.id = f.subject_id WHERE f.id = ?1",
        params![finding_id],
    )?
    else {
        return Ok(None);
    };
    let namespaces: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT r.namespace FROM target_findings tf
             JOIN reports r ON r.target_id = tf.target_id
             WHERE tf.finding_id = ?1 ORDER BY r.namespace",
        )?
        .query_map(params![finding_id], |r| r.get(0))?
        .collect::<crate::store::db::Result<_>>()?;
    Ok(Some(FindingFacts {
        family,
        severity,
        fixable,
        id,
        repo,
        resolved,
        namespaces,
    }))
}

/// What routing reads of a runtime or a CI finding: one row of `sql` (family, subject
/// key, severity, fixable, data, resolved); none when gone or of an unknown family.
struct RoutingRow {
    family: Family,
    repo: String,
    severity: Severity,
    fixable: bool,
    id: String,
    resolved: bool,
}

fn routing_row(
    conn: &Db,
    sql: &str,
    params: &[&dyn crate::store::db::ToValue],
) -> Result<Option<RoutingRow>> {
    let row = conn
        .prepare_cached(sql)?
        .query_row(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, bool>(5)?,
            ))
        })
        .optional()?;
    let Some((family, repo, severity, fixable, data, resolved)) = row else {
        return Ok(None);
    };
    let Some(family) = Family::parse(&family) else {
        return Ok(None);
    };
    Ok(Some(RoutingRow {
        family,
        repo,
        severity: Severity::parse_lenient(&severity),
        fixable,
        id: serde_json::from_str::<crate::model::Finding>(&data)
            .map(|f| f.id)
            .unwrap_or_default(),
        resolved,
    }))
}

/// Routes the findings opened since the cursor and queues them, then releases findings
/// whose ignore entry expired. `baseline_allowed` is false in the controller until every
/// kind was listed: the baseline must hold the whole cluster, not the first batch.
pub fn plan(
    conn: &Db,
    cfg: &AlertsConfig,
    dests: &[Destination],
    teams: &BTreeMap<String, String>,
    now: DateTime<Utc>,
    baseline_allowed: bool,
) -> Result<PlanStats> {
    let mut stats = PlanStats::default();
    let cursor = match meta_get(conn, CURSOR)? {
        Some(c) => c
            .parse::<i64>()
            .with_context(|| format!("store meta {CURSOR} {c:?} is not a number"))?,
        None if cfg.baseline_first_run => {
            if !baseline_allowed {
                stats.waiting_for_baseline = true;
                return Ok(stats);
            }
            let last = crate::store::query::last_event_id(conn)?;
            let open: i64 = conn.query_row(
                "SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL",
                [],
                |r| r.get(0),
            )?;
            meta_set(conn, CURSOR, &last.to_string())?;
            meta_set(conn, BASELINE_AT, &now.timestamp().to_string())?;
            stats.baseline = Some(open.max(0) as u64);
            // The CI side's baseline at the same moment: what CI knew is not news either.
            plan_ci(conn, cfg, dests, now, &mut stats)?;
            tracing::info!(
                open_findings = open,
                "alerts: first run, baseline recorded; only findings new from now on alert"
            );
            return Ok(stats);
        }
        None => 0,
    };
    let events: Vec<(i64, i64)> = conn
        .prepare_cached(
            "SELECT id, finding_id FROM finding_events
             WHERE id > ?1 AND event = 'opened' ORDER BY id",
        )?
        .query_map(params![cursor], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<crate::store::db::Result<_>>()?;
    let last = crate::store::query::last_event_id(conn)?.max(cursor);
    let mut seen = BTreeSet::new();
    for (_, finding_id) in &events {
        if !seen.insert(*finding_id) {
            continue;
        }
        let Some(facts) = finding_facts(conn, *finding_id)? else {
            continue;
        };
        // Gone again before it could be routed (a broken image rolled back at once).
        if facts.resolved {
            continue;
        }
        stats.new_findings += 1;
        let c = facts.candidate();
        for d in dests {
            // `origin: any`: a finding CI already alerted here is not alerted again.
            if d.origin.ci() && ci_alerted(conn, &d.key, *finding_id)? {
                continue;
            }
            let (state, namespaces, reason) = match decide(d, &c, teams, &cfg.ignore, now) {
                Verdict::Skip => continue,
                Verdict::Ignored { reason } => ("ignored", Vec::new(), Some(reason)),
                Verdict::Alert { namespaces } => ("pending", namespaces, None),
            };
            let n = conn
                .prepare_cached(
                    "INSERT INTO alert_items(destination, finding_id, namespaces, state, reason, created_at)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    d.key,
                    finding_id,
                    serde_json::to_string(&namespaces)?,
                    state,
                    reason,
                    now.timestamp()
                ])?;
            if n > 0 {
                if state == "pending" {
                    stats.queued += 1;
                } else {
                    stats.ignored += 1;
                }
            }
        }
    }
    meta_set(conn, CURSOR, &last.to_string())?;
    // After the runtime side: a finding new in both at once alerts as runtime.
    plan_ci(conn, cfg, dests, now, &mut stats)?;
    stats.released = release_expired(conn, cfg, dests, teams, now)?;
    // Failed and interrupted sends are a log for diagnosis; a week of it is plenty.
    conn.execute(
        "DELETE FROM alert_messages WHERE state <> 'sent' AND created_at < ?1",
        params![now.timestamp() - 7 * 86_400],
    )?;
    Ok(stats)
}

/// True when a CI alert for this runtime finding's join key is queued or sent to
/// `destination`.
fn ci_alerted(conn: &Db, destination: &str, finding_id: i64) -> Result<bool> {
    let row: Option<(i64, String, String)> = conn
        .prepare_cached(
            "SELECT f.subject_id, f.fkey, s.family FROM findings f
             JOIN subjects s ON s.id = f.subject_id WHERE f.id = ?1",
        )?
        .query_row(params![finding_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((subject_id, fkey, family)) = row else {
        return Ok(false);
    };
    let Some(family) = Family::parse(&family) else {
        return Ok(false);
    };
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM ci_alert_items WHERE destination = ?1
                           AND subject_id = ?2 AND jkey = ?3 AND state IN ('pending', 'sent'))",
        )?
        .query_row(
            params![destination, subject_id, join_key(family, &fkey)],
            |r| r.get(0),
        )?)
}

/// The routing facts of one CI finding (`ci_findings` row).
pub struct CiFacts {
    pub family: Family,
    pub severity: Severity,
    pub fixable: bool,
    pub id: String,
    pub repo: String,
    pub resolved: bool,
    /// The cluster has it too (the runtime side alerts it, or its baseline held it).
    pub at_runtime: bool,
    pub jkey: String,
}

impl CiFacts {
    pub fn candidate(&self) -> Candidate<'_> {
        Candidate {
            family: self.family,
            severity: self.severity,
            fixable: self.fixable,
            id: &self.id,
            repo: &self.repo,
            namespaces: &[],
        }
    }
}

pub fn ci_facts(conn: &Db, image_id: i64, subject_id: i64, fkey: &str) -> Result<Option<CiFacts>> {
    let Some(RoutingRow {
        family,
        repo,
        severity,
        fixable,
        id,
        resolved,
    }) = routing_row(
        conn,
        "SELECT s.family, s.key, c.severity, c.fixable, c.data, c.resolved_at IS NOT NULL
         FROM ci_findings c JOIN subjects s ON s.id = c.subject_id
         WHERE c.image_id = ?1 AND c.subject_id = ?2 AND c.fkey = ?3",
        params![image_id, subject_id, fkey],
    )?
    else {
        return Ok(None);
    };
    let at_runtime = seen_at_runtime(conn, family, subject_id, fkey)?;
    Ok(Some(CiFacts {
        family,
        severity,
        fixable,
        id,
        repo,
        resolved,
        at_runtime,
        jkey: join_key(family, fkey).to_owned(),
    }))
}

/// Routes the CI findings new since the CI cursor to destinations with `origin: ci` or
/// `any`. A finding the cluster already has is the runtime side's (alerted or held by its
/// baseline), so CI alerts only what was not yet seen at runtime. The first run records a
/// baseline when `baseline_first_run` is on, as for runtime.
fn plan_ci(
    conn: &Db,
    cfg: &AlertsConfig,
    dests: &[Destination],
    now: DateTime<Utc>,
    stats: &mut PlanStats,
) -> Result<()> {
    let last: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM ci_events", [], |r| {
        r.get(0)
    })?;
    let cursor = match meta_get(conn, CI_CURSOR)? {
        Some(c) => c
            .parse::<i64>()
            .with_context(|| format!("store meta {CI_CURSOR} {c:?} is not a number"))?,
        None if cfg.baseline_first_run => {
            meta_set(conn, CI_CURSOR, &last.to_string())?;
            return Ok(());
        }
        None => 0,
    };
    if !dests.iter().any(|d| d.origin.ci()) {
        meta_set(conn, CI_CURSOR, &last.max(cursor).to_string())?;
        return Ok(());
    }
    let events: Vec<(i64, i64, String)> = conn
        .prepare_cached(
            "SELECT image_id, subject_id, fkey FROM ci_events WHERE id > ?1 ORDER BY id",
        )?
        .query_map(params![cursor], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<crate::store::db::Result<_>>()?;
    for (image_id, subject_id, fkey) in &events {
        let Some(facts) = ci_facts(conn, *image_id, *subject_id, fkey)? else {
            continue;
        };
        if facts.resolved || facts.at_runtime {
            continue;
        }
        stats.new_ci_findings += 1;
        let c = facts.candidate();
        for d in dests {
            let (state, reason) = match decide_ci(d, &c, &cfg.ignore, now) {
                Verdict::Skip => continue,
                Verdict::Ignored { reason } => ("ignored", Some(reason)),
                Verdict::Alert { .. } => ("pending", None),
            };
            let n = conn
                .prepare_cached(
                    "INSERT INTO ci_alert_items(destination, image_id, subject_id, fkey, jkey,
                                                state, reason, created_at)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    d.key,
                    image_id,
                    subject_id,
                    fkey,
                    facts.jkey,
                    state,
                    reason,
                    now.timestamp()
                ])?;
            if n > 0 {
                if state == "pending" {
                    stats.queued += 1;
                } else {
                    stats.ignored += 1;
                }
            }
        }
    }
    meta_set(conn, CI_CURSOR, &last.max(cursor).to_string())?;
    Ok(())
}

/// A queued (destination, CI finding).
#[derive(Debug, Clone)]
pub struct CiItem {
    pub id: i64,
    pub destination: String,
    pub image_id: i64,
    pub subject_id: i64,
    pub fkey: String,
}

pub fn pending_ci(conn: &Db) -> Result<Vec<CiItem>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, destination, image_id, subject_id, fkey FROM ci_alert_items
         WHERE state = 'pending' ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(CiItem {
            id: r.get(0)?,
            destination: r.get(1)?,
            image_id: r.get(2)?,
            subject_id: r.get(3)?,
            fkey: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<crate::store::db::Result<_>>()?)
}

/// Moves CI items out of 'pending' for good (resolved, ignored, orphaned).
pub fn settle_ci(conn: &Db, ids: &[i64], state: &str, reason: &str) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE ci_alert_items SET state = ?2, reason = ?3 WHERE id = ?1 AND state = 'pending'",
    )?;
    for id in ids {
        stmt.execute(params![id, state, reason])?;
    }
    Ok(())
}

/// Findings held back by an ignore entry that no longer applies (expired or removed)
/// alert now, if they are still open.
fn release_expired(
    conn: &Db,
    cfg: &AlertsConfig,
    dests: &[Destination],
    teams: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<u64> {
    let held: Vec<(i64, String, i64)> = conn
        .prepare_cached(
            "SELECT id, destination, finding_id FROM alert_items WHERE state = 'ignored'",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<crate::store::db::Result<_>>()?;
    let by_key: HashMap<&str, &Destination> = dests.iter().map(|d| (d.key.as_str(), d)).collect();
    let mut released = 0;
    for (item, dest, finding_id) in held {
        let Some(d) = by_key.get(dest.as_str()) else {
            continue;
        };
        let Some(facts) = finding_facts(conn, finding_id)? else {
            continue;
        };
        if facts.resolved {
            continue;
        }
        let c = facts.candidate();
        if let Verdict::Alert { namespaces } = decide(d, &c, teams, &cfg.ignore, now) {
            conn.execute(
                "UPDATE alert_items SET state = 'pending', namespaces = ?2, reason = NULL WHERE id = ?1",
                params![item, serde_json::to_string(&namespaces)?],
            )?;
            tracing::info!(destination = %d.label(), finding = %facts.id, image = %facts.repo,
                "ignore entry no longer applies: alerting");
            released += 1;
        }
    }
    // The same for CI findings held back, while CI still lists them and the cluster
    // does not have them (then the runtime side owns them).
    let held: Vec<(i64, String, i64, i64, String)> = conn
        .prepare_cached(
            "SELECT id, destination, image_id, subject_id, fkey FROM ci_alert_items
             WHERE state = 'ignored'",
        )?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<crate::store::db::Result<_>>()?;
    for (item, dest, image_id, subject_id, fkey) in held {
        let Some(d) = by_key.get(dest.as_str()) else {
            continue;
        };
        let Some(facts) = ci_facts(conn, image_id, subject_id, &fkey)? else {
            continue;
        };
        if facts.resolved || facts.at_runtime {
            continue;
        }
        if let Verdict::Alert { .. } = decide_ci(d, &facts.candidate(), &cfg.ignore, now) {
            conn.execute(
                "UPDATE ci_alert_items SET state = 'pending', reason = NULL WHERE id = ?1",
                params![item],
            )?;
            tracing::info!(destination = %d.label(), finding = %facts.id, image = %facts.repo,
                "ignore entry no longer applies: alerting (CI)");
            released += 1;
        }
    }
    Ok(released)
}

/// A queued (destination, finding).
#[derive(Debug, Clone)]
pub struct Item {
    pub id: i64,
    pub destination: String,
    pub finding_id: i64,
    pub namespaces: Vec<String>,
}

pub fn pending(conn: &Db) -> Result<Vec<Item>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, destination, finding_id, namespaces FROM alert_items
         WHERE state = 'pending' ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, destination, finding_id, ns) = row?;
        out.push(Item {
            id,
            destination,
            finding_id,
            namespaces: serde_json::from_str(&ns).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Moves items out of 'pending' for good (accepted, resolved, ignored, orphaned).
pub fn settle(conn: &Db, ids: &[i64], state: &str, reason: &str) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE alert_items SET state = ?2, reason = ?3 WHERE id = ?1 AND state = 'pending'",
    )?;
    for id in ids {
        stmt.execute(params![id, state, reason])?;
    }
    Ok(())
}

/// Recorded before the send: a row left in 'sending' is a send a crash interrupted (its
/// items are still pending, so they are sent again: at most that one message twice).
pub fn begin_message(
    conn: &Db,
    destination: &str,
    kind: &str,
    title: &str,
    now: i64,
) -> Result<i64> {
    Ok(conn.query_row(
        "INSERT INTO alert_messages(destination, kind, title, state, created_at)
         VALUES(?1, ?2, ?3, 'sending', ?4) RETURNING id",
        params![destination, kind, title, now],
        |r| r.get(0),
    )?)
}

/// The server accepted the message: its items are sent, in the same transaction.
/// `items` are alert_items ids, `ci_items` ci_alert_items ids.
pub fn message_sent(
    conn: &Db,
    message: i64,
    items: &[i64],
    ci_items: &[i64],
    now: i64,
) -> Result<()> {
    conn.execute(
        "UPDATE alert_messages SET state = 'sent', sent_at = ?2 WHERE id = ?1",
        params![message, now],
    )?;
    for (table, ids) in [("alert_items", items), ("ci_alert_items", ci_items)] {
        let mut stmt = conn.prepare_cached(&format!(
            "UPDATE {table} SET state = 'sent', message_id = ?2, sent_at = ?3 WHERE id = ?1"
        ))?;
        for id in ids {
            stmt.execute(params![id, message, now])?;
        }
    }
    Ok(())
}

pub fn message_failed(conn: &Db, message: i64, error: &str) -> Result<()> {
    conn.execute(
        "UPDATE alert_messages SET state = 'failed', last_error = ?2 WHERE id = ?1",
        params![message, error],
    )?;
    Ok(())
}

/// Messages the destination accepted in the hour before `now` (the cap's measure).
pub fn sent_in_last_hour(conn: &Db, destination: &str, now: i64) -> Result<u32> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM alert_messages WHERE destination = ?1 AND state = 'sent'
         AND sent_at > ?2 AND kind <> 'test'",
        params![destination, now - 3600],
        |r| r.get(0),
    )?;
    Ok(n.clamp(0, i64::from(u32::MAX)) as u32)
}

/// Findings waiting to be sent, for the gauge.
pub fn pending_count(conn: &Db) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT (SELECT COUNT(*) FROM alert_items WHERE state = 'pending')
              + (SELECT COUNT(*) FROM ci_alert_items WHERE state = 'pending')",
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// Sends that failed since the last success, per destination (for the gauge).
pub fn failing_destinations(conn: &Db) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(DISTINCT destination) FROM alert_messages m WHERE state = 'failed'
         AND id > COALESCE((SELECT MAX(id) FROM alert_messages s
                            WHERE s.destination = m.destination AND s.state = 'sent'), 0)",
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Finding, Image, Report, ReportId, ReportKind, WorkloadKey};
    use crate::output::alert::channel;
    use crate::output::alert::config::AlertOrigin;
    use crate::output::alert::decide::{Filter, NamespaceFilter};
    use crate::store::{Session, Store};

    #[test]
    fn one_sender_at_a_time_until_the_lease_expires() {
        let store = Store::open_in_memory().expect("store");
        let c = store.conn();
        assert!(claim_sender(c, "a", 100, 600).expect("claim"));
        assert!(
            !claim_sender(c, "b", 200, 600).expect("claim"),
            "a holds it"
        );
        assert!(
            claim_sender(c, "a", 200, 600).expect("renew"),
            "the holder renews"
        );
        release_sender(c, "b").expect("release by another does nothing");
        assert!(!claim_sender(c, "b", 300, 600).expect("claim"));
        assert!(
            claim_sender(c, "b", 801, 600).expect("claim"),
            "a's lease expired"
        );
        release_sender(c, "b").expect("release");
        assert!(claim_sender(c, "a", 802, 600).expect("claim"), "released");
    }

    fn report(name: &str, digest: u32, vulns: &[(&str, Severity)]) -> Report {
        Report {
            id: ReportId {
                kind: ReportKind::VulnerabilityReport,
                namespace: "shop".into(),
                name: name.into(),
            },
            workload: WorkloadKey {
                namespace: "shop".into(),
                kind: "Deployment".into(),
                name: name.into(),
            },
            owner: None,
            container: "app".into(),
            labels: Default::default(),
            image: Some(Image::new(
                "ghcr.io",
                "org/api",
                Some("1.0"),
                Some(&format!("sha256:{digest:064x}")),
            )),
            scanned_at: None,
            scanner_version: String::new(),
            findings: vulns
                .iter()
                .map(|(id, s)| {
                    let mut f = Finding::new(*id, *s);
                    f.package = "openssl".into();
                    f.installed_version = "1.0".into();
                    f
                })
                .collect(),
            passed_checks: 0,
            components: None,
            packages: Vec::new(),
            summary_mismatch: false,
            mapped_severities: 0,
        }
    }

    fn sweep(store: &mut Store, at: i64, reports: &[Report]) {
        let mut s = Session::begin(store, "test", at).expect("begin");
        for r in reports {
            s.report(r).expect("report");
        }
        s.finish(&crate::scope::Scope::everything(), 0)
            .expect("finish");
        s.commit().expect("commit");
    }

    fn dest() -> Destination {
        Destination {
            key: "channel:sec:slack".into(),
            name: "sec".into(),
            channel: channel::stub("slack"),
            filter: Filter {
                min_severity: Severity::Critical,
                families: vec![Family::Vulnerability],
                fixable_only: false,
                namespaces: vec![NamespaceFilter::default()],
            },
            team: None,
            max_per_hour: 20,
            origin: AlertOrigin::Runtime,
        }
    }

    #[test]
    fn baseline_then_only_opened_findings_are_queued_never_reopened() {
        let mut store = Store::open_in_memory().expect("store");
        let cfg = AlertsConfig::default();
        let d = [dest()];
        let now = Utc::now();
        let plan = |store: &mut Store, allowed: bool| {
            store
                .write(|c| plan(c, &cfg, &d, &BTreeMap::new(), now, allowed))
                .expect("plan")
        };
        let a = report("api", 1, &[("CVE-1", Severity::Critical)]);
        sweep(&mut store, 100, std::slice::from_ref(&a));
        let s = plan(&mut store, false);
        assert!(s.waiting_for_baseline, "not before the first full list");
        let s = plan(&mut store, true);
        assert_eq!(s.baseline, Some(1));

        // Gone (grace 0: resolved), then back: `reopened`, never alerted.
        sweep(&mut store, 200, &[]);
        sweep(&mut store, 300, std::slice::from_ref(&a));
        let reopened: i64 = store
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM finding_events WHERE event = 'reopened'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(reopened, 1);
        let s = plan(&mut store, true);
        assert_eq!((s.new_findings, s.queued), (0, 0));

        // A new digest brings a new CRITICAL and a new HIGH: the CRITICAL is queued.
        let b = report(
            "api",
            2,
            &[
                ("CVE-1", Severity::Critical),
                ("CVE-2", Severity::Critical),
                ("CVE-3", Severity::High),
            ],
        );
        sweep(&mut store, 400, &[b]);
        let s = plan(&mut store, true);
        assert_eq!((s.new_findings, s.queued), (2, 1));
        let items = pending(store.conn()).expect("pending");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].namespaces, ["shop"]);
        // Planning again queues nothing more.
        assert_eq!(plan(&mut store, true).queued, 0);
    }
}
