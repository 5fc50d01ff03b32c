//! The controller (`run`) against a real API server for custom resources (Debian's
//! apiextensions-apiserver over etcd) and the DefectDojo fake.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde_json::{Value, json};
use support::controller::{Controller, eventually, free_port, reports_api};
use support::dojo::DojoFake;
use support::kube_server::KubeServer;
use support::reports::{Vuln, digest, vuln, vulnerability_report};
use trivy_digest::config::{Config, DojoConfig, HumanDuration};
use trivy_digest::model::ReportKind;
use trivy_digest::secret::Secret;
use trivy_digest::source::cluster::api_resource;

const GRACE: Duration = Duration::from_secs(4);

fn vulns() -> Vec<Vuln> {
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln("CVE-2026-0001", "libcrypto3", "HIGH"),
        vuln("CVE-2026-0002", "zlib", "LOW"),
    ]
}

fn config(dir: &Path, dojo: Option<&DojoFake>) -> Config {
    let mut c = Config {
        cluster: "test".into(),
        store: dir.join("store.db").into(),
        grace_period: HumanDuration(GRACE),
        ..Config::default()
    };
    c.kube.crd_recheck = HumanDuration(Duration::from_millis(500));
    c.run.listen = format!("127.0.0.1:{}", free_port());
    c.run.batch_window = HumanDuration(Duration::from_millis(100));
    c.run.export_interval = HumanDuration(Duration::from_millis(300));
    c.run.shutdown_grace = HumanDuration(Duration::from_secs(5));
    // The test server serves no Leases (election is tested against the Lease fixture).
    c.run.leader_election.enabled = false;
    if let Some(d) = dojo {
        let mut dc = DojoConfig {
            url: d.url(),
            ..DojoConfig::default()
        };
        dc.token = Some(Secret::new(DojoFake::TOKEN));
        dc.retry.initial_backoff = HumanDuration(Duration::from_millis(10));
        dc.retry.max_backoff = HumanDuration(Duration::from_millis(50));
        c.defectdojo = Some(dc);
    }
    c
}

fn report(i: u32, image: u32, vulns: &[Vuln]) -> (String, DynamicObject) {
    let ns = format!("ns-{}", i % 4);
    let v = vulnerability_report(
        &ns,
        &format!("app-{i}"),
        &format!("org/img-{image}"),
        Some(&digest(image)),
        vulns,
    );
    (ns, serde_json::from_value(v).expect("object"))
}

async fn create(client: &kube::Client, i: u32, image: u32, vulns: &[Vuln]) {
    let (ns, obj) = report(i, image, vulns);
    reports_api(client, &ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create report {i}: {e}"));
}

async fn replace(client: &kube::Client, i: u32, image: u32, vulns: &[Vuln]) {
    let (ns, mut obj) = report(i, image, vulns);
    let a = reports_api(client, &ns);
    let name = obj.metadata.name.clone().expect("name");
    let current = a.get(&name).await.expect("get");
    obj.metadata.resource_version = current.metadata.resource_version;
    a.replace(&name, &PostParams::default(), &obj)
        .await
        .expect("replace");
}

async fn delete(client: &kube::Client, i: u32) {
    let (ns, obj) = report(i, 0, &[]);
    reports_api(client, &ns)
        .delete(&obj.metadata.name.expect("name"), &DeleteParams::default())
        .await
        .expect("delete");
}

fn store_count(dir: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("store.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("store");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn.query_row(sql, [], |r| r.get(0)).unwrap_or(-1)
}

const LIVE_IMAGES: &str =
    "SELECT COUNT(DISTINCT t.image_id) FROM targets t JOIN reports r ON r.target_id = t.id
                           WHERE r.gone_since IS NULL";

fn tests_in_dojo(dojo: &DojoFake) -> usize {
    dojo.tests().len()
}

fn active_in(dojo: &DojoFake, title: &str) -> usize {
    let Some(test) = dojo
        .tests()
        .into_iter()
        .find(|t| t.title.as_deref() == Some(title))
    else {
        return usize::MAX;
    };
    dojo.findings_of_test(test.id)
        .iter()
        .filter(|f| f.active)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reports_of_twenty_digests_then_updates_deletes_and_outages() {
    let mut server = KubeServer::start();
    server.install_crds();
    let client = server.client().await;
    for i in 0..200 {
        create(&client, i, i % 20, &vulns()).await;
    }
    let dojo = DojoFake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(config(dir.path(), Some(&dojo)), server.client().await);

    // Listed: ready, 20 images, one DefectDojo test per repository with its findings once.
    eventually("ready", Duration::from_secs(30), || async {
        controller.get("/readyz").await.0 == 200
    })
    .await;
    eventually(
        "20 tests in DefectDojo",
        Duration::from_secs(30),
        || async { tests_in_dojo(&dojo) == 20 },
    )
    .await;
    assert_eq!(store_count(dir.path(), LIVE_IMAGES), 20);
    assert_eq!(store_count(dir.path(), "SELECT COUNT(*) FROM reports"), 200);
    assert_eq!(
        store_count(
            dir.path(),
            "SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL"
        ),
        60
    );
    eventually(
        "60 findings in DefectDojo",
        Duration::from_secs(10),
        || async { dojo.findings().len() == 60 },
    )
    .await;
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        metrics.contains("trivy_digest_images{pinned=\"true\"} 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("trivy_digest_findings_open{severity=\"critical\"} 20"),
        "{metrics}"
    );
    assert!(metrics.contains("trivy_digest_ready 1"), "{metrics}");

    // Update: image 3 is rescanned without zlib in all ten of its reports.
    let fixed: Vec<Vuln> = vulns()[..2].to_vec();
    for i in (3..200).step_by(20) {
        replace(&client, i, 3, &fixed).await;
    }
    eventually(
        "the fixed finding closed",
        Duration::from_secs(15),
        || async { active_in(&dojo, "ghcr.io/org/img-3") == 2 },
    )
    .await;
    assert_eq!(dojo.findings().iter().filter(|f| f.is_mitigated).count(), 1);

    // Delete every report of image 5: its test empties only after the grace period.
    let deleted_at = Instant::now();
    for i in (5..200).step_by(20) {
        delete(&client, i).await;
    }
    eventually("deletes seen", Duration::from_secs(10), || async {
        store_count(
            dir.path(),
            "SELECT COUNT(*) FROM reports WHERE gone_since IS NOT NULL",
        ) == 10
    })
    .await;
    assert_eq!(
        active_in(&dojo, "ghcr.io/org/img-5"),
        3,
        "within the grace period nothing closes"
    );
    eventually(
        "image 5 emptied after the grace period",
        Duration::from_secs(30),
        || async { active_in(&dojo, "ghcr.io/org/img-5") == 0 },
    )
    .await;
    assert!(
        deleted_at.elapsed() >= GRACE,
        "emptied after {:?}",
        deleted_at.elapsed()
    );

    // The API server dies mid-watch and comes back: nothing written after is missed.
    server.kill_apiserver();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart_apiserver();
    let client = server.client().await;
    create(&client, 300, 30, &vulns()).await;
    eventually(
        "a report created after the restart",
        Duration::from_secs(30),
        || async { active_in(&dojo, "ghcr.io/org/img-30") == 3 },
    )
    .await;

    // A restart without missed writes resumes the watch: still the one initial list.
    let relists = |m: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with("trivy_digest_relists_total{kind=\"VulnerabilityReport\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(relists(&controller.get("/metrics").await.1), 1);

    // Writes while we are disconnected: a second API server takes them; when ours comes
    // back the watch gets a real 410 Gone, relists, and converges.
    server.kill_apiserver();
    {
        let second = server.start_second_apiserver();
        let c2 = second.client().await;
        create(&c2, 301, 31, &vulns()).await;
        replace(&c2, 0, 0, &fixed).await;
        for i in (7..200).step_by(20) {
            delete(&c2, i).await;
        }
        second.kill();
    }
    server.restart_apiserver();
    eventually(
        "converged after 410: new image exported",
        Duration::from_secs(40),
        || async { active_in(&dojo, "ghcr.io/org/img-31") == 3 },
    )
    .await;
    eventually(
        "converged after 410: deletes missed while away noticed",
        Duration::from_secs(20),
        || async {
            store_count(
                dir.path(),
                "SELECT COUNT(*) FROM reports r JOIN workloads w ON w.id = r.workload_id
             WHERE r.gone_since IS NOT NULL AND w.name LIKE 'app-%7'",
            ) == 10
        },
    )
    .await;
    // The changed report of image 0 is one of ten: the union keeps zlib open.
    assert_eq!(active_in(&dojo, "ghcr.io/org/img-0"), 3);
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        relists(&metrics) >= 2,
        "the 410 made the watcher list again:\n{metrics}"
    );
    assert!(
        metrics.contains("trivy_digest_watch_restarts_total{kind=\"VulnerabilityReport\"}"),
        "{metrics}"
    );

    assert_eq!(controller.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_installed_later_is_picked_up() {
    let server = KubeServer::start();
    server.install_crds_except(&["configauditreports"]);
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(config(dir.path(), None), server.client().await);
    eventually(
        "ready without the missing kind",
        Duration::from_secs(30),
        || async { controller.get("/readyz").await.0 == 200 },
    )
    .await;
    server.install_crd("configauditreports");
    let client = server.client().await;
    let ar = api_resource(ReportKind::ConfigAuditReport);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "ConfigAuditReport",
        "metadata": {"name": "replicaset-api-7cc565547", "namespace": "shop",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-7cc565547", "uid": "u", "controller": true}]},
        "report": {"scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.48.3"},
                   "summary": {"criticalCount": 0, "highCount": 1, "mediumCount": 0, "lowCount": 0},
                   "checks": [{"checkID": "KSV014", "title": "Root file system is not read-only", "severity": "HIGH", "success": false}]}
    }))
    .expect("object");
    Api::<DynamicObject>::namespaced_with(client, "shop", &ar)
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    eventually(
        "the config audit stored",
        Duration::from_secs(20),
        || async {
            store_count(
                dir.path(),
                "SELECT COUNT(*) FROM findings WHERE fkey = 'KSV014'",
            ) == 1
        },
    )
    .await;
    assert_eq!(controller.stop().await, 0);
}

/// An API server that cannot be reached at start must not look ready (a NetworkPolicy
/// blocking it would otherwise pass the readiness probe with nothing watched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_api_server_answers() {
    let mut server = KubeServer::start();
    server.install_crds();
    let client = server.client().await;
    server.kill_apiserver();
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(config(dir.path(), None), client);
    eventually("healthz answers", Duration::from_secs(10), || async {
        controller.get("/healthz").await.0 == 200
    })
    .await;
    // Several retries (every 5 s) fail in this time; ready must stay off.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(controller.get("/readyz").await.0, 503);
    let (_, metrics) = controller.get("/metrics").await;
    assert!(metrics.contains("trivy_digest_ready 0"), "{metrics}");
    server.restart_apiserver();
    eventually(
        "ready once the API server answers",
        Duration::from_secs(40),
        || async { controller.get("/readyz").await.0 == 200 },
    )
    .await;
    assert_eq!(controller.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_skip_namespaces_and_kinds() {
    let server = KubeServer::start();
    server.install_crds();
    let client = server.client().await;
    for i in 0..8 {
        create(&client, i, i, &vulns()).await;
    }
    // A report in a wanted namespace, labelled to be ignored.
    let (ns, mut obj) = report(8, 8, &vulns());
    obj.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("trivy-digest.io/ignore".into(), "true".into());
    reports_api(&client, &ns)
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = config(dir.path(), None);
    c.kube.exclude_namespaces = vec!["ns-1".into(), "ns-3*".into()];
    c.kube.kinds = vec![ReportKind::VulnerabilityReport];
    c.kube.label_selector = Some("!trivy-digest.io/ignore".into());
    let controller = Controller::start(c, server.client().await);
    eventually("ready", Duration::from_secs(30), || async {
        controller.get("/readyz").await.0 == 200
    })
    .await;
    eventually("four reports", Duration::from_secs(10), || async {
        store_count(dir.path(), "SELECT COUNT(*) FROM reports") == 4
    })
    .await;
    assert_eq!(
        store_count(
            dir.path(),
            "SELECT COUNT(*) FROM reports WHERE namespace IN ('ns-1', 'ns-3')"
        ),
        0
    );
    assert_eq!(controller.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_from_cluster_reads_one_paged_list() {
    let server = KubeServer::start();
    server.install_crds_except(&["sbomreports"]);
    let client = server.client().await;
    for i in 0..25 {
        create(&client, i, i % 5, &vulns()).await;
    }
    let mut ws = support::cli::Workspace::new();
    ws.env.push((
        "KUBECONFIG".into(),
        server.kubeconfig_path().display().to_string(),
    ));
    ws.config("kube:\n  page_size: 7\n");
    let run = ws.run(&["scan", "--from", "cluster", "--format", "json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s: Value = run.json();
    assert_eq!(s["reports"]["stored"], 25);
    assert_eq!(s["images"]["unique"], 5);
    assert_eq!(s["kinds_absent"], json!(["SbomReport"]));
    assert_eq!(s["complete"], true);
}

/// `scan --from cluster` ends only what it listed: reports in namespaces its filters
/// exclude (here read earlier from a file) stay, and an empty cluster is refused unless
/// allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_from_cluster_ends_only_what_its_filters_cover() {
    let server = KubeServer::start();
    server.install_crds();
    let client = server.client().await;
    let mut ws = support::cli::Workspace::new();
    ws.env.push((
        "KUBECONFIG".into(),
        server.kubeconfig_path().display().to_string(),
    ));
    ws.config("kube:\n  exclude_namespaces: [ns-3]\n");
    // Nothing in the cluster yet: a sweep that read nothing proves nothing.
    let run = ws.run(&["scan", "--from", "cluster", "--format", "json"]);
    assert_eq!(run.code, 5, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("read 0 reports from cluster"),
        "{}",
        run.stderr
    );
    let run = ws.run(&[
        "scan",
        "--from",
        "cluster",
        "--allow-empty",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    // A report of ns-3 known from a file export.
    let (_, outside) = report(3, 9, &vulns());
    let file = ws.write("ns-3.json", &serde_json::to_string(&outside).expect("json"));
    let run = ws.run(&["scan", "--from", &file.display().to_string()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // An empty cluster beside a file that holds reports is as suspect as an empty sweep.
    let run = ws.run(&[
        "scan",
        "--complete",
        "--from",
        "cluster",
        "--from",
        &file.display().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 5, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["empty_inputs"], json!(["cluster"]));
    assert_eq!(run.json()["history"]["reports_gone"], 0);
    for i in 0..8 {
        create(&client, i, i % 2, &vulns()).await;
    }
    let run = ws.run(&["scan", "--from", "cluster", "--format", "json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(s["reports"]["stored"], 6, "ns-3 is filtered out");
    assert_eq!(
        s["scope"]["covered"][0]["namespaces"]["exclude"],
        json!(["ns-3"])
    );
    assert_eq!(s["history"]["reports_gone"], 0);

    reports_api(&client, "ns-0")
        .delete("replicaset-app-0-7cc565547-app", &DeleteParams::default())
        .await
        .expect("delete");
    let s = ws
        .run(&["scan", "--from", "cluster", "--format", "json"])
        .json();
    assert_eq!(s["history"]["reports_gone"], 1, "{s:#}");
    let live = |ns: &str| {
        ws.count(&format!(
            "SELECT COUNT(*) FROM reports WHERE namespace = '{ns}' AND gone_since IS NULL"
        ))
    };
    assert_eq!(live("ns-0"), 1);
    assert_eq!(live("ns-3"), 1, "outside the sweep's namespaces: kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_push_in_flight_finish_and_exits_zero() {
    let server = KubeServer::start();
    server.install_crds();
    let client = server.client().await;
    for i in 0..4 {
        create(&client, i, i, &vulns()).await;
    }
    let dojo = DojoFake::start().await;
    // Every DefectDojo answer takes 2 s: the first push is in flight when SIGTERM comes.
    dojo.set_latency(Duration::from_secs(2));
    let mut ws = support::cli::Workspace::new();
    let port = free_port();
    ws.env.push((
        "KUBECONFIG".into(),
        server.kubeconfig_path().display().to_string(),
    ));
    ws.env.extend(dojo.env());
    ws.config(&format!(
        "cluster: test\nrun:\n  listen: 127.0.0.1:{port}\n  export_interval: 200ms\n  batch_window: 100ms\n  shutdown_grace: 10s\n  leader_election:\n    enabled: false\n"
    ));
    let child = ws
        .command(&["run", "--log-format", "json"])
        .env("TRIVY_DIGEST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn run");
    eventually("a push in flight", Duration::from_secs(30), || async {
        dojo.log()
            .iter()
            .any(|r| r.path == "/api/v2/reimport-scan/")
    })
    .await;
    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&exit.stderr);
    assert_eq!(exit.status.code(), Some(0), "{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(12),
        "took {:?}",
        signalled.elapsed()
    );
    assert!(stderr.contains("shutting down"), "{stderr}");
    // The push that was in flight finished: DefectDojo answered and the store recorded it.
    assert!(
        dojo.log()
            .iter()
            .any(|r| r.path == "/api/v2/reimport-scan/" && r.answered && r.status == 201)
    );
    let acked = rusqlite::Connection::open(ws.store())
        .expect("store")
        .query_row(
            "SELECT COUNT(*) FROM dojo_tests WHERE acked_hash IS NOT NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .expect("count");
    assert!(acked >= 1, "the in-flight push was acknowledged");
    // What was not sent waits in the outbox for the next start.
    let waiting = rusqlite::Connection::open(ws.store())
        .expect("store")
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
        .expect("count");
    assert_eq!(
        acked + waiting,
        4,
        "every test is either acknowledged or queued"
    );
}
