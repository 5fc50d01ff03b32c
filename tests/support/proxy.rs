//! A forward HTTP proxy on 127.0.0.1, as `HTTP_PROXY` / `HTTPS_PROXY` point at: `CONNECT
//! host:port` opens a tunnel (for https), an absolute-form request (`GET http://host/path
//! HTTP/1.1`) is forwarded in origin form (for plain http). Like a real forward proxy it
//! refuses what is not proxy-form (a request with an origin-form target such as `GET /path`
//! is a client talking to the proxy as if it were the server), schemes it does not forward,
//! and a CONNECT target that is not `host:port`; a target it cannot reach gets 502.
//!
//! It resolves names itself, as a proxy does: `hosts` plays the proxy's DNS (a `.test`
//! name the client cannot resolve, so a request that arrives proves it went through the
//! proxy); other names go to the system resolver. Every request is recorded.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the proxy received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxied {
    pub method: String,
    /// The request target as sent: `host:port` for CONNECT, `http://host:port/path` else.
    pub target: String,
    /// The status the proxy answered itself (400, 502), or 200 for an established tunnel,
    /// or 0 when the request was forwarded (the server answered).
    pub status: u16,
}

pub struct ProxyFake {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Proxied>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for ProxyFake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

impl ProxyFake {
    /// Starts the proxy; `hosts` maps names to the addresses the proxy resolves them to.
    pub fn start(hosts: &[(&str, IpAddr)]) -> ProxyFake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let hosts: Arc<HashMap<String, IpAddr>> = Arc::new(
            hosts
                .iter()
                .map(|(h, a)| (h.to_ascii_lowercase(), *a))
                .collect(),
        );
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::Builder::new()
            .name("proxy-fake".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (log, hosts) = (log2.clone(), hosts.clone());
                    std::thread::spawn(move || serve(conn, &hosts, &log));
                }
            })
            .expect("spawn proxy");
        ProxyFake { addr, log, stop }
    }

    /// `http://127.0.0.1:<port>`, the value of `HTTP_PROXY` / `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> Vec<Proxied> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn serve(client: TcpStream, hosts: &HashMap<String, IpAddr>, log: &Mutex<Vec<Proxied>>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match client.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push(line.trim_end_matches(['\r', '\n']).to_owned());
        if head.len() > 200 {
            return;
        }
    }
    let Some(request_line) = head.first().cloned() else {
        return;
    };
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => {
            (m.to_owned(), t.to_owned(), v.to_owned())
        }
        _ => {
            return refuse(
                client,
                log,
                &request_line,
                "",
                400,
                "malformed request line",
            );
        }
    };
    let record = |status: u16| {
        log.lock().unwrap_or_else(|e| e.into_inner()).push(Proxied {
            method: method.clone(),
            target: target.clone(),
            status,
        })
    };

    if method == "CONNECT" {
        let Some((host, port)) = authority(&target) else {
            record(400);
            return answer(client, 400, "CONNECT needs host:port");
        };
        let Some(mut upstream) = dial(hosts, &host, port) else {
            record(502);
            return answer(client, 502, "cannot reach the target");
        };
        record(200);
        let mut c = client;
        if c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .is_err()
        {
            return;
        }
        // Bytes the client sent after the head (a TLS ClientHello) are in the buffer.
        let early = reader.buffer().to_vec();
        if !early.is_empty() && upstream.write_all(&early).is_err() {
            return;
        }
        return pipe(c, upstream);
    }

    // Plain http: only absolute-form is proxy-form.
    let Some(rest) = target.strip_prefix("http://") else {
        record(400);
        let why = if target.starts_with('/') {
            "origin-form request target: this is a proxy, not the server"
        } else {
            "only http:// targets are forwarded (https goes through CONNECT)"
        };
        return answer(client, 400, why);
    };
    let (authority_part, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority(authority_part) {
        Some(hp) => hp,
        None if !authority_part.is_empty() && !authority_part.contains(':') => {
            (authority_part.to_owned(), 80)
        }
        None => {
            record(400);
            return answer(client, 400, "bad authority in the request target");
        }
    };
    let Some(mut upstream) = dial(hosts, &host, port) else {
        record(502);
        return answer(client, 502, "cannot reach the target");
    };
    record(0);
    // Origin form to the server; hop-by-hop and proxy headers stay here; one request
    // per upstream connection (the server then answers `connection: close`, so the client
    // does not reuse this one either).
    let mut out = format!("{method} {path} {version}\r\n");
    for h in &head[1..] {
        let name = h
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "proxy-connection" | "proxy-authorization" | "connection" | "keep-alive"
        ) {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(out.as_bytes()).is_err() {
        return;
    }
    let early = reader.buffer().to_vec();
    if !early.is_empty() && upstream.write_all(&early).is_err() {
        return;
    }
    pipe(client, upstream);
}

fn refuse(
    client: TcpStream,
    log: &Mutex<Vec<Proxied>>,
    method: &str,
    target: &str,
    status: u16,
    why: &str,
) {
    log.lock().unwrap_or_else(|e| e.into_inner()).push(Proxied {
        method: method.to_owned(),
        target: target.to_owned(),
        status,
    });
    answer(client, status, why)
}

fn answer(mut client: TcpStream, status: u16, why: &str) {
    let reason = match status {
        400 => "Bad Request",
        502 => "Bad Gateway",
        _ => "Error",
    };
    let _ = write!(
        client,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{why}",
        why.len()
    );
    let _ = client.shutdown(Shutdown::Both);
}

/// `host:port` (a bracketed IPv6 host allowed), nothing else.
fn authority(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return None;
    }
    Some((host.trim_matches(['[', ']']).to_owned(), port))
}

fn dial(hosts: &HashMap<String, IpAddr>, host: &str, port: u16) -> Option<TcpStream> {
    let addr = match hosts.get(&host.to_ascii_lowercase()) {
        Some(ip) => SocketAddr::new(*ip, port),
        None => (host, port).to_socket_addrs().ok()?.next()?,
    };
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()
}

/// Copies both ways until either side closes, then closes both.
fn pipe(client: TcpStream, upstream: TcpStream) {
    let (Ok(mut c_read), Ok(mut u_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let _ = std::io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = u_read.shutdown(Shutdown::Both);
    let _ = up.join();
}
