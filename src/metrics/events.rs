//! The internal events: each event is emitted once, where it happens, and its `emit` writes
//! the log line (if any) and updates the metric together, so the two cannot disagree and
//! nothing is logged twice. Events with more to say than a label ([`WriteEvent`],
//! [`EventMalformed`], [`ReconcileDone`]) are structs; the simple ones are methods of
//! [`Metrics`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::labels::*;
use super::registry::{count, unix_seconds, Metrics};
use crate::aws::CallOutcome;
use crate::baseline::checks::{Check, Finding};
use crate::baseline::plan::rotation::{KeyStats, KEY_PHASES};

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

/// One IAM write, or would-be write. The CLI has no metrics registry: then only the log
/// line. `user`, `target` and why a write failed go to the log line only, never to a label.
#[derive(Debug, Clone, Copy)]
pub struct WriteEvent<'a> {
    pub action: &'a str,
    /// For a failed write, why (one line, never a secret): logged as `error`.
    pub outcome: &'a WriteOutcome,
    pub user: Option<&'a str>,
    /// A group, policy or key name, ...
    pub target: &'a str,
}

impl WriteEvent<'_> {
    /// Count the write (when there is a registry) and log it: failures at warn, the rest at
    /// info. An `action` outside [`WRITE_ACTIONS`] is counted as `other`.
    pub fn emit(&self, metrics: Option<&Metrics>) {
        let WriteEvent {
            action,
            outcome,
            user,
            target,
        } = *self;
        if let Some(m) = metrics {
            m.writes_total
                .with_label_values(&[write_action_label(action), outcome.as_str()])
                .inc();
        }
        let o = outcome.as_str();
        match outcome {
            WriteOutcome::Failed(error) => {
                let error = error.as_str();
                tracing::warn!(action, outcome = o, user, target, error, "IAM write")
            }
            _ => tracing::info!(action, outcome = o, user, target, "IAM write"),
        }
    }
}

/// The pre-flight gate held a change that would first put `user` under `policy`: counted
/// in `iam_warden_baseline_changes_held_total{policy}` and logged at warn (the user name
/// and the counts go to the log line only).
#[derive(Debug, Clone, Copy)]
pub struct ChangeHeld<'a> {
    pub policy: crate::baseline::policies::BaselinePolicy,
    pub user: &'a str,
    pub denied: u64,
    pub calls: u64,
    /// One line: the counts, the policy, how to accept.
    pub reason: &'a str,
}

impl ChangeHeld<'_> {
    pub fn emit(&self, metrics: Option<&Metrics>) {
        let policy = match self.policy {
            crate::baseline::policies::BaselinePolicy::Mfa => "mfa",
            crate::baseline::policies::BaselinePolicy::SourceIp => "source-ip",
        };
        if let Some(m) = metrics {
            m.baseline_changes_held_total
                .with_label_values(&[policy])
                .inc();
        }
        tracing::warn!(
            policy,
            user = self.user,
            denied = self.denied,
            calls = self.calls,
            reason = self.reason,
            "baseline change held by the pre-flight gate"
        );
    }
}

/// What became of one report of an exposed access key: counted in
/// `iam_warden_quarantines_total{outcome}` and logged once (a key that is left active, for
/// whatever reason, at warn: it is a finding a person must act on).
#[derive(Clone, Copy)]
pub struct QuarantineEvent<'a> {
    pub outcome: QuarantineOutcome,
    /// `health` (an AWS Health event) or `quarantine_policy` (AWS attached its policy).
    pub trigger: &'a str,
    /// The event id.
    pub event_id: &'a str,
    pub user: Option<&'a str>,
    /// The key, or (ambiguous) the candidate keys, comma-separated.
    pub key: Option<&'a str>,
    /// What happened and what to do, one line.
    pub detail: &'a str,
}

impl QuarantineEvent<'_> {
    pub fn emit(&self, metrics: Option<&Metrics>) {
        let QuarantineEvent {
            outcome,
            trigger,
            event_id,
            user,
            key,
            detail,
        } = *self;
        if let Some(m) = metrics {
            m.quarantines_total
                .with_label_values(&[outcome.as_str()])
                .inc();
        }
        let o = outcome.as_str();
        match outcome {
            QuarantineOutcome::Deactivated | QuarantineOutcome::DryRun => {
                tracing::warn!(
                    outcome = o,
                    trigger,
                    event_id,
                    user,
                    key,
                    "exposed access key: {detail}"
                )
            }
            QuarantineOutcome::Failed => {
                tracing::error!(
                    outcome = o,
                    trigger,
                    event_id,
                    user,
                    key,
                    "exposed access key: {detail}"
                )
            }
            QuarantineOutcome::UnknownKey | QuarantineOutcome::OtherAccount => {
                tracing::warn!(
                    outcome = o,
                    trigger,
                    event_id,
                    user,
                    key,
                    "exposed access key ignored: {detail}"
                )
            }
            QuarantineOutcome::Exempt
            | QuarantineOutcome::Ambiguous
            | QuarantineOutcome::NoActiveKey => tracing::warn!(
                outcome = o,
                finding = "key-exposed",
                trigger,
                event_id,
                user,
                key,
                "exposed access key left active: {detail}"
            ),
        }
    }
}

/// One key entered a rotation phase (or was deleted, discarded, reactivated): counted
/// under `event` (one of [`ROTATION_EVENTS`], else `other`) and logged at info. The owner
/// notifications hook in where this is emitted (`Applier::phase_changed`). Never a secret.
#[derive(Clone, Copy)]
pub struct RotationEvent<'a> {
    pub event: &'a str,
    pub user: &'a str,
    pub key_id: &'a str,
    pub reason: &'a str,
}

impl RotationEvent<'_> {
    pub fn emit(&self, metrics: Option<&Metrics>) {
        let RotationEvent {
            event,
            user,
            key_id,
            reason,
        } = *self;
        let label = ROTATION_EVENTS
            .iter()
            .copied()
            .find(|e| *e == event)
            .unwrap_or("other");
        if let Some(m) = metrics {
            m.rotation_events_total.with_label_values(&[label]).inc();
        }
        tracing::info!(event, user, key = key_id, reason, "access-key rotation");
    }
}

/// A CloudTrail record or SQS message that could not be parsed: counted under
/// `outcome="malformed"` and logged once, with what identifies it.
#[derive(Clone, Copy)]
pub struct EventMalformed<'a> {
    pub source: Source,
    /// The event name if it could be read (the label is bounded by [`metric_event_name`]).
    pub event_name: &'a str,
    /// The CloudTrail event id or the SQS message id, if any.
    pub id: Option<&'a str>,
    pub error: &'a dyn fmt::Display,
    /// SQS only: how often the message was received, and the start of its body.
    pub receive_count: Option<&'a str>,
    pub body_start: Option<&'a str>,
}

impl EventMalformed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let event = metric_event_name(self.event_name);
        metrics
            .events_total
            .with_label_values(&[event, EventOutcome::Malformed.as_str()])
            .inc();
        let (id, error) = (self.id, self.error);
        match self.source {
            Source::CloudTrail => tracing::warn!(
                event_id = id,
                event_name = self.event_name,
                error = %error,
                "skipping a malformed CloudTrail record"
            ),
            Source::Sqs => tracing::warn!(
                message_id = id,
                receive_count = self.receive_count,
                error = %error,
                body_start = self.body_start,
                "cannot parse an SQS message; leaving it for the queue's redrive policy \
                 (dead-letter queue after maxReceiveCount receives)"
            ),
        }
    }
}

/// One reconcile finished: counted, timed and logged once (the key and the error in the
/// log line only).
#[derive(Clone, Copy)]
pub struct ReconcileDone<'a> {
    pub key: Option<&'a dyn fmt::Display>,
    pub result: ReconcileResult,
    pub duration: Duration,
    pub error: Option<&'a dyn fmt::Display>,
    /// When a failed key is retried.
    pub retry_in: Option<Duration>,
}

impl ReconcileDone<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let r = self.result.as_str();
        metrics.reconciles_total.with_label_values(&[r]).inc();
        metrics
            .reconcile_duration_seconds
            .with_label_values(&[r])
            .observe(self.duration.as_secs_f64());
        let seconds = self.duration.as_secs_f64();
        let key = self.key.map(tracing::field::display);
        let error = self.error.map(tracing::field::display);
        let retry_in_ms = self.retry_in.map(|d| d.as_millis() as u64);
        match self.result {
            ReconcileResult::Success => tracing::debug!(key, result = r, seconds, "reconciled"),
            ReconcileResult::Error => {
                tracing::warn!(
                    key,
                    result = r,
                    seconds,
                    error,
                    retry_in_ms,
                    "reconcile failed"
                )
            }
            ReconcileResult::Dropped => {
                tracing::warn!(key, result = r, seconds, "reconcile dropped")
            }
        }
    }
}

/// An owner notification was raised (and journaled): counted by event and logged once.
/// `user`, `access_key_id` and `owner` go to the log line only, never to a label.
#[derive(Debug, Clone, Copy)]
pub struct NoticeRaised<'a> {
    /// One of [`NOTICE_EVENTS`]; anything else is counted as `other`.
    pub event: &'a str,
    pub user: &'a str,
    pub access_key_id: Option<&'a str>,
    pub owner: Option<&'a str>,
    /// `queued` (handed to the channels), `journal-only` (no channel configured),
    /// `dry-run` (mode dry-run: not delivered) or `dropped` (the queue was full).
    pub disposition: &'a str,
}

impl NoticeRaised<'_> {
    pub fn emit(&self, metrics: Option<&Metrics>) {
        let label = NOTICE_EVENTS
            .iter()
            .copied()
            .find(|e| *e == self.event)
            .unwrap_or("other");
        if let Some(m) = metrics {
            m.notices_total.with_label_values(&[label]).inc();
        }
        let NoticeRaised {
            event,
            user,
            access_key_id,
            owner,
            disposition,
        } = *self;
        tracing::info!(
            event,
            user,
            access_key_id,
            owner,
            disposition,
            "owner notification"
        );
    }
}

/// What became of one notification on one channel: counted under
/// `iam_warden_notifications_total{channel, outcome}` and logged once (sent at info, the
/// rest at warn). `destination` is the webhook URL without its query string, or the SNS
/// topic ARN; `error` is one line and never holds the signing key.
#[derive(Debug, Clone, Copy)]
pub struct NotificationDelivery<'a> {
    pub channel: NotifyChannel,
    pub outcome: NotifyOutcome,
    pub event: &'a str,
    pub user: &'a str,
    pub destination: &'a str,
    pub attempts: u32,
    pub error: Option<&'a str>,
}

impl NotificationDelivery<'_> {
    pub fn emit(&self, metrics: Option<&Metrics>) {
        let (channel, outcome) = (self.channel.as_str(), self.outcome.as_str());
        if let Some(m) = metrics {
            m.notifications_total
                .with_label_values(&[channel, outcome])
                .inc();
        }
        let NotificationDelivery {
            event,
            user,
            destination,
            attempts,
            error,
            ..
        } = *self;
        match self.outcome {
            NotifyOutcome::Sent => tracing::info!(
                channel,
                outcome,
                event,
                user,
                destination,
                attempts,
                "notification delivered"
            ),
            _ => tracing::warn!(
                channel,
                outcome,
                event,
                user,
                destination,
                attempts,
                error,
                "notification not delivered"
            ),
        }
    }
}

/// One Security Hub export by the daemon, counted under
/// `iam_warden_securityhub_exports_total{outcome}` and logged once (exported at debug, the
/// rest at warn). `user` is the user of a per-user export (none: the whole account);
/// `error` is one line.
#[derive(Debug, Clone, Copy)]
pub struct SecurityHubExported<'a> {
    pub outcome: ExportOutcome,
    pub user: Option<&'a str>,
    pub active: usize,
    pub resolved: usize,
    pub error: Option<&'a str>,
}

impl SecurityHubExported<'_> {
    pub fn emit(&self, metrics: Option<&Metrics>) {
        let outcome = self.outcome.as_str();
        if let Some(m) = metrics {
            m.securityhub_exports_total
                .with_label_values(&[outcome])
                .inc();
        }
        let SecurityHubExported {
            user,
            active,
            resolved,
            error,
            ..
        } = *self;
        let scope = user.unwrap_or("whole account");
        match self.outcome {
            ExportOutcome::Exported => tracing::debug!(
                outcome,
                scope,
                active,
                resolved,
                "findings exported to Security Hub"
            ),
            _ => tracing::warn!(
                outcome,
                scope,
                active,
                resolved,
                error,
                "findings not exported to Security Hub"
            ),
        }
    }
}

/// An SQS message skipped because of the account it is about (not in scope, or its
/// `account` field cannot be read): counted under
/// `iam_warden_sqs_messages_skipped_total{reason}` and logged once, naming the account and
/// how to fix it. The message is deleted (a skip never retries). `repeat`: the consumer has
/// already warned about this account, so the line drops to debug (an organization-wide rule
/// can send many events of accounts out of scope).
#[derive(Debug, Clone, Copy)]
pub struct SqsMessageSkipped<'a> {
    pub reason: SqsSkipReason,
    /// The `account` value as found (a string cut short, or the JSON type of another value).
    pub account: &'a str,
    pub message_id: &'a str,
    /// What the message is (its event name, or the envelope's `detail-type`; cut short).
    pub event: &'a str,
    /// How many accounts are in scope now.
    pub in_scope: usize,
    pub repeat: bool,
}

impl SqsMessageSkipped<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let reason = self.reason.as_str();
        metrics
            .sqs_messages_skipped_total
            .with_label_values(&[reason])
            .inc();
        let SqsMessageSkipped {
            account,
            message_id,
            event,
            in_scope,
            ..
        } = *self;
        macro_rules! log {
            ($($msg:tt)+) => {
                if self.repeat {
                    tracing::debug!(reason, account, message_id, event, accounts_in_scope = in_scope, $($msg)+)
                } else {
                    tracing::warn!(reason, account, message_id, event, accounts_in_scope = in_scope, $($msg)+)
                }
            };
        }
        match self.reason {
            SqsSkipReason::NotInScope => log!(
                "SQS event of an account iam-warden does not cover; deleted unhandled. To \
                 enforce that account add it to [accounts] (accounts.list, or the \
                 organization's include filter); otherwise narrow the EventBridge rule (or the \
                 central event bus's rule) to the accounts in scope"
            ),
            SqsSkipReason::AccountDown => log!(
                "SQS event of an account in scope whose controller is not running (its role \
                 cannot be assumed: see the account's `account down` line); deleted \
                 unhandled, its first resync once the account is up reconciles every user. \
                 Fix the account's role (deploy/cloudformation/member-role.yaml)"
            ),
            SqsSkipReason::Missing => log!(
                "SQS message without an `account` field; deleted unhandled. Feed the queue \
                 only from an EventBridge rule: its events name the account they are about"
            ),
            SqsSkipReason::NotAString => log!(
                "SQS message whose `account` field is not a string; deleted unhandled. Feed \
                 the queue only from an EventBridge rule: its events name the account as a \
                 12-digit string"
            ),
            SqsSkipReason::BadShape => log!(
                "SQS message whose `account` field is not a 12-digit account id; deleted \
                 unhandled. Feed the queue only from an EventBridge rule: its events name \
                 the account as a 12-digit string"
            ),
        }
    }
}

/// An account's state changed: its role could (not) be assumed, its resync (no longer)
/// fails. Sets `iam_warden_account_up{account}` and logs once: down at warn with the
/// reason and how to fix it (one line, never a secret), up at info.
#[derive(Debug, Clone, Copy)]
pub struct AccountStatus<'a> {
    pub account: &'a str,
    pub up: bool,
    /// Down: why, with the fix.
    pub error: Option<&'a str>,
    /// Down: when it is tried again.
    pub retry_in: Option<Duration>,
}

impl AccountStatus<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let AccountStatus {
            account,
            up,
            error,
            retry_in,
        } = *self;
        metrics
            .account_up
            .with_label_values(&[account])
            .set(i64::from(up));
        let retry_in_s = retry_in.map(|d| d.as_secs());
        if up {
            tracing::info!(account, up, "account up");
        } else {
            tracing::warn!(account, up, error, retry_in_s, "account down");
        }
    }
}

impl Metrics {
    /// `server.metrics_per_account`: whether each account has its own compliance series
    /// (else one `account="all"` series each, summed). Set before the first account starts.
    pub fn set_per_account(&self, per_account: bool) {
        if let Ok(mut a) = self.accounts.lock() {
            a.per_account = per_account;
        }
    }

    /// A controller for `account` started: its series at zero (`account_up` 0 until its
    /// first resync succeeds), replacing the empty-account placeholders.
    pub fn account_started(&self, account: &str) {
        let Ok(mut a) = self.accounts.lock() else {
            return;
        };
        if !a.started {
            a.started = true;
            self.remove_series("", true);
        }
        a.figures.entry(account.to_string()).or_default();
        let f = a.published(account);
        self.write_figures(a.label(account), &f);
        self.account_up.with_label_values(&[account]).set(0);
        self.last_resync_success_timestamp_seconds
            .with_label_values(&[account]);
        tracing::info!(account, "account controller started");
    }

    /// `account` left the scope: its series are removed (with the detail off, the sums
    /// no longer count it).
    pub fn account_stopped(&self, account: &str) {
        let Ok(mut a) = self.accounts.lock() else {
            return;
        };
        a.figures.remove(account);
        a.queues.remove(account);
        // Its breaker, keys and credential report no longer count.
        a.tripped.remove(account);
        self.breaker_tripped.set(i64::from(!a.tripped.is_empty()));
        a.keys.remove(account);
        self.write_key_stats(&KeyStats::merged(a.keys.values()));
        a.reports.remove(account);
        let (depth, in_flight) = a
            .queues
            .values()
            .fold((0, 0), |(d, f), (x, y)| (d + x, f + y));
        self.set_queue(depth, in_flight);
        if a.per_account {
            self.remove_series(account, true);
        } else {
            let _ = self.account_up.remove_label_values(&[account]);
            let _ = self
                .last_resync_success_timestamp_seconds
                .remove_label_values(&[account]);
            let f = a.published(account);
            self.write_figures(super::accounts::ALL_ACCOUNTS, &f);
        }
        tracing::info!(account, "account left the scope; its controller stopped");
    }

    /// A discovery of the accounts in scope: counted by result and logged (a failure at
    /// warn with the error and when it is retried; the current accounts are kept).
    pub fn accounts_discovered(
        &self,
        result: std::result::Result<(usize, usize, usize), &str>,
        retry_in: Option<Duration>,
    ) {
        match result {
            Ok((accounts, added, removed)) => {
                self.account_discoveries_total
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(accounts, added, removed, "accounts discovered");
            }
            Err(error) => {
                self.account_discoveries_total
                    .with_label_values(&["error"])
                    .inc();
                let retry_in_s = retry_in.map(|d| d.as_secs());
                tracing::warn!(
                    error,
                    retry_in_s,
                    "account discovery failed; the accounts found before are kept"
                );
            }
        }
    }
}

impl Metrics {
    /// `account`'s work queue: keys waiting and reconciles running. The queue gauges are
    /// the sums over the accounts.
    pub fn set_account_queue(&self, account: &str, depth: usize, in_flight: usize) {
        let Ok(mut a) = self.accounts.lock() else {
            return;
        };
        a.queues.insert(account.to_string(), (depth, in_flight));
        let (depth, in_flight) = a
            .queues
            .values()
            .fold((0, 0), |(d, f), (x, y)| (d + x, f + y));
        self.set_queue(depth, in_flight);
    }
}
