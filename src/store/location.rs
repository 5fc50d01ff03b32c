//! Where the store lives: an SQLite file (the embedded default) or a PostgreSQL URL
//! (`postgres://` or `postgresql://`, libpq's form), with the password kept apart and
//! never printed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::secret::Secret;

/// libpq's `sslmode`, the same words and meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unverified; plain otherwise (libpq's default).
    Prefer,
    /// TLS, unverified (verified against `sslrootcert` when one is given, as libpq does).
    Require,
    /// TLS, the chain verified; any host name.
    VerifyCa,
    /// TLS, the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A PostgreSQL server and database.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub password: Option<Secret>,
    pub ssl_mode: SslMode,
    /// PEM file of the CA certificates that sign the server's (libpq's `sslrootcert`).
    pub ssl_root_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub application_name: String,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Display never holds the password; Debug says only whether there is one.
        write!(f, "PgTarget({self}, password: {})", self.password.is_some())
    }
}

impl fmt::Display for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "postgres://{}@{host}:{}/{}?sslmode={}",
            self.user,
            self.port,
            self.dbname,
            self.ssl_mode.as_str()
        )?;
        if let Some(p) = &self.ssl_root_cert {
            write!(f, "&sslrootcert={}", p.display())?;
        }
        Ok(())
    }
}

impl PgTarget {
    /// Parses a libpq URL. The query may hold `sslmode`, `sslrootcert`,
    /// `connect_timeout` (seconds), `application_name` and `host` (a second way to name
    /// it); anything else is refused by name rather than ignored.
    pub fn parse(url: &str) -> Result<PgTarget, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            format!(
                "not a PostgreSQL URL ({e}); write postgres://USER@HOST:PORT/DATABASE?sslmode=verify-full"
            )
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!("scheme {:?} is not postgres", parsed.scheme()));
        }
        let decode = |s: &str| -> Result<String, String> {
            percent_decode(s).ok_or_else(|| "the URL holds invalid percent-encoding".to_string())
        };
        let mut host = parsed
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .unwrap_or_default();
        let port = parsed.port().unwrap_or(5432);
        let user = decode(parsed.username())?;
        let password = parsed
            .password()
            .map(decode)
            .transpose()?
            .filter(|p| !p.is_empty())
            .map(Secret::new);
        let dbname = decode(parsed.path().trim_start_matches('/'))?;
        let mut ssl_mode = SslMode::Prefer;
        let mut ssl_root_cert = None;
        let mut connect_timeout = Duration::from_secs(10);
        let mut application_name = "trivy-digest".to_owned();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "sslmode" => {
                    ssl_mode = SslMode::parse(&v).ok_or_else(|| {
                        format!(
                            "sslmode={v}: use disable, prefer, require, verify-ca or verify-full"
                        )
                    })?
                }
                "sslrootcert" => ssl_root_cert = Some(PathBuf::from(v.as_ref())),
                "connect_timeout" => {
                    let secs: u64 = v.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("connect_timeout={v}: a whole number of seconds, at least 1")
                    })?;
                    connect_timeout = Duration::from_secs(secs);
                }
                "application_name" => application_name = v.into_owned(),
                "host" => host = v.into_owned(),
                "user" => {
                    return Err("give the user before the host (postgres://USER@HOST/...)".into());
                }
                "password" => {
                    return Err(
                        "a password in the query is not read: use store_password_file or \
                         store_password_env"
                            .into(),
                    );
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}; the store reads sslmode, sslrootcert, \
                         connect_timeout, application_name and host"
                    ));
                }
            }
        }
        if host.is_empty() {
            return Err("the URL names no host".into());
        }
        if user.is_empty() {
            return Err("the URL names no user (postgres://USER@HOST/DATABASE)".into());
        }
        if dbname.is_empty() {
            return Err("the URL names no database (postgres://USER@HOST/DATABASE)".into());
        }
        Ok(PgTarget {
            host,
            port,
            user,
            dbname,
            password,
            ssl_mode,
            ssl_root_cert,
            connect_timeout,
            application_name,
        })
    }

    /// tokio-postgres's connection settings.
    pub(super) fn config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout)
            .keepalives(true)
            .ssl_mode(match self.ssl_mode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
        if let Some(p) = &self.password {
            c.password(p.expose());
        }
        c
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The store: a file, or a database server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(PgTarget),
}

impl StoreLocation {
    /// A `postgres://` or `postgresql://` URL, or else a file path.
    pub fn parse(s: &str) -> Result<StoreLocation, String> {
        let lower = s.trim_start().to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return PgTarget::parse(s.trim()).map(StoreLocation::Postgres);
        }
        if lower.starts_with("postgres:") || lower.starts_with("postgresql:") {
            return Err("a PostgreSQL URL starts with postgres:// or postgresql://".into());
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(s)))
    }

    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            StoreLocation::Sqlite(p) => Some(p),
            StoreLocation::Postgres(_) => None,
        }
    }

    /// False for an SQLite file not made yet (a command that only reads says so rather
    /// than make an empty store); a database server is asked when connecting.
    pub fn exists(&self) -> bool {
        match self {
            StoreLocation::Sqlite(p) => p.exists(),
            StoreLocation::Postgres(_) => true,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, StoreLocation::Postgres(_))
    }
}

impl From<PathBuf> for StoreLocation {
    fn from(p: PathBuf) -> Self {
        StoreLocation::Sqlite(p)
    }
}

impl From<&Path> for StoreLocation {
    fn from(p: &Path) -> Self {
        StoreLocation::Sqlite(p.to_owned())
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(p) => write!(f, "{}", p.display()),
            StoreLocation::Postgres(t) => write!(f, "{t}"),
        }
    }
}

impl Serialize for StoreLocation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for StoreLocation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StoreLocation::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_as_libpq_reads_them_and_print_without_the_password() {
        let loc = StoreLocation::parse(
            "postgresql://trivy:s3cr%21t@db.example:6432/fleet?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .expect("parse");
        let StoreLocation::Postgres(t) = &loc else {
            panic!("not postgres: {loc:?}");
        };
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str(), t.dbname.as_str()),
            ("db.example", 6432, "trivy", "fleet")
        );
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("s3cr!t"));
        assert_eq!(t.ssl_mode, SslMode::VerifyFull);
        let shown = format!("{loc} {loc:?} {}", serde_json::json!(loc));
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("postgres://trivy@db.example:6432/fleet?sslmode=verify-full"));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("postgres://db/fleet", "no user"),
            ("postgres://u@db/", "no database"),
            ("postgres://u@db/x?sslmode=on", "sslmode=on"),
            ("postgres://u@db/x?pool=3", "unknown parameter \"pool\""),
            ("postgres://u@db/x?password=p", "store_password_file"),
            ("postgres:db", "postgres://"),
        ] {
            let e = StoreLocation::parse(url).expect_err(url);
            assert!(e.contains(says), "{url}: {e}");
        }
        assert_eq!(
            StoreLocation::parse("/var/lib/trivy-digest/store.db").expect("path"),
            StoreLocation::Sqlite(PathBuf::from("/var/lib/trivy-digest/store.db"))
        );
    }
}
