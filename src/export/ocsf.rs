//! OCSF 1.1.0 Compliance Finding records (class 2003, category Findings) of
//! [`ExportFinding`]s: the format Prowler's `json-ocsf` output and Amazon Security Lake use.
//! Like Prowler, the output is one JSON array of records (Prowler's
//! `prowler/lib/outputs/ocsf/ocsf.py`, `batch_write_data_to_file`, writes `[`, the records
//! separated by `,`, then `]`; not JSON lines). Prowler's records are Detection Findings
//! (class 2004); these are Compliance Findings (2003), the class OCSF defines for results
//! of evaluations against a standard such as the CIS AWS Foundations Benchmark.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{asff, ExportFinding, Scope, CIS_STANDARD};
use crate::baseline::checks::Severity;

pub const OCSF_VERSION: &str = "1.1.0";
pub const CLASS_UID: u32 = 2003;
pub const CATEGORY_UID: u32 = 2;
/// Activity 1, Create: a finding iam-warden reports.
pub const ACTIVITY_ID: u32 = 1;
pub const TYPE_UID: u32 = CLASS_UID * 100 + ACTIVITY_ID;

/// OCSF `severity_id`: 2 Low, 3 Medium, 4 High, 5 Critical.
pub fn severity_id(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// One Compliance Finding record for `f`, found at `now`.
pub fn record(f: &ExportFinding, scope: &Scope, now: DateTime<Utc>, version: &str) -> Value {
    let a = asff::finding(f, scope, now, now);
    let (sev_id, sev) = severity_id(f.severity);
    let controls = f.check.cis_controls();
    // OCSF compliance status_id: 0 Unknown, 1 Pass, 2 Warning, 3 Fail.
    let (status_id, status) = if f.cannot_check {
        (0, "Unknown")
    } else {
        (3, "Fail")
    };
    let mut compliance = json!({
        "status": status,
        "status_id": status_id,
        "standards": [CIS_STANDARD],
        "requirements": controls,
    });
    if let Some(first) = controls.first() {
        compliance["control"] = json!(first);
    }
    let resources: Vec<Value> = a
        .resources
        .iter()
        .map(|r| {
            json!({
                "uid": r.id,
                "type": r.kind,
                "name": if r.id == f.resource_id { asff::resource_name(f).to_string() } else {
                    f.user.clone().unwrap_or_else(|| r.id.clone())
                },
                "region": scope.region,
                "cloud_partition": scope.partition,
            })
        })
        .collect();
    let ms = now.timestamp_millis();
    json!({
        "class_uid": CLASS_UID,
        "class_name": "Compliance Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": ACTIVITY_ID,
        "activity_name": "Create",
        "type_uid": TYPE_UID,
        "type_name": "Compliance Finding: Create",
        "severity_id": sev_id,
        "severity": sev,
        "status_id": 1,
        "status": "New",
        "time": ms,
        "time_dt": asff::timestamp(now),
        "message": a.description,
        "metadata": {
            "version": OCSF_VERSION,
            "event_code": f.check.id(),
            "product": {
                "name": "iam-warden",
                "vendor_name": "iam-warden",
                "version": version,
            },
        },
        "finding_info": {
            "uid": a.id,
            "title": a.title,
            "desc": a.description,
            "types": a.types,
            "created_time": ms,
        },
        "compliance": compliance,
        "resources": resources,
        "cloud": {
            "provider": "AWS",
            "account": { "uid": scope.account_id, "type": "AWS Account", "type_id": 10 },
            "region": scope.region,
        },
    })
}

/// Every finding as one JSON array (pretty-printed).
pub fn to_json(
    findings: &[ExportFinding],
    scope: &Scope,
    now: DateTime<Utc>,
    version: &str,
) -> String {
    let records: Vec<Value> = findings
        .iter()
        .map(|f| record(f, scope, now, version))
        .collect();
    serde_json::to_string_pretty(&records).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
