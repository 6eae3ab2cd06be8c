//! `iam-warden audit` against a real moto server with the real aws-sdk clients.

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;

use chrono::{Duration, Utc};
use iam_warden::config::Config;
use support::{bin, shared_moto, Account, Moto};

fn findings_by_user(report: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    report["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let mut checks: Vec<String> = u["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["check"].as_str().unwrap().to_string())
                .collect();
            checks.sort();
            (u["user"].as_str().unwrap().to_string(), checks)
        })
        .collect()
}

/// Every kind of user, with key ages made real by running moto under libfaketime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_judges_every_kind_of_user() {
    let moto = Moto::start(true);
    let acct = Account::new(&moto).await;
    let mut cfg = Config::default();
    cfg.exemptions.users = vec!["break-glass".into()];

    // Created 100 days ago: an old key, an old console password never used.
    moto.set_clock_offset("-100d");
    acct.user("old-key").await;
    let old_key = acct.key("old-key").await;
    acct.user("stale-console")
        .await
        .password("stale-console")
        .await
        .mfa("stale-console")
        .await;
    acct.user("break-glass").await.password("break-glass").await;
    acct.key("break-glass").await;
    moto.set_clock_offset("+0d");

    // Fresh users.
    acct.user("alice")
        .await
        .password("alice")
        .await
        .mfa("alice")
        .await;
    acct.user("bob-no-mfa").await.password("bob-no-mfa").await;
    acct.user("svc-ci").await;
    acct.key("svc-ci").await;
    acct.user("two-keys").await;
    acct.key("two-keys").await;
    acct.key("two-keys").await;
    acct.user_at(
        "prog-with-console",
        "/svc/",
        &[("iam-warden/access", "programmatic")],
    )
    .await;
    acct.password("prog-with-console").await;
    acct.user_at("console-with-key", "/", &[("iam-warden/access", "console")])
        .await;
    acct.password("console-with-key")
        .await
        .mfa("console-with-key")
        .await;
    acct.key("console-with-key").await;
    acct.user_at("tagged-exempt", "/", &[("iam-warden/exempt", "true")])
        .await;
    acct.password("tagged-exempt").await;
    acct.user_at("odd+name=x,y.z@w_v-u", "/team.a/", &[("empty", "")])
        .await;
    acct.key("odd+name=x,y.z@w_v-u").await;
    // The MFA baseline group with its policy: alice is in it.
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotAction":"iam:GetUser","Resource":"*","Condition":{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}}]}"#;
    let pol = acct
        .iam
        .create_policy()
        .policy_name("iam-warden-require-mfa")
        .path("/iam-warden/")
        .policy_document(doc)
        .send()
        .await
        .unwrap();
    acct.group("iam-warden-require-mfa").await;
    acct.iam
        .attach_group_policy()
        .group_name("iam-warden-require-mfa")
        .policy_arn(pol.policy().unwrap().arn().unwrap())
        .send()
        .await
        .unwrap();
    for u in ["alice", "stale-console", "console-with-key"] {
        acct.add_to_group(u, "iam-warden-require-mfa").await;
    }

    let clients = acct.clients();
    let report = iam_warden::app::audit(&cfg, &clients, Utc::now())
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let got = findings_by_user(&json);
    assert_eq!(
        json["warnings"],
        serde_json::json!([]),
        "a name with commas is read from the report"
    );
    let want: BTreeMap<String, Vec<String>> = [
        ("alice", vec![]),
        (
            "bob-no-mfa",
            vec!["console-without-mfa", "mfa-policy-missing"],
        ),
        ("break-glass", vec![]),
        // CIS 1.10: a console user's key never used.
        (
            "console-with-key",
            vec!["key-from-initial-setup", "keys-on-console-user"],
        ),
        ("odd+name=x,y.z@w_v-u", vec![]),
        ("old-key", vec!["key-too-old", "key-unused"]),
        (
            "prog-with-console",
            vec!["console-on-programmatic-user", "console-without-mfa"],
        ),
        ("stale-console", vec!["console-unused"]),
        ("svc-ci", vec![]),
        ("tagged-exempt", vec![]),
        ("two-keys", vec!["two-active-keys"]),
    ]
    .into_iter()
    .map(|(u, c)| (u.to_string(), c.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(got, want);

    // Exempt users are listed as exempt, never as violations.
    let exempt: BTreeMap<&str, &str> = json["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| Some((u["user"].as_str()?, u["exempt"].as_str()?)))
        .collect();
    assert_eq!(exempt.len(), 2, "{exempt:?}");
    assert!(exempt["break-glass"].contains("exemptions.users"));
    assert!(exempt["tagged-exempt"].contains("tag"));

    // Reasons carry the numbers; the report observed keys without ids (slots).
    let old = json["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "old-key")
        .unwrap();
    let reason = old["findings"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("100 days") && reason.contains("limit 90"),
        "{reason}"
    );
    assert!(
        !reason.contains(&old_key) || reason.contains("access key"),
        "{reason}"
    );

    // Account level: moto starts without a password policy.
    assert_eq!(json["account_findings"][0]["check"], "password-policy-weak");
    assert_eq!(json["summary"]["users"], 11);
    assert_eq!(json["summary"]["exempt"], 2);
    assert_eq!(json["summary"]["violating"], 6);
    assert_eq!(json["summary"]["by_check"]["console-without-mfa"], 2);
    assert_eq!(json["schema"], "iam-warden.audit/v1");

    // A handful of calls, and no per-user call for users the report covers.
    let ops = clients.calls.by_operation();
    for per_user in [
        "GetUser",
        "ListAccessKeys",
        "GetLoginProfile",
        "ListMFADevices",
    ] {
        assert!(
            !ops.contains_key(per_user),
            "per-user call {per_user} made: {ops:?}"
        );
    }
    // 11: the baseline's 5 or 6 (GenerateCredentialReport may be asked twice), the CIS
    // account checks' 4 IAM lists and ListAnalyzers (one attempt; moto lacks the API).
    assert!(
        report.aws_calls <= 11,
        "{} calls: {ops:?}",
        report.aws_calls
    );
}

/// `--at` moves the clock: keys made today are due on a later date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_evaluates_as_if_now_were_later() {
    let acct = Account::new(shared_moto()).await;
    acct.user("svc").await;
    acct.key("svc").await;
    let cfg = Config::default();
    let clients = acct.clients();
    let today = iam_warden::app::audit(&cfg, &clients, Utc::now())
        .await
        .unwrap();
    assert!(today.users[0].findings.is_empty());
    let later = iam_warden::app::audit(&cfg, &clients, Utc::now() + Duration::days(91))
        .await
        .unwrap();
    let checks: Vec<_> = later.users[0]
        .findings
        .iter()
        .map(|f| f.check.id())
        .collect();
    assert_eq!(checks, vec!["key-too-old", "key-unused"]);
}

fn run_cli(acct: &Account, args: &[&str], extra_env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in acct.env() {
        cmd.env(k, v);
    }
    // These tests judge the baseline; the CIS account checks are tested in tests/cis.rs
    // (moto's credential report has no root row: with them no moto account is compliant).
    cmd.env("IAM_WARDEN_CIS__ENABLED", "false");
    for (k, v) in extra_env {
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
async fn cli_exit_codes_and_json_output() {
    let acct = Account::new(shared_moto()).await;
    // Compliant: a strong password policy and a compliant programmatic user.
    acct.iam
        .update_account_password_policy()
        .minimum_password_length(16)
        .require_symbols(true)
        .require_numbers(true)
        .require_uppercase_characters(true)
        .require_lowercase_characters(true)
        .password_reuse_prevention(24)
        .max_password_age(60)
        .allow_users_to_change_password(true)
        .send()
        .await
        .unwrap();
    acct.user("svc").await;
    acct.key("svc").await;
    let (code, out, err) = run_cli(&acct, &["audit", "--output", "json"], &[]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["summary"]["compliant"], 1);
    assert_eq!(json["account_id"], acct.id.as_str());

    // Findings: exit 1, text output has the summary and the user.
    acct.user("bob").await.password("bob").await;
    let (code, out, err) = run_cli(&acct, &["audit"], &[]);
    assert_eq!(code, 1, "stdout {out} stderr {err}");
    assert!(out.contains("console-without-mfa"), "{out}");
    assert!(out.contains("  bob (console"), "{out}");

    // --at in the future.
    let at = (Utc::now() + Duration::days(200)).to_rfc3339();
    let (code, out, _) = run_cli(&acct, &["audit", "--output", "json", "--at", &at], &[]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["summary"]["by_check"]["key-too-old"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_2_with_one_line_cause() {
    let acct = Account::new(shared_moto()).await;
    // Unreachable endpoint (a port nothing listens on).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let (code, out, err) = run_cli(&acct, &["audit"], &[("AWS_ENDPOINT_URL", &dead)]);
    assert_eq!(code, 2, "{out} {err}");
    assert!(out.is_empty(), "no partial result on stdout: {out}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("iam-warden: error:") && last.contains("cannot reach"),
        "{err}"
    );

    // No credentials at all.
    let mut cmd = Command::new(bin());
    let out = cmd
        .arg("audit")
        .env_clear()
        .env("AWS_ENDPOINT_URL", &acct.endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("IAM_WARDEN_AWS__MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("credentials"), "{err}");

    // Bad configuration: names the key and the value.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        "[baseline.source_ip_policy]\nallowed_cidrs = [\"10.0.0.0/40\"]\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&acct, &["audit", "--config", f.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("allowed_cidrs") && err.contains("10.0.0.0/40"),
        "{err}"
    );
    let (code, _, err) = run_cli(
        &acct,
        &["audit"],
        &[("IAM_WARDEN_BASELINE__CREDENTIALS__UNUSED_DAYS", "-3")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("unused_days"), "{err}");
    let (code, _, err) = run_cli(&acct, &["audit", "--config", "/nonexistent.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.toml"), "{err}");
    let (code, _, err) = run_cli(&acct, &["audit", "--at", "tomorrow"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
}

#[test]
fn check_config_prints_effective_values() {
    let out = Command::new(bin())
        .args([
            "check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/iam-warden.toml"),
        ])
        .env("IAM_WARDEN_MODE", "enforce")
        .env("IAM_WARDEN_RESYNC__INTERVAL", "5m")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(v["mode"].as_str(), Some("enforce"));
    assert_eq!(v["resync"]["interval"].as_str(), Some("5m"));
    let out = Command::new(bin())
        .args(["check-config"])
        .env("IAM_WARDEN_MOED", "enforce")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("moed"));
}
