//! Alert channels limited to runtime or to CI (`origin`), through the real binary and
//! the Slack fake: a finding CI found first alerts `ci` and `any` channels once, and a
//! runtime channel when the cluster has it; an `any` channel is not told twice.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::cli::Workspace;
use support::reports::{digest, list, trivy_cli, vuln, vulnerability_report};
use support::slack::SlackFake;

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-02T10:00:00Z";
const T2: &str = "2026-11-03T10:00:00Z";
const T3: &str = "2026-11-04T10:00:00Z";

fn workspace(slack: &SlackFake) -> Workspace {
    let mut ws = Workspace::new();
    ws.config(
        "cluster: prod\nalerts:\n  batch_window: 1s\n  timeout: 5s\n  retry:\n    max_attempts: 3\n    \
         initial_backoff: 50ms\n    max_backoff: 200ms\n  channels:\n    \
         - name: security\n      slack_webhook_env: HOOK_SECURITY\n    \
         - name: gate\n      slack_webhook_env: HOOK_GATE\n      origin: ci\n    \
         - name: both\n      slack_webhook_env: HOOK_BOTH\n      origin: any\n",
    );
    for (var, name) in [
        ("HOOK_SECURITY", "security"),
        ("HOOK_GATE", "gate"),
        ("HOOK_BOTH", "both"),
    ] {
        ws.env.push((var.into(), slack.hook(name)));
    }
    ws
}

fn scan(ws: &Workspace, now: &str, name: &str, body: &str) -> Value {
    let input = ws.write(name, body);
    let run = ws.scan_at(now, &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run.json()
}

fn cluster(vulns: &[&'static str]) -> String {
    let v: Vec<_> = vulns
        .iter()
        .map(|id| vuln(id, "openssl", "CRITICAL").fixed("3.0.9"))
        .collect();
    list(vec![vulnerability_report(
        "shop",
        "api",
        "org/api",
        Some(&digest(1)),
        &v,
    )])
}

fn texts(slack: &SlackFake, hook: &str) -> Vec<String> {
    let mut t: Vec<String> = slack.posted_to(hook).iter().map(|m| m.text()).collect();
    t.sort();
    t
}

fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn a_finding_ci_found_first_alerts_ci_channels_once_and_runtime_ones_when_it_runs() {
    let slack = SlackFake::start();
    let ws = workspace(&slack);
    // The baseline: what the cluster (and CI, nothing yet) knows is not news.
    let s = scan(&ws, T0, "c0.json", &cluster(&["CVE-2026-0001"]));
    assert!(
        s["alerts"]["baseline"].as_u64().is_some(),
        "{:#}",
        s["alerts"]
    );

    // A pipeline scans the running digest (CVE-0200 is news: the operator's database has
    // not listed it) and a new image that runs nowhere yet.
    let api = trivy_cli(
        "org/api",
        &digest(1),
        "2026-11-02T09:00:00Z",
        &[
            vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
            vuln("CVE-2026-0200", "openssl", "CRITICAL").fixed("3.0.9"),
        ],
    );
    let new = trivy_cli(
        "org/new",
        &digest(7),
        "2026-11-02T09:00:00Z",
        &[
            vuln("CVE-2026-0300", "zlib", "CRITICAL"),
            vuln("CVE-2026-0301", "zlib", "HIGH"),
        ],
    );
    let a = ws.write("api.trivy.json", &api);
    let n = ws.write("new.trivy.json", &new);
    let run = ws.scan_at(T1, &[&a, &n]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["alerts"]["new_ci_findings"], 3, "{:#}", s["alerts"]);
    slack.wait_for(4, Duration::from_secs(5));
    settle();
    let expected = vec![
        "[prod] 1 new CRITICAL in ghcr.io/org/api (seen in CI)".to_owned(),
        "[prod] 1 new CRITICAL in ghcr.io/org/new (seen in CI)".to_owned(),
    ];
    assert_eq!(texts(&slack, "gate"), expected);
    assert_eq!(texts(&slack, "both"), expected);
    assert!(texts(&slack, "security").is_empty(), "runtime only");
    let gate = slack.posted_to("gate");
    let body = |needle: &str| {
        gate.iter()
            .find(|m| m.text().contains(needle))
            .and_then(|m| m.body.as_ref())
            .map(|b| b.to_string())
            .unwrap_or_default()
    };
    let api_body = body("org/api");
    assert!(api_body.contains("CVE-2026-0200"), "{api_body}");
    assert!(
        !api_body.contains("CVE-2026-0001"),
        "the cluster's: {api_body}"
    );
    assert!(
        api_body.contains("shop/Deployment/api"),
        "the digest runs there: {api_body}"
    );
    let new_body = body("org/new");
    assert!(new_body.contains("CVE-2026-0300"), "{new_body}");
    assert!(
        !new_body.contains("CVE-2026-0301"),
        "below CRITICAL: {new_body}"
    );
    assert!(
        new_body.contains("not running in the cluster: seen in CI"),
        "{new_body}"
    );

    // The operator's database catches up: the cluster has CVE-0200 now. The runtime
    // channel hears of it; the `any` channel was told already; the CI one is not runtime.
    let s = scan(
        &ws,
        T2,
        "c2.json",
        &cluster(&["CVE-2026-0001", "CVE-2026-0200"]),
    );
    assert_eq!(s["alerts"]["new_findings"], 1, "{:#}", s["alerts"]);
    slack.wait_for(5, Duration::from_secs(5));
    settle();
    assert_eq!(
        texts(&slack, "security"),
        ["[prod] 1 new CRITICAL in ghcr.io/org/api"]
    );
    assert_eq!(texts(&slack, "both").len(), 2, "not twice");
    assert_eq!(texts(&slack, "gate").len(), 2);

    // The same CI results again: nothing anywhere.
    let run = ws.scan_at(T3, &[&a, &n]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["alerts"]["new_ci_findings"], Value::Null);
    settle();
    assert_eq!(slack.posted().len(), 5, "{:?}", slack.posted());
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM ci_alert_items WHERE state = 'sent'"),
        4,
        "two findings, two CI channels"
    );
}

#[test]
fn a_ci_channel_takes_no_namespace_globs() {
    let slack = SlackFake::start();
    let ws = workspace(&slack);
    ws.config(
        "cluster: prod\nalerts:\n  channels:\n    - name: gate\n      slack_webhook_env: HOOK_GATE\n      \
         origin: ci\n      include_namespaces: [shop]\n",
    );
    let run = ws.run(&["config", "check"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("alerts.channels.gate")
            && run.stderr.contains("a CI result has no namespace"),
        "{}",
        run.stderr
    );
    ws.config(
        "cluster: prod\nalerts:\n  channels:\n    - name: gate\n      slack_webhook_env: HOOK_GATE\n      \
         origin: sometimes\n",
    );
    let run = ws.run(&["config", "check"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("`sometimes`, expected one of runtime, ci, any at line 6"),
        "{}",
        run.stderr
    );
}

/// An ignore entry without a namespace holds a CI finding back until it expires; then it
/// alerts, once. One with a namespace never applies to CI (a CI result has none).
#[test]
fn ignore_entries_hold_ci_alerts_until_they_expire() {
    let slack = SlackFake::start();
    let mut ws = Workspace::new();
    ws.config(
        "cluster: prod\nalerts:\n  batch_window: 1s\n  timeout: 5s\n  ignore:\n    \
         - id: CVE-2026-0300\n      reason: not reachable in the build\n      expires: 2026-11-03\n    \
         - id: CVE-2026-0400\n      namespace: shop\n      reason: shop only\n  channels:\n    \
         - name: gate\n      slack_webhook_env: HOOK_GATE\n      origin: ci\n",
    );
    ws.env.push(("HOOK_GATE".into(), slack.hook("gate")));
    scan(&ws, T0, "c0.json", &cluster(&["CVE-2026-0001"]));
    let new = ws.write(
        "new.trivy.json",
        &trivy_cli(
            "org/new",
            &digest(7),
            "2026-11-02T09:00:00Z",
            &[
                vuln("CVE-2026-0300", "zlib", "CRITICAL"),
                vuln("CVE-2026-0400", "curl", "CRITICAL"),
            ],
        ),
    );
    let run = ws.scan_at(T1, &[&new]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = run.json();
    assert_eq!(s["alerts"]["ignored"], 1, "{:#}", s["alerts"]);
    slack.wait_for(1, Duration::from_secs(5));
    settle();
    let posted = slack.posted_to("gate");
    assert_eq!(posted.len(), 1);
    let body = posted[0]
        .body
        .as_ref()
        .map(|b| b.to_string())
        .unwrap_or_default();
    assert!(body.contains("CVE-2026-0400"), "a namespaced entry: {body}");
    assert!(!body.contains("CVE-2026-0300"), "held back: {body}");

    // Past the expiry: released and sent, once.
    let run = ws.scan_at(T3, &[&new]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["alerts"]["released"], 1, "{}", run.stdout);
    slack.wait_for(2, Duration::from_secs(5));
    settle();
    let posted = slack.posted_to("gate");
    assert_eq!(posted.len(), 2);
    let body = posted[1]
        .body
        .as_ref()
        .map(|b| b.to_string())
        .unwrap_or_default();
    assert!(body.contains("CVE-2026-0300"), "{body}");
    let run = ws.scan_at("2026-11-05T10:00:00Z", &[&new]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    settle();
    assert_eq!(slack.posted_to("gate").len(), 2);
}
