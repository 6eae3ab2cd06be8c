//! Key rotation in the daemon (`iam-warden run`) against moto, with the test-only
//! `IAM_WARDEN_TEST_CLOCK` (the daemon's clock starts at the given time and advances in real
//! time; keys are created now, "now" for iam-warden is days later) and a webhook receiver
//! started here that checks each notice's signature.
//!
//! - The lifecycle: warned at start; rotated when the next phase falls due, by the
//!   reconcile's requeue (the resync interval is an hour); deactivated after a restart with a
//!   later clock (the new key used, the old one quiet); after another restart shortly
//!   before the recovery window ends, deleted at that time (scheduled by the resync).
//! - An exposed key (AWS Health event over SQS): inactive at once, replaced by a new key
//!   stored in Secrets Manager that works, a key-exposed notice; `reactivate` refuses it.
//! - A rotation that never drained: stuck, then deactivated, then reactivated by a person;
//!   the rotation-stuck and key-reactivated notices arrive, at the webhook and at an SNS
//!   topic (an SQS queue subscribed to it: message attributes `user` and `event`).
//! - Logs, journal, /metrics, webhook bodies and SNS messages never contain a secret.

use crate::support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use support::daemon::{caller_arn, use_key, Daemon};
use support::{bin, create_queue, eventually, shared_moto, sns_topic_to_queue, Account};

const DEADLINE: Duration = Duration::from_secs(60);
const KEY: &str = "rotation-daemon-signing-key-0123456789";
const PREFIX: &str = "iam-warden/rotation/";

// ---- a webhook receiver that checks every signature ----

#[derive(Clone, Default)]
struct Received {
    bodies: Arc<Mutex<Vec<String>>>,
    bad_signatures: Arc<Mutex<usize>>,
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

async fn hook(
    State(r): State<Received>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let sig = headers
        .get("x-iam-warden-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if sig != sign(&body) {
        *r.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    r.bodies
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).into_owned());
    StatusCode::NO_CONTENT
}

async fn receiver() -> (SocketAddr, Received) {
    let r = Received::default();
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

impl Received {
    fn notices(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }

    /// Wait for a notice `event` about `key`; returns it.
    async fn wait_for(&self, event: &str, key: &str) -> serde_json::Value {
        eventually(&format!("a {event} notice for {key}"), DEADLINE, || async {
            self.notices()
                .into_iter()
                .find(|n| n["event"] == event && n["access_key_id"] == key)
        })
        .await
    }
}

// ---- the daemon ----

/// How this file's tests start the daemon (a trait, not an inherent method: other test
/// modules of the binary start it their own way).
trait Start {
    fn start(env: &[(String, String)], clock: Option<DateTime<Utc>>) -> Daemon;
}

impl Start for Daemon {
    fn start(env: &[(String, String)], clock: Option<DateTime<Utc>>) -> Daemon {
        let mut cmd = Command::new(bin());
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(at) = clock {
            cmd.env("IAM_WARDEN_TEST_CLOCK", at.to_rfc3339());
        }
        Daemon::spawn(cmd)
    }
}

// ---- the lab: an account, a state directory, a receiver ----

struct Lab {
    acct: Account,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    hook: Received,
    /// Everything the daemons logged and served on /metrics.
    seen: Mutex<String>,
}

impl Lab {
    async fn new(extra: &[(&str, &str)]) -> Lab {
        let acct = Account::new(shared_moto()).await;
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("webhook-key");
        std::fs::write(&key_file, KEY).unwrap();
        let (addr, hook) = receiver().await;
        let mut env = acct.env();
        for (k, v) in [
            ("IAM_WARDEN_STATE_DIR", dir.path().display().to_string()),
            ("IAM_WARDEN_MODE", "enforce".into()),
            ("IAM_WARDEN_LOG_FORMAT", "json".into()),
            ("RUST_LOG", "info".into()),
            ("IAM_WARDEN_SERVER__LISTEN", "127.0.0.1:0".into()),
            ("IAM_WARDEN_SAFETY__MAX_USERS_CHANGED_PERCENT", "100".into()),
            ("IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND", "100".into()),
            ("IAM_WARDEN_CONTROLLER__WRITE_BURST", "100".into()),
            ("IAM_WARDEN_RESYNC__INTERVAL", "1h".into()),
            ("IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED", "false".into()),
            ("IAM_WARDEN_AWS__MAX_ATTEMPTS", "2".into()),
            (
                "IAM_WARDEN_BASELINE__CREDENTIALS__MAX_KEY_AGE_DAYS",
                "2".into(),
            ),
            ("IAM_WARDEN_ROTATION__WARN_DAYS", "1".into()),
            ("IAM_WARDEN_ROTATION__DRAIN_QUIET", "10d".into()),
            ("IAM_WARDEN_ROTATION__GRACE_DAYS", "30".into()),
            ("IAM_WARDEN_ROTATION__RECOVERY_DAYS", "3".into()),
            (
                "IAM_WARDEN_NOTIFICATIONS__WEBHOOK_URL",
                format!("http://{addr}/hook"),
            ),
            (
                "IAM_WARDEN_NOTIFICATIONS__WEBHOOK_SECRET_FILE",
                key_file.display().to_string(),
            ),
        ] {
            env.push((k.into(), v));
        }
        for (k, v) in extra {
            env.retain(|(e, _)| e != k);
            env.push((k.to_string(), v.to_string()));
        }
        Lab {
            acct,
            dir,
            env,
            hook,
            seen: Mutex::new(String::new()),
        }
    }

    fn start(&self, clock: Option<DateTime<Utc>>) -> Daemon {
        Daemon::start(&self.env, clock)
    }

    /// Stop the daemon, keeping its log and /metrics for the secret scan.
    async fn stop(&self, d: Daemon) {
        let metrics = d.metrics().await;
        let (code, log) = d.stop().await;
        assert_eq!(code, 0, "{log}");
        let mut seen = self.seen.lock().unwrap();
        seen.push_str(&log);
        seen.push_str(&metrics);
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.path().join("journal.jsonl")
    }

    async fn tag(&self, user: &str, key: &str) -> Option<String> {
        let out = self
            .acct
            .iam
            .list_user_tags()
            .user_name(user)
            .send()
            .await
            .unwrap();
        out.tags()
            .iter()
            .find(|t| t.key() == format!("{PREFIX}{key}"))
            .map(|t| t.value().to_string())
    }

    async fn wait_phase(&self, user: &str, key: &str, phase: &str) -> String {
        let want = format!("phase={phase} ");
        eventually(&format!("{key} of {user} {phase}"), DEADLINE, || async {
            self.tag(user, key).await.filter(|t| t.starts_with(&want))
        })
        .await
    }

    /// (id, status) of the user's keys, oldest first.
    async fn keys(&self, user: &str) -> Vec<(String, String)> {
        self.acct.access_keys(user).await
    }

    async fn status(&self, user: &str, key: &str) -> String {
        self.acct.access_key_status(user, key).await
    }

    /// The (AccessKeyId, SecretAccessKey) stored for `user` (AWSCURRENT).
    async fn stored(&self, user: &str) -> (String, String) {
        let sm = aws_sdk_secretsmanager::Client::new(&self.acct.sdk);
        let out = sm
            .get_secret_value()
            .secret_id(format!("iam-warden/{user}/access-key"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetSecretValue {user}: {e:?}"));
        let v: serde_json::Value = serde_json::from_str(out.secret_string().unwrap()).unwrap();
        (
            v["AccessKeyId"].as_str().unwrap().to_string(),
            v["SecretAccessKey"].as_str().unwrap().to_string(),
        )
    }

    async fn key_with_secret(&self, user: &str) -> (String, String) {
        let out = self
            .acct
            .iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .unwrap();
        let k = out.access_key().unwrap();
        (
            k.access_key_id().to_string(),
            k.secret_access_key().to_string(),
        )
    }

    /// Logs, journal, /metrics and webhook bodies never hold any of `secrets`.
    fn assert_no_secret_leaked(&self, secrets: &[&str]) {
        let seen = self.seen.lock().unwrap().clone();
        let journal = std::fs::read_to_string(self.journal_path()).unwrap_or_default();
        let bodies = self.hook.bodies.lock().unwrap().join("\n");
        assert!(!journal.is_empty() && !seen.is_empty() && !bodies.is_empty());
        for s in secrets {
            assert!(s.len() >= 20, "a real secret: {s:?}");
            assert!(!seen.contains(s), "a secret in the logs or /metrics");
            assert!(!journal.contains(s), "a secret in the journal");
            assert!(!bodies.contains(s), "a secret in a webhook body");
        }
        assert_eq!(*self.hook.bad_signatures.lock().unwrap(), 0);
    }
}

/// An SNS topic in the lab's account with an SQS queue subscribed to it (the SNS envelope
/// as the message body): set as `notifications.sns_topic_arn`. Returns the queue URL.
async fn sns_inbox(lab: &mut Lab) -> String {
    let (topic, url) = sns_topic_to_queue(
        &lab.acct,
        "iam-warden-owner-notices",
        &format!("owner-inbox-{}", lab.acct.id),
    )
    .await;
    lab.env
        .push(("IAM_WARDEN_NOTIFICATIONS__SNS_TOPIC_ARN".into(), topic));
    url
}

/// Read the SNS envelopes from the inbox until one per `(user, event)` of `want` is there
/// (each checked: the `user` and `event` message attributes match the notice inside).
/// Returns every body read.
async fn sns_messages(lab: &Lab, url: &str, want: &[(&str, &str)]) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(&lab.acct.sdk);
    let got: Mutex<Vec<String>> = Mutex::new(Vec::new());
    eventually("the SNS notices in the inbox", DEADLINE, || async {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .ok()?;
        for m in out.messages() {
            got.lock()
                .unwrap()
                .push(m.body().unwrap_or_default().to_string());
            if let Some(h) = m.receipt_handle() {
                let _ = sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(h)
                    .send()
                    .await;
            }
        }
        let seen: Vec<(String, String)> = got
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                let env: serde_json::Value = serde_json::from_str(b).unwrap();
                let attrs = &env["MessageAttributes"];
                let inner: serde_json::Value =
                    serde_json::from_str(env["Message"].as_str().unwrap()).unwrap();
                assert_eq!(attrs["user"]["Value"], inner["user"], "{b}");
                assert_eq!(attrs["event"]["Value"], inner["event"], "{b}");
                assert_eq!(attrs["user"]["Type"], "String", "{b}");
                (
                    inner["user"].as_str().unwrap_or_default().to_string(),
                    inner["event"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        want.iter()
            .all(|(u, e)| seen.iter().any(|(su, se)| su == u && se == e))
            .then_some(())
    })
    .await;
    got.into_inner().unwrap()
}

fn days(d: f64) -> chrono::Duration {
    chrono::Duration::seconds((d * 86_400.0) as i64)
}

/// warned → (requeued at its due time, no resync) draining with the new key stored →
/// (restart, later clock) deactivated → (restart) deleted; each phase's notice arrives
/// signed, with the owner from the user's tag. Beside it, a rotation that never drained
/// is stuck, then deactivated and reactivated by a person (rotation-stuck and
/// key-reactivated notices). The notices reach an SNS topic too (read from an SQS queue
/// subscribed to it: attributes `user` and `event`). No secret anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_takes_a_key_through_every_phase() {
    let mut lab = Lab::new(&[]).await;
    let inbox = sns_inbox(&mut lab).await;
    let ep = lab.acct.endpoint.clone();
    lab.acct
        .user_at("app", "/", &[("iam-warden/owner", "alice@example.com")])
        .await;
    let (k1, s1) = lab.key_with_secret("app").await;
    use_key(&ep, &k1, &s1).await;
    let t0 = Utc::now();
    // A second user whose rotation (40 days ago, state in its tag) never drained: the old
    // key b1 is still in use past grace (30 d) → stuck at the first pass; b1 quiet by +11 d
    // → deactivated; then reactivated by a person.
    lab.acct
        .user_at("busy", "/", &[("iam-warden/owner", "carol@example.com")])
        .await;
    let (b1, bs1) = lab.key_with_secret("busy").await;
    let (b2, bs2) = lab.key_with_secret("busy").await;
    use_key(&ep, &b1, &bs1).await;
    use_key(&ep, &b2, &bs2).await;
    let long_ago = (t0 - days(40.0)).format("%Y-%m-%dT%H:%M:%SZ");
    lab.acct
        .iam
        .tag_user()
        .user_name("busy")
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key(format!("{PREFIX}{b1}"))
                .value(format!("phase=draining since={long_ago} new={b2}"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // Started 50 s before the age limit (2 d): warned by the first resync; the rotation is
    // due 50 s later and the reconcile's requeue (at least a minute) brings it, long
    // before the next resync (an hour).
    let d = lab.start(Some(t0 + days(2.0) - chrono::Duration::seconds(50)));
    d.wait_ready().await;
    lab.wait_phase("app", &k1, "warned").await;
    let n = lab.hook.wait_for("key-expiring", &k1).await;
    assert_eq!(n["owner"], "alice@example.com", "{n}");
    assert_eq!(n["user"], "app", "{n}");
    let due: DateTime<Utc> = n["due"].as_str().unwrap().parse().unwrap();
    assert!((due - (t0 + days(2.0))).num_seconds().abs() < 5, "{n}");
    let draining = eventually(
        "the rotation at its due time",
        Duration::from_secs(150),
        || async {
            lab.tag("app", &k1)
                .await
                .filter(|t| t.starts_with("phase=draining "))
        },
    )
    .await;
    let (k2, s2) = lab.stored("app").await;
    assert_ne!(k2, k1);
    assert!(draining.contains(&format!("new={k2}")), "{draining}");
    assert!(caller_arn(&ep, &k2, &s2).await.ends_with(":user/app"));
    lab.hook.wait_for("key-rotated", &k1).await;
    let n = lab.hook.wait_for("rotation-stuck", &b1).await;
    assert_eq!(n["owner"], "carol@example.com", "{n}");
    assert_eq!(n["user"], "busy", "{n}");
    assert!(
        n["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("still in use"),
        "{n}"
    );
    assert!(lab
        .tag("busy", &b1)
        .await
        .unwrap()
        .starts_with("phase=stuck "));
    let metrics = d.metrics().await;
    let requeued: f64 = metrics
        .lines()
        .find(|l| l.starts_with("iam_warden_queue_adds_total{source=\"requeue\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(requeued >= 1.0, "the user was requeued: {metrics}");
    lab.stop(d).await;

    // The consumer switches to k2. Restarted at +11 d: k1 quiet for 11 d (drain_quiet 10 d)
    // and k2 in use → deactivated.
    use_key(&ep, &k2, &s2).await;
    let d = lab.start(Some(t0 + days(11.0)));
    let deactivated = lab.wait_phase("app", &k1, "deactivated").await;
    assert_eq!(lab.status("app", &k1).await, "Inactive");
    assert_eq!(lab.status("app", &k2).await, "Active");
    lab.hook.wait_for("key-deactivated", &k1).await;
    // busy's b1, quiet for 11 d with b2 in use, is deactivated too; a person puts it back
    // (while the daemon runs): the owner hears of it.
    lab.wait_phase("busy", &b1, "deactivated").await;
    let out = Command::new(bin())
        .args(["reactivate", "busy", &b1])
        .env_clear()
        .envs(lab.env.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lab.status("busy", &b1).await, "Active");
    lab.wait_phase("busy", &b1, "draining").await;
    let n = lab.hook.wait_for("key-reactivated", &b1).await;
    assert_eq!(n["owner"], "carol@example.com", "{n}");
    lab.stop(d).await;

    // Restarted 45 s before the recovery window (3 d) ends: nothing to do at start; the
    // resync schedules the user at that time (rebuilt from the tags) → deleted.
    let since: DateTime<Utc> = deactivated
        .split_whitespace()
        .find_map(|f| f.strip_prefix("since="))
        .unwrap()
        .parse()
        .unwrap();
    let d = lab.start(Some(since + days(3.0) - chrono::Duration::seconds(45)));
    d.wait_ready().await;
    assert_eq!(lab.status("app", &k1).await, "Inactive", "not yet");
    eventually(
        "k1 deleted at its due time",
        Duration::from_secs(120),
        || async { (lab.status("app", &k1).await == "gone").then_some(()) },
    )
    .await;
    lab.hook.wait_for("key-deleted", &k1).await;
    lab.stop(d).await;

    let log = lab.seen.lock().unwrap().clone();
    assert!(
        log.contains("IAM_WARDEN_TEST_CLOCK is set: run runs as if now were"),
        "the test clock is announced"
    );
    // The same notices went to the SNS topic, with the user and event attributes.
    let sns = sns_messages(
        &lab,
        &inbox,
        &[
            ("app", "key-expiring"),
            ("app", "key-rotated"),
            ("app", "key-deactivated"),
            ("busy", "rotation-stuck"),
            ("busy", "key-reactivated"),
        ],
    )
    .await;
    lab.seen.lock().unwrap().push_str(&sns.join("\n"));
    let mut secrets = vec![s1, s2, bs1, bs2];
    // k2 is past its own limit by now: if it was rotated too, its successor's secret is
    // searched for as well.
    let (k3, s3) = lab.stored("app").await;
    if k3 != k2 {
        secrets.push(s3);
    }
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    lab.assert_no_secret_leaked(&refs);
}

/// An AWS Health event for the only key of a user: the key is inactive at once, the user
/// is reconciled at once (no resync) and gets a new key stored in Secrets Manager that
/// works; the owner gets a key-exposed notice; `reactivate` refuses the exposed key. An
/// exempt user's key in the same event is left active, with a notice that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_key_is_quarantined_and_replaced() {
    let lab = Lab::new(&[]).await;
    let sqs = aws_sdk_sqs::Client::new(&lab.acct.sdk);
    let url = create_queue(&sqs, &format!("iam-warden-rot-{}", lab.acct.id), &[]).await;
    let ep = lab.acct.endpoint.clone();
    lab.acct
        .user_at("leaky", "/", &[("iam-warden/owner", "bob@example.com")])
        .await;
    let (k, s) = lab.key_with_secret("leaky").await;
    use_key(&ep, &k, &s).await;
    lab.acct
        .user_at(
            "boss",
            "/",
            &[
                ("iam-warden/exempt", "true"),
                ("iam-warden/owner", "boss@example.com"),
            ],
        )
        .await;
    let (boss_key, boss_secret) = lab.key_with_secret("boss").await;
    let mut env = lab.env.clone();
    env.push(("IAM_WARDEN_SOURCES__SQS__QUEUE_URL".into(), url.clone()));
    env.push(("IAM_WARDEN_SOURCES__SQS__WAIT_TIME".into(), "1s".into()));
    let d = Daemon::start(&env, None);
    d.wait_ready().await;

    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/health-credentials-exposed.json")).unwrap();
    let mut ev = fixture;
    ev["id"] = serde_json::json!(uuid::Uuid::new_v4().to_string());
    ev["account"] = serde_json::json!(lab.acct.id);
    ev["time"] = serde_json::json!(Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    ev["detail"]["affectedEntities"] =
        serde_json::json!([{ "entityValue": k }, { "entityValue": boss_key }]);
    sqs.send_message()
        .queue_url(&url)
        .message_body(ev.to_string())
        .send()
        .await
        .unwrap();

    eventually("the exposed key inactive", DEADLINE, || async {
        (lab.status("leaky", &k).await == "Inactive").then_some(())
    })
    .await;
    let n = lab.hook.wait_for("key-exposed", &k).await;
    assert_eq!(n["owner"], "bob@example.com", "{n}");
    let tag = eventually("the replacement recorded", DEADLINE, || async {
        lab.tag("leaky", &k).await.filter(|t| t.contains(" new="))
    })
    .await;
    assert!(tag.starts_with("phase=quarantined since=20"), "{tag}");
    let (k2, s2) = lab.stored("leaky").await;
    assert_ne!(k2, k);
    assert!(tag.contains(&format!("new={k2}")), "{tag}");
    assert!(caller_arn(&ep, &k2, &s2).await.ends_with(":user/leaky"));
    assert_eq!(
        lab.keys("leaky").await,
        vec![
            (k.clone(), "Inactive".into()),
            (k2.clone(), "Active".into())
        ],
        "exactly one new key, the exposed one stays inactive"
    );
    lab.hook.wait_for("key-rotated", &k).await;
    // An exempt user's exposed key is left active, and the notice says so.
    let n = lab.hook.wait_for("key-exposed", &boss_key).await;
    assert_eq!(n["owner"], "boss@example.com", "{n}");
    assert!(
        n["reason"].as_str().unwrap().contains("not deactivated"),
        "{n}"
    );
    assert_eq!(
        lab.keys("boss").await,
        vec![(boss_key.clone(), "Active".into())]
    );
    lab.stop(d).await;

    // Never reactivated.
    let out = Command::new(bin())
        .args(["reactivate", "leaky", &k])
        .env_clear()
        .envs(lab.env.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("iam-warden: error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("quarantined") && line.contains("never reactivates"),
        "{line}"
    );
    assert_eq!(lab.status("leaky", &k).await, "Inactive");
    lab.assert_no_secret_leaked(&[&s, &s2, &boss_secret]);
}
