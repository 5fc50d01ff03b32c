//! Runs the real `trivy-digest` binary in a temporary working directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A working directory with its own store and config.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// Extra environment for every run (DEFECTDOJO_URL, ...).
    pub env: Vec<(String, String)>,
    /// The PostgreSQL database this workspace's store is in (`Workspace::postgres`);
    /// None for the SQLite file.
    pub pg: Option<String>,
}

/// The result of one run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `--format json` summary.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_trivy-digest"))
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
            pg: None,
        }
    }

    /// A workspace whose store is a fresh database on the test PostgreSQL server, named
    /// by TRIVY_DIGEST_STORE, its password read from a file (TRIVY_DIGEST_STORE_PASSWORD_FILE).
    pub fn postgres(test: &str) -> Workspace {
        let mut ws = Workspace::new();
        let db = super::postgres::database(test);
        let pw = ws.write("pg-password", super::postgres::PASSWORD);
        ws.env
            .push(("TRIVY_DIGEST_STORE".into(), super::postgres::url(&db)));
        ws.env.push((
            "TRIVY_DIGEST_STORE_PASSWORD_FILE".into(),
            pw.display().to_string(),
        ));
        ws.pg = Some(db);
        ws
    }

    /// The engine's name, for messages.
    pub fn engine(&self) -> &'static str {
        if self.pg.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn store(&self) -> PathBuf {
        self.path("trivy-digest.db")
    }

    /// Writes `trivy-digest.yaml` in the working directory (picked up by default).
    pub fn config(&self, yaml: &str) {
        std::fs::write(self.path("trivy-digest.yaml"), yaml).expect("write config");
    }

    /// Writes a file in the workspace and returns its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write file");
        p
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.current_dir(self.dir.path())
            .args(args)
            .env_remove("DEFECTDOJO_URL")
            .env_remove("DEFECTDOJO_TOKEN")
            .env_remove("DEFECTDOJO_TOKEN_FILE")
            .env_remove("DEFECT_DOJO_URL")
            .env_remove("DEFECT_DOJO_API_KEY")
            .env_remove("TRIVY_DIGEST_CLUSTER")
            .env_remove("TRIVY_DIGEST_STORE")
            .env_remove("TRIVY_DIGEST_CONFIG")
            .env("TRIVY_DIGEST_LOG", "warn")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        output(self.command(args).output().expect("run trivy-digest"))
    }

    /// `scan --format json --from <inputs>` at the given time (RFC 3339).
    pub fn scan_at(&self, now: &str, inputs: &[&Path]) -> Run {
        self.scan_with(now, inputs, &[])
    }

    /// The same, for inputs that are a whole-cluster export (`--complete`): reports they
    /// lack start their grace period.
    pub fn scan_complete_at(&self, now: &str, inputs: &[&Path]) -> Run {
        self.scan_with(now, inputs, &["--complete"])
    }

    /// `scan --format json <extra> --from <inputs>` at the given time.
    pub fn scan_with(&self, now: &str, inputs: &[&Path], extra: &[&str]) -> Run {
        let mut args: Vec<String> = vec![
            "scan".into(),
            "--format".into(),
            "json".into(),
            "--now".into(),
            now.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        for i in inputs {
            args.push("--from".into());
            args.push(i.display().to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&refs)
    }

    /// Opens the store read-only for assertions (SQLite workspaces).
    pub fn db(&self) -> rusqlite::Connection {
        assert!(
            self.pg.is_none(),
            "db() reads the SQLite file; use count() on PostgreSQL"
        );
        rusqlite::Connection::open_with_flags(
            self.store(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open store")
    }

    pub fn count(&self, sql: &str) -> i64 {
        if let Some(db) = &self.pg {
            return super::postgres::admin(db)
                .query_row(sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        self.db()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

pub fn output(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The repository's `tests/fixtures/trivy-operator/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/trivy-operator")
        .join(rel)
}
