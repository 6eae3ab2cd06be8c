//! Events of what comes in and what becomes of it: a record or message that cannot be
//! parsed, an SQS message skipped because of its account, a finished reconcile.

use std::fmt;
use std::time::Duration;

use crate::metrics::labels::*;
use crate::metrics::registry::Metrics;

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
