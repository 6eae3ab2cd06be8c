//! `reconcile(key, ctx)`: observe one key live, plan, apply: the same planner and applier
//! as `enforce`, so the daemon and the one-shot commands can never disagree.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::dispatch::Dispatch;
use super::key::ReconcileKey;
use super::preflight::{gate_user, HeldChange, TrafficReader};
use crate::apply::{Applier, Outcome, GONE};
use crate::aws::Clients;
use crate::baseline::breaker::{Admission, Window};
use crate::baseline::checks::{evaluate_account, Check, Finding, UserVerdict};
use crate::baseline::impact::gate::gated_policy;
use crate::baseline::plan::cis as cis_plan;
use crate::baseline::plan::{
    inactive_marks, plan_account_level, plan_user, Action, PlannedAction, UserPlan,
};
use crate::baseline::policies::desired_policies;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::export::{self, background::Exporter, securityhub::Sweep};
use crate::inventory::{live, snapshot, AccountSnapshot, UserState};
use crate::journal::Entry;
use crate::metrics::{Metrics, QueueSource};

/// What a successful reconcile asks of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Done; run again at this time (something becomes due then), if any.
    Requeue(Option<Instant>),
    /// The user no longer exists: forget it.
    Dropped,
}

/// The daemon's clock: real time, or (tests only, `IAM_WARDEN_TEST_CLOCK`) a given start
/// time that advances with real time. Reconcile, resync and the breaker window read it;
/// journal timestamps stay real time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    offset: chrono::Duration,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::real()
    }
}

impl Clock {
    pub fn real() -> Clock {
        Clock {
            offset: chrono::Duration::zero(),
        }
    }

    /// A clock that reads `at` now and advances in real time from here.
    pub fn starting_at(at: DateTime<Utc>) -> Clock {
        Clock {
            offset: at - Utc::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    /// The real instant at which this clock reads `t` (now if `t` is past).
    pub fn instant_at(&self, t: DateTime<Utc>) -> Instant {
        Instant::now() + (t - self.now()).to_std().unwrap_or(Duration::ZERO)
    }
}

/// Everything a reconcile needs; shared by all workers.
pub struct Context {
    pub cfg: Config,
    pub clients: Clients,
    pub metrics: Arc<Metrics>,
    pub applier: Applier,
    pub dispatch: Dispatch,
    /// Account-level view (groups, policies, caller; `users` left empty) from the last
    /// resync or account reconcile.
    pub account: RwLock<AccountSnapshot>,
    /// The blast-radius breaker's window: users counted since the last resync (whose
    /// user count is the percentage base).
    pub breaker: Mutex<Window>,
    /// "Now" for planning and the breaker window.
    pub clock: Clock,
    /// Findings to Security Hub (`export.securityhub.enabled`), in the background.
    pub exporter: Option<Exporter>,
    /// Reads a user's recent calls for the pre-flight gate (`safety.preview_window`); None
    /// with the gate on holds every gated change (never applied blind).
    pub preflight: Option<Arc<dyn TrafficReader>>,
    /// The `baseline-would-deny` findings of the users whose changes the gate held at their
    /// last reconcile, so that the resync's export and compliance keep them.
    pub held: Mutex<HashMap<String, Vec<Finding>>>,
    /// The users a resync found to change while the account itself had changes to make
    /// (the baseline groups and policies their changes need), and when the resync enqueued
    /// them: they wait for the end of the account's reconcile
    /// ([`Context::release_after_account`]), so that none fails first on a group not
    /// created yet.
    pub after_account: Mutex<Option<(Vec<ReconcileKey>, Instant)>>,
}

impl Context {
    /// Hand `user`'s current findings to the exporter (its earlier ones that are gone are
    /// resolved); returns at once. `verdict` None: the user no longer exists.
    pub fn export_user(&self, name: &str, arn: Option<&str>, verdict: Option<&UserVerdict>) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let findings = match verdict {
            Some(v) => export::collect(exporter.scope(), &[], [(v, arn)]),
            None => Vec::new(),
        };
        exporter.submit(Sweep::User(name.to_string()), findings);
    }

    /// Remember the findings of `user`'s held changes (empty: forget the user).
    fn remember_held(&self, user: &str, findings: Vec<Finding>) {
        if let Ok(mut h) = self.held.lock() {
            if findings.is_empty() {
                h.remove(user);
            } else {
                h.insert(user.to_string(), findings);
            }
        }
    }

    /// `verdict` with the findings of its user's changes held at the last reconcile, while
    /// `actions` (the resync's plan of the user) still has such a change.
    pub fn with_held<'a>(
        &self,
        verdict: &'a UserVerdict,
        actions: &[PlannedAction],
    ) -> Cow<'a, UserVerdict> {
        if !actions.iter().any(|a| gated_policy(a).is_some()) {
            return Cow::Borrowed(verdict);
        }
        let held = self
            .held
            .lock()
            .ok()
            .and_then(|h| h.get(&verdict.user).cloned());
        match held {
            Some(findings) => {
                let mut v = verdict.clone();
                v.findings.extend(findings);
                Cow::Owned(v)
            }
            None => Cow::Borrowed(verdict),
        }
    }

    /// Enqueue a resync's `users` (received at `received`): at once, or, when the account
    /// has changes to make (`account_first`), the account first and the users when its
    /// reconcile ends (replacing users an earlier resync left waiting).
    pub fn enqueue_resync(&self, account_first: bool, users: Vec<ReconcileKey>, received: Instant) {
        if !account_first {
            return self.enqueue_users(users, received);
        }
        if let Ok(mut waiting) = self.after_account.lock() {
            *waiting = (!users.is_empty()).then_some((users, received));
        }
        self.dispatch
            .enqueue(ReconcileKey::Account, QueueSource::Resync, None, received);
    }

    /// The account's reconcile ended (applied or failed): enqueue the users waiting for it.
    pub fn release_after_account(&self) {
        let waiting = self.after_account.lock().ok().and_then(|mut w| w.take());
        if let Some((users, received)) = waiting {
            self.enqueue_users(users, received);
        }
    }

    fn enqueue_users(&self, users: Vec<ReconcileKey>, received: Instant) {
        for key in users {
            self.dispatch
                .enqueue(key, QueueSource::Resync, None, received);
        }
    }

    pub fn view(&self) -> AccountSnapshot {
        self.account.read().map(|a| a.clone()).unwrap_or_default()
    }

    /// Start a new breaker window (each resync) at `now` with `users_total` users.
    pub fn reset_breaker(&self, now: DateTime<Utc>, users_total: usize) {
        if let Ok(mut b) = self.breaker.lock() {
            b.reset(now, users_total);
        }
        self.metrics
            .set_breaker(&self.applier.account_id, false, "new resync window");
    }

    /// Trip the breaker for the rest of the window: journal and alert.
    pub fn trip_breaker(&self, user: Option<&str>, reason: &str, detail: &str) {
        if let Ok(mut b) = self.breaker.lock() {
            b.trip();
        }
        self.metrics.breaker_trip(&self.applier.account_id, reason);
        journal_breaker(&self.applier, user, reason, detail);
    }

    /// May `user`'s plan be applied in this window? Counts the user when its plan
    /// reduces existing access (`counts`); journals and alerts a trip.
    fn breaker_admits(&self, user: &str, counts: bool) -> bool {
        let admission = match self.breaker.lock() {
            Ok(mut b) => b.admit(user, counts, &self.cfg.safety),
            // A poisoned lock: apply only what takes nothing away.
            Err(_) => return !counts,
        };
        match &admission {
            Admission::Tripped(reason) => {
                self.metrics.breaker_trip(&self.applier.account_id, reason);
                journal_breaker(
                    &self.applier,
                    Some(user),
                    reason,
                    "blast-radius breaker tripped; users losing access are not changed until the next resync window",
                );
            }
            Admission::Overridden(Some(reason)) => tracing::warn!(
                reason = reason.as_str(),
                "blast-radius breaker over its limit, let through by safety.confirm_large_change"
            ),
            _ => {}
        }
        admission.applies()
    }

    /// When to reconcile a user the breaker blocked again (the window's end).
    fn breaker_retry_at(&self, now: DateTime<Utc>) -> Instant {
        let interval = self.cfg.resync.interval.get();
        let at = self
            .breaker
            .lock()
            .map(|b| b.retry_at(now, interval))
            .unwrap_or(now);
        // `now` is this clock's: the window's end is turned into a real instant by it.
        Instant::now() + (at - now).to_std().unwrap_or(interval)
    }
}

/// Journal a breaker trip as its own `breaker` entry (not an IAM write, so not counted in
/// `iam_warden_writes_total`).
pub fn journal_breaker(applier: &Applier, user: Option<&str>, reason: &str, detail: &str) {
    let entry = Entry {
        time: Utc::now(),
        account: applier.account_id.clone(),
        user: user.map(str::to_string),
        action: "breaker".into(),
        target: "whole account".into(),
        reason: reason.to_string(),
        mode: applier.mode.to_string(),
        outcome: "skipped".into(),
        error: Some(detail.to_string()),
    };
    if let Err(e) = applier.journal.record(&entry) {
        tracing::error!(error = %e, "journal write failed");
    }
}

/// Journal each held change as a skipped write with the gate's reason (as `enforce` does).
pub fn journal_held(applier: &Applier, held: &[HeldChange]) {
    for h in held {
        applier.record_skipped(&h.planned, &h.reason);
    }
}

/// Reconcile one key.
pub async fn reconcile(key: &ReconcileKey, ctx: &Context) -> Result<Next> {
    match key {
        ReconcileKey::User(name) => reconcile_user(name, ctx).await,
        ReconcileKey::Account => reconcile_account(ctx).await,
    }
}

async fn reconcile_user(name: &str, ctx: &Context) -> Result<Next> {
    let Some(user) = live::read_user(&ctx.clients.iam, name).await? else {
        tracing::info!(user = name, "user no longer exists; dropped");
        ctx.remember_held(name, Vec::new());
        ctx.export_user(name, None, None);
        return Ok(Next::Dropped);
    };
    let now = ctx.clock.now();
    let view = ctx.view();
    let mut plan = plan_user(&user, &view, &ctx.cfg, now)?;
    // The pre-flight gate (opt-in): a change that would break the user's recent calls is
    // held (finding, metric, journal line) and judged again at the next pass.
    let held = gate_user(
        &ctx.cfg,
        ctx.preflight.as_deref(),
        &user,
        &view.caller_arn,
        &mut plan,
        now,
        Some(&ctx.metrics),
    )
    .await?;
    journal_held(&ctx.applier, &held);
    ctx.remember_held(
        name,
        plan.verdict
            .findings
            .iter()
            .filter(|f| matches!(f.check, Check::BaselineWouldDeny))
            .cloned()
            .collect(),
    );
    // The findings as observed now (those the actions below fix go at the next reconcile).
    ctx.export_user(name, Some(&user.arn), Some(&plan.verdict));
    let requeue =
        requeue_after(&user, &ctx.cfg, plan.next_due, now).map(|wait| Instant::now() + wait);
    if plan.actions.is_empty() {
        return Ok(Next::Requeue(requeue));
    }
    if !ctx.breaker_admits(name, plan.counts_toward_breaker()) {
        return Ok(Next::Requeue(Some(ctx.breaker_retry_at(now))));
    }
    let results = ctx.applier.apply_all(&view, &plan.actions, now).await;
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(e) => Some(format!("{}: {e}", r.planned.action.name())),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        return Err(Error::Other(format!(
            "user {name}: {} write(s) failed: {}",
            failed.len(),
            failed.join("; ")
        )));
    }
    // The user exists (read above): a group not found does not exist yet — the account
    // reconcile creates the baseline groups, perhaps at this moment. Retried with the
    // queue's backoff rather than left for the next resync.
    if let Some(group) = results
        .iter()
        .find_map(|r| match (&r.planned.action, &r.outcome) {
            (Action::AddUserToGroup { group, .. }, Outcome::Skipped(why))
                if why.starts_with(GONE) =>
            {
                Some(group)
            }
            _ => None,
        })
    {
        return Err(Error::Other(format!(
            "user {name}: group {group} does not exist (yet): the account reconcile creates the baseline groups; retried"
        )));
    }
    Ok(Next::Requeue(requeue))
}

/// The account key: the baseline's policies and groups, the password policy, and, with
/// an opt-in CIS action on (`cis.enforces()`), the CIS account actions. Those need the
/// whole account with its CIS facts (a group's members, the certificates, the roles):
/// then the account reconcile reads what a resync reads, and publishes
/// `account_check_failing` from what it observed after its writes. Without one, it reads
/// the account level only (the resync reads the CIS facts once per interval).
async fn reconcile_account(ctx: &Context) -> Result<Next> {
    let cis = ctx.cfg.cis.enforces();
    let read = || async {
        if cis {
            let regions = ctx.cfg.cis.analyzer_regions(&ctx.cfg.aws.region);
            snapshot::read_account_cis(&ctx.clients, &regions).await
        } else {
            snapshot::read_account_level(&ctx.clients).await
        }
    };
    let snap = read().await?;
    let now = ctx.clock.now();
    let desired = desired_policies(&ctx.cfg)?;
    let (mut actions, _) = plan_account_level(&snap, &ctx.cfg, &desired);
    let (cis_actions, skipped) = cis_plan::account_actions(&snap, &ctx.cfg, now);
    let mut retry = None;
    for a in cis_actions {
        // A group losing a policy: each member is counted in the breaker's window.
        let members = a.action.members_losing_access();
        if members.iter().all(|m| ctx.breaker_admits(m, true)) {
            actions.push(a);
        } else {
            ctx.applier.record_skipped(
                &a,
                "blast-radius breaker: its members would lose access; retried in the next window",
            );
            retry = Some(ctx.breaker_retry_at(now));
        }
    }
    for s in &skipped {
        ctx.applier.record_skipped(&s.planned, &s.skipped);
    }
    let mut fresh = snap;
    if !actions.is_empty() {
        let results = ctx.applier.apply_all(&fresh, &actions, now).await;
        let failed = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
            .count();
        // Observe what the writes made, for the user reconciles that follow.
        fresh = read().await?;
        if failed > 0 {
            publish_account(ctx, &fresh, now);
            store_view(ctx, fresh);
            return Err(Error::Other(format!("account: {failed} write(s) failed")));
        }
    }
    publish_account(ctx, &fresh, now);
    store_view(ctx, fresh);
    Ok(Next::Requeue(retry))
}

/// With the CIS facts read: `account_check_failing{check}` from them.
fn publish_account(ctx: &Context, snap: &AccountSnapshot, now: DateTime<Utc>) {
    if snap.cis.is_some() {
        ctx.metrics.set_account_checks(
            &ctx.applier.account_id,
            &evaluate_account(snap, &ctx.cfg, now),
        );
    }
}

pub(crate) fn store_view(ctx: &Context, mut snap: AccountSnapshot) {
    snap.users.clear();
    snap.users_read_live.clear();
    if let Ok(mut v) = ctx.account.write() {
        // An account-level read has no CIS facts: keep the last resync's.
        if snap.cis.is_none() {
            snap.cis = v.cis.take();
        }
        *v = snap;
    }
}

/// When to reconcile `user` again: the earlier of [`next_due`] (unused credentials) and
/// `rotation_due` (the rotation's next phase, `UserPlan::next_due`), as a wait from
/// `now` clamped to [1 minute, 1 week]; `None` when nothing is due. Pure.
pub fn requeue_after(
    user: &UserState,
    cfg: &Config,
    rotation_due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let rotation = rotation_due
        .filter(|d| *d > now)
        .and_then(|d| (d - now).to_std().ok())
        .map(|w| w.clamp(MIN_WAIT, MAX_WAIT));
    match (next_due(user, cfg, now), rotation) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The users of a resync's plan to schedule at their next rotation phase: those with
/// nothing to do now whose next phase falls due by `horizon` (the next resync; later ones
/// are that resync's). So after a restart the schedule is rebuilt from the tags. Pure.
pub fn due_before(
    users: &[UserPlan],
    horizon: DateTime<Utc>,
) -> impl Iterator<Item = (&str, DateTime<Utc>)> {
    users
        .iter()
        .filter(|u| u.actions.is_empty())
        .filter_map(move |u| {
            u.next_due
                .filter(|d| *d <= horizon)
                .map(|d| (u.verdict.user.as_str(), d))
        })
}

const MIN_WAIT: Duration = Duration::from_secs(60);
const MAX_WAIT: Duration = Duration::from_secs(7 * 86_400);

/// How long from `now` until this user's plan can change by time alone (a key or password
/// crossing the unused limit, an inactive key's delete-after date), clamped to
/// [1 minute, 1 week]; `None` when nothing is due. Pure: the caller turns it into an
/// `Instant`.
pub fn next_due(user: &UserState, cfg: &Config, now: DateTime<Utc>) -> Option<Duration> {
    let cred = &cfg.baseline.credentials;
    if !cred.revoke_unused {
        return None;
    }
    let unused = chrono::Duration::days(i64::from(cred.unused_days) + 1);
    let mut dues: Vec<DateTime<Utc>> = Vec::new();
    for k in user.active_keys() {
        dues.push(k.last_used.unwrap_or(k.created) + unused);
    }
    if let Some(p) = &user.password {
        dues.push(p.last_used.or(p.changed).unwrap_or(user.created) + unused);
    }
    for m in inactive_marks(user) {
        dues.push(
            m.since + chrono::Duration::days(i64::from(cred.delete_inactive_key_after_days) + 1),
        );
    }
    let due = dues.into_iter().filter(|d| *d > now).min()?;
    // Days are whole; never sooner than a minute, never later than a week (resync covers).
    let wait = (due - now).to_std().ok()?.clamp(MIN_WAIT, MAX_WAIT);
    Some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::plan::InactiveMark;
    use crate::baseline::testkit::*;
    use crate::config::INACTIVE_SINCE_TAG_PREFIX;

    const MIN: Duration = Duration::from_secs(60);
    const DAY: Duration = Duration::from_secs(86_400);
    const SEC: Duration = Duration::from_secs(1);
    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    #[test]
    fn next_due_table() {
        let cfg = cfg(); // unused_days 45, delete after 30 days inactive
        let mark = |since: i64| {
            (
                format!("{INACTIVE_SINCE_TAG_PREFIX}AKIA1"),
                InactiveMark::tag_value(days_ago(since), days_ago(100)),
            )
        };
        let table: Vec<(&str, UserState, Option<Duration>)> = vec![
            ("no credentials", user("n").build(), None),
            (
                // Crosses the limit once 46 whole days have passed: 6 days from now.
                "key used 40 days ago",
                user("s").keys(&[key("AKIA1", 100, Some(40))]).build(),
                Some(6 * DAY),
            ),
            (
                "key used yesterday: capped at a week",
                user("s").keys(&[key("AKIA1", 100, Some(1))]).build(),
                Some(WEEK),
            ),
            (
                "key already over the limit: nothing in the future",
                user("s").keys(&[key("AKIA1", 100, Some(60))]).build(),
                None,
            ),
            (
                "password used 43 days ago",
                user("a").password(Some(43), 100).build(),
                Some(3 * DAY),
            ),
            (
                "password never used, set 44 days ago",
                user("a").password(None, 44).build(),
                Some(2 * DAY),
            ),
            (
                "inactive key marked 29 days ago",
                user("s")
                    .keys(&[inactive(key("AKIA1", 100, Some(80)))])
                    .tag(&mark(29).0, &mark(29).1)
                    .build(),
                Some(2 * DAY),
            ),
            (
                "the earliest of several",
                user("s")
                    .password(Some(44), 100)
                    .keys(&[key("AKIA1", 100, Some(40))])
                    .build(),
                Some(2 * DAY),
            ),
        ];
        for (name, u, want) in table {
            assert_eq!(next_due(&u, &cfg, now()), want, "{name}");
        }
        // Never sooner than a minute.
        let u = user("s").keys(&[key("AKIA1", 100, Some(40))]).build();
        let almost = now() + chrono::Duration::days(6) - chrono::Duration::seconds(5);
        assert_eq!(next_due(&u, &cfg, almost), Some(MIN));
        // Revocation off: nothing is due by time.
        let mut off = cfg.clone();
        off.baseline.credentials.revoke_unused = false;
        assert_eq!(next_due(&u, &off, now()), None);
    }

    #[test]
    fn requeue_takes_the_earlier_of_unused_and_rotation() {
        let cfg = cfg(); // unused_days 45
        let h = |n: i64| now() + chrono::Duration::hours(n);
        // Key used 40 days ago: unused due in 6 days.
        let used = user("s").keys(&[key("AKIA1", 100, Some(40))]).build();
        let none = user("n").build();
        type Row<'a> = (
            &'a str,
            &'a UserState,
            Option<DateTime<Utc>>,
            Option<Duration>,
        );
        let table: Vec<Row> = vec![
            ("nothing at all", &none, None, None),
            ("rotation only", &none, Some(h(5)), Some(5 * 3600 * SEC)),
            ("unused only", &used, None, Some(6 * DAY)),
            ("rotation first", &used, Some(h(30)), Some(30 * 3600 * SEC)),
            ("unused first", &used, Some(h(24 * 8)), Some(6 * DAY)),
            (
                "rotation in the past is ignored",
                &used,
                Some(h(-1)),
                Some(6 * DAY),
            ),
            (
                "rotation in the past, nothing else",
                &none,
                Some(h(-1)),
                None,
            ),
            (
                "rotation in 10 s: at least a minute",
                &none,
                Some(now() + chrono::Duration::seconds(10)),
                Some(MIN),
            ),
            (
                "rotation in a month: at most a week",
                &none,
                Some(h(24 * 30)),
                Some(WEEK),
            ),
        ];
        for (name, u, rot, want) in table {
            assert_eq!(requeue_after(u, &cfg, rot, now()), want, "{name}");
        }
    }

    #[test]
    fn resync_schedules_the_phases_due_before_the_next_resync() {
        let cfg = cfg(); // max 90 days, warn 14 days before
        let plan = |u: &UserState| plan_user(u, &snap_with_baseline_groups(), &cfg, now()).unwrap();
        // Warned in 30 minutes (created 76 days minus 30 minutes ago).
        let mut soon_key = key("AKIASOON00000000001", 76, Some(1));
        soon_key.created += chrono::Duration::minutes(30);
        let soon = user("soon").keys(&[soon_key]).build();
        let young = user("young")
            .keys(&[key("AKIAYOUNG0000000001", 10, Some(1))])
            .build();
        let due_now = user("due-now")
            .keys(&[key("AKIADUE000000000001", 80, Some(1))])
            .build();
        let plans = vec![
            plan(&soon),
            plan(&young),
            plan(&due_now),
            plan(&user("none").build()),
        ];
        assert!(
            !plans[2].actions.is_empty(),
            "due now: enqueued at once, not scheduled"
        );
        let hour = now() + chrono::Duration::hours(1);
        let got: Vec<_> = due_before(&plans, hour).collect();
        assert_eq!(got, vec![("soon", now() + chrono::Duration::minutes(30))]);
        // A horizon a year out takes the young key's warning too.
        let year = now() + chrono::Duration::days(365);
        let got: Vec<&str> = due_before(&plans, year).map(|(u, _)| u).collect();
        assert_eq!(got, vec!["soon", "young"]);
    }

    #[test]
    fn an_offset_clock_starts_at_the_given_time_and_advances() {
        let at: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        let c = Clock::starting_at(at);
        let read = c.now();
        assert!(
            read >= at && read - at < chrono::Duration::seconds(5),
            "{read}"
        );
        assert!(c.now() >= read, "never goes back");
        let real = Clock::real().now();
        assert!((real - Utc::now()).num_seconds().abs() < 5);
        // An instant an hour ahead on this clock is an hour ahead in real time.
        let later = c.instant_at(c.now() + chrono::Duration::hours(1));
        let wait = later - Instant::now();
        assert!(
            wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600),
            "{wait:?}"
        );
        assert!(c.instant_at(at - chrono::Duration::days(1)) <= Instant::now());
    }
}
