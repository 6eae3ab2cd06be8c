//! CloudTrail IAM events: parsing and mapping to reconcile targets.
//!
//! Pure code, no I/O. Records come from two places:
//! - CloudTrail `LookupEvents`, where each record is a JSON string in
//!   `Event.CloudTrailEvent` ([`parse_record_str`]);
//! - an SQS queue fed by an EventBridge rule, where each message body is an EventBridge
//!   envelope whose `detail` is the CloudTrail record ([`parse_eventbridge`]).
//!
//! [`targets`] turns an event into the work it causes. The controller is level-triggered, so
//! an event only makes a reconcile happen sooner; mapping an event to nothing is never wrong
//! for correctness (the periodic resync catches up), only for latency.
//!
//! Only the fields the mapping needs are extracted. `responseElements` is never read (it holds
//! dates in a non-RFC3339 form such as `"Aug 1, 2024 1:42:21 PM"` and, for some calls, data
//! we have no business keeping).

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The `eventSource` of IAM events.
pub const IAM_EVENT_SOURCE: &str = "iam.amazonaws.com";

/// The EventBridge `detail-type` of CloudTrail API call events.
pub const EVENTBRIDGE_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// The EventBridge `source` of IAM events.
pub const EVENTBRIDGE_SOURCE: &str = "aws.iam";

/// What a reconcile works on: one IAM user, or the account-wide baseline (baseline groups,
/// baseline managed policies, the account password policy).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReconcileKey {
    /// One IAM user, by user name.
    User(String),
    /// The account-wide part of the baseline.
    Account,
}

impl fmt::Display for ReconcileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconcileKey::User(name) => write!(f, "user/{name}"),
            ReconcileKey::Account => f.write_str("account"),
        }
    }
}

/// The work an event causes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Reconcile this key soon.
    Reconcile(ReconcileKey),
    /// The user no longer exists under this name (DeleteUser, or the old name of a rename):
    /// drop whatever is known or queued about it.
    Forget(String),
}

/// The parts of a CloudTrail record that the daemon uses.
#[derive(Debug, Clone, PartialEq)]
pub struct IamEvent {
    /// `eventID`: unique per record; used to de-duplicate overlapping polls.
    pub event_id: String,
    /// `eventName`, e.g. `CreateAccessKey`.
    pub event_name: String,
    /// `eventSource`, e.g. `iam.amazonaws.com`; `None` if the record has none.
    pub event_source: Option<String>,
    /// `eventTime`.
    pub event_time: DateTime<Utc>,
    /// `errorCode`: present when the call failed.
    pub error_code: Option<String>,
    /// `readOnly`; `false` when absent.
    pub read_only: bool,
    /// `userIdentity.type`, e.g. `IAMUser`, `AssumedRole`, `Root`.
    pub caller_type: Option<String>,
    /// `userIdentity.arn`.
    pub caller_arn: Option<String>,
    /// `userIdentity.userName`.
    pub caller_user_name: Option<String>,
    /// `userIdentity.accessKeyId`: lets the daemon recognise its own writes.
    pub access_key_id: Option<String>,
    /// `requestParameters`, or `Null` when absent.
    pub request: Value,
}

impl IamEvent {
    /// The IAM user that made the call, if it was one: `userIdentity.userName` when
    /// `userIdentity.type` is `IAMUser`, otherwise the last path segment of a
    /// `arn:aws:iam::ACCOUNT:user/PATH/NAME` caller ARN.
    pub fn caller_iam_user(&self) -> Option<&str> {
        if self.caller_type.as_deref() == Some("IAMUser") {
            if let Some(name) = self.caller_user_name.as_deref().filter(|n| !n.is_empty()) {
                return Some(name);
            }
        }
        self.caller_arn.as_deref().and_then(user_name_from_arn)
    }

    /// A string request parameter, if present and non-empty.
    pub fn request_str(&self, name: &str) -> Option<&str> {
        self.request
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

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

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

fn json_type(v: &Value) -> &'static str {
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
    if !v.is_object() {
        return Err(ParseError::NotAnObject {
            what: "EventBridge envelope",
            found: json_type(&v),
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

/// Names of the account-wide baseline resources, so that changes to them can be recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaselineNames {
    /// Names of the baseline IAM groups.
    pub group_names: Vec<String>,
    /// Names of the baseline customer-managed policies.
    pub policy_names: Vec<String>,
}

/// The user name in an IAM user ARN (`arn:aws:iam::ACCOUNT:user/PATH/NAME` → `NAME`).
pub fn user_name_from_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("iam"), Some(_region), Some(_account), Some(res)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let path = res.strip_prefix("user/")?;
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

/// The last path segment of a policy ARN (`arn:aws:iam::ACCOUNT:policy/PATH/NAME` → `NAME`).
fn policy_name_from_arn(arn: &str) -> Option<&str> {
    let (_, res) = arn.rsplit_once(':')?;
    let path = res.strip_prefix("policy/")?;
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

/// Calls where IAM acts on the caller when `UserName` is omitted.
const CALLER_DEFAULT_EVENTS: &[&str] = &[
    "ChangePassword",
    "CreateAccessKey",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "EnableMFADevice",
    "DeactivateMFADevice",
    "ResyncMFADevice",
    "UploadSigningCertificate",
    "UpdateSigningCertificate",
    "DeleteSigningCertificate",
];

/// Changes to a group that matter when the group is a baseline group.
const GROUP_EVENTS: &[&str] = &[
    "AttachGroupPolicy",
    "DetachGroupPolicy",
    "PutGroupPolicy",
    "DeleteGroupPolicy",
    "DeleteGroup",
    "UpdateGroup",
];

/// Changes to a managed policy that matter when the policy is a baseline policy.
const POLICY_EVENTS: &[&str] = &[
    "CreatePolicyVersion",
    "SetDefaultPolicyVersion",
    "DeletePolicyVersion",
    "DeletePolicy",
];

/// Changes to the account password policy.
const ACCOUNT_EVENTS: &[&str] = &["UpdateAccountPasswordPolicy", "DeleteAccountPasswordPolicy"];

/// Name prefixes of calls that never change anything, skipped even if `readOnly` is missing
/// (otherwise the daemon's own reads, e.g. `GetUser`, would trigger reconciles of themselves).
const READ_PREFIXES: &[&str] = &["Get", "List", "Generate", "Simulate"];

/// The work an event causes, de-duplicated, in a stable order. Empty for failed calls,
/// read-only calls, other services and calls that do not affect the baseline.
///
/// An event without `eventSource` is treated as IAM (the recorder and tests may omit it).
/// `DeleteVirtualMFADevice` without `userName` maps to nothing: a device must be deactivated
/// before it can be deleted, and the `DeactivateMFADevice` event names the user.
pub fn targets(ev: &IamEvent, names: &BaselineNames) -> Vec<Target> {
    if ev.error_code.is_some() || ev.read_only {
        return Vec::new();
    }
    if ev
        .event_source
        .as_deref()
        .is_some_and(|s| s != IAM_EVENT_SOURCE)
    {
        return Vec::new();
    }
    let name = ev.event_name.as_str();
    if READ_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Vec::new();
    }

    let mut out = Vec::new();
    let req_user = ev.request_str("userName");
    match name {
        "DeleteUser" => {
            if let Some(user) = req_user {
                out.push(Target::Forget(user.to_owned()));
            }
        }
        "UpdateUser" => {
            // A rename: the old name is gone, the new one must be brought to baseline.
            match (req_user, ev.request_str("newUserName")) {
                (Some(old), Some(new)) if old != new => {
                    out.push(Target::Forget(old.to_owned()));
                    out.push(Target::Reconcile(ReconcileKey::User(new.to_owned())));
                }
                (Some(user), _) => out.push(Target::Reconcile(ReconcileKey::User(user.to_owned()))),
                (None, _) => {}
            }
        }
        _ => {
            if let Some(user) = req_user {
                out.push(Target::Reconcile(ReconcileKey::User(user.to_owned())));
            } else if CALLER_DEFAULT_EVENTS.contains(&name) {
                if let Some(user) = ev.caller_iam_user() {
                    out.push(Target::Reconcile(ReconcileKey::User(user.to_owned())));
                }
            }
            let baseline_group = || {
                ev.request_str("groupName")
                    .is_some_and(|g| names.group_names.iter().any(|n| n == g))
            };
            let baseline_policy = || {
                ev.request_str("policyArn")
                    .and_then(policy_name_from_arn)
                    .is_some_and(|p| names.policy_names.iter().any(|n| n == p))
            };
            let account = (GROUP_EVENTS.contains(&name) && baseline_group())
                || (POLICY_EVENTS.contains(&name) && baseline_policy())
                || ACCOUNT_EVENTS.contains(&name);
            if account {
                out.push(Target::Reconcile(ReconcileKey::Account));
            }
        }
    }
    dedup(out)
}

fn dedup(targets: Vec<Target>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::with_capacity(targets.len());
    for t in targets {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Every event name [`metric_event_name`] knows; use it to pre-create metric label values.
pub const KNOWN_EVENT_NAMES: &[&str] = &[
    "AddUserToGroup",
    "AttachGroupPolicy",
    "AttachUserPolicy",
    "ChangePassword",
    "CreateAccessKey",
    "CreateGroup",
    "CreateLoginProfile",
    "CreatePolicy",
    "CreatePolicyVersion",
    "CreateUser",
    "CreateVirtualMFADevice",
    "DeactivateMFADevice",
    "DeleteAccessKey",
    "DeleteAccountPasswordPolicy",
    "DeleteGroup",
    "DeleteGroupPolicy",
    "DeleteLoginProfile",
    "DeletePolicy",
    "DeletePolicyVersion",
    "DeleteUser",
    "DeleteUserPolicy",
    "DeleteVirtualMFADevice",
    "DetachGroupPolicy",
    "DetachUserPolicy",
    "EnableMFADevice",
    "PutGroupPolicy",
    "PutUserPolicy",
    "RemoveUserFromGroup",
    "ResyncMFADevice",
    "SetDefaultPolicyVersion",
    "TagUser",
    "UntagUser",
    "UpdateAccessKey",
    "UpdateAccountPasswordPolicy",
    "UpdateGroup",
    "UpdateLoginProfile",
    "UpdateUser",
];

/// The label value for an event name: the name itself if it is one of
/// [`KNOWN_EVENT_NAMES`], `"other"` otherwise (keeps metric cardinality bounded).
pub fn metric_event_name(name: &str) -> &'static str {
    KNOWN_EVENT_NAMES
        .iter()
        .copied()
        .find(|known| *known == name)
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> BaselineNames {
        BaselineNames {
            group_names: vec!["warden-baseline".into(), "warden-console".into()],
            policy_names: vec!["warden-require-mfa".into(), "warden-source-ip".into()],
        }
    }

    fn user(n: &str) -> Target {
        Target::Reconcile(ReconcileKey::User(n.into()))
    }

    fn account() -> Target {
        Target::Reconcile(ReconcileKey::Account)
    }

    /// A minimal successful IAM write made by IAM user `alice`.
    fn record(event_name: &str, request: Value) -> Value {
        json!({
            "eventVersion": "1.09",
            "eventID": format!("id-{event_name}"),
            "eventName": event_name,
            "eventSource": "iam.amazonaws.com",
            "eventTime": "2024-08-01T13:42:21Z",
            "readOnly": false,
            "requestParameters": request,
            "responseElements": null,
            "userIdentity": {
                "type": "IAMUser",
                "arn": "arn:aws:iam::123456789012:user/ops/alice",
                "userName": "alice",
                "accessKeyId": "caller-key-id-1"
            }
        })
    }

    fn map(v: &Value) -> Vec<Target> {
        targets(&parse_record(v).unwrap(), &names())
    }

    #[test]
    fn user_name_in_request_maps_to_that_user() {
        let events = [
            "CreateUser",
            "TagUser",
            "UntagUser",
            "CreateLoginProfile",
            "UpdateLoginProfile",
            "DeleteLoginProfile",
            "CreateAccessKey",
            "UpdateAccessKey",
            "DeleteAccessKey",
            "EnableMFADevice",
            "DeactivateMFADevice",
            "DeleteVirtualMFADevice",
            "AttachUserPolicy",
            "DetachUserPolicy",
            "PutUserPolicy",
            "DeleteUserPolicy",
            "AddUserToGroup",
            "RemoveUserFromGroup",
            "ChangePassword",
            "SomeFutureUserCall",
        ];
        for name in events {
            let got = map(&record(
                name,
                json!({"userName": "bob", "groupName": "devs"}),
            ));
            assert_eq!(got, vec![user("bob")], "{name}");
        }
    }

    #[test]
    fn caller_default_calls_without_user_name_map_to_the_caller() {
        for name in [
            "CreateAccessKey",
            "UpdateAccessKey",
            "DeleteAccessKey",
            "ChangePassword",
            "EnableMFADevice",
            "DeactivateMFADevice",
        ] {
            let got = map(&record(name, json!({"accessKeyId": "caller-key-id-2"})));
            assert_eq!(got, vec![user("alice")], "{name}");
            // requestParameters null altogether (ChangePassword has only hidden fields)
            let got = map(&record(name, Value::Null));
            assert_eq!(
                got,
                vec![user("alice")],
                "{name} with null requestParameters"
            );
        }
    }

    #[test]
    fn caller_derived_from_arn_when_user_name_missing() {
        let mut v = record("CreateAccessKey", Value::Null);
        v["userIdentity"] =
            json!({"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/a/b/carol"});
        assert_eq!(map(&v), vec![user("carol")]);
        // no type at all, but a user ARN
        v["userIdentity"] = json!({"arn": "arn:aws-us-gov:iam::123456789012:user/dave"});
        assert_eq!(map(&v), vec![user("dave")]);
    }

    #[test]
    fn caller_that_is_not_a_user_maps_to_nothing() {
        let mut v = record("CreateAccessKey", Value::Null);
        v["userIdentity"] = json!({
            "type": "AssumedRole",
            "arn": "arn:aws:sts::123456789012:assumed-role/Admin/session",
            "accessKeyId": "session-key-id-1"
        });
        assert_eq!(map(&v), vec![]);
        v["userIdentity"] = json!({"type": "Root", "arn": "arn:aws:iam::123456789012:root"});
        assert_eq!(map(&v), vec![]);
        v["userIdentity"] = Value::Null;
        assert_eq!(map(&v), vec![]);
    }

    #[test]
    fn calls_without_caller_default_and_without_user_map_to_nothing() {
        for name in [
            "DeleteVirtualMFADevice",
            "CreateLoginProfile",
            "CreateRole",
            "TagRole",
        ] {
            let got = map(&record(
                name,
                json!({"serialNumber": "arn:aws:iam::123456789012:mfa/alice"}),
            ));
            assert_eq!(got, vec![], "{name}");
        }
    }

    #[test]
    fn delete_user_forgets_the_user() {
        assert_eq!(
            map(&record("DeleteUser", json!({"userName": "bob"}))),
            vec![Target::Forget("bob".into())]
        );
        assert_eq!(map(&record("DeleteUser", json!({}))), vec![]);
    }

    #[test]
    fn rename_forgets_old_and_reconciles_new() {
        assert_eq!(
            map(&record(
                "UpdateUser",
                json!({"userName": "bob", "newUserName": "robert"})
            )),
            vec![Target::Forget("bob".into()), user("robert")]
        );
        assert_eq!(
            map(&record(
                "UpdateUser",
                json!({"userName": "bob", "newPath": "/x/"})
            )),
            vec![user("bob")]
        );
    }

    #[test]
    fn group_membership_maps_to_the_user_only() {
        for name in ["AddUserToGroup", "RemoveUserFromGroup"] {
            let got = map(&record(
                name,
                json!({"userName": "bob", "groupName": "warden-baseline"}),
            ));
            assert_eq!(got, vec![user("bob")], "{name}");
        }
    }

    #[test]
    fn baseline_group_changes_map_to_account() {
        for name in [
            "AttachGroupPolicy",
            "DetachGroupPolicy",
            "PutGroupPolicy",
            "DeleteGroupPolicy",
            "DeleteGroup",
            "UpdateGroup",
        ] {
            let baseline = map(&record(
                name,
                json!({"groupName": "warden-console", "policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}),
            ));
            assert_eq!(baseline, vec![account()], "{name} on baseline group");
            let other = map(&record(name, json!({"groupName": "devs"})));
            assert_eq!(other, vec![], "{name} on other group");
        }
    }

    #[test]
    fn baseline_policy_changes_map_to_account() {
        for name in [
            "CreatePolicyVersion",
            "SetDefaultPolicyVersion",
            "DeletePolicyVersion",
            "DeletePolicy",
        ] {
            let baseline = map(&record(
                name,
                json!({"policyArn": "arn:aws:iam::123456789012:policy/warden/warden-require-mfa", "versionId": "v2"}),
            ));
            assert_eq!(baseline, vec![account()], "{name} on baseline policy");
            let other = map(&record(
                name,
                json!({"policyArn": "arn:aws:iam::123456789012:policy/other"}),
            ));
            assert_eq!(other, vec![], "{name} on other policy");
            let suffix_only = map(&record(
                name,
                json!({"policyArn": "arn:aws:iam::123456789012:policy/x-warden-require-mfa"}),
            ));
            assert_eq!(suffix_only, vec![], "{name} on look-alike policy");
        }
    }

    #[test]
    fn password_policy_changes_map_to_account() {
        for name in ["UpdateAccountPasswordPolicy", "DeleteAccountPasswordPolicy"] {
            assert_eq!(
                map(&record(name, json!({"minimumPasswordLength": 14}))),
                vec![account()]
            );
            assert_eq!(map(&record(name, Value::Null)), vec![account()]);
        }
    }

    #[test]
    fn failed_read_only_and_foreign_events_map_to_nothing() {
        let mut failed = record("CreateAccessKey", json!({"userName": "bob"}));
        failed["errorCode"] = json!("AccessDenied");
        assert_eq!(map(&failed), vec![]);

        let mut ro = record("GetUser", json!({"userName": "bob"}));
        ro["readOnly"] = json!(true);
        assert_eq!(map(&ro), vec![]);
        // readOnly missing: reads are still recognised by name
        let mut ro = record("ListAccessKeys", json!({"userName": "bob"}));
        ro.as_object_mut().unwrap().remove("readOnly");
        assert_eq!(map(&ro), vec![]);

        let mut sts = record("GetCallerIdentity", Value::Null);
        sts["eventSource"] = json!("sts.amazonaws.com");
        assert_eq!(map(&sts), vec![]);
        let mut ec2 = record("CreateTags", json!({"userName": "bob"}));
        ec2["eventSource"] = json!("ec2.amazonaws.com");
        assert_eq!(map(&ec2), vec![]);

        assert_eq!(map(&record("CreateRole", json!({"roleName": "r"}))), vec![]);
    }

    #[test]
    fn targets_are_deduplicated() {
        assert_eq!(
            dedup(vec![user("a"), account(), user("a"), account(), user("b")]),
            vec![user("a"), account(), user("b")]
        );
        // an event naming a user that is also the baseline group's policy change target
        let got = map(&record(
            "UpdateUser",
            json!({"userName": "bob", "newUserName": "bob"}),
        ));
        assert_eq!(got, vec![user("bob")]);
    }

    #[test]
    fn reconcile_key_display_and_order() {
        assert_eq!(ReconcileKey::User("bob".into()).to_string(), "user/bob");
        assert_eq!(ReconcileKey::Account.to_string(), "account");
        let mut keys = vec![
            ReconcileKey::Account,
            ReconcileKey::User("b".into()),
            ReconcileKey::User("a".into()),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                ReconcileKey::User("a".into()),
                ReconcileKey::User("b".into()),
                ReconcileKey::Account
            ]
        );
    }

    #[test]
    fn metric_event_name_is_a_closed_set() {
        assert_eq!(metric_event_name("CreateAccessKey"), "CreateAccessKey");
        assert_eq!(metric_event_name("DeleteUser"), "DeleteUser");
        assert_eq!(metric_event_name("createaccesskey"), "other");
        assert_eq!(metric_event_name("alice-was-here"), "other");
        assert_eq!(metric_event_name(""), "other");
        for n in KNOWN_EVENT_NAMES {
            assert_eq!(metric_event_name(n), *n);
        }
        // every name the mapping treats specially is known to the metrics
        for n in CALLER_DEFAULT_EVENTS
            .iter()
            .chain(GROUP_EVENTS)
            .chain(POLICY_EVENTS)
            .chain(ACCOUNT_EVENTS)
        {
            if !n.contains("SigningCertificate") {
                assert!(
                    KNOWN_EVENT_NAMES.contains(n),
                    "{n} missing from KNOWN_EVENT_NAMES"
                );
            }
        }
    }

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

    #[test]
    fn arn_helpers() {
        assert_eq!(user_name_from_arn("arn:aws:iam::1:user/bob"), Some("bob"));
        assert_eq!(
            user_name_from_arn("arn:aws:iam::1:user/a/b/bob"),
            Some("bob")
        );
        assert_eq!(user_name_from_arn("arn:aws:iam::1:role/bob"), None);
        assert_eq!(user_name_from_arn("arn:aws:sts::1:assumed-role/r/s"), None);
        assert_eq!(user_name_from_arn("arn:aws:iam::1:user/"), None);
        assert_eq!(user_name_from_arn("bob"), None);
        assert_eq!(
            policy_name_from_arn("arn:aws:iam::1:policy/p/q/name"),
            Some("name")
        );
        assert_eq!(
            policy_name_from_arn("arn:aws:iam::aws:policy/ReadOnlyAccess"),
            Some("ReadOnlyAccess")
        );
        assert_eq!(policy_name_from_arn("arn:aws:iam::1:group/name"), None);
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
