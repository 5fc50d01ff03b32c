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
    let mut reader = BufReader::with_capacity(256 * 1024, CountingReader::new(reader, progress));
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
    let mut reader = bytes;
    match sniff_bytes(bytes) {
        Format::Json => read_json(&mut reader, &mut ctx).into_iter().collect(),
        Format::Yaml => read_yaml(&mut reader, &mut ctx),
    }
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

fn read_yaml<R: Read>(reader: &mut R, ctx: &mut Ctx<'_>) -> Vec<InputError> {
    let mut errors = Vec::new();
    // Documents are as large as their input (a `kubectl get -o yaml` List is one
    // document), so size is not limited. Aliases are the one way a small input becomes a
    // large value (nested anchors expand exponentially: a 250-byte "billion laughs" took
    // seconds and hundreds of MB, a 32 KB one more than 2 GB), and nothing that writes
    // reports uses them; their expansion is bounded instead: at most
    // YAML_MAX_ALIASES × YAML_MAX_ANCHOR_BYTES (64 MiB) of text and
    // YAML_MAX_ALIAS_EVENTS nodes per document.
    let options = serde_saphyr::options! {
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
    };
    let mut docs = serde_saphyr::read_with_options::<_, serde_json::Value>(reader, options);
    let mut n = 0usize;
    loop {
        // The iterator skips empty documents, so numbering counts the documents it yields.
        let next = docs.next();
        let Some(doc) = next else { break };
        n += 1;
        ctx.document = Some(n);
        match doc {
            Ok(serde_json::Value::Null) => {}
            Ok(value) => {
                // One code path for every container: the YAML document is re-read as JSON.
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
            Err(e) => errors.push(InputError {
                origin: ctx.origin(Position::Whole),
                message: format!("invalid YAML: {}", one_line(&e.to_string())),
            }),
        }
    }
    errors
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
            e[0].message.starts_with("invalid YAML: "),
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
        writer.join().expect("writer").expect("write fifo");
        assert!(errs.is_empty(), "{errs:?}");
        let shown = fifo.display().to_string();
        assert_eq!(objects, [format!("{shown} item 0"), format!("{shown} item 1")]);
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
        assert!(errs[1].contains("pipe.json: not read: a FIFO"), "{}", errs[1]);
        // Named explicitly, a socket still cannot be read.
        let (found, errs) = discover(&[Input::Path(sock)]);
        assert!(found.is_empty());
        assert!(errs[0].message.contains("a socket"), "{}", errs[0]);
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
