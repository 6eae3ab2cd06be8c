//! The internal events: each helper writes the log line (if any) and updates the metric in
//! one call, so the two cannot disagree.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::labels::*;
use super::registry::{count, unix_seconds, Metrics};
use crate::aws::CallOutcome;
use crate::baseline::checks::Check;

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
        self.writes_total
            .with_label_values(&[write_action_label(action), outcome.as_str()])
            .inc();
        let o = outcome.as_str();
        match outcome {
            WriteOutcome::Failed => tracing::warn!(action, outcome = o, user, target, "IAM write"),
            _ => tracing::info!(action, outcome = o, user, target, "IAM write"),
        }
    }

    /// A failed IAM write, with the error in the log line.
    pub fn write_failed(
        &self,
        action: &str,
        user: Option<&str>,
        target: &str,
        error: &dyn std::fmt::Display,
    ) {
        self.writes_total
            .with_label_values(&[write_action_label(action), WriteOutcome::Failed.as_str()])
            .inc();
        tracing::warn!(
            action,
            outcome = WriteOutcome::Failed.as_str(),
            user,
            target,
            error = %error,
            "IAM write"
        );
    }

    /// One reconcile finished.
    pub fn reconciled(&self, result: ReconcileResult, duration: Duration) {
        let r = result.as_str();
        self.reconciles_total.with_label_values(&[r]).inc();
        self.reconcile_duration_seconds
            .with_label_values(&[r])
            .observe(duration.as_secs_f64());
        let seconds = duration.as_secs_f64();
        match result {
            ReconcileResult::Success => tracing::debug!(result = r, seconds, "reconciled"),
            ReconcileResult::Error => tracing::warn!(result = r, seconds, "reconcile failed"),
            ReconcileResult::Dropped => tracing::warn!(result = r, seconds, "reconcile dropped"),
        }
    }

    /// A full resync finished (`at`: when).
    pub fn resync_done(&self, ok: bool, at: DateTime<Utc>) {
        if ok {
            self.resyncs_total.with_label_values(&["success"]).inc();
            self.last_resync_success_timestamp_seconds
                .set(unix_seconds(at));
            tracing::info!(result = "success", at = %at.to_rfc3339(), "full resync done");
        } else {
            self.resyncs_total.with_label_values(&["error"]).inc();
            tracing::warn!(result = "error", at = %at.to_rfc3339(), "full resync failed");
        }
    }

    /// An event source was polled successfully at `at`.
    pub fn poll_ok(&self, source: Source, at: DateTime<Utc>) {
        self.last_poll_success_timestamp_seconds
            .with_label_values(&[source.as_str()])
            .set(unix_seconds(at));
        tracing::trace!(source = source.as_str(), "poll ok");
    }

    /// Users by state and by failing check at the last evaluation. `failing` maps a check
    /// id ([`Check::id`]) to a user count; every check absent from it is set to zero, and
    /// ids that are not checks are ignored (no new label).
    pub fn set_compliance(
        &self,
        compliant: usize,
        violating: usize,
        exempt: usize,
        failing: &BTreeMap<&str, usize>,
    ) {
        self.users
            .with_label_values(&["compliant"])
            .set(count(compliant));
        self.users
            .with_label_values(&["violating"])
            .set(count(violating));
        self.users.with_label_values(&["exempt"]).set(count(exempt));
        for c in Check::ALL {
            let n = failing.get(c.id()).copied().unwrap_or(0);
            self.users_failing_check
                .with_label_values(&[c.id()])
                .set(count(n));
        }
        for unknown in failing
            .keys()
            .filter(|k| !Check::ALL.iter().any(|c| c.id() == **k))
        {
            tracing::debug!(check = unknown, "not a check id; not exported");
        }
        tracing::info!(compliant, violating, exempt, "compliance");
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

    /// The blast-radius breaker state; logs on every change (`reason` says why).
    pub fn set_breaker(&self, tripped: bool, reason: &str) {
        let was = self.breaker_tripped.get() != 0;
        self.breaker_tripped.set(i64::from(tripped));
        match (was, tripped) {
            (false, true) => tracing::warn!(
                reason,
                "blast-radius breaker tripped: writes that take access away stopped"
            ),
            (true, false) => tracing::info!(reason, "blast-radius breaker reset: writes resume"),
            _ => {}
        }
    }

    /// The blast-radius breaker tripped (once per window): counts the trip and sets the
    /// gauge.
    pub fn breaker_trip(&self, reason: &str) {
        self.breaker_trips_total.inc();
        self.set_breaker(true, reason);
    }

    /// The credential report used was generated at `generated`; `now` is the current time.
    pub fn credential_report_age(&self, generated: DateTime<Utc>, now: DateTime<Utc>) {
        let age = (now - generated).num_milliseconds().max(0) as f64 / 1000.0;
        self.credential_report_age_seconds.set(age);
    }
}
