//! The core pipeline through the real binary: deduplication, history, bad input, grace.

mod support;

use serde_json::{Value, json};
use support::cli::Workspace;
use support::reports::{digest, list, spread, vuln, vulnerability_report};

const T0: &str = "2026-11-01T10:00:00Z";

fn three_vulns() -> Vec<support::reports::Vuln> {
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln("CVE-2026-0001", "libcrypto3", "CRITICAL"),
        vuln("CVE-2026-0002", "zlib", "LOW"),
    ]
}

/// 50 workloads in 5 namespaces running 5 images.
fn fifty_reports() -> String {
    spread(50, 5, |_| three_vulns())
}

#[test]
fn fifty_reports_of_five_digests_are_five_images_stored_once() {
    let ws = Workspace::new();
    let input = ws.write("cluster.json", &fifty_reports());
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.json();
    assert_eq!(s["reports"]["stored"], 50);
    assert_eq!(
        s["images"],
        json!({"unique": 5, "pinned": 5, "unpinned": 0})
    );
    assert_eq!(s["workloads"], 50);
    assert_eq!(s["findings"]["before_dedup"]["total"], 150);
    assert_eq!(s["findings"]["before_dedup"]["critical"], 100);
    assert_eq!(s["findings"]["after_dedup"]["total"], 15);
    assert_eq!(s["findings"]["after_dedup"]["critical"], 10);
    // The repeated CVE on two packages is two findings, not one.
    assert_eq!(ws.count("SELECT COUNT(*) FROM findings"), 15);
    assert_eq!(ws.count("SELECT COUNT(*) FROM targets"), 5);
    assert_eq!(ws.count("SELECT COUNT(*) FROM target_findings"), 15);
    assert_eq!(ws.count("SELECT COUNT(*) FROM reports"), 50);
    // Each image knows the ten workloads that run it.
    assert_eq!(
        ws.count(
            "SELECT COUNT(DISTINCT r.workload_id) FROM reports r JOIN targets t ON t.id = r.target_id
             JOIN images i ON i.id = t.image_id WHERE i.repository = 'org/img-3'"
        ),
        10
    );
}

#[test]
fn rollouts_and_cronjob_runs_keep_one_workload() {
    let ws = Workspace::new();
    let mut a = vulnerability_report("shop", "api", "org/api", Some(&digest(1)), &three_vulns());
    let mut b = a.clone();
    // A rollout: a new ReplicaSet of the same Deployment.
    b["metadata"]["name"] = json!("replicaset-api-5d4f8b9c6-app");
    b["metadata"]["ownerReferences"][0]["name"] = json!("api-5d4f8b9c6");
    // A CronJob's Job.
    let mut c = a.clone();
    c["metadata"]["name"] = json!("job-backup-29012345-app");
    c["metadata"]["ownerReferences"][0] =
        json!({"kind": "Job", "name": "backup-29012345", "controller": true});
    let mut d = c.clone();
    d["metadata"]["name"] = json!("job-backup-29012346-app");
    d["metadata"]["ownerReferences"][0]["name"] = json!("backup-29012346");
    a["metadata"]["namespace"] = json!("shop");
    let input = ws.write("x.json", &list(vec![a, b, c, d]));
    let s = ws.scan_at(T0, &[&input]).json();
    assert_eq!(s["reports"]["stored"], 4);
    assert_eq!(s["workloads"], 2);
    let mut names: Vec<String> = ws
        .db()
        .prepare("SELECT kind || '/' || name FROM workloads ORDER BY 1")
        .expect("sql")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("names");
    names.sort();
    assert_eq!(names, ["CronJob/backup", "Deployment/api"]);
}

fn history_snapshot(ws: &Workspace) -> Vec<(i64, i64, i64, Option<i64>, String)> {
    ws.db()
        .prepare(
            "SELECT id, first_seen, last_seen, resolved_at, severity FROM findings ORDER BY id",
        )
        .expect("sql")
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("snapshot")
}

#[test]
fn the_same_input_again_changes_no_history() {
    let ws = Workspace::new();
    let input = ws.write("cluster.json", &fifty_reports());
    assert_eq!(ws.scan_at(T0, &[&input]).code, 0);
    let before = history_snapshot(&ws);
    let events = ws.count("SELECT COUNT(*) FROM finding_events");
    let s = ws.scan_at("2026-11-02T10:00:00Z", &[&input]).json();
    for k in [
        "findings_opened",
        "findings_resolved",
        "findings_reopened",
        "severities_changed",
        "reports_gone",
    ] {
        assert_eq!(s["history"][k], 0, "{k}");
    }
    assert_eq!(history_snapshot(&ws), before);
    assert_eq!(ws.count("SELECT COUNT(*) FROM finding_events"), events);
    // The whole fixture folder, duplicates included, is just as stable.
    let fixtures = support::cli::fixture("");
    let ws = Workspace::new();
    ws.scan_at(T0, &[&fixtures]);
    let before = history_snapshot(&ws);
    let s = ws.scan_at("2026-11-02T10:00:00Z", &[&fixtures]).json();
    assert_eq!(s["history"]["findings_opened"], 0);
    assert_eq!(s["history"]["findings_resolved"], 0);
    assert_eq!(s["history"]["findings_reopened"], 0);
    assert_eq!(history_snapshot(&ws), before);
}

#[test]
fn a_bad_object_is_named_and_the_rest_is_read() {
    let ws = Workspace::new();
    let good = vulnerability_report("a", "good", "org/good", Some(&digest(1)), &three_vulns());
    let mut wrong_type =
        vulnerability_report("a", "typed", "org/typed", Some(&digest(2)), &three_vulns());
    wrong_type["report"]["vulnerabilities"][1]["severity"] = json!(5);
    let mut missing = vulnerability_report(
        "a",
        "missing",
        "org/missing",
        Some(&digest(3)),
        &three_vulns(),
    );
    missing["report"]["vulnerabilities"][2]
        .as_object_mut()
        .expect("object")
        .remove("vulnerabilityID");
    let input = ws.write("mixed.json", &list(vec![good.clone(), wrong_type, missing]));
    let broken = ws.write(
        "broken.json",
        "{\"kind\": \"VulnerabilityReport\", \"report\": {",
    );
    let mut yaml_doc = good.clone();
    yaml_doc["metadata"]["name"] = json!("replicaset-other-7cc565547-app");
    let yaml = ws.write(
        "docs.yaml",
        &format!(
            "{}\n---\nkind: VulnerabilityReport\nmetadata: {{name: x, namespace: a}}\nreport: [unclosed\n",
            serde_json::to_string(&yaml_doc).expect("json")
        ),
    );
    let run = ws.scan_at(T0, &[&input, &broken, &yaml]);
    assert_eq!(
        run.code, 3,
        "documented exit code for skipped input\n{}",
        run.stdout
    );
    let s = run.json();
    assert_eq!(s["reports"]["stored"], 2);
    let skipped = s["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 4, "{skipped:#?}");
    let by_origin = |suffix: &str| -> &Value {
        skipped
            .iter()
            .find(|k| k["origin"].as_str().is_some_and(|o| o.ends_with(suffix)))
            .unwrap_or_else(|| panic!("no skipped entry for {suffix}: {skipped:#?}"))
    };
    let typed = by_origin("mixed.json item 1");
    assert_eq!(typed["kind"], "VulnerabilityReport");
    assert_eq!(typed["name"], "a/replicaset-typed-7cc565547-app");
    assert_eq!(typed["field"], "report.vulnerabilities[1].severity");
    assert!(
        typed["error"]
            .as_str()
            .expect("error")
            .contains("expected a string")
    );
    let miss = by_origin("mixed.json item 2");
    assert_eq!(miss["field"], "report.vulnerabilities[2]");
    assert!(
        miss["error"]
            .as_str()
            .expect("error")
            .contains("missing field `vulnerabilityID`")
    );
    let broken = by_origin("broken.json")["error"].as_str().expect("e");
    assert!(broken.contains("unexpected end of input"), "{broken}");
    assert!(
        by_origin("docs.yaml document 2")["error"]
            .as_str()
            .expect("e")
            .contains("invalid YAML")
    );
    // A syntax error inside one object of a List costs that object only.
    let mut neighbour = good.clone();
    neighbour["metadata"]["name"] = json!("replicaset-neighbour-7cc565547-app");
    let balanced = ws.write(
        "balanced.json",
        &format!(
            "{{\"items\": [{{\"kind\": \"VulnerabilityReport\", \"report\": {{\"x\": [1,]}}}}, {}]}}",
            serde_json::to_string(&neighbour).expect("json")
        ),
    );
    let s = ws.scan_at(T0, &[&balanced]).json();
    assert_eq!(s["reports"]["stored"], 1);
    let e = s["skipped"][0]["error"].as_str().expect("error");
    assert!(e.contains("invalid JSON in this object"), "{e}");
    assert_eq!(
        s["skipped"][0]["origin"],
        format!("{} item 0", balanced.display())
    );
    // Text output names the same things.
    let text = ws.run(&["scan", "--from", "mixed.json", "--now", T0]);
    assert!(
        text.stdout.contains("mixed.json item 1 (VulnerabilityReport a/replicaset-typed-7cc565547-app): field `report.vulnerabilities[1].severity`"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_report_that_fails_to_parse_keeps_its_findings() {
    let ws = Workspace::new();
    let report = vulnerability_report("a", "api", "org/api", Some(&digest(1)), &three_vulns());
    let other = vulnerability_report("a", "web", "org/web", Some(&digest(2)), &three_vulns());
    let input = ws.write("c.json", &list(vec![report.clone(), other.clone()]));
    assert_eq!(ws.scan_at(T0, &[&input]).code, 0);
    let mut broken = report.clone();
    broken["report"]["vulnerabilities"] = json!("not a list");
    let input = ws.write("c.json", &list(vec![broken, other]));
    let run = ws.scan_at("2026-11-03T10:00:00Z", &[&input]);
    assert_eq!(run.code, 3);
    let s = run.json();
    assert_eq!(s["skipped"][0]["kept_previous"], true);
    assert_eq!(s["history"]["findings_resolved"], 0);
    assert_eq!(s["history"]["reports_gone"], 0);
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL"),
        6
    );
    // Even past the grace period, a report that still exists but cannot be read stays.
    let run = ws.scan_at("2026-11-09T10:00:00Z", &[&input]);
    assert_eq!(run.json()["history"]["reports_expired"], 0);
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL"),
        6
    );
}

#[test]
fn an_unreadable_file_marks_nothing_gone() {
    let ws = Workspace::new();
    let a = ws.write(
        "in/a.json",
        &list(vec![vulnerability_report(
            "a",
            "api",
            "org/api",
            Some(&digest(1)),
            &three_vulns(),
        )]),
    );
    let b = ws.write(
        "in/b.json",
        &list(vec![vulnerability_report(
            "a",
            "web",
            "org/web",
            Some(&digest(2)),
            &three_vulns(),
        )]),
    );
    assert_eq!(ws.scan_at(T0, &[&ws.path("in")]).code, 0);
    std::fs::write(&b, "[{\"kind\": ").expect("corrupt");
    let s = ws.scan_at("2026-11-01T11:00:00Z", &[&ws.path("in")]).json();
    assert_eq!(s["complete"], false);
    assert_eq!(s["history"]["reports_gone"], 0);
    let _ = a;
}

#[test]
fn a_fixed_vulnerability_resolves_and_grace_applies_to_vanished_images() {
    let ws = Workspace::new();
    let api = vulnerability_report("a", "api", "org/api", Some(&digest(1)), &three_vulns());
    let web = vulnerability_report("a", "web", "org/web", Some(&digest(2)), &three_vulns());
    let input = ws.write("c.json", &list(vec![api.clone(), web]));
    assert_eq!(ws.scan_complete_at(T0, &[&input]).code, 0);

    // The api report loses one vulnerability; the web workload disappears.
    let mut fixed = api.clone();
    fixed["report"]["vulnerabilities"]
        .as_array_mut()
        .expect("list")
        .remove(2);
    let input = ws.write("c.json", &list(vec![fixed.clone()]));
    let s = ws
        .scan_complete_at("2026-11-01T12:00:00Z", &[&input])
        .json();
    assert_eq!(
        s["history"]["findings_resolved"], 1,
        "only the fixed one; web is in its grace period"
    );
    assert_eq!(s["history"]["reports_gone"], 1);
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL"),
        5
    );

    // 23 hours later: still within the 24h grace period.
    let s = ws
        .scan_complete_at("2026-11-02T11:00:00Z", &[&input])
        .json();
    assert_eq!(s["history"]["reports_expired"], 0);
    assert_eq!(s["history"]["findings_resolved"], 0);
    // Past it: web's findings resolve.
    let s = ws
        .scan_complete_at("2026-11-02T12:30:00Z", &[&input])
        .json();
    assert_eq!(s["history"]["reports_expired"], 1);
    assert_eq!(s["history"]["findings_resolved"], 3);
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL"),
        2
    );
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM finding_events WHERE event = 'resolved'"),
        4
    );
}

#[test]
fn a_report_recreated_within_the_grace_period_changes_nothing() {
    let ws = Workspace::new();
    let api = vulnerability_report("a", "api", "org/api", Some(&digest(1)), &three_vulns());
    let input = ws.write("c.json", &list(vec![api.clone()]));
    let empty = ws.write("empty.json", &list(vec![]));
    ws.scan_at(T0, &[&input]);
    let s = ws
        .scan_with(
            "2026-11-01T11:00:00Z",
            &[&empty],
            &["--complete", "--allow-empty"],
        )
        .json();
    assert_eq!(s["history"]["reports_gone"], 1);
    let s = ws.scan_at("2026-11-01T12:00:00Z", &[&input]).json();
    for k in ["findings_opened", "findings_resolved", "findings_reopened"] {
        assert_eq!(s["history"][k], 0, "{k}");
    }
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM reports WHERE gone_since IS NULL"),
        1
    );
}

#[test]
fn re_rated_severity_and_new_fix_reach_the_stored_finding() {
    let ws = Workspace::new();
    let api = vulnerability_report("a", "api", "org/api", Some(&digest(1)), &three_vulns());
    let input = ws.write("c.json", &list(vec![api.clone()]));
    ws.scan_at(T0, &[&input]);
    let mut rescanned = api.clone();
    rescanned["report"]["updateTimestamp"] = json!("2026-10-02T08:00:00Z");
    rescanned["report"]["vulnerabilities"][2]["severity"] = json!("HIGH");
    rescanned["report"]["vulnerabilities"][2]["fixedVersion"] = json!("1.3.1");
    let input = ws.write("c.json", &list(vec![rescanned]));
    let s = ws.scan_at("2026-11-02T10:00:00Z", &[&input]).json();
    assert_eq!(s["history"]["severities_changed"], 1);
    assert_eq!(s["history"]["fixes_published"], 1);
    assert_eq!(s["history"]["findings_opened"], 0);
    assert_eq!(s["history"]["findings_resolved"], 0);
    let (sev, fixable): (String, bool) = ws
        .db()
        .query_row(
            "SELECT severity, fixable FROM findings WHERE fkey LIKE 'CVE-2026-0002%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!((sev.as_str(), fixable), ("HIGH", true));
}

#[test]
fn stdin_and_multi_document_yaml() {
    let ws = Workspace::new();
    let mut child = ws
        .command(&["scan", "--from", "-", "--format", "json", "--now", T0])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(fifty_reports().as_bytes())
            .expect("write stdin");
    }
    let run = support::cli::output(child.wait_with_output().expect("wait"));
    assert_eq!(run.json()["reports"]["stored"], 50);

    let ws = Workspace::new();
    let docs: Vec<String> = (0..3)
        .map(|i| {
            let r = vulnerability_report(
                "y",
                &format!("w{i}"),
                "org/y",
                Some(&digest(9)),
                &three_vulns(),
            );
            serde_json::to_string(&r).expect("json")
        })
        .collect();
    let yaml = ws.write(
        "reports.yaml",
        &format!(
            "---\n{}\n---\n# empty\n---\n{}\n---\n{}\n",
            docs[0], docs[1], docs[2]
        ),
    );
    let s = ws.scan_at(T0, &[&yaml]).json();
    assert_eq!(s["reports"]["stored"], 3);
    assert_eq!(s["images"]["unique"], 1);
}

#[test]
fn a_store_belongs_to_one_cluster() {
    let ws = Workspace::new();
    let input = ws.write("c.json", &list(vec![]));
    assert_eq!(
        ws.run(&[
            "--cluster",
            "prod",
            "scan",
            "--allow-empty",
            "--from",
            "c.json"
        ])
        .code,
        0
    );
    let run = ws.run(&[
        "--cluster",
        "staging",
        "scan",
        "--allow-empty",
        "--from",
        "c.json",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("belongs to cluster \"prod\""),
        "{}",
        run.stderr
    );
    let _ = input;
}

#[test]
fn unpinned_images_fall_back_to_the_tag() {
    let ws = Workspace::new();
    let a = vulnerability_report("a", "x", "library/nginx", None, &three_vulns());
    let mut b = vulnerability_report("a", "y", "nginx", None, &three_vulns());
    b["report"]["registry"]["server"] = json!("index.docker.io");
    let mut c = b.clone();
    c["metadata"]["name"] = json!("replicaset-z-7cc565547-app");
    c["report"]["registry"]["server"] = json!("docker.io");
    let input = ws.write("c.json", &list(vec![a, b, c]));
    let s = ws.scan_at(T0, &[&input]).json();
    // ghcr.io/library/nginx:1.0 and docker.io/library/nginx:1.0 (two Docker Hub spellings).
    assert_eq!(
        s["images"],
        json!({"unique": 2, "pinned": 0, "unpinned": 2})
    );
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM images WHERE key = 'docker.io/library/nginx:1.0'"),
        1
    );
}

#[test]
fn the_bundled_example_reads_cleanly() {
    let ws = Workspace::new();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reports");
    let run = ws.scan_at(T0, &[&examples]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let s = run.json();
    assert_eq!(s["reports"]["stored"], 13);
    assert_eq!(
        s["images"],
        json!({"unique": 5, "pinned": 3, "unpinned": 2})
    );
    assert_eq!(s["workloads"], 9);
    assert_eq!(s["reports"]["namespaces"], 2);
}

#[test]
fn config_check_redacts_the_token() {
    let ws = Workspace::new();
    let token = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    let token_file = ws.write("token", &format!("{token}\n"));
    ws.config(&format!(
        "cluster: prod\ndefectdojo:\n  url: https://dojo.example.com\n  token_file: {}\n",
        token_file.display()
    ));
    let run = ws.run(&["config", "check"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("token: <redacted>"), "{}", run.stdout);
    assert!(!run.stdout.contains(token) && !run.stderr.contains(token));
    // A typo is an error that names the key and the file.
    ws.config("clustr: prod\n");
    let run = ws.run(&["config", "check"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("trivy-digest.yaml") && run.stderr.contains("clustr"),
        "{}",
        run.stderr
    );
    // DEFECTDOJO_URL without a token says what is missing.
    ws.config("cluster: prod\n");
    let mut ws = ws;
    ws.env
        .push(("DEFECTDOJO_URL".into(), "https://dojo.example.com".into()));
    let run = ws.run(&["config", "check"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("DEFECTDOJO_TOKEN"), "{}", run.stderr);
}
