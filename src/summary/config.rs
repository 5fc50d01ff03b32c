//! The `summary:` section of the configuration.

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SummaryConfig {}

impl SummaryConfig {
    pub(crate) fn validate(&self, _config: &Config) -> Result<(), ConfigError> {
        Ok(())
    }
}
