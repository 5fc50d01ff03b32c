//! The embedded SQLite store: images deduplicated by digest, the workloads that run
//! them, findings with their history, and the DefectDojo outbox.
//!
//! One file, WAL journal, versioned migrations. Every write of a sweep happens in one
//! transaction, so a crash leaves the store as it was before the sweep.

mod ingest;
pub mod query;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, params};

pub use ingest::{FinishStats, Session};

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("store {}: cannot create directory", path.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("store {}: cannot open", path.display()))?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
        };
        store
            .configure()
            .with_context(|| format!("store {}", path.display()))?;
        Ok(store)
    }

    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory()?;
        let mut store = Store {
            conn,
            path: PathBuf::from(":memory:"),
        };
        store.configure()?;
        Ok(store)
    }

    fn configure(&mut self) -> Result<()> {
        // Another process (a second replica, a `scan` beside `run`) waits instead of failing.
        self.conn.busy_timeout(Duration::from_secs(30))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if mode != "wal" && self.path != Path::new(":memory:") {
            tracing::warn!(mode, "SQLite did not switch to WAL; continuing with {mode}");
        }
        self.conn.execute_batch(
            "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-8192;",
        )?;
        self.migrate()
    }

    fn migrate(&mut self) -> Result<()> {
        let version = self.schema_version()?;
        if version > schema::MIGRATIONS.len() {
            bail!(
                "schema version {version} is newer than this binary knows ({}); \
                 use a newer trivy-digest",
                schema::MIGRATIONS.len()
            );
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<usize> {
        let v: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok(v.max(0) as usize)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in one write transaction: committed when it returns Ok, rolled back otherwise.
    pub fn write<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(&self.conn) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// A store belongs to one cluster: mixing two would let one cluster's sweep mark the
    /// other's workloads as gone.
    pub fn claim_cluster(&self, cluster: &str) -> Result<()> {
        let existing: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='cluster'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match existing {
            Some(c) if c == cluster => Ok(()),
            Some(c) => bail!(
                "store {} belongs to cluster {c:?}, not {cluster:?}; use one store per cluster \
                 (--store or `store:` in the config)",
                self.path.display()
            ),
            None => {
                self.conn.execute(
                    "INSERT INTO meta(key, value) VALUES('cluster', ?1)",
                    params![cluster],
                )?;
                Ok(())
            }
        }
    }
}
