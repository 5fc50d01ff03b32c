//! DefectDojo export: mapping (`plan`), file format (`format`), durable queue (`outbox`),
//! HTTP API (`client`), delivery (`exporter`) and who owns a test (`owner`).

pub mod client;
pub mod exporter;
pub mod format;
pub mod outbox;
pub mod output;
pub mod owner;
pub mod plan;

pub use client::{DojoClient, DojoError};
pub use exporter::{ExportReport, Outcome, Ownership, TestOutcome, deliver};
pub use plan::{Action, PlanStats, PlannedTest, plan};
