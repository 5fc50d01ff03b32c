//! The embedded SQLite store: images deduplicated by digest, the workloads that run
//! them, findings with their history, and the DefectDojo outbox.
//!
//! One file, WAL journal, versioned migrations. Every write of a sweep happens in one
//! transaction, so a crash leaves the store as it was before the sweep.

mod ingest;
pub mod inventory;
pub mod lookup;
pub mod query;
mod schema;
pub mod triage;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, params};

pub use ingest::{FinishStats, Session};

/// Default wait for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The wait for a lock; `TRIVY_DIGEST_BUSY_TIMEOUT_MS` (undocumented, for tests) shortens it.
fn busy_timeout() -> Duration {
    std::env::var("TRIVY_DIGEST_BUSY_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(BUSY_TIMEOUT, Duration::from_millis)
}

/// True for SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock.
pub fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// "database is locked" says neither which file nor why; this says both.
#[derive(Debug, thiserror::Error)]
#[error(
    "store {} is locked: another trivy-digest process (a `run` or a `scan`) holds its write \
     lock and did not release it within {}; wait for it to finish or stop it",
    path.display(),
    humantime::format_duration(*waited)
)]
pub struct StoreLocked {
    pub path: PathBuf,
    pub waited: Duration,
}

fn busy_or(path: &Path, e: rusqlite::Error) -> anyhow::Error {
    if is_busy(&e) {
        StoreLocked {
            path: path.to_owned(),
            waited: busy_timeout(),
        }
        .into()
    } else {
        anyhow::Error::new(e)
    }
}

/// SQLite's own message, without the SQL text rusqlite adds to input errors.
fn sqlite_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        rusqlite::Error::SqliteFailure(f, Some(msg)) => format!("{msg} ({:?})", f.code),
        other => other.to_string(),
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        // SQLite opens an empty path as a private temporary database: history would vanish.
        if path.as_os_str().to_string_lossy().trim().is_empty() {
            bail!("the store path is empty; set `store:` in the config or --store");
        }
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
        store.configure().map_err(|e| {
            if e.is::<StoreLocked>() {
                return e;
            }
            match e.downcast::<rusqlite::Error>() {
                Ok(r) if is_busy(&r) => busy_or(path, r),
                Ok(r) => anyhow::Error::new(r).context(format!("store {}", path.display())),
                Err(e) => e.context(format!("store {}", path.display())),
            }
        })?;
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
        self.conn.busy_timeout(busy_timeout())?;
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
        let raw: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        // Negative is no version this program ever wrote: not a fresh store to migrate.
        let Ok(version) = usize::try_from(raw) else {
            bail!(
                "schema version (PRAGMA user_version) is {raw}, which trivy-digest never \
                 writes; this is not a trivy-digest store, or it was modified by hand"
            );
        };
        if version > schema::MIGRATIONS.len() {
            bail!(
                "schema version {version} is newer than this binary knows ({}); \
                 use a newer trivy-digest",
                schema::MIGRATIONS.len()
            );
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version) {
            let path = self.path.clone();
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| busy_or(&path, e))?;
            // Another connection (a task of this process opening the same fresh store,
            // another replica) may have applied it while this one waited for the lock.
            let applied: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if applied > i as i64 {
                continue;
            }
            // SQLite's message only: rusqlite's would repeat the whole migration's SQL.
            tx.execute_batch(sql).map_err(|e| {
                anyhow::anyhow!("migration {} failed: {}", i + 1, sqlite_message(&e))
            })?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit().map_err(|e| busy_or(&path, e))?;
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
        usize::try_from(v).map_err(|_| {
            anyhow::anyhow!(
                "store {}: schema version {v} is negative",
                self.path.display()
            )
        })
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Takes the write lock (waiting up to the busy timeout for another process).
    pub(crate) fn begin_write(&self) -> Result<()> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| busy_or(&self.path, e))
    }

    /// Runs `f` in one write transaction: committed when it returns Ok, rolled back otherwise.
    pub fn write<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.begin_write()?;
        match f(&self.conn) {
            Ok(v) => {
                self.conn
                    .execute_batch("COMMIT")
                    .map_err(|e| busy_or(&self.path, e))?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// This store's identity: a random id made on first use and kept in the store, so
    /// the DefectDojo tests it pushes to can say which store they belong to (two stores
    /// may well be given the same cluster name).
    pub fn identity(&self) -> Result<String> {
        let read = |conn: &Connection| -> rusqlite::Result<Option<String>> {
            conn.query_row("SELECT value FROM meta WHERE key='store_id'", [], |r| {
                r.get(0)
            })
            .optional()
        };
        if let Some(id) = read(&self.conn).map_err(|e| busy_or(&self.path, e))? {
            return Ok(id);
        }
        let id = format!("{:016x}", fastrand::u64(..));
        // Another process may have made one meanwhile: theirs is kept, and read back.
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES('store_id', ?1) ON CONFLICT DO NOTHING",
                params![id],
            )
            .map_err(|e| busy_or(&self.path, e))?;
        read(&self.conn)
            .map_err(|e| busy_or(&self.path, e))?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "store {}: no store_id after writing one",
                    self.path.display()
                )
            })
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
                self.conn
                    .execute(
                        "INSERT INTO meta(key, value) VALUES('cluster', ?1)",
                        params![cluster],
                    )
                    .map_err(|e| busy_or(&self.path, e))?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod migrate_race {
    use super::*;

    /// Two connections opening one fresh store at once (the controller's and the alert
    /// loop's, at start): the one that waited for the write lock must not apply the
    /// migrations the other has just applied ("table already exists").
    #[test]
    fn a_store_migrated_while_waiting_for_the_lock_opens() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("store.db");
        let mut other = Connection::open(&path).expect("open");
        let mode: String = other
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .expect("wal");
        assert_eq!(mode, "wal");
        // The other connection migrates, holding the write lock...
        let tx = other
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .expect("lock");
        for sql in schema::MIGRATIONS {
            tx.execute_batch(sql).expect("migration");
        }
        tx.pragma_update(None, "user_version", schema::MIGRATIONS.len() as i64)
            .expect("version");
        // ...while this one reads version 0 and waits for the lock.
        let opener = std::thread::spawn(move || Store::open(&path).map(|_| ()));
        std::thread::sleep(Duration::from_millis(300));
        tx.commit().expect("commit");
        opener
            .join()
            .expect("thread")
            .expect("the store opens once the other connection has migrated it");
    }
}
