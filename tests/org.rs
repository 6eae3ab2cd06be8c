//! Several accounts (`[accounts]`, issue 12) against a real moto server: an AWS
//! Organization with nested OUs, an excluded account, an account outside the included OU,
//! a suspended account, and an account whose role cannot be assumed (moto lets any role
//! be assumed, so the fault proxy refuses AssumeRole of that account's role).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use aws_sdk_organizations::types::OrganizationFeatureSet;
use iam_warden::app::multi;
use iam_warden::app::EnforceOptions;
use iam_warden::config::{AccountSource, Config, Mode};
use iam_warden::journal::Journal;
use iam_warden::pacing::PacingSettings;
use support::faults::FaultProxy;
use support::{bin, shared_moto, Account, Moto};

/// The organization: management account `mgmt` (in the root), OUs prod (with prod/team)
/// and dev, and member accounts:
/// - `team`: under prod/team (nested), one console user without MFA;
/// - `prod`: under prod, one programmatic user;
/// - `denied`: under prod, its role cannot be assumed (the proxy refuses);
/// - `excluded`: under prod, excluded by id;
/// - `dev`: under dev, outside the included OU;
/// - `closed`: under prod, suspended (CloseAccount).
struct Org {
    mgmt: Account,
    accounts: BTreeMap<&'static str, Account>,
    prod_ou: String,
}

async fn organization(moto: &Moto) -> Org {
    let mgmt = Account::new(moto).await;
    let org = aws_sdk_organizations::Client::new(&mgmt.sdk);
    org.create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .expect("CreateOrganization");
    let root = org.list_roots().send().await.unwrap().roots()[0]
        .id()
        .unwrap()
        .to_string();
    let ou = |parent: String, name: &'static str| {
        let org = org.clone();
        async move {
            org.create_organizational_unit()
                .parent_id(parent)
                .name(name)
                .send()
                .await
                .unwrap()
                .organizational_unit()
                .unwrap()
                .id()
                .unwrap()
                .to_string()
        }
    };
    let prod = ou(root.clone(), "prod").await;
    let team = ou(prod.clone(), "team").await;
    let dev = ou(root.clone(), "dev").await;
    let mut accounts = BTreeMap::new();
    for (name, parent) in [
        ("team", &team),
        ("prod", &prod),
        ("denied", &prod),
        ("excluded", &prod),
        ("dev", &dev),
        ("closed", &prod),
    ] {
        let member = Account::create_member(moto, &mgmt, name).await;
        org.move_account()
            .account_id(&member.id)
            .source_parent_id(&root)
            .destination_parent_id(parent.as_str())
            .send()
            .await
            .unwrap();
        accounts.insert(name, member);
    }
    org.close_account()
        .account_id(&accounts["closed"].id)
        .send()
        .await
        .unwrap();
    let team_acct = &accounts["team"];
    team_acct.user("alice").await.password("alice").await;
    let prod_acct = &accounts["prod"];
    prod_acct.user("svc-prod").await;
    prod_acct.key("svc-prod").await;
    for name in ["excluded", "dev"] {
        let a = &accounts[name];
        a.user(&format!("user-{name}"))
            .await
            .password(&format!("user-{name}"))
            .await;
    }
    Org {
        mgmt,
        accounts,
        prod_ou: prod,
    }
}

impl Org {
    fn id(&self, name: &str) -> String {
        self.accounts[name].id.clone()
    }

    /// In scope: the management account (by id) and the prod OU, but not `excluded`.
    fn config(&self, dir: &std::path::Path) -> Config {
        let mut cfg = Config::default();
        cfg.cis.enabled = false;
        cfg.state_dir = dir.to_path_buf();
        cfg.accounts.source = AccountSource::Organization;
        cfg.accounts.include = vec![self.prod_ou.clone(), self.mgmt.id.clone()];
        cfg.accounts.exclude = vec![self.id("excluded")];
        cfg.accounts
            .exempt
            .insert(self.id("prod"), vec!["svc-prod".into()]);
        cfg.validate().expect("valid accounts config");
        cfg
    }
}

/// A fault proxy in front of moto that refuses AssumeRole into `denied`.
async fn proxy_for(moto: &Moto, org: &Org) -> FaultProxy {
    let proxy = FaultProxy::start(moto, 1, 0.0, &[]);
    proxy.refuse("AssumeRole", &org.id("denied")).await;
    proxy
}

fn users_of(r: &serde_json::Value) -> Vec<String> {
    r["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_covers_the_accounts_in_scope_and_isolates_the_failing_one() {
    let moto = shared_moto();
    let org = organization(moto).await;
    let proxy = proxy_for(moto, &org).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = org.config(dir.path());
    let caller = proxy.clients(&org.mgmt, &PacingSettings::default());
    let calls0 = caller.calls.total();
    let scope = iam_warden::app::scope(&cfg, &caller, None).await.unwrap();

    let ids: BTreeSet<String> = scope.targets.iter().map(|t| t.id.clone()).collect();
    let want: BTreeSet<String> = [
        org.mgmt.id.clone(),
        org.id("team"),
        org.id("prod"),
        org.id("denied"),
    ]
    .into();
    assert_eq!(
        ids, want,
        "in scope: the caller's account and prod's, not excluded"
    );
    let own = scope.targets.iter().find(|t| t.id == org.mgmt.id).unwrap();
    assert_eq!(
        own.role_arn, None,
        "the caller's account uses its own credentials"
    );
    let skipped: BTreeMap<String, String> = scope.skipped.iter().cloned().collect();
    assert!(
        skipped[&org.id("closed")].contains("SUSPENDED"),
        "{skipped:?}"
    );
    assert!(skipped[&org.id("dev")].contains("include"), "{skipped:?}");
    assert!(
        skipped[&org.id("excluded")].contains("exclude"),
        "{skipped:?}"
    );

    let report = multi::audit(&cfg, &caller, &scope, chrono::Utc::now(), false, calls0).await;
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let by_id: BTreeMap<String, &serde_json::Value> = json["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_str().unwrap().to_string(), a))
        .collect();
    assert_eq!(by_id.len(), 4);
    // Each account's report is of that account and its users only.
    let team = &by_id[&org.id("team")]["report"];
    assert_eq!(team["account_id"], org.id("team").as_str());
    assert_eq!(users_of(team), vec!["alice"]);
    assert!(
        team["users"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["check"] == "console-without-mfa"),
        "{team}"
    );
    assert_eq!(by_id[&org.id("team")]["name"], "team");
    let prod = &by_id[&org.id("prod")]["report"];
    assert_eq!(users_of(prod), vec!["svc-prod"]);
    assert_eq!(prod["summary"]["exempt"], 1, "[accounts.exempt] of prod");
    let mgmt = &by_id[&org.mgmt.id]["report"];
    assert_eq!(mgmt["account_id"], org.mgmt.id.as_str());
    assert_eq!(users_of(mgmt), Vec::<String>::new());
    // The account whose role cannot be assumed: an error, listed under errors.
    let denied = by_id[&org.id("denied")];
    assert!(denied.get("report").is_none(), "{denied}");
    let e = denied["error"].as_str().unwrap();
    assert!(
        e.starts_with(&format!(
            "cannot assume arn:aws:iam::{}:role/iam-warden: AccessDenied",
            org.id("denied")
        )),
        "{e}"
    );
    assert!(
        e.contains("accounts.role_name / accounts.external_id"),
        "{e}"
    );
    assert_eq!(json["errors"].as_array().unwrap().len(), 1);
    assert_eq!(json["errors"][0]["id"], org.id("denied").as_str());
    assert_eq!(json["summary"]["audited"], 3);
    assert_eq!(json["summary"]["failed"], 1);
    assert_eq!(json["summary"]["users"], 2);
    assert_eq!(report.exit_code(), 1);
    let text = report.to_text();
    assert!(
        text.contains(&format!("=== account {} (team) ===", org.id("team"))),
        "{text}"
    );
    assert!(text.contains("NOT AUDITED: cannot assume"), "{text}");

    // The cost per account stays that of a single-account audit; an assumed account's one
    // less: AssumeRole already said who the session is (no GetCallerIdentity of its own).
    for a in report.accounts.iter().filter_map(|a| a.report.as_ref()) {
        let limit = if a.account_id == org.mgmt.id { 6 } else { 5 };
        assert!(
            a.aws_calls <= limit,
            "{}: {} calls",
            a.account_id,
            a.aws_calls
        );
    }
    assert_eq!(
        report.aws_calls,
        report.discovery_aws_calls
            + report
                .accounts
                .iter()
                .filter_map(|a| a.report.as_ref())
                .map(|r| r.aws_calls)
                .sum::<u64>()
    );
    assert!(report.aws_calls <= 6 * 3 + report.discovery_aws_calls);
    // Discovery: the caller's identity, ListAccounts, ListParents (OU filters), 3 AssumeRole
    // (one refused; the caller's own account needs none).
    assert_eq!(caller.calls.count("ListAccounts"), 1);
    assert_eq!(caller.calls.count("AssumeRole"), 3);
    // No account's own calls (not even the caller's account's) land on the caller's counter.
    let discovery_ops: u64 = [
        "GetCallerIdentity",
        "ListAccounts",
        "ListParents",
        "AssumeRole",
    ]
    .iter()
    .map(|op| caller.calls.count(op))
    .sum();
    assert_eq!(
        report.discovery_aws_calls,
        discovery_ops,
        "{:?}",
        caller.calls.snapshot()
    );
    eprintln!(
        "audit of 3 accounts + 1 refused: {} calls ({} discovery)",
        report.aws_calls, report.discovery_aws_calls
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_changes_only_accounts_in_scope_and_journals_the_account() {
    let moto = shared_moto();
    let org = organization(moto).await;
    let proxy = proxy_for(moto, &org).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = org.config(dir.path());
    cfg.mode = Mode::Enforce;
    let caller = proxy.clients(&org.mgmt, &PacingSettings::default());
    let scope = iam_warden::app::scope(&cfg, &caller, None).await.unwrap();
    let opts = EnforceOptions {
        confirm_large_change: true,
        ..Default::default()
    };
    let report = multi::enforce(&cfg, &caller, &scope, &opts).await.unwrap();
    assert_eq!(report.errors.len(), 1, "{}", report.to_text());
    assert_eq!(report.errors[0].id, org.id("denied"));
    assert_eq!(report.exit_code(), 1, "{}", report.to_text());

    let groups = |a: &Account| {
        let iam = a.iam.clone();
        async move {
            iam.list_groups()
                .send()
                .await
                .unwrap()
                .groups()
                .iter()
                .map(|g| g.group_name().to_string())
                .collect::<Vec<_>>()
        }
    };
    // In scope: the baseline group exists and alice is in it.
    assert!(groups(&org.accounts["team"])
        .await
        .contains(&"iam-warden-require-mfa".to_string()));
    let alice = org.accounts["team"]
        .iam
        .list_groups_for_user()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    assert_eq!(alice.groups().len(), 1);
    // Out of scope: nothing written.
    for name in ["excluded", "dev", "denied"] {
        assert_eq!(
            groups(&org.accounts[name]).await,
            Vec::<String>::new(),
            "{name}"
        );
    }
    // Every journal line carries the account it was written for, only in-scope ones.
    let lines = Journal::read_with_intents(&cfg.journal_path()).unwrap();
    assert!(!lines.is_empty());
    let accounts: BTreeSet<String> = lines.iter().map(|l| l.account.clone()).collect();
    assert!(accounts.contains(&org.id("team")), "{accounts:?}");
    let allowed: BTreeSet<String> = [org.mgmt.id.clone(), org.id("team"), org.id("prod")].into();
    assert!(accounts.is_subset(&allowed), "{accounts:?}");
    let alice_lines: Vec<_> = lines
        .iter()
        .filter(|l| l.user.as_deref() == Some("alice"))
        .collect();
    assert!(!alice_lines.is_empty());
    assert!(alice_lines.iter().all(|l| l.account == org.id("team")));
    // svc-prod is exempt in prod ([accounts.exempt]): never written.
    assert!(!lines.iter().any(|l| l.user.as_deref() == Some("svc-prod")));
}

fn cli(env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env("IAM_WARDEN_CIS__ENABLED", "false");
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &std::path::Path, body: &str) -> String {
    let path = dir.join("iam-warden.toml");
    std::fs::write(
        &path,
        format!("state_dir = {:?}\n{body}", dir.display().to_string()),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_audit_json_lists_accounts_and_narrows_to_one() {
    let moto = shared_moto();
    let org = organization(moto).await;
    let proxy = proxy_for(moto, &org).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[accounts]\nsource = \"organization\"\ninclude = [{:?}]\nexclude = [{:?}]\n",
            org.prod_ou,
            org.id("excluded")
        ),
    );
    let mut env = org.mgmt.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL".into(), proxy.url.clone()));

    let (code, out, err) = cli(&env, &["audit", "--output", "json", "--config", &config]);
    assert_eq!(code, 1, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: BTreeSet<&str> = json["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let team = org.id("team");
    let prod = org.id("prod");
    let denied = org.id("denied");
    assert_eq!(ids, [team.as_str(), prod.as_str(), denied.as_str()].into());
    assert_eq!(json["errors"][0]["id"], denied.as_str());
    assert!(
        err.contains(&format!("account {denied}: cannot assume")),
        "{err}"
    );

    let (code, out, err) = cli(
        &env,
        &[
            "audit",
            "--output",
            "json",
            "--config",
            &config,
            "--account",
            &prod,
        ],
    );
    assert_eq!(code, 1, "moto's account has no password policy: {out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["accounts"].as_array().unwrap().len(), 1);
    assert_eq!(json["accounts"][0]["report"]["account_id"], prod.as_str());

    // Only the failing account: nothing could be read, exit 2.
    let (code, _, err) = cli(&env, &["audit", "--config", &config, "--account", &denied]);
    assert_eq!(code, 2, "{err}");
    // An account out of scope: one line saying why.
    let dev = org.id("dev");
    let (code, _, err) = cli(&env, &["plan", "--config", &config, "--account", &dev]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("--account {dev} is not in scope")),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_the_caller_cannot_list_is_one_clear_error() {
    let moto = shared_moto();
    // Not in any organization: moto lists no account.
    let lone = Account::new(moto).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[accounts]\nsource = \"organization\"\n");
    let (code, _, err) = cli(&lone.env(), &["audit", "--config", &config]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not the management account or a delegated administrator"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Refused (a member account's credentials): AccessDeniedException.
    let proxy = FaultProxy::start(moto, 1, 0.0, &[]);
    // Organizations' JSON body: `{}`.
    proxy.refuse("ListAccounts", "{").await;
    let mut env = lone.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL".into(), proxy.url.clone()));
    let (code, _, err) = cli(&env, &["audit", "--config", &config]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("ListAccounts was refused (AccessDeniedException"),
        "{err}"
    );
    assert!(
        err.contains("management account or a delegated administrator"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn bad_account_shapes_are_refused_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    for (body, want) in [
        (
            "[accounts]\nsource = \"list\"\n[[accounts.list]]\nid = \"123456789012\"\n[[accounts.list]]\nid = \"123456789012\"\n",
            "account 123456789012 twice",
        ),
        (
            "[accounts]\nsource = \"list\"\n[[accounts.list]]\nid = \"1234\"\n",
            "accounts.list[0].id = \"1234\" is not an account id",
        ),
        (
            "[accounts]\nsource = \"list\"\n[[accounts.list]]\nid = \"123456789012\"\nrole_arn = \"arn:aws-cn:iam::123456789012:role/iam-warden\"\n",
            "is in partition aws-cn",
        ),
        ("[accounts]\nsource = \"list\"\n", "accounts.list is empty"),
        ("[accounts]\nsource = \"everything\"\n", "everything"),
    ] {
        let config = write_config(dir.path(), body);
        let out = Command::new(bin())
            .args(["check-config", "--config", &config])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {err}");
        assert!(err.contains(want), "{body}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{body}: {err}");
    }
}
