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

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

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
fn later(now: Instant, d: Duration) -> Instant {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiting {
    due: Instant,
    seq: u64,
}

#[derive(Debug, Default)]
struct Slot {
    /// Set while the key is in the queue.
    waiting: Option<Waiting>,
    /// Set while a lease of the key is out.
    in_flight: bool,
    /// Earliest due time asked for while in flight.
    pending: Option<Instant>,
    /// Consecutive failures.
    failures: u32,
}

/// A heap entry; stale when the slot's `waiting.seq` differs (lazy deletion).
#[derive(Debug)]
struct HeapEntry<K> {
    due: Instant,
    seq: u64,
    key: K,
}

impl<K> PartialEq for HeapEntry<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl<K> Eq for HeapEntry<K> {}
impl<K> PartialOrd for HeapEntry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for HeapEntry<K> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest `(due, seq)` first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Added {
    /// De-duplicated: the key was already due at that time or sooner.
    Unchanged,
    /// The key is waiting with this due time now.
    Scheduled,
    /// The key is in flight; it will run again once finished.
    Pending,
}

#[derive(Debug)]
struct Popped<K> {
    key: K,
    attempt: u32,
    waited: Duration,
}

#[derive(Debug)]
struct Core<K> {
    slots: HashMap<K, Slot>,
    heap: BinaryHeap<HeapEntry<K>>,
    next_seq: u64,
    waiting: usize,
    in_flight: usize,
    shutdown: bool,
}

impl<K> Default for Core<K> {
    fn default() -> Self {
        Self {
            slots: HashMap::new(),
            heap: BinaryHeap::new(),
            next_seq: 0,
            waiting: 0,
            in_flight: 0,
            shutdown: false,
        }
    }
}

impl<K: Clone + Eq + Hash> Core<K> {
    fn add_at(&mut self, key: K, due: Instant) -> Added {
        let slot = self.slots.entry(key.clone()).or_default();
        if slot.in_flight {
            return match slot.pending {
                Some(p) if p <= due => Added::Unchanged,
                _ => {
                    slot.pending = Some(due);
                    Added::Pending
                }
            };
        }
        if slot.waiting.is_some_and(|w| w.due <= due) {
            return Added::Unchanged;
        }
        self.schedule(key, due);
        Added::Scheduled
    }

    /// Makes `key` (not in flight) wait until `due`, replacing any earlier schedule.
    fn schedule(&mut self, key: K, due: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = self.slots.entry(key.clone()).or_default();
        if slot.waiting.is_none() {
            self.waiting += 1;
        }
        slot.waiting = Some(Waiting { due, seq });
        self.heap.push(HeapEntry { due, seq, key });
        self.compact();
    }

    /// Drops stale heap entries once they outnumber the live ones.
    fn compact(&mut self) {
        if self.heap.len() > 2 * self.waiting + 64 {
            let slots = &self.slots;
            self.heap.retain(|e| {
                slots
                    .get(&e.key)
                    .and_then(|s| s.waiting)
                    .is_some_and(|w| w.seq == e.seq)
            });
        }
    }

    fn remove(&mut self, key: &K) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        let removed = slot.waiting.is_some() || slot.pending.is_some();
        if slot.waiting.take().is_some() {
            self.waiting -= 1;
        }
        slot.pending = None;
        slot.failures = 0;
        if !slot.in_flight {
            self.slots.remove(key);
        }
        removed
    }

    /// Hands out the earliest key due at `now`, or tells when the next one is due.
    fn pop_due(&mut self, now: Instant) -> Result<Popped<K>, Option<Instant>> {
        loop {
            let Some(top) = self.heap.peek() else {
                return Err(None);
            };
            let live = self
                .slots
                .get(&top.key)
                .and_then(|s| s.waiting)
                .is_some_and(|w| w.seq == top.seq);
            if !live {
                self.heap.pop();
                continue;
            }
            if top.due > now {
                return Err(Some(top.due));
            }
            let Some(entry) = self.heap.pop() else {
                return Err(None);
            };
            let Some(slot) = self.slots.get_mut(&entry.key) else {
                continue;
            };
            slot.waiting = None;
            slot.in_flight = true;
            self.waiting -= 1;
            self.in_flight += 1;
            return Ok(Popped {
                attempt: slot.failures,
                waited: now.saturating_duration_since(entry.due),
                key: entry.key,
            });
        }
    }

    /// Ends the lease of `key`; `r` in `[0, 1)` drives the jitter.
    fn finish(
        &mut self,
        key: &K,
        outcome: Outcome,
        now: Instant,
        config: &QueueConfig,
        r: f64,
    ) -> Finished {
        let Some(slot) = self.slots.get_mut(key).filter(|s| s.in_flight) else {
            return Finished {
                next_due: None,
                retry_after: None,
                failures: 0,
            };
        };
        slot.in_flight = false;
        self.in_flight -= 1;
        let pending = slot.pending.take();
        let (requeue, retry_after) = match outcome {
            Outcome::Success { requeue_at } => {
                slot.failures = 0;
                (requeue_at, None)
            }
            Outcome::Failure => {
                slot.failures = slot.failures.saturating_add(1);
                let delay = config.jittered(slot.failures, r);
                (Some(later(now, delay)), Some(delay))
            }
        };
        let failures = slot.failures;
        let due = match (pending, requeue) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match due {
            Some(due) if !self.shutdown => {
                self.schedule(key.clone(), due);
                Finished {
                    next_due: Some(due),
                    retry_after,
                    failures,
                }
            }
            _ => {
                self.slots.remove(key);
                Finished {
                    next_due: None,
                    retry_after: None,
                    failures,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(jitter: f64) -> QueueConfig {
        QueueConfig {
            jitter,
            ..QueueConfig::default()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    // ----- core: synthetic instants, fully deterministic -----

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = QueueConfig::default();
        let got: Vec<u64> = (0..12).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(got, vec![0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(c.backoff(40), secs(300));
        assert_eq!(c.backoff(u32::MAX), secs(300));
        let huge = QueueConfig {
            backoff_base: Duration::MAX,
            backoff_max: Duration::MAX,
            jitter: 0.0,
        };
        assert_eq!(huge.backoff(3), Duration::MAX);
    }

    #[test]
    fn jitter_only_shortens_within_bounds() {
        let c = cfg(0.25);
        assert_eq!(c.jittered(3, 0.0), secs(4));
        assert_eq!(c.jittered(3, 0.5), Duration::from_millis(3500));
        let lowest = c.jittered(3, 0.999_999);
        assert!(lowest >= secs(3) && lowest < Duration::from_millis(3001));
        for _ in 0..1000 {
            let d = c.jittered(10, fastrand::f64());
            assert!(d > Duration::from_secs(225) && d <= secs(300), "{d:?}");
        }
        assert_eq!(cfg(f64::NAN).jittered(2, 0.9), secs(2));
        assert_eq!(cfg(7.0).jittered(2, 0.5), secs(1));
        assert_eq!(cfg(-1.0).jittered(2, 0.5), secs(2));
    }

    #[test]
    fn dedup_earliest_due_wins() {
        let t0 = Instant::now();
        let mut core = Core::default();
        assert_eq!(core.add_at("a", t0 + secs(10)), Added::Scheduled);
        assert_eq!(core.add_at("a", t0 + secs(20)), Added::Unchanged); // later: no delay
        assert_eq!(core.add_at("a", t0 + secs(10)), Added::Unchanged);
        assert_eq!(core.waiting, 1);
        assert_eq!(core.pop_due(t0 + secs(9)).unwrap_err(), Some(t0 + secs(10)));
        assert_eq!(core.add_at("a", t0 + secs(5)), Added::Scheduled); // earlier: wins
        assert_eq!(core.waiting, 1);
        assert_eq!(core.pop_due(t0 + secs(4)).unwrap_err(), Some(t0 + secs(5)));
        let p = core.pop_due(t0 + secs(7)).unwrap();
        assert_eq!((p.key, p.attempt, p.waited), ("a", 0, secs(2)));
        // exactly once: the stale entry at +10 does not hand "a" out again
        assert_eq!(core.pop_due(t0 + secs(100)).unwrap_err(), None);
        assert_eq!((core.waiting, core.in_flight), (0, 1));
    }

    #[test]
    fn pops_in_due_order_then_fifo() {
        let t0 = Instant::now();
        let mut core = Core::default();
        core.add_at("late", t0 + secs(3));
        core.add_at("first", t0);
        core.add_at("second", t0);
        core.add_at("mid", t0 + secs(1));
        let order: Vec<_> = std::iter::from_fn(|| core.pop_due(t0 + secs(5)).ok())
            .map(|p| p.key)
            .collect();
        assert_eq!(order, vec!["first", "second", "mid", "late"]);
    }

    #[test]
    fn add_while_in_flight_runs_once_more_after_done() {
        let t0 = Instant::now();
        let c = cfg(0.0);
        let mut core = Core::default();
        core.add_at("a", t0);
        let _lease = core.pop_due(t0).unwrap();
        assert_eq!(core.add_at("a", t0 + secs(1)), Added::Pending);
        assert_eq!(core.add_at("a", t0 + secs(2)), Added::Unchanged);
        assert_eq!(core.add_at("a", t0 + secs(1)), Added::Unchanged);
        // not handed out while in flight, even though it is due
        assert_eq!(core.pop_due(t0 + secs(5)).unwrap_err(), None);
        assert_eq!(core.waiting, 0);
        let f = core.finish(&"a", Outcome::success(), t0 + secs(5), &c, 0.0);
        assert_eq!(f.next_due, Some(t0 + secs(1)));
        let p = core.pop_due(t0 + secs(5)).unwrap();
        assert_eq!((p.key, p.waited), ("a", secs(4)));
        core.finish(&"a", Outcome::success(), t0 + secs(6), &c, 0.0);
        // exactly one more run
        assert_eq!(core.pop_due(t0 + secs(100)).unwrap_err(), None);
        assert!(core.slots.is_empty());
    }

    #[test]
    fn failure_backoff_grows_caps_and_resets() {
        let mut t = Instant::now();
        let c = cfg(0.0);
        let mut core = Core::default();
        core.add_at("a", t);
        let mut delays = Vec::new();
        for attempt in 0..11 {
            let p = core.pop_due(t).unwrap();
            assert_eq!(p.attempt, attempt);
            let f = core.finish(&"a", Outcome::Failure, t, &c, 0.0);
            assert_eq!(f.failures, attempt + 1);
            let d = f.retry_after.unwrap();
            assert_eq!(f.next_due, Some(t + d));
            // not due a moment before the backoff ends
            assert_eq!(
                core.pop_due(t + d - Duration::from_millis(1)).unwrap_err(),
                Some(t + d)
            );
            delays.push(d.as_secs());
            t += d;
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        let p = core.pop_due(t).unwrap();
        assert_eq!(p.attempt, 11);
        let f = core.finish(&"a", Outcome::success(), t, &c, 0.0);
        assert_eq!((f.failures, f.next_due, f.retry_after), (0, None, None));
        core.add_at("a", t);
        assert_eq!(core.pop_due(t).unwrap().attempt, 0);
        let f = core.finish(&"a", Outcome::Failure, t, &c, 0.0);
        assert_eq!(f.retry_after, Some(secs(1)));
    }

    #[test]
    fn failure_backoffs_are_per_key() {
        let t = Instant::now();
        let c = cfg(0.0);
        let mut core = Core::default();
        core.add_at("a", t);
        core.add_at("b", t);
        assert_eq!(core.pop_due(t).unwrap().key, "a");
        core.finish(&"a", Outcome::Failure, t, &c, 0.0);
        let b = core.pop_due(t).unwrap();
        assert_eq!((b.key, b.attempt), ("b", 0));
        let f = core.finish(&"b", Outcome::success(), t, &c, 0.0);
        assert_eq!(f.failures, 0);
        assert_eq!(core.pop_due(t).unwrap_err(), Some(t + secs(1)));
        let a = core.pop_due(t + secs(1)).unwrap();
        assert_eq!((a.key, a.attempt), ("a", 1));
    }

    #[test]
    fn add_can_bring_a_backing_off_key_forward_without_resetting_failures() {
        let t = Instant::now();
        let c = cfg(0.0);
        let mut core = Core::default();
        core.add_at("a", t);
        for _ in 0..3 {
            let due = core.pop_due(t + secs(1000)).map(|_| ()).ok();
            assert!(due.is_some());
            core.finish(&"a", Outcome::Failure, t, &c, 0.0);
        }
        assert_eq!(core.pop_due(t).unwrap_err(), Some(t + secs(4)));
        assert_eq!(core.add_at("a", t), Added::Scheduled);
        let p = core.pop_due(t).unwrap();
        assert_eq!(p.attempt, 3);
        let f = core.finish(&"a", Outcome::Failure, t, &c, 0.0);
        assert_eq!(f.retry_after, Some(secs(8)));
    }

    #[test]
    fn requeue_at_honoured_and_pending_earlier_wins() {
        let t = Instant::now();
        let c = cfg(0.0);
        let mut core = Core::default();
        core.add_at("a", t);
        core.pop_due(t).unwrap();
        let f = core.finish(
            &"a",
            Outcome::Success {
                requeue_at: Some(t + secs(3600)),
            },
            t,
            &c,
            0.0,
        );
        assert_eq!(f.next_due, Some(t + secs(3600)));
        assert_eq!(
            core.pop_due(t + secs(3599)).unwrap_err(),
            Some(t + secs(3600))
        );
        assert_eq!(core.pop_due(t + secs(3600)).unwrap().key, "a");
        // an add during the run is due sooner than the requeue: it wins
        core.add_at("a", t + secs(3601));
        core.finish(
            &"a",
            Outcome::Success {
                requeue_at: Some(t + secs(7200)),
            },
            t + secs(3600),
            &c,
            0.0,
        );
        assert_eq!(core.pop_due(t).unwrap_err(), Some(t + secs(3601)));
        // and failure after a pending add: the add is earlier than the backoff
        core.pop_due(t + secs(3601)).unwrap();
        core.add_at("a", t + secs(3601));
        let f = core.finish(&"a", Outcome::Failure, t + secs(3601), &c, 0.0);
        assert_eq!(f.next_due, Some(t + secs(3601)));
        assert_eq!(f.retry_after, Some(secs(1)));
    }

    #[test]
    fn remove_drops_waiting_and_pending() {
        let t = Instant::now();
        let c = cfg(0.0);
        let mut core = Core::default();
        core.add_at("a", t);
        core.add_at("b", t);
        assert!(core.remove(&"a"));
        assert!(!core.remove(&"a"));
        assert_eq!(core.waiting, 1);
        assert_eq!(core.pop_due(t).unwrap().key, "b");
        core.add_at("b", t);
        assert!(core.remove(&"b")); // pending re-run dropped
        let f = core.finish(&"b", Outcome::success(), t, &c, 0.0);
        assert_eq!(f.next_due, None);
        assert_eq!(core.pop_due(t + secs(10)).unwrap_err(), None);
        assert!(core.slots.is_empty());
    }

    #[test]
    fn stale_heap_entries_are_compacted() {
        let t = Instant::now();
        let mut core = Core::default();
        for i in 0..10_000u64 {
            core.add_at(i % 10, t + secs(100_000 - i));
        }
        assert_eq!(core.waiting, 10);
        assert!(core.heap.len() <= 2 * 10 + 65, "{}", core.heap.len());
        let mut keys = Vec::new();
        while let Ok(p) = core.pop_due(t + secs(1_000_000)) {
            keys.push(p.key);
        }
        keys.sort_unstable();
        assert_eq!(keys, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn finish_of_unknown_key_is_harmless() {
        let t = Instant::now();
        let mut core: Core<&str> = Core::default();
        let f = core.finish(&"x", Outcome::Failure, t, &cfg(0.0), 0.0);
        assert_eq!(f.next_due, None);
        assert_eq!(core.in_flight, 0);
    }

    // ----- async: no dependence on time passing -----

    /// Polls a future once; `Some` if it completed.
    async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[tokio::test]
    async fn next_hands_out_due_keys_and_counts() {
        let q = WorkQueue::new(cfg(0.0));
        assert!(q.add("a"));
        assert!(!q.add("a"));
        assert!(q.add("b"));
        assert_eq!(q.depth(), 2);
        let a = q.next().await.unwrap();
        assert_eq!((*a.key(), a.attempt()), ("a", 0));
        assert_eq!((q.depth(), q.in_flight()), (1, 1));
        let f = a.done(Outcome::success());
        assert_eq!(f.next_due, None);
        let b = q.next().await.unwrap();
        assert_eq!(*b.key(), "b");
        b.done(Outcome::Failure);
        let s = q.stats();
        assert_eq!(
            s,
            QueueStats {
                depth: 1,
                in_flight: 0,
                adds_total: 3,
                retries_total: 1,
                abandoned_total: 0
            }
        );
    }

    #[tokio::test]
    async fn no_concurrent_runs_of_one_key() {
        let q = WorkQueue::new(cfg(0.0));
        q.add("a");
        let lease = q.next().await.unwrap();
        assert!(q.add("a")); // remembered
        assert_eq!(q.depth(), 0);
        // a second worker gets nothing while "a" is in flight
        let second = q.next();
        tokio::pin!(second);
        assert!(futures_poll_once(second.as_mut()).await.is_none());
        lease.done(Outcome::success());
        // ...and is woken with the re-run once "a" is done
        let again = tokio::time::timeout(secs(5), second)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*again.key(), "a");
        again.done(Outcome::success());
        assert_eq!((q.depth(), q.in_flight()), (0, 0));
    }

    #[tokio::test]
    async fn dropped_lease_counts_as_failure_and_is_not_lost() {
        let q = WorkQueue::new(cfg(0.0));
        q.add("a");
        let lease = q.next().await.unwrap();
        drop(lease);
        let s = q.stats();
        assert_eq!(
            (s.depth, s.in_flight, s.retries_total, s.abandoned_total),
            (1, 0, 1, 1)
        );
        // a reconcile task that panics drops its lease too
        q.add("a"); // bring it forward
        let lease = q.next().await.unwrap();
        assert_eq!(lease.attempt(), 1);
        let h = tokio::spawn(async move {
            let _l = lease;
            panic!("reconcile blew up");
        });
        assert!(h.await.is_err());
        assert_eq!(q.stats().abandoned_total, 2);
        assert_eq!(q.depth(), 1);
    }

    #[tokio::test]
    async fn shutdown_wakes_waiting_workers_and_drains() {
        let q: WorkQueue<u32> = WorkQueue::default();
        q.add(1);
        let lease = q.next().await.unwrap();
        q.add_after(3, secs(3600));
        let mut workers = Vec::new();
        for _ in 0..3 {
            let q = q.clone();
            workers.push(tokio::spawn(
                async move { q.next().await.map(|l| *l.key()) },
            ));
        }
        // let the workers reach their wait
        tokio::task::yield_now().await;
        q.shutdown();
        assert!(q.is_shutdown());
        for w in workers {
            let got = tokio::time::timeout(secs(5), w).await.unwrap().unwrap();
            assert_eq!(got, None);
        }
        assert!(q.next().await.is_none());
        assert!(!q.add(4));
        assert_eq!(q.stats().adds_total, 2);
        // the lease of key 1 is still out: not drained by a deadline already passed
        assert!(!q.wait_idle(Instant::now()).await);
        let drain = {
            let q = q.clone();
            tokio::spawn(async move { q.wait_idle(Instant::now() + secs(3600)).await })
        };
        tokio::task::yield_now().await;
        let f = lease.done(Outcome::Failure);
        assert_eq!(f.next_due, None); // no requeue after shutdown
        assert!(tokio::time::timeout(secs(5), drain).await.unwrap().unwrap());
        assert_eq!(q.in_flight(), 0);
        assert!(q.wait_idle(Instant::now()).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_keys_many_workers_each_processed_exactly_once() {
        const KEYS: u32 = 1000;
        let q: WorkQueue<u32> = WorkQueue::new(cfg(0.0));
        for k in 0..KEYS {
            assert!(q.add(k));
            assert!(!q.add(k)); // de-duplicated
        }
        assert_eq!(q.depth(), KEYS as usize);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (q, seen) = (q.clone(), Arc::clone(&seen));
            workers.push(tokio::spawn(async move {
                while let Some(lease) = q.next().await {
                    tokio::task::yield_now().await;
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(*lease.key());
                        seen.len()
                    };
                    lease.done(Outcome::success());
                    if n == KEYS as usize {
                        q.shutdown();
                    }
                }
            }));
        }
        for w in workers {
            tokio::time::timeout(secs(30), w).await.unwrap().unwrap();
        }
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..KEYS).collect::<Vec<_>>());
        let s = q.stats();
        assert_eq!(
            (s.depth, s.in_flight, s.adds_total),
            (0, 0, 2 * KEYS as u64)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hot_key_with_many_workers_never_runs_twice_at_once() {
        let q: WorkQueue<&str> = WorkQueue::new(cfg(0.0));
        let running = Arc::new(AtomicU64::new(0));
        let runs = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (q, running, runs) = (q.clone(), Arc::clone(&running), Arc::clone(&runs));
            workers.push(tokio::spawn(async move {
                while let Some(lease) = q.next().await {
                    assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "concurrent run");
                    tokio::task::yield_now().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    runs.fetch_add(1, Ordering::SeqCst);
                    lease.done(Outcome::success());
                }
            }));
        }
        for _ in 0..500 {
            q.add("hot");
            tokio::task::yield_now().await;
        }
        // the last add is honoured: the key runs once more after whatever is in flight
        let last = runs.load(Ordering::SeqCst);
        tokio::time::timeout(secs(30), async {
            while q.depth() + q.in_flight() > 0 || runs.load(Ordering::SeqCst) == last {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        q.shutdown();
        for w in workers {
            w.await.unwrap();
        }
        let runs = runs.load(Ordering::SeqCst);
        assert!(runs > last && (1..=500).contains(&runs), "{runs} runs");
        assert_eq!(q.stats().in_flight, 0);
    }

    #[tokio::test]
    async fn idle_workers_all_see_new_deadlines() {
        // Two idle workers; a delayed key, then a key due now that one worker takes and
        // holds. The other worker must still pick up the delayed key when it is due.
        let q = WorkQueue::new(cfg(0.0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let hold = Arc::new(Notify::new());
        let mut workers = Vec::new();
        for _ in 0..2 {
            let (q, tx, hold) = (q.clone(), tx.clone(), Arc::clone(&hold));
            workers.push(tokio::spawn(async move {
                let lease = q.next().await.unwrap();
                tx.send(*lease.key()).unwrap();
                hold.notified().await;
                lease.done(Outcome::success());
            }));
        }
        tokio::task::yield_now().await;
        q.add_after("delayed", Duration::from_millis(30));
        tokio::task::yield_now().await;
        q.add("now");
        let first = tokio::time::timeout(secs(5), rx.recv()).await.unwrap();
        let second = tokio::time::timeout(secs(5), rx.recv()).await.unwrap();
        assert_eq!((first, second), (Some("now"), Some("delayed")));
        assert_eq!(q.in_flight(), 2);
        hold.notify_waiters();
        for w in workers {
            w.await.unwrap();
        }
        assert_eq!(q.in_flight(), 0);
    }

    // ----- async with time passing: only lower bounds are asserted (timers never fire early),
    // durations are tens of milliseconds. -----

    #[tokio::test]
    async fn delayed_key_is_not_handed_out_early() {
        let q = WorkQueue::new(cfg(0.0));
        let start = Instant::now();
        q.add_after("late", Duration::from_millis(40));
        q.add_after("later", Duration::from_millis(80));
        q.add_after("late", Duration::from_millis(500)); // later add does not delay
        let l = tokio::time::timeout(secs(5), q.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*l.key(), "late");
        let t = start.elapsed();
        assert!(
            t >= Duration::from_millis(40) && t < Duration::from_millis(500),
            "{t:?}"
        );
        l.done(Outcome::success());
        // a worker already waiting for "later" is woken early by an add due now
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.next().await.map(|l| *l.key()) })
        };
        tokio::task::yield_now().await;
        q.add("now");
        assert_eq!(waiter.await.unwrap(), Some("now"));
        let l = tokio::time::timeout(secs(5), q.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*l.key(), "later");
        assert!(start.elapsed() >= Duration::from_millis(80));
    }

    #[tokio::test]
    async fn failure_retry_waits_for_backoff_and_requeue_at_is_honoured() {
        let q = WorkQueue::new(QueueConfig {
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(50),
            jitter: 0.0,
        });
        q.add("a");
        let mut lease = q.next().await.unwrap();
        let mut backoffs = Vec::new();
        for attempt in 1..4 {
            let f = lease.done(Outcome::Failure);
            let backoff = f.retry_after.unwrap();
            backoffs.push(backoff.as_millis());
            let at = Instant::now();
            lease = tokio::time::timeout(secs(5), q.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(lease.attempt(), attempt);
            assert!(
                at.elapsed() >= backoff,
                "attempt {attempt}: {:?}",
                at.elapsed()
            );
        }
        assert_eq!(backoffs, vec![20, 40, 50]);
        let at = Instant::now();
        let f = lease.done(Outcome::Success {
            requeue_at: Some(at + Duration::from_millis(30)),
        });
        assert_eq!((f.failures, f.retry_after), (0, None));
        let lease = tokio::time::timeout(secs(5), q.next())
            .await
            .unwrap()
            .unwrap();
        assert!(at.elapsed() >= Duration::from_millis(30));
        assert_eq!(lease.attempt(), 0);
        lease.done(Outcome::success());
        let s = q.stats();
        assert_eq!((s.depth, s.in_flight, s.retries_total), (0, 0, 3));
    }
}
