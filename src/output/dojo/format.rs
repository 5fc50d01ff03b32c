//! Our findings in DefectDojo's Generic Findings Import format.
//!
//! DefectDojo matches a reimported finding to a stored one by the legacy hash of
//! title + cwe + line + file_path + description (+ service). Those fields are built from
//! the finding's identity only, so they never change while the finding exists. Facts that
//! change (severity re-rated, a fix published, new workloads) go into fields outside the
//! hash and reach DefectDojo by PATCH, since a reimport never refreshes a matched finding.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Family, Finding, Severity};

/// The top-level `type` per family. DefectDojo makes it the test type
/// ("<type> Scan (Generic Findings Import)") and rejects a reimport whose type differs
/// from the test's with 400, so these strings must never change.
pub fn scan_type_name(family: Family) -> &'static str {
    match family {
        Family::Vulnerability => "Trivy Digest Vulnerabilities",
        Family::Secret => "Trivy Digest Exposed Secrets",
        Family::ConfigAudit => "Trivy Digest Config Audit",
        Family::Rbac => "Trivy Digest RBAC Assessment",
        Family::Infra => "Trivy Digest Infra Assessment",
        Family::Compliance => "Trivy Digest Compliance",
        Family::Sbom => "Trivy Digest SBOM",
    }
}

pub const SCAN_TYPE: &str = "Generic Findings Import";

/// DefectDojo's severity names; UNKNOWN becomes Info as in DefectDojo's own Trivy parser.
pub fn dojo_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "Critical",
        Severity::High => "High",
        Severity::Medium => "Medium",
        Severity::Low => "Low",
        Severity::Unknown => "Info",
    }
}

/// A finding as the Generic parser accepts it: only allowed keys (an unknown key is a 400).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenericFinding {
    // Hashed, stable.
    pub title: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file_path: Option<String>,
    // Stable, not hashed.
    pub unique_id_from_tool: String,
    pub vuln_id_from_tool: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub vulnerability_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub component_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub component_version: Option<String>,
    pub static_finding: bool,
    pub dynamic_finding: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub publish_date: Option<String>,
    // Volatile: refreshed by PATCH.
    #[serde(flatten)]
    pub volatile: Volatile,
}

/// The fields that may change while a finding stays the same finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volatile {
    pub severity: String,
    pub mitigation: String,
    pub impact: String,
    pub references: String,
    pub fix_available: bool,
    #[serde(default)]
    pub fix_version: Option<String>,
    #[serde(default)]
    pub cvssv3_score: Option<f64>,
}

impl Volatile {
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        crate::model::hex(&Sha256::digest(&json))[..32].to_owned()
    }
}

/// The file body: `{"type", "findings"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GenericFile {
    #[serde(rename = "type")]
    pub type_name: String,
    pub findings: Vec<GenericFinding>,
}

/// Where a finding runs, for the `impact` text.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// `namespace/Kind/name` (container c).
    pub workloads: Vec<String>,
    /// `registry/repo@digest (tag)`.
    pub images: Vec<String>,
}

const MAX_LISTED: usize = 20;

fn list(out: &mut String, heading: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    out.push_str(&format!("{heading} ({}):\n", items.len()));
    for i in items.iter().take(MAX_LISTED) {
        out.push_str("- ");
        out.push_str(i);
        out.push('\n');
    }
    if items.len() > MAX_LISTED {
        out.push_str(&format!("- and {} more\n", items.len() - MAX_LISTED));
    }
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// `2023-03-01T00:00:00Z` → `2023-03-01`, the form DefectDojo's date field takes.
fn date_only(s: &str) -> Option<String> {
    let d = s.trim().get(..10)?;
    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .ok()
        .map(|_| d.to_owned())
}

fn avd_link(id: &str) -> Option<String> {
    // AVD-KSV-0014 and KSV014 both resolve to /misconfig/ksv014.
    let compact: String = id
        .trim_start_matches("AVD-")
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    let (prefix, num) = compact.split_at(compact.find(|c: char| c.is_ascii_digit())?);
    let n: u32 = num.parse().ok()?;
    matches!(prefix, "ksv" | "kcv" | "khv" | "avd")
        .then(|| format!("https://avd.aquasec.com/misconfig/{prefix}{n:03}"))
}

/// Builds the Generic finding for one stored finding. `first_title` is the finding's
/// title when it was first seen, frozen in the store: it keeps check titles readable
/// while a later rewording by Trivy cannot change the hash.
pub fn generic_finding(
    family: Family,
    subject: &str,
    key: &str,
    first_title: &str,
    f: &Finding,
    usage: &Usage,
) -> GenericFinding {
    let uid = crate::model::finding_uid(family, subject, key);
    let mut impact = String::new();
    let (title, description, file_path, mitigation, mut references);
    match family {
        Family::Vulnerability => {
            title = format!("{} {} {}", f.id, f.package, f.installed_version)
                .trim()
                .to_owned();
            description = match non_empty(&f.path) {
                Some(p) => format!(
                    "{} {} is affected by {} ({}).",
                    f.package, f.installed_version, f.id, p
                ),
                None => format!(
                    "{} {} is affected by {}.",
                    f.package, f.installed_version, f.id
                ),
            };
            file_path = non_empty(&f.path);
            mitigation = match non_empty(&f.fixed_version) {
                Some(v) => format!("Upgrade {} to {v}.", f.package),
                None => "No fixed version is available yet.".to_owned(),
            };
            if let Some(t) = non_empty(&f.title) {
                impact.push_str(&t);
                impact.push_str("\n\n");
            }
            if let Some(d) = non_empty(&f.description) {
                impact.push_str(&d);
                impact.push_str("\n\n");
            }
            references = non_empty(&f.primary_link).into_iter().collect::<Vec<_>>();
        }
        Family::Secret => {
            let what = non_empty(first_title).unwrap_or_else(|| f.id.clone());
            title = format!("Secret {what} in {}", f.path).trim().to_owned();
            description = format!(
                "Rule {} matched in {}: {}",
                f.id,
                if f.path.is_empty() {
                    "(unknown file)"
                } else {
                    &f.path
                },
                f.detail
            );
            file_path = non_empty(&f.path);
            mitigation =
                "Remove the secret from the image, rebuild it, and rotate the secret.".to_owned();
            if let Some(t) = non_empty(&f.title) {
                impact.push_str(&t);
                if let Some(c) = non_empty(&f.package) {
                    impact.push_str(&format!(" ({c})"));
                }
                impact.push_str("\n\n");
            }
            references = Vec::new();
        }
        Family::Compliance => {
            let head = match non_empty(&f.detail) {
                Some(check) => format!("{} {}", f.id, check),
                None => f.id.clone(),
            };
            title = match non_empty(first_title) {
                Some(t) => format!("{head} - {t}"),
                None => head,
            };
            description = match (non_empty(&f.detail), non_empty(&f.path)) {
                (Some(check), Some(t)) => {
                    format!("Control {} failed: check {check} on {t}.", f.id)
                }
                (Some(check), None) => format!("Control {} failed: check {check}.", f.id),
                (None, _) => format!("Control {} has failing checks.", f.id),
            };
            file_path = non_empty(&f.path);
            mitigation = non_empty(&f.remediation).unwrap_or_else(|| "See the control.".into());
            check_impact(&mut impact, f);
            references = avd_link(&f.detail).into_iter().collect();
        }
        Family::ConfigAudit | Family::Rbac | Family::Infra | Family::Sbom => {
            let id = non_empty(&f.id).unwrap_or_else(|| first_title.to_owned());
            title = match non_empty(first_title) {
                Some(t) if t != id => format!("{id} - {t}"),
                _ => id.clone(),
            };
            description = format!("Check {id} failed for {subject}.");
            file_path = None;
            mitigation = non_empty(&f.remediation).unwrap_or_else(|| "See the check.".into());
            check_impact(&mut impact, f);
            references = avd_link(&f.id).into_iter().collect();
        }
    }
    for l in &f.links {
        if !l.trim().is_empty() && !references.contains(l) {
            references.push(l.clone());
        }
    }
    list(&mut impact, "Images", &usage.images);
    list(&mut impact, "Workloads", &usage.workloads);
    let fix_version = (family == Family::Vulnerability)
        .then(|| non_empty(&f.fixed_version))
        .flatten();
    GenericFinding {
        title,
        description,
        file_path,
        unique_id_from_tool: uid,
        vuln_id_from_tool: non_empty(&f.id).unwrap_or_else(|| f.title.clone()),
        vulnerability_ids: if family == Family::Vulnerability {
            vec![f.id.clone()]
        } else {
            Vec::new()
        },
        component_name: (family == Family::Vulnerability)
            .then(|| non_empty(&f.package))
            .flatten(),
        component_version: (family == Family::Vulnerability)
            .then(|| non_empty(&f.installed_version))
            .flatten(),
        static_finding: true,
        dynamic_finding: false,
        publish_date: date_only(&f.published),
        volatile: Volatile {
            severity: dojo_severity(f.severity).to_owned(),
            mitigation,
            impact: impact.trim_end().to_owned(),
            references: references.join("\n"),
            fix_available: fix_version.is_some(),
            fix_version,
            cvssv3_score: f.score.filter(|s| (0.0..=10.0).contains(s)),
        },
    }
}

fn check_impact(impact: &mut String, f: &Finding) {
    if let Some(t) = non_empty(&f.title) {
        impact.push_str(&t);
        impact.push_str("\n\n");
    }
    if let Some(d) = non_empty(&f.description) {
        impact.push_str(&d);
        impact.push_str("\n\n");
    }
    for m in f.messages.iter().take(MAX_LISTED) {
        impact.push_str("- ");
        impact.push_str(m);
        impact.push('\n');
    }
    if f.messages.len() > MAX_LISTED {
        impact.push_str(&format!("- and {} more\n", f.messages.len() - MAX_LISTED));
    }
    if !f.messages.is_empty() {
        impact.push('\n');
    }
}

/// The legacy-hash fields, case-folded as DefectDojo title-cases titles on save.
pub fn hash_fields(g: &GenericFinding) -> (String, String, String) {
    (
        g.title.to_lowercase(),
        g.file_path.clone().unwrap_or_default(),
        g.description.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vuln() -> Finding {
        let mut f = Finding::new("CVE-2023-1", Severity::High);
        f.package = "openssl".into();
        f.installed_version = "3.0.2".into();
        f.title = "openssl: bad".into();
        f
    }

    #[test]
    fn hash_fields_do_not_move_with_volatile_facts() {
        let a = generic_finding(
            Family::Vulnerability,
            "docker.io/library/x",
            "k",
            "",
            &vuln(),
            &Usage::default(),
        );
        let mut v = vuln();
        v.severity = Severity::Critical;
        v.fixed_version = "3.0.3".into();
        v.score = Some(9.8);
        v.title = "openssl: worse".into();
        let usage = Usage {
            workloads: vec!["ns/Deployment/api".into()],
            images: vec![],
        };
        let b = generic_finding(
            Family::Vulnerability,
            "docker.io/library/x",
            "k",
            "",
            &v,
            &usage,
        );
        assert_eq!(hash_fields(&a), hash_fields(&b));
        assert_eq!(a.unique_id_from_tool, b.unique_id_from_tool);
        assert_ne!(a.volatile.hash(), b.volatile.hash());
        assert_eq!(b.volatile.severity, "Critical");
        assert_eq!(b.volatile.fix_version.as_deref(), Some("3.0.3"));
        assert!(b.volatile.impact.contains("ns/Deployment/api"));
        assert_eq!(a.title, "CVE-2023-1 openssl 3.0.2");
    }

    #[test]
    fn only_allowed_keys_are_written() {
        let mut check = Finding::new("KSV014", Severity::Low);
        check.title = "Root file system is not read-only (reworded)".into();
        let g = generic_finding(
            Family::ConfigAudit,
            "ns/Deployment/api",
            "KSV014",
            "Root file system is not read-only",
            &check,
            &Usage::default(),
        );
        assert_eq!(g.title, "KSV014 - Root file system is not read-only");
        let v = serde_json::to_value(&g).expect("json");
        let allowed = [
            "title",
            "description",
            "file_path",
            "unique_id_from_tool",
            "vuln_id_from_tool",
            "vulnerability_ids",
            "component_name",
            "component_version",
            "static_finding",
            "dynamic_finding",
            "publish_date",
            "severity",
            "mitigation",
            "impact",
            "references",
            "fix_available",
            "fix_version",
            "cvssv3_score",
        ];
        for k in v.as_object().expect("object").keys() {
            assert!(allowed.contains(&k.as_str()), "{k}");
        }
        assert_eq!(
            g.volatile.references,
            "https://avd.aquasec.com/misconfig/ksv014"
        );
    }

    #[test]
    fn type_names_are_frozen() {
        // Changing any of these breaks every existing test in DefectDojo (400 on reimport).
        assert_eq!(
            scan_type_name(Family::Vulnerability),
            "Trivy Digest Vulnerabilities"
        );
        assert_eq!(
            scan_type_name(Family::Secret),
            "Trivy Digest Exposed Secrets"
        );
        assert_eq!(
            scan_type_name(Family::ConfigAudit),
            "Trivy Digest Config Audit"
        );
        assert_eq!(scan_type_name(Family::Rbac), "Trivy Digest RBAC Assessment");
        assert_eq!(
            scan_type_name(Family::Infra),
            "Trivy Digest Infra Assessment"
        );
        assert_eq!(
            scan_type_name(Family::Compliance),
            "Trivy Digest Compliance"
        );
    }
}
