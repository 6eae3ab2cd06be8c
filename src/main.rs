//! `iam-warden`: command line, configuration, telemetry; everything else is in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use iam_warden::app::{self, Output};
use iam_warden::config::Config;
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
    /// On an error, also print its full cause chain (as does RUST_LOG=debug); iam-warden's
    /// own debug logs too, unless RUST_LOG says otherwise.
    #[arg(long, short, global = true)]
    verbose: bool,
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

#[derive(Clone, Copy, ValueEnum)]
enum AuditOutput {
    Text,
    Json,
    Ocsf,
}

#[derive(Subcommand)]
enum Command {
    /// One read-only pass: judge every user against the baseline.
    /// Exit 0 = compliant, 1 = findings, 2 = error.
    Audit {
        /// text, json (iam-warden's audit schema) or ocsf (OCSF 1.1 Compliance Finding
        /// records, one JSON array, like Prowler's json-ocsf).
        #[arg(long, value_enum, default_value_t = AuditOutput::Text)]
        output: AuditOutput,
        /// Also send the findings to Security Hub (needs export.securityhub.enabled) and
        /// resolve the earlier ones that are gone. A failed export is reported on stderr;
        /// the exit code stays about the findings.
        #[arg(long)]
        export: bool,
        /// Evaluate as if now were this RFC 3339 time (e.g. 2026-12-31T00:00:00Z).
        #[arg(long, value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
        /// Also judge each control of a benchmark: `cis-5.0` (CIS AWS Foundations v5.0.0
        /// section 1). Exit 0 = no control fails or cannot be checked, 1 = some do.
        #[arg(long, value_parser = ["cis-5.0"])]
        benchmark: Option<String>,
        /// Only this account (12 digits): one of the accounts in scope (`[accounts]`).
        #[arg(long)]
        account: Option<String>,
    },
    /// Show, per user, every change enforcement would make and why. Writes nothing.
    /// Exit 0 = nothing to change, 1 = changes planned, 2 = error, 3 = breaker would trip.
    Plan {
        #[arg(long, value_enum, default_value_t = OutputArg::Text)]
        output: OutputArg,
        /// Evaluate as if now were this RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
        /// Only this account (12 digits): one of the accounts in scope (`[accounts]`).
        #[arg(long)]
        account: Option<String>,
    },
    /// Apply one enforcement pass (mode = "enforce"; in dry-run it journals would-be
    /// writes only). Exit 0 = done, 1 = writes failed (or, in dry-run, changes pending),
    /// 2 = error, 3 = blast-radius breaker tripped (access-reducing changes held).
    Enforce {
        /// Run one pass and exit (continuous enforcement is `iam-warden run`).
        #[arg(long)]
        once: bool,
        #[arg(long, value_enum, default_value_t = OutputArg::Text)]
        output: OutputArg,
        /// Refused with an explanation: enforce writes the time into AWS tags, so it
        /// always runs at the real time (tests set IAM_WARDEN_TEST_CLOCK instead).
        #[arg(long, hide = true)]
        at: Option<String>,
        /// Apply even when the pass would take access away from more existing users than
        /// safety.max_users_changed(_percent) allows.
        #[arg(long)]
        confirm_large_change: bool,
        /// Only this account (12 digits): one of the accounts in scope (`[accounts]`).
        #[arg(long)]
        account: Option<String>,
    },
    /// Read-only: replay the account's CloudTrail calls against the baseline as configured
    /// and report what its MFA and source-IP policies would have denied, for whom and why.
    /// Exit 0 = nothing would have been denied, 1 = some calls would have been, 2 = error.
    Impact {
        #[arg(long, value_enum, default_value_t = OutputArg::Text)]
        output: OutputArg,
        /// CloudTrail log files as delivered to S3 (*.json.gz, or *.json), searched
        /// recursively; without it: the account's LookupEvents over --since.
        #[arg(long)]
        from: Option<PathBuf>,
        /// The LookupEvents window back from now (e.g. 7d, 36h; at most 90d).
        #[arg(long, default_value = "7d")]
        since: iam_warden::config::Secs,
        /// Propose the networks to allow (allowed_cidrs) from the observed addresses.
        #[arg(long)]
        suggest_networks: bool,
        /// Widen an IPv4 address to at most this prefix when suggesting.
        #[arg(long, default_value_t = 24)]
        max_prefix_v4: u8,
        /// Widen an IPv6 address to at most this prefix when suggesting.
        #[arg(long, default_value_t = 48)]
        max_prefix_v6: u8,
    },
    /// Run the controller: watch CloudTrail (and SQS if configured), reconcile affected
    /// users, resync periodically, serve /metrics /healthz /readyz on server.listen.
    /// SIGTERM/SIGINT shut down gracefully (exit 0); a second signal exits at once (130).
    Run,
    /// Validate the configuration and print the effective values.
    CheckConfig,
    /// Put back an access key that key rotation deactivated (within its recovery window);
    /// its rotation restarts at draining. Refuses any other key. Journaled; in dry-run mode
    /// only journaled.
    Reactivate {
        /// The IAM user name.
        user: String,
        /// The AccessKeyId to reactivate.
        access_key_id: String,
    },
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| {
            format!("`{s}` is not an RFC 3339 time ({e}); write e.g. 2026-12-31T00:00:00Z")
        })
}

/// Tests only: the time `enforce` runs at instead of now (for `run`: the time its clock
/// starts at, advancing in real time). Its name says what it is for:
/// enforce writes that time into AWS tags (`iam-warden/inactive-since/<KeyId>`), so it is
/// never set by a flag that could be used by accident.
const TEST_CLOCK_ENV: &str = "IAM_WARDEN_TEST_CLOCK";

/// Takes [`TEST_CLOCK_ENV`] out of the environment (it is not a configuration key, and
/// the configuration rejects unknown `IAM_WARDEN_*` variables). Called first in `main`,
/// while the process has one thread.
fn take_test_clock() -> Option<std::ffi::OsString> {
    let v = std::env::var_os(TEST_CLOCK_ENV);
    if v.is_some() {
        std::env::remove_var(TEST_CLOCK_ENV);
    }
    v
}

fn test_clock(v: Option<&std::ffi::OsStr>, command: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
    let Some(v) = v else {
        return Ok(None);
    };
    let v = v.to_string_lossy();
    let at = parse_time(&v).map_err(|e| anyhow::anyhow!("{TEST_CLOCK_ENV}: {e}"))?;
    tracing::warn!(
        at = %at.to_rfc3339(),
        "{TEST_CLOCK_ENV} is set: {command} runs as if now were {at} and writes that time into \
         AWS tags; it exists for tests, unset it everywhere else"
    );
    Ok(Some(at))
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

/// The runtime threads' stack: 8 MiB, not tokio's 2 MiB. Unoptimised (a debug build),
/// Security Hub's finding (de)serialisers need more than 2 MiB; only touched pages are
/// resident, so the optimised daemon's memory does not change.
const RUNTIME_STACK: usize = 8 * 1024 * 1024;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(RUNTIME_STACK)
        .build()
        .context("cannot start the async runtime")
}

fn enforce(
    cfg: &Config,
    output: OutputArg,
    opts: app::EnforceOptions,
    account: Option<&str>,
) -> anyhow::Result<u8> {
    use iam_warden::config::AccountSource;
    runtime()?.block_on(async {
        let clients = app::clients(cfg).await?;
        if cfg.accounts.source != AccountSource::Caller {
            let scope = app::scope(cfg, &clients, account).await?;
            let report = app::multi::enforce(cfg, &clients, &scope, &opts).await?;
            match Output::from(output) {
                Output::Json => println!("{}", report.to_json()),
                Output::Text => print!("{}", report.to_text()),
            }
            return Ok(report.exit_code());
        }
        if let Some(id) = account {
            app::check_own_account(&clients, id).await?;
        }
        let report = app::enforce(cfg, &clients, &opts).await?;
        match Output::from(output) {
            Output::Json => println!("{}", report.to_json()),
            Output::Text => print!("{}", report.to_text()),
        }
        Ok(report.exit_code())
    })
}

/// Tests only: abort the process right after the named rotation step (see
/// `iam_warden::apply::set_test_crash_after`). Taken out of the environment like
/// [`TEST_CLOCK_ENV`].
const TEST_CRASH_ENV: &str = "IAM_WARDEN_TEST_CRASH_AFTER";

fn main() -> ExitCode {
    let clock = take_test_clock();
    if let Some(step) = std::env::var_os(TEST_CRASH_ENV) {
        std::env::remove_var(TEST_CRASH_ENV);
        iam_warden::apply::set_test_crash_after(Some(step.to_string_lossy().into_owned()));
    }
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match real_main(cli, clock) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("iam-warden: error: {}", one_line(&e));
            if verbose || tracing::enabled!(tracing::Level::DEBUG) {
                for line in cause_chain(&e) {
                    eprintln!("  caused by: {line}");
                }
            }
            ExitCode::from(2)
        }
    }
}

/// The error and those of its causes whose text it does not already contain, on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = flatten(&cause.to_string());
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn flatten(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every cause, each once, then the SDK's full report of an AWS error.
fn cause_chain(e: &anyhow::Error) -> Vec<String> {
    let mut out: Vec<String> = e.chain().skip(1).map(|c| flatten(&c.to_string())).collect();
    out.extend(
        e.chain()
            .filter_map(|c| c.downcast_ref::<iam_warden::Error>())
            .filter_map(|w| w.detail())
            .map(flatten),
    );
    out.dedup();
    out
}

fn real_main(cli: Cli, test_clock_env: Option<std::ffi::OsString>) -> anyhow::Result<u8> {
    // The daemon logs what it does; one-shot commands print reports and log only problems.
    // Without RUST_LOG, the SDK's credential-chain warnings (one per provider tried, with
    // debug structures) are left out: the error iam-warden reports says it in one line.
    let level = match (&cli.command, cli.verbose) {
        (_, true) => "warn,iam_warden=debug",
        (Command::Run, false) => "info,aws_config=error",
        _ => "warn,aws_config=error",
    };
    init_logging(cli.log_format, level);
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run => {
            let tuned = iam_warden::memory::tune_allocator();
            tracing::debug!(settings = ?tuned, "allocator tuned for a long-running daemon");
            // The daemon's clock starts at the test clock and advances in real time.
            let clock = match test_clock(test_clock_env.as_deref(), "run")? {
                Some(at) => iam_warden::controller::reconcile::Clock::starting_at(at),
                None => iam_warden::controller::reconcile::Clock::real(),
            };
            runtime()?.block_on(async {
                let metrics = Metrics::new(env!("CARGO_PKG_VERSION"))?;
                app::daemon::run_with_clock(cfg, metrics, shutdown_signal(), clock).await?;
                tracing::info!("stopped");
                Ok(0)
            })
        }
        Command::Reactivate {
            user,
            access_key_id,
        } => runtime()?.block_on(async {
            let clients = app::clients(&cfg).await?;
            let outcome = app::reactivate(&cfg, &clients, &user, &access_key_id).await?;
            match outcome {
                iam_warden::apply::Outcome::Applied => {
                    println!("{access_key_id} of {user} is active again; it drains until its consumer switches to the new key");
                    Ok(0)
                }
                iam_warden::apply::Outcome::DryRun => {
                    println!("dry-run: {access_key_id} of {user} would be reactivated (journaled); set mode = \"enforce\" to apply");
                    Ok(1)
                }
                other => anyhow::bail!("{access_key_id} of {user} was not reactivated: {other:?}"),
            }
        }),
        Command::CheckConfig => {
            print!("{}", cfg.to_toml()?);
            eprintln!("configuration is valid");
            Ok(0)
        }
        Command::Plan {
            output,
            at,
            account,
        } => enforce(
            &cfg,
            output,
            app::EnforceOptions {
                at,
                confirm_large_change: false,
                plan_only: true,
                journal: None,
            },
            account.as_deref(),
        ),
        Command::Enforce {
            once,
            output,
            at,
            confirm_large_change,
            account,
        } => {
            if !once {
                anyhow::bail!("`enforce` runs one pass and needs --once; for continuous enforcement run `iam-warden run`");
            }
            if at.is_some() {
                anyhow::bail!(
                    "`enforce --at` is refused: enforce writes the time it runs at into AWS tags \
                     (the inactive-since date that starts the delete clock), so a simulated time \
                     would be stored as fact; use `plan --at TIME` to see what enforcement would \
                     do at that time"
                );
            }
            enforce(
                &cfg,
                output,
                app::EnforceOptions {
                    at: test_clock(test_clock_env.as_deref(), "enforce")?,
                    confirm_large_change,
                    plan_only: false,
                    journal: None,
                },
                account.as_deref(),
            )
        }
        Command::Impact {
            output,
            from,
            since,
            suggest_networks,
            max_prefix_v4,
            max_prefix_v6,
        } => {
            let opts = app::ImpactOptions {
                from,
                since: since.get(),
                now: Utc::now(),
                suggest_networks,
                max_prefix_v4,
                max_prefix_v6,
                threads: 0,
            };
            app::impact::check_options(&opts)?;
            runtime()?.block_on(async {
                let clients = app::clients(&cfg).await?;
                let report = app::impact(&cfg, &clients, &opts).await?;
                match Output::from(output) {
                    Output::Json => println!("{}", report.to_json()),
                    Output::Text => print!("{}", report.to_text()),
                }
                Ok(report.exit_code())
            })
        }
        Command::Audit {
            output,
            at,
            export,
            benchmark,
            account,
        } => runtime()?.block_on(async {
            let clients = app::clients(&cfg).await?;
            let now = at.unwrap_or_else(Utc::now);
            if cfg.accounts.source != iam_warden::config::AccountSource::Caller {
                let calls0 = clients.calls.total();
                let scope = app::scope(&cfg, &clients, account.as_deref()).await?;
                let report =
                    app::multi::audit(&cfg, &clients, &scope, now, benchmark.is_some(), calls0)
                        .await;
                match output {
                    AuditOutput::Json => println!("{}", report.to_json()),
                    AuditOutput::Ocsf => println!("{}", report.to_ocsf(&cfg)),
                    AuditOutput::Text => print!("{}", report.to_text()),
                }
                if export {
                    for a in &report.accounts {
                        let (Some(r), Some(c)) = (&a.report, &a.clients) else {
                            continue;
                        };
                        match app::audit::export_to_securityhub(&cfg, c, r).await {
                            Ok(x) => eprintln!("iam-warden: account {}: {}", a.id, x.summary()),
                            Err(e) => eprintln!(
                                "iam-warden: error: account {}: Security Hub export failed: {e}",
                                a.id
                            ),
                        }
                    }
                }
                for e in &report.errors {
                    eprintln!("iam-warden: error: account {}: {}", e.id, e.error);
                }
                return Ok(report.exit_code());
            }
            if let Some(id) = &account {
                app::check_own_account(&clients, id).await?;
            }
            let report = app::audit_with(&cfg, &clients, now, benchmark.is_some()).await?;
            match (&report.benchmark, output) {
                (_, AuditOutput::Json) => println!("{}", report.to_json()),
                (_, AuditOutput::Ocsf) => println!("{}", report.to_ocsf(&cfg)),
                (Some(b), AuditOutput::Text) => print!("{}", b.to_text(&report)),
                (None, AuditOutput::Text) => print!("{}", report.to_text()),
            }
            if export {
                match app::audit::export_to_securityhub(&cfg, &clients, &report).await {
                    Ok(r) => eprintln!("iam-warden: {}", r.summary()),
                    Err(e) => eprintln!("iam-warden: error: Security Hub export failed: {e}"),
                }
            }
            let ok = match &report.benchmark {
                Some(b) => b.passed(),
                None => report.compliant(),
            };
            Ok(if ok { 0 } else { 1 })
        }),
    }
}
