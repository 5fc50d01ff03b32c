//! trivy-digest: Trivy Operator reports, deduplicated by image digest, with history,
//! exported to DefectDojo.
//!
//! Data flows one way: `source` (files, stdin) → `trivy` (parse, normalize into `model`)
//! → `store` (SQLite: dedupe, history, outbox) → outputs (`dojo`). `scan` wires one sweep.

pub mod command;
pub mod config;
pub mod errors;
pub mod events;
pub mod flag;
pub mod glob;
pub mod ingest;
#[cfg(test)]
mod kube_fixture;
pub mod leader;
pub mod mail;
pub mod metrics;
pub mod model;
pub mod output;
pub mod retry;
pub mod run;
pub mod scope;
pub mod secret;
pub mod serve;
pub mod settings;
pub mod source;
pub mod store;
pub mod synth;
pub mod template;
pub mod trivy;
