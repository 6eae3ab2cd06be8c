//! Events of IAM writes: one write (or would-be write), a change the pre-flight gate
//! held, the quarantine of an exposed key, a key's rotation phase.

use crate::metrics::labels::*;
use crate::metrics::registry::Metrics;

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
