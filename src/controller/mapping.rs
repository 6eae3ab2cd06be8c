//! From a parsed IAM event to the work it causes: the event type the controller consumes
//! ([`IamEvent`]) and its mapping to reconcile keys ([`targets`]).
//!
//! Pure code, no I/O. The controller is level-triggered, so an event only makes a reconcile
//! happen sooner; mapping an event to nothing is never wrong for correctness (the periodic
//! resync catches up), only for latency. Parsing records into [`IamEvent`] is the sources'
//! job (`sources::event`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::key::{Exposed, Exposure, ReconcileKey, Target};

/// The `eventSource` of IAM events.
pub const IAM_EVENT_SOURCE: &str = "iam.amazonaws.com";

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

/// The name of the AWS managed policies AWS attaches to a user whose access key it found
/// exposed (`AWSCompromisedKeyQuarantine`, `...V2`, `...V3`, and later versions).
pub const QUARANTINE_POLICY_PREFIX: &str = "AWSCompromisedKeyQuarantine";

/// Whether `arn` is one of AWS's compromised-key quarantine policies:
/// `arn:<partition>:iam::aws:policy/AWSCompromisedKeyQuarantine`, optionally `V<n>`. A
/// customer-managed policy of the same name (account id instead of `aws`) is not.
pub fn is_quarantine_policy(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some("iam"), Some(""), Some("aws"), Some(res)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let Some(version) = res
        .strip_prefix("policy/")
        .and_then(|n| n.strip_prefix(QUARANTINE_POLICY_PREFIX))
    else {
        return false;
    };
    version.is_empty()
        || version
            .strip_prefix('V')
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
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
            // AWS quarantined a user's exposed key with its managed policy: the event names
            // the user only; `controller::quarantine` finds the key (or refuses to guess).
            if name == "AttachUserPolicy" {
                if let (Some(user), Some(arn)) = (req_user, ev.request_str("policyArn")) {
                    if is_quarantine_policy(arn) {
                        out.push(Target::Quarantine(Exposure {
                            exposed: Exposed::User {
                                user: user.to_owned(),
                                policy_arn: arn.to_owned(),
                            },
                            event_id: ev.event_id.clone(),
                            event_time: ev.event_time,
                        }));
                    }
                }
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

/// Test helpers shared by the mapping tests and the parser tests of the sources.
#[cfg(test)]
pub(crate) mod testkit {
    use super::*;
    use serde_json::json;

    pub(crate) fn names() -> BaselineNames {
        BaselineNames {
            group_names: vec!["warden-baseline".into(), "warden-console".into()],
            policy_names: vec!["warden-require-mfa".into(), "warden-source-ip".into()],
        }
    }

    pub(crate) fn user(n: &str) -> Target {
        Target::Reconcile(ReconcileKey::User(n.into()))
    }

    pub(crate) fn account() -> Target {
        Target::Reconcile(ReconcileKey::Account)
    }

    /// A minimal successful IAM write made by IAM user `alice`.
    pub(crate) fn record(event_name: &str, request: Value) -> Value {
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
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;
    use crate::metrics::{metric_event_name, KNOWN_EVENT_NAMES};
    // Test-only: events are built the way the sources build them.
    use crate::sources::event::parse_record;
    use serde_json::json;

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
    fn quarantine_policy_attach_maps_to_the_user_and_a_quarantine() {
        for version in ["", "V2", "V3", "V12"] {
            let arn = format!("arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantine{version}");
            let got = map(&record(
                "AttachUserPolicy",
                json!({"userName": "bob", "policyArn": arn}),
            ));
            let want = Target::Quarantine(Exposure {
                exposed: Exposed::User {
                    user: "bob".into(),
                    policy_arn: arn.clone(),
                },
                event_id: "id-AttachUserPolicy".into(),
                event_time: "2024-08-01T13:42:21Z".parse().unwrap(),
            });
            assert_eq!(got, vec![user("bob"), want], "{arn}");
        }
        // Look-alikes, other calls and failed calls are no quarantine.
        for arn in [
            "arn:aws:iam::123456789012:policy/AWSCompromisedKeyQuarantine",
            "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV",
            "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2x",
            "arn:aws:iam::aws:policy/XAWSCompromisedKeyQuarantine",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "AWSCompromisedKeyQuarantine",
        ] {
            assert!(!is_quarantine_policy(arn), "{arn}");
            let got = map(&record(
                "AttachUserPolicy",
                json!({"userName": "bob", "policyArn": arn}),
            ));
            assert_eq!(got, vec![user("bob")], "{arn}");
        }
        assert!(is_quarantine_policy(
            "arn:aws-cn:iam::aws:policy/AWSCompromisedKeyQuarantineV3"
        ));
        let arn = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2";
        let got = map(&record(
            "DetachUserPolicy",
            json!({"userName": "bob", "policyArn": arn}),
        ));
        assert_eq!(got, vec![user("bob")]);
        let mut failed = record(
            "AttachUserPolicy",
            json!({"userName": "bob", "policyArn": arn}),
        );
        failed["errorCode"] = json!("AccessDenied");
        assert_eq!(map(&failed), vec![]);
        assert_eq!(
            map(&record("AttachUserPolicy", json!({"policyArn": arn}))),
            vec![]
        );
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
}
