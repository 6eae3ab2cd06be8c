//! Which account an SQS message is about, and what the consumer does with it.
//!
//! Pure code, no I/O. One queue may carry the events of many accounts (an
//! organization-wide EventBridge rule, or rules in every account targeting a central event
//! bus): each EventBridge event names the account it happened in, in the envelope's
//! `account` field. That field, and nothing in the event's detail, routes the message:
//!
//! 1. The body must be a JSON object, else it is malformed (left for the dead-letter queue).
//! 2. Its `account` must be a 12-digit string; missing, null, another JSON type or another
//!    shape is a skip (counted with its reason, logged, the message deleted).
//! 3. That account must be in scope (it has a dispatch); else a skip (`not_in_scope`). An
//!    event of another account is never acted on in ours, even with one account in scope:
//!    a user of the same name in our account is another user.
//! 4. Only then is the event itself parsed ([`parse_sqs_value`]); a parse error there is
//!    malformed (left for the dead-letter queue: it is about one of our accounts).
//!
//! A bare CloudTrail record (no envelope) has no `account`: it is skipped as `missing`
//! (the consumer reads EventBridge envelopes only; CloudTrail's own delivery is the
//! `LookupEvents` poller).

use serde_json::Value;

use super::event::{json_type, truncate, ParseError};
use super::health::{parse_sqs_value, SqsEvent};
use crate::config::is_account_id;
use crate::metrics::SqsSkipReason;

/// What becomes of one SQS message body.
// The event is moved out at once, one message at a time: no box needed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Route<T> {
    /// An event about an account in scope, with what the lookup gave for that account.
    Dispatch {
        account: String,
        to: T,
        event: SqsEvent,
    },
    /// Not acted on, and deleted.
    Skip(Skip),
    /// Cannot be parsed: left in the queue for its redrive policy.
    Malformed(ParseError),
}

/// Why a message is skipped, with what identifies it in the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub reason: SqsSkipReason,
    /// The `account` as found: the (cut) string, the JSON type of another value, or empty.
    pub account: String,
    /// What the message is: the CloudTrail `eventName` or the Health `eventTypeCode`, else
    /// the `detail-type` (cut); empty if none.
    pub event: String,
}

/// The account an EventBridge envelope is about: its `account` field, a 12-digit string.
pub fn envelope_account(v: &Value) -> Result<&str, (SqsSkipReason, String)> {
    match v.get("account") {
        None | Some(Value::Null) => Err((SqsSkipReason::Missing, String::new())),
        Some(Value::String(s)) if is_account_id(s) => Ok(s),
        Some(Value::String(s)) => Err((SqsSkipReason::BadShape, truncate(s))),
        Some(other) => Err((
            SqsSkipReason::NotAString,
            format!("a JSON {}", json_type(other)),
        )),
    }
}

/// What an envelope is, for the log line of a skip: the CloudTrail `eventName` or the
/// Health `eventTypeCode` when there is one, else the `detail-type`; cut short.
pub fn event_label(v: &Value) -> String {
    let detail = v.get("detail").unwrap_or(&Value::Null);
    let s = detail
        .get("eventName")
        .or_else(|| detail.get("eventTypeCode"))
        .and_then(Value::as_str)
        .or_else(|| v.get("detail-type").and_then(Value::as_str))
        .unwrap_or("");
    truncate(s)
}

/// Route one SQS message body: `lookup` gives what belongs to an account in scope (its
/// dispatch), `None` for any other account. See the module documentation for the order.
pub fn route<T>(body: &str, lookup: impl FnOnce(&str) -> Option<T>) -> Route<T> {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Route::Malformed(ParseError::Json(e)),
    };
    if !v.is_object() {
        return Route::Malformed(ParseError::NotAnObject {
            what: "SQS message (an EventBridge envelope)",
            found: json_type(&v),
        });
    }
    let account = match envelope_account(&v) {
        Ok(a) => a,
        Err((reason, account)) => {
            return Route::Skip(Skip {
                reason,
                account,
                event: event_label(&v),
            })
        }
    };
    let Some(to) = lookup(account) else {
        return Route::Skip(Skip {
            reason: SqsSkipReason::NotInScope,
            account: account.to_owned(),
            event: event_label(&v),
        });
    };
    match parse_sqs_value(&v) {
        Ok(event) => Route::Dispatch {
            account: account.to_owned(),
            to,
            event,
        },
        Err(e) => Route::Malformed(e),
    }
}

#[cfg(test)]
mod tests;
