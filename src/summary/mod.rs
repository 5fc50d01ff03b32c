//! The monthly summary: a month of history rendered to HTML and text, mailed on a schedule.

pub mod config;
