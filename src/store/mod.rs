//! The store: images deduplicated by digest, the workloads that run them, findings with
//! their history, and the DefectDojo outbox.
//!
//! An embedded SQLite file (WAL journal) by default, or a PostgreSQL database shared by
//! a fleet; one SQL dialect over both (`db`), versioned migrations for each. Every write
//! of a sweep happens in one transaction, so a crash leaves the store as it was before
//! the sweep.

pub mod copy;
pub mod db;
mod ingest;
pub mod inventory;
pub mod lease;
pub mod location;
pub mod lookup;
mod pg;
pub mod query;
mod schema;
mod tls;
pub mod triage;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub use db::Db;
use db::{OptionalExtension, params};
pub use ingest::{FinishStats, Session};
pub use location::{PgTarget, StoreLocation};

/// Default wait for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// PostgreSQL advisory lock keys (one database holds one store): the migrations, and
/// the write lock every write transaction takes, as SQLite's `BEGIN IMMEDIATE` does, so
/// writers from many clusters queue instead of deadlocking on each other's rows.
const PG_MIGRATE_LOCK: i64 = 0x7472_6976_7964_0001;
const PG_WRITE_LOCK: i64 = 0x7472_6976_7964_0002;

/// A fleet store's writers are many clusters' sweeps, each one transaction: waiting for
/// a few of them in turn is normal.
const PG_BUSY_TIMEOUT: Duration = Duration::from_secs(300);

/// The wait for a lock; `TRIVY_DIGEST_BUSY_TIMEOUT_MS` (undocumented, for tests) shortens it.
fn busy_timeout() -> Duration {
    busy_timeout_or(BUSY_TIMEOUT)
}

fn busy_timeout_or(default: Duration) -> Duration {
    std::env::var("TRIVY_DIGEST_BUSY_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(default, Duration::from_millis)
}

/// True for SQLITE_BUSY / SQLITE_LOCKED, or PostgreSQL's lock timeout: another
/// connection holds the lock.
pub fn is_busy(e: &db::Error) -> bool {
    e.is_busy()
}

/// "database is locked" says neither which store nor why; this says both.
#[derive(Debug, thiserror::Error)]
#[error(
    "store {location} is locked: another trivy-digest process (a `run` or a `scan`) holds its write \
     lock and did not release it within {}; wait for it to finish or stop it",
    humantime::format_duration(*waited)
)]
pub struct StoreLocked {
    pub location: String,
    pub waited: Duration,
}

fn busy_or(location: &StoreLocation, e: db::Error) -> anyhow::Error {
    if is_busy(&e) {
        StoreLocked {
            location: location.to_string(),
            waited: if location.is_postgres() {
                busy_timeout_or(PG_BUSY_TIMEOUT)
            } else {
                busy_timeout()
            },
        }
        .into()
    } else {
        anyhow::Error::new(e)
    }
}

/// The engine's own message, without the SQL text rusqlite adds to input errors.
fn engine_message(e: &db::Error) -> String {
    match e {
        db::Error::Sqlite(rusqlite::Error::SqlInputError { msg, .. }) => msg.clone(),
        db::Error::Sqlite(rusqlite::Error::SqliteFailure(f, Some(msg))) => {
            format!("{msg} ({:?})", f.code)
        }
        other => other.to_string(),
    }
}

pub struct Store {
    conn: Db,
    location: StoreLocation,
    /// The cluster this process writes for (`claim_cluster`); "" until claimed.
    cluster: String,
    /// The fleet lease every write transaction must still hold (the outputs' stores).
    fence: Option<lease::Fence>,
}

impl Store {
    /// Opens (creating if needed) and migrates the SQLite store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_at(&StoreLocation::Sqlite(path.to_owned()))
    }

    /// Opens (creating if needed) and migrates the store: a file or a PostgreSQL database.
    pub fn open_at(location: &StoreLocation) -> Result<Store> {
        match location {
            StoreLocation::Sqlite(path) => Store::open_sqlite(path),
            StoreLocation::Postgres(target) => Store::open_postgres(target),
        }
    }

    fn open_sqlite(path: &Path) -> Result<Store> {
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
        let conn = rusqlite::Connection::open(path)
            .with_context(|| format!("store {}: cannot open", path.display()))?;
        let location = StoreLocation::Sqlite(path.to_owned());
        let mut store = Store {
            conn: Db::Sqlite(conn),
            location: location.clone(),
            cluster: String::new(),
            fence: None,
        };
        store.configure().map_err(|e| {
            if e.is::<StoreLocked>() {
                return e;
            }
            match e.downcast::<db::Error>() {
                Ok(r) if is_busy(&r) => busy_or(&location, r),
                Ok(r) => anyhow::Error::new(r).context(format!("store {}", path.display())),
                Err(e) => match e.downcast::<rusqlite::Error>() {
                    Ok(r) => {
                        busy_or(&location, r.into()).context(format!("store {}", path.display()))
                    }
                    Err(e) => e.context(format!("store {}", path.display())),
                },
            }
        })?;
        Ok(store)
    }

    fn open_postgres(target: &PgTarget) -> Result<Store> {
        let conn = pg::PgConn::connect(target)
            .map_err(|e| anyhow::anyhow!("store {target}: cannot connect: {e}"))?;
        let mut store = Store {
            conn: Db::Postgres(conn),
            location: StoreLocation::Postgres(target.clone()),
            cluster: String::new(),
            fence: None,
        };
        store
            .configure()
            .with_context(|| format!("store {target}"))?;
        Ok(store)
    }

    pub fn open_in_memory() -> Result<Store> {
        let conn = rusqlite::Connection::open_in_memory()?;
        let mut store = Store {
            conn: Db::Sqlite(conn),
            location: StoreLocation::Sqlite(PathBuf::from(":memory:")),
            cluster: String::new(),
            fence: None,
        };
        store.configure()?;
        Ok(store)
    }

    fn configure(&mut self) -> Result<()> {
        match &self.conn {
            Db::Sqlite(conn) => {
                // Another process (a second replica, a `scan` beside `run`) waits instead of failing.
                conn.busy_timeout(busy_timeout())?;
                let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
                if mode != "wal" && self.location.sqlite_path() != Some(Path::new(":memory:")) {
                    tracing::warn!(mode, "SQLite did not switch to WAL; continuing with {mode}");
                }
                conn.execute_batch(
                    "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-8192;",
                )?;
                self.migrate_sqlite()
            }
            Db::Postgres(_) => {
                // A writer of another cluster holding the write lock: wait as long as
                // SQLite would, then say so (StoreLocked).
                self.conn.execute_batch(&format!(
                    "SET lock_timeout = {}; SET client_min_messages = warning",
                    busy_timeout_or(PG_BUSY_TIMEOUT).as_millis().max(1)
                ))?;
                self.migrate_postgres()
            }
        }
    }

    fn migrate_sqlite(&mut self) -> Result<()> {
        let Db::Sqlite(conn) = &mut self.conn else {
            bail!("not an SQLite store");
        };
        let raw: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
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
            let rebuild = schema::REBUILDS.contains(&(i + 1));
            if rebuild {
                // A no-op inside a transaction: set before the migration's.
                conn.execute_batch("PRAGMA foreign_keys=OFF")?;
            }
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| busy_or(&self.location, e.into()))?;
            // Another connection (a task of this process opening the same fresh store,
            // another replica) may have applied it while this one waited for the lock.
            let applied: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if applied > i as i64 {
                continue;
            }
            // SQLite's message only: rusqlite's would repeat the whole migration's SQL.
            tx.execute_batch(sql).map_err(|e| {
                anyhow::anyhow!("migration {} failed: {}", i + 1, engine_message(&e.into()))
            })?;
            if rebuild {
                let broken: i64 =
                    tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                        r.get(0)
                    })?;
                if broken > 0 {
                    bail!(
                        "migration {}: {broken} rows would break a foreign key; the store \
                         is left as it was",
                        i + 1
                    );
                }
            }
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit().map_err(|e| busy_or(&self.location, e.into()))?;
            if rebuild {
                conn.execute_batch("PRAGMA foreign_keys=ON")?;
            }
        }
        Ok(())
    }

    /// PostgreSQL's migrations, under a lock: replicas of many clusters start at once.
    fn migrate_postgres(&mut self) -> Result<()> {
        let db = &self.conn;
        db.execute_batch(&format!("SELECT pg_advisory_lock({PG_MIGRATE_LOCK})"))
            .map_err(|e| busy_or(&self.location, e))?;
        let result = (|| -> Result<()> {
            db.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
            )?;
            let version = self.pg_version()?;
            if version > schema::POSTGRES.len() {
                bail!(
                    "schema version {version} is newer than this binary knows ({}); \
                     use a newer trivy-digest",
                    schema::POSTGRES.len()
                );
            }
            for (i, sql) in schema::POSTGRES.iter().enumerate().skip(version) {
                db.execute_batch("BEGIN")?;
                let applied = db
                    .execute_batch(sql)
                    .map_err(|e| {
                        anyhow::anyhow!("migration {} failed: {}", i + 1, engine_message(&e))
                    })
                    .and_then(|()| {
                        db.execute("DELETE FROM schema_version", [])?;
                        db.execute(
                            "INSERT INTO schema_version(version) VALUES(?1)",
                            params![(i + 1) as i64],
                        )?;
                        Ok(db.execute_batch("COMMIT")?)
                    });
                if let Err(e) = applied {
                    let _ = db.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
            Ok(())
        })();
        let _ = db.execute_batch(&format!("SELECT pg_advisory_unlock({PG_MIGRATE_LOCK})"));
        result
    }

    fn pg_version(&self) -> Result<usize> {
        let v: Option<i64> =
            self.conn
                .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?;
        let v = v.unwrap_or(0);
        usize::try_from(v)
            .map_err(|_| anyhow::anyhow!("store {}: schema version {v} is negative", self.location))
    }

    /// Where the store is, as it may be printed (a PostgreSQL URL without its password).
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    pub fn engine(&self) -> db::Engine {
        self.conn.engine()
    }

    pub fn schema_version(&self) -> Result<usize> {
        if self.conn.engine() == db::Engine::Postgres {
            return self.pg_version();
        }
        let v: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        usize::try_from(v)
            .map_err(|_| anyhow::anyhow!("store {}: schema version {v} is negative", self.location))
    }

    pub(crate) fn conn(&self) -> &Db {
        &self.conn
    }

    /// Every later write transaction checks that `fence` still holds its lease, and
    /// fails with [`lease::LeaseLost`] once it does not.
    pub fn fence(&mut self, fence: Option<lease::Fence>) {
        self.fence = fence;
    }

    /// Takes the write lock (waiting up to the busy timeout for another process); with a
    /// fence, checks the lease under that lock, so no write follows a lost lease.
    pub(crate) fn begin_write(&self) -> Result<()> {
        self.begin_write_unfenced()?;
        if let Some(f) = &self.fence
            && let Err(e) = lease::check(&self.conn, f)
        {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        Ok(())
    }

    fn begin_write_unfenced(&self) -> Result<()> {
        match &self.conn {
            Db::Sqlite(_) => self
                .conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| busy_or(&self.location, e)),
            Db::Postgres(_) => {
                self.conn.execute_batch("BEGIN")?;
                if let Err(e) = self
                    .conn
                    .execute_batch(&format!("SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})"))
                {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(busy_or(&self.location, e));
                }
                Ok(())
            }
        }
    }

    /// Runs `f` in one write transaction: committed when it returns Ok, rolled back otherwise.
    pub fn write<T>(&mut self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        self.begin_write()?;
        self.finish_write(f)
    }

    /// A transaction for the lease row: on PostgreSQL without the store's write lock
    /// (the row is locked instead, `FOR UPDATE`), so renewing never queues behind the
    /// sweeps of other clusters; SQLite has one writer anyway.
    pub(crate) fn write_lease<T>(&mut self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        match &self.conn {
            Db::Sqlite(_) => self.begin_write_unfenced()?,
            Db::Postgres(_) => self
                .conn
                .execute_batch("BEGIN")
                .map_err(|e| busy_or(&self.location, e))?,
        }
        self.finish_write(f)
    }

    fn finish_write<T>(&mut self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        match f(&self.conn) {
            Ok(v) => {
                self.conn
                    .execute_batch("COMMIT")
                    .map_err(|e| busy_or(&self.location, e))?;
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
        let read = |conn: &Db| -> db::Result<Option<String>> {
            conn.query_row("SELECT value FROM meta WHERE key='store_id'", [], |r| {
                r.get(0)
            })
            .optional()
        };
        if let Some(id) = read(&self.conn).map_err(|e| busy_or(&self.location, e))? {
            return Ok(id);
        }
        let id = format!("{:016x}", fastrand::u64(..));
        // Another process may have made one meanwhile: theirs is kept, and read back.
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES('store_id', ?1) ON CONFLICT DO NOTHING",
                params![id],
            )
            .map_err(|e| busy_or(&self.location, e))?;
        read(&self.conn)
            .map_err(|e| busy_or(&self.location, e))?
            .ok_or_else(|| {
                anyhow::anyhow!("store {}: no store_id after writing one", self.location)
            })
    }

    /// The cluster this process writes for: its sweeps, relists and grace expiry touch
    /// this cluster's reports only.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// True for a store many clusters share (PostgreSQL).
    pub fn is_fleet(&self) -> bool {
        self.conn.engine() == db::Engine::Postgres
    }

    /// Names the cluster this process writes for. An SQLite store belongs to one cluster
    /// (mixing two in one file is a mistake: the refusal says so); its first claim takes
    /// the rows written before clusters were recorded. A PostgreSQL store is a fleet's:
    /// each cluster is recorded, and its rows are tagged with its name.
    pub fn claim_cluster(&mut self, cluster: &str) -> Result<()> {
        if cluster.is_empty() {
            bail!("the cluster name is empty; set `cluster:` in the config or --cluster");
        }
        if !self.is_fleet() {
            let existing: Option<String> = self
                .conn
                .query_row("SELECT value FROM meta WHERE key='cluster'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            match existing {
                Some(c) if c == cluster => {}
                Some(c) => bail!(
                    "store {} belongs to cluster {c:?}, not {cluster:?}; use one store per \
                     cluster (--store or `store:` in the config), or one PostgreSQL store for \
                     the fleet (README: Many clusters)",
                    self.location
                ),
                None => {
                    let name = cluster.to_owned();
                    self.write(|db| {
                        db.execute(
                            "INSERT INTO meta(key, value) VALUES('cluster', ?1)",
                            params![name],
                        )?;
                        for table in ["workloads", "reports", "namespaces", "scans"] {
                            db.execute(
                                &format!("UPDATE {table} SET cluster = ?1 WHERE cluster = ''"),
                                params![name],
                            )?;
                        }
                        Ok(())
                    })?;
                }
            }
        }
        let now = chrono::Utc::now().timestamp();
        self.conn
            .execute(
                "INSERT INTO clusters(name, first_seen, last_seen) VALUES(?1, ?2, ?2)
                 ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen",
                params![cluster, now],
            )
            .map_err(|e| busy_or(&self.location, e))?;
        self.cluster = cluster.to_owned();
        Ok(())
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
        let mut other = rusqlite::Connection::open(&path).expect("open");
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
