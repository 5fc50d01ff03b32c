//! The write side of the inventory and of CI sightings.
//!
//! Packages are stored once per content (name, version, ecosystem, purl) and linked to
//! the image contents whose newest SBOM listed them. A CI result is a sighting of an
//! image, never a workload: it writes `ci_images` and `ci_findings` only, so it can
//! neither open nor resolve a runtime finding, nor end a report.

use std::collections::{BTreeSet, HashSet};

use crate::store::db::{OptionalExtension, params};
use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ingest::{Session, dedupe};
use crate::model::{CiScan, Family, Package, Subject};

/// Which source an image's inventory was last taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An SbomReport in the cluster.
    Cluster,
    /// A CycloneDX file (CI, or any other tool).
    Ci,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Cluster => "cluster",
            Origin::Ci => "ci",
        }
    }
}

/// What the CI results of a session changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CiChanges {
    /// CI result files stored.
    pub files: u64,
    /// Image contents CI saw for the first time.
    pub new_images: u64,
    /// CI results without a digest: stored by tag, and said so.
    pub unpinned: u64,
    /// Findings CI saw for the first time in an image content.
    pub findings_new: u64,
    /// Findings a newer CI scan of the same image no longer listed.
    pub findings_gone: u64,
    /// Findings of these results the cluster has seen too (the same image repository).
    pub also_at_runtime: u64,
    /// Image contents whose package list changed (SbomReports and SBOM files).
    pub inventories_changed: u64,
}

impl Session<'_> {
    /// What the CI results of this session changed so far.
    pub fn ci_changes(&self) -> CiChanges {
        self.ci
    }

    /// Sets an image content's packages from an SBOM. The same list again writes
    /// nothing; an older SBOM than the one stored is ignored.
    pub(super) fn set_packages(
        &mut self,
        image_id: i64,
        origin: Origin,
        packages: &[Package],
        sbom_at: Option<i64>,
    ) -> Result<()> {
        let unique: BTreeSet<&Package> = packages.iter().collect();
        let mut h = Sha256::new();
        for p in &unique {
            for part in [&p.ecosystem, &p.name, &p.version, &p.purl] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            h.update([1]);
        }
        let hash: [u8; 32] = h.finalize().into();
        let conn = self.store.conn();
        let stored: Option<(Vec<u8>, Option<i64>)> = conn
            .prepare_cached("SELECT set_hash, sbom_at FROM image_sboms WHERE image_id = ?1")?
            .query_row(params![image_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((old_hash, old_at)) = &stored {
            if old_hash.as_slice() == hash.as_slice() {
                return Ok(());
            }
            // Unknown times are the oldest, as for reports.
            if sbom_at < *old_at {
                return Ok(());
            }
        }
        let mut ids = Vec::with_capacity(unique.len());
        for p in unique {
            ids.push(self.package_id(p)?);
        }
        let conn = self.store.conn();
        conn.prepare_cached("DELETE FROM image_packages WHERE image_id = ?1")?
            .execute(params![image_id])?;
        let mut link = conn.prepare_cached(
            "INSERT INTO image_packages(package_id, image_id) VALUES(?1, ?2) ON CONFLICT DO NOTHING",
        )?;
        for id in &ids {
            link.execute(params![id, image_id])?;
        }
        conn.prepare_cached(
            "INSERT INTO image_sboms(image_id, origin, set_hash, packages, sbom_at, updated_at)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(image_id) DO UPDATE SET origin = excluded.origin,
                 set_hash = excluded.set_hash, packages = excluded.packages,
                 sbom_at = excluded.sbom_at, updated_at = excluded.updated_at",
        )?
        .execute(params![
            image_id,
            origin.as_str(),
            &hash[..],
            ids.len() as i64,
            sbom_at,
            self.now
        ])?;
        self.ci.inventories_changed += 1;
        Ok(())
    }

    fn package_id(&mut self, p: &Package) -> Result<i64> {
        if let Some(id) = self.package_ids.get(p) {
            return Ok(*id);
        }
        let conn = self.store.conn();
        let id: Option<i64> = conn
            .prepare_cached(
                "INSERT INTO packages(ecosystem, name, version, purl, short)
                 VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING RETURNING id",
            )?
            .query_row(
                params![p.ecosystem, p.name, p.version, p.purl, short_name(&p.name)],
                |r| r.get(0),
            )
            .optional()?;
        let id = match id {
            Some(id) => id,
            None => conn
                .prepare_cached(
                    "SELECT id FROM packages
                     WHERE name = ?1 AND version = ?2 AND ecosystem = ?3 AND purl = ?4",
                )?
                .query_row(params![p.name, p.version, p.ecosystem, p.purl], |r| {
                    r.get(0)
                })?,
        };
        self.package_ids.insert(p.clone(), id);
        Ok(id)
    }

    /// Records one CI result (`source` names the file). The newest CI scan of an image
    /// content decides what CI currently finds in it, per family it covered.
    pub fn ci_scan(&mut self, c: &CiScan, source: &str) -> Result<()> {
        self.write_ci(c, source)
            .with_context(|| format!("store: writing the CI result {source}"))
    }

    fn write_ci(&mut self, c: &CiScan, source: &str) -> Result<()> {
        let image_id = self.image_id(&c.image)?;
        let now = self.now;
        let scanned_at = c.scanned_at.map(|t| t.timestamp());
        // A result made in the future (a skewed CI clock) is dated now.
        let seen_at = scanned_at.map_or(now, |t| t.min(now));
        let conn = self.store.conn();
        let previous: Option<Option<i64>> = conn
            .prepare_cached("SELECT scanned_at FROM ci_images WHERE image_id = ?1")?
            .query_row(params![image_id], |r| r.get(0))
            .optional()?;
        conn.prepare_cached(
            "INSERT INTO ci_images(image_id, artifact, source, first_seen, last_seen, scanned_at)
             VALUES(?1, ?2, ?3, ?4, ?4, ?5)
             ON CONFLICT(image_id) DO UPDATE SET
                 first_seen = MIN(ci_images.first_seen, excluded.first_seen),
                 last_seen = MAX(ci_images.last_seen, excluded.last_seen),
                 artifact = CASE WHEN excluded.scanned_at IS NOT NULL
                     AND (ci_images.scanned_at IS NULL OR excluded.scanned_at >= ci_images.scanned_at)
                     THEN excluded.artifact ELSE ci_images.artifact END,
                 source = CASE WHEN excluded.scanned_at IS NOT NULL
                     AND (ci_images.scanned_at IS NULL OR excluded.scanned_at >= ci_images.scanned_at)
                     THEN excluded.source ELSE ci_images.source END,
                 -- The newest scan time; a file without one keeps what is known.
                 scanned_at = CASE WHEN excluded.scanned_at IS NOT NULL
                     AND (ci_images.scanned_at IS NULL OR excluded.scanned_at > ci_images.scanned_at)
                     THEN excluded.scanned_at ELSE ci_images.scanned_at END",
        )?
        .execute(params![image_id, c.artifact, source, seen_at, scanned_at])?;
        self.ci.files += 1;
        if previous.is_none() {
            self.ci.new_images += 1;
        }
        if !c.image.pinned() {
            self.ci.unpinned += 1;
        }
        // Only the newest CI scan of an image may say a finding is gone from it.
        let newest = match previous {
            None => true,
            Some(prev) => scanned_at >= prev,
        };
        let repo = c.image.repo_key();
        for family in &c.covered {
            conn.prepare_cached(
                "INSERT INTO ci_covered(image_id, family, scanned_at) VALUES(?1, ?2, ?3)
                 ON CONFLICT(image_id, family) DO UPDATE
                     SET scanned_at = MAX(ci_covered.scanned_at, excluded.scanned_at)",
            )?
            .execute(params![image_id, family.as_str(), seen_at])?;
        }
        let mut families: Vec<Family> = c.covered.clone();
        families.extend(c.findings.iter().map(|(f, _)| *f));
        families.sort();
        families.dedup();
        for family in families {
            let list: Vec<crate::model::Finding> = c
                .findings
                .iter()
                .filter(|(f, _)| *f == family)
                .map(|(_, f)| f.clone())
                .collect();
            let subject = Subject {
                family,
                key: repo.clone(),
            };
            if list.is_empty() {
                // A covered family with nothing found: resolve without creating a subject.
                let id: Option<i64> = self
                    .store
                    .conn()
                    .prepare_cached("SELECT id FROM subjects WHERE family = ?1 AND key = ?2")?
                    .query_row(params![family.as_str(), repo], |r| r.get(0))
                    .optional()?;
                if let (Some(id), true) = (id, newest) {
                    self.resolve_ci(image_id, id, &HashSet::new(), seen_at)?;
                }
                continue;
            }
            let subject_id = self.subject_id(&subject)?;
            let keyed = dedupe(family, &list);
            let mut listed = HashSet::with_capacity(keyed.len());
            for (key, f) in &keyed {
                self.ci_finding(family, image_id, subject_id, key, f, seen_at, newest)?;
                listed.insert(key.clone());
            }
            if newest && c.covered.contains(&family) {
                self.resolve_ci(image_id, subject_id, &listed, seen_at)?;
            }
        }
        if let Some(packages) = &c.packages {
            self.set_packages(image_id, Origin::Ci, packages, scanned_at)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn ci_finding(
        &mut self,
        family: Family,
        image_id: i64,
        subject_id: i64,
        key: &str,
        f: &crate::model::Finding,
        seen_at: i64,
        newest: bool,
    ) -> Result<()> {
        let conn = self.store.conn();
        let data = serde_json::to_string(f)?;
        let existed: Option<Option<i64>> = conn
            .prepare_cached(
                "SELECT resolved_at FROM ci_findings
                 WHERE image_id = ?1 AND subject_id = ?2 AND fkey = ?3",
            )?
            .query_row(params![image_id, subject_id, key], |r| r.get(0))
            .optional()?;
        match existed {
            None => {
                conn.prepare_cached(
                    "INSERT INTO ci_findings(image_id, subject_id, fkey, severity, fixable, data,
                                             first_seen, last_seen)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                )?
                .execute(params![
                    image_id,
                    subject_id,
                    key,
                    f.severity.as_str(),
                    f.fixable(),
                    data,
                    seen_at
                ])?;
                conn.prepare_cached(
                    "INSERT INTO ci_events(image_id, subject_id, fkey, at) VALUES(?1, ?2, ?3, ?4)",
                )?
                .execute(params![image_id, subject_id, key, self.now])?;
                self.ci.findings_new += 1;
            }
            Some(_) => {
                // Volatile facts (severity, fix) follow the newest scan; dates widen.
                conn.prepare_cached(
                    "UPDATE ci_findings SET
                         first_seen = MIN(first_seen, ?4), last_seen = MAX(last_seen, ?4),
                         severity = CASE WHEN ?5 THEN ?6 ELSE severity END,
                         fixable = CASE WHEN ?5 THEN ?7 ELSE fixable END,
                         data = CASE WHEN ?5 THEN ?8 ELSE data END,
                         resolved_at = CASE WHEN ?5 THEN NULL ELSE resolved_at END
                     WHERE image_id = ?1 AND subject_id = ?2 AND fkey = ?3",
                )?
                .execute(params![
                    image_id,
                    subject_id,
                    key,
                    seen_at,
                    newest,
                    f.severity.as_str(),
                    f.fixable(),
                    data
                ])?;
            }
        }
        let at_runtime = seen_at_runtime(conn, family, subject_id, key)?;
        self.ci.also_at_runtime += u64::from(at_runtime);
        Ok(())
    }

    /// Marks what this image's newest CI scan no longer lists in a family it covered.
    fn resolve_ci(
        &mut self,
        image_id: i64,
        subject_id: i64,
        listed: &HashSet<String>,
        at: i64,
    ) -> Result<()> {
        let conn = self.store.conn();
        let open: Vec<String> = conn
            .prepare_cached(
                "SELECT fkey FROM ci_findings
                 WHERE image_id = ?1 AND subject_id = ?2 AND resolved_at IS NULL",
            )?
            .query_map(params![image_id, subject_id], |r| r.get(0))?
            .collect::<crate::store::db::Result<_>>()?;
        let mut gone = conn.prepare_cached(
            "UPDATE ci_findings SET resolved_at = ?4
             WHERE image_id = ?1 AND subject_id = ?2 AND fkey = ?3",
        )?;
        for key in open.iter().filter(|k| !listed.contains(*k)) {
            gone.execute(params![image_id, subject_id, key, at])?;
            self.ci.findings_gone += 1;
        }
        Ok(())
    }
}

/// The part of a finding key on which CI and the cluster are the same finding. For
/// vulnerabilities that is (id, package, installed version) without the path: the operator
/// leaves `packagePath` and `target` empty unless told otherwise (`target` is "" in 483 of
/// 495 real reports), while Trivy CLI fills `PkgPath` for language packages. Other
/// families match on their whole key.
pub fn join_key(family: Family, fkey: &str) -> &str {
    if family != Family::Vulnerability {
        return fkey;
    }
    match fkey.match_indices('\u{1f}').nth(2) {
        Some((i, _)) => &fkey[..=i],
        None => fkey,
    }
}

/// The cluster has (or had) this CI finding: a runtime finding of the subject with the
/// same join key.
pub fn seen_at_runtime(
    conn: &crate::store::Db,
    family: Family,
    subject_id: i64,
    fkey: &str,
) -> Result<bool> {
    let (lo, hi) = join_range(family, fkey);
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM findings
                           WHERE subject_id = ?1 AND fkey >= ?2 AND fkey < ?3)",
        )?
        .query_row(params![subject_id, lo, hi], |r| r.get(0))?)
}

/// The key range `[lo, hi)` holding every key with the join key of `fkey`.
pub fn join_range(family: Family, fkey: &str) -> (String, String) {
    let k = join_key(family, fkey);
    match k.strip_suffix('\u{1f}') {
        // A prefix ending in the separator: up to the next byte after it.
        Some(stem) if family == Family::Vulnerability => (k.to_owned(), format!("{stem}\u{20}")),
        // The whole key: exactly it (the next string by byte order is the key + NUL).
        _ => (k.to_owned(), format!("{k}\u{0}")),
    }
}

/// A package name's last segment, lower case: `org.apache.logging.log4j:log4j-core`
/// and `github.com/sirupsen/logrus` are found as `log4j-core` and `logrus`.
pub fn short_name(name: &str) -> String {
    name.rsplit([':', '/'])
        .find(|s| !s.is_empty())
        .unwrap_or(name)
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Finding, Image, Severity};
    use crate::store::Store;

    fn pkg(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            purl: String::new(),
            ecosystem: "maven".into(),
        }
    }

    fn ci(digest_char: char, findings: &[&str], at: &str) -> CiScan {
        let d = format!("sha256:{}", digest_char.to_string().repeat(64));
        CiScan {
            artifact: "ghcr.io/org/app:1".into(),
            image: Image::new("ghcr.io", "org/app", Some("1"), Some(&d)),
            scanned_at: Some(at.parse().expect("time")),
            scanner_version: "0.76.0".into(),
            findings: findings
                .iter()
                .map(|id| {
                    let mut f = Finding::new(*id, Severity::High);
                    f.package = "openssl".into();
                    f.installed_version = "3.0.1".into();
                    (Family::Vulnerability, f)
                })
                .collect(),
            packages: Some(vec![pkg("org.apache.logging.log4j:log4j-core", "2.14.1")]),
            covered: vec![Family::Vulnerability],
        }
    }

    fn write(store: &mut Store, now: i64, c: &CiScan) -> CiChanges {
        let mut s = Session::begin(store, "test", now).expect("session");
        s.ci_scan(c, "ci.json").expect("ci");
        let changes = s.ci_changes();
        s.commit().expect("commit");
        changes
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store.conn().query_row(sql, [], |r| r.get(0)).expect(sql)
    }

    #[test]
    fn ci_results_never_touch_runtime_findings_and_the_newest_scan_decides() {
        let mut store = Store::open_in_memory().expect("store");
        let c = write(
            &mut store,
            1000,
            &ci('a', &["CVE-1", "CVE-2"], "2026-11-01T00:00:00Z"),
        );
        assert_eq!((c.files, c.new_images, c.findings_new), (1, 1, 2));
        assert_eq!(count(&store, "SELECT COUNT(*) FROM findings"), 0);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM reports"), 0);
        // An older scan of the same image resolves nothing.
        let c = write(&mut store, 1100, &ci('a', &[], "2026-10-01T00:00:00Z"));
        assert_eq!(c.findings_gone, 0);
        // A newer one without CVE-2 resolves it, and only it.
        let c = write(
            &mut store,
            1200,
            &ci('a', &["CVE-1"], "2026-11-05T00:00:00Z"),
        );
        assert_eq!((c.findings_new, c.findings_gone), (0, 1));
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM ci_findings WHERE resolved_at IS NULL"
            ),
            1
        );
        // The same SBOM again writes no package links.
        assert_eq!(c.inventories_changed, 0);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM image_packages"), 1);
    }

    #[test]
    fn packages_are_stored_once_across_images() {
        let mut store = Store::open_in_memory().expect("store");
        write(&mut store, 1000, &ci('a', &[], "2026-11-01T00:00:00Z"));
        write(&mut store, 1000, &ci('b', &[], "2026-11-01T00:00:00Z"));
        assert_eq!(count(&store, "SELECT COUNT(*) FROM packages"), 1);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM image_packages"), 2);
    }

    #[test]
    fn vulnerabilities_join_without_their_path() {
        let mut f = Finding::new("CVE-1", Severity::High);
        f.package = "log4j-core".into();
        f.installed_version = "2.14.1".into();
        let bare = f.key(Family::Vulnerability);
        f.path = "app/lib/log4j-core-2.14.1.jar".into();
        let with_path = f.key(Family::Vulnerability);
        assert_eq!(
            join_key(Family::Vulnerability, &bare),
            join_key(Family::Vulnerability, &with_path)
        );
        let (lo, hi) = join_range(Family::Vulnerability, &with_path);
        assert!(lo.as_str() <= bare.as_str() && bare.as_str() < hi.as_str());
        assert!(lo.as_str() <= with_path.as_str() && with_path.as_str() < hi.as_str());
        // Another version is another finding.
        f.installed_version = "2.14.10".into();
        let other = f.key(Family::Vulnerability);
        assert!(!(lo.as_str() <= other.as_str() && other.as_str() < hi.as_str()));
        // Secrets match on the whole key.
        let (lo, hi) = join_range(Family::Secret, "a\u{1f}b\u{1f}c");
        assert!(lo.as_str() <= "a\u{1f}b\u{1f}c" && "a\u{1f}b\u{1f}c" < hi.as_str());
        assert!("a\u{1f}b\u{1f}cd" >= hi.as_str());
    }

    #[test]
    fn short_names() {
        assert_eq!(
            short_name("org.apache.logging.log4j:log4j-core"),
            "log4j-core"
        );
        assert_eq!(short_name("github.com/sirupsen/logrus"), "logrus");
        assert_eq!(short_name("OpenSSL"), "openssl");
        assert_eq!(short_name("@babel/core"), "core");
    }
}
