//! Label values: the closed sets every label is drawn from (event names, write actions,
//! AWS services and operations, outcomes, sources) and the functions that map anything
//! else to `other`.

use crate::aws::CallOutcome;

/// Every CloudTrail event name [`metric_event_name`] knows (the `event` label of
/// `iam_warden_events_total`); use it to pre-create metric label values.
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
    "rotate_access_key",
    "deactivate_rotated_key",
    "delete_rotated_key",
    "set_rotation_phase",
    "clear_rotation_tag",
    "reactivate_access_key",
];

/// The `event` label values of `iam_warden_rotation_events_total`: the rotation phases a
/// key enters, plus `deleted` (after recovery), `discarded` (a new key whose secret was
/// never stored, deleted on recovery) and `reactivated`.
pub const ROTATION_EVENTS: &[&str] = &[
    "warned",
    "rotating",
    "draining",
    "stuck",
    "deactivated",
    "deleted",
    "discarded",
    "reactivated",
];

/// The `service` label values of `iam_warden_aws_calls_total`.
pub const AWS_SERVICES: &[&str] = &[
    "iam",
    "sts",
    "cloudtrail",
    "sqs",
    "secretsmanager",
    "ssm",
    "sns",
];

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
    ("iam", "ListUserTags"),
    // rotation
    ("iam", "CreateAccessKey"),
    ("secretsmanager", "CreateSecret"),
    ("secretsmanager", "PutSecretValue"),
    ("secretsmanager", "GetSecretValue"),
    ("secretsmanager", "TagResource"),
    ("ssm", "PutParameter"),
    ("ssm", "GetParameter"),
    // identity
    ("sts", "GetCallerIdentity"),
    // sources
    ("cloudtrail", "LookupEvents"),
    ("sqs", "ReceiveMessage"),
    ("sqs", "DeleteMessage"),
    ("sqs", "DeleteMessageBatch"),
    ("sqs", "ChangeMessageVisibility"),
];
pub(super) const CALL_OUTCOMES: [CallOutcome; 3] =
    [CallOutcome::Ok, CallOutcome::Error, CallOutcome::Throttled];
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
/// The `service` label value: one of [`AWS_SERVICES`], else `other`.
pub(super) fn service_label(service: &str) -> &str {
    AWS_SERVICES
        .iter()
        .copied()
        .find(|s| *s == service)
        .unwrap_or("other")
}

/// The `operation` label value: an AWS operation name as is, else `other`.
pub(super) fn operation_label(operation: &str) -> &str {
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
