//! Each check's scope, in the one table [`super::Check::ALL`] and
//! [`super::Check::ACCOUNT`] are derived from.

use serde::Serialize;

use super::Check;

/// What a check's findings are about: one user, or the account (its password policy,
/// root, policies, roles, certificates...: `account_check_failing{check}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckScope {
    User,
    Account,
}

/// Every check with its scope: the one table [`Check::ALL`] and [`Check::ACCOUNT`] are
/// derived from, so a new check cannot be in one list and forgotten in the other.
pub(super) const TABLE: [(Check, CheckScope); 25] = [
    (Check::ConsoleWithoutMfa, CheckScope::User),
    (Check::MfaPolicyMissing, CheckScope::User),
    (Check::SourceIpPolicyMissing, CheckScope::User),
    (Check::KeyTooOld, CheckScope::User),
    (Check::KeyUnused, CheckScope::User),
    (Check::ConsoleUnused, CheckScope::User),
    (Check::TwoActiveKeys, CheckScope::User),
    (Check::ConsoleOnProgrammaticUser, CheckScope::User),
    (Check::KeysOnConsoleUser, CheckScope::User),
    (Check::PasswordPolicyWeak, CheckScope::Account),
    (Check::QuotaReached, CheckScope::User),
    (Check::RotationStuck, CheckScope::User),
    (Check::UserPolicyAttached, CheckScope::User),
    (Check::KeyFromInitialSetup, CheckScope::User),
    (Check::RootAccessKey, CheckScope::Account),
    (Check::RootWithoutMfa, CheckScope::Account),
    (Check::RootVirtualMfa, CheckScope::Account),
    (Check::RootUsed, CheckScope::Account),
    (Check::PolicyFullAdmin, CheckScope::Account),
    (Check::NoSupportRole, CheckScope::Account),
    (Check::ServerCertificateExpired, CheckScope::Account),
    (Check::AccessAnalyzerDisabled, CheckScope::Account),
    (Check::NoIdentityFederation, CheckScope::Account),
    (Check::CloudShellFullAccess, CheckScope::Account),
    (Check::BaselineWouldDeny, CheckScope::User),
];

/// How many checks of `TABLE` have `scope`.
pub(super) const fn count(scope: CheckScope) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < TABLE.len() {
        if TABLE[i].1 as u8 == scope as u8 {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The checks of `TABLE` with `scope`, in table order (`N` = `count(scope)`).
pub(super) const fn of_scope<const N: usize>(scope: CheckScope) -> [Check; N] {
    let mut out = [Check::ConsoleWithoutMfa; N];
    let (mut i, mut j) = (0, 0);
    while i < TABLE.len() {
        if TABLE[i].1 as u8 == scope as u8 {
            out[j] = TABLE[i].0;
            j += 1;
        }
        i += 1;
    }
    out
}
