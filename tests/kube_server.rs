//! Smoke tests of the real-API-server harness (`support::kube_server`): Debian's
//! apiextensions-apiserver over etcd, with the Trivy Operator CRDs.
//!
//! They need `scripts/kube-test-server.sh build` to have run; without it they fail
//! (never skip), saying so.

mod support;

use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::Status;
use kube::{Client, ResourceExt};
use serde_json::json;
use support::kube_server::{KubeServer, check_bin_dir, fixture_crd_plurals};

const NAMESPACE: &str = "shop";

fn vulnerability_reports() -> ApiResource {
    ApiResource {
        group: "aquasecurity.github.io".into(),
        version: "v1alpha1".into(),
        api_version: "aquasecurity.github.io/v1alpha1".into(),
        kind: "VulnerabilityReport".into(),
        plural: "vulnerabilityreports".into(),
    }
}

fn reports(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), NAMESPACE, &vulnerability_reports())
}

/// A small VulnerabilityReport. The server validates it against the CRD's schema, so
/// every field the schema requires is there.
fn report(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "aquasecurity.github.io/v1alpha1",
        "kind": "VulnerabilityReport",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "report": {
            "updateTimestamp": "2026-11-01T10:00:00Z",
            "artifact": {"repository": "library/nginx", "tag": "1.27"},
            "os": {"family": "debian", "name": "12.8"},
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.60.0"},
            "summary": {"criticalCount": 1, "highCount": 0, "mediumCount": 0,
                        "lowCount": 0, "unknownCount": 0},
            "vulnerabilities": [{
                "vulnerabilityID": "CVE-2026-0001", "resource": "openssl",
                "installedVersion": "3.0.8", "fixedVersion": "3.0.9",
                "severity": "CRITICAL", "title": "test",
                "publishedDate": "2026-01-01T00:00:00Z",
                "lastModifiedDate": "2026-01-02T00:00:00Z",
            }],
        },
    }))
    .expect("a VulnerabilityReport object")
}

async fn create(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    api.create(&PostParams::default(), &report(name))
        .await
        .unwrap_or_else(|e| panic!("create VulnerabilityReport {name}: {e}"))
}

/// Creates (or updates) by server-side apply. Unlike a POST, that is not held for 2 s
/// right after the CRD is established (see the harness docs).
async fn apply(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    let params = PatchParams::apply("kube-server-smoke-test").force();
    api.patch(name, &params, &Patch::Apply(report(name)))
        .await
        .unwrap_or_else(|e| panic!("apply VulnerabilityReport {name}: {e}"))
}

async fn list_rv(api: &Api<DynamicObject>) -> String {
    api.list(&ListParams::default())
        .await
        .expect("list VulnerabilityReports")
        .metadata
        .resource_version
        .expect("a list resourceVersion")
}

/// The first event of a watch from `rv`, within 10 s.
async fn first_event(api: &Api<DynamicObject>, rv: &str) -> WatchEvent<DynamicObject> {
    let stream = api
        .watch(&WatchParams::default().timeout(30), rv)
        .await
        .expect("start a watch");
    let mut stream = Box::pin(stream);
    tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("a watch event within 10 s")
        .expect("a watch event, not an error")
        .expect("the watch stream ended without an event")
}

fn assert_expired(event: WatchEvent<DynamicObject>) -> Box<Status> {
    match event {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}");
            e
        }
        other => panic!("expected a 410 Expired watch error, got {other:?}"),
    }
}

#[test]
fn missing_binaries_fail_loudly() {
    let empty = tempfile::tempdir().expect("temp dir");
    let result = std::panic::catch_unwind(|| check_bin_dir(empty.path()));
    let panic = result.expect_err("an empty bin dir must panic");
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains("scripts/kube-test-server.sh build"),
        "{message}"
    );
}

#[tokio::test]
async fn crds_install_and_a_report_round_trips() {
    let started = Instant::now();
    let server = KubeServer::start();
    let up = started.elapsed();
    server.install_crds();
    let installed = started.elapsed();
    let client = server.client().await;

    let crds = Api::<CustomResourceDefinition>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list CRDs");
    let mut plurals: Vec<String> = crds.iter().map(|c| c.spec.names.plural.clone()).collect();
    plurals.sort();
    let mut expected = fixture_crd_plurals();
    expected.sort();
    assert_eq!(plurals, expected);
    assert_eq!(plurals.len(), 12);

    let api = reports(&client);
    let created = create(&api, "replicaset-nginx-6d4cf56db6-nginx").await;
    assert_eq!(created.namespace().as_deref(), Some(NAMESPACE));

    let listed = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    let item = &listed.items[0];
    assert_eq!(item.name_any(), "replicaset-nginx-6d4cf56db6-nginx");
    assert_eq!(
        item.data["report"]["vulnerabilities"][0]["vulnerabilityID"],
        "CVE-2026-0001"
    );
    // Across namespaces too.
    let all = Api::<DynamicObject>::all_with(client.clone(), &vulnerability_reports());
    assert_eq!(
        all.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );

    // A watch from the list's resourceVersion sees the next object ADDED.
    let rv = listed
        .metadata
        .resource_version
        .expect("list resourceVersion");
    let stream = api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .expect("start a watch");
    let mut stream = Box::pin(stream);
    create(&api, "second").await;
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a watch event within 10 s")
        .expect("the watch stream ended")
        .expect("a watch event, not an error");
    match event {
        WatchEvent::Added(obj) => assert_eq!(obj.name_any(), "second"),
        other => panic!("expected ADDED, got {other:?}"),
    }
    eprintln!(
        "start {} ms, +12 CRDs established {} ms, whole test {} ms",
        up.as_millis(),
        (installed - up).as_millis(),
        started.elapsed().as_millis()
    );
}

#[tokio::test]
async fn an_absent_crd_is_404_until_installed() {
    let server = KubeServer::start();
    server.install_crds_except(&["vulnerabilityreports"]);
    let client = server.client().await;
    match reports(&client).list(&ListParams::default()).await {
        // A plain-text "404 page not found" (no Status body, so not `is_not_found()`),
        // as from kube-apiserver for a resource nobody serves.
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404, "{status:?}"),
        other => panic!("expected 404 without the CRD, got {other:?}"),
    }
    server.install_crd("vulnerabilityreports");
    let list = reports(&client).list(&ListParams::default()).await;
    assert!(list.expect("list after install_crd").items.is_empty());
}

#[tokio::test]
async fn objects_survive_an_apiserver_kill_and_restart() {
    let mut server = KubeServer::start();
    server.install_crd("vulnerabilityreports");
    let client = server.client().await;
    let created = apply(&reports(&client), "survivor").await;

    server.kill_apiserver();
    assert!(!server.apiserver_running());
    let down = reports(&client).get("survivor").await;
    assert!(down.is_err(), "the apiserver answered while killed");

    let restarted = Instant::now();
    server.restart_apiserver();
    eprintln!("restart took {} ms", restarted.elapsed().as_millis());
    // The same client reconnects.
    let got = reports(&client)
        .get("survivor")
        .await
        .expect("get after restart");
    assert_eq!(got.uid(), created.uid());
    assert_eq!(got.resource_version(), created.resource_version());
}

#[tokio::test]
async fn a_watch_from_resource_version_1_is_expired() {
    let server = KubeServer::start();
    server.install_crd("vulnerabilityreports");
    let client = server.client().await;
    let api = reports(&client);
    apply(&api, "one").await;
    let error = assert_expired(first_event(&api, "1").await);
    assert!(
        error.message.contains("too old resource version"),
        "{error:?}"
    );
}

/// The real 410 on reconnect: the first apiserver is down while a second one writes; the
/// restarted first one starts its watch cache after those writes, so a watch that resumes
/// from the old resourceVersion is told it is Expired.
#[tokio::test]
async fn writes_through_a_second_apiserver_expire_an_old_resource_version() {
    let mut server = KubeServer::start();
    server.install_crd("vulnerabilityreports");
    let client = server.client().await;
    let api = reports(&client);
    apply(&api, "before").await;
    let old_rv = list_rv(&api).await;
    // Before the outage, a watch from there is fine: it sees the next change.
    apply(&api, "canary").await;
    match first_event(&api, &old_rv).await {
        WatchEvent::Added(obj) => assert_eq!(obj.name_any(), "canary"),
        other => panic!("expected ADDED canary, got {other:?}"),
    }

    server.kill_apiserver();
    let second = server.start_second_apiserver();
    assert_ne!(second.url(), server.url());
    let second_api = reports(&second.client().await);
    for i in 0..5 {
        apply(&second_api, &format!("while-down-{i}")).await;
    }
    server.restart_apiserver();

    let error = assert_expired(first_event(&api, &old_rv).await);
    assert!(
        error.message.contains("too old resource version"),
        "{error:?}"
    );
    // A fresh list through the restarted first server sees everything.
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list after restart")
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    second.kill();
}
