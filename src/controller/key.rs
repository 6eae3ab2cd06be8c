//! The controller's work item: what a reconcile works on ([`ReconcileKey`]) and the work an
//! event causes ([`Target`]). Event sources produce these through the controller's mapping
//! ([`super::mapping::targets`]).

use std::fmt;

use chrono::{DateTime, Utc};

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
    /// An exposed access key: quarantine it at once, outside the work queue, the write
    /// limiter and the blast-radius breaker (`controller::quarantine`).
    Quarantine(Exposure),
}

/// What names an exposed access key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Exposed {
    /// An AWS Health `AWS_RISK_CREDENTIALS_EXPOSED` event names the key and the account.
    Key {
        /// The exposed AccessKeyId.
        key_id: String,
        /// The account of the Health event (`account` of the EventBridge envelope).
        account: String,
    },
    /// AWS attached an `AWSCompromisedKeyQuarantine*` policy to this user: the event names
    /// the user, not the key.
    User {
        /// The user name.
        user: String,
        /// The quarantine policy's ARN.
        policy_arn: String,
    },
}

/// One report of an exposed key, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exposure {
    /// What is exposed.
    pub exposed: Exposed,
    /// The id of the event that reported it (EventBridge `id` or CloudTrail `eventID`).
    pub event_id: String,
    /// When the event happened.
    pub event_time: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
