//! `iam-warden run` over several accounts (`accounts.source = "list"`, issue 12) against a
//! real moto server: each account's drifting users are enforced in that account and only
//! in scope, with that account's exemptions; every journal line carries its account; an
//! account whose role cannot be assumed (the fault proxy refuses its AssumeRole) is down
//! while the others are enforced; and a backlog in one account does not hold back a new
//! user's reconcile in another (the 5,000-key case is the unit test in
//! `src/app/daemon/worker/tests.rs`).

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::daemon::{iam_event, run_command, session, Daemon};
use support::faults::FaultProxy;
use support::{create_queue, eventually, shared_moto, Account};

const DEADLINE: Duration = Duration::from_secs(90);
const MFA_GROUP: &str = "iam-warden-require-mfa";

async fn in_group(iam: &aws_sdk_iam::Client, user: &str) -> bool {
    match iam.list_groups_for_user().user_name(user).send().await {
        Ok(out) => out.groups().iter().any(|g| g.group_name() == MFA_GROUP),
        Err(_) => false,
    }
}

/// Wait until `user` of `acct` is in the MFA group; on time-out, fail with the daemon's log.
async fn wait_in_group(daemon: &Daemon, acct: &Account, user: &str) {
    let start = Instant::now();
    while !in_group(&acct.iam, user).await {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {user} in {MFA_GROUP} in {}; daemon log:\n{}",
            acct.id,
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn journal(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The daemon as `caller`'s session `iam-warden-daemon`, with `toml` as its configuration
/// file, through `endpoint` (moto or a fault proxy in front of it).
async fn start(
    caller: &Account,
    endpoint: &str,
    dir: &Path,
    toml: &str,
    env: &[(&str, &str)],
) -> Daemon {
    let creds = session(caller, "iam-warden-daemon").await;
    let path = dir.join("iam-warden.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = run_command(&creds, endpoint);
    cmd.env("IAM_WARDEN_CONFIG", &path)
        .env("IAM_WARDEN_STATE_DIR", dir)
        .env("IAM_WARDEN_MODE", "enforce")
        .env("IAM_WARDEN_RESYNC__INTERVAL", "1h")
        .env("IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED", "false")
        .env("IAM_WARDEN_AWS__MAX_ATTEMPTS", "2");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Daemon::spawn(cmd)
}

/// Caller C (listed, its own credentials), members A and D, X listed but excluded, O not
/// listed. Each has a console user without MFA; `bob` is exempt in A only. D's role
/// cannot be assumed. C and A are enforced, each in its own account and journaled with
/// it; X, O and A's bob are untouched; D is down and the daemon is ready anyway. Events of
/// A and C on one SQS queue each reach their own account; X's is skipped as out of scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_in_scope_is_enforced_and_one_down_does_not_stop_the_others() {
    let moto = shared_moto();
    let (c, a, d, x, o) = (
        Account::new(moto).await,
        Account::new(moto).await,
        Account::new(moto).await,
        Account::new(moto).await,
        Account::new(moto).await,
    );
    for acct in [&c, &a, &d, &x, &o] {
        // No baseline group yet: the first resync's account reconcile creates it while
        // the user reconciles already run; a user reconcile that finds no group yet is
        // retried (not left for the next resync, 1 h here).
        acct.user("alice").await.password("alice").await;
        acct.user("bob").await.password("bob").await;
    }
    let proxy = FaultProxy::start(moto, 1, 0.0, &[]);
    proxy.refuse("AssumeRole", &d.id).await;
    // One SQS queue for every account (an organization-wide EventBridge rule).
    let sqs = aws_sdk_sqs::Client::new(&c.sdk);
    let url = create_queue(&sqs, &format!("iam-warden-orgs-{}", c.id), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"[accounts]
source = "list"
exclude = ["{x}"]
[[accounts.list]]
id = "{c}"
[[accounts.list]]
id = "{a}"
[[accounts.list]]
id = "{d}"
[[accounts.list]]
id = "{x}"
[accounts.exempt]
"{a}" = ["bob"]
"#,
        c = c.id,
        a = a.id,
        d = d.id,
        x = x.id
    );
    let daemon = start(
        &c,
        &proxy.url,
        dir.path(),
        &toml,
        &[
            ("IAM_WARDEN_SOURCES__SQS__QUEUE_URL", url.as_str()),
            ("IAM_WARDEN_SOURCES__SQS__WAIT_TIME", "1s"),
        ],
    )
    .await;
    daemon.wait_ready().await;

    wait_in_group(&daemon, &c, "alice").await;
    wait_in_group(&daemon, &c, "bob").await;
    wait_in_group(&daemon, &a, "alice").await;
    let up = |id: &str| format!("iam_warden_account_up{{account=\"{id}\"}}");
    eventually("C and A up, D down", DEADLINE, || async {
        let m = daemon.metrics().await;
        let v = |s: String| {
            m.lines()
                .find_map(|l| l.strip_prefix(&s)?.trim().parse::<f64>().ok())
        };
        (v(up(&c.id)) == Some(1.0) && v(up(&a.id)) == Some(1.0) && v(up(&d.id)) == Some(0.0))
            .then_some(())
    })
    .await;
    // Events of two accounts on the one queue each reach their own account (the resync
    // interval is 1 h: only the events bring these users in); X's event is out of scope,
    // D's is of an account in scope that is down.
    for acct in [&a, &c, &x, &d] {
        acct.user("carol").await.password("carol").await;
        sqs.send_message()
            .queue_url(&url)
            .message_body(iam_event(acct, "CreateLoginProfile", "carol"))
            .send()
            .await
            .unwrap();
    }
    wait_in_group(&daemon, &a, "carol").await;
    wait_in_group(&daemon, &c, "carol").await;
    eventually(
        "X's event skipped as out of scope, D's as down",
        DEADLINE,
        || async {
            let out = daemon
                .metric("iam_warden_sqs_messages_skipped_total{reason=\"not_in_scope\"}")
                .await;
            let down = daemon
                .metric("iam_warden_sqs_messages_skipped_total{reason=\"account_down\"}")
                .await;
            (out == 1.0 && down == 1.0).then_some(())
        },
    )
    .await;
    assert!(!in_group(&x.iam, "carol").await, "carol in X was changed");
    // A's exemption is A's: bob counted exempt there, not changed.
    assert_eq!(
        daemon
            .metric(&format!(
                "iam_warden_users{{account=\"{}\",state=\"exempt\"}}",
                a.id
            ))
            .await,
        1.0
    );
    assert!(!in_group(&a.iam, "bob").await, "bob is exempt in A");
    // Out of scope: excluded, not listed, and the account that is down.
    for (acct, why) in [(&x, "excluded"), (&o, "not listed"), (&d, "down")] {
        for user in ["alice", "bob"] {
            assert!(
                !in_group(&acct.iam, user).await,
                "{user} in {} ({why}) was changed",
                acct.id
            );
        }
    }
    let metrics = daemon.metrics().await;
    assert!(
        !metrics.contains(&format!("account=\"{}\"", x.id)),
        "X has no series"
    );
    let log = daemon.log();
    let down = log
        .lines()
        .find(|l| l.contains("\"account down\"") && l.contains(&d.id))
        .unwrap_or_else(|| panic!("no `account down` line for D:\n{log}"));
    assert!(down.contains("cannot assume"), "{down}");
    assert!(down.contains("deploy the member role"), "{down}");

    let (code, log) = daemon.stop().await;
    assert_eq!(code, 0, "{log}");
    // Every write journaled with its own account: alice in C and A, bob in C only.
    let lines = journal(dir.path());
    let wrote = |acct: &str, user: &str| {
        lines
            .iter()
            .any(|l| l["account"] == acct && l["user"] == user && l["outcome"] == "applied")
    };
    assert!(wrote(&c.id, "alice") && wrote(&c.id, "bob"), "{lines:#?}");
    assert!(wrote(&a.id, "alice"), "{lines:#?}");
    assert!(!wrote(&a.id, "bob"), "{lines:#?}");
    for l in &lines {
        let acct = l["account"].as_str().unwrap_or_default();
        assert!(
            acct == c.id || acct == a.id,
            "a journal line of {acct}: {l}"
        );
    }
}

/// Account A has a backlog of 150 drifting users, its writes paced at 2 per second (about
/// a minute and a half of work), and holds every worker permit
/// (`controller.workers` = `account_workers` = 4). A user created in the caller's account
/// C, reported by an SQS event, is enforced while most of A's backlog is still waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_in_one_account_does_not_hold_back_a_new_user_in_another() {
    const BACKLOG: usize = 150;
    let moto = shared_moto();
    let (c, a) = (Account::new(moto).await, Account::new(moto).await);
    for i in 0..BACKLOG {
        let u = format!("drift-{i:03}");
        a.user(&u).await.password(&u).await;
    }
    let sqs = aws_sdk_sqs::Client::new(&c.sdk);
    let url = create_queue(&sqs, &format!("iam-warden-org-{}", c.id), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"[safety]
confirm_large_change = true
[controller]
workers = 4
account_workers = 4
writes_per_second = 2.0
write_burst = 1
min_rate_per_second = 0.5
[accounts]
source = "list"
[[accounts.list]]
id = "{c}"
[[accounts.list]]
id = "{a}"
"#,
        c = c.id,
        a = a.id
    );
    let daemon = start(
        &c,
        &moto.endpoint,
        dir.path(),
        &toml,
        &[
            ("IAM_WARDEN_SOURCES__SQS__QUEUE_URL", url.as_str()),
            ("IAM_WARDEN_SOURCES__SQS__WAIT_TIME", "1s"),
        ],
    )
    .await;
    daemon.wait_ready().await;
    // A's backlog is under way.
    let a_done = || async {
        journal(dir.path())
            .iter()
            .filter(|l| l["account"] == a.id.as_str() && l["outcome"] == "applied")
            .count()
    };
    eventually("A's backlog started", DEADLINE, || async {
        (a_done().await >= 4).then_some(())
    })
    .await;

    c.user("newcomer").await.password("newcomer").await;
    let sent = Instant::now();
    sqs.send_message()
        .queue_url(&url)
        .message_body(iam_event(&c, "CreateLoginProfile", "newcomer"))
        .send()
        .await
        .unwrap();
    wait_in_group(&daemon, &c, "newcomer").await;
    let waited = sent.elapsed();
    let done = a_done().await;
    assert!(
        done < BACKLOG / 2,
        "the new user in C was enforced only after {done} of A's {BACKLOG} users ({waited:?})"
    );
    eprintln!(
        "new user in C enforced {waited:?} after its event, with {done} of A's {BACKLOG} users done"
    );
    let (code, log) = daemon.stop().await;
    assert_eq!(code, 0, "{log}");
}

/// `accounts.source = "organization"` with the shortest discovery interval (1m): an
/// account created in the organization after the start gets a controller at the next
/// discovery, and its drifting user is enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_picks_up_a_new_account() {
    let moto = shared_moto();
    let mgmt = Account::new(moto).await;
    aws_sdk_organizations::Client::new(&mgmt.sdk)
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("CreateOrganization");
    let first = Account::create_member(moto, &mgmt, "first").await;
    for acct in [&mgmt, &first] {
        acct.iam
            .create_group()
            .group_name(MFA_GROUP)
            .send()
            .await
            .unwrap();
    }
    first.user("alice").await.password("alice").await;
    let dir = tempfile::tempdir().unwrap();
    let toml = "[accounts]\nsource = \"organization\"\ndiscovery_interval = \"1m\"\n";
    let daemon = start(&mgmt, &moto.endpoint, dir.path(), toml, &[]).await;
    daemon.wait_ready().await;
    wait_in_group(&daemon, &first, "alice").await;

    let later = Account::create_member(moto, &mgmt, "later").await;
    later
        .iam
        .create_group()
        .group_name(MFA_GROUP)
        .send()
        .await
        .unwrap();
    later.user("carol").await.password("carol").await;
    let started = Instant::now();
    // The next discovery is at most a minute away.
    let deadline = Duration::from_secs(150);
    while !in_group(&later.iam, "carol").await {
        assert!(
            started.elapsed() < deadline,
            "the new account {} was not picked up; daemon log:\n{}",
            later.id,
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        daemon
            .metric(&format!(
                "iam_warden_account_up{{account=\"{}\"}}",
                later.id
            ))
            .await,
        1.0
    );
    assert!(daemon.log().contains("\"accounts discovered\""));
    let (code, log) = daemon.stop().await;
    assert_eq!(code, 0, "{log}");
}

/// With `accounts.source = "self"` an account controller that cannot start stops the
/// daemon as it always did: a checkpoint path that is a directory is exit 2 with the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_mode_exits_when_its_controller_cannot_start() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("cloudtrail-checkpoint.json")).unwrap();
    let mut daemon = start(
        &acct,
        &moto.endpoint,
        dir.path(),
        "",
        &[("IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED", "true")],
    )
    .await;
    let code = support::daemon::wait_exit(&mut daemon.child, DEADLINE).await;
    let log = daemon.log();
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("cloudtrail-checkpoint.json"), "{log}");
}
