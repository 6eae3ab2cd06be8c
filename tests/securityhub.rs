//! Findings exported to Security Hub on moto (real SDK clients): the round trip (created
//! ACTIVE with the CIS requirement, re-export without duplicates, resolved when fixed),
//! the error when Security Hub is not enabled, batches of 100 and the calls they take, and
//! the daemon's exports (after a user's reconcile; a failed export counted and logged).

use crate::support;

use chrono::Utc;
use iam_warden::baseline::checks::{Check, ClassSource, Finding, UserVerdict};
use iam_warden::config::{AccessClass, Config};
use iam_warden::export::securityhub::{self, Known, Sweep};
use iam_warden::export::{self, Scope};
use iam_warden::journal::Journal;
use support::{shared_moto, Account};

fn hub(account: &Account) -> aws_sdk_securityhub::Client {
    aws_sdk_securityhub::Client::new(&account.sdk)
}

async fn enable(account: &Account) {
    hub(account)
        .enable_security_hub()
        .send()
        .await
        .expect("EnableSecurityHub on moto");
}

/// Every finding in the hub, by id (moto keeps one per id).
async fn all_findings(account: &Account) -> Vec<aws_sdk_securityhub::types::AwsSecurityFinding> {
    let mut out = vec![];
    let mut token = None;
    loop {
        let page = hub(account)
            .get_findings()
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .expect("GetFindings");
        out.extend(page.findings.unwrap_or_default());
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

fn config(dir: &tempfile::TempDir) -> Config {
    let mut cfg = Config {
        state_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    cfg.export.securityhub.enabled = true;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_export_round_trip_creates_updates_and_resolves() {
    let account = Account::new(shared_moto()).await;
    enable(&account).await;
    account.user("alice").await.password("alice").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let clients = account.clients();

    let report = iam_warden::app::audit(&cfg, &clients, Utc::now())
        .await
        .unwrap();
    let sent = iam_warden::app::audit::export_to_securityhub(&cfg, &clients, &report)
        .await
        .unwrap();
    assert_eq!(sent.failed, 0, "{sent:?}");
    assert_eq!(sent.resolved, 0);
    assert!(sent.active >= 2, "{sent:?}");
    let id = format!(
        "iam-warden/{}/console-without-mfa/arn:aws:iam::{}:user/alice",
        account.id, account.id
    );
    let found = all_findings(&account).await;
    let f = found
        .iter()
        .find(|f| f.id.as_deref() == Some(id.as_str()))
        .unwrap_or_else(|| {
            panic!(
                "no {id} in {:?}",
                found.iter().map(|f| &f.id).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        f.record_state,
        Some(aws_sdk_securityhub::types::RecordState::Active)
    );
    let c = f.compliance.as_ref().expect("Compliance");
    assert_eq!(
        c.status,
        Some(aws_sdk_securityhub::types::ComplianceStatus::Failed)
    );
    assert_eq!(
        c.related_requirements.as_deref(),
        Some(&["CIS AWS Foundations Benchmark v5.0.0/1.9".to_string()][..])
    );
    assert_eq!(
        f.product_arn.as_deref(),
        Some(
            format!(
                "arn:aws:securityhub:us-east-1:{}:product/{}/default",
                account.id, account.id
            )
            .as_str()
        )
    );
    let created = f.created_at.clone();

    // Again: the same ids are updated, nothing duplicated, the first sighting kept.
    let before = found.len();
    let again = iam_warden::app::audit::export_to_securityhub(&cfg, &clients, &report)
        .await
        .unwrap();
    assert_eq!((again.active, again.resolved), (sent.active, 0));
    let found = all_findings(&account).await;
    assert_eq!(found.len(), before, "a re-export duplicates nothing");
    let f = found
        .iter()
        .find(|f| f.id.as_deref() == Some(id.as_str()))
        .unwrap();
    assert_eq!(f.created_at, created, "CreatedAt is kept");

    // Fixed: alice gets MFA; her finding is resolved, the others stay active.
    account.mfa("alice").await;
    let report = iam_warden::app::audit(&cfg, &clients, Utc::now())
        .await
        .unwrap();
    let fixed = iam_warden::app::audit::export_to_securityhub(&cfg, &clients, &report)
        .await
        .unwrap();
    assert_eq!(fixed.resolved, 1, "{fixed:?}");
    assert_eq!(fixed.active, sent.active - 1, "{fixed:?}");
    let found = all_findings(&account).await;
    assert_eq!(found.len(), before, "resolved in place");
    let f = found
        .iter()
        .find(|f| f.id.as_deref() == Some(id.as_str()))
        .unwrap();
    use aws_sdk_securityhub::types::{ComplianceStatus, RecordState, WorkflowStatus};
    assert_eq!(f.record_state, Some(RecordState::Archived));
    assert_eq!(
        f.workflow.as_ref().and_then(|w| w.status.clone()),
        Some(WorkflowStatus::Resolved)
    );
    assert_eq!(
        f.compliance.as_ref().and_then(|c| c.status.clone()),
        Some(ComplianceStatus::Passed)
    );
    let active = found
        .iter()
        .filter(|f| f.record_state == Some(RecordState::Active))
        .count();
    assert_eq!(active, fixed.active);

    // Resolved once: the next export does not resolve it again.
    let next = iam_warden::app::audit::export_to_securityhub(&cfg, &clients, &report)
        .await
        .unwrap();
    assert_eq!(next.resolved, 0);

    // One journal line per batch, with the counts.
    let lines: Vec<_> = Journal::read_all(&cfg.journal_path())
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "securityhub_batch_import_findings")
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().all(|e| e.outcome == "applied"));
    assert!(
        lines[2].reason.contains("1 resolved"),
        "{}",
        lines[2].reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_hub_not_enabled_is_one_clear_error() {
    let account = Account::new(shared_moto()).await;
    account.user("bob").await.password("bob").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let clients = account.clients();
    let report = iam_warden::app::audit(&cfg, &clients, Utc::now())
        .await
        .unwrap();
    let e = iam_warden::app::audit::export_to_securityhub(&cfg, &clients, &report)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Security Hub is not enabled in account")
            && e.contains("enable-security-hub")
            && !e.contains('\n'),
        "{e}"
    );
    assert_eq!(clients.calls.count("BatchImportFindings"), 0);
    // The audit itself is unchanged.
    assert!(!report.compliant());

    // Off in the configuration: a configuration error naming the key.
    let mut off = cfg.clone();
    off.export.securityhub.enabled = false;
    let e = iam_warden::app::audit::export_to_securityhub(&off, &clients, &report)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("export.securityhub.enabled = true"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_100_and_paged_reads() {
    let account = Account::new(shared_moto()).await;
    enable(&account).await;
    let scope = Scope {
        account_id: account.id.clone(),
        partition: "aws".into(),
        region: "us-east-1".into(),
    };
    let verdicts: Vec<UserVerdict> = (0..250)
        .map(|i| UserVerdict {
            user: format!("user-{i:03}"),
            class: AccessClass::Console,
            class_source: ClassSource::Derived,
            exempt: None,
            findings: vec![Finding::new(Check::ConsoleWithoutMfa, "no mfa")],
            notes: vec![],
        })
        .collect();
    let findings = export::collect(&scope, &[], verdicts.iter().map(|v| (v, None)));
    assert_eq!(findings.len(), 250);
    let clients = account.clients();
    let hub = clients.securityhub_in("us-east-1");

    securityhub::check_hub(&hub, &scope).await.unwrap();
    assert_eq!(clients.calls.count("DescribeHub"), 1);
    let mut known = Known::default();

    // Cold (the CLI; the daemon's first export): read back first, then send.
    let r = securityhub::export(
        &hub,
        &scope,
        &findings,
        &Sweep::All,
        Utc::now(),
        &mut known,
        None,
    )
    .await
    .unwrap();
    assert_eq!((r.active, r.resolved, r.batches, r.failed), (250, 0, 3, 0));
    assert_eq!(clients.calls.count("BatchImportFindings"), 3);
    assert_eq!(
        clients.calls.count("GetFindings"),
        1,
        "nothing exported before"
    );
    assert_eq!(all_findings(&account).await.len(), 250);
    assert!(known.is_warm());
    let first_created = all_findings(&account).await[0].created_at.clone();

    // Warm (the daemon's later exports): 3 batches sent first, then the stale ones read.
    // On AWS the filter (UpdatedAt before this export) makes that 1 page; moto ignores
    // GetFindings filters and returns all 250 (3 pages), filtered here instead.
    let before = clients.calls.total();
    let (imports, pages) = (
        clients.calls.count("BatchImportFindings"),
        clients.calls.count("GetFindings"),
    );
    let r = securityhub::export(
        &hub,
        &scope,
        &findings,
        &Sweep::All,
        Utc::now(),
        &mut known,
        None,
    )
    .await
    .unwrap();
    assert_eq!((r.active, r.resolved, r.batches), (250, 0, 3));
    assert_eq!(clients.calls.count("BatchImportFindings") - imports, 3);
    assert_eq!(clients.calls.count("GetFindings") - pages, 3);
    assert_eq!(clients.calls.total() - before, 3 + 3);
    assert_eq!(clients.calls.count("DescribeHub"), 1, "asked once");
    assert_eq!(
        all_findings(&account).await[0].created_at,
        first_created,
        "CreatedAt kept without reading it back"
    );

    // Everything fixed: 250 resolved in 3 batches.
    let r = securityhub::export(&hub, &scope, &[], &Sweep::All, Utc::now(), &mut known, None)
        .await
        .unwrap();
    assert_eq!((r.active, r.resolved, r.batches), (0, 250, 3));
    assert_eq!(all_findings(&account).await.len(), 250);
    assert!(all_findings(&account)
        .await
        .iter()
        .all(|f| f.record_state == Some(aws_sdk_securityhub::types::RecordState::Archived)));
}

/// The record state of each finding iam-warden exported about `user`.
async fn states_of(account: &Account, user: &str) -> Vec<(String, String)> {
    all_findings(account)
        .await
        .into_iter()
        .filter(|f| {
            f.product_fields
                .as_ref()
                .and_then(|m| m.get("iam-warden/user"))
                .map(String::as_str)
                == Some(user)
        })
        .map(|f| {
            (
                f.generator_id.unwrap_or_default(),
                f.record_state
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// The daemon in dry-run with only the SQS source (queue `url`), resync an hour away and
/// the Security Hub export on.
async fn start_daemon(
    account: &Account,
    url: &str,
    state_dir: &std::path::Path,
) -> support::daemon::Daemon {
    let creds = support::daemon::session(account, "iam-warden").await;
    let mut cmd = support::daemon::run_command(&creds, &account.endpoint);
    cmd.env("IAM_WARDEN_STATE_DIR", state_dir)
        .env("IAM_WARDEN_RESYNC__INTERVAL", "1h")
        .env("IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED", "false")
        .env("IAM_WARDEN_SOURCES__SQS__QUEUE_URL", url)
        .env("IAM_WARDEN_SOURCES__SQS__WAIT_TIME", "1s")
        .env("IAM_WARDEN_EXPORT__SECURITYHUB__ENABLED", "true");
    support::daemon::Daemon::spawn(cmd)
}

/// Security Hub not enabled: the daemon runs on (ready), each export fails with one
/// warning naming the fix, counted as failed; nothing is imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_export_failure_is_counted_and_logged_once() {
    let account = Account::new(shared_moto()).await;
    account.user("frank").await.password("frank").await;
    let sqs = aws_sdk_sqs::Client::new(&account.sdk);
    let url = support::create_queue(&sqs, &format!("iam-warden-{}", account.id), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start_daemon(&account, &url, dir.path()).await;
    d.wait_ready().await;
    let failed = "iam_warden_securityhub_exports_total{outcome=\"failed\"}";
    support::eventually(
        "a failed export counted",
        std::time::Duration::from_secs(30),
        || async { (d.metric(failed).await >= 1.0).then_some(()) },
    )
    .await;
    let warnings: Vec<String> = d
        .log()
        .lines()
        .filter(|l| l.contains("findings not exported to Security Hub"))
        .map(str::to_string)
        .collect();
    assert!(!warnings.is_empty(), "{}", d.log());
    assert!(
        warnings[0].contains("Security Hub is not enabled in account")
            && warnings[0].contains("enable-security-hub"),
        "{}",
        warnings[0]
    );
    assert_eq!(
        d.metric("iam_warden_securityhub_exports_total{outcome=\"exported\"}")
            .await,
        0.0
    );
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
    assert!(all_findings(&account).await.is_empty());
}

/// The daemon (dry-run, SQS source only, resync an hour away) with Security Hub export on:
/// a user made after the first resync is exported by its own reconcile, and resolved by
/// the reconcile after it is fixed; the export is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_exports_after_each_reconcile_and_resolves_fixed_users() {
    use support::{create_queue, eventually};
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

    let account = Account::new(shared_moto()).await;
    enable(&account).await;
    let sqs = aws_sdk_sqs::Client::new(&account.sdk);
    let url = create_queue(&sqs, &format!("iam-warden-{}", account.id), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start_daemon(&account, &url, dir.path()).await;
    d.wait_ready().await;
    let exported = "iam_warden_securityhub_exports_total{outcome=\"exported\"}";
    // The first resync's whole-account export (nothing violating yet).
    eventually("the resync's export", DEADLINE, || async {
        (d.metric(exported).await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(
        d.metric("iam_warden_securityhub_exports_total{outcome=\"failed\"}")
            .await,
        0.0,
        "{}",
        d.log()
    );

    // A console user without MFA, made after the resync: only its reconcile exports it.
    account.user("carol").await.password("carol").await;
    send(
        &sqs,
        &url,
        &support::daemon::iam_event(&account, "CreateLoginProfile", "carol"),
    )
    .await;
    let active = eventually("carol's finding in Security Hub", DEADLINE, || async {
        let s = states_of(&account, "carol").await;
        (!s.is_empty() && s.iter().all(|(_, st)| st == "ACTIVE")).then_some(s)
    })
    .await;
    assert!(
        active
            .iter()
            .any(|(g, _)| g == "iam-warden/console-without-mfa"),
        "{active:?}"
    );

    // Fixed (no console access any more): the next reconcile resolves it.
    account
        .iam
        .delete_login_profile()
        .user_name("carol")
        .send()
        .await
        .unwrap();
    send(
        &sqs,
        &url,
        &support::daemon::iam_event(&account, "DeleteLoginProfile", "carol"),
    )
    .await;
    eventually("carol's finding resolved", DEADLINE, || async {
        let s = states_of(&account, "carol").await;
        let mine: Vec<_> = s
            .iter()
            .filter(|(g, _)| g == "iam-warden/console-without-mfa")
            .collect();
        (!mine.is_empty() && mine.iter().all(|(_, st)| st == "ARCHIVED")).then_some(())
    })
    .await;
    assert!(d.metric(exported).await >= 3.0, "{}", d.log());
    let (code, log) = d.stop().await;
    assert_eq!(code, 0, "{log}");
    // Every export journaled its batches.
    let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap_or_default();
    assert!(
        journal.contains("securityhub_batch_import_findings"),
        "{journal}"
    );
}

async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: &str) {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .unwrap();
}
