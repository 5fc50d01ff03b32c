//! Read models over the store for outputs and summaries.

use std::collections::{BTreeMap, HashMap};

use crate::store::db::{Db, params};
use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::model::{Severity, SeverityCounts};

use super::Store;

/// Distinct images, workloads and findings behind the reports of one sweep.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ScanTotals {
    pub images: u64,
    pub pinned: u64,
    pub unpinned: u64,
    pub workloads: u64,
    /// Open findings after deduplication, by severity.
    pub findings: SeverityCounts,
}

pub fn scan_totals(store: &Store, scan_id: i64) -> Result<ScanTotals> {
    let conn = store.conn();
    let (images, pinned): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COUNT(i.digest) FROM images i
         WHERE i.id IN (SELECT t.image_id FROM reports r JOIN targets t ON t.id = r.target_id
                        WHERE r.seen_scan = ?1)",
        params![scan_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let workloads: i64 = conn.query_row(
        "SELECT COUNT(DISTINCT workload_id) FROM reports WHERE seen_scan = ?1",
        params![scan_id],
        |r| r.get(0),
    )?;
    let mut findings = SeverityCounts::default();
    let mut stmt = conn.prepare(
        "SELECT f.severity, COUNT(*) FROM findings f
         WHERE f.resolved_at IS NULL AND f.id IN
            (SELECT tf.finding_id FROM target_findings tf
             JOIN reports r ON r.target_id = tf.target_id WHERE r.seen_scan = ?1)
         GROUP BY f.severity",
    )?;
    let rows = stmt.query_map(params![scan_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (sev, n) = row?;
        findings.0[Severity::parse_lenient(&sev).index()] += n.max(0) as u64;
    }
    let (images, pinned) = (images.max(0) as u64, pinned.max(0) as u64);
    Ok(ScanTotals {
        images,
        pinned,
        unpinned: images.saturating_sub(pinned),
        workloads: workloads.max(0) as u64,
        findings,
    })
}

/// What the controller exposes as gauges: live images and open findings.
#[derive(Debug, Default, Clone)]
pub struct LiveTotals {
    pub pinned: u64,
    pub unpinned: u64,
    pub findings: SeverityCounts,
}

pub fn live_totals(store: &Store) -> Result<LiveTotals> {
    let conn = store.conn();
    let (images, pinned): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COUNT(i.digest) FROM images i
         WHERE i.id IN (SELECT t.image_id FROM targets t JOIN reports r ON r.target_id = t.id)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut findings = SeverityCounts::default();
    let mut stmt = conn.prepare(
        "SELECT severity, COUNT(*) FROM findings WHERE resolved_at IS NULL GROUP BY severity",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (sev, n) = row?;
        findings.0[Severity::parse_lenient(&sev).index()] += n.max(0) as u64;
    }
    let (images, pinned) = (images.max(0) as u64, pinned.max(0) as u64);
    Ok(LiveTotals {
        pinned,
        unpinned: images.saturating_sub(pinned),
        findings,
    })
}

/// Namespace name → annotations, as last seen (in a fleet store, the cluster that
/// reported the namespace last). A row whose JSON is not an object of
/// strings is skipped with a warning naming the namespace.
pub fn namespace_annotations(conn: &Db) -> Result<HashMap<String, HashMap<String, String>>> {
    let mut out = HashMap::new();
    let mut stmt = conn
        .prepare_cached("SELECT name, annotations FROM namespaces ORDER BY updated_at, cluster")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (name, json) = row.context("store: reading namespaces")?;
        match serde_json::from_str::<HashMap<String, String>>(&json) {
            Ok(a) => {
                out.insert(name, a);
            }
            Err(e) => tracing::warn!(
                namespace = %name,
                "store: namespaces.annotations of {name:?} is not a JSON object of strings ({e}); ignored"
            ),
        }
    }
    Ok(out)
}

/// Namespace → the team its `annotation` names (trimmed), for namespaces that have one.
pub fn teams_by_namespace(conn: &Db, annotation: &str) -> Result<BTreeMap<String, String>> {
    Ok(namespace_annotations(conn)?
        .into_iter()
        .filter_map(|(ns, mut a)| a.remove(annotation).map(|t| (ns, t.trim().to_owned())))
        .collect())
}

/// Highest finding event id: what the output runner polls for new work (every 100 ms:
/// the rowid's maximum, from a cached statement).
pub fn last_event_id(conn: &Db) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM finding_events")?
        .query_row([], |r| r.get(0))?)
}
