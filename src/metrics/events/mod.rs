//! The internal events: each event is emitted once, where it happens, and its `emit` writes
//! the log line (if any) and updates the metric together, so the two cannot disagree and
//! nothing is logged twice. Events with more to say than a label ([`WriteEvent`],
//! [`EventMalformed`], [`ReconcileDone`]) are structs; the simple ones are methods of
//! [`Metrics`].
//!
//! Here the counters and gauges of the controller's own work (calls, events, writes,
//! reconciles, resyncs, compliance, queue, breaker, keys); the structs by what they are
//! about: [`writes`] (writes, held changes, quarantines, rotation phases), [`inputs`]
//! (unparseable events, skipped SQS messages, finished reconciles), [`outputs`] (owner
//! notices and their delivery, Security Hub exports), [`accounts`] (an account up or
//! down, discovery, per-account series).

mod accounts;
mod inputs;
mod outputs;
mod writes;

pub use accounts::AccountStatus;
pub use inputs::{EventMalformed, ReconcileDone, SqsMessageSkipped};
pub use outputs::{NoticeRaised, NotificationDelivery, SecurityHubExported};
pub use writes::{ChangeHeld, QuarantineEvent, RotationEvent, WriteEvent};

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::aws::CallOutcome;
use crate::baseline::checks::{Check, Finding};
use crate::baseline::plan::rotation::{KeyStats, KEY_PHASES};
use crate::metrics::labels::*;
use crate::metrics::registry::{count, unix_seconds, Metrics};

impl Metrics {
    /// One HTTP attempt of an AWS call (normally through [`Metrics::call_stats`]).
    pub fn aws_call(&self, service: &str, operation: &str, outcome: CallOutcome) {
        let (service, operation) = (service_label(service), operation_label(operation));
        self.aws_calls_total
            .with_label_values(&[service, operation, outcome.as_str()])
            .inc();
        if outcome == CallOutcome::Throttled {
            self.aws_throttles_total
                .with_label_values(&[operation])
                .inc();
            tracing::debug!(
                service,
                operation,
                "AWS throttled a call; the write/read rate is halved and the call retried"
            );
        }
    }

    /// Readiness (normally through [`crate::http::Health::set_ready`]).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// One CloudTrail / EventBridge event received and classified.
    pub fn event_received(&self, event_name: &str, outcome: EventOutcome) {
        let event = metric_event_name(event_name);
        self.events_total
            .with_label_values(&[event, outcome.as_str()])
            .inc();
        match outcome {
            EventOutcome::Malformed => {
                tracing::warn!(
                    event_name,
                    outcome = outcome.as_str(),
                    "malformed IAM event"
                )
            }
            EventOutcome::Enqueued => {
                tracing::debug!(event_name, outcome = outcome.as_str(), "IAM event")
            }
            _ => tracing::trace!(event_name, outcome = outcome.as_str(), "IAM event"),
        }
    }

    /// One IAM write, or would-be write. `user` and `target` (a group, policy or key
    /// name, ...) go to the log line only, never to a label. An `action` outside
    /// [`WRITE_ACTIONS`] is counted as `other`.
    pub fn write(&self, action: &str, outcome: WriteOutcome, user: Option<&str>, target: &str) {
        WriteEvent {
            action,
            outcome: &outcome,
            user,
            target,
        }
        .emit(Some(self));
    }

    /// A failed IAM write, with the error in the log line.
    pub fn write_failed(
        &self,
        action: &str,
        user: Option<&str>,
        target: &str,
        error: &dyn std::fmt::Display,
    ) {
        WriteEvent {
            action,
            outcome: &WriteOutcome::Failed(error.to_string()),
            user,
            target,
        }
        .emit(Some(self));
    }

    /// One reconcile finished (without the key and error: see [`ReconcileDone`]).
    pub fn reconciled(&self, result: ReconcileResult, duration: Duration) {
        ReconcileDone {
            key: None,
            result,
            duration,
            error: None,
            retry_in: None,
        }
        .emit(self);
    }

    /// A full resync of `account` finished (`at`: when).
    pub fn resync_done(&self, account: &str, ok: bool, at: DateTime<Utc>) {
        if ok {
            self.resyncs_total.with_label_values(&["success"]).inc();
            self.last_resync_success_timestamp_seconds
                .with_label_values(&[account])
                .set(unix_seconds(at));
            tracing::info!(account, result = "success", at = %at.to_rfc3339(), "full resync done");
        } else {
            self.resyncs_total.with_label_values(&["error"]).inc();
            tracing::warn!(account, result = "error", at = %at.to_rfc3339(), "full resync failed");
        }
    }

    /// An event source was polled successfully at `at`.
    pub fn poll_ok(&self, source: Source, at: DateTime<Utc>) {
        self.last_poll_success_timestamp_seconds
            .with_label_values(&[source.as_str()])
            .set(unix_seconds(at));
        tracing::trace!(source = source.as_str(), "poll ok");
    }

    /// `account`'s users by state and by failing check at the last evaluation. `failing`
    /// maps a check id ([`Check::id`]) to a user count; every check absent from it is set
    /// to zero, and ids that are not checks are ignored (no new label).
    pub fn set_compliance(
        &self,
        account: &str,
        compliant: usize,
        violating: usize,
        exempt: usize,
        failing: &BTreeMap<&str, usize>,
    ) {
        self.publish(account, |f| {
            f.users = [count(compliant), count(violating), count(exempt)];
            for (i, c) in Check::ALL.iter().enumerate() {
                f.failing[i] = count(failing.get(c.id()).copied().unwrap_or(0));
            }
        });
        for unknown in failing
            .keys()
            .filter(|k| !Check::ALL.iter().any(|c| c.id() == **k))
        {
            tracing::debug!(check = unknown, "not a check id; not exported");
        }
        tracing::info!(account, compliant, violating, exempt, "compliance");
    }

    /// `account`'s account-level findings of the last resync: per account check, how
    /// many fail and how many could not be made (every account check set, zeros included).
    pub fn set_account_checks(&self, account: &str, findings: &[Finding]) {
        let mut failing = Vec::new();
        let mut unknown = Vec::new();
        let mut figures = (Vec::new(), Vec::new());
        for c in Check::ACCOUNT {
            let of = |cannot: bool| {
                findings
                    .iter()
                    .filter(|f| f.check == c && f.cannot_check == cannot)
                    .count()
            };
            let (fail, cannot) = (of(false), of(true));
            figures.0.push(count(fail));
            figures.1.push(count(cannot));
            if fail > 0 {
                failing.push(c.id());
            }
            if cannot > 0 {
                unknown.push(c.id());
            }
        }
        self.publish(account, |f| {
            (f.account_failing, f.cannot) = figures;
        });
        tracing::info!(
            account,
            failing = %failing.join(","),
            cannot_check = %unknown.join(","),
            "account checks"
        );
    }

    /// The end of the reconcile an event triggered: time since the event happened (its
    /// CloudTrail eventTime, when known) and since iam-warden received it.
    pub fn enforcement_latency(&self, from_event_time: Option<Duration>, from_received: Duration) {
        if let Some(d) = from_event_time {
            self.event_to_enforcement_seconds
                .with_label_values(&["event_time"])
                .observe(d.as_secs_f64());
        }
        self.event_to_enforcement_seconds
            .with_label_values(&["received"])
            .observe(from_received.as_secs_f64());
        tracing::debug!(
            from_event_time_seconds = from_event_time.map(|d| d.as_secs_f64()),
            from_received_seconds = from_received.as_secs_f64(),
            "change enforced"
        );
    }

    /// An item was added to the work queue.
    pub fn queue_added(&self, source: QueueSource) {
        self.queue_adds_total
            .with_label_values(&[source.as_str()])
            .inc();
        if source == QueueSource::Retry {
            self.queue_retries_total.inc();
        }
    }

    /// Current queue size: items waiting and reconciles running.
    pub fn set_queue(&self, depth: usize, in_flight: usize) {
        self.queue_depth.set(count(depth));
        self.queue_in_flight.set(count(in_flight));
    }

    /// An item was picked up after waiting `waited` since it became ready.
    pub fn queue_waited(&self, waited: Duration) {
        self.queue_wait_seconds.observe(waited.as_secs_f64());
    }

    /// `account`'s blast-radius breaker state; logs on every change (`reason` says why).
    /// `iam_warden_breaker_tripped` is 1 while any account's breaker is tripped.
    pub fn set_breaker(&self, account: &str, tripped: bool, reason: &str) {
        let Ok(mut a) = self.accounts.lock() else {
            return;
        };
        let was = if tripped {
            !a.tripped.insert(account.to_string())
        } else {
            a.tripped.remove(account)
        };
        self.breaker_tripped.set(i64::from(!a.tripped.is_empty()));
        match (was, tripped) {
            (false, true) => tracing::warn!(
                account,
                reason,
                "blast-radius breaker tripped: writes that take access away stopped"
            ),
            (true, false) => {
                tracing::info!(account, reason, "blast-radius breaker reset: writes resume")
            }
            _ => {}
        }
    }

    /// `account`'s blast-radius breaker tripped (once per window): counts the trip and
    /// sets the gauge.
    pub fn breaker_trip(&self, account: &str, reason: &str) {
        self.breaker_trips_total.inc();
        self.set_breaker(account, true, reason);
    }

    /// The access keys seen by `account`'s resync: keys by phase, the age distribution of
    /// the active keys, the oldest one, and when the next rotation step is due — the
    /// gauges over every account in scope.
    pub fn set_key_stats(&self, account: &str, s: &KeyStats) {
        let all = match self.accounts.lock() {
            Ok(mut a) => {
                a.keys.insert(account.to_string(), s.clone());
                KeyStats::merged(a.keys.values())
            }
            Err(_) => s.clone(),
        };
        self.write_key_stats(&all);
        tracing::info!(
            account,
            active = s.phase("active"),
            warned = s.phase("warned"),
            rotating = s.phase("rotating"),
            draining = s.phase("draining"),
            stuck = s.phase("stuck"),
            deactivated = s.phase("deactivated"),
            quarantined = s.phase("quarantined"),
            inactive = s.phase("inactive"),
            oldest_active_age_days = (s.oldest_active_age_seconds / 86_400.0).floor(),
            next_due = s.next_due.map(|d| d.to_rfc3339()),
            "access keys"
        );
    }

    fn write_key_stats(&self, s: &KeyStats) {
        for (p, n) in KEY_PHASES.iter().zip(s.by_phase) {
            self.access_keys.with_label_values(&[*p]).set(count(n));
        }
        self.access_key_age_seconds
            .set(&s.age_buckets, s.age_count, s.age_sum_seconds);
        self.oldest_access_key_age_seconds
            .set(s.oldest_active_age_seconds);
        self.rotation_next_due_timestamp_seconds
            .set(s.next_due.map_or(0.0, unix_seconds));
    }

    /// The credential report `account`'s resync used was generated at `generated`; `now`
    /// is the current time. The gauge is the age of the oldest report in use.
    pub fn credential_report_age(
        &self,
        account: &str,
        generated: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let oldest = match self.accounts.lock() {
            Ok(mut a) => {
                a.reports.insert(account.to_string(), generated);
                a.reports.values().min().copied().unwrap_or(generated)
            }
            Err(_) => generated,
        };
        let age = (now - oldest).num_milliseconds().max(0) as f64 / 1000.0;
        self.credential_report_age_seconds.set(age);
    }
}
