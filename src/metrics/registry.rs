//! The [`Metrics`] struct: every metric registered in its own [`Registry`], every known
//! label combination pre-created at zero, and the text rendering.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::gauge_histogram::GaugeHistogram;
use super::labels::*;
use crate::aws::CallStats;
use crate::baseline::plan::rotation::{KEY_AGE_BUCKETS_DAYS, KEY_PHASES};
use crate::error::Error;

/// The content type of [`Metrics::render`] (Prometheus text exposition format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;
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
    /// `iam_warden_last_resync_success_timestamp_seconds{account}`.
    pub last_resync_success_timestamp_seconds: GaugeVec,
    /// `iam_warden_account_up{account}` 0/1: the account's role could be assumed and its
    /// last resync succeeded.
    pub account_up: IntGaugeVec,
    /// `iam_warden_account_discoveries_total{result}`: discoveries of the accounts in scope.
    pub account_discoveries_total: IntCounterVec,
    /// `iam_warden_resyncs_total{result}`.
    pub resyncs_total: IntCounterVec,
    /// `iam_warden_aws_calls_total{service, operation, outcome}` (every HTTP attempt).
    pub aws_calls_total: IntCounterVec,
    /// `iam_warden_aws_throttles_total{operation}`: attempts AWS answered with throttling.
    pub aws_throttles_total: IntCounterVec,
    /// `iam_warden_write_rate_per_second`: the adaptive IAM write limit now.
    pub write_rate_per_second: Gauge,
    /// `iam_warden_users{account, state}`.
    pub users: IntGaugeVec,
    /// `iam_warden_users_failing_check{account, check}`.
    pub users_failing_check: IntGaugeVec,
    /// `iam_warden_account_check_failing{account, check}`.
    pub account_check_failing: IntGaugeVec,
    /// `iam_warden_account_check_cannot_check{account, check}`.
    pub account_check_cannot_check: IntGaugeVec,
    /// The accounts of the per-account series and, with the detail off, their figures.
    pub(super) accounts: std::sync::Mutex<super::accounts::AccountSeries>,
    /// `iam_warden_writes_total{action, outcome}`.
    pub writes_total: IntCounterVec,
    /// `iam_warden_rotation_events_total{event}`.
    pub rotation_events_total: IntCounterVec,
    /// `iam_warden_breaker_tripped` 0/1.
    pub breaker_tripped: IntGauge,
    /// `iam_warden_breaker_trips_total`.
    pub breaker_trips_total: IntCounter,
    /// `iam_warden_credential_report_age_seconds`.
    pub credential_report_age_seconds: Gauge,
    /// `iam_warden_notices_total{event}`: owner notifications raised (journaled).
    pub notices_total: IntCounterVec,
    /// `iam_warden_notifications_total{channel, outcome}`: deliveries per channel.
    pub notifications_total: IntCounterVec,
    /// `iam_warden_securityhub_exports_total{outcome}`: the daemon's Security Hub exports.
    pub securityhub_exports_total: IntCounterVec,
    /// `iam_warden_quarantines_total{outcome}`: reports of exposed access keys.
    pub quarantines_total: IntCounterVec,
    /// `iam_warden_baseline_changes_held_total{policy}`: changes the pre-flight gate held.
    pub baseline_changes_held_total: IntCounterVec,
    /// `iam_warden_access_keys{phase}`: keys of managed users at the last resync.
    pub access_keys: IntGaugeVec,
    /// `iam_warden_access_key_age_seconds`: the age distribution of the active keys at the
    /// last resync (replaced, not accumulated: see [`GaugeHistogram`]).
    pub access_key_age_seconds: GaugeHistogram,
    /// `iam_warden_oldest_access_key_age_seconds`.
    pub oldest_access_key_age_seconds: Gauge,
    /// `iam_warden_rotation_next_due_timestamp_seconds` (0: nothing due).
    pub rotation_next_due_timestamp_seconds: Gauge,
    /// `iam_warden_sqs_messages_skipped_total{reason}`: SQS messages about an account
    /// iam-warden does not cover (or whose account cannot be read), deleted unhandled.
    pub sqs_messages_skipped_total: IntCounterVec,
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
pub(super) fn unix_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

pub(super) fn count(n: usize) -> i64 {
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
            last_resync_success_timestamp_seconds: register(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "iam_warden_last_resync_success_timestamp_seconds",
                        "Unix time of the last successful full resync, by account.",
                    ),
                    &["account"],
                )
                .map_err(reg_err)?,
            )?,
            account_up: gauge_vec(
                &r,
                "iam_warden_account_up",
                "1 when the account's role could be assumed and its last resync succeeded, by account.",
                &["account"],
            )?,
            account_discoveries_total: counter_vec(
                &r,
                "iam_warden_account_discoveries_total",
                "Discoveries of the accounts in scope (accounts.source), by result.",
                &["result"],
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
                "IAM users at the last evaluation, by account and state.",
                &["account", "state"],
            )?,
            users_failing_check: gauge_vec(
                &r,
                "iam_warden_users_failing_check",
                "IAM users failing a baseline check at the last evaluation, by account and check id.",
                &["account", "check"],
            )?,
            account_check_failing: gauge_vec(
                &r,
                "iam_warden_account_check_failing",
                "Account-level findings at the last resync, by check id (the password policy and the CIS section 1 account checks: root, policies, roles, certificates, Access Analyzer), by account and check id.",
                &["account", "check"],
            )?,
            account_check_cannot_check: gauge_vec(
                &r,
                "iam_warden_account_check_cannot_check",
                "Account-level checks that could not be made at the last resync (input missing, an API failing), by account and check id: unknown, never passing.",
                &["account", "check"],
            )?,
            writes_total: counter_vec(
                &r,
                "iam_warden_writes_total",
                "IAM writes (or would-be writes in dry-run), by action and outcome.",
                &["action", "outcome"],
            )?,
            rotation_events_total: counter_vec(
                &r,
                "iam_warden_rotation_events_total",
                "Access-key rotation phase changes that took effect, by event (warned, rotating, draining, stuck, deactivated, deleted, discarded, reactivated).",
                &["event"],
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
            notices_total: counter_vec(
                &r,
                "iam_warden_notices_total",
                "Owner notifications raised (each journaled), by event.",
                &["event"],
            )?,
            notifications_total: counter_vec(
                &r,
                "iam_warden_notifications_total",
                "Owner notification deliveries, by channel (webhook, sns) and outcome (sent, failed, dropped).",
                &["channel", "outcome"],
            )?,
            securityhub_exports_total: counter_vec(
                &r,
                "iam_warden_securityhub_exports_total",
                "Security Hub exports of findings by the daemon (after each resync and reconcile), by outcome (exported, failed, dropped).",
                &["outcome"],
            )?,
            quarantines_total: counter_vec(
                &r,
                "iam_warden_quarantines_total",
                "Reports of exposed access keys (AWS Health events, AWS quarantine policies), by what became of them.",
                &["outcome"],
            )?,
            baseline_changes_held_total: counter_vec(
                &r,
                "iam_warden_baseline_changes_held_total",
                "Changes that would first put a user under a baseline policy, held by the pre-flight gate (safety.preview_window) because the user's recent calls would have been denied or could not be read, by policy (mfa, source-ip).",
                &["policy"],
            )?,
            access_keys: gauge_vec(
                &r,
                "iam_warden_access_keys",
                "Access keys of the users iam-warden manages (exempt users left out) at the last resync, by rotation phase: active and inactive have no rotation tag.",
                &["phase"],
            )?,
            access_key_age_seconds: register(
                &r,
                GaugeHistogram::new(
                    "iam_warden_access_key_age_seconds",
                    "Age of the active access keys of managed users, as of the last resync. A current distribution (an OpenMetrics gauge histogram), replaced at each resync and never accumulated: use histogram_quantile on the buckets directly, not on rate().",
                    KEY_AGE_BUCKETS_DAYS
                        .iter()
                        .map(|d| f64::from(*d) * 86_400.0)
                        .collect(),
                )
                .map_err(reg_err)?,
            )?,
            oldest_access_key_age_seconds: gauge(
                &r,
                "iam_warden_oldest_access_key_age_seconds",
                "Age of the oldest active access key of a managed user at the last resync (0: none).",
            )?,
            rotation_next_due_timestamp_seconds: gauge(
                &r,
                "iam_warden_rotation_next_due_timestamp_seconds",
                "Unix time at which the next rotation step becomes due by time alone, as of the last resync (0: none).",
            )?,
            sqs_messages_skipped_total: counter_vec(
                &r,
                "iam_warden_sqs_messages_skipped_total",
                "SQS messages deleted without being acted on because of the account they are about, by reason (not_in_scope: an account iam-warden does not cover; account_down: an account in scope whose role cannot be assumed yet; missing, not_a_string, bad_shape: the EventBridge envelope's account field cannot be read).",
                &["reason"],
            )?,
            accounts: Default::default(),
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
        // Before the accounts are known, the per-account series have an empty account
        // (the same as no label to Prometheus); the first account replaces them.
        self.precreate_account("");
        for result in ["success", "error"] {
            self.account_discoveries_total.with_label_values(&[result]);
        }
        for p in ["mfa", "source-ip"] {
            self.baseline_changes_held_total.with_label_values(&[p]);
        }
        for o in QuarantineOutcome::ALL {
            self.quarantines_total.with_label_values(&[o.as_str()]);
        }
        for p in KEY_PHASES {
            self.access_keys.with_label_values(&[p]);
        }
        for e in ROTATION_EVENTS {
            self.rotation_events_total.with_label_values(&[*e]);
        }
        for a in WRITE_ACTIONS {
            for o in WriteOutcome::ALL {
                self.writes_total.with_label_values(&[*a, o.as_str()]);
            }
        }
        for e in NOTICE_EVENTS {
            self.notices_total.with_label_values(&[*e]);
        }
        for c in NotifyChannel::ALL {
            for o in NotifyOutcome::ALL {
                self.notifications_total
                    .with_label_values(&[c.as_str(), o.as_str()]);
            }
        }
        for o in ExportOutcome::ALL {
            self.securityhub_exports_total
                .with_label_values(&[o.as_str()]);
        }
        for r in SqsSkipReason::ALL {
            self.sqs_messages_skipped_total
                .with_label_values(&[r.as_str()]);
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
}
