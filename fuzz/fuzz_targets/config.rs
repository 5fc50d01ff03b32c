//! The configuration file: any text is a config or an error message, never a panic, and
//! a config that loaded renders back to YAML.

#![no_main]

use libfuzzer_sys::fuzz_target;
use trivy_digest::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Config::from_yaml(text) {
        let _ = c.to_redacted_yaml();
    }
});
