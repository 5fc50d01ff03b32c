//! `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` (and their lowercase forms) through the real
//! binary, against a forward proxy fake (tests/support/proxy.rs) and the DefectDojo fake.
//!
//! The DefectDojo fake listens on loopback, and reqwest does not exempt loopback from the
//! proxy by default (hyper-util's matcher bypasses only what `NO_PROXY` lists). The proof
//! that the binary honours the variables does not rest on that: DefectDojo is addressed as
//! `defectdojo.test`, a name only the proxy can resolve (RFC 6761 reserves `.test`), so
//! an export that arrives went through the proxy.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream, ToSocketAddrs};
use std::process::Command;

use support::cli::{Run, Workspace, output};
use support::dojo::DojoFake;
use support::proxy::ProxyFake;
use support::reports::{spread, vuln};

const T0: &str = "2026-11-01T10:00:00Z";
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DOJO_HOST: &str = "defectdojo.test";

const CONFIG: &str = "cluster: prod\ndefectdojo:\n  timeout: 5s\n  retry:\n    max_attempts: 2\n    initial_backoff: 10ms\n    max_backoff: 40ms\n";

/// Every variable reqwest or kube reads for proxies.
const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

fn dojo_port(dojo: &DojoFake) -> u16 {
    dojo.url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// The precondition the tests rest on: this machine cannot resolve the name itself.
fn assert_unresolvable(host: &str) {
    assert!(
        (host, 80).to_socket_addrs().is_err(),
        "{host} resolves on this machine; the test needs a name only the proxy knows"
    );
}

/// Runs the binary with exactly the proxy variables given (the others removed).
fn run_with(ws: &Workspace, args: &[&str], proxy_env: &[(&str, String)]) -> Run {
    let mut cmd: Command = ws.command(args);
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in proxy_env {
        cmd.env(k, v);
    }
    output(cmd.output().expect("run trivy-digest"))
}

fn scan(ws: &Workspace, proxy_env: &[(&str, String)]) -> Run {
    let input = ws.write(
        "c.json",
        &spread(10, 2, |_| {
            vec![vuln("CVE-2026-0001", "openssl", "CRITICAL")]
        }),
    );
    let input = input.display().to_string();
    run_with(
        ws,
        &["scan", "--format", "json", "--now", T0, "--from", &input],
        proxy_env,
    )
}

fn workspace(url: &str) -> Workspace {
    let mut ws = Workspace::new();
    ws.config(CONFIG);
    ws.env.push(("DEFECTDOJO_URL".into(), url.into()));
    ws.env
        .push(("DEFECTDOJO_TOKEN".into(), DojoFake::TOKEN.into()));
    ws
}

/// `HTTP_PROXY` and `http_proxy` each carry the whole export to a DefectDojo only the
/// proxy can reach, in absolute form.
#[test]
fn http_proxy_carries_the_defectdojo_export() {
    assert_unresolvable(DOJO_HOST);
    for var in ["HTTP_PROXY", "http_proxy"] {
        let dojo = DojoFake::start_blocking();
        let proxy = ProxyFake::start(&[(DOJO_HOST, LOOPBACK)]);
        let base = format!("http://{DOJO_HOST}:{}", dojo_port(&dojo));
        let ws = workspace(&base);
        let run = scan(&ws, &[(var, proxy.url())]);
        assert_eq!(run.code, 0, "{var}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(
            dojo.reimports().len(),
            2,
            "{var}: one test per image repository"
        );
        let seen = proxy.log();
        let reimport_target = format!("{base}/api/v2/reimport-scan/");
        assert_eq!(
            seen.iter()
                .filter(|p| p.method == "POST" && p.target == reimport_target)
                .count(),
            2,
            "{var}: {seen:?}"
        );
        assert!(
            seen.iter()
                .all(|p| p.status == 0 && p.target.starts_with(&base)),
            "{var}: every request forwarded, none refused: {seen:?}"
        );
        assert_eq!(
            seen.len(),
            dojo.log().len(),
            "{var}: the fake got exactly what the proxy forwarded"
        );
    }
}

/// Loopback is not exempt by default (the binary's requests to 127.0.0.1 go through the
/// proxy), and `NO_PROXY` (or `no_proxy`) listing the host sends them past it.
#[test]
fn no_proxy_sends_the_export_past_the_proxy() {
    let dojo = DojoFake::start_blocking();
    let proxy = ProxyFake::start(&[]);
    let ws = workspace(&dojo.url());
    let run = scan(&ws, &[("HTTP_PROXY", proxy.url())]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(dojo.reimports().len(), 2);
    assert!(
        proxy.log().len() >= 2,
        "without NO_PROXY, loopback goes through the proxy: {:?}",
        proxy.log()
    );

    for (var, list) in [
        ("NO_PROXY", "defectdojo.example.com, 127.0.0.1"),
        ("no_proxy", "localhost,127.0.0.0/8"),
    ] {
        let dojo = DojoFake::start_blocking();
        let proxy = ProxyFake::start(&[]);
        let ws = workspace(&dojo.url());
        let run = scan(
            &ws,
            &[
                ("HTTP_PROXY", proxy.url()),
                ("HTTPS_PROXY", proxy.url()),
                (var, list.to_owned()),
            ],
        );
        assert_eq!(run.code, 0, "{var}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(dojo.reimports().len(), 2, "{var}");
        assert_eq!(proxy.log(), [], "{var}={list}: the proxy saw nothing");
    }
}

/// An https DefectDojo is reached through `HTTPS_PROXY` with CONNECT. The fake speaks
/// plain http, so the TLS handshake inside the tunnel fails and the work stays queued:
/// what this proves is that the tunnel was asked of the proxy, for the right host.
#[test]
fn https_proxy_tunnels_to_an_https_defectdojo() {
    assert_unresolvable(DOJO_HOST);
    let dojo = DojoFake::start_blocking();
    let proxy = ProxyFake::start(&[(DOJO_HOST, LOOPBACK)]);
    let port = dojo_port(&dojo);
    let ws = workspace(&format!("https://{DOJO_HOST}:{port}"));
    let run = scan(&ws, &[("HTTPS_PROXY", proxy.url())]);
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["defectdojo"]["pending"], 2);
    let seen = proxy.log();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|p| p.method == "CONNECT" && p.target == format!("{DOJO_HOST}:{port}")),
        "{seen:?}"
    );
    // HTTP_PROXY alone is for http URLs only: the binary then resolves the name itself
    // and fails without asking the proxy anything.
    let proxy = ProxyFake::start(&[(DOJO_HOST, LOOPBACK)]);
    let run = scan(&ws, &[("HTTP_PROXY", proxy.url())]);
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(proxy.log(), []);
}

/// A kubeconfig (out of the cluster) with `HTTPS_PROXY` set: kube reaches the API server
/// through the proxy (CONNECT), and `NO_PROXY` exempts it. Before kube's `http-proxy`
/// feature was enabled, setting `HTTPS_PROXY` for DefectDojo broke `--from cluster`
/// outright ("requires the disabled feature kube/http-proxy").
#[test]
fn the_kubernetes_client_honours_https_proxy_from_a_kubeconfig() {
    let ws = Workspace::new();
    let kubeconfig = ws.write(
        "kubeconfig",
        r#"{"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": "https://kube.test:6443", "insecure-skip-tls-verify": true}}],
            "users": [{"name": "u", "user": {"token": "t0ken"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}"#,
    );
    let kube = ("KUBECONFIG", kubeconfig.display().to_string());
    let args = ["scan", "--format", "json", "--now", T0, "--from", "cluster"];

    let proxy = ProxyFake::start(&[]);
    let run = run_with(&ws, &args, &[kube.clone(), ("HTTPS_PROXY", proxy.url())]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        !run.stderr.contains("disabled feature"),
        "kube must be built with proxy support: {}",
        run.stderr
    );
    let seen = proxy.log();
    assert!(
        seen.iter()
            .any(|p| p.method == "CONNECT" && p.target == "kube.test:6443" && p.status == 502),
        "{seen:?}\n{}",
        run.stderr
    );

    let proxy = ProxyFake::start(&[]);
    let run = run_with(
        &ws,
        &args,
        &[
            kube,
            ("HTTPS_PROXY", proxy.url()),
            ("NO_PROXY", "kube.test".into()),
        ],
    );
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert_eq!(proxy.log(), [], "{}", run.stderr);
}

/// The fake refuses what a forward proxy refuses.
#[test]
fn the_proxy_fake_refuses_requests_that_are_not_proxy_form() {
    let dojo = DojoFake::start_blocking();
    let proxy = ProxyFake::start(&[]);
    let ask = |req: &str| {
        let mut s = TcpStream::connect(proxy.addr).expect("connect");
        s.write_all(req.as_bytes()).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let origin = ask("GET /api/v2/products/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert!(origin.starts_with("HTTP/1.1 400"), "{origin}");
    let https = ask("GET https://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert!(https.starts_with("HTTP/1.1 400"), "{https}");
    let connect = ask("CONNECT example.test HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert!(connect.starts_with("HTTP/1.1 400"), "{connect}");
    let unreachable = ask("CONNECT unknown.test:443 HTTP/1.1\r\nHost: unknown.test:443\r\n\r\n");
    assert!(unreachable.starts_with("HTTP/1.1 502"), "{unreachable}");
    // The absolute form is forwarded to the server, in origin form.
    let ok = ask(&format!(
        "GET {}/api/v2/products/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token {}\r\n\r\n",
        dojo.url(),
        DojoFake::TOKEN
    ));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert_eq!(dojo.log().len(), 1);
    assert_eq!(
        proxy.log().iter().map(|p| p.status).collect::<Vec<_>>(),
        [400, 400, 400, 502, 0]
    );
}
