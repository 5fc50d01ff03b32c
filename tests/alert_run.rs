//! Alerts from the controller (`run`) against a real API server for custom resources and
//! the Slack webhook fake: the first full list is the baseline; report re-creation, a
//! rollout to another ReplicaSet and a restart never alert; a new digest with a new
//! CRITICAL alerts once.

mod support;

use std::path::Path;
use std::time::Duration;

use kube::api::{DeleteParams, DynamicObject, PostParams};
use support::controller::{Controller, eventually, free_port, reports_api};
use support::kube_server::KubeServer;
use support::reports::{Vuln, digest, vuln, vulnerability_report};
use support::slack::SlackFake;
use trivy_digest::config::{Config, HumanDuration};

fn vulns() -> Vec<Vuln> {
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln("CVE-2026-0002", "zlib", "HIGH"),
    ]
}

fn config(dir: &Path, hook: &str) -> Config {
    let yaml = "cluster: test\nalerts:\n  batch_window: 300ms\n  timeout: 5s\n  retry:\n    max_attempts: 2\n    initial_backoff: 50ms\n    max_backoff: 100ms\n  channels:\n    - name: security\n      slack_webhook_env: ALERT_RUN_HOOK\n";
    // SAFETY: set before the controller starts; nothing else reads it concurrently.
    unsafe { std::env::set_var("ALERT_RUN_HOOK", hook) };
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("config");
    let mut c = Config::load(Some(&path)).expect("config");
    c.store = dir.join("store.db").into();
    c.grace_period = HumanDuration(Duration::from_secs(60));
    c.kube.crd_recheck = HumanDuration(Duration::from_millis(500));
    c.run.listen = format!("127.0.0.1:{}", free_port());
    c.run.batch_window = HumanDuration(Duration::from_millis(100));
    c.run.shutdown_grace = HumanDuration(Duration::from_secs(5));
    c.run.leader_election.enabled = false;
    c
}

/// Report of workload `app-<i>` running image `img-<image>` at digest `d`, from the
/// ReplicaSet with pod-template-hash `hash`.
fn report(i: u32, image: u32, d: u32, hash: &str, vulns: &[Vuln]) -> (String, DynamicObject) {
    let ns = format!("ns-{}", i % 3);
    let v = vulnerability_report(
        &ns,
        &format!("app-{i}"),
        &format!("org/img-{image}"),
        Some(&digest(d)),
        vulns,
    );
    let text = serde_json::to_string(&v)
        .expect("json")
        .replace("7cc565547", hash);
    (ns, serde_json::from_str(&text).expect("object"))
}

async fn create(client: &kube::Client, (ns, obj): (String, DynamicObject)) {
    reports_api(client, &ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create report: {e}"));
}

async fn delete(client: &kube::Client, (ns, obj): (String, DynamicObject)) {
    reports_api(client, &ns)
        .delete(&obj.metadata.name.expect("name"), &DeleteParams::default())
        .await
        .expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_alerts_once_per_genuinely_new_finding() {
    let server = KubeServer::start();
    server.install_crds();
    let client = server.client().await;
    for i in 0..20 {
        create(&client, report(i, i % 10, i % 10, "7cc565547", &vulns())).await;
    }
    let slack = SlackFake::start();
    let hook = slack.hook("security");
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(config(dir.path(), &hook), server.client().await);
    eventually("ready", Duration::from_secs(30), || async {
        controller.get("/readyz").await.0 == 200
    })
    .await;
    // The whole first list is the baseline: 20 criticals exist, none is new.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(slack.requests().is_empty(), "{:?}", slack.requests());

    // The operator re-creates a report; a rollout moves app-2 to another ReplicaSet.
    delete(&client, report(1, 1, 1, "7cc565547", &[])).await;
    create(&client, report(1, 1, 1, "7cc565547", &vulns())).await;
    delete(&client, report(2, 2, 2, "7cc565547", &[])).await;
    create(&client, report(2, 2, 2, "5f9d8b7c6", &vulns())).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(slack.requests().is_empty(), "{:?}", slack.requests());

    // app-3 rolls out a new digest of img-3 that brings a new CRITICAL.
    let mut newer = vulns();
    newer.push(vuln("CVE-2026-0700", "expat", "CRITICAL").fixed("2.6.3"));
    delete(&client, report(3, 3, 3, "7cc565547", &[])).await;
    create(&client, report(3, 3, 33, "8z7d6c5b4", &newer)).await;
    eventually("the alert", Duration::from_secs(10), || async {
        !slack.posted().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let posted = slack.posted();
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(
        posted[0].text(),
        "[test] 1 new CRITICAL in ghcr.io/org/img-3"
    );
    let body = posted[0].body.as_ref().expect("body").to_string();
    assert!(
        body.contains("CVE-2026-0700") && body.contains("ns-0/Deployment/app-3"),
        "{body}"
    );
    let (_, metrics) = controller.get("/metrics").await;
    assert!(
        metrics.contains("trivy_digest_alerts_sent_total 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("trivy_digest_alert_messages_total{channel=\"security\",outcome=\"sent\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("trivy_digest_alerts_pending 0"),
        "{metrics}"
    );
    assert_eq!(controller.stop().await, 0);

    // A restart lists everything again: nothing is new.
    let controller = Controller::start(config(dir.path(), &hook), server.client().await);
    eventually("ready again", Duration::from_secs(30), || async {
        controller.get("/readyz").await.0 == 200
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.posted().len(), 1, "{:?}", slack.posted());
    assert_eq!(controller.stop().await, 0);
}
