//! What DefectDojo should hold, test by test, compared with what it acknowledged.
//!
//! A test holds the union of the findings of the live targets mapped to it: for images,
//! every digest of one repository still running (or within its grace period), so an
//! upgrade closes exactly what it fixed. A test is pushed only when its content hash
//! differs from the last acknowledged one, so a steady state costs no API call.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::store::db::{Db, OptionalExtension, params};
use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

use super::format::{self, GenericFile, GenericFinding, Usage};
use crate::config::DojoConfig;
use crate::model::{Family, Finding};
use crate::template::{Template, Vars};

/// Product type, product and engagement: created together by auto-create.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Context {
    pub product_type: String,
    pub product: String,
    pub engagement: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Membership changed: reimport, then patch what the reimport did not refresh.
    Reimport,
    /// Only volatile fields changed: patch, no reimport.
    Sync,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reimport => "reimport",
            Action::Sync => "sync",
        }
    }
}

/// One test to push.
#[derive(Debug, Clone)]
pub struct PlannedTest {
    pub test_id: i64,
    pub context: Context,
    pub title: String,
    pub family: Family,
    pub action: Action,
    pub content_hash: String,
    pub full_hash: String,
    /// Multipart form fields in order (repeated names allowed), without the file.
    pub form: Vec<(String, String)>,
    /// The Generic Findings Import file.
    pub file: Vec<u8>,
    pub findings: usize,
    /// Every workload using the subject is gone past the grace period.
    pub emptied: bool,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PlanStats {
    pub tests: u64,
    pub unchanged: u64,
    pub reimports: u64,
    pub syncs: u64,
    pub emptied: u64,
    /// Tests no longer produced by the mapping while their subject still runs: left as
    /// they are rather than emptied (emptying would close findings and drop acceptances).
    pub left_alone: Vec<String>,
}

struct TargetInfo {
    registry: String,
    repository: String,
    image: Option<String>,
    workloads: Vec<WorkloadUse>,
}

struct WorkloadUse {
    /// The cluster it runs in; shown first in a fleet store's tests.
    cluster: String,
    fleet: bool,
    namespace: String,
    kind: String,
    name: String,
    container: String,
    /// The report's workload labels (`reportResourceLabels`), for `workload_label:`.
    labels: BTreeMap<String, String>,
}

impl WorkloadUse {
    fn display(&self) -> String {
        let mut base = if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.namespace, self.kind, self.name)
        };
        if self.fleet {
            base = format!("{}/{base}", self.cluster);
        }
        if self.container.is_empty() {
            base
        } else {
            format!("{base} (container {})", self.container)
        }
    }
}

type Namespaces = HashMap<String, (BTreeMap<String, String>, BTreeMap<String, String>)>;

/// Computes the tests to push and hands each to `sink` (outbox or dry-run folder).
/// Creates the `dojo_tests` rows it needs. With `force`, every desired test is pushed
/// again whatever was acknowledged (after a test was deleted in DefectDojo).
pub fn plan(
    conn: &Db,
    cfg: &DojoConfig,
    cluster: &str,
    fleet: &str,
    force: bool,
    sink: &mut dyn FnMut(PlannedTest) -> Result<()>,
) -> Result<PlanStats> {
    let namespaces = load_namespaces(conn)?;
    let mut stats = PlanStats::default();
    let mut desired: BTreeSet<i64> = BTreeSet::new();

    let live = "EXISTS (SELECT 1 FROM targets t JOIN reports r ON r.target_id = t.id
                        WHERE t.subject_id = s.id)";
    for (subject_id, family, subject_key) in exported_subjects(conn, cfg, live)? {
        let targets = load_targets(conn, subject_id)?;
        let groups = group_targets(
            cfg,
            cluster,
            fleet,
            family,
            &subject_key,
            &targets,
            &namespaces,
        );
        let findings = load_findings(conn, subject_id)?;
        for ((context, title), target_ids) in groups {
            let built = build_test(family, &subject_key, &findings, &targets, &target_ids)?;
            stats.tests += 1;
            let test_id = upsert_test(conn, &context, &title, family, subject_id)?;
            desired.insert(test_id);
            decide(
                conn, cfg, force, test_id, context, title, family, built, false, &mut stats, sink,
            )?;
        }
    }

    // Images that run nowhere but CI saw: their own engagement, when configured.
    if let Some(engagement) = &cfg.ci_engagement {
        plan_ci(
            conn,
            cfg,
            engagement,
            cluster,
            fleet,
            force,
            &mut desired,
            &mut stats,
            sink,
        )?;
    }

    // Tests we pushed before that the store no longer produces.
    type Stale = (i64, String, String, String, String, String, i64, String);
    let stale: Vec<Stale> = conn
        .prepare(
            "SELECT id, product_type, product, engagement, title, family, subject_id, origin
             FROM dojo_tests WHERE acked_hash IS NOT NULL",
        )?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<crate::store::db::Result<_>>()?;
    for (test_id, pt, p, e, title, family, subject_id, origin) in stale {
        if desired.contains(&test_id) {
            continue;
        }
        let Some(family) = Family::parse(&family) else {
            continue;
        };
        let live: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM targets t JOIN reports r ON r.target_id = t.id
                                WHERE t.subject_id = ?1)",
            )?
            .query_row(params![subject_id], |r| r.get(0))?;
        // A CI test is emptied only when CI says so (the newest scan lists nothing):
        // not because the image now runs (its runtime test holds it), nor because
        // `ci_engagement` was turned off or renamed while CI still lists findings.
        let ci_says_clean = origin != "ci"
            || (cfg.ci_engagement.is_some()
                && ci_open_findings(conn, family, subject_id)?.is_empty());
        if live || !cfg.families.contains(&family) || !ci_says_clean {
            stats.left_alone.push(format!("{p} / {e} / {title}"));
            continue;
        }
        let context = Context {
            product_type: pt,
            product: p,
            engagement: e,
        };
        let built = Built::empty(family);
        decide(
            conn, cfg, force, test_id, context, title, family, built, true, &mut stats, sink,
        )?;
    }
    Ok(stats)
}

/// The CI engagement: per image repository CI scanned that runs nowhere in this
/// cluster, the open findings of its newest CI scan. Product type and product come from
/// the mapping as for a workload without a namespace (so `{{ cluster }}` and fallbacks
/// apply, annotations do not); the title is the mapping's test title.
#[allow(clippy::too_many_arguments)]
fn plan_ci(
    conn: &Db,
    cfg: &DojoConfig,
    engagement: &Template,
    cluster: &str,
    fleet: &str,
    force: bool,
    desired: &mut BTreeSet<i64>,
    stats: &mut PlanStats,
    sink: &mut dyn FnMut(PlannedTest) -> Result<()>,
) -> Result<()> {
    let ci_only = "EXISTS (SELECT 1 FROM ci_findings c WHERE c.subject_id = s.id)
                   AND NOT EXISTS (SELECT 1 FROM targets t JOIN reports r ON r.target_id = t.id
                                   WHERE t.subject_id = s.id)";
    for (subject_id, family, subject_key) in exported_subjects(conn, cfg, ci_only)? {
        let open = ci_open_findings(conn, family, subject_id)?;
        let Some(first) = open.first() else {
            continue;
        };
        let (registry, repository) = (first.registry.clone(), first.repository.clone());
        let vars = Vars {
            cluster,
            fleet,
            subject: &subject_key,
            family: family.as_str(),
            registry: &registry,
            repository: &repository,
            namespace: "",
            workload_kind: "",
            workload_name: "",
            labels: None,
            annotations: None,
            workload_labels: None,
        };
        let context = Context {
            product_type: render_or(&cfg.product_type, &vars, "Kubernetes"),
            product: render_or(
                &cfg.product,
                &vars,
                if fleet.is_empty() { cluster } else { fleet },
            ),
            engagement: render_or(engagement, &vars, "trivy-digest-ci"),
        };
        let title = render_or(&cfg.test, &vars, &subject_key);
        let mut findings: Vec<GenericFinding> = open
            .iter()
            .map(|o| {
                let usage = Usage {
                    workloads: Vec::new(),
                    images: vec![o.image.clone()],
                };
                format::generic_finding(
                    family,
                    &subject_key,
                    &o.key,
                    &o.finding.title,
                    &o.finding,
                    &usage,
                )
            })
            .collect();
        findings.sort_by(|a, b| a.unique_id_from_tool.cmp(&b.unique_id_from_tool));
        stats.tests += 1;
        let test_id = upsert_test(conn, &context, &title, family, subject_id)?;
        conn.prepare_cached("UPDATE dojo_tests SET origin = 'ci' WHERE id = ?1")?
            .execute(params![test_id])?;
        desired.insert(test_id);
        let built = Built { family, findings };
        decide(
            conn, cfg, force, test_id, context, title, family, built, false, stats, sink,
        )?;
    }
    Ok(())
}

/// The subjects `condition` (SQL over `subjects s`) selects, in an exported family.
fn exported_subjects(
    conn: &Db,
    cfg: &DojoConfig,
    condition: &str,
) -> Result<Vec<(i64, Family, String)>> {
    let rows: Vec<(i64, String, String)> = conn
        .prepare(&format!(
            "SELECT s.id, s.family, s.key FROM subjects s WHERE {condition}
             ORDER BY s.family, s.key"
        ))?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<crate::store::db::Result<_>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, family, key)| Some((id, Family::parse(&family)?, key)))
        .filter(|(_, family, _)| cfg.families.contains(family))
        .collect())
}

/// One open finding of a repository's newest CI scan.
struct CiOpen {
    key: String,
    finding: Finding,
    /// `registry/repository@digest (tag)` of the content CI scanned.
    image: String,
    registry: String,
    repository: String,
}

/// The open CI findings of a subject (an image repository) in its newest CI scan that
/// covered the family (else, with no such scan, the newest content CI found it in).
fn ci_open_findings(conn: &Db, family: Family, subject_id: i64) -> Result<Vec<CiOpen>> {
    let covered: Option<i64> = conn
        .prepare_cached(
            "SELECT c.image_id FROM ci_covered c JOIN images i ON i.id = c.image_id
             JOIN subjects s ON s.id = ?2
             WHERE c.family = ?1
               AND (CASE WHEN i.registry = '' THEN i.repository
                         ELSE i.registry || '/' || i.repository END) = s.key
             ORDER BY c.scanned_at DESC, c.image_id DESC LIMIT 1",
        )?
        .query_row(params![family.as_str(), subject_id], |r| r.get(0))
        .optional()?;
    let newest = match covered {
        Some(id) => Some(id),
        None => conn
            .prepare_cached(
                "SELECT f.image_id FROM ci_findings f JOIN ci_images c ON c.image_id = f.image_id
                 WHERE f.subject_id = ?1
                 ORDER BY COALESCE(c.scanned_at, c.last_seen) DESC, f.image_id DESC LIMIT 1",
            )?
            .query_row(params![subject_id], |r| r.get(0))
            .optional()?,
    };
    let Some(image_id) = newest else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT f.fkey, f.data, i.key, i.tag, i.registry, i.repository
         FROM ci_findings f JOIN images i ON i.id = f.image_id
         WHERE f.image_id = ?1 AND f.subject_id = ?2 AND f.resolved_at IS NULL
         ORDER BY f.fkey",
    )?;
    let mut rows = stmt.query(params![image_id, subject_id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let key: String = r.get(0)?;
        let data: String = r.get(1)?;
        let finding: Finding = serde_json::from_str(&data)
            .with_context(|| format!("store: CI finding {key:?} has unreadable data"))?;
        let image: String = r.get(2)?;
        let tag: Option<String> = r.get(3)?;
        out.push(CiOpen {
            key,
            finding,
            image: match tag {
                Some(t) if image.contains('@') => format!("{image} ({t})"),
                _ => image,
            },
            registry: r.get(4)?,
            repository: r.get(5)?,
        });
    }
    Ok(out)
}

/// A test's content, ready to hash and send.
struct Built {
    family: Family,
    findings: Vec<GenericFinding>,
}

impl Built {
    fn empty(family: Family) -> Built {
        Built {
            family,
            findings: Vec::new(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn decide(
    conn: &Db,
    cfg: &DojoConfig,
    force: bool,
    test_id: i64,
    context: Context,
    title: String,
    family: Family,
    built: Built,
    emptied: bool,
    stats: &mut PlanStats,
    sink: &mut dyn FnMut(PlannedTest) -> Result<()>,
) -> Result<()> {
    let form = form_fields(cfg, &context, &title);
    let (content_hash, full_hash) = hashes(&form, &built);
    let (acked, synced): (Option<String>, Option<String>) = conn
        .prepare_cached("SELECT acked_hash, synced_hash FROM dojo_tests WHERE id = ?1")?
        .query_row(params![test_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let action = if force || acked.as_deref() != Some(&content_hash) {
        Action::Reimport
    } else if synced.as_deref() != Some(&full_hash) {
        Action::Sync
    } else {
        stats.unchanged += 1;
        // A queued push made obsolete by a return to the acknowledged state.
        conn.prepare_cached("DELETE FROM outbox WHERE test_id = ?1")?
            .execute(params![test_id])?;
        return Ok(());
    };
    match action {
        Action::Reimport => stats.reimports += 1,
        Action::Sync => stats.syncs += 1,
    }
    if emptied {
        stats.emptied += 1;
    }
    let n = built.findings.len();
    let file = serde_json::to_vec(&GenericFile {
        type_name: format::scan_type_name(built.family).to_owned(),
        findings: built.findings,
    })?;
    sink(PlannedTest {
        test_id,
        context,
        title,
        family,
        action,
        content_hash,
        full_hash,
        form,
        file,
        findings: n,
        emptied,
    })
}

/// The multipart fields of a reimport. `test_title` and `service` are always sent and
/// equal: without `service` DefectDojo never closes fixed findings, without `test_title`
/// it merges into the latest test of the engagement.
pub fn form_fields(cfg: &DojoConfig, c: &Context, title: &str) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = vec![
        ("scan_type".into(), format::SCAN_TYPE.into()),
        ("product_type_name".into(), c.product_type.clone()),
        ("product_name".into(), c.product.clone()),
        ("engagement_name".into(), c.engagement.clone()),
        ("test_title".into(), title.into()),
        ("service".into(), title.into()),
        ("auto_create_context".into(), "true".into()),
        ("close_old_findings".into(), "true".into()),
        (
            "do_not_reactivate".into(),
            cfg.do_not_reactivate.to_string(),
        ),
        ("active".into(), cfg.active.to_string()),
        ("verified".into(), cfg.verified.to_string()),
        ("minimum_severity".into(), "Info".into()),
    ];
    if let Some(m) = &cfg.deduplication_execution_mode {
        f.push(("deduplication_execution_mode".into(), m.clone()));
    }
    if let Some(e) = &cfg.environment {
        f.push(("environment".into(), e.clone()));
    }
    for t in &cfg.tags {
        f.push(("tags".into(), t.clone()));
    }
    f
}

/// Membership hash (what a reimport decides: the form and the hashed fields) and full
/// hash (plus every volatile field, which only a PATCH can change).
fn hashes(form: &[(String, String)], built: &Built) -> (String, String) {
    let mut h = Sha256::new();
    let put = |h: &mut Sha256, s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    put(&mut h, format::scan_type_name(built.family));
    for (k, v) in form {
        put(&mut h, k);
        put(&mut h, v);
    }
    let mut keys: Vec<(String, String, String)> =
        built.findings.iter().map(format::hash_fields).collect();
    keys.sort();
    for (t, p, d) in &keys {
        put(&mut h, t);
        put(&mut h, p);
        put(&mut h, d);
    }
    let membership = crate::model::hex(&h.clone().finalize())[..32].to_owned();
    let mut vol: Vec<(&str, String)> = built
        .findings
        .iter()
        .map(|g| (g.unique_id_from_tool.as_str(), g.volatile.hash()))
        .collect();
    vol.sort();
    for (u, v) in &vol {
        put(&mut h, u);
        put(&mut h, v);
    }
    let full = crate::model::hex(&h.finalize())[..32].to_owned();
    (membership, full)
}

fn upsert_test(
    conn: &Db,
    c: &Context,
    title: &str,
    family: Family,
    subject_id: i64,
) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO dojo_tests(product_type, product, engagement, title, family, subject_id)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(product_type, product, engagement, title, family)
                 DO UPDATE SET subject_id = excluded.subject_id
             RETURNING id",
        )?
        .query_row(
            params![
                c.product_type,
                c.product,
                c.engagement,
                title,
                family.as_str(),
                subject_id
            ],
            |r| r.get(0),
        )?)
}

fn load_namespaces(conn: &Db) -> Result<Namespaces> {
    let mut out = Namespaces::new();
    let mut stmt = conn
        .prepare("SELECT name, labels, annotations FROM namespaces ORDER BY updated_at, cluster")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (name, labels, annotations) = row?;
        let labels = serde_json::from_str(&labels).unwrap_or_default();
        let annotations = serde_json::from_str(&annotations).unwrap_or_default();
        out.insert(name, (labels, annotations));
    }
    Ok(out)
}

fn load_targets(conn: &Db, subject_id: i64) -> Result<BTreeMap<i64, TargetInfo>> {
    let fleet = conn.engine() == crate::store::db::Engine::Postgres;
    let mut targets: BTreeMap<i64, TargetInfo> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT t.id, i.registry, i.repository, i.key, i.tag, w.namespace, w.kind, w.name, r.container,
                r.labels, w.cluster
         FROM targets t
         LEFT JOIN images i ON i.id = t.image_id
         JOIN reports r ON r.target_id = t.id
         JOIN workloads w ON w.id = r.workload_id
         WHERE t.subject_id = ?1
         ORDER BY t.id, w.cluster, w.namespace, w.kind, w.name, r.container",
    )?;
    let mut rows = stmt.query(params![subject_id])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let key: Option<String> = r.get(3)?;
        let tag: Option<String> = r.get(4)?;
        let t = targets.entry(id).or_insert_with(|| TargetInfo {
            registry: r
                .get::<_, Option<String>>(1)
                .ok()
                .flatten()
                .unwrap_or_default(),
            repository: r
                .get::<_, Option<String>>(2)
                .ok()
                .flatten()
                .unwrap_or_default(),
            image: key.map(|k| match tag {
                Some(t) if k.contains('@') => format!("{k} ({t})"),
                _ => k,
            }),
            workloads: Vec::new(),
        });
        let w = WorkloadUse {
            cluster: r.get(10)?,
            fleet,
            namespace: r.get(5)?,
            kind: r.get(6)?,
            name: r.get(7)?,
            container: r.get(8)?,
            // Written by this program from a map of strings; anything else reads as none.
            labels: serde_json::from_str(&r.get::<_, String>(9)?).unwrap_or_default(),
        };
        // Several reports of one workload (one per ReplicaSet) list it once. Reports of it
        // that disagree on its labels (an old ReplicaSet still in its grace period) are
        // mapped each on its own, as workloads of one image that disagree are.
        if !t.workloads.iter().any(|x| {
            x.cluster == w.cluster
                && x.namespace == w.namespace
                && x.kind == w.kind
                && x.name == w.name
                && x.container == w.container
                && x.labels == w.labels
        }) {
            t.workloads.push(w);
        }
    }
    Ok(targets)
}

struct StoredFinding {
    key: String,
    first_title: String,
    finding: Finding,
    targets: Vec<i64>,
}

fn load_findings(conn: &Db, subject_id: i64) -> Result<Vec<StoredFinding>> {
    let mut by_id: BTreeMap<i64, StoredFinding> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT f.id, f.fkey, f.data, tf.target_id, f.first_title FROM findings f
         JOIN target_findings tf ON tf.finding_id = f.id
         JOIN targets t ON t.id = tf.target_id
         WHERE t.subject_id = ?1 AND EXISTS (SELECT 1 FROM reports r WHERE r.target_id = t.id)
         ORDER BY f.id",
    )?;
    let mut rows = stmt.query(params![subject_id])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let target: i64 = r.get(3)?;
        if let Some(f) = by_id.get_mut(&id) {
            f.targets.push(target);
            continue;
        }
        let data: String = r.get(2)?;
        let finding: Finding = serde_json::from_str(&data)
            .with_context(|| format!("store: finding {id} has unreadable data"))?;
        by_id.insert(
            id,
            StoredFinding {
                key: r.get(1)?,
                first_title: r.get(4)?,
                finding,
                targets: vec![target],
            },
        );
    }
    Ok(by_id.into_values().collect())
}

fn render_or(t: &Template, vars: &Vars<'_>, fallback: &str) -> String {
    let s = t.render(vars);
    if s.is_empty() { fallback.to_owned() } else { s }
}

/// Maps each target (through its workloads) to a test. With the default mapping every
/// target of a subject lands in one test.
#[allow(clippy::too_many_arguments)]
fn group_targets(
    cfg: &DojoConfig,
    cluster: &str,
    fleet: &str,
    family: Family,
    subject: &str,
    targets: &BTreeMap<i64, TargetInfo>,
    namespaces: &Namespaces,
) -> BTreeMap<(Context, String), BTreeSet<i64>> {
    let mut groups: BTreeMap<(Context, String), BTreeSet<i64>> = BTreeMap::new();
    for (id, t) in targets {
        for w in &t.workloads {
            let ns = namespaces.get(&w.namespace);
            // `{{ cluster }}` is where the workload runs (one store may hold a fleet's).
            let vars = Vars {
                cluster: if w.cluster.is_empty() {
                    cluster
                } else {
                    &w.cluster
                },
                fleet,
                subject,
                family: family.as_str(),
                registry: &t.registry,
                repository: &t.repository,
                namespace: &w.namespace,
                workload_kind: &w.kind,
                workload_name: &w.name,
                labels: ns.map(|n| &n.0),
                annotations: ns.map(|n| &n.1),
                workload_labels: Some(&w.labels),
            };
            let context = Context {
                product_type: render_or(&cfg.product_type, &vars, "Kubernetes"),
                product: render_or(
                    &cfg.product,
                    &vars,
                    if fleet.is_empty() { cluster } else { fleet },
                ),
                engagement: render_or(&cfg.engagement, &vars, "trivy-digest"),
            };
            let title = render_or(&cfg.test, &vars, subject);
            groups.entry((context, title)).or_default().insert(*id);
        }
    }
    groups
}

fn build_test(
    family: Family,
    subject: &str,
    findings: &[StoredFinding],
    targets: &BTreeMap<i64, TargetInfo>,
    in_group: &BTreeSet<i64>,
) -> Result<Built> {
    let mut out = Vec::new();
    for sf in findings {
        let mine: Vec<&TargetInfo> = sf
            .targets
            .iter()
            .filter(|t| in_group.contains(t))
            .filter_map(|t| targets.get(t))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut usage = Usage::default();
        for t in &mine {
            if let Some(img) = &t.image {
                usage.images.push(img.clone());
            }
            for w in &t.workloads {
                let d = w.display();
                if !usage.workloads.contains(&d) {
                    usage.workloads.push(d);
                }
            }
        }
        usage.images.sort();
        usage.images.dedup();
        usage.workloads.sort();
        out.push(format::generic_finding(
            family,
            subject,
            &sf.key,
            &sf.first_title,
            &sf.finding,
            &usage,
        ));
    }
    out.sort_by(|a, b| a.unique_id_from_tool.cmp(&b.unique_id_from_tool));
    Ok(Built {
        family,
        findings: out,
    })
}
