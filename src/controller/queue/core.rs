//! The synchronous core of the queue: scheduling with `now` passed in, so it is tested
//! without a runtime.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

use super::{later, Finished, Outcome, QueueConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Waiting {
    pub(super) due: Instant,
    pub(super) seq: u64,
}

#[derive(Debug, Default)]
pub(super) struct Slot {
    /// Set while the key is in the queue.
    pub(super) waiting: Option<Waiting>,
    /// Set while a lease of the key is out.
    pub(super) in_flight: bool,
    /// Earliest due time asked for while in flight.
    pub(super) pending: Option<Instant>,
    /// Consecutive failures.
    pub(super) failures: u32,
}

/// A heap entry; stale when the slot's `waiting.seq` differs (lazy deletion).
#[derive(Debug)]
pub(super) struct HeapEntry<K> {
    pub(super) due: Instant,
    pub(super) seq: u64,
    pub(super) key: K,
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
pub(super) enum Added {
    /// De-duplicated: the key was already due at that time or sooner.
    Unchanged,
    /// The key is waiting with this due time now.
    Scheduled,
    /// The key is in flight; it will run again once finished.
    Pending,
}

#[derive(Debug)]
pub(super) struct Popped<K> {
    pub(super) key: K,
    pub(super) attempt: u32,
    pub(super) waited: Duration,
}

#[derive(Debug)]
pub(super) struct Core<K> {
    pub(super) slots: HashMap<K, Slot>,
    pub(super) heap: BinaryHeap<HeapEntry<K>>,
    pub(super) next_seq: u64,
    pub(super) waiting: usize,
    pub(super) in_flight: usize,
    pub(super) shutdown: bool,
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
    pub(super) fn add_at(&mut self, key: K, due: Instant) -> Added {
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
    pub(super) fn schedule(&mut self, key: K, due: Instant) {
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
    pub(super) fn compact(&mut self) {
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

    pub(super) fn remove(&mut self, key: &K) -> bool {
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
    pub(super) fn pop_due(&mut self, now: Instant) -> Result<Popped<K>, Option<Instant>> {
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
    pub(super) fn finish(
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
