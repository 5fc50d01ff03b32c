//! Alerts through the real binary (`scan` with a config, `alert --test`), against a real
//! SMTP server (aiosmtpd), the Slack webhook fake and the DefectDojo fake.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cli::Workspace;
use support::dojo::DojoFake;
use support::reports::{Vuln, digest, list, vuln, vulnerability_report};
use support::slack::{Fault, SlackFake};
use support::smtp::SmtpSink;

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-02T10:00:00Z";
const T2: &str = "2026-11-03T10:00:00Z";
const T3: &str = "2026-11-04T10:00:00Z";
const T4: &str = "2026-11-05T10:00:00Z";
const T5: &str = "2026-11-06T10:00:00Z";

const HOSTILE: &str = "<!channel> <script>alert(1)</script> <http://evil.example|click> & co";

fn base_vulns() -> Vec<Vuln> {
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln("CVE-2026-0002", "zlib", "HIGH"),
    ]
}

/// `base_vulns` plus a new CRITICAL whose title tries to ping and to inject markup.
fn upgraded_vulns() -> Vec<Vuln> {
    let mut v = base_vulns();
    v.push(vuln("CVE-2026-0100", "libxml2", "CRITICAL").fixed("2.12.7"));
    v
}

fn report(ns: &str, workload: &str, image: &str, d: u32, vulns: &[Vuln]) -> Value {
    let mut r = vulnerability_report(ns, workload, image, Some(&digest(d)), vulns);
    if let Some(list) = r["report"]["vulnerabilities"].as_array_mut() {
        for v in list {
            if v["vulnerabilityID"] == "CVE-2026-0100" {
                v["title"] = json!(HOSTILE);
            }
        }
    }
    r
}

/// The same report after a rollout: another ReplicaSet (and report name), same image.
fn rolled_out(r: &Value, hash: &str) -> Value {
    let text = serde_json::to_string(r)
        .expect("json")
        .replace("7cc565547", hash);
    serde_json::from_str(&text).expect("json")
}

fn namespace(name: &str, team: Option<&str>) -> Value {
    let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    if let Some(t) = team {
        ns["metadata"]["annotations"] = json!({"trivy-digest.io/team": t});
    }
    ns
}

const FAST: &str = "  batch_window: 1s\n  timeout: 5s\n  retry:\n    max_attempts: 3\n    initial_backoff: 50ms\n    max_backoff: 200ms\n";

fn workspace(
    slack: &SlackFake,
    sink: Option<&SmtpSink>,
    extra_alerts: &str,
    extra: &str,
) -> Workspace {
    let mut ws = Workspace::new();
    let mut yaml = format!(
        "cluster: prod\nalerts:\n{FAST}{extra_alerts}  channels:\n    - name: security\n      slack_webhook_env: SLACK_SECURITY\n"
    );
    if let Some(s) = sink {
        yaml.push_str(
            "    - name: mail\n      email: [sec@example.com, 'Team <team@example.com>']\n",
        );
        yaml.push_str(&s.config_yaml());
    }
    yaml.push_str(extra);
    ws.config(&yaml);
    ws.env
        .push(("SLACK_SECURITY".into(), slack.hook("security")));
    ws
}

fn scan(ws: &Workspace, now: &str, items: Vec<Value>) -> Value {
    let input = ws.write("cluster.json", &list(items));
    let run = ws.scan_at(now, &[&input]);
    assert!(
        run.code == 0 || run.code == 4,
        "scan failed ({}):\n{}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    run.json()
}

fn settle() {
    // Nothing is sent in the background after `scan` exits; a short pause lets a
    // (wrong) late delivery show up before counting.
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn first_sweep_is_the_baseline_then_only_genuinely_new_findings_alert_once() {
    let slack = SlackFake::start();
    let sink = SmtpSink::start();
    let ws = workspace(&slack, Some(&sink), "", "");

    let shop_v1 = report("shop", "api", "org/api", 0, &base_vulns());
    let pay_v1 = report("pay", "checkout", "org/api", 0, &base_vulns());
    let s = scan(&ws, T0, vec![shop_v1.clone(), pay_v1.clone()]);
    assert!(
        s["alerts"]["baseline"].as_u64().is_some(),
        "{:#}",
        s["alerts"]
    );
    settle();
    assert!(slack.requests().is_empty(), "baseline sends nothing");
    assert!(sink.messages().is_empty(), "baseline sends nothing");

    // The shop's deployment rolls out a new digest that brings a new CRITICAL.
    let shop_v2 = report("shop", "api", "org/api", 1, &upgraded_vulns());
    let s = scan(&ws, T1, vec![shop_v2.clone(), pay_v1.clone()]);
    assert_eq!(s["alerts"]["new_findings"], 1, "{:#}", s["alerts"]);
    let posted = slack.wait_for(1, Duration::from_secs(5));
    let mails = sink.wait_for(1, Duration::from_secs(5));

    // Slack: one message, within Block Kit's limits (the fake answered ok), and the
    // hostile title neither mentions nor links anything.
    let m = &posted[0];
    assert_eq!(m.text(), "[prod] 1 new CRITICAL in ghcr.io/org/api");
    assert!(m.mentions.is_empty(), "{:?}", m.mentions);
    for l in &m.links {
        assert!(
            l.starts_with("https://avd.aquasec.com/"),
            "unexpected link {l}"
        );
    }
    let body = m.body.as_ref().expect("body").to_string();
    assert!(body.contains("&lt;!channel&gt;"), "{body}");
    assert!(body.contains("&lt;script&gt;"), "{body}");
    assert!(
        !body.contains("<!channel>") && !body.contains("<script"),
        "{body}"
    );
    assert!(body.contains("CVE-2026-0100"), "{body}");
    assert!(
        !body.contains("CVE-2026-0001"),
        "old findings are not new: {body}"
    );
    assert!(body.contains("shop/Deployment/api"), "{body}");
    assert!(body.contains(&digest(1)[..19]), "{body}");

    // Email: both recipients, a clear subject, text and HTML parts, HTML escaped.
    let e = &mails[0];
    assert_eq!(e.rcpt_tos, ["sec@example.com", "team@example.com"]);
    assert_eq!(e.subject, "[prod] 1 new CRITICAL in ghcr.io/org/api");
    assert_eq!(e.content_type, "multipart/alternative");
    let text = e.text.as_deref().expect("text part");
    let html = e.html.as_deref().expect("html part");
    assert!(text.contains("CVE-2026-0100"), "{text}");
    assert!(text.contains("libxml2 1.0.0 → 2.12.7"), "{text}");
    assert!(text.contains(&digest(1)), "{text}");
    assert!(text.contains("shop/Deployment/api"), "{text}");
    assert!(
        !text.contains("pay/Deployment/checkout"),
        "digest 1 does not run there: {text}"
    );
    assert!(text.contains(HOSTILE), "the text part is plain: {text}");
    assert!(
        html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(e.message_id.starts_with("<alert-"), "{}", e.message_id);

    // A restart (every scan is a new process) with the same input: nothing.
    let s = scan(&ws, T2, vec![shop_v2.clone(), pay_v1.clone()]);
    assert_eq!(s["alerts"]["new_findings"], 0);
    // The report deleted, then re-created by the operator: nothing.
    scan(&ws, T3, vec![pay_v1.clone()]);
    scan(&ws, T4, vec![shop_v2.clone(), pay_v1.clone()]);
    // A rollout to another ReplicaSet with the same digest: nothing.
    let s = scan(
        &ws,
        T5,
        vec![
            rolled_out(&shop_v2, "5f9d8b7c6"),
            rolled_out(&pay_v1, "6d4c7b2x9"),
        ],
    );
    assert_eq!(s["alerts"]["new_findings"], 0, "{:#}", s["alerts"]);
    settle();
    assert_eq!(slack.posted().len(), 1, "{:?}", slack.posted());
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM alert_items WHERE state = 'sent'"),
        2,
        "one finding, two channels"
    );
}

#[test]
fn team_routes_get_alerts_for_their_namespaces_only() {
    let slack = SlackFake::start();
    let mut ws = workspace(
        &slack,
        None,
        "  baseline_first_run: false\n",
        "teams:\n  routes:\n    payments:\n      slack_webhook_env: SLACK_PAYMENTS\n",
    );
    let pay_hook = slack.hook("payments");
    ws.env.push(("SLACK_PAYMENTS".into(), pay_hook));
    let v = vec![vuln("CVE-2026-0200", "glibc", "CRITICAL")];
    scan(
        &ws,
        T0,
        vec![
            namespace("pay", Some("payments")),
            namespace("shop", None),
            report("shop", "web", "org/shared", 0, &v),
            report("pay", "checkout", "org/shared", 0, &v),
            report("shop", "cart", "org/cart", 0, &v),
        ],
    );
    let all = slack.wait_for(3, Duration::from_secs(5));
    settle();
    assert_eq!(slack.posted().len(), 3, "{:?}", all);
    let security = slack.posted_to("security");
    assert_eq!(security.len(), 2, "both images to the security channel");
    let team = slack.posted_to("payments");
    assert_eq!(
        team.len(),
        1,
        "only the image running in the team's namespace"
    );
    let body = team[0].body.as_ref().expect("body").to_string();
    assert!(body.contains("ghcr.io/org/shared"), "{body}");
    assert!(body.contains("pay/Deployment/checkout"), "{body}");
    assert!(
        !body.contains("shop/"),
        "a team sees its namespaces only: {body}"
    );
}

#[test]
fn a_team_never_sees_the_digests_running_only_in_other_teams_namespaces() {
    let slack = SlackFake::start();
    let sink = SmtpSink::start();
    let mut extra = String::from(
        "teams:\n  routes:\n    payments:\n      slack_webhook_env: SLACK_PAYMENTS\n      email: [payments@example.com]\n",
    );
    extra.push_str(&sink.config_yaml());
    let mut ws = workspace(&slack, None, "  baseline_first_run: false\n", &extra);
    ws.env
        .push(("SLACK_PAYMENTS".into(), slack.hook("payments")));
    let v = vec![vuln("CVE-2026-0300", "glibc", "CRITICAL")];
    // The same repository at two digests: the team's at one, the shop's at another.
    let pay_digest = format!("sha256:{}", "a".repeat(64));
    let shop_digest = format!("sha256:{}", "b".repeat(64));
    let input = ws.write(
        "cluster.json",
        &list(vec![
            namespace("pay", Some("payments")),
            namespace("shop", None),
            // A typo in the annotation: no route, and the operator is told.
            namespace("web", Some("paymnets")),
            vulnerability_report("pay", "checkout", "org/shared", Some(&pay_digest), &v),
            vulnerability_report("shop", "web", "org/shared", Some(&shop_digest), &v),
        ]),
    );
    let run = ws.scan_at(T0, &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let warned: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("teams.routes does not define"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", run.stderr);
    assert!(
        warned[0].contains("web") && warned[0].contains("paymnets"),
        "{}",
        warned[0]
    );
    slack.wait_for(2, Duration::from_secs(5));
    let mails = sink.wait_for(1, Duration::from_secs(5));
    settle();
    let team = slack.posted_to("payments");
    assert_eq!(team.len(), 1);
    let body = team[0].body.as_ref().expect("body").to_string();
    assert!(body.contains("sha256:aaaaaaaaaaaa"), "{body}");
    assert!(
        !body.contains("sha256:bbbb"),
        "another team's digest: {body}"
    );
    let security = slack.posted_to("security");
    let body = security[0].body.as_ref().expect("body").to_string();
    assert!(
        body.contains("sha256:aaaaaaaaaaaa") && body.contains("sha256:bbbbbbbbbbbb"),
        "a channel sees both: {body}"
    );
    let text = mails[0].text.clone().unwrap_or_default();
    let html = mails[0].html.clone().unwrap_or_default();
    assert!(text.contains(&pay_digest), "{text}");
    assert!(
        !text.contains("bbbbbbbb") && !html.contains("bbbbbbbb"),
        "another team's digest: {text}"
    );
}

#[test]
fn a_finding_accepted_in_defectdojo_before_its_alert_went_out_is_not_alerted() {
    let slack = SlackFake::start();
    let dojo = DojoFake::start_blocking();
    let mut ws = workspace(
        &slack,
        None,
        "",
        "defectdojo:\n  timeout: 5s\n  retry:\n    max_attempts: 3\n    initial_backoff: 10ms\n    max_backoff: 40ms\n",
    );
    ws.env.extend(dojo.env());
    let a1 = report("shop", "api", "org/api", 0, &base_vulns());
    let b1 = report("shop", "worker", "org/worker", 0, &base_vulns());
    scan(&ws, T0, vec![a1, b1]);

    // New criticals in both images; Slack is down, so the alerts stay queued.
    for _ in 0..3 {
        slack.push_fault(Fault::Status(500));
    }
    let a2 = report("shop", "api", "org/api", 1, &upgraded_vulns());
    let mut wv = base_vulns();
    wv.push(vuln("CVE-2026-0300", "curl", "CRITICAL"));
    let b2 = report("shop", "worker", "org/worker", 1, &wv);
    let s = scan(&ws, T1, vec![a2.clone(), b2.clone()]);
    assert_eq!(s["alerts"]["pending"], 2, "{:#}", s["alerts"]);
    assert!(slack.posted().is_empty());
    assert!(
        s["alerts"]["messages"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("500") && !e.contains("/services/")),
        "{:#}",
        s["alerts"]
    );

    // Someone accepts the risk of CVE-2026-0100 in DefectDojo meanwhile.
    let accepted: Vec<u64> = dojo
        .findings()
        .into_iter()
        .filter(|f| f.title.to_lowercase().starts_with("cve-2026-0100"))
        .map(|f| f.id)
        .collect();
    assert_eq!(accepted.len(), 1, "{:?}", dojo.findings());
    dojo.accept_risk(&accepted);

    // Next run, nothing changed in the cluster (so nothing is pushed to DefectDojo):
    // the accepted finding is dropped, the other one is sent.
    let s = scan(&ws, T2, vec![a2, b2]);
    assert_eq!(s["alerts"]["accepted"], 1, "{:#}", s["alerts"]);
    let posted = slack.wait_for(1, Duration::from_secs(5));
    settle();
    assert_eq!(slack.posted().len(), 1);
    assert_eq!(
        posted[0].text(),
        "[prod] 1 new CRITICAL in ghcr.io/org/worker"
    );
    assert_eq!(
        ws.count(
            "SELECT COUNT(*) FROM alert_items WHERE state = 'accepted' AND reason LIKE 'risk accepted%'"
        ),
        1
    );
    // The message for the worker links its DefectDojo test.
    let body = posted[0].body.as_ref().expect("body").to_string();
    assert!(body.contains(&format!("{}/test/", dojo.url())), "{body}");
}

#[test]
fn ignore_entries_hold_alerts_until_they_expire() {
    let slack = SlackFake::start();
    let ws = workspace(
        &slack,
        None,
        "  baseline_first_run: false\n  ignore:\n    - id: CVE-2026-0100\n      reason: not reachable, patch planned\n      expires: 2026-11-03\n    - id: CVE-2026-03*\n      image: ghcr.io/org/*\n      reason: old waiver\n      expires: 2026-10-01\n",
        "",
    );
    let a = report("shop", "api", "org/api", 0, &upgraded_vulns());
    let b = report(
        "shop",
        "worker",
        "org/worker",
        0,
        &[vuln("CVE-2026-0300", "curl", "CRITICAL")],
    );
    let s = scan(&ws, T0, vec![a.clone(), b.clone()]);
    // CVE-2026-0001 (api) and CVE-2026-0300 (expired waiver) alert; 0100 is held.
    assert_eq!(s["alerts"]["ignored"], 1, "{:#}", s["alerts"]);
    slack.wait_for(2, Duration::from_secs(5));
    settle();
    let texts: Vec<String> = slack
        .posted()
        .iter()
        .map(|m| m.body.as_ref().expect("b").to_string())
        .collect();
    assert_eq!(texts.len(), 2);
    assert!(
        texts.iter().all(|t| !t.contains("CVE-2026-0100")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("CVE-2026-0300")),
        "{texts:?}"
    );

    // Still ignored on its last day; alerted once the entry has expired.
    scan(&ws, "2026-11-03T23:00:00Z", vec![a.clone(), b.clone()]);
    settle();
    assert_eq!(slack.posted().len(), 2);
    let s = scan(&ws, "2026-11-04T01:00:00Z", vec![a, b]);
    assert_eq!(s["alerts"]["released"], 1, "{:#}", s["alerts"]);
    let posted = slack.wait_for(3, Duration::from_secs(5));
    let last = posted[2].body.as_ref().expect("b").to_string();
    assert!(last.contains("CVE-2026-0100"), "{last}");
    assert!(
        !last.contains("CVE-2026-0001"),
        "sent before, not again: {last}"
    );
}

#[test]
fn a_flood_becomes_one_digest_message_within_the_hourly_cap() {
    let slack = SlackFake::start();
    let sink = SmtpSink::start();
    let ws = workspace(
        &slack,
        Some(&sink),
        "  baseline_first_run: false\n  max_per_hour: 20\n",
        "",
    );
    let v = vec![vuln("CVE-2026-0400", "busybox", "CRITICAL")];
    let mut items: Vec<Value> = (0..30)
        .map(|i| {
            report(
                &format!("ns-{}", i % 3),
                &format!("app-{i}"),
                &format!("org/img-{i:02}"),
                i,
                &v,
            )
        })
        .collect();
    let s = scan(&ws, T0, items.clone());
    assert_eq!(s["alerts"]["pending"], 0, "{:#}", s["alerts"]);
    let posted = slack.wait_for(1, Duration::from_secs(5));
    let mails = sink.wait_for(1, Duration::from_secs(5));
    settle();
    assert_eq!(slack.posted().len(), 1, "one digest, not 30 messages");
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(
        posted[0].text(),
        "[prod] 30 images with 30 new CRITICAL findings"
    );
    assert!(
        posted[0]
            .body
            .as_ref()
            .expect("b")
            .to_string()
            .contains("and 20 more images")
    );
    assert_eq!(
        mails[0].subject,
        "[prod] 30 images with 30 new CRITICAL findings"
    );
    assert!(
        mails[0]
            .text
            .as_deref()
            .is_some_and(|t| t.contains("and 20 more images"))
    );

    // Ten minutes later one more image: the cap has room, so it is a normal message.
    items.push(report("ns-0", "late", "org/late", 99, &v));
    scan(&ws, "2026-11-01T10:10:00Z", items);
    let posted = slack.wait_for(2, Duration::from_secs(5));
    assert_eq!(
        posted[1].text(),
        "[prod] 1 new CRITICAL in ghcr.io/org/late"
    );
}

#[test]
fn crash_between_send_and_record_resends_at_most_that_message() {
    let slack = SlackFake::start();
    let ws = workspace(&slack, None, "  baseline_first_run: false\n", "");
    let v = vec![vuln("CVE-2026-0500", "musl", "CRITICAL")];
    let items: Vec<Value> = (0..3)
        .map(|i| report("shop", &format!("app-{i}"), &format!("org/svc-{i}"), i, &v))
        .collect();
    let input = ws.write("cluster.json", &list(items));
    // The second message is posted by Slack, and then the process dies before it hears so.
    slack.push_fault(Fault::Pass);
    slack.push_fault(Fault::PostThenHang);
    let mut child = ws
        .command(&["scan", "--format", "json", "--now", T0, "--from"])
        .arg(&input)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn scan");
    slack.wait_for(2, Duration::from_secs(20));
    child.kill().expect("kill");
    let _ = child.wait();

    let run = ws.scan_at(T1, &[&input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    settle();
    let titles: Vec<String> = slack.posted().iter().map(|m| m.text()).collect();
    let mut distinct = titles.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "none lost: {titles:?}");
    assert_eq!(
        titles.len(),
        4,
        "exactly the one in flight twice: {titles:?}"
    );
    assert_eq!(titles[1], titles[2], "{titles:?}");
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM alert_items WHERE state <> 'sent'"),
        0
    );
}

#[test]
fn rate_limits_are_waited_out_as_slack_asks() {
    let slack = SlackFake::start();
    let ws = workspace(&slack, None, "  baseline_first_run: false\n", "");
    slack.push_fault(Fault::RateLimited {
        retry_after_secs: 1,
    });
    let started = Instant::now();
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
    let posted = slack.wait_for(1, Duration::from_secs(5));
    let reqs = slack.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].status, 429);
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(posted.len(), 1);
}

#[test]
fn alert_test_reaches_every_destination_and_names_failures_without_urls() {
    let slack = SlackFake::start();
    let sink = SmtpSink::start();
    let mut ws = workspace(
        &slack,
        Some(&sink),
        "",
        "teams:\n  routes:\n    payments:\n      slack_webhook_env: SLACK_PAYMENTS\n      email: [pay@example.com]\n",
    );
    ws.env
        .push(("SLACK_PAYMENTS".into(), slack.hook("payments")));
    let ok = ws.run(&["alert", "--test"]);
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    for d in [
        "security (slack)",
        "mail (email)",
        "team payments (slack)",
        "team payments (email)",
    ] {
        assert!(ok.stdout.contains(&format!("ok      {d}")), "{}", ok.stdout);
    }
    assert_eq!(slack.posted().len(), 2);
    let mails = sink.wait_for(2, Duration::from_secs(5));
    assert!(mails.iter().any(|m| m.rcpt_tos == ["pay@example.com"]));
    assert!(
        mails
            .iter()
            .all(|m| m.subject == "[prod] trivy-digest test alert")
    );

    // A revoked webhook (404 no_service) and an unreachable one fail, by name only.
    let revoked = slack.revoked_hook("revoked-secret-token");
    ws.env.retain(|(k, _)| k != "SLACK_PAYMENTS");
    ws.env.push(("SLACK_PAYMENTS".into(), revoked));
    ws.config(&format!(
        "cluster: prod\nalerts:\n{FAST}  channels:\n    - name: security\n      slack_webhook_env: SLACK_SECURITY\n    - name: down\n      slack_webhook_env: SLACK_DOWN\nteams:\n  routes:\n    payments:\n      slack_webhook_env: SLACK_PAYMENTS\n"
    ));
    ws.env.push((
        "SLACK_DOWN".into(),
        "http://127.0.0.1:1/services/T0/B0/unreachable-secret-token".into(),
    ));
    let bad = ws.run(&["alert", "--test"]);
    assert_ne!(bad.code, 0, "{}", bad.stdout);
    assert!(
        bad.stdout.contains("ok      security (slack)"),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout
            .contains("FAILED  team payments (slack): HTTP 404: no_service"),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout.contains("FAILED  down (slack): "),
        "{}",
        bad.stdout
    );
    let all = format!("{}{}", bad.stdout, bad.stderr);
    assert!(
        !all.contains("secret-token") && !all.contains("/services/"),
        "{all}"
    );

    let check = ws.run(&["config", "check"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    let all = format!("{}{}", check.stdout, check.stderr);
    assert!(
        !all.contains("secret-token") && !all.contains("/services/"),
        "{all}"
    );
    assert!(all.contains("<redacted>"), "{all}");
}

/// A second process on the same store (a `scan` beside `run`, or two sweeps) finds the
/// first one sending and leaves the pending alerts to it: one message, not two.
#[test]
fn two_processes_on_one_store_send_an_alert_once() {
    let slack = SlackFake::start();
    let ws = workspace(&slack, None, "", "");
    let v1 = report("shop", "api", "org/api", 0, &base_vulns());
    scan(&ws, T0, vec![v1]);
    let v2 = report("shop", "api", "org/api", 1, &upgraded_vulns());
    // The first sender's request is answered after 3 s: the second runs meanwhile.
    slack.push_fault(Fault::Delay(Duration::from_secs(3)));
    let second = std::thread::scope(|s| {
        let first = s.spawn(|| scan(&ws, T1, vec![v2.clone()]));
        while slack.arrived() == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let second = scan(&ws, T1, vec![v2.clone()]);
        let first = first.join().expect("first scan");
        assert_eq!(
            first["alerts"]["messages"].as_array().map(Vec::len),
            Some(1),
            "{:#}",
            first["alerts"]
        );
        second
    });
    assert_eq!(
        second["alerts"]["other_sender"],
        json!(true),
        "{:#}",
        second["alerts"]
    );
    settle();
    assert_eq!(slack.posted().len(), 1, "{:?}", slack.requests());
}

/// `alerts.templates`: the Slack body and both email parts come from the user's files;
/// report text is escaped for each medium (Slack-escaped, HTML-escaped, plain) while the
/// template's own markup is kept, and Slack still gets valid Block Kit (the fake checks).
#[test]
fn message_templates_override_slack_and_email() {
    let slack = SlackFake::start();
    let sink = SmtpSink::start();
    let templates =
        "  templates:\n    slack: slack.j2\n    email_html: mail.html\n    email_text: mail.txt\n";
    let ws = workspace(&slack, Some(&sink), templates, "");
    ws.write(
        "slack.j2",
        ":rotating_light: *Custom alert* in {{ cluster }} ({{ kind }})\n\
         {% for g in groups %}{% for f in g.findings %}• {{ link(f.link, f.id) }} {{ f.severity }} in `{{ g.repo }}`: {{ f.title }}\n\
         {% endfor %}{% endfor %}",
    );
    ws.write(
        "mail.html",
        "<h1>Custom: {{ title }}</h1>\n{% for g in groups %}{% for f in g.findings %}<p class=\"f\">{{ f.id }}: {{ f.title }}</p>{% endfor %}{% endfor %}\n",
    );
    ws.write(
        "mail.txt",
        "Custom text for {{ cluster }}\n{% for g in groups %}{% for f in g.findings %}{{ f.id }} {{ f.versions }}: {{ f.title }}\n{% endfor %}{% endfor %}",
    );
    let check = ws.run(&["config", "check"]);
    assert_eq!(check.code, 0, "{}", check.stderr);

    scan(
        &ws,
        T0,
        vec![report("shop", "api", "org/api", 0, &base_vulns())],
    );
    let s = scan(
        &ws,
        T1,
        vec![report("shop", "api", "org/api", 1, &upgraded_vulns())],
    );
    assert_eq!(s["alerts"]["new_findings"], 1, "{:#}", s["alerts"]);
    let posted = slack.wait_for(1, Duration::from_secs(5));
    let mails = sink.wait_for(1, Duration::from_secs(5));

    let m = &posted[0];
    assert_eq!(m.text(), "[prod] 1 new CRITICAL in ghcr.io/org/api");
    assert!(m.mentions.is_empty(), "{:?}", m.mentions);
    assert_eq!(
        m.links,
        ["https://avd.aquasec.com/nvd/cve-2026-0100"],
        "only the template's link() renders a link"
    );
    let blocks = m.body.as_ref().expect("body")["blocks"].clone();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        "1 new CRITICAL in ghcr.io/org/api"
    );
    let body = blocks[1]["text"]["text"]
        .as_str()
        .expect("section")
        .to_owned();
    assert!(
        body.starts_with(":rotating_light: *Custom alert* in prod (image)\n• <https://avd.aquasec.com/nvd/cve-2026-0100|CVE-2026-0100> CRITICAL in `ghcr.io/org/api`: "),
        "{body}"
    );
    assert!(
        body.contains("&lt;!channel&gt; &lt;script&gt;alert(1)&lt;/script&gt; &lt;http://evil.example|click&gt; &amp; co"),
        "{body}"
    );
    assert!(
        !body.contains("<!channel>") && !body.contains("<script"),
        "{body}"
    );

    let e = &mails[0];
    assert_eq!(e.subject, "[prod] 1 new CRITICAL in ghcr.io/org/api");
    let html = e.html.as_deref().expect("html part");
    let text = e.text.as_deref().expect("text part");
    assert!(
        html.contains("<h1>Custom: 1 new CRITICAL in ghcr.io&#x2f;org&#x2f;api</h1>"),
        "{html}"
    );
    assert!(
        html.contains("<p class=\"f\">CVE-2026-0100: &lt;!channel&gt; &lt;script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(text.starts_with("Custom text for prod\n"), "{text}");
    assert!(
        text.contains(&format!("CVE-2026-0100 libxml2 1.0.0 → 2.12.7: {HOSTILE}")),
        "the text part is plain: {text}"
    );
}

/// A template that passes `config check` but fails on real data at send time: the alert
/// is not lost; it stays queued with an error naming the file and line, and goes out once
/// the template is fixed.
#[test]
fn a_template_failing_at_send_time_keeps_the_alert_queued() {
    let slack = SlackFake::start();
    let ws = workspace(&slack, None, "  templates:\n    slack: slack.j2\n", "");
    // The sample data's image is not ghcr.io/org/api: only the real message trips it.
    ws.write(
        "slack.j2",
        "{% if groups and groups[0].repo == \"ghcr.io/org/api\" %}\n{{ no_such_variable }}\n{% endif %}sent: {{ title }}\n",
    );
    let check = ws.run(&["config", "check"]);
    assert_eq!(check.code, 0, "{}", check.stderr);

    scan(
        &ws,
        T0,
        vec![report("shop", "api", "org/api", 0, &base_vulns())],
    );
    let v2 = report("shop", "api", "org/api", 1, &upgraded_vulns());
    let s = scan(&ws, T1, vec![v2.clone()]);
    settle();
    assert!(slack.requests().is_empty(), "nothing sent");
    assert_eq!(s["alerts"]["pending"], 1, "{:#}", s["alerts"]);
    let err = s["alerts"]["messages"][0]["error"].as_str().unwrap_or("");
    assert!(
        err.contains("alerts.templates.slack")
            && err.contains("slack.j2:2")
            && err.contains("no_such_variable"),
        "{:#}",
        s["alerts"]
    );

    ws.write("slack.j2", "sent: {{ title }}\n");
    let s = scan(&ws, T2, vec![v2]);
    assert_eq!(s["alerts"]["pending"], 0, "{:#}", s["alerts"]);
    let posted = slack.wait_for(1, Duration::from_secs(5));
    let body = posted[0].body.as_ref().expect("body").to_string();
    assert!(
        body.contains("sent: 1 new CRITICAL in ghcr.io/org/api"),
        "{body}"
    );
}
