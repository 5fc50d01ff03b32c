//! `/api/v1/`: the inventory as read-only JSON on the metrics port, off by default, the
//! same bytes as `query --format json`, and refusing what it cannot answer with a 400.

mod support;

use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde_json::Value;
use support::cli::Workspace;
use support::reports::{
    LOG4J, digest, list, sbom_report, shop_inventory, vuln, vulnerability_report,
};
use trivy_digest::config::Config;
use trivy_digest::serve::AppState;

const T0: &str = "2026-11-01T10:00:00Z";
const T1: &str = "2026-11-05T10:00:00Z";
const T2: &str = "2026-11-08T10:00:00Z";

/// `shop/api` runs `ghcr.io/org/api` with log4j-core 2.14.1 (CVE-2021-44228) and
/// openssl; `shop/web` runs `ghcr.io/org/web` with 2.17.1. `shop/old` ran an older
/// `ghcr.io/org/api` with log4j-core 2.14.0, gone since T1 and past its grace period at
/// T2: only `all=true` lists that content (its finding is resolved).
fn store() -> Workspace {
    let ws = Workspace::new();
    let log4shell = |v: &'static str| {
        vec![
            vuln("CVE-2021-44228", LOG4J, "CRITICAL")
                .fixed("2.15.0")
                .installed(v),
        ]
    };
    let now = |old: bool| {
        let mut items = shop_inventory();
        if old {
            items.push(vulnerability_report(
                "shop",
                "old",
                "org/api",
                Some(&digest(9)),
                &log4shell("2.14.0"),
            ));
            items.push(sbom_report(
                "shop",
                "old",
                "org/api",
                &digest(9),
                &[("maven", LOG4J, "2.14.0")],
            ));
        }
        list(items)
    };
    let first = ws.write("t0.json", &now(true));
    let later = ws.write("t1.json", &now(false));
    for (at, input) in [(T0, &first), (T1, &later), (T2, &later)] {
        let run = ws.scan_complete_at(at, &[input]);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    }
    ws
}

fn config(ws: &Workspace, yaml: &str) -> Config {
    let mut c = Config::from_yaml(yaml).expect("config");
    c.store = ws.store().into();
    c
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// A 400 whose JSON error names `param`.
    fn refuses(&self, param: &str) {
        assert_eq!(self.status, 400, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            "application/json; charset=utf-8"
        );
        let e = self.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(e.starts_with(param), "{param}: {e}");
    }
}

/// Serves `config` as `run` does, on a free port, and makes the requests `f` asks for.
fn with_server(config: Config, f: impl AsyncFnOnce(&dyn Fn(&str, &str) -> Request)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(AppState::new(
            &config,
            Default::default(),
            Default::default(),
        ));
        let server = tokio::spawn(trivy_digest::serve::serve(
            listener,
            state,
            std::future::pending(),
        ));
        let client = reqwest::Client::new();
        let request = |method: &str, path: &str| Request {
            client: client.clone(),
            method: method.parse().expect("method"),
            url: format!("http://{addr}{path}"),
        };
        f(&request).await;
        server.abort();
    });
}

struct Request {
    client: reqwest::Client,
    method: reqwest::Method,
    url: String,
}

impl Request {
    async fn send(self) -> Reply {
        let r = self
            .client
            .request(self.method, &self.url)
            .send()
            .await
            .expect("request");
        Reply {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.expect("body"),
        }
    }
}

/// `trivy-digest query <args> --format json` against the same store.
fn cli(ws: &Workspace, args: &[&str]) -> String {
    let mut a = vec!["query"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--format", "json"]);
    let run = ws.run(&a);
    assert!(
        run.code == 0 || run.code == 6,
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    run.stdout
}

#[test]
fn off_by_default_and_shown_by_config_check() {
    let ws = store();
    let c = config(&ws, "summary:\n  serve: true\n");
    assert!(!c.api.serve);
    with_server(c, async |req| {
        for path in ["/api/v1/", "/api/v1/cves/CVE-2021-44228"] {
            let r = req("GET", path).send().await;
            assert_eq!(r.status, 404, "{path}: {}", r.body);
        }
        // The summary beside it is on: only the API is off.
        assert_eq!(req("GET", "/summary/").send().await.status, 200);
    });

    let e = Config::from_yaml("api:\n  serv: true\n").expect_err("typo");
    assert!(e.contains("serv"), "{e}");
    let run = ws.run(&["config", "check"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("api:\n  serve: false\n"),
        "{}",
        run.stdout
    );
    ws.config("api:\n  serve: true\n");
    let run = ws.run(&["config", "check"]);
    assert!(
        run.stdout.contains("api:\n  serve: true\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn answers_are_what_query_prints() {
    let ws = store();
    with_server(config(&ws, "api:\n  serve: true\n"), async |req| {
        // (path, the same question on the command line, entries expected at `list`)
        let cases: &[(&str, &[&str], &str, usize)] = &[
            (
                "/api/v1/cves/CVE-2021-44228",
                &["--cve", "CVE-2021-44228"],
                "findings",
                2,
            ),
            (
                "/api/v1/cves/CVE-2021-44228?all=true",
                &["--cve", "CVE-2021-44228", "--all"],
                "findings",
                2,
            ),
            (
                "/api/v1/packages/log4j-core",
                &["--package", "log4j-core"],
                "packages",
                2,
            ),
            (
                "/api/v1/packages/log4j-core?all=true",
                &["--package", "log4j-core", "--all"],
                "packages",
                3,
            ),
            (
                "/api/v1/packages/org.apache.logging.log4j:log4j-core?version=%3C2.17.1",
                &["--package", LOG4J, "--version", "<2.17.1"],
                "packages",
                1,
            ),
            (
                "/api/v1/packages/log4j-core?version=%3E%3D2.0,%3C2.17.1&all=true",
                &[
                    "--package",
                    "log4j-core",
                    "--version",
                    ">=2.0,<2.17.1",
                    "--all",
                ],
                "packages",
                2,
            ),
            (
                "/api/v1/images/ghcr.io/org/api",
                &["--image", "ghcr.io/org/api"],
                "repositories",
                1,
            ),
            // Slashes may come encoded too.
            (
                "/api/v1/images/ghcr.io%2Forg%2Fapi?all=false",
                &["--image", "ghcr.io/org/api"],
                "repositories",
                1,
            ),
            // No match is an answer, not a missing resource.
            (
                "/api/v1/cves/CVE-1999-0001",
                &["--cve", "CVE-1999-0001"],
                "findings",
                0,
            ),
            (
                "/api/v1/packages/left-pad",
                &["--package", "left-pad"],
                "packages",
                0,
            ),
            (
                "/api/v1/images/nginx",
                &["--image", "nginx"],
                "repositories",
                0,
            ),
        ];
        for (path, args, key, n) in cases {
            let r = req("GET", path).send().await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
            assert_eq!(r.body, cli(&ws, args), "{path}");
            let v = r.json();
            let got = v[key].as_array().map(Vec::len);
            assert_eq!(got, Some(*n), "{path}: {v:#}");
        }

        // The past content shows with all=true only.
        let images = |v: &Value| -> Vec<String> {
            v["repositories"][0]["images"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| i["image"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        let now = req("GET", "/api/v1/images/ghcr.io/org/api")
            .send()
            .await
            .json();
        assert_eq!(images(&now), vec![format!("ghcr.io/org/api@{}", digest(1))]);
        let all = req("GET", "/api/v1/images/ghcr.io/org/api?all=true")
            .send()
            .await
            .json();
        assert_eq!(images(&all).len(), 2, "{all:#}");
        assert_eq!(all["query"]["all"], true);

        let v = req("GET", "/api/v1/cves/CVE-2021-44228")
            .send()
            .await
            .json();
        let open: Vec<&Value> = v["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["runtime"]["open"] == true)
            .collect();
        assert_eq!(open.len(), 1, "{v:#}");
        assert_eq!(open[0]["repository"], "ghcr.io/org/api");
        assert_eq!(open[0]["installed_version"], "2.14.1");
        let v = req("GET", "/api/v1/packages/log4j-core?version=%3C2.17.1")
            .send()
            .await
            .json();
        assert_eq!(v["query"]["version"], "<2.17.1");
        assert_eq!(v["packages"][0]["version"], "2.14.1");
    });
}

#[test]
fn headers_methods_and_the_index() {
    let ws = store();
    with_server(config(&ws, "api:\n  serve: true\n"), async |req| {
        let check = |r: &Reply| {
            assert_eq!(r.header("cache-control"), "no-store", "{}", r.body);
            assert_eq!(r.header("x-content-type-options"), "nosniff");
            assert!(
                r.header("content-security-policy")
                    .contains("default-src 'none'")
            );
            assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
        };
        let r = req("GET", "/api/v1/cves/CVE-2021-44228").send().await;
        assert_eq!(r.status, 200);
        check(&r);
        let r = req("HEAD", "/api/v1/cves/CVE-2021-44228").send().await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        check(&r);
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let r = req(method, "/api/v1/cves/CVE-2021-44228").send().await;
            assert_eq!(r.status, 405, "{method}");
            assert!(r.header("allow").contains("GET"), "{method}");
            check(&r);
        }
        let r = req("GET", "/api/v1/").send().await;
        assert_eq!(r.status, 200);
        check(&r);
        let paths: Vec<String> = r.json()["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .map(|e| e["path"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            paths,
            [
                "/api/v1/cves/{id}",
                "/api/v1/packages/{name}",
                "/api/v1/images/{repo}"
            ]
        );
        let r = req("GET", "/api/v1/vulnerabilities/CVE-2021-44228")
            .send()
            .await;
        assert_eq!(r.status, 404);
        check(&r);
        assert!(r.json()["error"].as_str().is_some(), "{}", r.body);
        // Health and metrics are unchanged beside it.
        assert_eq!(req("GET", "/healthz").send().await.status, 200);
    });
}

#[test]
fn bad_input_is_a_400_naming_the_parameter() {
    let ws = store();
    with_server(config(&ws, "api:\n  serve: true\n"), async |req| {
        let long = "A".repeat(513);
        let limit = "A".repeat(512);
        for (path, param) in [
            ("/api/v1/packages/log4j-core?version=%3C", "version"),
            ("/api/v1/packages/log4j-core?version=", "version"),
            ("/api/v1/packages/log4j-core?version=2.14%202.15", "version"),
            ("/api/v1/packages/log4j-core?versoin=%3C2", "versoin"),
            ("/api/v1/packages/log4j-core?all=true&all=false", "all"),
            ("/api/v1/cves/CVE-2021-44228?version=2.14", "version"),
            ("/api/v1/cves/CVE-2021-44228?all=yes", "all"),
            ("/api/v1/cves/", "id"),
            ("/api/v1/cves/%20%20", "id"),
            ("/api/v1/cves/CVE%00", "id"),
            ("/api/v1/cves/%FF%FE", "id"),
            ("/api/v1/packages/", "name"),
            ("/api/v1/images/", "repo"),
            (&format!("/api/v1/cves/{long}"), "id"),
            (&format!("/api/v1/packages/{long}"), "name"),
            (&format!("/api/v1/images/ghcr.io/{long}"), "repo"),
            (
                &format!("/api/v1/packages/openssl?version={long}"),
                "version",
            ),
        ] {
            let r = req("GET", path).send().await;
            r.refuses(param);
            assert_eq!(r.header("cache-control"), "no-store");
        }
        // At the limit it is still a question (with no answer).
        let r = req("GET", &format!("/api/v1/cves/{limit}")).send().await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["findings"], serde_json::json!([]));
        // Odd but well-formed input is searched for, never a 500.
        for path in [
            "/api/v1/cves/%25_%5C'%22;--",
            "/api/v1/packages/%E2%9C%93/..%2F..",
            "/api/v1/images/localhost:5000/a//b",
            "/api/v1/images/..",
        ] {
            let r = req("GET", path).send().await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
        }
    });
}

#[test]
fn a_store_error_is_a_500_that_names_no_path() {
    let ws = store();
    // A directory where the store file should be: it cannot be opened.
    let dir = ws.path("not-a-store");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut c = config(&ws, "api:\n  serve: true\n");
    c.store = dir.clone().into();
    with_server(c, async |req| {
        let r = req("GET", "/api/v1/cves/CVE-2021-44228").send().await;
        assert_eq!(r.status, 500, "{}", r.body);
        assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
        assert_eq!(r.json()["error"], "cannot read the store; see the log");
        assert!(!r.body.contains("not-a-store"), "{}", r.body);
    });
}
