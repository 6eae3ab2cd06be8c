//! The work queue between the event sources and the reconcilers (the adaptive write rate
//! limiter is in [`crate::pacing`]).
//!
//! [`WorkQueue`] combines kube-runtime's scheduler (de-duplication where the earliest due
//! time wins, delayed items) with controller-runtime's workqueue (a key is never handed to
//! two workers at once; an add while the key is in flight runs it once more afterwards;
//! per-key exponential backoff on failure).
//!
//! Life of a key: *waiting* (in the queue with a due time) → handed to a worker by
//! [`WorkQueue::next`] as a [`Lease`] (*in flight*) → [`Lease::done`] with an [`Outcome`] →
//! waiting again (failure backoff, `requeue_at`, or an add that arrived while in flight) or
//! forgotten.
//!
//! Rules:
//! - The earliest due time always wins: an add never delays a key that is already due
//!   sooner, and an add can bring a key forward, including one waiting out a failure
//!   backoff (the retry is a full level-triggered reconcile either way). The failure count
//!   is kept until the key succeeds, so the next failure backs off further.
//! - Dropping a [`Lease`] without calling [`Lease::done`] counts as a failure: the key is
//!   requeued with backoff and [`QueueStats::abandoned_total`] goes up. Nothing is lost when
//!   a reconcile panics or its task is cancelled.
//! - After [`WorkQueue::shutdown`], `next` returns `None`, adds are ignored, and leases still
//!   in flight can be finished; [`WorkQueue::wait_idle`] waits for them.
//!
//! All times are `tokio::time` instants, so tests can pause time. The scheduling logic lives
//! in a synchronous core that takes `now` explicitly and is tested on its own.

mod core;

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use self::core::{Added, Core};

/// Backoff settings of a [`WorkQueue`].
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Delay after the first failure; doubles with every further failure.
    pub backoff_base: Duration,
    /// Upper bound of the delay.
    pub backoff_max: Duration,
    /// Fraction (0..=1) by which a delay is randomly shortened, so that keys failing
    /// together do not retry together. Values outside 0..=1 are clamped; NaN counts as 0.
    pub jitter: f64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            jitter: 0.1,
        }
    }
}

impl QueueConfig {
    /// The delay before retry after `failures` consecutive failures (1 for the first), before
    /// jitter: `backoff_base * 2^(failures-1)`, at most `backoff_max`. Zero for 0 failures.
    pub fn backoff(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 2u32.checked_pow(failures - 1);
        factor
            .and_then(|f| self.backoff_base.checked_mul(f))
            .map_or(self.backoff_max, |d| d.min(self.backoff_max))
    }

    /// [`Self::backoff`] shortened by `jitter * r` of itself, for `r` in `[0, 1)`.
    fn jittered(&self, failures: u32, r: f64) -> Duration {
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        self.backoff(failures).mul_f64(1.0 - jitter * r)
    }
}

/// How a reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; optionally run the key again at `requeue_at` (e.g. when the next rotation phase
    /// is due). Resets the key's failure count.
    Success {
        /// When to run the key again, if at all.
        requeue_at: Option<Instant>,
    },
    /// Failed: retry after the key's backoff.
    Failure,
}

impl Outcome {
    /// Success without requeue.
    pub fn success() -> Self {
        Outcome::Success { requeue_at: None }
    }
}

/// What [`Lease::done`] did with the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// When the key is due next, if it was put back into the queue.
    pub next_due: Option<Instant>,
    /// On failure: the backoff chosen for the retry (count these as retries).
    pub retry_after: Option<Duration>,
    /// The key's consecutive failures so far (0 after a success).
    pub failures: u32,
}

/// Counters and gauges for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Keys waiting in the queue (due now or later).
    pub depth: usize,
    /// Keys handed out and not finished yet.
    pub in_flight: usize,
    /// Every add call accepted before shutdown, including de-duplicated ones.
    pub adds_total: u64,
    /// Failures that scheduled a retry (including abandoned leases).
    pub retries_total: u64,
    /// Leases dropped without `done` (counted as failures).
    pub abandoned_total: u64,
}

/// A key handed to one worker. Finish it with [`Lease::done`]; dropping it counts as a
/// failure.
#[derive(Debug)]
pub struct Lease<K: Clone + Eq + Hash + Send + 'static> {
    key: K,
    attempt: u32,
    waited: Duration,
    queue: Option<Arc<Shared<K>>>,
}

impl<K: Clone + Eq + Hash + Send + 'static> Lease<K> {
    /// The key to reconcile.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// 0 for a first try, otherwise the number of failures since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How long the key was due before it was handed out (queue latency).
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Finishes the lease and puts the key back as the outcome asks.
    pub fn done(mut self, outcome: Outcome) -> Finished {
        match self.queue.take() {
            Some(q) => q.finish(&self.key, outcome, false),
            None => Finished {
                next_due: None,
                retry_after: None,
                failures: 0,
            },
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Drop for Lease<K> {
    fn drop(&mut self) {
        if let Some(q) = self.queue.take() {
            q.finish(&self.key, Outcome::Failure, true);
        }
    }
}

/// A de-duplicating, delaying work queue with per-key backoff. Cheap to clone (shared).
#[derive(Debug)]
pub struct WorkQueue<K: Clone + Eq + Hash + Send + 'static> {
    shared: Arc<Shared<K>>,
}

impl<K: Clone + Eq + Hash + Send + 'static> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new(QueueConfig::default())
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                core: Mutex::new(Core::default()),
                config,
                work: Notify::new(),
                idle: Notify::new(),
                adds: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                abandoned: AtomicU64::new(0),
            }),
        }
    }

    /// The backoff settings.
    pub fn config(&self) -> &QueueConfig {
        &self.shared.config
    }

    /// Queues `key`, due now. Returns whether this changed anything (a new key, an earlier
    /// due time, or a re-run after the lease in flight); `false` if de-duplicated or shut
    /// down.
    pub fn add(&self, key: K) -> bool {
        self.add_at(key, Instant::now())
    }

    /// Queues `key`, due after `delay`.
    pub fn add_after(&self, key: K, delay: Duration) -> bool {
        self.add_at(key, later(Instant::now(), delay))
    }

    /// Queues `key`, due at `when`; if the key is already waiting, the earlier due time wins.
    pub fn add_at(&self, key: K, when: Instant) -> bool {
        let mut core = self.shared.lock();
        if core.shutdown {
            return false;
        }
        self.shared.adds.fetch_add(1, Ordering::Relaxed);
        let added = core.add_at(key, when);
        drop(core);
        if added == Added::Scheduled {
            self.shared.work.notify_waiters();
        }
        added != Added::Unchanged
    }

    /// Removes a waiting key and any re-run remembered for it while in flight, and resets its
    /// failure count (e.g. the user was deleted). A lease in flight is not affected. Returns
    /// whether anything was removed.
    pub fn remove(&self, key: &K) -> bool {
        self.shared.lock().remove(key)
    }

    /// Waits until a key is due and hands it out; `None` once [`Self::shutdown`] was called.
    /// Cancel-safe: dropping the future never loses a key.
    pub async fn next(&self) -> Option<Lease<K>> {
        loop {
            let notified = self.shared.work.notified();
            tokio::pin!(notified);
            // Register before looking at the state, so no notification can slip in between.
            notified.as_mut().enable();
            let next_due = {
                let mut core = self.shared.lock();
                if core.shutdown {
                    return None;
                }
                match core.pop_due(Instant::now()) {
                    Ok(popped) => {
                        return Some(Lease {
                            key: popped.key,
                            attempt: popped.attempt,
                            waited: popped.waited,
                            queue: Some(Arc::clone(&self.shared)),
                        })
                    }
                    Err(next_due) => next_due,
                }
            };
            match next_due {
                Some(due) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Stops handing out work: every waiting and future `next` returns `None`, adds are
    /// ignored. Leases in flight can still be finished.
    pub fn shutdown(&self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_waiters();
        self.shared.idle.notify_waiters();
    }

    /// Whether [`Self::shutdown`] was called.
    pub fn is_shutdown(&self) -> bool {
        self.shared.lock().shutdown
    }

    /// Waits until no lease is in flight or `deadline` passes; returns whether none is in
    /// flight. Use after [`Self::shutdown`] to drain.
    pub async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return self.in_flight() == 0,
                _ = &mut notified => {}
            }
        }
    }

    /// Keys waiting in the queue (due now or later), not counting those in flight.
    pub fn depth(&self) -> usize {
        self.shared.lock().waiting
    }

    /// Keys handed out and not finished yet.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().in_flight
    }

    /// Gauges and counters for metrics.
    pub fn stats(&self) -> QueueStats {
        let (depth, in_flight) = {
            let core = self.shared.lock();
            (core.waiting, core.in_flight)
        };
        QueueStats {
            depth,
            in_flight,
            adds_total: self.shared.adds.load(Ordering::Relaxed),
            retries_total: self.shared.retries.load(Ordering::Relaxed),
            abandoned_total: self.shared.abandoned.load(Ordering::Relaxed),
        }
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
pub(super) fn later(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

#[derive(Debug)]
struct Shared<K> {
    core: Mutex<Core<K>>,
    config: QueueConfig,
    /// Wakes every waiting worker when a key becomes waiting and on shutdown. Waking all
    /// (rather than one) keeps every idle worker's deadline right without subtle reasoning;
    /// workers are few, so the cost is negligible. Workers register before reading the
    /// state, so no wake-up is lost.
    work: Notify,
    /// Signalled when the last lease in flight finishes, and on shutdown.
    idle: Notify,
    adds: AtomicU64,
    retries: AtomicU64,
    abandoned: AtomicU64,
}

impl<K: Clone + Eq + Hash> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, Core<K>> {
        // A panic while holding the lock cannot leave the core half-updated in a way that
        // matters more than stopping the daemon would, so keep going.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, key: &K, outcome: Outcome, abandoned: bool) -> Finished {
        let mut core = self.lock();
        let finished = core.finish(key, outcome, Instant::now(), &self.config, fastrand::f64());
        let idle = core.in_flight == 0;
        drop(core);
        if finished.retry_after.is_some() {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
        if abandoned {
            self.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        if finished.next_due.is_some() {
            self.work.notify_waiters();
        }
        if idle {
            self.idle.notify_waiters();
        }
        finished
    }
}

// ----- the synchronous core -----

#[cfg(test)]
mod tests;
