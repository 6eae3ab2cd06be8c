//! Access-key rotation end to end: the `iam-warden` binary (`enforce --once`, `plan`,
//! `reactivate`) against a real moto server, the clock moved with the test-only
//! `IAM_WARDEN_TEST_CLOCK` (keys are created now; "now" for iam-warden is days later).
//! The key age limit is 2 days here so that a few simulated days cover every phase.
//!
//! Crashes are injected with the test-only `IAM_WARDEN_TEST_CRASH_AFTER=<step>`, which
//! aborts the process right after that step's AWS call succeeded.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use iam_warden::journal::Journal;
use support::daemon::{caller_arn, use_key};
use support::{bin, shared_moto, Account};

const PREFIX: &str = "iam-warden/rotation/";

/// A KMS key that does not exist (the fault proxy answers the stores' KMS errors for it).
const MISSING_KMS_KEY: &str =
    "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";

/// One account, one state directory, and everything the binary printed.
struct Lab {
    acct: Account,
    dir: tempfile::TempDir,
    /// Time zero: the keys are created at about this real time.
    t0: DateTime<Utc>,
    env: Vec<(String, String)>,
    printed: Mutex<String>,
}

impl Lab {
    async fn new(extra: &[(&str, &str)]) -> Lab {
        let acct = Account::new(shared_moto()).await;
        let dir = tempfile::tempdir().unwrap();
        let mut env = acct.env();
        for (k, v) in [
            ("IAM_WARDEN_STATE_DIR", dir.path().display().to_string()),
            ("IAM_WARDEN_MODE", "enforce".into()),
            (
                "IAM_WARDEN_BASELINE__CREDENTIALS__MAX_KEY_AGE_DAYS",
                "2".into(),
            ),
            ("IAM_WARDEN_ROTATION__WARN_DAYS", "1".into()),
            ("IAM_WARDEN_ROTATION__DRAIN_QUIET", "10d".into()),
            ("IAM_WARDEN_ROTATION__GRACE_DAYS", "30".into()),
            ("IAM_WARDEN_ROTATION__RECOVERY_DAYS", "3".into()),
            ("IAM_WARDEN_SAFETY__MAX_USERS_CHANGED_PERCENT", "100".into()),
        ] {
            env.push((k.into(), v));
        }
        for (k, v) in extra {
            env.retain(|(e, _)| e != k);
            env.push((k.to_string(), v.to_string()));
        }
        Lab {
            acct,
            dir,
            t0: Utc::now(),
            env,
            printed: Mutex::new(String::new()),
        }
    }

    /// Run the binary (verbose: iam-warden's own debug logs) with the clock at t0 + `days`.
    /// Returns (exit code, stdout, stdout and stderr).
    fn run(
        &self,
        args: &[&str],
        days: Option<f64>,
        extra: &[(&str, &str)],
    ) -> (i32, String, String) {
        let mut cmd = Command::new(bin());
        cmd.arg("-v")
            .args(["--log-format", "json"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(d) = days {
            let at = self.t0 + Duration::seconds((d * 86_400.0) as i64);
            cmd.env("IAM_WARDEN_TEST_CLOCK", at.to_rfc3339());
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run iam-warden");
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        let mut p = self.printed.lock().unwrap();
        p.push_str(&o);
        p.push_str(&e);
        (
            out.status.code().unwrap_or(-1),
            o.clone(),
            format!("{o}{e}"),
        )
    }

    /// `enforce --once` at t0 + `days`; it must succeed.
    fn enforce(&self, days: f64, extra: &[(&str, &str)]) -> String {
        let (code, stdout, all) = self.run(
            &[
                "enforce",
                "--once",
                "--confirm-large-change",
                "--output",
                "json",
            ],
            Some(days),
            extra,
        );
        assert_eq!(code, 0, "enforce at +{days}d: {all}");
        stdout
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.path().join("journal.jsonl")
    }

    async fn tags(&self, user: &str) -> BTreeMap<String, String> {
        let out = self
            .acct
            .iam
            .list_user_tags()
            .user_name(user)
            .send()
            .await
            .unwrap();
        out.tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    }

    /// The phase in the rotation tag of `key` (None: no tag).
    async fn phase(&self, user: &str, key: &str) -> Option<String> {
        let tags = self.tags(user).await;
        let v = tags.get(&format!("{PREFIX}{key}"))?;
        v.split_whitespace()
            .find_map(|p| p.strip_prefix("phase="))
            .map(str::to_string)
    }

    /// (id, status) of the user's keys, oldest first.
    async fn keys(&self, user: &str) -> Vec<(String, String)> {
        self.acct.access_keys(user).await
    }

    async fn status(&self, user: &str, key: &str) -> String {
        self.acct.access_key_status(user, key).await
    }

    fn sm(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.acct.sdk)
    }

    /// The JSON stored in the user's secret at `stage` (AWSCURRENT, AWSPREVIOUS).
    async fn secret(&self, user: &str, stage: &str) -> serde_json::Value {
        let out = self
            .sm()
            .get_secret_value()
            .secret_id(format!("iam-warden/{user}/access-key"))
            .version_stage(stage)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetSecretValue {user} {stage}: {e:?}"));
        serde_json::from_str(out.secret_string().unwrap()).unwrap()
    }

    /// Create a key and return (id, secret).
    async fn key_with_secret(&self, user: &str) -> (String, String) {
        let out = self
            .acct
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

    /// Scan everything printed and journaled for each secret.
    fn assert_no_secret_leaked(&self, secrets: &[&str]) {
        let printed = self.printed.lock().unwrap().clone();
        let journal = std::fs::read_to_string(self.journal_path()).unwrap_or_default();
        assert!(!journal.is_empty(), "the journal was written");
        for s in secrets {
            assert!(s.len() >= 20, "a real secret: {s:?}");
            assert!(!printed.contains(s), "a secret was printed");
            assert!(!journal.contains(s), "a secret was journaled");
        }
    }
}

fn str_of<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// How often the fault proxy answered `operation` with `fault`.
async fn faults_of(proxy: &support::faults::FaultProxy, operation: &str, fault: &str) -> u64 {
    proxy.stats().await["by_action"][operation][fault]
        .as_u64()
        .unwrap_or(0)
}

/// The pass's one failed `rotate_access_key` line holds each of `wants`.
fn assert_failed_rotation_line(out: &str, wants: &[&str]) {
    let line = out
        .lines()
        .find(|l| l.contains("rotate_access_key") && l.contains("FAILED"))
        .unwrap_or_else(|| panic!("a failed rotation line: {out}"));
    for want in wants {
        assert!(line.contains(want), "{want:?} in {line}");
    }
}

fn journal_actions(p: &Path) -> Vec<String> {
    Journal::read_all(p)
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {} {}", e.action, e.target, e.outcome))
        .collect()
}

/// Warned → rotated (secret stored, works) → the old key still used is kept → drained and
/// deactivated → reactivated → deactivated again → deleted after recovery, which makes room
/// for the second rotation (the previous secret stays readable as AWSPREVIOUS). Nothing
/// printed or journaled holds a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_with_secrets_manager() {
    let lab = Lab::new(&[]).await;
    let ep = lab.acct.endpoint.clone();
    lab.acct
        .user_at("app", "/", &[("iam-warden/owner", "alice@example.com")])
        .await;
    let (k1, s1) = lab.key_with_secret("app").await;
    use_key(&ep, &k1, &s1).await;

    // A plan before anything is due shows when the next step is.
    let (code, out, all) = lab.run(&["plan", "--output", "json"], None, &[]);
    assert!(code <= 1, "{all}");
    let plan: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {all}"));
    let app = plan["plan"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["verdict"]["user"] == "app")
        .unwrap();
    assert!(app["next_due"].is_string(), "{app}");

    // +1.5 d: within warn_days of the limit → warned.
    lab.enforce(1.5, &[]);
    assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("warned"));
    // `plan --at` shows the rotation on its due date.
    let at = (lab.t0 + Duration::hours(60)).to_rfc3339();
    let (_, text, _) = lab.run(&["plan", "--at", &at], None, &[]);
    assert!(text.contains("rotate_access_key"), "{text}");

    // +2.5 d: at the age limit → rotated.
    lab.enforce(2.5, &[]);
    let keys = lab.keys("app").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let k2 = keys[1].0.clone();
    assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("draining"));
    assert!(lab.tags("app").await[&format!("{PREFIX}{k1}")].contains(&format!("new={k2}")));
    let cur = lab.secret("app", "AWSCURRENT").await;
    assert_eq!(str_of(&cur, "AccessKeyId"), k2);
    assert_eq!(str_of(&cur, "UserName"), "app");
    assert!(cur["CreateDate"].is_string());
    let s2 = str_of(&cur, "SecretAccessKey").to_string();
    assert!(
        caller_arn(&ep, &k2, &s2).await.ends_with(":user/app"),
        "the stored key works"
    );
    let desc = lab
        .sm()
        .describe_secret()
        .secret_id("iam-warden/app/access-key")
        .send()
        .await
        .unwrap();
    let stags: BTreeMap<_, _> = desc
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect();
    assert_eq!(stags.get("iam-warden/user"), Some(&"app"));
    assert_eq!(stags.get("iam-warden/owner"), Some(&"alice@example.com"));

    // The consumer switches to k2; k1 was used 3 days ago, within drain_quiet (10 d): kept.
    use_key(&ep, &k2, &s2).await;
    lab.enforce(3.0, &[]);
    assert_eq!(lab.status("app", &k1).await, "Active", "still draining");
    assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("draining"));

    // +11 d: k1 quiet for 11 days and k2 in use → deactivated.
    lab.enforce(11.0, &[]);
    assert_eq!(lab.status("app", &k1).await, "Inactive");
    assert_eq!(lab.status("app", &k2).await, "Active");
    assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("deactivated"));

    // Reactivate: other keys are refused; k1 comes back and drains again.
    let (code, _, out) = lab.run(&["reactivate", "app", &k2], None, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not deactivated by rotation"), "{out}");
    let (code, _, out) = lab.run(&["reactivate", "app", &k1], None, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(lab.status("app", &k1).await, "Active");
    assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("draining"));
    assert!(journal_actions(&lab.journal_path())
        .iter()
        .any(|a| a.starts_with(&format!("reactivate_access_key {k1}")) && a.ends_with("applied")));

    // +13 d: still quiet → deactivated again; +15 d within recovery: kept.
    lab.enforce(13.0, &[]);
    assert_eq!(lab.status("app", &k1).await, "Inactive");
    lab.enforce(15.0, &[]);
    assert_eq!(lab.status("app", &k1).await, "Inactive");

    // +17 d: k1 past recovery → deleted first; k2 (past its own limit) rotates to k3.
    lab.enforce(17.0, &[]);
    let keys = lab.keys("app").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0].0, k2);
    let k3 = keys[1].0.clone();
    assert!(k3 != k1 && k3 != k2);
    assert!(!lab.tags("app").await.contains_key(&format!("{PREFIX}{k1}")));
    let cur = lab.secret("app", "AWSCURRENT").await;
    let prev = lab.secret("app", "AWSPREVIOUS").await;
    assert_eq!(str_of(&cur, "AccessKeyId"), k3);
    assert_eq!(
        str_of(&prev, "AccessKeyId"),
        k2,
        "the previous version stays readable"
    );
    let s3 = str_of(&cur, "SecretAccessKey").to_string();
    assert!(caller_arn(&ep, &k3, &s3).await.ends_with(":user/app"));

    let j = journal_actions(&lab.journal_path());
    for phase in [
        "warned",
        "rotating",
        "draining",
        "deactivated",
        "reactivated",
        "deleted",
    ] {
        assert!(
            j.iter()
                .any(|a| a.starts_with("rotation_phase") && a.contains(&format!("-> {phase}"))),
            "{phase} journaled: {j:#?}"
        );
    }
    lab.assert_no_secret_leaked(&[&s1, &s2, &s3]);
}

/// Grace: a key still used after grace_days is stuck (reported, kept); with
/// force_after_grace it is deactivated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_without_and_with_force() {
    let lab = Lab::new(&[("IAM_WARDEN_ROTATION__GRACE_DAYS", "1")]).await;
    let ep = lab.acct.endpoint.clone();
    lab.acct.user("svc").await;
    let (k1, s1) = lab.key_with_secret("svc").await;
    use_key(&ep, &k1, &s1).await;
    lab.enforce(2.5, &[]);
    assert_eq!(lab.phase("svc", &k1).await.as_deref(), Some("draining"));
    // +4 d: grace over, k1 used 4 days ago (< drain_quiet) → stuck, kept.
    let out = lab.enforce(4.0, &[]);
    assert!(out.contains("rotation-stuck"), "{out}");
    assert_eq!(lab.phase("svc", &k1).await.as_deref(), Some("stuck"));
    assert_eq!(lab.status("svc", &k1).await, "Active");
    lab.enforce(4.5, &[]);
    assert_eq!(
        lab.status("svc", &k1).await,
        "Active",
        "stuck is only reported"
    );
    // With force_after_grace: deactivated.
    lab.enforce(5.0, &[("IAM_WARDEN_ROTATION__FORCE_AFTER_GRACE", "true")]);
    assert_eq!(lab.status("svc", &k1).await, "Inactive");
    assert_eq!(lab.phase("svc", &k1).await.as_deref(), Some("deactivated"));
    let s2 = str_of(&lab.secret("svc", "AWSCURRENT").await, "SecretAccessKey").to_string();
    lab.assert_no_secret_leaked(&[&s1, &s2]);
}

/// delivery = "none": warned, never a key created; stuck without another key; deactivated
/// once the user's own new key is in use and the old one quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_none_never_creates_keys() {
    let lab = Lab::new(&[
        ("IAM_WARDEN_ROTATION__DELIVERY", "none"),
        ("IAM_WARDEN_ROTATION__GRACE_DAYS", "1"),
    ])
    .await;
    let ep = lab.acct.endpoint.clone();
    lab.acct.user("self").await;
    let (k1, s1) = lab.key_with_secret("self").await;
    use_key(&ep, &k1, &s1).await;
    lab.enforce(1.5, &[]);
    assert_eq!(lab.phase("self", &k1).await.as_deref(), Some("warned"));
    lab.enforce(2.5, &[]);
    assert_eq!(lab.keys("self").await.len(), 1, "no key created");
    lab.enforce(3.5, &[]);
    assert_eq!(lab.phase("self", &k1).await.as_deref(), Some("stuck"));
    assert_eq!(lab.status("self", &k1).await, "Active");
    // The user rotates on their own and switches.
    let (k2, s2) = lab.key_with_secret("self").await;
    use_key(&ep, &k2, &s2).await;
    lab.enforce(12.0, &[]);
    assert_eq!(lab.status("self", &k1).await, "Inactive");
    assert_eq!(lab.status("self", &k2).await, "Active");
    assert_eq!(lab.keys("self").await.len(), 2);
    let listed = lab.sm().list_secrets().send().await.unwrap();
    assert!(listed.secret_list().is_empty(), "no secret stored");
}

/// SSM delivery; two active keys in use → no new key; exempt users untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_delivery_two_keys_and_exempt_users() {
    let lab = Lab::new(&[
        ("IAM_WARDEN_ROTATION__DELIVERY", "ssm"),
        (
            "IAM_WARDEN_ROTATION__NAME_TEMPLATE",
            "/iam-warden/{user}/access-key",
        ),
    ])
    .await;
    let ep = lab.acct.endpoint.clone();
    lab.acct.user("ssmuser").await;
    let (k1, s1) = lab.key_with_secret("ssmuser").await;
    use_key(&ep, &k1, &s1).await;
    lab.acct.user("two").await;
    let (a, sa) = lab.key_with_secret("two").await;
    let (b, sb) = lab.key_with_secret("two").await;
    use_key(&ep, &a, &sa).await;
    use_key(&ep, &b, &sb).await;
    // '@' is valid in an IAM user name, not in an SSM parameter name.
    lab.acct.user("bad@name").await;
    let (bk, sbk) = lab.key_with_secret("bad@name").await;
    use_key(&ep, &bk, &sbk).await;
    lab.acct
        .user_at("boss", "/", &[("iam-warden/exempt", "true")])
        .await;
    let (e1, se) = lab.key_with_secret("boss").await;
    use_key(&ep, &e1, &se).await;

    let out = lab.enforce(2.5, &[]);
    // SSM: a SecureString holding the new key, which works.
    let keys = lab.keys("ssmuser").await;
    assert_eq!(keys.len(), 2);
    let p = aws_sdk_ssm::Client::new(&lab.acct.sdk)
        .get_parameter()
        .name("/iam-warden/ssmuser/access-key")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let param = p.parameter().unwrap();
    assert_eq!(param.r#type().map(|t| t.as_str()), Some("SecureString"));
    let v: serde_json::Value = serde_json::from_str(param.value().unwrap()).unwrap();
    assert_eq!(str_of(&v, "AccessKeyId"), keys[1].0);
    let s2 = str_of(&v, "SecretAccessKey").to_string();
    assert!(caller_arn(&ep, &keys[1].0, &s2)
        .await
        .ends_with(":user/ssmuser"));
    // Two active keys in use: no third key, reported.
    assert_eq!(lab.keys("two").await.len(), 2);
    assert!(out.contains("two-active-keys"), "{out}");
    // A name invalid for one user: a finding for that user, nothing changed for it.
    assert_eq!(
        lab.keys("bad@name").await,
        vec![(bk.clone(), "Active".into())]
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let bad = report["plan"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["verdict"]["user"] == "bad@name")
        .unwrap();
    assert!(bad["verdict"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["check"] == "rotation-stuck"
            && f["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("SSM allows")));
    // Exempt: untouched, no tag.
    assert_eq!(lab.keys("boss").await, vec![(e1.clone(), "Active".into())]);
    assert!(!lab.tags("boss").await.keys().any(|k| k.starts_with(PREFIX)));
    lab.assert_no_secret_leaked(&[&s1, &s2]);
}

/// A crash right after each step of a rotation: the next pass resumes with exactly one new
/// key, the stored one, and the old key draining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_each_step_resumes_with_exactly_one_new_key() {
    for step in ["intent", "CreateAccessKey", "store", "draining"] {
        let lab = Lab::new(&[]).await;
        let ep = lab.acct.endpoint.clone();
        lab.acct.user("app").await;
        let (k1, s1) = lab.key_with_secret("app").await;
        use_key(&ep, &k1, &s1).await;
        let (code, _, out) = lab.run(
            &["enforce", "--once", "--confirm-large-change"],
            Some(2.5),
            &[("IAM_WARDEN_TEST_CRASH_AFTER", step)],
        );
        assert_ne!(code, 0, "{step}: the process was aborted: {out}");
        assert!(out.contains(&format!("test crash after {step}")), "{out}");
        let after_crash = lab.keys("app").await.len();
        lab.enforce(2.6, &[]);
        lab.enforce(2.7, &[]);
        let keys = lab.keys("app").await;
        assert_eq!(keys.len(), 2, "{step}: exactly one new key: {keys:?}");
        assert!(keys.iter().all(|(_, s)| s == "Active"), "{step}: {keys:?}");
        let new = keys.iter().find(|(k, _)| *k != k1).unwrap().0.clone();
        let cur = lab.secret("app", "AWSCURRENT").await;
        assert_eq!(
            str_of(&cur, "AccessKeyId"),
            new,
            "{step}: the stored key is the new key"
        );
        let s2 = str_of(&cur, "SecretAccessKey").to_string();
        assert!(caller_arn(&ep, &new, &s2).await.ends_with(":user/app"));
        assert_eq!(
            lab.phase("app", &k1).await.as_deref(),
            Some("draining"),
            "{step}"
        );
        let j = journal_actions(&lab.journal_path());
        let discarded = j.iter().any(|a| a.contains("-> discarded"));
        assert_eq!(
            discarded,
            step == "CreateAccessKey",
            "{step}: only a key whose secret was never stored is discarded (keys after the crash: {after_crash}): {j:#?}"
        );
        lab.assert_no_secret_leaked(&[&s1, &s2]);
    }
}

/// An unfinished rotation never takes a key a person made for its orphan new key: only a
/// key AWS created within minutes after the intent's recorded wall time can be the
/// rotation's. A person's key (made a day after an old intent, a day before the intent, or
/// with an intent that recorded no wall time) is left active and alone, the old key too,
/// and the pass reports rotation-stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_key_is_never_taken_for_an_interrupted_rotations_new_key() {
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let walls = [
        Some(Utc::now() - Duration::days(1)),
        Some(Utc::now() + Duration::days(1)),
        None,
    ];
    for wall in walls {
        let lab = Lab::new(&[]).await;
        let ep = lab.acct.endpoint.clone();
        lab.acct.user("app").await;
        let (k1, s1) = lab.key_with_secret("app").await;
        use_key(&ep, &k1, &s1).await;
        let (person, ps) = lab.key_with_secret("app").await;
        let mut intent = format!("phase=rotating since={}", fmt(lab.t0));
        if let Some(w) = wall {
            intent.push_str(&format!(" wall={}", fmt(w)));
        }
        lab.acct.tag("app", &format!("{PREFIX}{k1}"), &intent).await;
        for d in [2.6, 2.7] {
            let out = lab.enforce(d, &[]);
            assert!(out.contains("rotation-stuck"), "{wall:?}: {out}");
        }
        assert_eq!(
            lab.keys("app").await,
            vec![
                (k1.clone(), "Active".into()),
                (person.clone(), "Active".into())
            ],
            "{wall:?}: both keys kept, no new one"
        );
        assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("rotating"));
        let j = journal_actions(&lab.journal_path());
        assert!(
            !j.iter()
                .any(|a| a.contains(&person) && !a.starts_with("notify")),
            "{wall:?}: nothing done to the person's key: {j:#?}"
        );
        let printed = lab.printed.lock().unwrap().clone();
        assert!(!printed.contains(&s1) && !printed.contains(&ps));
    }
}

/// A store whose answer is lost after Secrets Manager applied it (the fault proxy answers
/// 500 after forwarding CreateSecret to moto; one attempt, no SDK retry): the stored key id
/// is read back, it is the new key, so the new key is kept and the old key drains; nothing
/// is discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_applied_despite_its_error_keeps_the_new_key() {
    use support::faults::FaultProxy;
    let proxy = FaultProxy::start(shared_moto(), 1, 0.0, &[]);
    let lab = Lab::new(&[]).await;
    let ep = lab.acct.endpoint.clone();
    lab.acct.user("app").await;
    let (k1, s1) = lab.key_with_secret("app").await;
    use_key(&ep, &k1, &s1).await;
    proxy.script("CreateSecret", "applied-then-500").await;
    lab.enforce(
        2.5,
        &[
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", proxy.url.as_str()),
            ("IAM_WARDEN_AWS__MAX_ATTEMPTS", "1"),
        ],
    );
    assert_eq!(
        proxy.stats().await["by_action"]["CreateSecret"]["applied-then-500"].as_u64(),
        Some(1)
    );
    let keys = lab.keys("app").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let cur = lab.secret("app", "AWSCURRENT").await;
    assert_eq!(
        str_of(&cur, "AccessKeyId"),
        keys[1].0,
        "the stored key is kept"
    );
    assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("draining"));
    let j = journal_actions(&lab.journal_path());
    assert!(!j.iter().any(|a| a.contains("-> discarded")), "{j:#?}");
    let s2 = str_of(&cur, "SecretAccessKey").to_string();
    assert!(caller_arn(&ep, &keys[1].0, &s2)
        .await
        .ends_with(":user/app"));
    lab.assert_no_secret_leaked(&[&s1, &s2]);
}

/// An intent tag without `wall=` (written by a person or an older version) and no other
/// key: the rotation resumes, and writes the intent again with its wall time before
/// CreateAccessKey, so that a crash right after the create still resumes with exactly one
/// new key (the orphan is recognised by its CreateDate, deleted, and the rotation redone).
/// With another key beside it, such an intent never resumes by itself (see above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_without_wall_time_resumes_only_when_no_other_key_exists() {
    let lab = Lab::new(&[]).await;
    let ep = lab.acct.endpoint.clone();
    lab.acct.user("app").await;
    let (k1, s1) = lab.key_with_secret("app").await;
    use_key(&ep, &k1, &s1).await;
    let since = lab.t0.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    lab.acct
        .tag(
            "app",
            &format!("{PREFIX}{k1}"),
            &format!("phase=rotating since={since}"),
        )
        .await;
    let (code, _, out) = lab.run(
        &["enforce", "--once", "--confirm-large-change"],
        Some(2.5),
        &[("IAM_WARDEN_TEST_CRASH_AFTER", "CreateAccessKey")],
    );
    assert_ne!(code, 0, "the process was aborted: {out}");
    assert_eq!(lab.keys("app").await.len(), 2, "the orphan new key");
    let intent = lab.tags("app").await[&format!("{PREFIX}{k1}")].clone();
    assert!(
        intent.starts_with(&format!("phase=rotating since={since} ")) && intent.contains(" wall="),
        "the intent was written again with its wall time, same since: {intent}"
    );
    lab.enforce(2.6, &[]);
    let keys = lab.keys("app").await;
    assert_eq!(keys.len(), 2, "exactly one new key: {keys:?}");
    let new = keys.iter().find(|(k, _)| *k != k1).unwrap().0.clone();
    let cur = lab.secret("app", "AWSCURRENT").await;
    assert_eq!(str_of(&cur, "AccessKeyId"), new);
    assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("draining"));
    let j = journal_actions(&lab.journal_path());
    assert!(j.iter().any(|a| a.contains("-> discarded")), "{j:#?}");
    let s2 = str_of(&cur, "SecretAccessKey").to_string();
    lab.assert_no_secret_leaked(&[&s1, &s2]);
}

/// Dry-run: a would-be phase change raises the owner's notice as a would-be notice
/// (journaled `dry_run`, never delivered); nothing is written to AWS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_journals_would_be_notices_and_writes_nothing() {
    let lab = Lab::new(&[("IAM_WARDEN_MODE", "dry-run")]).await;
    lab.acct
        .user_at("app", "/", &[("iam-warden/owner", "alice@example.com")])
        .await;
    let k1 = lab.acct.key("app").await;
    let (code, _, all) = lab.run(
        &["enforce", "--once", "--confirm-large-change"],
        Some(1.5),
        &[],
    );
    assert_eq!(code, 1, "dry-run with changes pending: {all}");
    assert_eq!(lab.phase("app", &k1).await, None, "no tag written");
    let notices: Vec<_> = Journal::read_all(&lab.journal_path())
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "notify")
        .collect();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    let n = &notices[0];
    assert_eq!(
        (n.target.as_str(), n.outcome.as_str(), n.mode.as_str()),
        ("key-expiring", "dry_run", "dry-run"),
        "{n:?}"
    );
    assert_eq!(n.user.as_deref(), Some("app"));
}

/// Speed: a pass with nothing due makes no rotation call at all (ages come from the
/// credential report); a pass with keys due makes rotation calls for those keys only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_calls_are_proportional_to_the_keys_due() {
    use iam_warden::app::{enforce, EnforceOptions};
    use iam_warden::config::{Config, Mode};
    let acct = Account::new(shared_moto()).await;
    for i in 0..5 {
        acct.user(&format!("u{i}")).await;
        acct.key(&format!("u{i}")).await;
    }
    acct.user("later").await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        mode: Mode::Enforce,
        state_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    cfg.baseline.credentials.max_key_age_days = 10;
    cfg.rotation.warn_days = 1;
    cfg.safety.max_users_changed_percent = 100.0;
    let rotation_ops = [
        "ListUserTags",
        "CreateAccessKey",
        "GetSecretValue",
        "CreateSecret",
        "PutSecretValue",
        "PutParameter",
        "GetParameter",
    ];
    let opts = |days: i64| EnforceOptions {
        at: Some(Utc::now() + Duration::days(days)),
        confirm_large_change: true,
        plan_only: false,
        journal: None,
    };
    // +2 days: nothing due (the warning is at 9 days).
    let clients = acct.clients();
    let report = enforce(&cfg, &clients, &opts(2)).await.unwrap();
    assert_eq!(report.failed(), 0);
    for op in rotation_ops {
        assert_eq!(clients.calls.count(op), 0, "{op} with nothing due");
    }
    let due: Vec<_> = report
        .plan
        .users
        .iter()
        .filter(|u| u.verdict.user.starts_with('u'))
        .map(|u| u.next_due)
        .collect();
    assert!(due.iter().all(Option::is_some), "{due:?}");
    // +11 days: the 5 keys are due: one rotation each, nothing for "later".
    let clients = acct.clients();
    let report = enforce(&cfg, &clients, &opts(11)).await.unwrap();
    assert_eq!(report.failed(), 0, "{}", report.to_text());
    assert_eq!(clients.calls.count("CreateAccessKey"), 5);
    assert_eq!(clients.calls.count("ListUserTags"), 5);
    assert_eq!(clients.calls.count("CreateSecret"), 5);
}

/// The applier re-checks the drain proof live, whatever the plan said: a key whose
/// replacement was never used, a key still in use, and a key with no rotation in progress
/// are never deactivated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_rechecks_the_drain_proof_live() {
    use iam_warden::apply::{Applier, Outcome};
    use iam_warden::baseline::plan::{Action, KeyRef, PlannedAction};
    use iam_warden::config::{Config, Mode};
    let lab = Lab::new(&[]).await;
    let ep = lab.acct.endpoint.clone();
    lab.acct.user("app").await;
    let (k1, s1) = lab.key_with_secret("app").await;
    use_key(&ep, &k1, &s1).await;
    lab.enforce(2.5, &[]);
    let k2 = lab.keys("app").await[1].0.clone();
    lab.acct.user("plain").await;
    let (p1, _) = lab.key_with_secret("plain").await;
    lab.acct.user("plain2").await;
    let (p2, sp2) = lab.key_with_secret("plain2").await;
    use_key(&ep, &p2, &sp2).await;

    let clients = lab.acct.clients();
    let snap = iam_warden::inventory::read_account(&clients).await.unwrap();
    let cfg = Config {
        mode: Mode::Enforce,
        state_dir: lab.dir.path().to_path_buf(),
        ..Default::default()
    };
    let applier = Applier::new(
        clients,
        &cfg,
        std::sync::Arc::new(Journal::open(&lab.journal_path()).unwrap()),
        None,
        &snap,
    );
    let deactivate = |user: &str, id: &str, new_key: Option<&str>| PlannedAction {
        action: Action::DeactivateRotatedKey {
            user: user.into(),
            key: KeyRef {
                id: Some(id.into()),
                slot: 1,
                created: Utc::now(),
            },
            new_key: new_key.map(str::to_string),
            drain_quiet_secs: 86_400,
            force: false,
        },
        reason: "test".into(),
        check: None,
    };
    let later = lab.t0 + Duration::days(20);
    // k2 was never used: k1 stays.
    let r = applier
        .apply(&snap, &deactivate("app", &k1, Some(&k2)), later)
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Skipped(w) if w.contains("not active and used yet")),
        "{:?}",
        r.outcome
    );
    assert_eq!(lab.status("app", &k1).await, "Active");
    // k2 used, but k1 used just now (within drain_quiet of the applier's clock): k1 stays.
    let s2 = str_of(&lab.secret("app", "AWSCURRENT").await, "SecretAccessKey").to_string();
    use_key(&ep, &k2, &s2).await;
    use_key(&ep, &k1, &s1).await;
    let r = applier
        .apply(&snap, &deactivate("app", &k1, Some(&k2)), Utc::now())
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Skipped(w) if w.contains("its consumer is still switching")),
        "{:?}",
        r.outcome
    );
    assert_eq!(lab.status("app", &k1).await, "Active");
    // Keys without a rotation in progress: never deactivated by this action.
    for (u, k, other) in [("plain", &p1, None), ("plain2", &p2, Some(k2.as_str()))] {
        let r = applier.apply(&snap, &deactivate(u, k, other), later).await;
        assert!(
            matches!(&r.outcome, Outcome::Skipped(w) if w.contains("no rotation in progress")),
            "{u}: {:?}",
            r.outcome
        );
        assert_eq!(lab.status(u, k).await, "Active", "{u}");
    }
    // With the proof true live, the same action deactivates k1.
    let r = applier
        .apply(&snap, &deactivate("app", &k1, Some(&k2)), later)
        .await;
    assert_eq!(r.outcome, Outcome::Applied);
    assert_eq!(lab.status("app", &k1).await, "Inactive");
    assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("deactivated"));
    lab.assert_no_secret_leaked(&[&s1, &s2, &sp2]);
}

/// A secret that cannot be stored (an SSM parameter at its 100-version limit whose oldest
/// version carries a label: PutParameter fails with ParameterMaxVersionLimitExceeded): the
/// new key is deleted at once (never an active key whose secret is lost), the pass reports
/// the failure, and the next pass, once the store works, rotates with exactly one new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_deletes_the_new_key_and_the_rotation_retries() {
    let lab = Lab::new(&[
        ("IAM_WARDEN_ROTATION__DELIVERY", "ssm"),
        (
            "IAM_WARDEN_ROTATION__NAME_TEMPLATE",
            "/iam-warden/{user}/access-key",
        ),
    ])
    .await;
    let ep = lab.acct.endpoint.clone();
    lab.acct.user("app").await;
    let (k1, s1) = lab.key_with_secret("app").await;
    use_key(&ep, &k1, &s1).await;
    let ssm = aws_sdk_ssm::Client::new(&lab.acct.sdk);
    let name = "/iam-warden/app/access-key";
    for i in 0..100 {
        ssm.put_parameter()
            .name(name)
            .value(format!("v{i}"))
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .unwrap();
    }
    ssm.label_parameter_version()
        .name(name)
        .parameter_version(1)
        .labels("pinned")
        .send()
        .await
        .unwrap();
    let (code, out, all) = lab.run(
        &[
            "enforce",
            "--once",
            "--confirm-large-change",
            "--output",
            "json",
        ],
        Some(2.5),
        &[],
    );
    assert_eq!(code, 1, "the failed write is reported: {all}");
    assert!(out.contains("could not be stored"), "{out}");
    assert_eq!(
        lab.keys("app").await,
        vec![(k1.clone(), "Active".into())],
        "the new key was deleted at once"
    );
    assert!(journal_actions(&lab.journal_path())
        .iter()
        .any(|a| a.contains("-> discarded")));
    assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("stuck"));
    ssm.unlabel_parameter_version()
        .name(name)
        .parameter_version(1)
        .labels("pinned")
        .send()
        .await
        .unwrap();
    // Not retried at every pass: a day after the failure (rotation.store_retry).
    let out = lab.enforce(2.6, &[]);
    assert!(out.contains("rotation-stuck"), "{out}");
    assert_eq!(lab.keys("app").await.len(), 1);
    lab.enforce(3.6, &[]);
    let keys = lab.keys("app").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let p = aws_sdk_ssm::Client::new(&lab.acct.sdk)
        .get_parameter()
        .name("/iam-warden/app/access-key")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(p.parameter().unwrap().value().unwrap()).unwrap();
    assert_eq!(str_of(&v, "AccessKeyId"), keys[1].0);
    let s2 = str_of(&v, "SecretAccessKey").to_string();
    assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("draining"));
    lab.assert_no_secret_leaked(&[&s1, &s2]);
}

/// A `kms_key_id` naming a KMS key that does not exist (moto does not check KMS: the fault
/// proxy in front of moto answers what Secrets Manager and SSM answer, `EncryptionFailure`
/// and `InvalidKeyId`): the pass fails with one line naming the key and the fix, the new
/// key is deleted at once, the old key stays active and untouched, the rotation is stuck
/// (tag, finding, metric event, owner notice) and not retried at every pass, and once the
/// key exists (here: without the proxy) the retry a day later rotates with one new key.
/// Nothing printed or journaled holds a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_kms_key_is_one_clear_error_and_a_stuck_rotation() {
    use support::faults::FaultProxy;
    let proxy = FaultProxy::start(shared_moto(), 1, 0.0, &[]);
    let missing = MISSING_KMS_KEY;
    for (delivery, template, env, operation, fault) in [
        (
            "secretsmanager",
            "iam-warden/{user}/access-key",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            "CreateSecret",
            "kms-encryption-failure",
        ),
        (
            "ssm",
            "/iam-warden/{user}/access-key",
            "AWS_ENDPOINT_URL_SSM",
            "PutParameter",
            "kms-invalid-key-id",
        ),
    ] {
        let lab = Lab::new(&[
            ("IAM_WARDEN_ROTATION__DELIVERY", delivery),
            ("IAM_WARDEN_ROTATION__NAME_TEMPLATE", template),
        ])
        .await;
        let ep = lab.acct.endpoint.clone();
        lab.acct
            .user_at("app", "/", &[("iam-warden/owner", "alice@example.com")])
            .await;
        let (k1, s1) = lab.key_with_secret("app").await;
        use_key(&ep, &k1, &s1).await;
        let faults_before = faults_of(&proxy, operation, fault).await;
        proxy.script(operation, fault).await;
        let via_proxy = [
            (env, proxy.url.as_str()),
            ("IAM_WARDEN_ROTATION__KMS_KEY_ID", missing),
        ];
        let (code, out, all) = lab.run(
            &["enforce", "--once", "--confirm-large-change"],
            Some(2.5),
            &via_proxy,
        );
        assert_eq!(code, 1, "{delivery}: the failed write is reported: {all}");
        assert_eq!(
            faults_of(&proxy, operation, fault).await,
            faults_before + 1,
            "{delivery}: the store went through the proxy and met the KMS error"
        );
        assert_failed_rotation_line(
            &out,
            &[
                missing,
                "rotation.kms_key_id",
                "exists",
                "deleted",
                "stays active",
            ],
        );
        assert_eq!(
            lab.keys("app").await,
            vec![(k1.clone(), "Active".into())],
            "{delivery}: the new key was deleted at once, the old key is active"
        );
        assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("stuck"));
        let j = journal_actions(&lab.journal_path());
        for want in [
            format!("rotation_phase {k1} -> stuck applied"),
            "notify rotation-stuck".to_string(),
            "delete_access_key".to_string(),
        ] {
            assert!(
                j.iter().any(|a| a.starts_with(&want)),
                "{delivery}: {want} journaled: {j:#?}"
            );
        }
        // The metric's event: one log line per emit.
        assert!(
            all.lines()
                .any(|l| l.contains("access-key rotation") && l.contains("\"event\":\"stuck\"")),
            "{delivery}: the stuck event was emitted: {all}"
        );
        // The next pass does not make another key: the finding says when it retries.
        let (code, text, all) = lab.run(&["enforce", "--once"], Some(2.6), &via_proxy);
        assert_eq!(code, 0, "{all}");
        assert!(
            text.contains("rotation-stuck") && text.contains("retried after"),
            "{text}"
        );
        assert_eq!(lab.keys("app").await.len(), 1);
        // The key fixed (no proxy): retried a day after the failure, one new key stored.
        lab.enforce(3.6, &[]);
        let keys = lab.keys("app").await;
        assert_eq!(keys.len(), 2, "{delivery}: {keys:?}");
        assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("draining"));
        let printed = lab.printed.lock().unwrap().clone();
        assert!(
            !printed.contains("\"SecretAccessKey\""),
            "{delivery}: no secret JSON printed"
        );
        lab.assert_no_secret_leaked(&[&s1]);
    }
}

/// The twin of the test above for the replacement of a quarantined (exposed) key: its
/// store fails (a KMS key that does not exist, answered by the fault proxy), the new key is
/// deleted at once, and the failure is recorded like a stuck rotation's: one
/// `rotation-stuck` journal line, metric event and owner notice naming the key, the store
/// and the fix. The quarantined key stays inactive and quarantined, and the next pass
/// before the retry makes no key: exactly one CreateAccessKey across two passes (counted
/// by the CloudTrail recorder in front of moto's IAM). Once the KMS key is fixed (no
/// proxy) the retry `rotation.store_retry` (12 h here) later replaces the key with one new
/// key. Nothing printed or journaled holds a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_keys_replacement_whose_store_fails_is_stuck_until_the_retry() {
    use support::faults::FaultProxy;
    use support::recorder::Recorder;
    let proxy = FaultProxy::start(shared_moto(), 1, 0.0, &[]);
    let rec = Recorder::start(shared_moto(), "0");
    let missing = MISSING_KMS_KEY;
    let lab = Lab::new(&[
        ("AWS_ENDPOINT_URL_IAM", rec.url.as_str()),
        ("IAM_WARDEN_ROTATION__STORE_RETRY", "12h"),
    ])
    .await;
    let ep = lab.acct.endpoint.clone();
    lab.acct
        .user_at("app", "/", &[("iam-warden/owner", "alice@example.com")])
        .await;
    let (k1, s1) = lab.key_with_secret("app").await;
    use_key(&ep, &k1, &s1).await;
    // Exposed: deactivated and tagged as the quarantine does.
    lab.acct
        .iam
        .update_access_key()
        .user_name("app")
        .access_key_id(&k1)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .unwrap();
    let created = lab
        .acct
        .iam
        .list_access_keys()
        .user_name("app")
        .send()
        .await
        .unwrap()
        .access_key_metadata()[0]
        .create_date()
        .map(|d| DateTime::<Utc>::from_timestamp(d.secs(), 0).unwrap())
        .unwrap();
    let quarantined = iam_warden::apply::quarantine_tag_value_of(lab.t0, created);
    lab.acct
        .tag("app", &format!("{PREFIX}{k1}"), &quarantined)
        .await;
    let creates = || async {
        rec.recorded(&lab.acct.id)
            .await
            .1
            .iter()
            .filter(|r| r["eventName"] == "CreateAccessKey")
            .count()
    };
    let faults_before = faults_of(&proxy, "CreateSecret", "kms-encryption-failure").await;
    proxy.script("CreateSecret", "kms-encryption-failure").await;
    let via_proxy = [
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", proxy.url.as_str()),
        ("IAM_WARDEN_ROTATION__KMS_KEY_ID", missing),
    ];
    let (code, out, all) = lab.run(
        &["enforce", "--once", "--confirm-large-change"],
        Some(0.1),
        &via_proxy,
    );
    assert_eq!(code, 1, "the failed replacement is reported: {all}");
    // rotation.store_retry = 12h after the failure (at +0.1 d).
    let retry_after = format!(
        "retried after {}",
        (lab.t0 + Duration::seconds(8640) + Duration::hours(12)).format("%Y-%m-%dT%H:%M:%SZ")
    );
    assert_eq!(
        faults_of(&proxy, "CreateSecret", "kms-encryption-failure").await,
        faults_before + 1,
        "the store went through the proxy and met the KMS error"
    );
    assert_failed_rotation_line(
        &out,
        &[
            k1.as_str(),
            missing,
            "rotation.kms_key_id",
            "deleted",
            "stays inactive and quarantined",
            &retry_after,
        ],
    );
    assert_eq!(
        lab.keys("app").await,
        vec![(k1.clone(), "Inactive".into())],
        "the new key was deleted at once, the exposed key stays inactive"
    );
    assert_eq!(creates().await, 1, "one CreateAccessKey in the first pass");
    let tags = lab.tags("app").await;
    let tag = &tags[&format!("{PREFIX}{k1}")];
    assert!(
        tag.starts_with(&quarantined) && tag.contains(" failed=") && !tag.contains("new="),
        "still quarantined, the failure recorded: {tag}"
    );
    let j = Journal::read_all(&lab.journal_path()).unwrap();
    let stuck: Vec<_> = j
        .iter()
        .filter(|e| e.action == "rotation_phase" && e.target == format!("{k1} -> stuck"))
        .collect();
    assert_eq!(stuck.len(), 1, "one stuck journal line: {j:#?}");
    for want in [
        missing,
        "rotation.kms_key_id",
        "stays inactive and quarantined",
    ] {
        assert!(
            stuck[0].reason.contains(want),
            "{want:?} in {:?}",
            stuck[0].reason
        );
    }
    let actions = journal_actions(&lab.journal_path());
    for want in ["notify rotation-stuck", "delete_access_key"] {
        assert_eq!(
            actions.iter().filter(|a| a.starts_with(want)).count(),
            1,
            "{want} once: {actions:#?}"
        );
    }
    let stuck_events = |all: &str| {
        all.lines()
            .filter(|l| {
                l.contains("access-key rotation")
                    && l.contains("\"event\":\"stuck\"")
                    && l.contains(&k1)
            })
            .count()
    };
    assert_eq!(stuck_events(&all), 1, "the stuck metric event once: {all}");
    // The next pass, the KMS key still missing: no key made, the finding says when.
    let (code, text, all) = lab.run(&["enforce", "--once"], Some(0.2), &via_proxy);
    assert_eq!(code, 0, "{all}");
    let finding = text
        .lines()
        .find(|l| l.contains("rotation-stuck") && l.contains(&k1))
        .unwrap_or_else(|| panic!("a rotation-stuck finding for {k1}: {text}"));
    for want in [
        retry_after.as_str(),
        "iam-warden/app/access-key",
        "rotation.kms_key_id",
    ] {
        assert!(finding.contains(want), "{want:?} in {finding}");
    }
    assert_eq!(creates().await, 1, "no CreateAccessKey in the second pass");
    assert_eq!(stuck_events(&all), 0, "no second stuck event: {all}");
    assert_eq!(lab.keys("app").await, vec![(k1.clone(), "Inactive".into())]);
    assert_eq!(
        journal_actions(&lab.journal_path())
            .iter()
            .filter(|a| a.starts_with("notify rotation-stuck"))
            .count(),
        1,
        "one notice"
    );
    // Fixed (no proxy): 12 h after the failure the replacement is retried, one new key.
    lab.enforce(0.7, &[]);
    assert_eq!(creates().await, 2);
    let keys = lab.keys("app").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], (k1.clone(), "Inactive".into()));
    assert_eq!(keys[1].1, "Active");
    let tag = &lab.tags("app").await[&format!("{PREFIX}{k1}")];
    assert!(
        tag.contains("phase=quarantined")
            && tag.contains(&format!("new={}", keys[1].0))
            && !tag.contains("failed="),
        "{tag}"
    );
    let v = lab.secret("app", "AWSCURRENT").await;
    assert_eq!(str_of(&v, "AccessKeyId"), keys[1].0);
    let s2 = str_of(&v, "SecretAccessKey").to_string();
    lab.assert_no_secret_leaked(&[&s1, &s2]);
}

/// A store that fails and a delete of the new key that fails too (the fault proxy in front
/// of Secrets Manager and IAM): the rotation is not marked stuck, since a new key whose
/// secret is lost is still active; its intent stays, so the next pass takes that key for
/// the interrupted rotation's, deletes it and rotates, with exactly one new key left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_that_cannot_be_deleted_after_a_failed_store_is_deleted_next_pass() {
    use support::faults::FaultProxy;
    let proxy = FaultProxy::start(shared_moto(), 1, 0.0, &[]);
    let lab = Lab::new(&[]).await;
    let ep = lab.acct.endpoint.clone();
    lab.acct.user("app").await;
    let (k1, s1) = lab.key_with_secret("app").await;
    use_key(&ep, &k1, &s1).await;
    let deletes_before = faults_of(&proxy, "DeleteAccessKey", "non-xml").await;
    proxy.script("CreateSecret", "kms-encryption-failure").await;
    proxy.script("DeleteAccessKey", "non-xml").await;
    let via_proxy = [
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", proxy.url.as_str()),
        ("AWS_ENDPOINT_URL_IAM", proxy.url.as_str()),
        ("IAM_WARDEN_ROTATION__KMS_KEY_ID", MISSING_KMS_KEY),
    ];
    let (code, out, all) = lab.run(
        &["enforce", "--once", "--confirm-large-change"],
        Some(2.5),
        &via_proxy,
    );
    assert_eq!(code, 1, "{all}");
    assert_eq!(
        faults_of(&proxy, "DeleteAccessKey", "non-xml").await,
        deletes_before + 1,
        "the delete met the fault"
    );
    assert_failed_rotation_line(
        &out,
        &[
            MISSING_KMS_KEY,
            "deleting it failed too",
            "the next pass deletes it",
        ],
    );
    let keys = lab.keys("app").await;
    assert_eq!(keys.len(), 2, "the new key is still there: {keys:?}");
    let orphan = keys[1].0.clone();
    assert_ne!(orphan, k1);
    let tag = lab.tags("app").await[&format!("{PREFIX}{k1}")].clone();
    assert!(
        tag.contains("phase=rotating") && tag.contains("wall="),
        "the intent stays: {tag}"
    );
    assert!(
        !journal_actions(&lab.journal_path())
            .iter()
            .any(|a| a.contains("-> stuck")),
        "not marked stuck"
    );
    // The next pass (the store and IAM work again): the orphan is deleted, one new key.
    lab.enforce(2.6, &[]);
    let keys = lab.keys("app").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], (k1.clone(), "Active".into()));
    assert_ne!(keys[1].0, orphan, "the orphan was deleted");
    assert_eq!(lab.phase("app", &k1).await.as_deref(), Some("draining"));
    let v = lab.secret("app", "AWSCURRENT").await;
    assert_eq!(str_of(&v, "AccessKeyId"), keys[1].0);
    assert!(journal_actions(&lab.journal_path())
        .iter()
        .any(|a| a.starts_with(&format!("rotation_phase {orphan} -> discarded"))));
    let s2 = str_of(&v, "SecretAccessKey").to_string();
    lab.assert_no_secret_leaked(&[&s1, &s2]);
}
