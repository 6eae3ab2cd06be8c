//! The CIS AWS Foundations v5.0 section 1 account checks against a real moto server with
//! the real aws-sdk clients. This binary's moto loads the AWS managed policies
//! (`MOTO_IAM_LOAD_MANAGED_POLICIES`), so AWSSupportAccess, AWSCloudShellFullAccess and
//! AdministratorAccess can be attached as on AWS.
//!
//! What moto cannot make is tested on the parsers and the pure checks instead
//! (src/baseline/cis/tests.rs, src/inventory/credential_report.rs): a root access key or
//! root MFA (moto's credential report has no root row: here the root checks must say
//! "cannot check"), an ACTIVE Access Analyzer (moto has no Access Analyzer: "cannot
//! check"), a policy document that is not JSON (moto refuses it).

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;

use chrono::Utc;
use iam_warden::config::Config;
use serde_json::Value;
use support::{bin, Account, Moto};

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start_with(false, &[("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")]))
}

const ADMIN_DOC: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
const NARROW_DOC: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["*"],"Resource":["arn:aws:s3:::*"]},{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}]}"#;
const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

async fn policy(acct: &Account, name: &str, doc: &str) -> String {
    acct.iam
        .create_policy()
        .policy_name(name)
        .policy_document(doc)
        .send()
        .await
        .unwrap()
        .policy()
        .and_then(|p| p.arn())
        .unwrap()
        .to_string()
}

async fn role(acct: &Account, name: &str, policies: &[&str]) {
    acct.iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(TRUST)
        .send()
        .await
        .unwrap();
    for p in policies {
        acct.iam
            .attach_role_policy()
            .role_name(name)
            .policy_arn(*p)
            .send()
            .await
            .unwrap();
    }
}

/// Account findings as (check, resource, cannot_check, reason).
fn account_findings(json: &Value) -> Vec<(String, String, bool, String)> {
    json["account_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_string(),
                f["resource"].as_str().unwrap_or_default().to_string(),
                f["cannot_check"].as_bool().unwrap_or(false),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn aws(name: &str) -> String {
    format!("arn:aws:iam::aws:policy/{name}")
}

/// An account with one thing wrong for each check moto can make.
async fn seeded() -> (Account, String) {
    let acct = Account::new(moto()).await;
    let god = policy(&acct, "god", ADMIN_DOC).await;
    policy(&acct, "narrow", NARROW_DOC).await;
    // 1.15: a customer policy and AdministratorAccess on a role; 1.14: god on alice.
    role(&acct, "ops", &[&god, &aws("AdministratorAccess")]).await;
    acct.user("alice").await.password("alice").await;
    acct.iam
        .attach_user_policy()
        .user_name("alice")
        .policy_arn(&god)
        .send()
        .await
        .unwrap();
    // 1.14: an inline policy.
    acct.user("carol").await;
    acct.key("carol").await;
    acct.iam
        .put_user_policy()
        .user_name("carol")
        .policy_name("inline-read")
        .policy_document(NARROW_DOC)
        .send()
        .await
        .unwrap();
    // 1.21: CloudShell through a group.
    acct.group("devs").await;
    acct.iam
        .attach_group_policy()
        .group_name("devs")
        .policy_arn(aws("AWSCloudShellFullAccess"))
        .send()
        .await
        .unwrap();
    // 1.18: moto stores any body and reports every certificate as expired in 2012.
    acct.iam
        .upload_server_certificate()
        .server_certificate_name("old-tls")
        .certificate_body("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----")
        .private_key("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----")
        .send()
        .await
        .unwrap();
    (acct, god)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_moto_can_make_is_made() {
    let (acct, god) = seeded().await;
    let cfg = Config::default();
    let clients = acct.clients();
    let report = iam_warden::app::audit(&cfg, &clients, Utc::now())
        .await
        .unwrap();
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    let found = account_findings(&json);
    let has = |check: &str, resource: &str, cannot: bool| {
        found
            .iter()
            .find(|f| f.0 == check && f.1 == resource && f.2 == cannot)
            .unwrap_or_else(|| panic!("no {check} on {resource:?} (cannot {cannot}): {found:#?}"))
            .3
            .clone()
    };
    let root = format!("arn:aws:iam::{}:root", acct.id);
    // Root: moto's report has no root row, so every root check says it cannot check.
    for c in [
        "root-access-key",
        "root-without-mfa",
        "root-virtual-mfa",
        "root-used",
    ] {
        assert!(has(c, &root, true).contains("no <root_account> row"));
    }
    // 1.15, naming the principals; the narrow policy (["*"] on some resources, NotAction)
    // is not (moto refuses "arn:*": the pure tests have it).
    let r = has("policy-full-admin", &god, false);
    assert!(
        r.contains("customer-managed policy god") && r.contains("user alice, role ops"),
        "{r}"
    );
    let r = has("policy-full-admin", &aws("AdministratorAccess"), false);
    assert!(r.contains("AWS managed") && r.contains("role ops"), "{r}");
    assert!(
        !found.iter().any(|f| f.1.ends_with(":policy/narrow")),
        "{found:#?}"
    );
    // 1.16: no support role yet.
    assert!(has("no-support-role", &root, false).contains("AWSSupportAccess"));
    // 1.18.
    let cert = format!("arn:aws:iam::{}:server-certificate/old-tls", acct.id);
    assert!(has("server-certificate-expired", &cert, false).contains("old-tls expired 2012-05-08"));
    // 1.19: moto has no Access Analyzer: cannot check, never a pass.
    let aa = format!("arn:aws:access-analyzer:us-east-1:{}:analyzer", acct.id);
    assert!(has("access-analyzer-disabled", &aa, true).contains("ListAnalyzers"));
    // 1.20: alice signs in to the console and there is no identity provider.
    assert!(has("no-identity-federation", &root, false).starts_with("informational"));
    // 1.21.
    let devs = format!("arn:aws:iam::{}:group/devs", acct.id);
    assert!(has("cloudshell-full-access", &devs, false).contains("group devs"));
    // Every account finding names its resource and its CIS control.
    for f in json["account_findings"].as_array().unwrap() {
        if f["check"] != "password-policy-weak" {
            assert!(f["resource"].is_string(), "{f}");
        }
        assert!(
            f["cis_controls"].as_array().is_some_and(|a| !a.is_empty()),
            "{f}"
        );
    }
    // 1.14 and 1.10 on users.
    let users: BTreeMap<&str, Vec<&str>> = json["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user"].as_str().unwrap(),
                u["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["check"].as_str().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert!(
        users["alice"].contains(&"user-policy-attached"),
        "{users:?}"
    );
    assert!(
        users["carol"].contains(&"user-policy-attached"),
        "{users:?}"
    );

    // The calls: the baseline's, 3 IAM lists, one ListAnalyzers; no per-user call. No
    // ListVirtualMFADevices: moto's credential report has no root row, so 1.5 cannot be
    // checked and the device list (pages of 1,000 on a large account) is not read.
    let ops = clients.calls.by_operation();
    assert!(!ops.contains_key("ListVirtualMFADevices"), "{ops:?}");
    for op in [
        "ListServerCertificates",
        "ListSAMLProviders",
        "ListOpenIDConnectProviders",
        "ListAnalyzers",
        "GetAccountAuthorizationDetails",
    ] {
        assert_eq!(ops.get(op), Some(&1), "{op}: {ops:?}");
    }
    assert!(!ops.contains_key("GetUser"), "{ops:?}");
    assert!(
        report.aws_calls <= 10,
        "{} calls: {ops:?}",
        report.aws_calls
    );

    // Fixed: a support role, an identity provider, CloudShell detached, the policy off
    // alice (still on ops): those findings go away.
    role(&acct, "support", &[&aws("AWSSupportAccess")]).await;
    acct.iam
        .create_saml_provider()
        .name("idp")
        .saml_metadata_document(
            "<EntityDescriptor xmlns=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"x\"/>",
        )
        .send()
        .await
        .unwrap();
    acct.iam
        .detach_group_policy()
        .group_name("devs")
        .policy_arn(aws("AWSCloudShellFullAccess"))
        .send()
        .await
        .unwrap();
    let report = iam_warden::app::audit(&cfg, &acct.clients(), Utc::now())
        .await
        .unwrap();
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    let checks: Vec<String> = account_findings(&json).into_iter().map(|f| f.0).collect();
    for gone in [
        "no-support-role",
        "no-identity-federation",
        "cloudshell-full-access",
    ] {
        assert!(!checks.iter().any(|c| c == gone), "{gone}: {checks:?}");
    }
    assert!(
        checks.iter().any(|c| c == "policy-full-admin"),
        "{checks:?}"
    );
}

fn run_cli(acct: &Account, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in acct.env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmark_view_lists_every_control() {
    let (acct, god) = seeded().await;
    let (code, out, err) = run_cli(
        &acct,
        &["audit", "--benchmark", "cis-5.0", "--output", "json"],
    );
    assert_eq!(code, 1, "stdout {out} stderr {err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    let b = &json["benchmark"];
    assert_eq!(b["name"], "cis-5.0");
    let status: BTreeMap<&str, &str> = b["controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status.len(), 21);
    let want = [
        ("1.1", "manual"),
        ("1.2", "manual"),
        ("1.3", "cannot-check"),
        ("1.4", "cannot-check"),
        ("1.5", "cannot-check"),
        ("1.6", "cannot-check"),
        ("1.7", "fail"),
        ("1.8", "fail"),
        ("1.9", "fail"),
        ("1.12", "pass"),
        ("1.14", "fail"),
        ("1.15", "fail"),
        ("1.16", "fail"),
        ("1.17", "manual"),
        ("1.18", "fail"),
        ("1.19", "cannot-check"),
        ("1.20", "fail"),
        ("1.21", "fail"),
    ];
    for (id, s) in want {
        assert_eq!(status[id], s, "{id}: {}", b["controls"]);
    }
    let c15 = b["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "1.15")
        .unwrap();
    let subjects: Vec<&str> = c15["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&god.as_str()), "{subjects:?}");
    // Text: one line per control, the failing resources under it.
    let (code, out, _) = run_cli(&acct, &["audit", "--benchmark", "cis-5.0"]);
    assert_eq!(code, 1);
    assert!(out.contains("1.1   manual"), "{out}");
    assert!(out.contains("1.18  fail"), "{out}");
    assert!(out.contains("server-certificate/old-tls"), "{out}");
    assert!(
        out.contains("1.20  fail            Ensure IAM users are managed centrally"),
        "{out}"
    );
    // An unknown benchmark is refused by the command line.
    let (code, _, err) = run_cli(&acct, &["audit", "--benchmark", "cis-1.4"]);
    assert_eq!(code, 2, "{err}");
}

/// Opt-in enforcement (CIS 1.18): dry-run journals the deletion and keeps the certificate;
/// enforce deletes it, journaled; a second pass has nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_server_certificates_are_deleted_when_opted_in() {
    use iam_warden::app::{self, EnforceOptions};
    use iam_warden::config::Mode;
    let (acct, _) = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        state_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let certs = || async {
        acct.iam
            .list_server_certificates()
            .send()
            .await
            .unwrap()
            .server_certificate_metadata_list()
            .len()
    };
    let deletions = |r: &app::enforce::EnforceReport| -> Vec<String> {
        r.results
            .iter()
            .filter(|x| x.planned.action.name() == "delete_server_certificate")
            .map(|x| serde_json::to_value(x).unwrap()["outcome"].to_string())
            .collect()
    };
    // Off by default: nothing planned.
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    assert!(deletions(&r).is_empty());
    cfg.cis.delete_expired_server_certificates = true;
    // Dry-run: journaled, not deleted.
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    assert_eq!(deletions(&r), vec!["\"dry_run\""], "{}", r.to_text());
    assert_eq!(certs().await, 1);
    // Enforce: deleted and journaled.
    cfg.mode = Mode::Enforce;
    let opts = EnforceOptions {
        confirm_large_change: true,
        ..Default::default()
    };
    let r = app::enforce(&cfg, &acct.clients(), &opts).await.unwrap();
    assert_eq!(deletions(&r), vec!["\"applied\""], "{}", r.to_text());
    assert_eq!(certs().await, 0);
    let journal = std::fs::read_to_string(cfg.journal_path()).unwrap();
    let lines: Vec<&str> = journal
        .lines()
        .filter(|l| l.contains("delete_server_certificate"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("server-certificate/old-tls") && l.contains("applied")),
        "{journal}"
    );
    // Idempotent: nothing left to delete.
    let r = app::enforce(&cfg, &acct.clients(), &opts).await.unwrap();
    assert!(deletions(&r).is_empty(), "{}", r.to_text());
}

async fn attach_user(acct: &Account, user: &str, arn: &str) {
    acct.iam
        .attach_user_policy()
        .user_name(user)
        .policy_arn(arn)
        .send()
        .await
        .unwrap();
}

async fn user_policies(acct: &Account, user: &str) -> Vec<String> {
    acct.iam
        .list_attached_user_policies()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect()
}

async fn group_policies(acct: &Account, group: &str) -> Vec<String> {
    acct.iam
        .list_attached_group_policies()
        .group_name(group)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect()
}

async fn role_policies(acct: &Account, role: &str) -> Vec<String> {
    acct.iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect()
}

async fn user_groups(acct: &Account, user: &str) -> Vec<String> {
    acct.iam
        .list_groups_for_user()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .groups()
        .iter()
        .map(|g| g.group_name().to_string())
        .collect()
}

/// A config in a fresh state dir whose breaker counts every user (no new-user grace: the
/// users here are minutes old).
fn opt_in_cfg(dir: &tempfile::TempDir) -> Config {
    let mut cfg = Config {
        state_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    cfg.safety.new_user_grace = iam_warden::config::Secs::from_secs(0);
    cfg
}

/// (action, target, outcome) of a report's results.
fn outcomes(r: &iam_warden::app::enforce::EnforceReport) -> Vec<(String, String, String)> {
    r.results
        .iter()
        .map(|x| {
            let v = serde_json::to_value(x).unwrap();
            (
                x.planned.action.name().to_string(),
                x.planned.action.target(),
                v["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Opt-in enforcement (CIS 1.21): AWSCloudShellFullAccess on a user, a group and a role;
/// dry-run changes nothing; enforce detaches all three, counted by the breaker (the user
/// and the group's member); an exempt user and iam-warden's own role keep it (the role
/// journaled as skipped); the check passes afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudshell_full_access_is_detached_when_opted_in() {
    use iam_warden::app::{self, EnforceOptions};
    use iam_warden::config::Mode;
    let acct = Account::new(moto()).await;
    let cs = aws("AWSCloudShellFullAccess");
    acct.user("alice").await;
    attach_user(&acct, "alice", &cs).await;
    acct.user_at("boss", "/", &[("iam-warden/exempt", "true")])
        .await;
    attach_user(&acct, "boss", &cs).await;
    acct.user("bob")
        .await
        .group("devs")
        .await
        .add_to_group("bob", "devs")
        .await;
    acct.iam
        .attach_group_policy()
        .group_name("devs")
        .policy_arn(&cs)
        .send()
        .await
        .unwrap();
    role(&acct, "ops", &[&cs]).await;
    // The test's identity is a session of this role: iam-warden's own.
    role(&acct, "iam-warden-test", &[&cs]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = opt_in_cfg(&dir);
    let has = |v: Vec<String>| v.contains(&cs);
    let state = || async {
        [
            has(user_policies(&acct, "alice").await),
            has(user_policies(&acct, "boss").await),
            has(group_policies(&acct, "devs").await),
            has(role_policies(&acct, "ops").await),
            has(role_policies(&acct, "iam-warden-test").await),
        ]
    };
    let detaches = |r: &app::enforce::EnforceReport| -> Vec<(String, String, String)> {
        let mut v: Vec<_> = outcomes(r)
            .into_iter()
            .filter(|o| o.0.starts_with("detach_"))
            .collect();
        v.sort();
        v
    };
    let opts = EnforceOptions {
        confirm_large_change: true,
        ..Default::default()
    };
    // Off by default.
    let r = app::enforce(&cfg, &acct.clients(), &opts).await.unwrap();
    assert!(detaches(&r).is_empty(), "{}", r.to_text());

    cfg.cis.detach_cloudshell_full_access = true;
    let r = app::enforce(&cfg, &acct.clients(), &opts).await.unwrap();
    let want = |outcome: &str| {
        vec![
            (
                "detach_group_policy".to_string(),
                format!("devs -> {cs}"),
                outcome.to_string(),
            ),
            (
                "detach_role_policy".into(),
                format!("iam-warden-test -> {cs}"),
                "skipped".into(),
            ),
            (
                "detach_role_policy".into(),
                format!("ops -> {cs}"),
                outcome.into(),
            ),
            ("detach_user_policy".into(), cs.clone(), outcome.into()),
        ]
    };
    assert_eq!(detaches(&r), want("dry_run"), "{}", r.to_text());
    // alice (her own) and bob (through devs) would lose it.
    assert_eq!(r.breaker.users_losing_access, 2, "{}", r.to_text());
    assert_eq!(state().await, [true; 5], "dry-run changed nothing");

    cfg.mode = Mode::Enforce;
    let r = app::enforce(&cfg, &acct.clients(), &opts).await.unwrap();
    assert_eq!(detaches(&r), want("applied"), "{}", r.to_text());
    assert!(
        r.to_text()
            .contains("-> skipped: iam-warden's own identity is never changed"),
        "{}",
        r.to_text()
    );
    assert_eq!(state().await, [false, true, false, false, true]);
    let journal = std::fs::read_to_string(cfg.journal_path()).unwrap();
    for (action, target, outcome) in [
        ("detach_user_policy", "AWSCloudShellFullAccess", "applied"),
        ("detach_group_policy", "devs -> ", "applied"),
        ("detach_role_policy", "ops -> ", "applied"),
        ("detach_role_policy", "iam-warden-test -> ", "skipped"),
    ] {
        assert!(
            journal.lines().any(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["action"] == action
                    && v["target"].as_str().unwrap().contains(target)
                    && v["outcome"] == outcome
                    && v["mode"] == "enforce"
            }),
            "{action} {target} {outcome}: {journal}"
        );
    }

    // The check passes for what was detached; the exempt user and own role remain.
    let report = iam_warden::app::audit(&cfg, &acct.clients(), Utc::now())
        .await
        .unwrap();
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    let mut left: Vec<String> = account_findings(&json)
        .into_iter()
        .filter(|f| f.0 == "cloudshell-full-access")
        .map(|f| f.1)
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            format!("arn:aws:iam::{}:role/iam-warden-test", acct.id),
            format!("arn:aws:iam::{}:user/boss", acct.id),
        ]
    );
    // Idempotent: nothing left but the skip.
    let r = app::enforce(&cfg, &acct.clients(), &opts).await.unwrap();
    let again: Vec<String> = detaches(&r).into_iter().map(|o| o.2).collect();
    assert_eq!(again, vec!["skipped"], "{}", r.to_text());
}

/// Opt-in enforcement (CIS 1.14): a user's directly attached managed policies move into
/// iam-warden groups; dry-run changes nothing; enforce leaves the user with the same
/// policies through groups, in the order group, policy, member, detach (journaled);
/// not counted by the breaker; an exempt user and inline policies are not moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_policies_move_into_groups_when_opted_in() {
    use iam_warden::app::{self, EnforceOptions};
    use iam_warden::config::Mode;
    let acct = Account::new(moto()).await;
    let deploy = policy(&acct, "deploy", NARROW_DOC).await;
    let ro = aws("ReadOnlyAccess");
    acct.user("dev").await;
    attach_user(&acct, "dev", &deploy).await;
    attach_user(&acct, "dev", &ro).await;
    acct.iam
        .put_user_policy()
        .user_name("dev")
        .policy_name("inline-read")
        .policy_document(NARROW_DOC)
        .send()
        .await
        .unwrap();
    acct.user_at("boss", "/", &[("iam-warden/exempt", "true")])
        .await;
    attach_user(&acct, "boss", &deploy).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = opt_in_cfg(&dir);
    cfg.cis.move_direct_policies_to_groups = true;
    let moves = |r: &app::enforce::EnforceReport| -> Vec<(String, String)> {
        outcomes(r)
            .into_iter()
            .filter(|o| o.0 == "move_user_policy_to_group")
            .map(|o| (o.1, o.2))
            .collect()
    };
    let want = |outcome: &str| {
        vec![
            (
                format!("{deploy} -> iam-warden-direct-deploy"),
                outcome.to_string(),
            ),
            (
                format!("{ro} -> iam-warden-direct-ReadOnlyAccess"),
                outcome.to_string(),
            ),
        ]
    };
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    let mut got = moves(&r);
    got.sort();
    let mut w = want("dry_run");
    w.sort();
    assert_eq!(got, w, "{}", r.to_text());
    assert_eq!(r.breaker.users_losing_access, 0, "{}", r.to_text());
    assert_eq!(user_policies(&acct, "dev").await.len(), 2);
    assert!(user_groups(&acct, "dev").await.is_empty(), "dry-run");

    cfg.mode = Mode::Enforce;
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    let mut got = moves(&r);
    got.sort();
    let mut w = want("applied");
    w.sort();
    assert_eq!(got, w, "{}", r.to_text());
    assert!(!r.breaker.tripped);
    assert!(user_policies(&acct, "dev").await.is_empty());
    let mut groups = user_groups(&acct, "dev").await;
    groups.sort();
    assert_eq!(
        groups,
        vec![
            "iam-warden-direct-ReadOnlyAccess",
            "iam-warden-direct-deploy"
        ]
    );
    assert_eq!(
        group_policies(&acct, "iam-warden-direct-deploy").await,
        vec![deploy.clone()]
    );
    assert_eq!(
        group_policies(&acct, "iam-warden-direct-ReadOnlyAccess").await,
        vec![ro.clone()]
    );
    let g = acct
        .iam
        .get_group()
        .group_name("iam-warden-direct-deploy")
        .send()
        .await
        .unwrap();
    assert_eq!(g.group().unwrap().path(), "/iam-warden/");
    assert_eq!(
        user_policies(&acct, "boss").await,
        vec![deploy.clone()],
        "exempt"
    );
    // The journal: each step of the deploy move, in order, applied.
    let journal = std::fs::read_to_string(cfg.journal_path()).unwrap();
    let steps: Vec<String> = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["outcome"] == "applied")
        .filter(|v| {
            let t = v["target"].as_str().unwrap();
            t.contains("iam-warden-direct-deploy") || t == deploy
        })
        .map(|v| v["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        steps,
        vec![
            "create_group",
            "attach_group_policy",
            "add_user_to_group",
            "detach_user_policy",
            "move_user_policy_to_group"
        ],
        "{journal}"
    );
    // The managed policies pass 1.14 now; the inline one is still reported.
    let report = iam_warden::app::audit(&cfg, &acct.clients(), Utc::now())
        .await
        .unwrap();
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    let dev = json["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "dev")
        .unwrap();
    let reasons: Vec<&str> = dev["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "user-policy-attached")
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        vec!["policies attached to the user, not through a group: inline inline-read"]
    );
    // Idempotent.
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    assert!(moves(&r).is_empty(), "{}", r.to_text());
}

/// A move stopped midway is finished by the next pass: the group exists with the policy
/// and the user is not in it yet (stopped before AddUserToGroup), or the user is in it
/// and still has the policy (stopped before the detach). A same-named group iam-warden
/// did not make is an error, never taken over, and the user keeps the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_move_is_finished_and_a_foreign_group_is_refused() {
    use iam_warden::app::{self, EnforceOptions};
    use iam_warden::config::Mode;
    let acct = Account::new(moto()).await;
    let deploy = policy(&acct, "deploy", NARROW_DOC).await;
    let build = policy(&acct, "build", NARROW_DOC).await;
    let other = policy(&acct, "other", NARROW_DOC).await;
    for (user, arn) in [("a", &deploy), ("b", &build), ("c", &other)] {
        acct.user(user).await;
        attach_user(&acct, user, arn).await;
    }
    let make_group = |name: &'static str, path: &'static str, arn: String| {
        let acct = &acct;
        async move {
            acct.iam
                .create_group()
                .group_name(name)
                .path(path)
                .send()
                .await
                .unwrap();
            acct.iam
                .attach_group_policy()
                .group_name(name)
                .policy_arn(arn)
                .send()
                .await
                .unwrap();
        }
    };
    // a: group made with the policy, a not in it.
    make_group("iam-warden-direct-deploy", "/iam-warden/", deploy.clone()).await;
    // b: in the group already, the policy still on b.
    make_group("iam-warden-direct-build", "/iam-warden/", build.clone()).await;
    acct.add_to_group("b", "iam-warden-direct-build").await;
    // c: someone else's group of that name.
    make_group("iam-warden-direct-other", "/teams/", other.clone()).await;

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = opt_in_cfg(&dir);
    cfg.cis.move_direct_policies_to_groups = true;
    cfg.mode = Mode::Enforce;
    let r = app::enforce(&cfg, &acct.clients(), &EnforceOptions::default())
        .await
        .unwrap();
    let mut got: Vec<(String, String)> = outcomes(&r)
        .into_iter()
        .filter(|o| o.0 == "move_user_policy_to_group")
        .map(|o| (o.1, o.2))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                format!("{build} -> iam-warden-direct-build"),
                "applied".into()
            ),
            (
                format!("{deploy} -> iam-warden-direct-deploy"),
                "applied".into()
            ),
            (
                format!("{other} -> iam-warden-direct-other"),
                "failed".into()
            ),
        ],
        "{}",
        r.to_text()
    );
    let text = r.to_text();
    let failed = text
        .lines()
        .find(|l| l.contains("iam-warden-direct-other") && l.contains("FAILED"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        failed.contains("exists at path /teams/, not iam-warden's /iam-warden/")
            && failed.contains("not taken over"),
        "{failed}"
    );
    assert_eq!(r.exit_code(), 1);
    for (user, group) in [
        ("a", "iam-warden-direct-deploy"),
        ("b", "iam-warden-direct-build"),
    ] {
        assert!(user_policies(&acct, user).await.is_empty(), "{user}");
        assert_eq!(user_groups(&acct, user).await, vec![group], "{user}");
    }
    assert_eq!(user_policies(&acct, "c").await, vec![other.clone()]);
    assert!(user_groups(&acct, "c").await.is_empty());
    // Only the missing steps were written: no group made, no policy attached again.
    let journal = std::fs::read_to_string(cfg.journal_path()).unwrap();
    let applied: Vec<(String, String)> = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["outcome"] == "applied")
        .filter(|v| {
            v["target"]
                .as_str()
                .is_some_and(|t| t.contains("iam-warden-direct-") || t.contains(":policy/"))
        })
        .map(|v| {
            (
                v["action"].as_str().unwrap().to_string(),
                v["user"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        !applied
            .iter()
            .any(|(a, _)| a == "create_group" || a == "attach_group_policy"),
        "{journal}"
    );
    assert!(applied.contains(&("add_user_to_group".into(), "a".into())));
    assert!(!applied.contains(&("add_user_to_group".into(), "b".into())));
    assert!(applied.contains(&("detach_user_policy".into(), "b".into())));
}
