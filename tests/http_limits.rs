//! The controller's HTTP server against slow and idle clients: trickling connections are
//! closed after the header timeout, at most `max_connections` are served at once, and
//! `/healthz` keeps answering.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trivy_digest::serve::{AppState, HttpLimits};

/// Starts the server with `limits` on a free port.
async fn start(limits: HttpLimits) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(AppState {
        health: Default::default(),
        metrics: Default::default(),
        summary: None,
        api: None,
    });
    tokio::spawn(trivy_digest::serve::serve_with(
        listener,
        state,
        limits,
        std::future::pending(),
    ));
    addr
}

/// Half a request head, never finished.
async fn trickle(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    s
}

/// True once the server closed the connection (end of stream, or a reset).
async fn closed_by_server(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    // A generous bound, not a timing assertion: the server's timeout is one second.
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // hyper may answer 408 before closing; keep reading to the end.
                Ok(_) => continue,
            }
        }
    });
    read.await.is_ok()
}

async fn healthz(addr: std::net::SocketAddr) -> (u16, String) {
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_connections_are_closed_and_healthz_still_answers() {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    };
    assert_eq!(limits.max_connections, 256, "the documented default");
    let addr = start(limits).await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        slow.push(trickle(addr).await);
    }
    // A fresh connection is answered (once slots free up, if the slow ones hold them all).
    assert_eq!(healthz(addr).await, (200, "ok\n".to_owned()));
    let results = futures_util::future::join_all(slow.into_iter().map(closed_by_server)).await;
    let open = results.iter().filter(|c| !**c).count();
    assert_eq!(
        open, 0,
        "{open} of 300 trickling connections were never closed"
    );
    assert_eq!(healthz(addr).await.0, 200);
}

/// A connection that connects and sends nothing is an idle connection: closed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_kept_alive_connections_are_closed() {
    let addr = start(HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    })
    .await;
    let silent = TcpStream::connect(addr).await.expect("connect");
    assert!(closed_by_server(silent).await);
    // One full request with keep-alive, then silence: the idle connection is closed.
    let mut kept = TcpStream::connect(addr).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = kept.read(&mut buf).await.expect("response");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(closed_by_server(kept).await);
}

/// With two slots held by slow clients, a third is served only after the server closed
/// one of them: at the moment it is answered, a slow connection is already closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_connections_are_served_at_once() {
    let addr = start(HttpLimits {
        header_read_timeout: Duration::from_secs(2),
        max_connections: 2,
        ..HttpLimits::default()
    })
    .await;
    let a = trickle(addr).await;
    let b = trickle(addr).await;
    assert_eq!(healthz(addr).await.0, 200);
    // Not a timing check: a socket the server closed reads end of stream at once, an
    // open one reports WouldBlock.
    let closed = [&a, &b].into_iter().filter(|s| is_closed(s)).count();
    assert!(
        closed >= 1,
        "the third client was served while both slots were held"
    );
}

fn is_closed(s: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.try_read(&mut buf) {
            Ok(0) => return true,
            // A 408 answer before the close.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}
