//! A fake HTTP service on 127.0.0.1, served from its own thread and runtime so tests may
//! block (run the real binary, sleep) while it answers. Dropping the handle stops it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::sync::oneshot;

pub struct Served {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves `app` on a free loopback port; `name` names the thread in panics.
pub fn serve(name: &str, app: Router) -> Served {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {name}: {e}"));
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let thread_name = name.to_owned();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{thread_name} runtime: {e}"));
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = rx => {}
                }
            });
            rt.shutdown_background();
        })
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    Served {
        addr,
        shutdown: Some(tx),
    }
}

/// Polls `get` until it holds `n` entries; panics after `timeout`, naming `what` and
/// showing `log()` (everything the fake received).
pub fn wait_for<T>(
    what: &str,
    n: usize,
    timeout: Duration,
    get: impl Fn() -> Vec<T>,
    log: impl Fn() -> String,
) -> Vec<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = get();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} {what} within {timeout:?}, got {}: {}",
            got.len(),
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
