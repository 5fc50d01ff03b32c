//! Splits a JSON document into the report objects it contains, reading structure only
//! (strings, escapes, brackets) and handing each object over as one byte buffer.
//!
//! serde_json's reader-based parser goes byte by byte through `io::Read`; parsing each
//! object from memory instead is several times faster, and one object's bad syntax only
//! costs that object: the split stays in step as long as brackets and strings balance.
//!
//! Recognized top levels: an array of objects; an object with `items` (a List); an object
//! keyed by CRD plural names; anything else is one object.

use std::io::{self, Read};

use super::Position;
use crate::model::ReportKind;

/// One object found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub position: Position,
    pub kind_hint: Option<ReportKind>,
    pub bytes: Vec<u8>,
}

/// Why splitting stopped.
#[derive(Debug)]
pub enum SplitError {
    Io(io::Error),
    /// Bad structure at a byte offset; objects before it were handed over.
    Syntax {
        offset: u64,
        message: String,
    },
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::Io(e) => write!(f, "cannot read: {e}"),
            SplitError::Syntax { offset, message } => {
                write!(
                    f,
                    "invalid JSON at byte {offset}: {message}; objects after this point were not read"
                )
            }
        }
    }
}

const CHUNK: usize = 256 * 1024;
/// Objects larger than this are refused (etcd caps a report at ~1.5 MiB; this leaves
/// room for hand-made exports while bounding memory on hostile input).
pub const MAX_OBJECT: usize = 256 * 1024 * 1024;

struct Scanner<R> {
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Bytes consumed before `buf[0]`.
    base: u64,
    eof: bool,
}

impl<R: Read> Scanner<R> {
    fn new(reader: R) -> Self {
        Scanner {
            reader,
            buf: vec![0; CHUNK],
            pos: 0,
            end: 0,
            base: 0,
            eof: false,
        }
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn syntax(&self, message: impl Into<String>) -> SplitError {
        SplitError::Syntax {
            offset: self.offset(),
            message: message.into(),
        }
    }

    /// Refills when the buffer is consumed; false at end of input.
    fn fill(&mut self) -> Result<bool, SplitError> {
        if self.pos < self.end {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        self.base += self.end as u64;
        self.pos = 0;
        self.end = 0;
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SplitError::Io(e)),
            }
        }
    }

    fn skip_ws(&mut self) -> Result<Option<u8>, SplitError> {
        loop {
            if !self.fill()? {
                return Ok(None);
            }
            while self.pos < self.end {
                let b = self.buf[self.pos];
                if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), SplitError> {
        match self.skip_ws()? {
            Some(b) if b == want => {
                self.pos += 1;
                Ok(())
            }
            Some(b) => Err(self.syntax(format!(
                "expected `{}`, found `{}`",
                want as char, b as char
            ))),
            None => Err(self.syntax(format!(
                "unexpected end of input, expected `{}`",
                want as char
            ))),
        }
    }

    /// Copies one complete JSON value (object, array, string or scalar) into `out`.
    fn capture_value(&mut self, out: &mut Vec<u8>) -> Result<(), SplitError> {
        let first = match self.skip_ws()? {
            Some(b) => b,
            None => return Err(self.syntax("unexpected end of input, expected a value")),
        };
        match first {
            b'{' | b'[' => self.capture_balanced(out, false),
            b'"' => {
                out.push(b'"');
                self.pos += 1;
                self.capture_balanced(out, true)
            }
            _ => self.capture_scalar(out),
        }
    }

    /// From an opening bracket to its matching close, or (`in_string`) from just after an
    /// opening quote to the closing one; brackets inside strings do not count.
    fn capture_balanced(
        &mut self,
        out: &mut Vec<u8>,
        mut in_string: bool,
    ) -> Result<(), SplitError> {
        // Open brackets, innermost last: a `}` closing a `[` is caught here, not later.
        let mut open: Vec<u8> = Vec::new();
        let mut escape = false;
        loop {
            if !self.fill()? {
                return Err(self.syntax("unexpected end of input inside a value"));
            }
            let start = self.pos;
            let mut i = self.pos;
            let mut done = false;
            while i < self.end {
                let b = self.buf[i];
                i += 1;
                if in_string {
                    if escape {
                        escape = false;
                    } else if b == b'\\' {
                        escape = true;
                    } else if b == b'"' {
                        in_string = false;
                        if open.is_empty() {
                            done = true;
                            break;
                        }
                    } else if let Some(skip) = memchr::memchr2(b'"', b'\\', &self.buf[i..self.end])
                    {
                        // Jump over the plain run of the string.
                        i += skip;
                    } else {
                        i = self.end;
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => {
                        open.push(b);
                        if open.len() > 512 {
                            self.pos = i;
                            return Err(self.syntax("nested more than 512 levels"));
                        }
                    }
                    b'}' | b']' => {
                        let want = if b == b'}' { b'{' } else { b'[' };
                        if open.pop() != Some(want) {
                            self.pos = i - 1;
                            return Err(self.syntax(format!("unexpected `{}`", b as char)));
                        }
                        if open.is_empty() {
                            done = true;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            out.extend_from_slice(&self.buf[start..i]);
            self.pos = i;
            if out.len() > MAX_OBJECT {
                return Err(self.syntax(format!("a value is larger than {MAX_OBJECT} bytes")));
            }
            if done {
                return Ok(());
            }
        }
    }

    fn capture_scalar(&mut self, out: &mut Vec<u8>) -> Result<(), SplitError> {
        loop {
            if !self.fill()? {
                return Ok(());
            }
            while self.pos < self.end {
                let b = self.buf[self.pos];
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    return Ok(());
                }
                out.push(b);
                self.pos += 1;
                if out.len() > 4096 {
                    return Err(self.syntax("a scalar is too long"));
                }
            }
        }
    }

    /// Streams the elements of the array whose `[` is next.
    fn elements(
        &mut self,
        sink: &mut dyn FnMut(Item),
        position: &dyn Fn(usize) -> Position,
        kind_hint: Option<ReportKind>,
    ) -> Result<(), SplitError> {
        self.expect(b'[')?;
        if self.skip_ws()? == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        let mut i = 0usize;
        loop {
            let mut bytes = Vec::new();
            self.capture_value(&mut bytes)?;
            sink(Item {
                position: position(i),
                kind_hint,
                bytes,
            });
            i += 1;
            match self.skip_ws()? {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b) => {
                    return Err(self.syntax(format!("expected `,` or `]`, found `{}`", b as char)));
                }
                None => return Err(self.syntax("unexpected end of input inside an array")),
            }
        }
    }
}

/// `vulnerabilityreports.aquasecurity.github.io` or `vulnerabilityreports`.
fn plural_key(key: &str) -> Option<ReportKind> {
    let (name, group) = key.split_once('.').unwrap_or((key, ""));
    if !group.is_empty() && group != "aquasecurity.github.io" {
        return None;
    }
    ReportKind::from_plural(name)
}

/// Reads the whole document and hands every object to `sink`.
pub fn split<R: Read>(reader: R, sink: &mut dyn FnMut(Item)) -> Result<(), SplitError> {
    let mut s = Scanner::new(reader);
    match s.skip_ws()? {
        None => return Ok(()),
        Some(b'[') => s.elements(sink, &Position::Index, None)?,
        Some(b'{') => top_object(&mut s, sink)?,
        Some(b) => {
            return Err(s.syntax(format!(
                "expected an object or an array, found `{}`",
                b as char
            )));
        }
    }
    match s.skip_ws()? {
        None => Ok(()),
        Some(_) => Err(s.syntax("trailing characters after the document")),
    }
}

fn top_object<R: Read>(s: &mut Scanner<R>, sink: &mut dyn FnMut(Item)) -> Result<(), SplitError> {
    s.expect(b'{')?;
    // The object's own fields, kept to re-assemble it when it is a single report.
    let mut fields: Vec<u8> = Vec::with_capacity(1024);
    fields.push(b'{');
    let mut streamed = false;
    let mut first = true;
    loop {
        match s.skip_ws()? {
            Some(b'}') => {
                s.pos += 1;
                break;
            }
            Some(b',') if !first => s.pos += 1,
            Some(_) if first => {}
            Some(b) => return Err(s.syntax(format!("expected `,` or `}}`, found `{}`", b as char))),
            None => return Err(s.syntax("unexpected end of input inside the top-level object")),
        }
        first = false;
        let mut key_raw = Vec::new();
        match s.skip_ws()? {
            Some(b'"') => s.capture_value(&mut key_raw)?,
            _ => return Err(s.syntax("expected a string key")),
        }
        let key: String =
            serde_json::from_slice(&key_raw).map_err(|e| s.syntax(format!("bad key: {e}")))?;
        s.expect(b':')?;
        let is_items = key == "items";
        let plural = if is_items { None } else { plural_key(&key) };
        let array_next = s.skip_ws()? == Some(b'[');
        if (is_items || plural.is_some()) && array_next {
            let position: Box<dyn Fn(usize) -> Position> = match plural {
                Some(_) => {
                    let k = key.clone();
                    Box::new(move |i| Position::Keyed(k.clone(), i))
                }
                None => Box::new(Position::Index),
            };
            s.elements(sink, &*position, plural)?;
            streamed = true;
        } else {
            if fields.len() > 1 {
                fields.push(b',');
            }
            fields.extend_from_slice(&key_raw);
            fields.push(b':');
            s.capture_value(&mut fields)?;
            if fields.len() > MAX_OBJECT {
                return Err(s.syntax(format!("an object is larger than {MAX_OBJECT} bytes")));
            }
        }
    }
    if !streamed {
        fields.push(b'}');
        sink(Item {
            position: Position::Whole,
            kind_hint: None,
            bytes: fields,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> (Vec<(Position, String)>, Option<String>) {
        let mut items = Vec::new();
        // A tiny reader chunk size exercises refills at every boundary.
        let reader = Trickle(input.as_bytes(), 3);
        let r = split(reader, &mut |i| {
            items.push((i.position, String::from_utf8(i.bytes).expect("utf8")))
        });
        (items, r.err().map(|e| e.to_string()))
    }

    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn list_items_are_split() {
        let (items, err) = run(
            r#" {"apiVersion":"v1","items":[{"a":"x}]\"y"}, {"b":[1,{"c":2}]} ],"kind":"List"} "#,
        );
        assert_eq!(err, None);
        assert_eq!(
            items,
            [
                (Position::Index(0), r#"{"a":"x}]\"y"}"#.to_owned()),
                (Position::Index(1), r#"{"b":[1,{"c":2}]}"#.to_owned())
            ]
        );
    }

    #[test]
    fn single_object_is_reassembled_exactly() {
        let src = r#"{"kind":"VulnerabilityReport","metadata":{"name":"n"},"report":{"x":[1,2,"]"]},"n":null,"t":true,"f":-1.5e3}"#;
        let (items, err) = run(src);
        assert_eq!(err, None);
        assert_eq!(items, [(Position::Whole, src.to_owned())]);
        let v: serde_json::Value = serde_json::from_str(&items[0].1).expect("valid");
        assert_eq!(v["f"], -1500.0);
    }

    #[test]
    fn arrays_and_plural_keys() {
        let (items, _) = run(r#"[{"a":1},{"b":2}]"#);
        assert_eq!(items.len(), 2);
        let (items, _) = run(
            r#"{"vulnerabilityreports.aquasecurity.github.io":[{"x":1}],"sbomreports":[],"other":[{"y":1}]}"#,
        );
        assert_eq!(
            items,
            [(
                Position::Keyed("vulnerabilityreports.aquasecurity.github.io".into(), 0),
                r#"{"x":1}"#.to_owned()
            )]
        );
        let (items, _) = run(r#"{"items":null,"kind":"List"}"#);
        assert_eq!(items.len(), 1, "items not an array: the object itself");
    }

    #[test]
    fn errors_keep_what_came_before() {
        let (items, err) = run(r#"{"items":[{"a":1},{"b":"#);
        assert_eq!(items.len(), 1);
        assert!(err.expect("error").contains("unexpected end of input"));
        let (items, err) = run(r#"[{"a":1} {"b":2}]"#);
        assert_eq!(items.len(), 1);
        assert!(err.expect("error").contains("expected `,` or `]`"));
        let (_, err) = run("nope");
        assert!(
            err.expect("error")
                .contains("expected an object or an array")
        );
        let (_, err) = run("{} x");
        assert!(err.expect("error").contains("trailing characters"));
        let (items, err) = run("  \n ");
        assert!(items.is_empty() && err.is_none());
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        let (_, err) = run(&deep);
        assert!(err.expect("error").contains("nested more than 512 levels"));
    }
}
