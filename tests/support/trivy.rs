//! The real `trivy` binary, run offline over a small tree of real package metadata.
//!
//! trivy is `$TRIVY`, else `trivy` on PATH, else the one `scripts/install-tools.sh`
//! installs (.ci/run runs it and exports TRIVY). Missing, the test fails saying so: it is
//! never skipped. Every run gets its own cache directory, never updates a database and
//! never checks for a newer version, so it touches no network and takes well under a
//! second.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `tree()` puts in the scanned directory.
pub const LOG4J_JAR: &str = "app/log4j-core-2.14.1.jar";
pub const SECRET_FILE: &str = "config/.env";
/// Trivy's `github-pat` rule masks all of the token it matches.
pub const MASKED_PAT: &str = "GITHUB_TOKEN=****************************************";

pub fn trivy() -> PathBuf {
    if let Some(p) = std::env::var_os("TRIVY").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "TRIVY={} does not exist", p.display());
        return p;
    }
    if let Some(p) = on_path("trivy") {
        return p;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The script knows where its virtualenv is (and which versions): no copy of them here.
    let out = Command::new(repo.join("scripts/install-tools.sh"))
        .args(["--print-trivy", "--no-install"])
        .env_remove("TRIVY")
        .output()
        .expect("run scripts/install-tools.sh");
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        out.status.success() && p.is_file(),
        "trivy not found (not $TRIVY, not on PATH, not {}): run scripts/install-tools.sh \
         (CI does, in .ci/run)",
        p.display()
    );
    p
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A temporary directory holding `root/`, a tree trivy finds packages and a secret in
/// without any database: an Alpine package database (musl), an npm package (lodash), a
/// Maven jar (log4j-core 2.14.1, named by its `pom.properties`) and a GitHub token in
/// `config/.env`.
pub fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    let write = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    };
    write("etc/alpine-release", b"3.18.4\n");
    write(
        "lib/apk/db/installed",
        b"C:Q1abc=\nP:musl\nV:1.2.3-r4\nA:x86_64\nS:383152\nI:622592\n\
          T:the musl c library (libc) implementation\nU:https://musl.libc.org/\nL:MIT\n\
          o:musl\nm:Timo Teras <timo.teras@iki.fi>\nt:1681228881\n\n",
    );
    write(
        "node_modules/lodash/package.json",
        br#"{"name": "lodash", "version": "4.17.20", "license": "MIT"}"#,
    );
    write(
        LOG4J_JAR,
        &stored_zip(
            "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
            b"groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n",
        ),
    );
    // Built here so the repository itself holds no token-shaped string.
    let token = format!("ghp_{}{}", "0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    write(SECRET_FILE, format!("GITHUB_TOKEN={token}\n").as_bytes());
    dir
}

/// `trivy rootfs --format cyclonedx root` (packages only: the format scans nothing else).
pub fn rootfs_cyclonedx(dir: &Path) -> Vec<u8> {
    run(dir, ["rootfs", "--format", "cyclonedx"])
}

/// `trivy fs --scanners secret --format json root`.
pub fn fs_secrets_json(dir: &Path) -> Vec<u8> {
    run(dir, ["fs", "--scanners", "secret", "--format", "json"])
}

fn run<const N: usize>(dir: &Path, args: [&str; N]) -> Vec<u8> {
    let cache = dir.join("trivy-cache");
    empty_java_db(&cache);
    let out = dir.join("trivy-out");
    let log = dir.join("trivy-log");
    let mut cmd = Command::new(trivy());
    cmd.current_dir(dir)
        .args(args)
        // No trivy.yaml or .trivyignore from anywhere, no database, no version check.
        .args(["--config", "", "--ignorefile", "", "--cache-dir"])
        .arg(&cache)
        .args([
            "--offline-scan",
            "--skip-db-update",
            "--skip-java-db-update",
            "--skip-check-update",
            "--skip-version-check",
            "--disable-telemetry",
            "--quiet",
            "--output",
        ])
        .arg(&out)
        .arg("root")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    // The caller's TRIVY_* settings (scanners, severities, a server) must not apply.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TRIVY_") {
            cmd.env_remove(&k);
        }
    }
    let mut child = cmd.spawn().expect("start trivy");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for trivy") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("trivy {args:?} ran over 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "trivy {args:?}: {status}\n{stderr}");
    std::fs::read(&out).unwrap_or_else(|e| panic!("trivy {args:?} wrote no output ({e})\n{stderr}"))
}

/// Trivy reads jars through its Java DB (to name jars by checksum) and will not start
/// without one when told not to download it. Tables only: with no rows, a jar is named by
/// its own `pom.properties`. Schema as aquasecurity/trivy-java-db `pkg/db/db.go` (v1).
fn empty_java_db(cache: &Path) {
    let dir = cache.join("java-db");
    std::fs::create_dir_all(&dir).expect("java-db dir");
    let db = rusqlite::Connection::open(dir.join("trivy-java.db")).expect("java db");
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS artifacts(id INTEGER PRIMARY KEY, group_id TEXT, artifact_id TEXT);
         CREATE TABLE IF NOT EXISTS indices(artifact_id INTEGER, version TEXT, sha1 BLOB, archive_type TEXT,
             FOREIGN KEY (artifact_id) REFERENCES artifacts(id));",
    )
    .expect("java db schema");
    std::fs::write(
        dir.join("metadata.json"),
        r#"{"Version":1,"NextUpdate":"2999-01-01T00:00:00Z","UpdatedAt":"2026-01-01T00:00:00Z","DownloadedAt":"2026-01-01T00:00:00Z"}"#,
    )
    .expect("java db metadata");
}

/// A zip holding one file, stored (not compressed): enough for a jar's metadata.
fn stored_zip(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32(data);
    let size = u32::try_from(data.len()).expect("small file");
    let name_len = u16::try_from(name.len()).expect("short name");
    let mut header = Vec::new();
    for part in [
        &0x0403_4b50u32.to_le_bytes()[..], // local file header
        &20u16.to_le_bytes(),              // version needed
        &0u16.to_le_bytes(),               // flags
        &0u16.to_le_bytes(),               // stored
        &0u16.to_le_bytes(),               // time
        &0x21u16.to_le_bytes(),            // date: 1980-01-01
        &crc.to_le_bytes(),
        &size.to_le_bytes(),
        &size.to_le_bytes(),
        &name_len.to_le_bytes(),
        &0u16.to_le_bytes(), // extra
    ] {
        header.extend_from_slice(part);
    }
    let mut zip = header.clone();
    zip.extend_from_slice(name.as_bytes());
    zip.extend_from_slice(data);
    let central_at = u32::try_from(zip.len()).expect("small zip");
    let mut central = Vec::new();
    for part in [
        &0x0201_4b50u32.to_le_bytes()[..], // central directory header
        &20u16.to_le_bytes(),              // version made by
        &header[4..30],                    // the local header's fields from version needed
        &0u16.to_le_bytes(),               // comment
        &0u16.to_le_bytes(),               // disk
        &0u16.to_le_bytes(),               // internal attributes
        &0u32.to_le_bytes(),               // external attributes
        &0u32.to_le_bytes(),               // local header offset
        name.as_bytes(),
    ] {
        central.extend_from_slice(part);
    }
    let central_len = u32::try_from(central.len()).expect("small directory");
    zip.extend_from_slice(&central);
    for part in [
        &0x0605_4b50u32.to_le_bytes()[..], // end of central directory
        &0u16.to_le_bytes(),
        &0u16.to_le_bytes(),
        &1u16.to_le_bytes(),
        &1u16.to_le_bytes(),
        &central_len.to_le_bytes(),
        &central_at.to_le_bytes(),
        &0u16.to_le_bytes(),
    ] {
        zip.extend_from_slice(part);
    }
    zip
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
