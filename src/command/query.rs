//! `trivy-digest query`: the inventory, answered from the store.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};

use super::exit;
use crate::config::Config;
use crate::inventory::{Answer, Query, answer};
use crate::store::Store;
use crate::store::lookup::ImageHit;
use crate::version::VersionReq;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["cve", "package", "image"])))]
pub struct CliArgs {
    /// A vulnerability id (CVE-2021-44228, GHSA-…), or a check or secret rule id.
    #[arg(long, value_name = "ID")]
    pub cve: Option<String>,
    /// A package name (`log4j-core`, `org.apache.logging.log4j:log4j-core`, `openssl`),
    /// from SBOMs: packages without any vulnerability are found too.
    #[arg(long, value_name = "NAME")]
    pub package: Option<String>,
    /// With --package: the versions, e.g. `2.14` (2.14 and 2.14.x), `<2.17.1`,
    /// `>=2.0,<2.17.1`.
    #[arg(long, value_name = "REQ", requires = "package", value_parser = VersionReq::parse)]
    pub version: Option<VersionReq>,
    /// An image repository (`nginx`, `ghcr.io/org/app`): its contents, where they run,
    /// their open findings.
    #[arg(long, value_name = "REPO")]
    pub image: Option<String>,
    /// Also list image contents that ran once but run nowhere now.
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

impl CliArgs {
    /// The question these arguments ask.
    pub fn query(&self) -> Query {
        Query {
            cve: self.cve.clone(),
            package: self.package.clone(),
            version: self.version.clone(),
            image: self.image.clone(),
            all: self.all,
        }
    }
}

/// Runs the command: the answer, and exit 0 with hits, 6 without (for scripts:
/// `if trivy-digest query --cve X; then …`).
pub fn query(config: &Config, args: &CliArgs) -> Result<(String, i32)> {
    if !config.store.exists() {
        bail!(
            "store {}: does not exist; run `trivy-digest scan` or `run` first",
            config.store
        );
    }
    let store = Store::open_at(&config.store)?;
    let a = answer(&store, args.query())?;
    let code = if a.is_empty() {
        exit::NOT_FOUND
    } else {
        exit::OK
    };
    let out = match args.format {
        Format::Json => a.to_json()?,
        Format::Text => render_text(&a),
    };
    Ok((out, code))
}

fn day(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| t.to_string())
}

pub fn render_text(a: &Answer) -> String {
    let mut s = String::new();
    if let Some(findings) = &a.findings {
        let id = a.query.cve.as_deref().unwrap_or_default();
        if findings.is_empty() {
            let _ = writeln!(s, "{id}: not found in any image the store knows.");
        }
        for f in findings {
            let fix = if f.fix_available {
                format!("fixed in {}", f.fixed_version)
            } else {
                "no fix yet".to_owned()
            };
            let _ = writeln!(
                s,
                "{} {} in {} {} ({fix})",
                f.id, f.severity, f.package, f.installed_version
            );
            let runtime = match &f.runtime {
                Some(r) if r.open => format!("open at runtime since {}", day(r.first_seen)),
                Some(r) => format!(
                    "fixed at runtime {} (first seen {})",
                    r.resolved_at.map(day).unwrap_or_default(),
                    day(r.first_seen)
                ),
                None => "not seen at runtime".to_owned(),
            };
            let mut line = format!("  {}: {runtime}", f.repository);
            if let Some(ci) = f.ci_first_seen {
                let _ = write!(line, "; CI since {}", day(ci));
            }
            let _ = write!(
                line,
                "; DefectDojo: {}",
                f.defectdojo.as_deref().unwrap_or("not exported")
            );
            let _ = writeln!(s, "{line}");
            images_text(&mut s, &f.images, "    ");
        }
    }
    if let Some(packages) = &a.packages {
        if packages.is_empty() {
            let name = a.query.package.as_deref().unwrap_or_default();
            let version = a
                .query
                .version
                .as_ref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "{name}{version}: no image the store has an SBOM of contains it."
            );
        }
        for p in packages {
            let eco = if p.ecosystem.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.ecosystem)
            };
            let _ = writeln!(s, "{} {}{eco}", p.name, p.version);
            images_text(&mut s, &p.images, "  ");
        }
    }
    if let Some(repos) = &a.repositories {
        if repos.is_empty() {
            let _ = writeln!(
                s,
                "{}: no such image repository in the store.",
                a.query.image.as_deref().unwrap_or_default()
            );
        }
        for r in repos {
            let _ = writeln!(s, "{}", r.repository);
            for v in &r.images {
                images_text(&mut s, std::slice::from_ref(&v.image), "  ");
                let open: Vec<String> = crate::model::Severity::ALL
                    .iter()
                    .filter_map(|sev| {
                        let k = sev.as_str().to_ascii_lowercase();
                        v.open.get(&k).map(|n| format!("{n} {k}"))
                    })
                    .collect();
                let open = if open.is_empty() {
                    "no open findings".to_owned()
                } else {
                    format!("open: {}", open.join(", "))
                };
                let packages = v
                    .packages
                    .map(|n| format!("{n} packages"))
                    .unwrap_or_else(|| "no SBOM".to_owned());
                let _ = writeln!(s, "      {open}; {packages}");
            }
        }
    }
    s
}

fn images_text(s: &mut String, images: &[ImageHit], indent: &str) {
    for i in images {
        let pin = if i.digest.is_some() {
            ""
        } else {
            " (unpinned)"
        };
        let state = if i.running {
            "running".to_owned()
        } else if i.ci.is_some() {
            "CI only, runs nowhere".to_owned()
        } else {
            match i.last_ran {
                Some(t) => format!("not running, last seen {}", day(t)),
                None => "not running".to_owned(),
            }
        };
        let _ = writeln!(s, "{indent}{}{pin}: {state}", i.image);
        for w in &i.workloads {
            let mut place = if w.namespace.is_empty() {
                format!("{}/{}", w.kind, w.name)
            } else {
                format!("{}/{}/{}", w.namespace, w.kind, w.name)
            };
            if let Some(c) = &w.cluster {
                place = format!("{c}/{place}");
            }
            let _ = writeln!(s, "{indent}  {place} since {}", day(w.since));
        }
        if let Some(ci) = &i.ci {
            let _ = writeln!(
                s,
                "{indent}  CI: {} ({}), first {}, last {}",
                ci.artifact,
                ci.source,
                day(ci.first_seen),
                day(ci.last_seen)
            );
        }
    }
}
