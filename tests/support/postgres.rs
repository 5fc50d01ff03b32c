//! A real PostgreSQL server for the tests: Debian's `postgresql` binaries, a cluster made
//! with `initdb` in a temporary directory, listening on a free loopback port with
//! password (SCRAM) authentication. Never the system service.
//!
//! One server per test process, started on first use; each test gets a database of its
//! own (`database()`). The server gets SIGINT (a fast shutdown) when the process ends,
//! through `setpriv --pdeathsig`. Missing binaries fail the test with the reason: these
//! tests are never skipped (`.ci/run` installs `postgresql`).
//!
//! The binaries are looked for in `TRIVY_DIGEST_PG_BIN`, then `pg_config --bindir`, then
//! `/usr/lib/postgresql/<newest>/bin`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use trivy_digest::store::{Db, PgTarget, StoreLocation};

/// The superuser's password; the tests read it from a file or env, as users do.
pub const PASSWORD: &str = "td-test-secret";
pub const USER: &str = "trivy_digest";

pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
}

fn bindir() -> PathBuf {
    if let Ok(d) = std::env::var("TRIVY_DIGEST_PG_BIN") {
        return PathBuf::from(d);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if d.join("initdb").exists() {
            return d;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (initdb, postgres) are not installed: install Debian's \
             `postgresql` package (.ci/run does), or set TRIVY_DIGEST_PG_BIN to their directory"
        )
    })
}

fn is_root() -> bool {
    // initdb and postgres refuse to run as root: the tests run them as `postgres`.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// `cmd` as the server's user (postgres when the tests run as root), dying with the test
/// process when `pdeathsig`.
fn as_server_user(bin: &Path, pdeathsig: bool) -> Command {
    let mut c = Command::new("setpriv");
    if is_root() {
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
    }
    if pdeathsig {
        c.arg("--pdeathsig=INT");
    }
    c.arg(bin);
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Data directories of test processes that are gone (a killed `cargo test`).
fn remove_stale(root: &Path) {
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("pg-")
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn start() -> Server {
    let bin = bindir();
    let root = std::env::temp_dir().join("trivy-digest-tests");
    std::fs::create_dir_all(&root).expect("temp root");
    remove_stale(&root);
    let dir = root.join(format!("pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("pg dir");
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, PASSWORD).expect("pwfile");
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(st.success(), "chown {} to postgres", dir.display());
        // The server's user must be able to reach the directory.
        let _ = Command::new("chmod").arg("755").arg(&root).status();
    }
    let data = dir.join("data");
    let out = as_server_user(&bin.join("initdb"), false)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            USER,
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).expect("log");
    if is_root() {
        let _ = Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.join("server.log"))
            .status();
    }
    let err = log.try_clone().expect("log");
    // A thread that lives as long as the process: the server's parent-death signal
    // fires when the thread that started it ends.
    let (tx, rx) = std::sync::mpsc::channel();
    let spawn_dir = dir.clone();
    std::thread::spawn(move || {
        let child = as_server_user(&bin.join("postgres"), true)
            .arg("-D")
            .arg(spawn_dir.join("data"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .arg("-k")
            .arg(&spawn_dir)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn();
        let _ = tx.send(child.map(|c| c.id()));
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("spawn thread").expect("start postgres");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && admin_on(port, "postgres").is_ok()
        {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "PostgreSQL did not accept connections within 60 s; its log:\n{}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Server { port, dir }
}

pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start)
}

/// A store URL for `dbname`, without the password (the tests give it by file or env).
pub fn url(dbname: &str) -> String {
    format!(
        "postgres://{USER}@127.0.0.1:{}/{dbname}?sslmode=disable",
        server().port
    )
}

fn target_on(port: u16, dbname: &str) -> PgTarget {
    let loc = StoreLocation::parse(&format!(
        "postgres://{USER}@127.0.0.1:{port}/{dbname}?sslmode=disable"
    ))
    .expect("url");
    let StoreLocation::Postgres(mut t) = loc else {
        unreachable!("a postgres URL");
    };
    t.password = Some(trivy_digest::secret::Secret::new(PASSWORD));
    t
}

fn admin_on(port: u16, dbname: &str) -> Result<Db, String> {
    Db::connect_postgres(&target_on(port, dbname)).map_err(|e| e.to_string())
}

/// A connection to `dbname` as the superuser, for what a test checks directly.
pub fn admin(dbname: &str) -> Db {
    admin_on(server().port, dbname).expect("connect")
}

/// The store location of `dbname`, with the password.
pub fn location(dbname: &str) -> StoreLocation {
    StoreLocation::Postgres(target_on(server().port, dbname))
}

/// A fresh, empty database of its own for one test.
pub fn database(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "t_{}_{}_{}",
        test.chars()
            .map(|c| if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            })
            .take(30)
            .collect::<String>(),
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    admin("postgres")
        .execute_batch(&format!("CREATE DATABASE {name}"))
        .expect("create database");
    name
}
