//! Label values: the closed sets every label is drawn from (event names, write actions,
//! AWS services and operations, outcomes, sources) and the functions that map anything
//! else to `other`.

use serde::Serialize;

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
    "quarantine_access_key",
    "require_password_reset",
    "rotate_access_key",
    "deactivate_rotated_key",
    "delete_rotated_key",
    "set_rotation_phase",
    "clear_rotation_tag",
    "reactivate_access_key",
    "delete_server_certificate",
    "detach_user_policy",
    "detach_group_policy",
    "detach_role_policy",
    "move_user_policy_to_group",
];

/// The `event` label values of `iam_warden_rotation_events_total`: the rotation phases a
/// key enters, plus `deleted` (after recovery), `discarded` (a new key whose secret was
/// never stored, deleted on recovery), `reactivated` and `replaced` (a quarantined key got
/// its new key).
pub const ROTATION_EVENTS: &[&str] = &[
    "warned",
    "rotating",
    "draining",
    "stuck",
    "deactivated",
    "deleted",
    "discarded",
    "reactivated",
    "replaced",
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
    "securityhub",
    "organizations",
    "accessanalyzer",
];

/// AWS operations whose `iam_warden_aws_calls_total` series are pre-created at zero
/// (service, operation). Other operations the code calls are still counted.
pub const AWS_OPERATIONS: &[(&str, &str)] = &[
    // observe: whole account
    ("iam", "GetAccountAuthorizationDetails"),
    ("iam", "GenerateCredentialReport"),
    ("iam", "GetCredentialReport"),
    ("iam", "GetAccountPasswordPolicy"),
    // observe: the CIS section 1 account checks
    ("iam", "ListVirtualMFADevices"),
    ("iam", "ListServerCertificates"),
    ("iam", "ListSAMLProviders"),
    ("iam", "ListOpenIDConnectProviders"),
    ("accessanalyzer", "ListAnalyzers"),
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
    ("iam", "SetDefaultPolicyVersion"),
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
    ("iam", "UpdateLoginProfile"),
    ("iam", "DeleteServerCertificate"),
    ("iam", "DetachUserPolicy"),
    ("iam", "DetachGroupPolicy"),
    ("iam", "DetachRolePolicy"),
    ("iam", "ListAttachedGroupPolicies"),
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
    // several accounts: discovery and the role assumed in each
    ("organizations", "ListAccounts"),
    ("organizations", "ListParents"),
    ("sts", "AssumeRole"),
    // sources
    ("cloudtrail", "LookupEvents"),
    ("sqs", "ReceiveMessage"),
    ("sqs", "DeleteMessage"),
    ("sqs", "DeleteMessageBatch"),
    ("sqs", "ChangeMessageVisibility"),
    ("sqs", "GetQueueAttributes"),
    // owner notifications
    ("sns", "Publish"),
    // findings exported to Security Hub
    ("securityhub", "GetFindings"),
    ("securityhub", "BatchImportFindings"),
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

/// What became of one IAM write (or would-be write): its `outcome` label in
/// `iam_warden_writes_total`, and, serialized, the `outcome` and `detail` of an action's
/// result (`apply::Outcome` is this type). Skipped and failed writes say why, in one line
/// that is never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum WriteOutcome {
    Applied,
    Failed(String),
    /// Dry-run mode: journaled, not executed.
    DryRun,
    /// Not done, on purpose (breaker tripped, entity gone, key used recently, quota,
    /// already in the desired state, ...).
    Skipped(String),
}

impl WriteOutcome {
    /// One of each label value (the details are empty).
    pub const ALL: [WriteOutcome; 4] = [
        WriteOutcome::Applied,
        WriteOutcome::Failed(String::new()),
        WriteOutcome::DryRun,
        WriteOutcome::Skipped(String::new()),
    ];

    /// The label value, also the journal's `outcome`.
    pub fn as_str(&self) -> &'static str {
        match self {
            WriteOutcome::Applied => "applied",
            WriteOutcome::Failed(_) => "failed",
            WriteOutcome::DryRun => "dry_run",
            WriteOutcome::Skipped(_) => "skipped",
        }
    }

    /// Why a write was skipped or failed.
    pub fn detail(&self) -> Option<&str> {
        match self {
            WriteOutcome::Skipped(s) | WriteOutcome::Failed(s) => Some(s),
            WriteOutcome::Applied | WriteOutcome::DryRun => None,
        }
    }
}

/// What became of one report of an exposed access key
/// (`iam_warden_quarantines_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuarantineOutcome {
    /// The key is inactive now (deactivated, or found inactive) and tagged quarantined.
    Deactivated,
    /// The key's user is exempt (or is iam-warden's own identity): finding only.
    Exempt,
    /// No such key (or user) in IAM: nothing changed.
    UnknownKey,
    /// The key belongs to another account: nothing changed.
    OtherAccount,
    /// The event names a user with several active keys: which one is exposed is unknown,
    /// nothing changed (the Health event names the key).
    Ambiguous,
    /// The event names a user without an active key: nothing to deactivate.
    NoActiveKey,
    /// Reading or writing IAM failed; the event is retried (SQS redelivers it).
    Failed,
    /// Dry-run: the would-be deactivation is journaled only.
    DryRun,
}

impl QuarantineOutcome {
    pub const ALL: [QuarantineOutcome; 8] = [
        QuarantineOutcome::Deactivated,
        QuarantineOutcome::Exempt,
        QuarantineOutcome::UnknownKey,
        QuarantineOutcome::OtherAccount,
        QuarantineOutcome::Ambiguous,
        QuarantineOutcome::NoActiveKey,
        QuarantineOutcome::Failed,
        QuarantineOutcome::DryRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineOutcome::Deactivated => "deactivated",
            QuarantineOutcome::Exempt => "exempt",
            QuarantineOutcome::UnknownKey => "unknown_key",
            QuarantineOutcome::OtherAccount => "other_account",
            QuarantineOutcome::Ambiguous => "ambiguous",
            QuarantineOutcome::NoActiveKey => "no_active_key",
            QuarantineOutcome::Failed => "failed",
            QuarantineOutcome::DryRun => "dry_run",
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
/// Every owner-notification event (the `event` label of `iam_warden_notices_total`; the
/// names of `notify::NoticeEvent`, checked by a unit test there).
pub const NOTICE_EVENTS: &[&str] = &[
    "key-expiring",
    "key-rotated",
    "key-deactivated",
    "key-deleted",
    "key-reactivated",
    "rotation-stuck",
    "key-exposed",
    "password-reset-required",
];

/// A channel delivering owner notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotifyChannel {
    Webhook,
    Sns,
}

impl NotifyChannel {
    pub const ALL: [NotifyChannel; 2] = [NotifyChannel::Webhook, NotifyChannel::Sns];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyChannel::Webhook => "webhook",
            NotifyChannel::Sns => "sns",
        }
    }
}

/// What became of one notification on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotifyOutcome {
    /// Accepted by the receiver (2xx) or by SNS.
    Sent,
    /// Every attempt failed, or the failure cannot be helped by retrying.
    Failed,
    /// Never attempted to the end: the queue was full, or shutdown's deadline passed.
    Dropped,
}

impl NotifyOutcome {
    pub const ALL: [NotifyOutcome; 3] = [
        NotifyOutcome::Sent,
        NotifyOutcome::Failed,
        NotifyOutcome::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOutcome::Sent => "sent",
            NotifyOutcome::Failed => "failed",
            NotifyOutcome::Dropped => "dropped",
        }
    }
}

/// What became of one Security Hub export (`iam_warden_securityhub_exports_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportOutcome {
    /// Every finding was accepted.
    Exported,
    /// The export failed, or Security Hub refused some of its findings.
    Failed,
    /// Never sent: replaced by a newer export while pending, the queue was full, or
    /// shutdown came first.
    Dropped,
}

impl ExportOutcome {
    pub const ALL: [ExportOutcome; 3] = [
        ExportOutcome::Exported,
        ExportOutcome::Failed,
        ExportOutcome::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExportOutcome::Exported => "exported",
            ExportOutcome::Failed => "failed",
            ExportOutcome::Dropped => "dropped",
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

/// Why the SQS source skipped (and deleted) a message without acting on it: the account it
/// is about (the EventBridge envelope's `account`) is not one iam-warden covers, or cannot
/// be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqsSkipReason {
    /// A well-formed account id that is not in scope (`[accounts]`).
    NotInScope,
    /// An account in scope whose controller is not running (its role cannot be assumed
    /// yet): its first resync once it is up reconciles every user.
    AccountDown,
    /// No `account` field (or null).
    Missing,
    /// `account` is a JSON number, boolean, array or object.
    NotAString,
    /// `account` is a string, but not 12 digits.
    BadShape,
}

impl SqsSkipReason {
    pub const ALL: [SqsSkipReason; 5] = [
        SqsSkipReason::NotInScope,
        SqsSkipReason::AccountDown,
        SqsSkipReason::Missing,
        SqsSkipReason::NotAString,
        SqsSkipReason::BadShape,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SqsSkipReason::NotInScope => "not_in_scope",
            SqsSkipReason::AccountDown => "account_down",
            SqsSkipReason::Missing => "missing",
            SqsSkipReason::NotAString => "not_a_string",
            SqsSkipReason::BadShape => "bad_shape",
        }
    }
}
