//! The normalized model every source produces and every output consumes.
//!
//! Nothing here knows about the CRD shapes (see `trivy`) or about SQLite (see `store`):
//! a `Report` is one report object reduced to its identities and findings.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Severity levels in descending order of importance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Unknown,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Unknown,
    ];

    /// Maps any severity string Trivy ever wrote to a level; never fails, so no finding is dropped.
    /// `danger`/`warning` are the pre-2022 config-audit levels (Polaris era).
    pub fn parse_lenient(s: &str) -> Severity {
        match s.trim().to_ascii_uppercase().as_str() {
            "CRITICAL" => Severity::Critical,
            "HIGH" | "DANGER" => Severity::High,
            "MEDIUM" | "WARNING" | "MODERATE" => Severity::Medium,
            "LOW" | "NEGLIGIBLE" => Severity::Low,
            _ => Severity::Unknown,
        }
    }

    /// True when `s` is one of the five levels exactly (ignoring case).
    pub fn is_canonical(s: &str) -> bool {
        matches!(
            s.trim().to_ascii_uppercase().as_str(),
            "CRITICAL" | "HIGH" | "MEDIUM" | "LOW" | "UNKNOWN"
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
            Severity::Unknown => "UNKNOWN",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts per severity, indexed by `Severity::index`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeverityCounts(pub [u64; 5]);

impl SeverityCounts {
    pub fn add(&mut self, s: Severity) {
        self.0[s.index()] += 1;
    }
    pub fn get(&self, s: Severity) -> u64 {
        self.0[s.index()]
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    pub fn merge(&mut self, other: &SeverityCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
}

impl Serialize for SeverityCounts {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = ser.serialize_map(Some(6))?;
        for s in Severity::ALL {
            m.serialize_entry(&s.as_str().to_ascii_lowercase(), &self.get(s))?;
        }
        m.serialize_entry("total", &self.total())?;
        m.end()
    }
}

/// The twelve report kinds of `aquasecurity.github.io/v1alpha1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReportKind {
    VulnerabilityReport,
    ClusterVulnerabilityReport,
    ConfigAuditReport,
    ClusterConfigAuditReport,
    ExposedSecretReport,
    RbacAssessmentReport,
    ClusterRbacAssessmentReport,
    InfraAssessmentReport,
    ClusterInfraAssessmentReport,
    ClusterComplianceReport,
    SbomReport,
    ClusterSbomReport,
}

impl ReportKind {
    pub const ALL: [ReportKind; 12] = [
        ReportKind::VulnerabilityReport,
        ReportKind::ClusterVulnerabilityReport,
        ReportKind::ConfigAuditReport,
        ReportKind::ClusterConfigAuditReport,
        ReportKind::ExposedSecretReport,
        ReportKind::RbacAssessmentReport,
        ReportKind::ClusterRbacAssessmentReport,
        ReportKind::InfraAssessmentReport,
        ReportKind::ClusterInfraAssessmentReport,
        ReportKind::ClusterComplianceReport,
        ReportKind::SbomReport,
        ReportKind::ClusterSbomReport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::VulnerabilityReport => "VulnerabilityReport",
            ReportKind::ClusterVulnerabilityReport => "ClusterVulnerabilityReport",
            ReportKind::ConfigAuditReport => "ConfigAuditReport",
            ReportKind::ClusterConfigAuditReport => "ClusterConfigAuditReport",
            ReportKind::ExposedSecretReport => "ExposedSecretReport",
            ReportKind::RbacAssessmentReport => "RbacAssessmentReport",
            ReportKind::ClusterRbacAssessmentReport => "ClusterRbacAssessmentReport",
            ReportKind::InfraAssessmentReport => "InfraAssessmentReport",
            ReportKind::ClusterInfraAssessmentReport => "ClusterInfraAssessmentReport",
            ReportKind::ClusterComplianceReport => "ClusterComplianceReport",
            ReportKind::SbomReport => "SbomReport",
            ReportKind::ClusterSbomReport => "ClusterSbomReport",
        }
    }

    pub fn from_kind(kind: &str) -> Option<ReportKind> {
        ReportKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// Lower-case plural as used in CRD names (`vulnerabilityreports`).
    pub fn plural(self) -> String {
        format!("{}s", self.as_str().to_ascii_lowercase())
    }

    pub fn from_plural(plural: &str) -> Option<ReportKind> {
        let p = plural.split('.').next().unwrap_or(plural);
        ReportKind::ALL.into_iter().find(|k| k.plural() == p)
    }

    pub fn is_cluster_scoped(self) -> bool {
        self.as_str().starts_with("Cluster")
    }

    pub fn family(self) -> Family {
        match self {
            ReportKind::VulnerabilityReport | ReportKind::ClusterVulnerabilityReport => {
                Family::Vulnerability
            }
            ReportKind::ExposedSecretReport => Family::Secret,
            ReportKind::ConfigAuditReport | ReportKind::ClusterConfigAuditReport => {
                Family::ConfigAudit
            }
            ReportKind::RbacAssessmentReport | ReportKind::ClusterRbacAssessmentReport => {
                Family::Rbac
            }
            ReportKind::InfraAssessmentReport | ReportKind::ClusterInfraAssessmentReport => {
                Family::Infra
            }
            ReportKind::ClusterComplianceReport => Family::Compliance,
            ReportKind::SbomReport | ReportKind::ClusterSbomReport => Family::Sbom,
        }
    }
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a report's findings are about; namespaced and cluster kinds share a family.
/// One DefectDojo test type per family (see `dojo::format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Vulnerability,
    Secret,
    ConfigAudit,
    Rbac,
    Infra,
    Compliance,
    Sbom,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Vulnerability,
        Family::Secret,
        Family::ConfigAudit,
        Family::Rbac,
        Family::Infra,
        Family::Compliance,
        Family::Sbom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Vulnerability => "vulnerability",
            Family::Secret => "secret",
            Family::ConfigAudit => "config-audit",
            Family::Rbac => "rbac",
            Family::Infra => "infra",
            Family::Compliance => "compliance",
            Family::Sbom => "sbom",
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Image families hold findings of an image; the others hold findings of a resource.
    pub fn is_image(self) -> bool {
        matches!(self, Family::Vulnerability | Family::Secret | Family::Sbom)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container image as one content: `registry/repository@digest` when pinned,
/// `registry/repository:tag` when the report carried no usable digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Image {
    /// Normalized registry host (`docker.io` for Docker Hub).
    pub registry: String,
    /// Normalized repository (`library/nginx` for Docker Hub official images).
    pub repository: String,
    pub tag: Option<String>,
    /// `algo:hex`, lower case; `None` when absent or malformed.
    pub digest: Option<String>,
}

impl Image {
    pub fn new(registry: &str, repository: &str, tag: Option<&str>, digest: Option<&str>) -> Image {
        let registry = normalize_registry(registry);
        let repository = normalize_repository(&registry, repository);
        let tag = tag
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let digest = digest.and_then(normalize_digest);
        Image {
            registry,
            repository,
            tag,
            digest,
        }
    }

    pub fn pinned(&self) -> bool {
        self.digest.is_some()
    }

    /// `registry/repository`: the unit of history, alerts and DefectDojo tests.
    pub fn repo_key(&self) -> String {
        if self.registry.is_empty() {
            self.repository.clone()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The deduplication key: by digest when pinned, by tag otherwise.
    pub fn key(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{}@{}", self.repo_key(), d),
            (None, Some(t)) => format!("{}:{}", self.repo_key(), t),
            (None, None) => self.repo_key(),
        }
    }
}

const DOCKER_HUB: &str = "docker.io";

fn normalize_registry(server: &str) -> String {
    let s = server.trim().trim_end_matches('/').to_ascii_lowercase();
    match s.as_str() {
        ""
        | "docker.io"
        | "index.docker.io"
        | "registry-1.docker.io"
        | "registry.hub.docker.com" => DOCKER_HUB.to_owned(),
        _ => s,
    }
}

fn normalize_repository(registry: &str, repository: &str) -> String {
    let r = repository.trim().trim_matches('/');
    if registry == DOCKER_HUB && !r.is_empty() && !r.contains('/') {
        format!("library/{r}")
    } else {
        r.to_owned()
    }
}

/// Accepts `algo:hex` with a known algorithm and the right length; anything else is not a digest.
fn normalize_digest(d: &str) -> Option<String> {
    let d = d.trim().to_ascii_lowercase();
    let (algo, hex) = d.split_once(':')?;
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(d)
}

/// The workload a report belongs to: namespace + top controller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct WorkloadKey {
    /// Empty for cluster-scoped resources.
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

impl fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
        }
    }
}

/// Identity of a report object: rollouts create new report objects, so this is not the workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ReportId {
    pub kind: ReportKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// One finding of any family, normalized. Fields that do not apply stay empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Vulnerability ID, check ID, secret rule ID, or compliance control ID.
    pub id: String,
    pub severity: Severity,
    pub title: String,
    /// Package (vulnerabilities), secret category, check category.
    pub package: String,
    pub installed_version: String,
    pub fixed_version: String,
    /// Package path or scan target (vulnerabilities), file (secrets), check target (compliance).
    pub path: String,
    pub score: Option<f64>,
    pub primary_link: String,
    pub links: Vec<String>,
    pub description: String,
    pub remediation: String,
    pub messages: Vec<String>,
    /// Masked secret match, or compliance check ID.
    pub detail: String,
    pub published: String,
}

impl Finding {
    pub fn new(id: impl Into<String>, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            severity,
            title: String::new(),
            package: String::new(),
            installed_version: String::new(),
            fixed_version: String::new(),
            path: String::new(),
            score: None,
            primary_link: String::new(),
            links: Vec::new(),
            description: String::new(),
            remediation: String::new(),
            messages: Vec::new(),
            detail: String::new(),
            published: String::new(),
        }
    }

    /// The identity of a finding within its subject (DESIGN §3). Parts are joined with a
    /// separator that cannot occur in them unescaped, so two keys never collide.
    pub fn key(&self, family: Family) -> String {
        let parts: Vec<&str> = match family {
            Family::Vulnerability => {
                vec![&self.id, &self.package, &self.installed_version, &self.path]
            }
            Family::Secret => vec![&self.path, &self.id, &self.detail],
            Family::Compliance => vec![&self.id, &self.detail, &self.path],
            Family::ConfigAudit | Family::Rbac | Family::Infra | Family::Sbom => {
                let mut parts: Vec<&str> = if self.id.is_empty() {
                    vec!["title", self.title.as_str()]
                } else {
                    vec![&self.id]
                };
                // Only starboard's per-container checks set a path: the same check
                // failing in two containers is two findings. Keys without one are unchanged.
                if !self.path.is_empty() {
                    parts.push(&self.path);
                }
                parts
            }
        };
        let mut out = String::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push('\u{1f}');
            }
            out.push_str(&p.replace('\u{1f}', " "));
        }
        out
    }

    pub fn fixable(&self) -> bool {
        !self.fixed_version.is_empty()
    }
}

/// One report object, normalized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub id: ReportId,
    pub workload: WorkloadKey,
    /// The direct owner as the operator recorded it (a ReplicaSet, a Job, a Pod): the
    /// controller reads its Pods to recover a missing digest.
    pub owner: Option<(String, String)>,
    pub container: String,
    /// The report's own labels without the operator's bookkeeping (`trivy-operator.*`,
    /// `starboard.*`, hashes): what `reportResourceLabels` copied from the workload.
    /// Mapping templates read them as `workload_label:<key>`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Set for vulnerability, secret and SBOM reports.
    #[serde(skip)]
    pub image: Option<Image>,
    pub scanned_at: Option<DateTime<Utc>>,
    pub scanner_version: String,
    pub findings: Vec<Finding>,
    /// Passing checks the report listed (not findings).
    pub passed_checks: u64,
    /// Components in an SBOM report.
    pub components: Option<u64>,
    /// The packages an SBOM report listed (empty for other kinds): the inventory.
    #[serde(skip)]
    pub packages: Vec<Package>,
    /// The report's own summary disagreed with its lists (we always recount).
    pub summary_mismatch: bool,
    /// Severities that were not one of the five levels and were mapped.
    pub mapped_severities: u64,
}

impl Report {
    pub fn family(&self) -> Family {
        self.id.kind.family()
    }

    /// What the findings are about: the image repository for image families, the
    /// resource for checks, the compliance report for compliance.
    pub fn subject(&self) -> Subject {
        match (&self.image, self.family()) {
            (Some(img), f) if f.is_image() => Subject {
                family: f,
                key: img.repo_key(),
            },
            (_, Family::Compliance) => Subject {
                family: Family::Compliance,
                key: format!("compliance/{}", self.id.name),
            },
            (_, f) => Subject {
                family: f,
                key: self.workload.to_string(),
            },
        }
    }

    /// What was scanned: one image content or one resource. Reports of the same target
    /// carry the same findings; the newest scan wins.
    pub fn target_key(&self) -> String {
        match &self.image {
            Some(img) => img.key(),
            None => self.subject().key,
        }
    }

    pub fn counts(&self) -> SeverityCounts {
        let mut c = SeverityCounts::default();
        for f in &self.findings {
            c.add(f.severity);
        }
        c
    }
}

/// One package content as an SBOM lists it: stored once however many images hold it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// The package URL when the SBOM gave one (`pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1`).
    pub purl: String,
    /// The ecosystem: the purl type (`maven`, `deb`, `npm`) or Trivy's package type.
    pub ecosystem: String,
}

/// Where a Trivy CLI result or SBOM came from: CI scans an image, not a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct CiScan {
    /// `ArtifactName`, or the SBOM's `metadata.component.name`.
    pub artifact: String,
    /// Pinned by a digest from `RepoDigests` (or the SBOM's), else by tag: unpinned.
    pub image: Image,
    /// `CreatedAt`, or the SBOM's `metadata.timestamp`.
    pub scanned_at: Option<DateTime<Utc>>,
    pub scanner_version: String,
    /// Vulnerabilities, secrets and the image's misconfigurations (config-audit), each
    /// with its family; keys as for reports.
    pub findings: Vec<(Family, Finding)>,
    /// Packages, when the file listed them (an SBOM); `None` leaves the image's
    /// inventory as it was.
    pub packages: Option<Vec<Package>>,
    /// Which of the families the file covered (it ran that scanner), so an absent
    /// finding of a covered family is a fixed one and nothing else is concluded.
    pub covered: Vec<Family>,
}

/// A namespace's labels and annotations: read by mapping templates and team routing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceMeta {
    pub name: String,
    /// The Namespace's UID, when known: `kube-system`'s identifies the cluster.
    pub uid: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// The unit of history and of DefectDojo tests: an image repository or a resource, per family.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Subject {
    pub family: Family,
    pub key: String,
}

/// A finding's stable id within its subject (family, image repository or resource,
/// finding key): sent to DefectDojo as `unique_id_from_tool`, and how its triage is
/// matched back to our findings.
pub fn finding_uid(family: Family, subject: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(family.as_str().as_bytes());
    h.update([0]);
    h.update(subject.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    format!("td-{}", &hex(&h.finalize())[..32])
}

/// Lower-case hex of a hash.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_forms_are_one_image() {
        let d = "sha256:".to_owned() + &"a".repeat(64);
        let a = Image::new("index.docker.io", "library/nginx", Some("1.25"), Some(&d));
        let b = Image::new("docker.io", "nginx", Some("latest"), Some(&d));
        let c = Image::new("", "nginx", None, Some(&d));
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key(), c.key());
        assert_eq!(a.repo_key(), "docker.io/library/nginx");
    }

    #[test]
    fn malformed_digest_falls_back_to_tag() {
        let img = Image::new("ghcr.io", "org/app", Some("v1"), Some("sha256:abc"));
        assert!(!img.pinned());
        assert_eq!(img.key(), "ghcr.io/org/app:v1");
        let img = Image::new("ghcr.io", "org/app", None, None);
        assert_eq!(img.key(), "ghcr.io/org/app");
    }

    #[test]
    fn legacy_and_unknown_severities_map() {
        assert_eq!(Severity::parse_lenient("danger"), Severity::High);
        assert_eq!(Severity::parse_lenient("warning"), Severity::Medium);
        assert_eq!(Severity::parse_lenient("critical"), Severity::Critical);
        assert_eq!(Severity::parse_lenient("whatever"), Severity::Unknown);
        assert_eq!(Severity::parse_lenient(""), Severity::Unknown);
    }

    #[test]
    fn vulnerability_key_separates_packages_and_paths() {
        let mut a = Finding::new("CVE-1", Severity::High);
        a.package = "libssl".into();
        a.installed_version = "1.1".into();
        let mut b = a.clone();
        b.package = "libcrypto".into();
        let mut c = a.clone();
        c.path = "/app/x.jar".into();
        let keys = [
            a.key(Family::Vulnerability),
            b.key(Family::Vulnerability),
            c.key(Family::Vulnerability),
        ];
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[0], keys[2]);
    }

    #[test]
    fn check_key_falls_back_to_title() {
        let mut a = Finding::new("", Severity::High);
        a.title = "Root file system".into();
        assert_eq!(a.key(Family::ConfigAudit), "title\u{1f}Root file system");
        let b = Finding::new("KSV014", Severity::High);
        assert_eq!(b.key(Family::ConfigAudit), "KSV014");
    }
}
