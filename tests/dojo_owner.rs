//! Two independent stores mapped onto the same DefectDojo tests: each push carries its
//! store's owner mark (`build_id`), and a push into another store's test is refused
//! before anything is sent, since DefectDojo would close the other cluster's findings.

mod support;

use std::path::Path;

use serde_json::Value;
use support::cli::{Run, Workspace};
use support::dojo::{DojoFake, results};
use support::reports::{Vuln, spread, vuln};

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-02T10:00:00Z";
const T2: &str = "2026-11-03T10:00:00Z";

/// A cluster's install whose mapping ignores the cluster: one product for every cluster,
/// the pattern of a product per team.
fn install(dojo: &DojoFake, cluster: &str, extra: &str) -> Workspace {
    let mut ws = Workspace::new();
    ws.config(&format!(
        "cluster: {cluster}\ndefectdojo:\n  product: platform\n  timeout: 5s\n  retry:\n    \
         max_attempts: 3\n    initial_backoff: 10ms\n    max_backoff: 40ms\n{extra}"
    ));
    ws.env.extend(dojo.env());
    ws
}

fn three() -> Vec<Vuln> {
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln("CVE-2026-0002", "zlib", "HIGH"),
        vuln("CVE-2026-0003", "curl", "LOW"),
    ]
}

fn one() -> Vec<Vuln> {
    vec![vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9")]
}

/// 10 workloads running the same 2 images (`ghcr.io/org/img-0` and `-1`).
fn cluster(ws: &Workspace, per_image: fn() -> Vec<Vuln>) -> std::path::PathBuf {
    ws.write("c.json", &spread(10, 2, |_| per_image()))
}

fn scan(ws: &Workspace, now: &str, input: &Path) -> Run {
    ws.scan_at(now, &[input])
}

fn store_id(ws: &Workspace) -> String {
    ws.db()
        .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
            r.get(0)
        })
        .expect("the store has an identity")
}

/// Findings not closed (a risk-accepted finding is inactive but open).
fn open(dojo: &DojoFake) -> usize {
    dojo.findings().iter().filter(|f| !f.is_mitigated).count()
}

#[test]
fn a_second_cluster_mapped_onto_the_same_tests_is_refused_and_closes_nothing() {
    let dojo = DojoFake::start_blocking();
    let a = install(&dojo, "prod-eu", "");
    let run = scan(&a, T0, &cluster(&a, three));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(open(&dojo), 6);
    // Every test carries A's mark.
    let mark = format!("trivy-digest store {} cluster prod-eu", store_id(&a));
    for t in dojo.tests() {
        assert_eq!(t.meta.build_id.as_deref(), Some(mark.as_str()), "{t:?}");
    }
    // Triage made on A's findings.
    let accepted: Vec<u64> = dojo.findings().iter().map(|f| f.id).take(2).collect();
    dojo.accept_risk(&accepted);

    // Cluster B runs the same images at other digests with one finding each.
    let b = install(&dojo, "prod-us", "");
    dojo.clear_log();
    let run = scan(&b, T0, &cluster(&b, one));
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(results(&s), vec!["not_ours", "not_ours"], "{s:#}");
    let t = &s["defectdojo"]["tests"][0];
    assert_eq!(t["owner"]["cluster"], "prod-eu");
    assert_eq!(t["owner"]["store"], store_id(&a));
    let error = t["error"].as_str().expect("error");
    for part in [
        "belongs to cluster \"prod-eu\"",
        "this is cluster \"prod-us\"",
        "nothing was sent",
        "give every cluster its own name",
        "engagement: '{{ cluster }}'",
    ] {
        assert!(error.contains(part), "{part:?} in {error}");
    }
    assert_eq!(s["defectdojo"]["refused"], 2);
    assert_eq!(
        dojo.reimports().len(),
        0,
        "nothing was sent: {:?}",
        dojo.log()
    );
    // Nothing of A's was closed, and its risk acceptances stand.
    assert_eq!(open(&dojo), 6);
    for id in &accepted {
        let f = dojo
            .findings()
            .into_iter()
            .find(|f| f.id == *id)
            .expect("finding");
        assert!(f.risk_accepted, "{f:?}");
    }

    // The text summary says it too, and the next scan does not hammer the server.
    let run = b.run(&["scan", "--now", "2026-11-01T11:00:00Z", "--from", "c.json"]);
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "refused earlier, not resent until it changes: ghcr.io/org/img-0: DefectDojo test"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(dojo.reimports().len(), 0);

    // A keeps pushing its own tests.
    let run = scan(&a, T1, &cluster(&a, one));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(results(&run.json()), vec!["done", "done"]);
}

/// Without the check, a push of B's content does to A's test what the real server does:
/// it closes every finding B does not report, with their risk acceptances.
#[test]
fn the_same_push_sent_without_the_check_closes_the_other_clusters_findings() {
    let dojo = DojoFake::start_blocking();
    let a = install(&dojo, "prod-eu", "");
    assert_eq!(scan(&a, T0, &cluster(&a, three)).code, 0);
    let accepted: Vec<u64> = dojo.findings().iter().map(|f| f.id).collect();
    dojo.accept_risk(&accepted);

    // What B would send, written by a dry run and sent as it is.
    let b = install(&dojo, "prod-us", "");
    let input = cluster(&b, one);
    let dry = b.path("dry");
    let run = b.run(&[
        "scan",
        "--from",
        input.to_str().expect("utf8"),
        "--dry-run",
        dry.to_str().expect("utf8"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let form: Value = serde_json::from_slice(
        &std::fs::read(dry.join("0001-vulnerability-ghcr.io_org_img-0.form.json")).expect("form"),
    )
    .expect("json");
    let file = std::fs::read(dry.join("0001-vulnerability-ghcr.io_org_img-0.findings.json"))
        .expect("findings");
    let mut multipart = reqwest::multipart::Form::new();
    for pair in form["fields"].as_array().expect("fields") {
        let k = pair[0].as_str().expect("key").to_owned();
        let v = pair[1].as_str().expect("value").to_owned();
        multipart = multipart.text(k, v);
    }
    multipart = multipart.part(
        "file",
        reqwest::multipart::Part::bytes(file).file_name("findings.json"),
    );
    let (status, body) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let r = reqwest::Client::new()
                .post(format!("{}/api/v2/reimport-scan/", dojo.url()))
                .header("Authorization", format!("Token {}", DojoFake::TOKEN))
                .multipart(multipart)
                .send()
                .await
                .expect("reimport");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        });
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["statistics"]["delta"]["closed"]["total"]["total"], 2);
    let img0 = dojo
        .tests()
        .into_iter()
        .find(|t| t.title.as_deref() == Some("ghcr.io/org/img-0"))
        .expect("test");
    let findings = dojo.findings_of_test(img0.id);
    let closed: Vec<_> = findings.iter().filter(|f| f.is_mitigated).collect();
    assert_eq!(closed.len(), 2);
    assert!(closed.iter().all(|f| !f.active && !f.risk_accepted));
    // And the push without a mark cleared A's (DefectDojo writes `""`).
    assert_eq!(img0.meta.build_id.as_deref(), Some(""));
}

#[test]
fn tests_made_before_owner_marks_are_adopted_by_their_own_store_only() {
    let dojo = DojoFake::start_blocking();
    let a = install(&dojo, "prod-eu", "");
    assert_eq!(scan(&a, T0, &cluster(&a, three)).code, 0);
    // As an older trivy-digest left them: no mark.
    for t in dojo.tests() {
        dojo.set_build_id(t.id, None);
    }

    // Another store never pushed to them: refused, and told how to take them over.
    let b = install(&dojo, "prod-us", "");
    let run = scan(&b, T0, &cluster(&b, one));
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(results(&s), vec!["not_ours", "not_ours"]);
    let t = &s["defectdojo"]["tests"][0];
    assert!(t["owner"].is_null(), "{t}");
    let error = t["error"].as_str().expect("error");
    assert!(error.contains("exists with no owner mark"), "{error}");
    assert!(error.contains("defectdojo.adopt_tests: true"), "{error}");
    assert_eq!(open(&dojo), 6);

    // The store that made them recognises them by id, takes them over and marks them.
    let run = scan(&a, T1, &cluster(&a, one));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(results(&run.json()), vec!["done", "done"]);
    let mark = format!("trivy-digest store {} cluster prod-eu", store_id(&a));
    for t in dojo.tests() {
        assert_eq!(t.meta.build_id.as_deref(), Some(mark.as_str()));
    }
    assert_eq!(open(&dojo), 2, "A's own upgrade closed what it fixed");
}

#[test]
fn a_cluster_whose_store_was_lost_takes_its_tests_over_only_when_asked() {
    let dojo = DojoFake::start_blocking();
    let old = install(&dojo, "prod-eu", "");
    assert_eq!(scan(&old, T0, &cluster(&old, three)).code, 0);
    let old_id = store_id(&old);

    // The volume is gone: a new, empty store with the same cluster name.
    let new = install(&dojo, "prod-eu", "");
    let input = cluster(&new, one);
    let run = scan(&new, T1, &input);
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    let s = run.json();
    assert_eq!(results(&s), vec!["not_ours", "not_ours"]);
    let error = s["defectdojo"]["tests"][0]["error"]
        .as_str()
        .expect("error");
    assert!(error.contains("same cluster name"), "{error}");
    assert!(error.contains(&old_id), "{error}");
    assert_eq!(open(&dojo), 6);

    // Asked to, it takes them over (refused content is sent again with --resync).
    new.config(
        "cluster: prod-eu\ndefectdojo:\n  product: platform\n  adopt_tests: true\n  timeout: 5s\n",
    );
    let run = new.scan_with(T2, &[&input], &["--resync"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(results(&run.json()), vec!["done", "done"]);
    let mark = format!("trivy-digest store {} cluster prod-eu", store_id(&new));
    for t in dojo.tests() {
        assert_eq!(t.meta.build_id.as_deref(), Some(mark.as_str()));
    }
    // Even asked to, no store takes over a test of a cluster of another name.
    let other = install(&dojo, "prod-us", "  adopt_tests: true\n");
    let run = scan(&other, T2, &cluster(&other, three));
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(results(&run.json()), vec!["not_ours", "not_ours"]);
}
