//! The generic JSON webhook channel through the real binary (`scan`, `alert --test`,
//! `config check`), against a strict webhook receiver (tests/support/webhook.rs).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::cli::Workspace;
use support::reports::{Vuln, digest, list, vuln, vulnerability_report};
use support::webhook::{Fault, WebhookFake};

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-02T10:00:00Z";
const T2: &str = "2026-11-03T10:00:00Z";
const AUTH: &str = "Bearer auth-secret-0123456789";
const FAST: &str = "  batch_window: 1s\n  timeout: 5s\n  retry:\n    max_attempts: 3\n    initial_backoff: 50ms\n    max_backoff: 200ms\n";

fn base_vulns() -> Vec<Vuln> {
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln("CVE-2026-0002", "zlib", "HIGH"),
    ]
}

fn upgraded_vulns() -> Vec<Vuln> {
    let mut v = base_vulns();
    v.push(vuln("CVE-2026-0100", "libxml2", "CRITICAL").fixed("2.12.7"));
    v
}

fn report(ns: &str, workload: &str, image: &str, d: u32, vulns: &[Vuln]) -> Value {
    vulnerability_report(ns, workload, image, Some(&digest(d)), vulns)
}

/// A channel `siem` with the receiver's URL in a file and the Authorization value in
/// the environment.
fn workspace(hook: &WebhookFake, extra_alerts: &str) -> Workspace {
    let mut ws = Workspace::new();
    let url_file = ws.write("siem-url", &format!("{}\n", hook.url("url-secret-token")));
    ws.config(&format!(
        "cluster: prod\nalerts:\n{FAST}{extra_alerts}  channels:\n    - name: siem\n      webhook:\n        url_file: {}\n        authorization_env: SIEM_AUTH\n",
        url_file.display()
    ));
    ws.env.push(("SIEM_AUTH".into(), AUTH.into()));
    hook.require_authorization(AUTH);
    ws
}

fn scan(ws: &Workspace, now: &str, items: Vec<Value>) -> (Value, String) {
    let input = ws.write("cluster.json", &list(items));
    let run = ws.scan_at(now, &[&input]);
    assert!(
        run.code == 0 || run.code == 4,
        "scan failed ({}):\n{}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    let all = format!("{}{}", run.stdout, run.stderr);
    (run.json(), all)
}

fn assert_no_secret(text: &str) {
    assert!(
        !text.contains("url-secret-token") && !text.contains("auth-secret"),
        "a secret was printed: {text}"
    );
}

fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn a_new_digest_posts_one_documented_json_document_and_rescans_post_nothing() {
    let hook = WebhookFake::start();
    let ws = workspace(&hook, "");
    let v1 = report("shop", "api", "org/api", 0, &base_vulns());
    let (s, out) = scan(&ws, T0, vec![v1]);
    assert!(
        s["alerts"]["baseline"].as_u64().is_some(),
        "{:#}",
        s["alerts"]
    );
    assert_no_secret(&out);
    settle();
    assert!(hook.requests().is_empty(), "the baseline sends nothing");

    let v2 = report("shop", "api", "org/api", 1, &upgraded_vulns());
    let (s, out) = scan(&ws, T1, vec![v2.clone()]);
    assert_eq!(s["alerts"]["new_findings"], 1, "{:#}", s["alerts"]);
    assert_no_secret(&out);
    let got = hook.wait_for(1, Duration::from_secs(5));
    let r = &got[0];
    assert_eq!(r.path, "/hooks/url-secret-token");
    assert_eq!(r.authorization.as_deref(), Some(AUTH));
    assert!(
        r.content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json")),
        "{r:?}"
    );
    let b = r.body.as_ref().expect("body");
    assert_eq!(b["version"], 1);
    assert_eq!(b["kind"], "image");
    assert_eq!(b["cluster"], "prod");
    assert_eq!(b["title"], "1 new CRITICAL in ghcr.io/org/api");
    assert!(
        b["id"].as_str().is_some_and(|i| i.starts_with("alert-")),
        "{b:#}"
    );
    assert_eq!(b["image"]["repository"], "ghcr.io/org/api");
    assert_eq!(b["image"]["digests"][0]["digest"], digest(1).as_str());
    assert_eq!(b["namespaces"], serde_json::json!(["shop"]));
    let findings = b["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "only the new finding: {b:#}");
    let f = &findings[0];
    assert_eq!(f["id"], "CVE-2026-0100");
    assert_eq!(f["family"], "vulnerability");
    assert_eq!(f["severity"], "CRITICAL");
    assert_eq!(f["package"], "libxml2");
    assert_eq!(f["installed"], "1.0.0");
    assert_eq!(f["fixed"], "2.12.7");
    assert_eq!(b["more"], 0);
    assert_eq!(b["workloads"][0]["namespace"], "shop");
    assert_eq!(b["workloads"][0]["kind"], "Deployment");
    assert_eq!(b["workloads"][0]["name"], "api");
    assert_eq!(b["more_workloads"], 0);
    assert!(
        b["defectdojo_url"].is_null(),
        "no DefectDojo configured: {b:#}"
    );

    // Rescans of the same cluster (each a new process): nothing more.
    let (s, _) = scan(&ws, T2, vec![v2.clone()]);
    assert_eq!(s["alerts"]["new_findings"], 0, "{:#}", s["alerts"]);
    scan(&ws, "2026-11-04T10:00:00Z", vec![v2]);
    settle();
    assert_eq!(hook.requests().len(), 1, "{:?}", hook.requests());
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM alert_items WHERE state = 'sent' AND destination = 'channel:siem:webhook'"),
        1
    );
}

#[test]
fn a_flood_becomes_one_digest_document_within_the_hourly_cap() {
    let hook = WebhookFake::start();
    let ws = workspace(&hook, "  baseline_first_run: false\n  max_per_hour: 5\n");
    let v = vec![vuln("CVE-2026-0400", "busybox", "CRITICAL")];
    let items: Vec<Value> = (0..12)
        .map(|i| {
            report(
                "shop",
                &format!("app-{i}"),
                &format!("org/img-{i:02}"),
                i,
                &v,
            )
        })
        .collect();
    let (s, _) = scan(&ws, T0, items);
    assert_eq!(s["alerts"]["pending"], 0, "{:#}", s["alerts"]);
    let got = hook.wait_for(1, Duration::from_secs(5));
    settle();
    assert_eq!(hook.requests().len(), 1, "one digest, not 12 documents");
    let b = got[0].body.as_ref().expect("body");
    assert_eq!(b["kind"], "digest");
    assert_eq!(b["title"], "12 images with 12 new CRITICAL findings");
    assert_eq!(b["images"].as_array().map(Vec::len), Some(10));
    assert_eq!(b["more"], 2);
    assert_eq!(b["images"][0]["counts"]["CRITICAL"], 1);
    assert_eq!(b["images"][0]["findings"][0], "CVE-2026-0400");
}

#[test]
fn rate_limits_and_server_errors_are_retried_as_the_receiver_asks() {
    let hook = WebhookFake::start();
    let ws = workspace(&hook, "  baseline_first_run: false\n");
    hook.push_fault(Fault::RateLimited {
        retry_after_secs: 1,
    });
    hook.push_fault(Fault::Status(500));
    scan(
        &ws,
        T0,
        vec![report(
            "shop",
            "api",
            "org/api",
            0,
            &[vuln("CVE-2026-0600", "pcre", "CRITICAL")],
        )],
    );
    hook.wait_for(1, Duration::from_secs(5));
    let reqs = hook.requests();
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 500, 204], "{reqs:?}");
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After honoured: {waited:?}"
    );
}

#[test]
fn a_refusal_is_not_retried_and_names_the_receivers_answer_without_secrets() {
    let hook = WebhookFake::start();
    let ws = workspace(&hook, "  baseline_first_run: false\n");
    hook.require_authorization("Bearer another-value");
    let (s, out) = scan(
        &ws,
        T0,
        vec![report(
            "shop",
            "api",
            "org/api",
            0,
            &[vuln("CVE-2026-0700", "curl", "CRITICAL")],
        )],
    );
    settle();
    assert_eq!(
        hook.requests().len(),
        1,
        "a 401 is not retried: {:?}",
        hook.requests()
    );
    assert_eq!(hook.requests()[0].status, 401);
    assert_eq!(s["alerts"]["pending"], 1, "{:#}", s["alerts"]);
    let err = s["alerts"]["messages"][0]["error"].as_str().unwrap_or("");
    assert_eq!(
        err, "HTTP 401: missing or wrong Authorization",
        "{:#}",
        s["alerts"]
    );
    assert_no_secret(&out);

    // Fixed on the receiver's side: the next run delivers what stayed queued.
    hook.require_authorization(AUTH);
    scan(
        &ws,
        T1,
        vec![report(
            "shop",
            "api",
            "org/api",
            0,
            &[vuln("CVE-2026-0700", "curl", "CRITICAL")],
        )],
    );
    let got = hook.wait_for(1, Duration::from_secs(5));
    assert_eq!(
        got[0].body.as_ref().expect("b")["findings"][0]["id"],
        "CVE-2026-0700"
    );
}

#[test]
fn alert_test_reaches_channel_and_team_webhooks_and_config_check_redacts_them() {
    let hook = WebhookFake::start();
    let mut ws = workspace(&hook, "");
    let url_file = ws.path("siem-url");
    ws.config(&format!(
        "cluster: prod\nalerts:\n{FAST}  channels:\n    - name: siem\n      webhook:\n        url_file: {}\n        authorization_env: SIEM_AUTH\nteams:\n  routes:\n    payments:\n      webhook:\n        url_env: PAY_HOOK\n        authorization_env: SIEM_AUTH\n",
        url_file.display()
    ));
    ws.env
        .push(("PAY_HOOK".into(), hook.url("team-url-secret-token")));
    let ok = ws.run(&["alert", "--test"]);
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout.contains("ok      siem (webhook)"),
        "{}",
        ok.stdout
    );
    assert!(
        ok.stdout.contains("ok      team payments (webhook)"),
        "{}",
        ok.stdout
    );
    let got = hook.wait_for(2, Duration::from_secs(5));
    let b = got[0].body.as_ref().expect("body");
    assert_eq!(b["kind"], "test");
    assert_eq!(b["title"], "trivy-digest test alert");
    assert_eq!(b["destination"], "siem (webhook)");
    assert_eq!(got[1].path, "/hooks/team-url-secret-token");

    // A receiver that refuses: FAILED with its answer, no URL.
    hook.require_authorization("Bearer rotated");
    let bad = ws.run(&["alert", "--test"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stdout
            .contains("FAILED  siem (webhook): HTTP 401: missing or wrong Authorization"),
        "{}",
        bad.stdout
    );
    let all = format!("{}{}{}{}", ok.stdout, ok.stderr, bad.stdout, bad.stderr);
    assert_no_secret(&all);
    assert!(!all.contains("/hooks/"), "{all}");

    let check = ws.run(&["config", "check"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    let all = format!("{}{}", check.stdout, check.stderr);
    assert_no_secret(&all);
    assert!(!all.contains("/hooks/"), "{all}");
    assert!(all.contains("url: <redacted>"), "{all}");
    assert!(all.contains("authorization: <redacted>"), "{all}");
    assert!(all.contains("authorization_env: SIEM_AUTH"), "{all}");
}

#[test]
fn webhook_configuration_errors_name_the_field() {
    let ws = Workspace::new();
    for (yaml, want) in [
        (
            "alerts:\n  channels:\n    - name: siem\n      webhook:\n        authorization_env: WH_NOT_A_URL\n",
            "alerts.channels.siem.webhook: set url_file or url_env",
        ),
        (
            "alerts:\n  channels:\n    - name: siem\n      webhook:\n        url: https://inline.example/secret-inline\n",
            "unknown field `url`",
        ),
        (
            "alerts:\n  channels:\n    - name: siem\n      webhook:\n        url_env: WH_NOT_A_URL\n",
            "alerts.channels.siem.webhook: the webhook URL is not an http(s) URL",
        ),
        (
            "teams:\n  routes:\n    pay:\n      webhook:\n        url_env: WH_UNSET_VARIABLE\n",
            "teams.routes.pay.webhook: environment variable WH_UNSET_VARIABLE is not set",
        ),
    ] {
        ws.config(yaml);
        let mut cmd = ws.command(&["config", "check"]);
        cmd.env("WH_NOT_A_URL", "not a url secret-inline");
        let run = support::cli::output(cmd.output().expect("run"));
        assert_ne!(run.code, 0, "{yaml}");
        assert!(run.stderr.contains(want), "{yaml}: {}", run.stderr);
        assert!(!run.stderr.contains("secret-inline"), "{}", run.stderr);
    }
}

/// The fake refuses what a strict receiver refuses, so the tests above prove the body.
#[test]
fn the_receiver_fake_is_strict() {
    let hook = WebhookFake::start();
    let url = hook.url("t");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let statuses = rt.block_on(async {
        let c = reqwest::Client::new();
        let plain = c.post(&url).header("content-type", "text/plain").body("{}");
        let shapeless = c
            .post(&url)
            .json(&serde_json::json!({"version": 1, "kind": "image"}));
        let test = serde_json::json!({"version": 1, "kind": "test", "cluster": "c",
            "title": "t", "destination": "d"});
        let mut out = Vec::new();
        for r in [plain, shapeless, c.post(&url).json(&test)] {
            let resp = r.send().await.expect("send");
            out.push((
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            ));
        }
        hook.require_authorization("Bearer x");
        let resp = c.post(&url).json(&test).send().await.expect("send");
        out.push((resp.status().as_u16(), String::new()));
        out
    });
    assert_eq!(statuses[0].0, 415, "{statuses:?}");
    assert_eq!(statuses[1].0, 400, "{statuses:?}");
    assert!(statuses[1].1.contains("malformed payload"), "{statuses:?}");
    assert_eq!(statuses[2].0, 204, "{statuses:?}");
    assert_eq!(statuses[3].0, 401, "{statuses:?}");
}
