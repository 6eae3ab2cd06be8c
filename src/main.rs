//! `iam-warden`: command line, configuration, telemetry; everything else is in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use iam_warden::app::{self, Output};
use iam_warden::config::Config;
use iam_warden::controller;
use iam_warden::metrics::Metrics;

/// Resolves on the first SIGTERM or SIGINT; a second one exits the process at once (130).
async fn shutdown_signal() {
    first_signal().await;
    tracing::info!("signal received: shutting down (send it again to exit at once)");
    tokio::spawn(async {
        first_signal().await;
        eprintln!("iam-warden: second signal: exiting at once");
        std::process::exit(130);
    });
}

async fn first_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the daemon");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[derive(Parser)]
#[command(
    name = "iam-warden",
    version,
    about = "Keeps every IAM user of an AWS account on a security baseline"
)]
struct Cli {
    /// TOML configuration file (it must exist). Without it: defaults + IAM_WARDEN_* variables.
    #[arg(long, global = true, env = "IAM_WARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stderr: auto (text on a terminal, JSON otherwise), text or json.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto, env = "IAM_WARDEN_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// One read-only pass: judge every user against the baseline.
    /// Exit 0 = compliant, 1 = findings, 2 = error.
    Audit {
        #[arg(long, value_enum, default_value_t = OutputArg::Text)]
        output: OutputArg,
        /// Evaluate as if now were this RFC 3339 time (e.g. 2026-12-31T00:00:00Z).
        #[arg(long, value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
    },
    /// Show, per user, every change enforcement would make and why. Writes nothing.
    /// Exit 0 = nothing to change, 1 = changes planned, 2 = error, 3 = breaker would trip.
    Plan {
        #[arg(long, value_enum, default_value_t = OutputArg::Text)]
        output: OutputArg,
        /// Evaluate as if now were this RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
    },
    /// Apply one enforcement pass (mode = "enforce"; in dry-run it journals would-be
    /// writes only). Exit 0 = done, 1 = writes failed (or, in dry-run, changes pending),
    /// 2 = error, 3 = blast-radius breaker tripped (nothing applied).
    Enforce {
        /// Run one pass and exit (continuous enforcement is `iam-warden run`).
        #[arg(long)]
        once: bool,
        #[arg(long, value_enum, default_value_t = OutputArg::Text)]
        output: OutputArg,
        #[arg(long, value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
        /// Apply even when the pass would take access away from more existing users than
        /// safety.max_users_changed(_percent) allows.
        #[arg(long)]
        confirm_large_change: bool,
    },
    /// Run the controller: watch CloudTrail (and SQS if configured), reconcile affected
    /// users, resync periodically, serve /metrics /healthz /readyz on server.listen.
    /// SIGTERM/SIGINT shut down gracefully (exit 0); a second signal exits at once (130).
    Run,
    /// Validate the configuration and print the effective values.
    CheckConfig,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| {
            format!("`{s}` is not an RFC 3339 time ({e}); write e.g. 2026-12-31T00:00:00Z")
        })
}

fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

impl From<OutputArg> for Output {
    fn from(o: OutputArg) -> Output {
        match o {
            OutputArg::Text => Output::Text,
            OutputArg::Json => Output::Json,
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

fn enforce(cfg: &Config, output: OutputArg, opts: app::EnforceOptions) -> anyhow::Result<u8> {
    runtime()?.block_on(async {
        let clients = app::clients(cfg).await?;
        let report = app::enforce(cfg, &clients, &opts).await?;
        match Output::from(output) {
            Output::Json => println!("{}", report.to_json()),
            Output::Text => print!("{}", report.to_text()),
        }
        Ok(report.exit_code())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("iam-warden: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<u8> {
    // The daemon logs what it does; one-shot commands print reports and log only problems.
    let level = match cli.command {
        Command::Run => "info",
        _ => "warn",
    };
    init_logging(cli.log_format, level);
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run => {
            let tuned = iam_warden::memory::tune_allocator();
            tracing::debug!(settings = ?tuned, "allocator tuned for a long-running daemon");
            runtime()?.block_on(async {
                let metrics = Metrics::new(env!("CARGO_PKG_VERSION"))?;
                controller::daemon::run(cfg, metrics, shutdown_signal()).await?;
                tracing::info!("stopped");
                Ok(0)
            })
        }
        Command::CheckConfig => {
            print!("{}", cfg.to_toml()?);
            eprintln!("configuration is valid");
            Ok(0)
        }
        Command::Plan { output, at } => enforce(
            &cfg,
            output,
            app::EnforceOptions {
                at,
                confirm_large_change: false,
                plan_only: true,
            },
        ),
        Command::Enforce {
            once,
            output,
            at,
            confirm_large_change,
        } => {
            if !once {
                anyhow::bail!("`enforce` runs one pass and needs --once; for continuous enforcement run `iam-warden run`");
            }
            enforce(
                &cfg,
                output,
                app::EnforceOptions {
                    at,
                    confirm_large_change,
                    plan_only: false,
                },
            )
        }
        Command::Audit { output, at } => {
            let output = output.into();
            runtime()?.block_on(async {
                let clients = app::clients(&cfg).await?;
                let report = app::audit(&cfg, &clients, at.unwrap_or_else(Utc::now)).await?;
                match output {
                    Output::Json => println!("{}", report.to_json()),
                    Output::Text => print!("{}", report.to_text()),
                }
                Ok(if report.compliant() { 0 } else { 1 })
            })
        }
    }
}
