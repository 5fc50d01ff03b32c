//! One raw object → one normalized report, or an error that says which object and field.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::crd::{self, Envelope, Metadata};
use super::workload::top_controller;
use crate::model::{
    CiScan, Family, Finding, Image, NamespaceMeta, Report, ReportId, ReportKind, Severity,
    WorkloadKey,
};
use crate::source::{Origin, RawObject};

/// What an object turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Report(Box<Report>),
    /// A Trivy CLI result or a CycloneDX SBOM from CI: a sighting of an image.
    Ci {
        origin: Origin,
        scan: Box<CiScan>,
    },
    /// A Namespace object exported beside the reports: its labels and annotations feed
    /// the DefectDojo mapping (`annotation:trivy-digest.io/product`).
    Namespace(NamespaceMeta),
    /// Not a Trivy Operator report (a Pod in a `kubectl get all` export, a legacy kind):
    /// skipped without being an error.
    Ignored {
        origin: Origin,
        reason: String,
    },
    /// A report the operator has not filled in yet (a ClusterComplianceReport before its
    /// first evaluation has no `status`): whatever was known of it stays.
    NotReady {
        origin: Origin,
        id: ReportId,
        reason: String,
    },
}

/// An object that could not be read. `id` is set when its identity was readable, so
/// the store can keep what it last knew of that report instead of losing it.
#[derive(Debug, Clone)]
pub struct ObjectError {
    pub origin: Origin,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub id: Option<ReportId>,
    /// Path of the field at fault, e.g. `report.vulnerabilities[3].severity`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        match (&self.kind, &self.name) {
            (Some(k), Some(n)) => write!(f, " ({k} {n})")?,
            (Some(k), None) => write!(f, " ({k})")?,
            (None, Some(n)) => write!(f, " ({n})")?,
            (None, None) => {}
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ObjectError {}

/// Parses and normalizes one object.
pub fn parse_object(obj: &RawObject) -> Result<Parsed, Box<ObjectError>> {
    let mut err = Box::new(ObjectError {
        origin: obj.origin.clone(),
        kind: None,
        name: None,
        id: None,
        field: None,
        message: String::new(),
    });
    let mut env: Envelope = match deserialize_at(&obj.json, "") {
        Ok(e) => e,
        Err((field, message)) => {
            err.field = field;
            err.message = message;
            return Err(err);
        }
    };
    let meta = env.metadata.take().unwrap_or_default();
    err.name = meta.name.as_ref().map(|n| match &meta.namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{n}"),
        _ => n.clone(),
    });

    // What kind, and where its body is.
    let (kind, body, body_path) = match env.kind.as_deref() {
        Some(k) => {
            err.kind = Some(k.to_owned());
            if k == "Namespace"
                && let Some(name) = meta.name.clone().filter(|n| !n.is_empty())
            {
                return Ok(Parsed::Namespace(NamespaceMeta {
                    name,
                    uid: meta
                        .uid
                        .as_ref()
                        .and_then(|u| u.as_str())
                        .filter(|u| !u.is_empty())
                        .map(str::to_owned),
                    labels: meta.labels,
                    annotations: meta.annotations,
                }));
            }
            let Some(kind) = ReportKind::from_kind(k) else {
                return Ok(Parsed::Ignored {
                    origin: obj.origin.clone(),
                    reason: ignored_reason(k),
                });
            };
            let body = if kind == ReportKind::ClusterComplianceReport {
                env.status
            } else {
                env.report
            };
            (kind, body, body_path(kind))
        }
        None if env.bom_format || env.trivy_schema_version => {
            return super::ci::parse(obj, env.bom_format).map(|c| Parsed::Ci {
                origin: obj.origin.clone(),
                scan: Box::new(c),
            });
        }
        None => {
            // A bare `.report` body or `.status` fragment: the object is the body.
            let Some(kind) = infer_kind(&env, obj.kind_hint) else {
                err.message = "not a Trivy Operator report: no `kind` and no report body \
                               (`vulnerabilities`, `checks`, `secrets`, `components`, \
                               `summaryReport` or `detailReport`)"
                    .into();
                return Err(err);
            };
            err.kind = Some(kind.as_str().to_owned());
            let whole: Option<&RawValue> = serde_json::from_slice(&obj.json).ok();
            (kind, whole, "")
        }
    };

    let id = report_id(kind, &meta, obj);
    err.id = Some(id.clone());
    if err.name.is_none() {
        err.name = Some(id.name.clone());
    }
    let Some(body) = body else {
        if kind == ReportKind::ClusterComplianceReport {
            return Ok(Parsed::NotReady {
                origin: obj.origin.clone(),
                reason: format!(
                    "ClusterComplianceReport {} has no status yet (not evaluated)",
                    id.name
                ),
                id,
            });
        }
        err.field = Some(body_path.trim_end_matches('.').to_owned());
        err.message = "missing: the report has no body".into();
        return Err(err);
    };

    let workload = workload_of(kind, &meta, &id);
    let owner = direct_owner(&meta);
    let container = label(&meta, "container.name").cloned().unwrap_or_default();
    let mut report = Report {
        id,
        workload,
        owner,
        container,
        labels: workload_labels(&meta),
        image: None,
        scanned_at: None,
        scanner_version: String::new(),
        findings: Vec::new(),
        passed_checks: 0,
        components: None,
        packages: Vec::new(),
        summary_mismatch: false,
        mapped_severities: 0,
    };
    let mut cosmetic = Cosmetic::default();
    if let Err((field, message)) = fill_body(&mut report, body, body_path, &mut cosmetic) {
        err.field = field;
        err.message = message;
        return Err(err);
    }
    cosmetic.warn(&obj.origin);
    Ok(Parsed::Report(Box::new(report)))
}

fn ignored_reason(kind: &str) -> String {
    if kind == "ClusterComplianceDetailReport" {
        "legacy kind ClusterComplianceDetailReport (no CRD since trivy-operator v0.15); \
         its results are in ClusterComplianceReport"
            .into()
    } else {
        format!("not a Trivy Operator report (kind {kind})")
    }
}

fn body_path(kind: ReportKind) -> &'static str {
    if kind == ReportKind::ClusterComplianceReport {
        "status."
    } else {
        "report."
    }
}

fn infer_kind(env: &Envelope, hint: Option<ReportKind>) -> Option<ReportKind> {
    let by_content = if env.vulnerabilities {
        Some(ReportKind::VulnerabilityReport)
    } else if env.secrets {
        Some(ReportKind::ExposedSecretReport)
    } else if env.components {
        Some(ReportKind::SbomReport)
    } else if env.detail_report || env.summary_report {
        Some(ReportKind::ClusterComplianceReport)
    } else if env.checks || env.pod_checks || env.container_checks {
        Some(ReportKind::ConfigAuditReport)
    } else {
        None
    };
    // The folder refines the content (checks are config audit, RBAC or infra).
    let checks_body = |k: ReportKind| {
        matches!(
            k.family(),
            Family::ConfigAudit | Family::Rbac | Family::Infra
        )
    };
    match (by_content, hint) {
        (Some(c), Some(h)) if c.family() == h.family() || (checks_body(c) && checks_body(h)) => {
            Some(h)
        }
        (Some(c), _) => Some(c),
        (None, _) => None,
    }
}

fn report_id(kind: ReportKind, meta: &Metadata, obj: &RawObject) -> ReportId {
    let namespace = if kind.is_cluster_scoped() {
        String::new()
    } else {
        meta.namespace
            .clone()
            .or_else(|| label(meta, "resource.namespace").cloned())
            .unwrap_or_default()
    };
    let name = meta
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| obj.name_hint.clone())
        .unwrap_or_else(|| {
            // Without a name, the object's own owner labels are the most stable identity.
            let parts: Vec<&str> = ["resource.kind", "resource.name", "container.name"]
                .iter()
                .filter_map(|k| label(meta, k).map(String::as_str))
                .collect();
            if parts.is_empty() {
                format!("unnamed@{}", obj.origin)
            } else {
                parts.join("-").to_ascii_lowercase()
            }
        });
    ReportId {
        kind,
        namespace,
        name,
    }
}

fn workload_of(kind: ReportKind, meta: &Metadata, id: &ReportId) -> WorkloadKey {
    let ns = &id.namespace;
    let owner = meta
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| meta.owner_references.first());
    if let Some(o) = owner {
        return top_controller(ns, &o.kind, &o.name);
    }
    if let Some((k, n)) = resource_labels(meta) {
        return top_controller(ns, k, n);
    }
    // Alternate storage names files `<Kind>-<name>.json`.
    if let Some((k, n)) = id.name.split_once('-')
        && is_resource_kind(k)
    {
        return top_controller(ns, k, n);
    }
    WorkloadKey {
        namespace: ns.clone(),
        kind: kind.as_str().to_owned(),
        name: id.name.clone(),
    }
}

fn direct_owner(meta: &Metadata) -> Option<(String, String)> {
    let owner = meta
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| meta.owner_references.first());
    if let Some(o) = owner {
        return Some((o.kind.clone(), o.name.clone()));
    }
    let (kind, name) = resource_labels(meta)?;
    Some((kind.to_owned(), name.to_owned()))
}

/// A label the operator writes, `trivy-operator.<suffix>`, or the same label as
/// starboard (its predecessor) wrote it, `starboard.<suffix>`.
fn label<'m>(meta: &'m Metadata, suffix: &str) -> Option<&'m String> {
    ["trivy-operator.", "starboard."]
        .iter()
        .find_map(|p| meta.labels.get(&format!("{p}{suffix}")))
}

/// Labels trivy-operator (or starboard) writes on every report for its own bookkeeping;
/// whatever else a report carries was copied from the workload (`reportResourceLabels`)
/// or added by the user (`additionalReportLabels`).
const BOOKKEEPING_PREFIXES: [&str; 2] = ["trivy-operator.", "starboard."];
const BOOKKEEPING_KEYS: [&str; 6] = [
    "resource-spec-hash",
    "plugin-config-hash",
    "resource-image-id",
    "reused-report",
    "vulnerabilityReport.scanner",
    "node-info.collector",
];

/// The report's labels a mapping template may read (`workload_label:<key>`).
fn workload_labels(meta: &Metadata) -> std::collections::BTreeMap<String, String> {
    meta.labels
        .iter()
        .filter(|(k, v)| {
            let bookkeeping = BOOKKEEPING_PREFIXES.iter().any(|p| k.starts_with(p))
                || BOOKKEEPING_KEYS.contains(&k.as_str())
                // The operator marks its own objects; a workload's own value is kept.
                || (k.as_str() == "app.kubernetes.io/managed-by" && v.as_str() == "trivy-operator");
            !bookkeeping
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The scanned resource's kind and name from the labels. Long names move from the label
/// to an annotation (a name-hash label instead).
fn resource_labels(meta: &Metadata) -> Option<(&str, &str)> {
    let kind = label(meta, "resource.kind")?;
    let name = label(meta, "resource.name").or_else(|| {
        ["trivy-operator.", "starboard."]
            .iter()
            .find_map(|p| meta.annotations.get(&format!("{p}resource.name")))
    })?;
    Some((kind, name))
}

fn is_resource_kind(k: &str) -> bool {
    matches!(
        k,
        "Pod"
            | "ReplicaSet"
            | "ReplicationController"
            | "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
            | "CronJob"
            | "Role"
            | "ClusterRole"
            | "Node"
            | "ConfigMap"
            | "Service"
            | "Ingress"
            | "NetworkPolicy"
            | "ResourceQuota"
            | "LimitRange"
    )
}

pub(super) type FieldError = (Option<String>, String);

/// Deserializes `json` and reports the failing field path, prefixed by `prefix`.
pub(super) fn deserialize_at<'a, T: Deserialize<'a>>(
    json: &'a [u8],
    prefix: &str,
) -> Result<T, FieldError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.trim_end_matches('.'), path.as_str()) {
            (p, ".") => (!p.is_empty()).then(|| p.to_owned()),
            ("", p) => Some(p.to_owned()),
            (pre, p) => Some(format!("{pre}.{p}")),
        };
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            // The position is within this object, which is all that locates a typo.
            format!("invalid JSON in this object: {inner}")
        } else {
            strip_position(&inner.to_string())
        };
        (field, message)
    })
}

/// serde_json appends " at line 1 column 345" relative to the object, which is
/// meaningless to a reader of the file; the field path says where instead.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Cosmetic fields that had the wrong type, by path: read as absent, and warned about.
#[derive(Default)]
pub(super) struct Cosmetic(Vec<String>);

impl Cosmetic {
    pub(super) fn get<T>(
        &mut self,
        mut field: crd::Lenient<T>,
        path: impl FnOnce() -> String,
    ) -> Option<T> {
        if field.wrong {
            self.0.push(path());
        }
        field.take()
    }

    pub(super) fn text(
        &mut self,
        field: crd::Lenient<String>,
        path: impl FnOnce() -> String,
    ) -> String {
        self.get(field, path).unwrap_or_default()
    }

    pub(super) fn scalar(
        &mut self,
        field: crd::Lenient<crd::Scalar>,
        path: impl FnOnce() -> String,
    ) -> Option<String> {
        self.get(field, path).and_then(|s| s.0)
    }

    /// One wrong-typed title must not cost the findings; it is still worth knowing.
    pub(super) fn warn(&self, origin: &Origin) {
        if !self.0.is_empty() {
            tracing::warn!(
                "{origin}: {} cosmetic field(s) of the wrong type read as absent: {}",
                self.0.len(),
                self.0.join(", ")
            );
        }
    }
}

fn fill_body(
    r: &mut Report,
    body: &RawValue,
    prefix: &str,
    cosmetic: &mut Cosmetic,
) -> Result<(), FieldError> {
    let json = body.get().as_bytes();
    let family = r.id.kind.family();
    let c = cosmetic;
    if family == Family::Compliance {
        let b: crd::ComplianceStatus = deserialize_at(json, prefix)?;
        return compliance_findings(r, b, prefix, c);
    }
    let b: crd::ReportBody = deserialize_at(json, prefix)?;
    let crd::ReportBody {
        update_timestamp,
        scanner,
        registry,
        artifact,
        summary,
        vulnerabilities,
        secrets,
        checks,
        pod_checks,
        container_checks,
        components,
    } = b;
    r.scanned_at = timestamp(
        c.scalar(update_timestamp, || format!("{prefix}updateTimestamp"))
            .as_deref(),
    );
    r.scanner_version = c
        .get(scanner, || format!("{prefix}scanner"))
        .and_then(|s| c.get(s.version, || format!("{prefix}scanner.version")))
        .unwrap_or_default();
    let summary = c.get(summary, || format!("{prefix}summary"));
    if family.is_image() {
        r.image = Some(image(registry.as_ref(), artifact.as_ref(), prefix)?);
    }
    match family {
        Family::Vulnerability => {
            for (i, v) in vulnerabilities.into_iter().enumerate() {
                let at = |f: &str| format!("{prefix}vulnerabilities[{i}].{f}");
                let mut f = Finding::new(v.vulnerability_id, severity(r, v.severity.as_deref()));
                f.package = v.resource;
                f.installed_version = v.installed_version.unwrap_or_default();
                f.fixed_version = c.text(v.fixed_version, || at("fixedVersion"));
                // packagePath is the more specific location (a jar inside the image).
                f.path = v
                    .package_path
                    .filter(|p| !p.is_empty())
                    .or(v.target)
                    .unwrap_or_default();
                f.score = c.get(v.score, || at("score")).filter(|s| s.is_finite());
                f.title = c.text(v.title, || at("title"));
                f.primary_link = c.text(v.primary_link, || at("primaryLink"));
                f.links = c.get(v.links, || at("links")).unwrap_or_default();
                f.published = c
                    .scalar(v.published_date, || at("publishedDate"))
                    .unwrap_or_default();
                f.description = c.text(v.description, || at("description"));
                r.findings.push(f);
            }
        }
        Family::Secret => {
            for (i, s) in secrets.into_iter().enumerate() {
                let at = |f: &str| format!("{prefix}secrets[{i}].{f}");
                let mut f = Finding::new(s.rule_id, severity(r, s.severity.as_deref()));
                f.path = s.target.unwrap_or_default();
                f.title = c.text(s.title, || at("title"));
                f.package = c.text(s.category, || at("category"));
                f.detail = s.matched.unwrap_or_default();
                r.findings.push(f);
            }
        }
        Family::ConfigAudit | Family::Rbac | Family::Infra => {
            // Starboard's podChecks / containerChecks are read only without `checks`:
            // later starboard versions wrote the same checks in both.
            let mut all: Vec<(String, String, crd::Check)> = Vec::new();
            if checks.is_empty() {
                for (i, ch) in pod_checks.into_iter().enumerate() {
                    all.push((format!("{prefix}podChecks[{i}]"), String::new(), ch));
                }
                for (container, list) in container_checks {
                    for (i, ch) in list.into_iter().enumerate() {
                        let path = format!("{prefix}containerChecks.{container}[{i}]");
                        all.push((path, container.clone(), ch));
                    }
                }
            } else {
                for (i, ch) in checks.into_iter().enumerate() {
                    all.push((format!("{prefix}checks[{i}]"), String::new(), ch));
                }
            }
            for (path, container, ch) in all {
                if ch.success == Some(true) {
                    r.passed_checks += 1;
                    continue;
                }
                let id = ch.check_id.unwrap_or_default();
                let title = ch.title.unwrap_or_default();
                if id.is_empty() && title.is_empty() {
                    return Err((
                        Some(path),
                        "a failing check has neither `checkID` nor `title`, so it cannot be \
                         identified"
                            .into(),
                    ));
                }
                let at = |f: &str| format!("{path}.{f}");
                let mut f = Finding::new(id, severity(r, ch.severity.as_deref()));
                f.title = title;
                f.description = c.text(ch.description, || at("description"));
                f.package = c.text(ch.category, || at("category"));
                f.messages = c.get(ch.messages, || at("messages")).unwrap_or_default();
                if let Some(m) = c
                    .get(ch.message, || at("message"))
                    .filter(|m| !m.is_empty())
                {
                    f.messages.push(m);
                }
                f.remediation = c.text(ch.remediation, || at("remediation"));
                // A container check is that container's: it names the finding's location.
                if !container.is_empty() {
                    f.path = format!("container {container}");
                }
                r.findings.push(f);
            }
        }
        Family::Sbom => {
            let listed = components.as_ref().map(|c| c.components.len() as u64);
            r.components = listed.or(summary.as_ref().and_then(|s| s.components));
            if let Some(bom) = &components {
                r.packages =
                    super::ci::bom_packages(&bom.components, &format!("{prefix}components."))?;
            }
            return Ok(());
        }
        Family::Compliance => {}
    }
    r.summary_mismatch = summary_disagrees(summary.as_ref(), r);
    Ok(())
}

/// Detail results name each failing check and resource; a summary only counts per control.
fn compliance_findings(
    r: &mut Report,
    b: crd::ComplianceStatus,
    prefix: &str,
    c: &mut Cosmetic,
) -> Result<(), FieldError> {
    let crd::ComplianceStatus {
        update_timestamp,
        summary_report,
        detail_report,
        control_check,
        summary,
        total_counts,
    } = b;
    r.scanned_at = timestamp(
        c.scalar(update_timestamp, || format!("{prefix}updateTimestamp"))
            .as_deref(),
    );
    let claimed_fail = match c
        .get(summary, || format!("{prefix}summary"))
        .and_then(|s| s.fail)
    {
        Some(n) => Some((n, "summary.failCount")),
        None => c
            .get(total_counts, || format!("{prefix}totalCounts"))
            .and_then(|s| s.fail)
            .map(|n| (n, "totalCounts.failCount")),
    };
    let read_results =
        detail_report.is_some() || summary_report.is_some() || !control_check.is_empty();
    if let Some(detail) = detail_report {
        for (i, control) in detail.results.into_iter().enumerate() {
            let at = |f: &str| format!("{prefix}detailReport.results[{i}].{f}");
            let control_sev = control.severity.as_deref().filter(|s| !s.is_empty());
            let name = c.text(control.name, || at("name"));
            let description = c.text(control.description, || at("description"));
            let total = control.checks.len();
            let failing: Vec<(usize, crd::Check)> = control
                .checks
                .into_iter()
                .enumerate()
                .filter(|(_, ch)| ch.success != Some(true))
                .collect();
            r.passed_checks += (total - failing.len()) as u64;
            let status_fail = control
                .status
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("FAIL"));
            if failing.is_empty() && status_fail {
                let mut f = Finding::new(control.id.clone(), severity(r, control_sev));
                f.title = name.clone();
                f.description = description.clone();
                r.findings.push(f);
            }
            for (j, ch) in failing {
                let at = |f: &str| format!("{prefix}detailReport.results[{i}].checks[{j}].{f}");
                // The check's own rating first, the control's as a fallback (as DefectDojo
                // reads them): a CRITICAL check under a HIGH control is critical.
                let sev = ch
                    .severity
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .or(control_sev);
                let mut f = Finding::new(control.id.clone(), severity(r, sev));
                f.detail = ch.check_id.unwrap_or_default();
                f.path = ch.target.unwrap_or_default();
                f.title = name.clone();
                f.description = ch.title.unwrap_or_default();
                f.package = c.text(ch.category, || at("category"));
                f.messages = c.get(ch.messages, || at("messages")).unwrap_or_default();
                f.remediation = c.text(ch.remediation, || at("remediation"));
                r.findings.push(f);
            }
        }
    } else {
        // `summaryReport.controlCheck[].totalFail`, or starboard 0.15's draft
        // `controlCheck[].failTotal` directly under `status`.
        let (controls, base) = match summary_report {
            Some(s) => (s.control_check, "summaryReport.controlCheck"),
            None => (control_check, "controlCheck"),
        };
        for (i, ctl) in controls.into_iter().enumerate() {
            let fails = ctl.total_fail.or(ctl.fail_total).unwrap_or(0);
            if fails <= 0 {
                r.passed_checks += 1;
                continue;
            }
            let mut f = Finding::new(ctl.id, severity(r, ctl.severity.as_deref()));
            f.title = c.text(ctl.name, || format!("{prefix}{base}[{i}].name"));
            f.messages = vec![format!("{fails} failing")];
            r.findings.push(f);
        }
    }
    // The report says checks failed, but holds nothing we read them from: a schema this
    // version does not know. Storing it as clean would be a lie.
    if let Some((n, field)) = claimed_fail.filter(|(n, _)| *n > 0)
        && r.findings.is_empty()
    {
        let what = if read_results {
            "its control results list no failure"
        } else {
            "it has no `detailReport`, `summaryReport` or `controlCheck` to read them from"
        };
        return Err((
            Some(format!("{prefix}{field}")),
            format!(
                "the report claims {n} failed checks but {what}: an unknown schema, not read \
                 as clean"
            ),
        ));
    }
    Ok(())
}

fn severity(r: &mut Report, s: Option<&str>) -> Severity {
    let s = s.unwrap_or("");
    if !Severity::is_canonical(s) {
        r.mapped_severities += 1;
    }
    Severity::parse_lenient(s)
}

fn image(
    registry: Option<&crd::Registry>,
    artifact: Option<&crd::Artifact>,
    prefix: &str,
) -> Result<Image, FieldError> {
    let a = artifact.ok_or_else(|| {
        (
            Some(format!("{prefix}artifact")),
            "missing: the image cannot be identified".to_owned(),
        )
    })?;
    let repo = a.repository.as_deref().unwrap_or("");
    if repo.trim().is_empty() {
        return Err((
            Some(format!("{prefix}artifact.repository")),
            "missing or empty: the image cannot be identified".to_owned(),
        ));
    }
    let server = registry.and_then(|r| r.server.as_deref()).unwrap_or("");
    Ok(Image::new(
        server,
        repo,
        a.tag.as_deref(),
        a.digest.as_deref(),
    ))
}

/// RFC 3339, else absent: the timestamp orders scans and a malformed one must not fail
/// the report (`2021-1-1T10:10:10Z` occurs).
pub(super) fn timestamp(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn summary_disagrees(s: Option<&crd::Summary>, r: &Report) -> bool {
    let Some(s) = s else { return false };
    let c = r.counts();
    let pairs = [
        (s.critical, Severity::Critical),
        (s.high, Severity::High),
        (s.medium, Severity::Medium),
        (s.low, Severity::Low),
        (s.unknown, Severity::Unknown),
    ];
    pairs
        .iter()
        .any(|(claimed, sev)| claimed.is_some_and(|n| n != c.get(*sev) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Position;

    fn raw(json: &str) -> RawObject {
        RawObject {
            origin: Origin {
                file: "f.json".into(),
                document: None,
                position: Position::Index(2),
            },
            json: json.as_bytes().to_vec(),
            kind_hint: None,
            name_hint: None,
        }
    }

    fn report(json: &str) -> Report {
        match parse_object(&raw(json)) {
            Ok(Parsed::Report(r)) => *r,
            other => panic!("expected a report, got {other:?}"),
        }
    }

    const VULN: &str = r#"{"kind":"VulnerabilityReport","metadata":{"name":"replicaset-api-7cc565547-app","namespace":"shop",
      "labels":{"trivy-operator.container.name":"app","report-historical":true},
      "ownerReferences":[{"kind":"ReplicaSet","name":"api-7cc565547","controller":true}]},
      "report":{"updateTimestamp":"2026-10-01T10:00:00Z","registry":{"server":"index.docker.io"},
      "artifact":{"repository":"library/nginx","tag":"1.25"},
      "summary":{"criticalCount":5},
      "vulnerabilities":[{"vulnerabilityID":"CVE-1","resource":"libssl","installedVersion":"1.1","fixedVersion":"","severity":"CRITICAL","title":"t"},
                         {"vulnerabilityID":"CVE-1","resource":"libcrypto","installedVersion":"1.1","fixedVersion":"1.2","severity":"danger","score":7}]}}"#;

    #[test]
    fn vulnerability_report_normalizes() {
        let r = report(VULN);
        assert_eq!(r.workload.to_string(), "shop/Deployment/api");
        assert_eq!(r.container, "app");
        assert_eq!(r.findings.len(), 2);
        assert_eq!(r.findings[1].severity, Severity::High);
        assert_eq!(r.findings[1].score, Some(7.0));
        assert_eq!(r.mapped_severities, 1);
        assert!(r.summary_mismatch);
        let img = r.image.as_ref().expect("image");
        assert_eq!(img.key(), "docker.io/library/nginx:1.25");
    }

    #[test]
    fn wrong_type_names_object_and_field() {
        let json = VULN.replace(r#""severity":"danger""#, r#""severity":5"#);
        let err = parse_object(&raw(&json)).expect_err("must fail");
        assert_eq!(
            err.field.as_deref(),
            Some("report.vulnerabilities[1].severity")
        );
        let text = err.to_string();
        assert!(
            text.starts_with(
                "f.json item 2 (VulnerabilityReport shop/replicaset-api-7cc565547-app)"
            ),
            "{text}"
        );
        assert!(
            err.id.is_some(),
            "identity is known, so the store can keep the old content"
        );
    }

    #[test]
    fn missing_identity_field_is_named() {
        let json = VULN.replace(
            r#""vulnerabilityID":"CVE-1","resource":"libssl","#,
            r#""resource":"libssl","#,
        );
        let err = parse_object(&raw(&json)).expect_err("must fail");
        assert_eq!(err.field.as_deref(), Some("report.vulnerabilities[0]"));
        assert!(err.message.contains("vulnerabilityID"), "{}", err.message);
    }

    #[test]
    fn foreign_and_legacy_kinds_are_ignored() {
        assert!(matches!(
            parse_object(&raw(r#"{"kind":"Pod","metadata":{"name":"x"}}"#)),
            Ok(Parsed::Ignored { .. })
        ));
        assert!(matches!(
            parse_object(&raw(r#"{"kind":"ClusterComplianceDetailReport"}"#)),
            Ok(Parsed::Ignored { .. })
        ));
    }

    #[test]
    fn bare_body_is_read_with_hints() {
        let mut o = raw(r#"{"scanner":{"name":"Trivy"},"checks":null}"#);
        o.kind_hint = Some(ReportKind::RbacAssessmentReport);
        o.name_hint = Some("ClusterRole-admin".into());
        let Ok(Parsed::Report(r)) = parse_object(&o) else {
            panic!("report")
        };
        assert_eq!(r.id.kind, ReportKind::RbacAssessmentReport);
        assert_eq!(r.workload.to_string(), "ClusterRole/admin");
        assert!(r.findings.is_empty());
    }

    #[test]
    fn non_report_object_is_an_error() {
        let err = parse_object(&raw(r#"{"foo":"bar"}"#)).expect_err("must fail");
        assert!(err.message.contains("no `kind`"), "{}", err.message);
        let err = parse_object(&raw("[1,2]")).expect_err("must fail");
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    /// Shaped as starboard wrote them (`ConfigAuditResult` in starboard's v1alpha1 types:
    /// `podChecks []Check`, `containerChecks map[string][]Check`, `message` singular),
    /// labelled `starboard.resource.*`, without owner references.
    const STARBOARD_AUDIT: &str = r#"{"apiVersion":"aquasecurity.github.io/v1alpha1","kind":"ConfigAuditReport",
      "metadata":{"name":"replicaset-nginx-6d4cf56db6","namespace":"default",
        "labels":{"starboard.resource.kind":"ReplicaSet","starboard.resource.name":"nginx-6d4cf56db6",
                  "starboard.resource.namespace":"default"}},
      "report":{"updateTimestamp":"2021-05-20T12:38:10Z","scanner":{"name":"Polaris","vendor":"Fairwinds Ops","version":"3.2"},
        "summary":{"dangerCount":0,"passCount":1,"warningCount":3},
        "podChecks":[{"checkID":"hostIPCSet","message":"Host IPC is not configured","success":true,"severity":"error","category":"Security"},
                     {"checkID":"hostNetworkSet","message":"Host network is configured","success":false,"severity":"warning","category":"Networking"}],
        "containerChecks":{"db":[{"checkID":"cpuLimitsMissing","message":"CPU limits should be set","success":false,"severity":"warning","category":"Resources"}],
                           "web":[{"checkID":"cpuLimitsMissing","message":"CPU limits should be set","success":false,"severity":"warning","category":"Resources"}]}}}"#;

    #[test]
    fn starboard_pod_and_container_checks_are_read() {
        // Before: 0 findings, and the workload named after the report.
        let r = report(STARBOARD_AUDIT);
        assert_eq!(r.workload.to_string(), "default/Deployment/nginx");
        assert_eq!(
            r.owner,
            Some(("ReplicaSet".into(), "nginx-6d4cf56db6".into()))
        );
        assert_eq!(r.passed_checks, 1);
        let got: Vec<(&str, &str, Severity, &str)> = r
            .findings
            .iter()
            .map(|f| {
                (
                    f.id.as_str(),
                    f.path.as_str(),
                    f.severity,
                    f.messages[0].as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "hostNetworkSet",
                    "",
                    Severity::Medium,
                    "Host network is configured"
                ),
                (
                    "cpuLimitsMissing",
                    "container db",
                    Severity::Medium,
                    "CPU limits should be set"
                ),
                (
                    "cpuLimitsMissing",
                    "container web",
                    Severity::Medium,
                    "CPU limits should be set"
                ),
            ]
        );
        // One check in two containers is two findings.
        assert_ne!(
            r.findings[1].key(Family::ConfigAudit),
            r.findings[2].key(Family::ConfigAudit)
        );
        // Later starboard wrote `checks` and the same list again as `podChecks`: once.
        let both = STARBOARD_AUDIT.replace(
            r#""podChecks":"#,
            r#""checks":[{"checkID":"hostNetworkSet","success":false,"severity":"warning"}],"podChecks":"#,
        );
        let r = report(&both);
        assert_eq!(r.findings.len(), 1);
    }

    /// `reportResourceLabels` copies workload labels onto the report beside the
    /// operator's own; only the copied ones (and user-added ones) are kept.
    #[test]
    fn workload_labels_are_kept_without_the_operators_bookkeeping() {
        let json = r#"{"kind":"VulnerabilityReport","metadata":{"name":"replicaset-api-7cc565547-app","namespace":"shop",
          "labels":{"app.kubernetes.io/managed-by":"trivy-operator","app.kubernetes.io/part-of":"checkout",
                    "team":"payments","plugin-config-hash":"659b7b9c46","resource-spec-hash":"6d4cf56db6",
                    "trivy-operator.container.name":"app","trivy-operator.resource.kind":"ReplicaSet",
                    "trivy-operator.resource.name":"api-7cc565547","trivy-operator.resource.namespace":"shop",
                    "starboard.resource.kind":"ReplicaSet"}},
          "report":{"artifact":{"repository":"library/nginx","tag":"1.25"},"vulnerabilities":[]}}"#;
        let r = report(json);
        let got: Vec<(&str, &str)> = r
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("app.kubernetes.io/part-of", "checkout"),
                ("team", "payments")
            ]
        );
        // A workload's own managed-by (copied) is its label.
        let helm = json.replace(
            r#""app.kubernetes.io/managed-by":"trivy-operator""#,
            r#""app.kubernetes.io/managed-by":"Helm""#,
        );
        assert_eq!(report(&helm).labels["app.kubernetes.io/managed-by"], "Helm");
    }

    #[test]
    fn starboard_labels_name_the_workload_and_container() {
        let json = r#"{"kind":"VulnerabilityReport","metadata":{"name":"replicaset-api-7cc565547-app","namespace":"shop",
          "labels":{"starboard.resource.kind":"ReplicaSet","starboard.resource.name":"api-7cc565547",
                    "starboard.container.name":"app"}},
          "report":{"artifact":{"repository":"library/nginx","tag":"1.25"},"vulnerabilities":[]}}"#;
        let r = report(json);
        assert_eq!(r.workload.to_string(), "shop/Deployment/api");
        assert_eq!(r.container, "app");
    }

    /// status as starboard 0.15 wrote it (docs/crds/clustercompliance-report.md of
    /// aquasecurity/starboard, trimmed to three controls).
    const STARBOARD_COMPLIANCE: &str = r#"{"kind":"ClusterComplianceReport","metadata":{"name":"nsa"},
      "status":{"controlCheck":[
        {"description":"Controls whether Pods can run privileged containers","failTotal":0,"id":"1.2","name":"Preventing privileged containers","passTotal":11,"severity":"HIGH"},
        {"description":"Control check restrictions escalation to root privileges","failTotal":6,"id":"1.7","name":"Restricts escalation to root privileges","passTotal":5,"severity":"MEDIUM"},
        {"description":"Check that container is not running as root","failTotal":9,"id":"1.0","name":"Non-root containers","passTotal":2,"severity":"MEDIUM"}],
        "summary":{"failCount":15,"passCount":18},"updateTimestamp":"2022-03-27T07:06:00Z"}}"#;

    #[test]
    fn starboard_draft_compliance_is_read() {
        let r = report(STARBOARD_COMPLIANCE);
        let got: Vec<(&str, &str)> = r
            .findings
            .iter()
            .map(|f| (f.id.as_str(), f.messages[0].as_str()))
            .collect();
        assert_eq!(got, [("1.7", "6 failing"), ("1.0", "9 failing")]);
        assert_eq!(r.passed_checks, 1);
    }

    #[test]
    fn claimed_failures_without_results_are_not_clean() {
        // Before: stored with 0 findings, silently.
        let json = r#"{"kind":"ClusterComplianceReport","metadata":{"name":"nsa"},
          "status":{"summary":{"failCount":33,"passCount":113},"updateTimestamp":"2022-03-27T07:06:00Z"}}"#;
        let err = parse_object(&raw(json)).expect_err("must not be read as clean");
        assert_eq!(err.field.as_deref(), Some("status.summary.failCount"));
        assert!(
            err.message
                .starts_with("the report claims 33 failed checks but it has no"),
            "{}",
            err.message
        );
        assert!(err.id.is_some(), "the previous content is kept");
        // Nothing claimed, nothing read: an honest empty report.
        let json = json.replace("33", "0");
        assert!(report(&json).findings.is_empty());
    }

    #[test]
    fn a_cosmetic_field_of_the_wrong_type_costs_nothing_else() {
        // `scanner.version` as a YAML mapping, a title as a number, links as a string,
        // summary counts as text: the report and its findings stay.
        let json = VULN
            .replace(
                r#""registry":"#,
                r#""scanner":{"name":"Trivy","version":{"major":0,"minor":50}},"registry":"#,
            )
            .replace(
                r#""title":"t""#,
                r#""title":7,"links":"x","description":["a"]"#,
            )
            .replace(r#""criticalCount":5"#, r#""criticalCount":"five""#);
        let r = report(&json);
        assert_eq!(r.findings.len(), 2);
        assert_eq!(r.scanner_version, "");
        assert_eq!(r.findings[0].title, "");
        assert!(r.findings[0].links.is_empty());
        assert_eq!(r.findings[0].severity, Severity::Critical);
        // Identity and severity stay strict.
        let json = VULN.replace(r#""resource":"libssl""#, r#""resource":{"name":"libssl"}"#);
        let err = parse_object(&raw(&json)).expect_err("identity is strict");
        assert_eq!(
            err.field.as_deref(),
            Some("report.vulnerabilities[0].resource")
        );
    }
}
