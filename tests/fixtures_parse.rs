//! Every fixture parses, or fails with the expected clear error.

use std::path::Path;

use trivy_digest::model::{Report, ReportKind, Severity};
use trivy_digest::source::files::{self, Input};
use trivy_digest::trivy::{Parsed, parse_object};

#[derive(Debug, Default)]
struct Outcome {
    reports: Vec<Report>,
    ignored: Vec<String>,
    not_ready: Vec<String>,
    errors: Vec<String>,
}

fn read(rel: &str) -> Outcome {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/trivy-operator")
        .join(rel);
    let (found, discover_errors) = files::discover(&[Input::Path(path)]);
    assert!(discover_errors.is_empty(), "{discover_errors:?}");
    let mut out = Outcome::default();
    for f in &found {
        let mut objects = Vec::new();
        let errs = files::read_file(f, &mut |o| objects.push(o), &mut |_| {});
        out.errors.extend(errs.iter().map(|e| e.to_string()));
        for o in objects {
            match parse_object(&o) {
                Ok(Parsed::Report(r)) => out.reports.push(*r),
                Ok(Parsed::Namespace(_)) => {}
                Ok(Parsed::Ignored { reason, .. }) => out.ignored.push(reason),
                Ok(Parsed::NotReady { reason, .. }) => out.not_ready.push(reason),
                // Operator fixtures are reports: none is a CI result.
                Ok(Parsed::Ci { origin, .. }) => {
                    out.errors.push(format!("{origin}: read as a CI result"))
                }
                Err(e) => out.errors.push(e.to_string()),
            }
        }
    }
    out
}

fn one(rel: &str) -> Report {
    let o = read(rel);
    assert!(o.errors.is_empty(), "{rel}: {:?}", o.errors);
    assert_eq!(o.reports.len(), 1, "{rel}");
    o.reports.into_iter().next().expect("one report")
}

#[test]
fn every_report_fixture_parses() {
    let expected: &[(&str, ReportKind, usize)] = &[
        (
            "aquasecurity-trivy-operator-pr769-bb1d5667/vulnerability-ttl.yaml",
            ReportKind::VulnerabilityReport,
            27,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0/vulnerability-ttl.yaml",
            ReportKind::VulnerabilityReport,
            1,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0/00-sbom-pod.yaml",
            ReportKind::ClusterSbomReport,
            0,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0/config-audit-ttl.yaml",
            ReportKind::ConfigAuditReport,
            1,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0/role-rbacassessment-expected.yaml",
            ReportKind::RbacAssessmentReport,
            1,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0/compliance-detail-status-expected.yaml",
            ReportKind::ClusterComplianceReport,
            8,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0/compliance-summary-status-expected.yaml",
            ReportKind::ClusterComplianceReport,
            1,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0-docs/vulnerability-report.md.block1.yaml",
            ReportKind::VulnerabilityReport,
            2,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0-docs/clustervulnerability-report.md.block1.yaml",
            ReportKind::ClusterVulnerabilityReport,
            0,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0-docs/infraassessment-report.md.block1.yaml",
            ReportKind::InfraAssessmentReport,
            0,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0-docs/sbom-report.md.block1.yaml",
            ReportKind::SbomReport,
            0,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0-docs/clustercompliance-report.md.block1.yaml",
            ReportKind::ClusterComplianceReport,
            0,
        ),
        (
            "aquasecurity-trivy-operator-v0.32.0-docs/clustercompliance-report.md.block2.yaml",
            ReportKind::ClusterComplianceReport,
            0,
        ),
        (
            "defectdojo-trivy_operator/vulnerabilityreport_many.json",
            ReportKind::VulnerabilityReport,
            41,
        ),
        (
            "defectdojo-trivy_operator/vulnerabilityreport_single_vuln.json",
            ReportKind::VulnerabilityReport,
            1,
        ),
        (
            "defectdojo-trivy_operator/vulnerabilityreport_no_vuln.json",
            ReportKind::VulnerabilityReport,
            0,
        ),
        (
            "defectdojo-trivy_operator/vulnerabilityreport_extended.json",
            ReportKind::VulnerabilityReport,
            5,
        ),
        (
            "defectdojo-trivy_operator/configauditreport_many.json",
            ReportKind::ConfigAuditReport,
            13,
        ),
        (
            "defectdojo-trivy_operator/configauditreport_single_vuln.json",
            ReportKind::ConfigAuditReport,
            1,
        ),
        (
            "defectdojo-trivy_operator/configauditreport_no_vuln.json",
            ReportKind::ConfigAuditReport,
            0,
        ),
        (
            "defectdojo-trivy_operator/configauditreport_with_remediation.json",
            ReportKind::ConfigAuditReport,
            2,
        ),
        (
            "defectdojo-trivy_operator/exposedsecretreport_many.json",
            ReportKind::ExposedSecretReport,
            2,
        ),
        (
            "defectdojo-trivy_operator/exposedsecretreport_no_vuln.json",
            ReportKind::ExposedSecretReport,
            0,
        ),
        (
            "defectdojo-trivy_operator/compliance_severity.json",
            ReportKind::ClusterComplianceReport,
            0,
        ),
        (
            "aquasecurity-starboard-docs/conftest.md.block6.json",
            ReportKind::ConfigAuditReport,
            2,
        ),
    ];
    for (rel, kind, findings) in expected {
        let r = one(rel);
        assert_eq!(r.id.kind, *kind, "{rel}");
        // The docs' compliance and infra samples have passing or summary-only content;
        // where we expect findings, the count is exact.
        if *findings > 0 {
            assert_eq!(r.findings.len(), *findings, "{rel}");
        }
    }
}

#[test]
fn containers_of_many_reports() {
    let o = read("defectdojo-trivy_operator/all_reports_in_dict.json");
    assert!(o.errors.is_empty(), "{:?}", o.errors);
    let mut kinds: Vec<_> = o.reports.iter().map(|r| r.id.kind).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ReportKind::VulnerabilityReport,
            ReportKind::ConfigAuditReport,
            ReportKind::ExposedSecretReport
        ]
    );
    let o = read("defectdojo-trivy_operator/findings_in_list.json");
    assert!(o.errors.is_empty());
    assert_eq!(o.reports.len(), 2);
}

#[test]
fn facts_the_fixtures_are_known_for() {
    // Full coredns report from a real cluster: 9 UNKNOWN entries without a score, no digest.
    let r = one("aquasecurity-trivy-operator-pr769-bb1d5667/vulnerability-ttl.yaml");
    assert_eq!(r.counts().get(Severity::Unknown), 9);
    assert!(r.findings.iter().filter(|f| f.score.is_none()).count() >= 9);
    let img = r.image.as_ref().expect("image");
    assert!(!img.pinned());
    assert_eq!(img.repo_key(), "k8s.gcr.io/coredns/coredns");

    // The only report sample with a digest.
    let r = one("defectdojo-trivy_operator/vulnerabilityreport_extended.json");
    assert!(r.image.as_ref().expect("image").pinned());
    assert_eq!(r.workload.to_string(), "lbc/Pod/ubuntu");

    // Trimmed test data: the summary says more than the list holds; we recount.
    let r = one("aquasecurity-trivy-operator-v0.32.0/vulnerability-ttl.yaml");
    assert!(r.summary_mismatch);
    assert_eq!(r.findings.len(), 1);

    // A ReplicaSet owner is its Deployment.
    let r = one("defectdojo-trivy_operator/vulnerabilityreport_many.json");
    assert_eq!(r.workload.kind, "Deployment");

    // Cluster-scoped: no namespace.
    let r =
        one("aquasecurity-trivy-operator-v0.32.0-docs/clustervulnerability-report.md.block1.yaml");
    assert_eq!(r.id.namespace, "");

    // A check without remediation and a check without category are fine.
    let r = one("defectdojo-trivy_operator/configauditreport_with_remediation.json");
    assert!(r.findings.iter().any(|f| f.remediation.is_empty()));
}

#[test]
fn what_is_not_a_report_says_so() {
    let o = read("defectdojo-generic-findings-format");
    assert!(o.reports.is_empty());
    assert_eq!(o.errors.len(), 7, "{:?}", o.errors);
    for e in &o.errors {
        assert!(
            e.contains("not a Trivy Operator report: no `kind` and no report body"),
            "{e}"
        );
    }

    let o = read("crds");
    assert_eq!(o.ignored.len(), 12);
    assert!(
        o.ignored
            .iter()
            .all(|r| r.contains("kind CustomResourceDefinition"))
    );

    let o = read(
        "aquasecurity-trivy-operator-v0.32.0-docs/clustercompliancedetail-report.md.block1.yaml",
    );
    assert_eq!(o.ignored.len(), 1);
    assert!(o.ignored[0].contains("legacy kind ClusterComplianceDetailReport"));

    // A compliance report the operator has not evaluated yet has no status.
    let o = read("aquasecurity-trivy-operator-v0.32.0/compliance-detail.yaml");
    assert_eq!(o.not_ready.len(), 1);
    assert!(o.not_ready[0].contains("has no status yet"));
}

#[test]
fn the_whole_folder_reads_without_an_unexpected_error() {
    let o = read("");
    // Only the seven DefectDojo output-format samples are errors.
    assert_eq!(o.errors.len(), 7, "{:#?}", o.errors);
    assert_eq!(o.reports.len(), 35);
}

#[test]
fn compliance_checks_keep_their_own_severity() {
    // DefectDojo's own unit test on this file expects Medium (the check's own MEDIUM) and
    // High (no check severity: the control's HIGH). The control's rating used to win.
    let r = one("defectdojo-trivy_operator/compliance_severity.json");
    let sev: Vec<(&str, Severity)> = r
        .findings
        .iter()
        .map(|f| (f.detail.as_str(), f.severity))
        .collect();
    assert_eq!(
        sev,
        [
            ("AVD-KSV-0001", Severity::Medium),
            ("AVD-KSV-0002", Severity::High)
        ]
    );
}

#[test]
fn starboard_pod_checks_are_findings() {
    // A starboard `.report` body: `podChecks` (no `checks`) and a singular `message`.
    // Before: not recognized as a report at all.
    let r = one("aquasecurity-starboard-docs/conftest.md.block6.json");
    assert_eq!(r.findings.len(), 2);
    assert_eq!(r.findings[0].id, "Root file system is not read-only");
    assert_eq!(
        r.findings[1].messages,
        ["container nginx of deployment nginx in default namespace should specify image tag"]
    );
    assert_eq!(r.scanner_version, "v0.23.0");
    // "DANGER" is not one of the five levels: mapped, never dropped.
    assert_eq!(r.mapped_severities, 2);
}

/// The operator's own SbomReports give each image's package list (the inventory), every
/// component with its purl, the operating system left out.
#[test]
fn sbom_report_fixtures_list_their_packages() {
    let docs = one("aquasecurity-trivy-operator-v0.32.0-docs/sbom-report.md.block1.yaml");
    let names: Vec<(&str, &str, &str)> = docs
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.ecosystem.as_str()))
        .collect();
    assert!(
        names.contains(&("base-files", "10.3+deb10u9", "deb")),
        "{names:?}"
    );
    assert!(names.contains(&("netbase", "5.6", "deb")), "{names:?}");
    assert!(!names.iter().any(|(n, _, _)| *n == "debian"), "{names:?}");
    assert!(docs.packages.iter().all(|p| p.purl.starts_with("pkg:")));

    let pod = one("aquasecurity-trivy-operator-v0.32.0/00-sbom-pod.yaml");
    assert!(pod.packages.len() >= 100, "{} packages", pod.packages.len());
    assert!(
        pod.packages
            .iter()
            .any(|p| p.name == "bash" && p.version == "4.4-5" && p.ecosystem == "deb"),
        "{:?}",
        pod.packages.iter().map(|p| &p.name).collect::<Vec<_>>()
    );
}
