//! Benchmark of `run` on a real API server (Debian's apiextensions-apiserver over etcd,
//! built by `scripts/kube-test-server.sh build`): memory and CPU while watching many
//! reports of realistic size, and the cost of one event.
//!
//! cargo run --release --example bench_controller              # 10,000 reports, 500 digests
//! cargo run --release --example bench_controller -- 2000 100   # reports digests
//!
//! The controller runs in a child process (this binary re-executed) so its RSS and CPU
//! time are its own; they are read from /proc.

#[path = "../tests/support/kube_server.rs"]
#[allow(dead_code)]
mod kube_server;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use trivy_digest::config::{Config, HumanDuration};
use trivy_digest::model::ReportKind;
use trivy_digest::source::cluster::api_resource;
use trivy_digest::synth::{self, Spec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child-run") {
        return child_run(&args[1], Path::new(&args[2]), &args[3]);
    }
    let reports: usize = args.first().map_or(Ok(10_000), |a| a.parse())?;
    let digests: usize = args.get(1).map_or(Ok(500), |a| a.parse())?;
    let spec = Spec {
        reports,
        digests,
        ..Spec::default()
    };
    let server = kube_server::KubeServer::start();
    server.install_crds();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let t = Instant::now();
    let bytes = rt.block_on(create_all(&server, &spec))?;
    println!(
        "created {reports} reports over {digests} digests ({:.0} MB of JSON) in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child-run")
        .arg(server.kubeconfig_path())
        .arg(dir.path().join("store.db"))
        .arg(&listen)
        .spawn()?;
    let pid = child.id();
    wait_until(Duration::from_secs(600), || {
        get(&listen, "/readyz").0 == 200
    })?;
    let ready = started.elapsed();
    let at_ready = proc_stats(pid)?;
    println!(
        "ready (every kind listed, {reports} reports stored) after {:.1} s; CPU {:.1} s; RSS {:.1} MB, peak {:.1} MB",
        ready.as_secs_f64(),
        at_ready.cpu_secs,
        at_ready.rss_mb,
        at_ready.hwm_mb
    );

    // Steady state: watching, nothing changes.
    let mut max_rss: f64 = 0.0;
    let idle_from = proc_stats(pid)?;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        max_rss = max_rss.max(proc_stats(pid)?.rss_mb);
    }
    let idle_to = proc_stats(pid)?;
    println!(
        "steady 10 s: RSS at most {max_rss:.1} MB; CPU {:.2} s",
        idle_to.cpu_secs - idle_from.cpu_secs
    );

    // Per-event cost: 1,000 reports rescanned (a new finding each), end to end.
    let updates = 1_000.min(reports);
    let seen_before = reports_seen(&listen);
    let cpu_before = proc_stats(pid)?.cpu_secs;
    let t = Instant::now();
    rt.block_on(update_some(&server, &spec, updates))?;
    let sent = t.elapsed();
    wait_until(Duration::from_secs(300), || {
        reports_seen(&listen) >= seen_before + updates as u64
    })?;
    let processed = t.elapsed();
    let after = proc_stats(pid)?;
    println!(
        "{updates} updates: written to the API in {:.1} s, all processed after {:.1} s; controller CPU {:.2} ms per event; RSS {:.1} MB, peak {:.1} MB",
        sent.as_secs_f64(),
        processed.as_secs_f64(),
        (after.cpu_secs - cpu_before) * 1000.0 / updates as f64,
        after.rss_mb,
        after.hwm_mb
    );

    terminate(&mut child)?;
    Ok(())
}

async fn create_all(server: &kube_server::KubeServer, spec: &Spec) -> anyhow::Result<u64> {
    let client = server.client().await;
    let ar = api_resource(ReportKind::VulnerabilityReport);
    // What the server sets itself may not be sent on create.
    let objects: Vec<serde_json::Value> = synth::reports(spec)
        .map(|mut v| {
            if let Some(m) = v["metadata"].as_object_mut() {
                for k in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
                    m.remove(k);
                }
            }
            v
        })
        .collect();
    let bytes: u64 = objects.iter().map(|o| o.to_string().len() as u64).sum();
    stream::iter(objects)
        .map(|v| {
            let client = client.clone();
            let ar = ar.clone();
            async move {
                let ns = v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_owned();
                let obj: DynamicObject = serde_json::from_value(v)?;
                Api::<DynamicObject>::namespaced_with(client, &ns, &ar)
                    .create(&PostParams::default(), &obj)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await?;
    Ok(bytes)
}

async fn update_some(
    server: &kube_server::KubeServer,
    spec: &Spec,
    n: usize,
) -> anyhow::Result<()> {
    let client = server.client().await;
    let ar = api_resource(ReportKind::VulnerabilityReport);
    let objects: Vec<serde_json::Value> = synth::reports(spec).take(n).collect();
    stream::iter(objects)
        .map(|v| {
            let client = client.clone();
            let ar = ar.clone();
            async move {
                let ns = v["metadata"]["namespace"].as_str().unwrap_or("default").to_owned();
                let name = v["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                let mut vulns = v["report"]["vulnerabilities"].clone();
                if let Some(list) = vulns.as_array_mut() {
                    list.push(serde_json::json!({
                        "vulnerabilityID": "CVE-2026-99999", "resource": "bench", "installedVersion": "1.0",
                        "fixedVersion": "", "severity": "HIGH", "title": "benchmark update",
                        "primaryLink": "", "links": [], "target": "",
                        "publishedDate": "2026-11-01T00:00:00Z", "lastModifiedDate": "2026-11-01T00:00:00Z"
                    }));
                }
                let patch = serde_json::json!({"report": {"vulnerabilities": vulns}});
                Api::<DynamicObject>::namespaced_with(client, &ns, &ar)
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await?;
    Ok(())
}

fn child_run(kubeconfig: &str, store: &Path, listen: &str) -> anyhow::Result<()> {
    let mut config = Config {
        store: store.to_owned().into(),
        cluster: "bench".into(),
        ..Config::default()
    };
    config.run.listen = listen.to_owned();
    config.run.leader_election.enabled = false;
    config.kube.crd_recheck = HumanDuration(Duration::from_secs(600));
    if let Some(p) = std::env::var("BENCH_PAGE_SIZE")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        config.kube.page_size = p;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        let client = kube::Client::try_from(cfg)?;
        trivy_digest::run::run_with(config, client, trivy_digest::run::shutdown_signal()).await
    })?;
    Ok(())
}

struct ProcStats {
    rss_mb: f64,
    hwm_mb: f64,
    cpu_secs: f64,
}

fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): utime and stime are the
    // 12th and 13th after the closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = 100.0; // USER_HZ on Linux
    Ok(ProcStats {
        rss_mb: kb("VmRSS:") / 1024.0,
        hwm_mb: kb("VmHWM:") / 1024.0,
        cpu_secs: (ticks(11) + ticks(12)) / hz,
    })
}

fn get(listen: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(listen) else {
        return (0, String::new());
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

fn reports_seen(listen: &str) -> u64 {
    let (_, body) = get(listen, "/metrics");
    body.lines()
        .find(|l| l.starts_with("trivy_digest_reports_seen_total{kind=\"VulnerabilityReport\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        anyhow::ensure!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn terminate(child: &mut Child) -> anyhow::Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "controller exited with {status}");
    Ok(())
}
