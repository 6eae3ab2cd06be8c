//! AWS Health events for exposed credentials, as EventBridge delivers them to SQS, and the
//! choice between them and CloudTrail API-call envelopes for one SQS message body.
//!
//! Pure code, no I/O. The shape (AWS Health User Guide, "Monitoring AWS Health events with
//! Amazon EventBridge", the exposed-credentials example):
//!
//! ```json
//! {"version": "0", "id": "...", "detail-type": "AWS Health Event", "source": "aws.health",
//!  "account": "123456789012", "time": "2016-06-05T06:27:57Z", "region": "us-east-1",
//!  "resources": [],
//!  "detail": {"eventArn": "arn:aws:health:us-east-1::event/RISK/AWS_RISK_CREDENTIALS_EXPOSED/...",
//!             "service": "RISK", "eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
//!             "eventTypeCategory": "issue", "startTime": "Sat, 05 Jun 2016 15:10:09 GMT",
//!             "eventDescription": [{"language": "en_US", "latestDescription": "..."}],
//!             "affectedEntities": [{"entityValue": "<AccessKeyId>"}]}}
//! ```
//!
//! `detail.startTime` is not RFC 3339 (it is an RFC 2822 date), so the envelope's `time` is
//! the event time. Entities that are not IAM user access key ids (`AKIA` + 16 letters or
//! digits) are reported back as rejected, never acted on; an event without any valid one
//! is an error.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::event::{json_type, parse_eventbridge_value, truncate, IamEvent, ParseError};
use crate::controller::key::{Exposed, Exposure};

/// The EventBridge `source` of AWS Health events.
pub const HEALTH_SOURCE: &str = "aws.health";
/// The EventBridge `detail-type` of AWS Health events.
pub const HEALTH_DETAIL_TYPE: &str = "AWS Health Event";
/// The Health event type of exposed IAM access keys.
pub const CREDENTIALS_EXPOSED: &str = "AWS_RISK_CREDENTIALS_EXPOSED";
/// The EventBridge rule pattern that sends exactly these events.
pub const HEALTH_PATTERN: &str = r#"{"source":["aws.health"],"detail-type":["AWS Health Event"],"detail":{"eventTypeCode":["AWS_RISK_CREDENTIALS_EXPOSED"]}}"#;

/// What one SQS message body holds.
#[derive(Debug, Clone, PartialEq)]
pub enum SqsEvent {
    /// An IAM API call recorded by CloudTrail.
    CloudTrail(IamEvent),
    /// An AWS Health exposed-credentials event.
    Exposed(HealthExposure),
}

/// The keys an AWS Health exposed-credentials event names.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthExposure {
    /// One exposure per distinct valid key id, in the event's order.
    pub exposures: Vec<Exposure>,
    /// Entity values that are not IAM access key ids (truncated): logged, not acted on.
    pub rejected: Vec<String>,
}

/// Whether `s` is an IAM user's access key id: `AKIA` and 16 upper-case letters or digits.
/// (Temporary `ASIA` keys cannot be deactivated; they expire.)
pub fn is_access_key_id(s: &str) -> bool {
    s.len() == 20
        && s.starts_with("AKIA")
        && s[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn health_str<'a>(v: &'a Value, field: &'static str) -> Result<&'a str, ParseError> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or(ParseError::HealthMissing(field))
}

/// Parses an EventBridge AWS Health event of type `AWS_RISK_CREDENTIALS_EXPOSED`.
pub fn parse_health(v: &Value) -> Result<HealthExposure, ParseError> {
    if !v.is_object() {
        return Err(ParseError::NotAnObject {
            what: "EventBridge envelope",
            found: json_type(v),
        });
    }
    let detail_type = v.get("detail-type").and_then(Value::as_str).unwrap_or("");
    if detail_type != HEALTH_DETAIL_TYPE {
        return Err(ParseError::HealthDetailType {
            found: truncate(detail_type),
        });
    }
    let id = health_str(v, "id")?;
    let account = health_str(v, "account")?;
    let time = health_str(v, "time")?;
    let event_time = DateTime::parse_from_rfc3339(time)
        .map_err(|source| ParseError::BadTime {
            value: truncate(time),
            source,
        })?
        .with_timezone(&Utc);
    let detail = match v.get("detail") {
        Some(d @ Value::Object(_)) => d,
        None | Some(Value::Null) => return Err(ParseError::HealthMissing("detail")),
        Some(other) => {
            return Err(ParseError::NotAnObject {
                what: "AWS Health event detail",
                found: json_type(other),
            })
        }
    };
    let code = detail
        .get("eventTypeCode")
        .and_then(Value::as_str)
        .unwrap_or("");
    if code != CREDENTIALS_EXPOSED {
        return Err(ParseError::HealthEventType {
            found: truncate(code),
        });
    }
    let entities = detail
        .get("affectedEntities")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut exposures: Vec<Exposure> = Vec::new();
    let mut rejected = Vec::new();
    for e in entities {
        match e.get("entityValue").and_then(Value::as_str).map(str::trim) {
            Some(k) if is_access_key_id(k) => {
                let exposed = Exposed::Key {
                    key_id: k.to_owned(),
                    account: account.to_owned(),
                };
                if !exposures.iter().any(|x| x.exposed == exposed) {
                    exposures.push(Exposure {
                        exposed,
                        event_id: id.to_owned(),
                        event_time,
                    });
                }
            }
            Some(other) => rejected.push(truncate(other)),
            None => rejected.push(format!("a {} entity", json_type(e))),
        }
    }
    if exposures.is_empty() {
        let found = if rejected.is_empty() {
            "none".to_owned()
        } else {
            truncate(&rejected.join(", "))
        };
        return Err(ParseError::NoExposedKey { found });
    }
    Ok(HealthExposure {
        exposures,
        rejected,
    })
}

/// Parses an SQS message body: an AWS Health event (`source: aws.health`) or an IAM
/// CloudTrail API call envelope (everything else, see
/// [`super::event::parse_eventbridge`]).
pub fn parse_sqs_message(body: &str) -> Result<SqsEvent, ParseError> {
    let v: Value = serde_json::from_str(body)?;
    parse_sqs_value(&v)
}

/// [`parse_sqs_message`] of an already parsed body.
pub fn parse_sqs_value(v: &Value) -> Result<SqsEvent, ParseError> {
    if v.get("source").and_then(Value::as_str) == Some(HEALTH_SOURCE) {
        return parse_health(v).map(SqsEvent::Exposed);
    }
    parse_eventbridge_value(v).map(SqsEvent::CloudTrail)
}

#[cfg(test)]
mod tests;
