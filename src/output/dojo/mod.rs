//! DefectDojo export: mapping (`plan`), file format (`format`), durable queue (`outbox`),
//! HTTP API (`client`) and delivery (`exporter`).

pub mod client;
pub mod exporter;
pub mod format;
pub mod outbox;
pub mod output;
pub mod plan;

pub use client::{DojoClient, DojoError};
pub use exporter::{ExportReport, Outcome, TestOutcome, deliver};
pub use plan::{Action, PlanStats, PlannedTest, plan};
