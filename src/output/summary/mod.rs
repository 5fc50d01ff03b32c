//! The monthly summary: a month of history rendered to HTML and text, mailed on a schedule.
//!
//! `history` reads the store as states at a time T (from the event log), `report`
//! computes a month for the cluster or a team, `render` turns it into HTML and text,
//! `deliver` mails it once per month and audience, `schedule` decides when, and `web`
//! serves it read-only at `/summary/`.

pub mod config;
pub mod context;
pub mod cron;
pub mod deliver;
pub mod history;
pub mod month;
pub mod output;
pub mod render;
pub mod report;
pub mod schedule;
pub mod web;

pub use month::Month;
pub use report::{Scope, Summary};

/// An RFC 3339 time in a test.
#[cfg(test)]
pub(crate) fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("date")
        .with_timezone(&chrono::Utc)
}
