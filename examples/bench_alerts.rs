//! Benchmark of the controller's alert path: from a report arriving (written to the store
//! the way the controller's batches write it) to the Slack webhook call, with the real
//! alert loop, a short batch window and the Slack webhook fake of the tests (which checks
//! every payload against Block Kit's limits).
//!
//! cargo run --release --example bench_alerts                    # 2,000 reports, 100 digests, 1 s window
//! cargo run --release --example bench_alerts -- 10000 500 1000   # reports digests window_ms
//!
//! The goal: the batch window plus under one second.

#[path = "../tests/support/http_thread.rs"]
mod http_thread;
#[path = "../tests/support/slack.rs"]
#[allow(dead_code)]
mod slack;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use trivy_digest::config::Config;
use trivy_digest::ingest::Tally;
use trivy_digest::source::{Origin, RawObject};
use trivy_digest::store::{Session, Store};
use trivy_digest::synth::{self, Spec};
use trivy_digest::trivy::parse_object;

const ROUNDS: usize = 20;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reports: usize = args.first().map_or(Ok(2000), |a| a.parse())?;
    let digests: usize = args.get(1).map_or(Ok(100), |a| a.parse())?;
    let window_ms: u64 = args.get(2).map_or(Ok(1000), |a| a.parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(bench(reports, digests, Duration::from_millis(window_ms)))
}

/// Writes objects in one transaction, as one controller batch does.
fn write_batch(store: &mut Store, objects: &[serde_json::Value]) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp();
    let mut session = Session::begin(store, "bench", now)?;
    let mut tally = Tally::default();
    for (i, o) in objects.iter().enumerate() {
        let raw = RawObject {
            origin: Origin::file(format!("bench item {i}")),
            json: serde_json::to_vec(o)?,
            kind_hint: None,
            name_hint: None,
        };
        tally.record(&mut session, parse_object(&raw))?;
    }
    session.finish(&trivy_digest::scope::Scope::read_only(), 86_400)?;
    session.commit()?;
    Ok(())
}

async fn bench(reports: usize, digests: usize, window: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store_path = dir.path().join("store.db");
    let spec = Spec {
        reports,
        digests,
        ..Spec::default()
    };
    let mut store = Store::open(&store_path)?;
    let t = Instant::now();
    let cluster: Vec<serde_json::Value> = synth::reports(&spec).collect();
    for chunk in cluster.chunks(500) {
        write_batch(&mut store, chunk)?;
    }
    println!(
        "store: {reports} reports, {digests} digests, {} findings per image, written in {:.1} s",
        spec.findings,
        t.elapsed().as_secs_f64()
    );

    let fake = slack::SlackFake::start();
    let hook = fake.hook("bench");
    // SAFETY: set before the loop (and any other thread reading it) starts.
    unsafe { std::env::set_var("BENCH_ALERTS_HOOK", &hook) };
    let yaml = format!(
        "cluster: bench\nstore: {}\nalerts:\n  batch_window: {}ms\n  channels:\n    - name: bench\n      slack_webhook_env: BENCH_ALERTS_HOOK\n",
        store_path.display(),
        window.as_millis()
    );
    let cfg_path = dir.path().join("config.yaml");
    std::fs::write(&cfg_path, yaml)?;
    let config = Config::load(Some(&cfg_path))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (_lead_tx, lead_rx) = watch::channel(true);
    let output = trivy_digest::output::alert::AlertOutput::new(&config, None)?
        .ok_or_else(|| anyhow::anyhow!("no alert destination configured"))?;
    let signals = trivy_digest::output::runner::Signals {
        stop: stop_rx,
        leading: lead_rx,
        listed: Arc::new(|| true),
        changes: None,
    };
    let runner = trivy_digest::output::runner::Runner::new(&config, None, None);
    let task = tokio::spawn(async move { runner.drive(Arc::new(output), signals).await });
    // The baseline is taken at once (ready); give the loop a moment to record it.
    tokio::time::sleep(window + Duration::from_millis(500)).await;
    anyhow::ensure!(fake.requests().is_empty(), "the baseline must not alert");

    let mut latencies = Vec::new();
    let mut ingest = Vec::new();
    for round in 0..ROUNDS {
        // A new image (new digest of a new repository) with one new CRITICAL.
        let report = serde_json::json!({
            "apiVersion": "aquasecurity.github.io/v1alpha1", "kind": "VulnerabilityReport",
            "metadata": {"name": format!("replicaset-bench-{round}-5f9d8b7c6-app"), "namespace": "bench",
                "labels": {"trivy-operator.container.name": "app",
                           "trivy-operator.resource.kind": "ReplicaSet",
                           "trivy-operator.resource.name": format!("bench-{round}-5f9d8b7c6"),
                           "trivy-operator.resource.namespace": "bench"}},
            "report": {"updateTimestamp": "2026-11-27T06:00:00Z",
                "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.58.1"},
                "registry": {"server": "ghcr.io"},
                "artifact": {"repository": format!("bench/new-{round}"), "tag": "1.0",
                             "digest": format!("sha256:{:064x}", 0xbe00 + round)},
                "summary": {}, "vulnerabilities": [{
                    "vulnerabilityID": format!("CVE-2026-9{round:03}"), "resource": "openssl",
                    "installedVersion": "3.0.1", "fixedVersion": "3.0.9", "severity": "CRITICAL",
                    "title": "bench", "primaryLink": "https://avd.aquasec.com/nvd/cve-2026-9000"}]}
        });
        let before = fake.posted().len();
        let arrived = Instant::now();
        write_batch(&mut store, &[report])?;
        ingest.push(arrived.elapsed());
        let deadline = Instant::now() + window + Duration::from_secs(10);
        let at = loop {
            let p = fake.posted();
            if p.len() > before {
                break p[before].at;
            }
            anyhow::ensure!(Instant::now() < deadline, "round {round}: no webhook call");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        latencies.push(at.duration_since(arrived));
        // Rounds are a window apart, as independent arrivals.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send_replace(true);
    task.await??;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    latencies.sort();
    ingest.sort();
    let pick = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "batch window {} ms; {ROUNDS} arrivals, one new CRITICAL each",
        window.as_millis()
    );
    println!(
        "report written to the store: median {:.1} ms, max {:.1} ms",
        ms(pick(&ingest, 0.5)),
        ms(pick(&ingest, 1.0))
    );
    println!(
        "report arrival → webhook call: min {:.0} ms, median {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        ms(pick(&latencies, 0.0)),
        ms(pick(&latencies, 0.5)),
        ms(pick(&latencies, 0.95)),
        ms(pick(&latencies, 1.0))
    );
    let over = |d: Duration| ms(d.saturating_sub(window));
    println!(
        "beyond the batch window: median {:.0} ms, max {:.0} ms (goal: under 1000 ms)",
        over(pick(&latencies, 0.5)),
        over(pick(&latencies, 1.0))
    );
    Ok(())
}
