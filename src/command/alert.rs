//! `trivy-digest alert --test`.

use anyhow::Result;

use super::exit;
use crate::config::Config;
use crate::output::alert;

/// `trivy-digest alert --test`: prints one line per destination; 0 when all accepted.
pub async fn test(config: &Config) -> Result<i32> {
    let results = alert::send_test(config).await?;
    let mut failed = 0;
    let mut out = String::new();
    for r in &results {
        match &r.error {
            None => out.push_str(&format!("ok      {}\n", r.destination)),
            Some(e) => {
                failed += 1;
                out.push_str(&format!("FAILED  {}: {e}\n", r.destination));
            }
        }
    }
    // A closed pipe or a full disk must not panic; the exit code still tells.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    if failed > 0 {
        eprintln!("{failed} of {} destinations failed", results.len());
        Ok(exit::FATAL)
    } else {
        Ok(exit::OK)
    }
}
