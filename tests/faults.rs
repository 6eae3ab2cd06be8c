//! Issue 9: enforcement through the `fault-proxy` (throttling, server errors, resets, lost
//! answers of applied writes, cut and foreign answers, hangs) against a real moto server
//! with the real aws-sdk clients.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use iam_warden::app::{self, EnforceOptions};
use iam_warden::apply::Outcome;
use iam_warden::config::{Config, Mode};
use iam_warden::journal::Journal;
use iam_warden::pacing::{Backoff, PacingSettings};
use serde_json::{json, Value};
use support::faults::FaultProxy;
use support::{bin, shared_moto, Account};

/// Fast pacing for tests: high rates, small backoff caps, a short per-try limit.
fn fast_pacing() -> PacingSettings {
    PacingSettings {
        writes_per_second: 100.0,
        write_burst: 100,
        reads_per_second: 100.0,
        min_rate_per_second: 20.0,
        max_attempts: 8,
        backoff: Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(200),
        },
        attempt_timeout: Duration::from_secs(2),
    }
}

fn enforce_cfg(dir: &Path) -> Config {
    let mut cfg = Config {
        mode: Mode::Enforce,
        state_dir: dir.to_path_buf(),
        ..Default::default()
    };
    cfg.safety.max_users_changed_percent = 100.0;
    cfg.safety.max_users_changed = 10_000;
    cfg
}

/// The same settings as environment for an `iam-warden` child process.
const FAST_ENV: &[(&str, &str)] = &[
    ("IAM_WARDEN_MODE", "enforce"),
    ("IAM_WARDEN_SAFETY__MAX_USERS_CHANGED_PERCENT", "100"),
    ("IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND", "100"),
    ("IAM_WARDEN_CONTROLLER__WRITE_BURST", "100"),
    ("IAM_WARDEN_CONTROLLER__READS_PER_SECOND", "100"),
    ("IAM_WARDEN_CONTROLLER__MIN_RATE_PER_SECOND", "20"),
    ("IAM_WARDEN_AWS__MAX_ATTEMPTS", "8"),
    ("IAM_WARDEN_AWS__BACKOFF_BASE_MS", "10"),
    ("IAM_WARDEN_AWS__BACKOFF_MAX_MS", "200"),
    ("IAM_WARDEN_AWS__ATTEMPT_TIMEOUT", "2s"),
];

/// The lab account: `n` users, a third drifting (console users outside the MFA group, and
/// programmatic users with a console password), the rest compliant (no console access).
async fn seed_lab(acct: &Account, n: usize) {
    for i in 0..n {
        let name = format!("lab-{i:03}");
        match i % 6 {
            0 => {
                acct.user(&name).await.password(&name).await;
            }
            3 => {
                acct.user_at(&name, "/svc/", &[("iam-warden/access", "programmatic")])
                    .await
                    .password(&name)
                    .await;
            }
            _ => {
                acct.user(&name).await;
            }
        }
    }
}

/// Everything the baseline touches, as moto now has it (read directly, not through the
/// proxy): users' groups, attached policies, console access and tags; groups and their
/// policies; customer policies with their version count and default document; the
/// password policy.
async fn digest(acct: &Account) -> Value {
    let iam = &acct.iam;
    let mut users = BTreeMap::new();
    let list = iam.list_users().max_items(1000).send().await.unwrap();
    for u in list.users() {
        let name = u.user_name();
        let mut groups: Vec<String> = iam
            .list_groups_for_user()
            .user_name(name)
            .send()
            .await
            .unwrap()
            .groups()
            .iter()
            .map(|g| g.group_name().to_string())
            .collect();
        groups.sort();
        let mut attached: Vec<String> = iam
            .list_attached_user_policies()
            .user_name(name)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_string))
            .collect();
        attached.sort();
        let console = iam.get_login_profile().user_name(name).send().await.is_ok();
        let tags: BTreeMap<String, String> = iam
            .list_user_tags()
            .user_name(name)
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        users.insert(
            name.to_string(),
            json!({"groups": groups, "attached": attached, "console": console, "tags": tags}),
        );
    }
    let mut groups = BTreeMap::new();
    for g in iam.list_groups().send().await.unwrap().groups() {
        let mut pols: Vec<String> = iam
            .list_attached_group_policies()
            .group_name(g.group_name())
            .send()
            .await
            .unwrap()
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_string))
            .collect();
        pols.sort();
        groups.insert(g.group_name().to_string(), pols);
    }
    let mut policies = BTreeMap::new();
    let local = iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .send()
        .await
        .unwrap();
    for p in local.policies() {
        let arn = p.arn().unwrap();
        let versions = iam
            .list_policy_versions()
            .policy_arn(arn)
            .send()
            .await
            .unwrap();
        let default = p.default_version_id().unwrap();
        let doc = iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(default)
            .send()
            .await
            .unwrap();
        let doc = doc
            .policy_version()
            .unwrap()
            .document()
            .unwrap()
            .to_string();
        policies.insert(
            p.policy_name().unwrap().to_string(),
            json!({
                "versions": versions.versions().len(),
                "document": iam_warden::inventory::decode_policy_document(&doc),
            }),
        );
    }
    let pp = iam
        .get_account_password_policy()
        .send()
        .await
        .ok()
        .and_then(|o| o.password_policy().map(|p| format!("{p:?}")));
    json!({"users": users, "groups": groups, "policies": policies, "password_policy": pp})
}

/// `iam-warden enforce --once` as a child process against `endpoint`: (exit code, stdout,
/// stderr).
fn enforce_cli(acct: &Account, dir: &Path, endpoint: &str) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["enforce", "--once", "--confirm-large-change"])
        .env_clear()
        .env("IAM_WARDEN_STATE_DIR", dir);
    for (k, v) in acct.env() {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint);
    for (k, v) in FAST_ENV {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A fault-free reference: the same lab seeded in another account and enforced directly.
async fn reference(n: usize) -> Value {
    let acct = Account::new(shared_moto()).await;
    seed_lab(&acct, n).await;
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let (code, out, err) = enforce_cli(&acct, dir.path(), &acct.endpoint);
    assert_eq!(code, 0, "fault-free reference run: {out}{err}");
    eprintln!("fault-free: one pass in {:?}", start.elapsed());
    digest(&acct).await
}

/// Run passes through `proxy` until one exits 0 (at most `max_passes`); the number of
/// passes it took.
fn passes_to_converge(acct: &Account, dir: &Path, proxy: &FaultProxy, max_passes: u32) -> u32 {
    let mut last = String::new();
    for pass in 1..=max_passes {
        let (code, out, err) = enforce_cli(acct, dir, &proxy.url);
        if code == 0 {
            return pass;
        }
        assert_eq!(code, 1, "pass {pass} exit code: {out}{err}");
        last = format!("{out}{err}");
    }
    panic!("not converged in {max_passes} passes; last pass said: {last}");
}

const LAB_USERS: usize = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_throttling_converges_in_one_pass() {
    let want = reference(LAB_USERS).await;
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    seed_lab(&acct, LAB_USERS).await;
    let proxy = FaultProxy::start(moto, 7, 0.3, &["throttle", "throttle-retry-after"]);
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let (code, out, err) = enforce_cli(&acct, dir.path(), &proxy.url);
    let took = start.elapsed();
    assert_eq!(code, 0, "one pass converges under throttling: {out}{err}");
    let throttled = proxy.count("throttle").await + proxy.count("throttle-retry-after").await;
    assert!(
        throttled >= 5,
        "the proxy throttled: {}",
        proxy.stats().await
    );
    assert_eq!(
        digest(&acct).await,
        want,
        "the same end state as without faults"
    );
    eprintln!("30% throttling: one pass in {took:?}, {throttled} throttles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_mixed_faults_converge_in_at_most_two_passes() {
    let want = reference(LAB_USERS).await;
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    seed_lab(&acct, LAB_USERS).await;
    let kinds = [
        "throttle",
        "500",
        "503",
        "reset",
        "applied-then-500",
        "applied-then-reset",
        "slow",
        "truncated",
        "non-xml",
    ];
    let proxy = FaultProxy::start(moto, 11, 0.3, &kinds);
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let passes = passes_to_converge(&acct, dir.path(), &proxy, 2);
    let took = start.elapsed();
    let stats = proxy.stats().await;
    let hit = stats["faults"].as_object().unwrap();
    assert!(
        hit.len() >= 3 && hit.values().filter_map(Value::as_u64).sum::<u64>() >= 5,
        "several kinds of faults happened: {stats}"
    );
    assert_eq!(
        digest(&acct).await,
        want,
        "the same end state as without faults: no duplicate versions, nothing missing"
    );
    // Every applied write is journaled once.
    let j = Journal::read_all(&dir.path().join("journal.jsonl")).unwrap();
    let mut applied = BTreeMap::new();
    for e in j.iter().filter(|e| e.outcome == "applied") {
        *applied
            .entry((e.action.clone(), e.user.clone(), e.target.clone()))
            .or_insert(0) += 1;
    }
    assert!(applied.values().all(|n| *n == 1), "{applied:?}");
    eprintln!("30% mixed faults: converged in {passes} pass(es), {took:?}; {stats}");
}

/// One scripted "applied, then the answer is lost" per write kind whose repetition is not
/// harmless: each is re-read and reported `applied`, journaled once, nothing duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_of_an_applied_write_is_applied_once() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    acct.user("con").await.password("con").await;
    acct.user_at("svc", "/svc/", &[("iam-warden/access", "programmatic")])
        .await
        .password("svc")
        .await;
    let proxy = FaultProxy::start(moto, 1, 0.0, &[]);
    for op in [
        "CreatePolicy",
        "CreateGroup",
        "AddUserToGroup",
        "DeleteLoginProfile",
    ] {
        proxy.script(op, "applied-then-500").await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = enforce_cfg(dir.path());
    let clients = proxy.clients(&acct, &fast_pacing());
    let r = app::enforce(&cfg, &clients, &EnforceOptions::default())
        .await
        .unwrap();
    assert_eq!(r.failed(), 0, "{}", r.to_text());
    let stats = proxy.stats().await;
    assert_eq!(stats["scripts_pending"], 0, "every fault hit: {stats}");
    for (action, want) in [
        ("create_policy", 1),
        ("create_group", 1),
        ("add_user_to_group", 1),
        ("delete_login_profile", 1),
    ] {
        let got: Vec<_> = r
            .results
            .iter()
            .filter(|x| x.planned.action.name() == action)
            .map(|x| x.outcome.clone())
            .collect();
        assert_eq!(got, vec![Outcome::Applied; want], "{action}");
    }
    let j = Journal::read_all(&dir.path().join("journal.jsonl")).unwrap();
    for action in [
        "create_policy",
        "create_group",
        "add_user_to_group",
        "delete_login_profile",
    ] {
        let n = j.iter().filter(|e| e.action == action).count();
        assert_eq!(n, 1, "{action} journaled once: {j:?}");
    }
    // Nothing duplicated; the account is on the baseline.
    let d = digest(&acct).await;
    assert_eq!(
        d["policies"]["iam-warden-require-mfa"]["versions"], 1,
        "{d}"
    );
    assert_eq!(
        d["users"]["con"]["groups"],
        json!(["iam-warden-require-mfa"])
    );
    assert_eq!(d["users"]["svc"]["console"], false);
    let again = app::enforce(
        &cfg,
        &proxy.clients(&acct, &fast_pacing()),
        &EnforceOptions::default(),
    )
    .await
    .unwrap();
    assert!(again.plan.is_empty(), "{}", again.to_text());

    // An edited policy with 5 versions: DeletePolicyVersion and CreatePolicyVersion lose
    // their answers too.
    let arn = format!(
        "arn:aws:iam::{}:policy/iam-warden/iam-warden-require-mfa",
        acct.id
    );
    for i in 0..4 {
        acct.iam
            .create_policy_version()
            .policy_arn(&arn)
            .policy_document(format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:Get{i}","Resource":"*"}}]}}"#
            ))
            .set_as_default(true)
            .send()
            .await
            .unwrap();
    }
    proxy
        .script("DeletePolicyVersion", "applied-then-reset")
        .await;
    proxy
        .script("CreatePolicyVersion", "applied-then-500")
        .await;
    let r = app::enforce(
        &cfg,
        &proxy.clients(&acct, &fast_pacing()),
        &EnforceOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.failed(), 0, "{}", r.to_text());
    assert_eq!(proxy.stats().await["scripts_pending"], 0);
    let names: Vec<_> = r
        .results
        .iter()
        .map(|x| (x.planned.action.name(), x.outcome.clone()))
        .collect();
    assert_eq!(names, vec![("create_policy_version", Outcome::Applied)]);
    let j = Journal::read_all(&dir.path().join("journal.jsonl")).unwrap();
    let n = |a: &str| j.iter().filter(|e| e.action == a).count();
    assert_eq!(
        (n("delete_policy_version"), n("create_policy_version")),
        (1, 1),
        "{j:?}"
    );
    assert!(j
        .iter()
        .filter(|e| e.action.ends_with("policy_version"))
        .all(|e| e.outcome == "applied"));
    let d = digest(&acct).await;
    assert_eq!(
        d["policies"]["iam-warden-require-mfa"]["versions"], 5,
        "one removed, one created, no duplicate: {d}"
    );
    let again = app::enforce(
        &cfg,
        &proxy.clients(&acct, &fast_pacing()),
        &EnforceOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        again.plan.is_empty(),
        "the baseline document is the default: {}",
        again.to_text()
    );
}

/// A write that meets "no such entity" on its FIRST attempt was already gone: skipped, as
/// before (only a repeat after a lost answer is `applied`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_gone_before_the_first_attempt_stays_skipped() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    acct.user_at("svc", "/svc/", &[("iam-warden/access", "programmatic")])
        .await
        .password("svc")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = enforce_cfg(dir.path());
    let clients = acct.clients();
    let snap = iam_warden::inventory::read_account(&clients).await.unwrap();
    let plan = iam_warden::baseline::plan::plan_account(&snap, &cfg, chrono::Utc::now()).unwrap();
    acct.iam
        .delete_login_profile()
        .user_name("svc")
        .send()
        .await
        .unwrap();
    let journal = std::sync::Arc::new(Journal::open(&cfg.journal_path()).unwrap());
    let applier = iam_warden::apply::Applier::new(clients, &cfg, journal, None, &snap);
    let u = plan.users.iter().find(|u| u.verdict.user == "svc").unwrap();
    let res = applier
        .apply_all(&snap, &u.actions, chrono::Utc::now())
        .await;
    assert_eq!(res.len(), 1);
    assert!(
        matches!(&res[0].outcome, Outcome::Skipped(s) if s.contains("no longer exists")),
        "{:?}",
        res[0].outcome
    );
}

/// Bad input: a cut 200, a 200 that is not XML, a hanging answer. Each is retried or ends
/// as a one-line error on that one user; the other users carry on; nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_foreign_and_hanging_answers_are_retried_or_fail_one_user_only() {
    let moto = shared_moto();
    let acct = Account::new(moto).await;
    for i in 0..6 {
        let name = format!("con-{i}");
        acct.user(&name).await.password(&name).await;
    }
    let proxy = FaultProxy::start(moto, 3, 0.0, &[]);
    for fault in ["truncated", "non-xml", "hang"] {
        proxy.script("AddUserToGroup", fault).await;
    }
    // A read hit by each of them is retried by the pacing layer.
    for fault in ["truncated", "non-xml", "hang"] {
        proxy.script("GetAccountAuthorizationDetails", fault).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = enforce_cfg(dir.path());
    let mut pacing = fast_pacing();
    pacing.attempt_timeout = Duration::from_secs(1);
    let clients = proxy.clients(&acct, &pacing);
    let start = Instant::now();
    let r = app::enforce(&cfg, &clients, &EnforceOptions::default())
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "{:?}",
        start.elapsed()
    );
    let stats = proxy.stats().await;
    assert_eq!(stats["faults"]["hang"], 2, "{stats}");
    assert_eq!(stats["faults"]["truncated"], 2, "{stats}");
    assert_eq!(stats["faults"]["non-xml"], 2, "{stats}");
    // Every user still reached the baseline: the cut answer was applied (re-read finds
    // it), the foreign page and the hang were not (re-read, sent again).
    let adds: Vec<_> = r
        .results
        .iter()
        .filter(|x| x.planned.action.name() == "add_user_to_group")
        .collect();
    assert_eq!(adds.len(), 6, "{}", r.to_text());
    for x in &adds {
        match &x.outcome {
            Outcome::Applied => {}
            Outcome::Failed(e) => assert!(!e.contains('\n'), "one line: {e}"),
            o => panic!("{o:?}"),
        }
    }
    let applied = adds
        .iter()
        .filter(|x| x.outcome == Outcome::Applied)
        .count();
    assert_eq!(applied, 6, "{}", r.to_text());
    for i in 0..6 {
        assert_eq!(
            digest_groups(&acct, &format!("con-{i}")).await,
            vec!["iam-warden-require-mfa"]
        );
    }

    // Bad answers that never stop: the user fails with one line; the next users go on.
    let proxy2 = FaultProxy::start(moto, 5, 0.0, &[]);
    acct.user("late-a").await.password("late-a").await;
    acct.user("late-b").await.password("late-b").await;
    for _ in 0..8 {
        proxy2.script("AddUserToGroup", "non-xml").await;
    }
    let clients = proxy2.clients(&acct, &pacing);
    let r = app::enforce(&cfg, &clients, &EnforceOptions::default())
        .await
        .unwrap();
    let out: Vec<_> = r
        .results
        .iter()
        .map(|x| {
            (
                x.planned.action.user().unwrap_or_default().to_string(),
                x.outcome.clone(),
            )
        })
        .collect();
    assert_eq!(out.len(), 2, "{out:?}");
    let Outcome::Failed(e) = &out[0].1 else {
        panic!("{out:?}")
    };
    assert!(!e.contains('\n') && e.contains("AddUserToGroup"), "{e}");
    assert_eq!(
        out[1].1,
        Outcome::Applied,
        "the next user carries on: {out:?}"
    );
}

async fn digest_groups(acct: &Account, user: &str) -> Vec<String> {
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
