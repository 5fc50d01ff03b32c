//! `store migrate --to postgres://…`: one cluster's SQLite store into a fleet store.

use anyhow::{Result, bail};

use crate::config::Config;
use crate::store::{Store, StoreLocation, copy};

/// Copies the configured SQLite store into `to`; the text to print.
pub fn migrate(config: &Config, to: &str) -> Result<String> {
    let StoreLocation::Sqlite(path) = &config.store else {
        bail!(
            "store migrate copies an SQLite store into a fleet store; the store here is {} \
             (give the SQLite file with --store)",
            config.store
        );
    };
    if !path.exists() {
        bail!("store {}: no such file; nothing to copy", path.display());
    }
    let mut target = StoreLocation::parse(to).map_err(|m| anyhow::anyhow!("--to: {m}"))?;
    let StoreLocation::Postgres(t) = &mut target else {
        bail!("--to must be a postgres:// or postgresql:// URL, the fleet store");
    };
    if t.password.is_none() {
        t.password = config.store_password.clone();
    }
    let source = Store::open(path)?;
    let mut fleet = Store::open_at(&target)?;
    let copied = copy::copy(&source, &mut fleet)?;
    let mut text = format!(
        "copied cluster {:?} from {} into {target}\n",
        copied.cluster,
        path.display()
    );
    for (table, n) in &copied.tables {
        text.push_str(&format!("  {table:<16} {n}\n"));
    }
    text.push_str(&format!(
        "next: point this cluster's `store:` at {target}; the file is left as it was\n"
    ));
    Ok(text)
}
