//! The controller's alert loop through the library, where timing matters: the baseline
//! waits for the first full list, new findings go out one batch window later (one
//! message per image), and a stop lets the message in flight finish while the rest stays
//! queued for the next leader.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::reports::{digest, list, vuln, vulnerability_report};
use support::slack::{Fault, SlackFake};
use tokio::sync::watch;
use trivy_digest::command::scan::{ScanOptions, scan};
use trivy_digest::config::{Config, HumanDuration};
use trivy_digest::output::alert::AlertOutput;
use trivy_digest::output::runner::{Runner, Signals};
use trivy_digest::source::files::Input;

const WINDOW: Duration = Duration::from_millis(500);

fn report(i: u32, cve: &'static str) -> Value {
    vulnerability_report(
        "shop",
        &format!("app-{i}"),
        &format!("org/svc-{i}"),
        Some(&digest(i)),
        &[vuln(cve, "openssl", "CRITICAL")],
    )
}

/// Writes the store the way the controller's batches do (through `scan`, without alert
/// channels in its config so that only the loop under test alerts).
async fn ingest(dir: &Path, items: Vec<Value>) {
    let input = dir.join("in.json");
    std::fs::write(&input, list(items)).expect("write");
    let config = Config {
        cluster: "prod".into(),
        store: dir.join("store.db").into(),
        ..Config::default()
    };
    let opts = ScanOptions::new(vec![Input::Path(input)], chrono::Utc::now());
    scan(&config, opts).await.expect("ingest");
}

fn alert_config(dir: &Path, hook: &str) -> Config {
    let yaml = "cluster: prod\nalerts:\n  batch_window: 500ms\n  timeout: 5s\n  retry:\n    max_attempts: 2\n    initial_backoff: 50ms\n    max_backoff: 100ms\n  channels:\n    - name: security\n      slack_webhook_env: ALERT_LOOP_HOOK\n";
    // SAFETY: set once, before any thread of this test reads the environment.
    unsafe { std::env::set_var("ALERT_LOOP_HOOK", hook) };
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("config");
    let mut c = Config::load(Some(&path)).expect("config");
    c.store = dir.join("store.db").into();
    c.run.shutdown_grace = HumanDuration(Duration::from_secs(5));
    c
}

struct Loop {
    stop: watch::Sender<bool>,
    _lead: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start(config: Config, ready: Arc<AtomicBool>) -> Loop {
    let (stop, stop_rx) = watch::channel(false);
    let (lead, lead_rx) = watch::channel(true);
    let output = AlertOutput::new(&config, None)
        .expect("alerts")
        .expect("configured");
    let signals = Signals {
        stop: stop_rx,
        leading: lead_rx,
        listed: Arc::new(move || ready.load(Ordering::SeqCst)),
        changes: None,
    };
    let runner = Runner::new(&config, None, None);
    let task = tokio::spawn(async move { runner.drive(Arc::new(output), signals).await });
    Loop {
        stop,
        _lead: lead,
        task,
    }
}

async fn wait_posted(slack: &SlackFake, n: usize, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        let p = slack.posted();
        if p.len() >= n {
            return p[n - 1].at;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} posts, got {:?}",
            slack.requests()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn count(dir: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(dir.join("store.db"))
        .expect("store")
        .query_row(sql, [], |r| r.get(0))
        .expect("query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_at_ready_then_one_message_per_image_per_window_and_graceful_stop() {
    let dir = tempfile::tempdir().expect("dir");
    let slack = SlackFake::start();
    let config = alert_config(dir.path(), &slack.hook("security"));
    let ready = Arc::new(AtomicBool::new(false));

    // The initial list arrives in several batches; the last one comes after a window.
    ingest(dir.path(), vec![report(0, "CVE-2026-0001")]).await;
    let l = start(config.clone(), ready.clone());
    tokio::time::sleep(WINDOW * 2).await;
    ingest(
        dir.path(),
        vec![report(0, "CVE-2026-0001"), report(1, "CVE-2026-0002")],
    )
    .await;
    tokio::time::sleep(WINDOW * 2).await;
    assert!(
        slack.requests().is_empty(),
        "no baseline before ready, no alert either"
    );
    ready.store(true, Ordering::SeqCst);
    tokio::time::sleep(WINDOW * 2).await;
    assert!(
        slack.requests().is_empty(),
        "the whole first list is the baseline"
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM meta WHERE key = 'alerts.cursor'"
        ),
        1
    );

    // Two new images in one batch: two messages, one window after the batch.
    let written = Instant::now();
    ingest(
        dir.path(),
        vec![
            report(0, "CVE-2026-0001"),
            report(1, "CVE-2026-0002"),
            report(2, "CVE-2026-0003"),
            report(3, "CVE-2026-0004"),
        ],
    )
    .await;
    let at = wait_posted(&slack, 2, Duration::from_secs(5)).await;
    let latency = at.duration_since(written);
    // Batched: nothing leaves before the window ends. How soon after it is a figure for
    // examples/bench_alerts.rs, not a timed assertion here.
    assert!(latency >= WINDOW, "batched: {latency:?}");
    let texts: Vec<String> = slack.posted().iter().map(|p| p.text()).collect();
    assert_eq!(
        texts,
        [
            "[prod] 1 new CRITICAL in ghcr.io/org/svc-2",
            "[prod] 1 new CRITICAL in ghcr.io/org/svc-3"
        ]
    );

    // Stop while the first of three messages is in flight: it finishes, the others wait.
    slack.push_fault(Fault::Delay(Duration::from_millis(1500)));
    const CVES: [&str; 7] = [
        "CVE-2026-0001",
        "CVE-2026-0002",
        "CVE-2026-0003",
        "CVE-2026-0004",
        "CVE-2026-0005",
        "CVE-2026-0006",
        "CVE-2026-0007",
    ];
    let items: Vec<Value> = (0..7u32).map(|i| report(i, CVES[i as usize])).collect();
    ingest(dir.path(), items).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while slack.arrived() < 3 {
        assert!(Instant::now() < deadline, "the third request never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    l.stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), l.task)
        .await
        .expect("stops within the grace")
        .expect("task")
        .expect("loop");
    assert_eq!(slack.posted().len(), 3, "the message in flight finished");
    assert_eq!(slack.requests().len(), 3, "no new send after stop");
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM alert_items WHERE state = 'pending'"
        ),
        2
    );

    // The next leader sends what was left, and nothing twice.
    let l = start(config, ready);
    wait_posted(&slack, 5, Duration::from_secs(5)).await;
    tokio::time::sleep(WINDOW * 2).await;
    let texts: Vec<String> = slack.posted().iter().map(|p| p.text()).collect();
    assert_eq!(texts.len(), 5, "{texts:?}");
    let mut distinct = texts.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "{texts:?}");
    l.stop.send_replace(true);
    l.task.await.expect("task").expect("loop");
}
