//! `plan` / `enforce --once` against a real moto server with the real aws-sdk clients.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use aws_sdk_iam::types::StatusType;
use chrono::Utc;
use iam_warden::app::{self, EnforceOptions};
use iam_warden::apply::{Applier, Outcome};
use iam_warden::baseline::plan::plan_account;
use iam_warden::config::{Config, Mode};
use iam_warden::journal::{Entry, Journal};
use support::{bin, shared_moto, Account, Moto};

const PASSWORD: &str = "Correct-Horse-Battery-9!";

fn enforce_cfg(dir: &Path) -> Config {
    let mut cfg = Config {
        mode: Mode::Enforce,
        state_dir: dir.to_path_buf(),
        ..Default::default()
    };
    cfg.safety.max_users_changed_percent = 100.0;
    cfg.controller.writes_per_second = 100.0;
    cfg.controller.write_burst = 100;
    cfg
}

fn journal(dir: &Path) -> Vec<Entry> {
    let p: PathBuf = dir.join("journal.jsonl");
    if p.exists() {
        Journal::read_all(&p).unwrap()
    } else {
        Vec::new()
    }
}

async fn key_status(acct: &Account, user: &str) -> Vec<(String, String)> {
    acct.access_keys(user).await
}

async fn has_login(acct: &Account, user: &str) -> bool {
    acct.iam
        .get_login_profile()
        .user_name(user)
        .send()
        .await
        .is_ok()
}

async fn groups_of(acct: &Account, user: &str) -> Vec<String> {
    let out = acct
        .iam
        .list_groups_for_user()
        .user_name(user)
        .send()
        .await
        .unwrap();
    out.groups()
        .iter()
        .map(|g| g.group_name().to_string())
        .collect()
}

/// Sign one request with the given access key, which moto records as the key's last use.
async fn use_key(acct: &Account, key_id: &str, secret: &str) {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&acct.endpoint)
        .credentials_provider(aws_credential_types::Credentials::from_keys(
            key_id, secret, None,
        ))
        .load()
        .await;
    aws_sdk_iam::Client::new(&sdk)
        .list_users()
        .send()
        .await
        .unwrap();
}

async fn key_with_secret(acct: &Account, user: &str) -> (String, String) {
    let out = acct
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_brings_the_account_onto_the_baseline_and_a_second_pass_writes_nothing() {
    let moto = Moto::start(true);
    let acct = Account::new(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = enforce_cfg(dir.path());
    cfg.exemptions.users = vec!["break-glass".into()];
    // The baseline without key rotation ("busy" has an old key in use, which rotation
    // would rotate; tests/rotation.rs covers that).
    cfg.rotation.enabled = false;

    // 100 days ago.
    moto.set_clock_offset("-100d");
    acct.user("idle-key").await;
    let idle = acct.key("idle-key").await;
    acct.user("dead-key").await;
    let dead = acct.key("dead-key").await;
    acct.iam
        .update_access_key()
        .user_name("dead-key")
        .access_key_id(&dead)
        .status(StatusType::Inactive)
        .send()
        .await
        .unwrap();
    acct.user("stale-console")
        .await
        .password("stale-console")
        .await
        .mfa("stale-console")
        .await;
    acct.user("break-glass").await.password("break-glass").await;
    let bg_key = acct.key("break-glass").await;
    acct.user("busy").await;
    let (busy, busy_secret) = key_with_secret(&acct, "busy").await;
    moto.set_clock_offset("-10d");
    use_key(&acct, &busy, &busy_secret).await; // used 10 days ago: stays
    moto.set_clock_offset("+0d");

    acct.user("bob")
        .await
        .password("bob")
        .await
        .mfa("bob")
        .await;
    acct.user_at("prog", "/svc/", &[("iam-warden/access", "programmatic")])
        .await;
    acct.password("prog").await;
    let prog_key = acct.key("prog").await;
    acct.user_at("tagged-exempt", "/", &[("iam-warden/exempt", "true")])
        .await;
    acct.password("tagged-exempt").await;

    let clients = acct.clients();
    let report = app::enforce(&cfg, &clients, &EnforceOptions::default())
        .await
        .unwrap();
    assert!(!report.breaker.tripped);
    assert_eq!(report.failed(), 0, "{}", report.to_text());
    let applied: Vec<(Option<String>, &str)> = report
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Applied)
        .map(|r| {
            (
                r.planned.action.user().map(str::to_string),
                r.planned.action.name(),
            )
        })
        .collect();
    let want: Vec<(Option<String>, &str)> = vec![
        (None, "create_policy"),
        (None, "create_group"),
        (None, "attach_group_policy"),
        (None, "update_password_policy"),
        (Some("bob".into()), "add_user_to_group"),
        (Some("dead-key".into()), "tag_user"),
        (Some("idle-key".into()), "deactivate_access_key"),
        (Some("prog".into()), "delete_login_profile"),
        (Some("stale-console".into()), "add_user_to_group"),
        (Some("stale-console".into()), "delete_login_profile"),
    ];
    assert_eq!(applied, want, "{}", report.to_text());

    // The account as AWS now has it.
    assert_eq!(
        key_status(&acct, "idle-key").await,
        vec![(idle.clone(), "Inactive".to_string())]
    );
    assert_eq!(
        key_status(&acct, "dead-key").await,
        vec![(dead.clone(), "Inactive".to_string())],
        "marked, not deleted yet"
    );
    for (u, k) in [("idle-key", &idle), ("dead-key", &dead)] {
        let tags = acct.iam.list_user_tags().user_name(u).send().await.unwrap();
        let tag = tags
            .tags()
            .iter()
            .find(|t| t.key() == format!("iam-warden/inactive-since/{k}"))
            .unwrap_or_else(|| panic!("{u} has no inactive-since tag"));
        assert!(
            tag.value().starts_with("since=") && tag.value().contains(" created="),
            "{}",
            tag.value()
        );
    }
    assert_eq!(
        key_status(&acct, "busy").await,
        vec![(busy, "Active".to_string())]
    );
    assert_eq!(
        key_status(&acct, "prog").await,
        vec![(prog_key, "Active".to_string())]
    );
    assert!(!has_login(&acct, "prog").await);
    assert!(!has_login(&acct, "stale-console").await);
    assert!(has_login(&acct, "bob").await);
    assert_eq!(
        groups_of(&acct, "bob").await,
        vec!["iam-warden-require-mfa"]
    );
    let pp = acct.iam.get_account_password_policy().send().await.unwrap();
    let pp = pp.password_policy().unwrap();
    assert_eq!(pp.minimum_password_length(), Some(14));
    assert_eq!(pp.password_reuse_prevention(), Some(24));
    assert!(pp.require_symbols());
    // Exempt users are untouched.
    assert!(has_login(&acct, "break-glass").await && has_login(&acct, "tagged-exempt").await);
    assert_eq!(
        key_status(&acct, "break-glass").await,
        vec![(bg_key, "Active".to_string())]
    );
    assert!(groups_of(&acct, "break-glass").await.is_empty());
    assert!(groups_of(&acct, "tagged-exempt").await.is_empty());

    // Every write is journaled, no secret anywhere in the journal.
    let j = journal(dir.path());
    assert_eq!(
        j.len(),
        want.len() + 1,
        "the tag written after the deactivation is journaled too: {j:?}"
    );
    assert!(j
        .iter()
        .all(|e| e.outcome == "applied" && e.mode == "enforce" && e.account == acct.id));
    assert!(j
        .iter()
        .any(|e| e.action == "deactivate_access_key" && e.target.starts_with("access key 1")));
    let raw = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
    assert!(!raw.contains(PASSWORD) && !raw.contains(&busy_secret));

    // Idempotent: the second pass makes zero write calls, in a handful of calls.
    let clients2 = acct.clients();
    let second = app::enforce(&cfg, &clients2, &EnforceOptions::default())
        .await
        .unwrap();
    assert!(second.plan.is_empty(), "{}", second.to_text());
    assert_eq!(
        clients2.calls.writes(),
        0,
        "{:?}",
        clients2.calls.by_operation()
    );
    assert!(
        clients2.calls.total() <= 10,
        "{:?}",
        clients2.calls.by_operation()
    );
    assert_eq!(journal(dir.path()).len(), want.len() + 1);

    // 31 days later the inactive keys go (and their tags with them); nothing else changes.
    let later = EnforceOptions {
        at: Some(Utc::now() + chrono::Duration::days(31)),
        ..Default::default()
    };
    let third = app::enforce(&cfg, &acct.clients(), &later).await.unwrap();
    let done: Vec<_> = third
        .results
        .iter()
        .map(|r| {
            (
                r.planned.action.user().unwrap_or_default().to_string(),
                r.planned.action.name(),
                r.outcome.clone(),
            )
        })
        .collect();
    assert_eq!(
        done,
        vec![
            (
                "dead-key".to_string(),
                "delete_access_key",
                Outcome::Applied
            ),
            (
                "idle-key".to_string(),
                "delete_access_key",
                Outcome::Applied
            )
        ],
        "{}",
        third.to_text()
    );
    assert_eq!(key_status(&acct, "idle-key").await, vec![]);
    assert_eq!(key_status(&acct, "dead-key").await, vec![]);
    let tags = acct
        .iam
        .list_user_tags()
        .user_name("idle-key")
        .send()
        .await
        .unwrap();
    assert!(tags.tags().is_empty(), "{:?}", tags.tags());
    // Removing each deleted key's tag is a write of its own, journaled after the delete.
    let untags: Vec<(String, String)> = journal(dir.path())
        .into_iter()
        .filter(|e| e.action == "untag_user" && e.outcome == "applied")
        .map(|e| (e.user.unwrap_or_default(), e.target))
        .collect();
    assert_eq!(untags.len(), 2, "{untags:?}");
    for (user, target) in &untags {
        assert!(
            ["dead-key", "idle-key"].contains(&user.as_str())
                && target.starts_with("iam-warden/inactive-since/"),
            "{untags:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_and_journals_would_be_writes() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = enforce_cfg(dir.path());
    cfg.mode = Mode::DryRun;
    acct.user("bob").await.password("bob").await;
    acct.user_at("prog", "/", &[("iam-warden/access", "programmatic")])
        .await;
    acct.password("prog").await;
    let clients = acct.clients();
    let report = app::enforce(&cfg, &clients, &EnforceOptions::default())
        .await
        .unwrap();
    assert_eq!(
        clients.calls.writes(),
        0,
        "{:?}",
        clients.calls.by_operation()
    );
    assert!(report.results.iter().all(|r| r.outcome == Outcome::DryRun));
    assert_eq!(report.exit_code(), 1, "changes pending");
    assert!(report.to_text().contains("dry-run: nothing was changed"));
    let j = journal(dir.path());
    assert_eq!(j.len(), report.plan.action_count());
    assert!(j
        .iter()
        .all(|e| e.outcome == "dry_run" && e.mode == "dry-run"));
    assert!(has_login(&acct, "prog").await);
    assert!(groups_of(&acct, "bob").await.is_empty());
    // `plan` neither writes nor journals.
    let before = journal(dir.path()).len();
    let plan = app::enforce(
        &cfg,
        &clients,
        &EnforceOptions {
            plan_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(plan.plan.action_count(), report.plan.action_count());
    assert_eq!(journal(dir.path()).len(), before);
    assert_eq!(clients.calls.writes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blast_radius_breaker_trips_and_can_be_overridden() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = enforce_cfg(dir.path());
    cfg.safety.max_users_changed = 5;
    // The baseline exists first (account-level changes never count).
    app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    let before = journal(dir.path()).len();
    // Console users without MFA: the MFA policy takes access away from them.
    for i in 0..8 {
        let u = format!("human-{i}");
        acct.user(&u).await.password(&u).await;
    }
    // Two hours on they are existing users, no longer within safety.new_user_grace.
    let later = EnforceOptions {
        at: Some(Utc::now() + chrono::Duration::hours(2)),
        ..Default::default()
    };
    let clients = acct.clients();
    let report = app::enforce(&cfg, &clients, &later).await.unwrap();
    assert!(report.breaker.tripped && !report.breaker.overridden);
    assert_eq!(report.breaker.users_changed, 8);
    assert_eq!(report.breaker.users_losing_access, 8);
    assert_eq!(report.exit_code(), 3);
    assert!(report.results.is_empty());
    assert_eq!(
        clients.calls.writes(),
        0,
        "nothing applied: {:?}",
        clients.calls.by_operation()
    );
    assert!(report
        .to_text()
        .contains("8 users would lose access (8 of 8 users; the limit is 5 users"));
    let j = journal(dir.path());
    assert_eq!(j.len(), before + 1);
    assert_eq!(j[before].action, "breaker");

    // The percentage limit trips on its own too.
    let mut pct = cfg.clone();
    pct.safety.max_users_changed = 100;
    pct.safety.max_users_changed_percent = 50.0;
    let r = app::enforce(
        &pct,
        &acct.clients(),
        &EnforceOptions {
            plan_only: true,
            ..later.clone()
        },
    )
    .await
    .unwrap();
    assert!(r.breaker.tripped);

    // Confirmed: applied.
    let report = app::enforce(
        &cfg,
        &acct.clients(),
        &EnforceOptions {
            confirm_large_change: true,
            ..later.clone()
        },
    )
    .await
    .unwrap();
    assert!(report.breaker.overridden);
    assert_eq!(report.exit_code(), 0);
    for i in 0..8 {
        assert_eq!(
            groups_of(&acct, &format!("human-{i}")).await,
            vec!["iam-warden-require-mfa"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_or_detached_baseline_is_repaired() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = enforce_cfg(dir.path());
    cfg.baseline.source_ip_policy.enabled = true;
    cfg.baseline.source_ip_policy.allowed_cidrs =
        vec!["192.0.2.0/24".into(), "2001:db8::/32".into()];
    acct.user("alice")
        .await
        .password("alice")
        .await
        .mfa("alice")
        .await;
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    assert_eq!(r.failed(), 0, "{}", r.to_text());
    let mut g = groups_of(&acct, "alice").await;
    g.sort();
    assert_eq!(g, vec!["iam-warden-require-mfa", "iam-warden-source-ip"]);
    let snap = iam_warden::inventory::read_account(&acct.clients())
        .await
        .unwrap();
    let mfa_arn = snap.policies["iam-warden-require-mfa"].arn.clone();
    let sip_arn = snap.policies["iam-warden-source-ip"].arn.clone();
    assert!(mfa_arn.contains(":policy/iam-warden/"), "{mfa_arn}");

    // Someone weakens the MFA policy (4 times: 5 versions in all), detaches the
    // source-IP policy from its group and takes alice out of the MFA group.
    for i in 0..4 {
        let weak = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:Get{i}","Resource":"*"}}]}}"#
        );
        acct.iam
            .create_policy_version()
            .policy_arn(&mfa_arn)
            .policy_document(weak)
            .set_as_default(true)
            .send()
            .await
            .unwrap();
    }
    acct.iam
        .detach_group_policy()
        .group_name("iam-warden-source-ip")
        .policy_arn(&sip_arn)
        .send()
        .await
        .unwrap();
    acct.iam
        .remove_user_from_group()
        .group_name("iam-warden-require-mfa")
        .user_name("alice")
        .send()
        .await
        .unwrap();

    let clients = acct.clients();
    let r = app::enforce(&cfg, &clients, &EnforceOptions::default())
        .await
        .unwrap();
    assert_eq!(r.failed(), 0, "{}", r.to_text());
    let names: Vec<_> = r.results.iter().map(|x| x.planned.action.name()).collect();
    assert_eq!(
        names,
        vec![
            "create_policy_version",
            "attach_group_policy",
            "add_user_to_group"
        ]
    );
    assert_eq!(
        clients.calls.count("DeletePolicyVersion"),
        1,
        "oldest non-default version deleted first"
    );
    let versions = acct
        .iam
        .list_policy_versions()
        .policy_arn(&mfa_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 5);
    assert!(
        !versions
            .versions()
            .iter()
            .any(|v| v.version_id() == Some("v1")),
        "v1 (oldest, not default) was deleted"
    );
    let snap = iam_warden::inventory::read_account(&acct.clients())
        .await
        .unwrap();
    let doc = snap.policies["iam-warden-require-mfa"]
        .default_document
        .clone()
        .unwrap();
    assert!(iam_warden::baseline::policies::same_meaning(
        &doc,
        &iam_warden::baseline::policies::mfa_document(&cfg.baseline.mfa_policy.allowed_without_mfa)
    ));
    let j = journal(dir.path());
    assert!(j
        .iter()
        .any(|e| e.action == "delete_policy_version" && e.outcome == "applied"));
    // Back on baseline: nothing more to do.
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    assert!(r.plan.is_empty(), "{}", r.to_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_users_and_replaced_or_recently_used_keys_are_skipped() {
    let moto = Moto::start(true);
    let acct = Account::new(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = enforce_cfg(dir.path());
    moto.set_clock_offset("-100d");
    acct.user("gone").await.password("gone").await;
    acct.user("rekeyed").await;
    let old = acct.key("rekeyed").await;
    acct.user("sneaky").await;
    let (sneaky, secret) = key_with_secret(&acct, "sneaky").await;
    moto.set_clock_offset("+0d");

    let clients = acct.clients();
    let snap = iam_warden::inventory::read_account(&clients).await.unwrap();
    let plan = plan_account(&snap, &cfg, Utc::now()).unwrap();
    let names = |u: &str| -> Vec<&str> {
        plan.users
            .iter()
            .find(|p| p.verdict.user == u)
            .unwrap()
            .actions
            .iter()
            .map(|a| a.action.name())
            .collect()
    };
    assert_eq!(
        names("gone"),
        vec!["add_user_to_group", "delete_login_profile"]
    );
    assert_eq!(names("rekeyed"), vec!["deactivate_access_key"]);
    assert_eq!(names("sneaky"), vec!["deactivate_access_key"]);

    // Between plan and apply: "gone" is deleted, "rekeyed" swaps its key, "sneaky" uses its key.
    acct.iam
        .delete_login_profile()
        .user_name("gone")
        .send()
        .await
        .unwrap();
    acct.iam
        .delete_user()
        .user_name("gone")
        .send()
        .await
        .unwrap();
    acct.iam
        .delete_access_key()
        .user_name("rekeyed")
        .access_key_id(&old)
        .send()
        .await
        .unwrap();
    let new = acct.key("rekeyed").await;
    use_key(&acct, &sneaky, &secret).await;

    let applier = Applier::new(
        clients.clone(),
        &cfg,
        Arc::new(Journal::open(&dir.path().join("journal.jsonl")).unwrap()),
        None,
        &snap,
    );
    for u in &plan.users {
        for r in applier.apply_all(&snap, &u.actions, Utc::now()).await {
            match &r.outcome {
                Outcome::Skipped(why) => eprintln!("{}: skipped: {why}", u.verdict.user),
                other => panic!(
                    "{} {}: expected a skip, got {other:?}",
                    u.verdict.user,
                    r.planned.action.name()
                ),
            }
        }
    }
    assert_eq!(
        key_status(&acct, "rekeyed").await,
        vec![(new, "Active".to_string())],
        "the new key is never touched"
    );
    assert_eq!(
        key_status(&acct, "sneaky").await,
        vec![(sneaky, "Active".to_string())],
        "a key used just now is never deactivated"
    );
    let j = journal(dir.path());
    assert!(j.iter().all(|e| e.outcome == "skipped"), "{j:?}");
    assert!(j.iter().any(|e| e.user.as_deref() == Some("sneaky")
        && e.error
            .as_deref()
            .unwrap_or_default()
            .contains("was used 0 days ago")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_reached_is_a_finding_and_attach_user_mode_works() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = enforce_cfg(dir.path());
    acct.user("joiner")
        .await
        .password("joiner")
        .await
        .mfa("joiner")
        .await;
    for i in 0..10 {
        let g = format!("team-{i}");
        acct.group(&g).await.add_to_group("joiner", &g).await;
    }
    acct.user("direct")
        .await
        .password("direct")
        .await
        .mfa("direct")
        .await;
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    assert_eq!(r.failed(), 0, "{}", r.to_text());
    let joiner = r
        .plan
        .users
        .iter()
        .find(|u| u.verdict.user == "joiner")
        .unwrap();
    assert!(joiner.actions.is_empty());
    assert!(joiner
        .verdict
        .findings
        .iter()
        .any(|f| f.check.id() == "quota-reached"));
    assert!(r.to_text().contains("findings that need a person"));

    cfg.baseline.attach = iam_warden::config::Attach::User;
    cfg.exemptions.users = vec!["joiner".into()];
    acct.iam
        .remove_user_from_group()
        .group_name("iam-warden-require-mfa")
        .user_name("direct")
        .send()
        .await
        .unwrap();
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    assert_eq!(
        r.results
            .iter()
            .map(|x| x.planned.action.name())
            .collect::<Vec<_>>(),
        vec!["attach_user_policy"]
    );
    let att = acct
        .iam
        .list_attached_user_policies()
        .user_name("direct")
        .send()
        .await
        .unwrap();
    assert_eq!(
        att.attached_policies()[0].policy_name(),
        Some("iam-warden-require-mfa")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_users_keys_are_deactivated_when_configured() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = enforce_cfg(dir.path());
    cfg.baseline.credentials.deactivate_keys_of_console_users = true;
    acct.user_at("carol", "/", &[("iam-warden/access", "console")])
        .await;
    acct.password("carol").await.mfa("carol").await;
    let k = acct.key("carol").await;
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    assert_eq!(r.failed(), 0, "{}", r.to_text());
    assert_eq!(
        key_status(&acct, "carol").await,
        vec![(k, "Inactive".to_string())]
    );
    assert!(has_login(&acct, "carol").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_enforce_once_modes_and_exit_codes() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    // A console user without MFA: the MFA policy takes access away, so bob counts toward
    // the breaker (with new_user_grace 0s, as an existing user).
    acct.user("bob").await.password("bob").await;
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env_clear()
            .env("IAM_WARDEN_STATE_DIR", dir.path())
            .env("IAM_WARDEN_SAFETY__NEW_USER_GRACE", "0s");
        for (k, v) in acct.env() {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["enforce"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--once"), "{err}");
    // Default mode is dry-run: says so, changes nothing. 1 user of 1 trips the 10% breaker.
    let (code, out, _) = run(&["enforce", "--once"], &[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("BLAST-RADIUS BREAKER TRIPPED"), "{out}");
    let (code, out, _) = run(&["enforce", "--once", "--confirm-large-change"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("dry-run: nothing was changed"), "{out}");
    assert!(groups_of(&acct, "bob").await.is_empty());
    let (code, out, _) = run(
        &["plan", "--output", "json"],
        &[("IAM_WARDEN_SAFETY__MAX_USERS_CHANGED_PERCENT", "100")],
    );
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["plan"]["users"][0]["actions"][0]["action"],
        "add_user_to_group"
    );
    // enforce mode writes.
    let (code, out, err) = run(
        &["enforce", "--once", "--confirm-large-change"],
        &[("IAM_WARDEN_MODE", "enforce")],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        groups_of(&acct, "bob").await,
        vec!["iam-warden-require-mfa"]
    );
    let (code, out, _) = run(&["plan"], &[]);
    assert_eq!(code, 0, "nothing left to change: {out}");
}

/// Issue 9: the breaker counts users losing access, not users changed. 30 existing
/// programmatic users with console passwords (which the baseline removes) trip it with
/// the default limits: exit 3, none of them changed, while a user whose change takes
/// nothing away (joining the MFA group with an MFA device) is still applied. The same 30
/// as new users (within safety.new_user_grace) do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_users_losing_console_access_trip_the_breaker_but_new_users_do_not() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        mode: Mode::Enforce,
        state_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    cfg.controller.writes_per_second = 100.0;
    cfg.controller.write_burst = 100;
    assert_eq!(cfg.safety, iam_warden::config::Safety::default());
    // The baseline exists first (account-level changes never count).
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    assert_eq!(r.exit_code(), 0, "{}", r.to_text());
    for i in 0..30 {
        let u = format!("svc-{i}");
        acct.user_at(&u, "/", &[("iam-warden/access", "programmatic")])
            .await;
        acct.password(&u).await;
    }
    acct.user("alice")
        .await
        .password("alice")
        .await
        .mfa("alice")
        .await;

    // Right now they are new users: not counted.
    let plan_now = app::enforce(
        &cfg,
        &acct.clients(),
        &EnforceOptions {
            plan_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!plan_now.breaker.tripped, "{}", plan_now.to_text());
    assert_eq!(
        (
            plan_now.breaker.users_losing_access,
            plan_now.breaker.users_changed
        ),
        (0, 31)
    );
    let text = plan_now.to_text();
    assert!(
        text.contains("(new user (created ") && text.contains(" ago): not counted by the breaker"),
        "{text}"
    );

    // Two hours later they are existing users losing console access: 30 > 25 users.
    let before = journal(dir.path()).len();
    let clients = acct.clients();
    let later = EnforceOptions {
        at: Some(Utc::now() + chrono::Duration::hours(2)),
        ..Default::default()
    };
    let r = app::enforce(&cfg, &clients, &later).await.unwrap();
    let text = r.to_text();
    assert!(r.breaker.tripped && r.breaker.blocks(), "{text}");
    assert_eq!(r.breaker.users_losing_access, 30);
    assert_eq!(r.breaker.users_total, 31);
    assert_eq!(r.exit_code(), 3);
    // Only alice's additive change is applied.
    let applied: Vec<(Option<&str>, &str)> = r
        .results
        .iter()
        .map(|x| (x.planned.action.user(), x.planned.action.name()))
        .collect();
    assert_eq!(
        applied,
        vec![(Some("alice"), "add_user_to_group")],
        "{text}"
    );
    assert_eq!(
        clients.calls.by_operation().get("DeleteLoginProfile"),
        None,
        "{:?}",
        clients.calls.by_operation()
    );
    assert_eq!(
        clients.calls.writes(),
        1,
        "{:?}",
        clients.calls.by_operation()
    );
    for i in 0..30 {
        assert!(has_login(&acct, &format!("svc-{i}")).await, "svc-{i}");
    }
    assert_eq!(
        groups_of(&acct, "alice").await,
        vec!["iam-warden-require-mfa"]
    );
    assert!(
        text.contains("30 users would lose access (30 of 31 users; the limit is 25 users or 10%)"),
        "{text}"
    );
    assert!(
        text.contains("counts toward the breaker: removes the console password"),
        "{text}"
    );
    assert!(text.contains("-> not applied: breaker tripped"), "{text}");
    let j = journal(dir.path());
    let new: Vec<(&str, &str)> = j[before..]
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        new,
        vec![("breaker", "skipped"), ("add_user_to_group", "applied")]
    );
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["breaker"]["users_losing_access"], 30);
    let svc = v["plan"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["verdict"]["user"] == "svc-0")
        .unwrap();
    assert_eq!(svc["breaker"]["counts"], true);
    assert_eq!(
        svc["breaker"]["reduces"],
        serde_json::json!(["removes_console_password"])
    );
}

/// Password expiry (IAM_WARDEN_TEST_CLOCK 100 days ahead, max_age_days 90): a console
/// user's password is made to reset at the next sign-in, the reset is journaled and
/// recorded in the `iam-warden/password-reset` tag; a second pass does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_password_must_be_reset_once() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    acct.user("old-pw").await.password("old-pw").await;
    let at = Utc::now() + chrono::Duration::days(100);
    let run = |args: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env_clear()
            .env("IAM_WARDEN_STATE_DIR", dir.path())
            .env("IAM_WARDEN_MODE", "enforce")
            .env("IAM_WARDEN_TEST_CLOCK", at.to_rfc3339())
            // The password was never used: keep it (otherwise it is removed as unused).
            .env("IAM_WARDEN_BASELINE__CREDENTIALS__REVOKE_UNUSED", "false");
        for (k, v) in acct.env() {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let login = || async {
        acct.iam
            .get_login_profile()
            .user_name("old-pw")
            .send()
            .await
            .unwrap()
            .login_profile()
            .map(|p| p.password_reset_required())
    };
    assert_eq!(login().await, Some(false));
    let (code, out, err) = run(&["enforce", "--once", "--confirm-large-change"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        login().await,
        Some(true),
        "the login profile requires a reset"
    );
    let resets = |j: &[Entry]| {
        j.iter()
            .filter(|e| e.action == "require_password_reset")
            .map(|e| e.outcome.clone())
            .collect::<Vec<_>>()
    };
    let j = journal(dir.path());
    assert_eq!(resets(&j), vec!["applied"]);
    let r = j
        .iter()
        .find(|e| e.action == "require_password_reset" && e.outcome == "applied")
        .unwrap();
    assert_eq!(r.user.as_deref(), Some("old-pw"));
    assert!(r.reason.contains("100 days old"), "{}", r.reason);
    let tags = acct
        .iam
        .list_user_tags()
        .user_name("old-pw")
        .send()
        .await
        .unwrap();
    let tag = tags
        .tags()
        .iter()
        .find(|t| t.key() == "iam-warden/password-reset")
        .map(|t| t.value().to_string())
        .expect("password-reset tag");
    assert!(tag.starts_with("changed=") && tag.contains(" at="), "{tag}");
    assert!(tag.contains(&at.format("at=%Y-%m-%d").to_string()), "{tag}");

    // A second pass: nothing left to do, no second reset.
    let (code, out, err) = run(&["enforce", "--once", "--confirm-large-change"]);
    assert_eq!(code, 0, "{out}{err}");
    let j = journal(dir.path());
    assert_eq!(resets(&j), vec!["applied"], "no second reset");
    // The owner was told once (journal only: no channel is configured).
    let notices: Vec<_> = j
        .iter()
        .filter(|e| e.action == "notify")
        .map(|e| (e.target.as_str(), e.user.as_deref(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        notices,
        vec![("password-reset-required", Some("old-pw"), "applied")]
    );
    let (code, out, _) = run(&["plan", "--at", &at.to_rfc3339()]);
    assert_eq!(code, 0, "nothing planned: {out}");
}
