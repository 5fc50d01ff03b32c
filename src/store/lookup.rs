//! The inventory's read side: "which images contain X, where do they run, since when".
//!
//! Answers from what the store holds: runtime findings (reports), CI sightings and the
//! packages SBOMs listed. Nothing here writes.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::db::{Db, OptionalExtension, params};
use anyhow::{Context, Result};
use serde::Serialize;

use super::Store;
use super::inventory::{join_key, short_name};
use super::triage;
use crate::model::{Family, Finding, Severity};
use crate::version::VersionReq;

/// Where an image content is known from, and where it runs.
#[derive(Debug, Clone, Serialize)]
pub struct ImageHit {
    /// `registry/repository@digest`, or `:tag` when unpinned.
    pub image: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// A report of a workload shows it now (within its grace period counts).
    pub running: bool,
    /// First time the store saw this image content (any source).
    pub first_seen: i64,
    /// Last time a workload was seen running it (absent: never ran).
    pub last_ran: Option<i64>,
    pub workloads: Vec<Place>,
    /// Its CI sighting, if any.
    pub ci: Option<CiSeen>,
}

/// A workload running an image, and since when it has (first report of it).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    /// The cluster it runs in, in a fleet store (one cluster's store leaves it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub since: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CiSeen {
    pub artifact: String,
    pub source: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// One finding (a CVE in one package of one image repository).
#[derive(Debug, Clone, Serialize)]
pub struct FindingHit {
    pub id: String,
    pub family: Family,
    pub severity: Severity,
    pub title: String,
    pub package: String,
    pub installed_version: String,
    pub fixed_version: String,
    pub fix_available: bool,
    pub repository: String,
    /// The runtime side: absent when only CI has seen it.
    pub runtime: Option<RuntimeState>,
    /// First time CI saw it in any image content of this repository.
    pub ci_first_seen: Option<i64>,
    /// DefectDojo's triage as last read back: `active`, `risk accepted`,
    /// `false positive`, `out of scope`, `inactive`; absent when never exported.
    pub defectdojo: Option<String>,
    pub images: Vec<ImageHit>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuntimeState {
    pub open: bool,
    pub first_seen: i64,
    pub resolved_at: Option<i64>,
}

/// One package content and the images that hold it.
#[derive(Debug, Clone, Serialize)]
pub struct PackageHit {
    pub name: String,
    pub version: String,
    pub ecosystem: String,
    pub purl: String,
    pub images: Vec<ImageHit>,
}

/// One image repository's contents (for `--image`).
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryHit {
    pub repository: String,
    pub images: Vec<ImageView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageView {
    #[serde(flatten)]
    pub image: ImageHit,
    /// Open runtime findings this content carries, per severity.
    pub open: BTreeMap<String, u64>,
    /// Packages its newest SBOM listed, absent without one.
    pub packages: Option<u64>,
}

/// The images to list: running ones, CI-only ones, and (with `all`) those that ran once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    pub include_past: bool,
}

/// Findings with this id (a CVE, GHSA, check or secret rule id), in any image. CI and
/// runtime rows are one finding when `inventory::join_key` says so.
pub fn by_id(store: &Store, id: &str, filter: Filter) -> Result<Vec<FindingHit>> {
    let conn = store.conn();
    // (subject, join key) → (runtime keys, CI keys)
    type Keys = (BTreeSet<String>, BTreeSet<String>);
    let mut groups: BTreeMap<(i64, String), Keys> = BTreeMap::new();
    // The id is the first part of a vulnerability key and a later one of a secret's, so
    // the key is matched loosely and the parsed id exactly.
    let like = format!("%{}%", escape_like(id));
    for (i, table) in ["findings", "ci_findings"].into_iter().enumerate() {
        let sql = format!(
            "SELECT x.subject_id, x.fkey, x.data, s.family FROM {table} x
             JOIN subjects s ON s.id = x.subject_id
             WHERE x.fkey LIKE ?1 ESCAPE '\\'"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params![like], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (subject, fkey, data, family) = row?;
            let Some(family) = Family::parse(&family) else {
                continue;
            };
            let Ok(f) = serde_json::from_str::<Finding>(&data) else {
                continue;
            };
            if !f.id.eq_ignore_ascii_case(id) {
                continue;
            }
            let g = groups
                .entry((subject, join_key(family, &fkey).to_owned()))
                .or_default();
            if i == 0 { &mut g.0 } else { &mut g.1 }.insert(fkey);
        }
    }
    let mut out = Vec::new();
    for ((subject, _), (runtime, ci)) in groups {
        if let Some(hit) = finding_hit(conn, subject, &runtime, &ci, filter)? {
            out.push(hit);
        }
    }
    out.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then_with(|| a.repository.cmp(&b.repository))
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.installed_version.cmp(&b.installed_version))
    });
    Ok(out)
}

/// One finding of `subject`: its runtime rows (`runtime` keys, usually one) and CI rows.
fn finding_hit(
    conn: &Db,
    subject_id: i64,
    runtime_keys: &BTreeSet<String>,
    ci_keys: &BTreeSet<String>,
    filter: Filter,
) -> Result<Option<FindingHit>> {
    let Some((family, repository)) = conn
        .prepare_cached("SELECT family, key FROM subjects WHERE id = ?1")?
        .query_row(params![subject_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let Some(family) = Family::parse(&family) else {
        return Ok(None);
    };
    let mut image_ids: BTreeSet<i64> = BTreeSet::new();
    let mut data: Option<String> = None;
    let mut runtime: Option<RuntimeState> = None;
    let mut copies = Vec::new();
    for fkey in runtime_keys {
        let Some((finding_id, d, first_seen, resolved_at)) = conn
            .prepare_cached(
                "SELECT id, data, first_seen, resolved_at FROM findings
                 WHERE subject_id = ?1 AND fkey = ?2",
            )?
            .query_row(params![subject_id, fkey], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            })
            .optional()?
        else {
            continue;
        };
        data.get_or_insert(d);
        // Open if any row is; first seen is the earliest.
        runtime = Some(match runtime {
            None => RuntimeState {
                open: resolved_at.is_none(),
                first_seen,
                resolved_at,
            },
            Some(r) => RuntimeState {
                open: r.open || resolved_at.is_none(),
                first_seen: r.first_seen.min(first_seen),
                resolved_at: if r.open || resolved_at.is_none() {
                    None
                } else {
                    r.resolved_at.max(resolved_at)
                },
            },
        });
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT t.image_id FROM target_findings tf JOIN targets t ON t.id = tf.target_id
             WHERE tf.finding_id = ?1 AND t.image_id IS NOT NULL",
        )?;
        for id in stmt.query_map(params![finding_id], |r| r.get::<_, i64>(0))? {
            image_ids.insert(id?);
        }
        copies.extend(triage::copies(conn, finding_id)?);
    }
    let mut ci_first_seen: Option<i64> = None;
    for fkey in ci_keys {
        let mut stmt = conn.prepare_cached(
            "SELECT image_id, first_seen, resolved_at, data FROM ci_findings
             WHERE subject_id = ?1 AND fkey = ?2",
        )?;
        let rows = stmt.query_map(params![subject_id, fkey], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (image_id, first_seen, resolved_at, d) = row?;
            ci_first_seen = Some(ci_first_seen.map_or(first_seen, |t| t.min(first_seen)));
            if resolved_at.is_none() {
                image_ids.insert(image_id);
            }
            data.get_or_insert(d);
        }
    }
    let Some(data) = data else {
        return Ok(None);
    };
    let f: Finding = serde_json::from_str(&data)
        .with_context(|| format!("store: finding data in {repository}"))?;
    let images = images(conn, &image_ids, filter)?;
    Ok(Some(FindingHit {
        id: f.id.clone(),
        family,
        severity: f.severity,
        title: f.title.clone(),
        package: f.package.clone(),
        installed_version: f.installed_version.clone(),
        fix_available: f.fixable(),
        fixed_version: f.fixed_version.clone(),
        repository,
        runtime,
        ci_first_seen,
        defectdojo: dojo_state(&copies),
        images,
    }))
}

/// DefectDojo's state over every test holding the finding: the strongest triage, else
/// active when any copy is.
fn dojo_state(copies: &[triage::Copy]) -> Option<String> {
    if copies.is_empty() {
        return None;
    }
    let verdict = copies.iter().filter_map(|c| c.flags.verdict()).min();
    Some(match verdict {
        Some(t) => t.label().to_owned(),
        None if copies.iter().any(|c| c.flags.active) => "active".to_owned(),
        None => "inactive".to_owned(),
    })
}

/// Packages named `name` (exactly, ignoring case, or by the name's last segment:
/// `log4j-core` finds `org.apache.logging.log4j:log4j-core`) at a matching version.
pub fn by_package(
    store: &Store,
    name: &str,
    version: Option<&VersionReq>,
    filter: Filter,
) -> Result<Vec<PackageHit>> {
    let conn = store.conn();
    let wanted = name.trim();
    let whole = wanted.contains([':', '/']);
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, version, ecosystem, purl FROM packages WHERE short = ?1",
    )?;
    let rows = stmt.query_map(params![short_name(wanted)], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, pname, pversion, ecosystem, purl) = row?;
        // With a separator the whole name must match; without, the last segment did.
        if whole && !pname.eq_ignore_ascii_case(wanted) {
            continue;
        }
        if version.is_some_and(|v| !v.matches(&pversion)) {
            continue;
        }
        let ids: BTreeSet<i64> = conn
            .prepare_cached("SELECT image_id FROM image_packages WHERE package_id = ?1")?
            .query_map(params![id], |r| r.get::<_, i64>(0))?
            .collect::<crate::store::db::Result<_>>()?;
        let images = images(conn, &ids, filter)?;
        if images.is_empty() {
            continue;
        }
        out.push(PackageHit {
            name: pname,
            version: pversion,
            ecosystem,
            purl,
            images,
        });
    }
    out.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| crate::version::compare(&a.version, &b.version))
            .then_with(|| a.purl.cmp(&b.purl))
    });
    Ok(out)
}

/// Image repositories named `repo` (`nginx`, `docker.io/library/nginx`,
/// `ghcr.io/org/app`), with each content's open findings and package count.
pub fn by_image(store: &Store, repo: &str, filter: Filter) -> Result<Vec<RepositoryHit>> {
    let conn = store.conn();
    let normalized = crate::model::Image::new("", repo.trim(), None, None);
    let (registry, repository) = match repo.trim().split_once('/') {
        // A first segment with a dot, a colon or `localhost` is a registry host.
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => {
            let i = crate::model::Image::new(host, rest, None, None);
            (Some(i.registry), i.repository)
        }
        _ => (None, normalized.repository),
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, registry FROM images WHERE repository = ?1 ORDER BY registry, id",
    )?;
    let rows: Vec<(i64, String)> = stmt
        .query_map(params![repository], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<crate::store::db::Result<_>>()?;
    let mut by_repo: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (id, reg) in rows {
        if registry.as_ref().is_some_and(|r| *r != reg) {
            continue;
        }
        by_repo
            .entry(format!("{reg}/{repository}"))
            .or_default()
            .insert(id);
    }
    let mut out = Vec::new();
    for (repository, ids) in by_repo {
        let mut views = Vec::new();
        for hit in images(conn, &ids, filter)? {
            let image_id: i64 = conn
                .prepare_cached("SELECT id FROM images WHERE key = ?1")?
                .query_row(params![hit.image], |r| r.get(0))?;
            views.push(ImageView {
                open: open_counts(conn, image_id)?,
                packages: conn
                    .prepare_cached("SELECT packages FROM image_sboms WHERE image_id = ?1")?
                    .query_row(params![image_id], |r| r.get::<_, i64>(0))
                    .optional()?
                    .map(|n| n.max(0) as u64),
                image: hit,
            });
        }
        if !views.is_empty() {
            out.push(RepositoryHit {
                repository,
                images: views,
            });
        }
    }
    Ok(out)
}

fn open_counts(conn: &Db, image_id: i64) -> Result<BTreeMap<String, u64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.severity, COUNT(DISTINCT f.id) FROM targets t
         JOIN target_findings tf ON tf.target_id = t.id JOIN findings f ON f.id = tf.finding_id
         WHERE t.image_id = ?1 AND f.resolved_at IS NULL
           AND EXISTS (SELECT 1 FROM reports r WHERE r.target_id = t.id)
         GROUP BY f.severity",
    )?;
    let mut out = BTreeMap::new();
    for row in stmt.query_map(params![image_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (sev, n) = row?;
        out.insert(sev.to_ascii_lowercase(), n.max(0) as u64);
    }
    Ok(out)
}

/// The image contents `ids`, with their workloads and CI sightings; images that neither
/// run nor were seen by CI only with `include_past`.
fn images(conn: &Db, ids: &BTreeSet<i64>, filter: Filter) -> Result<Vec<ImageHit>> {
    let fleet = conn.engine() == crate::store::db::Engine::Postgres;
    let mut out = Vec::new();
    for &id in ids {
        let Some((key, registry, repository, tag, digest, first_seen)) = conn
            .prepare_cached(
                "SELECT key, registry, repository, tag, digest, first_seen FROM images WHERE id = ?1",
            )?
            .query_row(params![id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .optional()?
        else {
            continue;
        };
        let mut stmt = conn.prepare_cached(
            "SELECT w.namespace, w.kind, w.name,
                    COALESCE((SELECT MIN(s.first_seen) FROM sightings s
                              WHERE s.image_id = ?1 AND s.workload_id = w.id), w.first_seen),
                    w.cluster
             FROM reports r JOIN targets t ON t.id = r.target_id
             JOIN workloads w ON w.id = r.workload_id
             WHERE t.image_id = ?1
             GROUP BY w.id",
        )?;
        let mut workloads: Vec<Place> = stmt
            .query_map(params![id], |r| {
                Ok(Place {
                    cluster: if fleet { Some(r.get(4)?) } else { None },
                    namespace: r.get(0)?,
                    kind: r.get(1)?,
                    name: r.get(2)?,
                    since: r.get(3)?,
                })
            })?
            .collect::<crate::store::db::Result<_>>()?;
        workloads.sort();
        let last_ran: Option<i64> = conn
            .prepare_cached("SELECT MAX(last_seen) FROM sightings WHERE image_id = ?1")?
            .query_row(params![id], |r| r.get(0))?;
        let ci = conn
            .prepare_cached(
                "SELECT artifact, source, first_seen, last_seen FROM ci_images WHERE image_id = ?1",
            )?
            .query_row(params![id], |r| {
                Ok(CiSeen {
                    artifact: r.get(0)?,
                    source: r.get(1)?,
                    first_seen: r.get(2)?,
                    last_seen: r.get(3)?,
                })
            })
            .optional()?;
        let running = !workloads.is_empty();
        if !running && ci.is_none() && !filter.include_past {
            continue;
        }
        out.push(ImageHit {
            image: key,
            repository: if registry.is_empty() {
                repository
            } else {
                format!("{registry}/{repository}")
            },
            tag,
            digest,
            running,
            first_seen,
            last_ran,
            workloads,
            ci,
        });
    }
    // Running first, then CI-only, then the past; newest first within each.
    out.sort_by(|a, b| {
        b.running
            .cmp(&a.running)
            .then_with(|| b.ci.is_some().cmp(&a.ci.is_some()))
            .then_with(|| b.first_seen.cmp(&a.first_seen))
            .then_with(|| a.image.cmp(&b.image))
    });
    Ok(out)
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
