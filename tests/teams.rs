//! The Microsoft Teams channel through the real binary (`scan`, `alert --test`,
//! `config check`), against a Teams webhook fake (tests/support/teams.rs) that refuses
//! what Teams refuses.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::cli::Workspace;
use support::reports::{Vuln, digest, list, vuln, vulnerability_report};
use support::teams::{Fault, Flavour, MAX_BODY, TeamsFake};

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-02T10:00:00Z";
const T2: &str = "2026-11-03T10:00:00Z";
const FAST: &str = "  batch_window: 1s\n  timeout: 5s\n  retry:\n    max_attempts: 3\n    initial_backoff: 50ms\n    max_backoff: 200ms\n";
/// Markdown an Adaptive Card TextBlock would format and link.
const HOSTILE: &str = "**URGENT** _click_ [here](https://evil.example/phish) - now";

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

/// A channel `sec` with the Teams webhook URL in a file.
fn workspace(teams: &TeamsFake, extra_alerts: &str) -> Workspace {
    let ws = Workspace::new();
    let url_file = ws.write("teams-url", &format!("{}\n", teams.url("url-secret-token")));
    ws.config(&format!(
        "cluster: prod\nalerts:\n{FAST}{extra_alerts}  channels:\n    - name: sec\n      msteams_webhook_file: {}\n",
        url_file.display()
    ));
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
        !text.contains("url-secret-token"),
        "the webhook URL was printed: {text}"
    );
}

fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn a_new_critical_sends_one_card_per_image_and_a_rescan_sends_nothing() {
    let teams = TeamsFake::start(Flavour::Workflows);
    let ws = workspace(&teams, "");
    let api = report("shop", "api", "org/api", 0, &base_vulns());
    let web = report("shop", "web", "org/web", 10, &base_vulns());
    let (s, out) = scan(&ws, T0, vec![api, web]);
    assert!(
        s["alerts"]["baseline"].as_u64().is_some(),
        "{:#}",
        s["alerts"]
    );
    assert_no_secret(&out);
    settle();
    assert!(teams.requests().is_empty(), "the baseline sends nothing");

    // Both images roll out a digest with a new CRITICAL: one card each.
    let api = report("shop", "api", "org/api", 1, &upgraded_vulns());
    let web = report("shop", "web", "org/web", 11, &upgraded_vulns());
    let (s, out) = scan(&ws, T1, vec![api.clone(), web.clone()]);
    assert_eq!(s["alerts"]["new_findings"], 2, "{:#}", s["alerts"]);
    assert_no_secret(&out);
    let got = teams.wait_for(2, Duration::from_secs(5));
    settle();
    assert_eq!(teams.requests().len(), 2, "{:#?}", teams.requests());
    let mut titles = Vec::new();
    for r in &got {
        assert_eq!(r.status, 202);
        assert!(r.rendered, "Workflows displays the card: {r:#?}");
        assert!(
            r.path.starts_with("/workflows/url-secret-token/"),
            "{}",
            r.path
        );
        assert!(r.size <= MAX_BODY);
        titles.push(r.texts[0].clone());
        assert!(
            r.texts.iter().any(|t| t == "CVE-2026-0100"),
            "{:?}",
            r.texts
        );
        assert!(
            !r.texts.iter().any(|t| t.contains("CVE-2026-0001")),
            "only the new finding: {:?}",
            r.texts
        );
        assert!(
            r.links
                .contains(&"https://avd.aquasec.com/nvd/cve-2026-0100".to_owned()),
            "{:?}",
            r.links
        );
        assert!(r.texts.iter().any(|t| t == "trivy-digest · cluster prod"));
    }
    titles.sort();
    assert_eq!(
        titles,
        [
            "1 new CRITICAL in ghcr.io/org/api",
            "1 new CRITICAL in ghcr.io/org/web"
        ]
    );

    // Rescans, and another rollout of the same image: nothing new, nothing sent.
    scan(&ws, T2, vec![api.clone(), web.clone()]);
    let api2 = report("shop", "api", "org/api", 2, &upgraded_vulns());
    let (s, _) = scan(&ws, T2, vec![api2, web]);
    assert_eq!(s["alerts"]["new_findings"], 0, "{:#}", s["alerts"]);
    settle();
    assert_eq!(teams.requests().len(), 2, "once per finding");
}

#[test]
fn a_429_is_retried_after_retry_after_and_a_connectors_200_error_too() {
    let teams = TeamsFake::start(Flavour::Connector);
    let ws = workspace(&teams, "  baseline_first_run: false\n");
    teams.push_fault(Fault::RateLimited {
        retry_after_secs: 1,
    });
    teams.push_fault(Fault::ConnectorError);
    let (s, out) = scan(
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
    assert_no_secret(&out);
    teams.wait_for(1, Duration::from_secs(5));
    let reqs = teams.requests();
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    // 429; then a 200 whose text is an error (not posted); then 200 `1`.
    assert_eq!(statuses, [429, 200, 200], "{reqs:#?}");
    assert!(!reqs[1].posted && reqs[2].posted);
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After honoured: {waited:?}"
    );
    assert_eq!(s["alerts"]["pending"], 0, "{:#}", s["alerts"]);
}

#[test]
fn an_image_with_500_findings_fits_the_limit_and_counts_the_rest() {
    let teams = TeamsFake::start(Flavour::Workflows);
    let ws = workspace(
        &teams,
        "  baseline_first_run: false\n  max_findings_per_message: 500\n",
    );
    let mut r = report(
        "shop",
        "api",
        "org/api",
        0,
        &[vuln("CVE-2026-0000", "openssl", "CRITICAL").fixed("3.0.9")],
    );
    let one = r["report"]["vulnerabilities"][0].clone();
    let many: Vec<Value> = (0..500)
        .map(|i| {
            let mut v = one.clone();
            v["vulnerabilityID"] = json!(format!("CVE-2026-{i:04}"));
            v["resource"] = json!(format!("package-{i}"));
            v["title"] = json!(format!(
                "A long advisory title number {i} describing a flaw in some parser {}",
                "x".repeat(120)
            ));
            v["primaryLink"] = json!(format!("https://avd.aquasec.com/nvd/cve-2026-{i:04}"));
            v
        })
        .collect();
    r["report"]["vulnerabilities"] = json!(many);
    let (s, _) = scan(&ws, T0, vec![r]);
    assert_eq!(s["alerts"]["new_findings"], 500, "{:#}", s["alerts"]);
    let got = teams.wait_for(1, Duration::from_secs(5));
    settle();
    assert_eq!(teams.requests().len(), 1, "{:#?}", teams.requests());
    let card = &got[0];
    assert!(card.size <= MAX_BODY, "{} bytes", card.size);
    let shown = card
        .texts
        .iter()
        .filter(|t| t.starts_with("CVE-2026-"))
        .count();
    let more: usize = card
        .texts
        .iter()
        .find_map(|t| t.strip_prefix("and ")?.strip_suffix(" more new findings"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"and N more\": {:?}", card.texts));
    assert!(shown >= 10, "as many as fit: {shown}");
    assert_eq!(shown + more, 500, "each finding listed or counted");
    assert_eq!(card.texts[0], "500 new CRITICAL in ghcr.io/org/api");
}

#[test]
fn report_text_cannot_format_or_link() {
    let teams = TeamsFake::start(Flavour::Workflows);
    let ws = workspace(&teams, "  baseline_first_run: false\n");
    let mut r = report(
        "shop",
        "api",
        "org/api",
        0,
        &[vuln("CVE-2026-0700", "curl", "CRITICAL")],
    );
    r["report"]["vulnerabilities"][0]["title"] = json!(HOSTILE);
    r["report"]["vulnerabilities"][0]["resource"] = json!("[pkg](https://evil.example/pkg)");
    r["report"]["artifact"]["repository"] = json!("org/**api**");
    scan(&ws, T0, vec![r]);
    let got = teams.wait_for(1, Duration::from_secs(5));
    let c = &got[0];
    assert!(c.rendered);
    assert!(
        c.formatted.is_empty(),
        "Teams would format report text: {:?} in {:?}",
        c.formatted,
        c.texts
    );
    assert!(
        c.links.iter().all(|l| !l.contains("evil.example")),
        "report text made a link: {:?}",
        c.links
    );
    // Shown as written.
    assert!(c.texts.iter().any(|t| t == HOSTILE), "{:?}", c.texts);
    assert!(
        c.texts
            .iter()
            .any(|t| t.contains("[pkg](https://evil.example/pkg) 1.0.0")),
        "{:?}",
        c.texts
    );
    assert_eq!(c.texts[0], "1 new CRITICAL in ghcr.io/org/**api**");
}

#[test]
fn a_400_is_reported_as_not_sent_and_stays_queued() {
    let teams = TeamsFake::start(Flavour::Workflows);
    let ws = workspace(&teams, "  baseline_first_run: false\n");
    teams.push_fault(Fault::BadPayload);
    let items = vec![report(
        "shop",
        "api",
        "org/api",
        0,
        &[vuln("CVE-2026-0800", "curl", "CRITICAL")],
    )];
    let (s, out) = scan(&ws, T0, items.clone());
    settle();
    assert_eq!(teams.requests().len(), 1, "a 400 is not retried");
    assert!(teams.posted().is_empty());
    assert_eq!(s["alerts"]["pending"], 1, "{:#}", s["alerts"]);
    let err = s["alerts"]["messages"][0]["error"].as_str().unwrap_or("");
    assert_eq!(
        err, "HTTP 400: Bad payload received by generic incoming webhook.",
        "{:#}",
        s["alerts"]
    );
    assert_no_secret(&out);

    // The next run delivers what stayed queued.
    let (s, _) = scan(&ws, T1, items);
    let got = teams.wait_for(1, Duration::from_secs(5));
    assert!(got[0].texts.iter().any(|t| t == "CVE-2026-0800"));
    assert_eq!(s["alerts"]["pending"], 0, "{:#}", s["alerts"]);
}

#[test]
fn alert_test_sends_a_test_card_to_channels_and_team_routes() {
    let teams = TeamsFake::start(Flavour::Workflows);
    let mut ws = workspace(&teams, "");
    let url_file = ws.path("teams-url");
    ws.config(&format!(
        "cluster: prod\nalerts:\n{FAST}  channels:\n    - name: sec\n      msteams_webhook_file: {}\nteams:\n  routes:\n    payments:\n      msteams_webhook_env: PAY_TEAMS\n",
        url_file.display()
    ));
    ws.env
        .push(("PAY_TEAMS".into(), teams.url("team-url-secret-token")));
    let ok = ws.run(&["alert", "--test"]);
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("ok      sec (msteams)"), "{}", ok.stdout);
    assert!(
        ok.stdout.contains("ok      team payments (msteams)"),
        "{}",
        ok.stdout
    );
    let got = teams.wait_for(2, Duration::from_secs(5));
    assert_eq!(got[0].texts[0], "trivy-digest test alert");
    assert!(
        got[0].texts.iter().any(|t| t.contains("for sec (msteams)")),
        "{:?}",
        got[0].texts
    );
    assert!(got[1].path.starts_with("/workflows/team-url-secret-token/"));

    teams.push_fault(Fault::Status(404));
    let bad = ws.run(&["alert", "--test"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stdout
            .contains("FAILED  sec (msteams): HTTP 404: the service failed"),
        "{}",
        bad.stdout
    );
    let all = format!("{}{}{}{}", ok.stdout, ok.stderr, bad.stdout, bad.stderr);
    assert_no_secret(&all);
    assert!(!all.contains("/workflows/"), "{all}");

    let check = ws.run(&["config", "check"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    let all = format!("{}{}", check.stdout, check.stderr);
    assert_no_secret(&all);
    assert!(all.contains("msteams_webhook: <redacted>"), "{all}");
    assert!(all.contains("msteams_webhook_env: PAY_TEAMS"), "{all}");
}

/// The fake refuses what Teams refuses, so the tests above prove the cards.
#[test]
fn the_teams_fake_is_strict() {
    let teams = TeamsFake::start(Flavour::Workflows);
    let url = teams.url("t");
    let card = |version: &str| {
        json!({"type": "message", "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null,
            "content": {"type": "AdaptiveCard", "version": version, "body": []}}]})
    };
    let mut wrong_type = card("1.4");
    wrong_type["attachments"][0]["contentType"] = json!("application/vnd.microsoft.card.hero");
    let mut not_adaptive = card("1.4");
    not_adaptive["attachments"][0]["content"]["type"] = json!("MessageCard");
    let mut big = card("1.4");
    big["attachments"][0]["content"]["body"] =
        json!([{"type": "TextBlock", "text": "x".repeat(MAX_BODY)}]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let answers = rt.block_on(async {
        let c = reqwest::Client::new();
        let mut out = Vec::new();
        let raw = c.post(&url).body("not json");
        let bodies = [
            json!({"text": "a classic MessageCard-less text"}),
            wrong_type,
            not_adaptive,
            card("9.9"),
            big,
            card("1.5"),
            card("1.4"),
        ];
        let resp = raw.send().await.expect("send");
        out.push((
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        ));
        for b in bodies {
            let resp = c.post(&url).json(&b).send().await.expect("send");
            out.push((
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            ));
        }
        out
    });
    let codes: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(
        codes,
        [400, 400, 400, 400, 400, 413, 202, 202],
        "{answers:?}"
    );
    assert!(
        answers[..5].iter().all(|a| a
            .1
            .starts_with("Bad payload received by generic incoming webhook.")),
        "{answers:?}"
    );
    let posted = teams.posted();
    assert_eq!(posted.len(), 2);
    assert!(!posted[0].rendered, "Workflows cannot display 1.5");
    assert!(posted[1].rendered);
}
