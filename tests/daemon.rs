//! End-to-end: the `iam-warden run` process against moto, with the CloudTrail recorder in
//! front of it (LookupEvents) and a moto SQS queue (EventBridge path).

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;
use support::daemon::{http_get, wait_exit, Daemon};
use support::recorder::Recorder;
use support::{bin, create_queue, eventually, shared_moto, Account};

const DEADLINE: Duration = Duration::from_secs(60);

/// Credentials of another session in the same account: the daemon's own identity.
async fn session(acct: &Account, name: &str) -> Credentials {
    let sts = aws_sdk_sts::Client::new(&acct.sdk);
    let out = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{}:role/iam-warden", acct.id))
        .role_session_name(name)
        .send()
        .await
        .unwrap();
    let c = out.credentials().unwrap();
    Credentials::from_keys(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
    )
}

/// How this file's tests start the daemon (a trait, not an inherent method: other test
/// modules of the binary start it their own way).
trait Start {
    fn start(creds: &Credentials, moto: &str, env: &[(&str, String)]) -> Daemon;
}

impl Start for Daemon {
    fn start(creds: &Credentials, moto: &str, env: &[(&str, String)]) -> Daemon {
        let mut cmd = Command::new(bin());
        cmd.arg("run")
            .env_clear()
            .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
            .env(
                "AWS_SESSION_TOKEN",
                creds.session_token().unwrap_or_default(),
            )
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", moto)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("IAM_WARDEN_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("IAM_WARDEN_SERVER__LISTEN", "127.0.0.1:0")
            .env("IAM_WARDEN_MODE", "enforce")
            .env("IAM_WARDEN_SAFETY__MAX_USERS_CHANGED_PERCENT", "100")
            .env("IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND", "100")
            .env("IAM_WARDEN_CONTROLLER__WRITE_BURST", "100")
            .env("IAM_WARDEN_RESYNC__INTERVAL", "1h")
            .env("IAM_WARDEN_SOURCES__CLOUDTRAIL__POLL_INTERVAL", "1s")
            .env("IAM_WARDEN_AWS__MAX_ATTEMPTS", "2");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon::spawn(cmd)
    }
}

async fn groups_of(iam: &aws_sdk_iam::Client, user: &str) -> Vec<String> {
    match iam.list_groups_for_user().user_name(user).send().await {
        Ok(out) => out
            .groups()
            .iter()
            .map(|g| g.group_name().to_string())
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn wait_in_group(iam: &aws_sdk_iam::Client, user: &str, group: &str) {
    eventually(&format!("{user} in {group}"), DEADLINE, || async {
        groups_of(iam, user)
            .await
            .iter()
            .any(|g| g == group)
            .then_some(())
    })
    .await;
}

fn journal_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn state_env(dir: &Path, recorder: &str) -> Vec<(&'static str, String)> {
    vec![
        ("IAM_WARDEN_STATE_DIR", dir.display().to_string()),
        (
            "IAM_WARDEN_SOURCES__CLOUDTRAIL__ENDPOINT_URL",
            recorder.to_string(),
        ),
    ]
}

/// A new user with a console password and an access key is brought onto the baseline
/// through CloudTrail alone (resync is an hour away); then someone detaches the baseline
/// policy and takes the user out of the group, and both are restored; then the daemon
/// restarts and processes what happened while it was down, without replaying the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_events_bring_users_onto_the_baseline_and_survive_restarts() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    let rec = Recorder::start(moto, "0");
    let admin = rec.iam(&acct);
    let dir = tempfile::tempdir().unwrap();
    let creds = session(&acct, "iam-warden-daemon").await;

    let d = Daemon::start(&creds, &moto.endpoint, &state_env(dir.path(), &rec.url));
    d.wait_ready().await;
    assert_eq!(d.get("/healthz").await.0, 200);
    // The first resync created the baseline (account key).
    eventually("the baseline group", DEADLINE, || async {
        acct.iam
            .get_group()
            .group_name("iam-warden-require-mfa")
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    admin
        .create_user()
        .user_name("newbie")
        .send()
        .await
        .unwrap();
    admin
        .create_login_profile()
        .user_name("newbie")
        .password("Correct-Horse-Battery-9!")
        .send()
        .await
        .unwrap();
    admin
        .create_access_key()
        .user_name("newbie")
        .send()
        .await
        .unwrap();
    wait_in_group(&acct.iam, "newbie", "iam-warden-require-mfa").await;
    let j = journal_lines(dir.path());
    assert!(
        j.iter().any(|e| e["user"] == "newbie"
            && e["action"] == "add_user_to_group"
            && e["outcome"] == "applied"),
        "{j:?}"
    );
    assert!(
        d.metric("iam_warden_events_total{event=\"CreateUser\",outcome=\"enqueued\"}")
            .await
            >= 1.0
    );
    assert!(
        d.metric("iam_warden_event_to_enforcement_seconds_count{from=\"received\"}")
            .await
            >= 1.0
    );
    assert!(
        d.metric("iam_warden_writes_total{action=\"add_user_to_group\",outcome=\"applied\"}")
            .await
            >= 1.0
    );
    assert_eq!(
        d.metric("iam_warden_resyncs_total{result=\"success\"}")
            .await,
        1.0,
        "no resync beyond the first"
    );

    // Someone detaches the policy from the baseline group and takes newbie out.
    let snap = iam_warden::inventory::read_account(&acct.clients())
        .await
        .unwrap();
    let arn = snap.policies["iam-warden-require-mfa"].arn.clone();
    admin
        .detach_group_policy()
        .group_name("iam-warden-require-mfa")
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    admin
        .remove_user_from_group()
        .group_name("iam-warden-require-mfa")
        .user_name("newbie")
        .send()
        .await
        .unwrap();
    wait_in_group(&acct.iam, "newbie", "iam-warden-require-mfa").await;
    eventually("the policy re-attached", DEADLINE, || async {
        let out = acct
            .iam
            .list_attached_group_policies()
            .group_name("iam-warden-require-mfa")
            .send()
            .await
            .ok()?;
        out.attached_policies()
            .iter()
            .any(|p| p.policy_arn() == Some(arn.as_str()))
            .then_some(())
    })
    .await;

    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(dir.path().join("cloudtrail-checkpoint.json").exists());
    assert!(
        !log.contains("Correct-Horse-Battery-9!"),
        "a password reached the log"
    );

    // While it is down: a new console user.
    admin
        .create_user()
        .user_name("latecomer")
        .send()
        .await
        .unwrap();
    admin
        .create_login_profile()
        .user_name("latecomer")
        .password("Correct-Horse-Battery-9!")
        .send()
        .await
        .unwrap();
    let d = Daemon::start(&creds, &moto.endpoint, &state_env(dir.path(), &rec.url));
    d.wait_ready().await;
    wait_in_group(&acct.iam, "latecomer", "iam-warden-require-mfa").await;
    // Only the new CreateLoginProfile event is dispatched: the old one is not replayed.
    eventually("the latecomer's events", DEADLINE, || async {
        (d.metric("iam_warden_events_total{event=\"CreateLoginProfile\",outcome=\"enqueued\"}")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    assert_eq!(
        d.metric("iam_warden_events_total{event=\"CreateLoginProfile\",outcome=\"enqueued\"}")
            .await,
        1.0
    );
    assert_eq!(
        d.metric("iam_warden_events_total{event=\"CreateAccessKey\",outcome=\"enqueued\"}")
            .await,
        0.0
    );
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
}

/// The EventBridge → SQS path: a well-formed message is acted on and deleted only after
/// the reconcile; a malformed one is counted and left on the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_messages_are_reconciled_then_deleted_and_malformed_ones_left() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    let dir = tempfile::tempdir().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let url = create_queue(&sqs, &format!("iam-warden-{}", acct.id), &[]).await;
    let creds = session(&acct, "iam-warden-daemon").await;
    let mut env = vec![
        ("IAM_WARDEN_STATE_DIR", dir.path().display().to_string()),
        (
            "IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED",
            "false".to_string(),
        ),
        ("IAM_WARDEN_SOURCES__SQS__QUEUE_URL", url.clone()),
        ("IAM_WARDEN_SOURCES__SQS__WAIT_TIME", "1s".to_string()),
    ];
    env.push(("IAM_WARDEN_SOURCES__SQS__MAX_MESSAGES", "10".to_string()));
    let d = Daemon::start(&creds, &moto.endpoint, &env);
    d.wait_ready().await;

    // The user exists (made directly in moto); only the SQS message tells the daemon.
    acct.user("via-sqs").await.password("via-sqs").await;
    send(&sqs, &url, &login_profile_event(&acct, "via-sqs")).await;
    send(&sqs, &url, "{\"detail-type\": \"truncated").await;

    wait_in_group(&acct.iam, "via-sqs", "iam-warden-require-mfa").await;
    eventually("the malformed message counted", DEADLINE, || async {
        (d.metric("iam_warden_events_total{event=\"other\",outcome=\"malformed\"}")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    // The good message is deleted; the malformed one stays (for the redrive policy / DLQ).
    eventually("only the malformed message left", DEADLINE, || async {
        (messages_in(&sqs, &url).await? == 1).then_some(())
    })
    .await;
    assert!(
        d.metric("iam_warden_events_total{event=\"CreateLoginProfile\",outcome=\"enqueued\"}")
            .await
            >= 1.0
    );
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
}

/// An EventBridge envelope with a CloudTrail `CreateLoginProfile` record for `user`, made by
/// an admin role of the test account.
fn login_profile_event(acct: &Account, user: &str) -> String {
    let record = serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{}:assumed-role/admin/x", acct.id), "accountId": acct.id},
        "eventTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateLoginProfile",
        "awsRegion": "us-east-1",
        "requestParameters": {"userName": user, "passwordResetRequired": false},
        "responseElements": null,
        "eventID": uuid::Uuid::new_v4().to_string(),
        "readOnly": false,
        "eventType": "AwsApiCall",
        "recipientAccountId": acct.id,
    });
    serde_json::json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.iam",
        "account": acct.id, "time": record["eventTime"], "region": "us-east-1", "resources": [],
        "detail": record,
    })
    .to_string()
}

/// Messages in the queue, visible or in flight (None when the attributes cannot be read).
async fn messages_in(sqs: &aws_sdk_sqs::Client, url: &str) -> Option<u32> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let a = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::All)
        .send()
        .await
        .ok()?;
    let attrs = a.attributes()?;
    let n = |k: A| attrs.get(&k).and_then(|v| v.parse::<u32>().ok());
    Some(n(A::ApproximateNumberOfMessages)? + n(A::ApproximateNumberOfMessagesNotVisible)?)
}

/// The daemon's environment with only the SQS source (queue `url`, 1 s long polls) and a
/// write limit of `writes_per_second` with a burst of 1.
fn sqs_only_env(
    state_dir: &Path,
    url: &str,
    writes_per_second: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("IAM_WARDEN_STATE_DIR", state_dir.display().to_string()),
        (
            "IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED",
            "false".to_string(),
        ),
        ("IAM_WARDEN_SOURCES__SQS__QUEUE_URL", url.to_string()),
        ("IAM_WARDEN_SOURCES__SQS__WAIT_TIME", "1s".to_string()),
        (
            "IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND",
            writes_per_second.to_string(),
        ),
        ("IAM_WARDEN_CONTROLLER__WRITE_BURST", "1".to_string()),
    ]
}

async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: &str) {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

/// Sends a CreateLoginProfile event to a daemon that has received none yet, and waits until
/// it has received and dispatched it.
async fn send_and_wait_dispatched(d: &Daemon, sqs: &aws_sdk_sqs::Client, url: &str, body: &str) {
    send(sqs, url, body).await;
    eventually("the message received and dispatched", DEADLINE, || async {
        (d.metric("iam_warden_events_total{event=\"CreateLoginProfile\",outcome=\"enqueued\"}")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
}

/// At-least-once through a crash: the daemon is killed (SIGKILL) while the message's
/// reconcile waits for the write limiter; the message was received but not deleted, so
/// SQS delivers it again after its visibility timeout and the restarted daemon acts on it,
/// then deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_message_survives_a_crash_before_its_reconcile_finished() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    let dir = tempfile::tempdir().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let url = create_queue(
        &sqs,
        &format!("iam-warden-crash-{}", acct.id),
        &[(QueueAttributeName::VisibilityTimeout, "3".into())],
    )
    .await;
    let creds = session(&acct, "iam-warden-daemon").await;
    let env = |writes_per_second| sqs_only_env(dir.path(), &url, writes_per_second);
    // One write every 1,000 s: the first resync's baseline writes hold the limiter, so the
    // user's reconcile cannot finish.
    let d = Daemon::start(&creds, &moto.endpoint, &env("0.001"));
    d.wait_ready().await;
    acct.user("crash").await.password("crash").await;
    send_and_wait_dispatched(&d, &sqs, &url, &login_profile_event(&acct, "crash")).await;
    assert!(groups_of(&acct.iam, "crash").await.is_empty());
    d.signal("KILL");
    let mut d = d;
    assert_eq!(
        wait_exit(&mut d.child, DEADLINE).await,
        -1,
        "killed by a signal"
    );
    assert_eq!(
        messages_in(&sqs, &url).await,
        Some(1),
        "not deleted before its reconcile finished"
    );

    let d = Daemon::start(&creds, &moto.endpoint, &env("100"));
    d.wait_ready().await;
    wait_in_group(&acct.iam, "crash", "iam-warden-require-mfa").await;
    eventually(
        "the message deleted after the reconcile",
        DEADLINE,
        || async { (messages_in(&sqs, &url).await? == 0).then_some(()) },
    )
    .await;
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
}

/// Graceful shutdown while a message's reconcile waits for the write limiter: the drain
/// gives up after its grace, and the message is released (visible again at once) rather
/// than left invisible for the rest of its 300 s visibility timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_message_is_released_for_redelivery_on_graceful_shutdown() {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    let dir = tempfile::tempdir().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let url = create_queue(
        &sqs,
        &format!("iam-warden-release-{}", acct.id),
        &[(A::VisibilityTimeout, "300".into())],
    )
    .await;
    let creds = session(&acct, "iam-warden-daemon").await;
    // One write every 1,000 s: the first resync's baseline writes hold the limiter.
    let mut env = sqs_only_env(dir.path(), &url, "0.001");
    env.push(("IAM_WARDEN_CONTROLLER__SHUTDOWN_GRACE", "1s".to_string()));
    let d = Daemon::start(&creds, &moto.endpoint, &env);
    d.wait_ready().await;
    acct.user("released").await.password("released").await;
    send_and_wait_dispatched(&d, &sqs, &url, &login_profile_event(&acct, "released")).await;
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(groups_of(&acct.iam, "released").await.is_empty());
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let n = |k: A| attrs.attributes().and_then(|a| a.get(&k)).cloned();
    assert_eq!(
        (
            n(A::ApproximateNumberOfMessages).as_deref(),
            n(A::ApproximateNumberOfMessagesNotVisible).as_deref()
        ),
        (Some("1"), Some("0")),
        "visible again at once, not after 300 s: {log}"
    );
    assert!(log.contains("\"released\":1"), "{log}");
}

/// /healthz is about the process, not AWS: with AWS unreachable the daemon is alive but
/// not ready; it shuts down cleanly on SIGTERM; a second signal exits at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_aws_and_shutdown_and_a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let creds = Credentials::from_keys("AKIAEXAMPLE", "not-a-secret", None);
    let env = vec![("IAM_WARDEN_STATE_DIR", dir.path().display().to_string())];
    let d = Daemon::start(&creds, &dead, &env);
    let addr = d.addr().await;
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(http_get(&addr, "/readyz").0, 503);
    eventually("a logged retry", DEADLINE, || async {
        d.log()
            .contains("cannot read the caller identity")
            .then_some(())
    })
    .await;
    assert_eq!(http_get(&addr, "/readyz").0, 503, "never ready without AWS");
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");

    // Ready, then shutting down: in-flight work drains, then exit 0; with a second signal,
    // exit at once (130).
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    for i in 0..6 {
        let u = format!("slow-{i}");
        acct.user(&u).await.password(&u).await;
    }
    let creds = session(&acct, "iam-warden-daemon").await;
    let env = vec![
        ("IAM_WARDEN_STATE_DIR", dir.path().display().to_string()),
        (
            "IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED",
            "false".to_string(),
        ),
        // One write every 2 seconds: reconciles queue up behind the write limiter.
        (
            "IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND",
            "0.5".to_string(),
        ),
        ("IAM_WARDEN_CONTROLLER__WRITE_BURST", "1".to_string()),
        ("IAM_WARDEN_CONTROLLER__SHUTDOWN_GRACE", "3s".to_string()),
    ];
    let d = Daemon::start(&creds, &moto.endpoint, &env);
    d.wait_ready().await;
    let addr = d.addr().await;
    eventually("reconciles in flight", DEADLINE, || async {
        (d.metric("iam_warden_queue_in_flight").await >= 1.0).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "drain is bounded by the grace period"
    );
    assert!(log.contains("shutting down"), "{log}");
    assert_eq!(
        http_get(&addr, "/readyz").0,
        0,
        "the port is closed after exit"
    );

    let mut d = Daemon::start(
        &creds,
        &moto.endpoint,
        &[
            ("IAM_WARDEN_STATE_DIR", dir.path().display().to_string()),
            (
                "IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED",
                "false".to_string(),
            ),
            (
                "IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND",
                "0.1".to_string(),
            ),
            ("IAM_WARDEN_CONTROLLER__WRITE_BURST", "1".to_string()),
            ("IAM_WARDEN_CONTROLLER__SHUTDOWN_GRACE", "5m".to_string()),
        ],
    );
    d.wait_ready().await;
    let addr2 = d.addr().await;
    eventually("reconciles in flight", DEADLINE, || async {
        (d.metric("iam_warden_queue_in_flight").await >= 1.0).then_some(())
    })
    .await;
    d.signal("TERM");
    eventually("shutdown to start", DEADLINE, || async {
        d.log().contains("shutting down").then_some(())
    })
    .await;
    // Draining (grace 5 minutes): alive, no longer ready.
    assert_eq!(
        http_get(&addr2, "/readyz").0,
        503,
        "not ready once shutdown starts"
    );
    assert_eq!(http_get(&addr2, "/healthz").0, 200, "alive while draining");
    d.signal("TERM");
    let code = wait_exit(&mut d.child, Duration::from_secs(30)).await;
    assert_eq!(code, 130, "{}", d.log());
}

/// A daemon with only the SQS source and the default breaker limits (25 users or 10 %),
/// in an account of 35 existing users; 5 console users without MFA are then created within
/// seconds and each announced on the queue. Returns the daemon and the 5 names.
async fn onboarding(
    acct: &Account,
    dir: &Path,
    extra_env: &[(&'static str, String)],
) -> (Daemon, Vec<String>) {
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let url = create_queue(&sqs, &format!("iam-warden-onboard-{}", acct.id), &[]).await;
    for i in 0..35 {
        acct.user(&format!("existing-{i}")).await;
    }
    let creds = session(acct, "iam-warden-daemon").await;
    let mut env = sqs_only_env(dir, &url, "100");
    // The default limits (the harness raises the percentage for the other tests).
    env.push((
        "IAM_WARDEN_SAFETY__MAX_USERS_CHANGED_PERCENT",
        "10".to_string(),
    ));
    env.push(("IAM_WARDEN_SAFETY__MAX_USERS_CHANGED", "25".to_string()));
    env.extend_from_slice(extra_env);
    let d = Daemon::start(&creds, &shared_moto().endpoint, &env);
    d.wait_ready().await;
    let hires: Vec<String> = (0..5).map(|i| format!("new-hire-{i}")).collect();
    for u in &hires {
        acct.user(u).await.password(u).await;
    }
    for u in &hires {
        send(&sqs, &url, &login_profile_event(acct, u)).await;
    }
    (d, hires)
}

/// Issue 9: onboarding never trips the breaker. 35 existing users, then 5 console users
/// created within seconds, each announced on the SQS queue: with the default limits all 5
/// end up in the MFA group, because users created within safety.new_user_grace are not
/// counted. (The old breaker counted every changed user and stopped the fourth.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_new_users_does_not_trip_the_breaker() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let (d, hires) = onboarding(&acct, dir.path(), &[]).await;
    for u in &hires {
        wait_in_group(&acct.iam, u, "iam-warden-require-mfa").await;
    }
    assert_eq!(d.metric("iam_warden_breaker_tripped").await, 0.0);
    assert_eq!(d.metric("iam_warden_breaker_trips_total").await, 0.0);
    let j = journal_lines(dir.path());
    assert!(!j.iter().any(|e| e["action"] == "breaker"), "{j:?}");
    for u in &hires {
        assert!(
            j.iter().any(|e| e["user"] == u.as_str()
                && e["action"] == "add_user_to_group"
                && e["outcome"] == "applied"),
            "{u}: {j:?}"
        );
    }
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("breaker tripped"), "{log}");
}

/// A fresh daemon in an account without the baseline groups: its first resync enqueues the
/// account (which creates them) and the users only once the account's reconcile has ended,
/// so with 16 workers no user's reconcile fails first on a group not created yet (it did,
/// and was retried a second later with an error line, before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_creates_the_groups_before_it_reconciles_the_users() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let url = create_queue(&sqs, &format!("iam-warden-fresh-{}", acct.id), &[]).await;
    let users: Vec<String> = (0..12).map(|i| format!("console-{i}")).collect();
    for u in &users {
        acct.user(u).await.password(u).await;
    }
    let creds = session(&acct, "iam-warden-daemon").await;
    let mut env = sqs_only_env(dir.path(), &url, "100");
    env.push(("IAM_WARDEN_CONTROLLER__WORKERS", "16".to_string()));
    let d = Daemon::start(&creds, &shared_moto().endpoint, &env);
    for u in &users {
        wait_in_group(&acct.iam, u, "iam-warden-require-mfa").await;
    }
    // The account and every user reconciled, none failed.
    assert!(
        d.metric("iam_warden_reconciles_total{result=\"success\"}")
            .await
            >= 13.0,
        "{}",
        d.log()
    );
    assert_eq!(
        d.metric("iam_warden_reconciles_total{result=\"error\"}")
            .await,
        0.0,
        "{}",
        d.log()
    );
    let j = journal_lines(dir.path());
    let created = j
        .iter()
        .position(|e| {
            e["action"] == "create_group"
                && e["target"] == "iam-warden-require-mfa"
                && e["outcome"] == "applied"
        })
        .unwrap_or_else(|| panic!("no create_group of the MFA group: {j:?}"));
    // Every line of a join (its intent and its outcome) after the group's creation.
    let joins: Vec<usize> = j
        .iter()
        .enumerate()
        .filter(|(_, e)| e["action"] == "add_user_to_group")
        .map(|(i, _)| i)
        .collect();
    assert!(joins.iter().all(|&i| i > created), "{j:?}");
    let applied = joins
        .iter()
        .filter(|&&i| j[i]["outcome"] == "applied")
        .count();
    assert_eq!(applied, users.len(), "{j:?}");
    assert!(
        j.iter().all(|e| e["outcome"] != "failed"),
        "a write failed: {j:?}"
    );
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
}

/// The daemon's window breaker, end to end: the same onboarding with new_user_grace = 0s
/// (every user counts, as the old breaker did): 3 of 35 users (8.6 %) are admitted, the
/// fourth (11.4 %) trips the breaker once (metric, counter, one `breaker` journal entry, not
/// counted as a write), and the rest wait for the next resync window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_breaker_trips_once_when_every_user_counts() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let grace = [("IAM_WARDEN_SAFETY__NEW_USER_GRACE", "0s".to_string())];
    let (d, hires) = onboarding(&acct, dir.path(), &grace).await;
    eventually("the breaker to trip", DEADLINE, || async {
        (d.metric("iam_warden_breaker_trips_total").await == 1.0).then_some(())
    })
    .await;
    let applied = |j: &[serde_json::Value]| {
        j.iter()
            .filter(|e| e["action"] == "add_user_to_group" && e["outcome"] == "applied")
            .count()
    };
    eventually("the 3 admitted users applied", DEADLINE, || async {
        (applied(&journal_lines(dir.path())) == 3).then_some(())
    })
    .await;
    assert_eq!(d.metric("iam_warden_breaker_tripped").await, 1.0);
    assert_eq!(
        d.metric("iam_warden_writes_total{action=\"other\"").await,
        0.0,
        "the breaker entry is not a write"
    );
    let j = journal_lines(dir.path());
    let trips: Vec<_> = j.iter().filter(|e| e["action"] == "breaker").collect();
    assert_eq!(trips.len(), 1, "{j:?}");
    assert!(
        trips[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("4 users would lose access (4 of 35 users"),
        "{j:?}"
    );
    let mut in_group = 0;
    for u in &hires {
        if !groups_of(&acct.iam, u).await.is_empty() {
            in_group += 1;
        }
    }
    assert_eq!(in_group, 3, "the others wait for the next resync window");
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("blast-radius breaker tripped"), "{log}");
}

// ---- exposed-key quarantine (AWS Health events and AWS's quarantine policy over SQS) ----

/// The status of each access key of `user`, by id.
async fn key_statuses(iam: &aws_sdk_iam::Client, user: &str) -> Vec<(String, String)> {
    let out = iam.list_access_keys().user_name(user).send().await.unwrap();
    let mut v: Vec<(String, String)> = out
        .access_key_metadata()
        .iter()
        .map(|m| {
            (
                m.access_key_id().unwrap_or_default().to_string(),
                m.status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn key_status(iam: &aws_sdk_iam::Client, user: &str, key: &str) -> String {
    key_statuses(iam, user)
        .await
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

async fn wait_key_inactive(iam: &aws_sdk_iam::Client, user: &str, key: &str) {
    eventually(&format!("{key} of {user} inactive"), DEADLINE, || async {
        (key_status(iam, user, key).await == "Inactive").then_some(())
    })
    .await;
}

/// An AWS Health `AWS_RISK_CREDENTIALS_EXPOSED` event for `keys` in `account`, shaped like
/// the documented example (tests/fixtures/health-credentials-exposed.json).
fn health_event(account: &str, keys: &[&str]) -> String {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/health-credentials-exposed.json")).unwrap();
    let mut v = fixture;
    v["id"] = serde_json::json!(uuid::Uuid::new_v4().to_string());
    v["account"] = serde_json::json!(account);
    v["time"] = serde_json::json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    v["detail"]["affectedEntities"] = keys
        .iter()
        .map(|k| serde_json::json!({ "entityValue": k }))
        .collect();
    v.to_string()
}

/// The CloudTrail record of AWS attaching `AWSCompromisedKeyQuarantineV3` to `user`, in an
/// EventBridge envelope.
fn quarantine_policy_event(acct: &Account, user: &str) -> String {
    let record = serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "AWSService", "invokedBy": "iam.amazonaws.com"},
        "eventTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": "iam.amazonaws.com",
        "eventName": "AttachUserPolicy",
        "awsRegion": "us-east-1",
        "requestParameters": {
            "userName": user,
            "policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3"
        },
        "responseElements": null,
        "eventID": uuid::Uuid::new_v4().to_string(),
        "readOnly": false,
        "eventType": "AwsApiCall",
        "recipientAccountId": acct.id,
    });
    serde_json::json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.iam",
        "account": acct.id, "time": record["eventTime"], "region": "us-east-1", "resources": [],
        "detail": record,
    })
    .to_string()
}

async fn wait_metric(d: &Daemon, series: &str, at_least: f64) {
    eventually(&format!("{series} >= {at_least}"), DEADLINE, || async {
        (d.metric(series).await >= at_least).then_some(())
    })
    .await;
}

/// Exposed keys through SQS, while the write limiter is saturated by a backlog of baseline
/// work (0.2 writes/s, about a minute of writes): a Health event deactivates exactly the named key at once; AWS's
/// quarantine policy on a one-key user deactivates that key, on a two-key user nothing
/// (ambiguous), on a user without an active key nothing; an exempt user's key stays active; an unknown key and another account's
/// key change nothing. Every message is deleted once settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposed_keys_are_quarantined_at_once_past_the_write_limiter() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    let dir = tempfile::tempdir().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    // A long visibility timeout: a message whose reconcile waits for the slow limiter is
    // not delivered twice during the test.
    let url = create_queue(
        &sqs,
        &format!("iam-warden-q-{}", acct.id),
        &[(QueueAttributeName::VisibilityTimeout, "300".to_string())],
    )
    .await;
    let iam = &acct.iam;

    // A backlog: console users to bring onto the baseline, one write every 5 s.
    const BACKLOG: usize = 6;
    for i in 0..BACKLOG {
        let name = format!("backlog-{i}");
        acct.user(&name).await.password(&name).await;
    }
    acct.user("two-keys").await;
    let exposed = acct.key("two-keys").await;
    let other = acct.key("two-keys").await;
    acct.user("one-key").await;
    let single = acct.key("one-key").await;
    acct.user("policy-two").await;
    let p1 = acct.key("policy-two").await;
    let p2 = acct.key("policy-two").await;
    acct.user_at("exempt-svc", "/", &[("iam-warden/exempt", "true")])
        .await;
    let exempt_key = acct.key("exempt-svc").await;
    acct.user("no-active").await;
    let dead = acct.key("no-active").await;
    iam.update_access_key()
        .user_name("no-active")
        .access_key_id(&dead)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();

    let creds = session(&acct, "iam-warden-daemon").await;
    let d = Daemon::start(
        &creds,
        &moto.endpoint,
        &sqs_only_env(dir.path(), &url, "0.2"),
    );
    d.wait_ready().await;

    // 1. A Health event for one of two keys: exactly that key, at once.
    send(&sqs, &url, &health_event(&acct.id, &[&exposed])).await;
    wait_key_inactive(iam, "two-keys", &exposed).await;
    assert_eq!(key_status(iam, "two-keys", &other).await, "Active");
    let onboarded = d
        .metric("iam_warden_writes_total{action=\"add_user_to_group\",outcome=\"applied\"}")
        .await;
    assert!(
        onboarded < BACKLOG as f64,
        "the quarantine waited for the limiter's backlog ({onboarded} of {BACKLOG} users already onboarded)"
    );
    // The key is deactivated first (the urgent write), its quarantine tag written next.
    let tag = eventually("the quarantine tag", DEADLINE, || async {
        let tags = iam
            .list_user_tags()
            .user_name("two-keys")
            .send()
            .await
            .ok()?;
        tags.tags()
            .iter()
            .find(|t| t.key() == format!("iam-warden/rotation/{exposed}"))
            .map(|t| t.value().to_string())
    })
    .await;
    assert!(
        tag.starts_with("phase=quarantined since=20") && tag.ends_with('Z'),
        "{tag:?}"
    );
    let tags = iam
        .list_user_tags()
        .user_name("two-keys")
        .send()
        .await
        .unwrap();
    assert!(!tags
        .tags()
        .iter()
        .any(|t| t.key().ends_with(other.as_str())));

    // 2. AWS's quarantine policy on a one-key user: that key.
    send(&sqs, &url, &quarantine_policy_event(&acct, "one-key")).await;
    wait_key_inactive(iam, "one-key", &single).await;

    // 3. ... on a two-key user: which key is unknown, none is touched.
    send(&sqs, &url, &quarantine_policy_event(&acct, "policy-two")).await;
    wait_metric(
        &d,
        "iam_warden_quarantines_total{outcome=\"ambiguous\"}",
        1.0,
    )
    .await;

    // ... on a user without an active key: nothing to do.
    send(&sqs, &url, &quarantine_policy_event(&acct, "no-active")).await;
    wait_metric(
        &d,
        "iam_warden_quarantines_total{outcome=\"no_active_key\"}",
        1.0,
    )
    .await;

    // 4. An exempt user: finding only. 5. An unknown key. 6. Another account's event.
    send(&sqs, &url, &health_event(&acct.id, &[&exempt_key])).await;
    send(
        &sqs,
        &url,
        &health_event(&acct.id, &["AKIAZZZZZZZZZZZZZZZZ"]),
    )
    .await;
    send(&sqs, &url, &health_event("999999999999", &[&other])).await;
    wait_metric(&d, "iam_warden_quarantines_total{outcome=\"exempt\"}", 1.0).await;
    wait_metric(
        &d,
        "iam_warden_quarantines_total{outcome=\"unknown_key\"}",
        1.0,
    )
    .await;
    // Another account's event never reaches this account's quarantine: the SQS source
    // skips it (one account in scope) and deletes it.
    wait_metric(
        &d,
        "iam_warden_sqs_messages_skipped_total{reason=\"not_in_scope\"}",
        1.0,
    )
    .await;
    // The policy event also reconciles its user (behind the backlog): its message is
    // deleted once that is done too.
    eventually(
        "every message settled and deleted",
        Duration::from_secs(240),
        || async { (messages_in(&sqs, &url).await? == 0).then_some(()) },
    )
    .await;

    assert_eq!(
        key_statuses(iam, "policy-two").await,
        {
            let mut v = vec![(p1, "Active".into()), (p2, "Active".into())];
            v.sort();
            v
        },
        "ambiguous: nothing deactivated"
    );
    assert_eq!(key_status(iam, "exempt-svc", &exempt_key).await, "Active");
    assert_eq!(key_status(iam, "two-keys", &other).await, "Active");
    assert_eq!(
        d.metric("iam_warden_quarantines_total{outcome=\"deactivated\"}")
            .await,
        2.0
    );
    assert_eq!(
        d.metric("iam_warden_quarantines_total{outcome=\"failed\"}")
            .await,
        0.0
    );
    assert_eq!(
        d.metric("iam_warden_quarantines_total{outcome=\"other_account\"}")
            .await,
        0.0,
        "routed away before the quarantine"
    );

    // Journal: the two deactivations with reason `exposed` (intent, then applied), each
    // key's tag as its own write; the exempt and ambiguous ones as skipped findings.
    let j = journal_lines(dir.path());
    let quarantines: Vec<_> = j
        .iter()
        .filter(|e| e["action"] == "quarantine_access_key")
        .collect();
    for key in [&exposed, &single] {
        let outcomes: Vec<_> = quarantines
            .iter()
            .filter(|e| e["target"] == key.as_str())
            .map(|e| {
                (
                    e["outcome"].as_str().unwrap(),
                    e["reason"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            vec![("intent", "exposed"), ("applied", "exposed")],
            "{key}"
        );
    }
    assert!(quarantines
        .iter()
        .any(|e| e["user"] == "exempt-svc" && e["outcome"] == "skipped"));
    assert!(quarantines
        .iter()
        .any(|e| e["user"] == "policy-two" && e["outcome"] == "skipped"));
    assert!(!quarantines.iter().any(|e| e["target"] == other.as_str()));
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("\"finding\":\"key-exposed\""), "{log}");
}

/// In dry-run (the default) an exposed key is only journaled as a would-be write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposed_key_in_dry_run_is_journaled_only() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    let dir = tempfile::tempdir().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let url = create_queue(&sqs, &format!("iam-warden-dq-{}", acct.id), &[]).await;
    acct.user("leaky").await;
    let key = acct.key("leaky").await;
    let creds = session(&acct, "iam-warden-daemon").await;
    let mut env = sqs_only_env(dir.path(), &url, "100");
    env.push(("IAM_WARDEN_MODE", "dry-run".to_string()));
    let d = Daemon::start(&creds, &moto.endpoint, &env);
    d.wait_ready().await;
    send(&sqs, &url, &health_event(&acct.id, &[&key])).await;
    wait_metric(&d, "iam_warden_quarantines_total{outcome=\"dry_run\"}", 1.0).await;
    assert_eq!(key_status(&acct.iam, "leaky", &key).await, "Active");
    let j = journal_lines(dir.path());
    let lines: Vec<_> = j
        .iter()
        .filter(|e| e["action"] == "quarantine_access_key")
        .map(|e| {
            (
                e["outcome"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(lines, vec![("dry_run", key.as_str())]);
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
}

/// iam-warden's own identity is never quarantined, even with
/// `rotation.quarantine_exempt_users = true`: the daemon runs as an IAM user, and a Health
/// event for its own key leaves the key active (outcome `exempt`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_key_is_never_quarantined() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    let dir = tempfile::tempdir().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let url = create_queue(&sqs, &format!("iam-warden-own-{}", acct.id), &[]).await;
    acct.user("warden-user").await;
    let out = acct
        .iam
        .create_access_key()
        .user_name("warden-user")
        .send()
        .await
        .unwrap();
    let k = out.access_key().unwrap();
    let own_key = k.access_key_id().to_string();
    let creds = Credentials::from_keys(&own_key, k.secret_access_key(), None);
    let mut env = sqs_only_env(dir.path(), &url, "100");
    env.push((
        "IAM_WARDEN_ROTATION__QUARANTINE_EXEMPT_USERS",
        "true".to_string(),
    ));
    let d = Daemon::start(&creds, &moto.endpoint, &env);
    d.wait_ready().await;
    send(&sqs, &url, &health_event(&acct.id, &[&own_key])).await;
    wait_metric(&d, "iam_warden_quarantines_total{outcome=\"exempt\"}", 1.0).await;
    assert_eq!(
        key_status(&acct.iam, "warden-user", &own_key).await,
        "Active"
    );
    assert_eq!(
        d.metric("iam_warden_quarantines_total{outcome=\"deactivated\"}")
            .await,
        0.0
    );
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("iam-warden's own identity"), "{log}");
}

/// A key's CreateDate as the rotation tag writes it (RFC 3339, whole seconds).
async fn key_created(iam: &aws_sdk_iam::Client, user: &str, key: &str) -> String {
    let out = iam.list_access_keys().user_name(user).send().await.unwrap();
    let k = out
        .access_key_metadata()
        .iter()
        .find(|k| k.access_key_id() == Some(key))
        .unwrap_or_else(|| panic!("{key} of {user}"));
    let secs = k.create_date().expect("CreateDate").secs();
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Wait until the clock is in a later second than `created`: a key made now is told apart
/// from that key by its CreateDate (the credential report names keys by CreateDate).
async fn past_second_of(created: &str) {
    let t = chrono::DateTime::parse_from_rfc3339(created).unwrap();
    eventually("the next second", DEADLINE, || async {
        (chrono::Utc::now().timestamp() > t.timestamp()).then_some(())
    })
    .await;
}

/// The credential-lifecycle gauges after a resync (dry-run: the state is the tags the test
/// wrote): a draining key and its new key, a stuck key and its new key, a quarantined
/// (inactive) key, a plain active and a plain inactive key; an exempt user's key is left
/// out. The next due time is the draining key's end of grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_publishes_the_access_key_gauges() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    let dir = tempfile::tempdir().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let url = create_queue(&sqs, &format!("iam-warden-kg-{}", acct.id), &[]).await;
    let iam = &acct.iam;
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let now = chrono::Utc::now();
    let draining_since = now - chrono::Duration::days(1);

    acct.user("draining").await;
    let old = acct.key("draining").await;
    let created = key_created(iam, "draining", &old).await;
    past_second_of(&created).await;
    let new = acct.key("draining").await;
    acct.tag(
        "draining",
        &format!("iam-warden/rotation/{old}"),
        &format!(
            "phase=draining since={} created={created} new={new}",
            fmt(draining_since)
        ),
    )
    .await;
    acct.user("stuck").await;
    let s_old = acct.key("stuck").await;
    let created = key_created(iam, "stuck", &s_old).await;
    past_second_of(&created).await;
    let s_new = acct.key("stuck").await;
    acct.tag(
        "stuck",
        &format!("iam-warden/rotation/{s_old}"),
        &format!(
            "phase=stuck since={} created={created} new={s_new}",
            fmt(now - chrono::Duration::days(20))
        ),
    )
    .await;
    acct.user("exposed").await;
    let q = acct.key("exposed").await;
    iam.update_access_key()
        .user_name("exposed")
        .access_key_id(&q)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    acct.tag(
        "exposed",
        &format!("iam-warden/rotation/{q}"),
        &format!("phase=quarantined since={}", fmt(now)),
    )
    .await;
    acct.user("plain").await;
    acct.key("plain").await;
    let idle = acct.key("plain").await;
    iam.update_access_key()
        .user_name("plain")
        .access_key_id(&idle)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    acct.user_at("exempt-svc", "/", &[("iam-warden/exempt", "true")])
        .await;
    acct.key("exempt-svc").await;

    let creds = session(&acct, "iam-warden-daemon").await;
    let mut env = sqs_only_env(dir.path(), &url, "100");
    env.push(("IAM_WARDEN_MODE", "dry-run".to_string()));
    let d = Daemon::start(&creds, &moto.endpoint, &env);
    d.wait_ready().await;

    let (_, body) = d.get("/metrics").await;
    let value = |series: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing:\n{body}"))
    };
    for (phase, want) in [
        ("active", 3.0),
        ("warned", 0.0),
        ("rotating", 0.0),
        ("draining", 1.0),
        ("stuck", 1.0),
        ("deactivated", 0.0),
        ("quarantined", 1.0),
        ("inactive", 1.0),
    ] {
        assert_eq!(
            value(&format!("iam_warden_access_keys{{phase=\"{phase}\"}}")),
            want,
            "{phase}"
        );
    }
    // Five active keys, all made seconds ago.
    assert_eq!(value("iam_warden_access_key_age_seconds_count"), 5.0);
    assert_eq!(
        value("iam_warden_access_key_age_seconds_bucket{le=\"604800\"}"),
        5.0
    );
    let oldest = value("iam_warden_oldest_access_key_age_seconds");
    assert!((0.0..600.0).contains(&oldest), "{oldest}");
    let due = value("iam_warden_rotation_next_due_timestamp_seconds");
    let grace_end = (draining_since + chrono::Duration::days(14)).timestamp() as f64;
    assert!(
        (due - grace_end).abs() < 1.5,
        "next due {due}, the draining key's end of grace {grace_end}"
    );
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("\"message\":\"access keys\""), "{log}");
}

/// The daemon judges the CIS account checks (`cis.enabled`, the default): a `*:*` policy
/// and an expired server certificate show in `account_check_failing{check}`; with
/// `cis.delete_expired_server_certificates` its account reconcile deletes the certificate
/// (journaled) and publishes the gauge from what it observed afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_judges_the_cis_account_checks_and_applies_the_opt_in_action() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    let dir = tempfile::tempdir().unwrap();
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let url = create_queue(&sqs, &format!("iam-warden-cis-{}", acct.id), &[]).await;
    acct.iam
        .create_policy()
        .policy_name("god")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap();
    // moto reports every server certificate as expired in 2012.
    acct.iam
        .upload_server_certificate()
        .server_certificate_name("old-tls")
        .certificate_body("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----")
        .private_key("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----")
        .send()
        .await
        .unwrap();
    let creds = session(&acct, "iam-warden-daemon").await;
    let mut env = sqs_only_env(dir.path(), &url, "100");
    env.push(("IAM_WARDEN_MODE", "enforce".to_string()));
    env.push((
        "IAM_WARDEN_CIS__DELETE_EXPIRED_SERVER_CERTIFICATES",
        "true".to_string(),
    ));
    let d = Daemon::start(&creds, &moto.endpoint, &env);
    d.wait_ready().await;
    wait_metric(
        &d,
        "iam_warden_account_check_failing{check=\"policy-full-admin\"}",
        1.0,
    )
    .await;
    eventually("the expired certificate deleted", DEADLINE, || async {
        let out = acct.iam.list_server_certificates().send().await.unwrap();
        out.server_certificate_metadata_list()
            .is_empty()
            .then_some(())
    })
    .await;
    eventually("server-certificate-expired back to 0", DEADLINE, || async {
        let fails = d
            .metric("iam_warden_account_check_failing{check=\"server-certificate-expired\"}")
            .await;
        let admin = d
            .metric("iam_warden_account_check_failing{check=\"policy-full-admin\"}")
            .await;
        (fails == 0.0 && admin == 1.0).then_some(())
    })
    .await;
    let lines = journal_lines(dir.path());
    assert!(
        lines
            .iter()
            .any(|l| l["action"] == "delete_server_certificate"
                && l["outcome"] == "applied"
                && l["target"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(":server-certificate/old-tls"))),
        "{lines:?}"
    );
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
}

// ---- the pre-flight gate (safety.preview_window) in the daemon ----

/// `user`'s IAM client through the recorder, with a new access key of its own.
async fn as_user(rec: &Recorder, acct: &Account, user: &str) -> aws_sdk_iam::Client {
    let out = acct
        .iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .unwrap();
    let k = out.access_key().unwrap();
    rec.iam_with(
        acct,
        Credentials::from_keys(k.access_key_id(), k.secret_access_key(), None),
    )
}

/// Tag `user` with `admin` (a client through the recorder: the daemon's poller sees the
/// TagUser event and reconciles the user).
async fn tag_user(admin: &aws_sdk_iam::Client, user: &str, k: &str, v: &str) {
    let tag = aws_sdk_iam::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
        .unwrap();
    admin
        .tag_user()
        .user_name(user)
        .tags(tag)
        .send()
        .await
        .unwrap();
}

/// The journal entries of `user`'s add_user_to_group with `outcome`.
fn group_adds(dir: &Path, user: &str, outcome: &str) -> Vec<serde_json::Value> {
    journal_lines(dir)
        .into_iter()
        .filter(|e| e["user"] == user && e["action"] == "add_user_to_group")
        .filter(|e| e["outcome"] == outcome)
        .collect()
}

/// The record state of `user`'s `baseline-would-deny` finding in Security Hub, if any.
async fn would_deny_finding(acct: &Account, user: &str) -> Option<String> {
    let out = aws_sdk_securityhub::Client::new(&acct.sdk)
        .get_findings()
        .max_results(100)
        .send()
        .await
        .unwrap();
    out.findings()
        .iter()
        .filter(|f| f.generator_id() == Some("iam-warden/baseline-would-deny"))
        .find(|f| {
            f.product_fields()
                .and_then(|m| m.get("iam-warden/user"))
                .map(String::as_str)
                == Some(user)
        })
        .and_then(|f| f.record_state())
        .map(|s| s.as_str().to_string())
}

/// Issue 13, the daemon half of the pre-flight gate (`safety.preview_window = 1h`; the
/// source-IP policy on, programmatic users). While CloudTrail cannot be read (LookupEvents
/// answers AccessDenied) no policy-adding change is applied: each is held with the reason
/// and the fix. Once it can be read, at the next pass (the reconcile a TagUser event brings;
/// the resync is an hour away) a quiet user is put under the policy, while a user whose 2
/// calls of the window came from outside the allowed network stays held (journal line
/// with the counts, metric, log line, Security Hub finding `baseline-would-deny`); tagged
/// `iam-warden/accept-impact=true`, it is put under the policy and its finding resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_gate_in_the_daemon_holds_until_accepted_and_never_applies_blind() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    let rec = Recorder::start_with(moto, "0", &["--record-reads"]);
    let admin = rec.iam(&acct);
    aws_sdk_securityhub::Client::new(&acct.sdk)
        .enable_security_hub()
        .send()
        .await
        .unwrap();
    for u in ["loud", "quiet"] {
        acct.user_at(u, "/", &[("iam-warden/access", "programmatic")])
            .await;
    }
    let loud = as_user(&rec, &acct, "loud").await;
    for _ in 0..2 {
        loud.list_groups()
            .customize()
            .mutate_request(|r| {
                r.headers_mut().insert("x-test-source-ip", "198.51.100.7");
            })
            .send()
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("warden.toml");
    std::fs::write(
        &cfg,
        "[baseline.source_ip_policy]\nenabled = true\nallowed_cidrs = [\"203.0.113.0/24\"]\n\
         [safety]\npreview_window = \"1h\"\n",
    )
    .unwrap();
    let group = iam_warden::config::Config::default()
        .baseline
        .source_ip_policy
        .group;
    rec.deny_lookups(true).await;
    let mut env = state_env(dir.path(), &rec.url);
    env.push(("IAM_WARDEN_CONFIG", cfg.display().to_string()));
    env.push(("IAM_WARDEN_EXPORT__SECURITYHUB__ENABLED", "true".into()));
    let creds = session(&acct, "iam-warden-daemon").await;
    let d = Daemon::start(&creds, &moto.endpoint, &env);
    d.wait_ready().await;
    let started = std::time::Instant::now();

    // CloudTrail unreadable: both held, never applied blind.
    eventually("both changes held", DEADLINE, || async {
        let n = group_adds(dir.path(), "loud", "skipped").len()
            + group_adds(dir.path(), "quiet", "skipped").len();
        (n >= 2).then_some(())
    })
    .await;
    for u in ["loud", "quiet"] {
        let e = &group_adds(dir.path(), u, "skipped")[0];
        let why = e["error"].as_str().unwrap_or_default();
        assert!(
            why.contains("cannot read CloudTrail: AWS cloudtrail LookupEvents failed")
                && why.contains("not authorized to perform: cloudtrail:LookupEvents")
                && why.contains("allow cloudtrail:LookupEvents")
                && why.contains(&format!("tag {u} iam-warden/accept-impact=true"))
                && !why.contains('\n'),
            "{why}"
        );
        assert!(!groups_of(&acct.iam, u).await.contains(&group), "{u}");
        assert!(group_adds(dir.path(), u, "applied").is_empty(), "{u}");
    }
    wait_metric(
        &d,
        "iam_warden_baseline_changes_held_total{policy=\"source-ip\"}",
        2.0,
    )
    .await;

    // Readable again; the next pass of each user judges its traffic.
    rec.deny_lookups(false).await;
    for u in ["loud", "quiet"] {
        tag_user(&admin, u, "team", "payments").await;
    }
    wait_in_group(&acct.iam, "quiet", &group).await;
    eventually("loud held for its traffic", DEADLINE, || async {
        group_adds(dir.path(), "loud", "skipped")
            .into_iter()
            .filter_map(|e| e["error"].as_str().map(str::to_string))
            .find(|why| why.contains("2 of 2 calls of loud in the last 1h"))
    })
    .await;
    assert!(!groups_of(&acct.iam, "loud").await.contains(&group));
    let log = d.log();
    assert!(
        log.contains("baseline change held by the pre-flight gate")
            && log.contains("outside-networks 2"),
        "{log}"
    );
    eventually("loud's finding exported", DEADLINE, || async {
        (would_deny_finding(&acct, "loud").await.as_deref() == Some("ACTIVE")).then_some(())
    })
    .await;
    eventually("quiet's finding resolved", DEADLINE, || async {
        (would_deny_finding(&acct, "quiet").await.as_deref() == Some("ARCHIVED")).then_some(())
    })
    .await;

    // Accepted by the tag: the next pass puts loud under the policy.
    tag_user(&admin, "loud", "iam-warden/accept-impact", "true").await;
    wait_in_group(&acct.iam, "loud", &group).await;
    let applied = group_adds(dir.path(), "loud", "applied");
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert!(
        applied[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("accepted by tag iam-warden/accept-impact=true"),
        "{applied:?}"
    );
    eventually("loud's finding resolved", DEADLINE, || async {
        (would_deny_finding(&acct, "loud").await.as_deref() == Some("ARCHIVED")).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
}
