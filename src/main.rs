//! Command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use trivy_digest::config::Config;
use trivy_digest::scan::{self, ScanOptions, exit};
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
    /// SQLite store file (overrides the config's `store`).
    #[arg(long, global = true)]
    store: Option<PathBuf>,
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
        /// Pretend the current time is this (RFC 3339); for replaying exports and tests.
        #[arg(long, hide = true)]
        now: Option<DateTime<Utc>>,
    },
    /// The controller: watch the report CRDs, export, serve /healthz /readyz /metrics.
    Run,
    /// Render a monthly summary from the store's history, or mail it (--send).
    Summary(trivy_digest::summary::CliArgs),
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
    init_logging(
        cli.log_level.as_deref().unwrap_or(default_level),
        cli.log_format,
    );
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
        config.store = s;
    }
    if let Some(c) = cli.cluster {
        config.cluster = c;
    }
    match cli.command {
        Command::Scan {
            from,
            format,
            dry_run,
            resync,
            now,
        } => {
            let opts = ScanOptions {
                inputs: from.iter().map(|s| Input::parse(s)).collect(),
                dry_run,
                resync,
                now: now.unwrap_or_else(Utc::now),
                progress: format == OutputFormat::Text,
            };
            let summary = runtime()?.block_on(scan::scan(&config, opts))?;
            match format {
                OutputFormat::Text => print!("{}", scan::render_text(&summary)),
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
            }
            Ok(summary.exit_code)
        }
        Command::Run => runtime()?.block_on(trivy_digest::run::run(config)),
        Command::Summary(args) => runtime()?.block_on(trivy_digest::summary::cli(&config, args)),
        Command::Alert { test: _ } => {
            runtime()?.block_on(trivy_digest::alert::test_command(&config))
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            print!("{}", config.to_redacted_yaml());
            eprintln!("configuration is valid");
            Ok(exit::OK)
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
