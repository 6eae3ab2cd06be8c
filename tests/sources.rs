//! The event sources (CloudTrail LookupEvents poller, EventBridge→SQS consumer) against a
//! real moto server and the `cloudtrail-recorder` proxy. Each test uses its own account; the
//! test plays the worker (lease, starting, finished, done) so that no reconcile logic runs.

use crate::support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{SecondsFormat, Utc};
use iam_warden::aws::{CallStats, Clients};
use iam_warden::config::{CloudTrailSource, Secs, SqsSource};
use iam_warden::controller::dispatch::Dispatch;
use iam_warden::controller::queue::{Outcome, WorkQueue};
use iam_warden::controller::router::Router;
use iam_warden::metrics::Metrics;
use iam_warden::sources::checkpoint::Checkpoint;
use iam_warden::sources::cloudtrail::{CloudTrailPoller, PollStats};
use iam_warden::sources::event::{BaselineNames, ReconcileKey};
use iam_warden::sources::sqs::SqsConsumer;
use iam_warden::sources::trail::LookupLimit;
use serde_json::{json, Value};
use support::recorder::Recorder;
use support::{create_queue, eventually, shared_moto, Account};
use tokio::sync::watch;

// ---------------------------------------------------------------------------------------
// Harness

fn dispatch() -> Dispatch {
    Dispatch::new(
        WorkQueue::default(),
        Metrics::new("test").unwrap(),
        BaselineNames::default(),
        "",
    )
}

/// A router with one account in scope: `acct`, to `d`.
fn router(acct: &Account, d: &Dispatch) -> Router {
    Router::single(d.metrics().clone(), &acct.id, d.clone())
}

fn user(name: &str) -> ReconcileKey {
    ReconcileKey::User(name.to_string())
}

fn keys(names: &[&str]) -> BTreeSet<ReconcileKey> {
    names.iter().map(|n| user(n)).collect()
}

/// Acts as the worker: takes one key and reports its reconcile finished.
async fn reconcile_one(d: &Dispatch) -> ReconcileKey {
    let lease = tokio::time::timeout(Duration::from_secs(10), d.queue().next())
        .await
        .expect("a key becomes due")
        .expect("queue open");
    let covered = d.starting(lease.key());
    let key = lease.key().clone();
    d.finished(&key, covered);
    lease.done(Outcome::success());
    key
}

/// Reconciles every key waiting in the queue; returns them.
async fn drain_keys(d: &Dispatch) -> BTreeSet<ReconcileKey> {
    let mut out = BTreeSet::new();
    while d.queue().depth() > 0 {
        out.insert(reconcile_one(d).await);
    }
    out
}

/// The value of one sample line in the metrics text (0 when absent).
fn sample(d: &Dispatch, series: &str) -> f64 {
    d.metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn events_total(d: &Dispatch, event: &str, outcome: &str) -> f64 {
    sample(
        d,
        &format!("iam_warden_events_total{{event=\"{event}\",outcome=\"{outcome}\"}}"),
    )
}

fn ct_cfg(overlap_secs: u64) -> CloudTrailSource {
    CloudTrailSource {
        enabled: true,
        poll_interval: Secs::from_secs(1),
        overlap: Secs::from_secs(overlap_secs),
        initial_lookback: Secs::from_secs(3600),
        ..CloudTrailSource::default()
    }
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A CloudTrail record as CloudTrail writes it (trimmed to what matters), made by an admin.
fn record(id: &str, name: &str, user_name: &str, time: &str) -> Value {
    json!({
        "eventVersion": "1.09",
        "eventID": id,
        "eventName": name,
        "eventTime": time,
        "eventSource": "iam.amazonaws.com",
        "awsRegion": "us-east-1",
        "readOnly": false,
        "requestParameters": {"userName": user_name},
        "userIdentity": {"type": "IAMUser", "userName": "admin", "accessKeyId": "AKIAADMIN"},
    })
}

// ---------------------------------------------------------------------------------------
// CloudTrail

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_enqueues_writes_once_and_skips_failed_and_malformed_records() {
    let rec = Recorder::start(shared_moto(), "0");
    let acct = Account::new(shared_moto()).await;
    let iam = rec.iam(&acct);
    iam.create_user().user_name("alice").send().await.unwrap();
    iam.create_login_profile()
        .user_name("alice")
        .password("Correct-Horse-Battery-9!")
        .send()
        .await
        .unwrap();
    iam.create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    let now = rfc3339(Utc::now());
    let mut failed = record("failed-1", "CreateUser", "mallory", &now);
    failed["errorCode"] = json!("AccessDenied");
    failed["errorMessage"] = json!("User is not authorized to perform: iam:CreateUser");
    let mut no_name = record("no-name-1", "CreateUser", "eve", &now);
    no_name.as_object_mut().unwrap().remove("eventName");
    let bad_time = record("bad-time-1", "CreateUser", "trudy", "last tuesday");
    rec.inject(&acct.id, &json!([failed, no_name, bad_time]))
        .await;

    let clients = rec.clients(&acct);
    let dir = tempfile::tempdir().unwrap();
    let d = dispatch();
    let mut poller = CloudTrailPoller::new(&clients, &ct_cfg(900), dir.path(), d.clone()).unwrap();
    assert_eq!(poller.polled_until(), None, "first start");
    let stats = poller.poll_once().await.unwrap();
    assert_eq!(
        stats,
        PollStats {
            events: 6,
            dispatched: 4,
            duplicates: 0,
            malformed: 2,
            pages: 1
        }
    );
    assert_eq!(drain_keys(&d).await, keys(&["alice"]));
    for name in ["CreateUser", "CreateLoginProfile", "CreateAccessKey"] {
        assert_eq!(events_total(&d, name, "enqueued"), 1.0, "{name}");
    }
    assert_eq!(events_total(&d, "CreateUser", "failed_call"), 1.0);
    assert_eq!(events_total(&d, "other", "malformed"), 1.0, "no eventName");
    assert_eq!(events_total(&d, "CreateUser", "malformed"), 1.0, "bad time");
    let last_poll = sample(
        &d,
        "iam_warden_last_poll_success_timestamp_seconds{source=\"cloudtrail\"}",
    );
    assert!(last_poll > 0.0);

    // The next window overlaps the first: everything is a duplicate, nothing is enqueued.
    let stats = poller.poll_once().await.unwrap();
    assert_eq!(
        stats,
        PollStats {
            events: 6,
            dispatched: 0,
            duplicates: 6,
            malformed: 0,
            pages: 1
        }
    );
    assert_eq!(d.queue().depth(), 0);
    assert_eq!(events_total(&d, "CreateUser", "duplicate"), 3.0);
    assert_eq!(events_total(&d, "CreateAccessKey", "duplicate"), 1.0);
    assert_eq!(events_total(&d, "other", "duplicate"), 1.0);
    assert_eq!(events_total(&d, "CreateUser", "enqueued"), 1.0);

    // One lookup attribute, the IAM event source, and the checkpoint was written.
    assert_eq!(clients.calls.count("LookupEvents"), 2);
    let cp = Checkpoint::load(dir.path())
        .unwrap()
        .expect("checkpoint saved");
    assert_eq!(Some(cp.polled_until), poller.polled_until());
    assert_eq!(cp.seen.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_pages_through_everything_at_most_twice_a_second() {
    let rec = Recorder::start(shared_moto(), "0");
    let acct = Account::new(shared_moto()).await;
    let now = rfc3339(Utc::now());
    let records: Vec<Value> = (0..120)
        .map(|i| record(&format!("page-{i}"), "TagUser", &format!("pu-{i}"), &now))
        .collect();
    rec.inject(&acct.id, &Value::Array(records)).await;

    let clients = rec.clients(&acct);
    let dir = tempfile::tempdir().unwrap();
    let d = dispatch();
    let mut poller = CloudTrailPoller::new(&clients, &ct_cfg(900), dir.path(), d.clone()).unwrap();
    let stats = poller.poll_once().await.unwrap();
    assert_eq!(
        stats,
        PollStats {
            events: 120,
            dispatched: 120,
            duplicates: 0,
            malformed: 0,
            pages: 3
        }
    );
    let got = drain_keys(&d).await;
    assert_eq!(got.len(), 120);
    assert!((0..120).all(|i| got.contains(&user(&format!("pu-{i}")))));

    // A second poll right away is held back by the rate gate too.
    let stats = poller.poll_once().await.unwrap();
    assert_eq!(
        (stats.pages, stats.duplicates, stats.dispatched),
        (3, 120, 0)
    );
    assert_eq!(d.queue().depth(), 0);

    let calls: Vec<_> = poller.recent_calls().collect();
    assert_eq!(calls.len(), 6);
    assert_eq!(clients.calls.count("LookupEvents"), 6);
    for w in calls.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(500),
            "LookupEvents calls {gap:?} apart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_resumes_from_the_checkpoint_and_finds_late_events() {
    let rec = Recorder::start(shared_moto(), "0");
    let acct = Account::new(shared_moto()).await;
    let iam = rec.iam(&acct);
    let clients = rec.clients(&acct);
    let dir = tempfile::tempdir().unwrap();
    for u in ["before-1", "before-2"] {
        iam.create_user().user_name(u).send().await.unwrap();
    }

    let d1 = dispatch();
    let mut p1 = CloudTrailPoller::new(&clients, &ct_cfg(900), dir.path(), d1.clone()).unwrap();
    let s = p1.poll_once().await.unwrap();
    assert_eq!((s.events, s.dispatched), (2, 2));
    assert_eq!(drain_keys(&d1).await, keys(&["before-1", "before-2"]));
    let polled_until = p1.polled_until().expect("polled");
    drop(p1);
    let cp = Checkpoint::load(dir.path()).unwrap().expect("saved");
    assert_eq!(cp.polled_until, polled_until);
    assert_eq!(cp.seen.len(), 2);

    // While iam-warden is down: new writes, and a record that shows up 30 minutes late,
    // beyond the 15-minute overlap (the documented limit; the full resync covers it).
    iam.create_user().user_name("during").send().await.unwrap();
    iam.create_access_key()
        .user_name("during")
        .send()
        .await
        .unwrap();
    let half_hour_ago = rfc3339(Utc::now() - chrono::Duration::minutes(30));
    rec.inject(
        &acct.id,
        &json!([record(
            "too-late-1",
            "CreateUser",
            "too-late",
            &half_hour_ago
        )]),
    )
    .await;

    // A new poller on the same state directory: the old events are within the overlap but
    // not replayed, the new ones are all found, and the window starts at the checkpoint
    // (a first start with a 1 h lookback would have found the 30-minute-old record).
    let d2 = dispatch();
    let mut p2 = CloudTrailPoller::new(&clients, &ct_cfg(900), dir.path(), d2.clone()).unwrap();
    assert_eq!(p2.polled_until(), Some(polled_until));
    let s = p2.poll_once().await.unwrap();
    assert_eq!(
        s,
        PollStats {
            events: 4,
            dispatched: 2,
            duplicates: 2,
            malformed: 0,
            pages: 1
        }
    );
    assert_eq!(drain_keys(&d2).await, keys(&["during"]));
    assert!(p2.polled_until() > Some(polled_until));

    // A record delivered after the poll with an eventTime 5 minutes back is still found,
    // because each window re-reads the overlap.
    let five_min_ago = rfc3339(Utc::now() - chrono::Duration::minutes(5));
    rec.inject(
        &acct.id,
        &json!([record("late-1", "CreateUser", "late-user", &five_min_ago)]),
    )
    .await;
    let s = p2.poll_once().await.unwrap();
    assert_eq!((s.dispatched, s.duplicates, s.malformed), (1, 4, 0));
    assert_eq!(drain_keys(&d2).await, keys(&["late-user"]));

    // A fresh state directory looks back initial_lookback + overlap: finds all six.
    let fresh = tempfile::tempdir().unwrap();
    let d3 = dispatch();
    let mut p3 = CloudTrailPoller::new(&clients, &ct_cfg(900), fresh.path(), d3.clone()).unwrap();
    let s = p3.poll_once().await.unwrap();
    assert_eq!((s.events, s.dispatched), (6, 6));
    assert_eq!(
        drain_keys(&d3).await,
        keys(&["before-1", "before-2", "during", "too-late", "late-user"])
    );
}

/// A TCP endpoint that accepts connections and closes them at once, counting them.
async fn refusing_endpoint() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            drop(sock);
        }
    });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_failures_keep_the_checkpoint_and_the_loop_alive() {
    let rec = Recorder::start(shared_moto(), "0");
    let acct = Account::new(shared_moto()).await;
    rec.iam(&acct)
        .create_user()
        .user_name("first")
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dispatch();
    let mut ok =
        CloudTrailPoller::new(&rec.clients(&acct), &ct_cfg(900), dir.path(), d.clone()).unwrap();
    ok.poll_once().await.unwrap();
    let polled_until = ok.polled_until().expect("polled");
    drop(ok);

    // CloudTrail unreachable: poll_once fails, nothing moves.
    let (bad_url, connections) = refusing_endpoint().await;
    let bad_clients = Clients::from_sdk_config(&acct.sdk, Some(&bad_url), CallStats::new());
    let mut bad = CloudTrailPoller::new(&bad_clients, &ct_cfg(900), dir.path(), d.clone()).unwrap();
    let err = bad
        .poll_once()
        .await
        .expect_err("LookupEvents cannot succeed");
    assert!(err.to_string().contains("LookupEvents"), "{err}");
    assert_eq!(bad.polled_until(), Some(polled_until));
    assert_eq!(
        Checkpoint::load(dir.path())
            .unwrap()
            .map(|c| c.polled_until),
        Some(polled_until)
    );
    drop(bad);

    // The run loop keeps polling after failures and stops on shutdown, leaving the
    // checkpoint as it was.
    let before = connections.load(Ordering::SeqCst);
    let bad = CloudTrailPoller::new(&bad_clients, &ct_cfg(900), dir.path(), d.clone()).unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(bad.run(rx));
    eventually("two failed polls", Duration::from_secs(20), || {
        let n = connections.load(Ordering::SeqCst);
        async move { (n >= before + 2).then_some(()) }
    })
    .await;
    assert!(!task.is_finished(), "the loop survives failed polls");
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run stops promptly on shutdown")
        .expect("no panic")
        .expect("run ends cleanly");
    assert_eq!(
        Checkpoint::load(dir.path())
            .unwrap()
            .map(|c| c.polled_until),
        Some(polled_until)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_run_loop_polls_until_shutdown_and_saves() {
    let rec = Recorder::start(shared_moto(), "0");
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dispatch();
    let poller =
        CloudTrailPoller::new(&rec.clients(&acct), &ct_cfg(900), dir.path(), d.clone()).unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(poller.run(rx));
    rec.iam(&acct)
        .create_user()
        .user_name("looped")
        .send()
        .await
        .unwrap();
    eventually("the user is enqueued", Duration::from_secs(20), || {
        let depth = d.queue().depth();
        async move { (depth > 0).then_some(()) }
    })
    .await;
    assert_eq!(drain_keys(&d).await, keys(&["looped"]));
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run stops promptly on shutdown")
        .expect("no panic")
        .expect("run ends cleanly");
    let cp = Checkpoint::load(dir.path()).unwrap().expect("saved");
    assert!(cp.seen.iter().any(|s| !s.id.is_empty()));
    assert!(cp.polled_until <= Utc::now());
}

/// Two accounts' pollers share one limit of one poll at a time: while account A's poll
/// holds the permit, account B's waits before its first `LookupEvents` call, and makes it
/// as soon as the permit is free (each keeps its own pace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_polls_of_several_accounts_share_the_lookup_limit() {
    let rec = Recorder::start(shared_moto(), "0");
    let (a, b) = (
        Account::new(shared_moto()).await,
        Account::new(shared_moto()).await,
    );
    rec.iam(&b)
        .create_user()
        .user_name("limited")
        .send()
        .await
        .unwrap();
    let limit = LookupLimit::new(1);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (da, db) = (dispatch(), dispatch());
    let clients_b = rec.clients(&b);
    let mut poller_a = CloudTrailPoller::new(&rec.clients(&a), &ct_cfg(900), dir_a.path(), da)
        .unwrap()
        .with_limit(limit.clone());
    let mut poller_b = CloudTrailPoller::new(&clients_b, &ct_cfg(900), dir_b.path(), db.clone())
        .unwrap()
        .with_limit(limit.clone());
    poller_a.poll_once().await.unwrap();
    assert_eq!(limit.in_use(), 0, "a finished poll gives its permit back");

    // A poll in progress (its permit held here, as A's poll would).
    let held = limit.acquire().await;
    assert_eq!(limit.in_use(), 1);
    let task = tokio::spawn(async move { poller_b.poll_once().await });
    eventually(
        "B's poll waits for the permit",
        Duration::from_secs(10),
        || {
            let waiting = limit.waiting();
            async move { (waiting == 1).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        clients_b.calls.count("LookupEvents"),
        0,
        "no call before the permit"
    );
    assert!(!task.is_finished());
    drop(held);
    let stats = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("B polls once the permit is free")
        .expect("no panic")
        .expect("the poll succeeds");
    assert_eq!(stats.dispatched, 1);
    assert!(clients_b.calls.count("LookupEvents") >= 1);
    assert_eq!((limit.in_use(), limit.waiting()), (0, 0));
    assert_eq!(drain_keys(&db).await, keys(&["limited"]));
}

// ---------------------------------------------------------------------------------------
// SQS

fn envelope(account: &str, detail: &Value) -> String {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "account": account,
        "time": rfc3339(Utc::now()),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    })
    .to_string()
}

struct Queues {
    sqs: aws_sdk_sqs::Client,
    url: String,
    dlq_url: String,
}

/// A queue with the given visibility timeout whose redrive policy moves a message to a
/// dead-letter queue after 2 receives.
async fn queues(acct: &Account, visibility_secs: u32) -> Queues {
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let suffix = fastrand::u32(..);
    let dlq_url = create_queue(&sqs, &format!("warden-dlq-{suffix}"), &[]).await;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("QueueArn");
    let url = create_queue(
        &sqs,
        &format!("warden-events-{suffix}"),
        &[
            (
                QueueAttributeName::VisibilityTimeout,
                visibility_secs.to_string(),
            ),
            (
                QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string(),
            ),
        ],
    )
    .await;
    Queues { sqs, url, dlq_url }
}

impl Queues {
    async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// (visible, not visible) messages of a queue.
    async fn counts(&self, url: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let get = |k: &QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        (
            get(&QueueAttributeName::ApproximateNumberOfMessages),
            get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

fn sqs_cfg(url: &str) -> SqsSource {
    SqsSource {
        queue_url: Some(url.to_string()),
        wait_time: Secs::from_secs(1),
        max_messages: 10,
    }
}

async fn stop(
    tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<iam_warden::error::Result<()>>,
) {
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the consumer stops promptly on shutdown")
        .expect("no panic")
        .expect("the consumer ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_deletes_a_message_only_after_its_reconcile_finished() {
    let rec = Recorder::start(shared_moto(), "0");
    let acct = Account::new(shared_moto()).await;
    rec.iam(&acct)
        .create_user()
        .user_name("sqs-alice")
        .send()
        .await
        .unwrap();
    let recorded = rec.recorded(&acct.id).await.1;
    assert_eq!(recorded.len(), 1);
    let q = queues(&acct, 30).await;
    q.send(&envelope(&acct.id, &recorded[0])).await;

    let d = dispatch();
    let consumer = SqsConsumer::new(&acct.clients(), &sqs_cfg(&q.url), router(&acct, &d)).unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(consumer.run(rx));

    eventually("the user is enqueued", Duration::from_secs(20), || {
        let depth = d.queue().depth();
        async move { (depth == 1).then_some(()) }
    })
    .await;
    let lease = d.queue().next().await.expect("queue open");
    assert_eq!(lease.key(), &user("sqs-alice"));
    assert_eq!(q.counts(&q.url).await, (0, 1), "received, not deleted");
    let covered = d.starting(lease.key());
    assert_eq!(
        q.counts(&q.url).await,
        (0, 1),
        "not deleted while reconciling"
    );
    d.finished(lease.key(), covered);
    lease.done(Outcome::success());
    eventually("the message is deleted", Duration::from_secs(20), || {
        let q = &q;
        async move { (q.counts(&q.url).await == (0, 0)).then_some(()) }
    })
    .await;
    assert_eq!(events_total(&d, "CreateUser", "enqueued"), 1.0);

    // Events that cause no work are deleted at once.
    let mut read = record("read-1", "GetUser", "sqs-alice", &rfc3339(Utc::now()));
    read["readOnly"] = json!(true);
    let mut failed = record("failed-1", "CreateUser", "nope", &rfc3339(Utc::now()));
    failed["errorCode"] = json!("EntityAlreadyExists");
    q.send(&envelope(&acct.id, &read)).await;
    q.send(&envelope(&acct.id, &failed)).await;
    eventually(
        "ignored events counted and deleted",
        Duration::from_secs(20),
        || {
            let (q, d) = (&q, &d);
            async move {
                let counted = events_total(d, "other", "ignored") == 1.0
                    && events_total(d, "CreateUser", "failed_call") == 1.0;
                (counted && q.counts(&q.url).await == (0, 0)).then_some(())
            }
        },
    )
    .await;
    assert_eq!(d.queue().depth(), 0);
    assert!(
        sample(
            &d,
            "iam_warden_last_poll_success_timestamp_seconds{source=\"sqs\"}"
        ) > 0.0
    );
    assert_eq!(q.counts(&q.dlq_url).await, (0, 0));
    stop(tx, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_leaves_malformed_messages_for_the_dead_letter_queue() {
    let acct = Account::new(shared_moto()).await;
    let q = queues(&acct, 1).await;
    q.send("this is not JSON {").await;
    let mut wrong = serde_json::from_str::<Value>(&envelope(
        &acct.id,
        &record("x-1", "CreateUser", "u", &rfc3339(Utc::now())),
    ))
    .unwrap();
    wrong["detail-type"] = json!("EC2 Instance State-change Notification");
    q.send(&wrong.to_string()).await;

    let d = dispatch();
    let consumer = SqsConsumer::new(&acct.clients(), &sqs_cfg(&q.url), router(&acct, &d)).unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(consumer.run(rx));
    eventually(
        "both messages in the dead-letter queue",
        Duration::from_secs(30),
        || {
            let q = &q;
            async move {
                (q.counts(&q.dlq_url).await == (2, 0) && q.counts(&q.url).await == (0, 0))
                    .then_some(())
            }
        },
    )
    .await;
    // Each was received (and counted) twice before the redrive policy moved it.
    assert_eq!(events_total(&d, "other", "malformed"), 4.0);
    assert_eq!(d.queue().depth(), 0);
    stop(tx, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_stops_receiving_at_the_in_flight_bound() {
    let acct = Account::new(shared_moto()).await;
    let q = queues(&acct, 30).await;
    let now = rfc3339(Utc::now());
    q.send(&envelope(
        &acct.id,
        &record("b-1", "CreateUser", "b1", &now),
    ))
    .await;
    q.send(&envelope(
        &acct.id,
        &record("b-2", "CreateUser", "b2", &now),
    ))
    .await;

    let d = dispatch();
    let consumer = SqsConsumer::new(&acct.clients(), &sqs_cfg(&q.url), router(&acct, &d))
        .unwrap()
        .with_max_in_flight(1);
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(consumer.run(rx));
    let mut seen = BTreeSet::new();
    for round in 0..2 {
        eventually("a user is enqueued", Duration::from_secs(20), || {
            let depth = d.queue().depth();
            async move { (depth > 0).then_some(()) }
        })
        .await;
        assert_eq!(d.queue().depth(), 1, "only one message taken at a time");
        if round == 0 {
            assert_eq!(
                q.counts(&q.url).await,
                (1, 1),
                "the other one stays visible"
            );
        }
        seen.insert(reconcile_one(&d).await);
    }
    assert_eq!(seen, keys(&["b1", "b2"]));
    eventually("both deleted", Duration::from_secs(20), || {
        let q = &q;
        async move { (q.counts(&q.url).await == (0, 0)).then_some(()) }
    })
    .await;
    stop(tx, task).await;
}

/// Shutdown with two messages in hand: the one whose reconcile finishes during the drain is
/// deleted, the other is released (visible again at once, not after its 60 s visibility
/// timeout), and the consumer returns once both are settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_shutdown_deletes_finished_messages_and_releases_the_others() {
    let acct = Account::new(shared_moto()).await;
    let q = queues(&acct, 60).await;
    let now = rfc3339(Utc::now());
    q.send(&envelope(
        &acct.id,
        &record("s-1", "CreateUser", "s1", &now),
    ))
    .await;
    q.send(&envelope(
        &acct.id,
        &record("s-2", "CreateUser", "s2", &now),
    ))
    .await;

    let d = dispatch();
    let clients = acct.clients();
    let (drained_tx, drained_rx) = watch::channel(false);
    let consumer = SqsConsumer::new(&clients, &sqs_cfg(&q.url), router(&acct, &d))
        .unwrap()
        .release_unsettled_on(drained_rx);
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(consumer.run(rx));
    eventually(
        "both received and enqueued",
        Duration::from_secs(20),
        || {
            let (q, depth) = (&q, d.queue().depth());
            async move { (depth == 2 && q.counts(&q.url).await == (0, 2)).then_some(()) }
        },
    )
    .await;

    // Shutdown: the consumer stops receiving but keeps both messages until the drain ends.
    tx.send(true).unwrap();
    let finished = reconcile_one(&d).await;
    let ReconcileKey::User(finished_user) = &finished else {
        panic!("a user key: {finished:?}")
    };
    eventually("the finished one deleted", Duration::from_secs(20), || {
        let q = &q;
        async move { (q.counts(&q.url).await == (0, 1)).then_some(()) }
    })
    .await;
    assert!(
        !task.is_finished(),
        "the consumer holds the unfinished message until the drain ends"
    );
    drained_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the consumer returns once the messages are settled")
        .expect("no panic")
        .expect("the consumer ends cleanly");
    assert_eq!(
        q.counts(&q.url).await,
        (1, 0),
        "one deleted, the other visible again at once"
    );
    assert_eq!(clients.calls.count("ChangeMessageVisibility"), 1);
    let out = q
        .sqs
        .receive_message()
        .queue_url(&q.url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = out.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies.len(), 1);
    let released_user = if finished_user == "s1" { "s2" } else { "s1" };
    assert!(
        bodies[0].contains(&format!("\"userName\":\"{released_user}\"")),
        "the unfinished one is released: {}",
        bodies[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_consumer_survives_receive_errors() {
    let acct = Account::new(shared_moto()).await;
    let url = format!(
        "{}/{}/no-such-queue-{}",
        acct.endpoint,
        acct.id,
        fastrand::u32(..)
    );
    let clients = acct.clients();
    let d = dispatch();
    let consumer = SqsConsumer::new(&clients, &sqs_cfg(&url), router(&acct, &d)).unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(consumer.run(rx));
    eventually("two failed receives", Duration::from_secs(20), || {
        let n = clients.calls.count("ReceiveMessage");
        async move { (n >= 2).then_some(()) }
    })
    .await;
    assert!(!task.is_finished(), "the consumer survives receive errors");
    assert_eq!(
        sample(
            &d,
            "iam_warden_last_poll_success_timestamp_seconds{source=\"sqs\"}"
        ),
        0.0
    );
    stop(tx, task).await;

    // And a consumer needs a queue.
    let err = SqsConsumer::new(&clients, &SqsSource::default(), router(&acct, &d))
        .err()
        .expect("no queue_url");
    assert!(err.to_string().contains("sources.sqs.queue_url"), "{err}");
}

/// One queue for two accounts in scope, each with its own dispatch and work queue (as an
/// organization-wide EventBridge rule feeds it), plus events of an account out of scope and
/// with an account that cannot be read: each event reaches the work queue of the account it
/// names (the same user name in both accounts is two keys, one per account), the others are
/// counted by reason and never reach a queue, and every message is deleted. An account
/// dropped from the router (discovery) is out of scope from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_routes_each_event_to_the_dispatch_of_its_account() {
    let a = Account::new(shared_moto()).await;
    let b = Account::new(shared_moto()).await;
    let outside = loop {
        let id = format!("{:012}", fastrand::u64(100_000_000_000..999_999_999_999));
        if id != a.id && id != b.id {
            break id;
        }
    };
    let q = queues(&a, 30).await;
    let metrics = Metrics::new("test").unwrap();
    let account_dispatch = || {
        Dispatch::new(
            WorkQueue::default(),
            metrics.clone(),
            BaselineNames::default(),
            "",
        )
    };
    let (da, db) = (account_dispatch(), account_dispatch());
    let router = Router::new(metrics.clone());
    router.insert(&a.id, da.clone());
    router.insert(&b.id, db.clone());
    // In scope, but its controller not running (its role cannot be assumed yet).
    let down = &loop {
        let id = format!("{:012}", fastrand::u64(100_000_000_000..999_999_999_999));
        if ![&a.id, &b.id, &outside].contains(&&id) {
            break id;
        }
    };
    router.expect(down);

    let now = rfc3339(Utc::now());
    q.send(&envelope(
        &a.id,
        &record("a-1", "CreateUser", "alice", &now),
    ))
    .await;
    q.send(&envelope(&b.id, &record("b-1", "CreateUser", "bob", &now)))
        .await;
    q.send(&envelope(&b.id, &record("b-2", "TagUser", "alice", &now)))
        .await;
    q.send(&envelope(
        &outside,
        &record("o-1", "CreateUser", "mallory", &now),
    ))
    .await;
    q.send(&envelope(down, &record("d-1", "CreateUser", "dave", &now)))
        .await;
    // A's event for user eve, with its account field replaced (None: removed).
    let with_account = |account: Option<Value>| {
        let mut v: Value =
            serde_json::from_str(&envelope(&a.id, &record("x", "CreateUser", "eve", &now)))
                .unwrap();
        let o = v.as_object_mut().unwrap();
        match account {
            None => o.remove("account"),
            Some(x) => o.insert("account".into(), x),
        };
        v.to_string()
    };
    q.send(&with_account(None)).await;
    q.send(&with_account(Some(Value::Null))).await;
    q.send(&with_account(Some(json!(a.id.parse::<u64>().unwrap()))))
        .await;
    q.send(&with_account(Some(json!(format!("{}x", &a.id[..11])))))
        .await;

    let consumer = SqsConsumer::new(&a.clients(), &sqs_cfg(&q.url), router.clone()).unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(consumer.run(rx));
    let skipped = |reason: &str| {
        sample(
            &da,
            &format!("iam_warden_sqs_messages_skipped_total{{reason=\"{reason}\"}}"),
        )
    };
    eventually(
        "every message routed or skipped",
        Duration::from_secs(30),
        || {
            let done = da.queue().depth() == 1
                && db.queue().depth() == 2
                && [
                    "not_in_scope",
                    "account_down",
                    "missing",
                    "not_a_string",
                    "bad_shape",
                ]
                .iter()
                .map(|r| skipped(r))
                .sum::<f64>()
                    == 6.0;
            async move { done.then_some(()) }
        },
    )
    .await;
    assert_eq!(skipped("not_in_scope"), 1.0);
    assert_eq!(
        skipped("account_down"),
        1.0,
        "in scope, not running: not out of scope"
    );
    assert_eq!(skipped("missing"), 2.0, "no account field, and null");
    assert_eq!(skipped("not_a_string"), 1.0);
    assert_eq!(skipped("bad_shape"), 1.0);
    // The skipped messages are deleted at once; the routed ones once reconciled.
    assert_eq!(q.counts(&q.url).await, (0, 3));
    assert_eq!(drain_keys(&da).await, keys(&["alice"]));
    assert_eq!(drain_keys(&db).await, keys(&["alice", "bob"]));
    eventually("every message deleted", Duration::from_secs(20), || {
        let q = &q;
        async move { (q.counts(&q.url).await == (0, 0)).then_some(()) }
    })
    .await;
    assert_eq!(
        q.counts(&q.dlq_url).await,
        (0, 0),
        "nothing left to redrive"
    );
    assert_eq!(events_total(&da, "CreateUser", "enqueued"), 2.0);
    assert_eq!(events_total(&da, "other", "malformed"), 0.0);

    // B leaves the scope: its next event is skipped and deleted, A's still routed.
    assert!(router.remove(&b.id).is_some());
    q.send(&envelope(
        &b.id,
        &record("b-3", "CreateUser", "carol", &now),
    ))
    .await;
    q.send(&envelope(&a.id, &record("a-2", "CreateUser", "dave", &now)))
        .await;
    eventually(
        "B's event skipped, A's routed",
        Duration::from_secs(20),
        || {
            let done = skipped("not_in_scope") == 2.0 && da.queue().depth() == 1;
            async move { done.then_some(()) }
        },
    )
    .await;
    assert_eq!(db.queue().depth(), 0);
    assert_eq!(drain_keys(&da).await, keys(&["dave"]));
    eventually("deleted", Duration::from_secs(20), || {
        let q = &q;
        async move { (q.counts(&q.url).await == (0, 0)).then_some(()) }
    })
    .await;
    stop(tx, task).await;
}
