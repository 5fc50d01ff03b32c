//! What the real trivy writes for CI is read as CI scans: a CycloneDX SBOM of a tree
//! (`trivy rootfs --format cyclonedx`) and a secret scan (`trivy fs --scanners secret
//! -f json`), made here by the binary (tests/support/trivy.rs), offline.

mod support;

use support::trivy;
use trivy_digest::model::{CiScan, Family, Package, Severity};
use trivy_digest::source::{Origin, RawObject, files};
use trivy_digest::trivy::{Parsed, parse_object};

fn parse(name: &str, json: Vec<u8>) -> CiScan {
    // The file is one object to the reader too (not split as a List or a CRD export).
    let mut split = Vec::new();
    let errors = files::read_bytes(name, &json, &mut |o| split.push(o));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(split.len(), 1, "{name}: one object");
    let obj = RawObject {
        origin: Origin::file(name),
        json,
        kind_hint: None,
        name_hint: None,
    };
    match parse_object(&obj) {
        Ok(Parsed::Ci { scan, .. }) => *scan,
        other => panic!("{name}: expected a CI scan, got {other:?}"),
    }
}

#[test]
fn trivy_rootfs_sbom_lists_the_packages() {
    let dir = trivy::tree();
    let scan = parse("sbom.cdx.json", trivy::rootfs_cyclonedx(dir.path()));
    assert_eq!(scan.artifact, "root");
    assert!(!scan.image.pinned(), "a directory has no digest");
    assert!(!scan.scanner_version.is_empty());
    assert!(scan.scanned_at.is_some());
    // `--format cyclonedx` scans for nothing: no family is covered, nothing is found.
    assert!(scan.covered.is_empty(), "{:?}", scan.covered);
    assert!(scan.findings.is_empty());
    let packages = scan.packages.expect("an SBOM lists packages");
    let log4j = Package {
        name: "org.apache.logging.log4j:log4j-core".into(),
        version: "2.14.1".into(),
        purl: "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1".into(),
        ecosystem: "maven".into(),
    };
    assert!(packages.contains(&log4j), "{packages:#?}");
    let short: Vec<(&str, &str, &str)> = packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.ecosystem.as_str()))
        .collect();
    assert!(short.contains(&("lodash", "4.17.20", "npm")), "{short:?}");
    assert!(short.contains(&("musl", "1.2.3-r4", "apk")), "{short:?}");
    // The distribution (`alpine 3.18.4`, type operating-system) is not a package.
    assert!(!short.iter().any(|(n, _, _)| *n == "alpine"), "{short:?}");
    assert_eq!(packages.len(), 3, "{short:?}");
}

#[test]
fn trivy_secret_scan_yields_the_masked_match() {
    let dir = trivy::tree();
    let scan = parse("secrets.json", trivy::fs_secrets_json(dir.path()));
    assert_eq!(scan.artifact, "root");
    assert!(scan.covered.contains(&Family::Secret));
    // The package results trivy lists whatever ran prove no vulnerability scan.
    assert!(!scan.covered.contains(&Family::Vulnerability));
    let secrets: Vec<_> = scan
        .findings
        .iter()
        .filter(|(f, _)| *f == Family::Secret)
        .map(|(_, f)| f)
        .collect();
    assert_eq!(secrets.len(), 1, "{secrets:#?}");
    let s = secrets[0];
    assert_eq!(s.id, "github-pat");
    assert_eq!(s.path, trivy::SECRET_FILE);
    assert_eq!(s.detail, trivy::MASKED_PAT);
    assert!(
        !s.detail.contains("ghp_"),
        "the token itself is never stored"
    );
    assert_eq!(s.package, "GitHub");
    assert_eq!(s.severity, Severity::Critical);
    assert_eq!(s.messages, ["line 1"]);
    assert!(scan.findings.iter().all(|(f, _)| *f == Family::Secret));
}
