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
//!   `service` label is one of `iam|sts|cloudtrail|sqs` (anything else becomes `other`);
//!   `operation` is the SDK's operation name, a compile-time constant of the SDK and so
//!   bounded by what the code calls. A value that does not look like an AWS operation
//!   name (ASCII letters/digits, at most 64 characters) is counted as `other`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::aws::{CallOutcome, CallStats};
use crate::baseline::checks::Check;
use crate::error::Error;
use crate::sources::event::{metric_event_name, KNOWN_EVENT_NAMES};

/// The content type of [`Metrics::render`] (Prometheus text exposition format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Every IAM write action iam-warden performs (the `action` label of
/// `iam_warden_writes_total`). Anything else is counted as `other`.
pub const WRITE_ACTIONS: &[&str] = &[
    "tag_user",
    "untag_user",
    "create_policy",
    "create_policy_version",
    "delete_policy_version",
    "create_group",
    "attach_group_policy",
    "add_user_to_group",
    "attach_user_policy",
    "delete_login_profile",
    "deactivate_access_key",
    "delete_access_key",
    "update_password_policy",
];

/// The `service` label values of `iam_warden_aws_calls_total`.
pub const AWS_SERVICES: &[&str] = &["iam", "sts", "cloudtrail", "sqs"];

/// AWS operations whose `iam_warden_aws_calls_total` series are pre-created at zero
/// (service, operation). Other operations the code calls are still counted.
pub const AWS_OPERATIONS: &[(&str, &str)] = &[
    // observe: whole account
    ("iam", "GetAccountAuthorizationDetails"),
    ("iam", "GenerateCredentialReport"),
    ("iam", "GetCredentialReport"),
    ("iam", "GetAccountPasswordPolicy"),
    // observe: one user
    ("iam", "GetUser"),
    ("iam", "ListAccessKeys"),
    ("iam", "GetAccessKeyLastUsed"),
    ("iam", "GetLoginProfile"),
    ("iam", "ListMFADevices"),
    ("iam", "ListAttachedUserPolicies"),
    ("iam", "ListGroupsForUser"),
    // baseline objects
    ("iam", "GetPolicy"),
    ("iam", "GetPolicyVersion"),
    ("iam", "ListPolicyVersions"),
    ("iam", "GetGroup"),
    // writes
    ("iam", "CreatePolicy"),
    ("iam", "CreatePolicyVersion"),
    ("iam", "DeletePolicyVersion"),
    ("iam", "CreateGroup"),
    ("iam", "AttachGroupPolicy"),
    ("iam", "AddUserToGroup"),
    ("iam", "AttachUserPolicy"),
    ("iam", "DeleteLoginProfile"),
    ("iam", "UpdateAccessKey"),
    ("iam", "DeleteAccessKey"),
    ("iam", "UpdateAccountPasswordPolicy"),
    ("iam", "TagUser"),
    ("iam", "UntagUser"),
    // identity
    ("sts", "GetCallerIdentity"),
    // sources
    ("cloudtrail", "LookupEvents"),
    ("sqs", "ReceiveMessage"),
    ("sqs", "DeleteMessage"),
    ("sqs", "DeleteMessageBatch"),
    ("sqs", "ChangeMessageVisibility"),
];

const CALL_OUTCOMES: [CallOutcome; 3] =
    [CallOutcome::Ok, CallOutcome::Error, CallOutcome::Throttled];

/// Buckets of `iam_warden_reconcile_duration_seconds` (5 ms … 30 s).
const RECONCILE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of `iam_warden_queue_wait_seconds` (1 ms … 5 min: items may be delayed on purpose).
const QUEUE_WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Buckets of `iam_warden_event_to_enforcement_seconds` (50 ms … 15 min: CloudTrail
/// LookupEvents delivers in about 5 minutes, EventBridge/SQS within seconds).
const ENFORCEMENT_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
];

/// What happened to one received CloudTrail / EventBridge event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventOutcome {
    /// Mapped to a reconcile key and added to the work queue.
    Enqueued,
    /// Not relevant to the baseline.
    Ignored,
    /// Made by iam-warden itself.
    OwnWrite,
    /// The recorded call failed (errorCode set): nothing changed.
    FailedCall,
    /// Seen before (same eventID; overlapping poll windows, SQS redelivery).
    Duplicate,
    /// Could not be parsed.
    Malformed,
}

impl EventOutcome {
    pub const ALL: [EventOutcome; 6] = [
        EventOutcome::Enqueued,
        EventOutcome::Ignored,
        EventOutcome::OwnWrite,
        EventOutcome::FailedCall,
        EventOutcome::Duplicate,
        EventOutcome::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Enqueued => "enqueued",
            EventOutcome::Ignored => "ignored",
            EventOutcome::OwnWrite => "own_write",
            EventOutcome::FailedCall => "failed_call",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Malformed => "malformed",
        }
    }
}

/// The outcome of one IAM write (or would-be write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WriteOutcome {
    Applied,
    Failed,
    /// Dry-run mode: journaled, not executed.
    DryRun,
    /// Not executed (breaker tripped, entity gone, already in the desired state, ...).
    Skipped,
}

impl WriteOutcome {
    pub const ALL: [WriteOutcome; 4] = [
        WriteOutcome::Applied,
        WriteOutcome::Failed,
        WriteOutcome::DryRun,
        WriteOutcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WriteOutcome::Applied => "applied",
            WriteOutcome::Failed => "failed",
            WriteOutcome::DryRun => "dry_run",
            WriteOutcome::Skipped => "skipped",
        }
    }
}

/// The result of one reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReconcileResult {
    Success,
    Error,
    /// Given up (retries exhausted, shutdown deadline, ...).
    Dropped,
}

impl ReconcileResult {
    pub const ALL: [ReconcileResult; 3] = [
        ReconcileResult::Success,
        ReconcileResult::Error,
        ReconcileResult::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Success => "success",
            ReconcileResult::Error => "error",
            ReconcileResult::Dropped => "dropped",
        }
    }
}

/// An event source that is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    CloudTrail,
    Sqs,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::CloudTrail, Source::Sqs];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::CloudTrail => "cloudtrail",
            Source::Sqs => "sqs",
        }
    }
}

/// Why an item was added to the work queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueSource {
    CloudTrail,
    Sqs,
    Resync,
    /// Scheduled again (next rotation phase due).
    Requeue,
    /// Retried after an error, with backoff.
    Retry,
}

impl QueueSource {
    pub const ALL: [QueueSource; 5] = [
        QueueSource::CloudTrail,
        QueueSource::Sqs,
        QueueSource::Resync,
        QueueSource::Requeue,
        QueueSource::Retry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueSource::CloudTrail => "cloudtrail",
            QueueSource::Sqs => "sqs",
            QueueSource::Resync => "resync",
            QueueSource::Requeue => "requeue",
            QueueSource::Retry => "retry",
        }
    }
}

impl From<Source> for QueueSource {
    fn from(s: Source) -> Self {
        match s {
            Source::CloudTrail => QueueSource::CloudTrail,
            Source::Sqs => QueueSource::Sqs,
        }
    }
}

/// Every metric of iam-warden, registered in its own [`Registry`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `iam_warden_build_info{version}` = 1.
    pub build_info: IntGaugeVec,
    /// `iam_warden_ready` 0/1.
    pub ready: IntGauge,
    /// `iam_warden_reconciles_total{result}`.
    pub reconciles_total: IntCounterVec,
    /// `iam_warden_reconcile_duration_seconds{result}`.
    pub reconcile_duration_seconds: HistogramVec,
    /// `iam_warden_queue_depth`: items waiting (ready or delayed).
    pub queue_depth: IntGauge,
    /// `iam_warden_queue_in_flight`: reconciles running.
    pub queue_in_flight: IntGauge,
    /// `iam_warden_queue_adds_total{source}`.
    pub queue_adds_total: IntCounterVec,
    /// `iam_warden_queue_retries_total`.
    pub queue_retries_total: IntCounter,
    /// `iam_warden_queue_wait_seconds`: time from ready to picked up.
    pub queue_wait_seconds: Histogram,
    /// `iam_warden_events_total{event, outcome}`.
    pub events_total: IntCounterVec,
    /// `iam_warden_event_to_enforcement_seconds{from}`.
    pub event_to_enforcement_seconds: HistogramVec,
    /// `iam_warden_last_poll_success_timestamp_seconds{source}`.
    pub last_poll_success_timestamp_seconds: GaugeVec,
    /// `iam_warden_last_resync_success_timestamp_seconds`.
    pub last_resync_success_timestamp_seconds: Gauge,
    /// `iam_warden_resyncs_total{result}`.
    pub resyncs_total: IntCounterVec,
    /// `iam_warden_aws_calls_total{service, operation, outcome}` (every HTTP attempt).
    pub aws_calls_total: IntCounterVec,
    /// `iam_warden_aws_throttles_total{operation}`: attempts AWS answered with throttling.
    pub aws_throttles_total: IntCounterVec,
    /// `iam_warden_write_rate_per_second`: the adaptive IAM write limit now.
    pub write_rate_per_second: Gauge,
    /// `iam_warden_users{state}`.
    pub users: IntGaugeVec,
    /// `iam_warden_users_failing_check{check}`.
    pub users_failing_check: IntGaugeVec,
    /// `iam_warden_writes_total{action, outcome}`.
    pub writes_total: IntCounterVec,
    /// `iam_warden_breaker_tripped` 0/1.
    pub breaker_tripped: IntGauge,
    /// `iam_warden_breaker_trips_total`.
    pub breaker_trips_total: IntCounter,
    /// `iam_warden_credential_report_age_seconds`.
    pub credential_report_age_seconds: Gauge,
}

fn reg_err(e: prometheus::Error) -> Error {
    Error::Other(format!("registering a Prometheus metric failed: {e}"))
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    c: C,
) -> Result<C, Error> {
    registry.register(Box::new(c.clone())).map_err(reg_err)?;
    Ok(c)
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, Error> {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).map_err(reg_err)?,
    )
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, Error> {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).map_err(reg_err)?,
    )
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> Result<IntGauge, Error> {
    register(r, IntGauge::new(name, help).map_err(reg_err)?)
}

fn gauge(r: &Registry, name: &str, help: &str) -> Result<Gauge, Error> {
    register(r, Gauge::new(name, help).map_err(reg_err)?)
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Result<HistogramVec, Error> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(r, HistogramVec::new(opts, labels).map_err(reg_err)?)
}

/// The `service` label value: one of [`AWS_SERVICES`], else `other`.
fn service_label(service: &str) -> &str {
    AWS_SERVICES
        .iter()
        .copied()
        .find(|s| *s == service)
        .unwrap_or("other")
}

/// The `operation` label value: an AWS operation name as is, else `other`.
fn operation_label(operation: &str) -> &str {
    let plausible = !operation.is_empty()
        && operation.len() <= 64
        && operation.starts_with(|c: char| c.is_ascii_uppercase())
        && operation.chars().all(|c| c.is_ascii_alphanumeric());
    if plausible {
        operation
    } else {
        "other"
    }
}

/// The `action` label value: one of [`WRITE_ACTIONS`], else `other`.
pub fn write_action_label(action: &str) -> &'static str {
    WRITE_ACTIONS
        .iter()
        .copied()
        .find(|a| *a == action)
        .unwrap_or("other")
}

fn unix_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// A fresh registry with every metric registered and every known series at zero.
    pub fn new(version: &str) -> Result<Arc<Metrics>, Error> {
        let r = Registry::new();

        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .map_err(reg_err)?;

        let m = Metrics {
            build_info: gauge_vec(
                &r,
                "iam_warden_build_info",
                "Always 1; the version label says which iam-warden is running.",
                &["version"],
            )?,
            ready: int_gauge(
                &r,
                "iam_warden_ready",
                "1 when /readyz answers 200 (configuration valid, first resync done, not shutting down).",
            )?,
            reconciles_total: counter_vec(
                &r,
                "iam_warden_reconciles_total",
                "Reconciles finished, by result.",
                &["result"],
            )?,
            reconcile_duration_seconds: histogram_vec(
                &r,
                "iam_warden_reconcile_duration_seconds",
                "Duration of one reconcile (observe, plan, apply), by result.",
                &["result"],
                RECONCILE_BUCKETS,
            )?,
            queue_depth: int_gauge(
                &r,
                "iam_warden_queue_depth",
                "Work queue items waiting (ready or delayed).",
            )?,
            queue_in_flight: int_gauge(
                &r,
                "iam_warden_queue_in_flight",
                "Reconciles running now.",
            )?,
            queue_adds_total: counter_vec(
                &r,
                "iam_warden_queue_adds_total",
                "Items added to the work queue, by why they were added.",
                &["source"],
            )?,
            queue_retries_total: register(
                &r,
                IntCounter::new(
                    "iam_warden_queue_retries_total",
                    "Items re-added with backoff after a failed reconcile.",
                )
                .map_err(reg_err)?,
            )?,
            queue_wait_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "iam_warden_queue_wait_seconds",
                        "Time an item waited in the queue after it became ready.",
                    )
                    .buckets(QUEUE_WAIT_BUCKETS.to_vec()),
                )
                .map_err(reg_err)?,
            )?,
            events_total: counter_vec(
                &r,
                "iam_warden_events_total",
                "IAM CloudTrail events received, by event name (closed list, else other) and outcome.",
                &["event", "outcome"],
            )?,
            event_to_enforcement_seconds: histogram_vec(
                &r,
                "iam_warden_event_to_enforcement_seconds",
                "Time from an IAM change (its CloudTrail eventTime, or when iam-warden received it) to the end of the reconcile it triggered.",
                &["from"],
                ENFORCEMENT_BUCKETS,
            )?,
            last_poll_success_timestamp_seconds: register(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "iam_warden_last_poll_success_timestamp_seconds",
                        "Unix time of the last successful poll of an event source.",
                    ),
                    &["source"],
                )
                .map_err(reg_err)?,
            )?,
            last_resync_success_timestamp_seconds: gauge(
                &r,
                "iam_warden_last_resync_success_timestamp_seconds",
                "Unix time of the last successful full resync.",
            )?,
            resyncs_total: counter_vec(
                &r,
                "iam_warden_resyncs_total",
                "Full resyncs finished, by result.",
                &["result"],
            )?,
            aws_calls_total: counter_vec(
                &r,
                "iam_warden_aws_calls_total",
                "HTTP attempts of AWS API calls (retries included), by service, operation and outcome.",
                &["service", "operation", "outcome"],
            )?,
            aws_throttles_total: counter_vec(
                &r,
                "iam_warden_aws_throttles_total",
                "HTTP attempts of AWS API calls answered with throttling (each halves the adaptive rate at most once a second), by operation.",
                &["operation"],
            )?,
            write_rate_per_second: gauge(
                &r,
                "iam_warden_write_rate_per_second",
                "The adaptive limit on IAM writes now (halved on throttling, recovering after quiet seconds).",
            )?,
            users: gauge_vec(
                &r,
                "iam_warden_users",
                "IAM users at the last evaluation, by state.",
                &["state"],
            )?,
            users_failing_check: gauge_vec(
                &r,
                "iam_warden_users_failing_check",
                "IAM users failing a baseline check at the last evaluation, by check id.",
                &["check"],
            )?,
            writes_total: counter_vec(
                &r,
                "iam_warden_writes_total",
                "IAM writes (or would-be writes in dry-run), by action and outcome.",
                &["action", "outcome"],
            )?,
            breaker_tripped: int_gauge(
                &r,
                "iam_warden_breaker_tripped",
                "1 while the blast-radius breaker stops the writes that would take access away from existing users.",
            )?,
            breaker_trips_total: register(
                &r,
                IntCounter::new(
                    "iam_warden_breaker_trips_total",
                    "Times the blast-radius breaker tripped (at most once per resync window).",
                )
                .map_err(reg_err)?,
            )?,
            credential_report_age_seconds: gauge(
                &r,
                "iam_warden_credential_report_age_seconds",
                "Age of the IAM credential report used by the last full resync.",
            )?,
            registry: r,
        };
        m.precreate(version);
        Ok(Arc::new(m))
    }

    /// Create every known label combination at zero.
    fn precreate(&self, version: &str) {
        self.build_info.with_label_values(&[version]).set(1);
        for r in ReconcileResult::ALL {
            self.reconciles_total.with_label_values(&[r.as_str()]);
            self.reconcile_duration_seconds
                .with_label_values(&[r.as_str()]);
        }
        for s in QueueSource::ALL {
            self.queue_adds_total.with_label_values(&[s.as_str()]);
        }
        for event in KNOWN_EVENT_NAMES.iter().copied().chain(["other"]) {
            for o in EventOutcome::ALL {
                self.events_total.with_label_values(&[event, o.as_str()]);
            }
        }
        for from in ["event_time", "received"] {
            self.event_to_enforcement_seconds.with_label_values(&[from]);
        }
        for s in Source::ALL {
            self.last_poll_success_timestamp_seconds
                .with_label_values(&[s.as_str()]);
        }
        for result in ["success", "error"] {
            self.resyncs_total.with_label_values(&[result]);
        }
        for (service, op) in AWS_OPERATIONS {
            for o in CALL_OUTCOMES {
                self.aws_calls_total
                    .with_label_values(&[*service, *op, o.as_str()]);
            }
            self.aws_throttles_total.with_label_values(&[*op]);
        }
        for state in ["compliant", "violating", "exempt"] {
            self.users.with_label_values(&[state]);
        }
        for c in Check::ALL {
            self.users_failing_check.with_label_values(&[c.id()]);
        }
        for a in WRITE_ACTIONS {
            for o in WriteOutcome::ALL {
                self.writes_total.with_label_values(&[*a, o.as_str()]);
            }
        }
    }

    /// The registry holding every metric (and the process collector on Linux).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the Prometheus text exposition format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding the Prometheus metrics failed");
        }
        String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// A [`CallStats`] whose every recorded attempt also increments
    /// `iam_warden_aws_calls_total`. Give it to [`crate::aws::Clients`].
    pub fn call_stats(self: &Arc<Self>) -> CallStats {
        let m = Arc::clone(self);
        let g = self.write_rate_per_second.clone();
        CallStats::with_hook(move |service, operation, outcome| {
            m.aws_call(service, operation, outcome)
        })
        .with_rate_hook(move |rate| g.set(rate))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric family name exported by iam-warden (not the process collector's).
    const NAMES: &[&str] = &[
        "iam_warden_build_info",
        "iam_warden_ready",
        "iam_warden_reconciles_total",
        "iam_warden_reconcile_duration_seconds",
        "iam_warden_queue_depth",
        "iam_warden_queue_in_flight",
        "iam_warden_queue_adds_total",
        "iam_warden_queue_retries_total",
        "iam_warden_queue_wait_seconds",
        "iam_warden_events_total",
        "iam_warden_event_to_enforcement_seconds",
        "iam_warden_last_poll_success_timestamp_seconds",
        "iam_warden_last_resync_success_timestamp_seconds",
        "iam_warden_resyncs_total",
        "iam_warden_aws_calls_total",
        "iam_warden_aws_throttles_total",
        "iam_warden_write_rate_per_second",
        "iam_warden_users",
        "iam_warden_users_failing_check",
        "iam_warden_writes_total",
        "iam_warden_breaker_tripped",
        "iam_warden_breaker_trips_total",
        "iam_warden_credential_report_age_seconds",
    ];

    fn metrics() -> Arc<Metrics> {
        Metrics::new("1.2.3").expect("metrics register")
    }

    /// The value of the sample line `series` (name and labels exactly as rendered).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_metric_is_present_right_after_new() {
        let text = metrics().render();
        for n in NAMES {
            assert!(
                text.contains(&format!("# TYPE {n} ")),
                "{n} missing:\n{text}"
            );
        }
        assert_eq!(
            sample(&text, "iam_warden_build_info{version=\"1.2.3\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "iam_warden_ready"), Some(0.0));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[test]
    fn known_label_combinations_are_precreated_at_zero() {
        let text = metrics().render();
        for c in Check::ALL {
            let s = format!("iam_warden_users_failing_check{{check=\"{}\"}}", c.id());
            assert_eq!(sample(&text, &s), Some(0.0), "{s}");
        }
        for a in WRITE_ACTIONS {
            for o in WriteOutcome::ALL {
                let s = format!(
                    "iam_warden_writes_total{{action=\"{a}\",outcome=\"{}\"}}",
                    o.as_str()
                );
                assert_eq!(sample(&text, &s), Some(0.0), "{s}");
            }
        }
        for e in KNOWN_EVENT_NAMES.iter().chain(&["other"]) {
            for o in EventOutcome::ALL {
                let s = format!(
                    "iam_warden_events_total{{event=\"{e}\",outcome=\"{}\"}}",
                    o.as_str()
                );
                assert_eq!(sample(&text, &s), Some(0.0), "{s}");
            }
        }
        for s in QueueSource::ALL {
            let s = format!("iam_warden_queue_adds_total{{source=\"{}\"}}", s.as_str());
            assert_eq!(sample(&text, &s), Some(0.0), "{s}");
        }
        assert_eq!(
            sample(
                &text,
                "iam_warden_aws_calls_total{operation=\"GetAccountAuthorizationDetails\",outcome=\"throttled\",service=\"iam\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_event_to_enforcement_seconds_count{from=\"event_time\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_reconcile_duration_seconds_count{result=\"dropped\"}"
            ),
            Some(0.0)
        );
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        assert!(series < 1500, "{series} series right after start");
    }

    #[test]
    fn labels_stay_bounded() {
        let m = metrics();
        m.write("delete_user", WriteOutcome::Applied, Some("alice"), "alice");
        m.write(
            "create_group",
            WriteOutcome::DryRun,
            Some("alice"),
            "warden-baseline",
        );
        m.event_received("alice-was-here", EventOutcome::Ignored);
        m.event_received("CreateAccessKey", EventOutcome::Enqueued);
        m.aws_call("iam", "GetUser", CallOutcome::Ok);
        m.aws_call(
            "s3",
            "arn:aws:iam::123456789012:user/alice",
            CallOutcome::Error,
        );
        m.set_compliance(1, 2, 3, &BTreeMap::from([("key-too-old", 2), ("alice", 7)]));
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "iam_warden_writes_total{action=\"other\",outcome=\"applied\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_writes_total{action=\"create_group\",outcome=\"dry_run\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_events_total{event=\"other\",outcome=\"ignored\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_events_total{event=\"CreateAccessKey\",outcome=\"enqueued\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_aws_calls_total{operation=\"other\",outcome=\"error\",service=\"other\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_users_failing_check{check=\"key-too-old\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "iam_warden_users{state=\"exempt\"}"),
            Some(3.0)
        );
        for secretish in ["alice", "arn:", "delete_user", "warden-baseline", "\"s3\""] {
            assert!(
                !text.contains(secretish),
                "{secretish} leaked into a label:\n{text}"
            );
        }
        // no `other` action pre-created
        assert!(!metrics().render().contains("action=\"other\""));
    }

    #[test]
    fn set_compliance_zeroes_absent_checks() {
        let m = metrics();
        m.set_compliance(
            0,
            5,
            0,
            &BTreeMap::from([("key-too-old", 5), ("key-unused", 1)]),
        );
        m.set_compliance(4, 1, 0, &BTreeMap::from([("key-unused", 1)]));
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "iam_warden_users_failing_check{check=\"key-too-old\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_users_failing_check{check=\"key-unused\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn call_stats_hook_increments_the_counter() {
        let m = metrics();
        let stats = m.call_stats();
        stats.record("iam", "GetUser", CallOutcome::Ok);
        stats.record("iam", "GetUser", CallOutcome::Ok);
        stats.record("cloudtrail", "LookupEvents", CallOutcome::Throttled);
        stats.record("iam", "ListSSHPublicKeys", CallOutcome::Error);
        assert_eq!(stats.total(), 4, "CallStats still counts itself");
        let c = |s: &str, op: &str, o: &str| m.aws_calls_total.with_label_values(&[s, op, o]).get();
        assert_eq!(c("iam", "GetUser", "ok"), 2);
        assert_eq!(c("cloudtrail", "LookupEvents", "throttled"), 1);
        assert_eq!(c("iam", "ListSSHPublicKeys", "error"), 1);
    }

    #[test]
    fn instances_do_not_share_state() {
        let (a, b) = (metrics(), Metrics::new("9.9.9").expect("second registry"));
        a.reconciled(ReconcileResult::Success, Duration::from_millis(20));
        a.set_ready(true);
        assert_eq!(a.reconciles_total.with_label_values(&["success"]).get(), 1);
        assert_eq!(b.reconciles_total.with_label_values(&["success"]).get(), 0);
        assert_eq!(b.ready.get(), 0);
        assert!(!b.render().contains("1.2.3"));
        assert!(!a.render().contains("9.9.9"));
    }

    #[test]
    fn helpers_update_the_metrics() {
        let m = metrics();
        let at = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .expect("valid time")
            .with_timezone(&Utc);
        m.resync_done(true, at);
        m.resync_done(false, at);
        m.poll_ok(Source::Sqs, at);
        m.enforcement_latency(Some(Duration::from_secs(200)), Duration::from_secs(2));
        m.enforcement_latency(None, Duration::from_secs(1));
        m.queue_added(QueueSource::Retry);
        m.queue_added(Source::CloudTrail.into());
        m.set_queue(7, 2);
        m.queue_waited(Duration::from_millis(3));
        m.breaker_trip("12 users would lose access (limit 10)");
        m.credential_report_age(at - chrono::Duration::minutes(90), at);
        m.write_failed("delete_access_key", Some("bob"), "AKIA-not-logged", &"boom");
        let text = m.render();
        let ts = at.timestamp() as f64;
        assert_eq!(
            sample(&text, "iam_warden_last_resync_success_timestamp_seconds"),
            Some(ts)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_last_poll_success_timestamp_seconds{source=\"sqs\"}"
            ),
            Some(ts)
        );
        assert_eq!(
            sample(&text, "iam_warden_resyncs_total{result=\"error\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_event_to_enforcement_seconds_count{from=\"received\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_event_to_enforcement_seconds_count{from=\"event_time\"}"
            ),
            Some(1.0)
        );
        assert_eq!(sample(&text, "iam_warden_queue_retries_total"), Some(1.0));
        assert_eq!(
            sample(&text, "iam_warden_queue_adds_total{source=\"cloudtrail\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "iam_warden_queue_depth"), Some(7.0));
        assert_eq!(sample(&text, "iam_warden_queue_in_flight"), Some(2.0));
        assert_eq!(
            sample(&text, "iam_warden_queue_wait_seconds_count"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "iam_warden_breaker_tripped"), Some(1.0));
        assert_eq!(sample(&text, "iam_warden_breaker_trips_total"), Some(1.0));
        assert_eq!(
            sample(&text, "iam_warden_credential_report_age_seconds"),
            Some(5400.0)
        );
        assert_eq!(
            sample(
                &text,
                "iam_warden_writes_total{action=\"delete_access_key\",outcome=\"failed\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn names_follow_the_convention() {
        let m = metrics();
        let families = m.registry().gather();
        let ours: Vec<_> = families
            .iter()
            .filter(|f| f.name().starts_with("iam_warden_"))
            .collect();
        let mut names: Vec<&str> = ours.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        let mut expected = NAMES.to_vec();
        expected.sort_unstable();
        assert_eq!(
            names, expected,
            "every family is listed in NAMES and vice versa"
        );
        for f in families
            .iter()
            .filter(|f| !f.name().starts_with("process_"))
        {
            let name = f.name();
            assert!(name.starts_with("iam_warden_"), "{name}: not namespaced");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}: not snake_case"
            );
            assert!(!f.help().is_empty(), "{name}: no help");
            for bad in [
                "_ms",
                "_milliseconds",
                "_minutes",
                "_hours",
                "_days",
                "_kb",
                "_mb",
            ] {
                assert!(!name.contains(bad), "{name}: not a base unit");
            }
            use prometheus::proto::MetricType;
            match f.get_field_type() {
                MetricType::COUNTER => {
                    assert!(name.ends_with("_total"), "{name}: counter without _total")
                }
                MetricType::HISTOGRAM => {
                    assert!(
                        name.ends_with("_seconds"),
                        "{name}: histogram not in seconds"
                    )
                }
                _ => assert!(
                    !name.ends_with("_total"),
                    "{name}: gauge named like a counter"
                ),
            }
            if name.contains("timestamp") {
                assert!(name.ends_with("_timestamp_seconds"), "{name}");
            }
        }
    }
}
