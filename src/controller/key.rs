//! The controller's work item: what a reconcile works on ([`ReconcileKey`]) and the work an
//! event causes ([`Target`]). Event sources produce these through the controller's mapping
//! ([`super::mapping::targets`]).

use std::fmt;

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
