//! CloudTrail IAM events: parsing records and EventBridge envelopes into [`IamEvent`].
//!
//! Pure code, no I/O. Records come from two places:
//! - CloudTrail `LookupEvents`, where each record is a JSON string in
//!   `Event.CloudTrailEvent` ([`parse_record_str`]);
//! - an SQS queue fed by an EventBridge rule, where each message body is an EventBridge
//!   envelope whose `detail` is the CloudTrail record ([`parse_eventbridge`]).
//!
//! The event type and its mapping to reconcile keys ([`targets`]) belong to the controller
//! (`controller::mapping`, `controller::key`); they are re-exported here.
//!
//! Only the fields the mapping needs are extracted. `responseElements` is never read (it holds
//! dates in a non-RFC3339 form such as `"Aug 1, 2024 1:42:21 PM"` and, for some calls, data
//! we have no business keeping).

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use crate::controller::key::{ReconcileKey, Target};
pub use crate::controller::mapping::{
    targets, user_name_from_arn, BaselineNames, IamEvent, IAM_EVENT_SOURCE,
};
pub use crate::metrics::{metric_event_name, KNOWN_EVENT_NAMES};

/// The EventBridge `detail-type` of CloudTrail API call events.
pub const EVENTBRIDGE_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// The EventBridge `source` of IAM events.
pub const EVENTBRIDGE_SOURCE: &str = "aws.iam";

/// Why a record or message could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all, or truncated.
    #[error("malformed JSON in CloudTrail event: {0}; expected one CloudTrail record (or an EventBridge envelope) as a JSON object")]
    Json(#[from] serde_json::Error),
    /// Valid JSON, but not an object.
    #[error("CloudTrail {what} is a JSON {found}, expected a JSON object")]
    NotAnObject {
        /// What was expected to be an object.
        what: &'static str,
        /// The JSON type found instead.
        found: &'static str,
    },
    /// A required field is absent or null.
    #[error("CloudTrail record has no `{0}` field; is this really a CloudTrail record?")]
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    #[error("CloudTrail record field `{field}` is a JSON {found}, expected a {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// The type it should have.
        expected: &'static str,
        /// The type it has.
        found: &'static str,
    },
    /// `eventTime` is not an RFC 3339 timestamp.
    #[error("CloudTrail record has eventTime {value:?}, expected an RFC 3339 time such as \"2024-08-01T13:42:21Z\": {source}")]
    BadTime {
        /// The offending value (truncated).
        value: String,
        /// The parser's complaint.
        source: chrono::ParseError,
    },
    /// An EventBridge envelope whose `detail-type` is not a CloudTrail API call.
    #[error("EventBridge event has detail-type {found:?}, expected {expected:?}; narrow the EventBridge rule's event pattern to {{\"source\":[\"aws.iam\"],\"detail-type\":[\"AWS API Call via CloudTrail\"]}}", expected = EVENTBRIDGE_DETAIL_TYPE)]
    WrongDetailType {
        /// The `detail-type` found (truncated); empty if absent.
        found: String,
    },
    /// An AWS Health event field that is required is absent, empty or not a string.
    #[error("AWS Health event has no `{0}` string field; expected an EventBridge \"AWS Health Event\" envelope as the SQS message body")]
    HealthMissing(&'static str),
    /// An `aws.health` event that is not an `AWS Health Event` (e.g. an abuse event).
    #[error("AWS Health event has detail-type {found:?}, expected \"AWS Health Event\"; narrow the EventBridge rule's event pattern to {pattern}", pattern = crate::sources::health::HEALTH_PATTERN)]
    HealthDetailType {
        /// The `detail-type` found (truncated); empty if absent.
        found: String,
    },
    /// An AWS Health event of another type than exposed credentials.
    #[error("AWS Health event has eventTypeCode {found:?}, expected \"AWS_RISK_CREDENTIALS_EXPOSED\"; narrow the EventBridge rule's event pattern to {pattern}", pattern = crate::sources::health::HEALTH_PATTERN)]
    HealthEventType {
        /// The `eventTypeCode` found (truncated); empty if absent.
        found: String,
    },
    /// An exposed-credentials event that names no IAM access key id.
    #[error("AWS Health event AWS_RISK_CREDENTIALS_EXPOSED names no IAM access key id (AKIA followed by 16 letters or digits) in detail.affectedEntities[].entityValue (found: {found}); nothing to quarantine")]
    NoExposedKey {
        /// What the entities held instead (truncated), or `none`.
        found: String,
    },
    /// An EventBridge envelope whose `source` is not IAM.
    #[error("EventBridge event has source {found:?}, expected {expected:?}; narrow the EventBridge rule's event pattern to {{\"source\":[\"aws.iam\"],\"detail-type\":[\"AWS API Call via CloudTrail\"]}}", expected = EVENTBRIDGE_SOURCE)]
    WrongSource {
        /// The `source` found (truncated); empty if absent.
        found: String,
    },
}

/// Values copied into errors are cut to this many characters, so a hostile or broken message
/// cannot flood the logs.
const MAX_ECHO: usize = 80;

pub(crate) fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn required_str<'a>(v: &'a Value, field: &'static str) -> Result<&'a str, ParseError> {
    match v.get(field) {
        None | Some(Value::Null) => Err(ParseError::MissingField(field)),
        Some(Value::String(s)) if s.is_empty() => Err(ParseError::MissingField(field)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ParseError::WrongType {
            field,
            expected: "string",
            found: json_type(other),
        }),
    }
}

/// An optional string field; a value of another type counts as absent (these fields only
/// refine the mapping, so a surprise there must not drop the whole record).
fn optional_str(v: &Value, field: &str) -> Option<String> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Parses one CloudTrail record (an object as CloudTrail writes it).
pub fn parse_record(v: &Value) -> Result<IamEvent, ParseError> {
    if !v.is_object() {
        return Err(ParseError::NotAnObject {
            what: "record",
            found: json_type(v),
        });
    }
    let event_id = required_str(v, "eventID")?.to_owned();
    let event_name = required_str(v, "eventName")?.to_owned();
    let time = required_str(v, "eventTime")?;
    let event_time = DateTime::parse_from_rfc3339(time)
        .map_err(|source| ParseError::BadTime {
            value: truncate(time),
            source,
        })?
        .with_timezone(&Utc);
    let read_only = match v.get("readOnly") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    let identity = v.get("userIdentity").unwrap_or(&Value::Null);
    let request = match v.get("requestParameters") {
        Some(r @ Value::Object(_)) => r.clone(),
        _ => Value::Null,
    };
    Ok(IamEvent {
        event_id,
        event_name,
        event_source: optional_str(v, "eventSource"),
        event_time,
        error_code: optional_str(v, "errorCode"),
        read_only,
        caller_type: optional_str(identity, "type"),
        caller_arn: optional_str(identity, "arn"),
        caller_user_name: optional_str(identity, "userName"),
        access_key_id: optional_str(identity, "accessKeyId"),
        request,
    })
}

/// Parses one CloudTrail record given as a JSON string (`Event.CloudTrailEvent` of
/// `LookupEvents`).
pub fn parse_record_str(s: &str) -> Result<IamEvent, ParseError> {
    let v: Value = serde_json::from_str(s)?;
    parse_record(&v)
}

/// Parses an SQS message body holding an EventBridge envelope of an IAM CloudTrail API call:
/// `{"version":"0","id":..,"detail-type":"AWS API Call via CloudTrail","source":"aws.iam",
/// ..,"detail": <CloudTrail record>}`. Other detail-types and sources are rejected.
pub fn parse_eventbridge(body: &str) -> Result<IamEvent, ParseError> {
    let v: Value = serde_json::from_str(body)?;
    parse_eventbridge_value(&v)
}

/// [`parse_eventbridge`] of an already parsed body.
pub fn parse_eventbridge_value(v: &Value) -> Result<IamEvent, ParseError> {
    if !v.is_object() {
        return Err(ParseError::NotAnObject {
            what: "EventBridge envelope",
            found: json_type(v),
        });
    }
    let detail_type = v.get("detail-type").and_then(Value::as_str).unwrap_or("");
    if detail_type != EVENTBRIDGE_DETAIL_TYPE {
        return Err(ParseError::WrongDetailType {
            found: truncate(detail_type),
        });
    }
    let source = v.get("source").and_then(Value::as_str).unwrap_or("");
    if source != EVENTBRIDGE_SOURCE {
        return Err(ParseError::WrongSource {
            found: truncate(source),
        });
    }
    match v.get("detail") {
        None | Some(Value::Null) => Err(ParseError::MissingField("detail")),
        Some(detail @ Value::Object(_)) => parse_record(detail),
        Some(other) => Err(ParseError::NotAnObject {
            what: "EventBridge detail",
            found: json_type(other),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::mapping::testkit::*;
    use serde_json::json;

    #[test]
    fn parses_all_fields() {
        let ev = parse_record(&record("CreateAccessKey", json!({"userName": "bob"}))).unwrap();
        assert_eq!(ev.event_id, "id-CreateAccessKey");
        assert_eq!(ev.event_name, "CreateAccessKey");
        assert_eq!(ev.event_source.as_deref(), Some(IAM_EVENT_SOURCE));
        assert_eq!(ev.event_time.to_rfc3339(), "2024-08-01T13:42:21+00:00");
        assert_eq!(ev.error_code, None);
        assert!(!ev.read_only);
        assert_eq!(ev.caller_type.as_deref(), Some("IAMUser"));
        assert_eq!(
            ev.caller_arn.as_deref(),
            Some("arn:aws:iam::123456789012:user/ops/alice")
        );
        assert_eq!(ev.caller_user_name.as_deref(), Some("alice"));
        assert_eq!(ev.caller_iam_user(), Some("alice"));
        assert_eq!(ev.access_key_id.as_deref(), Some("caller-key-id-1"));
        assert_eq!(ev.request, json!({"userName": "bob"}));
    }

    #[test]
    fn parses_offset_and_fractional_times() {
        let mut v = record("CreateUser", json!({"userName": "bob"}));
        v["eventTime"] = json!("2024-08-01T15:42:21.5+02:00");
        let ev = parse_record(&v).unwrap();
        assert_eq!(ev.event_time.to_rfc3339(), "2024-08-01T13:42:21.500+00:00");
    }

    #[test]
    fn malformed_records_are_errors() {
        let good = record("CreateUser", json!({"userName": "bob"}));
        for field in ["eventID", "eventName", "eventTime"] {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove(field);
            let err = parse_record(&v).unwrap_err();
            assert!(
                matches!(err, ParseError::MissingField(f) if f == field),
                "{field}: {err}"
            );
            assert!(err.to_string().contains(field));
            let mut v = good.clone();
            v[field] = Value::Null;
            assert!(matches!(parse_record(&v), Err(ParseError::MissingField(_))));
            let mut v = good.clone();
            v[field] = json!(42);
            assert!(matches!(
                parse_record(&v),
                Err(ParseError::WrongType {
                    found: "number",
                    ..
                })
            ));
        }
        for bad in ["Aug 1, 2024 1:42:21 PM", "2024-08-01", "yesterday", ""] {
            let mut v = good.clone();
            v["eventTime"] = json!(bad);
            let err = parse_record(&v).unwrap_err();
            if bad.is_empty() {
                assert!(matches!(err, ParseError::MissingField("eventTime")));
            } else {
                assert!(matches!(err, ParseError::BadTime { .. }), "{bad}: {err}");
                assert!(err.to_string().contains("RFC 3339"));
            }
        }
        assert!(matches!(
            parse_record(&json!([good])),
            Err(ParseError::NotAnObject { found: "array", .. })
        ));
        let s = good.to_string();
        for cut in [0, 1, s.len() / 2, s.len() - 1] {
            assert!(
                matches!(parse_record_str(&s[..cut]), Err(ParseError::Json(_))),
                "truncated at {cut}"
            );
        }
        assert!(matches!(
            parse_record_str("null"),
            Err(ParseError::NotAnObject { .. })
        ));
        assert!(matches!(
            parse_record_str("\"x\""),
            Err(ParseError::NotAnObject { .. })
        ));
        assert!(parse_record_str(&s).is_ok());
    }

    #[test]
    fn odd_optional_fields_do_not_reject_the_record() {
        let mut v = record("CreateUser", json!({"userName": "bob"}));
        v["userIdentity"] = json!("not an object");
        v["errorCode"] = json!(7);
        v["readOnly"] = json!("false");
        let ev = parse_record(&v).unwrap();
        assert_eq!(ev.caller_arn, None);
        assert_eq!(ev.error_code, None);
        assert!(!ev.read_only);
        let mut v = record("CreateUser", json!({"userName": "bob"}));
        v["requestParameters"] = json!("weird");
        v["readOnly"] = json!("true");
        let ev = parse_record(&v).unwrap();
        assert_eq!(ev.request, Value::Null);
        assert!(ev.read_only);
    }

    #[test]
    fn long_values_are_truncated_in_errors() {
        let long = "x".repeat(10_000);
        let mut v = record("CreateUser", Value::Null);
        v["eventTime"] = json!(long);
        let msg = parse_record(&v).unwrap_err().to_string();
        assert!(msg.len() < 400, "{msg}");
        let env = json!({"detail-type": long, "source": "aws.iam", "detail": {}}).to_string();
        let msg = parse_eventbridge(&env).unwrap_err().to_string();
        assert!(msg.len() < 400, "{msg}");
        assert_eq!(truncate("héllo"), "héllo");
    }

    // ----- EventBridge -----

    fn envelope(detail: Value) -> Value {
        json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.iam",
            "account": "123456789012",
            "time": "2024-08-01T13:42:21Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail
        })
    }

    #[test]
    fn eventbridge_envelope_is_unwrapped() {
        let rec = record("CreateUser", json!({"userName": "bob"}));
        let ev = parse_eventbridge(&envelope(rec.clone()).to_string()).unwrap();
        assert_eq!(ev, parse_record(&rec).unwrap());
        assert_eq!(targets(&ev, &names()), vec![user("bob")]);
    }

    #[test]
    fn eventbridge_rejects_other_events() {
        let rec = record("CreateUser", json!({"userName": "bob"}));
        let mut e = envelope(rec.clone());
        e["detail-type"] = json!("EC2 Instance State-change Notification");
        let err = parse_eventbridge(&e.to_string()).unwrap_err();
        assert!(matches!(&err, ParseError::WrongDetailType { found } if found.starts_with("EC2")));
        assert!(err.to_string().contains("event pattern"), "{err}");

        let mut e = envelope(rec.clone());
        e.as_object_mut().unwrap().remove("detail-type");
        assert!(matches!(
            parse_eventbridge(&e.to_string()),
            Err(ParseError::WrongDetailType { .. })
        ));

        let mut e = envelope(rec.clone());
        e["source"] = json!("aws.s3");
        let err = parse_eventbridge(&e.to_string()).unwrap_err();
        assert!(matches!(&err, ParseError::WrongSource { found } if found == "aws.s3"));

        let mut e = envelope(rec.clone());
        e.as_object_mut().unwrap().remove("detail");
        assert!(matches!(
            parse_eventbridge(&e.to_string()),
            Err(ParseError::MissingField("detail"))
        ));
        let mut e = envelope(rec.clone());
        e["detail"] = json!("{}");
        assert!(matches!(
            parse_eventbridge(&e.to_string()),
            Err(ParseError::NotAnObject {
                found: "string",
                ..
            })
        ));
        let mut e = envelope(rec);
        e["detail"] = json!({"eventName": "CreateUser"});
        assert!(matches!(
            parse_eventbridge(&e.to_string()),
            Err(ParseError::MissingField("eventID"))
        ));

        // the record itself is not an envelope
        let rec = record("CreateUser", json!({"userName": "bob"}));
        assert!(matches!(
            parse_eventbridge(&rec.to_string()),
            Err(ParseError::WrongDetailType { .. })
        ));
        assert!(matches!(parse_eventbridge(""), Err(ParseError::Json(_))));
        assert!(matches!(
            parse_eventbridge("{\"detail-type\":"),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(
            parse_eventbridge("[1,2]"),
            Err(ParseError::NotAnObject { .. })
        ));
    }

    // ----- real CloudTrail records -----

    const REAL_DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/cloudtrail-real"
    );

    /// All records of the real fixtures as (file name, raw record); `None` if the fixtures
    /// are not available.
    fn real_records() -> Option<Vec<(String, Value)>> {
        let dir = match std::fs::read_dir(REAL_DIR) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipping real CloudTrail fixtures: cannot read {REAL_DIR}: {e}");
                return None;
            }
        };
        let mut files: Vec<_> = dir
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut out = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let records: Vec<Value> = serde_json::from_str(&text).unwrap();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            for r in records {
                out.push((file.clone(), r));
            }
        }
        assert!(!out.is_empty(), "no records in {REAL_DIR}");
        Some(out)
    }

    fn real_events() -> Option<Vec<(String, IamEvent)>> {
        let recs = real_records()?;
        Some(
            recs.into_iter()
                .map(|(f, r)| {
                    let ev = parse_record(&r)
                        .unwrap_or_else(|e| panic!("{f}: record does not parse: {e}"));
                    (f, ev)
                })
                .collect(),
        )
    }

    fn find<'a>(evs: &'a [(String, IamEvent)], file_prefix: &str, name: &str) -> &'a IamEvent {
        evs.iter()
            .find(|(f, e)| f.starts_with(file_prefix) && e.event_name == name)
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("no {name} in {file_prefix}*"))
    }

    #[test]
    fn real_records_all_parse_including_sts_and_failures() {
        let Some(evs) = real_events() else { return };
        assert!(evs.len() >= 8, "only {} records", evs.len());
        // every record also parses from its string form, as LookupEvents delivers it
        for (f, r) in real_records().unwrap() {
            let from_str = parse_record_str(&r.to_string()).unwrap();
            assert_eq!(from_str, parse_record(&r).unwrap(), "{f}");
        }
        let sts = find(
            &evs,
            "aws.persistence.iam-create-user-login-profile",
            "GetCallerIdentity",
        );
        assert_eq!(sts.event_source.as_deref(), Some("sts.amazonaws.com"));
        assert!(sts.read_only);
        assert_eq!(targets(sts, &names()), vec![]);
        for (_, e) in &evs {
            assert!(e.event_time.timestamp() > 1_700_000_000, "{}", e.event_id);
            assert!(!e.event_id.is_empty());
            assert_eq!(e.caller_iam_user(), Some("christophe"));
        }
    }

    #[test]
    fn real_failed_call_maps_to_nothing() {
        let Some(evs) = real_events() else { return };
        let failed = find(
            &evs,
            "aws.persistence.iam-create-user-login-profile",
            "DeleteLoginProfile",
        );
        assert_eq!(
            failed.error_code.as_deref(),
            Some("EntityTemporarilyUnmodifiableException")
        );
        assert_eq!(targets(failed, &names()), vec![]);
        let failures = evs.iter().filter(|(_, e)| e.error_code.is_some()).count();
        assert_eq!(failures, 1);
    }

    #[test]
    fn real_writes_map_to_the_right_users() {
        let Some(evs) = real_events() else { return };
        let n = names();
        let cases = [
            (
                "aws.persistence.iam-backdoor-user",
                "CreateAccessKey",
                "stratus-red-team-backdoor-u-user",
            ),
            (
                "aws.persistence.iam-create-admin-user",
                "CreateUser",
                "malicious-iam-user",
            ),
            (
                "aws.persistence.iam-create-admin-user",
                "AttachUserPolicy",
                "malicious-iam-user",
            ),
            (
                "aws.persistence.iam-create-admin-user",
                "CreateAccessKey",
                "malicious-iam-user",
            ),
            (
                "aws.persistence.iam-create-user-login-profile",
                "CreateLoginProfile",
                "stratus-red-team-login-profile-user",
            ),
            (
                "aws.privilege-escalation.iam-update-user-login-profile",
                "UpdateLoginProfile",
                "stratus-red-team-update-login-profile-user",
            ),
        ];
        for (file, name, want) in cases {
            let ev = find(&evs, file, name);
            assert_eq!(targets(ev, &n), vec![user(want)], "{file}: {name}");
        }
        let ev = find(&evs, "aws.persistence.iam-backdoor-user", "CreateAccessKey");
        assert_eq!(ev.event_id, "c64c4ded-ef03-4e5c-81eb-153b118d72f2");
        assert_eq!(ev.event_time.to_rfc3339(), "2024-07-30T21:53:13+00:00");
        // The caller's key id as the fixture has it (not copied into the source).
        let raw = real_records()
            .unwrap_or_default()
            .into_iter()
            .find(|(f, r)| {
                f.starts_with("aws.persistence.iam-backdoor-user")
                    && r["eventName"] == "CreateAccessKey"
            })
            .map(|(_, r)| r["userIdentity"]["accessKeyId"].clone());
        let want = raw.as_ref().and_then(|v| v.as_str());
        assert!(want.is_some_and(|k| k.len() == 20), "{raw:?}");
        assert_eq!(ev.access_key_id.as_deref(), want);
        // no real record is an account-wide change, and no record is mapped to the caller
        for (f, e) in &evs {
            for t in targets(e, &n) {
                assert_ne!(t, account(), "{f}: {}", e.event_name);
                assert_ne!(t, user("christophe"), "{f}: {}", e.event_name);
            }
        }
    }

    #[test]
    fn real_record_in_eventbridge_envelope() {
        let Some(recs) = real_records() else { return };
        let (_, rec) = recs
            .iter()
            .find(|(_, r)| r["eventName"] == "CreateLoginProfile")
            .unwrap();
        let body = envelope(rec.clone()).to_string();
        let ev = parse_eventbridge(&body).unwrap();
        assert_eq!(ev.event_name, "CreateLoginProfile");
        assert_eq!(
            targets(&ev, &names()),
            vec![user("stratus-red-team-login-profile-user")]
        );
        // truncated envelope: an error, not a panic
        for cut in [1, body.len() / 3, body.len() - 2] {
            assert!(matches!(
                parse_eventbridge(&body[..cut]),
                Err(ParseError::Json(_))
            ));
        }
    }
}
