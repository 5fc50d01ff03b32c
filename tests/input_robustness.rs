//! Reading input through the real binary: pipes, FIFOs, symlinked folders, multi-document
//! YAML with a bad document, byte-order marks and UTF-16, starboard-era reports and
//! wrong-typed cosmetic fields. Whatever is read is stored; whatever is not is named in
//! `skipped`, and then the sweep is incomplete.

mod support;

use std::io::Write;
use std::process::Stdio;

use serde_json::{Value, json};
use support::cli::{Workspace, output};
use support::reports::{digest, list, vuln, vulnerability_report};

const T0: &str = "2026-11-01T10:00:00Z";

fn report(workload: &str, n: u32) -> Value {
    vulnerability_report(
        "shop",
        workload,
        &format!("org/{workload}"),
        Some(&digest(n)),
        &[
            vuln("CVE-2026-0001", "openssl", "CRITICAL"),
            vuln("CVE-2026-0002", "zlib", "LOW"),
        ],
    )
}

fn two_reports() -> String {
    list(vec![report("api", 1), report("web", 2)])
}

fn skipped(s: &Value) -> Vec<(String, String)> {
    s["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|e| {
            (
                e["origin"].as_str().unwrap_or_default().to_owned(),
                e["error"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_fifo_is_read() {
    // `--from <(cat export.json)` is a FIFO; it used to read 0 files, silently.
    let ws = Workspace::new();
    let fifo = ws.path("export");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, two_reports()))
    };
    let run = ws.scan_at(T0, &[&fifo]);
    // Checked before joining: a writer nobody reads blocks forever.
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.json();
    assert_eq!(s["files"], 1);
    assert_eq!(s["reports"]["stored"], 2);
    assert_eq!(s["complete"], true);
    writer.join().expect("writer").expect("write fifo");
}

#[test]
fn dev_stdin_as_a_pipe_is_read() {
    let ws = Workspace::new();
    let mut child = ws
        .command(&[
            "scan",
            "--format",
            "json",
            "--now",
            T0,
            "--from",
            "/dev/stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(two_reports().as_bytes())
        .expect("write stdin");
    drop(stdin);
    let run = output(child.wait_with_output().expect("wait"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.json();
    assert_eq!(s["reports"]["stored"], 2);
    assert_eq!(s["complete"], true);
}

#[test]
fn a_symlinked_folder_is_read_once() {
    let ws = Workspace::new();
    ws.write("real/reports/a.json", &two_reports());
    let export = ws.path("export");
    std::fs::create_dir(&export).expect("mkdir");
    std::os::unix::fs::symlink(
        ws.path("real/reports"),
        export.join("vulnerability_reports"),
    )
    .expect("link");
    // A loop back to the top is not followed twice.
    std::os::unix::fs::symlink(&export, export.join("loop")).expect("link");
    let run = ws.scan_at(T0, &[&export]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.json();
    assert_eq!(s["files"], 1);
    assert_eq!(s["reports"]["stored"], 2);
}

#[test]
fn a_bad_yaml_document_keeps_the_documents_after_it() {
    // JSON is YAML: three documents, the middle one broken.
    let ws = Workspace::new();
    let text = format!(
        "{}\n---\nkind: [unclosed\n---\n{}\n",
        report("api", 1),
        report("web", 2)
    );
    let input = ws.write("export.yaml", &text);
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let s = run.json();
    // Before: only the first was stored and the third was never mentioned.
    assert_eq!(s["reports"]["stored"], 2);
    let skipped = skipped(&s);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].0.ends_with("export.yaml document 2"),
        "{skipped:?}"
    );
    assert!(
        skipped[0].1.starts_with("invalid YAML at line 3, column "),
        "{skipped:?}"
    );
    assert_eq!(s["complete"], false);
}

#[test]
fn a_utf8_bom_is_accepted_and_utf16_is_named() {
    let ws = Workspace::new();
    let bom = ws.write("bom.json", &format!("\u{FEFF}{}", two_reports()));
    let run = ws.scan_at(T0, &[&bom]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["reports"]["stored"], 2);

    // What PowerShell's `>` writes: UTF-16LE with a BOM.
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(two_reports().encode_utf16().flat_map(u16::to_le_bytes));
    let ps = ws.path("ps.json");
    std::fs::write(&ps, utf16).expect("write");
    let run = ws.scan_at(T0, &[&ps]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let s = run.json();
    let skipped = skipped(&s);
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].1.starts_with(
            "file is UTF-16LE (what PowerShell's `>` writes), not UTF-8; convert it with \
             `Get-Content in.json | Set-Content -Encoding utf8 out.json` or \
             `iconv -f UTF-16LE -t UTF-8"
        ),
        "{skipped:?}"
    );
    assert_eq!(s["complete"], false);
}

#[test]
fn starboard_era_reports_are_read_or_refused_never_empty() {
    let ws = Workspace::new();
    let audit = json!({
        "apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "ConfigAuditReport",
        "metadata": {"name": "replicaset-nginx-6d4cf56db6", "namespace": "default",
            "labels": {"starboard.resource.kind": "ReplicaSet",
                       "starboard.resource.name": "nginx-6d4cf56db6",
                       "starboard.resource.namespace": "default"}},
        "report": {"updateTimestamp": "2021-05-20T12:38:10Z",
            "scanner": {"name": "Polaris", "vendor": "Fairwinds Ops", "version": "3.2"},
            "podChecks": [{"checkID": "hostNetworkSet", "message": "Host network is configured",
                           "success": false, "severity": "warning", "category": "Networking"}],
            "containerChecks": {"nginx": [{"checkID": "cpuLimitsMissing", "message": "CPU limits should be set",
                                           "success": false, "severity": "danger", "category": "Resources"}]}}
    });
    let compliance = json!({
        "apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "ClusterComplianceReport",
        "metadata": {"name": "nsa"},
        "status": {"summary": {"failCount": 33, "passCount": 113},
                   "updateTimestamp": "2022-03-27T07:06:00Z"}
    });
    let input = ws.write("old.json", &list(vec![audit, compliance]));
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let s = run.json();
    // Before: both stored with 0 findings.
    assert_eq!(s["reports"]["stored"], 1);
    assert_eq!(s["findings"]["before_dedup"]["total"], 2);
    assert_eq!(s["findings"]["before_dedup"]["high"], 1);
    let workload: String = ws
        .db()
        .query_row("SELECT name FROM workloads", [], |r| r.get(0))
        .expect("one workload");
    assert_eq!(workload, "nginx", "named after the starboard labels");
    let skipped = skipped(&s);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0]
            .1
            .starts_with("the report claims 33 failed checks but it has no"),
        "{skipped:?}"
    );
}

#[test]
fn a_wrong_typed_cosmetic_field_keeps_the_report() {
    let ws = Workspace::new();
    let mut r = report("api", 1);
    // `scanner.version` written as a YAML mapping.
    r["report"]["scanner"]["version"] = json!({"major": 0, "minor": 48});
    r["report"]["vulnerabilities"][0]["title"] = json!(["not", "a", "string"]);
    let input = ws.write("odd.json", &list(vec![r]));
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.json();
    assert_eq!(s["reports"]["stored"], 1);
    assert_eq!(s["findings"]["before_dedup"]["total"], 2);
    assert!(
        run.stderr.contains(
            "2 cosmetic field(s) of the wrong type read as absent: report.scanner.version, \
             report.vulnerabilities[0].title"
        ),
        "{}",
        run.stderr
    );
}
