//! Findings exported to Security Hub on moto (real SDK clients): the round trip (created
//! ACTIVE with the CIS requirement, re-export without duplicates, resolved when fixed),
//! the error when Security Hub is not enabled, batches of 100 and the calls they take, and
//! the daemon's exports (after a user's reconcile; a failed export counted and logged).

use crate::support;

use chrono::{SubsecRound, Utc};
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

    // Again: nothing changed, so nothing is sent; nothing duplicated, the first sighting kept.
    let before = found.len();
    let again = iam_warden::app::audit::export_to_securityhub(&cfg, &clients, &report)
        .await
        .unwrap();
    assert_eq!((again.active, again.resolved), (sent.active, 0));
    assert_eq!(
        (again.unchanged, again.batches),
        (sent.active, 0),
        "{again:?}"
    );
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

    // One journal line per batch, with the counts: the first export's and the resolving
    // one's (the unchanged re-exports sent nothing).
    let lines: Vec<_> = Journal::read_all(&cfg.journal_path())
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "securityhub_batch_import_findings")
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|e| e.outcome == "applied"));
    assert!(
        lines[1]
            .reason
            .contains("1 findings (0 active, 1 resolved)"),
        "{}",
        lines[1].reason
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
    let before = clients.calls.total();
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
    assert_eq!(
        (
            clients.calls.total() - before,
            clients.calls.count("GetFindings")
        ),
        (1, 1),
        "one GetFindings, which answers it: no DescribeHub"
    );
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

    let mut known = Known::default();

    // Cold (the CLI; the daemon's first export): read back first (one empty page), then send.
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
    assert_eq!(clients.calls.total(), 1 + 3);
    assert_eq!(all_findings(&account).await.len(), 250);
    assert_eq!(known.len(), 250);
    let first_created = all_findings(&account).await[0].created_at.clone();
    let first_updated = all_findings(&account).await[0].updated_at.clone();

    // The daemon's next resync, nothing changed: read back (3 pages), nothing imported
    // again (each import is a finding ingestion event and an EventBridge event).
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
    assert_eq!(
        (r.active, r.resolved, r.batches, r.unchanged),
        (250, 0, 0, 250)
    );
    assert_eq!(clients.calls.count("BatchImportFindings") - imports, 0);
    assert_eq!(clients.calls.count("GetFindings") - pages, 3);
    assert_eq!(clients.calls.total() - before, 3);
    assert_eq!(clients.calls.count("DescribeHub"), 0, "never asked");
    let now = all_findings(&account).await;
    assert_eq!(now[0].created_at, first_created);
    assert_eq!(now[0].updated_at, first_updated, "not imported again");

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

/// 250 console users without MFA, one finding each; `reason` of user `i`.
fn console_findings(
    scope: &Scope,
    n: usize,
    reason: impl Fn(usize) -> String,
) -> Vec<export::ExportFinding> {
    let verdicts: Vec<UserVerdict> = (0..n)
        .map(|i| UserVerdict {
            user: format!("user-{i:03}"),
            class: AccessClass::Console,
            class_source: ClassSource::Derived,
            exempt: None,
            findings: vec![Finding::new(Check::ConsoleWithoutMfa, reason(i))],
            notes: vec![],
        })
        .collect();
    export::collect(scope, &[], verdicts.iter().map(|v| (v, None)))
}

/// Read first (as `audit --export` does every time) sends only what changed, on moto with
/// the call counter: 250 findings first 1 + 3 calls; unchanged 3 + 0; one changed 3 + 1;
/// one gone 3 + 1 (resolved); refreshes only when due (30 to 60 days after the last
/// update, spread by id), filling the batches they need. moto ignores GetFindings' filters
/// and returns every finding in 3 pages; for one account's own findings AWS returns as many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_first_sends_only_new_changed_gone_and_due_findings() {
    use aws_sdk_securityhub::types::RecordState;
    let account = Account::new(shared_moto()).await;
    enable(&account).await;
    let scope = Scope {
        account_id: account.id.clone(),
        partition: "aws".into(),
        region: "us-east-1".into(),
    };
    let clients = account.clients();
    let hub = clients.securityhub_in("us-east-1");
    let calls = |c: &iam_warden::aws::Clients| {
        (
            c.calls.count("GetFindings"),
            c.calls.count("BatchImportFindings"),
            c.calls.total(),
        )
    };
    // One `audit --export`: nothing kept between runs. Its (pages, imports) and report.
    let run = |findings: Vec<export::ExportFinding>, now: chrono::DateTime<Utc>| {
        let (hub, scope, clients) = (hub.clone(), scope.clone(), clients.clone());
        async move {
            let (p0, i0, t0) = calls(&clients);
            let r = securityhub::export(
                &hub,
                &scope,
                &findings,
                &Sweep::All,
                now,
                &mut Known::default(),
                None,
            )
            .await
            .unwrap();
            let (p1, i1, t1) = calls(&clients);
            assert_eq!(
                t1 - t0,
                (p1 - p0) + (i1 - i0),
                "no other call (no DescribeHub)"
            );
            assert_eq!(r.batches as u64, i1 - i0);
            assert_eq!(r.failed, 0, "{r:?}");
            ((p1 - p0, i1 - i0), r)
        }
    };
    let by_id = |all: Vec<aws_sdk_securityhub::types::AwsSecurityFinding>| {
        all.into_iter()
            .filter_map(|f| Some((f.id.clone()?, f)))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let id_of = |i: usize| {
        format!(
            "iam-warden/{}/console-without-mfa/arn:aws:iam::{}:user/user-{i:03}",
            account.id, account.id
        )
    };
    let t0 = Utc::now();
    let same = |_| "has a console password and no MFA device".to_string();

    // First export: one empty page, 3 imports.
    let (n, r) = run(console_findings(&scope, 250, same), t0).await;
    assert_eq!(n, (1, 3));
    assert_eq!(
        (r.active, r.unchanged, r.refreshed, r.resolved),
        (250, 0, 0, 0)
    );
    let first = by_id(all_findings(&account).await);
    assert_eq!(first.len(), 250);

    // Unchanged: 3 pages, nothing sent (UpdatedAt stays the first export's).
    let (n, r) = run(
        console_findings(&scope, 250, same),
        t0 + chrono::Duration::hours(1),
    )
    .await;
    assert_eq!(n, (3, 0));
    assert_eq!(
        (r.active, r.unchanged, r.refreshed, r.resolved),
        (250, 250, 0, 0)
    );
    assert_eq!(by_id(all_findings(&account).await), first);

    // One changed: that one sent, in 1 import; its CreatedAt kept.
    let changed = |i: usize| match i {
        7 => "has a console password and no MFA device (changed)".to_string(),
        _ => same(i),
    };
    let (n, r) = run(
        console_findings(&scope, 250, changed),
        t0 + chrono::Duration::hours(2),
    )
    .await;
    assert_eq!(n, (3, 1));
    assert_eq!(
        (r.active, r.unchanged, r.refreshed, r.resolved),
        (250, 249, 0, 0)
    );
    let now = by_id(all_findings(&account).await);
    let f7 = &now[&id_of(7)];
    assert_eq!(
        f7.description.as_deref(),
        Some("has a console password and no MFA device (changed)")
    );
    assert_eq!(f7.created_at, first[&id_of(7)].created_at);
    assert_ne!(f7.updated_at, first[&id_of(7)].updated_at);
    assert_eq!(now[&id_of(6)], first[&id_of(6)], "the others untouched");

    // One gone (user-249): resolved in 1 import, nothing else sent.
    let (n, r) = run(
        console_findings(&scope, 249, changed),
        t0 + chrono::Duration::hours(3),
    )
    .await;
    assert_eq!(n, (3, 1));
    assert_eq!(
        (r.active, r.unchanged, r.refreshed, r.resolved),
        (249, 249, 0, 1)
    );
    let now = by_id(all_findings(&account).await);
    assert_eq!(now.len(), 250, "resolved in place");
    assert_eq!(now[&id_of(249)].record_state, Some(RecordState::Archived));
    assert_eq!(
        now.values()
            .filter(|f| f.record_state == Some(RecordState::Active))
            .count(),
        249
    );

    // 29 days on: no refresh due yet.
    let (n, r) = run(
        console_findings(&scope, 249, changed),
        t0 + chrono::Duration::days(29),
    )
    .await;
    assert_eq!(n, (3, 0));
    assert_eq!(r.refreshed, 0);

    // 45 days on: the findings whose refresh age (30 days plus their spread) has passed
    // are due; their batches are filled up with the other unchanged ones (all older than
    // 30 days), oldest first.
    let at = t0 + chrono::Duration::days(45);
    let due = now
        .values()
        .filter(|f| f.record_state == Some(RecordState::Active))
        .filter(|f| {
            let updated = chrono::DateTime::parse_from_rfc3339(f.updated_at.as_deref().unwrap())
                .unwrap()
                .with_timezone(&Utc);
            at.trunc_subsecs(3) - updated >= securityhub::refresh_age(f.id.as_deref().unwrap())
        })
        .count();
    assert!(
        due > 0 && due < 249,
        "{due} due of 249 (spread over 30 days)"
    );
    let imports = due.div_ceil(100);
    let (n, r) = run(console_findings(&scope, 249, changed), at).await;
    assert_eq!(n, (3, imports as u64), "{due} due");
    assert_eq!(r.refreshed, (imports * 100).min(249), "{r:?}");
    assert_eq!(r.unchanged, 249 - r.refreshed);
    let refreshed = by_id(all_findings(&account).await);
    assert_eq!(
        refreshed
            .values()
            .filter(|f| f.updated_at.as_deref()
                == Some(iam_warden::export::asff::timestamp(at.trunc_subsecs(3)).as_str()))
            .count(),
        r.refreshed
    );
    assert!(
        refreshed
            .iter()
            .all(|(id, f)| f.created_at == first[id].created_at),
        "CreatedAt kept through refreshes"
    );
    // The same moment again: nothing due any more.
    let (n, _) = run(console_findings(&scope, 249, changed), at).await;
    assert_eq!(n, (3, 0));

    // 130 days on: every active finding due (the youngest were refreshed 85 days ago), all
    // sent in 3 imports.
    let (n, r) = run(
        console_findings(&scope, 249, changed),
        t0 + chrono::Duration::days(130),
    )
    .await;
    assert_eq!(n, (3, 3));
    assert_eq!((r.refreshed, r.unchanged), (249, 0));
    assert_eq!(all_findings(&account).await.len(), 250, "never duplicated");
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
    // Nothing was imported (enabled now only to read: AWS refuses GetFindings before).
    enable(&account).await;
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
