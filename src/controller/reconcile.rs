//! `reconcile(key, ctx)`: observe one key live, plan, apply: the same planner and applier
//! as `enforce`, so the daemon and the one-shot commands can never disagree.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::dispatch::Dispatch;
use crate::apply::{Applier, Outcome};
use crate::aws::Clients;
use crate::baseline::checks::days_between;
use crate::baseline::plan::{inactive_marks, plan_account_level, plan_user};
use crate::baseline::policies::desired_policies;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::inventory::{live, snapshot, AccountSnapshot, UserState};
use crate::metrics::Metrics;
use crate::sources::event::ReconcileKey;

/// What a successful reconcile asks of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Done; run again at this time (something becomes due then), if any.
    Requeue(Option<Instant>),
    /// The user no longer exists: forget it.
    Dropped,
}

/// Users changed in the current breaker window (one resync interval).
#[derive(Debug)]
pub struct BreakerWindow {
    pub started: Instant,
    pub changed: HashSet<String>,
    pub tripped: bool,
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
    /// Number of users at the last resync (the breaker's percentage base).
    pub users_total: Mutex<usize>,
    pub breaker: Mutex<BreakerWindow>,
}

impl Context {
    pub fn view(&self) -> AccountSnapshot {
        self.account.read().map(|a| a.clone()).unwrap_or_default()
    }

    /// Start a new breaker window (each resync).
    pub fn reset_breaker(&self) {
        if let Ok(mut b) = self.breaker.lock() {
            b.started = Instant::now();
            b.changed.clear();
            b.tripped = false;
        }
        self.metrics.set_breaker(false, "new window");
    }

    /// May `user` be changed in this window? Counts it when yes.
    fn breaker_admits(&self, user: &str) -> bool {
        let total = self.users_total.lock().map(|t| *t).unwrap_or(0);
        let safety = &self.cfg.safety;
        let Ok(mut b) = self.breaker.lock() else {
            return false;
        };
        if b.changed.contains(user) {
            return true;
        }
        if b.tripped && !safety.confirm_large_change {
            return false;
        }
        let n = b.changed.len() + 1;
        let pct = if total == 0 {
            0.0
        } else {
            n as f64 * 100.0 / total as f64
        };
        let over = n > safety.max_users_changed as usize || pct > safety.max_users_changed_percent;
        if over && !safety.confirm_large_change {
            if !b.tripped {
                b.tripped = true;
                let reason = format!(
                    "this window would change {n} of {total} users; the limit is {} users or {}%",
                    safety.max_users_changed, safety.max_users_changed_percent
                );
                self.metrics.set_breaker(true, &reason);
                self.applier.record(
                    "breaker",
                    Some(user),
                    "whole account",
                    &reason,
                    &Outcome::Skipped(
                        "blast-radius breaker tripped; writes stop until the next resync window"
                            .into(),
                    ),
                );
            }
            return false;
        }
        b.changed.insert(user.to_string());
        true
    }

    fn breaker_window_end(&self) -> Instant {
        let started = self
            .breaker
            .lock()
            .map(|b| b.started)
            .unwrap_or_else(|_| Instant::now());
        started + self.cfg.resync.interval.get()
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
        return Ok(Next::Dropped);
    };
    let now = Utc::now();
    let view = ctx.view();
    let plan = plan_user(&user, &view, &ctx.cfg, now)?;
    let requeue = next_due(&user, &ctx.cfg, now);
    if plan.actions.is_empty() {
        return Ok(Next::Requeue(requeue));
    }
    if !ctx.breaker_admits(name) {
        return Ok(Next::Requeue(Some(ctx.breaker_window_end())));
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
    Ok(Next::Requeue(requeue))
}

async fn reconcile_account(ctx: &Context) -> Result<Next> {
    let snap = snapshot::read_account_level(&ctx.clients).await?;
    let desired = desired_policies(&ctx.cfg)?;
    let (actions, _) = plan_account_level(&snap, &ctx.cfg, &desired);
    let mut fresh = snap;
    if !actions.is_empty() {
        let results = ctx.applier.apply_all(&fresh, &actions, Utc::now()).await;
        let failed = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
            .count();
        // Observe what the writes made, for the user reconciles that follow.
        fresh = snapshot::read_account_level(&ctx.clients).await?;
        if failed > 0 {
            store_view(ctx, fresh);
            return Err(Error::Other(format!("account: {failed} write(s) failed")));
        }
    }
    store_view(ctx, fresh);
    Ok(Next::Requeue(None))
}

pub(crate) fn store_view(ctx: &Context, mut snap: AccountSnapshot) {
    snap.users.clear();
    snap.users_read_live.clear();
    if let Ok(mut v) = ctx.account.write() {
        *v = snap;
    }
}

/// The earliest future moment at which this user's plan can change by time alone (a key
/// or password crossing the unused limit, an inactive key's delete-after date).
pub fn next_due(user: &UserState, cfg: &Config, now: DateTime<Utc>) -> Option<Instant> {
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
    let wait = (due - now)
        .to_std()
        .ok()?
        .clamp(Duration::from_secs(60), Duration::from_secs(7 * 86_400));
    debug_assert!(days_between(now, due) >= 0);
    Some(Instant::now() + wait)
}
