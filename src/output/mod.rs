//! Outputs: what leaves the store. DefectDojo export (`dojo`), new-finding alerts
//! (`alert`) and the monthly summary (`summary`) each implement [`Output`]: what wakes
//! it, and one step over the store. The [`runner`] owns the loop in `run` (leadership,
//! stop and shutdown grace, pacing after failures, per-output metrics and Events) and
//! runs each output once in `scan`. The [`factory`] builds them from the configuration
//! and is the only place that names them all.
//!
//! Outputs depend only downward: the store, the model and shared clients (`mail`,
//! `retry`, `secret`), never `run`, `command` or each other.

pub mod alert;
pub mod custom_template;
pub mod dojo;
pub mod factory;
pub mod runner;
pub mod sample;
pub mod summary;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

pub use factory::{Kind, Report};

use crate::store::Store;

/// When the runner starts a step of an output (in `run`; `scan` runs each once).
#[derive(Debug, Clone, Copy)]
pub struct Wake {
    /// A change in the store (the controller's signal, or a new finding event, which also
    /// catches a `scan` sharing the store) makes a step due this long after it, however
    /// many changes follow. `None`: changes do not wake it.
    pub debounce: Option<Duration>,
    /// With nothing else due, a step this long after the previous one ends.
    pub idle: Option<Duration>,
    /// The first step, this long after the runner starts.
    pub first: Duration,
    /// After a failed step: wait this long, doubled for each failure in a row (at most
    /// `runner::MAX_PACING`, never less than this).
    pub retry: Duration,
}

/// What a step works with.
pub struct Context<'a> {
    pub store: &'a mut Store,
    pub now: DateTime<Utc>,
    /// True once stop is asked or leadership is lost: start nothing new; the work in
    /// flight finishes and the rest stays queued in the store.
    pub stopping: &'a (dyn Fn() -> bool + Sync),
    /// Every watched report kind was listed once (always true in `scan`): alerts take
    /// their first-run baseline only then.
    pub listed: bool,
}

/// What one step did.
#[derive(Debug)]
pub struct Step {
    pub report: Report,
    /// Step again this long from now even without a change (a retry, the next schedule
    /// occurrence).
    pub next: Option<Duration>,
}

/// Something a step could not do, worth a warning Event and a log line; the work stays
/// in the store for the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The Event's reason (`ExportRefused`, `AlertFailed`, …).
    pub reason: &'static str,
    pub message: String,
}

/// One output. Built by the factory, driven by the runner.
pub trait Output: Send + Sync {
    fn kind(&self) -> Kind;
    fn wake(&self) -> Wake;
    /// One pass over the store: queue what changed, send what is queued.
    fn step<'a>(&'a self, ctx: Context<'a>) -> BoxFuture<'a, Result<Step>>;
}

/// A source of the current time (tests inject their own).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}
