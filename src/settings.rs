//! The building blocks configuration sections are made of: durations as people write
//! them, and the error a bad configuration gives. A leaf: every section (with its owner:
//! `mail`, `retry`, `output::alert::config`, …) imports this, never `config`, which
//! composes the sections.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

/// A duration written as `24h`, `90s`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

impl HumanDuration {
    /// Whole seconds as i64, saturating: a duration past i64::MAX seconds must not wrap
    /// to a negative (immediately expired) grace period.
    pub fn as_secs_i64(self) -> i64 {
        i64::try_from(self.0.as_secs()).unwrap_or(i64::MAX)
    }
}
