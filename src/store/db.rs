//! One connection to the store's database, SQLite or PostgreSQL, behind one small API
//! shaped like rusqlite's: the store and the outputs write their SQL once, in the
//! dialect both engines share (`?N` placeholders, `ON CONFLICT`, `RETURNING`, `CAST`),
//! and never know which engine runs it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use super::pg::PgConn;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A database error: the engine's own message, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {message}")]
    Postgres {
        message: String,
        /// The SQLSTATE, when the server sent one.
        code: Option<String>,
    },
    #[error("query returned no rows")]
    NoRows,
    #[error("column {index}: {message}")]
    Column { index: usize, message: String },
    #[error("parameter {index}: {message}")]
    Param { index: usize, message: String },
}

impl Error {
    pub(crate) fn column(index: usize, message: impl Into<String>) -> Error {
        Error::Column {
            index,
            message: message.into(),
        }
    }

    /// True when another writer held a lock for too long (SQLite's BUSY/LOCKED; on
    /// PostgreSQL a lock timeout or a deadlock the server broke).
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Error::Postgres { code: Some(c), .. } => {
                matches!(c.as_str(), "55P03" | "40P01" | "40001")
            }
            _ => false,
        }
    }

    pub fn is_no_rows(&self) -> bool {
        matches!(
            self,
            Error::NoRows | Error::Sqlite(rusqlite::Error::QueryReturnedNoRows)
        )
    }
}

/// `.optional()` on a one-row query, as rusqlite's `OptionalExtension`.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_no_rows() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One value, borrowed: a parameter on its way in, a column on its way out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl Cell<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Int(_) => "an integer",
            Cell::Real(_) => "a real",
            Cell::Text(_) => "text",
            Cell::Blob(_) => "a blob",
        }
    }
}

/// A Rust value that can be a parameter.
pub trait ToValue {
    fn to_cell(&self) -> Cell<'_>;
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_cell(&self) -> Cell<'_> {
                Cell::Int(i64::from(*self))
            }
        }
    )*};
}
int_to_value!(i64, i32, u32, i16, u16, u8, bool);

impl ToValue for usize {
    fn to_cell(&self) -> Cell<'_> {
        // Counts and lengths: far below i64::MAX on any machine this runs on.
        Cell::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToValue for u64 {
    fn to_cell(&self) -> Cell<'_> {
        Cell::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToValue for f64 {
    fn to_cell(&self) -> Cell<'_> {
        Cell::Real(*self)
    }
}
impl ToValue for str {
    fn to_cell(&self) -> Cell<'_> {
        Cell::Text(self)
    }
}
impl ToValue for String {
    fn to_cell(&self) -> Cell<'_> {
        Cell::Text(self)
    }
}
impl ToValue for [u8] {
    fn to_cell(&self) -> Cell<'_> {
        Cell::Blob(self)
    }
}
impl ToValue for Vec<u8> {
    fn to_cell(&self) -> Cell<'_> {
        Cell::Blob(self)
    }
}
impl<const N: usize> ToValue for [u8; N] {
    fn to_cell(&self) -> Cell<'_> {
        Cell::Blob(self)
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_cell(&self) -> Cell<'_> {
        (**self).to_cell()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_cell(&self) -> Cell<'_> {
        match self {
            Some(v) => v.to_cell(),
            None => Cell::Null,
        }
    }
}
impl ToValue for Cell<'_> {
    fn to_cell(&self) -> Cell<'_> {
        *self
    }
}

/// The parameters of one statement.
pub trait Params {
    fn cells(&self) -> Vec<Cell<'_>>;
}

impl Params for &[&dyn ToValue] {
    fn cells(&self) -> Vec<Cell<'_>> {
        self.iter().map(|v| v.to_cell()).collect()
    }
}
impl<const N: usize> Params for [&dyn ToValue; N] {
    fn cells(&self) -> Vec<Cell<'_>> {
        self.iter().map(|v| v.to_cell()).collect()
    }
}
impl<const N: usize> Params for &[&dyn ToValue; N] {
    fn cells(&self) -> Vec<Cell<'_>> {
        self.iter().map(|v| v.to_cell()).collect()
    }
}
impl Params for Vec<&dyn ToValue> {
    fn cells(&self) -> Vec<Cell<'_>> {
        self.iter().map(|v| v.to_cell()).collect()
    }
}
impl Params for &Vec<&dyn ToValue> {
    fn cells(&self) -> Vec<Cell<'_>> {
        self.iter().map(|v| v.to_cell()).collect()
    }
}
impl Params for Vec<Cell<'_>> {
    fn cells(&self) -> Vec<Cell<'_>> {
        self.clone()
    }
}

/// `params![a, b]`, as rusqlite's.
macro_rules! params {
    () => { &[] as &[&dyn $crate::store::db::ToValue] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::store::db::ToValue),+] as &[&dyn $crate::store::db::ToValue] };
}
pub(crate) use params;

/// A Rust value a column can be read as.
pub trait FromValue: Sized {
    fn from_cell(cell: Cell<'_>, index: usize) -> Result<Self>;
}

fn mismatch<T>(cell: Cell<'_>, index: usize, want: &str) -> Result<T> {
    Err(Error::column(
        index,
        format!("holds {}, expected {want}", cell.kind()),
    ))
}

impl FromValue for i64 {
    fn from_cell(cell: Cell<'_>, index: usize) -> Result<Self> {
        match cell {
            Cell::Int(v) => Ok(v),
            // NUMERIC results (a PostgreSQL SUM) that are whole numbers.
            Cell::Real(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(v as i64),
            other => mismatch(other, index, "an integer"),
        }
    }
}
macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_cell(cell: Cell<'_>, index: usize) -> Result<Self> {
                let v = i64::from_cell(cell, index)?;
                <$t>::try_from(v).map_err(|_| {
                    Error::column(index, format!("{v} is out of range for {}", stringify!($t)))
                })
            }
        }
    )*};
}
int_from_value!(i32, u32, u64, usize, u16, u8);

impl FromValue for bool {
    fn from_cell(cell: Cell<'_>, index: usize) -> Result<Self> {
        Ok(i64::from_cell(cell, index)? != 0)
    }
}
impl FromValue for f64 {
    fn from_cell(cell: Cell<'_>, index: usize) -> Result<Self> {
        match cell {
            Cell::Real(v) => Ok(v),
            Cell::Int(v) => Ok(v as f64),
            other => mismatch(other, index, "a number"),
        }
    }
}
impl FromValue for String {
    fn from_cell(cell: Cell<'_>, index: usize) -> Result<Self> {
        match cell {
            Cell::Text(s) => Ok(s.to_owned()),
            other => mismatch(other, index, "text"),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_cell(cell: Cell<'_>, index: usize) -> Result<Self> {
        match cell {
            Cell::Blob(b) => Ok(b.to_vec()),
            Cell::Text(s) => Ok(s.as_bytes().to_vec()),
            other => mismatch(other, index, "a blob"),
        }
    }
}
impl<const N: usize> FromValue for [u8; N] {
    fn from_cell(cell: Cell<'_>, index: usize) -> Result<Self> {
        match cell {
            Cell::Blob(b) => <[u8; N]>::try_from(b).map_err(|_| {
                Error::column(index, format!("holds {} bytes, expected {N}", b.len()))
            }),
            other => mismatch(other, index, "a blob"),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_cell(cell: Cell<'_>, index: usize) -> Result<Self> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other, index).map(Some),
        }
    }
}

/// One result row.
pub struct Row<'a>(RowInner<'a>);

enum RowInner<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Pg(&'a tokio_postgres::Row),
}

impl Row<'_> {
    pub fn get<I: ColumnIndex, T: FromValue>(&self, index: I) -> Result<T> {
        let index = index.index();
        match &self.0 {
            RowInner::Sqlite(r) => {
                let v = r.get_ref(index)?;
                let cell = match v {
                    rusqlite::types::ValueRef::Null => Cell::Null,
                    rusqlite::types::ValueRef::Integer(i) => Cell::Int(i),
                    rusqlite::types::ValueRef::Real(f) => Cell::Real(f),
                    rusqlite::types::ValueRef::Text(t) => {
                        Cell::Text(std::str::from_utf8(t).map_err(|e| {
                            Error::column(index, format!("text is not UTF-8 ({e})"))
                        })?)
                    }
                    rusqlite::types::ValueRef::Blob(b) => Cell::Blob(b),
                };
                T::from_cell(cell, index)
            }
            RowInner::Pg(r) => {
                if index >= r.len() {
                    return Err(Error::column(index, "no such column"));
                }
                let raw = r
                    .try_get::<_, super::pg::Raw<'_>>(index)
                    .map_err(|e| Error::column(index, e.to_string()))?;
                let cell = raw.cell(index)?;
                T::from_cell(cell, index)
            }
        }
    }
}

/// A column index (by position, as everywhere in this code).
pub trait ColumnIndex {
    fn index(self) -> usize;
}
impl ColumnIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// One open connection.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Db::Sqlite(_) => f.write_str("Db::Sqlite"),
            Db::Postgres(_) => f.write_str("Db::Postgres"),
        }
    }
}

fn sqlite_params<'a>(cells: &'a [Cell<'a>]) -> Vec<&'a dyn rusqlite::ToSql> {
    cells.iter().map(|c| c as &dyn rusqlite::ToSql).collect()
}

impl rusqlite::ToSql for Cell<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Cell::Null => ValueRef::Null,
            Cell::Int(i) => ValueRef::Integer(i),
            Cell::Real(f) => ValueRef::Real(f),
            Cell::Text(s) => ValueRef::Text(s.as_bytes()),
            Cell::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl Db {
    /// A connection to a PostgreSQL database, without the store's migrations (for tools
    /// and tests that look at a database directly).
    pub fn connect_postgres(target: &super::PgTarget) -> Result<Db> {
        PgConn::connect(target).map(Db::Postgres)
    }

    pub fn engine(&self) -> Engine {
        match self {
            Db::Sqlite(_) => Engine::Sqlite,
            Db::Postgres(_) => Engine::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (PRAGMAs, its test helpers).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match self {
            Db::Sqlite(c) => Some(c),
            Db::Postgres(_) => None,
        }
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    pub fn query_row<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Several statements without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(c) => c.batch(sql),
        }
    }

    pub fn prepare(&self, sql: &str) -> Result<Stmt<'_>> {
        match self {
            Db::Sqlite(c) => Ok(Stmt(StmtInner::SqlitePlain(c.prepare(sql)?))),
            Db::Postgres(c) => Ok(Stmt(StmtInner::Pg(c, c.prepare(sql)?))),
        }
    }

    pub fn prepare_cached(&self, sql: &str) -> Result<Stmt<'_>> {
        match self {
            Db::Sqlite(c) => Ok(Stmt(StmtInner::SqliteCached(c.prepare_cached(sql)?))),
            Db::Postgres(c) => Ok(Stmt(StmtInner::Pg(c, c.prepare(sql)?))),
        }
    }
}

/// A prepared statement.
pub struct Stmt<'c>(StmtInner<'c>);

enum StmtInner<'c> {
    SqliteCached(rusqlite::CachedStatement<'c>),
    SqlitePlain(rusqlite::Statement<'c>),
    Pg(&'c PgConn, tokio_postgres::Statement),
}

impl<'c> Stmt<'c> {
    fn sqlite(&mut self) -> Option<&mut rusqlite::Statement<'c>> {
        match &mut self.0 {
            StmtInner::SqliteCached(s) => Some(s),
            StmtInner::SqlitePlain(s) => Some(s),
            StmtInner::Pg(..) => None,
        }
    }

    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let cells = params.cells();
        if let Some(s) = self.sqlite() {
            return Ok(s.execute(&*sqlite_params(&cells))?);
        }
        match &self.0 {
            StmtInner::Pg(c, st) => c.execute(st, &cells),
            _ => unreachable!("handled above"),
        }
    }

    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        let cells = params.cells();
        if let StmtInner::Pg(c, st) = &self.0 {
            let rows = c.query(st, &cells)?;
            return Ok(Rows(RowsInner::Pg(rows.into_iter(), None)));
        }
        let s = self.sqlite().expect("not PostgreSQL");
        Ok(Rows(RowsInner::Sqlite(s.query(&*sqlite_params(&cells))?)))
    }

    pub fn query_row<T, P: Params>(
        &mut self,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(r) => f(&r),
            None => Err(Error::NoRows),
        }
    }

    pub fn query_map<T, P: Params, F: FnMut(&Row<'_>) -> Result<T>>(
        &mut self,
        params: P,
        f: F,
    ) -> Result<MappedRows<'_, F>> {
        Ok(MappedRows {
            rows: self.query(params)?,
            f,
        })
    }

    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool> {
        Ok(self.query(params)?.next()?.is_some())
    }
}

/// The rows of a query, read one at a time.
pub struct Rows<'s>(RowsInner<'s>);

enum RowsInner<'s> {
    Sqlite(rusqlite::Rows<'s>),
    Pg(
        std::vec::IntoIter<tokio_postgres::Row>,
        Option<tokio_postgres::Row>,
    ),
}

impl Rows<'_> {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        match &mut self.0 {
            RowsInner::Sqlite(r) => Ok(r.next()?.map(|r| Row(RowInner::Sqlite(r)))),
            RowsInner::Pg(it, cur) => {
                *cur = it.next();
                Ok(cur.as_ref().map(|r| Row(RowInner::Pg(r))))
            }
        }
    }
}

/// `query_map`'s iterator.
pub struct MappedRows<'s, F> {
    rows: Rows<'s>,
    f: F,
}

impl<T, F: FnMut(&Row<'_>) -> Result<T>> Iterator for MappedRows<'_, F> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(r)) => Some((self.f)(&r)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// PostgreSQL's prepared statements, kept per connection as rusqlite keeps SQLite's.
pub(super) struct StatementCache {
    map: RefCell<HashMap<String, tokio_postgres::Statement>>,
}

impl StatementCache {
    /// Dynamic SQL (IN lists of varying length) must not grow it without bound.
    const CAPACITY: usize = 512;

    pub(super) fn new() -> StatementCache {
        StatementCache {
            map: RefCell::new(HashMap::new()),
        }
    }

    pub(super) fn get(&self, sql: &str) -> Option<tokio_postgres::Statement> {
        self.map.borrow().get(sql).cloned()
    }

    pub(super) fn put(&self, sql: &str, st: tokio_postgres::Statement) {
        let mut map = self.map.borrow_mut();
        if map.len() >= Self::CAPACITY {
            map.clear();
        }
        map.insert(sql.to_owned(), st);
    }

    pub(super) fn clear(&self) {
        self.map.borrow_mut().clear();
    }
}

/// SQL in the shared dialect, as PostgreSQL reads it: `?1`/`?` placeholders become
/// `$1`, and SQLite's scalar `MAX(a, b)`/`MIN(a, b)` become `GREATEST`/`LEAST` (the
/// store only uses them on NOT NULL columns, where both mean the same). Quoted text,
/// identifiers and comments are left untouched.
pub fn to_postgres(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut next = 1usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                let end = sql[i + 1..]
                    .find(c as char)
                    .map_or(b.len(), |j| i + 1 + j + 1);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = sql[i..].find('\n').map_or(b.len(), |j| i + j + 1);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'?' => {
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                out.push('$');
                if j == i + 1 {
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push_str(&sql[i + 1..j]);
                }
                i = j;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let word = &sql[i..j];
                let scalar = (word.eq_ignore_ascii_case("max") || word.eq_ignore_ascii_case("min"))
                    && b.get(j) == Some(&b'(')
                    && has_top_level_comma(&sql[j..]);
                match (scalar, word.eq_ignore_ascii_case("max")) {
                    (true, true) => out.push_str("GREATEST"),
                    (true, false) => out.push_str("LEAST"),
                    (false, _) => out.push_str(word),
                }
                i = j;
            }
            _ => {
                // Multi-byte characters are copied whole.
                let len = sql[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&sql[i..i + len]);
                i += len;
            }
        }
    }
    out
}

/// Whether the parenthesised list `s` starts with holds a comma at its own level.
fn has_top_level_comma(s: &str) -> bool {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' => depth += 1,
            ')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return false;
                }
            }
            ',' if depth == 1 => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            to_postgres("SELECT '?1', \"a?\" FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $1 AND b = $12"
        );
        assert_eq!(
            to_postgres("VALUES(?, ?) -- ? here\n, ?"),
            "VALUES($1, $2) -- ? here\n, $3"
        );
    }

    #[test]
    fn scalar_max_and_min_become_greatest_and_least() {
        assert_eq!(
            to_postgres("SET a = MAX(a, excluded.a), b = min(b, ?2), c = (SELECT MAX(x) FROM t)"),
            "SET a = GREATEST(a, excluded.a), b = LEAST(b, $2), c = (SELECT MAX(x) FROM t)"
        );
        assert_eq!(
            to_postgres("SELECT MAX(COALESCE(a, 0)), MAX(f(a, b)), maxima, 'MAX(a, b)'"),
            "SELECT MAX(COALESCE(a, 0)), MAX(f(a, b)), maxima, 'MAX(a, b)'"
        );
    }

    #[test]
    fn sqlite_rows_read_through_the_common_api() {
        let db = Db::Sqlite(rusqlite::Connection::open_in_memory().expect("open"));
        db.execute_batch("CREATE TABLE t(a INTEGER, b TEXT, c BLOB)")
            .expect("create");
        db.execute(
            "INSERT INTO t VALUES(?1, ?2, ?3)",
            params![7i64, "x", vec![1u8, 2]],
        )
        .expect("insert");
        let (a, b, c): (i64, String, Vec<u8>) = db
            .query_row("SELECT a, b, c FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("row");
        assert_eq!((a, b.as_str(), c), (7, "x", vec![1, 2]));
        let none: Option<i64> = db
            .query_row("SELECT a FROM t WHERE a = 8", [], |r| r.get(0))
            .optional()
            .expect("optional");
        assert_eq!(none, None);
        let err = db
            .query_row("SELECT b FROM t", [], |r| r.get::<_, i64>(0))
            .expect_err("text is no integer");
        assert!(err.to_string().contains("column 0"), "{err}");
    }
}
