//! The PostgreSQL connection behind [`super::db::Db`]: tokio-postgres, driven by a thread
//! of its own, so the store's callers stay synchronous as they are with SQLite (from
//! async tasks and from plain threads alike, which a runtime of the caller's could not
//! serve: `block_on` inside a runtime panics).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use be::Buf;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::db::{Cell, Error, Result, StatementCache, to_postgres};
use super::location::{PgTarget, SslMode};

/// Runs a future to completion on this thread. tokio-postgres's client futures only
/// talk over channels to the connection task (which runs on its own thread), so they
/// need no runtime here.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// The server's message, its detail and hint, and the SQLSTATE: tokio-postgres's own
/// Display says only "db error".
pub(super) fn pg_error(e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let mut message = db.message().to_owned();
        if let Some(d) = db.detail() {
            message.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            message.push_str(&format!("; hint: {h}"));
        }
        return Error::Postgres {
            message: format!("{message} [{}]", db.code().code()),
            code: Some(db.code().code().to_owned()),
        };
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::Postgres {
        message,
        code: None,
    }
}

pub struct PgConn {
    client: tokio_postgres::Client,
    statements: StatementCache,
}

impl PgConn {
    /// Connects (TLS as the target says) and starts the connection's thread; the thread
    /// ends when the client is dropped.
    pub fn connect(target: &PgTarget) -> Result<PgConn> {
        let config = target.config();
        let tls = match target.ssl_mode {
            SslMode::Disable => None,
            _ => Some(
                super::tls::connector(target).map_err(|message| Error::Postgres {
                    message,
                    code: None,
                })?,
            ),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let what = target.to_string();
        std::thread::Builder::new()
            .name("store-postgres".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(Error::Postgres {
                            message: format!("cannot start the connection's runtime: {e}"),
                            code: None,
                        }));
                        return;
                    }
                };
                rt.block_on(async move {
                    let connected = match tls {
                        None => match config.connect(tokio_postgres::NoTls).await {
                            Ok((client, conn)) => Ok((client, Box::pin(conn) as ConnFuture)),
                            Err(e) => Err(e),
                        },
                        Some(tls) => match config.connect(tls).await {
                            Ok((client, conn)) => Ok((client, Box::pin(conn) as ConnFuture)),
                            Err(e) => Err(e),
                        },
                    };
                    match connected {
                        Ok((client, conn)) => {
                            let _ = tx.send(Ok(client));
                            if let Err(e) = conn.await {
                                tracing::warn!(store = %what, "store: PostgreSQL connection ended: {e}");
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(pg_error(e)));
                        }
                    }
                });
            })
            .map_err(|e| Error::Postgres {
                message: format!("cannot start the connection's thread: {e}"),
                code: None,
            })?;
        let client = rx.recv().map_err(|_| Error::Postgres {
            message: "the connection's thread ended before connecting".into(),
            code: None,
        })??;
        Ok(PgConn {
            client,
            statements: StatementCache::new(),
        })
    }

    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        let r = block_on(self.client.batch_execute(sql)).map_err(pg_error);
        // A schema change (a migration) invalidates the plans of cached statements.
        if sql.contains("CREATE") || sql.contains("ALTER") || sql.contains("DROP") {
            self.statements.clear();
        }
        r
    }

    pub(super) fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st);
        }
        let translated = to_postgres(sql);
        let st = block_on(self.client.prepare(&translated)).map_err(|e| {
            // The statement, whitespace folded: the server's position alone says little.
            let mut e = pg_error(e);
            if let Error::Postgres { message, .. } = &mut e {
                let folded = translated.split_whitespace().collect::<Vec<_>>().join(" ");
                let short: String = folded.chars().take(300).collect();
                message.push_str(&format!(" in: {short}"));
            }
            e
        })?;
        self.statements.put(sql, st.clone());
        Ok(st)
    }

    fn params<'a>(cells: &'a [Cell<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
        cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect()
    }

    pub(super) fn execute(
        &self,
        st: &tokio_postgres::Statement,
        cells: &[Cell<'_>],
    ) -> Result<usize> {
        let n = block_on(self.client.execute(st, &Self::params(cells))).map_err(pg_error)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(super) fn query(
        &self,
        st: &tokio_postgres::Statement,
        cells: &[Cell<'_>],
    ) -> Result<Vec<tokio_postgres::Row>> {
        block_on(self.client.query(st, &Self::params(cells))).map_err(pg_error)
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

type ConnFuture =
    std::pin::Pin<Box<dyn Future<Output = std::result::Result<(), tokio_postgres::Error>> + Send>>;

fn param_error(ty: &Type, cell: &Cell<'_>) -> Box<dyn std::error::Error + Sync + Send> {
    format!("cannot send {cell:?} as {ty}").into()
}

/// Parameters adapt to the type the server inferred for their placeholder, as SQLite's
/// dynamic typing lets one Rust value serve an INTEGER or a TEXT column alike.
impl ToSql for Cell<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)
                    .map_err(|_| param_error(ty, self))?
                    .to_sql(ty, out),
                Type::INT2 => i16::try_from(i)
                    .map_err(|_| param_error(ty, self))?
                    .to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::FLOAT4 => (i as f32).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    i.to_string().as_str().to_sql(&Type::TEXT, out)
                }
                Type::NUMERIC => numeric_from_i64(i, out),
                _ => Err(param_error(ty, self)),
            },
            Cell::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                Type::INT8 if f.fract() == 0.0 => (f as i64).to_sql(ty, out),
                _ => Err(param_error(ty, self)),
            },
            Cell::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.to_sql(&Type::TEXT, out)
                }
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                _ => Err(param_error(ty, self)),
            },
            Cell::Blob(b) => match *ty {
                Type::BYTEA => b.to_sql(ty, out),
                _ => Err(param_error(ty, self)),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// An integer as NUMERIC's binary form: base-10000 digits, most significant first.
fn numeric_from_i64(
    i: i64,
    out: &mut bytes::BytesMut,
) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
    let mut digits = Vec::new();
    let mut v = i.unsigned_abs();
    while v > 0 {
        digits.push((v % 10_000) as i16);
        v /= 10_000;
    }
    digits.reverse();
    let weight = digits.len() as i16 - 1;
    let sign: u16 = if i < 0 { 0x4000 } else { 0 };
    let mut buf = Vec::with_capacity(8 + 2 * digits.len());
    buf.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    buf.extend_from_slice(&weight.max(0).to_be_bytes());
    buf.extend_from_slice(&sign.to_be_bytes());
    buf.extend_from_slice(&0u16.to_be_bytes());
    for d in digits {
        buf.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(&buf);
    Ok(IsNull::No)
}

/// One column's raw bytes and type, decoded into a [`Cell`] by [`Raw::cell`].
pub(super) struct Raw<'a> {
    ty: Type,
    raw: Option<&'a [u8]>,
}

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw {
            ty: ty.clone(),
            raw: Some(raw),
        })
    }

    fn from_sql_null(
        ty: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw {
            ty: ty.clone(),
            raw: None,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl<'a> Raw<'a> {
    pub(super) fn cell(&self, index: usize) -> Result<Cell<'a>> {
        let Some(raw) = self.raw else {
            return Ok(Cell::Null);
        };
        let ty = &self.ty;
        let bad = |e: Box<dyn std::error::Error + Sync + Send>| {
            Error::column(index, format!("{ty} value: {e}"))
        };
        Ok(match self.ty {
            Type::INT8 => Cell::Int(i64::from_sql(&self.ty, raw).map_err(bad)?),
            Type::INT4 => Cell::Int(i64::from(i32::from_sql(&self.ty, raw).map_err(bad)?)),
            Type::INT2 => Cell::Int(i64::from(i16::from_sql(&self.ty, raw).map_err(bad)?)),
            Type::OID => Cell::Int(i64::from(u32::from_sql(&self.ty, raw).map_err(bad)?)),
            Type::BOOL => Cell::Int(i64::from(bool::from_sql(&self.ty, raw).map_err(bad)?)),
            Type::FLOAT8 => Cell::Real(f64::from_sql(&self.ty, raw).map_err(bad)?),
            Type::FLOAT4 => Cell::Real(f64::from(f32::from_sql(&self.ty, raw).map_err(bad)?)),
            Type::NUMERIC => numeric(raw).map_err(|m| Error::column(index, m))?,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
                Cell::Text(<&str>::from_sql(&Type::TEXT, raw).map_err(bad)?)
            }
            Type::BYTEA => Cell::Blob(raw),
            ref other => {
                return Err(Error::column(
                    index,
                    format!("type {other} is not one the store reads; cast it in the query"),
                ));
            }
        })
    }
}

/// NUMERIC's binary form (a SUM or AVG of integers): whole numbers as integers, the
/// rest as reals.
fn numeric(mut raw: &[u8]) -> std::result::Result<Cell<'static>, String> {
    let short = || "NUMERIC value is truncated".to_string();
    let ndigits = raw.read_i16().ok_or_else(short)?;
    let weight = raw.read_i16().ok_or_else(short)?;
    let sign = raw.read_u16().ok_or_else(short)?;
    let _dscale = raw.read_u16().ok_or_else(short)?;
    if sign == 0xC000 {
        return Ok(Cell::Real(f64::NAN));
    }
    let mut value = 0f64;
    let mut whole = true;
    for i in 0..ndigits {
        let d = f64::from(raw.read_i16().ok_or_else(short)?);
        let exp = i32::from(weight) - i32::from(i);
        if exp < 0 && d != 0.0 {
            whole = false;
        }
        value += d * 10_000f64.powi(exp);
    }
    if sign == 0x4000 {
        value = -value;
    }
    if whole && value.abs() < 9.0e15 {
        Ok(Cell::Int(value as i64))
    } else {
        Ok(Cell::Real(value))
    }
}

/// Big-endian reads from a byte slice, advancing it.
mod be {
    pub trait Buf {
        fn read_i16(&mut self) -> Option<i16>;
        fn read_u16(&mut self) -> Option<u16>;
    }
    impl Buf for &[u8] {
        fn read_i16(&mut self) -> Option<i16> {
            let (head, rest) = self.split_first_chunk::<2>()?;
            *self = rest;
            Some(i16::from_be_bytes(*head))
        }
        fn read_u16(&mut self) -> Option<u16> {
            let (head, rest) = self.split_first_chunk::<2>()?;
            *self = rest;
            Some(u16::from_be_bytes(*head))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_reads_whole_and_fractional_values() {
        // 12345678 = [1234, 5678], weight 1.
        let raw = [0, 2, 0, 1, 0, 0, 0, 0, 0x04, 0xD2, 0x16, 0x2E];
        assert_eq!(numeric(&raw), Ok(Cell::Int(12_345_678)));
        // -1.5 = [1, 5000], weight 0, negative.
        let raw = [0, 2, 0, 0, 0x40, 0, 0, 1, 0, 1, 0x13, 0x88];
        assert_eq!(numeric(&raw), Ok(Cell::Real(-1.5)));
        // 0: no digits.
        assert_eq!(numeric(&[0, 0, 0, 0, 0, 0, 0, 0]), Ok(Cell::Int(0)));
        assert!(numeric(&[0, 2, 0]).is_err());
    }

    #[test]
    fn integers_round_trip_through_numeric() {
        for v in [0i64, 7, 10_000, 123_456_789, -42] {
            let mut out = bytes::BytesMut::new();
            numeric_from_i64(v, &mut out).expect("encode");
            assert_eq!(numeric(&out), Ok(Cell::Int(v)), "{v}");
        }
    }
}
