//! `fault-proxy`: test support, a raw-TCP HTTP/1.1 proxy in front of moto that injects the
//! failures real IAM and real networks produce, so the pacing layer and idempotent apply can
//! be tested against the real aws-sdk clients.
//!
//! Each request is read whole (headers and `Content-Length` body), its operation taken from
//! the query-protocol body (`Action=...`, IAM and STS), and then either forwarded to moto on
//! a fresh upstream connection and answered, or hit by one fault:
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
//!
//! Random faults: each request carrying an `Action` gets, with probability `--rate`, one of
//! the `--faults` kinds chosen uniformly, from one `fastrand` generator seeded with `--seed`
//! (the sequence is fixed; which request gets which draw depends on arrival order).
//! Scripted faults take precedence and hit exactly once.
//!
//! Admin endpoints, never forwarded: `POST /fault-proxy/script` (body: lines
//! `ACTION FAULT`; each hits the next request of that operation once), `POST
//! /fault-proxy/rate` (body: the new probability, e.g. `0`), `GET /fault-proxy/stats` (JSON:
//! `requests`, `forwarded`, `faults` by kind, `by_action` of faults by operation and kind,
//! `scripts_pending`).
//!
//! Usage: `fault-proxy --upstream http://127.0.0.1:PORT [--listen 127.0.0.1:0] [--seed N]
//! [--rate 0.3] [--faults throttle,500,...] [--slow-ms 300] [--retry-after 1]
//! [--exit-on-stdin-eof]`. It prints `Listening on http://ADDR`, then serves until killed
//! (or until its stdin reaches EOF with `--exit-on-stdin-eof`). Only plain HTTP upstreams.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Throttle,
    ThrottleRetryAfter,
    E500,
    E503,
    Reset,
    AppliedThen500,
    AppliedThenReset,
    Slow,
    Truncated,
    NonXml,
    Hang,
}

const FAULTS: &[(&str, Fault)] = &[
    ("throttle", Fault::Throttle),
    ("throttle-retry-after", Fault::ThrottleRetryAfter),
    ("500", Fault::E500),
    ("503", Fault::E503),
    ("reset", Fault::Reset),
    ("applied-then-500", Fault::AppliedThen500),
    ("applied-then-reset", Fault::AppliedThenReset),
    ("slow", Fault::Slow),
    ("truncated", Fault::Truncated),
    ("non-xml", Fault::NonXml),
    ("hang", Fault::Hang),
];

impl Fault {
    fn parse(s: &str) -> Result<Fault, String> {
        FAULTS
            .iter()
            .find(|(n, _)| *n == s.trim())
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let names: Vec<_> = FAULTS.iter().map(|(n, _)| *n).collect();
                format!("unknown fault {s:?}: use one of {}", names.join(", "))
            })
    }

    fn name(self) -> &'static str {
        FAULTS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| *n)
    }
}

#[derive(Default)]
struct Stats {
    requests: u64,
    forwarded: u64,
    faults: BTreeMap<&'static str, u64>,
    by_action: BTreeMap<String, BTreeMap<&'static str, u64>>,
}

struct Shared {
    upstream: String,
    rng: fastrand::Rng,
    rate: f64,
    kinds: Vec<Fault>,
    scripts: VecDeque<(String, Fault)>,
    stats: Stats,
}

struct Proxy {
    shared: Mutex<Shared>,
    slow: Duration,
    retry_after: String,
}

impl Proxy {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault for this request, if any, and count it.
    fn decide(&self, action: Option<&str>) -> Option<Fault> {
        let mut s = self.lock();
        s.stats.requests += 1;
        let action = action?;
        let fault = if let Some(i) = s.scripts.iter().position(|(a, _)| a == action) {
            s.scripts.remove(i).map(|(_, f)| f)
        } else if !s.kinds.is_empty() && s.rng.f64() < s.rate {
            let n = s.kinds.len();
            let i = s.rng.usize(..n);
            Some(s.kinds[i])
        } else {
            None
        }?;
        *s.stats.faults.entry(fault.name()).or_insert(0) += 1;
        *s.stats
            .by_action
            .entry(action.to_string())
            .or_default()
            .entry(fault.name())
            .or_insert(0) += 1;
        Some(fault)
    }

    fn stats_json(&self) -> String {
        let s = self.lock();
        serde_json::json!({
            "requests": s.stats.requests,
            "forwarded": s.stats.forwarded,
            "faults": s.stats.faults,
            "by_action": s.stats.by_action,
            "scripts_pending": s.scripts.len(),
        })
        .to_string()
    }
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

/// One HTTP/1.1 message read from a stream: the head (start line and headers, without the
/// blank line) and the body.
struct Message {
    head: String,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn start_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// The head with these headers left out.
    fn head_without(&self, drop: &[&str]) -> Vec<String> {
        self.head
            .lines()
            .enumerate()
            .filter(|(i, l)| {
                *i == 0
                    || !l
                        .split_once(':')
                        .is_some_and(|(k, _)| drop.iter().any(|d| k.trim().eq_ignore_ascii_case(d)))
            })
            .map(|(_, l)| l.to_string())
            .collect()
    }
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Read one request from `conn` (`buf` holds bytes already read). `None` at a clean EOF.
async fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Message>, String> {
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(i) = find_blank_line(buf) {
            break i;
        }
        let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("the client closed in the middle of a request".into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut msg = Message {
        head,
        body: Vec::new(),
    };
    if msg
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        return Err("chunked request bodies are not supported".into());
    }
    let len: usize = msg
        .header("content-length")
        .map(|v| v.parse().map_err(|_| format!("bad Content-Length {v:?}")))
        .transpose()?
        .unwrap_or(0);
    let start = end + 4;
    while buf.len() < start + len {
        let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the client closed in the middle of a request body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    msg.body = buf[start..start + len].to_vec();
    buf.drain(..start + len);
    Ok(Some(msg))
}

/// Decode a chunked body (moto answers with a length, but be safe).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&raw[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        raw = &raw[i + 2..];
        if size == 0 || raw.len() < size {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
}

/// Send `req` to moto on a fresh connection and read its whole answer.
async fn forward(upstream: &str, req: &Message) -> Result<Message, String> {
    let mut up = TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("cannot reach the upstream {upstream}: {e}"))?;
    let mut head = req.head_without(&["connection", "keep-alive", "proxy-connection"]);
    head.push("Connection: close".into());
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&req.body);
    up.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
    let end = find_blank_line(&raw).ok_or("the upstream answer has no header end")?;
    let mut resp = Message {
        head: String::from_utf8_lossy(&raw[..end]).into_owned(),
        body: raw[end + 4..].to_vec(),
    };
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        resp.body = dechunk(&resp.body);
    } else if let Some(len) = resp.header("content-length").and_then(|v| v.parse().ok()) {
        resp.body.truncate(len);
    }
    Ok(resp)
}

/// The answer bytes: `resp`'s status and headers with a `Content-Length` for `body`.
fn answer_bytes(resp: &Message, body: &[u8]) -> Vec<u8> {
    let mut head = resp.head_without(&["content-length", "transfer-encoding", "connection"]);
    head.push(format!("Content-Length: {}", body.len()));
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

fn error_answer(status: &str, code: &str, message: &str, extra: Option<String>) -> Vec<u8> {
    let body = format!(
        "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        if status.starts_with('4') { "Sender" } else { "Receiver" },
        uuid::Uuid::new_v4()
    );
    let head = Message {
        head: format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/xml{}",
            extra.map(|h| format!("\r\n{h}")).unwrap_or_default()
        ),
        body: Vec::new(),
    };
    answer_bytes(&head, body.as_bytes())
}

/// The `Action` of a query-protocol body.
fn action_of(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
}

/// Drop the connection with a reset (RST) instead of a clean close.
// Deprecated because a non-zero linger blocks the thread on drop; a zero one does not
// (the kernel discards the buffers and sends RST at once).
#[allow(deprecated)]
fn reset(conn: TcpStream) {
    let _ = conn.set_linger(Some(Duration::ZERO));
    drop(conn);
}

enum Next {
    KeepGoing,
    Close,
}

async fn serve(proxy: Arc<Proxy>, mut conn: TcpStream) -> Result<(), String> {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut conn, &mut buf).await? else {
            return Ok(());
        };
        match handle(&proxy, &mut conn, req).await? {
            Next::KeepGoing => {}
            Next::Close => {
                reset(conn);
                return Ok(());
            }
        }
    }
}

async fn handle(proxy: &Proxy, conn: &mut TcpStream, req: Message) -> Result<Next, String> {
    let path = req.start_line().split(' ').nth(1).unwrap_or_default();
    if let Some(admin) = path.strip_prefix("/fault-proxy/") {
        let out = admin_answer(proxy, admin, &req.body);
        conn.write_all(&out).await.map_err(|e| e.to_string())?;
        return Ok(Next::KeepGoing);
    }
    let action = action_of(&req.body);
    let fault = proxy.decide(action.as_deref());
    let upstream = proxy.lock().upstream.clone();
    let send_upstream = || async {
        let r = forward(&upstream, &req).await;
        if r.is_ok() {
            proxy.lock().stats.forwarded += 1;
        }
        r
    };
    let answer = match fault {
        None => {
            let resp = send_upstream().await?;
            answer_bytes(&resp, &resp.body)
        }
        Some(Fault::Throttle) => {
            error_answer("400 Bad Request", "Throttling", "Rate exceeded", None)
        }
        Some(Fault::ThrottleRetryAfter) => error_answer(
            "400 Bad Request",
            "Throttling",
            "Rate exceeded",
            Some(format!("Retry-After: {}", proxy.retry_after)),
        ),
        Some(Fault::E500) => error_answer(
            "500 Internal Server Error",
            "InternalFailure",
            "The request processing has failed because of an unknown error.",
            None,
        ),
        Some(Fault::E503) => error_answer(
            "503 Service Unavailable",
            "ServiceUnavailable",
            "Service is unable to handle request.",
            None,
        ),
        Some(Fault::Reset) => return Ok(Next::Close),
        Some(Fault::AppliedThen500) => {
            send_upstream().await?;
            error_answer(
                "500 Internal Server Error",
                "InternalFailure",
                "The request processing has failed because of an unknown error.",
                None,
            )
        }
        Some(Fault::AppliedThenReset) => {
            send_upstream().await?;
            return Ok(Next::Close);
        }
        Some(Fault::Slow) => {
            let resp = send_upstream().await?;
            tokio::time::sleep(proxy.slow).await;
            answer_bytes(&resp, &resp.body)
        }
        Some(Fault::Truncated) => {
            let resp = send_upstream().await?;
            answer_bytes(&resp, &resp.body[..resp.body.len() / 2])
        }
        Some(Fault::NonXml) => {
            let page = Message {
                head: "HTTP/1.1 200 OK\r\nContent-Type: text/html".into(),
                body: Vec::new(),
            };
            answer_bytes(
                &page,
                b"<html><body><h1>Gateway</h1>upstream is busy</body></html>",
            )
        }
        Some(Fault::Hang) => {
            // Never answer; wait until the client gives up and closes.
            let mut sink = [0u8; 1024];
            while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
            return Ok(Next::Close);
        }
    };
    conn.write_all(&answer).await.map_err(|e| e.to_string())?;
    Ok(Next::KeepGoing)
}

fn admin_answer(proxy: &Proxy, admin: &str, body: &[u8]) -> Vec<u8> {
    let ok = |ct: &str, b: String| {
        answer_bytes(
            &Message {
                head: format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}"),
                body: Vec::new(),
            },
            b.as_bytes(),
        )
    };
    let bad = |msg: String| {
        answer_bytes(
            &Message {
                head: "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain".into(),
                body: Vec::new(),
            },
            msg.as_bytes(),
        )
    };
    let text = String::from_utf8_lossy(body);
    match admin.split('?').next().unwrap_or_default() {
        "stats" => ok("application/json", proxy.stats_json()),
        "script" => {
            let mut parsed = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let Some((action, fault)) = line.trim().split_once(' ') else {
                    return bad(format!("script line {line:?} is not `ACTION FAULT`"));
                };
                match Fault::parse(fault) {
                    Ok(f) => parsed.push((action.to_string(), f)),
                    Err(e) => return bad(e),
                }
            }
            let n = parsed.len();
            proxy.lock().scripts.extend(parsed);
            ok("text/plain", format!("{n} scripted\n"))
        }
        "rate" => match text.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => {
                proxy.lock().rate = r;
                ok("text/plain", format!("rate {r}\n"))
            }
            _ => bad(format!("rate {text:?} is not a probability from 0 to 1")),
        },
        other => bad(format!("unknown admin endpoint /fault-proxy/{other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_round_trip() {
        for (name, f) in FAULTS {
            assert_eq!(Fault::parse(name), Ok(*f));
            assert_eq!(f.name(), *name);
        }
        assert!(Fault::parse("nope").unwrap_err().contains("use one of"));
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
        assert_eq!(dechunk(b"zz\r\n"), b"");
    }
}
