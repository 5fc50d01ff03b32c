//! The DefectDojo outbox: a push is recorded before it is sent and removed only once
//! DefectDojo accepted it, so a crash or restart loses nothing and repeats at most the
//! push that was in flight.

use crate::store::db::{Db, OptionalExtension, params};
use anyhow::Result;

use super::plan::{Action, Context, PlannedTest};
use crate::model::Family;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    New,
    /// Replaced an older queued push of the same test.
    Replaced,
    /// The same content was refused before (HTTP 400, 413, ...) and its retry wait is not
    /// over: not sent this time. The text is the server's message and when it is sent again.
    StillRefused(String),
    /// The same content was refused before and its retry wait is over: queued again, to
    /// see whether the server changed its mind.
    RetryRefused,
}

/// The wait before refused content is sent again, after `refusals` identical refusals in
/// a row: 6 h, then 12 h, then once a day. Long enough not to hammer a server with a push
/// it refuses, short enough that a fix made on the server (a product moved to the right
/// product type, a body limit raised) is picked up without `--resync`.
pub fn refused_retry_wait(refusals: u32) -> i64 {
    const FIRST: i64 = 6 * 3600;
    const MAX: i64 = 24 * 3600;
    let doublings = refusals.saturating_sub(1).min(8);
    (FIRST << doublings).min(MAX)
}

/// Queues a push, replacing an older queued one of the same test. Content refused before
/// is queued again only once its retry wait is over (`refused_retry_wait`), or with
/// `retry_refused` (`scan --resync`). A queued push of the same content keeps its attempt
/// count and last error, so repeated refusals keep backing off.
pub fn enqueue(conn: &Db, p: &PlannedTest, now: i64, retry_refused: bool) -> Result<Enqueued> {
    type Row = (String, String, Option<String>, i64, Option<i64>);
    let existing: Option<Row> = conn
        .prepare_cached(
            "SELECT state, full_hash, last_error, attempts, last_attempt_at FROM outbox
             WHERE test_id = ?1",
        )?
        .query_row(params![p.test_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let mut retrying = false;
    if let Some((state, full, err, attempts, last)) = &existing
        && !retry_refused
        && state == "failed"
        && *full == p.full_hash
    {
        let refusals = (*attempts).clamp(1, i64::from(u32::MAX)) as u32;
        let due = last
            .unwrap_or(0)
            .saturating_add(refused_retry_wait(refusals));
        if now < due {
            let when = chrono::DateTime::from_timestamp(due, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| due.to_string());
            return Ok(Enqueued::StillRefused(format!(
                "{} (refused {refusals} time(s) in a row; sent again from {when}, when its content changes, or with --resync)",
                err.clone().unwrap_or_default()
            )));
        }
        retrying = true;
    }
    conn.prepare_cached(
        "INSERT INTO outbox(test_id, action, content_hash, full_hash, form, file, created_at, state)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')
         ON CONFLICT(test_id) DO UPDATE SET
             action = excluded.action, content_hash = excluded.content_hash,
             form = excluded.form, file = excluded.file,
             created_at = excluded.created_at, state = 'pending',
             attempts = CASE WHEN outbox.full_hash = excluded.full_hash THEN outbox.attempts ELSE 0 END,
             last_error = CASE WHEN outbox.full_hash = excluded.full_hash THEN outbox.last_error END,
             full_hash = excluded.full_hash",
    )?
    .execute(params![
        p.test_id,
        p.action.as_str(),
        p.content_hash,
        p.full_hash,
        serde_json::to_string(&p.form)?,
        p.file,
        now
    ])?;
    Ok(if retrying {
        Enqueued::RetryRefused
    } else if existing.is_some() {
        Enqueued::Replaced
    } else {
        Enqueued::New
    })
}

/// A queued push as the exporter reads it back.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub test_id: i64,
    pub action: Action,
    pub content_hash: String,
    pub full_hash: String,
    pub form: Vec<(String, String)>,
    pub file: Vec<u8>,
    pub attempts: u32,
    pub context: Context,
    pub title: String,
    pub family: Family,
    pub dd_test_id: Option<i64>,
}

pub fn pending(conn: &Db) -> Result<Vec<Pending>> {
    let mut stmt = conn.prepare(
        "SELECT o.id, o.test_id, o.action, o.content_hash, o.full_hash, o.form, o.file, o.attempts,
                t.product_type, t.product, t.engagement, t.title, t.family, t.dd_test_id
         FROM outbox o JOIN dojo_tests t ON t.id = o.test_id
         WHERE o.state = 'pending' ORDER BY o.id",
    )?;
    let rows = stmt.query_map([], |r| {
        let action: String = r.get(2)?;
        let family: String = r.get(12)?;
        let pending = Pending {
            id: r.get(0)?,
            test_id: r.get(1)?,
            action: if action == "sync" {
                Action::Sync
            } else {
                Action::Reimport
            },
            content_hash: r.get(3)?,
            full_hash: r.get(4)?,
            form: Vec::new(),
            file: r.get(6)?,
            attempts: r.get::<_, i64>(7)?.max(0) as u32,
            context: Context {
                product_type: r.get(8)?,
                product: r.get(9)?,
                engagement: r.get(10)?,
            },
            title: r.get(11)?,
            family: Family::parse(&family).unwrap_or(Family::Vulnerability),
            dd_test_id: r.get(13)?,
        };
        Ok((pending, r.get::<_, String>(5)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut pending, form) = row?;
        pending.form = serde_json::from_str(&form)?;
        out.push(pending);
    }
    Ok(out)
}

/// Counted before sending, so a push that crashed the process is visible as an attempt.
pub fn attempt(conn: &Db, id: i64, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

pub fn note_error(conn: &Db, id: i64, error: &str) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET last_error = ?2 WHERE id = ?1",
        params![id, error],
    )?;
    Ok(())
}

/// DefectDojo refused the content (400, 413, ...): kept with its message, sent again after
/// `refused_retry_wait`. For a refused entry `attempts` counts the identical refusals in a
/// row: any other answer in between (a different message, a 5xx) starts it again at 1.
pub fn refuse(conn: &Db, id: i64, error: &str) -> Result<()> {
    conn.execute(
        "UPDATE outbox SET state = 'failed',
             attempts = CASE WHEN last_error IS NOT DISTINCT FROM ?2 THEN MAX(attempts, 1) ELSE 1 END,
             last_error = ?2
         WHERE id = ?1",
        params![id, error],
    )?;
    Ok(())
}

/// A finding was deleted in DefectDojo: forget its id, and make the test's next push a
/// reimport (which creates it again).
pub fn finding_gone(conn: &Db, test_id: i64, uid: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM dojo_findings WHERE test_id = ?1 AND uid = ?2",
        params![test_id, uid],
    )?;
    conn.execute(
        "UPDATE dojo_tests SET acked_hash = NULL WHERE id = ?1",
        params![test_id],
    )?;
    Ok(())
}

/// The reimport was accepted: the test's membership is acknowledged and the push leaves
/// the outbox unless a patch step is still owed (then it stays as a sync).
pub fn reimported(conn: &Db, p: &Pending, dd_test_id: i64, result: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE dojo_tests SET acked_hash = ?2, dd_test_id = ?3, last_push_at = ?4, last_result = ?5
         WHERE id = ?1",
        params![p.test_id, p.content_hash, dd_test_id, now, result],
    )?;
    conn.execute(
        "UPDATE outbox SET action = 'sync', attempts = 0, last_error = NULL WHERE id = ?1",
        params![p.id],
    )?;
    conn.execute(
        "INSERT INTO dojo_contexts(product_type, product, engagement) VALUES(?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        params![
            p.context.product_type,
            p.context.product,
            p.context.engagement
        ],
    )?;
    Ok(())
}

/// Every changed finding was patched: the test is fully in sync.
pub fn synced(conn: &Db, p: &Pending) -> Result<()> {
    conn.execute(
        "UPDATE dojo_tests SET synced_hash = ?2 WHERE id = ?1",
        params![p.test_id, p.full_hash],
    )?;
    conn.execute("DELETE FROM outbox WHERE id = ?1", params![p.id])?;
    Ok(())
}

pub fn known_contexts(conn: &Db) -> Result<std::collections::HashSet<Context>> {
    let mut stmt = conn.prepare("SELECT product_type, product, engagement FROM dojo_contexts")?;
    let rows = stmt.query_map([], |r| {
        Ok(Context {
            product_type: r.get(0)?,
            product: r.get(1)?,
            engagement: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<crate::store::db::Result<_>>()?)
}

/// Age in seconds of the oldest push waiting, if any.
pub fn oldest_pending_age(conn: &Db, now: i64) -> Result<Option<i64>> {
    let oldest: Option<i64> = conn.query_row(
        "SELECT MIN(created_at) FROM outbox WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )?;
    Ok(oldest.map(|t| (now - t).max(0)))
}

/// Counts for the summary: pushes waiting and pushes refused.
pub fn depth(conn: &Db) -> Result<(u64, u64)> {
    let (p, f): (i64, i64) = conn.query_row(
        "SELECT COUNT(CASE WHEN state = 'pending' THEN 1 END), COUNT(CASE WHEN state = 'failed' THEN 1 END) FROM outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((p.max(0) as u64, f.max(0) as u64))
}

/// What DefectDojo holds for a finding of a test.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DojoFindingState {
    pub dd_id: Option<i64>,
    pub sent_hash: Option<String>,
}

pub fn finding_states(
    conn: &Db,
    test_id: i64,
) -> Result<std::collections::HashMap<String, DojoFindingState>> {
    let mut stmt =
        conn.prepare_cached("SELECT uid, dd_id, sent_hash FROM dojo_findings WHERE test_id = ?1")?;
    let rows = stmt.query_map(params![test_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            DojoFindingState {
                dd_id: r.get(1)?,
                sent_hash: r.get(2)?,
            },
        ))
    })?;
    Ok(rows.collect::<crate::store::db::Result<_>>()?)
}

/// Drops the records of findings no longer in the test (closed by the reimport).
pub fn forget_findings_except(conn: &Db, test_id: i64, keep: &[String]) -> Result<()> {
    let existing: Vec<String> = conn
        .prepare_cached("SELECT uid FROM dojo_findings WHERE test_id = ?1")?
        .query_map(params![test_id], |r| r.get(0))?
        .collect::<crate::store::db::Result<_>>()?;
    let keep: std::collections::HashSet<&String> = keep.iter().collect();
    for uid in existing {
        if !keep.contains(&uid) {
            conn.prepare_cached("DELETE FROM dojo_findings WHERE test_id = ?1 AND uid = ?2")?
                .execute(params![test_id, uid])?;
        }
    }
    Ok(())
}
