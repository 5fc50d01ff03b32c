//! How `scan` reacts to DefectDojo's (and its proxy's) error answers, through the real
//! binary: redirects, 404/405, 408, 413, a refusal the server later takes back, and a
//! `Retry-After` longer than the run should wait (for DefectDojo and for Slack).

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cli::{Run, Workspace};
use support::dojo::{DojoFake, Fault, results};
use support::reports::{Vuln, digest, list, spread, vuln, vulnerability_report};

const T0: &str = "2026-11-01T10:00:00Z";
const REIMPORT: &str = "/api/v2/reimport-scan/";

/// retry.max_backoff is 40 ms: a run never waits long on its own account.
const FAST_RETRY: &str = "cluster: prod\ndefectdojo:\n  timeout: 5s\n  retry:\n    max_attempts: 6\n    initial_backoff: 10ms\n    max_backoff: 40ms\n";

fn workspace_at(url: &str) -> Workspace {
    let mut ws = Workspace::new();
    ws.config(FAST_RETRY);
    ws.env.push(("DEFECTDOJO_URL".into(), url.into()));
    ws.env
        .push(("DEFECTDOJO_TOKEN".into(), DojoFake::TOKEN.into()));
    ws
}

fn workspace(dojo: &DojoFake) -> Workspace {
    workspace_at(&dojo.url())
}

fn set_url(ws: &mut Workspace, url: &str) {
    ws.env.retain(|(k, _)| k != "DEFECTDOJO_URL");
    ws.env.push(("DEFECTDOJO_URL".into(), url.into()));
}

fn vulns() -> Vec<Vuln> {
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln("CVE-2026-0001", "libcrypto3", "HIGH"),
        vuln("CVE-2026-0002", "zlib", "LOW"),
    ]
}

/// 10 workloads running 5 images (5 DefectDojo tests of 3 findings).
fn cluster() -> String {
    spread(10, 5, |_| vulns())
}

fn stopped(s: &Value) -> String {
    s["defectdojo"]["stopped"]
        .as_str()
        .unwrap_or_else(|| panic!("export did not stop: {s:#}"))
        .to_owned()
}

/// Runs `scan`, killing it (and failing) if it has not ended after `guard`: the old
/// behaviour being tested against is a run that waits for most of an hour. The guard is
/// far above what the run needs; it only turns a hang into a failure.
fn scan_guarded(ws: &Workspace, now: &str, input: &str, guard: Duration) -> Run {
    let out = ws.path("scan.stdout");
    let err = ws.path("scan.stderr");
    let mut child = ws
        .command(&["scan", "--format", "json", "--now", now, "--from", input])
        .stdout(Stdio::from(
            std::fs::File::create(&out).expect("stdout file"),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(&err).expect("stderr file"),
        ))
        .spawn()
        .expect("spawn trivy-digest");
    let deadline = Instant::now() + guard;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            child.kill().expect("kill");
            child.wait().expect("reap");
            panic!(
                "scan still waiting after {guard:?}; stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code,
        stdout: std::fs::read_to_string(&out).expect("stdout"),
        stderr: std::fs::read_to_string(&err).expect("stderr"),
    }
}

// ---- 7. Retry-After ----

#[test]
fn a_retry_after_longer_than_the_cap_leaves_the_push_queued_instead_of_stalling() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    dojo.push_fault_for(
        REIMPORT,
        Fault::TooManyRequests {
            retry_after_secs: 600,
        },
    );
    ws.write("c.json", &cluster());
    let run = scan_guarded(&ws, T0, "c.json", Duration::from_secs(300));
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["defectdojo"]["pending"], 5, "{s:#}");
    assert_eq!(s["defectdojo"]["refused"], 0);
    let why = stopped(&s);
    assert!(why.contains("HTTP 429"), "{why}");
    assert!(
        why.contains("asks to wait 600 s (Retry-After), longer than the 30 s waited within a run"),
        "{why}"
    );
    // The log says what is not waited for, and why.
    assert!(
        run.stderr.contains("asks to wait 600 s (Retry-After)"),
        "{}",
        run.stderr
    );
    assert_eq!(dojo.reimports().len(), 1, "no retry within the run");

    // The next run delivers everything once.
    let run = ws.scan_at("2026-11-01T10:05:00Z", &[&ws.path("c.json")]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(dojo.tests().len(), 5);
    assert_eq!(dojo.findings().len(), 15);
}

#[test]
fn a_long_slack_retry_after_leaves_the_alert_queued_instead_of_stalling() {
    let slack = support::slack::SlackFake::start();
    let mut ws = Workspace::new();
    ws.config(
        "cluster: prod\nalerts:\n  baseline_first_run: false\n  timeout: 5s\n  retry:\n    max_attempts: 3\n    initial_backoff: 50ms\n    max_backoff: 200ms\n  channels:\n    - name: security\n      slack_webhook_env: SLACK_SECURITY\n",
    );
    ws.env
        .push(("SLACK_SECURITY".into(), slack.hook("security")));
    slack.push_fault(support::slack::Fault::RateLimited {
        retry_after_secs: 600,
    });
    ws.write(
        "c.json",
        &list(vec![vulnerability_report(
            "shop",
            "api",
            "org/api",
            Some(&digest(0)),
            &[vuln("CVE-2026-0600", "pcre", "CRITICAL")],
        )]),
    );
    let run = scan_guarded(&ws, T0, "c.json", Duration::from_secs(300));
    assert!(
        run.code == 0 || run.code == 4,
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(slack.requests().len(), 1, "no retry within the run");
    assert!(slack.posted().is_empty());
    assert!(
        run.stderr
            .contains("Slack webhook asks to wait 600 s (Retry-After)"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(&slack.hook("security")),
        "the webhook is a secret"
    );
    // Still owed, and sent by the next run.
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM alert_items WHERE state <> 'sent'"),
        1
    );
    let run = ws.scan_at("2026-11-01T10:05:00Z", &[&ws.path("c.json")]);
    assert!(run.code == 0 || run.code == 4, "{}", run.stderr);
    assert_eq!(slack.wait_for(1, Duration::from_secs(5)).len(), 1);
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM alert_items WHERE state <> 'sent'"),
        0
    );
}

// ---- 8. Redirects and 4xx ----

#[test]
fn a_redirect_stops_the_export_naming_the_address_and_never_turns_the_post_into_a_get() {
    for status in [301u16, 302, 307, 308] {
        let dojo = DojoFake::start_blocking();
        let ws = workspace(&dojo);
        let moved = format!("{}/defectdojo{REIMPORT}", dojo.url());
        dojo.push_fault_for(
            REIMPORT,
            Fault::Redirect {
                status,
                location: moved.clone(),
            },
        );
        let input = ws.write("c.json", &cluster());
        let run = ws.scan_at(T0, &[&input]);
        assert_eq!(run.code, 4, "{status}: {}\n{}", run.stdout, run.stderr);
        let s = run.json();
        assert_eq!(
            stopped(&s),
            format!(
                "DefectDojo answered {status} to POST {}{REIMPORT}, redirecting to {moved}; set \
                 defectdojo.url to that address ({}/defectdojo/) (redirects are not followed: \
                 they would turn the POST into a GET)",
                dojo.url(),
                dojo.url()
            ),
            "{status}"
        );
        // A configuration error, not a refusal of the content: everything stays queued.
        assert_eq!(s["defectdojo"]["refused"], 0, "{status}: {s:#}");
        assert_eq!(s["defectdojo"]["pending"], 5, "{status}: {s:#}");
        assert_eq!(results(&s), vec!["pending"], "{status}");
        // One POST, answered with the redirect, and nothing sent to where it points. (The
        // owner check's look-ups come before it.)
        let log = dojo.log();
        let posts: Vec<_> = log.iter().filter(|r| r.path == REIMPORT).collect();
        assert_eq!(posts.len(), 1, "{status}: stops at the redirect: {log:?}");
        assert_eq!(posts[0].method, "POST");
        assert!(
            log.iter().all(|r| !r.path.starts_with("/defectdojo")),
            "{status}: not followed: {log:?}"
        );

        // Not sticky: once the address answers, everything is delivered.
        let run = ws.scan_at("2026-11-01T10:05:00Z", &[&input]);
        assert_eq!(run.code, 0, "{status}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(dojo.tests().len(), 5);
        assert_eq!(dojo.findings().len(), 15);
    }
}

#[test]
fn a_404_from_the_api_is_a_wrong_url_not_a_refusal() {
    let dojo = DojoFake::start_blocking();
    // A path prefix DefectDojo is not served under.
    let wrong = format!("{}/dojo", dojo.url());
    let mut ws = workspace_at(&wrong);
    let input = ws.write("c.json", &cluster());
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    let why = stopped(&s);
    assert!(
        // The first call is the owner check's product look-up.
        why.starts_with(&format!(
            "DefectDojo answered 404 to GET {wrong}/api/v2/products/?name_exact=prod&"
        )) && why.contains("(Not found.)"),
        "{why}"
    );
    assert!(why.contains("check defectdojo.url"), "{why}");
    assert_eq!(s["defectdojo"]["refused"], 0, "{s:#}");
    assert_eq!(s["defectdojo"]["pending"], 5);
    assert_eq!(dojo.log().len(), 1, "stops at the first answer");

    set_url(&mut ws, &dojo.url());
    let run = ws.scan_at("2026-11-01T10:05:00Z", &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(dojo.findings().len(), 15);
}

#[test]
fn a_405_stops_the_export_naming_the_url() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    dojo.push_fault_for(REIMPORT, Fault::Status(405));
    let input = ws.write("c.json", &cluster());
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    let why = stopped(&s);
    assert!(
        why.starts_with(&format!(
            "DefectDojo answered 405 to POST {}{REIMPORT}",
            dojo.url()
        )),
        "{why}"
    );
    assert_eq!(s["defectdojo"]["refused"], 0);
    assert_eq!(s["defectdojo"]["pending"], 5);
    let run = ws.scan_at("2026-11-01T10:05:00Z", &[&input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(dojo.findings().len(), 15);
}

#[test]
fn a_408_is_retried_like_a_server_error() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    dojo.push_fault_for(REIMPORT, Fault::Status(408));
    dojo.push_fault_for(REIMPORT, Fault::Status(408));
    let input = ws.write("c.json", &cluster());
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(results(&s), vec!["done"; 5]);
    assert_eq!(dojo.tests().len(), 5);
    assert_eq!(dojo.findings().len(), 15);
    assert_eq!(dojo.reimports().len(), 7, "two 408, then five applied");
}

#[test]
fn a_413_says_how_to_split_the_test_and_is_sent_again_later() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    dojo.push_fault_for(REIMPORT, Fault::Status(413));
    let input = ws.write("c.json", &cluster());
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    let refused: Vec<&Value> = s["defectdojo"]["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .filter(|t| t["result"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{s:#}");
    let error = refused[0]["error"].as_str().expect("error");
    for part in [
        "too large (HTTP 413, ",
        "KiB)",
        "defectdojo.test: '{{ namespace }}/{{ subject }}'",
        "client_max_body_size",
        "DD_SCAN_FILE_MAX_SIZE",
    ] {
        assert!(error.contains(part), "{part:?} missing in {error}");
    }
    let big = refused[0]["test"].as_str().expect("title").to_owned();
    assert_eq!(dojo.tests().len(), 4, "the other tests went through");

    // Within the retry wait it is not sent again; the summary says when it will be.
    dojo.clear_log();
    let run = ws.scan_at("2026-11-01T11:00:00Z", &[&input]);
    assert_eq!(run.code, 4);
    assert!(dojo.log().is_empty(), "{:?}", dojo.log());
    let still = run.json()["defectdojo"]["still_refused"].clone();
    assert!(
        still[0]
            .as_str()
            .expect("still refused")
            .contains("sent again from 2026-11-01T16:00:00Z"),
        "{still:#}"
    );

    // After it, the push goes again: the limit was raised meanwhile.
    let run = ws.scan_at("2026-11-01T16:00:00Z", &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["defectdojo"]["refused"], 0);
    assert!(
        s["defectdojo"]["tests"]
            .as_array()
            .expect("tests")
            .iter()
            .any(|t| t["test"] == big.as_str() && t["result"] == "done")
    );
    assert_eq!(dojo.tests().len(), 5);
    assert_eq!(dojo.findings().len(), 15);
}

/// One image, pushed while DefectDojo holds its product under another product type.
fn refused_setup(dojo: &DojoFake) -> (Workspace, std::path::PathBuf) {
    let ws = workspace(dojo);
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
    (ws, one)
}

#[test]
fn a_refusal_is_sent_again_after_a_wait_and_clears_when_the_server_takes_it() {
    let dojo = DojoFake::start_blocking();
    let (ws, one) = refused_setup(&dojo);
    let run = ws.scan_at("2026-11-01T11:00:00Z", &[&one]);
    assert_eq!(run.code, 4);
    assert_eq!(results(&run.json()), vec!["refused"]);

    // The admin moves the product to the product type trivy-digest sends.
    dojo.move_product("prod", "Kubernetes");
    dojo.clear_log();
    let run = ws.scan_at("2026-11-01T12:00:00Z", &[&one]);
    assert_eq!(run.code, 4, "still inside the retry wait");
    assert!(dojo.log().is_empty());

    let run = ws.scan_at("2026-11-01T17:00:00Z", &[&one]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(results(&s), vec!["done"], "{s:#}");
    assert_eq!(s["defectdojo"]["refused"], 0);
    assert_eq!(s["defectdojo"]["still_refused"], json!([]));
    assert_eq!(dojo.reimports().len(), 1);
    assert_eq!(ws.count("SELECT COUNT(*) FROM outbox"), 0);
}

#[test]
fn the_same_refusal_again_doubles_the_wait() {
    let dojo = DojoFake::start_blocking();
    let (ws, one) = refused_setup(&dojo);
    assert_eq!(ws.scan_at("2026-11-01T11:00:00Z", &[&one]).code, 4);
    dojo.clear_log();
    // 6 h later: sent again, refused again with the same message.
    let run = ws.scan_at("2026-11-01T17:00:00Z", &[&one]);
    assert_eq!(run.code, 4);
    assert_eq!(results(&run.json()), vec!["refused"]);
    assert_eq!(dojo.reimports().len(), 1);
    // Now 12 h: not at 23:00, at 05:00 the next day.
    dojo.clear_log();
    let run = ws.scan_at("2026-11-01T23:00:00Z", &[&one]);
    assert_eq!(run.code, 4);
    assert!(dojo.log().is_empty());
    let still = run.json()["defectdojo"]["still_refused"][0]
        .as_str()
        .expect("still refused")
        .to_owned();
    assert!(
        still.contains("refused 2 time(s) in a row; sent again from 2026-11-02T05:00:00Z"),
        "{still}"
    );
    let run = ws.scan_at("2026-11-02T05:00:00Z", &[&one]);
    assert_eq!(run.code, 4);
    assert_eq!(dojo.reimports().len(), 1);
}

#[test]
fn a_finding_deleted_in_defectdojo_is_not_a_wrong_url() {
    let dojo = DojoFake::start_blocking();
    let ws = workspace(&dojo);
    let input = ws.write("c.json", &cluster());
    assert_eq!(ws.scan_at(T0, &[&input]).code, 0);
    // Someone deletes a finding in DefectDojo; then only its severity changes here.
    let img0 = dojo
        .tests()
        .into_iter()
        .find(|t| t.title.as_deref() == Some("ghcr.io/org/img-0"))
        .expect("test of img-0")
        .id;
    let zlib = dojo
        .findings_of_test(img0)
        .into_iter()
        .find(|f| f.title.to_lowercase().starts_with("cve-2026-0002 zlib"))
        .expect("zlib finding");
    dojo.delete_finding(zlib.id);
    let rerated = list(
        (0..10u32)
            .map(|i| {
                let mut v = vulns();
                if i % 5 == 0 {
                    v[2] = vuln("CVE-2026-0002", "zlib", "CRITICAL");
                }
                let mut r = vulnerability_report(
                    &format!("ns-{}", i % 5),
                    &format!("app-{i}"),
                    &format!("org/img-{}", i % 5),
                    Some(&digest(i % 5)),
                    &v,
                );
                r["report"]["updateTimestamp"] = json!("2026-10-05T08:00:00Z");
                r
            })
            .collect(),
    );
    let input = ws.write("c.json", &rerated);
    dojo.clear_log();
    let run = ws.scan_at("2026-11-01T12:00:00Z", &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let patches: Vec<_> = dojo
        .log()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1, "{:?}", dojo.log());
    assert_eq!(patches[0].status, 404);
    // The next run reimports the test, which creates the finding again.
    dojo.clear_log();
    let run = ws.scan_at("2026-11-01T13:00:00Z", &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(dojo.reimports().len(), 1, "{:?}", dojo.log());
    let back = dojo
        .findings_of_test(zlib.test)
        .into_iter()
        .find(|f| f.title.to_lowercase().starts_with("cve-2026-0002 zlib") && f.active)
        .expect("zlib finding created again");
    assert_eq!(back.severity, "Critical");
}
