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

    // The calls: the baseline's, 4 IAM lists, one ListAnalyzers; no per-user call.
    let ops = clients.calls.by_operation();
    for op in [
        "ListVirtualMFADevices",
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
        report.aws_calls <= 11,
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
