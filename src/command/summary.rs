//! `trivy-digest summary`: renders one month to stdout or a file, or mails it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use super::exit;
use crate::config::Config;
use crate::output::summary::{Month, Scope, deliver, render, report};
use crate::store::Store;

/// `trivy-digest summary`; the command line parses straight into it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CliArgs {
    /// The month, YYYY-MM (default: the last complete month in summary.timezone).
    #[arg(long)]
    pub month: Option<Month>,
    /// Write to FILE instead of stdout (`.txt`: the plain-text part).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The plain-text part instead of HTML.
    #[arg(long)]
    pub text: bool,
    /// One team's view: the namespaces whose teams.annotation names it.
    #[arg(long, value_name = "NAME")]
    pub team: Option<String>,
    /// One cluster's view of a fleet store: what ran in cluster NAME.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["team", "send"])]
    pub of_cluster: Option<String>,
    /// Mail it to summary.to and the team routes (or only --team), once per month
    /// and recipient list.
    #[arg(long)]
    pub send: bool,
    /// Pretend the current time is this (RFC 3339); for tests.
    #[arg(long, hide = true)]
    pub now: Option<DateTime<Utc>>,
}

/// Renders or sends one month; returns the exit code.
pub async fn summary(config: &Config, args: CliArgs) -> Result<i32> {
    if !config.store.exists() {
        bail!(
            "store {}: does not exist; run `trivy-digest scan` or `run` first",
            config.store
        );
    }
    let now = args.now.unwrap_or_else(Utc::now);
    let tz = config.summary.timezone.tz();
    let month = args.month.unwrap_or_else(|| Month::last_complete(now, tz));
    let mut store = Store::open_at(&config.store)?;
    store.claim_cluster(&config.cluster)?;
    let scope = match (&args.team, &args.of_cluster) {
        (Some(t), _) => Scope::Team(t.clone()),
        (None, Some(c)) => Scope::OneCluster(c.clone()),
        (None, None) => Scope::Cluster,
    };

    let write_out = args.out.is_some() || !args.send;
    if write_out {
        let summary = report::build(&store, &deliver::options(config, month, scope.clone(), now))?;
        if let Scope::Team(t) = &scope
            && summary.team_namespaces.is_empty()
        {
            tracing::warn!(team = %t, "no namespace has the annotation {}={t}: the summary is empty", config.teams.annotation);
        }
        let as_text = args.text
            || args
                .out
                .as_ref()
                .is_some_and(|p| p.extension().is_some_and(|e| e == "txt"));
        let body = if as_text {
            render::text_with(&summary, &config.summary.templates)?
        } else {
            render::html_with(&summary, &config.summary.templates)?
        };
        match &args.out {
            Some(p) => std::fs::write(p, body.as_bytes())
                .with_context(|| format!("--out {}: cannot write", p.display()))?,
            None => std::io::stdout()
                .write_all(body.as_bytes())
                .context("writing to stdout")?,
        }
    }
    if !args.send {
        return Ok(0);
    }
    let Some(smtp) = &config.smtp else {
        bail!("summary --send: no smtp section in the configuration");
    };
    let mut audiences = deliver::audiences(config);
    if let Some(t) = &args.team {
        audiences.retain(|a| a.scope == Scope::Team(t.clone()));
        if audiences.is_empty() {
            bail!("summary --send --team {t}: teams.routes.{t} has no email recipients");
        }
    }
    if audiences.is_empty() {
        bail!("summary --send: nobody to send to; set summary.to or teams.routes.<team>.email");
    }
    let mailer = crate::mail::Mailer::new(smtp)?;
    let opts = deliver::SendOptions {
        automatic: false,
        retry_after: 0,
    };
    let outcomes = deliver::send_month(
        config, &mut store, &mailer, month, now, &audiences, opts, None,
    )
    .await?;
    let mut failed = false;
    for (a, o) in &outcomes {
        eprintln!("{month} {} ({}): {o}", a.scope.id(), a.to.join(", "));
        failed |= o.is_failure();
    }
    Ok(if failed { exit::FATAL } else { 0 })
}
