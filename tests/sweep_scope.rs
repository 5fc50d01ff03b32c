//! A sweep ends only what it read: empty input, partial files, files that are not
//! reports, `--complete` and its narrowing, and a report read twice. Every case runs the
//! real binary against a store that holds a cluster, and checks the store and the
//! `--format json` history.

mod support;

use std::io::Write as _;
use std::process::Stdio;

use serde_json::{Value, json};
use support::cli::{Run, Workspace, output};
use support::reports::{config_audit, digest, list, vuln, vulnerability_report};

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-01T11:00:00Z";

fn vulns() -> Vec<support::reports::Vuln> {
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln("CVE-2026-0002", "zlib", "LOW"),
    ]
}

/// The cluster: 3 vulnerability reports in 2 namespaces and a config audit.
fn cluster_items() -> Vec<Value> {
    vec![
        vulnerability_report("a", "api", "org/api", Some(&digest(1)), &vulns()),
        vulnerability_report("a", "web", "org/web", Some(&digest(2)), &vulns()),
        vulnerability_report("b", "db", "org/db", Some(&digest(3)), &vulns()),
        config_audit(
            "a",
            "api",
            &[(
                "KSV-0001",
                "MEDIUM",
                "Process can elevate its own privileges",
            )],
            "2026-10-01T08:00:00Z",
        ),
    ]
}

/// A workspace whose store holds the cluster (4 live reports).
fn with_cluster() -> Workspace {
    let ws = Workspace::new();
    let input = ws.write("cluster.json", &list(cluster_items()));
    let run = ws.scan_complete_at(T0, &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(live(&ws), 4);
    ws
}

fn live(ws: &Workspace) -> i64 {
    ws.count("SELECT COUNT(*) FROM reports WHERE gone_since IS NULL")
}

fn scan_stdin(ws: &Workspace, stdin: &[u8], extra: &[&str]) -> Run {
    scan_stdin_at(ws, T1, stdin, extra)
}

fn scan_stdin_at(ws: &Workspace, now: &str, stdin: &[u8], extra: &[&str]) -> Run {
    let mut args = vec!["scan", "--format", "json", "--now", now];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--from", "-"]);
    let mut child = ws
        .command(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin).expect("write stdin");
    drop(pipe);
    output(child.wait_with_output().expect("wait"))
}

/// Nothing was marked gone, the command failed with the empty-sweep code, and said why.
fn assert_refused_empty(ws: &Workspace, run: &Run, from: &str) {
    assert_eq!(run.code, 5, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["empty"], true);
    assert_eq!(s["empty_inputs"], json!([from]));
    assert_eq!(s["complete"], false);
    assert_eq!(s["history"]["reports_gone"], 0);
    assert_eq!(s["scope"]["covered"], json!([]));
    assert!(
        run.stderr.contains(&format!(
            "read 0 reports from {from}; nothing was marked gone"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(live(ws), 4);
}

#[test]
fn empty_stdin_marks_nothing_gone_and_fails() {
    let ws = with_cluster();
    let run = scan_stdin(&ws, b"", &[]);
    assert_refused_empty(&ws, &run, "-");
    // Even when the user says the input is a whole-cluster export.
    let run = scan_stdin(&ws, b"", &["--complete"]);
    assert_refused_empty(&ws, &run, "-");
    // Two days later (past the grace period) nothing has been resolved.
    let run = scan_stdin_at(&ws, "2026-11-03T11:00:00Z", b"", &[]);
    assert_refused_empty(&ws, &run, "-");
    assert_eq!(run.json()["history"]["reports_expired"], 0);
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM findings WHERE resolved_at IS NOT NULL"),
        0
    );
}

#[test]
fn empty_files_and_directories_mark_nothing_gone() {
    let ws = with_cluster();
    let empty_file = ws.write("empty.json", "");
    let run = ws.scan_with(T1, &[&empty_file], &["--complete"]);
    assert_refused_empty(&ws, &run, &empty_file.display().to_string());

    let dir = ws.path("exports");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let run = ws.scan_with(T1, &[&dir], &["--complete"]);
    assert_refused_empty(&ws, &run, &dir.display().to_string());

    // A directory with files that are not reports.
    ws.write("exports/notes.txt", "not a report");
    ws.write(
        "exports/pods.json",
        &list(vec![
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
        ]),
    );
    let run = ws.scan_with(T1, &[&dir], &["--complete"]);
    assert_refused_empty(&ws, &run, &dir.display().to_string());
}

#[test]
fn a_kubectl_list_that_came_back_empty_is_refused_unless_allowed() {
    let ws = with_cluster();
    let empty = list(vec![]);
    let run = scan_stdin(&ws, empty.as_bytes(), &["--complete"]);
    assert_refused_empty(&ws, &run, "-");
    // An empty cluster is possible: the user says so.
    let run = scan_stdin(&ws, empty.as_bytes(), &["--complete", "--allow-empty"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["empty"], true);
    assert_eq!(s["complete"], true);
    assert_eq!(s["history"]["reports_gone"], 4);
    assert_eq!(live(&ws), 0);
}

#[test]
fn a_partial_file_updates_what_it_holds_and_ends_nothing_else() {
    let ws = with_cluster();
    // The api report alone, with one vulnerability fixed.
    let api = vulnerability_report(
        "a",
        "api",
        "org/api",
        Some(&digest(1)),
        &[vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9")],
    );
    let input = ws.write("one.json", &serde_json::to_string(&api).expect("json"));
    let run = ws.scan_at(T1, &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["complete"], true);
    assert_eq!(s["scope"]["covered"], json!([]), "only what was read");
    assert_eq!(s["history"]["reports_gone"], 0);
    assert_eq!(
        s["history"]["findings_resolved"], 1,
        "the report it holds is updated"
    );
    assert_eq!(live(&ws), 4);
    assert!(
        ws.run(&["scan", "--from", "one.json"])
            .stdout
            .contains("only the reports read were updated; others are not marked gone"),
    );
    // Days later the others are still open: nothing started their grace period.
    let s = ws.scan_at("2026-11-04T11:00:00Z", &[&input]).json();
    assert_eq!(s["history"]["reports_expired"], 0);
    assert_eq!(live(&ws), 4);

    // The same file said to be a whole-cluster export ends the rest.
    let s = ws
        .scan_complete_at("2026-11-04T12:00:00Z", &[&input])
        .json();
    assert_eq!(s["history"]["reports_gone"], 3);
    assert_eq!(
        s["scope"]["covered"][0]["kinds"].as_array().map(Vec::len),
        Some(12)
    );
    assert_eq!(live(&ws), 1);
}

#[test]
fn a_ci_result_is_not_a_report_and_ends_nothing() {
    let ws = with_cluster();
    // A CycloneDX SBOM, as `trivy image -f cyclonedx` writes it: a CI sighting, no report.
    let sbom = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX", "specVersion": "1.6", "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
        "version": 1, "metadata": {"component": {"type": "container", "name": "nginx"}},
        "components": [{"type": "library", "name": "openssl", "version": "3.0.8"}]
    });
    let input = ws.write("bom.json", &sbom.to_string());
    // Trivy CLI JSON from a pipeline: its empty `Results` are not an empty report either.
    let cli = json!({"SchemaVersion": 2, "ArtifactName": "nginx:1.25", "ArtifactType": "container_image",
                     "Results": [{"Target": "nginx:1.25 (debian 12.4)", "Vulnerabilities": []}]});
    let cli_input = ws.write("trivy.json", &cli.to_string());
    for file in [&input, &cli_input] {
        let run = ws.scan_with(T1, &[file], &[]);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let s = run.json();
        assert_eq!(s["ci"]["files"], 1, "{}", run.stdout);
        assert_eq!(
            s["ci"]["unpinned"], 1,
            "no digest in either: {}",
            run.stdout
        );
        assert_eq!(
            s["empty_inputs"],
            json!([]),
            "a CI result is input: {}",
            run.stdout
        );
        assert_eq!(s["ignored"], json!([]));
        assert_eq!(s["reports"]["stored"], 0);
        assert_eq!(s["history"]["reports_gone"], 0);
        assert_eq!(live(&ws), 4);

        // --complete claims a whole-cluster export: refused, and nothing ends.
        let run = ws.scan_with(T1, &[file], &["--complete"]);
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("is a CI result"), "{}", run.stderr);
        assert_eq!(live(&ws), 4);
    }
}

#[test]
fn complete_can_be_narrowed_to_kinds_and_namespaces() {
    let ws = with_cluster();
    // An export of vulnerability reports only, and the db image went away: the config
    // audit is outside it and stays.
    let items: Vec<Value> = cluster_items()
        .into_iter()
        .filter(|i| {
            i["kind"] == "VulnerabilityReport"
                && i["metadata"]["name"] != "replicaset-db-7cc565547-app"
        })
        .collect();
    let input = ws.write("vulns.json", &list(items.clone()));
    let run = ws.scan_with(
        T1,
        &[&input],
        &["--complete", "--scope-kind", "vulnerabilityreports"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["history"]["reports_gone"], 1);
    assert_eq!(
        s["scope"]["covered"][0]["kinds"],
        json!(["VulnerabilityReport"])
    );
    assert_eq!(
        ws.count(
            "SELECT COUNT(*) FROM reports WHERE kind = 'ConfigAuditReport' AND gone_since IS NULL"
        ),
        1
    );

    // An export of namespace a only: namespace b is outside it.
    let ws = with_cluster();
    let input = ws.write("ns-a.json", &list(vec![cluster_items()[0].clone()]));
    let run = ws.scan_with(T1, &[&input], &["--complete", "--scope-namespace", "a"]);
    let s = run.json();
    assert_eq!(
        s["history"]["reports_gone"], 2,
        "web and the config audit in a"
    );
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM reports WHERE namespace = 'b' AND gone_since IS NULL"),
        1
    );

    // Narrowing without --complete is a usage error.
    let run = ws.run(&[
        "scan",
        "--scope-kind",
        "VulnerabilityReport",
        "--from",
        "ns-a.json",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = ws.run(&[
        "scan",
        "--complete",
        "--scope-kind",
        "Pod",
        "--from",
        "ns-a.json",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown report kind \"Pod\""),
        "{}",
        run.stderr
    );
}

#[test]
fn a_report_read_twice_keeps_the_newer_scan_whatever_the_order() {
    let old = vulnerability_report("a", "api", "org/api", Some(&digest(1)), &vulns());
    let mut new = vulnerability_report(
        "a",
        "api",
        "org/api",
        Some(&digest(1)),
        &[vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9")],
    );
    new["report"]["updateTimestamp"] = json!("2026-10-02T08:00:00Z");
    for (first, second) in [(&old, &new), (&new, &old)] {
        let ws = Workspace::new();
        let a = ws.write("1.json", &list(vec![old.clone()]));
        assert_eq!(ws.scan_at(T0, &[&a]).code, 0);
        let x = ws.write("x.json", &list(vec![first.clone()]));
        let y = ws.write("y.json", &list(vec![second.clone()]));
        let run = ws.scan_at(T1, &[&x, &y]);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let s = run.json();
        // The newer scan fixed zlib: resolved once, never reopened, whatever the order.
        assert_eq!(s["history"]["findings_resolved"], 1, "{s:#}");
        assert_eq!(s["history"]["findings_reopened"], 0);
        let d = &s["duplicates"][0];
        assert_eq!(
            d["report"],
            "VulnerabilityReport/a/replicaset-api-7cc565547-app"
        );
        let newer = if first == &new { "x.json" } else { "y.json" };
        assert!(d["kept"].as_str().is_some_and(|k| k.contains(newer)), "{d}");
        assert_eq!(
            ws.count("SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL"),
            1
        );
        // The same again in the other order changes nothing.
        let s = ws.scan_at("2026-11-01T12:00:00Z", &[&y, &x]).json();
        for k in ["findings_opened", "findings_resolved", "findings_reopened"] {
            assert_eq!(s["history"][k], 0, "{k}");
        }
    }
}

#[test]
fn text_output_escapes_control_characters_and_caps_skipped() {
    let ws = with_cluster();
    let mut hostile = vulnerability_report("a", "api", "org/api", Some(&digest(1)), &vulns());
    hostile["metadata"]["name"] = json!("evil\u{1b}[2J\u{1b}[31mname");
    hostile["report"]["artifact"] = json!("not an object");
    let mut items = vec![hostile];
    for i in 0..30 {
        let mut bad =
            vulnerability_report("a", &format!("b{i}"), "org/x", Some(&digest(9)), &vulns());
        bad["report"]["vulnerabilities"] = json!("not a list");
        items.push(bad);
    }
    let input = ws.write("bad.json", &list(items));
    let run = ws.run(&["scan", "--from", &input.display().to_string()]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(!run.stdout.contains('\u{1b}'), "{}", run.stdout);
    assert!(run.stdout.contains("evil\\u{1b}[2J"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("and 11 more (--format json lists them all)"),
        "{}",
        run.stdout
    );
    let s = ws.scan_at(T1, &[&input]).json();
    assert_eq!(s["skipped"].as_array().map(Vec::len), Some(31));
}

#[test]
fn a_closed_stdout_ends_the_command_without_a_panic() {
    let ws = with_cluster();
    let input = ws.path("cluster.json");
    // `scan … | head -c 0`: the reader is gone before anything is written.
    let mut child = ws
        .command(&[
            "scan",
            "--format",
            "json",
            "--from",
            &input.display().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = output(child.wait_with_output().expect("wait"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);

    // A full disk is an error that says so.
    if std::path::Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let out = output(
            ws.command(&["scan", "--from", &input.display().to_string()])
                .stdout(full)
                .output()
                .expect("run"),
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("cannot write to stdout"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn the_file_inputs_together_are_one_source() {
    let ws = with_cluster();
    // The file inputs are one source: empty alone is refused, and beside a file that
    // holds the cluster it is accepted (emptiness is judged per source, not per file).
    let full = ws.path("cluster.json");
    let empty = ws.write("empty.json", "");
    let run = ws.scan_with(T1, &[&empty], &["--complete"]);
    assert_eq!(run.code, 5);
    // With data from a file the sweep is not empty, so this is accepted as complete.
    let run = ws.scan_with(T1, &[&full, &empty], &["--complete"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["history"]["reports_gone"], 0);
}
