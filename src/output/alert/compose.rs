//! What a message says, read from the store: per image repository, the new findings,
//! the digests carrying them, the workloads and namespaces running it, and the
//! DefectDojo test when known.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::db::{Db, OptionalExtension, params};
use anyhow::Result;
use sha2::{Digest, Sha256};

use super::queue::{CiItem, Item};
use crate::model::{Family, Finding, Severity};

#[derive(Debug, Clone)]
pub struct AlertFinding {
    pub family: Family,
    pub severity: Severity,
    pub id: String,
    pub title: String,
    pub package: String,
    pub installed: String,
    pub fixed: String,
    pub score: Option<f64>,
    /// Only http(s) links from the report.
    pub link: Option<String>,
    /// Secret: the file it was found in.
    pub path: String,
}

impl AlertFinding {
    /// `openssl 3.0.1 → 3.0.9`, `openssl 3.0.1 (no fix yet)`, or the secret's file.
    pub fn versions(&self) -> String {
        match self.family {
            Family::Vulnerability => {
                let fixed = if self.fixed.is_empty() {
                    "no fix yet".to_owned()
                } else {
                    self.fixed.clone()
                };
                format!("{} {} → {fixed}", self.package, self.installed)
                    .trim()
                    .to_owned()
            }
            Family::Secret => format!("{} in {}", self.package, self.path)
                .trim()
                .to_owned(),
            _ => self.package.clone(),
        }
    }

    pub fn score_text(&self) -> String {
        self.score.map(|s| format!("{s:.1}")).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageRef {
    pub digest: Option<String>,
    pub tag: Option<String>,
}

impl ImageRef {
    pub fn short_digest(&self) -> String {
        match &self.digest {
            Some(d) => match d.split_once(':') {
                Some((algo, hex)) => format!("{algo}:{}", hex.get(..12).unwrap_or(hex)),
                None => d.clone(),
            },
            None => "(no digest)".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadRef {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
        }
    }
}

/// The new findings of one image repository for one destination.
#[derive(Debug, Clone)]
pub struct Group {
    pub repo: String,
    pub images: Vec<ImageRef>,
    /// Most severe first.
    pub findings: Vec<AlertFinding>,
    pub workloads: Vec<WorkloadRef>,
    pub namespaces: Vec<String>,
    pub dojo_links: Vec<String>,
    pub item_ids: Vec<i64>,
    /// A group of findings new in CI results: what CI named the image (`nginx:alpine`).
    /// Its `workloads` and `namespaces` are where that digest runs now, if anywhere.
    pub ci_artifacts: Vec<String>,
    /// `ci_alert_items` ids (`item_ids` are `alert_items` ids).
    pub ci_item_ids: Vec<i64>,
}

impl Group {
    /// The namespaces as shown in a message: cluster-scoped workloads have none.
    pub fn namespace_labels(&self) -> impl Iterator<Item = &str> {
        let not_running = (self.is_ci() && self.namespaces.is_empty())
            .then_some("(not running in the cluster: seen in CI)");
        self.namespaces
            .iter()
            .map(|n| {
                if n.is_empty() {
                    "(cluster)"
                } else {
                    n.as_str()
                }
            })
            .chain(not_running)
    }

    /// Findings new in CI results, not (yet) at runtime.
    pub fn is_ci(&self) -> bool {
        !self.ci_item_ids.is_empty()
    }

    pub fn counts(&self) -> BTreeMap<Severity, usize> {
        let mut m = BTreeMap::new();
        for f in &self.findings {
            *m.entry(f.severity).or_insert(0) += 1;
        }
        m
    }

    /// `3 new CRITICAL in ghcr.io/org/api`, `2 new CRITICAL, 1 new HIGH in ...`.
    pub fn title(&self) -> String {
        let ci = if self.is_ci() { " (seen in CI)" } else { "" };
        format!("{} in {}{ci}", counts_text(&self.counts()), self.repo)
    }
}

pub fn counts_text(counts: &BTreeMap<Severity, usize>) -> String {
    counts
        .iter()
        .map(|(s, n)| format!("{n} new {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a, b, c`, or `a, b, and 3 more` past `max` items.
pub fn join_limited(items: &[String], max: usize) -> String {
    match items.get(max..) {
        Some(rest) if !rest.is_empty() => {
            format!("{}, and {} more", items[..max].join(", "), rest.len())
        }
        _ => items.join(", "),
    }
}

/// What one send carries.
#[derive(Debug, Clone)]
pub enum Message {
    Image(Group),
    /// The flood cap was reached: every waiting image in one message.
    Digest(Vec<Group>),
    Test {
        destination: String,
    },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Image(_) => "image",
            Message::Digest(_) => "digest",
            Message::Test { .. } => "test",
        }
    }

    pub fn title(&self) -> String {
        match self {
            Message::Image(g) => g.title(),
            Message::Digest(groups) => {
                let mut counts = BTreeMap::new();
                for g in groups {
                    for (s, n) in g.counts() {
                        *counts.entry(s).or_insert(0) += n;
                    }
                }
                let findings: usize = counts.values().sum();
                let sev: Vec<&str> = counts.keys().map(|s| s.as_str()).collect();
                format!(
                    "{} images with {findings} new {} findings",
                    groups.len(),
                    sev.join("/")
                )
            }
            Message::Test { .. } => "test alert".into(),
        }
    }

    pub fn item_ids(&self) -> Vec<i64> {
        self.groups().flat_map(|g| g.item_ids.clone()).collect()
    }

    pub fn ci_item_ids(&self) -> Vec<i64> {
        self.groups().flat_map(|g| g.ci_item_ids.clone()).collect()
    }

    fn groups(&self) -> impl Iterator<Item = &Group> {
        let groups: &[Group] = match self {
            Message::Image(g) => std::slice::from_ref(g),
            Message::Digest(gs) => gs,
            Message::Test { .. } => &[],
        };
        groups.iter()
    }

    /// Stable for the same destination and content, so a message sent twice (a crash
    /// between send and record) carries the same Message-ID and can be deduplicated.
    pub fn stable_id(&self, destination: &str) -> String {
        let mut ids = self.item_ids();
        ids.sort_unstable();
        let mut h = Sha256::new();
        h.update(destination.as_bytes());
        for id in ids {
            h.update(id.to_le_bytes());
        }
        let mut ci = self.ci_item_ids();
        if !ci.is_empty() {
            // Another table's ids: kept apart from the runtime ones.
            ci.sort_unstable();
            h.update(b"ci");
            for id in ci {
                h.update(id.to_le_bytes());
            }
        }
        let hex = crate::model::hex(&h.finalize());
        format!("alert-{}@trivy-digest", &hex[..24])
    }
}

/// Groups a destination's items by image repository and reads what the messages say.
pub fn groups(conn: &Db, items: &[&Item], dojo_url: Option<&str>) -> Result<Vec<Group>> {
    // repo → (item ids, (finding id, family, data, severity, subject id), namespaces)
    type Row = (i64, String, String, String, i64);
    type Acc = (Vec<i64>, Vec<Row>, BTreeSet<String>);
    let mut by_repo: BTreeMap<String, Acc> = BTreeMap::new();
    for it in items {
        let row = conn
            .prepare_cached(
                "SELECT s.key, s.family, f.data, f.severity, f.subject_id FROM findings f
                 JOIN subjects s ON s.id = f.subject_id WHERE f.id = ?1",
            )?
            .query_row(params![it.finding_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (it.finding_id, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                ))
            })
            .optional()?;
        // Gone since the send-time check (retention): nothing to say about it.
        let Some((repo, row)) = row else { continue };
        let e = by_repo.entry(repo).or_default();
        e.0.push(it.id);
        e.1.push(row);
        e.2.extend(it.namespaces.iter().cloned());
    }
    let mut out = Vec::new();
    for (repo, (item_ids, rows, namespaces)) in by_repo {
        let mut findings = Vec::new();
        let mut images = BTreeSet::new();
        let mut workloads = BTreeSet::new();
        let mut subjects = BTreeSet::new();
        for (fid, family, data, severity, subject_id) in rows {
            subjects.insert((subject_id, family.clone()));
            let Ok(f) = serde_json::from_str::<Finding>(&data) else {
                tracing::warn!(
                    finding = fid,
                    "stored finding unreadable; left out of the alert"
                );
                continue;
            };
            findings.push(alert_finding(
                Family::parse(&family).unwrap_or(Family::Vulnerability),
                Severity::parse_lenient(&severity),
                &f,
            ));
            // A destination sees only the namespaces it was routed: the digests and
            // workloads running elsewhere (another team's namespaces) are not shown.
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT i.digest, i.tag, r.namespace FROM target_findings tf
                 JOIN targets t ON t.id = tf.target_id JOIN images i ON i.id = t.image_id
                 JOIN reports r ON r.target_id = t.id WHERE tf.finding_id = ?1",
            )?;
            for row in stmt.query_map(params![fid], |r| {
                Ok((
                    ImageRef {
                        digest: r.get(0)?,
                        tag: r.get(1)?,
                    },
                    r.get::<_, String>(2)?,
                ))
            })? {
                let (img, ns) = row?;
                if namespaces.contains(&ns) {
                    images.insert(img);
                }
            }
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT w.namespace, w.kind, w.name FROM target_findings tf
                 JOIN reports r ON r.target_id = tf.target_id
                 JOIN workloads w ON w.id = r.workload_id WHERE tf.finding_id = ?1",
            )?;
            for w in stmt.query_map(params![fid], |r| {
                Ok(WorkloadRef {
                    namespace: r.get(0)?,
                    kind: r.get(1)?,
                    name: r.get(2)?,
                })
            })? {
                let w = w?;
                if namespaces.contains(&w.namespace) {
                    workloads.insert(w);
                }
            }
        }
        sort_findings(&mut findings);
        let mut dojo_links = Vec::new();
        if let Some(base) = dojo_url {
            for (subject_id, family) in &subjects {
                let ids: Vec<i64> = conn
                    .prepare_cached(
                        "SELECT dd_test_id FROM dojo_tests WHERE subject_id = ?1 AND family = ?2
                         AND dd_test_id IS NOT NULL ORDER BY id",
                    )?
                    .query_map(params![subject_id, family], |r| r.get(0))?
                    .collect::<crate::store::db::Result<_>>()?;
                for id in ids {
                    dojo_links.push(format!("{}/test/{id}", base.trim_end_matches('/')));
                }
            }
        }
        out.push(Group {
            repo,
            images: images.into_iter().collect(),
            findings,
            workloads: workloads.into_iter().collect(),
            namespaces: namespaces.into_iter().collect(),
            dojo_links,
            item_ids,
            ci_artifacts: Vec::new(),
            ci_item_ids: Vec::new(),
        });
    }
    sort_groups(&mut out);
    Ok(out)
}

/// Groups a destination's CI items by image repository: the findings as CI listed them,
/// the digests CI scanned, and the workloads running those digests now (if any).
pub fn ci_groups(conn: &Db, items: &[&CiItem]) -> Result<Vec<Group>> {
    #[derive(Default)]
    struct Acc {
        ids: Vec<i64>,
        findings: Vec<AlertFinding>,
        images: BTreeSet<ImageRef>,
        image_ids: BTreeSet<i64>,
        artifacts: BTreeSet<String>,
    }
    let mut by_repo: BTreeMap<String, Acc> = BTreeMap::new();
    for it in items {
        let row = conn
            .prepare_cached(
                "SELECT s.key, s.family, c.data, c.severity, i.digest, i.tag, ci.artifact
                 FROM ci_findings c JOIN subjects s ON s.id = c.subject_id
                 JOIN images i ON i.id = c.image_id
                 LEFT JOIN ci_images ci ON ci.image_id = c.image_id
                 WHERE c.image_id = ?1 AND c.subject_id = ?2 AND c.fkey = ?3",
            )?
            .query_row(params![it.image_id, it.subject_id, it.fkey], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    ImageRef {
                        digest: r.get(4)?,
                        tag: r.get(5)?,
                    },
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .optional()?;
        let Some((repo, family, data, severity, image, artifact)) = row else {
            continue;
        };
        let Ok(f) = serde_json::from_str::<Finding>(&data) else {
            tracing::warn!(image = %repo, "stored CI finding unreadable; left out of the alert");
            continue;
        };
        let acc = by_repo.entry(repo).or_default();
        acc.ids.push(it.id);
        acc.findings.push(alert_finding(
            Family::parse(&family).unwrap_or(Family::Vulnerability),
            Severity::parse_lenient(&severity),
            &f,
        ));
        acc.images.insert(image);
        acc.image_ids.insert(it.image_id);
        acc.artifacts.extend(artifact);
    }
    let mut out = Vec::new();
    for (repo, mut acc) in by_repo {
        let mut workloads = BTreeSet::new();
        for image_id in &acc.image_ids {
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT w.namespace, w.kind, w.name FROM targets t
                 JOIN reports r ON r.target_id = t.id JOIN workloads w ON w.id = r.workload_id
                 WHERE t.image_id = ?1",
            )?;
            for w in stmt.query_map(params![image_id], |r| {
                Ok(WorkloadRef {
                    namespace: r.get(0)?,
                    kind: r.get(1)?,
                    name: r.get(2)?,
                })
            })? {
                workloads.insert(w?);
            }
        }
        sort_findings(&mut acc.findings);
        let namespaces: BTreeSet<String> = workloads.iter().map(|w| w.namespace.clone()).collect();
        out.push(Group {
            repo,
            images: acc.images.into_iter().collect(),
            findings: acc.findings,
            workloads: workloads.into_iter().collect(),
            namespaces: namespaces.into_iter().collect(),
            dojo_links: Vec::new(),
            item_ids: Vec::new(),
            ci_artifacts: acc.artifacts.into_iter().collect(),
            ci_item_ids: acc.ids,
        });
    }
    Ok(out)
}

/// Most severe first, then the highest score, then by id.
fn sort_findings(findings: &mut [AlertFinding]) {
    findings.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then(
                b.score
                    .partial_cmp(&a.score)
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// Most severe and largest first (the digest's "top" order).
pub fn sort_groups(groups: &mut [Group]) {
    groups.sort_by(|a, b| {
        let key = |g: &Group| {
            (
                g.findings.first().map_or(Severity::Unknown, |f| f.severity),
                std::cmp::Reverse(g.findings.len()),
            )
        };
        key(a).cmp(&key(b)).then_with(|| a.repo.cmp(&b.repo))
    });
}

fn alert_finding(family: Family, severity: Severity, f: &Finding) -> AlertFinding {
    let http = |s: &str| {
        let s = s.trim();
        (s.starts_with("https://") || s.starts_with("http://")).then(|| s.to_owned())
    };
    let link = http(&f.primary_link).or_else(|| f.links.iter().find_map(|l| http(l)));
    AlertFinding {
        family,
        severity,
        id: f.id.clone(),
        title: f.title.clone(),
        package: f.package.clone(),
        installed: f.installed_version.clone(),
        fixed: f.fixed_version.clone(),
        score: f.score,
        link,
        path: f.path.clone(),
    }
}
