//! One account's full resync: read the whole account, publish its compliance, enqueue the
//! users whose plan is not empty; and the loop that runs it every `resync.interval`,
//! retrying sooner while it fails, and reports the account up or down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::Readiness;
use crate::baseline::breaker::Verdict;
use crate::baseline::checks::evaluate_account;
use crate::baseline::plan::{plan_account, rotation};
use crate::controller::key::ReconcileKey;
use crate::controller::reconcile::{due_before, store_view, Context};
use crate::error::Result;
use crate::export::{self, securityhub::Sweep};
use crate::inventory;
use crate::metrics::{AccountStatus, QueueSource};

/// Resync now, then every `resync.interval`, until stopped. Each attempt is reported to
/// the readiness (ready once every account made its first attempt and one succeeded);
/// the account is up after a success, down (with the reason) after a failure.
pub(super) async fn resync_loop(
    ctx: Arc<Context>,
    readiness: Arc<Readiness>,
    limit: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let account = ctx.applier.account_id.clone();
    let mut failures = 0u32;
    let mut up = false;
    loop {
        let Some(slot) = slot(&limit, &mut stop).await else {
            return;
        };
        // Boxed: the loop's task is then small between resyncs (one per account); the
        // resync's own state lives only while it runs.
        let result = Box::pin(resync(&ctx)).await;
        drop(slot);
        // The snapshot is dropped by now: give its pages back.
        crate::memory::release_free_memory();
        let wait = match result {
            Ok(()) => {
                failures = 0;
                if !up {
                    AccountStatus {
                        account: &account,
                        up: true,
                        error: None,
                        retry_in: None,
                    }
                    .emit(&ctx.metrics);
                    up = true;
                }
                readiness.attempted(&account, true);
                ctx.cfg.resync.interval.get()
            }
            Err(e) => {
                failures += 1;
                ctx.metrics.resync_done(&account, false, Utc::now());
                // Retry sooner than the interval while failing.
                let wait = Duration::from_secs(5u64.saturating_mul(1 << failures.min(6)))
                    .min(ctx.cfg.resync.interval.get());
                let error = format!("resync failed: {e}");
                AccountStatus {
                    account: &account,
                    up: false,
                    error: Some(&error),
                    retry_in: Some(wait),
                }
                .emit(&ctx.metrics);
                up = false;
                readiness.attempted(&account, false);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One of the `accounts.concurrency` resync slots, or `None` once `stop` is set. An
/// organization's accounts start together and, unbounded, would read and hold all their
/// snapshots at the same moment, again at every interval.
async fn slot(
    limit: &Arc<Semaphore>,
    stop: &mut watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        permit = limit.clone().acquire_owned() => permit.ok(),
        _ = stop.changed() => None,
    }
}

/// Read the whole account, publish compliance metrics, enqueue only the users whose plan
/// is not empty (no per-user calls for compliant users), and the account key if needed.
pub async fn resync(ctx: &Context) -> Result<()> {
    let now = ctx.clock.now();
    let cis = &ctx.cfg.cis;
    let snap = if cis.enabled {
        let regions = cis.analyzer_regions(&ctx.cfg.aws.region);
        inventory::read_account_cis(&ctx.clients, &regions).await?
    } else {
        inventory::read_account(&ctx.clients).await?
    };
    let plan = plan_account(&snap, &ctx.cfg, now)?;
    // The password policy and, with `cis.enabled`, the CIS account checks.
    let account_findings = evaluate_account(&snap, &ctx.cfg, now);
    ctx.metrics
        .set_account_checks(&ctx.applier.account_id, &account_findings);
    if let Some(generated) = snap.report_generated {
        ctx.metrics
            .credential_report_age(&ctx.applier.account_id, generated, Utc::now());
    }
    // The findings of changes the pre-flight gate holds come from the users' reconciles.
    let verdicts: Vec<_> = plan
        .users
        .iter()
        .map(|u| ctx.with_held(&u.verdict, &u.actions))
        .collect();
    let (mut compliant, mut violating, mut exempt) = (0, 0, 0);
    let mut failing: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &verdicts {
        if v.exempt.is_some() {
            exempt += 1;
        } else if v.findings.is_empty() {
            compliant += 1;
        } else {
            violating += 1;
        }
        let mut checks: Vec<&str> = v.findings.iter().map(|f| f.check.id()).collect();
        checks.dedup();
        for c in checks {
            *failing.entry(c).or_insert(0) += 1;
        }
    }
    for f in &plan.account_findings {
        *failing.entry(f.check.id()).or_insert(0) += 1;
    }
    ctx.metrics.set_compliance(
        &ctx.applier.account_id,
        compliant,
        violating,
        exempt,
        &failing,
    );
    ctx.metrics.set_key_stats(
        &ctx.applier.account_id,
        &rotation::key_stats(&snap.users, &plan.users, now),
    );
    if let Some(exporter) = &ctx.exporter {
        // The whole account's findings; the earlier ones that are gone are resolved.
        let arns: BTreeMap<&str, &str> = snap
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.arn.as_str()))
            .collect();
        let findings = export::collect(
            exporter.scope(),
            &account_findings,
            verdicts
                .iter()
                .map(|v| (v.as_ref(), arns.get(v.user.as_str()).copied())),
        );
        exporter.submit(Sweep::All, findings);
    }
    let users_total = snap.users.len();
    let changed = plan.users_changed();
    let losing = plan.users_losing_access();
    store_view(ctx, snap);
    // A new breaker window; the resync's own plan may trip it at once.
    let verdict = Verdict::evaluate(losing, changed, users_total, &ctx.cfg.safety, false);
    let blocked = verdict.blocks();
    if blocked {
        if let Ok(mut b) = ctx.breaker.lock() {
            b.reset(now, users_total);
        }
        ctx.trip_breaker(
            None,
            &format!("resync: {}", verdict.describe()),
            "blast-radius breaker tripped at resync; only users whose changes take nothing away are enqueued",
        );
    } else {
        ctx.reset_breaker(now, users_total);
    }
    let users = plan
        .users
        .iter()
        .filter(|u| !u.actions.is_empty())
        // Tripped: only the users whose changes take nothing away.
        .filter(|u| !blocked || !u.counts_toward_breaker())
        .map(|u| ReconcileKey::User(u.verdict.user.clone()))
        .collect();
    // With account changes to make (a fresh account: the baseline groups), the users after
    // the account's reconcile.
    ctx.enqueue_resync(!plan.account_actions.is_empty(), users, Instant::now());
    // Rotation phases due before the next resync: scheduled at their time.
    let horizon =
        now + chrono::Duration::from_std(ctx.cfg.resync.interval.get()).unwrap_or_default();
    for (user, due) in due_before(&plan.users, horizon) {
        let key = ReconcileKey::User(user.to_string());
        if ctx.dispatch.queue().add_at(key, ctx.clock.instant_at(due)) {
            ctx.metrics.queue_added(QueueSource::Requeue);
        }
    }
    ctx.metrics
        .resync_done(&ctx.applier.account_id, true, Utc::now());
    tracing::info!(
        account = %ctx.applier.account_id,
        users = users_total,
        compliant,
        violating,
        exempt,
        to_reconcile = changed,
        losing_access = losing,
        "resync done"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn resyncs_wait_for_a_slot_and_stop_ends_the_wait() {
        let limit = Arc::new(Semaphore::new(1));
        let (stop_tx, mut stop) = watch::channel(false);
        let first = slot(&limit, &mut stop).now_or_never().flatten();
        assert!(first.is_some(), "the first account resyncs at once");
        // The second waits while the first resyncs...
        let mut second = Box::pin(async {
            let mut stop = stop_tx.subscribe();
            slot(&limit, &mut stop).await
        });
        assert!((&mut second).now_or_never().is_none());
        // ...and resyncs when the first is done.
        drop(first);
        assert!(second.now_or_never().flatten().is_some());
        // A wait ends without a slot on shutdown.
        let held = slot(&limit, &mut stop).now_or_never().flatten();
        assert!(held.is_some());
        let mut waiting = Box::pin(async {
            let mut stop = stop_tx.subscribe();
            slot(&limit, &mut stop).await
        });
        assert!((&mut waiting).now_or_never().is_none());
        stop_tx.send(true).unwrap();
        assert_eq!(waiting.now_or_never().map(|p| p.is_some()), Some(false));
        // Once stopped, no slot even when one is free.
        drop(held);
        assert!(slot(&limit, &mut stop).now_or_never().flatten().is_none());
    }
}
