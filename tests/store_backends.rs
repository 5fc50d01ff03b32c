//! One store suite over both engines. Each scenario runs through the real binary twice,
//! on an SQLite file and on a database of a real PostgreSQL server
//! (tests/support/postgres.rs), and asserts the same figures on both; then every output
//! (the sweeps' JSON, `query`, the summary, what DefectDojo received) must be the same
//! on both, byte for byte once the store's own location is left out.

mod support;

use serde_json::{Value, json};
use support::cli::{Run, Workspace};
use support::reports::{
    config_audit, digest, list, sbom_report, shop_inventory, spread, trivy_cli, vuln,
    vulnerability_report,
};
use trivy_digest::store::{Store, StoreLocation};

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-02T10:00:00Z";
const T2: &str = "2026-11-03T10:00:00Z";
const T3: &str = "2026-11-06T10:00:00Z";

fn engines(test: &str) -> [Workspace; 2] {
    let pg = Workspace::postgres(test);
    // The fleet named as the one cluster is, so that titles and products agree.
    pg.config("fleet: kubernetes\n");
    [Workspace::new(), pg]
}

/// The sweep's JSON without what differs by engine for no reason of semantics.
fn normalized(run: &Run, ws: &Workspace) -> Value {
    assert!(
        matches!(run.code, 0 | 3),
        "{}: exit {}\n{}\n{}",
        ws.engine(),
        run.code,
        run.stdout,
        run.stderr
    );
    let mut v = run.json();
    strip(&mut v);
    v
}

/// Removes the store's location and timings (wall clock) wherever they appear.
fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("store");
            m.remove("inputs");
            m.remove("elapsed_ms");
            m.remove("duration_ms");
            for (_, x) in m.iter_mut() {
                strip(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

/// `v` without `key`, at any depth.
fn drop_key(v: &mut Value, key: &str) {
    match v {
        Value::Object(m) => {
            m.remove(key);
            m.values_mut().for_each(|x| drop_key(x, key));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| drop_key(x, key)),
        _ => {}
    }
}

/// `text` with the workspace's own directory as `<ws>`; a fleet store's summary says
/// "whole fleet" where one cluster's says "whole cluster" (the fleet is named as the
/// cluster in these tests: `engines`).
fn local(ws: &Workspace, text: &str) -> String {
    let text = text.replace(&ws.dir.path().display().to_string(), "<ws>");
    if ws.pg.is_some() {
        text.replace("whole fleet", "whole cluster")
    } else {
        text
    }
}

/// Step by step, so that a difference names its step and its first differing line.
fn same(what: &str, outputs: &[Vec<String>; 2]) {
    assert_eq!(outputs[0].len(), outputs[1].len(), "{what}: steps");
    for (i, (a, b)) in outputs[0].iter().zip(&outputs[1]).enumerate() {
        if a == b {
            continue;
        }
        let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
        let at = la
            .iter()
            .zip(&lb)
            .position(|(x, y)| x != y)
            .unwrap_or(la.len().min(lb.len()));
        let from = at.saturating_sub(12);
        panic!(
            "{what}, step {i}: SQLite and PostgreSQL differ at line {at}\n--- SQLite\n{}\n--- PostgreSQL\n{}",
            la[from..(at + 4).min(la.len())].join("\n"),
            lb[from..(at + 4).min(lb.len())].join("\n")
        );
    }
}

#[test]
fn a_fresh_store_migrates_reopens_and_keeps_its_identity() {
    let dir = tempfile::tempdir().expect("dir");
    let pg = support::postgres::database("migrates");
    for loc in [
        StoreLocation::Sqlite(dir.path().join("store.db")),
        support::postgres::location(&pg),
    ] {
        let mut store = Store::open_at(&loc).unwrap_or_else(|e| panic!("{loc}: {e:#}"));
        let v = store.schema_version().expect("version");
        assert!(v >= 1, "{loc}: version {v}");
        let id = store.identity().expect("identity");
        store.claim_cluster("prod-eu").expect("claim");
        drop(store);
        let mut again = Store::open_at(&loc).expect("reopen");
        assert_eq!(again.schema_version().expect("version"), v, "{loc}");
        assert_eq!(
            again.identity().expect("identity"),
            id,
            "{loc}: the identity is kept"
        );
        // A file belongs to one cluster; a PostgreSQL store is a fleet's.
        let second = again.claim_cluster("prod-us");
        if loc.is_postgres() {
            second.expect("a fleet store takes another cluster");
            assert_eq!(again.cluster(), "prod-us");
        } else {
            let e = second.expect_err("another cluster");
            assert!(e.to_string().contains("belongs to cluster"), "{loc}: {e}");
            assert!(e.to_string().contains("Many clusters"), "{loc}: {e}");
        }
    }
}

#[test]
fn the_postgres_password_is_required_and_never_printed() {
    let db = support::postgres::database("password");
    let ws = Workspace::new();
    let url = support::postgres::url(&db);
    let input = ws.write("a.json", &list(shop_inventory()));
    // No password: the server refuses, and the message names the store, not a secret.
    let run = ws.run(&[
        "--store",
        &url,
        "scan",
        "--from",
        &input.display().to_string(),
    ]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("/{db}")), "{}", run.stderr);
    // A wrong one in the environment: refused the same way, and not echoed.
    let mut cmd = ws.command(&[
        "--store",
        &url,
        "scan",
        "--from",
        &input.display().to_string(),
    ]);
    cmd.env("TRIVY_DIGEST_STORE_PASSWORD", "wrong-horse-battery");
    let run = support::cli::output(cmd.output().expect("run"));
    assert_eq!(run.code, 1);
    assert!(!run.stderr.contains("wrong-horse"), "{}", run.stderr);
    assert!(run.stderr.contains("password"), "{}", run.stderr);
    // The right one: the sweep is stored; `config check` shows the URL, not the password.
    let mut cmd = ws.command(&[
        "--store",
        &url,
        "scan",
        "--format",
        "json",
        "--from",
        &input.display().to_string(),
    ]);
    cmd.env("TRIVY_DIGEST_STORE_PASSWORD", support::postgres::PASSWORD);
    let run = support::cli::output(cmd.output().expect("run"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["reports"]["stored"], 3, "{}", run.stdout);
    let mut cmd = ws.command(&["--store", &url, "config", "check"]);
    cmd.env("TRIVY_DIGEST_STORE_PASSWORD", support::postgres::PASSWORD);
    let run = support::cli::output(cmd.output().expect("run"));
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(!all.contains(support::postgres::PASSWORD), "{all}");
}

fn three_vulns() -> Vec<support::reports::Vuln> {
    vec![
        vuln("CVE-2026-0001", "openssl", "CRITICAL").fixed("3.0.9"),
        vuln("CVE-2026-0001", "libcrypto3", "CRITICAL"),
        vuln("CVE-2026-0002", "zlib", "LOW"),
    ]
}

/// Deduplication, history, a fix, reports ending and expiring, a re-rating: the store's
/// write path, step by step, with the same figures on both engines.
#[test]
fn history_is_the_same_on_both_engines() {
    let mut outputs: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
    for (i, ws) in engines("history").iter().enumerate() {
        let out = &mut outputs[i];
        let all = ws.write("all.json", &spread(50, 5, |_| three_vulns()));
        let s = normalized(&ws.scan_complete_at(T0, &[&all]), ws);
        assert_eq!(s["reports"]["stored"], 50, "{}", ws.engine());
        assert_eq!(
            s["images"],
            json!({"unique": 5, "pinned": 5, "unpinned": 0}),
            "{}",
            ws.engine()
        );
        assert_eq!(s["findings"]["after_dedup"]["total"], 15, "{}", ws.engine());
        out.push(s);
        assert_eq!(
            ws.count("SELECT COUNT(*) FROM findings"),
            15,
            "{}",
            ws.engine()
        );
        assert_eq!(ws.count("SELECT COUNT(*) FROM targets"), 5);

        // The same sweep again changes nothing.
        let s = normalized(&ws.scan_complete_at(T1, &[&all]), ws);
        assert_eq!(s["history"]["findings_opened"], 0, "{}: {s:#}", ws.engine());
        assert_eq!(s["history"]["findings_resolved"], 0);
        out.push(s);
        let events = ws.count("SELECT COUNT(*) FROM finding_events");

        // img-0 is upgraded (openssl fixed, zlib re-rated); img-4's workloads are gone.
        let mut reports: Vec<Value> = Vec::new();
        for w in 0..40u32 {
            let img = w % 5;
            if img == 4 {
                continue;
            }
            let vulns = if img == 0 {
                vec![
                    vuln("CVE-2026-0001", "libcrypto3", "CRITICAL"),
                    vuln("CVE-2026-0002", "zlib", "HIGH"),
                ]
            } else {
                three_vulns()
            };
            reports.push(vulnerability_report(
                &format!("ns-{}", w % 5),
                &format!("app-{w}"),
                &format!("org/img-{img}"),
                Some(&digest(img + if img == 0 { 100 } else { 0 })),
                &vulns,
            ));
        }
        let upgraded = ws.write("upgraded.json", &list(reports));
        let s = normalized(&ws.scan_complete_at(T2, &[&upgraded]), ws);
        assert!(
            s["history"]["reports_gone"].as_u64().unwrap_or(0) > 0,
            "{}: {s:#}",
            ws.engine()
        );
        out.push(s);
        assert!(ws.count("SELECT COUNT(*) FROM finding_events") > events);

        // Past the grace period the gone reports expire and what only they held resolves.
        let s = normalized(&ws.scan_complete_at(T3, &[&upgraded]), ws);
        assert!(
            s["history"]["reports_expired"].as_u64().unwrap_or(0) > 0,
            "{}: {s:#}",
            ws.engine()
        );
        out.push(s);
        out.push(json!({
            "findings": ws.count("SELECT COUNT(*) FROM findings"),
            "open": ws.count("SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL"),
            "events": ws.count("SELECT COUNT(*) FROM finding_events"),
            "reports": ws.count("SELECT COUNT(*) FROM reports"),
            "targets": ws.count("SELECT COUNT(*) FROM targets"),
            "sightings": ws.count("SELECT COUNT(*) FROM sightings"),
        }));
    }
    let pretty = |v: &Vec<Value>| -> Vec<String> {
        v.iter()
            .map(|x| serde_json::to_string_pretty(x).expect("json"))
            .collect()
    };
    same(
        "the sweeps' JSON and the tables' counts",
        &[pretty(&outputs[0]), pretty(&outputs[1])],
    );
}

/// The inventory, CI results and the summary read the same from both engines.
#[test]
fn inventory_ci_and_summary_are_the_same_on_both_engines() {
    let mut outputs: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (i, ws) in engines("inventory").iter().enumerate() {
        let out = &mut outputs[i];
        let mut objects = shop_inventory();
        objects.push(sbom_report(
            "shop",
            "front",
            "org/front",
            &digest(3),
            &[("npm", "left-pad", "1.3.0")],
        ));
        objects.push(config_audit(
            "shop",
            "api",
            &[("KSV001", "HIGH", "Process can elevate its own privileges")],
            T0,
        ));
        let cluster = ws.write("cluster.json", &list(objects));
        let s = normalized(&ws.scan_complete_at(T0, &[&cluster]), ws);
        out.push(local(ws, &serde_json::to_string_pretty(&s).expect("json")));
        let ci = ws.write(
            "new.trivy.json",
            &trivy_cli(
                "org/new",
                &digest(9),
                "2026-10-31T09:00:00Z",
                &[vuln(
                    "CVE-2021-44228",
                    "org.apache.logging.log4j:log4j-core",
                    "CRITICAL",
                )
                .installed("2.14.1")],
            ),
        );
        let s = normalized(&ws.scan_at(T1, &[&ci]), ws);
        assert_eq!(s["ci"]["new_images"], 1, "{}: {s:#}", ws.engine());
        out.push(local(ws, &serde_json::to_string_pretty(&s).expect("json")));
        for args in [
            vec!["query", "--cve", "CVE-2021-44228", "--format", "json"],
            vec!["query", "--package", "left-pad", "--format", "json"],
            vec![
                "query",
                "--package",
                "log4j-core",
                "--version",
                "<2.17.0",
                "--format",
                "json",
            ],
            vec!["query", "--image", "ghcr.io/org/api", "--format", "json"],
            vec!["query", "--cve", "CVE-1999-0000"],
        ] {
            let run = ws.run(&args);
            assert!(
                matches!(run.code, 0 | 6),
                "{} {args:?}: {}\n{}",
                ws.engine(),
                run.stdout,
                run.stderr
            );
            // A fleet store names each workload's cluster (one store's output does not):
            // the rest must be the same.
            let body = match serde_json::from_str::<Value>(&run.stdout) {
                Ok(mut v) => {
                    drop_key(&mut v, "cluster");
                    serde_json::to_string_pretty(&v).expect("json")
                }
                Err(_) => run.stdout.clone(),
            };
            out.push(local(ws, &format!("{} {body}", run.code)));
        }
        for extra in [&["--text"][..], &[][..]] {
            let mut args = vec!["summary", "--month", "2026-11"];
            args.extend_from_slice(extra);
            let run = ws.run(&args);
            assert_eq!(run.code, 0, "{}: {}", ws.engine(), run.stderr);
            out.push(local(ws, &run.stdout));
        }
    }
    assert!(
        outputs[0][3].starts_with("0 "),
        "left-pad is found: {}",
        outputs[0][3]
    );
    same("the inventory, CI and summary outputs", &outputs);
}
