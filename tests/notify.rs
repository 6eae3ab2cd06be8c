//! Owner notifications end to end: a webhook receiver started here (signature and body
//! checked, retries, unreachable and silent receivers, a full queue, the shutdown drain),
//! SNS on moto (a topic with an SQS subscription, a missing topic), and the CLI's handling
//! of the signing-key file.

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use iam_warden::config::{Mode, Notifications, Secs};
use iam_warden::inventory::Tags;
use iam_warden::journal::{Entry, Journal};
use iam_warden::metrics::Metrics;
use iam_warden::notify::{Channels, NoticeEvent, Notifier};
use support::{bin, eventually, shared_moto, Account};

const KEY: &str = "webhook-signing-key-0123456789";
const QUERY_TOKEN: &str = "QUERY-TOKEN-must-not-be-logged";

// ---- a webhook receiver ----

/// One accepted request: its headers and its body.
type Request = (HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Received {
    hits: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<Request>>>,
    fail_first: usize,
}

async fn hook(
    State(r): State<Received>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let n = r.hits.fetch_add(1, Ordering::SeqCst) + 1;
    if n <= r.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.accepted.lock().unwrap().push((headers, body.to_vec()));
    StatusCode::NO_CONTENT
}

/// A receiver on a free port answering 503 to the first `fail_first` requests.
async fn receiver(fail_first: usize) -> (SocketAddr, Received) {
    let r = Received {
        fail_first,
        ..Received::default()
    };
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, r)
}

/// A port nothing listens on (bound, read, released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---- the notifier under test ----

struct Setup {
    _dir: tempfile::TempDir,
    journal_path: PathBuf,
    metrics: Arc<Metrics>,
    notifier: Arc<Notifier>,
    account: Account,
}

fn settings(webhook: Option<String>, key_file: &Path, sns: Option<String>) -> Notifications {
    Notifications {
        webhook_secret_file: webhook.as_ref().map(|_| key_file.to_path_buf()),
        webhook_url: webhook,
        sns_topic_arn: sns,
        default_owner: Some("security@example.com".into()),
        timeout: Secs::from_secs(1),
        max_attempts: 4,
        queue_capacity: 100,
        ..Notifications::default()
    }
}

async fn setup(
    webhook: Option<String>,
    sns: Option<String>,
    tune: impl FnOnce(&mut Notifications),
) -> Setup {
    setup_in(Mode::Enforce, webhook, sns, tune).await
}

async fn setup_in(
    mode: Mode,
    webhook: Option<String>,
    sns: Option<String>,
    tune: impl FnOnce(&mut Notifications),
) -> Setup {
    let account = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("webhook-key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let journal_path = dir.path().join("journal.jsonl");
    let journal = Arc::new(Journal::open(&journal_path).unwrap());
    let mut cfg = settings(webhook, &key_file, sns);
    tune(&mut cfg);
    let metrics = Metrics::new("test").unwrap();
    let channels = Channels::load(&cfg).unwrap();
    let notifier = Notifier::start(
        &cfg,
        channels,
        mode,
        &account.id,
        &account.clients(),
        journal,
        Some(metrics.clone()),
    );
    Setup {
        _dir: dir,
        journal_path,
        metrics,
        notifier,
        account,
    }
}

impl Setup {
    fn notify(&self, user: &str, event: NoticeEvent) {
        let tags: Tags = [(
            "iam-warden/owner".to_string(),
            format!("{user}@example.com"),
        )]
        .into_iter()
        .collect();
        let notice = self
            .notifier
            .notice(event, user, &tags, "key older than 90 days", Utc::now())
            .with_key("AKIAEXAMPLE000000001");
        self.notifier.notify(notice);
    }

    fn count(&self, channel: &str, outcome: &str) -> u64 {
        self.metrics
            .notifications_total
            .with_label_values(&[channel, outcome])
            .get()
    }

    fn journal(&self) -> Vec<Entry> {
        Journal::read_all(&self.journal_path).unwrap()
    }

    async fn wait_count(&self, channel: &str, outcome: &str, n: u64, deadline: Duration) {
        eventually(&format!("{n} {channel} {outcome}"), deadline, || async {
            (self.count(channel, outcome) >= n).then_some(())
        })
        .await;
    }
}

fn sign(body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

thread_local! {
    static LOGS: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { std::cell::RefCell::new(None) };
}

/// Capture the log lines written on this thread from now on (each test runs on one thread,
/// its runtime's tasks included). One global subscriber for the whole binary, so tracing's
/// per-callsite interest cache cannot disagree between tests running in parallel.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    struct W;
    impl std::io::Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            LOGS.with(|l| {
                if let Some(buf) = &*l.borrow() {
                    buf.lock().unwrap().extend_from_slice(b);
                }
            });
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let sub = tracing_subscriber::fmt()
            .with_writer(|| W)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(sub).expect("the only global subscriber");
    });
    let buf = Arc::new(Mutex::new(Vec::new()));
    LOGS.with(|l| *l.borrow_mut() = Some(buf.clone()));
    buf
}

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

// ---- webhook ----

#[tokio::test]
async fn the_webhook_gets_the_notice_signed_over_the_exact_body() {
    let (addr, r) = receiver(0).await;
    let s = setup(Some(format!("http://{addr}/hook")), None, |_| {}).await;
    s.notify("alice", NoticeEvent::KeyRotated);
    s.wait_count("webhook", "sent", 1, Duration::from_secs(10))
        .await;

    let got = r.accepted.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    let sig = headers
        .get("x-iam-warden-signature")
        .expect("the signature header")
        .to_str()
        .unwrap();
    assert_eq!(sig, sign(body), "HMAC-SHA256 of the exact body");
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["schema"], "iam-warden.notice/v1");
    assert_eq!(v["event"], "key-rotated");
    assert_eq!(v["user"], "alice");
    assert_eq!(v["owner"], "alice@example.com");
    assert_eq!(v["account"], s.account.id.as_str());
    assert_eq!(v["access_key_id"], "AKIAEXAMPLE000000001");
    assert_eq!(v["reason"], "key older than 90 days");
    assert!(
        !String::from_utf8_lossy(body).contains(KEY),
        "never the key"
    );

    let j = s.journal();
    let lines: Vec<(&str, &str, &str)> = j
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("notify", "key-rotated", "applied"),
            ("notify_webhook", "key-rotated", "applied")
        ]
    );
    assert_eq!(
        s.metrics
            .notices_total
            .with_label_values(&["key-rotated"])
            .get(),
        1
    );
    s.notifier
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(2))
        .await;
    let rendered = s.metrics.render();
    assert!(
        rendered.contains("iam_warden_notifications_total{channel=\"webhook\",outcome=\"sent\"} 1"),
        "{rendered}"
    );
    assert!(
        rendered.contains("iam_warden_notifications_total{channel=\"sns\",outcome=\"dropped\"} 0"),
        "every series pre-created"
    );
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_notice_on_the_third_attempt() {
    let (addr, r) = receiver(2).await;
    let s = setup(Some(format!("http://{addr}/hook")), None, |_| {}).await;
    s.notify("bob", NoticeEvent::RotationStuck);
    s.wait_count("webhook", "sent", 1, Duration::from_secs(15))
        .await;
    assert_eq!(r.hits.load(Ordering::SeqCst), 3, "two 503s, then accepted");
    let got = r.accepted.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0["x-iam-warden-signature"].to_str().unwrap(),
        sign(&got[0].1)
    );
    assert_eq!(s.count("webhook", "failed"), 0);
}

#[tokio::test]
async fn an_unreachable_webhook_is_failed_in_bounded_time_without_holding_up_the_caller() {
    let logs = capture_logs();
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/hook?token={QUERY_TOKEN}");
    let s = setup(Some(url), None, |c| c.max_attempts = 3).await;
    let started = Instant::now();
    for _ in 0..10 {
        s.notify("carol", NoticeEvent::KeyExposed);
    }
    let took = started.elapsed();
    // Ten journal lines (each synced); no channel is waited for.
    assert!(took < Duration::from_secs(2), "notify waited {took:?}");
    // 3 attempts, backoff below 0.25 s + 0.5 s: well within 10 s.
    s.wait_count("webhook", "failed", 10, Duration::from_secs(10))
        .await;
    assert_eq!(s.count("webhook", "sent"), 0);

    let failed: Vec<Entry> = s
        .journal()
        .into_iter()
        .filter(|e| e.action == "notify_webhook")
        .collect();
    assert_eq!(failed.len(), 10);
    let shown = format!("http://127.0.0.1:{port}/hook");
    for e in &failed {
        assert_eq!(e.outcome, "failed");
        let err = e.error.as_deref().unwrap_or_default();
        assert!(
            err.contains(&shown) && err.contains("gave up after 3 attempts"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
    let log = text(&logs);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("notification not delivered"))
        .collect();
    assert_eq!(lines.len(), 10, "{log}");
    assert!(lines[0].contains(&shown), "{}", lines[0]);
    let journal_text = std::fs::read_to_string(&s.journal_path).unwrap();
    for text in [&log, &journal_text] {
        assert!(
            !text.contains(QUERY_TOKEN),
            "the query string is never logged"
        );
        assert!(!text.contains(KEY), "the signing key is never logged");
    }
}

#[tokio::test]
async fn dry_run_journals_and_counts_but_delivers_nothing() {
    let (addr, r) = receiver(0).await;
    let s = setup_in(
        Mode::DryRun,
        Some(format!("http://{addr}/hook")),
        None,
        |_| {},
    )
    .await;
    s.notify("ivy", NoticeEvent::KeyExpiring);
    s.notifier
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(r.hits.load(Ordering::SeqCst), 0, "nothing sent in dry-run");
    let j = s.journal();
    assert_eq!(j.len(), 1, "{j:?}");
    assert_eq!(
        (
            j[0].action.as_str(),
            j[0].target.as_str(),
            j[0].outcome.as_str(),
            j[0].mode.as_str()
        ),
        ("notify", "key-expiring", "dry_run", "dry-run")
    );
    assert_eq!(
        s.metrics
            .notices_total
            .with_label_values(&["key-expiring"])
            .get(),
        1
    );
    for o in ["sent", "failed", "dropped"] {
        assert_eq!(s.count("webhook", o), 0, "{o}");
    }
}

#[tokio::test]
async fn an_https_url_goes_through_tls() {
    // A plain-HTTP receiver behind an https:// URL: the TLS handshake fails, which shows
    // the https scheme is handled by the TLS connector (not refused as unsupported).
    let (addr, r) = receiver(0).await;
    let s = setup(Some(format!("https://{addr}/hook")), None, |c| {
        c.max_attempts = 1
    })
    .await;
    s.notify("jack", NoticeEvent::KeyRotated);
    s.wait_count("webhook", "failed", 1, Duration::from_secs(10))
        .await;
    assert!(
        r.accepted.lock().unwrap().is_empty(),
        "no request was accepted"
    );
    let e = s
        .journal()
        .into_iter()
        .find(|e| e.action == "notify_webhook")
        .unwrap();
    let err = e.error.unwrap_or_default();
    assert!(!err.contains("scheme"), "{err}");
    assert!(
        err.contains("corrupt message") || err.to_lowercase().contains("tls"),
        "a TLS handshake error: {err}"
    );
    assert!(err.contains("gave up after 1 attempt,"), "{err}");
}

#[tokio::test]
async fn a_silent_receiver_costs_one_timeout_per_attempt() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let s = setup(Some(format!("http://{addr}/hook")), None, |c| {
        c.max_attempts = 2
    })
    .await;
    let started = Instant::now();
    s.notify("dave", NoticeEvent::KeyExpiring);
    let returned = started.elapsed();
    assert!(
        returned < Duration::from_secs(1),
        "notify returned after {returned:?}: it must not wait for the 2 s delivery"
    );
    s.wait_count("webhook", "failed", 1, Duration::from_secs(10))
        .await;
    let took = started.elapsed();
    // 2 attempts of 1 s, one backoff below 0.25 s (slack for a loaded machine).
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let e = s
        .journal()
        .into_iter()
        .find(|e| e.action == "notify_webhook")
        .unwrap();
    assert!(
        e.error.unwrap_or_default().contains("no answer within 1 s"),
        "the timeout is named"
    );
    drop(silent);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_blocking() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let s = setup(Some(format!("http://{addr}/hook")), None, |c| {
        c.queue_capacity = 1
    })
    .await;
    // One runtime thread: the delivery task cannot take anything off the queue while
    // this loop runs, so exactly one notice fits.
    for _ in 0..40 {
        s.notify("erin", NoticeEvent::KeyDeactivated);
    }
    assert_eq!(s.count("webhook", "dropped"), 39);
    let j = s.journal();
    let notify: Vec<&Entry> = j.iter().filter(|e| e.action == "notify").collect();
    assert_eq!(notify.len(), 40, "every notice is journaled");
    let dropped: Vec<&&Entry> = notify.iter().filter(|e| e.outcome == "failed").collect();
    assert_eq!(dropped.len(), 39);
    assert!(
        dropped[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("notifications.queue_capacity = 1"),
        "{:?}",
        dropped[0].error
    );
    // Shutdown with a short deadline gives up on the one being retried: counted dropped.
    let started = Instant::now();
    s.notifier
        .shutdown(tokio::time::Instant::now() + Duration::from_millis(300))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.count("webhook", "dropped"), 40);
    drop(silent);
}

#[tokio::test]
async fn shutdown_delivers_what_is_queued() {
    let (addr, r) = receiver(0).await;
    let s = setup(Some(format!("http://{addr}/hook")), None, |_| {}).await;
    for user in ["u1", "u2", "u3", "u4", "u5"] {
        s.notify(user, NoticeEvent::KeyDeleted);
    }
    // Nothing has run yet (one runtime thread): shutdown itself must deliver all five.
    s.notifier
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(10))
        .await;
    let mut users: Vec<String> = r
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<serde_json::Value>(b).unwrap()["user"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    users.sort();
    assert_eq!(users, ["u1", "u2", "u3", "u4", "u5"]);
    assert_eq!(s.count("webhook", "sent"), 5);
    // After shutdown a notice is still journaled and counted, not delivered.
    s.notify("late", NoticeEvent::KeyDeleted);
    assert_eq!(s.count("webhook", "dropped"), 1);
}

// ---- SNS ----

#[tokio::test]
async fn sns_publishes_the_notice_with_user_and_event_attributes() {
    let account = Account::new(shared_moto()).await;
    let sqs = aws_sdk_sqs::Client::new(&account.sdk);
    let (topic, queue_url) =
        support::sns_topic_to_queue(&account, "iam-warden-notices", "owner-inbox").await;

    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("journal.jsonl");
    let cfg = settings(None, &dir.path().join("unused"), Some(topic.clone()));
    let metrics = Metrics::new("test").unwrap();
    let notifier = Notifier::start(
        &cfg,
        Channels::load(&cfg).unwrap(),
        Mode::Enforce,
        &account.id,
        &account.clients(),
        Arc::new(Journal::open(&journal_path).unwrap()),
        Some(metrics.clone()),
    );
    let notice = notifier
        .notice(
            NoticeEvent::KeyExposed,
            "frank",
            &Tags::default(),
            "exposed",
            Utc::now(),
        )
        .with_key("AKIAEXAMPLE000000002");
    notifier.notify(notice);

    let msg = eventually("the SNS message in SQS", Duration::from_secs(15), || {
        let (sqs, url) = (sqs.clone(), queue_url.clone());
        async move {
            let out = sqs
                .receive_message()
                .queue_url(url)
                .wait_time_seconds(1)
                .send()
                .await
                .ok()?;
            out.messages()
                .first()
                .and_then(|m| m.body().map(str::to_string))
        }
    })
    .await;
    let envelope: serde_json::Value = serde_json::from_str(&msg).unwrap();
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["TopicArn"], topic.as_str());
    assert_eq!(envelope["Subject"], "iam-warden: key-exposed for frank");
    let attrs = &envelope["MessageAttributes"];
    assert_eq!(attrs["user"]["Type"], "String");
    assert_eq!(attrs["user"]["Value"], "frank");
    assert_eq!(attrs["event"]["Value"], "key-exposed");
    let inner: serde_json::Value =
        serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(inner["event"], "key-exposed");
    assert_eq!(inner["access_key_id"], "AKIAEXAMPLE000000002");
    assert_eq!(inner["owner"], "security@example.com", "the default owner");
    notifier
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(2))
        .await;
    assert_eq!(
        metrics
            .notifications_total
            .with_label_values(&["sns", "sent"])
            .get(),
        1
    );
}

#[tokio::test]
async fn a_topic_in_another_region_is_published_in_its_region() {
    let account = Account::new(shared_moto()).await;
    let eu = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&account.sdk)
            .region(aws_sdk_sns::config::Region::new("eu-west-1"))
            .build(),
    );
    let topic = eu
        .create_topic()
        .name("iam-warden-eu")
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    assert!(topic.starts_with("arn:aws:sns:eu-west-1:"), "{topic}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = settings(None, &dir.path().join("unused"), Some(topic));
    let metrics = Metrics::new("test").unwrap();
    // The clients are in us-east-1 (aws.region).
    let notifier = Notifier::start(
        &cfg,
        Channels::load(&cfg).unwrap(),
        Mode::Enforce,
        &account.id,
        &account.clients(),
        Arc::new(Journal::open(&dir.path().join("journal.jsonl")).unwrap()),
        Some(metrics.clone()),
    );
    notifier.notify(notifier.notice(
        NoticeEvent::KeyDeleted,
        "kate",
        &Tags::default(),
        "deleted",
        Utc::now(),
    ));
    notifier
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(10))
        .await;
    let count = |o: &str| {
        metrics
            .notifications_total
            .with_label_values(&["sns", o])
            .get()
    };
    assert_eq!((count("sent"), count("failed")), (1, 0));
}

#[tokio::test]
async fn a_missing_topic_fails_at_once_with_the_fix() {
    let logs = capture_logs();
    // A topic nobody created.
    let topic = "arn:aws:sns:us-east-1:123456789012:iam-warden-no-such-topic".to_string();
    // A generous timeout: the point is that the NotFound answer is not retried, and on a
    // busy machine the first call of a fresh client may take longer than the default 1 s.
    let s = setup(None, Some(topic.clone()), |n| {
        n.timeout = Secs::from_secs(20)
    })
    .await;
    s.notify("gina", NoticeEvent::KeyRotated);
    s.wait_count("sns", "failed", 1, Duration::from_secs(60))
        .await;
    let e = s
        .journal()
        .into_iter()
        .find(|e| e.action == "notify_sns")
        .unwrap();
    assert_eq!(e.outcome, "failed");
    let err = e.error.unwrap_or_default();
    assert!(
        err.contains(&topic)
            && err.contains("does not exist; create it or fix notifications.sns_topic_arn"),
        "{err}"
    );
    let log = text(&logs);
    let line = log
        .lines()
        .find(|l| l.contains("notification not delivered"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("attempts=1"), "not retried: {line}");
    assert!(
        line.contains("create it or fix notifications.sns_topic_arn"),
        "{line}"
    );
    assert_eq!(s.count("sns", "sent"), 0);
}

// ---- the CLI and the signing-key file ----

fn cli(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run iam-warden");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_missing_or_empty_key_file_stops_enforce_in_one_line_naming_it() {
    let account = Account::new(shared_moto()).await;
    account.user("henry").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for (name, content) in [("missing-key", None), ("empty-key", Some("\n"))] {
        let file = dir.path().join(name);
        if let Some(c) = content {
            std::fs::write(&file, c).unwrap();
        }
        let mut env = account.env();
        env.extend([
            ("IAM_WARDEN_MODE".into(), "enforce".into()),
            ("IAM_WARDEN_STATE_DIR".into(), state.display().to_string()),
            (
                "IAM_WARDEN_NOTIFICATIONS__WEBHOOK_URL".into(),
                "http://127.0.0.1:9/hook".into(),
            ),
            (
                "IAM_WARDEN_NOTIFICATIONS__WEBHOOK_SECRET_FILE".into(),
                file.display().to_string(),
            ),
        ]);
        env.push(("IAM_WARDEN_SERVER__LISTEN".into(), "127.0.0.1:0".into()));
        env.push(("IAM_WARDEN_LOG_FORMAT".into(), "text".into()));
        for args in [&["enforce", "--once"][..], &["run"][..]] {
            let (code, out, err) = cli(args, &env);
            assert_eq!(code, 2, "{args:?}: {out}{err}");
            let lines: Vec<&str> = err
                .lines()
                .filter(|l| l.starts_with("iam-warden: error:"))
                .collect();
            assert_eq!(lines.len(), 1, "{args:?}: one error line: {err}");
            assert!(
                lines[0].contains(&file.display().to_string())
                    && lines[0].contains("notifications.webhook_secret_file"),
                "{args:?}: {err}"
            );
            if args[0] == "enforce" {
                assert_eq!(err.lines().count(), 1, "nothing else: {err}");
            }
        }
        // Nothing was written: the pass stopped before it read or changed anything.
        assert!(!state.join("journal.jsonl").exists(), "{name}");
    }
    let groups = account.iam.list_groups().send().await.unwrap();
    assert!(groups.groups().is_empty(), "nothing created");
}

#[test]
fn check_config_names_the_key_file_and_never_prints_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("webhook-key");
    std::fs::write(&key_file, KEY).unwrap();
    let env = vec![
        (
            "IAM_WARDEN_NOTIFICATIONS__WEBHOOK_URL".to_string(),
            "https://hooks.example.com/x".to_string(),
        ),
        (
            "IAM_WARDEN_NOTIFICATIONS__WEBHOOK_SECRET_FILE".to_string(),
            key_file.display().to_string(),
        ),
    ];
    let (code, out, err) = cli(&["check-config"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&key_file.display().to_string()), "{out}");
    assert!(
        !out.contains(KEY) && !err.contains(KEY),
        "the key is never printed"
    );
}
