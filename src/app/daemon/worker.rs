//! The workers of one account: each takes a key from the account's queue, then a permit of
//! the process-wide semaphore (`controller.workers` permits, FIFO), and reconciles.
//!
//! Fairness: an account has at most `controller.account_workers` workers, so a backlog
//! holds at most that many permits; a worker of another account that got a key queues for
//! the next permit released, ahead of the backlog's workers coming back for theirs (the
//! semaphore is first come, first served). A new key in a quiet account therefore waits
//! for at most `controller.workers` reconciles of the busy one.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{AccountSource, Config};
use crate::controller::key::ReconcileKey;
use crate::controller::queue::{Lease, Outcome as QueueOutcome, WorkQueue};
use crate::controller::reconcile::{reconcile, Context, Next};
use crate::metrics::{QueueSource, ReconcileDone, ReconcileResult};

/// The workers of one account: `controller.workers` with `accounts.source = "self"` (as
/// a single-account iam-warden always had), else `controller.account_workers`, at most
/// `controller.workers`.
pub(super) fn account_workers(cfg: &Config) -> usize {
    let all = cfg.controller.workers.max(1);
    let n = match cfg.accounts.source {
        AccountSource::Caller => all,
        _ => cfg.controller.account_workers.clamp(1, all),
    };
    usize::try_from(n).unwrap_or(1)
}

/// Take a key, then a permit, and run `work` on the lease, until the queue shuts down.
pub(super) async fn work_loop<F, Fut>(
    queue: WorkQueue<ReconcileKey>,
    permits: Arc<Semaphore>,
    mut work: F,
) where
    F: FnMut(Lease<ReconcileKey>) -> Fut,
    Fut: Future<Output = ()>,
{
    while let Some(lease) = queue.next().await {
        // Never closed; if it were, the lease is dropped and so retried with backoff.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        work(lease).await;
        drop(permit);
    }
}

/// One worker: reconcile each key, report to the queue, the dispatch and metrics.
pub(super) async fn worker(ctx: Arc<Context>, permits: Arc<Semaphore>) {
    let queue = ctx.dispatch.queue().clone();
    work_loop(queue.clone(), permits, |lease| {
        let (ctx, queue) = (ctx.clone(), queue.clone());
        async move { reconcile_one(&ctx, &queue, lease).await }
    })
    .await;
}

async fn reconcile_one(ctx: &Context, queue: &WorkQueue<ReconcileKey>, lease: Lease<ReconcileKey>) {
    ctx.metrics.queue_waited(lease.waited());
    ctx.metrics
        .set_account_queue(&ctx.applier.account_id, queue.depth(), queue.in_flight());
    let key = lease.key().clone();
    let covered = ctx.dispatch.starting(&key);
    let started = Instant::now();
    let span = tracing::info_span!(
        "reconcile",
        account = %ctx.applier.account_id,
        key = %key,
        attempt = lease.attempt()
    );
    // Boxed: an idle worker's task is then a few bytes, not the size of a reconcile's state
    // (tens of KiB; `controller.account_workers` workers in every account). Instrumented,
    // not entered: a span entered across an await stays entered on the thread while the
    // task waits, and other tasks' log lines (an SQS skip, another account's reconcile)
    // came out inside this reconcile's account and key.
    let result = Box::pin(reconcile(&key, ctx).instrument(span)).await;
    match result {
        Ok(next) => {
            let (res, requeue_at) = match next {
                Next::Requeue(at) => (ReconcileResult::Success, at),
                Next::Dropped => (ReconcileResult::Dropped, None),
            };
            ReconcileDone {
                key: Some(&key),
                result: res,
                duration: started.elapsed(),
                error: None,
                retry_in: None,
            }
            .emit(&ctx.metrics);
            ctx.dispatch.finished(&key, covered);
            lease.done(QueueOutcome::Success { requeue_at });
            if requeue_at.is_some() {
                ctx.metrics.queue_added(QueueSource::Requeue);
            }
        }
        Err(e) => {
            let duration = started.elapsed();
            let fin = lease.done(QueueOutcome::Failure);
            ReconcileDone {
                key: Some(&key),
                result: ReconcileResult::Error,
                duration,
                error: Some(&e),
                retry_in: fin.retry_after,
            }
            .emit(&ctx.metrics);
            ctx.metrics.queue_added(QueueSource::Retry);
        }
    }
    if key == ReconcileKey::Account {
        ctx.release_after_account();
    }
    ctx.metrics
        .set_account_queue(&ctx.applier.account_id, queue.depth(), queue.in_flight());
}

#[cfg(test)]
mod tests;
