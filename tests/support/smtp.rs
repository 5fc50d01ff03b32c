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

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}
