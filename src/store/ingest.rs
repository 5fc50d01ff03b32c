//! The write path: reports in, deduplicated images and findings with history out.
//!
//! N reports of one image digest are one target: the first report stores the finding
//! set, every further report with the same set only records that the image is used
//! there (the fast path: one row upsert, no finding writes).

use std::collections::HashMap;

use crate::store::db::{OptionalExtension, params};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::Store;
use crate::model::{
    Family, Finding, Image, NamespaceMeta, Report, ReportId, ReportKind, Subject, WorkloadKey,
};
use crate::scope::{Coverage, Scope};

/// Two clusters given one name in a fleet store: refused, since one's sweeps would end
/// the other's reports and its DefectDojo pushes close the other's findings.
#[derive(Debug, thiserror::Error)]
#[error(
    "cluster {cluster:?} in this fleet store is another cluster (its kube-system Namespace \
     has UID {known}; this one's is {seen}): two installs were given the same cluster name. \
     Nothing was written. Give each cluster its own `cluster:` name; if this cluster was \
     rebuilt and is the same one, remove the old identity with \
     `DELETE FROM clusters WHERE name = '{cluster}'` in the fleet database"
)]
pub struct ClusterNameTaken {
    pub cluster: String,
    pub known: String,
    pub seen: String,
}

/// What closing a sweep changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FinishStats {
    /// Reports not seen this sweep: their grace period starts.
    pub reports_gone: u64,
    /// Reports whose grace period ended: removed.
    pub reports_expired: u64,
    /// Image or resource contents no report referred to for the grace period: removed.
    pub targets_removed: u64,
    pub findings_resolved: u64,
    /// Findings seen for the first time in their subject.
    pub findings_opened: u64,
    pub findings_reopened: u64,
    pub severities_changed: u64,
    pub fixes_published: u64,
}

/// One sweep (or one controller batch) in one transaction. Dropping it without
/// `commit` rolls everything back.
pub struct Session<'s> {
    pub(super) store: &'s mut Store,
    scan_id: i64,
    pub(super) now: i64,
    open: bool,
    changes: FinishStats,
    workloads: HashMap<WorkloadKey, i64>,
    images: HashMap<String, i64>,
    subjects: HashMap<Subject, i64>,
    targets: HashMap<(i64, String, [u8; 32]), i64>,
    /// Newest report timestamp per target in this sweep.
    scanned: HashMap<i64, i64>,
    /// The label selector reports are being read under ("" for none).
    selector: String,
    /// Package ids written or read in this session (SBOMs share most of their packages).
    pub(super) package_ids: HashMap<crate::model::Package, i64>,
    pub(super) ci: super::inventory::CiChanges,
}

impl<'s> Session<'s> {
    pub fn begin(store: &'s mut Store, source: &str, now: i64) -> Result<Session<'s>> {
        store.begin_write()?;
        let scan_id = match store.conn().query_row(
            "INSERT INTO scans(started_at, source, cluster) VALUES(?1, ?2, ?3) RETURNING id",
            params![now, source, store.cluster()],
            |r| r.get(0),
        ) {
            Ok(id) => id,
            Err(e) => {
                let _ = store.conn().execute_batch("ROLLBACK");
                return Err(e.into());
            }
        };
        Ok(Session {
            store,
            scan_id,
            now,
            open: true,
            changes: FinishStats::default(),
            workloads: HashMap::new(),
            images: HashMap::new(),
            subjects: HashMap::new(),
            targets: HashMap::new(),
            scanned: HashMap::new(),
            selector: String::new(),
            package_ids: HashMap::new(),
            ci: Default::default(),
        })
    }

    /// The reports that follow were listed with this label selector (None: without one,
    /// or read from a file).
    pub fn read_under(&mut self, selector: Option<&str>) {
        self.selector = selector.unwrap_or_default().to_owned();
    }

    pub fn scan_id(&self) -> i64 {
        self.scan_id
    }

    pub fn store(&self) -> &Store {
        self.store
    }

    /// Records one report: its workload, its image, and (when it is the newest scan of
    /// its target with a different content) its findings.
    pub fn report(&mut self, r: &Report) -> Result<()> {
        self.write_report(r)
            .with_context(|| format!("store: writing report {}", r.id))
    }

    fn write_report(&mut self, r: &Report) -> Result<()> {
        let family = r.family();
        let workload_id = self.workload_id(&r.workload)?;
        let subject_id = self.subject_id(&r.subject())?;
        let image_id = match &r.image {
            Some(img) => Some(self.image_id(img)?),
            None => None,
        };
        let findings = dedupe(family, &r.findings);
        let hash = set_hash(family, r.components, &findings);
        let scanned_at = r.scanned_at.map(|t| t.timestamp());
        let target_id = self.target_id(
            subject_id,
            &r.target_key(),
            hash,
            image_id,
            r.components,
            &findings,
            scanned_at,
        )?;
        if let Some(t) = scanned_at {
            let m = self.scanned.entry(target_id).or_insert(t);
            *m = (*m).max(t);
        }
        self.store
            .conn()
            .prepare_cached(
                "INSERT INTO reports(kind, namespace, name, workload_id, container, target_id,
                                     scanned_at, seen_scan, gone_since, selector, labels, cluster)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, ?10, ?11)
                 ON CONFLICT(cluster, kind, namespace, name) DO UPDATE SET
                     workload_id = excluded.workload_id, container = excluded.container,
                     target_id = excluded.target_id, scanned_at = excluded.scanned_at,
                     seen_scan = excluded.seen_scan, gone_since = NULL,
                     selector = excluded.selector, labels = excluded.labels",
            )?
            .execute(params![
                r.id.kind.as_str(),
                r.id.namespace,
                r.id.name,
                workload_id,
                r.container,
                target_id,
                scanned_at,
                self.scan_id,
                self.selector,
                serde_json::to_string(&r.labels)?,
                self.store.cluster(),
            ])?;
        if let (Some(image_id), false) = (image_id, r.packages.is_empty()) {
            self.set_packages(
                image_id,
                super::inventory::Origin::Cluster,
                &r.packages,
                scanned_at,
            )?;
        }
        // Where the subject ran, kept after the report is gone (monthly summaries).
        self.store
            .conn()
            .prepare_cached(
                "INSERT INTO sightings(subject_id, image_id, workload_id, first_seen, last_seen)
                 VALUES(?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (subject_id, image_id, workload_id)
                 DO UPDATE SET last_seen = MAX(sightings.last_seen, excluded.last_seen)",
            )?
            .execute(params![
                subject_id,
                image_id.unwrap_or(0),
                workload_id,
                self.now
            ])?;
        Ok(())
    }

    /// Records a namespace's labels and annotations. `kube-system`'s UID identifies the
    /// cluster in a fleet store: another cluster given the same name is refused before
    /// its sweep could end this one's reports.
    pub fn namespace(&mut self, ns: &NamespaceMeta) -> Result<()> {
        if ns.name == "kube-system"
            && let Some(uid) = &ns.uid
        {
            self.check_cluster_uid(uid)?;
        }
        self.store
            .conn()
            .prepare_cached(
                "INSERT INTO namespaces(name, labels, annotations, updated_at, cluster)
                 VALUES(?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(cluster, name) DO UPDATE SET labels = excluded.labels,
                     annotations = excluded.annotations, updated_at = excluded.updated_at",
            )?
            .execute(params![
                ns.name,
                serde_json::to_string(&ns.labels)?,
                serde_json::to_string(&ns.annotations)?,
                self.now,
                self.store.cluster(),
            ])?;
        Ok(())
    }

    fn check_cluster_uid(&mut self, uid: &str) -> Result<()> {
        let conn = self.store.conn();
        let cluster = self.store.cluster();
        let known: Option<Option<String>> = conn
            .query_row(
                "SELECT uid FROM clusters WHERE name = ?1",
                params![cluster],
                |r| r.get(0),
            )
            .optional()?;
        match known.flatten() {
            Some(k) if k != uid && self.store.is_fleet() => anyhow::bail!(ClusterNameTaken {
                cluster: cluster.to_owned(),
                known: k,
                seen: uid.to_owned(),
            }),
            Some(k) if k == uid => Ok(()),
            // A file store belongs to one cluster; a rebuilt cluster keeps its file.
            _ => {
                conn.execute(
                    "UPDATE clusters SET uid = ?2 WHERE name = ?1",
                    params![cluster, uid],
                )?;
                Ok(())
            }
        }
    }

    /// A report that could not be parsed this time: it still exists, so it keeps the
    /// content it had (a parse error never counts as "no findings").
    pub fn keep(&mut self, id: &ReportId) -> Result<bool> {
        let n = self
            .store
            .conn()
            .prepare_cached(
                "UPDATE reports SET seen_scan = ?4, gone_since = NULL, selector = ?5
                 WHERE kind = ?1 AND namespace = ?2 AND name = ?3 AND cluster = ?6",
            )?
            .execute(params![
                id.kind.as_str(),
                id.namespace,
                id.name,
                self.scan_id,
                self.selector,
                self.store.cluster(),
            ])?;
        Ok(n > 0)
    }

    /// A report deleted: its grace period starts now (controller delete events).
    pub fn gone(&mut self, id: &ReportId) -> Result<bool> {
        let n = self
            .store
            .conn()
            .prepare_cached(
                "UPDATE reports SET gone_since = ?4
                 WHERE kind = ?1 AND namespace = ?2 AND name = ?3 AND cluster = ?5
                   AND gone_since IS NULL",
            )?
            .execute(params![
                id.kind.as_str(),
                id.namespace,
                id.name,
                self.now,
                self.store.cluster()
            ])?;
        Ok(n > 0)
    }

    /// A relist of `kind` began in this session: pass the returned floor to `relisted`.
    pub fn relist_floor(&self) -> i64 {
        self.scan_id
    }

    /// A relist of `kind` that began at `floor` is complete: reports of that kind inside
    /// `coverage` (the watch's namespaces and selector) that it did not list start their
    /// grace period. This is how deletions missed while the watch was down (a restart, a
    /// 410 Gone) are noticed.
    pub fn relisted(&mut self, kind: ReportKind, floor: i64, coverage: &Coverage) -> Result<u64> {
        self.end_unseen(
            "SELECT id, kind, namespace, selector FROM reports
             WHERE kind = ?1 AND seen_scan < ?2 AND gone_since IS NULL AND cluster = ?3",
            params![kind.as_str(), floor, self.store.cluster()],
            |k, ns, sel| coverage.covers(k, ns, sel),
        )
    }

    /// Starts the grace period of the reports `candidates` selects (id, kind, namespace,
    /// selector) that `covered` says the sweep covered. Globs are matched here, not in SQL.
    fn end_unseen(
        &self,
        candidates: &str,
        params: impl crate::store::db::Params,
        covered: impl Fn(ReportKind, &str, &str) -> bool,
    ) -> Result<u64> {
        let conn = self.store.conn();
        let mut ended = Vec::new();
        let mut stmt = conn.prepare_cached(candidates)?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            let kind: String = row.get(1)?;
            let namespace: String = row.get(2)?;
            let selector: String = row.get(3)?;
            // A kind this binary does not know was not read by anything: keep it.
            let Some(kind) = ReportKind::from_kind(&kind) else {
                continue;
            };
            if covered(kind, &namespace, &selector) {
                ended.push(row.get::<_, i64>(0)?);
            }
        }
        let mut update = conn.prepare_cached("UPDATE reports SET gone_since = ?2 WHERE id = ?1")?;
        for id in &ended {
            update.execute(params![id, self.now])?;
        }
        Ok(ended.len() as u64)
    }

    /// Closes the sweep. Every report inside `scope` not seen in it starts its grace
    /// period; pass an empty scope when part of the input could not be read, since then
    /// an absence proves nothing. Reports gone for longer than `grace_secs` are removed,
    /// and findings no live target carries any more are resolved.
    pub fn finish(&mut self, scope: &Scope, grace_secs: i64) -> Result<FinishStats> {
        let mut stats = self.changes;
        if !scope.is_read_only() {
            stats.reports_gone = self.end_unseen(
                "SELECT id, kind, namespace, selector FROM reports
                 WHERE seen_scan <> ?1 AND gone_since IS NULL AND cluster = ?2",
                params![self.scan_id, self.store.cluster()],
                |k, ns, sel| scope.covers(k, ns, sel),
            )?;
        }
        let conn = self.store.conn();
        let cluster = self.store.cluster();
        let now = self.now;
        for (target, at) in &self.scanned {
            let newer = conn
                .prepare_cached(
                    "UPDATE targets SET last_scanned = ?2 WHERE id = ?1
                     AND (last_scanned IS NULL OR last_scanned < ?2)",
                )?
                .execute(params![target, at])?;
            if newer > 0 {
                conn.prepare_cached(
                    "UPDATE findings SET last_seen = ?2 WHERE last_seen < ?2
                     AND id IN (SELECT finding_id FROM target_findings WHERE target_id = ?1)",
                )?
                .execute(params![target, at])?;
            }
        }
        // Expiry is strict (`<`): times are whole seconds, and `<=` could end a report up
        // to a second before its grace period had fully passed. A zero grace period ends
        // at once.
        let cutoff = if grace_secs <= 0 {
            now.saturating_add(1)
        } else {
            now.saturating_sub(grace_secs)
        };
        // A report leaving for good: its workload ran the subject until it went.
        conn.execute(
            "UPDATE sightings SET last_seen = MAX(sightings.last_seen, x.gone)
             FROM (SELECT t.subject_id AS s, COALESCE(t.image_id, 0) AS i, r.workload_id AS w,
                          MAX(r.gone_since) AS gone
                   FROM reports r JOIN targets t ON t.id = r.target_id
                   WHERE r.gone_since IS NOT NULL AND r.gone_since < ?1 AND r.cluster = ?2
                   GROUP BY 1, 2, 3) AS x
             WHERE sightings.subject_id = x.s AND sightings.image_id = x.i
               AND sightings.workload_id = x.w",
            params![cutoff, cluster],
        )?;
        // Only this cluster's: another cluster's reports follow its own grace period.
        stats.reports_expired = conn.execute(
            "DELETE FROM reports WHERE gone_since IS NOT NULL AND gone_since < ?1 AND cluster = ?2",
            params![cutoff, cluster],
        )? as u64;

        // Content no report refers to any more is kept for a grace period, then removed.
        conn.execute(
            "UPDATE targets SET orphaned_at = ?1 WHERE orphaned_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.target_id = targets.id)",
            params![now],
        )?;
        conn.execute(
            "UPDATE targets SET orphaned_at = NULL WHERE orphaned_at IS NOT NULL
             AND EXISTS (SELECT 1 FROM reports r WHERE r.target_id = targets.id)",
            [],
        )?;
        conn.execute(
            "DELETE FROM target_findings WHERE target_id IN
                (SELECT id FROM targets WHERE orphaned_at < ?1)",
            params![cutoff],
        )?;
        stats.targets_removed = conn.execute(
            "DELETE FROM targets WHERE orphaned_at < ?1",
            params![cutoff],
        )? as u64;

        // A finding is open while a target with a report (live or within its grace
        // period) lists it. Reopen what such targets of this sweep list...
        let mut reopened = Vec::new();
        for target in self.targets.values() {
            let ids: Vec<i64> = conn
                .prepare_cached(
                    "UPDATE findings SET resolved_at = NULL
                     WHERE resolved_at IS NOT NULL
                       AND id IN (SELECT finding_id FROM target_findings WHERE target_id = ?1)
                       AND EXISTS (SELECT 1 FROM reports WHERE target_id = ?1)
                     RETURNING id",
                )?
                .query_map(params![target], |r| r.get(0))?
                .collect::<crate::store::db::Result<_>>()?;
            reopened.extend(ids);
        }
        for id in &reopened {
            event(conn, *id, now, "reopened", None)?;
        }
        stats.findings_reopened = reopened.len() as u64;
        // ...and resolve what no such target lists.
        let resolved: Vec<i64> = conn
            .prepare(
                "UPDATE findings SET resolved_at = ?1
                 WHERE resolved_at IS NULL AND NOT EXISTS
                    (SELECT 1 FROM target_findings tf JOIN reports r ON r.target_id = tf.target_id
                     WHERE tf.finding_id = findings.id)
                 RETURNING id",
            )?
            .query_map(params![now], |r| r.get(0))?
            .collect::<crate::store::db::Result<_>>()?;
        for id in &resolved {
            event(conn, *id, now, "resolved", None)?;
        }
        stats.findings_resolved = resolved.len() as u64;
        conn.execute(
            "UPDATE scans SET finished_at = ?2, complete = ?3 WHERE id = ?1",
            params![self.scan_id, now, !scope.is_read_only()],
        )?;
        // The controller writes one scan row per batch; a week of them is plenty of log.
        conn.execute(
            "DELETE FROM scans WHERE finished_at < ?1",
            params![now.saturating_sub(7 * 86400)],
        )?;
        Ok(stats)
    }

    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        self.store.conn().execute_batch("COMMIT")?;
        Ok(())
    }

    pub fn rollback(mut self) -> Result<()> {
        self.open = false;
        self.store.conn().execute_batch("ROLLBACK")?;
        Ok(())
    }

    fn workload_id(&mut self, w: &WorkloadKey) -> Result<i64> {
        if let Some(id) = self.workloads.get(w) {
            return Ok(*id);
        }
        let conn = self.store.conn();
        conn.prepare_cached(
            "INSERT INTO workloads(namespace, kind, name, first_seen, cluster)
             VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            w.namespace,
            w.kind,
            w.name,
            self.now,
            self.store.cluster()
        ])?;
        let id: i64 = conn
            .prepare_cached(
                "SELECT id FROM workloads
                 WHERE namespace = ?1 AND kind = ?2 AND name = ?3 AND cluster = ?4",
            )?
            .query_row(
                params![w.namespace, w.kind, w.name, self.store.cluster()],
                |r| r.get(0),
            )?;
        self.workloads.insert(w.clone(), id);
        Ok(id)
    }

    pub(super) fn image_id(&mut self, img: &Image) -> Result<i64> {
        let key = img.key();
        if let Some(id) = self.images.get(&key) {
            return Ok(*id);
        }
        let conn = self.store.conn();
        conn.prepare_cached(
            "INSERT INTO images(key, registry, repository, tag, digest, first_seen)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            key,
            img.registry,
            img.repository,
            img.tag,
            img.digest,
            self.now
        ])?;
        // A pinned image keeps the tag it was last seen with (tags move, digests do not).
        if img.pinned() && img.tag.is_some() {
            conn.prepare_cached(
                "UPDATE images SET tag = ?2 WHERE key = ?1 AND tag IS DISTINCT FROM ?2",
            )?
            .execute(params![key, img.tag])?;
        }
        let id: i64 = conn
            .prepare_cached("SELECT id FROM images WHERE key = ?1")?
            .query_row(params![key], |r| r.get(0))?;
        self.images.insert(key, id);
        Ok(id)
    }

    pub(super) fn subject_id(&mut self, s: &Subject) -> Result<i64> {
        if let Some(id) = self.subjects.get(s) {
            return Ok(*id);
        }
        let conn = self.store.conn();
        conn.prepare_cached(
            "INSERT INTO subjects(family, key, first_seen) VALUES(?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute(params![s.family.as_str(), s.key, self.now])?;
        let id: i64 = conn
            .prepare_cached("SELECT id FROM subjects WHERE family = ?1 AND key = ?2")?
            .query_row(params![s.family.as_str(), s.key], |r| r.get(0))?;
        self.subjects.insert(s.clone(), id);
        Ok(id)
    }

    /// The target with exactly this content, created (with its findings) on first sight.
    #[allow(clippy::too_many_arguments)]
    fn target_id(
        &mut self,
        subject_id: i64,
        key: &str,
        hash: [u8; 32],
        image_id: Option<i64>,
        components: Option<u64>,
        findings: &[(String, &Finding)],
        scanned_at: Option<i64>,
    ) -> Result<i64> {
        let cache_key = (subject_id, key.to_owned(), hash);
        if let Some(id) = self.targets.get(&cache_key) {
            return Ok(*id);
        }
        let conn = self.store.conn();
        let existing: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM targets WHERE subject_id = ?1 AND key = ?2 AND set_hash = ?3",
            )?
            .query_row(params![subject_id, key, &hash[..]], |r| r.get(0))
            .optional()?;
        let id = match existing {
            Some(id) => id,
            None => {
                let id: i64 = conn
                    .prepare_cached(
                        "INSERT INTO targets(subject_id, key, set_hash, image_id, components, created_at)
                         VALUES(?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                    )?
                    .query_row(
                        params![subject_id, key, &hash[..], image_id, components.map(|c| c as i64), self.now],
                        |r| r.get(0),
                    )?;
                self.write_set(subject_id, id, findings, scanned_at)?;
                id
            }
        };
        self.targets.insert(cache_key, id);
        Ok(id)
    }

    /// Links a new target to its findings, creating or reopening them and refreshing
    /// their volatile facts when this scan is the newest.
    fn write_set(
        &mut self,
        subject_id: i64,
        target_id: i64,
        findings: &[(String, &Finding)],
        scanned_at: Option<i64>,
    ) -> Result<()> {
        let conn = self.store.conn();
        let now = self.now;
        let seen_at = scanned_at.unwrap_or(now);
        for (key, f) in findings {
            let data = serde_json::to_string(f)?;
            let severity = f.severity.as_str();
            let existing = conn
                .prepare_cached(
                    "SELECT id, severity, fixable, data, data_at FROM findings
                     WHERE subject_id = ?1 AND fkey = ?2",
                )?
                .query_row(params![subject_id, key], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                })
                .optional()?;
            let id = match existing {
                None => {
                    let id: i64 = conn
                        .prepare_cached(
                            "INSERT INTO findings(subject_id, fkey, first_title, severity, fixable, data,
                                                  data_at, first_seen, last_seen)
                             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
                        )?
                        .query_row(
                            params![subject_id, key, f.title, severity, f.fixable(), data, scanned_at, now, seen_at],
                            |r| r.get(0),
                        )?;
                    event(conn, id, now, "opened", None)?;
                    self.changes.findings_opened += 1;
                    id
                }
                Some((id, old_sev, old_fixable, old_data, data_at)) => {
                    // Volatile facts (severity re-rated, fix published) follow the newest scan.
                    if old_data != data && (data_at.is_none() || scanned_at >= data_at) {
                        conn.prepare_cached(
                            "UPDATE findings SET severity = ?2, fixable = ?3, data = ?4, data_at = ?5
                             WHERE id = ?1",
                        )?
                        .execute(params![id, severity, f.fixable(), data, scanned_at])?;
                        if old_sev != severity {
                            event(
                                conn,
                                id,
                                now,
                                "severity",
                                Some(&format!("{old_sev}->{severity}")),
                            )?;
                            self.changes.severities_changed += 1;
                        }
                        if !old_fixable && f.fixable() {
                            event(conn, id, now, "fixable", Some(&f.fixed_version))?;
                            self.changes.fixes_published += 1;
                        }
                    }
                    conn.prepare_cached(
                        "UPDATE findings SET last_seen = ?2 WHERE id = ?1 AND last_seen < ?2",
                    )?
                    .execute(params![id, seen_at])?;
                    id
                }
            };
            conn.prepare_cached(
                "INSERT INTO target_findings(target_id, finding_id) VALUES(?1, ?2) ON CONFLICT DO NOTHING",
            )?
            .execute(params![target_id, id])?;
        }
        Ok(())
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.store.conn().execute_batch("ROLLBACK");
        }
    }
}

fn event(
    conn: &crate::store::Db,
    finding: i64,
    at: i64,
    kind: &str,
    detail: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO finding_events(finding_id, at, event, detail) VALUES(?1, ?2, ?3, ?4)",
    )?
    .execute(params![finding, at, kind, detail])?;
    Ok(())
}

/// One entry per finding key; a report listing a key twice (trivy-operator #2502) keeps
/// the most severe entry. Sorted by key so the set hash does not depend on list order.
pub(super) fn dedupe(family: Family, findings: &[Finding]) -> Vec<(String, &Finding)> {
    let mut by_key: HashMap<String, &Finding> = HashMap::with_capacity(findings.len());
    for f in findings {
        let key = f.key(family);
        match by_key.get(&key) {
            Some(prev) if prev.severity <= f.severity => {}
            _ => {
                by_key.insert(key, f);
            }
        }
    }
    let mut v: Vec<(String, &Finding)> = by_key.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Hash of everything stored about a target's findings: equal hashes, nothing to write.
fn set_hash(family: Family, components: Option<u64>, findings: &[(String, &Finding)]) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut put = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    put(family.as_str());
    put(&components.map(|c| c.to_string()).unwrap_or_default());
    for (key, f) in findings {
        put(key);
        put(f.severity.as_str());
        put(&f.title);
        put(&f.fixed_version);
        put(&f.score.map(|s| s.to_string()).unwrap_or_default());
        put(&f.primary_link);
        for l in &f.links {
            put(l);
        }
        put("\u{0}links");
        put(&f.description);
        put(&f.remediation);
        for m in &f.messages {
            put(m);
        }
        put("\u{0}messages");
        put(&f.published);
        put(&f.package);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;

    fn vuln(id: &str, pkg: &str, sev: Severity) -> Finding {
        let mut f = Finding::new(id, sev);
        f.package = pkg.into();
        f.installed_version = "1.0".into();
        f
    }

    fn report(ns: &str, name: &str) -> Report {
        let json = serde_json::json!({
            "apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "VulnerabilityReport",
            "metadata": {"name": name, "namespace": ns},
            "report": {"artifact": {"repository": "org/app", "digest": format!("sha256:{:064x}", 1)},
                       "registry": {"server": "ghcr.io"}, "vulnerabilities": []}
        });
        let obj = crate::source::RawObject {
            origin: crate::source::Origin::file("t"),
            json: json.to_string().into_bytes(),
            kind_hint: None,
            name_hint: None,
        };
        match crate::trivy::parse_object(&obj) {
            Ok(crate::trivy::Parsed::Report(r)) => *r,
            other => panic!("not a report: {other:?}"),
        }
    }

    fn live(store: &Store) -> Vec<String> {
        let mut stmt = store
            .conn()
            .prepare(
                "SELECT namespace || '/' || name FROM reports WHERE gone_since IS NULL ORDER BY 1",
            )
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<crate::store::db::Result<_>>()
            .expect("rows")
    }

    /// A relist ends only the reports its watch could have listed: its namespaces, and
    /// reports last read under its own label selector.
    #[test]
    fn a_relist_ends_only_what_its_watch_covers() {
        let mut store = Store::open_in_memory().expect("store");
        let mut s = Session::begin(&mut store, "t", 100).expect("begin");
        s.read_under(Some("app=x"));
        for (ns, name) in [("a", "r1"), ("a", "r2"), ("b", "r3")] {
            s.report(&report(ns, name)).expect("report");
        }
        // Read from a file: not known to match the selector.
        s.read_under(None);
        s.report(&report("a", "from-file")).expect("report");
        s.finish(&Scope::read_only(), 3600).expect("finish");
        s.commit().expect("commit");

        let mut s = Session::begin(&mut store, "t", 200).expect("begin");
        s.read_under(Some("app=x"));
        let floor = s.relist_floor();
        s.report(&report("a", "r1")).expect("report");
        let coverage = Coverage {
            kinds: [ReportKind::VulnerabilityReport].into(),
            namespaces: crate::scope::NamespaceFilter {
                include: vec!["a".into()],
                exclude: vec![],
            },
            label_selector: Some("app=x".into()),
        };
        let n = s
            .relisted(ReportKind::VulnerabilityReport, floor, &coverage)
            .expect("relisted");
        assert_eq!(n, 1, "only a/r2");
        s.finish(&Scope::read_only(), 3600).expect("finish");
        s.commit().expect("commit");
        assert_eq!(live(&store), ["a/from-file", "a/r1", "b/r3"]);

        // A sweep over everything without a selector ends the rest.
        let mut s = Session::begin(&mut store, "t", 300).expect("begin");
        let stats = s.finish(&Scope::everything(), 3600).expect("finish");
        s.commit().expect("commit");
        assert_eq!(stats.reports_gone, 3);
        assert!(live(&store).is_empty());
    }

    #[test]
    fn set_hash_ignores_order_and_duplicates() {
        let a = vec![
            vuln("CVE-1", "a", Severity::High),
            vuln("CVE-2", "b", Severity::Low),
        ];
        let b = vec![
            vuln("CVE-2", "b", Severity::Low),
            vuln("CVE-1", "a", Severity::High),
            vuln("CVE-1", "a", Severity::Medium),
        ];
        let fa = dedupe(Family::Vulnerability, &a);
        let fb = dedupe(Family::Vulnerability, &b);
        assert_eq!(fb.len(), 2);
        assert_eq!(
            set_hash(Family::Vulnerability, None, &fa),
            set_hash(Family::Vulnerability, None, &fb)
        );
        let c = vec![
            vuln("CVE-1", "a", Severity::Critical),
            vuln("CVE-2", "b", Severity::Low),
        ];
        let fc = dedupe(Family::Vulnerability, &c);
        assert_ne!(
            set_hash(Family::Vulnerability, None, &fa),
            set_hash(Family::Vulnerability, None, &fc)
        );
    }
}
