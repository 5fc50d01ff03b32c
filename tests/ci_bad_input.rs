//! Bad CI results through `scan`: each is refused by name, with what is wrong, and costs
//! nothing else: the other files of the sweep are read, and nothing is marked gone.

mod support;

use serde_json::{Value, json};
use support::cli::{Run, Workspace};
use support::reports::{digest, list, trivy_cli, vuln, vulnerability_report};

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-05T10:00:00Z";

fn with_cluster() -> Workspace {
    let ws = Workspace::new();
    let reports = ws.write(
        "cluster.json",
        &list(vec![vulnerability_report(
            "shop",
            "api",
            "org/api",
            Some(&digest(1)),
            &[vuln("CVE-2026-0001", "openssl", "HIGH")],
        )]),
    );
    let run = ws.scan_complete_at(T0, &[&reports]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    ws
}

/// The bad file was skipped (exit 3, named, with `reason`), the good CI file beside it
/// was read, and the cluster's report is still live.
fn assert_refused(ws: &Workspace, run: &Run, file: &str, reason: &str) -> Value {
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    let skipped = s["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 1, "{}", run.stdout);
    let k = &skipped[0];
    assert!(
        k["origin"].as_str().is_some_and(|o| o.ends_with(file)),
        "{}",
        run.stdout
    );
    assert!(
        k["error"].as_str().is_some_and(|e| e.contains(reason)),
        "{}",
        run.stdout
    );
    assert_eq!(s["ci"]["files"], 1, "the good file is read: {}", run.stdout);
    assert_eq!(s["history"]["reports_gone"], 0);
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM reports WHERE gone_since IS NULL"),
        1
    );
    s
}

fn good_ci(ws: &Workspace) -> std::path::PathBuf {
    ws.write(
        "good.json",
        &trivy_cli(
            "org/api",
            &digest(1),
            "2026-10-30T09:00:00Z",
            &[vuln("CVE-2026-0001", "openssl", "HIGH")],
        ),
    )
}

#[test]
fn an_unknown_schema_version_is_refused_by_name() {
    let ws = with_cluster();
    let good = good_ci(&ws);
    let bad = ws.write(
        "next.json",
        &json!({"SchemaVersion": 3, "ArtifactName": "ghcr.io/org/api:1.0", "Results": {"changed": true}})
            .to_string(),
    );
    let run = ws.scan_with(T1, &[&good, &bad], &[]);
    assert_refused(&ws, &run, "next.json", "schema version 3");
}

#[test]
fn a_cyclonedx_file_that_is_not_json_is_refused_by_name() {
    let ws = with_cluster();
    let good = good_ci(&ws);
    // Cut off mid-way, as an interrupted upload leaves it.
    let bad = ws.write(
        "sbom.cdx.json",
        r#"{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"type": "library", "na"#,
    );
    let run = ws.scan_with(T1, &[&good, &bad], &[]);
    let s = assert_refused(&ws, &run, "sbom.cdx.json", "invalid JSON at byte");
    assert_eq!(s["complete"], false, "an unreadable file ends nothing");
}

#[test]
fn an_sbom_of_100_mb_is_refused_and_costs_nothing_else() {
    let ws = with_cluster();
    let good = good_ci(&ws);
    // Real-shaped components until the file passes 100 MiB.
    let mut sbom = String::from(
        r#"{"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
            "metadata": {"component": {"type": "container", "name": "ghcr.io/org/api:1.0"}},
            "components": ["#,
    );
    let mut n = 0u64;
    while sbom.len() < 100 * 1024 * 1024 {
        if n > 0 {
            sbom.push(',');
        }
        sbom.push_str(&format!(
            r#"{{"bom-ref": "pkg:npm/pkg-{n}@1.0.0", "type": "library", "name": "pkg-{n}", "version": "1.0.0",
                "purl": "pkg:npm/pkg-{n}@1.0.0", "licenses": [{{"license": {{"name": "MIT"}}}}],
                "properties": [{{"name": "aquasecurity:trivy:PkgType", "value": "npm"}},
                               {{"name": "aquasecurity:trivy:FilePath", "value": "app/node_modules/pkg-{n}/package.json"}}]}}"#
        ));
        n += 1;
    }
    sbom.push_str("]}");
    let bad = ws.write("huge.cdx.json", &sbom);
    drop(sbom);
    let run = ws.scan_with(T1, &[&good, &bad], &[]);
    assert_refused(&ws, &run, "huge.cdx.json", "MiB is larger than the 64 MiB");
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM packages"),
        0,
        "nothing of it kept"
    );
}
