//! Fleet mode: many clusters writing into one PostgreSQL store (a real server, started by
//! tests/support/postgres.rs). Each cluster's sweep, relist and grace expiry touches its
//! own reports only; images, findings and DefectDojo tests are shared, so an image that
//! runs in three clusters is one test holding all three clusters' workloads.

mod support;

use std::path::PathBuf;
use std::process::Child;

use serde_json::Value;
use support::cli::{Run, Workspace, output};
use support::dojo::{DojoFake, results};
use support::reports::{Vuln, digest, list, vuln, vulnerability_report};

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-02T10:00:00Z";
const T2: &str = "2026-11-05T10:00:00Z";

/// One cluster's install: its own working directory and config, the fleet's store.
struct Cluster {
    name: String,
    ws: Workspace,
}

fn fleet(test: &str, names: &[&str], extra_config: &str) -> (String, Vec<Cluster>) {
    let db = support::postgres::database(test);
    let clusters = names
        .iter()
        .map(|n| {
            let mut ws = Workspace::new();
            let pw = ws.write("pg-password", support::postgres::PASSWORD);
            ws.config(&format!(
                "cluster: {n}\nstore: {}\nstore_password_file: {}\ngrace_period: 24h\n{extra_config}",
                support::postgres::url(&db),
                pw.display()
            ));
            ws.pg = Some(db.clone());
            Cluster {
                name: (*n).to_owned(),
                ws,
            }
        })
        .collect();
    (db, clusters)
}

/// img-1 and img-2 (shared digests 1 and 2) have the same two findings everywhere; each
/// cluster's own img-0 digest (100, 101, 102) has CVE-2026-0001 and one of its own.
fn vulns(digest: u32) -> Vec<Vuln> {
    let own = match digest {
        100 => "CVE-2026-0100",
        101 => "CVE-2026-0101",
        102 => "CVE-2026-0102",
        _ => "CVE-2026-0002",
    };
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln(own, "zlib", "HIGH"),
    ]
}

/// `n` workloads in namespace `shop` of one cluster: workload i runs `org/img-(i % 3)`;
/// the digest of img-0 is the cluster's own (`own_digest`), img-1 and img-2 are shared.
fn export(c: &Cluster, n: u32, own_digest: u32) -> PathBuf {
    let reports: Vec<Value> = (0..n)
        .map(|i| {
            let img = i % 3;
            let d = if img == 0 { own_digest } else { img };
            vulnerability_report(
                "shop",
                &format!("app-{i}"),
                &format!("org/img-{img}"),
                Some(&digest(d)),
                &vulns(d),
            )
        })
        .collect();
    c.ws.write("export.json", &list(reports))
}

fn sweep(ws: &Workspace, now: &str, input: &std::path::Path) -> Child {
    ws.command(&[
        "scan",
        "--format",
        "json",
        "--complete",
        "--now",
        now,
        "--from",
        &input.display().to_string(),
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawn scan")
}

fn finished(name: &str, child: Child) -> Run {
    let run = output(child.wait_with_output().expect("wait"));
    assert!(
        matches!(run.code, 0 | 3),
        "cluster {name}: exit {}\n{}\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    run
}

fn live_reports(c: &Cluster) -> i64 {
    c.ws.count(&format!(
        "SELECT COUNT(*) FROM reports WHERE cluster = '{}' AND gone_since IS NULL",
        c.name
    ))
}

#[test]
fn three_clusters_write_at_once_and_each_sweep_ends_only_its_own_reports() {
    let (_db, clusters) = fleet("three_at_once", &["eu", "us", "ap"], "");
    let exports: Vec<PathBuf> = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| export(c, 30, 100 + i as u32))
        .collect();
    // Three processes, one per cluster, at the same moment; twice, so the second round
    // meets rows the first wrote.
    for now in [T0, T1] {
        let children: Vec<Child> = clusters
            .iter()
            .zip(&exports)
            .map(|(c, e)| sweep(&c.ws, now, e))
            .collect();
        for (c, child) in clusters.iter().zip(children) {
            let s = finished(&c.name, child).json();
            assert_eq!(s["reports"]["stored"], 30, "{}: {s:#}", c.name);
            assert_eq!(s["history"]["reports_gone"], 0, "{}: {s:#}", c.name);
        }
    }
    let ws = &clusters[0].ws;
    for c in &clusters {
        assert_eq!(live_reports(c), 30, "{}", c.name);
    }
    // Digests are shared: img-1 and img-2 once each, img-0 once per cluster.
    assert_eq!(ws.count("SELECT COUNT(*) FROM images"), 5);
    assert_eq!(ws.count("SELECT COUNT(*) FROM workloads"), 90);
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM clusters"),
        3,
        "every cluster is recorded"
    );
    // Findings are per image repository: img-0's three digests share CVE-2026-0001
    // and have one of their own each.
    assert_eq!(
        ws.count("SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL"),
        4 + 2 + 2
    );

    // us is scaled down to 6 workloads: only us's 24 others start their grace period.
    let us = &clusters[1];
    let small = export(us, 6, 101);
    let s = finished(&us.name, sweep(&us.ws, T1, &small)).json();
    assert_eq!(s["history"]["reports_gone"], 24, "{s:#}");
    assert_eq!(live_reports(&clusters[0]), 30);
    assert_eq!(live_reports(us), 6);
    assert_eq!(live_reports(&clusters[2]), 30);

    // eu's reports go too (its export is lost: an empty --complete list is refused,
    // so eu's workloads are deleted one by one; here: all but one).
    let eu = &clusters[0];
    let one = export(eu, 1, 100);
    let s = finished(&eu.name, sweep(&eu.ws, T1, &one)).json();
    assert_eq!(s["history"]["reports_gone"], 29, "{s:#}");

    // Past the grace period, us's sweep expires us's gone reports only: eu's 29 gone
    // reports wait for eu's own next sweep.
    let s = finished(&us.name, sweep(&us.ws, T2, &small)).json();
    assert_eq!(s["history"]["reports_expired"], 24, "{s:#}");
    let gone_eu = eu
        .ws
        .count("SELECT COUNT(*) FROM reports WHERE cluster = 'eu' AND gone_since IS NOT NULL");
    assert_eq!(
        gone_eu, 29,
        "another cluster's grace expiry never touches eu"
    );
    let s = finished(&eu.name, sweep(&eu.ws, T2, &one)).json();
    assert_eq!(s["history"]["reports_expired"], 29, "{s:#}");
    // What still runs somewhere stays open: img-1 and img-2 run in ap.
    assert_eq!(
        ws.count(
            "SELECT COUNT(*) FROM findings f JOIN subjects s ON s.id = f.subject_id
             WHERE f.resolved_at IS NULL AND s.key IN ('ghcr.io/org/img-1', 'ghcr.io/org/img-2')"
        ),
        4
    );
}

#[test]
fn a_writer_killed_mid_sweep_leaves_the_store_as_it_was_and_the_next_sweep_converges() {
    let (_db, clusters) = fleet("killed", &["eu", "us"], "");
    let (eu, us) = (&clusters[0], &clusters[1]);
    let big = export(eu, 3000, 100);
    let base = export(us, 30, 101);
    finished(&us.name, sweep(&us.ws, T0, &base));
    let before = us.ws.count("SELECT COUNT(*) FROM reports");
    // eu is killed while it writes its 3000 reports in one transaction.
    let mut child = sweep(&eu.ws, T0, &big);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // The sweep's transaction is open once its scan row exists (uncommitted rows are
        // invisible; the lock shows it).
        let writing = us
            .ws
            .count("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted");
        if writing > 0 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().expect("kill");
    let _ = child.wait();
    assert_eq!(
        us.ws.count("SELECT COUNT(*) FROM reports"),
        before,
        "nothing of the killed sweep is visible"
    );
    assert_eq!(
        us.ws
            .count("SELECT COUNT(*) FROM reports WHERE cluster = 'eu'"),
        0
    );
    // The other cluster is not blocked by the dead writer, and eu's next sweep converges.
    finished(&us.name, sweep(&us.ws, T1, &base));
    let s = finished(&eu.name, sweep(&eu.ws, T1, &big)).json();
    assert_eq!(s["reports"]["stored"], 3000, "{s:#}");
    assert_eq!(live_reports(eu), 3000);
    assert_eq!(live_reports(us), 30);
}

fn dojo_config() -> String {
    "defectdojo:\n  timeout: 5s\n  retry:\n    max_attempts: 3\n    initial_backoff: 10ms\n    \
     max_backoff: 40ms\n"
        .to_owned()
}

#[test]
fn an_image_running_in_three_clusters_is_one_defectdojo_test_with_every_workload() {
    let dojo = DojoFake::start_blocking();
    let (_db, mut clusters) = fleet("union", &["eu", "us", "ap"], &dojo_config());
    for c in &mut clusters {
        c.ws.env.extend(dojo.env());
    }
    let exports: Vec<PathBuf> = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| export(c, 6, 100 + i as u32))
        .collect();
    let mut pushes = Vec::new();
    for (c, e) in clusters.iter().zip(&exports) {
        let s = finished(&c.name, sweep(&c.ws, T0, e)).json();
        pushes.push(dojo.reimports().len());
        assert!(
            results(&s).iter().all(|r| r == "done" || r == "unchanged"),
            "{}: {s:#}",
            c.name
        );
    }
    // One test per image repository, in the fleet's product.
    let tests = dojo.tests();
    let titles: Vec<&str> = tests.iter().filter_map(|t| t.title.as_deref()).collect();
    assert_eq!(tests.len(), 3, "{titles:?}");
    for p in dojo.products() {
        assert_eq!(p.name, "fleet", "{p:?}");
    }
    let img0 = tests
        .iter()
        .find(|t| t.title.as_deref() == Some("ghcr.io/org/img-0"))
        .expect("img-0's test");
    let findings = dojo.findings_of_test(img0.id);
    let active: Vec<&str> = findings
        .iter()
        .filter(|f| !f.is_mitigated)
        .map(|f| f.title.as_str())
        .collect();
    // Three digests, one per cluster: the union of their findings in one test.
    assert_eq!(active.len(), 4, "{active:?}");
    let description = findings
        .iter()
        .find(|f| f.title.starts_with("CVE-2026-0001"))
        .map(|f| {
            format!(
                "{}\n{}",
                f.description,
                f.impact.clone().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    for w in [
        "eu/shop/Deployment/app-0",
        "us/shop/Deployment/app-3",
        "ap/shop/Deployment/app-0",
    ] {
        assert!(description.contains(w), "{w} in {description}");
    }

    // Steady state: every cluster sweeps again, nothing changed, nothing is pushed.
    let before = dojo.reimports().len();
    for (c, e) in clusters.iter().zip(&exports) {
        finished(&c.name, sweep(&c.ws, T1, e));
    }
    assert_eq!(
        dojo.reimports().len(),
        before,
        "nothing is pushed in steady state"
    );
    // Each cluster's first sweep pushed only what changed fleet-wide: the first, all
    // three tests; the others, img-0's (a new digest with a finding of its own).
    assert_eq!(
        pushes,
        vec![3, 4, 5],
        "reimports after each cluster's first sweep"
    );
}

#[test]
fn a_cluster_with_its_own_store_is_refused_the_fleets_test() {
    let dojo = DojoFake::start_blocking();
    let (_db, mut clusters) = fleet("refusal", &["eu"], &dojo_config());
    clusters[0].ws.env.extend(dojo.env());
    let e = export(&clusters[0], 6, 100);
    finished(&clusters[0].name, sweep(&clusters[0].ws, T0, &e));
    assert_eq!(dojo.tests().len(), 3);
    // A cluster left on its own SQLite store, mapped onto the fleet's product.
    let mut lone = Workspace::new();
    lone.config(&format!(
        "cluster: lone\n{}  product: fleet\n",
        dojo_config()
    ));
    lone.env.extend(dojo.env());
    let input = lone.write(
        "c.json",
        &list(vec![vulnerability_report(
            "shop",
            "api",
            "org/img-1",
            Some(&digest(1)),
            &vulns(1)[..1],
        )]),
    );
    let before = dojo.reimports().len();
    let run = lone.scan_at(T1, &[&input]);
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(results(&s), vec!["not_ours"], "{s:#}");
    let error = s["defectdojo"]["tests"][0]["error"].as_str().unwrap_or("");
    assert!(error.contains("belongs to cluster \"fleet\""), "{error}");
    assert!(error.contains("fleet store"), "{error}");
    assert_eq!(dojo.reimports().len(), before, "nothing was sent");
    assert_eq!(
        dojo.findings().iter().filter(|f| !f.is_mitigated).count(),
        6,
        "the fleet's findings stand"
    );
}

/// The real controller, three clusters' leaders (`run`, one process each, each watching
/// its own namespace of one API server) on one fleet store: one holds the store's lease
/// and exports for all three. Killed, it is replaced by another cluster's leader within
/// the lease, which exports what changed since, and nothing the first had sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_leader_killed_is_replaced_within_the_lease_and_nothing_is_exported_twice() {
    use kube::api::{DynamicObject, PostParams};
    use std::time::{Duration, Instant};
    use support::controller::{eventually, free_port, reports_api};
    use support::kube_server::KubeServer;

    let server = KubeServer::start();
    server.install_crds();
    let client = server.client().await;
    let create = |ns: &str, name: &str, img: u32, vulns: &[Vuln]| {
        let v = vulnerability_report(
            ns,
            name,
            &format!("org/img-{img}"),
            Some(&digest(img)),
            vulns,
        );
        let obj: DynamicObject = serde_json::from_value(v).expect("object");
        (reports_api(&client, ns), obj)
    };
    for (i, ns) in ["ns-eu", "ns-us", "ns-ap"].iter().enumerate() {
        for img in 0..3u32 {
            let (api, obj) = create(ns, &format!("app-{img}"), img, &vulns(img + 1));
            api.create(&PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| panic!("create {ns} {img} ({i}): {e}"));
        }
    }
    let dojo = DojoFake::start().await;
    let (_db, mut clusters) = fleet("takeover", &["eu", "us", "ap"], "");
    let mut children = Vec::new();
    for c in &mut clusters {
        c.ws.env.extend(dojo.env());
        c.ws.env.push((
            "KUBECONFIG".into(),
            server.kubeconfig_path().display().to_string(),
        ));
        // Each "cluster" watches its own namespace of the one API server.
        let config = std::fs::read_to_string(c.ws.path("trivy-digest.yaml")).expect("config");
        c.ws.config(&format!(
            "{config}kube:\n  include_namespaces: [ns-{}]\nrun:\n  listen: 127.0.0.1:{}\n  \
             export_interval: 200ms\n  batch_window: 100ms\n  fleet_lease: 3s\n  \
             leader_election:\n    enabled: false\n{}",
            c.name,
            free_port(),
            dojo_config()
        ));
        let child =
            c.ws.command(&["run"])
                .env("TRIVY_DIGEST_LOG", "info")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(c.ws.path("run.log")).expect("log"))
                .spawn()
                .expect("spawn run");
        children.push(Some(child));
    }
    let ws = &clusters[0].ws;
    // One test per image, each holding the three clusters' workloads.
    eventually(
        "the union of three clusters in DefectDojo",
        Duration::from_secs(60),
        || async {
            let tests = dojo.tests();
            tests.len() == 3
                && tests.iter().all(|t| {
                    let impact: String = dojo
                        .findings_of_test(t.id)
                        .iter()
                        .filter_map(|f| f.impact.clone())
                        .collect();
                    ["eu/ns-eu/", "us/ns-us/", "ap/ns-ap/"]
                        .iter()
                        .all(|w| impact.contains(w))
                })
        },
    )
    .await;
    // Settled: wait for a few export intervals with no new push.
    let mut settled = dojo.reimports().len();
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = dojo.reimports().len();
        if now == settled {
            break;
        }
        settled = now;
    }
    let holder = |ws: &Workspace| -> (String, i64) {
        let db = support::postgres::admin(ws.pg.as_deref().expect("pg"));
        db.query_row(
            "SELECT holder, token FROM leases WHERE name = 'outputs'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a lease holder")
    };
    let (first, token) = holder(ws);
    let leader = clusters
        .iter()
        .position(|c| first.starts_with(&format!("{}/", c.name)))
        .unwrap_or_else(|| panic!("holder {first:?} is none of the clusters"));
    // Kill it: no release, the lease must expire.
    let mut victim = children[leader].take().expect("child");
    victim.kill().expect("kill");
    let _ = victim.wait();
    let killed = Instant::now();

    // A change in a surviving cluster: its next leader must export it.
    let survivor = (leader + 1) % 3;
    let ns = format!("ns-{}", clusters[survivor].name);
    let (api, obj) = create(
        &ns,
        "app-1",
        1,
        &[
            vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
            vuln("CVE-2026-0002", "zlib", "HIGH"),
            vuln("CVE-2026-7777", "curl", "HIGH"),
        ],
    );
    let mut obj = obj;
    let current = api
        .get(obj.metadata.name.as_deref().expect("name"))
        .await
        .expect("get");
    obj.metadata.resource_version = current.metadata.resource_version;
    api.replace(
        obj.metadata.name.as_deref().expect("name"),
        &PostParams::default(),
        &obj,
    )
    .await
    .expect("replace");
    eventually(
        "the new finding exported by the next leader",
        Duration::from_secs(30),
        || async {
            dojo.findings()
                .iter()
                .any(|f| f.title.starts_with("CVE-2026-7777"))
        },
    )
    .await;
    let took = killed.elapsed();
    let (second, next_token) = holder(ws);
    assert_ne!(second, first, "another replica holds the lease");
    assert!(next_token > token, "a new token: {token} then {next_token}");
    assert!(
        took < Duration::from_secs(3 + 8),
        "taken over and exported within the lease (3 s) and a few export rounds: {took:?}"
    );
    // Nothing the first leader sent was sent again: one more push, the changed test.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        dojo.reimports().len(),
        settled + 1,
        "only the changed test was pushed again: {:?}",
        dojo.reimports()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
    for child in children.iter_mut().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // Only the two holders ran the outputs; the third cluster's leader never pushed.
    let logs: Vec<String> = clusters
        .iter()
        .map(|c| std::fs::read_to_string(c.ws.path("run.log")).unwrap_or_default())
        .collect();
    let next = clusters
        .iter()
        .position(|c| second.starts_with(&format!("{}/", c.name)))
        .expect("second holder");
    for (i, log) in logs.iter().enumerate() {
        let held = i == leader || i == next;
        assert_eq!(
            log.contains("fleet lease taken"),
            held,
            "{}: {log}",
            clusters[i].name
        );
        assert_eq!(
            log.contains("DefectDojo: pushing changes"),
            held,
            "{}: {log}",
            clusters[i].name
        );
    }
}

/// `store migrate` copies a cluster's SQLite store into the fleet store: the fleet's
/// findings take the earlier first-seen date, DefectDojo sync state carries on (a rescan
/// pushes nothing; a change goes into the tests the old store made, which it marked),
/// and alert records and summary claims come along. A second copy is refused.
#[test]
fn store_migrate_keeps_history_sync_state_alert_records_and_summary_claims() {
    let dojo = DojoFake::start_blocking();
    let mapping = format!("{}  product: '{{{{ cluster }}}}'\n", dojo_config());
    // us is in the fleet already and saw img-1 a day after eu did.
    let (db, mut clusters) = fleet("migrate", &["us"], &mapping);
    clusters[0].ws.env.extend(dojo.env());
    let us_export = export(&clusters[0], 3, 101);
    finished(&clusters[0].name, sweep(&clusters[0].ws, T1, &us_export));

    // eu, on its own SQLite store.
    let mut eu = Workspace::new();
    eu.config(&format!("cluster: eu\n{mapping}"));
    eu.env.extend(dojo.env());
    let eu_cluster = Cluster {
        name: "eu".into(),
        ws: eu,
    };
    let eu_export = export(&eu_cluster, 6, 100);
    let eu = eu_cluster.ws;
    let s = finished("eu", sweep(&eu, T0, &eu_export)).json();
    assert_eq!(results(&s), vec!["done", "done", "done"], "{s:#}");
    // An alert sent and a summary claimed, as the alert and summary outputs record them.
    let conn = rusqlite::Connection::open(eu.store()).expect("sqlite");
    conn.execute_batch(
        "INSERT INTO alert_messages(id, destination, kind, title, state, created_at, sent_at)
             VALUES(7, 'slack:sec', 'finding', 'CVE-2026-0001', 'sent', 100, 101);
         INSERT INTO alert_items(destination, finding_id, namespaces, state, created_at, message_id, sent_at)
             SELECT 'slack:sec', id, 'shop', 'sent', 100, 7, 101 FROM findings;
         INSERT INTO sent_summaries(month, audience, scope, recipients, message_id, state, claimed_by, claimed_at, sent_at, attempts)
             VALUES('2026-10', 'all', 'all', 'sec@example.com', '<m@x>', 'sent', 'eu-0', 100, 101, 1);",
    )
    .expect("seed");
    let findings = eu.count("SELECT COUNT(*) FROM findings");
    let events = eu.count("SELECT COUNT(*) FROM finding_events");
    drop(conn);

    let pw = eu.write("pg-password", support::postgres::PASSWORD);
    let url = support::postgres::url(&db);
    let migrate = |ws: &Workspace| {
        let mut c = ws.command(&["store", "migrate", "--to", &url]);
        c.env("TRIVY_DIGEST_STORE_PASSWORD_FILE", &pw);
        output(c.output().expect("run"))
    };
    let run = migrate(&eu);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("copied cluster \"eu\""),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(support::postgres::PASSWORD));
    let fleet_ws = &clusters[0].ws;
    assert_eq!(
        fleet_ws.count("SELECT COUNT(*) FROM reports WHERE cluster = 'eu' AND gone_since IS NULL"),
        6
    );
    // img-1's findings: first seen by eu at T0, before us (T1).
    let t0 = chrono::DateTime::parse_from_rfc3339(T0)
        .expect("t0")
        .timestamp();
    assert_eq!(
        fleet_ws.count(
            "SELECT MIN(f.first_seen) FROM findings f JOIN subjects s ON s.id = f.subject_id
             WHERE s.key = 'ghcr.io/org/img-1'"
        ),
        t0
    );
    assert_eq!(
        fleet_ws.count("SELECT COUNT(*) FROM finding_events WHERE id < 0"),
        events,
        "every event is copied, below the alert cursors"
    );
    assert_eq!(
        fleet_ws.count("SELECT COUNT(*) FROM alert_items WHERE state = 'sent'"),
        findings
    );
    assert_eq!(
        fleet_ws.count(
            "SELECT COUNT(*) FROM sent_summaries WHERE month = '2026-10' AND state = 'sent'"
        ),
        1
    );
    assert_eq!(
        fleet_ws.count(
            "SELECT COUNT(*) FROM dojo_tests WHERE product = 'eu' AND acked_hash IS NOT NULL"
        ),
        3
    );
    // Again: refused, nothing doubled.
    let run = migrate(&eu);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("already holds cluster \"eu\""),
        "{}",
        run.stderr
    );

    // eu now writes to the fleet store: the same export pushes nothing...
    let mut eu_fleet = Workspace::new();
    eu_fleet.config(&format!(
        "cluster: eu\nstore: {url}\nstore_password_file: {}\n{mapping}",
        pw.display()
    ));
    eu_fleet.env.extend(dojo.env());
    eu_fleet.pg = Some(db.clone());
    let eu_fleet = Cluster {
        name: "eu".into(),
        ws: eu_fleet,
    };
    let before = dojo.reimports().len();
    let input = eu_fleet.ws.write(
        "export.json",
        &std::fs::read_to_string(&eu_export).expect("export"),
    );
    finished(&eu_fleet.name, sweep(&eu_fleet.ws, T2, &input));
    assert_eq!(
        dojo.reimports().len(),
        before,
        "sync state carried over: nothing to push"
    );
    // ...and a change goes into eu's old test, marked by the old store, without refusal.
    let changed = export(&eu_fleet, 5, 100);
    let s = finished(&eu_fleet.name, sweep(&eu_fleet.ws, T2, &changed)).json();
    assert!(
        results(&s).iter().all(|r| r != "not_ours"),
        "the old store's tests are the fleet's: {s:#}"
    );
    assert_eq!(dojo.tests().iter().filter(|t| t.engagement > 0).count(), 6);
}

/// A `scan` into a fleet store whose lease another replica holds stores its sweep and
/// leaves the outputs to that holder: nothing is pushed twice.
#[test]
fn a_scan_leaves_the_outputs_to_the_fleet_lease_holder() {
    let dojo = DojoFake::start_blocking();
    let (db, mut clusters) = fleet("scan_defers", &["eu"], &dojo_config());
    clusters[0].ws.env.extend(dojo.env());
    let e = export(&clusters[0], 3, 100);
    // The first sweep migrates the store; then a `run` of cluster ap holds the lease.
    finished(&clusters[0].name, sweep(&clusters[0].ws, T0, &e));
    let pushed = dojo.reimports().len();
    support::postgres::admin(&db)
        .execute_batch(
            "UPDATE leases SET holder = 'ap/trivy-digest-0/1', token = token + 1,
                 expires_at = 9999999999999 WHERE name = 'outputs'",
        )
        .expect("lease");
    let changed = export(&clusters[0], 2, 100);
    let s = finished(&clusters[0].name, sweep(&clusters[0].ws, T1, &changed)).json();
    assert_eq!(s["outputs_run_by"], "ap/trivy-digest-0/1", "{s:#}");
    assert_eq!(
        s["history"]["reports_gone"], 1,
        "the sweep is stored: {s:#}"
    );
    assert_eq!(
        dojo.reimports().len(),
        pushed,
        "the holder pushes, not this scan"
    );
    let run = clusters[0].ws.run(&[
        "scan",
        "--now",
        T1,
        "--from",
        &changed.display().to_string(),
    ]);
    assert!(
        run.stdout
            .contains("run for the fleet by ap/trivy-digest-0/1"),
        "{}",
        run.stdout
    );
}

/// The monthly summary of a fleet store is the fleet's; `--of-cluster` is one cluster's
/// view: the image repositories that ran there.
#[test]
fn the_summary_is_the_fleets_with_a_view_per_cluster() {
    let (_db, clusters) = fleet("summary_views", &["eu", "ap"], "fleet: acme\n");
    let e = export(&clusters[0], 6, 100);
    finished(&clusters[0].name, sweep(&clusters[0].ws, T0, &e));
    let only_img1 = clusters[1].ws.write(
        "export.json",
        &list(vec![vulnerability_report(
            "shop",
            "api",
            "org/img-1",
            Some(&digest(1)),
            &vulns(1),
        )]),
    );
    finished(&clusters[1].name, sweep(&clusters[1].ws, T0, &only_img1));
    let text = |args: &[&str]| {
        let mut a = vec!["summary", "--month", "2026-11", "--text", "--now", T1];
        a.extend_from_slice(args);
        let run = clusters[1].ws.run(&a);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout
    };
    let fleet = text(&[]);
    assert!(
        fleet.contains("[acme]") || fleet.contains("acme"),
        "{fleet}"
    );
    assert!(fleet.contains("whole fleet"), "{fleet}");
    assert!(fleet.contains("org/img-0"), "{fleet}");
    // `query` names each workload's cluster.
    let run = clusters[1]
        .ws
        .run(&["query", "--image", "ghcr.io/org/img-1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("ap/shop/Deployment/api"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("eu/shop/Deployment/app-1"),
        "{}",
        run.stdout
    );
    let ap = text(&["--of-cluster", "ap"]);
    assert!(ap.contains("cluster ap"), "{ap}");
    assert!(ap.contains("org/img-1"), "{ap}");
    assert!(!ap.contains("org/img-0"), "img-0 never ran in ap: {ap}");
    assert!(!ap.contains("org/img-2"), "img-2 never ran in ap: {ap}");
}

/// Alerts are once per new finding for the whole fleet: a CVE that appears in two
/// clusters' sweeps is one alert.
#[test]
fn a_new_finding_in_two_clusters_is_alerted_once() {
    use support::webhook::WebhookFake;
    let hook = WebhookFake::start();
    let (_db, mut clusters) = fleet(
        "alerts_once",
        &["eu", "us"],
        "alerts:\n  batch_window: 1s\n  timeout: 5s\n  channels:\n    - name: siem\n      webhook:\n        url_env: SIEM_URL\n",
    );
    for c in &mut clusters {
        c.ws.env.push(("SIEM_URL".into(), hook.url("fleet-token")));
    }
    let image = |extra: bool| {
        let mut v = vulns(1);
        if extra {
            v.push(vuln("CVE-2026-7777", "curl", "CRITICAL").fixed("8.9.1"));
        }
        list(vec![vulnerability_report(
            "shop",
            "api",
            "org/img-1",
            Some(&digest(1)),
            &v,
        )])
    };
    // The first sweeps are the baseline: nothing is alerted.
    for c in &clusters {
        let e = c.ws.write("export.json", &image(false));
        finished(&c.name, sweep(&c.ws, T0, &e));
    }
    assert_eq!(hook.accepted().len(), 0, "the baseline alerts nothing");
    // The new CVE reaches both clusters.
    for c in &clusters {
        let e = c.ws.write("export.json", &image(true));
        finished(&c.name, sweep(&c.ws, T1, &e));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sent = hook.accepted();
    let mentioning: Vec<_> = sent
        .iter()
        .filter(|r| {
            r.body
                .as_ref()
                .is_some_and(|b| b.to_string().contains("CVE-2026-7777"))
        })
        .collect();
    assert_eq!(mentioning.len(), 1, "one alert for the fleet: {sent:?}");
    assert_eq!(sent.len(), 1, "{sent:?}");
}

/// Two installs given one cluster name in a fleet store: the second's sweep is refused
/// (kube-system's UID differs), and the first's reports stay live.
#[test]
fn a_second_cluster_with_the_same_name_is_refused_and_ends_nothing() {
    let (_db, clusters) = fleet("same_name", &["prod", "prod"], "");
    let kube_system = |uid: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "kube-system", "uid": uid}})
    };
    let with_ns = |c: &Cluster, uid: &str, n: u32| {
        let mut items: Vec<Value> = (0..n)
            .map(|i| {
                vulnerability_report(
                    "shop",
                    &format!("app-{i}"),
                    "org/img-1",
                    Some(&digest(1)),
                    &vulns(1),
                )
            })
            .collect();
        items.insert(0, kube_system(uid));
        c.ws.write("export.json", &list(items))
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let e = with_ns(a, "1b6f0c52-0000-4000-8000-00000000000a", 5);
    finished("prod (a)", sweep(&a.ws, T0, &e));
    // Its next sweep is fine: same UID.
    finished("prod (a)", sweep(&a.ws, T1, &e));
    // The other install, same name, another cluster, one workload: refused.
    let other = with_ns(b, "9c2d11aa-0000-4000-8000-00000000000b", 1);
    let run = support::cli::output(sweep(&b.ws, T1, &other).wait_with_output().expect("wait"));
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("is another cluster") && run.stderr.contains("same cluster name"),
        "{}",
        run.stderr
    );
    assert_eq!(
        live_reports(a),
        5,
        "the first cluster's reports are not ended by the other's sweep"
    );
}
