//! `store migrate`: one cluster's SQLite store copied into a fleet store (PostgreSQL),
//! in one transaction of the target. Ids are the target's own (other clusters are
//! there already), so every reference is mapped; contents are matched by their natural
//! keys (an image by key, a finding by subject and key), so what another cluster already
//! brought is merged: first-seen dates take the earlier, last-seen the later, and a
//! finding is open when either side has it open.
//!
//! Kept: history (findings, their events, sightings), DefectDojo sync state (tests,
//! what each finding holds, known contexts), alert records (messages, items, CI items)
//! and summary claims, the inventory and CI results. The source's store id is recorded
//! as a predecessor, so the tests it marked in DefectDojo are the fleet's to push to.
//! Not kept: the sweep log (`scans`) and the outbox, which the next plan rebuilds.
//! Copied events get ids below every cursor, so they are history, never new alerts.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::db::{Cell, FromValue, OptionalExtension, ToValue, params};
use super::{Db, Store};

/// One owned value, read from one store and written to another.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl FromValue for Value {
    fn from_cell(cell: Cell<'_>, _: usize) -> super::db::Result<Self> {
        Ok(match cell {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::Int(i),
            Cell::Real(f) => Value::Real(f),
            Cell::Text(s) => Value::Text(s.to_owned()),
            Cell::Blob(b) => Value::Blob(b.to_vec()),
        })
    }
}

impl ToValue for Value {
    fn to_cell(&self) -> Cell<'_> {
        match self {
            Value::Null => Cell::Null,
            Value::Int(i) => Cell::Int(*i),
            Value::Real(f) => Cell::Real(*f),
            Value::Text(s) => Cell::Text(s),
            Value::Blob(b) => Cell::Blob(b),
        }
    }
}

impl Value {
    fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// What was copied, per table.
#[derive(Debug, Default, Serialize)]
pub struct Copied {
    pub cluster: String,
    pub tables: Vec<(String, u64)>,
}

fn rows(db: &Db, sql: &str, columns: usize) -> Result<Vec<Vec<Value>>> {
    let mut stmt = db.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        (0..columns)
            .map(|i| r.get::<_, Value>(i))
            .collect::<super::db::Result<Vec<Value>>>()
    })?;
    Ok(rows.collect::<super::db::Result<_>>()?)
}

/// Source id → target id.
type Map = HashMap<i64, i64>;

fn mapped(map: &Map, v: &Value, what: &str) -> Result<Value> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Int(0) if what == "image" => Ok(Value::Int(0)),
        Value::Int(i) => map
            .get(i)
            .map(|t| Value::Int(*t))
            .with_context(|| format!("the source refers to {what} {i}, which it does not hold")),
        other => bail!("the source's {what} id is {other:?}, not an integer"),
    }
}

/// Copies what `select` reads into `insert` (same columns, in order), mapping the
/// columns `maps` names (index, source id → target id, what it is); the rows read.
fn copy_rows(
    src: &Db,
    dst: &Db,
    select: &str,
    insert: &str,
    maps: &[(usize, &Map, &str)],
) -> Result<usize> {
    let columns = select
        .split_once(" FROM ")
        .map_or(0, |(cols, _)| cols.matches(',').count() + 1);
    let list = rows(src, select, columns)?;
    for r in &list {
        let mut row = r.clone();
        for (i, map, what) in maps {
            row[*i] = mapped(map, &r[*i], what)?;
        }
        let values: Vec<&dyn ToValue> = row.iter().map(|v| v as &dyn ToValue).collect();
        dst.execute(insert, values)?;
    }
    Ok(list.len())
}

fn id_of(db: &Db, sql: &str, p: &[&dyn ToValue]) -> Result<i64> {
    Ok(db.query_row(sql, p, |r| r.get(0))?)
}

/// Copies `source` (an SQLite store of one cluster) into `target` (a fleet store).
pub fn copy(source: &Store, target: &mut Store) -> Result<Copied> {
    if source.is_fleet() {
        bail!("the source is a fleet store; `store migrate` copies an SQLite store into one");
    }
    if !target.is_fleet() {
        bail!("the target must be a PostgreSQL store (postgres://...)");
    }
    let src = source.conn();
    let cluster: String = src
        .query_row("SELECT value FROM meta WHERE key = 'cluster'", [], |r| {
            r.get(0)
        })
        .optional()?
        .context(
            "the source store names no cluster (it was never swept by `scan` or `run`); \
             nothing to copy",
        )?;
    let source_id = source.identity()?;
    let mut out = Copied {
        cluster: cluster.clone(),
        ..Copied::default()
    };
    target.write(|dst| {
        let there: i64 = id_of(
            dst,
            "SELECT COUNT(*) FROM workloads WHERE cluster = ?1",
            params![cluster],
        )?;
        if there > 0 {
            bail!(
                "the fleet store already holds cluster {cluster:?} ({there} workloads): it was \
                 migrated before, or its `run` writes there already; nothing was copied"
            );
        }
        let mut count = |table: &str, n: usize| out.tables.push((table.to_owned(), n as u64));

        // Images, subjects: by natural key, the earlier first-seen.
        let mut images = Map::new();
        let list = rows(
            src,
            "SELECT id, key, registry, repository, tag, digest, first_seen FROM images",
            7,
        )?;
        for r in &list {
            dst.execute(
                "INSERT INTO images(key, registry, repository, tag, digest, first_seen)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(key) DO UPDATE SET first_seen = MIN(images.first_seen, excluded.first_seen)",
                params![r[1], r[2], r[3], r[4], r[5], r[6]],
            )?;
            let id = id_of(dst, "SELECT id FROM images WHERE key = ?1", params![r[1]])?;
            images.insert(r[0].int().unwrap_or_default(), id);
        }
        count("images", list.len());
        let mut subjects = Map::new();
        let list = rows(src, "SELECT id, family, key, first_seen FROM subjects", 4)?;
        for r in &list {
            dst.execute(
                "INSERT INTO subjects(family, key, first_seen) VALUES(?1, ?2, ?3)
                 ON CONFLICT(family, key) DO UPDATE
                     SET first_seen = MIN(subjects.first_seen, excluded.first_seen)",
                params![r[1], r[2], r[3]],
            )?;
            let id = id_of(
                dst,
                "SELECT id FROM subjects WHERE family = ?1 AND key = ?2",
                params![r[1], r[2]],
            )?;
            subjects.insert(r[0].int().unwrap_or_default(), id);
        }
        count("subjects", list.len());

        // Workloads: this cluster's, new ids.
        let mut workloads = Map::new();
        let list = rows(src, "SELECT id, namespace, kind, name, first_seen FROM workloads", 5)?;
        for r in &list {
            let id = id_of(
                dst,
                "INSERT INTO workloads(cluster, namespace, kind, name, first_seen)
                 VALUES(?1, ?2, ?3, ?4, ?5) RETURNING id",
                params![cluster, r[1], r[2], r[3], r[4]],
            )?;
            workloads.insert(r[0].int().unwrap_or_default(), id);
        }
        count("workloads", list.len());

        // Targets: content-addressed, shared.
        let mut targets = Map::new();
        let list = rows(
            src,
            "SELECT id, subject_id, key, set_hash, image_id, components, created_at,
                    last_scanned, orphaned_at FROM targets",
            9,
        )?;
        for r in &list {
            let (subject, image) = (mapped(&subjects, &r[1], "subject")?, mapped(&images, &r[4], "image")?);
            let existing: Option<i64> = dst
                .query_row(
                    "SELECT id FROM targets WHERE subject_id = ?1 AND key = ?2 AND set_hash = ?3",
                    params![subject, r[2], r[3]],
                    |x| x.get(0),
                )
                .optional()?;
            let id = match existing {
                Some(id) => {
                    dst.execute(
                        "UPDATE targets SET created_at = MIN(created_at, ?2),
                             last_scanned = COALESCE(MAX(last_scanned, ?3), last_scanned, ?3),
                             orphaned_at = CASE WHEN CAST(?4 AS BIGINT) IS NULL THEN NULL
                                                ELSE orphaned_at END
                         WHERE id = ?1",
                        params![id, r[6], r[7], r[8]],
                    )?;
                    id
                }
                None => id_of(
                    dst,
                    "INSERT INTO targets(subject_id, key, set_hash, image_id, components,
                                         created_at, last_scanned, orphaned_at)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
                    params![subject, r[2], r[3], image, r[5], r[6], r[7], r[8]],
                )?,
            };
            targets.insert(r[0].int().unwrap_or_default(), id);
        }
        count("targets", list.len());

        // Reports: this cluster's; the sweep log is not copied (seen_scan 0).
        let list = rows(
            src,
            "SELECT kind, namespace, name, workload_id, container, target_id, scanned_at,
                    gone_since, selector, labels FROM reports",
            10,
        )?;
        for r in &list {
            dst.execute(
                "INSERT INTO reports(cluster, kind, namespace, name, workload_id, container,
                                     target_id, scanned_at, seen_scan, gone_since, selector, labels)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?11)",
                params![
                    cluster,
                    r[0],
                    r[1],
                    r[2],
                    mapped(&workloads, &r[3], "workload")?,
                    r[4],
                    mapped(&targets, &r[5], "target")?,
                    r[6],
                    r[7],
                    r[8],
                    r[9]
                ],
            )?;
        }
        count("reports", list.len());

        // Findings: merged by (subject, key).
        let mut findings = Map::new();
        let list = rows(
            src,
            "SELECT id, subject_id, fkey, first_title, severity, fixable, data, data_at,
                    first_seen, last_seen, resolved_at FROM findings",
            11,
        )?;
        for r in &list {
            let subject = mapped(&subjects, &r[1], "subject")?;
            let existing: Option<i64> = dst
                .query_row(
                    "SELECT id FROM findings WHERE subject_id = ?1 AND fkey = ?2",
                    params![subject, r[2]],
                    |x| x.get(0),
                )
                .optional()?;
            let id = match existing {
                Some(id) => {
                    dst.execute(
                        "UPDATE findings SET first_seen = MIN(first_seen, ?2),
                             last_seen = MAX(last_seen, ?3),
                             resolved_at = CASE
                                 WHEN resolved_at IS NULL OR CAST(?4 AS BIGINT) IS NULL THEN NULL
                                 ELSE MAX(resolved_at, CAST(?4 AS BIGINT)) END
                         WHERE id = ?1",
                        params![id, r[8], r[9], r[10]],
                    )?;
                    id
                }
                None => id_of(
                    dst,
                    "INSERT INTO findings(subject_id, fkey, first_title, severity, fixable, data,
                                          data_at, first_seen, last_seen, resolved_at)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
                    params![subject, r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10]],
                )?,
            };
            findings.insert(r[0].int().unwrap_or_default(), id);
        }
        count("findings", list.len());
        count("target_findings", copy_rows(src, dst, "SELECT target_id, finding_id FROM target_findings", "INSERT INTO target_findings(target_id, finding_id) VALUES(?1, ?2) ON CONFLICT DO NOTHING", &[(0, &targets, "target"), (1, &findings, "finding")])?);

        // Events: history, with ids below every cursor (never read as new).
        let floor = id_of(dst, "SELECT COALESCE(MIN(id), 0) FROM finding_events", params![])?.min(0);
        let list = rows(src, "SELECT finding_id, at, event, detail FROM finding_events ORDER BY id", 4)?;
        for (i, r) in list.iter().enumerate() {
            dst.execute(
                "INSERT INTO finding_events(id, finding_id, at, event, detail)
                 VALUES(?1, ?2, ?3, ?4, ?5)",
                params![
                    floor - 1 - i as i64,
                    mapped(&findings, &r[0], "finding")?,
                    r[1],
                    r[2],
                    r[3]
                ],
            )?;
        }
        count("finding_events", list.len());
        count("sightings", copy_rows(src, dst, "SELECT subject_id, image_id, workload_id, first_seen, last_seen FROM sightings", "INSERT INTO sightings(subject_id, image_id, workload_id, first_seen, last_seen) VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING", &[(0, &subjects, "subject"), (1, &images, "image"), (2, &workloads, "workload")])?);
        let list = rows(src, "SELECT name, labels, annotations, updated_at FROM namespaces", 4)?;
        for r in &list {
            dst.execute(
                "INSERT INTO namespaces(cluster, name, labels, annotations, updated_at)
                 VALUES(?1, ?2, ?3, ?4, ?5)",
                params![cluster, r[0], r[1], r[2], r[3]],
            )?;
        }
        count("namespaces", list.len());

        // DefectDojo sync state: a test another cluster brought already is kept as is.
        let mut tests = Map::new();
        let list = rows(
            src,
            "SELECT id, product_type, product, engagement, title, family, subject_id, acked_hash,
                    synced_hash, dd_test_id, last_push_at, last_result, origin FROM dojo_tests",
            13,
        )?;
        for r in &list {
            dst.execute(
                "INSERT INTO dojo_tests(product_type, product, engagement, title, family,
                                        subject_id, acked_hash, synced_hash, dd_test_id,
                                        last_push_at, last_result, origin)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT DO NOTHING",
                params![
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    mapped(&subjects, &r[6], "subject")?,
                    r[7],
                    r[8],
                    r[9],
                    r[10],
                    r[11],
                    r[12]
                ],
            )?;
            let id = id_of(
                dst,
                "SELECT id FROM dojo_tests WHERE product_type = ?1 AND product = ?2
                   AND engagement = ?3 AND title = ?4 AND family = ?5",
                params![r[1], r[2], r[3], r[4], r[5]],
            )?;
            tests.insert(r[0].int().unwrap_or_default(), id);
        }
        count("dojo_tests", list.len());
        count("dojo_findings", copy_rows(src, dst, "SELECT test_id, uid, dd_id, sent_hash, active, risk_accepted, false_p, out_of_scope, checked_at FROM dojo_findings", "INSERT INTO dojo_findings(test_id, uid, dd_id, sent_hash, active, risk_accepted, false_p, out_of_scope, checked_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING", &[(0, &tests, "DefectDojo test")])?);
        count("dojo_contexts", copy_rows(src, dst, "SELECT product_type, product, engagement FROM dojo_contexts", "INSERT INTO dojo_contexts(product_type, product, engagement) VALUES(?1, ?2, ?3) ON CONFLICT DO NOTHING", &[])?);

        // Alert records: what was sent stays sent; what was pending is sent by the fleet.
        let mut messages = Map::new();
        let list = rows(
            src,
            "SELECT id, destination, kind, title, state, created_at, sent_at, last_error
             FROM alert_messages",
            8,
        )?;
        for r in &list {
            let id = id_of(
                dst,
                "INSERT INTO alert_messages(destination, kind, title, state, created_at, sent_at,
                                            last_error)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                params![r[1], r[2], r[3], r[4], r[5], r[6], r[7]],
            )?;
            messages.insert(r[0].int().unwrap_or_default(), id);
        }
        count("alert_messages", list.len());
        count("alert_items", copy_rows(src, dst, "SELECT destination, finding_id, namespaces, state, reason, created_at, message_id, sent_at FROM alert_items", "INSERT INTO alert_items(destination, finding_id, namespaces, state, reason, created_at, message_id, sent_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING", &[(1, &findings, "finding"), (6, &messages, "alert message")])?);
        count("ci_alert_items", copy_rows(src, dst, "SELECT destination, image_id, subject_id, fkey, jkey, state, reason, created_at, message_id, sent_at FROM ci_alert_items", "INSERT INTO ci_alert_items(destination, image_id, subject_id, fkey, jkey, state, reason, created_at, message_id, sent_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING", &[(1, &images, "image"), (2, &subjects, "subject"), (8, &messages, "alert message")])?);
        let floor = id_of(dst, "SELECT COALESCE(MIN(id), 0) FROM ci_events", params![])?.min(0);
        let list = rows(src, "SELECT image_id, subject_id, fkey, at FROM ci_events ORDER BY id", 4)?;
        for (i, r) in list.iter().enumerate() {
            dst.execute(
                "INSERT INTO ci_events(id, image_id, subject_id, fkey, at) VALUES(?1, ?2, ?3, ?4, ?5)",
                params![
                    floor - 1 - i as i64,
                    mapped(&images, &r[0], "image")?,
                    mapped(&subjects, &r[1], "subject")?,
                    r[2],
                    r[3]
                ],
            )?;
        }
        count("ci_events", list.len());

        // Summary claims: a month already sent (or claimed) stays so.
        count("sent_summaries", copy_rows(src, dst, "SELECT month, audience, scope, recipients, message_id, state, claimed_by, claimed_at, sent_at, attempts, last_error FROM sent_summaries", "INSERT INTO sent_summaries(month, audience, scope, recipients, message_id, state, claimed_by, claimed_at, sent_at, attempts, last_error) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING", &[])?);

        // The inventory and CI results.
        let mut packages = Map::new();
        let list = rows(src, "SELECT id, ecosystem, name, version, purl, short FROM packages", 6)?;
        for r in &list {
            dst.execute(
                "INSERT INTO packages(ecosystem, name, version, purl, short)
                 VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![r[1], r[2], r[3], r[4], r[5]],
            )?;
            let id = id_of(
                dst,
                "SELECT id FROM packages WHERE name = ?1 AND version = ?2 AND ecosystem = ?3
                   AND purl = ?4",
                params![r[2], r[3], r[1], r[4]],
            )?;
            packages.insert(r[0].int().unwrap_or_default(), id);
        }
        count("packages", list.len());
        count("image_packages", copy_rows(src, dst, "SELECT image_id, package_id FROM image_packages", "INSERT INTO image_packages(image_id, package_id) VALUES(?1, ?2) ON CONFLICT DO NOTHING", &[(0, &images, "image"), (1, &packages, "package")])?);
        count("image_sboms", copy_rows(src, dst, "SELECT image_id, origin, set_hash, packages, sbom_at, updated_at FROM image_sboms", "INSERT INTO image_sboms(image_id, origin, set_hash, packages, sbom_at, updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING", &[(0, &images, "image")])?);
        count("ci_images", copy_rows(src, dst, "SELECT image_id, artifact, source, first_seen, last_seen, scanned_at FROM ci_images", "INSERT INTO ci_images(image_id, artifact, source, first_seen, last_seen, scanned_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(image_id) DO UPDATE SET first_seen = MIN(ci_images.first_seen, excluded.first_seen), last_seen = MAX(ci_images.last_seen, excluded.last_seen)", &[(0, &images, "image")])?);
        count("ci_findings", copy_rows(src, dst, "SELECT image_id, subject_id, fkey, severity, fixable, data, first_seen, last_seen, resolved_at FROM ci_findings", "INSERT INTO ci_findings(image_id, subject_id, fkey, severity, fixable, data, first_seen, last_seen, resolved_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(image_id, subject_id, fkey) DO UPDATE SET first_seen = MIN(ci_findings.first_seen, excluded.first_seen)", &[(0, &images, "image"), (1, &subjects, "subject")])?);
        count("ci_covered", copy_rows(src, dst, "SELECT image_id, family, scanned_at FROM ci_covered", "INSERT INTO ci_covered(image_id, family, scanned_at) VALUES(?1, ?2, ?3) ON CONFLICT(image_id, family) DO UPDATE SET scanned_at = MAX(ci_covered.scanned_at, excluded.scanned_at)", &[(0, &images, "image")])?);

        // The cluster, and the source store as a predecessor of the fleet's.
        let now = chrono::Utc::now().timestamp();
        dst.execute(
            "INSERT INTO clusters(name, first_seen, last_seen) VALUES(?1, ?2, ?2)
             ON CONFLICT(name) DO NOTHING",
            params![cluster, now],
        )?;
        dst.execute(
            "INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT DO NOTHING",
            params![format!("{PREDECESSOR}{source_id}"), cluster],
        )?;
        Ok(())
    })?;
    Ok(out)
}

/// The meta key prefix of a store merged into this one (`store migrate`).
pub const PREDECESSOR: &str = "predecessor.";

/// The store ids merged into this store: their DefectDojo tests are this store's.
pub fn predecessors(store: &Store) -> Result<Vec<String>> {
    let mut stmt = store
        .conn()
        .prepare("SELECT key FROM meta WHERE key LIKE 'predecessor.%' ORDER BY key")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for r in rows {
        if let Some(id) = r?.strip_prefix(PREDECESSOR) {
            out.push(id.to_owned());
        }
    }
    Ok(out)
}
