//! Reports from files, directories and stdin, in every container users export them in:
//! a single object, `kind: List`, a bare JSON array, an object keyed by CRD plural name,
//! multi-document YAML, and Trivy Operator's alternate-storage folders.
//!
//! JSON is streamed (`json_stream`): each object is handed to the caller as soon as it is
//! read and then dropped, so memory does not grow with the size of a
//! `kubectl get -A -o json` export.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{InputError, Origin, Position, RawObject, json_stream};
use crate::model::ReportKind;

/// An input named on the command line.
#[derive(Debug, Clone)]
pub enum Input {
    Stdin,
    /// The report CRDs of the cluster the kubeconfig (or in-cluster config) points at.
    Cluster,
    Path(PathBuf),
}

impl Input {
    /// `-` is stdin, `cluster` the cluster (write `./cluster` for a folder of that name).
    pub fn parse(s: &str) -> Input {
        match s {
            "-" => Input::Stdin,
            "cluster" => Input::Cluster,
            _ => Input::Path(PathBuf::from(s)),
        }
    }
}

/// One file to read, found by expanding the inputs.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub input: Input,
    pub display: String,
    /// Known size, for progress; `None` for stdin, FIFOs and devices (read as streams).
    pub size: Option<u64>,
}

/// Expands directories (recursively, sorted, skipping hidden entries and files that are
/// not JSON or YAML). A path that cannot be listed becomes an error, not a stop.
///
/// Symlinked directories are followed; each directory is entered once, known by its
/// (device, inode), so a link back up the tree or two links to one folder read it once.
/// A path named on the command line is read whatever it is (a regular file, a FIFO such
/// as `<(cat export.json)`, `/dev/stdin`); inside a directory anything that is neither a
/// regular file nor a directory is an error, never skipped silently.
pub fn discover(inputs: &[Input]) -> (Vec<SourceFile>, Vec<InputError>) {
    let mut walker = Walker::default();
    for input in inputs {
        match input {
            Input::Stdin => walker.files.push(SourceFile {
                input: Input::Stdin,
                display: "<stdin>".into(),
                size: None,
            }),
            Input::Path(p) => walker.walk(p, true),
            Input::Cluster => {}
        }
    }
    (walker.files, walker.errors)
}

#[derive(Default)]
struct Walker {
    files: Vec<SourceFile>,
    errors: Vec<InputError>,
    /// Directories entered, by identity rather than path (loop protection).
    visited: std::collections::HashSet<DirId>,
}

impl Walker {
    fn error(&mut self, display: &str, message: String) {
        self.errors.push(InputError {
            origin: Origin::file(display),
            message,
        });
    }

    fn walk(&mut self, path: &Path, explicit: bool) {
        let display = path.display().to_string();
        // Follows symlinks; a loop of links is reported by the OS (ELOOP) and lands here.
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return self.error(&display, format!("cannot read: {e}")),
        };
        let file_type = meta.file_type();
        if file_type.is_file() {
            // A file named explicitly is read whatever its extension.
            if explicit || has_report_extension(path) {
                self.files.push(SourceFile {
                    input: Input::Path(path.to_owned()),
                    display,
                    size: Some(meta.len()),
                });
            }
            return;
        }
        if file_type.is_dir() {
            if !self.visited.insert(DirId::of(path, &meta)) {
                // Already read through another path: its objects were handed over once.
                tracing::debug!(path = %path.display(), "directory already read, not entered again");
                return;
            }
            return self.dir(path, &display);
        }
        let what = special_kind(&file_type);
        if explicit && what != "a socket" {
            // `--from <(cat export.json)`, `--from /dev/stdin`: read as a stream.
            self.files.push(SourceFile {
                input: Input::Path(path.to_owned()),
                display,
                size: None,
            });
            return;
        }
        let hint = if explicit {
            ""
        } else {
            "; name it with --from to read it"
        };
        self.error(
            &display,
            format!("not read: {what}, not a regular file or directory{hint}"),
        );
    }

    fn dir(&mut self, path: &Path, display: &str) {
        let entries = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) => return self.error(display, format!("cannot list directory: {e}")),
        };
        let mut children: Vec<PathBuf> = Vec::new();
        for entry in entries {
            match entry {
                // Hidden entries stay out (a ConfigMap mount's `..data`, `..2026_01_01`
                // timestamped copies of the same files).
                Ok(e) => {
                    if !e.file_name().to_string_lossy().starts_with('.') {
                        children.push(e.path());
                    }
                }
                Err(e) => self.error(display, format!("cannot list directory: {e}")),
            }
        }
        children.sort();
        for child in children {
            self.walk(&child, false);
        }
    }
}

/// What identifies a directory however it is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DirId {
    #[cfg(unix)]
    Inode(u64, u64),
    #[cfg_attr(unix, allow(dead_code))]
    Path(PathBuf),
}

impl DirId {
    #[cfg(unix)]
    fn of(_path: &Path, meta: &std::fs::Metadata) -> DirId {
        use std::os::unix::fs::MetadataExt;
        DirId::Inode(meta.dev(), meta.ino())
    }

    #[cfg(not(unix))]
    fn of(path: &Path, _meta: &std::fs::Metadata) -> DirId {
        DirId::Path(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()))
    }
}

#[cfg(unix)]
fn special_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_t: &std::fs::FileType) -> &'static str {
    "a special file"
}

fn has_report_extension(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("json" | "yaml" | "yml")
    )
}

/// The kind implied by an alternate-storage folder (`vulnerability_reports`,
/// `cluster_compliance_report`, ...), compared without separators or case.
pub fn kind_from_folder(path: &Path) -> Option<ReportKind> {
    let folder = path.parent()?.file_name()?.to_str()?;
    let squashed: String = folder
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    ReportKind::ALL.into_iter().find(|k| {
        let lower = k.as_str().to_ascii_lowercase();
        squashed == lower || squashed == k.plural()
    })
}

/// Reads one file and hands every object in it to `sink`. Returns what could not be read.
/// `progress` is told how many bytes were consumed.
pub fn read_file(
    file: &SourceFile,
    sink: &mut dyn FnMut(RawObject),
    progress: &mut dyn FnMut(u64),
) -> Vec<InputError> {
    let (reader, hints): (Box<dyn Read>, Hints) = match &file.input {
        Input::Stdin | Input::Cluster => (Box::new(io::stdin().lock()), Hints::default()),
        Input::Path(p) => match File::open(p) {
            Ok(f) => (Box::new(f), Hints::for_path(p, file.size.is_some())),
            Err(e) => {
                return vec![InputError {
                    origin: Origin::file(&file.display),
                    message: format!("cannot open: {e}"),
                }];
            }
        },
    };
    let mut counted = CountingReader::new(reader, progress);
    let mut head = Vec::with_capacity(4);
    if let Err(e) = (&mut counted).take(4).read_to_end(&mut head) {
        return vec![InputError {
            origin: Origin::file(&file.display),
            message: format!("cannot read: {e}"),
        }];
    }
    let skip = match text_encoding(&head) {
        Ok(skip) => skip,
        Err(message) => {
            return vec![InputError {
                origin: Origin::file(&file.display),
                message,
            }];
        }
    };
    head.drain(..skip);
    let mut reader = BufReader::with_capacity(256 * 1024, io::Cursor::new(head).chain(counted));
    let format = match &file.input {
        Input::Path(p) => Format::from_extension(p),
        Input::Stdin | Input::Cluster => None,
    };
    let format = match format {
        Some(f) => f,
        None => match sniff(&mut reader) {
            Ok(f) => f,
            Err(e) => {
                return vec![InputError {
                    origin: Origin::file(&file.display),
                    message: format!("cannot read: {e}"),
                }];
            }
        },
    };
    let mut ctx = Ctx {
        file: &file.display,
        document: None,
        hints: &hints,
        sink,
    };
    match format {
        Format::Json => read_json(&mut reader, &mut ctx).into_iter().collect(),
        Format::Yaml => read_yaml(&mut reader, &mut ctx),
    }
}

/// Reads objects from an in-memory buffer (used for fuzzing and tests).
pub fn read_bytes(display: &str, bytes: &[u8], sink: &mut dyn FnMut(RawObject)) -> Vec<InputError> {
    let hints = Hints::default();
    let mut ctx = Ctx {
        file: display,
        document: None,
        hints: &hints,
        sink,
    };
    let bytes = match text_encoding(&bytes[..bytes.len().min(4)]) {
        Ok(skip) => &bytes[skip..],
        Err(message) => {
            return vec![InputError {
                origin: Origin::file(display),
                message,
            }];
        }
    };
    let mut reader = bytes;
    match sniff_bytes(bytes) {
        Format::Json => read_json(&mut reader, &mut ctx).into_iter().collect(),
        Format::Yaml => read_yaml(&mut reader, &mut ctx),
    }
}

/// From the first four bytes: how many to skip (a UTF-8 byte-order mark), or why the
/// text cannot be read. Reports are ASCII at the start (`{`, `[`, a key, `-`, `#`), so in
/// UTF-16 or UTF-32 without a BOM every other (or three of four) bytes are zero; UTF-8
/// text has no zero byte there.
fn text_encoding(head: &[u8]) -> Result<usize, String> {
    let name = match head {
        [0xEF, 0xBB, 0xBF, ..] => return Ok(3),
        [0xFF, 0xFE, 0, 0, ..] | [_, 0, 0, 0, ..] => "UTF-32LE",
        [0, 0, 0xFE, 0xFF, ..] | [0, 0, 0, _, ..] => "UTF-32BE",
        [0xFF, 0xFE, ..] => "UTF-16LE",
        [0xFE, 0xFF, ..] => "UTF-16BE",
        [a, 0, ..] if *a != 0 => "UTF-16LE",
        [0, b, ..] if *b != 0 => "UTF-16BE",
        _ => return Ok(0),
    };
    let origin = if name == "UTF-16LE" {
        " (what PowerShell's `>` writes)"
    } else {
        ""
    };
    Err(format!(
        "file is {name}{origin}, not UTF-8; convert it with \
         `Get-Content in.json | Set-Content -Encoding utf8 out.json` or \
         `iconv -f {name} -t UTF-8 in.json > out.json`"
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

impl Format {
    fn from_extension(p: &Path) -> Option<Format> {
        match p.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// JSON starts with `{` or `[` after optional whitespace and BOM; anything else is YAML.
fn sniff_bytes(buf: &[u8]) -> Format {
    let buf = buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(buf);
    match buf.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => Format::Json,
        _ => Format::Yaml,
    }
}

fn sniff<R: io::BufRead>(reader: &mut R) -> io::Result<Format> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(Format::Json);
        }
        let skip = buf
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(buf.len());
        if skip < buf.len() {
            return Ok(sniff_bytes(&buf[skip..]));
        }
        let n = buf.len();
        reader.consume(n);
    }
}

#[derive(Default)]
struct Hints {
    kind: Option<ReportKind>,
    name: Option<String>,
}

impl Hints {
    /// `regular`: a pipe's name (`/dev/fd/63`) says nothing about the object in it.
    fn for_path(p: &Path, regular: bool) -> Hints {
        Hints {
            kind: kind_from_folder(p),
            name: regular
                .then(|| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
                .flatten(),
        }
    }
}

struct Ctx<'a> {
    file: &'a str,
    document: Option<usize>,
    hints: &'a Hints,
    sink: &'a mut dyn FnMut(RawObject),
}

impl Ctx<'_> {
    fn origin(&self, position: Position) -> Origin {
        Origin {
            file: self.file.to_owned(),
            document: self.document,
            position,
        }
    }

    fn emit(&mut self, position: Position, json: Vec<u8>, kind: Option<ReportKind>) {
        let whole = position == Position::Whole;
        let obj = RawObject {
            origin: self.origin(position),
            json,
            kind_hint: kind.or(self.hints.kind),
            // A file name names the object only when the file holds just that object.
            name_hint: if whole { self.hints.name.clone() } else { None },
        };
        (self.sink)(obj);
    }
}

fn read_json<R: Read>(reader: R, ctx: &mut Ctx<'_>) -> Option<InputError> {
    let result = json_stream::split(reader, &mut |item| {
        ctx.emit(item.position, item.bytes, item.kind_hint)
    });
    result.err().map(|e| InputError {
        origin: ctx.origin(Position::Whole),
        message: e.to_string(),
    })
}

/// Aliases per YAML document: each one replays its anchor in full.
const YAML_MAX_ALIASES: usize = 1_000;
/// Text retained by anchors per document, so the most one alias can replay.
const YAML_MAX_ANCHOR_BYTES: usize = 64 * 1024;
/// Events recorded into anchors, and events replayed by aliases, per document.
const YAML_MAX_ALIAS_EVENTS: usize = 100_000;
/// The largest YAML document read (its text, before conversion). YAML is parsed a
/// document at a time in memory, and slowly (about 0.4 s per MB for one large scalar:
/// a 300 MB scalar took 112 s and 950 MB before this cap), while a report object is at
/// most ~1.5 MiB (etcd's limit): 128 MiB holds a `kubectl get -o yaml` List of several
/// hundred reports. JSON is streamed object by object and has no such cap, so larger
/// exports should be JSON. serde-saphyr has no per-scalar limit, only a total per
/// document, so a single scalar is capped by this figure too.
pub const YAML_MAX_DOCUMENT: usize = 128 * 1024 * 1024;

fn yaml_options() -> serde_saphyr::Options {
    // Aliases are the one way a small input becomes a large value (nested anchors expand
    // exponentially: a 250-byte "billion laughs" took seconds and hundreds of MB, a 32 KB
    // one more than 2 GB), and nothing that writes reports uses them; their expansion is
    // bounded: at most YAML_MAX_ALIASES × YAML_MAX_ANCHOR_BYTES (64 MiB) of text and
    // YAML_MAX_ALIAS_EVENTS nodes per document. The text itself is capped before
    // parsing (YAML_MAX_DOCUMENT), so scalar and node counts need no limit of their own.
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: None,
            max_documents: usize::MAX,
            max_nodes: usize::MAX,
            max_events: usize::MAX,
            max_total_scalar_bytes: usize::MAX,
            max_depth: 256,
            max_aliases: YAML_MAX_ALIASES,
            max_recorded_anchor_bytes: YAML_MAX_ANCHOR_BYTES,
            max_recorded_anchor_events: YAML_MAX_ALIAS_EVENTS,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: YAML_MAX_ALIAS_EVENTS,
        },
        with_snippet: false,
    }
}

/// A line that ends one document or starts the next: `---` or `...` at the start of a
/// line, then whitespace or the end of the line. YAML 1.2 forbids these inside any
/// scalar (c-forbidden), so splitting the stream here before parsing is exact, and a
/// syntax error costs only its own document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Start,
    End,
}

fn marker(line: &[u8]) -> Option<Marker> {
    let m = match line.get(..3)? {
        b"---" => Marker::Start,
        b"..." => Marker::End,
        _ => return None,
    };
    match line.get(3) {
        None | Some(b' ' | b'\t' | b'\r' | b'\n') => Some(m),
        _ => None,
    }
}

/// Reads one line (through `\n`), keeping at most `keep` of its bytes in `out` and
/// discarding the rest; returns the line's full length (0 at end of input).
fn read_line<R: io::BufRead>(r: &mut R, out: &mut Vec<u8>, keep: usize) -> io::Result<usize> {
    let mut total = 0usize;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(total);
        }
        let (n, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = keep.saturating_sub(total);
        out.extend_from_slice(&buf[..n.min(room)]);
        total += n;
        r.consume(n);
        if done {
            return Ok(total);
        }
    }
}

/// One document's text as split from the stream.
struct YamlDoc {
    text: Vec<u8>,
    /// Line of the file on which it starts (1-based).
    first_line: u64,
    /// Bytes of text, counted even when too large to keep.
    size: u64,
    too_large: bool,
    /// Holds more than blank lines, comments and directives.
    content: bool,
}

impl YamlDoc {
    fn new(first_line: u64) -> YamlDoc {
        YamlDoc {
            text: Vec::new(),
            first_line,
            size: 0,
            too_large: false,
            content: false,
        }
    }
}

fn read_yaml<R: io::BufRead>(reader: &mut R, ctx: &mut Ctx<'_>) -> Vec<InputError> {
    let mut errors = Vec::new();
    let mut number = 0usize;
    let mut doc = YamlDoc::new(1);
    let mut line_no = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        // Beyond the cap only the first bytes of a line are kept, to find the next marker.
        let keep = if doc.too_large {
            4
        } else {
            YAML_MAX_DOCUMENT + 1 - doc.text.len()
        };
        let n = match read_line(reader, &mut line, keep.max(4)) {
            Ok(n) => n,
            Err(e) => {
                ctx.document = None;
                errors.push(InputError {
                    origin: ctx.origin(Position::Whole),
                    message: format!(
                        "cannot read after line {line_no}: {e}; documents after this point \
                         were not read"
                    ),
                });
                return errors;
            }
        };
        if n == 0 {
            break;
        }
        line_no += 1;
        match marker(&line) {
            Some(Marker::Start) => {
                // Directives and comments before `---` belong to the document it opens.
                if doc.content || doc.too_large {
                    let next = YamlDoc::new(line_no);
                    yaml_document(
                        std::mem::replace(&mut doc, next),
                        &mut number,
                        ctx,
                        &mut errors,
                    );
                }
                doc.content = true;
            }
            Some(Marker::End) => {}
            None => {
                let t = line.trim_ascii_start();
                if !(t.is_empty() || t.starts_with(b"#") || line.starts_with(b"%")) {
                    doc.content = true;
                }
            }
        }
        doc.size += n as u64;
        if !doc.too_large {
            doc.text.extend_from_slice(&line);
            if doc.text.len() > YAML_MAX_DOCUMENT {
                doc.too_large = true;
                doc.text = Vec::new();
            }
        }
        if marker(&line) == Some(Marker::End) {
            let next = YamlDoc::new(line_no + 1);
            yaml_document(
                std::mem::replace(&mut doc, next),
                &mut number,
                ctx,
                &mut errors,
            );
        }
    }
    yaml_document(doc, &mut number, ctx, &mut errors);
    ctx.document = None;
    errors
}

/// Parses one split document and hands its objects over; an error costs only it.
fn yaml_document(
    doc: YamlDoc,
    number: &mut usize,
    ctx: &mut Ctx<'_>,
    errors: &mut Vec<InputError>,
) {
    if !doc.content && !doc.too_large {
        return;
    }
    let fail = |number: usize, ctx: &Ctx<'_>, message: String| InputError {
        origin: Origin {
            document: Some(number),
            ..ctx.origin(Position::Whole)
        },
        message,
    };
    if doc.too_large {
        *number += 1;
        let mib = YAML_MAX_DOCUMENT / (1024 * 1024);
        return errors.push(fail(
            *number,
            ctx,
            format!(
                "YAML document from line {} is larger than {mib} MiB ({} bytes), not read; \
                 export as JSON (`-o json`) for larger inputs",
                doc.first_line, doc.size
            ),
        ));
    }
    let text = match std::str::from_utf8(&doc.text) {
        Ok(t) => t,
        Err(e) => {
            *number += 1;
            let at = e.valid_up_to();
            let before = &doc.text[..at];
            let line = doc.first_line + memchr::memchr_iter(b'\n', before).count() as u64;
            let column = at
                - before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            return errors.push(fail(
                *number,
                ctx,
                format!(
                    "invalid UTF-8 at line {line}, byte {column} of the line (byte 0x{:02X}); \
                     YAML must be UTF-8",
                    doc.text[at]
                ),
            ));
        }
    };
    // The reader-based parser, because it enforces the alias budget on every replay
    // (the string-based one skips text borrowed from the input, so 10,000 aliases of a
    // 30 KB scalar became 300 MB).
    let mut input = text.as_bytes();
    let mut values = Vec::new();
    let mut failed = None;
    for v in serde_saphyr::read_with_options::<_, serde_json::Value>(&mut input, yaml_options()) {
        match v {
            Ok(v) => values.push(v),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failed {
        *number += 1;
        let message = match e.location() {
            Some(loc) => format!(
                "invalid YAML at line {}, column {}: {}",
                doc.first_line + loc.line().saturating_sub(1),
                loc.column(),
                yaml_message(&e)
            ),
            None => format!(
                "invalid YAML in the document at line {}: {}",
                doc.first_line,
                yaml_message(&e)
            ),
        };
        return errors.push(fail(*number, ctx, message));
    }
    for value in values {
        *number += 1;
        let what = match &value {
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => None,
            serde_json::Value::Null => continue,
            serde_json::Value::String(_) => Some("a string"),
            serde_json::Value::Number(_) => Some("a number"),
            serde_json::Value::Bool(_) => Some("a boolean"),
        };
        if let Some(what) = what {
            errors.push(fail(
                *number,
                ctx,
                format!(
                    "YAML document {} (from line {}) is {what}, not a mapping",
                    *number, doc.first_line
                ),
            ));
            continue;
        }
        ctx.document = Some(*number);
        // One code path for every container: the YAML document is re-read as JSON (a
        // sequence at the top is a bare list, as a JSON array is).
        match serde_json::to_vec(&value) {
            Ok(bytes) => {
                drop(value);
                if let Some(e) = read_json(bytes.as_slice(), ctx) {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(InputError {
                origin: ctx.origin(Position::Whole),
                message: format!("cannot convert YAML document: {e}"),
            }),
        }
    }
}

/// The parser's message without its own position (relative to the document, not the
/// file; the caller gives the file's line instead).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = one_line(&e.to_string());
    match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Counts bytes for the progress bar.
struct CountingReader<'p, R> {
    inner: R,
    progress: &'p mut dyn FnMut(u64),
}

impl<'p, R> CountingReader<'p, R> {
    fn new(inner: R, progress: &'p mut dyn FnMut(u64)) -> Self {
        CountingReader { inner, progress }
    }
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> (Vec<(String, String)>, Vec<InputError>) {
        let mut out = Vec::new();
        let errs = read_bytes("t", text.as_bytes(), &mut |o| {
            out.push((
                o.origin.to_string(),
                String::from_utf8(o.json).expect("utf8 in tests"),
            ))
        });
        (out, errs)
    }

    #[test]
    fn list_array_dict_and_single() {
        let (o, e) = collect(r#"{"apiVersion":"v1","items":[{"a":1},{"b":2}],"kind":"List"}"#);
        assert!(e.is_empty());
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].0, "t item 1");

        let (o, _) = collect(r#"[{"a":1}]"#);
        assert_eq!(o[0].0, "t item 0");

        let (o, _) = collect(
            r#"{"vulnerabilityreports.aquasecurity.github.io":[{"x":1}],"sbomreports.aquasecurity.github.io":[]}"#,
        );
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].0, "t vulnerabilityreports.aquasecurity.github.io[0]");

        let (o, _) = collect(r#"{"kind":"VulnerabilityReport","report":{"x":[1,2]}}"#);
        assert_eq!(o.len(), 1);
        assert_eq!(
            o[0].1,
            r#"{"kind":"VulnerabilityReport","report":{"x":[1,2]}}"#
        );
    }

    #[test]
    fn multi_document_yaml() {
        let (o, e) = collect("---\nkind: A\n---\n# nothing\n---\nitems:\n- kind: B\n- kind: C\n");
        assert!(e.is_empty(), "{e:?}");
        let origins: Vec<_> = o.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            origins,
            ["t document 1", "t document 2 item 0", "t document 2 item 1"]
        );
    }

    #[test]
    fn syntax_errors_cost_only_what_they_must() {
        // Balanced but invalid: that object is handed over (its parse will fail), the next
        // one is still read.
        let (o, e) = collect(r#"{"items":[{"a":1},{"b":},{"c":3}]}"#);
        assert_eq!(o.len(), 3);
        assert!(e.is_empty(), "{e:?}");
        // Unbalanced: everything before is kept; the rest of the file is unknown.
        let (o, e) = collect(r#"{"items":[{"a":1},{"b":[}, {"c":3}]}"#);
        assert_eq!(o.len(), 1);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].message.contains("invalid JSON at byte"),
            "{}",
            e[0].message
        );
        assert!(
            e[0].message
                .contains("objects after this point were not read")
        );
    }

    #[test]
    fn bad_yaml_document_does_not_stop_the_next() {
        let (o, e) = collect("kind: A\n---\n{ [ }\n");
        assert_eq!(o.len(), 1);
        assert_eq!(e.len(), 1);
        assert!(e[0].to_string().contains("invalid YAML"), "{}", e[0]);
    }

    /// Refused as a whole, at once: one error, no object.
    fn refused(text: &str) {
        let start = std::time::Instant::now();
        let (o, e) = collect(text);
        assert!(o.is_empty(), "{} objects", o.len());
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].message.starts_with("invalid YAML at line "),
            "{}",
            e[0].message
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn yaml_alias_bombs_are_refused() {
        // "Billion laughs": nested anchors, 10^6 scalars from 250 bytes (before the limits:
        // 20 s and 700 MB in the fuzz build).
        refused(
            "a: &a [x,x,x,x,x,x,x,x,x,x]\n\
             b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n\
             c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n\
             d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n\
             e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n\
             f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n\
             g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
        );
        // A large scalar, nested three times, used 60 times: 32 KB became more than 2 GB.
        let d10 = |x: &str| vec![format!("*{x}"); 10].join(",");
        refused(&format!(
            "a: &a \"{}\"\nb: &b [{}]\nc: &c [{}]\nd: &d [{}]\ne: [{}]\n",
            "x".repeat(32_000),
            d10("a"),
            d10("b"),
            d10("c"),
            vec!["*d"; 60].join(","),
        ));
        // No nesting, many aliases of one large scalar: 60 KB became 300 MB.
        refused(&format!(
            "a: &a \"{}\"\nb: [{}]\n",
            "y".repeat(30_000),
            vec!["*a"; 10_000].join(","),
        ));
    }

    #[test]
    fn modest_yaml_aliases_still_work() {
        let (o, e) = collect(
            "labels: &l {team: a}\nitems:\n\
             - kind: A\n  metadata: {labels: *l}\n\
             - kind: B\n  metadata: {labels: *l}\n",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].1, r#"{"kind":"B","metadata":{"labels":{"team":"a"}}}"#);
        // The limits are per document: 600 aliases here, 600 in the next.
        let mut doc = String::new();
        for i in 0..60 {
            doc.push_str(&format!("a{i}: &a{i} {}\n", "z".repeat(1_000)));
        }
        let uses: Vec<String> = (0..600).map(|i| format!("*a{}", i / 10)).collect();
        doc.push_str(&format!("b: [{}]\n", uses.join(",")));
        let (o, e) = collect(&format!("{doc}---\n{doc}"));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o.len(), 2);
    }

    /// Reads every discovered file; returns (display, origin) of each object and all errors.
    fn read_all(inputs: &[Input]) -> (Vec<String>, Vec<String>) {
        let (found, mut errs) = discover(inputs);
        let mut objects = Vec::new();
        for f in &found {
            errs.extend(read_file(
                f,
                &mut |o| objects.push(o.origin.to_string()),
                &mut |_| {},
            ));
        }
        (objects, errs.iter().map(|e| e.to_string()).collect())
    }

    const REPORT: &str = r#"{"kind":"VulnerabilityReport","report":{}}"#;

    #[cfg(unix)]
    #[test]
    fn a_fifo_named_on_the_command_line_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("export");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(&fifo, format!("[{REPORT},{REPORT}]")))
        };
        let (objects, errs) = read_all(&[Input::Path(fifo.clone())]);
        // Checked before joining: a writer nobody reads blocks forever.
        assert!(errs.is_empty(), "{errs:?}");
        let shown = fifo.display().to_string();
        assert_eq!(
            objects,
            [format!("{shown} item 0"), format!("{shown} item 1")]
        );
        writer.join().expect("writer").expect("write fifo");
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_directories_are_followed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("elsewhere/reports");
        std::fs::create_dir_all(&real).expect("mkdir");
        std::fs::write(real.join("a.json"), REPORT).expect("write");
        let top = dir.path().join("export");
        std::fs::create_dir(&top).expect("mkdir");
        std::os::unix::fs::symlink(&real, top.join("vulnerability_reports")).expect("link");
        // A second link to the same folder and a link back up the tree (a loop).
        std::os::unix::fs::symlink(&real, top.join("again")).expect("link");
        std::os::unix::fs::symlink(&top, top.join("up")).expect("link");
        // ConfigMap mounts keep their data behind hidden `..data`: still skipped.
        std::os::unix::fs::symlink(&real, top.join("..data")).expect("link");
        let (objects, errs) = read_all(&[Input::Path(top.clone())]);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            objects,
            [format!("{}/again/a.json", top.display())],
            "read once, through the first path in sorted order"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::os::unix::fs::symlink(&b, &a).expect("link");
        std::os::unix::fs::symlink(&a, &b).expect("link");
        let (found, errs) = discover(&[Input::Path(dir.path().to_owned())]);
        assert!(found.is_empty());
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].message.starts_with("cannot read: "), "{}", errs[0]);
    }

    #[cfg(unix)]
    #[test]
    fn special_files_inside_a_directory_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.json"), REPORT).expect("write");
        let sock = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("pipe.json"))
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let (found, errs) = discover(&[Input::Path(dir.path().to_owned())]);
        assert_eq!(found.len(), 1);
        let errs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].ends_with("agent.sock: not read: a socket, not a regular file or directory; name it with --from to read it"), "{}", errs[0]);
        assert!(
            errs[1].contains("pipe.json: not read: a FIFO"),
            "{}",
            errs[1]
        );
        // Named explicitly, a socket still cannot be read.
        let (found, errs) = discover(&[Input::Path(sock)]);
        assert!(found.is_empty());
        assert!(errs[0].message.contains("a socket"), "{}", errs[0]);
    }

    #[test]
    fn a_bad_yaml_document_costs_only_itself() {
        // Before: d1 stored, document 2 listed, d3 silently lost.
        let (o, e) = collect("kind: A\n---\nkind: [unclosed\n---\nkind: C\n");
        let origins: Vec<_> = o.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(origins, ["t document 1", "t document 3"]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].origin.document, Some(2));
        // The line is the file's (line 3), not the document's (line 1).
        assert!(
            e[0].message.starts_with("invalid YAML at line "),
            "{}",
            e[0].message
        );
        let line: u64 = e[0].message["invalid YAML at line ".len()..]
            .split(',')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a line number");
        assert!((3..=4).contains(&line), "{}", e[0].message);
        // `---` inside a quoted scalar is not a boundary unless it starts a line, and a
        // `---word` line is no marker at all.
        let (o, e) = collect("a: \"x --- y\"\n---word: 1\n...\n%YAML 1.2\n---\nkind: B\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].1, r#"{"---word":1,"a":"x --- y"}"#);
        assert_eq!(o[1].0, "t document 2");
    }

    #[test]
    fn yaml_documents_that_are_not_mappings() {
        let (o, e) = collect("kind: A\n---\njust a string\n---\n42\n---\n- kind: B\n- kind: C\n");
        let origins: Vec<_> = o.iter().map(|x| x.0.as_str()).collect();
        // A top-level sequence is a bare list, as a JSON array is.
        assert_eq!(
            origins,
            ["t document 1", "t document 4 item 0", "t document 4 item 1"]
        );
        let errs: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            [
                "t document 2: YAML document 2 (from line 2) is a string, not a mapping",
                "t document 3: YAML document 3 (from line 4) is a number, not a mapping",
            ]
        );
    }

    #[test]
    fn invalid_utf8_in_yaml_names_its_position() {
        let mut text = b"kind: A\n---\nkind: B\nname: caf".to_vec();
        text.extend_from_slice(&[0xE9, b'\n']);
        text.extend_from_slice(b"---\nkind: C\n");
        let mut out = Vec::new();
        let e = read_bytes("t", &text, &mut |o| out.push(o.origin.to_string()));
        assert_eq!(out, ["t document 1", "t document 3"]);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].to_string(),
            "t document 2: invalid UTF-8 at line 4, byte 10 of the line (byte 0xE9); YAML must be UTF-8"
        );
    }

    #[test]
    fn an_oversized_yaml_document_is_refused_with_its_line() {
        // One scalar beyond the cap: refused before parsing (it used to take 112 s and
        // 950 MB at 300 MB); the documents around it are still read.
        let mut text = String::with_capacity(YAML_MAX_DOCUMENT + 64);
        text.push_str("kind: A\n---\ndata: ");
        text.extend(std::iter::repeat_n('x', YAML_MAX_DOCUMENT));
        text.push_str("\n---\nkind: C\n");
        let (o, e) = collect(&text);
        drop(text);
        let origins: Vec<_> = o.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(origins, ["t document 1", "t document 3"]);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].to_string(),
            format!(
                "t document 2: YAML document from line 2 is larger than 128 MiB ({} bytes), not \
                 read; export as JSON (`-o json`) for larger inputs",
                YAML_MAX_DOCUMENT + 4 + 6 + 1
            )
        );
    }

    #[test]
    fn byte_order_marks_and_utf16() {
        let (o, e) = collect("\u{FEFF}{\"kind\":\"VulnerabilityReport\"}");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o.len(), 1);
        let (o, e) = collect("\u{FEFF}kind: A\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o[0].1, r#"{"kind":"A"}"#);

        let json = r#"{"kind":"VulnerabilityReport"}"#;
        let le: Vec<u8> = json.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = json.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let with_bom = |bom: &[u8], body: &[u8]| [bom, body].concat();
        for (bytes, name) in [
            (with_bom(&[0xFF, 0xFE], &le), "UTF-16LE"),
            (le.clone(), "UTF-16LE"),
            (with_bom(&[0xFE, 0xFF], &be), "UTF-16BE"),
            (be.clone(), "UTF-16BE"),
        ] {
            let mut n = 0;
            let e = read_bytes("x.json", &bytes, &mut |_| n += 1);
            assert_eq!(n, 0);
            assert_eq!(e.len(), 1);
            assert!(
                e[0].message.starts_with(&format!("file is {name}")),
                "{}",
                e[0].message
            );
            assert!(
                e[0].message.contains(&format!("iconv -f {name} -t UTF-8")),
                "{}",
                e[0].message
            );
        }
        let e = read_bytes("x.json", &le, &mut |_| {});
        assert!(
            e[0].message.contains("what PowerShell's `>` writes")
                && e[0].message.contains("Set-Content -Encoding utf8"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn folder_names_imply_kinds() {
        assert_eq!(
            kind_from_folder(Path::new("/x/vulnerability_reports/a.json")),
            Some(ReportKind::VulnerabilityReport)
        );
        assert_eq!(
            kind_from_folder(Path::new("/x/cluster_compliance_report/a.json")),
            Some(ReportKind::ClusterComplianceReport)
        );
        assert_eq!(kind_from_folder(Path::new("/x/other/a.json")), None);
    }
}
