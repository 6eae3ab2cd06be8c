//! The `iam-warden` binary end to end: the one-line errors a person reads, the refused
//! `enforce --at` and its test-only replacement, the modes of the files it creates, and
//! `audit --output ocsf` / `audit --export` (Security Hub on moto).

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use chrono::{Duration, Utc};
use support::{bin, shared_moto, Account};

/// Runs the binary with exactly `env` (nothing inherited but PATH).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run iam-warden");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The error a person reads: exit 2, nothing on stdout, and one `iam-warden: error:`
/// line without the SDK's debug structures, containing every `needles`. Returns it.
fn one_line_error(code: i32, out: &str, err: &str, needles: &[&str]) -> String {
    assert_eq!(code, 2, "stdout {out} stderr {err}");
    assert!(out.is_empty(), "no partial result on stdout: {out}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("iam-warden: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one error line:\n{err}");
    let line = lines[0];
    for debug in [
        "{",
        "DispatchFailure",
        "ConnectorError",
        "ProviderChainError",
        "Some(",
    ] {
        assert!(
            !line.contains(debug),
            "debug structure {debug:?} in: {line}"
        );
    }
    for n in needles {
        assert!(line.contains(n), "{n:?} missing in: {line}");
    }
    assert!(
        !err.contains("caused by:"),
        "the cause chain only with --verbose: {err}"
    );
    line.to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Static credentials and a region, no retries, IMDS off.
fn base_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE".into()),
        ("AWS_SECRET_ACCESS_KEY", "not-a-real-secret".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", endpoint.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("IAM_WARDEN_AWS__MAX_ATTEMPTS", "1".into()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn unreachable_endpoint_is_one_line_with_the_fix() {
    let env = base_env(&format!("http://127.0.0.1:{}", free_port()));
    let (code, out, err) = run(&["audit"], &as_refs(&env));
    let line = one_line_error(
        code,
        &out,
        &err,
        &["GetCallerIdentity", "onnection refused", "AWS_ENDPOINT_URL"],
    );
    // --verbose adds the SDK's full report, below the same line.
    let (code, _, verbose) = run(&["audit", "--verbose"], &as_refs(&env));
    assert_eq!(code, 2);
    assert!(verbose.contains(&line), "{verbose}");
    assert!(
        verbose.contains("caused by:") && verbose.contains("DispatchFailure"),
        "{verbose}"
    );
}

#[test]
fn missing_credentials_is_one_line_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.to_str().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let home = dir.path().to_str().unwrap();
    let env = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", empty),
        ("AWS_SHARED_CREDENTIALS_FILE", empty),
        ("HOME", home),
        ("IAM_WARDEN_AWS__MAX_ATTEMPTS", "1"),
    ];
    let (code, out, err) = run(&["audit"], &env);
    one_line_error(
        code,
        &out,
        &err,
        &["no AWS credentials", "AWS_PROFILE", "AWS_ACCESS_KEY_ID"],
    );
    let (code, _, verbose) = run(&["audit"], &[&env[..], &[("RUST_LOG", "debug")]].concat());
    assert_eq!(code, 2);
    assert!(
        verbose.contains("caused by:") && verbose.contains("ProviderChainError"),
        "RUST_LOG=debug shows the chain: {verbose}"
    );
}

/// A one-route HTTP server on a free loopback port that answers every request with an
/// STS query-protocol error, as AWS does. Serves until the test process exits.
fn aws_error_server(status: u16, code: &str, message: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
         <Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut request_body = vec![0; len];
            let _ = reader.read_exact(&mut request_body);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Error\r\nContent-Type: text/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn access_denied_is_one_line_with_the_fix() {
    let endpoint = aws_error_server(
        403,
        "AccessDenied",
        "User: arn:aws:iam::123456789012:user/x is not authorized to perform: \
         sts:GetCallerIdentity",
    );
    let env = base_env(&endpoint);
    let (code, out, err) = run(&["audit"], &as_refs(&env));
    one_line_error(
        code,
        &out,
        &err,
        &[
            "GetCallerIdentity",
            "is not authorized",
            "deploy/iam/iam-warden-policy.json",
        ],
    );
}

#[test]
fn expired_token_is_one_line_with_the_fix() {
    let endpoint = aws_error_server(
        400,
        "ExpiredToken",
        "The security token included in the request is expired",
    );
    let env = base_env(&endpoint);
    let (code, out, err) = run(&["audit"], &as_refs(&env));
    one_line_error(
        code,
        &out,
        &err,
        &["token included in the request is expired", "fresh"],
    );
}

#[test]
fn enforce_at_is_refused_in_one_line_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let at = (Utc::now() + Duration::days(100)).to_rfc3339();
    // An endpoint nothing listens on: the refusal comes before any AWS call.
    let mut env = base_env(&format!("http://127.0.0.1:{}", free_port()));
    env.push(("IAM_WARDEN_STATE_DIR", state.to_str().unwrap().to_string()));
    env.push(("IAM_WARDEN_MODE", "enforce".into()));
    let (code, out, err) = run(&["enforce", "--once", "--at", &at], &as_refs(&env));
    one_line_error(
        code,
        &out,
        &err,
        &["`enforce --at` is refused", "tags", "plan --at"],
    );
    assert!(!state.exists(), "nothing written, not even the journal");
    // Not advertised either.
    let (_, help, _) = run(&["enforce", "--help"], &[]);
    assert!(!help.contains("--at"), "{help}");
}

/// The test-only clock: enforce deactivates a key that is unused as of the simulated
/// date, and the inactive-since tag carries that date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_clock_env_drives_enforce() {
    let acct = Account::new(shared_moto()).await;
    acct.user("svc").await;
    let key = acct.key("svc").await;
    let dir = tempfile::tempdir().unwrap();
    let at = Utc::now() + Duration::days(100);
    let env: Vec<(String, String)> = acct
        .env()
        .into_iter()
        .chain([
            (
                "IAM_WARDEN_STATE_DIR".into(),
                dir.path().display().to_string(),
            ),
            ("IAM_WARDEN_MODE".into(), "enforce".into()),
            ("IAM_WARDEN_TEST_CLOCK".into(), at.to_rfc3339()),
        ])
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (code, out, err) = run(
        &[
            "enforce",
            "--once",
            "--confirm-large-change",
            "--output",
            "json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("IAM_WARDEN_TEST_CLOCK is set"), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["evaluated_at"].as_str().map(|s| &s[..10]),
        Some(&*at.format("%Y-%m-%d").to_string())
    );
    let keys = acct
        .iam
        .list_access_keys()
        .user_name("svc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        keys.access_key_metadata()[0].status().map(|s| s.as_str()),
        Some("Inactive")
    );
    let tags = acct
        .iam
        .list_user_tags()
        .user_name("svc")
        .send()
        .await
        .unwrap();
    let mark = tags
        .tags()
        .iter()
        .find(|t| t.key() == format!("iam-warden/inactive-since/{key}"))
        .expect("inactive-since tag");
    assert!(
        mark.value()
            .starts_with(&format!("since={}", at.format("%Y-%m-%d"))),
        "{}",
        mark.value()
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Under umask 000 the state directory iam-warden creates is 0700 and the journal 0600;
/// a journal an older version left 0644 is narrowed to 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_private_whatever_the_umask() {
    let acct = Account::new(shared_moto()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("var/lib/iam-warden");
    let enforce = |state: &Path| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"umask 000 && exec "$0" "$@""#)
            .arg(bin())
            .args(["enforce", "--once", "--confirm-large-change"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("IAM_WARDEN_STATE_DIR", state);
        for (k, v) in acct.env() {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        // Dry-run with changes pending: exit 1, and the would-be writes journaled.
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    enforce(&state);
    let journal = state.join("journal.jsonl");
    assert!(std::fs::metadata(&journal).unwrap().len() > 0, "journaled");
    assert_eq!(mode(&dir.path().join("var")), 0o700);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&journal), 0o600);

    // A journal from an older version (0644) in an existing directory.
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(old.join("journal.jsonl"), "").unwrap();
    std::fs::set_permissions(
        old.join("journal.jsonl"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    enforce(&old);
    assert_eq!(mode(&old.join("journal.jsonl")), 0o600);
}

/// The account's environment plus a state directory and Security Hub export on.
fn export_env(acct: &Account, dir: &Path) -> Vec<(String, String)> {
    acct.env()
        .into_iter()
        .chain([
            ("IAM_WARDEN_STATE_DIR".into(), dir.display().to_string()),
            (
                "IAM_WARDEN_EXPORT__SECURITYHUB__ENABLED".into(),
                "true".into(),
            ),
        ])
        .collect()
}

/// `audit --output ocsf`: one JSON array of Compliance Finding records (class 2003) with
/// the schema's required attributes; exit 1 (findings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_output_ocsf_prints_compliance_finding_records() {
    let acct = Account::new(shared_moto()).await;
    acct.user("dora").await.password("dora").await;
    let dir = tempfile::tempdir().unwrap();
    let env = export_env(&acct, dir.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (code, out, err) = run(&["audit", "--output", "ocsf"], &env);
    assert_eq!(code, 1, "{out}{err}");
    let records: serde_json::Value = serde_json::from_str(&out).expect("one JSON array");
    let records = records.as_array().expect("an array");
    assert!(!records.is_empty());
    for r in records {
        for f in [
            "activity_id",
            "category_uid",
            "class_uid",
            "compliance",
            "finding_info",
            "metadata",
            "severity_id",
            "time",
            "type_uid",
        ] {
            assert!(!r[f].is_null(), "{f} missing: {r}");
        }
        assert_eq!(r["class_uid"], 2003, "{r}");
        assert_eq!(r["type_uid"], 200301, "{r}");
        assert!(r["finding_info"]["uid"].is_string(), "{r}");
        assert!(r["finding_info"]["title"].is_string(), "{r}");
        assert!(r["metadata"]["version"].is_string(), "{r}");
        assert!(r["metadata"]["product"]["vendor_name"].is_string(), "{r}");
        assert!(r["metadata"]["product"]["name"].is_string(), "{r}");
        assert!(r["compliance"]["standards"].is_array(), "{r}");
        assert_eq!(r["cloud"]["provider"], "AWS", "{r}");
    }
    assert!(
        records
            .iter()
            .any(|r| r["metadata"]["event_code"] == "console-without-mfa"
                && r.to_string().contains("dora")),
        "{out}"
    );
}

/// `audit --export` with Security Hub enabled: the report printed, the audit's exit code,
/// the finding in the hub; not enabled: the one-line error on stderr, the report still
/// printed and the exit code unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_export_through_the_binary() {
    let acct = Account::new(shared_moto()).await;
    acct.user("erin").await.password("erin").await;
    let dir = tempfile::tempdir().unwrap();
    let env = export_env(&acct, dir.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let hub = aws_sdk_securityhub::Client::new(&acct.sdk);

    // Not enabled: one error line, the report on stdout, exit 1 (the findings).
    let (code, out, err) = run(&["audit", "--output", "json", "--export"], &env);
    assert_eq!(code, 1, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("the report");
    assert_eq!(report["summary"]["violating"], 1, "{out}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("iam-warden: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("Security Hub is not enabled in account")
            && lines[0].contains("enable-security-hub"),
        "{err}"
    );

    // Enabled: exported, the summary on stderr, the same exit code.
    hub.enable_security_hub().send().await.unwrap();
    let (code, out, err) = run(&["audit", "--output", "json", "--export"], &env);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&out).is_ok(),
        "{out}"
    );
    assert!(!err.contains("iam-warden: error:"), "{err}");
    assert!(err.contains("Security Hub: "), "{err}");
    let found = hub.get_findings().send().await.unwrap();
    let mine: Vec<_> = found
        .findings()
        .iter()
        .filter(|f| {
            f.generator_id() == Some("iam-warden/console-without-mfa")
                && f.product_fields()
                    .and_then(|m| m.get("iam-warden/user"))
                    .map(String::as_str)
                    == Some("erin")
        })
        .collect();
    assert_eq!(mine.len(), 1, "{found:?}");
    assert_eq!(mine[0].record_state().map(|s| s.as_str()), Some("ACTIVE"));
}
