//! Where report objects come from. A source yields raw JSON objects with their origin;
//! it knows nothing about report shapes beyond the containers they arrive in.

pub mod cluster;
pub mod files;
pub mod json_stream;

use std::fmt;

use crate::model::ReportKind;

/// Where an object sits inside its file, so an error can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The file (or document) is the object.
    Whole,
    /// `items[i]` of a List, or element i of a bare array (0-based).
    Index(usize),
    /// Element i of the array under a CRD plural key (`vulnerabilityreports.aquasecurity.github.io`).
    Keyed(String, usize),
}

/// File (or `<stdin>`), YAML document number (1-based) and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub document: Option<usize>,
    pub position: Position,
}

impl Origin {
    pub fn file(file: impl Into<String>) -> Origin {
        Origin {
            file: file.into(),
            document: None,
            position: Position::Whole,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(d) = self.document {
            write!(f, " document {d}")?;
        }
        match &self.position {
            Position::Whole => Ok(()),
            Position::Index(i) => write!(f, " item {i}"),
            Position::Keyed(k, i) => write!(f, " {k}[{i}]"),
        }
    }
}

/// One JSON value as read, not yet interpreted (nor validated beyond balanced brackets
/// and strings: a syntax error inside it is that object's error).
#[derive(Debug)]
pub struct RawObject {
    pub origin: Origin,
    pub json: Vec<u8>,
    /// The kind implied by where the object was found (a plural key or an
    /// alternate-storage folder), for objects that do not say their kind.
    pub kind_hint: Option<ReportKind>,
    /// A name implied by the file name, for objects without metadata.
    pub name_hint: Option<String>,
}

/// Something that could not be read at all: a file, or a stretch of a file after a
/// syntax error. Its objects are unknown, so nothing may be concluded from their absence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

impl std::error::Error for InputError {}
