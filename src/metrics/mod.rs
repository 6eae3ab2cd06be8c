//! The Prometheus registry and every metric iam-warden exports.
//!
//! One [`Registry`] per [`Metrics`] instance (never the global default registry), passed
//! around as `Arc<Metrics>`. Names follow `iam_warden_<what>_<unit>[_total]` in base units
//! (seconds, not milliseconds). Every label is a closed set: never a user name, an ARN or
//! a key id. Every known label combination is created at zero by [`Metrics::new`], so
//! dashboards and alerts see the series from the first scrape.
//!
//! # Internal events
//!
//! As in Vector's "internal events", the helper methods ([`Metrics::event_received`],
//! [`Metrics::write`], [`Metrics::reconciled`], ...) emit the log line *and* update the
//! metric in one call, so the two can never disagree. Prefer them over touching the pub
//! fields directly. User names may appear in log lines (never in labels); secrets never
//! appear in either.
//!
//! # Cardinality
//!
//! - `iam_warden_events_total`: every name of [`KNOWN_EVENT_NAMES`] plus `other`, times
//!   every [`EventOutcome`], is pre-created (about 40 × 6 = 240 series; bounded because
//!   [`metric_event_name`] maps any other name to `other`).
//! - `iam_warden_writes_total`: every action of [`WRITE_ACTIONS`] × every
//!   [`WriteOutcome`] is pre-created; any other action string is counted as `other`
//!   (not pre-created).
//! - `iam_warden_aws_calls_total`: [`AWS_OPERATIONS`] × every outcome is pre-created. The
//!   `service` label is one of `metrics::AWS_SERVICES` (anything else becomes `other`);
//!   `operation` is the SDK's operation name, a compile-time constant of the SDK and so
//!   bounded by what the code calls. A value that does not look like an AWS operation
//!   name (ASCII letters/digits, at most 64 characters) is counted as `other`.
//! - `iam_warden_notices_total{event}`: the 8 [`NOTICE_EVENTS`]; an unknown name is
//!   counted as `other` (not pre-created). `iam_warden_notifications_total{channel,
//!   outcome}`: 2 channels × 3 outcomes, all pre-created.
//! - `iam_warden_securityhub_exports_total{outcome}`: the 3 [`ExportOutcome`]s,
//!   pre-created.
//! - `iam_warden_access_keys{phase}`: the 8 phases of `KEY_PHASES`, all pre-created; the
//!   key age is one unlabelled [`GaugeHistogram`] (no per-user label).
//! - `iam_warden_sqs_messages_skipped_total{reason}`: the 5 [`SqsSkipReason`]s,
//!   pre-created; the account skipped is in the log line only (never a label: an
//!   organization-wide rule can send events of any number of accounts).
//! - `account` (the account id, or `all` with `server.metrics_per_account = false`):
//!   `users` (accounts x 3), `users_failing_check` and `account_check_failing` /
//!   `account_check_cannot_check` (accounts x checks); `account_up` and
//!   `last_resync_success_timestamp_seconds` (accounts x 1, always by id). Created when an
//!   account's controller starts, removed when it leaves the scope (`metrics/accounts.rs`).
mod accounts;
mod events;
mod gauge_histogram;
mod labels;
mod registry;

pub use accounts::ALL_ACCOUNTS;
pub use events::SqsMessageSkipped;
pub use events::{
    AccountStatus, ChangeHeld, EventMalformed, NoticeRaised, NotificationDelivery, QuarantineEvent,
    ReconcileDone, RotationEvent, SecurityHubExported, WriteEvent,
};
pub use gauge_histogram::GaugeHistogram;
pub use labels::SqsSkipReason;
pub use labels::{
    metric_event_name, write_action_label, EventOutcome, ExportOutcome, NotifyChannel,
    NotifyOutcome, QuarantineOutcome, QueueSource, ReconcileResult, Source, WriteOutcome,
    AWS_OPERATIONS, AWS_SERVICES, KNOWN_EVENT_NAMES, NOTICE_EVENTS, ROTATION_EVENTS, WRITE_ACTIONS,
};
pub use registry::{Metrics, CONTENT_TYPE};

#[cfg(test)]
mod tests;
