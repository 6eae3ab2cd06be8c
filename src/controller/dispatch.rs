//! The seam between event sources and the controller: route a parsed CloudTrail event to
//! reconcile keys (with metrics), and let a source wait until the reconciles it caused
//! have finished (SQS deletes a message only then: at-least-once).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::Instant;

use super::key::{Exposure, ReconcileKey, Target};
use super::mapping::{targets, BaselineNames, IamEvent};
use super::quarantine::Quarantiner;
use super::queue::WorkQueue;
use crate::metrics::{
    metric_event_name, EventOutcome, Metrics, QuarantineOutcome, QueueSource, Source,
};

/// At most this many events per key wait for their latency to be measured.
const MAX_PENDING_PER_KEY: usize = 64;

/// A promise that `key` will be reconciled after the event that produced it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub key: ReconcileKey,
    pub seq: u64,
}

/// What dispatching one event started: reconciles to wait for, and quarantines running
/// (each task's result: whether the exposure is settled; a failure is retried by
/// redelivery).
#[derive(Debug, Default)]
pub struct Dispatched {
    pub tickets: Vec<Ticket>,
    pub quarantines: Vec<tokio::task::JoinHandle<bool>>,
}

impl Dispatched {
    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty() && self.quarantines.is_empty()
    }
}

/// (ticket, eventTime, received) of an event whose enforcement is not measured yet.
type PendingEvent = (u64, Option<DateTime<Utc>>, Instant);

#[derive(Debug, Default)]
struct Tracking {
    next_seq: u64,
    /// Highest ticket issued per key.
    issued: HashMap<ReconcileKey, u64>,
    /// Highest ticket covered by a finished reconcile, per key.
    done: HashMap<ReconcileKey, u64>,
    /// Events not yet enforced, per key: (ticket, eventTime, received); bounded.
    pending_latency: HashMap<ReconcileKey, Vec<PendingEvent>>,
}

/// Shared by the sources and the workers.
#[derive(Clone)]
pub struct Dispatch {
    queue: WorkQueue<ReconcileKey>,
    metrics: Arc<Metrics>,
    names: Arc<BaselineNames>,
    /// ARN of iam-warden's own identity: its own writes are not re-reconciled.
    own_arn: Arc<str>,
    tracking: Arc<Mutex<Tracking>>,
    finished: watch::Sender<u64>,
    /// Handles exposed keys at once (the daemon sets it).
    quarantine: Option<Arc<Quarantiner>>,
}

impl Dispatch {
    pub fn new(
        queue: WorkQueue<ReconcileKey>,
        metrics: Arc<Metrics>,
        names: BaselineNames,
        own_arn: &str,
    ) -> Dispatch {
        Dispatch {
            queue,
            metrics,
            names: Arc::new(names),
            own_arn: Arc::from(own_arn),
            tracking: Arc::default(),
            finished: watch::channel(0).0,
            quarantine: None,
        }
    }

    /// Exposed keys are handed to `q` at once.
    pub fn with_quarantine(mut self, q: Arc<Quarantiner>) -> Dispatch {
        self.quarantine = Some(q);
        self
    }

    /// Start the quarantine of an exposed key now, outside the work queue. `None` when
    /// this dispatch has no quarantine handler or no runtime (then it is logged).
    pub fn quarantine(&self, ex: Exposure) -> Option<tokio::task::JoinHandle<bool>> {
        let (Some(q), Ok(rt)) = (&self.quarantine, tokio::runtime::Handle::try_current()) else {
            tracing::error!(
                event_id = %ex.event_id,
                "an exposed access key was reported, but this process has no quarantine handler; nothing changed"
            );
            return None;
        };
        let q = q.clone();
        let (queue, metrics) = (self.queue.clone(), self.metrics.clone());
        Some(rt.spawn(async move {
            let v = q.handle(&ex).await;
            // A key just quarantined: reconcile its user at once, so that its replacement
            // (rotation) does not wait for the resync.
            if let (QuarantineOutcome::Deactivated, Some(user)) = (v.outcome, &v.user) {
                if queue.add(ReconcileKey::User(user.clone())) {
                    metrics.queue_added(QueueSource::Requeue);
                }
            }
            v.settled()
        }))
    }

    pub fn queue(&self) -> &WorkQueue<ReconcileKey> {
        &self.queue
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Route one event: skip failed calls and our own writes, map to keys, enqueue them.
    /// Returns the tickets of the keys enqueued (empty when nothing is to be done);
    /// quarantines it starts run on without being waited for (see [`Dispatch::dispatch_all`]).
    pub fn dispatch(&self, ev: &IamEvent, source: Source, received: Instant) -> Vec<Ticket> {
        self.dispatch_all(ev, source, received).tickets
    }

    /// [`Dispatch::dispatch`], also returning the quarantines the event started.
    pub fn dispatch_all(&self, ev: &IamEvent, source: Source, received: Instant) -> Dispatched {
        let name = metric_event_name(&ev.event_name);
        if ev.error_code.is_some() {
            self.metrics.event_received(name, EventOutcome::FailedCall);
            return Dispatched::default();
        }
        if !self.own_arn.is_empty() && ev.caller_arn.as_deref() == Some(&*self.own_arn) {
            self.metrics.event_received(name, EventOutcome::OwnWrite);
            return Dispatched::default();
        }
        let mut tickets = Vec::new();
        let mut quarantines = Vec::new();
        for t in targets(ev, &self.names) {
            match t {
                Target::Forget(user) => {
                    let key = ReconcileKey::User(user);
                    self.queue.remove(&key);
                    if let Ok(mut tr) = self.tracking.lock() {
                        tr.pending_latency.remove(&key);
                    }
                }
                Target::Reconcile(key) => {
                    tickets.push(self.enqueue(
                        key,
                        QueueSource::from(source),
                        Some(ev.event_time),
                        received,
                    ));
                }
                Target::Quarantine(ex) => quarantines.extend(self.quarantine(ex)),
            }
        }
        self.metrics.event_received(
            name,
            if tickets.is_empty() && quarantines.is_empty() {
                EventOutcome::Ignored
            } else {
                EventOutcome::Enqueued
            },
        );
        Dispatched {
            tickets,
            quarantines,
        }
    }

    /// Enqueue a key now and issue a ticket for it.
    pub fn enqueue(
        &self,
        key: ReconcileKey,
        source: QueueSource,
        event_time: Option<DateTime<Utc>>,
        received: Instant,
    ) -> Ticket {
        let seq = match self.tracking.lock() {
            Ok(mut tr) => {
                tr.next_seq += 1;
                let seq = tr.next_seq;
                tr.issued.insert(key.clone(), seq);
                let pending = tr.pending_latency.entry(key.clone()).or_default();
                if pending.len() < MAX_PENDING_PER_KEY {
                    pending.push((seq, event_time, received));
                }
                seq
            }
            Err(_) => 0,
        };
        if self.queue.add(key.clone()) {
            self.metrics.queue_added(source);
        }
        Ticket { key, seq }
    }

    /// A worker is about to reconcile `key`: every ticket issued so far is covered by
    /// this run. Returns the covering sequence number, to pass to [`Dispatch::finished`].
    pub fn starting(&self, key: &ReconcileKey) -> u64 {
        self.tracking
            .lock()
            .ok()
            .and_then(|tr| tr.issued.get(key).copied())
            .unwrap_or(0)
    }

    /// The reconcile of `key` that started with `covered` finished (successfully, or the
    /// user is gone). Records the event-to-enforcement latency of the events it covered.
    pub fn finished(&self, key: &ReconcileKey, covered: u64) {
        let covered_events = match self.tracking.lock() {
            Ok(mut tr) => {
                let d = tr.done.entry(key.clone()).or_insert(0);
                *d = (*d).max(covered);
                match tr.pending_latency.get_mut(key) {
                    Some(p) => {
                        let (done, rest): (Vec<_>, Vec<_>) =
                            p.drain(..).partition(|(s, _, _)| *s <= covered);
                        *p = rest;
                        if p.is_empty() {
                            tr.pending_latency.remove(key);
                        }
                        done
                    }
                    None => Vec::new(),
                }
            }
            Err(_) => Vec::new(),
        };
        for (_, event_time, received) in covered_events {
            let from_event = event_time.and_then(|t| (Utc::now() - t).to_std().ok());
            self.metrics
                .enforcement_latency(from_event, received.elapsed());
        }
        self.finished.send_modify(|n| *n += 1);
    }

    fn all_done(&self, tickets: &[Ticket]) -> bool {
        match self.tracking.lock() {
            Ok(tr) => tickets
                .iter()
                .all(|t| tr.done.get(&t.key).is_some_and(|d| *d >= t.seq)),
            Err(_) => false,
        }
    }

    /// Wait until every ticket's reconcile finished, or the deadline passes (false).
    pub async fn wait_done(&self, tickets: &[Ticket], deadline: Instant) -> bool {
        let mut rx = self.finished.subscribe();
        loop {
            if self.all_done(tickets) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return self.all_done(tickets),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::event::parse_record;
    use serde_json::json;

    fn ev(name: &str, user: &str, caller: &str, error: Option<&str>) -> IamEvent {
        let mut v = json!({
            "eventVersion": "1.08",
            "eventID": format!("id-{name}-{user}"),
            "eventName": name,
            "eventSource": "iam.amazonaws.com",
            "eventTime": "2026-11-28T10:00:00Z",
            "userIdentity": {"type": "AssumedRole", "arn": caller},
            "requestParameters": {"userName": user}
        });
        if let Some(e) = error {
            v["errorCode"] = json!(e);
        }
        parse_record(&v).unwrap()
    }

    fn dispatch() -> Dispatch {
        Dispatch::new(
            WorkQueue::default(),
            Metrics::new("test").unwrap(),
            BaselineNames::default(),
            "arn:aws:sts::1:assumed-role/warden/me",
        )
    }

    #[tokio::test]
    async fn routes_skips_and_tracks_completion() {
        let d = dispatch();
        let now = Instant::now();
        assert!(d
            .dispatch(
                &ev(
                    "CreateUser",
                    "bob",
                    "arn:aws:sts::1:assumed-role/admin/x",
                    Some("EntityAlreadyExists")
                ),
                Source::CloudTrail,
                now
            )
            .is_empty());
        assert!(
            d.dispatch(
                &ev(
                    "CreateUser",
                    "bob",
                    "arn:aws:sts::1:assumed-role/warden/me",
                    None
                ),
                Source::CloudTrail,
                now
            )
            .is_empty(),
            "own write"
        );
        let t = d.dispatch(
            &ev(
                "CreateUser",
                "bob",
                "arn:aws:sts::1:assumed-role/admin/x",
                None,
            ),
            Source::Sqs,
            now,
        );
        assert_eq!(t.len(), 1);
        assert_eq!(d.queue().depth(), 1);
        let deadline = Instant::now() + std::time::Duration::from_millis(20);
        assert!(!d.wait_done(&t, deadline).await, "not reconciled yet");

        let lease = d.queue().next().await.unwrap();
        let covered = d.starting(lease.key());
        // An event arriving during the run is not covered by it.
        let t2 = d.dispatch(
            &ev(
                "TagUser",
                "bob",
                "arn:aws:sts::1:assumed-role/admin/x",
                None,
            ),
            Source::Sqs,
            now,
        );
        d.finished(lease.key(), covered);
        lease.done(crate::controller::queue::Outcome::success());
        assert!(d.wait_done(&t, Instant::now()).await);
        assert!(!d.all_done(&t2));
        let lease = d.queue().next().await.unwrap();
        let covered = d.starting(lease.key());
        d.finished(lease.key(), covered);
        assert!(d.all_done(&t2));
        let text = d.metrics().render();
        assert!(
            text.contains("iam_warden_events_total{event=\"CreateUser\",outcome=\"own_write\"} 1"),
            "{text}"
        );
        assert!(text
            .contains("iam_warden_events_total{event=\"CreateUser\",outcome=\"failed_call\"} 1"));
        assert!(text.contains("iam_warden_event_to_enforcement_seconds_count{from=\"received\"} 2"));
    }

    #[tokio::test]
    async fn delete_user_forgets_the_key() {
        let d = dispatch();
        d.dispatch(
            &ev("CreateUser", "gone", "arn:x", None),
            Source::CloudTrail,
            Instant::now(),
        );
        assert_eq!(d.queue().depth(), 1);
        d.dispatch(
            &ev("DeleteUser", "gone", "arn:x", None),
            Source::CloudTrail,
            Instant::now(),
        );
        assert_eq!(d.queue().depth(), 0);
    }
}
