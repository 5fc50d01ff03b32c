//! A real SMTP server for tests: Python's aiosmtpd (`smtp_sink.py`), started on a free
//! loopback port in a temp dir. `.ci/run` installs aiosmtpd; without it the harness
//! fails with the reason, never skips.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// One message the server accepted, as Python's email package decoded it.
#[derive(Debug, Clone, Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub subject: String,
    pub to: String,
    pub from: String,
    pub message_id: String,
    pub content_type: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub raw: String,
    pub size: usize,
    /// Whether the session ran over TLS (STARTTLS or implicit).
    pub tls: bool,
    /// The login the client authenticated with.
    pub login: Option<String>,
}

pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

/// How the sink answers DATA.
#[derive(Debug, Clone, Copy, Default)]
pub struct SinkBehaviour {
    /// Answer the first N messages with 451 (transient).
    pub fail_first: u32,
    /// Answer every message with 550 (permanent).
    pub reject: bool,
    /// TLS with a certificate for 127.0.0.1 made for this sink (its CA: `ca_path`).
    pub tls: Option<SinkTls>,
    /// Require this login (user, password), over TLS.
    pub auth: Option<(&'static str, &'static str)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkTls {
    /// STARTTLS offered and required.
    Starttls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        SmtpSink::start_with(SinkBehaviour::default())
    }

    pub fn start_with(behaviour: SinkBehaviour) -> SmtpSink {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut cmd = Command::new(python());
        cmd.arg(&script)
            .arg("--dir")
            .arg(dir.path())
            .arg("--fail-first")
            .arg(behaviour.fail_first.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if behaviour.reject {
            cmd.arg("--reject");
        }
        if let Some(tls) = behaviour.tls {
            make_certificate(dir.path());
            cmd.arg("--tls-cert")
                .arg(dir.path().join("server.crt"))
                .arg("--tls-key")
                .arg(dir.path().join("server.key"));
            if tls == SinkTls::Implicit {
                cmd.arg("--implicit-tls");
            }
        }
        if let Some((user, password)) = behaviour.auth {
            cmd.arg("--auth").arg(format!("{user}:{password}"));
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} {}: {e}", python(), script.display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the sink's port");
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "the SMTP sink did not start (got {line:?}); is aiosmtpd installed? \
                     `pip install aiosmtpd` (.ci/run does it)"
                )
            });
        SmtpSink { port, dir, child }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA that signed the sink's certificate, for `smtp.ca_bundle`.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Messages accepted so far, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("sink dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).expect("message file");
                serde_json::from_str(&text).expect("message json")
            })
            .collect()
    }

    /// How many DATA commands the sink refused (451 or 550).
    pub fn refused(&self) -> u32 {
        std::fs::read_to_string(self.dir.path().join("refused.count"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until at least `n` messages arrived; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            if Instant::now() > deadline {
                panic!("expected {n} messages within {timeout:?}, got {}", m.len());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `smtp:` config section that sends here (plain, no auth).
    pub fn config_yaml(&self) -> String {
        format!(
            "smtp:\n  host: 127.0.0.1\n  port: {}\n  tls: none\n  from: 'trivy-digest <trivy-digest@example.com>'\n  timeout: 10s\n  retry:\n    max_attempts: 3\n    initial_backoff: 50ms\n    max_backoff: 200ms\n",
            self.port
        )
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate it signed for 127.0.0.1 (P-256, one day), made with
/// the `openssl` tool the Kubernetes harness also uses (webpki refuses a CA certificate
/// as the server's own, so the two are separate).
fn make_certificate(dir: &Path) {
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    let p = |name: &str| dir.join(name).display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "1", "-subj", "/CN=trivy-digest test CA"],
            &[
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
            &["-keyout", &p("ca.key"), "-out", &p("ca.crt")],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-subj", "/CN=127.0.0.1"],
            &["-keyout", &p("server.key"), "-out", &p("server.csr")],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &p("server.ext"),
        "-out",
        &p("server.crt"),
    ]);
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (needed for the SMTP TLS tests): {e}"));
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}
