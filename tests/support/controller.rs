//! The controller (`run::run_with`) in this process, for tests against the kube test
//! server: start it, ask its HTTP endpoints, stop it; and polling until something holds.

use std::future::Future;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use tokio::sync::oneshot;
use trivy_digest::config::Config;
use trivy_digest::model::ReportKind;
use trivy_digest::source::cluster::api_resource;

/// A loopback port nothing listens on right now (for `run.listen`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// VulnerabilityReports in namespace `ns`.
pub fn reports_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &api_resource(ReportKind::VulnerabilityReport),
    )
}

/// The controller in this process; dropping the handle's sender stops it.
pub struct Controller {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<i32>>,
    listen: String,
}

impl Controller {
    pub fn start(config: Config, client: kube::Client) -> Controller {
        let (tx, rx) = oneshot::channel::<()>();
        let listen = config.run.listen.clone();
        let task = tokio::spawn(trivy_digest::run::run_with(config, client, async move {
            let _ = rx.await;
        }));
        Controller {
            stop: Some(tx),
            task,
            listen,
        }
    }

    /// Status and body of `GET path` on the controller's listener; `(0, "")` when it
    /// does not answer (yet).
    pub async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("http://{}{path}", self.listen)).await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    /// Asks it to stop and returns its exit code.
    pub async fn stop(mut self) -> i32 {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the controller stops within its grace")
            .expect("task")
            .expect("run_with")
    }
}

/// Polls `check` until it holds, or fails with `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
