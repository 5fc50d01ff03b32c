//! The monthly summary: numbers computed from the history (checked by hand), golden
//! HTML and text, escaping, team views, mail through a real SMTP server with
//! idempotency, the schedule across month ends, DST and time zones, catch-up after a
//! missed run, `/summary/` pages, and rendering in headless Chromium at 600 and 1200 px.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use support::cli::Workspace;
use support::reports::{Vuln, config_audit, digest, list, vuln, vulnerability_report};
use support::smtp::{SinkBehaviour, SmtpSink};

use trivy_digest::config::Config;
use trivy_digest::mail::Mailer;
use trivy_digest::output::summary::deliver::{self, Outcome, SendOptions};
use trivy_digest::output::summary::report::{self, Scope};
use trivy_digest::output::summary::{Month, render, schedule};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn month(s: &str) -> Month {
    s.parse().expect("month")
}

// ---------------------------------------------------------------------------------------
// The scenario: three images in three namespaces over six months.
//
//   A ghcr.io/org/api     shop: api, worker         (team payments)
//   B docker.io/library/nginx  web: nginx, shop: edge (teams frontend and payments)
//   C ghcr.io/org/report  batch: report             (no team)
//
//   05-10  A: A1 CRITICAL (fix 1.1), A2 HIGH      B: B1 HIGH (fix), B2 MEDIUM, B3 HIGH   C: C1 LOW
//   07-15  A: + A3 CRITICAL (no fix; rescan, same digest)
//   09-05  A: A2 fixed (new digest)               B: B1 re-rated HIGH → CRITICAL
//   10-03  A: + A4 HIGH (fix 2.0)                 B: B2 fixed (new digest)               C: report gone
//   10-20  A: A1 fixed (new digest); config audit shop/api KSV001 HIGH + KSV002 CRITICAL; C expired
//   11-10  A: A3 fixed (after October: must not change October)
//
// B3 is risk accepted in DefectDojo (read back): listed apart, never counted.
// ---------------------------------------------------------------------------------------

const SCANS: [&str; 6] = [
    "2026-05-10T10:00:00Z",
    "2026-07-15T10:00:00Z",
    "2026-09-05T10:00:00Z",
    "2026-10-03T10:00:00Z",
    "2026-10-20T10:00:00Z",
    "2026-11-10T10:00:00Z",
];

fn namespace(name: &str, team: Option<&str>) -> Value {
    let mut annotations = json!({});
    if let Some(t) = team {
        annotations["trivy-digest.io/team"] = json!(t);
    }
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "annotations": annotations}})
}

fn vreport(
    ns: &str,
    workload: &str,
    registry: &str,
    repo: &str,
    d: u32,
    vulns: &[Vuln],
    at: &str,
) -> Value {
    let mut r = vulnerability_report(ns, workload, repo, Some(&dg(d)), vulns);
    r["report"]["registry"]["server"] = json!(registry);
    r["report"]["updateTimestamp"] = json!(at);
    r
}

/// The cluster as each scan sees it.
fn snapshot(step: usize) -> String {
    let at = SCANS[step];
    let a1 = vuln("CVE-2026-1001", "openssl", "CRITICAL").fixed("1.1");
    let a2 = vuln("CVE-2026-1002", "zlib", "HIGH");
    let a3 = vuln("CVE-2026-1003", "glibc", "CRITICAL");
    let a4 = vuln("CVE-2026-1004", "curl", "HIGH").fixed("2.0");
    let b1 = vuln("CVE-2026-2001", "nginx", "HIGH").fixed("1.25.3");
    let b2 = vuln("CVE-2026-2002", "pcre", "MEDIUM");
    let b3 = vuln("CVE-2026-2003", "libxml2", "HIGH");
    let c1 = vuln("CVE-2026-3001", "busybox", "LOW");
    let (a, a_digest): (Vec<Vuln>, u32) = match step {
        0 => (vec![a1.clone(), a2.clone()], 1),
        1 => (vec![a1.clone(), a2.clone(), a3.clone()], 1),
        2 => (vec![a1.clone(), a3.clone()], 2),
        3 => (vec![a1.clone(), a3.clone(), a4.clone()], 2),
        4 => (vec![a3.clone(), a4.clone()], 3),
        _ => (vec![a4.clone()], 4),
    };
    let (b, b_digest): (Vec<Vuln>, u32) = match step {
        0 | 1 => (vec![b1.clone(), b2.clone(), b3.clone()], 11),
        2 => (
            vec![b1.clone().severity("CRITICAL"), b2.clone(), b3.clone()],
            11,
        ),
        _ => (vec![b1.clone().severity("CRITICAL"), b3.clone()], 12),
    };
    let mut items = vec![
        namespace("shop", Some("payments")),
        namespace("web", Some("frontend")),
        namespace("batch", None),
        vreport("shop", "api", "ghcr.io", "org/api", a_digest, &a, at),
        vreport("shop", "worker", "ghcr.io", "org/api", a_digest, &a, at),
        vreport(
            "web",
            "nginx",
            "index.docker.io",
            "library/nginx",
            b_digest,
            &b,
            at,
        ),
        vreport(
            "shop",
            "edge",
            "index.docker.io",
            "library/nginx",
            b_digest,
            &b,
            at,
        ),
    ];
    if step < 3 {
        items.push(vreport(
            "batch",
            "report",
            "ghcr.io",
            "org/report",
            21,
            &[c1],
            at,
        ));
    }
    if step >= 4 {
        items.push(config_audit(
            "shop",
            "api",
            &[
                ("KSV001", "HIGH", "Process can elevate its own privileges"),
                ("KSV002", "CRITICAL", "Default AppArmor profile not set"),
            ],
            at,
        ));
    }
    list(items)
}

/// Digests that differ in their first characters, as real ones do.
fn dg(n: u32) -> String {
    format!(
        "sha256:{:016x}{:048x}",
        (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        n
    )
}

const BASE_CONFIG: &str = "cluster: prod\ngrace_period: 1h\n";

/// Runs the six scans; returns the workspace (store in it).
fn scenario() -> Workspace {
    let ws = Workspace::new();
    ws.config(BASE_CONFIG);
    for (i, at) in SCANS.iter().enumerate() {
        let input = ws.write(&format!("scan-{i}.json"), &snapshot(i));
        let run = ws.scan_complete_at(at, &[&input]);
        assert!(
            matches!(run.code, 0 | 3),
            "scan {i}: {}\n{}",
            run.stdout,
            run.stderr
        );
    }
    accept_b3(&ws);
    ws
}

/// DefectDojo read-back: B3 risk accepted, nginx's test is DefectDojo test 42.
fn accept_b3(ws: &Workspace) {
    let conn = rusqlite::Connection::open(ws.store()).expect("store");
    let (subject_id, fkey): (i64, String) = conn
        .query_row(
            "SELECT f.subject_id, f.fkey FROM findings f JOIN subjects s ON s.id = f.subject_id
             WHERE s.key = 'docker.io/library/nginx' AND f.fkey LIKE 'CVE-2026-2003%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("B3 stored");
    conn.execute(
        "INSERT INTO dojo_tests(product_type, product, engagement, title, family, subject_id, dd_test_id)
         VALUES('Kubernetes', 'prod', 'trivy-digest', 'docker.io/library/nginx', 'vulnerability', ?1, 42)",
        [subject_id],
    )
    .expect("dojo test");
    let test_id = conn.last_insert_rowid();
    let uid = trivy_digest::model::finding_uid(
        trivy_digest::model::Family::Vulnerability,
        "docker.io/library/nginx",
        &fkey,
    );
    conn.execute(
        "INSERT INTO dojo_findings(test_id, uid, dd_id, risk_accepted) VALUES(?1, ?2, 900, 1)",
        rusqlite::params![test_id, uid],
    )
    .expect("dojo finding");
}

fn config_for(ws: &Workspace, extra: &str) -> Config {
    let mut c = Config::from_yaml(&format!("{BASE_CONFIG}{extra}")).expect("config");
    c.store = ws.store().into();
    c
}

fn compute(ws: &Workspace, m: &str, scope: Scope, now: &str, extra: &str) -> report::Summary {
    let config = config_for(ws, extra);
    let store = trivy_digest::store::Store::open(&ws.store()).expect("store");
    report::build(
        &store,
        &deliver::options(&config, month(m), scope, utc(now)),
    )
    .expect("summary")
}

const NOW: &str = "2026-11-27T06:00:00Z";

// ---------------------------------------------------------------------------------------
// Numbers, computed by hand from the timeline above.
// ---------------------------------------------------------------------------------------

#[test]
fn october_numbers_match_the_hand_computed_history() {
    let ws = scenario();
    let s = compute(&ws, "2026-10", Scope::Cluster, NOW, "");
    // Open at 2026-11-01 00:00 UTC: A3 (critical), A4 (high), B1 (critical since 09-05).
    // A3 was fixed on 11-10: after the month, so still open in October's summary.
    assert_eq!(
        (s.open.critical, s.open.high, s.open.medium, s.open.low),
        (2, 1, 0, 0)
    );
    assert_eq!(s.open.total(), 3);
    // End of September: A1, A3, B1 critical; B2 medium; C1 low (B3 accepted: never counted).
    let prev: Vec<(u64, u64)> = s.changes.iter().map(|c| (c.now, c.before)).collect();
    assert_eq!(prev, vec![(2, 3), (1, 0), (0, 1), (0, 1), (0, 0)]);
    assert_eq!(s.total_delta.0, -2);
    // New in October: A4. Fixed: A1 (critical, 10-20), B2 (medium, 10-03), C1 (low: its
    // report went on 10-03, the grace period ended, resolved at the 10-20 scan).
    assert_eq!(s.new.total(), 1);
    assert_eq!(s.new.high, 1);
    assert_eq!(
        (s.fixed.critical, s.fixed.high, s.fixed.medium, s.fixed.low),
        (1, 0, 1, 1)
    );
    // Mean time to fix: A1 from 05-10 10:00 to 10-20 10:00 = 163 days; no high fixed.
    assert_eq!(s.mttf[0].fixed, 1);
    assert_eq!(s.mttf[0].mean_days.as_deref(), Some("163.0"));
    assert_eq!(s.mttf[1].fixed, 0);
    assert_eq!(s.mttf[1].mean_days, None);
    // Oldest open criticals: B1 (since 05-10: 174 days at 11-01 00:00), A3 (since 07-15: 108).
    let oldest: Vec<(&str, i64)> = s
        .oldest_criticals
        .items
        .iter()
        .map(|f| (f.id.as_str(), f.age_days))
        .collect();
    // Every family counts: the config audit check KSV002 (critical since 10-20: 11 days).
    assert_eq!(
        oldest,
        vec![
            ("CVE-2026-2001", 174),
            ("CVE-2026-1003", 108),
            ("KSV002", 11)
        ]
    );
    // Fixable: A4 (2.0) and B1 (1.25.3) of A3, A4, B1.
    assert_eq!(
        (s.fixable.fixable, s.fixable.open, s.fixable.percent),
        (2, 3, 67)
    );
    assert_eq!(
        (
            s.fixable.fixable_critical_high,
            s.fixable.open_critical_high
        ),
        (2, 3)
    );
    // Top images by open critical + high: api (1 + 1), nginx (1 + 0); report has none.
    let imgs: Vec<(&str, u64, u64, u64)> = s
        .top_images
        .items
        .iter()
        .map(|i| {
            (
                i.repository.as_str(),
                i.open.critical,
                i.open.high,
                i.fixable,
            )
        })
        .collect();
    assert_eq!(
        imgs,
        vec![
            ("ghcr.io/org/api", 1, 1, 1),
            ("docker.io/library/nginx", 1, 0, 1)
        ]
    );
    // Deduplicated by digest: api's two workloads are one row, with the two digests
    // it ran in October (2 until 10-20, then 3).
    assert_eq!(
        s.top_images.items[0].workloads.items,
        vec!["shop/Deployment/api", "shop/Deployment/worker"]
    );
    assert_eq!(s.top_images.items[0].digests.items.len(), 2);
    assert_eq!(
        s.top_images.items[1].workloads.items,
        vec!["shop/Deployment/edge", "web/Deployment/nginx"]
    );
    // Namespaces: shop runs api and nginx (A3 + B1 critical, A4 high); web runs nginx.
    let ns: Vec<(&str, u64, u64, u64)> = s
        .top_namespaces
        .items
        .iter()
        .map(|n| (n.name.as_str(), n.critical, n.high, n.images))
        .collect();
    assert_eq!(ns, vec![("shop", 2, 1, 2), ("web", 1, 0, 1)]);
    // What ran in October: 3 images (api, nginx, report); 4 digests: api 2 (seen 10-03)
    // and 3 (10-20), nginx 12 (10-03; 11 was last seen on 09-05), report 21 (its report
    // went on 10-03: it ran until then); 5 workloads; 3 namespaces.
    assert_eq!(s.images, 3);
    assert_eq!(s.digests, 4);
    assert_eq!(s.workloads, 5);
    assert_eq!(s.namespaces, 3);
    // report's sighting outlived its report: it ran until the report went (10-03).
    let last: i64 = rusqlite::Connection::open(ws.store())
        .expect("store")
        .query_row(
            "SELECT g.last_seen FROM sightings g JOIN subjects s ON s.id = g.subject_id
             WHERE s.key = 'ghcr.io/org/report'",
            [],
            |r| r.get(0),
        )
        .expect("sighting kept");
    assert_eq!(last, utc(SCANS[3]).timestamp());
    assert_eq!(
        rusqlite::Connection::open(ws.store())
            .expect("store")
            .query_row(
                "SELECT COUNT(*) FROM reports WHERE namespace = 'batch'",
                [],
                |r| r.get::<_, i64>(0)
            )
            .expect("count"),
        0,
        "the report itself is gone"
    );
    // Accepted: B3, apart.
    assert_eq!(s.accepted.items.len(), 1);
    assert_eq!(s.accepted.items[0].id, "CVE-2026-2003");
    assert_eq!(s.accepted.items[0].state, "risk accepted");
    assert_eq!(s.accepted_counts, vec![("risk accepted", 1)]);
    // Config audit: KSV001 high and KSV002 critical, new on 10-20.
    let ca = s
        .sections
        .iter()
        .find(|x| x.title == "Config audit")
        .expect("config audit section");
    assert_eq!(
        (ca.open.critical, ca.open.high, ca.new, ca.fixed),
        (1, 1, 2, 0)
    );
    assert_eq!(ca.delta.0, 2);
    assert_eq!(ca.top.items[0].subject, "shop/Deployment/api");
    let secrets = s
        .sections
        .iter()
        .find(|x| x.title == "Exposed secrets")
        .expect("secrets section");
    assert_eq!(secrets.open.total(), 0);
}

#[test]
fn six_month_trend_uses_the_state_at_each_month_end() {
    let ws = scenario();
    let s = compute(&ws, "2026-10", Scope::Cluster, NOW, "");
    let t: Vec<(String, u64, u64, u64, u64, u64)> = s
        .trend
        .iter()
        .map(|r| {
            (
                r.month.to_string(),
                r.open.critical,
                r.open.high,
                r.open.total(),
                r.new,
                r.fixed,
            )
        })
        .collect();
    assert_eq!(
        t,
        vec![
            // May: A1 C, A2 H, B1 H, B2 M, C1 L (B3 accepted).
            ("2026-05".into(), 1, 2, 5, 5, 0),
            ("2026-06".into(), 1, 2, 5, 0, 0),
            // July: + A3.
            ("2026-07".into(), 2, 2, 6, 1, 0),
            ("2026-08".into(), 2, 2, 6, 0, 0),
            // September: A2 fixed, B1 re-rated to critical.
            ("2026-09".into(), 3, 0, 5, 0, 1),
            ("2026-10".into(), 2, 1, 3, 1, 3),
        ]
    );
    // Bars are in % of the widest month (6), segments never past 100.
    let july = &s.trend[2];
    assert_eq!(
        (
            july.pct_critical,
            july.pct_high,
            july.pct_other,
            july.pct_rest
        ),
        (33, 33, 34, 0)
    );
    let oct = &s.trend[5];
    assert_eq!(
        (oct.pct_critical, oct.pct_high, oct.pct_other, oct.pct_rest),
        (33, 17, 0, 50)
    );
    for r in &s.trend {
        assert_eq!(
            r.pct_critical + r.pct_high + r.pct_other + r.pct_rest,
            100,
            "{r:?}"
        );
    }
    // August's severity of B1 is the old side of its 09-05 re-rating: high.
    let aug = compute(&ws, "2026-08", Scope::Cluster, NOW, "");
    assert_eq!((aug.open.critical, aug.open.high), (2, 2));
}

#[test]
fn team_views_cover_only_their_namespaces() {
    let ws = scenario();
    let pay = compute(&ws, "2026-10", Scope::Team("payments".into()), NOW, "");
    assert_eq!(pay.team_namespaces, vec!["shop"]);
    // shop runs api and nginx (edge): the same open findings as the cluster, without C.
    assert_eq!(
        (pay.open.critical, pay.open.high, pay.open.total()),
        (2, 1, 3)
    );
    // September for payments: A1, A3, B1 critical, B2 medium (C1 ran in batch).
    assert_eq!(pay.total_delta.0, 3 - 4);
    assert_eq!(pay.fixed.total(), 2);
    let ns: Vec<&str> = pay
        .top_namespaces
        .items
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(ns, vec!["shop"]);
    // Workloads listed are the team's only: nginx in web is not shown to payments.
    assert_eq!(
        pay.top_images.items[1].workloads.items,
        vec!["shop/Deployment/edge"]
    );

    let front = compute(&ws, "2026-10", Scope::Team("frontend".into()), NOW, "");
    assert_eq!(front.team_namespaces, vec!["web"]);
    assert_eq!(
        (front.open.critical, front.open.high, front.open.total()),
        (1, 0, 1)
    );
    let imgs: Vec<&str> = front
        .top_images
        .items
        .iter()
        .map(|i| i.repository.as_str())
        .collect();
    assert_eq!(imgs, vec!["docker.io/library/nginx"]);
    assert!(front.sections.iter().all(|x| x.open.total() == 0));

    let nobody = compute(&ws, "2026-10", Scope::Team("nobody".into()), NOW, "");
    assert!(nobody.team_namespaces.is_empty());
    assert_eq!(nobody.open.total(), 0);
}

/// DefectDojo products per team: nginx (web for frontend, shop for payments) has one test
/// per team, 42 in frontend's product and 43 in payments'. Frontend accepted B3; payments
/// did not.
fn per_team_products(ws: &Workspace) {
    let conn = rusqlite::Connection::open(ws.store()).expect("store");
    conn.execute(
        "UPDATE dojo_tests SET product = 'frontend' WHERE dd_test_id = 42",
        [],
    )
    .expect("frontend's test");
    let (subject_id, fkey): (i64, String) = conn
        .query_row(
            "SELECT f.subject_id, f.fkey FROM findings f JOIN subjects s ON s.id = f.subject_id
             WHERE s.key = 'docker.io/library/nginx' AND f.fkey LIKE 'CVE-2026-2003%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("B3 stored");
    conn.execute(
        "INSERT INTO dojo_tests(product_type, product, engagement, title, family, subject_id, dd_test_id)
         VALUES('Kubernetes', 'payments', 'trivy-digest', 'docker.io/library/nginx', 'vulnerability', ?1, 43)",
        [subject_id],
    )
    .expect("payments' test");
    let uid = trivy_digest::model::finding_uid(
        trivy_digest::model::Family::Vulnerability,
        "docker.io/library/nginx",
        &fkey,
    );
    conn.execute(
        "INSERT INTO dojo_findings(test_id, uid, dd_id) VALUES(?1, ?2, 901)",
        rusqlite::params![conn.last_insert_rowid(), uid],
    )
    .expect("B3 active in payments' test");
}

#[test]
fn per_team_dojo_products_link_and_triage_only_what_is_the_teams() {
    let ws = scenario();
    per_team_products(&ws);
    let dojo = "defectdojo:\n  url: https://dojo.example.com\n  \
                product: '{{ annotation:trivy-digest.io/team | cluster }}'\n";
    let pay = compute(&ws, "2026-10", Scope::Team("payments".into()), NOW, dojo);
    let pay_html = render::html(&pay).expect("html");
    let pay_text = render::text(&pay).expect("text");
    // nginx also runs in frontend's namespace: its first test may be frontend's; no link.
    for body in [&pay_html, &pay_text] {
        assert!(!body.contains("/test/42"), "payments links frontend's test");
    }
    let nginx = pay
        .top_images
        .items
        .iter()
        .find(|i| i.repository == "docker.io/library/nginx")
        .expect("nginx listed for payments");
    assert_eq!(nginx.link, None);
    // Payments' test holds B3 untriaged: frontend's acceptance does not hide it.
    assert!(pay.accepted.is_empty(), "{:?}", pay.accepted.items);
    assert_eq!((pay.open.high, pay.open.total()), (2, 4));
    // The cluster: B3 is open where payments runs it, so open.
    let all = compute(&ws, "2026-10", Scope::Cluster, NOW, dojo);
    assert!(all.accepted.is_empty());
    // Without a per-namespace mapping, one test serves every team: linked as before.
    let plain = "defectdojo:\n  url: https://dojo.example.com\n";
    let pay = compute(&ws, "2026-10", Scope::Team("payments".into()), NOW, plain);
    // ... and two tests of one subject come from a mapping change (the old one left
    // alone): the acceptance in either counts.
    assert_eq!(pay.accepted.items.len(), 1);
    assert_eq!(pay.accepted.items[0].id, "CVE-2026-2003");
    assert_eq!((pay.open.high, pay.open.total()), (1, 3));
    assert!(
        render::html(&pay)
            .expect("html")
            .contains("https://dojo.example.com/test/42")
    );
}

#[test]
fn history_reads_only_the_findings_the_trend_can_see() {
    use trivy_digest::output::summary::history::History;
    let ws = scenario();
    let config = config_for(&ws, "");
    let store = trivy_digest::store::Store::open(&ws.store()).expect("store");
    // April 2027: its trend starts in November 2026.
    let opts = deliver::options(
        &config,
        month("2027-04"),
        Scope::Cluster,
        utc("2027-05-02T00:00:00Z"),
    );
    let (since, until) = report::history_window(&opts);
    assert_eq!(since, utc("2026-11-01T00:00:00Z").timestamp());
    let all = History::load(&store, 0, until).expect("all");
    let bounded = History::load(&store, since, until).expect("bounded");
    // A1, A2, B2 and C1 were resolved before November and never came back.
    assert_eq!(all.findings.len(), 10);
    assert_eq!(bounded.findings.len(), 6);
    // So are the places org/report ran: it was gone in October.
    let ran = |h: &History| {
        let mut keys: Vec<String> = h
            .sightings
            .keys()
            .filter_map(|s| h.subjects.get(s))
            .map(|s| s.key.clone())
            .collect();
        keys.sort();
        keys
    };
    assert!(ran(&all).contains(&"ghcr.io/org/report".to_owned()));
    assert!(!ran(&bounded).contains(&"ghcr.io/org/report".to_owned()));
    // ... and leaving them out changes nothing.
    let text = |h: &History| {
        render::text(&report::compute(&store, h, &opts).expect("summary")).expect("text")
    };
    assert_eq!(text(&bounded), text(&all));
}

#[test]
fn month_in_progress_and_time_zone_boundaries() {
    let ws = scenario();
    // November to date (27th): A3 fixed on 11-10.
    let nov = compute(&ws, "2026-11", Scope::Cluster, NOW, "");
    assert!(nov.partial);
    assert_eq!((nov.open.critical, nov.open.high), (1, 1));
    assert_eq!(nov.fixed.critical, 1);
    // A month that has not started is an error naming it.
    let config = config_for(&ws, "");
    let store = trivy_digest::store::Store::open(&ws.store()).expect("store");
    let e = report::build(
        &store,
        &deliver::options(&config, month("2026-12"), Scope::Cluster, utc(NOW)),
    )
    .expect_err("future");
    assert!(e.to_string().contains("2026-12"), "{e}");
    // Rendered in the very second of the last sweep (the store keeps whole seconds): that
    // sweep counts, as it does a second later.
    let same_second = compute(&ws, "2026-11", Scope::Cluster, SCANS[5], "");
    let later = compute(&ws, "2026-11", Scope::Cluster, "2026-11-10T10:00:01Z", "");
    assert_eq!(same_second.open.total(), later.open.total());
    assert_eq!(same_second.fixed.critical, 1);
    // In Pacific/Kiritimati (UTC+14) October ends at 10-31 10:00 UTC; nothing moves
    // across that instant here, but a scan at 10-20 10:00 UTC is still October there.
    let k = compute(
        &ws,
        "2026-10",
        Scope::Cluster,
        NOW,
        "summary:\n  timezone: Pacific/Kiritimati\n",
    );
    assert_eq!(k.open.total(), 3);
    assert_eq!(k.timezone, "Pacific/Kiritimati");
    // In Pacific/Pago_Pago (UTC-11) the 05-10 scan is still May, and September's end is
    // 10-01 11:00 UTC.
    let p = compute(
        &ws,
        "2026-05",
        Scope::Cluster,
        NOW,
        "summary:\n  timezone: Pacific/Pago_Pago\n",
    );
    assert_eq!(p.new.total(), 5);
}

// ---------------------------------------------------------------------------------------
// Golden files: the exact HTML and text (UPDATE_GOLDEN=1 rewrites them).
// ---------------------------------------------------------------------------------------

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let out = artifacts().join(name);
        std::fs::write(&out, actual).expect("write actual");
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendering (first at line {}; actual saved as {}); \
             run with UPDATE_GOLDEN=1 if the change is intended",
            path.display(),
            line + 1,
            out.display()
        );
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

const DOJO_ENV: [(&str, &str); 2] = [
    ("DEFECTDOJO_URL", "https://dojo.example.com"),
    ("DEFECTDOJO_TOKEN", "not-used-by-summary"),
];

#[test]
fn golden_html_and_text_through_the_cli() {
    let mut ws = scenario();
    ws.env = DOJO_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let run = ws.run(&[
        "summary",
        "--month",
        "2026-10",
        "--out",
        "october.html",
        "--now",
        NOW,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let html = std::fs::read_to_string(ws.path("october.html")).expect("html");
    golden("summary-2026-10.html", &html);
    let run = ws.run(&[
        "summary",
        "--month",
        "2026-10",
        "--out",
        "october.txt",
        "--now",
        NOW,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(ws.path("october.txt")).expect("text");
    golden("summary-2026-10.txt", &text);
    // --text prints the same on stdout; --team gives the team view.
    let run = ws.run(&["summary", "--month", "2026-10", "--text", "--now", NOW]);
    assert_eq!(run.stdout, text);
    let run = ws.run(&[
        "summary", "--month", "2026-10", "--text", "--team", "payments", "--now", NOW,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    golden("summary-2026-10-payments.txt", &run.stdout);

    // The same numbers in both parts.
    assert!(
        text.contains(
            "3 open vulnerabilities at the end of October 2026 (-2 against September 2026)"
        )
    );
    assert!(html.contains(">-2</span> against September 2026"));
    for needle in [
        "3 open vulnerabilities at the end of October 2026",
        "CVE-2026-2001",
        "163.0 days",
        "67%",
        "ghcr.io/org/api",
        "risk accepted",
    ] {
        assert!(html.contains(needle), "HTML lacks {needle:?}");
        assert!(text.contains(needle), "text lacks {needle:?}");
    }
    // DefectDojo links for tests it knows.
    assert!(html.contains("href=\"https://dojo.example.com/test/42\""));
    assert!(text.contains("<https://dojo.example.com/test/42>"));
    // No script, no external asset, no image.
    for bad in ["<script", "<img", "<link", "src=", "@import", "url("] {
        assert!(!html.contains(bad), "HTML contains {bad:?}");
    }
    // Default month: the last complete one.
    let run = ws.run(&["summary", "--text", "--now", NOW]);
    assert!(run.stdout.contains("October 2026 ("), "{}", run.stdout);
    // Bad month: usage error naming it.
    let run = ws.run(&["summary", "--month", "2026-13"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("2026-13"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------
// Escaping.
// ---------------------------------------------------------------------------------------

const HOSTILE_NS: &str = "ns\"><img src=x onerror=alert(2)>";

fn hostile_store() -> Workspace {
    let ws = Workspace::new();
    ws.config(BASE_CONFIG);
    let mut v = vulnerability_report(
        HOSTILE_NS,
        "app",
        "org/<script>alert(0)</script>",
        Some(&digest(7)),
        &[Vuln {
            id: "CVE-2026-9999\"><img src=x onerror=alert(1)>",
            package: "<script>alert(1)</script>",
            installed: "1.0\"><b>",
            fixed: "2.0<svg onload=alert(4)>",
            severity: "CRITICAL",
            score: None,
        }],
    );
    v["report"]["updateTimestamp"] = json!("2026-10-05T10:00:00Z");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": HOSTILE_NS,
                     "annotations": {"trivy-digest.io/team": "<b>team</b>\"'"}}});
    let ca = config_audit(
        HOSTILE_NS,
        "app",
        &[(
            "KSV999",
            "CRITICAL",
            "\"><img src=x onerror=alert(3)> & <script>x</script>",
        )],
        "2026-10-05T10:00:00Z",
    );
    // A name with no place to break, wider than a phone: must wrap, not overflow.
    let long = format!("org/{}", "very-long-repository-name-".repeat(8));
    let mut l = vulnerability_report(
        HOSTILE_NS,
        &"w".repeat(90),
        &long,
        Some(&dg(8)),
        &[vuln(
            "CVE-2026-8888",
            Box::leak("p".repeat(120).into_boxed_str()),
            "HIGH",
        )],
    );
    l["report"]["updateTimestamp"] = json!("2026-10-05T10:00:00Z");
    let input = ws.write("hostile.json", &list(vec![ns, v, ca, l]));
    let run = ws.scan_at("2026-10-05T10:00:00Z", &[&input]);
    assert!(matches!(run.code, 0 | 3), "{}\n{}", run.stdout, run.stderr);
    ws
}

#[test]
fn hostile_text_is_escaped_in_html() {
    let ws = hostile_store();
    for team in [None, Some("<b>team</b>\"'")] {
        let scope = match team {
            Some(t) => Scope::Team(t.into()),
            None => Scope::Cluster,
        };
        let s = compute(&ws, "2026-10", scope, NOW, "");
        assert_eq!(s.open.critical, 1, "the hostile finding is counted");
        let html = render::html(&s).expect("html");
        for bad in ["<script", "<img", "<svg", "<b>", "\"><img", "\"><b"] {
            assert!(!html.contains(bad), "unescaped {bad:?} in:\n{html}");
        }
        // Shown, as text.
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{html}"
        );
        assert!(html.contains("CVE-2026-9999&#34;&#62;&#60;img src=x onerror=alert(1)&#62;"));
        assert!(html.contains("ns&#34;&#62;&#60;img src=x onerror=alert(2)&#62;"));
        assert!(
            html.contains("&#34;&#62;&#60;img src=x onerror=alert(3)&#62; &#38; &#60;script&#62;")
        );
        if team.is_some() {
            assert!(
                html.contains("team &#60;b&#62;team&#60;/b&#62;&#34;&#39;"),
                "{html}"
            );
        }
        // The text part shows the text as it is (it is not HTML).
        let text = render::text(&s).expect("text");
        assert!(text.contains("<script>alert(1)</script>"), "{text}");
    }
}

// ---------------------------------------------------------------------------------------
// Mail through a real SMTP server.
// ---------------------------------------------------------------------------------------

fn mail_config(ws: &Workspace, sink: &SmtpSink, extra: &str) -> Config {
    let yaml = format!(
        "{}summary:\n  to: ['Platform Lead <lead@example.com>']\n{extra}teams:\n  routes:\n    payments:\n      email: [pay@example.com, pay-lead@example.com]\n    frontend:\n      email: [web@example.com]\n    ghosts:\n      email: [ghosts@example.com]\n",
        sink.config_yaml(),
    );
    config_for(ws, &yaml)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// What the scheduler passes: skip refused audiences, retry a failure after 15 minutes.
const SCHEDULED: SendOptions = SendOptions {
    automatic: true,
    retry_after: 900,
};

/// One test's mail setup against one sink: `mail_config`, its mailer and audiences.
struct MailSetup {
    config: Config,
    mailer: Mailer,
    audiences: Vec<deliver::Audience>,
}

impl MailSetup {
    fn new(ws: &Workspace, sink: &SmtpSink, extra: &str) -> MailSetup {
        let config = mail_config(ws, sink, extra);
        let mailer = Mailer::new(config.smtp.as_ref().expect("smtp")).expect("mailer");
        let audiences = deliver::audiences(&config);
        MailSetup {
            config,
            mailer,
            audiences,
        }
    }

    /// Only the audience of `scope`.
    fn only(mut self, scope: Scope) -> MailSetup {
        self.audiences.retain(|a| a.scope == scope);
        self
    }

    /// October 2026 to the audiences, as the scheduler sends it at `now`.
    fn send_october(
        &self,
        rt: &tokio::runtime::Runtime,
        store: &mut trivy_digest::store::Store,
        now: DateTime<Utc>,
        metrics: Option<&trivy_digest::metrics::Metrics>,
    ) -> Vec<(deliver::Audience, Outcome)> {
        rt.block_on(deliver::send_month(
            &self.config,
            store,
            &self.mailer,
            month("2026-10"),
            now,
            &self.audiences,
            SCHEDULED,
            metrics,
        ))
        .expect("send")
    }
}

#[test]
fn mail_per_team_multipart_and_idempotent() {
    let ws = scenario();
    let sink = SmtpSink::start();
    let mail = MailSetup::new(&ws, &sink, "");
    let mut store = trivy_digest::store::Store::open(&ws.store()).expect("store");
    assert_eq!(mail.audiences.len(), 4);
    let rt = runtime();
    let outcomes = mail.send_october(&rt, &mut store, utc(NOW), None);
    let by_scope: Vec<(String, Outcome)> = outcomes
        .iter()
        .map(|(a, o)| (a.scope.id(), o.clone()))
        .collect();
    assert_eq!(
        by_scope,
        vec![
            ("cluster".into(), Outcome::Sent),
            ("team:frontend".into(), Outcome::Sent),
            // No namespace is annotated `ghosts`: nothing to report, nothing sent.
            ("team:ghosts".into(), Outcome::NoNamespaces),
            ("team:payments".into(), Outcome::Sent),
        ]
    );
    let msgs = sink.wait_for(3, Duration::from_secs(10));
    assert_eq!(msgs.len(), 3);
    let cluster = &msgs[0];
    assert_eq!(cluster.rcpt_tos, vec!["lead@example.com"]);
    assert_eq!(cluster.content_type, "multipart/alternative");
    assert_eq!(
        cluster.subject,
        "[prod] Vulnerability summary October 2026: 2 critical, 1 high open (-2 vs September 2026)"
    );
    assert!(
        cluster.message_id.starts_with("<summary-2026-10-"),
        "{}",
        cluster.message_id
    );
    assert!(
        cluster.message_id.ends_with("@example.com>"),
        "{}",
        cluster.message_id
    );
    let text = cluster.text.as_deref().expect("text part");
    let html = cluster.html.as_deref().expect("html part");
    assert!(text.contains("3 open vulnerabilities at the end of October 2026"));
    assert!(html.contains("3 open vulnerabilities at the end of October 2026"));
    assert!(
        html.contains("5 workloads in 3 namespaces"),
        "the cluster view counts batch too"
    );

    let front = &msgs[1];
    assert_eq!(front.rcpt_tos, vec!["web@example.com"]);
    assert!(
        front
            .subject
            .contains("for team frontend: 1 critical, 0 high"),
        "{}",
        front.subject
    );
    let fh = front.html.as_deref().expect("html");
    assert!(
        !fh.contains("ghcr.io/org/api"),
        "frontend sees only its namespaces"
    );
    assert!(!fh.contains("shop/"), "frontend sees only its workloads");

    let pay = &msgs[2];
    let mut rcpt = pay.rcpt_tos.clone();
    rcpt.sort();
    assert_eq!(rcpt, vec!["pay-lead@example.com", "pay@example.com"]);
    assert!(pay.subject.contains("for team payments"), "{}", pay.subject);
    let ptext = pay.text.as_deref().expect("text");
    assert!(
        !ptext.contains("batch"),
        "payments does not see batch:\n{ptext}"
    );
    assert!(!ptext.contains("web/Deployment/nginx"), "{ptext}");

    // Again (a restart, or the second replica): nothing is sent.
    let again = mail.send_october(&rt, &mut store, utc(NOW), None);
    assert!(
        again
            .iter()
            .all(|(_, o)| matches!(o, Outcome::AlreadySent | Outcome::NoNamespaces)),
        "{again:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.messages().len(), 3);
    // The CLI's --send is idempotent too.
    let mut ws_cli = ws;
    ws_cli.config(&format!(
        "{BASE_CONFIG}{}summary:\n  to: ['Platform Lead <lead@example.com>']\n",
        sink.config_yaml()
    ));
    ws_cli.env.clear();
    let run = ws_cli.run(&["summary", "--month", "2026-10", "--send", "--now", NOW]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("already sent"), "{}", run.stderr);
    // A changed recipient list is a new audience: it gets the month.
    ws_cli.config(&format!(
        "{BASE_CONFIG}{}summary:\n  to: [lead@example.com, cto@example.com]\n",
        sink.config_yaml()
    ));
    let run = ws_cli.run(&["summary", "--month", "2026-10", "--send", "--now", NOW]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains(": sent"), "{}", run.stderr);
    assert_eq!(sink.wait_for(4, Duration::from_secs(10)).len(), 4);
}

#[test]
fn second_replica_does_not_send_while_the_first_holds_the_claim() {
    let ws = scenario();
    let sink = SmtpSink::start();
    let mail = MailSetup::new(&ws, &sink, "").only(Scope::Cluster);
    // Replica 1 claimed a minute ago and is still sending.
    {
        let conn = rusqlite::Connection::open(ws.store()).expect("store");
        conn.execute(
            "INSERT INTO sent_summaries(month, audience, scope, recipients, message_id, state,
                 claimed_by, claimed_at, attempts)
             VALUES('2026-10', ?1, 'cluster', 'lead@example.com', 'x', 'sending', 'replica-1', ?2, 1)",
            rusqlite::params![mail.audiences[0].key(), utc(NOW).timestamp() - 60],
        )
        .expect("claim");
    }
    let mut store = trivy_digest::store::Store::open(&ws.store()).expect("store");
    let rt = runtime();
    let out = mail.send_october(&rt, &mut store, utc(NOW), None);
    assert_eq!(out[0].1, Outcome::InProgressElsewhere);
    // Replica 1 died mid-send: after the lease its claim is taken over (same Message-ID).
    let later = utc(NOW) + chrono::TimeDelta::seconds(deliver::CLAIM_LEASE + 1);
    let out = mail.send_october(&rt, &mut store, later, None);
    assert_eq!(out[0].1, Outcome::Sent);
    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).len(), 1);
}

#[test]
fn a_summary_that_cannot_be_built_is_a_failure_not_a_stuck_claim() {
    let ws = scenario();
    // A3's stored data is not text: the lists that name A3 (cluster, payments) fail.
    {
        let conn = rusqlite::Connection::open(ws.store()).expect("store");
        let n = conn
            .execute(
                "UPDATE findings SET data = X'00' WHERE fkey LIKE 'CVE-2026-1003%'",
                [],
            )
            .expect("break A3");
        assert_eq!(n, 1);
    }
    let sink = SmtpSink::start();
    let mail = MailSetup::new(&ws, &sink, "");
    let mut store = trivy_digest::store::Store::open(&ws.store()).expect("store");
    let rt = runtime();
    let out = mail.send_october(&rt, &mut store, utc(NOW), None);
    let by_scope = |s: &Scope| {
        out.iter()
            .find(|(a, _)| &a.scope == s)
            .map(|(_, o)| o.clone())
            .expect("outcome")
    };
    assert!(
        matches!(by_scope(&Scope::Cluster), Outcome::Failed(_)),
        "{out:?}"
    );
    assert!(matches!(
        by_scope(&Scope::Team("payments".into())),
        Outcome::Failed(_)
    ));
    // The others still got theirs.
    assert_eq!(by_scope(&Scope::Team("frontend".into())), Outcome::Sent);
    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).len(), 1);
    // Recorded as failed (retried after the interval), not left claimed for the lease.
    let rec = deliver::recorded(&store, month("2026-10")).expect("recorded");
    let cluster = mail
        .audiences
        .iter()
        .find(|a| a.scope == Scope::Cluster)
        .expect("cluster audience");
    assert_eq!(rec[&cluster.key()].0, "failed");
    let later = utc(NOW) + chrono::TimeDelta::seconds(901);
    let out = mail.send_october(&rt, &mut store, later, None);
    assert!(
        out.iter()
            .any(|(a, o)| a.scope == Scope::Cluster && matches!(o, Outcome::Failed(_)))
    );
}

#[test]
fn failures_retry_with_backoff_and_are_counted() {
    let ws = scenario();
    // Two transient refusals, then accepted: within one send (3 attempts).
    let sink = SmtpSink::start_with(SinkBehaviour {
        fail_first: 2,
        reject: false,
        ..Default::default()
    });
    let mail = MailSetup::new(&ws, &sink, "").only(Scope::Cluster);
    let metrics = trivy_digest::metrics::Metrics::new();
    let mut store = trivy_digest::store::Store::open(&ws.store()).expect("store");
    let rt = runtime();
    let out = mail.send_october(&rt, &mut store, utc(NOW), Some(&metrics));
    assert_eq!(out[0].1, Outcome::Sent);
    assert_eq!(sink.refused(), 2);
    assert!(
        metrics
            .encode()
            .contains("trivy_digest_summaries_sent_total 1")
    );

    // A server that refuses for good: counted, recorded, not retried automatically.
    let bad = SmtpSink::start_with(SinkBehaviour {
        fail_first: 0,
        reject: true,
        ..Default::default()
    });
    let mail = MailSetup::new(&ws, &bad, "").only(Scope::Team("frontend".into()));
    let out = mail.send_october(&rt, &mut store, utc(NOW), Some(&metrics));
    assert!(matches!(out[0].1, Outcome::Refused(_)), "{:?}", out[0].1);
    assert!(
        metrics
            .encode()
            .contains("trivy_digest_summary_failures_total 1")
    );
    let out = mail.send_october(&rt, &mut store, utc(NOW), Some(&metrics));
    assert!(
        matches!(out[0].1, Outcome::RefusedEarlier(_)),
        "{:?}",
        out[0].1
    );
    assert_eq!(bad.refused(), 1, "not retried automatically");

    // Transient failures past the attempts: failed, retried after retry_interval only.
    let down = SmtpSink::start_with(SinkBehaviour {
        fail_first: 100,
        reject: false,
        ..Default::default()
    });
    let mail = MailSetup::new(&ws, &down, "").only(Scope::Team("payments".into()));
    let out = mail.send_october(&rt, &mut store, utc(NOW), Some(&metrics));
    assert!(matches!(out[0].1, Outcome::Failed(_)), "{:?}", out[0].1);
    assert_eq!(down.refused(), 3, "three attempts with backoff");
    let later = utc(NOW) + chrono::TimeDelta::seconds(60);
    let out = mail.send_october(&rt, &mut store, later, Some(&metrics));
    assert_eq!(out[0].1, Outcome::Waiting);
    assert_eq!(down.refused(), 3);
}

// ---------------------------------------------------------------------------------------
// Schedule: next run across month ends, DST and time zones; catch-up.
// ---------------------------------------------------------------------------------------

fn cron(s: &str) -> cron::Schedule {
    s.parse().expect("cron")
}

#[test]
fn next_run_across_month_ends_dst_and_time_zones() {
    let s = cron("0 0 8 1 * *");
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().expect("tz");
    let ny: chrono_tz::Tz = "America/New_York".parse().expect("tz");
    let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().expect("tz");
    // 08:00 Berlin is 06:00 UTC in summer time, 07:00 UTC in winter time.
    assert_eq!(
        schedule::next_run(&s, berlin, utc("2026-09-15T00:00:00Z")),
        Some(utc("2026-10-01T06:00:00Z"))
    );
    assert_eq!(
        schedule::next_run(&s, berlin, utc("2026-10-01T06:00:00Z")),
        Some(utc("2026-11-01T07:00:00Z")),
        "Berlin left summer time on 10-25"
    );
    assert_eq!(
        schedule::next_run(&s, berlin, utc("2027-03-15T00:00:00Z")),
        Some(utc("2027-04-01T06:00:00Z")),
        "and is back on summer time after 03-28"
    );
    // New York: EDT (UTC-4) until 11-01 02:00, so 11-01 08:00 is already EST (UTC-5).
    assert_eq!(
        schedule::next_run(&s, ny, utc("2026-10-15T00:00:00Z")),
        Some(utc("2026-11-01T13:00:00Z"))
    );
    assert_eq!(
        schedule::next_run(&s, ny, utc("2026-09-15T00:00:00Z")),
        Some(utc("2026-10-01T12:00:00Z"))
    );
    // Tokyo is ahead of UTC: its 1 December 08:00 is 30 November 23:00 UTC.
    assert_eq!(
        schedule::next_run(&s, tokyo, utc("2026-11-27T06:00:00Z")),
        Some(utc("2026-11-30T23:00:00Z"))
    );
    assert_eq!(
        schedule::month_for(utc("2026-11-30T23:00:00Z"), tokyo).to_string(),
        "2026-11",
        "the month just ended in Tokyo"
    );
    // Year end.
    assert_eq!(
        schedule::month_for(utc("2027-01-01T07:00:00Z"), berlin).to_string(),
        "2026-12"
    );
    // A daily 02:30 schedule in Berlin: the spring-forward day has no 02:30 (skipped);
    // the fall-back day has it twice (both fire; the claim keeps one mail per month).
    let daily = cron("0 30 2 * * *");
    assert_eq!(
        schedule::next_run(&daily, berlin, utc("2027-03-27T12:00:00Z")),
        Some(utc("2027-03-29T00:30:00Z"))
    );
    let first = schedule::next_run(&daily, berlin, utc("2026-10-24T12:00:00Z")).expect("run");
    assert_eq!(first, utc("2026-10-25T00:30:00Z"));
    let second = schedule::next_run(&daily, berlin, first).expect("run");
    assert!(
        second == utc("2026-10-25T01:30:00Z") || second == utc("2026-10-26T01:30:00Z"),
        "{second}"
    );
    // The latest occurrence at or before now.
    assert_eq!(
        schedule::last_run(&s, berlin, utc("2026-11-27T06:00:00Z")),
        Some(utc("2026-11-01T07:00:00Z"))
    );
    assert_eq!(
        schedule::last_run(&s, berlin, utc("2026-11-01T07:00:00Z")),
        Some(utc("2026-11-01T07:00:00Z"))
    );
}

#[test]
fn missed_run_is_caught_up_once() {
    let ws = scenario();
    let sink = SmtpSink::start();
    let config = mail_config(&ws, &sink, "  timezone: Europe/Berlin\n  teams: false\n");
    let mailer = Mailer::new(config.smtp.as_ref().expect("smtp")).expect("mailer");
    let mut store = trivy_digest::store::Store::open(&ws.store()).expect("store");
    let rt = runtime();
    let mut tick = |now: &str| {
        rt.block_on(schedule::tick(&config, &mut store, &mailer, utc(now), None))
            .expect("tick")
    };
    // First start on 10-15: armed; the 10-01 occurrence predates it, nothing is sent.
    let t = tick("2026-10-15T12:00:00Z");
    assert_eq!(t.month, None);
    // Down from 10-31 to 11-03: the 11-01 08:00 Berlin occurrence was missed.
    let t = tick("2026-11-03T09:30:00Z");
    assert_eq!(t.month, Some(month("2026-10")));
    assert_eq!(t.outcomes.len(), 1);
    assert_eq!(t.outcomes[0].1, Outcome::Sent);
    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).len(), 1);
    // Later wake-ups and restarts send nothing more.
    for now in [
        "2026-11-03T09:35:00Z",
        "2026-11-20T00:00:00Z",
        "2026-12-01T06:59:59Z",
    ] {
        let t = tick(now);
        assert!(
            t.outcomes.iter().all(|(_, o)| *o == Outcome::AlreadySent),
            "{now}: {t:?}"
        );
    }
    // At 12-01 08:00 Berlin (07:00 UTC) November is due.
    let t = tick("2026-12-01T07:00:00Z");
    assert_eq!(t.month, Some(month("2026-11")));
    assert_eq!(t.outcomes[0].1, Outcome::Sent);
    let msgs = sink.wait_for(2, Duration::from_secs(10));
    assert!(
        msgs[1].subject.contains("November 2026"),
        "{}",
        msgs[1].subject
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.messages().len(), 2);
}

#[test]
fn summary_loop_sends_at_the_injected_time_and_stops() {
    let ws = scenario();
    let sink = SmtpSink::start();
    let mut config = mail_config(&ws, &sink, "  teams: false\n");
    config.summary.schedule =
        trivy_digest::output::summary::config::CronSchedule::parse("0 0 8 1 * *").expect("cron");
    // Armed before the occurrence, started after it: the loop catches up at once.
    {
        let mut store = trivy_digest::store::Store::open(&ws.store()).expect("store");
        schedule::armed_at(&mut store, utc("2026-10-20T00:00:00Z")).expect("arm");
    }
    let clock: trivy_digest::output::Clock = std::sync::Arc::new(|| utc("2026-11-02T00:00:00Z"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let (lead_tx, lead_rx) = tokio::sync::watch::channel(true);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let metrics = std::sync::Arc::new(trivy_digest::metrics::Metrics::new());
        let output = trivy_digest::output::summary::output::SummaryOutput::new(
            &config,
            Some(metrics.clone()),
        )
        .expect("summary")
        .expect("scheduled");
        let signals = trivy_digest::output::runner::Signals {
            stop: stop_rx,
            leading: lead_rx,
            listed: std::sync::Arc::new(|| true),
            changes: None,
        };
        let mut runner =
            trivy_digest::output::runner::Runner::new(&config, Some(metrics.clone()), None);
        runner.clock = clock;
        let task =
            tokio::spawn(async move { runner.drive(std::sync::Arc::new(output), signals).await });
        // The server files the message before the loop hears its 250 and counts it:
        // wait for both.
        let sent = || {
            metrics
                .encode()
                .contains("trivy_digest_summaries_sent_total 1")
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while (sink.messages().is_empty() || !sent()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(sink.messages().len(), 1);
        assert!(sent(), "{}", metrics.encode());
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops on shutdown")
            .expect("join")
            .expect("ok");
        drop(lead_tx);
    });
}

// ---------------------------------------------------------------------------------------
// /summary/ pages.
// ---------------------------------------------------------------------------------------

#[test]
fn summary_pages_are_served_read_only() {
    let ws = scenario();
    let config = config_for(
        &ws,
        "summary:\n  serve: true\nteams:\n  routes:\n    payments: {}\n",
    );
    let mut web = trivy_digest::output::summary::web::SummaryWeb::new(config);
    web.clock = std::sync::Arc::new(|| utc(NOW));
    let state = std::sync::Arc::new(trivy_digest::serve::AppState {
        health: Default::default(),
        metrics: Default::default(),
        summary: Some(std::sync::Arc::new(web)),
        api: None,
    });
    let rt = runtime();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(trivy_digest::serve::serve(
            listener,
            state,
            std::future::pending(),
        ));
        let client = reqwest::Client::new();
        let get = |path: &str| {
            let url = format!("http://{addr}{path}");
            let client = client.clone();
            async move {
                let r = client.get(url).send().await.expect("get");
                let status = r.status().as_u16();
                let headers = r.headers().clone();
                (status, headers, r.text().await.expect("body"))
            }
        };
        let (status, headers, body) = get("/summary/").await;
        assert_eq!(status, 200);
        assert!(body.contains("href=\"/summary/2026-11\""), "{body}");
        assert!(body.contains("href=\"/summary/2026-05\""), "{body}");
        assert!(!body.contains("2026-04"), "no month before the history");
        assert!(body.contains("(in progress)"));
        let csp = headers
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        let (status, _, body) = get("/summary/2026-10").await;
        assert_eq!(status, 200);
        assert!(body.contains("3 open vulnerabilities at the end of October 2026"));
        let (status, _, body) = get("/summary/2026-10.txt?team=payments").await;
        assert_eq!(status, 200);
        assert!(body.contains("team payments"), "{body}");
        let (status, _, _) = get("/summary/2026-13").await;
        assert_eq!(status, 404);
        let (status, _, _) = get("/summary/2027-01").await;
        assert_eq!(status, 404);
        let (status, _, _) = get("/metrics").await;
        assert_eq!(status, 200);
        server.abort();
    });
}

// ---------------------------------------------------------------------------------------
// Headless Chromium: nothing overflows at 600 and 1200 px; screenshots as artifacts.
// ---------------------------------------------------------------------------------------

#[test]
fn renders_without_horizontal_overflow_in_chromium() {
    let ws = scenario();
    let s = compute(&ws, "2026-10", Scope::Cluster, NOW, "");
    let html = render::html(&s).expect("html");
    let hostile = hostile_store();
    let h = compute(&hostile, "2026-10", Scope::Cluster, NOW, "");
    let hostile_html = render::html(&h).expect("html");
    for (name, page) in [
        ("summary-2026-10", &html),
        ("summary-hostile", &hostile_html),
    ] {
        for width in [600u32, 1200] {
            let probe = support::chromium::probe(page, width);
            assert!(
                probe.scroll_width <= probe.viewport_width,
                "{name} at {width}px: content is {} px wide in a {} px viewport",
                probe.scroll_width,
                probe.viewport_width
            );
            assert_eq!(probe.scripts_in_product, 0);
            let shot = artifacts().join(format!("{name}-{width}.png"));
            support::chromium::screenshot(page, width, &shot);
            let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
            assert!(size > 1000, "{} was not written", shot.display());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Message template overrides (`summary.templates`).
// ---------------------------------------------------------------------------------------

/// The mail's two parts come from the user's files, with the documented variables; HTML
/// variables are autoescaped, text ones are not.
#[test]
fn summary_templates_override_both_parts() {
    let ws = scenario();
    let html = ws.write(
        "summary.html",
        "<h1 class=\"x\">{{ month_name }} for {{ scope_label }}</h1>\n<p>{{ open.critical }} critical, {{ open.total }} open ({{ total_delta }})</p>\n{% for i in top_images.items %}<li>{{ i.repository }}</li>{% endfor %}\n",
    );
    let text = ws.write(
        "summary.txt",
        "Custom summary {{ month }} of {{ cluster }}: {{ open.critical }} critical, {{ subject }}\n\n\n\n{% for t in trend %}{{ t.label }}={{ t.open.total }} {% endfor %}\n",
    );
    let sink = SmtpSink::start();
    let extra = format!(
        "  templates:\n    html: {}\n    text: {}\n",
        html.display(),
        text.display()
    );
    let mut mail = MailSetup::new(&ws, &sink, &extra).only(Scope::Cluster);
    mail.config.load_templates().expect("templates load");
    let mut store = trivy_digest::store::Store::open(&ws.store()).expect("store");
    let rt = runtime();
    let out = mail.send_october(&rt, &mut store, utc(NOW), None);
    assert_eq!(out[0].1, Outcome::Sent, "{out:?}");
    let m = &sink.wait_for(1, Duration::from_secs(10))[0];
    let html = m.html.as_deref().expect("html");
    let text = m.text.as_deref().expect("text");
    assert!(
        html.starts_with(
            "<h1 class=\"x\">October 2026 for whole cluster</h1>\n<p>2 critical, 3 open (-2)</p>"
        ),
        "{html}"
    );
    assert!(html.contains("<li>ghcr.io&#x2f;"), "autoescaped: {html}");
    assert!(
        text.starts_with("Custom summary 2026-10 of prod: 2 critical, [prod] Vulnerability summary October 2026: 2 critical, 1 high open (-2 vs September 2026)\n\nMay 2026="),
        "blank runs collapsed as for the built-in text: {text}"
    );
    assert_eq!(
        m.subject,
        "[prod] Vulnerability summary October 2026: 2 critical, 1 high open (-2 vs September 2026)"
    );

    // Hostile report text through the same override: escaped in HTML, as is in text.
    let hostile = hostile_store();
    let s = compute(&hostile, "2026-10", Scope::Cluster, NOW, "");
    let t = mail.config.summary.templates.clone();
    let page = render::html_with(&s, &t).expect("html");
    assert!(!page.contains("<script"), "{page}");
    assert!(
        page.contains("org&#x2f;&lt;script&gt;alert(0)&lt;&#x2f;script&gt;"),
        "{page}"
    );
}

/// A template that fails on the month's data is a failed summary (retried later), not a
/// panic or a stuck claim, and the error names the file and line.
#[test]
fn a_summary_template_failing_at_send_time_is_a_failure() {
    let ws = scenario();
    let bad = ws.write("bad.txt", "{{ month }}\n{{ no_such_number }}\n");
    let sink = SmtpSink::start();
    let extra = format!("  templates:\n    text: {}\n", bad.display());
    let mut mail = MailSetup::new(&ws, &sink, &extra).only(Scope::Cluster);
    mail.config.load_templates().expect("templates load");
    let mut store = trivy_digest::store::Store::open(&ws.store()).expect("store");
    let rt = runtime();
    let out = mail.send_october(&rt, &mut store, utc(NOW), None);
    match &out[0].1 {
        Outcome::Failed(e) => assert!(
            e.contains("summary.templates.text") && e.contains("bad.txt:2"),
            "{e}"
        ),
        o => panic!("expected a failure, got {o:?}"),
    }
    assert!(sink.messages().is_empty());
}
