//! Command line: parses arguments and calls the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use trivy_digest::command::exit;
use trivy_digest::command::scan::{self, FileScope, ScanOptions};
use trivy_digest::config::Config;
use trivy_digest::model::ReportKind;
use trivy_digest::source::files::Input;

#[derive(Parser)]
#[command(
    name = "trivy-digest",
    version,
    about = "Trivy Operator reports, deduplicated by image digest, exported to DefectDojo"
)]
struct Cli {
    /// Configuration file (default: trivy-digest.yaml in the working directory, if present).
    #[arg(long, global = true, env = "TRIVY_DIGEST_CONFIG")]
    config: Option<PathBuf>,
    /// The store: an SQLite file, or a postgres:// URL for a fleet (overrides the
    /// config's `store`; the password comes from TRIVY_DIGEST_STORE_PASSWORD or
    /// `store_password_file`).
    #[arg(long, global = true)]
    store: Option<String>,
    /// Cluster name (overrides the config's `cluster` and TRIVY_DIGEST_CLUSTER).
    #[arg(long, global = true)]
    cluster: Option<String>,
    /// Log level filter (error, warn, info, debug, trace, or a tracing filter); default
    /// info for `run`, warn otherwise.
    #[arg(long, global = true, env = "TRIVY_DIGEST_LOG")]
    log_level: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Read exported reports once: deduplicate, record history, export, summarize.
    Scan {
        /// A report file, a directory of them, `-` for stdin, or `cluster` for the report
        /// CRDs of the current kubeconfig context (repeatable).
        #[arg(long = "from", required = true, num_args = 1..)]
        from: Vec<String>,
        /// Summary format on stdout.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Write the DefectDojo requests that would be sent into DIR; send nothing and
        /// leave the store unchanged.
        #[arg(long, value_name = "DIR")]
        dry_run: Option<PathBuf>,
        /// Push every DefectDojo test again, even those acknowledged before.
        #[arg(long)]
        resync: bool,
        /// The files and stdin hold a whole-cluster export: reports they lack start their
        /// grace period. Without it a file ends nothing it does not hold.
        #[arg(long)]
        complete: bool,
        /// With --complete: the export holds only this report kind in full (repeatable;
        /// `VulnerabilityReport` or `vulnerabilityreports`).
        #[arg(long, value_name = "KIND", requires = "complete", value_parser = parse_kind)]
        scope_kind: Vec<ReportKind>,
        /// With --complete: the export holds only namespaces matching this glob in full
        /// (repeatable).
        #[arg(long, value_name = "GLOB", requires = "complete")]
        scope_namespace: Vec<String>,
        /// Reading no report at all is expected (an empty cluster): do not fail, and let
        /// the sweep end what it covers.
        #[arg(long)]
        allow_empty: bool,
        /// Pretend the current time is this (RFC 3339); for replaying exports and tests.
        #[arg(long, hide = true)]
        now: Option<DateTime<Utc>>,
    },
    /// The controller: watch the report CRDs, export, serve /healthz /readyz /metrics.
    Run,
    /// Render a monthly summary from the store's history, or mail it (--send).
    Summary(trivy_digest::command::summary::CliArgs),
    /// Which images contain a CVE or a package, where they run and since when
    /// (answered from the store; SBOMs make packages without vulnerabilities findable).
    Query(trivy_digest::command::query::CliArgs),
    /// Alert commands.
    Alert {
        /// Send a test message to every alert channel and team route; exits non-zero if
        /// any failed.
        #[arg(long, required = true)]
        test: bool,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Store commands.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy this cluster's SQLite store (`store:` or --store) into a fleet store:
    /// history, first-seen dates, DefectDojo sync state, alert records and summary
    /// claims. The file is left as it was.
    Migrate {
        /// The fleet store, postgres://USER@HOST:PORT/DATABASE?sslmode=verify-full (the
        /// password from TRIVY_DIGEST_STORE_PASSWORD or `store_password_file`).
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print it with secrets redacted.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run) {
        "info"
    } else {
        "warn"
    };
    if let Err(e) = init_logging(
        cli.log_level.as_deref().unwrap_or(default_level),
        cli.log_format,
    ) {
        eprintln!("error: {e}");
        return ExitCode::from(u8::try_from(exit::USAGE).unwrap_or(2));
    }
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::FATAL
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(s) = cli.store {
        config.set_store(&s)?;
    }
    if let Some(c) = cli.cluster {
        config.cluster = c;
    }
    if matches!(cli.command, Command::Scan { .. } | Command::Run) {
        for w in config.warnings() {
            tracing::warn!("{w}");
        }
    }
    match cli.command {
        Command::Scan {
            from,
            format,
            dry_run,
            resync,
            complete,
            scope_kind,
            scope_namespace,
            allow_empty,
            now,
        } => {
            let opts = ScanOptions {
                inputs: from.iter().map(|s| Input::parse(s)).collect(),
                dry_run,
                resync,
                now: now.unwrap_or_else(Utc::now),
                progress: format == OutputFormat::Text,
                complete,
                file_scope: FileScope {
                    kinds: scope_kind,
                    namespaces: scope_namespace,
                },
                allow_empty,
            };
            let summary = runtime()?.block_on(scan::scan(&config, opts))?;
            let text = match format {
                OutputFormat::Text => scan::render_text(&summary),
                OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&summary)?),
            };
            if summary.exit_code == exit::EMPTY {
                eprintln!(
                    "error: read 0 reports from {}; nothing was marked gone \
                     (pass --allow-empty if no report is expected)",
                    summary.empty_inputs.join(", ")
                );
            }
            stdout(&text)?;
            Ok(summary.exit_code)
        }
        Command::Run => runtime()?.block_on(trivy_digest::run::run(config)),
        Command::Store {
            command: StoreCommand::Migrate { to },
        } => {
            stdout(&trivy_digest::command::store::migrate(&config, &to)?)?;
            Ok(0)
        }
        Command::Summary(args) => {
            runtime()?.block_on(trivy_digest::command::summary::summary(&config, args))
        }
        Command::Query(args) => {
            let (text, code) = trivy_digest::command::query::query(&config, &args)?;
            stdout(&text)?;
            Ok(code)
        }
        Command::Alert { test: _ } => {
            runtime()?.block_on(trivy_digest::command::alert::test(&config))
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            stdout(&config.to_redacted_yaml())?;
            // Message template overrides, rendered against sample data.
            let errors = trivy_digest::output::sample::check_templates(
                &config.alerts.templates,
                &config.summary.templates,
            );
            if !errors.is_empty() {
                for e in &errors {
                    eprintln!("error: {e}");
                }
                eprintln!(
                    "configuration is invalid: {} template error(s)",
                    errors.len()
                );
                return Ok(exit::FATAL);
            }
            for w in config.warnings() {
                eprintln!("warning: {w}");
            }
            eprintln!("configuration is valid");
            Ok(exit::OK)
        }
    }
}

/// `VulnerabilityReport`, `vulnerabilityreport` or `vulnerabilityreports`.
fn parse_kind(s: &str) -> Result<ReportKind, String> {
    let lower = s.to_ascii_lowercase();
    ReportKind::ALL
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(s) || k.plural() == lower)
        .ok_or_else(|| {
            let names: Vec<&str> = ReportKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown report kind {s:?}; one of {}", names.join(", "))
        })
}

/// Writes a command's output. A reader that went away (`| head`) ends the output, not
/// the command; any other failure (a full disk) is an error that says so.
fn stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
        Ok(()) => Ok(()),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

const LOG_LEVELS: &str = "error, warn, info, debug, trace, off";

/// A filter where every directive names a known level: a bare word such as `verbose` is
/// a valid tracing directive (a target), which would silently log nothing.
fn log_filter(spec: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    let bad = || {
        format!(
            "invalid --log-level {spec:?}: use one of {LOG_LEVELS}, or a filter such as \
             trivy_digest=debug,warn"
        )
    };
    let is_level = |s: &str| {
        LOG_LEVELS
            .split(", ")
            .any(|l| l.eq_ignore_ascii_case(s.trim()))
    };
    for directive in spec.split(',') {
        let d = directive.trim();
        // The level follows the last `=` that is not inside a span filter `[...]`.
        let level = match (d.rfind('='), d.rfind(']')) {
            // `target[span{field=value}]`: no level, everything in those spans.
            (Some(eq), Some(close)) if close > eq => None,
            (Some(eq), _) => Some(&d[eq + 1..]),
            (None, Some(_)) => None,
            (None, None) => Some(d),
        };
        if d.is_empty() || level.is_some_and(|l| !is_level(l)) {
            return Err(bad());
        }
    }
    tracing_subscriber::EnvFilter::try_new(spec).map_err(|_| bad())
}

fn init_logging(level: &str, format: LogFormat) -> Result<(), String> {
    use std::io::IsTerminal;
    let filter = log_filter(level)?;
    // Colour codes only for a person at a terminal; https://no-color.org asks for none
    // when NO_COLOR is set to anything.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
