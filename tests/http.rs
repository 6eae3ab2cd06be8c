//! The admin HTTP server over a real socket: /metrics, /healthz, /readyz, 404, bind errors,
//! graceful shutdown, and `promtool check metrics` on the exposition.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iam_warden::http::{self, Health};
use iam_warden::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    health: Health,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), iam_warden::Error>>,
}

async fn start(staleness: Duration) -> Server {
    let metrics = Metrics::new("0.0.0-test").expect("metrics");
    let health = Health::new(staleness, Some(metrics.clone()));
    let listener = http::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        health.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        health,
        metrics,
        stop: Some(tx),
        task,
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client: one request, `Connection: close`, read to EOF.
async fn get(addr: SocketAddr, path: &str) -> Reply {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read response");
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("response within 10s");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.lines();
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Poll `path` until it answers `status`, failing after 5 s.
async fn wait_for_status(addr: SocketAddr, path: &str, status: u16) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(addr, path).await;
        if r.status == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still {} ({:?}), expected {status}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn readyz_follows_readiness_and_shutdown() {
    let s = start(Duration::from_secs(60)).await;
    let r = get(s.addr, "/readyz").await;
    assert_eq!((r.status, r.body.trim()), (503, "not ready"));
    s.health.set_ready(true);
    let r = get(s.addr, "/readyz").await;
    assert_eq!((r.status, r.body.trim()), (200, "ready"));
    assert_eq!(s.metrics.ready.get(), 1);
    s.health.set_shutting_down();
    let r = get(s.addr, "/readyz").await;
    assert_eq!((r.status, r.body.trim()), (503, "shutting down"));
    s.health.set_ready(true);
    let r = get(s.addr, "/readyz").await;
    assert_eq!(r.status, 503, "shutdown is for ever");
    assert_eq!(s.metrics.ready.get(), 0);
}

#[tokio::test]
async fn healthz_follows_the_heartbeat() {
    let s = start(Duration::from_millis(50)).await;
    // a fresh heartbeat right before the request: 200
    let r = ok_with_fresh_heartbeats(&s).await;
    assert_eq!(r.body.trim(), "ok");
    // no heartbeat: turns stale
    let r = wait_for_status(s.addr, "/healthz", 503).await;
    assert_eq!(r.body.trim(), "stale");
    // the loop is back: alive again; /healthz never depended on readiness
    assert!(!s.health.is_ready());
    ok_with_fresh_heartbeats(&s).await;
}

/// Heartbeat, then GET /healthz, until it answers 200 (retried in case the test machine
/// stalled for longer than the tiny staleness window between the two); fails after 5 s.
async fn ok_with_fresh_heartbeats(s: &Server) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        s.health.heartbeat();
        let r = get(s.addr, "/healthz").await;
        if r.status == 200 {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never 200: {}",
            r.status
        );
    }
}

#[tokio::test]
async fn metrics_are_served_in_the_text_format() {
    let s = start(Duration::from_secs(60)).await;
    let r = get(s.addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4"),
        "{:?}",
        r.headers
    );
    assert!(
        r.body
            .contains("iam_warden_build_info{version=\"0.0.0-test\"} 1"),
        "{}",
        r.body
    );
    assert!(r.body.contains("iam_warden_ready 0"));
    if cfg!(target_os = "linux") {
        for m in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(r.body.contains(m), "{m} missing");
        }
    }
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let s = start(Duration::from_secs(60)).await;
    // some activity, so histograms and non-zero series are checked too
    s.metrics.reconciled(
        iam_warden::metrics::ReconcileResult::Success,
        Duration::from_millis(40),
    );
    s.metrics.write(
        "attach_group_policy",
        iam_warden::metrics::WriteOutcome::DryRun,
        Some("alice"),
        "warden-baseline",
    );
    // the key gauges and the key-age gauge histogram, with values
    let mut by_phase = [0; iam_warden::baseline::plan::rotation::KEY_PHASES.len()];
    by_phase[0] = 2;
    by_phase[3] = 1;
    s.metrics.set_key_stats(
        "111122223333",
        &iam_warden::baseline::plan::rotation::KeyStats {
            by_phase,
            age_buckets: [1, 1, 1, 1, 2, 2, 3, 3, 3],
            age_count: 3,
            age_sum_seconds: 3.0e7,
            oldest_active_age_seconds: 2.0e7,
            next_due: Some(chrono::Utc::now()),
        },
    );
    let body = get(s.addr, "/metrics").await.body;
    assert!(
        body.contains("iam_warden_access_key_age_seconds_bucket{le=\"7776000\"} 2"),
        "{body}"
    );
    let promtool = "/usr/bin/promtool";
    let path = if std::path::Path::new(promtool).exists() {
        promtool
    } else {
        "promtool"
    };
    let child = Command::new(path)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run promtool ({e}): install it with `apt-get install prometheus` (Debian package `prometheus`)"
        ),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics reported problems ({}):\n{report}",
        out.status
    );
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let s = start(Duration::from_secs(60)).await;
    for p in ["/", "/x", "/metrics/x", "/healthz/", "/debug/pprof"] {
        assert_eq!(get(s.addr, p).await.status, 404, "{p}");
    }
}

#[tokio::test]
async fn binding_a_used_port_says_what_to_do() {
    let s = start(Duration::from_secs(60)).await;
    let err = http::bind(s.addr)
        .await
        .expect_err("the port is taken by the running server");
    let msg = err.to_string();
    assert!(msg.contains(&s.addr.to_string()), "{msg}");
    assert!(msg.contains("server.listen"), "{msg}");
    assert!(msg.contains("in use"), "{msg}");
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let mut s = start(Duration::from_secs(60)).await;
    assert_eq!(get(s.addr, "/healthz").await.status, 200);
    // an idle keep-alive connection must not hold the shutdown up
    let mut idle = TcpStream::connect(s.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    assert!(!s.task.is_finished());
    s.stop
        .take()
        .expect("stop sender")
        .send(())
        .expect("send stop");
    let done = tokio::time::timeout(Duration::from_secs(10), &mut s.task)
        .await
        .expect("serve returns within 10s of shutdown");
    done.expect("join").expect("serve returns Ok");
    assert!(
        TcpStream::connect(s.addr).await.is_err(),
        "the listener is closed after serve returns"
    );
}
