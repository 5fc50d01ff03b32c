//! From parsed objects to the store, with the tally a sweep or a controller batch reports:
//! one place decides what a report, a namespace, an ignored object and an unreadable
//! object do to the store.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use serde::Serialize;

use crate::model::{Report, ReportId, SeverityCounts};
use crate::source::{InputError, RawObject};
use crate::store::Session;
use crate::trivy::{ObjectError, Parsed, parse_object};

/// What a run of objects amounted to.
#[derive(Debug, Default)]
pub struct Tally {
    pub reports: ReportCounts,
    pub skipped: Vec<Skipped>,
    pub ignored: Vec<Ignored>,
    /// Findings summed over every report, as the operator wrote them (recounted).
    pub before_dedup: SeverityCounts,
    /// Objects that failed before their identity was known: nothing may be concluded
    /// from a report's absence in this run.
    pub anonymous_failures: u64,
    /// Report objects seen, readable or not: a sweep that saw none proves nothing.
    pub report_objects: u64,
    /// Reports read twice in one sweep (the same kind, namespace and name).
    pub duplicates: Vec<Duplicate>,
    /// CI results read (Trivy CLI JSON, CycloneDX): sightings of images, not reports.
    pub ci_results: u64,
    /// Where the first CI result came from, for messages.
    pub first_ci_origin: Option<String>,
    /// Per report read in this sweep: its scan time and where it was read.
    seen: HashMap<ReportId, (Option<i64>, String)>,
}

#[derive(Debug, Default, Serialize)]
pub struct ReportCounts {
    /// Report objects read and stored.
    pub stored: u64,
    pub skipped: u64,
    pub ignored: u64,
    pub namespaces: u64,
    pub by_kind: BTreeMap<String, u64>,
    /// Reports whose own summary disagreed with their lists (we recount).
    pub summary_mismatches: u64,
    /// Severities that were not one of the five levels (mapped, never dropped).
    pub mapped_severities: u64,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub origin: String,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub field: Option<String>,
    pub error: String,
    /// True when the report was known from an earlier sweep and keeps its findings.
    pub kept_previous: bool,
}

/// One report identity read twice in a sweep: the newer scan (`updateTimestamp`) is kept,
/// and nothing is resolved because of the other; on a tie the later one is kept.
#[derive(Debug, Serialize)]
pub struct Duplicate {
    pub report: String,
    pub kept: String,
    pub dropped: String,
}

#[derive(Debug, Serialize)]
pub struct Ignored {
    pub origin: String,
    pub reason: String,
}

impl Tally {
    /// One object of a sweep: parsed, checked against the reports already read in this
    /// sweep, then recorded. A second copy of a report (two exports of one cluster, a
    /// file named twice) never replaces a newer scan of it.
    pub fn sweep_object(&mut self, session: &mut Session<'_>, obj: &RawObject) -> Result<()> {
        let parsed = parse_object(obj);
        if let Ok(Parsed::Report(r)) = &parsed
            && self.older_duplicate(r, &obj.origin.to_string())
        {
            return Ok(());
        }
        self.record(session, parsed)
    }

    /// True when a newer scan of `r` was already read in this sweep (then `r` is dropped).
    fn older_duplicate(&mut self, r: &Report, origin: &str) -> bool {
        let at = r.scanned_at.map(|t| t.timestamp());
        let Some((prev_at, prev_origin)) = self.seen.get(&r.id) else {
            self.seen.insert(r.id.clone(), (at, origin.to_owned()));
            return false;
        };
        // Unknown scan times are the oldest; a tie keeps the later object, as a watch does.
        let older = at < *prev_at;
        let (kept, dropped) = if older {
            (prev_origin.clone(), origin.to_owned())
        } else {
            (origin.to_owned(), prev_origin.clone())
        };
        tracing::warn!(
            report = %r.id,
            kept = %kept,
            dropped = %dropped,
            "the same report was read twice in this sweep; keeping the newer scan"
        );
        self.duplicates.push(Duplicate {
            report: r.id.to_string(),
            kept,
            dropped,
        });
        if !older {
            self.seen.insert(r.id.clone(), (at, origin.to_owned()));
        }
        older
    }

    /// Writes one parsed object to the store and counts it.
    pub fn record(
        &mut self,
        session: &mut Session<'_>,
        parsed: Result<Parsed, Box<ObjectError>>,
    ) -> Result<()> {
        match parsed {
            Ok(Parsed::Report(r)) => {
                self.report_objects += 1;
                session.report(&r)?;
                self.reports.stored += 1;
                *self
                    .reports
                    .by_kind
                    .entry(r.id.kind.as_str().to_owned())
                    .or_default() += 1;
                self.reports.summary_mismatches += u64::from(r.summary_mismatch);
                self.reports.mapped_severities += r.mapped_severities;
                self.before_dedup.merge(&r.counts());
            }
            Ok(Parsed::Ci { origin, scan }) => {
                let origin = origin.to_string();
                session.ci_scan(&scan, &origin)?;
                self.ci_results += 1;
                self.first_ci_origin.get_or_insert(origin);
            }
            Ok(Parsed::Namespace(ns)) => {
                session.namespace(&ns)?;
                self.reports.namespaces += 1;
            }
            Ok(Parsed::NotReady { origin, id, reason }) => {
                // Not evaluated yet: whatever was known of it stays.
                self.report_objects += 1;
                session.keep(&id)?;
                self.ignore(origin.to_string(), reason);
            }
            Ok(Parsed::Ignored { origin, reason }) => self.ignore(origin.to_string(), reason),
            Err(e) => {
                tracing::debug!("skipped: {e}");
                if e.kind.is_some() {
                    self.report_objects += 1;
                }
                let kept = match &e.id {
                    Some(id) => session.keep(id)?,
                    None => {
                        self.anonymous_failures += 1;
                        false
                    }
                };
                self.skipped.push(Skipped {
                    origin: e.origin.to_string(),
                    kind: e.kind.clone(),
                    name: e.name.clone(),
                    field: e.field.clone(),
                    error: e.message.clone(),
                    kept_previous: kept,
                });
                self.reports.skipped += 1;
            }
        }
        Ok(())
    }

    /// Input that could not be read at all (a file, the rest of a file, a failed list).
    pub fn input_error(&mut self, e: &InputError) {
        self.skipped.push(Skipped {
            origin: e.origin.to_string(),
            kind: None,
            name: None,
            field: None,
            error: e.message.clone(),
            kept_previous: false,
        });
        self.reports.skipped += 1;
    }

    fn ignore(&mut self, origin: String, reason: String) {
        self.reports.ignored += 1;
        self.ignored.push(Ignored { origin, reason });
    }
}
