//! The inventory through the binary: SbomReports and CI results in, `query` out.

mod support;

use serde_json::Value;
use support::cli::Workspace;
use support::dojo::DojoFake;
use support::reports::{
    LOG4J, Vuln, digest, list, shop_inventory, trivy_cli, vuln, vulnerability_report,
};

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-05T10:00:00Z";

/// CVE-2021-44228 in log4j-core 2.14.1, fixed in 2.15.0.
fn log4shell() -> Vuln {
    vuln("CVE-2021-44228", LOG4J, "CRITICAL")
        .fixed("2.15.0")
        .installed("2.14.1")
}

/// CVE-2021-45046 in log4j-core 2.14.1, fixed in 2.16.0.
fn log4j_45046() -> Vuln {
    vuln("CVE-2021-45046", LOG4J, "CRITICAL")
        .fixed("2.16.0")
        .installed("2.14.1")
}

/// A pipeline's Trivy result for the running `ghcr.io/org/api` digest.
fn api_ci(ws: &Workspace, created_at: &str, vulns: &[Vuln]) -> std::path::PathBuf {
    ws.write(
        "api.trivy.json",
        &trivy_cli("org/api", &digest(1), created_at, vulns),
    )
}

/// The shared inventory (support::reports::shop_inventory) as one file.
fn cluster(ws: &Workspace) -> std::path::PathBuf {
    ws.write("cluster.json", &list(shop_inventory()))
}

fn query(ws: &Workspace, args: &[&str]) -> (i32, Value) {
    let mut a = vec!["query"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--format", "json"]);
    let run = ws.run(&a);
    let v = if run.stdout.trim().is_empty() {
        Value::Null
    } else {
        run.json()
    };
    (run.code, v)
}

fn images(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("images")
        .iter()
        .map(|i| i["image"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn packages_are_found_from_sbom_reports_with_their_workloads() {
    let ws = Workspace::new();
    let run = ws.scan_at(T0, &[&cluster(&ws)]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    let (code, v) = query(&ws, &["--package", "log4j-core"]);
    assert_eq!(code, 0, "{v:#}");
    let p = v["packages"].as_array().expect("packages");
    assert_eq!(p.len(), 2, "{v:#}");
    assert_eq!(p[0]["version"], "2.14.1");
    assert_eq!(p[0]["ecosystem"], "maven");
    assert_eq!(
        images(&p[0]["images"]),
        vec![format!("ghcr.io/org/api@{}", digest(1))]
    );
    let w = &p[0]["images"][0]["workloads"][0];
    assert_eq!(w["namespace"], "shop", "{v:#}");
    assert_eq!(w["name"], "api", "{v:#}");
    assert_eq!(p[0]["images"][0]["running"], true);

    // A version requirement keeps only what is below the fix.
    let (_, v) = query(&ws, &["--package", LOG4J, "--version", "<2.17.1"]);
    let p = v["packages"].as_array().expect("packages");
    assert_eq!(p.len(), 1, "{v:#}");
    assert_eq!(p[0]["version"], "2.14.1");

    // A package without any vulnerability is found too.
    let (code, v) = query(&ws, &["--package", "openssl"]);
    assert_eq!(code, 0);
    assert_eq!(v["packages"][0]["version"], "3.0.11-1");

    // Nothing found: exit code 6, and the text says so.
    let (code, _) = query(&ws, &["--package", "log4j-core", "--version", "=2.0"]);
    assert_eq!(code, 6);
    let run = ws.run(&["query", "--package", "left-pad"]);
    assert_eq!(run.code, 6);
    assert!(
        run.stdout
            .contains("left-pad: no image the store has an SBOM of contains it"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_cve_answers_where_it_runs_since_when_and_whether_a_fix_exists() {
    let ws = Workspace::new();
    ws.scan_at(T0, &[&cluster(&ws)]);
    let (code, v) = query(&ws, &["--cve", "cve-2021-44228"]);
    assert_eq!(code, 0, "{v:#}");
    let f = &v["findings"][0];
    assert_eq!(f["id"], "CVE-2021-44228");
    assert_eq!(f["severity"], "CRITICAL");
    assert_eq!(f["fix_available"], true);
    assert_eq!(f["fixed_version"], "2.15.0");
    assert_eq!(f["repository"], "ghcr.io/org/api");
    assert_eq!(f["runtime"]["open"], true);
    assert_eq!(f["defectdojo"], Value::Null, "never exported");
    assert_eq!(
        images(&f["images"]),
        vec![format!("ghcr.io/org/api@{}", digest(1))]
    );

    let run = ws.run(&["query", "--cve", "CVE-2021-44228"]);
    assert!(
        run.stdout.contains("CVE-2021-44228 CRITICAL in org.apache.logging.log4j:log4j-core 2.14.1 (fixed in 2.15.0)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("open at runtime since 2026-11-01"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("shop/Deployment/api since 2026-11-01"),
        "{}",
        run.stdout
    );
}

#[test]
fn ci_results_join_the_cluster_by_digest_and_never_end_cluster_reports() {
    let ws = Workspace::new();
    // CI scanned the api image (same digest) before it was deployed, and an image
    // that runs nowhere.
    let ci = api_ci(&ws, "2026-10-30T09:00:00Z", &[log4shell(), log4j_45046()]);
    let staged = ws.write(
        "new.trivy.json",
        &trivy_cli(
            "org/new",
            &digest(3),
            "2026-10-31T09:00:00Z",
            &[vuln("CVE-2021-44228", LOG4J, "CRITICAL").installed("2.14.1")],
        ),
    );
    let cluster = cluster(&ws);
    ws.scan_at(T0, &[&cluster]);
    let live = "SELECT COUNT(*) FROM reports WHERE gone_since IS NULL";
    assert_eq!(ws.count(live), 3);

    // CI results alone are read (not "0 reports"), and end nothing.
    let run = ws.scan_at(T1, &[&ci, &staged]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(ws.count(live), 3, "a CI result never ends a cluster report");
    let s = run.json();
    assert_eq!(s["ci"]["files"], 2, "{s:#}");
    assert_eq!(s["ci"]["new_images"], 2);
    assert_eq!(s["ci"]["findings_new"], 3);
    assert_eq!(s["ci"]["also_at_runtime"], 1, "log4shell in org/api: {s:#}");
    assert_eq!(
        s["findings"]["after_dedup"]["total"], 0,
        "CI findings are not runtime findings: {s:#}"
    );
    let run = ws.run(&["scan", "--now", T1, "--from", &ci.display().to_string()]);
    assert!(
        run.stdout.contains(
            "CI         1 result (0 new images); findings 0 new, 0 gone, 1 also seen at runtime"
        ),
        "{}",
        run.stdout
    );

    // --complete claims a whole-cluster export: a CI file is not one.
    let run = ws.scan_with(T1, &[&ci], &["--complete", "--allow-empty"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("is a CI result"), "{}", run.stderr);
    assert_eq!(ws.count(live), 3);

    let (_, v) = query(&ws, &["--cve", "CVE-2021-44228"]);
    let f = v["findings"].as_array().expect("findings");
    assert_eq!(f.len(), 2, "one per image repository: {v:#}");
    let api = f
        .iter()
        .find(|f| f["repository"] == "ghcr.io/org/api")
        .expect("api");
    // One finding, seen by both: CI first (its scan time), then at runtime.
    assert_eq!(api["runtime"]["open"], true);
    assert_eq!(
        api["ci_first_seen"].as_i64(),
        Some(
            chrono::DateTime::parse_from_rfc3339("2026-10-30T09:00:00Z")
                .expect("t")
                .timestamp()
        )
    );
    assert_eq!(api["images"].as_array().map(Vec::len), Some(1), "{v:#}");
    let new = f
        .iter()
        .find(|f| f["repository"] == "ghcr.io/org/new")
        .expect("new");
    assert_eq!(new["runtime"], Value::Null, "CI only");
    assert_eq!(new["images"][0]["running"], false);
    assert_eq!(new["images"][0]["ci"]["artifact"], "ghcr.io/org/new:1.0");

    // The CVE only CI saw is found, as CI-only, in the running image.
    let (_, v) = query(&ws, &["--cve", "CVE-2021-45046"]);
    assert_eq!(v["findings"][0]["runtime"], Value::Null, "{v:#}");
    assert_eq!(v["findings"][0]["images"][0]["running"], true, "{v:#}");

    let run = ws.run(&["query", "--image", "ghcr.io/org/api"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("open: 1 critical; 2 packages"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("CI: ghcr.io/org/api:1.0"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_summary_tells_what_ci_knew_before_deploy() {
    let ws = Workspace::new();
    // CI saw log4shell in org/api on 10-30; the cluster on 11-01 also runs CVE-2026-0001,
    // which no CI result had.
    let ci = api_ci(&ws, "2026-10-30T09:00:00Z", &[log4shell()]);
    ws.scan_at("2026-10-30T10:00:00Z", &[&ci]);
    let cluster = ws.write(
        "cluster.json",
        &list(vec![vulnerability_report(
            "shop",
            "api",
            "org/api",
            Some(&digest(1)),
            &[log4shell(), vuln("CVE-2026-0001", "openssl", "HIGH")],
        )]),
    );
    ws.scan_at(T0, &[&cluster]);
    let run = ws.run(&[
        "summary",
        "--month",
        "2026-11",
        "--text",
        "--now",
        "2026-11-20T00:00:00Z",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "Known before deploy (seen in CI first): 1 critical, 0 high, 0 medium, 0 low, 0 unknown."
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("First seen at runtime: 0 critical, 1 high, 0 medium, 0 low, 0 unknown."),
        "{}",
        run.stdout
    );
    // The HTML part carries the same table.
    let run = ws.run(&[
        "summary",
        "--month",
        "2026-11",
        "--now",
        "2026-11-20T00:00:00Z",
    ]);
    assert!(
        run.stdout.contains("Known before deploy (CI first)"),
        "{}",
        run.stdout
    );

    // A store without CI results says nothing about CI.
    let plain = Workspace::new();
    let cluster = plain.write(
        "cluster.json",
        &std::fs::read_to_string(&cluster).expect("read"),
    );
    plain.scan_at(T0, &[&cluster]);
    let run = plain.run(&[
        "summary",
        "--month",
        "2026-11",
        "--text",
        "--now",
        "2026-11-20T00:00:00Z",
    ]);
    assert!(
        !run.stdout.contains("Known before deploy"),
        "{}",
        run.stdout
    );
}

/// What the README shows: the bundled CI pair (examples/ci) joins the bundled export's
/// nginx digest, and a CVE only CI knew is found in the digest six workloads run.
#[test]
fn the_bundled_ci_example_joins_the_bundled_export() {
    let ws = Workspace::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = ws.scan_at(T0, &[&root.join("examples/reports")]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let run = ws.scan_at(T1, &[&root.join("examples/ci")]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["ci"]["files"], 2, "{}", run.stdout);
    assert_eq!(
        s["ci"]["unpinned"], 0,
        "both name the digest: {}",
        run.stdout
    );
    assert_eq!(s["ci"]["also_at_runtime"], 2, "{}", run.stdout);
    assert_eq!(s["ci"]["inventories_changed"], 1, "{}", run.stdout);
    assert_eq!(s["history"]["reports_gone"], 0);

    let (code, v) = query(&ws, &["--cve", "CVE-2023-38545"]);
    assert_eq!(code, 0, "{v:#}");
    let f = &v["findings"][0];
    assert_eq!(f["repository"], "docker.io/library/nginx", "{v:#}");
    assert_eq!(f["runtime"], Value::Null, "only CI saw it: {v:#}");
    assert_eq!(f["images"][0]["running"], true, "{v:#}");
    assert_eq!(
        f["images"][0]["workloads"].as_array().map(Vec::len),
        Some(5),
        "{v:#}"
    );

    let (code, v) = query(&ws, &["--package", "curl", "--version", "<8.4.0"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["packages"][0]["version"], "7.87.0-r1", "{v:#}");
    let (code, _) = query(&ws, &["--package", "openssl"]);
    assert_eq!(code, 6, "no SBOM lists openssl");
}

/// CI results never reach DefectDojo: an image that runs nowhere gets no test, and a CVE
/// only CI saw stays out of the running image's test. What runs is pushed as before.
#[test]
fn ci_only_findings_stay_out_of_defectdojo() {
    let dojo = DojoFake::start_blocking();
    let mut ws = Workspace::new();
    ws.config(
        "cluster: prod\ndefectdojo:\n  product: platform\n  timeout: 5s\n  retry:\n    \
         max_attempts: 3\n    initial_backoff: 10ms\n    max_backoff: 40ms\n",
    );
    ws.env.extend(dojo.env());
    let run = ws.scan_complete_at(T0, &[&cluster(&ws)]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let titles = |dojo: &DojoFake| -> Vec<String> {
        let mut t: Vec<String> = dojo.findings().iter().map(|f| f.title.clone()).collect();
        t.sort();
        t
    };
    let before = titles(&dojo);
    assert_eq!(before.len(), 1, "log4shell in org/api: {before:?}");
    let tests_before = dojo.tests().len();

    dojo.clear_log();
    let known = api_ci(&ws, "2026-11-04T09:00:00Z", &[log4shell(), log4j_45046()]);
    let unseen = ws.write(
        "new.trivy.json",
        &trivy_cli(
            "org/new",
            &digest(7),
            "2026-11-04T09:00:00Z",
            &[vuln("CVE-2026-0007", "openssl", "CRITICAL")],
        ),
    );
    let run = ws.scan_with(T1, &[&known, &unseen], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    // New to CI: all three; one of them (log4shell) the cluster already has.
    assert_eq!(run.json()["ci"]["findings_new"], 3, "{}", run.stdout);
    assert_eq!(run.json()["ci"]["also_at_runtime"], 1, "{}", run.stdout);
    assert_eq!(dojo.reimports().len(), 0, "{:?}", dojo.log());
    assert_eq!(
        dojo.tests().len(),
        tests_before,
        "no test for an image that runs nowhere"
    );
    assert_eq!(titles(&dojo), before);
    assert!(
        dojo.findings()
            .iter()
            .all(|f| !f.title.contains("CVE-2021-45046") && !f.title.contains("CVE-2026-0007")),
        "{:?}",
        titles(&dojo)
    );
}

/// With `defectdojo.ci_engagement`, an image that runs nowhere gets a test there from its
/// newest CI scan: a newer scan closes what it fixed, and the test is left alone (with its
/// triage) once the image runs and its runtime test holds it.
#[test]
fn ci_only_findings_go_to_their_own_engagement_when_configured() {
    let dojo = DojoFake::start_blocking();
    let mut ws = Workspace::new();
    ws.config(
        "cluster: prod\ndefectdojo:\n  product: platform\n  ci_engagement: 'ci-{{ cluster }}'\n  \
         timeout: 5s\n  retry:\n    max_attempts: 3\n    initial_backoff: 10ms\n    max_backoff: 40ms\n",
    );
    ws.env.extend(dojo.env());
    let run = ws.scan_complete_at(T0, &[&cluster(&ws)]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let runtime_tests = dojo.tests().len();

    let api = api_ci(
        &ws,
        "2026-11-04T09:00:00Z",
        &[vuln("CVE-2021-45046", LOG4J, "CRITICAL").installed("2.14.1")],
    );
    let first = ws.write(
        "new-1.trivy.json",
        &trivy_cli(
            "org/new",
            &digest(7),
            "2026-11-04T09:00:00Z",
            &[
                vuln("CVE-2026-0007", "openssl", "CRITICAL").fixed("3.0.9"),
                vuln("CVE-2026-0008", "zlib", "HIGH"),
            ],
        ),
    );
    dojo.clear_log();
    let run = ws.scan_with(T1, &[&api, &first], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let pushed = dojo.reimports();
    assert_eq!(
        pushed.len(),
        1,
        "only the image that runs nowhere: {pushed:?}"
    );
    let form = &pushed[0].form;
    assert_eq!(
        form.get("engagement_name").map(String::as_str),
        Some("ci-prod")
    );
    assert_eq!(
        form.get("product_name").map(String::as_str),
        Some("platform")
    );
    assert_eq!(
        form.get("test_title").map(String::as_str),
        Some("ghcr.io/org/new")
    );
    assert_eq!(dojo.tests().len(), runtime_tests + 1);
    let ci_test = dojo
        .tests()
        .into_iter()
        .find(|t| t.title.as_deref() == Some("ghcr.io/org/new"))
        .expect("the CI test");
    let in_ci = |dojo: &DojoFake| dojo.findings_of_test(ci_test.id);
    assert_eq!(in_ci(&dojo).len(), 2);
    assert!(
        dojo.findings()
            .iter()
            .all(|f| !f.title.contains("CVE-2021-45046")),
        "a running image's CI-only CVE stays out"
    );
    // Triage on the CI test.
    let zlib: Vec<u64> = in_ci(&dojo)
        .iter()
        .filter(|f| f.title.contains("CVE-2026-0008"))
        .map(|f| f.id)
        .collect();
    dojo.accept_risk(&zlib);

    // The same results again: nothing to push.
    dojo.clear_log();
    let run = ws.scan_with(T1, &[&api, &first], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(dojo.reimports().len(), 0, "{:?}", dojo.log());

    // The next build fixed openssl: the CI test closes it and keeps the rest.
    let second = ws.write(
        "new-2.trivy.json",
        &trivy_cli(
            "org/new",
            &digest(8),
            "2026-11-06T09:00:00Z",
            &[vuln("CVE-2026-0008", "zlib", "HIGH")],
        ),
    );
    let run = ws.scan_with("2026-11-06T10:00:00Z", &[&second], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let state = |dojo: &DojoFake, id: &str| {
        in_ci(dojo)
            .into_iter()
            .find(|f| f.title.contains(id))
            .map(|f| (f.is_mitigated, f.risk_accepted))
    };
    assert_eq!(state(&dojo, "CVE-2026-0007"), Some((true, false)), "fixed");
    assert_eq!(state(&dojo, "CVE-2026-0008"), Some((false, true)), "kept");

    // It deploys: the runtime test takes it over; the CI test is left as it is.
    let mut items = shop_inventory();
    items.push(vulnerability_report(
        "shop",
        "new",
        "org/new",
        Some(&digest(8)),
        &[vuln("CVE-2026-0008", "zlib", "HIGH")],
    ));
    let input = ws.write("cluster-2.json", &list(items));
    let run = ws.scan_complete_at("2026-11-07T10:00:00Z", &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        dojo.tests().len(),
        runtime_tests + 2,
        "a runtime test for org/new"
    );
    assert_eq!(
        state(&dojo, "CVE-2026-0008"),
        Some((false, true)),
        "not closed"
    );
    let s = run.json();
    assert!(
        s["defectdojo"]["plan"]["left_alone"]
            .as_array()
            .is_some_and(|l| l
                .iter()
                .any(|t| t.as_str().is_some_and(|t| t.contains("ci-prod")))),
        "{:#}",
        s["defectdojo"]
    );
}
