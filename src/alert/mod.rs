//! Critical alerts: a finding new for its image repository, sent once per image per
//! batch window to Slack and email.

pub mod config;
