//! The store's history read back as states at a point in time.
//!
//! Current columns (`resolved_at`, `severity`, `fixable`) say how a finding is now; a
//! summary of a past month needs how it was then. So every state is computed from the
//! event log (`finding_events`), at an instant T, counting only events strictly before T:
//!
//! - **open at T**: the last of its `opened` / `reopened` / `resolved` events before T is
//!   `opened` or `reopened`. A finding with no event before T did not exist yet.
//! - **severity at T**: the `old` side of its first `severity` event at or after T (the
//!   rating it had until that re-rating); with no such event, its current severity.
//! - **fixable at T**: a fix was known before T: the finding is fixable now and its
//!   `fixable` event (fix published) is before T, or it has none (fixable when first seen).
//!   A fix withdrawn later is not recorded by the store, so it counts as never fixable.
//! - **where it ran in a month**: the subject's sightings (subject × image × workload
//!   with first and last seen) overlapping the month; a sighting whose report still
//!   exists runs until now.
//!
//! Triage from DefectDojo (risk accepted, false positive, out of scope) has no history:
//! it is the state last read back, applied to every month. A subject can have several
//! DefectDojo tests: after a mapping change (the old test is left alone), and, with a
//! mapping that reads the namespace or workload, one per product (e.g. per team). In the
//! second case a finding counts as triaged only when every test holding it says so (one
//! team's acceptance does not hide it from the others); otherwise any test's triage
//! counts, as the newest test may be the only one where it was triaged.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::store::db::params;
use anyhow::{Context, Result};

use crate::model::{Family, Severity};
use crate::store::Store;
use crate::store::triage;
use crate::store::triage::Triage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Opened,
    Reopened,
    Resolved,
}

/// One finding with what is needed to answer "how was it at T".
#[derive(Debug, Clone)]
pub struct FindingHistory {
    pub id: i64,
    pub subject_id: i64,
    pub family: Family,
    /// Current severity (the newest scan's rating).
    pub severity: Severity,
    pub first_seen: i64,
    pub first_title: String,
    lifecycle: Vec<(i64, Life)>,
    /// (at, severity before the re-rating), in time order.
    rerated: Vec<(i64, Severity)>,
    /// Since when a fix is known; None: never (as far as the store knows).
    fixable_since: Option<i64>,
    /// Triage in some DefectDojo test of the subject.
    triage: Option<Triage>,
    /// Some other test of the subject holds it untriaged.
    triage_disputed: bool,
    /// CI saw it (in an image of the same repository) before it was first seen at runtime.
    pub known_before_deploy: bool,
}

impl FindingHistory {
    /// DefectDojo's triage; with `every_test`, only if no test of the subject holds the
    /// finding untriaged.
    pub fn triage(&self, every_test: bool) -> Option<Triage> {
        self.triage
            .filter(|_| !(every_test && self.triage_disputed))
    }

    pub fn open_at(&self, t: i64) -> bool {
        let mut open = false;
        for (at, e) in &self.lifecycle {
            if *at >= t {
                break;
            }
            open = *e != Life::Resolved;
        }
        open
    }

    pub fn severity_at(&self, t: i64) -> Severity {
        self.rerated
            .iter()
            .find(|(at, _)| *at >= t)
            .map(|(_, old)| *old)
            .unwrap_or(self.severity)
    }

    pub fn fixable_at(&self, t: i64) -> bool {
        self.fixable_since.is_some_and(|s| s < t)
    }

    /// First seen for its subject within `[start, end)`.
    pub fn opened_in(&self, start: i64, end: i64) -> bool {
        self.lifecycle
            .iter()
            .any(|(at, e)| *e == Life::Opened && *at >= start && *at < end)
    }

    /// Resolved within `[start, end)` and not open again at `end`: when (the last
    /// resolution in the window).
    pub fn fixed_in(&self, start: i64, end: i64) -> Option<i64> {
        if self.open_at(end) {
            return None;
        }
        self.lifecycle
            .iter()
            .rev()
            .find(|(at, e)| *e == Life::Resolved && *at >= start && *at < end)
            .map(|(at, _)| *at)
    }

    /// When it was first opened (first event), else `first_seen`.
    pub fn opened_at(&self) -> i64 {
        self.lifecycle
            .first()
            .map(|(at, _)| *at)
            .unwrap_or(self.first_seen)
    }
}

#[derive(Debug, Clone)]
pub struct SubjectInfo {
    pub family: Family,
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct WorkloadInfo {
    pub cluster: String,
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub key: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// A subject seen running in a workload (with one image) from `first` to `last`.
#[derive(Debug, Clone, Copy)]
pub struct Sighting {
    pub image_id: i64,
    pub workload_id: i64,
    pub first: i64,
    /// `i64::MAX` while a report still exists.
    pub last: i64,
}

impl Sighting {
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        self.first < end && self.last >= start
    }
}

/// Everything a summary reads, loaded once.
#[derive(Debug, Default)]
pub struct History {
    pub findings: Vec<FindingHistory>,
    pub subjects: HashMap<i64, SubjectInfo>,
    pub workloads: HashMap<i64, WorkloadInfo>,
    pub images: HashMap<i64, ImageInfo>,
    pub sightings: HashMap<i64, Vec<Sighting>>,
    /// DefectDojo test id per subject (for links).
    pub dojo_tests: HashMap<i64, i64>,
    /// Namespace name → annotations.
    pub namespace_annotations: HashMap<String, HashMap<String, String>>,
    /// The store holds CI results: the summary tells what CI knew before deploy.
    pub has_ci: bool,
}

/// The rows of `sql` by their first column, the id; `row` reads the rest.
fn by_id<T>(
    conn: &crate::store::Db,
    sql: &str,
    what: &str,
    row: impl Fn(&crate::store::db::Row<'_>) -> crate::store::db::Result<T>,
) -> Result<HashMap<i64, T>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, row(r)?)))?;
    let mut out = HashMap::new();
    for r in rows {
        let (id, v) = r.with_context(|| format!("store: reading {what}"))?;
        out.insert(id, v);
    }
    Ok(out)
}

impl History {
    /// Loads the findings that may have been open in `[since, until)`: first seen before
    /// `until` and not resolved for good before `since` (a finding resolved before
    /// `since` and never reopened has `resolved_at < since`; a reopening clears it).
    /// Their events after `until` are read too (a later re-rating tells the severity).
    /// Sightings likewise: only those overlapping `[since, until)`.
    pub fn load(store: &Store, since: i64, until: i64) -> Result<History> {
        let conn = store.conn();
        let mut h = History::default();

        let mut stmt = conn.prepare("SELECT id, family, key FROM subjects")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (id, family, key) = row.context("store: reading subjects")?;
            let Some(family) = Family::parse(&family) else {
                tracing::warn!(subject = %key, family, "subject of an unknown family; left out of the summary");
                continue;
            };
            h.subjects.insert(id, SubjectInfo { family, key });
        }

        let mut stmt = conn.prepare(
            "SELECT id, subject_id, severity, fixable, first_seen, first_title, resolved_at
             FROM findings
             WHERE first_seen < ?1 AND (resolved_at IS NULL OR resolved_at >= ?2)
             ORDER BY id",
        )?;
        let rows = stmt.query_map(params![until, since], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<i64>>(6)?,
            ))
        })?;
        let mut resolved_at: Vec<Option<i64>> = Vec::new();
        let mut fixable_now: Vec<bool> = Vec::new();
        for row in rows {
            let (id, subject_id, severity, fixable, first_seen, first_title, resolved) =
                row.context("store: reading findings")?;
            let Some(subject) = h.subjects.get(&subject_id) else {
                continue;
            };
            h.findings.push(FindingHistory {
                id,
                subject_id,
                family: subject.family,
                severity: Severity::parse_lenient(&severity),
                first_seen,
                first_title,
                lifecycle: Vec::new(),
                rerated: Vec::new(),
                fixable_since: None,
                triage: None,
                triage_disputed: false,
                known_before_deploy: false,
            });
            resolved_at.push(resolved);
            fixable_now.push(fixable);
        }

        h.has_ci = mark_known_before_deploy(conn, &mut h.findings)?;

        // Events, merged into the findings (both ordered by finding id). Later events are
        // read too: a re-rating after T tells the severity a finding had at T.
        let mut fixable_event: Vec<Option<i64>> = vec![None; h.findings.len()];
        let mut stmt = conn.prepare(
            "SELECT finding_id, at, event, detail FROM finding_events
             WHERE finding_id IN (SELECT id FROM findings
                                  WHERE first_seen < ?1 AND (resolved_at IS NULL OR resolved_at >= ?2))
             ORDER BY finding_id, at, id",
        )?;
        let mut rows = stmt.query(params![until, since])?;
        let mut i = 0usize;
        while let Some(r) = rows.next().context("store: reading finding_events")? {
            let fid: i64 = r.get(0)?;
            let at: i64 = r.get(1)?;
            while i < h.findings.len() && h.findings[i].id < fid {
                i += 1;
            }
            if i >= h.findings.len() {
                break;
            }
            if h.findings[i].id != fid {
                continue;
            }
            let event: String = r.get(2)?;
            let f = &mut h.findings[i];
            match event.as_str() {
                "opened" => f.lifecycle.push((at, Life::Opened)),
                "reopened" => f.lifecycle.push((at, Life::Reopened)),
                "resolved" => f.lifecycle.push((at, Life::Resolved)),
                "severity" => {
                    let detail: Option<String> = r.get(3)?;
                    // detail is `OLD->NEW`.
                    if let Some((old, _)) = detail.as_deref().and_then(|d| d.split_once("->")) {
                        f.rerated.push((at, Severity::parse_lenient(old)));
                    }
                }
                "fixable" => fixable_event[i] = Some(at),
                _ => {}
            }
        }
        drop(rows);
        for (i, f) in h.findings.iter_mut().enumerate() {
            if f.lifecycle.is_empty() {
                // No event log (should not happen): fall back to the current columns.
                f.lifecycle.push((f.first_seen, Life::Opened));
                if let Some(r) = resolved_at[i] {
                    f.lifecycle.push((r, Life::Resolved));
                }
            }
            if fixable_now[i] {
                f.fixable_since = Some(fixable_event[i].unwrap_or(f.first_seen));
            }
        }

        h.load_triage(store)?;

        h.workloads = by_id(
            conn,
            "SELECT id, namespace, kind, name, cluster FROM workloads",
            "workloads",
            |r| {
                Ok(WorkloadInfo {
                    cluster: r.get(4)?,
                    namespace: r.get(1)?,
                    kind: r.get(2)?,
                    name: r.get(3)?,
                })
            },
        )?;
        h.images = by_id(
            conn,
            "SELECT id, key, tag, digest FROM images",
            "images",
            |r| {
                Ok(ImageInfo {
                    key: r.get(1)?,
                    tag: r.get(2)?,
                    digest: r.get(3)?,
                })
            },
        )?;

        // A sighting whose report still exists runs until now; one whose report is in
        // its grace period ran until the report went.
        let mut stmt = conn.prepare(
            "WITH live AS (
                SELECT t.subject_id AS s, COALESCE(t.image_id, 0) AS i, r.workload_id AS w,
                       MAX(CASE WHEN r.gone_since IS NULL THEN 1 ELSE 0 END) AS running, MAX(r.gone_since) AS gone
                FROM reports r JOIN targets t ON t.id = r.target_id GROUP BY 1, 2, 3)
             SELECT g.subject_id, g.image_id, g.workload_id, g.first_seen, g.last_seen,
                    live.running, live.gone
             FROM sightings g LEFT JOIN live
               ON live.s = g.subject_id AND live.i = g.image_id AND live.w = g.workload_id
             WHERE g.first_seen < ?2 AND (g.last_seen >= ?1 OR live.s IS NOT NULL)",
        )?;
        // Only those that can overlap `[since, until)`: the table keeps every place an
        // image ever ran.
        let rows = stmt.query_map(params![since, until], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<bool>>(5)?,
                r.get::<_, Option<i64>>(6)?,
            ))
        })?;
        for row in rows {
            let (subject, image_id, workload_id, first, last, running, gone) =
                row.context("store: reading sightings")?;
            let last = match (running, gone) {
                (Some(true), _) => i64::MAX,
                (_, Some(g)) => last.max(g),
                _ => last,
            };
            h.sightings.entry(subject).or_default().push(Sighting {
                image_id,
                workload_id,
                first,
                last,
            });
        }

        let mut stmt = conn.prepare(
            "SELECT subject_id, dd_test_id FROM dojo_tests WHERE dd_test_id IS NOT NULL
             ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (s, t) = row.context("store: reading dojo_tests")?;
            h.dojo_tests.entry(s).or_insert(t);
        }

        h.namespace_annotations = namespace_annotations(store)?;
        Ok(h)
    }

    /// DefectDojo's triage state for the findings it holds, matched by the id we send
    /// as `unique_id_from_tool` (tests that disagree on how: false positive, then risk
    /// accepted, then out of scope), and whether another test holds it untriaged.
    fn load_triage(&mut self, store: &Store) -> Result<()> {
        let verdicts = triage::verdicts(store.conn())?;
        for f in &mut self.findings {
            if let Some(v) = verdicts.get(&f.id) {
                f.triage = Some(v.triage);
                f.triage_disputed = v.disputed;
            }
        }
        Ok(())
    }

    /// Namespaces whose `annotation` names `team`.
    pub fn team_namespaces(&self, annotation: &str, team: &str) -> BTreeSet<String> {
        namespaces_of(&self.namespace_annotations, annotation, team)
    }

    /// Subjects that ran in one of `namespaces` during `[start, end)`.
    pub fn subjects_in(&self, namespaces: &BTreeSet<String>, start: i64, end: i64) -> HashSet<i64> {
        self.subjects_where(start, end, |w| namespaces.contains(&w.namespace))
    }

    /// Subjects that ran in `cluster` (a fleet store's) during `[start, end)`.
    pub fn subjects_in_cluster(&self, cluster: &str, start: i64, end: i64) -> HashSet<i64> {
        self.subjects_where(start, end, |w| w.cluster == cluster)
    }

    /// Subjects with a sighting in `[start, end)` on a workload `place` accepts.
    fn subjects_where(
        &self,
        start: i64,
        end: i64,
        place: impl Fn(&WorkloadInfo) -> bool,
    ) -> HashSet<i64> {
        self.sightings
            .iter()
            .filter(|(_, ss)| {
                ss.iter().any(|s| {
                    s.overlaps(start, end) && self.workloads.get(&s.workload_id).is_some_and(&place)
                })
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Namespace name → annotations, as the store has them now.
pub fn namespace_annotations(store: &Store) -> Result<HashMap<String, HashMap<String, String>>> {
    crate::store::query::namespace_annotations(store.conn())
}

/// Namespaces whose `annotation` names `team`.
pub fn namespaces_of(
    annotations: &HashMap<String, HashMap<String, String>>,
    annotation: &str,
    team: &str,
) -> BTreeSet<String> {
    annotations
        .iter()
        .filter(|(_, a)| a.get(annotation).is_some_and(|v| v.trim() == team))
        .map(|(n, _)| n.clone())
        .collect()
}

/// Marks the findings CI saw before the cluster did; false when the store holds no CI
/// result at all (then the summary says nothing about CI).
fn mark_known_before_deploy(
    conn: &crate::store::Db,
    findings: &mut [FindingHistory],
) -> Result<bool> {
    use crate::store::inventory::join_key;
    let mut stmt = conn.prepare(
        "SELECT c.subject_id, c.fkey, s.family, MIN(c.first_seen) FROM ci_findings c
         JOIN subjects s ON s.id = c.subject_id GROUP BY c.subject_id, c.fkey, s.family",
    )?;
    let mut ci: HashMap<(i64, String), i64> = HashMap::new();
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })? {
        let (subject, fkey, family, first) = row.context("store: reading ci_findings")?;
        let Some(family) = Family::parse(&family) else {
            continue;
        };
        let e = ci
            .entry((subject, join_key(family, &fkey).to_owned()))
            .or_insert(first);
        *e = (*e).min(first);
    }
    let any = conn.query_row("SELECT EXISTS(SELECT 1 FROM ci_images)", [], |r| r.get(0))?;
    if ci.is_empty() {
        return Ok(any);
    }
    let index: HashMap<i64, usize> = findings
        .iter()
        .enumerate()
        .map(|(i, f)| (f.id, i))
        .collect();
    let mut stmt = conn.prepare(
        "SELECT id, fkey FROM findings WHERE subject_id IN (SELECT DISTINCT subject_id FROM ci_findings)",
    )?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
        let (id, fkey) = row.context("store: reading findings")?;
        let Some(&i) = index.get(&id) else { continue };
        let f = &mut findings[i];
        if let Some(first_ci) = ci.get(&(f.subject_id, join_key(f.family, &fkey).to_owned())) {
            f.known_before_deploy = *first_ci <= f.first_seen;
        }
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(lifecycle: Vec<(i64, Life)>, rerated: Vec<(i64, Severity)>) -> FindingHistory {
        FindingHistory {
            id: 1,
            subject_id: 1,
            family: Family::Vulnerability,
            severity: Severity::Critical,
            first_seen: 100,
            first_title: String::new(),
            lifecycle,
            rerated,
            fixable_since: Some(300),
            triage: None,
            triage_disputed: false,
            known_before_deploy: false,
        }
    }

    #[test]
    fn state_at_t_counts_only_events_before_t() {
        let f = finding(
            vec![
                (100, Life::Opened),
                (200, Life::Resolved),
                (250, Life::Reopened),
                (400, Life::Resolved),
            ],
            vec![(300, Severity::High)],
        );
        assert!(!f.open_at(100), "an event at T is not before T");
        assert!(f.open_at(101));
        assert!(!f.open_at(201));
        assert!(f.open_at(251));
        assert!(!f.open_at(401));
        // High until the re-rating at 300, critical after.
        assert_eq!(f.severity_at(300), Severity::High);
        assert_eq!(f.severity_at(301), Severity::Critical);
        assert!(!f.fixable_at(300));
        assert!(f.fixable_at(301));
        // Resolved at 200 but back at 250: not fixed in [150, 300); fixed in [300, 500).
        assert_eq!(f.fixed_in(150, 300), None);
        assert_eq!(f.fixed_in(300, 500), Some(400));
        assert!(f.opened_in(100, 101));
        assert!(!f.opened_in(101, 1000), "a reopening is not new");
        assert_eq!(f.opened_at(), 100);
    }

    #[test]
    fn triage_of_several_tests() {
        let mut f = finding(vec![(100, Life::Opened)], vec![]);
        f.triage = Some(Triage::RiskAccepted);
        assert_eq!(f.triage(false), Some(Triage::RiskAccepted));
        assert_eq!(f.triage(true), Some(Triage::RiskAccepted));
        f.triage_disputed = true;
        assert_eq!(f.triage(false), Some(Triage::RiskAccepted));
        assert_eq!(f.triage(true), None);
        use Triage::*;
        for (a, b, w) in [
            (RiskAccepted, FalsePositive, FalsePositive),
            (OutOfScope, RiskAccepted, RiskAccepted),
            (OutOfScope, OutOfScope, OutOfScope),
            (FalsePositive, OutOfScope, FalsePositive),
        ] {
            assert_eq!(a.min(b), w);
            assert_eq!(b.min(a), w);
        }
    }
}
