//! DefectDojo's triage of our findings, as the exporter last read it back: one type and
//! one precedence for every reader (alerts drop triaged findings, the summary does not
//! count them as open).
//!
//! The exporter writes it (`record`) after each push and PATCH; alerts refresh it at send
//! time. A finding is matched to DefectDojo's copy by `model::finding_uid`, the id we send
//! as `unique_id_from_tool`; readers here ask by our own finding id.

use std::collections::HashMap;

use crate::store::db::{Db, params};
use anyhow::{Context, Result};

use crate::model::{Family, finding_uid};

/// The flags DefectDojo keeps on one finding of one test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TriageFlags {
    pub active: bool,
    pub risk_accepted: bool,
    pub false_p: bool,
    pub out_of_scope: bool,
}

impl TriageFlags {
    /// What the flags say, with the one precedence: false positive (the finding is not
    /// real), then risk accepted, then out of scope.
    pub fn verdict(&self) -> Option<Triage> {
        if self.false_p {
            Some(Triage::FalsePositive)
        } else if self.risk_accepted {
            Some(Triage::RiskAccepted)
        } else if self.out_of_scope {
            Some(Triage::OutOfScope)
        } else {
            None
        }
    }
}

/// Why a finding is not treated as open: DefectDojo's triage. Ordered strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Triage {
    FalsePositive,
    RiskAccepted,
    OutOfScope,
}

impl Triage {
    pub fn label(self) -> &'static str {
        match self {
            Triage::RiskAccepted => "risk accepted",
            Triage::FalsePositive => "false positive",
            Triage::OutOfScope => "out of scope",
        }
    }
}

/// A finding's triage over every DefectDojo test that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The strongest triage of any test.
    pub triage: Triage,
    /// Some other test holds the finding untriaged.
    pub disputed: bool,
}

/// Records DefectDojo's id for a finding of a test, with its triage flags when read back
/// (`None` keeps the flags recorded before) and the hash of what was sent.
pub fn record(
    conn: &Db,
    test_id: i64,
    uid: &str,
    dd_id: i64,
    flags: Option<TriageFlags>,
    sent_hash: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO dojo_findings(test_id, uid, dd_id, sent_hash, active, risk_accepted, false_p,
                                   out_of_scope, checked_at)
         VALUES(?1, ?2, ?3, ?4, ?5, COALESCE(?6, 0), COALESCE(?7, 0), COALESCE(?8, 0), ?9)
         ON CONFLICT(test_id, uid) DO UPDATE SET
             dd_id = excluded.dd_id,
             sent_hash = COALESCE(excluded.sent_hash, dojo_findings.sent_hash),
             active = COALESCE(?5, dojo_findings.active),
             risk_accepted = COALESCE(?6, dojo_findings.risk_accepted),
             false_p = COALESCE(?7, dojo_findings.false_p),
             out_of_scope = COALESCE(?8, dojo_findings.out_of_scope),
             checked_at = COALESCE(?9, dojo_findings.checked_at)",
    )?
    .execute(params![
        test_id,
        uid,
        dd_id,
        sent_hash,
        flags.map(|t| t.active),
        flags.map(|t| t.risk_accepted),
        flags.map(|t| t.false_p),
        flags.map(|t| t.out_of_scope),
        flags.map(|_| now),
    ])?;
    Ok(())
}

/// One DefectDojo test's copy of a finding.
#[derive(Debug, Clone)]
pub struct Copy {
    pub test_id: i64,
    pub uid: String,
    /// DefectDojo's finding id, once known.
    pub dd_id: Option<i64>,
    pub flags: TriageFlags,
}

/// Every DefectDojo copy of one finding (one per test that holds it).
pub fn copies(conn: &Db, finding_id: i64) -> Result<Vec<Copy>> {
    let Some((family, key, fkey)) = conn
        .prepare_cached(
            "SELECT s.family, s.key, f.fkey FROM findings f JOIN subjects s ON s.id = f.subject_id
             WHERE f.id = ?1",
        )?
        .query_row(params![finding_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map(Some)
        .or_else(|e| match e {
            crate::store::db::Error::NoRows => Ok(None),
            e => Err(e),
        })?
    else {
        return Ok(Vec::new());
    };
    let Some(family) = Family::parse(&family) else {
        return Ok(Vec::new());
    };
    let uid = finding_uid(family, &key, &fkey);
    let mut stmt = conn.prepare_cached(
        "SELECT df.test_id, df.dd_id, df.active, df.risk_accepted, df.false_p, df.out_of_scope
         FROM dojo_tests t JOIN dojo_findings df ON df.test_id = t.id
         JOIN findings f ON f.subject_id = t.subject_id
         WHERE f.id = ?1 AND t.family = ?2 AND df.uid = ?3",
    )?;
    let rows = stmt.query_map(params![finding_id, family.as_str(), uid], |r| {
        Ok(Copy {
            test_id: r.get(0)?,
            uid: uid.clone(),
            dd_id: r.get(1)?,
            flags: TriageFlags {
                active: r.get::<_, Option<bool>>(2)?.unwrap_or(true),
                risk_accepted: r.get(3)?,
                false_p: r.get(4)?,
                out_of_scope: r.get(5)?,
            },
        })
    })?;
    Ok(rows.collect::<crate::store::db::Result<_>>()?)
}

/// Every triaged finding (by our finding id): one pass over the subjects that have a
/// triaged finding somewhere, not one query per finding.
pub fn verdicts(conn: &Db) -> Result<HashMap<i64, Verdict>> {
    let mut stmt = conn.prepare(
        "SELECT t.subject_id, f.uid, f.risk_accepted, f.false_p, f.out_of_scope
         FROM dojo_findings f JOIN dojo_tests t ON t.id = f.test_id
         WHERE t.subject_id IN (
             SELECT t2.subject_id FROM dojo_findings f2 JOIN dojo_tests t2 ON t2.id = f2.test_id
             WHERE f2.risk_accepted <> 0 OR f2.false_p <> 0 OR f2.out_of_scope <> 0)",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            TriageFlags {
                active: true,
                risk_accepted: r.get(2)?,
                false_p: r.get(3)?,
                out_of_scope: r.get(4)?,
            },
        ))
    })?;
    // (subject, uid) → (the strongest triage of any test, some test holds it untriaged)
    let mut by_uid: HashMap<(i64, String), (Option<Triage>, bool)> = HashMap::new();
    for row in rows {
        let (subject, uid, flags) = row.context("store: reading dojo_findings")?;
        let t = flags.verdict();
        let e = by_uid.entry((subject, uid)).or_default();
        e.0 = match (e.0, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        e.1 |= t.is_none();
    }
    by_uid.retain(|_, (t, _)| t.is_some());
    let mut out = HashMap::new();
    if by_uid.is_empty() {
        return Ok(out);
    }
    let mut stmt = conn.prepare(
        "SELECT f.id, f.subject_id, s.family, s.key, f.fkey
         FROM findings f JOIN subjects s ON s.id = f.subject_id
         WHERE f.subject_id IN (
             SELECT t.subject_id FROM dojo_findings d JOIN dojo_tests t ON t.id = d.test_id
             WHERE d.risk_accepted <> 0 OR d.false_p <> 0 OR d.out_of_scope <> 0)",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    for row in rows {
        let (id, subject, family, key, fkey) = row.context("store: reading findings")?;
        let Some(family) = Family::parse(&family) else {
            continue;
        };
        let uid = finding_uid(family, &key, &fkey);
        if let Some((Some(triage), disputed)) = by_uid.get(&(subject, uid)) {
            out.insert(
                id,
                Verdict {
                    triage: *triage,
                    disputed: *disputed,
                },
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_precedence_false_positive_first() {
        let both = TriageFlags {
            active: true,
            risk_accepted: true,
            false_p: true,
            out_of_scope: true,
        };
        assert_eq!(both.verdict(), Some(Triage::FalsePositive));
        let ra_oos = TriageFlags {
            false_p: false,
            ..both
        };
        assert_eq!(ra_oos.verdict(), Some(Triage::RiskAccepted));
        assert_eq!(TriageFlags::default().verdict(), None);
        // The strongest of two tests' verdicts is the smaller in order.
        assert_eq!(
            Triage::RiskAccepted.min(Triage::FalsePositive),
            Triage::FalsePositive
        );
        assert_eq!(
            Triage::OutOfScope.min(Triage::RiskAccepted),
            Triage::RiskAccepted
        );
    }
}
