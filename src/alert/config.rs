//! The `alerts:` section of the configuration.

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {}

impl AlertsConfig {
    /// Reads the secrets this section names (webhook files, environment variables).
    pub(crate) fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        Ok(())
    }

    pub(crate) fn validate(&self, _config: &Config) -> Result<(), ConfigError> {
        Ok(())
    }
}
