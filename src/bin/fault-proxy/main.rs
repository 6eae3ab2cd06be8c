//! `fault-proxy`: test support, a raw-TCP HTTP/1.1 proxy in front of moto that injects the
//! failures real IAM and real networks produce, so the pacing layer and idempotent apply can
//! be tested against the real aws-sdk clients.
//!
//! Each request is read whole (headers and `Content-Length` body), its operation taken from
//! the query-protocol body (`Action=...`, IAM and STS) or the JSON protocols' `X-Amz-Target`
//! header (Secrets Manager, SSM: `CreateSecret`, `PutParameter`), and then either forwarded
//! to moto on a fresh upstream connection and answered, or hit by one fault (errors in the
//! request's protocol: XML, or JSON with `__type`):
//!
//! | fault                 | what the client sees                               | applied? |
//! |-----------------------|----------------------------------------------------|----------|
//! | `throttle`            | 400, IAM XML error `Code=Throttling`               | no       |
//! | `throttle-retry-after`| the same with `Retry-After: <--retry-after>`       | no       |
//! | `500` / `503`         | `InternalFailure` / `ServiceUnavailable` XML error | no       |
//! | `reset`               | the connection reset (RST, `SO_LINGER` 0)          | no       |
//! | `applied-then-500`    | 500 after moto applied the call                    | yes      |
//! | `applied-then-reset`  | a reset after moto applied the call                | yes      |
//! | `slow`                | moto's answer after `--slow-ms`                    | yes      |
//! | `truncated`           | moto's status with half its body                   | yes      |
//! | `non-xml`             | 200 with an HTML page (a middlebox answered)       | no       |
//! | `hang`                | nothing, until the client gives up                 | no       |
//! | `kms-encryption-failure` | 400 `EncryptionFailure` (Secrets Manager: the KMS key is missing) | no |
//! | `kms-invalid-key-id`  | 400 `InvalidKeyId` (SSM: the KMS key is missing)   | no       |
//! | `access-denied`       | 403 `AccessDenied` (JSON: `AccessDeniedException`) | no       |
//!
//! Random faults: each request carrying an operation gets, with probability `--rate`, one of
//! the `--faults` kinds chosen uniformly, from one `fastrand` generator seeded with `--seed`
//! (the sequence is fixed; which request gets which draw depends on arrival order).
//! Scripted faults take precedence and hit exactly once.
//!
//! Admin endpoints, never forwarded: `POST /fault-proxy/script` (body: lines
//! `ACTION FAULT`; each hits the next request of that operation once), `POST
//! /fault-proxy/rate` (body: the new probability, e.g. `0`), `GET /fault-proxy/stats` (JSON:
//! `requests`, `forwarded`, `faults` by kind, `by_action` of faults by operation and kind,
//! `scripts_pending`); `POST /fault-proxy/refuse` (body: lines `ACTION TEXT`; from then on every
//! request of that operation whose body contains TEXT is answered `access-denied`, e.g.
//! `AssumeRole 123456789012`: one account's role cannot be assumed).
//!
//! Usage: `fault-proxy --upstream http://127.0.0.1:PORT [--listen 127.0.0.1:0] [--seed N]
//! [--rate 0.3] [--faults throttle,500,...] [--slow-ms 300] [--retry-after 1]
//! [--exit-on-stdin-eof]`. It prints `Listening on http://ADDR`, then serves until killed
//! (or until its stdin reaches EOF with `--exit-on-stdin-eof`). Only plain HTTP upstreams.

mod fault;
mod serve;
mod wire;

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;

use fault::{Fault, Proxy, Shared, Stats};
use serve::serve;

#[derive(Debug, Parser)]
#[command(
    name = "fault-proxy",
    about = "An HTTP proxy in front of moto that injects IAM faults"
)]
struct Cli {
    /// moto's address, e.g. http://127.0.0.1:5000.
    #[arg(long)]
    upstream: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability (0 to 1) that a request gets a random fault.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Kinds of random faults, comma-separated (see the module doc).
    #[arg(long, value_delimiter = ',', default_value = "throttle")]
    faults: Vec<String>,
    /// Delay of a `slow` answer, in milliseconds.
    #[arg(long, default_value_t = 300)]
    slow_ms: u64,
    /// `Retry-After` value of `throttle-retry-after`, in seconds.
    #[arg(long, default_value = "1")]
    retry_after: String,
    /// Exit when stdin reaches EOF (a test's child dies with the test).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fault-proxy: cannot start the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("fault-proxy: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let upstream = cli
        .upstream
        .trim_end_matches('/')
        .strip_prefix("http://")
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| {
            format!(
                "--upstream {:?} is not an http://HOST:PORT address; pass moto's, e.g. http://127.0.0.1:5000",
                cli.upstream
            )
        })?
        .to_string();
    if !(0.0..=1.0).contains(&cli.rate) {
        return Err(format!(
            "--rate {} is not a probability: use a number from 0 to 1, e.g. 0.3",
            cli.rate
        ));
    }
    let kinds = cli
        .faults
        .iter()
        .filter(|f| !f.trim().is_empty())
        .map(|f| Fault::parse(f))
        .collect::<Result<Vec<_>, _>>()?;
    if cli.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let mut sink = [0u8; 4096];
            let mut stdin = std::io::stdin().lock();
            loop {
                match std::io::Read::read(&mut stdin, &mut sink) {
                    Ok(0) | Err(_) => std::process::exit(0),
                    Ok(_) => {}
                }
            }
        });
    }
    let proxy = Arc::new(Proxy {
        shared: Mutex::new(Shared {
            upstream,
            rng: fastrand::Rng::with_seed(cli.seed),
            rate: cli.rate,
            kinds,
            scripts: VecDeque::new(),
            refusals: Vec::new(),
            stats: Stats::default(),
        }),
        slow: Duration::from_millis(cli.slow_ms),
        retry_after: cli.retry_after,
    });
    let listener = TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "Listening on http://{addr}");
        let _ = out.flush();
    }
    loop {
        let (conn, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accept failed: {e}"))?;
        let proxy = proxy.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(proxy, conn).await {
                eprintln!("fault-proxy: connection ended: {e}");
            }
        });
    }
}
