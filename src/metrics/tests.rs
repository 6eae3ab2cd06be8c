use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::labels::*;
use super::*;
use crate::aws::CallOutcome;
use crate::baseline::checks::Check;

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
    "iam_warden_rotation_events_total",
    "iam_warden_aws_calls_total",
    "iam_warden_aws_throttles_total",
    "iam_warden_write_rate_per_second",
    "iam_warden_users",
    "iam_warden_account_up",
    "iam_warden_account_discoveries_total",
    "iam_warden_users_failing_check",
    "iam_warden_account_check_failing",
    "iam_warden_account_check_cannot_check",
    "iam_warden_writes_total",
    "iam_warden_breaker_tripped",
    "iam_warden_breaker_trips_total",
    "iam_warden_credential_report_age_seconds",
    "iam_warden_notices_total",
    "iam_warden_notifications_total",
    "iam_warden_securityhub_exports_total",
    "iam_warden_quarantines_total",
    "iam_warden_baseline_changes_held_total",
    "iam_warden_access_keys",
    "iam_warden_access_key_age_seconds",
    "iam_warden_oldest_access_key_age_seconds",
    "iam_warden_rotation_next_due_timestamp_seconds",
    "iam_warden_sqs_messages_skipped_total",
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
        let s = format!(
            "iam_warden_users_failing_check{{account=\"\",check=\"{}\"}}",
            c.id()
        );
        assert_eq!(sample(&text, &s), Some(0.0), "{s}");
    }
    for c in Check::ACCOUNT {
        for m in [
            "iam_warden_account_check_failing",
            "iam_warden_account_check_cannot_check",
        ] {
            let s = format!("{m}{{account=\"\",check=\"{}\"}}", c.id());
            assert_eq!(sample(&text, &s), Some(0.0), "{s}");
        }
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
    m.set_compliance(
        "111111111111",
        1,
        2,
        3,
        &BTreeMap::from([("key-too-old", 2), ("alice", 7)]),
    );
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
            "iam_warden_users_failing_check{account=\"111111111111\",check=\"key-too-old\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "iam_warden_users{account=\"111111111111\",state=\"exempt\"}"
        ),
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
        "111111111111",
        0,
        5,
        0,
        &BTreeMap::from([("key-too-old", 5), ("key-unused", 1)]),
    );
    m.set_compliance(
        "111111111111",
        4,
        1,
        0,
        &BTreeMap::from([("key-unused", 1)]),
    );
    let text = m.render();
    assert_eq!(
        sample(
            &text,
            "iam_warden_users_failing_check{account=\"111111111111\",check=\"key-too-old\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "iam_warden_users_failing_check{account=\"111111111111\",check=\"key-unused\"}"
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
    m.resync_done("111111111111", true, at);
    m.resync_done("111111111111", false, at);
    m.poll_ok(Source::Sqs, at);
    m.enforcement_latency(Some(Duration::from_secs(200)), Duration::from_secs(2));
    m.enforcement_latency(None, Duration::from_secs(1));
    m.queue_added(QueueSource::Retry);
    m.queue_added(Source::CloudTrail.into());
    m.set_queue(7, 2);
    m.queue_waited(Duration::from_millis(3));
    m.breaker_trip("111122223333", "12 users would lose access (limit 10)");
    m.credential_report_age("111122223333", at - chrono::Duration::minutes(90), at);
    m.write_failed("delete_access_key", Some("bob"), "AKIA-not-logged", &"boom");
    let text = m.render();
    let ts = at.timestamp() as f64;
    assert_eq!(
        sample(
            &text,
            "iam_warden_last_resync_success_timestamp_seconds{account=\"111111111111\"}"
        ),
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

/// One type for the write's metric label, the journal's `outcome`/`error` and the report's
/// `outcome`/`detail`: each variant's label, detail and JSON.
#[test]
fn write_outcomes_label_detail_and_json() {
    let cases = [
        (
            WriteOutcome::Applied,
            "applied",
            None,
            r#"{"outcome":"applied"}"#,
        ),
        (
            WriteOutcome::DryRun,
            "dry_run",
            None,
            r#"{"outcome":"dry_run"}"#,
        ),
        (
            WriteOutcome::Skipped("no longer exists".into()),
            "skipped",
            Some("no longer exists"),
            r#"{"outcome":"skipped","detail":"no longer exists"}"#,
        ),
        (
            WriteOutcome::Failed("AccessDenied".into()),
            "failed",
            Some("AccessDenied"),
            r#"{"outcome":"failed","detail":"AccessDenied"}"#,
        ),
    ];
    for (o, label, detail, json) in cases {
        assert_eq!(o.as_str(), label, "{o:?}");
        assert_eq!(o.detail(), detail, "{o:?}");
        assert_eq!(serde_json::to_string(&o).unwrap(), json, "{o:?}");
    }
    let labels: Vec<_> = WriteOutcome::ALL.iter().map(WriteOutcome::as_str).collect();
    assert_eq!(labels, ["applied", "failed", "dry_run", "skipped"]);
}

#[test]
fn notification_series_are_precreated_and_counted_by_their_emits() {
    let m = metrics();
    let text = m.render();
    for e in NOTICE_EVENTS {
        let series = format!("iam_warden_notices_total{{event=\"{e}\"}}");
        assert_eq!(sample(&text, &series), Some(0.0), "{series}");
    }
    for c in NotifyChannel::ALL {
        for o in NotifyOutcome::ALL {
            let series = format!(
                "iam_warden_notifications_total{{channel=\"{}\",outcome=\"{}\"}}",
                c.as_str(),
                o.as_str()
            );
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
    }
    NoticeRaised {
        event: "key-exposed",
        user: "alice",
        access_key_id: Some("AKIA1"),
        owner: None,
        disposition: "queued",
    }
    .emit(Some(&m));
    NoticeRaised {
        event: "not-an-event",
        user: "alice",
        access_key_id: None,
        owner: None,
        disposition: "queued",
    }
    .emit(Some(&m));
    NotificationDelivery {
        channel: NotifyChannel::Sns,
        outcome: NotifyOutcome::Failed,
        event: "key-exposed",
        user: "alice",
        destination: "arn:aws:sns:us-east-1:123456789012:t",
        attempts: 1,
        error: Some("SNS topic does not exist"),
    }
    .emit(Some(&m));
    let text = m.render();
    assert_eq!(
        sample(&text, "iam_warden_notices_total{event=\"key-exposed\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "iam_warden_notices_total{event=\"other\"}"),
        Some(1.0),
        "an unknown event name is not a new label value"
    );
    assert_eq!(
        sample(
            &text,
            "iam_warden_notifications_total{channel=\"sns\",outcome=\"failed\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn securityhub_export_outcomes_are_precreated_and_counted_by_their_emit() {
    use crate::metrics::{ExportOutcome, SecurityHubExported};
    let m = metrics();
    let text = m.render();
    for o in ExportOutcome::ALL {
        let series = format!(
            "iam_warden_securityhub_exports_total{{outcome=\"{}\"}}",
            o.as_str()
        );
        assert_eq!(sample(&text, &series), Some(0.0), "{series}");
    }
    SecurityHubExported {
        outcome: ExportOutcome::Failed,
        user: Some("alice"),
        active: 2,
        resolved: 0,
        error: Some("Security Hub is not enabled in account 123456789012 region us-east-1"),
    }
    .emit(Some(&m));
    let text = m.render();
    assert_eq!(
        sample(
            &text,
            "iam_warden_securityhub_exports_total{outcome=\"failed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "iam_warden_securityhub_exports_total{outcome=\"exported\"}"
        ),
        Some(0.0)
    );
}

#[test]
fn quarantine_outcomes_are_precreated_and_counted_once() {
    use crate::metrics::{QuarantineEvent, QuarantineOutcome};
    let m = metrics();
    let text = m.render();
    for o in QuarantineOutcome::ALL {
        let series = format!(
            "iam_warden_quarantines_total{{outcome=\"{}\"}} 0",
            o.as_str()
        );
        assert!(text.contains(&series), "{series} missing");
    }
    QuarantineEvent {
        outcome: QuarantineOutcome::Ambiguous,
        trigger: "quarantine_policy",
        event_id: "e1",
        user: Some("bob"),
        key: Some(concat!(
            "AKIA",
            "0000000000000001,",
            "AKIA",
            "0000000000000002"
        )),
        detail: "two active keys",
    }
    .emit(Some(&m));
    let text = m.render();
    assert!(text.contains("iam_warden_quarantines_total{outcome=\"ambiguous\"} 1"));
    assert!(text.contains("iam_warden_quarantines_total{outcome=\"deactivated\"} 0"));
}

#[test]
fn key_stats_replace_the_gauges_and_the_age_distribution() {
    use crate::baseline::plan::rotation::{KeyStats, KEY_AGE_BUCKETS_DAYS, KEY_PHASES};
    let m = metrics();
    let text = m.render();
    for p in KEY_PHASES {
        let s = format!("iam_warden_access_keys{{phase=\"{p}\"}}");
        assert_eq!(sample(&text, &s), Some(0.0), "{s}");
    }
    assert!(text.contains("# TYPE iam_warden_access_key_age_seconds histogram"));
    assert_eq!(
        sample(
            &text,
            "iam_warden_access_key_age_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "iam_warden_rotation_next_due_timestamp_seconds"),
        Some(0.0)
    );
    let mut by_phase = [0; KEY_PHASES.len()];
    by_phase[0] = 3; // active
    by_phase[3] = 1; // draining
    by_phase[6] = 2; // quarantined
    let mut age_buckets = [3; KEY_AGE_BUCKETS_DAYS.len()];
    age_buckets[0] = 1;
    let stats = KeyStats {
        by_phase,
        age_buckets,
        age_count: 4,
        age_sum_seconds: 1000.0,
        oldest_active_age_seconds: 800.0 * 86_400.0,
        next_due: DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .ok()
            .map(|d| d.with_timezone(&Utc)),
    };
    // Twice: a gauge histogram is replaced, not accumulated.
    m.set_key_stats("111122223333", &stats);
    m.set_key_stats("111122223333", &stats);
    let text = m.render();
    for (s, want) in [
        ("iam_warden_access_keys{phase=\"active\"}", 3.0),
        ("iam_warden_access_keys{phase=\"draining\"}", 1.0),
        ("iam_warden_access_keys{phase=\"quarantined\"}", 2.0),
        ("iam_warden_access_keys{phase=\"stuck\"}", 0.0),
        (
            "iam_warden_access_key_age_seconds_bucket{le=\"604800\"}",
            1.0,
        ),
        (
            "iam_warden_access_key_age_seconds_bucket{le=\"63072000\"}",
            3.0,
        ),
        ("iam_warden_access_key_age_seconds_bucket{le=\"+Inf\"}", 4.0),
        ("iam_warden_access_key_age_seconds_count", 4.0),
        ("iam_warden_access_key_age_seconds_sum", 1000.0),
        ("iam_warden_oldest_access_key_age_seconds", 800.0 * 86_400.0),
        (
            "iam_warden_rotation_next_due_timestamp_seconds",
            1_796_083_200.0,
        ),
    ] {
        assert_eq!(sample(&text, s), Some(want), "{s}\n{text}");
    }
    // Nothing due again: back to 0.
    m.set_key_stats(
        "111122223333",
        &KeyStats {
            next_due: None,
            ..stats
        },
    );
    assert_eq!(
        sample(
            &m.render(),
            "iam_warden_rotation_next_due_timestamp_seconds"
        ),
        Some(0.0)
    );
}

#[test]
fn gauge_histogram_rejects_unordered_bounds_and_clamps_counts() {
    assert!(GaugeHistogram::new("x_seconds", "x", vec![2.0, 1.0]).is_err());
    let h = GaugeHistogram::new("x_seconds", "x", vec![1.0, 2.0, 3.0]).unwrap();
    // A missing bound counts every value; no bucket exceeds the count.
    h.set(&[1, 9], 5, 7.5);
    assert_eq!(h.get(), (vec![1, 5, 5], 5, 7.5));
    assert_eq!(h.bounds(), &[1.0, 2.0, 3.0]);
}

#[test]
fn account_checks_are_set_failing_or_cannot_check_and_reset() {
    use crate::baseline::checks::Finding;
    let m = metrics();
    m.set_account_checks(
        "111111111111",
        &[
            Finding::new(Check::RootAccessKey, "key").with_resource("arn:aws:iam::1:root"),
            Finding::new(Check::PolicyFullAdmin, "a"),
            Finding::new(Check::PolicyFullAdmin, "b"),
            Finding::cannot_check(Check::AccessAnalyzerDisabled, "API failing"),
        ],
    );
    let text = m.render();
    let v = |name: &str, c: &str| {
        sample(
            &text,
            &format!("{name}{{account=\"111111111111\",check=\"{c}\"}}"),
        )
    };
    assert_eq!(
        v("iam_warden_account_check_failing", "root-access-key"),
        Some(1.0)
    );
    assert_eq!(
        v("iam_warden_account_check_failing", "policy-full-admin"),
        Some(2.0)
    );
    assert_eq!(
        v(
            "iam_warden_account_check_failing",
            "access-analyzer-disabled"
        ),
        Some(0.0),
        "cannot check is not counted as failing..."
    );
    assert_eq!(
        v(
            "iam_warden_account_check_cannot_check",
            "access-analyzer-disabled"
        ),
        Some(1.0),
        "...but as unknown, never as passing"
    );
    m.set_account_checks("111111111111", &[]);
    let text = m.render();
    assert_eq!(
        sample(
            &text,
            "iam_warden_account_check_failing{account=\"111111111111\",check=\"root-access-key\"}"
        ),
        Some(0.0)
    );
}

#[test]
fn every_pre_created_operation_is_of_a_known_service() {
    // A call is counted under `service_label(service)`: an operation pre-created under a
    // service missing from AWS_SERVICES would stay at zero while its calls count as `other`.
    for (service, op) in super::AWS_OPERATIONS {
        assert_eq!(
            super::labels::service_label(service),
            *service,
            "{service}:{op} is pre-created but {service} is not in AWS_SERVICES"
        );
    }
}

#[test]
fn sqs_skip_reasons_are_precreated_and_counted_by_their_emit() {
    use crate::metrics::{SqsMessageSkipped, SqsSkipReason};
    let m = metrics();
    let text = m.render();
    for r in SqsSkipReason::ALL {
        let series = format!(
            "iam_warden_sqs_messages_skipped_total{{reason=\"{}\"}}",
            r.as_str()
        );
        assert_eq!(sample(&text, &series), Some(0.0), "{series}");
    }
    for repeat in [false, true] {
        SqsMessageSkipped {
            reason: SqsSkipReason::NotInScope,
            account: "444455556666",
            message_id: "m-1",
            event: "CreateUser",
            in_scope: 1,
            repeat,
        }
        .emit(&m);
    }
    SqsMessageSkipped {
        reason: SqsSkipReason::BadShape,
        account: "12345",
        message_id: "m-2",
        event: "CreateUser",
        in_scope: 1,
        repeat: false,
    }
    .emit(&m);
    let text = m.render();
    let got = |r: &str| {
        sample(
            &text,
            &format!("iam_warden_sqs_messages_skipped_total{{reason=\"{r}\"}}"),
        )
    };
    assert_eq!(got("not_in_scope"), Some(2.0), "a repeat is still counted");
    assert_eq!(got("bad_shape"), Some(1.0));
    assert_eq!(got("missing"), Some(0.0));
}

/// The account label: per account by id, replacing the empty-account placeholders; with
/// the detail off one `account="all"` series, the sum; an account leaving removes its
/// series (or its share of the sum); `account_up` follows the status events.
#[test]
fn per_account_series_and_their_sum() {
    use crate::metrics::AccountStatus;
    let failing = |n: usize| BTreeMap::from([("key-too-old", n)]);
    let users = |text: &str, account: &str| {
        sample(
            text,
            &format!("iam_warden_users{{account=\"{account}\",state=\"violating\"}}"),
        )
    };
    let key_too_old = |text: &str, account: &str| {
        sample(
            text,
            &format!(
                "iam_warden_users_failing_check{{account=\"{account}\",check=\"key-too-old\"}}"
            ),
        )
    };
    for per_account in [true, false] {
        let m = metrics();
        m.set_per_account(per_account);
        assert_eq!(
            users(&m.render(), ""),
            Some(0.0),
            "placeholder before any account"
        );
        m.account_started("111111111111");
        m.account_started("222222222222");
        let text = m.render();
        assert_eq!(users(&text, ""), None, "placeholder gone");
        assert!(
            !text.contains("account=\"\""),
            "no placeholder left:\n{text}"
        );
        assert_eq!(
            sample(&text, "iam_warden_account_up{account=\"111111111111\"}"),
            Some(0.0),
            "down until its first resync"
        );
        m.set_compliance("111111111111", 1, 2, 0, &failing(2));
        m.set_compliance("222222222222", 0, 5, 1, &failing(4));
        AccountStatus {
            account: "111111111111",
            up: true,
            error: None,
            retry_in: None,
        }
        .emit(&m);
        let text = m.render();
        assert_eq!(
            sample(&text, "iam_warden_account_up{account=\"111111111111\"}"),
            Some(1.0)
        );
        if per_account {
            assert_eq!(users(&text, "111111111111"), Some(2.0));
            assert_eq!(users(&text, "222222222222"), Some(5.0));
            assert_eq!(key_too_old(&text, "222222222222"), Some(4.0));
            assert_eq!(users(&text, ALL_ACCOUNTS), None);
        } else {
            assert_eq!(users(&text, ALL_ACCOUNTS), Some(7.0));
            assert_eq!(key_too_old(&text, ALL_ACCOUNTS), Some(6.0));
            assert_eq!(users(&text, "111111111111"), None, "no per-account detail");
        }
        m.set_account_queue("111111111111", 3, 1);
        m.set_account_queue("222222222222", 5000, 4);
        assert_eq!((m.queue_depth.get(), m.queue_in_flight.get()), (5003, 5));
        m.account_stopped("222222222222");
        assert_eq!((m.queue_depth.get(), m.queue_in_flight.get()), (3, 1));
        let text = m.render();
        assert!(!text.contains("222222222222"), "{text}");
        if per_account {
            assert_eq!(users(&text, "111111111111"), Some(2.0));
        } else {
            assert_eq!(users(&text, ALL_ACCOUNTS), Some(2.0), "its share removed");
            assert_eq!(key_too_old(&text, ALL_ACCOUNTS), Some(2.0));
        }
    }
}

/// The account-wide gauges with several accounts: one account's new breaker window does not
/// clear another's trip; the key gauges add the accounts' keys; the credential report age is
/// the oldest report's; an account leaving no longer counts.
#[test]
fn account_wide_gauges_combine_the_accounts() {
    use crate::baseline::plan::rotation::{KeyStats, KEY_AGE_BUCKETS_DAYS};
    let m = metrics();
    let gauge = |name: &str| sample(&m.render(), name);
    m.breaker_trip("111111111111", "A: 30 users would lose access");
    m.set_breaker("222222222222", false, "new resync window");
    assert_eq!(
        gauge("iam_warden_breaker_tripped"),
        Some(1.0),
        "A is still tripped"
    );
    m.set_breaker("111111111111", false, "new resync window");
    assert_eq!(gauge("iam_warden_breaker_tripped"), Some(0.0));

    let at = |d: i64| DateTime::<Utc>::from_timestamp(1_800_000_000 + d * 86_400, 0).unwrap();
    let keys = |active: usize, oldest_days: f64, due: i64| KeyStats {
        by_phase: std::array::from_fn(|i| if i == 0 { active } else { 0 }),
        age_buckets: [active as u64; KEY_AGE_BUCKETS_DAYS.len()],
        age_count: active as u64,
        age_sum_seconds: oldest_days * 86_400.0,
        oldest_active_age_seconds: oldest_days * 86_400.0,
        next_due: Some(at(due)),
    };
    m.set_key_stats("111111111111", &keys(3, 10.0, 5));
    m.set_key_stats("222222222222", &keys(2, 40.0, 2));
    assert_eq!(gauge("iam_warden_access_keys{phase=\"active\"}"), Some(5.0));
    assert_eq!(
        gauge("iam_warden_oldest_access_key_age_seconds"),
        Some(40.0 * 86_400.0)
    );
    assert_eq!(
        gauge("iam_warden_rotation_next_due_timestamp_seconds"),
        Some(at(2).timestamp() as f64)
    );
    m.credential_report_age("111111111111", at(0), at(1));
    m.credential_report_age("222222222222", at(1), at(1));
    assert_eq!(
        gauge("iam_warden_credential_report_age_seconds"),
        Some(86_400.0),
        "the oldest report in use"
    );

    m.account_started("111111111111");
    m.account_started("222222222222");
    m.breaker_trip("222222222222", "B tripped");
    m.account_stopped("222222222222");
    assert_eq!(gauge("iam_warden_breaker_tripped"), Some(0.0), "B left");
    assert_eq!(
        gauge("iam_warden_access_keys{phase=\"active\"}"),
        Some(3.0),
        "only A's keys"
    );
}
