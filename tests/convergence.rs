//! Issue 9: convergence under faults and after crashes. `enforce --once` and the daemon
//! (`iam-warden run`), on a lab account with aged keys (moto under libfaketime), reach
//! EXACTLY the canonical state of a fault-free run of the same lab (users, keys and their
//! status, groups and members, attached policies, policy versions, password policy, tags),
//! through the fault proxy at 30 % mixed faults, and after a SIGKILL at a random point
//! followed by a restart without faults. The journal stays consistent: every write the
//! final state shows has its `applied` line or, when the process was killed between the
//! call and its outcome, its `intent` line.
//!
//! Each kill seed is a fresh account on the shared moto; the kill delay is drawn from a
//! generator seeded with it, over [0, 3 × the fault-free pass] (plus 3 s of start-up for
//! the daemon), since kills run several at a time and a pass then takes longer than the
//! reference measured alone. `WARDEN_CRASH_SEEDS` (default 20) sets the number of kill
//! seeds per mode; `WARDEN_CRASH_PARALLEL` (default 4) how many of them run at once.

use crate::support;

use std::path::Path;
use std::process::Child;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::faults::FaultProxy;
use support::lab::{
    differences, digest, enforce_cli, journal_problems, journal_summary, spawn_warden, ENFORCE_ONCE,
};
use support::{Account, Moto};
use tokio::sync::{OnceCell, RwLock, Semaphore};

const LAB_USERS: usize = 48;
const DEADLINE: Duration = Duration::from_secs(90);

/// One moto under libfaketime for this test binary.
fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start(true))
}

/// moto's clock is shared: aged keys are made under the write lock (clock shifted), every
/// other dated creation (passwords, fresh keys) under the read lock (clock at now).
fn clock() -> &'static RwLock<()> {
    static CLOCK: OnceLock<RwLock<()>> = OnceLock::new();
    CLOCK.get_or_init(|| RwLock::new(()))
}

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a count; unset it or give a number")),
        Err(_) => default,
    }
}

/// The lab: `LAB_USERS` users, a third drifting. By `i % 9`: 0 a console user outside the
/// MFA group; 3 a programmatic user with a console password; 6 a programmatic user whose
/// key is 100 days old and never used; 1 and 4 programmatic users with a fresh key; the
/// rest plain users without console access.
async fn seed(acct: &Account) {
    let prog = [("iam-warden/access", "programmatic")];
    {
        let _shifted = clock().write().await;
        moto().set_clock_offset("-100d");
        for i in (0..LAB_USERS).filter(|i| i % 9 == 6) {
            let name = format!("lab-{i:03}");
            acct.user_at(&name, "/svc/", &prog).await;
            acct.key(&name).await;
        }
        moto().set_clock_offset("+0d");
    }
    let _now = clock().read().await;
    for i in (0..LAB_USERS).filter(|i| i % 9 != 6) {
        let name = format!("lab-{i:03}");
        match i % 9 {
            0 => {
                acct.user(&name).await.password(&name).await;
            }
            3 => {
                acct.user_at(&name, "/svc/", &prog)
                    .await
                    .password(&name)
                    .await;
            }
            1 | 4 => {
                acct.user_at(&name, "/svc/", &prog).await;
                acct.key(&name).await;
            }
            _ => {
                acct.user(&name).await;
            }
        }
    }
}

/// The fault-free reference, shared by every test: the seeded digest, the enforced one,
/// and how long one fault-free `enforce --once` pass took.
struct Expected {
    initial: Value,
    want: Value,
    pass: Duration,
}

async fn expected() -> Arc<Expected> {
    static EXPECTED: OnceCell<Arc<Expected>> = OnceCell::const_new();
    EXPECTED
        .get_or_init(|| async {
            let acct = Account::new(moto()).await;
            seed(&acct).await;
            let initial = digest(&acct).await;
            let dir = tempfile::tempdir().unwrap();
            let start = Instant::now();
            let (code, out) = enforce_patient(&acct, dir.path());
            let pass = start.elapsed();
            assert_eq!(code, 0, "fault-free reference run: {out}");
            let want = digest(&acct).await;
            let problems = journal_problems(dir.path(), &initial, &want);
            assert!(problems.is_empty(), "reference journal: {problems:?}");
            let (code, out) = enforce_patient(&acct, dir.path());
            assert!(
                code == 0 && digest(&acct).await == want,
                "the reference is a fixed point: {out}"
            );
            eprintln!("fault-free reference: one enforce pass of {LAB_USERS} users in {pass:?}");
            Arc::new(Expected {
                initial,
                want,
                pass,
            })
        })
        .await
        .clone()
}

fn assert_same(got: &Value, want: &Value, what: &str) {
    assert!(
        got == want,
        "{what}: not the fault-free state: {:#?}",
        differences(got, want, 20)
    );
}

fn assert_journal(dir: &Path, e: &Expected, got: &Value, what: &str) {
    let problems = journal_problems(dir, &e.initial, got);
    assert!(problems.is_empty(), "{what}: journal: {problems:#?}");
}

/// Without faults a slow answer is only a loaded moto (a shared CI machine): wait for it.
const PATIENT: (&str, &str) = ("IAM_WARDEN_AWS__ATTEMPT_TIMEOUT", "20s");

/// `iam-warden run` on `acct` through `endpoint`: resync every 10 s, no event sources;
/// `patient`: [`PATIENT`].
fn spawn_daemon(acct: &Account, dir: &Path, endpoint: &str, patient: bool) -> Child {
    let mut env = vec![
        ("IAM_WARDEN_SERVER__LISTEN", "127.0.0.1:0"),
        ("IAM_WARDEN_RESYNC__INTERVAL", "10s"),
        ("IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED", "false"),
        ("IAM_WARDEN_LOG_FORMAT", "json"),
    ];
    if patient {
        env.push(PATIENT);
    }
    spawn_warden(
        &["run"],
        acct,
        dir,
        endpoint,
        &env,
        Some(&dir.join("daemon.log")),
    )
}

/// `enforce --once` without faults, [`PATIENT`]: (exit code, its output).
fn enforce_patient(acct: &Account, dir: &Path) -> (i32, String) {
    let log = dir.join("enforce.log");
    let mut child = spawn_warden(
        ENFORCE_ONCE,
        acct,
        dir,
        &acct.endpoint,
        &[PATIENT],
        Some(&log),
    );
    let status = child.wait().expect("wait for iam-warden");
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

/// Poll (with a deadline) until the account's digest is `want`; the daemon must keep
/// running meanwhile.
async fn wait_converged(acct: &Account, daemon: &mut Child, dir: &Path, want: &Value, what: &str) {
    let start = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        let got = digest(acct).await;
        if &got == want {
            return;
        }
        let log = || std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!(
                "{what}: the daemon exited ({status}) before converging: {}",
                log()
            );
        }
        if start.elapsed() > DEADLINE {
            let log = log();
            let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
            panic!(
                "{what}: not converged after {DEADLINE:?}: {:#?}\nlast daemon log lines (newest first):\n{tail}",
                differences(&got, want, 20)
            );
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(500));
    }
}

const MIXED: &[&str] = &[
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

fn assert_faults_happened(stats: &Value) {
    let hit = stats["faults"].as_object().cloned().unwrap_or_default();
    let total: u64 = hit.values().filter_map(Value::as_u64).sum();
    assert!(
        hit.len() >= 4 && total >= 20,
        "several kinds of faults happened: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_once_under_thirty_percent_mixed_faults_reaches_the_fault_free_state() {
    let e = expected().await;
    let acct = Account::new(moto()).await;
    seed(&acct).await;
    assert_same(&digest(&acct).await, &e.initial, "seeded");
    let proxy = FaultProxy::start(moto(), 21, 0.3, MIXED);
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut passes = 0;
    let mut last = String::new();
    for pass in 1..=3 {
        let (code, out, err) = enforce_cli(&acct, dir.path(), &proxy.url);
        passes = pass;
        if code == 0 {
            break;
        }
        assert_eq!(code, 1, "pass {pass} exit code: {out}{err}");
        last = format!("{out}{err}");
    }
    let took = start.elapsed();
    let stats = proxy.stats().await;
    let got = digest(&acct).await;
    assert_same(&got, &e.want, &format!("after {passes} passes ({last})"));
    assert_journal(dir.path(), &e, &got, "enforce under faults");
    assert_faults_happened(&stats);
    eprintln!(
        "enforce --once, 30% mixed faults: converged in {passes} pass(es), {took:?}; {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_under_thirty_percent_mixed_faults_reaches_the_fault_free_state() {
    let e = expected().await;
    let acct = Account::new(moto()).await;
    seed(&acct).await;
    let proxy = FaultProxy::start(moto(), 22, 0.3, MIXED);
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut daemon = spawn_daemon(&acct, dir.path(), &proxy.url, false);
    wait_converged(
        &acct,
        &mut daemon,
        dir.path(),
        &e.want,
        "daemon under faults",
    )
    .await;
    let took = start.elapsed();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let got = digest(&acct).await;
    assert_same(&got, &e.want, "daemon under faults, after it stopped");
    assert_journal(dir.path(), &e, &got, "daemon under faults");
    let stats = proxy.stats().await;
    assert_faults_happened(&stats);
    eprintln!("daemon, 30% mixed faults: converged {took:?} after start; {stats}");
}

/// What a kill interrupted, for the summary.
#[derive(Debug, Default)]
struct KillRun {
    seed: u64,
    delay: Duration,
    /// The process had already exited when the kill came.
    exited_first: bool,
    journal_lines: usize,
    unsettled_intents: usize,
}

impl KillRun {
    /// Killed after the first journal line, before the process exited: while writing (or,
    /// for the daemon, possibly idle after converging).
    fn while_writing(&self) -> bool {
        !self.exited_first && self.journal_lines > 0
    }
}

async fn kill_and_restart(
    kill_seed: u64,
    daemon: bool,
    e: Arc<Expected>,
    range: Duration,
) -> KillRun {
    let mut rng = fastrand::Rng::with_seed(kill_seed);
    let delay = Duration::from_millis(rng.u64(0..=range.as_millis().max(1) as u64));
    let mode = if daemon { "daemon" } else { "enforce --once" };
    let what = format!("{mode} killed after {delay:?} (seed {kill_seed})");
    let acct = Account::new(moto()).await;
    seed(&acct).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = if daemon {
        spawn_daemon(&acct, dir.path(), &acct.endpoint, true)
    } else {
        spawn_warden(
            ENFORCE_ONCE,
            &acct,
            dir.path(),
            &acct.endpoint,
            &[PATIENT],
            Some(&dir.path().join("enforce.log")),
        )
    };
    tokio::time::sleep(delay).await;
    let exited_first = matches!(child.try_wait(), Ok(Some(_)));
    let _ = child.kill();
    let _ = child.wait();
    let j = journal_summary(dir.path());
    let run = KillRun {
        seed: kill_seed,
        delay,
        exited_first,
        journal_lines: j.lines,
        unsettled_intents: j.unsettled.len(),
    };
    // Restart, without faults.
    if daemon {
        let mut d = spawn_daemon(&acct, dir.path(), &acct.endpoint, true);
        wait_converged(&acct, &mut d, dir.path(), &e.want, &what).await;
        let _ = d.kill();
        let _ = d.wait();
    } else {
        let (code, out) = enforce_patient(&acct, dir.path());
        assert_eq!(code, 0, "{what}: the restart pass: {out}");
    }
    let got = digest(&acct).await;
    assert_same(&got, &e.want, &what);
    assert_journal(dir.path(), &e, &got, &what);
    run
}

async fn kill_seeds(daemon: bool, range: Duration) -> Vec<KillRun> {
    let e = expected().await;
    let seeds = env_count("WARDEN_CRASH_SEEDS", 20) as u64;
    let parallel = env_count("WARDEN_CRASH_PARALLEL", 4).max(1);
    let base = if daemon { 2_000 } else { 1_000 };
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for kill_seed in base..base + seeds {
        let (gate, e) = (gate.clone(), e.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            kill_and_restart(kill_seed, daemon, e, range).await
        });
    }
    let mut runs = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(run) => runs.push(run),
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }
    runs.sort_by_key(|r| r.seed);
    runs
}

fn summarize(mode: &str, runs: &[KillRun], took: Duration) {
    let count = |f: &dyn Fn(&KillRun) -> bool| runs.iter().filter(|r| f(r)).count();
    let intents: usize = runs.iter().map(|r| r.unsettled_intents).sum();
    eprintln!(
        "{mode}: {} kills in {took:?}: {} before the first journal line, {} after it (while writing, or an idle daemon), {} after the process had exited; {intents} intents left unsettled by the kills",
        runs.len(),
        count(&|r| !r.exited_first && r.journal_lines == 0),
        count(&KillRun::while_writing),
        count(&|r| r.exited_first),
    );
    for r in runs {
        eprintln!(
            "  seed {}: kill after {:?}: {} journal lines, {} unsettled intents, {}",
            r.seed,
            r.delay,
            r.journal_lines,
            r.unsettled_intents,
            match (r.exited_first, r.journal_lines) {
                (true, _) => "had exited",
                (false, 0) => "before the first journal line",
                (false, _) => "after the first journal line",
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_once_killed_at_random_points_then_restarted_reaches_the_same_state() {
    let e = expected().await;
    let start = Instant::now();
    // Kills run several at a time on a shared moto: a pass takes longer than the
    // reference measured alone.
    let runs = kill_seeds(false, e.pass * 3).await;
    summarize("enforce --once", &runs, start.elapsed());
    assert!(
        runs.iter().any(KillRun::while_writing),
        "at least one kill landed after the first journal line: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_killed_at_random_points_then_restarted_reaches_the_same_state() {
    let e = expected().await;
    // The daemon writes after its start-up and first account read; kills run several at
    // a time, so a pass takes longer than the reference measured alone.
    let range = e.pass * 3 + Duration::from_secs(3);
    let start = Instant::now();
    let runs = kill_seeds(true, range).await;
    summarize("daemon", &runs, start.elapsed());
    assert!(
        runs.iter().any(KillRun::while_writing),
        "at least one kill landed after the first journal line: {runs:?}"
    );
}

/// The exact window the intent line closes: DeleteLoginProfile reaches moto (applied), its
/// answer is held by the proxy, and the process is killed then. The journal shows the
/// write as an intent without outcome; the restart finds it done and does not repeat it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_a_write_and_its_outcome_leaves_the_intent_in_the_journal() {
    let acct = Account::new(moto()).await;
    {
        let _now = clock().read().await;
        acct.user_at("svc", "/svc/", &[("iam-warden/access", "programmatic")])
            .await
            .password("svc")
            .await;
    }
    let proxy = FaultProxy::start_with(moto(), 1, 0.0, &[], 60_000);
    proxy.script("DeleteLoginProfile", "slow").await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_warden(
        ENFORCE_ONCE,
        &acct,
        dir.path(),
        &proxy.url,
        &[("IAM_WARDEN_AWS__ATTEMPT_TIMEOUT", "50s")],
        Some(&dir.path().join("enforce.log")),
    );
    support::eventually("DeleteLoginProfile to reach moto", DEADLINE, || async {
        acct.iam
            .get_login_profile()
            .user_name("svc")
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "still waiting for the answer"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let j = journal_summary(dir.path());
    let pending: Vec<_> = j
        .unsettled
        .iter()
        .map(|e| (e.action.as_str(), e.user.as_deref()))
        .collect();
    assert_eq!(
        pending,
        vec![("delete_login_profile", Some("svc"))],
        "the applied write is in the journal as an intent: {j:?}"
    );
    let (code, out) = enforce_patient(&acct, dir.path());
    assert_eq!(code, 0, "{out}");
    let after = journal_summary(dir.path());
    assert!(
        !after
            .applied
            .iter()
            .any(|e| e.action == "delete_login_profile"),
        "the restart did not repeat it: {after:?}"
    );
    assert_eq!(after.unsettled.len(), 1, "{after:?}");
}
