//! DefectDojo export through the real binary against the DefectDojo fake.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cli::Workspace;
use support::dojo::{DojoFake, Fault};
use support::reports::{Vuln, digest, list, spread, vuln, vulnerability_report};

const T0: &str = "2026-11-01T10:00:00Z";

const FAST_RETRY: &str = "cluster: prod\ndefectdojo:\n  timeout: 5s\n  retry:\n    max_attempts: 6\n    initial_backoff: 10ms\n    max_backoff: 40ms\n";

fn workspace(dojo: &DojoFake) -> Workspace {
    let mut ws = Workspace::new();
    ws.config(FAST_RETRY);
    ws.env.extend(dojo.env());
    ws
}

fn vulns() -> Vec<Vuln> {
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln("CVE-2026-0001", "libcrypto3", "HIGH"),
        vuln("CVE-2026-0002", "zlib", "LOW"),
    ]
}

/// 50 workloads running 5 images; image `i` has `per_image(i)` as its vulnerabilities.
fn cluster(per_image: impl Fn(u32) -> Vec<Vuln>) -> String {
    spread(50, 5, per_image)
}

fn tests_by_title(dojo: &DojoFake) -> Vec<(String, u64)> {
    let mut t: Vec<(String, u64)> = dojo
        .tests()
        .into_iter()
        .map(|t| (t.title.unwrap_or_default(), t.id))
        .collect();
    t.sort();
    t
}

fn test_id(dojo: &DojoFake, title: &str) -> u64 {
    tests_by_title(dojo)
        .into_iter()
        .find(|(t, _)| t == title)
        .unwrap_or_else(|| panic!("no test {title}: {:?}", tests_by_title(dojo)))
        .1
}

fn active(dojo: &DojoFake, test: u64) -> usize {
    dojo.findings_of_test(test)
        .iter()
        .filter(|f| f.active)
        .count()
}

fn outcome<'a>(summary: &'a Value, title: &str) -> &'a Value {
    summary["defectdojo"]["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .find(|t| t["test"] == title)
        .unwrap_or_else(|| panic!("no outcome for {title}: {:#}", summary["defectdojo"]))
}

#[test]
fn first_scan_creates_then_an_identical_scan_costs_no_call() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let input = ws.write("c.json", &cluster(|_| vulns()));
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();

    // One test per image repository, each holding its three findings once.
    let titles: Vec<String> = tests_by_title(&dojo).into_iter().map(|t| t.0).collect();
    assert_eq!(
        titles,
        (0..5)
            .map(|i| format!("ghcr.io/org/img-{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(dojo.findings().len(), 15);
    assert_eq!(dojo.products().len(), 1);
    assert_eq!(dojo.products()[0].name, "prod");
    assert_eq!(dojo.engagements().len(), 1);
    let o = outcome(&s, "ghcr.io/org/img-2");
    assert_eq!(o["result"], "done");
    assert_eq!(o["new_test"], true);
    assert_eq!(o["created"], 3);
    assert_eq!(o["patched"], 0, "a new finding holds what we sent");

    // Every reimport carried test_title and service, equal, and the constant type.
    for r in dojo.reimports() {
        assert_eq!(r.form.get("test_title"), r.form.get("service"));
        assert_eq!(
            r.form.get("scan_type").map(String::as_str),
            Some("Generic Findings Import")
        );
        assert_eq!(
            r.form.get("auto_create_context").map(String::as_str),
            Some("true")
        );
        let file: Value = serde_json::from_slice(r.file.as_deref().expect("file")).expect("json");
        assert_eq!(file["type"], "Trivy Digest Vulnerabilities");
    }
    // The finding lists the ten workloads running its image.
    let f = &dojo.findings_of_test(test_id(&dojo, "ghcr.io/org/img-2"))[0];
    assert!(
        f.impact.as_deref().unwrap_or("").contains("Workloads (10)"),
        "{:?}",
        f.impact
    );

    dojo.clear_log();
    let s = ws.scan_at("2026-11-02T10:00:00Z", &[&input]).json();
    assert_eq!(
        dojo.log().len(),
        0,
        "steady state makes no API call: {:?}",
        dojo.log()
    );
    assert_eq!(s["defectdojo"]["plan"]["unchanged"], 5);
}

#[test]
fn one_fixed_vulnerability_closes_exactly_one_finding() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let input = ws.write("c.json", &cluster(|_| vulns()));
    assert_eq!(ws.scan_at(T0, &[&input]).code, 0);
    dojo.clear_log();
    let fixed = |i: u32| {
        let mut v = vulns();
        if i == 1 {
            v.remove(2);
        }
        v
    };
    let input = ws.write("c.json", &cluster(fixed));
    let run = ws.scan_at("2026-11-02T10:00:00Z", &[&input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.json();
    assert_eq!(dojo.reimports().len(), 1, "only the changed test is pushed");
    let o = outcome(&s, "ghcr.io/org/img-1");
    assert_eq!(
        (
            o["closed"].as_u64(),
            o["untouched"].as_u64(),
            o["created"].as_u64()
        ),
        (Some(1), Some(2), Some(0))
    );
    let closed: Vec<_> = dojo
        .findings()
        .into_iter()
        .filter(|f| f.is_mitigated)
        .collect();
    assert_eq!(closed.len(), 1);
    assert!(
        closed[0]
            .title
            .to_lowercase()
            .starts_with("cve-2026-0002 zlib"),
        "{}",
        closed[0].title
    );
}

#[test]
fn a_partly_rescanned_image_keeps_a_finding_until_no_report_lists_it() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let input = ws.write("c.json", &cluster(|_| vulns()));
    assert_eq!(ws.scan_at(T0, &[&input]).code, 0);
    // One of img-1's ten reports was rescanned and no longer lists zlib; nine still do.
    let mut v: Value = serde_json::from_str(&cluster(|_| vulns())).expect("json");
    v["items"][1]["report"]["vulnerabilities"]
        .as_array_mut()
        .expect("list")
        .remove(2);
    let input = ws.write("c.json", &serde_json::to_string(&v).expect("json"));
    dojo.clear_log();
    assert_eq!(ws.scan_at("2026-11-02T10:00:00Z", &[&input]).code, 0);
    assert_eq!(dojo.reimports().len(), 0);
    assert_eq!(dojo.findings().iter().filter(|f| f.is_mitigated).count(), 0);
}

#[test]
fn re_rated_severity_and_published_fix_are_patched_into_defectdojo() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let input = ws.write("c.json", &cluster(|_| vulns()));
    assert_eq!(ws.scan_at(T0, &[&input]).code, 0);
    dojo.clear_log();
    let rerated = |i: u32| {
        let mut v = vulns();
        if i == 3 {
            v[2] = vuln("CVE-2026-0002", "zlib", "CRITICAL").fixed("1.3.1");
        }
        v
    };
    let mut v: Value = serde_json::from_str(&cluster(rerated)).expect("json");
    for item in v["items"].as_array_mut().expect("items") {
        item["report"]["updateTimestamp"] = json!("2026-10-05T08:00:00Z");
    }
    let input = ws.write("c.json", &serde_json::to_string(&v).expect("json"));
    let run = ws.scan_at("2026-11-02T10:00:00Z", &[&input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The hash fields did not move: no reimport, one PATCH.
    assert_eq!(dojo.reimports().len(), 0, "{:?}", dojo.log());
    let patches: Vec<_> = dojo
        .log()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1);
    let zlib = dojo
        .findings_of_test(test_id(&dojo, "ghcr.io/org/img-3"))
        .into_iter()
        .find(|f| f.title.to_lowercase().starts_with("cve-2026-0002"))
        .expect("zlib finding");
    assert_eq!(zlib.severity, "Critical");
    assert_eq!(zlib.fix_version.as_deref(), Some("1.3.1"));
    assert_eq!(zlib.fix_available, Some(true));
    assert!(zlib.active);
    // And it stays so: the next identical sweep makes no call at all.
    dojo.clear_log();
    ws.scan_at("2026-11-03T10:00:00Z", &[&input]);
    assert!(dojo.log().is_empty(), "{:?}", dojo.log());
}

#[test]
fn a_new_finding_after_a_reimport_of_matched_ones_gets_current_values() {
    // A reimport never refreshes matched findings; the exporter patches them afterwards.
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let input = ws.write("c.json", &cluster(|_| vulns()));
    assert_eq!(ws.scan_at(T0, &[&input]).code, 0);
    let changed = |i: u32| {
        let mut v = vulns();
        if i == 0 {
            v[1] = vuln("CVE-2026-0001", "libcrypto3", "CRITICAL").fixed("3.0.9");
            v.push(vuln("CVE-2026-0003", "busybox", "MEDIUM"));
        }
        v
    };
    let mut v: Value = serde_json::from_str(&cluster(changed)).expect("json");
    for item in v["items"].as_array_mut().expect("items") {
        item["report"]["updateTimestamp"] = json!("2026-10-05T08:00:00Z");
    }
    let input = ws.write("c.json", &serde_json::to_string(&v).expect("json"));
    let s = ws.scan_at("2026-11-02T10:00:00Z", &[&input]).json();
    let o = outcome(&s, "ghcr.io/org/img-0");
    assert_eq!(
        (
            o["created"].as_u64(),
            o["untouched"].as_u64(),
            o["patched"].as_u64()
        ),
        (Some(1), Some(3), Some(1))
    );
    let libcrypto = dojo
        .findings()
        .into_iter()
        .find(|f| {
            f.test == test_id(&dojo, "ghcr.io/org/img-0")
                && f.component_name.as_deref() == Some("libcrypto3")
        })
        .expect("libcrypto3");
    assert_eq!(libcrypto.severity, "Critical");
    assert_eq!(libcrypto.fix_version.as_deref(), Some("3.0.9"));
}

#[test]
fn a_report_that_fails_to_parse_closes_nothing() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let input = ws.write("c.json", &cluster(|_| vulns()));
    assert_eq!(ws.scan_at(T0, &[&input]).code, 0);
    let mut v: Value = serde_json::from_str(&cluster(|_| vulns())).expect("json");
    // Every report of img-4 is unreadable this time.
    for item in v["items"].as_array_mut().expect("items") {
        if item["report"]["artifact"]["repository"] == "org/img-4" {
            item["report"]["vulnerabilities"][0]["severity"] = json!(["HIGH"]);
        }
    }
    let input = ws.write("c.json", &serde_json::to_string(&v).expect("json"));
    dojo.clear_log();
    let run = ws.scan_at("2026-11-05T10:00:00Z", &[&input]);
    assert_eq!(run.code, 3);
    assert_eq!(run.json()["skipped"].as_array().map(Vec::len), Some(10));
    assert!(dojo.log().is_empty(), "{:?}", dojo.log());
    assert_eq!(active(&dojo, test_id(&dojo, "ghcr.io/org/img-4")), 3);
}

#[test]
fn an_image_leaves_defectdojo_only_after_the_grace_period() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let input = ws.write("c.json", &cluster(|_| vulns()));
    assert_eq!(ws.scan_complete_at(T0, &[&input]).code, 0);
    let mut v: Value = serde_json::from_str(&cluster(|_| vulns())).expect("json");
    v["items"]
        .as_array_mut()
        .expect("items")
        .retain(|i| i["report"]["artifact"]["repository"] != "org/img-2");
    let input = ws.write("c.json", &serde_json::to_string(&v).expect("json"));
    dojo.clear_log();
    ws.scan_complete_at("2026-11-01T20:00:00Z", &[&input]);
    assert!(
        dojo.reimports().is_empty(),
        "within the grace period nothing changes"
    );
    // Gone since 20:00 (when a sweep first missed it); the 24h grace ends at 20:00 next day.
    ws.scan_complete_at("2026-11-02T19:30:00Z", &[&input]);
    assert!(dojo.reimports().is_empty());
    let s = ws
        .scan_complete_at("2026-11-02T20:30:00Z", &[&input])
        .json();
    assert_eq!(dojo.reimports().len(), 1);
    assert_eq!(s["defectdojo"]["plan"]["emptied"], 1);
    let o = outcome(&s, "ghcr.io/org/img-2");
    assert_eq!(o["closed"], 3);
    assert_eq!(active(&dojo, test_id(&dojo, "ghcr.io/org/img-2")), 0);
    dojo.clear_log();
    ws.scan_complete_at("2026-11-03T20:30:00Z", &[&input]);
    assert!(dojo.log().is_empty(), "an emptied test is not pushed again");
}

#[test]
fn an_upgrade_closes_what_it_fixed_once_the_old_digest_is_gone() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let old = vulnerability_report("shop", "api", "org/api", Some(&digest(1)), &vulns());
    let input = ws.write("c.json", &list(vec![old.clone()]));
    assert_eq!(ws.scan_complete_at(T0, &[&input]).code, 0);
    // Rollout: a new ReplicaSet runs a new digest without the zlib vulnerability; the old
    // ReplicaSet's report is gone.
    let mut new = vulnerability_report("shop", "api", "org/api", Some(&digest(2)), &vulns()[..2]);
    new["metadata"]["name"] = json!("replicaset-api-5d4f8b9c6-app");
    new["metadata"]["ownerReferences"][0]["name"] = json!("api-5d4f8b9c6");
    let input = ws.write("c.json", &list(vec![new]));
    dojo.clear_log();
    let s = ws
        .scan_complete_at("2026-11-01T11:00:00Z", &[&input])
        .json();
    assert_eq!(s["workloads"], 1);
    // The old digest is within its grace period: the union still holds zlib, but the
    // impact text (images) changed, so only a patch may go out.
    assert!(dojo.reimports().is_empty());
    let s = ws
        .scan_complete_at("2026-11-02T12:00:00Z", &[&input])
        .json();
    let o = outcome(&s, "ghcr.io/org/api");
    assert_eq!(
        (o["closed"].as_u64(), o["untouched"].as_u64()),
        (Some(1), Some(2))
    );
}

#[test]
fn defectdojo_down_at_first_then_everything_arrives_exactly_once() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    dojo.push_fault_for("/api/v2/reimport-scan/", Fault::Status(503));
    dojo.push_fault_for("/api/v2/reimport-scan/", Fault::Status(502));
    dojo.push_fault_for("/api/v2/reimport-scan/", Fault::DropBeforeProcessing);
    dojo.push_fault_for(
        "/api/v2/reimport-scan/",
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    let input = ws.write("c.json", &cluster(|_| vulns()));
    let started = Instant::now();
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(dojo.tests().len(), 5);
    assert_eq!(dojo.findings().len(), 15, "no finding twice");
    let applied = dojo
        .reimports()
        .into_iter()
        .filter(|r| r.status == 201)
        .count();
    assert_eq!(applied, 5, "each test applied once");
}

#[test]
fn an_unreachable_defectdojo_leaves_the_work_queued_for_the_next_run() {
    let dojo = DojoFake::start_blocking();
    let mut ws = workspace(&dojo);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    ws.env.retain(|(k, _)| k != "DEFECTDOJO_URL");
    ws.env.push(("DEFECTDOJO_URL".into(), dead));
    let input = ws.write("c.json", &cluster(|_| vulns()));
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 4, "{}", run.stdout);
    let s = run.json();
    assert_eq!(s["defectdojo"]["pending"], 5);
    assert!(
        s["defectdojo"]["stopped"]
            .as_str()
            .expect("stopped")
            .contains("cannot connect"),
        "{s:#}"
    );

    ws.env.retain(|(k, _)| k != "DEFECTDOJO_URL");
    ws.env.push(("DEFECTDOJO_URL".into(), dojo.url()));
    let run = ws.scan_at("2026-11-01T11:00:00Z", &[&input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(dojo.findings().len(), 15);
    assert_eq!(dojo.reimports().len(), 5);
}

#[test]
fn a_process_killed_between_sending_and_acknowledging_repeats_only_that_push() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let input = ws.write("c.json", &cluster(|_| vulns()));
    dojo.push_fault_for("/api/v2/reimport-scan/", Fault::HangAfterProcessing);
    let mut child = ws
        .command(&["scan", "--format", "json", "--now", T0, "--from", "c.json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while dojo.reimports().is_empty() || dojo.reimports()[0].form.is_empty() {
        assert!(Instant::now() < deadline, "the first push never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    // DefectDojo applied the push; the client never got the answer. Kill it now.
    std::thread::sleep(Duration::from_millis(200));
    child.kill().expect("kill");
    child.wait().expect("wait");
    let hung_title = dojo.reimports()[0].form["test_title"].clone();
    assert_eq!(dojo.reimports().len(), 1, "nothing else was in flight");

    let run = ws.scan_at("2026-11-01T10:05:00Z", &[&input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sent: Vec<String> = dojo
        .reimports()
        .iter()
        .map(|r| r.form["test_title"].clone())
        .collect();
    assert_eq!(sent.len(), 6, "{sent:?}");
    assert_eq!(
        sent.iter().filter(|t| **t == hung_title).count(),
        2,
        "only the push in flight repeats"
    );
    assert_eq!(dojo.findings().len(), 15);
    let o = outcome(&run.json(), &hung_title).clone();
    assert_eq!(
        o["untouched"], 3,
        "the repeat changed nothing in DefectDojo"
    );
}

#[test]
fn a_refused_token_is_not_retried_and_is_reported() {
    let dojo = DojoFake::start_blocking();
    let mut ws = workspace(&dojo);
    ws.env.retain(|(k, _)| k != "DEFECTDOJO_TOKEN");
    ws.env.push((
        "DEFECTDOJO_TOKEN".into(),
        "0000000000000000000000000000000000000000".into(),
    ));
    let input = ws.write("c.json", &cluster(|_| vulns()));
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 4);
    assert_eq!(dojo.log().len(), 1, "one call, no retry: {:?}", dojo.log());
    let s = run.json();
    assert!(
        s["defectdojo"]["stopped"]
            .as_str()
            .expect("stopped")
            .contains("HTTP 403): Invalid token."),
        "{s:#}"
    );
    assert!(
        !run.stdout
            .contains("0000000000000000000000000000000000000000")
    );
    assert!(
        !run.stderr
            .contains("0000000000000000000000000000000000000000")
    );
}

#[test]
fn a_refused_payload_is_kept_with_the_server_message_and_not_resent() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    // The product exists under another product type: DefectDojo answers 400.
    ws.config(&format!("{FAST_RETRY}  product_type: Other\n"));
    let one = ws.write(
        "one.json",
        &list(vec![vulnerability_report(
            "a",
            "x",
            "org/x",
            Some(&digest(1)),
            &vulns(),
        )]),
    );
    assert_eq!(ws.scan_at(T0, &[&one]).code, 0);
    ws.config(FAST_RETRY);
    dojo.clear_log();
    let run = ws.scan_at("2026-11-01T11:00:00Z", &[&one]);
    assert_eq!(run.code, 4, "{}", run.stdout);
    let s = run.json();
    let o = outcome(&s, "ghcr.io/org/x");
    assert_eq!(o["result"], "refused");
    assert!(
        o["error"]
            .as_str()
            .expect("error")
            .contains("conflict with the supplied product type"),
        "{o:#}"
    );
    assert_eq!(dojo.reimports().len(), 1, "a 400 is not retried");

    dojo.clear_log();
    let run = ws.scan_at("2026-11-01T12:00:00Z", &[&one]);
    assert_eq!(run.code, 4);
    assert!(
        dojo.log().is_empty(),
        "the same refused content is not sent again"
    );
    assert_eq!(
        run.json()["defectdojo"]["still_refused"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // --resync sends it again.
    dojo.clear_log();
    let run = ws.run(&[
        "scan",
        "--resync",
        "--format",
        "json",
        "--now",
        "2026-11-01T13:00:00Z",
        "--from",
        "one.json",
    ]);
    assert_eq!(run.code, 4);
    assert_eq!(dojo.reimports().len(), 1);
}

#[test]
fn first_pushes_into_a_new_engagement_do_not_race() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    ws.config(&FAST_RETRY.replace("defectdojo:\n", "defectdojo:\n  concurrency: 5\n"));
    dojo.set_create_latency(Duration::from_millis(300));
    let input = ws.write("c.json", &cluster(|_| vulns()));
    assert_eq!(ws.scan_at(T0, &[&input]).code, 0);
    assert_eq!(dojo.engagements().len(), 1, "{:?}", dojo.engagements());
    assert_eq!(dojo.products().len(), 1);
    assert_eq!(dojo.tests().len(), 5);
}

#[test]
fn dry_run_writes_the_requests_and_sends_nothing() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let input = ws.write("c.json", &cluster(|_| vulns()));
    let out = ws.path("dry");
    let run = ws.run(&[
        "scan",
        "--format",
        "json",
        "--from",
        "c.json",
        "--dry-run",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(dojo.log().is_empty());
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .expect("dry-run dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 10);
    assert_eq!(
        files[0],
        "0001-vulnerability-ghcr.io_org_img-0.findings.json"
    );
    let form: Value = serde_json::from_slice(
        &std::fs::read(out.join("0001-vulnerability-ghcr.io_org_img-0.form.json")).expect("form"),
    )
    .expect("json");
    assert!(
        form["fields"]
            .as_array()
            .expect("fields")
            .contains(&json!(["service", "ghcr.io/org/img-0"]))
    );
    let findings: Value =
        serde_json::from_slice(&std::fs::read(out.join(&files[0])).expect("findings"))
            .expect("json");
    assert_eq!(findings["findings"].as_array().map(Vec::len), Some(3));
    // Nothing was recorded: a real run afterwards still pushes everything.
    assert_eq!(ws.count("SELECT COUNT(*) FROM findings"), 0);
    assert_eq!(ws.scan_at(T0, &[&input]).code, 0);
    assert_eq!(dojo.reimports().len(), 5);
}

#[test]
fn risk_acceptance_is_read_back_and_survives_reimports() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let input = ws.write("c.json", &cluster(|_| vulns()));
    assert_eq!(ws.scan_at(T0, &[&input]).code, 0);
    let test = test_id(&dojo, "ghcr.io/org/img-0");
    let accepted = dojo.findings_of_test(test)[0].clone();
    dojo.accept_risk(&[accepted.id]);
    // A change in the same test triggers a reimport and the read-back.
    let changed = |i: u32| {
        let mut v = vulns();
        if i == 0 {
            v.push(vuln("CVE-2026-0009", "curl", "HIGH"));
        }
        v
    };
    let input = ws.write("c.json", &cluster(changed));
    assert_eq!(ws.scan_at("2026-11-02T10:00:00Z", &[&input]).code, 0);
    let still = dojo
        .findings()
        .into_iter()
        .find(|f| f.id == accepted.id)
        .expect("finding");
    assert!(
        still.risk_accepted,
        "present in the report: untouched, still accepted"
    );
    let uid = accepted.unique_id_from_tool.clone().expect("uid");
    let flag: i64 = ws
        .db()
        .query_row(
            "SELECT risk_accepted FROM dojo_findings WHERE uid = ?1",
            [&uid],
            |r| r.get(0),
        )
        .expect("dojo_findings row");
    assert_eq!(flag, 1);
}

#[test]
fn namespace_annotations_route_images_to_team_products() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    ws.config(&format!(
        "{FAST_RETRY}  product: '{{{{ annotation:trivy-digest.io/product | cluster }}}}'\n"
    ));
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns-1", "annotations": {"trivy-digest.io/product": "payments"}}});
    let mut items: Vec<Value> = serde_json::from_str::<Value>(&cluster(|_| vulns())).expect("json")
        ["items"]
        .as_array()
        .expect("items")
        .clone();
    items.push(ns);
    let input = ws.write("c.json", &list(items));
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut products: Vec<String> = dojo.products().into_iter().map(|p| p.name).collect();
    products.sort();
    assert_eq!(products, ["payments", "prod"]);
    assert_eq!(run.json()["reports"]["namespaces"], 1);
}

/// The variables trivy-dojo-report-operator's users already have in a Secret work as
/// they are, with a notice.
#[test]
fn peer_importers_variable_names_are_accepted_with_a_notice() {
    let dojo = DojoFake::start_blocking();
    let mut ws = Workspace::new();
    ws.config(FAST_RETRY);
    ws.env.push(("DEFECT_DOJO_URL".into(), dojo.url()));
    ws.env
        .push(("DEFECT_DOJO_API_KEY".into(), DojoFake::TOKEN.into()));
    let input = ws.write("c.json", &cluster(|_| vulns()));
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        tests_by_title(&dojo).len(),
        5,
        "one test per image repository"
    );
    assert!(
        run.stderr
            .contains("reading DEFECT_DOJO_URL as DEFECTDOJO_URL"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("reading DEFECT_DOJO_API_KEY as DEFECTDOJO_TOKEN")
    );
    let check = ws.run(&["config", "check"]);
    assert!(!check.stdout.contains(DojoFake::TOKEN), "{}", check.stdout);
    // Ours win when both are set.
    ws.env
        .push(("DEFECTDOJO_URL".into(), "http://127.0.0.1:9".into()));
    let check = ws.run(&["config", "check"]);
    assert!(
        check.stdout.contains("http://127.0.0.1:9"),
        "{}",
        check.stdout
    );
    assert!(
        check
            .stderr
            .contains("DEFECT_DOJO_URL is set beside DEFECTDOJO_URL")
    );
}
