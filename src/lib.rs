//! trivy-digest: Trivy Operator reports, deduplicated by image digest, with history,
//! exported to DefectDojo, alerted on and summarized.
//!
//! Data flows one way: `source` (files, stdin, the cluster) → `trivy` (parse, normalize
//! into `model`) → `ingest` → `store` (SQLite: dedupe, history, outbox, triage) →
//! `output` (DefectDojo, alerts, summaries, behind one trait, driven by `output::runner`).
//! `command` holds what each command prints; `run` is the controller. ARCHITECTURE.md
//! draws it.

pub mod api;
pub mod command;
pub mod config;
pub mod errors;
pub mod events;
pub mod flag;
pub mod glob;
pub mod ingest;
pub mod inventory;
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
pub mod version;
