//! Mapping templates read the workload labels trivy-operator copies onto its reports
//! (`reportResourceLabels`), through the real binary and the DefectDojo fake.

mod support;

use serde_json::Value;
use support::cli::Workspace;
use support::dojo::DojoFake;
use support::reports::{Vuln, digest, list, vuln, vulnerability_report};

const T0: &str = "2026-11-01T10:00:00Z";

const CONFIG: &str = "cluster: prod\ndefectdojo:\n  timeout: 5s\n  retry:\n    max_attempts: 3\n    initial_backoff: 10ms\n    max_backoff: 40ms\n  product: '{{ workload_label:app.kubernetes.io/part-of | workload_label:resource-spec-hash | cluster }}'\n";

fn vulns() -> Vec<Vuln> {
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln("CVE-2026-0002", "zlib", "LOW"),
    ]
}

/// A VulnerabilityReport as trivy-operator writes it with `reportResourceLabels:
/// app.kubernetes.io/part-of,app.kubernetes.io/name`: the operator's own labels (resource,
/// container, spec hash) beside the workload's labels it copied.
fn labelled(ns: &str, workload: &str, repo: &str, n: u32, part_of: Option<&str>) -> Value {
    let mut r = vulnerability_report(ns, workload, repo, Some(&digest(n)), &vulns());
    let labels = r["metadata"]["labels"].as_object_mut().expect("labels");
    labels.insert("resource-spec-hash".into(), "6d4cf56db6".into());
    labels.insert("plugin-config-hash".into(), "659b7b9c46".into());
    labels.insert("app.kubernetes.io/name".into(), workload.into());
    if let Some(p) = part_of {
        labels.insert("app.kubernetes.io/part-of".into(), p.into());
    }
    r
}

fn product_of_test(dojo: &DojoFake, test_id: u64) -> String {
    let t = dojo
        .tests()
        .into_iter()
        .find(|t| t.id == test_id)
        .expect("test");
    let e = dojo
        .engagements()
        .into_iter()
        .find(|e| e.id == t.engagement)
        .expect("engagement");
    dojo.products()
        .into_iter()
        .find(|p| p.id == e.product)
        .expect("product")
        .name
}

/// Products named from the workloads' `app.kubernetes.io/part-of`; workloads of one image
/// that disagree put that image in a test of each product (the mapping is evaluated per
/// workload, as for namespace labels); a workload
/// without the label falls back, and the operator's bookkeeping labels are not readable.
#[test]
fn products_are_named_from_the_workload_labels_on_reports() {
    let dojo = DojoFake::start_blocking();
    let mut ws = Workspace::new();
    ws.config(CONFIG);
    ws.env.extend(dojo.env());
    let input = ws.write(
        "c.json",
        &list(vec![
            labelled("shop", "cart", "org/api", 1, Some("checkout")),
            labelled("search", "indexer", "org/api", 1, Some("search")),
            labelled("tools", "debug", "org/toolbox", 2, None),
        ]),
    );
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    let mut products: Vec<String> = dojo.products().into_iter().map(|p| p.name).collect();
    products.sort();
    assert_eq!(
        products,
        ["checkout", "prod", "search"],
        "the spec hash is bookkeeping, not a workload label"
    );
    let mut placed: Vec<(String, String, String)> = dojo
        .tests()
        .into_iter()
        .map(|t| {
            let findings = dojo.findings_of_test(t.id);
            assert_eq!(findings.len(), 2, "{:?}", t.title);
            (
                product_of_test(&dojo, t.id),
                t.title.clone().unwrap_or_default(),
                findings[0].impact.clone().unwrap_or_default(),
            )
        })
        .collect();
    placed.sort();
    let summary: Vec<(&str, &str)> = placed
        .iter()
        .map(|(p, t, _)| (p.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("checkout", "ghcr.io/org/api"),
            ("prod", "ghcr.io/org/toolbox"),
            ("search", "ghcr.io/org/api"),
        ]
    );
    assert!(
        placed[0].2.contains("shop/Deployment/cart"),
        "{}",
        placed[0].2
    );
    assert!(
        placed[2].2.contains("search/Deployment/indexer"),
        "{}",
        placed[2].2
    );

    // The labels are kept with the report: a second, identical sweep maps the same way
    // and costs no push.
    dojo.clear_log();
    let run = ws.scan_at("2026-11-01T11:00:00Z", &[&input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        dojo.log()
            .iter()
            .all(|r| r.path != "/api/v2/reimport-scan/"),
        "{:?}",
        dojo.log()
    );
}
