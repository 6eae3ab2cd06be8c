//! The credential lifecycle's settings: `[rotation]` (per-key access-key rotation and the
//! delivery of new keys) and `[notifications]` (owner notifications).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Secs, OWNER_TAG};

/// The default of `rotation.store_retry`.
pub const STORE_RETRY: Secs = Secs::from_secs(86_400);

/// Where a rotated access key's secret is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// One Secrets Manager secret per user, a new version per rotation (default).
    SecretsManager,
    /// One SSM Parameter Store `SecureString` per user.
    Ssm,
    /// Users rotate their own keys: warn, then deactivate the old key once another key is
    /// in use; iam-warden never creates keys.
    None,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::SecretsManager => "secretsmanager",
            Delivery::Ssm => "ssm",
            Delivery::None => "none",
        }
    }
}

/// `[rotation]`: the per-key access-key lifecycle. Key age limit:
/// `baseline.credentials.max_key_age_days` (the same limit the `key-too-old` check uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Rotate keys (acts only in mode `enforce`, like every write).
    pub enabled: bool,
    /// Warn the owner this many days before a key reaches the age limit.
    pub warn_days: u32,
    /// The old key is deactivated once the new key has been used and the old key has not
    /// been used for this long.
    pub drain_quiet: Secs,
    /// Days after the rotation (or, with `delivery = "none"`, after the age limit) after
    /// which a key still in use is `rotation-stuck`.
    pub grace_days: u32,
    /// Deactivate a stuck key anyway once `grace_days` have passed (off: only report).
    pub force_after_grace: bool,
    /// A key deactivated by rotation is deleted this many days later; until then
    /// `iam-warden reactivate USER ACCESS_KEY_ID` puts it back.
    pub recovery_days: u32,
    /// `secretsmanager` (default), `ssm` or `none`.
    pub delivery: Delivery,
    /// Secret or parameter name; `{user}` is replaced by the user name.
    pub name_template: String,
    /// KMS key for the secret or parameter (id, ARN or alias); empty: the AWS-managed key.
    pub kms_key_id: Option<String>,
    /// A rotation (or the replacement of a quarantined key) whose new key could not be
    /// stored is retried this long after the failure, not at every pass: a missing KMS key
    /// or a denied store fails the same way until a person fixes it, and each attempt
    /// creates and deletes a key.
    pub store_retry: Secs,
    /// Exposed keys of exempt users are deactivated too (off: finding and notification only).
    pub quarantine_exempt_users: bool,
}

/// `[notifications]`: owner notifications of rotation phases, stuck rotations and exposed
/// keys. Every notification is journaled and counted; the channels below are optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    /// User tag naming the owner (an address); missing: `default_owner`.
    pub owner_tag: String,
    pub default_owner: Option<String>,
    /// HTTPS (or, for tests, HTTP) endpoint receiving a JSON POST per notification.
    pub webhook_url: Option<String>,
    /// File holding the HMAC-SHA256 key that signs webhook bodies
    /// (`X-Iam-Warden-Signature`); required with `webhook_url`. The key itself never
    /// appears in the configuration, a log or `check-config`.
    pub webhook_secret_file: Option<PathBuf>,
    /// SNS topic ARN; each notification is published with message attributes `user` and
    /// `event`.
    pub sns_topic_arn: Option<String>,
    /// Time limit of one delivery attempt.
    pub timeout: Secs,
    /// Attempts per notification and channel (with backoff), then it is dropped and counted.
    pub max_attempts: u32,
    /// Notifications waiting for delivery; beyond this they are dropped and counted (the
    /// reconcile never waits for a channel).
    pub queue_capacity: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            enabled: true,
            warn_days: 14,
            drain_quiet: Secs::from_secs(86_400),
            grace_days: 14,
            force_after_grace: false,
            recovery_days: 7,
            delivery: Delivery::SecretsManager,
            name_template: "iam-warden/{user}/access-key".into(),
            kms_key_id: None,
            store_retry: STORE_RETRY,
            quarantine_exempt_users: false,
        }
    }
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            owner_tag: OWNER_TAG.into(),
            default_owner: None,
            webhook_url: None,
            webhook_secret_file: None,
            sns_topic_arn: None,
            timeout: Secs::from_secs(5),
            max_attempts: 5,
            queue_capacity: 1000,
        }
    }
}
