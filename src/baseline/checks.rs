//! The baseline checks: (user state, baseline, now) → findings. Pure, no I/O.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{AccessClass, Config, Untagged};
use crate::inventory::{arn_name, AccountSnapshot, PasswordPolicyState, UserState};

/// Stable check ids (they appear in JSON output, metrics and alerts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    ConsoleWithoutMfa,
    MfaPolicyMissing,
    SourceIpPolicyMissing,
    KeyTooOld,
    KeyUnused,
    ConsoleUnused,
    TwoActiveKeys,
    ConsoleOnProgrammaticUser,
    KeysOnConsoleUser,
    PasswordPolicyWeak,
    /// Not a baseline (CIS) check: the user is at an IAM quota and a baseline group or
    /// policy cannot be added (reported by enforce).
    QuotaReached,
    /// A key's rotation cannot go on by itself (still used after grace, no room for a new
    /// key, an unusable secret name, a malformed rotation tag): a person must act.
    RotationStuck,
    /// CIS 1.14: managed or inline policies attached to the user itself, not through a group.
    UserPolicyAttached,
    /// CIS 1.10: a console user with an active access key never used (made at set-up).
    KeyFromInitialSetup,
    /// CIS 1.3: the root user has an active access key.
    RootAccessKey,
    /// CIS 1.4: the root user has no MFA.
    RootWithoutMfa,
    /// CIS 1.5: the root user's MFA is a virtual device (or there is none).
    RootVirtualMfa,
    /// CIS 1.6: the root user signed in or used a key recently.
    RootUsed,
    /// CIS 1.15: a managed policy allows `*` on `*`.
    PolicyFullAdmin,
    /// CIS 1.16: no role has AWSSupportAccess.
    NoSupportRole,
    /// CIS 1.18: an expired server certificate is stored in IAM.
    ServerCertificateExpired,
    /// CIS 1.19: a configured region has no ACTIVE IAM Access Analyzer.
    AccessAnalyzerDisabled,
    /// CIS 1.20 (informational): users sign in to the console and there is no SAML or
    /// OIDC identity provider.
    NoIdentityFederation,
    /// CIS 1.21: AWSCloudShellFullAccess attached to a user, group or role.
    #[serde(rename = "cloudshell-full-access")]
    CloudShellFullAccess,
    /// Not a CIS check: the pre-flight gate (`safety.preview_window`) held putting the
    /// user under the MFA or source-IP policy, because calls of the user in the window
    /// would have been denied.
    BaselineWouldDeny,
}

mod scope;
pub use scope::CheckScope;
use scope::{count, of_scope, TABLE};

impl Check {
    /// Every check, in table order.
    pub const ALL: [Check; TABLE.len()] = {
        let mut out = [Check::ConsoleWithoutMfa; TABLE.len()];
        let mut i = 0;
        while i < TABLE.len() {
            out[i] = TABLE[i].0;
            i += 1;
        }
        out
    };

    /// The checks whose findings are about the account, not a user
    /// (`account_check_failing{check}`).
    pub const ACCOUNT: [Check; count(CheckScope::Account)] = of_scope(CheckScope::Account);

    /// The check's scope, from the table.
    pub fn scope(self) -> CheckScope {
        TABLE
            .iter()
            .find(|(c, _)| *c == self)
            .map_or(CheckScope::User, |(_, s)| *s)
    }

    pub fn is_account_level(self) -> bool {
        self.scope() == CheckScope::Account
    }

    pub fn id(self) -> &'static str {
        match self {
            Check::ConsoleWithoutMfa => "console-without-mfa",
            Check::MfaPolicyMissing => "mfa-policy-missing",
            Check::SourceIpPolicyMissing => "source-ip-policy-missing",
            Check::KeyTooOld => "key-too-old",
            Check::KeyUnused => "key-unused",
            Check::ConsoleUnused => "console-unused",
            Check::TwoActiveKeys => "two-active-keys",
            Check::ConsoleOnProgrammaticUser => "console-on-programmatic-user",
            Check::KeysOnConsoleUser => "keys-on-console-user",
            Check::PasswordPolicyWeak => "password-policy-weak",
            Check::QuotaReached => "quota-reached",
            Check::RotationStuck => "rotation-stuck",
            Check::UserPolicyAttached => "user-policy-attached",
            Check::KeyFromInitialSetup => "key-from-initial-setup",
            Check::RootAccessKey => "root-access-key",
            Check::RootWithoutMfa => "root-without-mfa",
            Check::RootVirtualMfa => "root-virtual-mfa",
            Check::RootUsed => "root-used",
            Check::PolicyFullAdmin => "policy-full-admin",
            Check::NoSupportRole => "no-support-role",
            Check::ServerCertificateExpired => "server-certificate-expired",
            Check::AccessAnalyzerDisabled => "access-analyzer-disabled",
            Check::NoIdentityFederation => "no-identity-federation",
            Check::CloudShellFullAccess => "cloudshell-full-access",
            Check::BaselineWouldDeny => "baseline-would-deny",
        }
    }

    /// The CIS AWS Foundations Benchmark v5.0.0 section 1 controls this check evidences
    /// (empty for the article's baseline checks that CIS does not name). The one table
    /// every output (audit JSON, `--benchmark cis-5.0`, Security Hub, OCSF) reads.
    pub fn cis_controls(self) -> &'static [&'static str] {
        match self {
            Check::ConsoleWithoutMfa => &["1.9"],
            Check::KeyTooOld => &["1.13"],
            Check::KeyUnused | Check::ConsoleUnused => &["1.11"],
            Check::TwoActiveKeys => &["1.12"],
            Check::PasswordPolicyWeak => &["1.7", "1.8"],
            Check::KeyFromInitialSetup => &["1.10"],
            Check::UserPolicyAttached => &["1.14"],
            Check::RootAccessKey => &["1.3"],
            Check::RootWithoutMfa => &["1.4"],
            Check::RootVirtualMfa => &["1.5"],
            Check::RootUsed => &["1.6"],
            Check::PolicyFullAdmin => &["1.15"],
            Check::NoSupportRole => &["1.16"],
            Check::ServerCertificateExpired => &["1.18"],
            Check::AccessAnalyzerDisabled => &["1.19"],
            Check::NoIdentityFederation => &["1.20"],
            Check::CloudShellFullAccess => &["1.21"],
            Check::MfaPolicyMissing
            | Check::SourceIpPolicyMissing
            | Check::ConsoleOnProgrammaticUser
            | Check::KeysOnConsoleUser
            | Check::QuotaReached
            | Check::RotationStuck
            | Check::BaselineWouldDeny => &[],
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Check::ConsoleWithoutMfa
            | Check::RootAccessKey
            | Check::RootWithoutMfa
            | Check::PolicyFullAdmin => Severity::Critical,
            Check::MfaPolicyMissing
            | Check::KeyTooOld
            | Check::ConsoleOnProgrammaticUser
            | Check::RootVirtualMfa
            | Check::RootUsed
            | Check::BaselineWouldDeny => Severity::High,
            Check::UserPolicyAttached
            | Check::KeyFromInitialSetup
            | Check::ServerCertificateExpired
            | Check::CloudShellFullAccess
            | Check::AccessAnalyzerDisabled => Severity::Medium,
            Check::NoSupportRole | Check::NoIdentityFederation => Severity::Low,
            Check::SourceIpPolicyMissing
            | Check::KeyUnused
            | Check::ConsoleUnused
            | Check::PasswordPolicyWeak
            | Check::KeysOnConsoleUser
            | Check::QuotaReached
            | Check::RotationStuck => Severity::Medium,
            Check::TwoActiveKeys => Severity::Low,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: Check,
    pub severity: Severity,
    /// A sentence with the numbers (key id, age, limit).
    pub reason: String,
    /// The access key concerned, when the check is about one key and its id is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The resource an account-level finding is about, as an ARN (a policy, role, server
    /// certificate, or `arn:aws:iam::ACCOUNT:root`), when it is not the user or key itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The CIS AWS Foundations v5.0 controls of the check ([`Check::cis_controls`]).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub cis_controls: &'static [&'static str],
    /// The check could not be made (input missing or unreadable, an API failing): the
    /// reason says why. Counted as a finding, never as a pass.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cannot_check: bool,
}

impl Finding {
    pub fn new(check: Check, reason: impl Into<String>) -> Self {
        Finding {
            check,
            severity: check.severity(),
            reason: reason.into(),
            key_id: None,
            resource: None,
            cis_controls: check.cis_controls(),
            cannot_check: false,
        }
    }

    /// A finding saying the check could not be made, and why (`reason` starts "cannot
    /// check: ").
    pub fn cannot_check(check: Check, why: impl std::fmt::Display) -> Self {
        Finding {
            cannot_check: true,
            ..Finding::new(check, format!("cannot check: {why}"))
        }
    }

    /// The same finding, about `arn`.
    pub fn with_resource(mut self, arn: impl Into<String>) -> Self {
        self.resource = Some(arn.into());
        self
    }
}

/// How a user's access class was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassSource {
    Tag,
    Derived,
    Default,
}

impl ClassSource {
    pub fn describe(self) -> &'static str {
        match self {
            ClassSource::Tag => "by tag",
            ClassSource::Derived => "derived from its credentials",
            ClassSource::Default => "by default",
        }
    }
}

/// The verdict on one user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserVerdict {
    pub user: String,
    pub class: AccessClass,
    pub class_source: ClassSource,
    /// `Some(reason)`: the user is exempt and was not judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exempt: Option<String>,
    pub findings: Vec<Finding>,
    /// Remarks that are not violations (e.g. an unrecognised access tag value).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Whole days between two instants (floored; a future time counts as 0).
pub fn days_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_days().max(0)
}

/// Whether `user` is iam-warden's own identity (`caller_arn`).
pub fn is_own_identity(user: &UserState, caller_arn: &str) -> bool {
    !caller_arn.is_empty() && (user.arn == caller_arn || is_same_user(caller_arn, &user.name))
}

/// Why a user is exempt, if it is. `caller_arn` is iam-warden's own identity.
pub fn exemption(user: &UserState, cfg: &Config, caller_arn: &str) -> Option<String> {
    let ex = &cfg.exemptions;
    if is_own_identity(user, caller_arn) {
        return Some("iam-warden's own identity".into());
    }
    if ex.users.iter().any(|u| u == &user.name) {
        return Some("listed in exemptions.users".into());
    }
    if let Some(v) = user.tags.get(&ex.tag) {
        if v.trim().eq_ignore_ascii_case("true") {
            return Some(format!("tag {}=true", ex.tag));
        }
    }
    if let Some(p) = ex
        .path_prefixes
        .iter()
        .find(|p| user.path.starts_with(p.as_str()))
    {
        return Some(format!("path {} is under exempt prefix {p}", user.path));
    }
    if let Some(g) = user.groups.iter().find(|g| ex.groups.contains(g)) {
        return Some(format!("member of exempt group {g}"));
    }
    None
}

/// `arn:aws:iam::1:user/path/NAME` names the IAM user NAME.
fn is_same_user(caller_arn: &str, name: &str) -> bool {
    caller_arn
        .split_once(":user/")
        .is_some_and(|(_, rest)| arn_name(rest) == name)
}

/// The user's access class: from the tag, else the configured default or derivation.
pub fn classify(user: &UserState, cfg: &Config) -> (AccessClass, ClassSource, Option<String>) {
    let c = &cfg.baseline.classification;
    let mut note = None;
    if let Some(v) = user.tags.get(&c.tag) {
        match v.parse::<AccessClass>() {
            Ok(class) => return (class, ClassSource::Tag, None),
            Err(_) => {
                note = Some(format!(
                    "tag {}={v:?} is not console, programmatic or both; treated as untagged",
                    c.tag
                ))
            }
        }
    }
    // No credentials at all: nothing to sign in with, so no console to protect yet;
    // when a password appears the user becomes console (and an event re-evaluates it).
    let derived = || match (user.password.is_some(), !user.keys.is_empty()) {
        (true, false) => AccessClass::Console,
        (false, _) => AccessClass::Programmatic,
        (true, true) => AccessClass::Both,
    };
    let (class, src) = match c.untagged {
        Untagged::Derive => (derived(), ClassSource::Derived),
        Untagged::Console => (AccessClass::Console, ClassSource::Default),
        Untagged::Programmatic => (AccessClass::Programmatic, ClassSource::Default),
        Untagged::Both => (AccessClass::Both, ClassSource::Default),
    };
    (class, src, note)
}

/// Is the managed policy `policy_name` attached to the user, directly or through a group?
pub fn has_policy(user: &UserState, snap: &AccountSnapshot, policy_name: &str) -> bool {
    user.attached_policies
        .iter()
        .any(|a| arn_name(a) == policy_name)
        || user.groups.iter().any(|g| {
            snap.groups.get(g).is_some_and(|g| {
                g.attached_policies
                    .iter()
                    .any(|a| arn_name(a) == policy_name)
            })
        })
}

/// Judge one user. `snap` provides groups (for policies attached through groups) and the
/// caller identity.
pub fn evaluate_user(
    user: &UserState,
    snap: &AccountSnapshot,
    cfg: &Config,
    now: DateTime<Utc>,
) -> UserVerdict {
    let (class, class_source, note) = classify(user, cfg);
    let mut v = UserVerdict {
        user: user.name.clone(),
        class,
        class_source,
        exempt: exemption(user, cfg, &snap.caller_arn),
        findings: Vec::new(),
        notes: note.into_iter().collect(),
    };
    if v.exempt.is_some() {
        return v;
    }
    let b = &cfg.baseline;
    let cred = &b.credentials;
    let f = &mut v.findings;

    if let Some(pw) = &user.password {
        if !user.mfa_active {
            f.push(Finding::new(
                Check::ConsoleWithoutMfa,
                "has a console password and no MFA device",
            ));
        }
        let (since, what) = match (pw.last_used, pw.changed) {
            (Some(t), _) => (t, "last used"),
            (None, Some(t)) => (t, "never used; set"),
            (None, None) => (user.created, "never used; user created"),
        };
        let days = days_between(since, now);
        if days > i64::from(cred.unused_days) {
            f.push(Finding::new(
                Check::ConsoleUnused,
                format!(
                    "console password {what} {days} days ago ({}); limit {} days",
                    since.format("%Y-%m-%d"),
                    cred.unused_days
                ),
            ));
        }
        if class == AccessClass::Programmatic {
            f.push(Finding::new(
                Check::ConsoleOnProgrammaticUser,
                format!(
                    "classified programmatic ({}) but has a console password",
                    class_source.describe()
                ),
            ));
        }
    }

    for k in user.active_keys() {
        let age = days_between(k.created, now);
        if age > i64::from(cred.max_key_age_days) {
            // A key without an id (report-only) is labelled with its creation date already.
            let created = match k.id {
                Some(_) => format!(" (created {})", k.created.format("%Y-%m-%d")),
                None => String::new(),
            };
            let mut fi = Finding::new(
                Check::KeyTooOld,
                format!(
                    "{} is {age} days old{created}; limit {} days",
                    k.label(),
                    cred.max_key_age_days
                ),
            );
            fi.key_id = k.id.clone();
            f.push(fi);
        }
        let (since, what) = match k.last_used {
            Some(t) => (t, "last used"),
            None => (k.created, "never used; created"),
        };
        let idle = days_between(since, now);
        if idle > i64::from(cred.unused_days) {
            let mut fi = Finding::new(
                Check::KeyUnused,
                format!(
                    "{} {what} {idle} days ago ({}); limit {} days",
                    k.label(),
                    since.format("%Y-%m-%d"),
                    cred.unused_days
                ),
            );
            fi.key_id = k.id.clone();
            f.push(fi);
        }
    }
    let active: Vec<String> = user.active_keys().map(|k| k.label()).collect();
    let rotating = cfg
        .rotation
        .enabled
        .then(|| crate::baseline::plan::rotation::rotating_pair(user))
        .flatten();
    if let Some((old, new)) = rotating.filter(|_| active.len() == 2) {
        v.notes.push(format!(
            "rotating: {old} drains to {new} (two active keys while the consumer switches)"
        ));
    } else if active.len() >= 2 {
        f.push(Finding::new(
            Check::TwoActiveKeys,
            format!("{} active access keys: {}", active.len(), active.join(", ")),
        ));
    }
    if class == AccessClass::Console && !active.is_empty() {
        f.push(Finding::new(
            Check::KeysOnConsoleUser,
            format!(
                "classified console ({}) but has {} active access key(s): {}",
                class_source.describe(),
                active.len(),
                active.join(", ")
            ),
        ));
    }
    super::cis::initial_setup_keys(user, f);
    super::cis::direct_policies(user, snap, cfg, f, &mut v.notes);
    let mfa = &b.mfa_policy;
    if mfa.enabled && mfa.applies_to.covers(class) && !has_policy(user, snap, &mfa.name) {
        f.push(Finding::new(
            Check::MfaPolicyMissing,
            format!(
                "policy {} is not attached (directly or through a group)",
                mfa.name
            ),
        ));
    }
    let sip = &b.source_ip_policy;
    if sip.enabled && sip.applies_to.covers(class) && !has_policy(user, snap, &sip.name) {
        f.push(Finding::new(
            Check::SourceIpPolicyMissing,
            format!(
                "policy {} is not attached (directly or through a group)",
                sip.name
            ),
        ));
    }
    v
}

/// Fields in which the account's password policy is weaker than the configured one.
/// `None` means the account has no policy at all.
pub fn password_policy_gaps(have: Option<&PasswordPolicyState>, cfg: &Config) -> Vec<String> {
    let want = &cfg.baseline.password_policy;
    if !want.enabled {
        return Vec::new();
    }
    let Some(have) = have else {
        return vec!["the account has no password policy".into()];
    };
    let mut gaps = Vec::new();
    if have.minimum_length < want.minimum_length {
        gaps.push(format!(
            "minimum length {} < {}",
            have.minimum_length, want.minimum_length
        ));
    }
    for (name, h, w) in [
        ("uppercase", have.require_uppercase, want.require_uppercase),
        ("lowercase", have.require_lowercase, want.require_lowercase),
        ("numbers", have.require_numbers, want.require_numbers),
        ("symbols", have.require_symbols, want.require_symbols),
    ] {
        if w && !h {
            gaps.push(format!("{name} not required"));
        }
    }
    if have.reuse_prevention < want.reuse_prevention {
        gaps.push(format!(
            "reuse prevention {} < {}",
            have.reuse_prevention, want.reuse_prevention
        ));
    }
    if want.max_age_days > 0 && (have.max_age_days == 0 || have.max_age_days > want.max_age_days) {
        let h = if have.max_age_days == 0 {
            "never".to_string()
        } else {
            format!("{} days", have.max_age_days)
        };
        gaps.push(format!(
            "passwords expire after {h}, want at most {} days",
            want.max_age_days
        ));
    }
    if want.hard_expiry && !have.hard_expiry {
        gaps.push("hard expiry off".into());
    }
    gaps
}

/// Account-level findings: the password policy, and the CIS section 1 account checks
/// when the snapshot has their facts ([`crate::inventory::CisFacts`]).
pub fn evaluate_account(snap: &AccountSnapshot, cfg: &Config, now: DateTime<Utc>) -> Vec<Finding> {
    let gaps = password_policy_gaps(snap.password_policy.as_ref(), cfg);
    let mut out = Vec::new();
    if !gaps.is_empty() {
        out.push(Finding::new(Check::PasswordPolicyWeak, gaps.join("; ")));
    }
    if let Some(facts) = &snap.cis {
        out.extend(super::cis::evaluate(snap, facts, cfg, now));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::testkit::*;
    use crate::inventory::PasswordPolicyState;

    fn ids(v: &UserVerdict) -> Vec<&'static str> {
        let mut ids: Vec<_> = v.findings.iter().map(|f| f.check.id()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn account_checks_are_derived_from_the_one_table() {
        let ids: std::collections::BTreeSet<&str> = Check::ALL.iter().map(|c| c.id()).collect();
        assert_eq!(ids.len(), Check::ALL.len(), "duplicate ids");
        let derived: Vec<Check> = Check::ALL
            .iter()
            .copied()
            .filter(|c| c.is_account_level())
            .collect();
        assert_eq!(derived, Check::ACCOUNT.to_vec());
        // (check, account-level): the table's scopes.
        let table = [
            (Check::PasswordPolicyWeak, true),
            (Check::RootAccessKey, true),
            (Check::RootUsed, true),
            (Check::PolicyFullAdmin, true),
            (Check::ServerCertificateExpired, true),
            (Check::AccessAnalyzerDisabled, true),
            (Check::NoIdentityFederation, true),
            (Check::CloudShellFullAccess, true),
            (Check::ConsoleWithoutMfa, false),
            (Check::KeyTooOld, false),
            (Check::UserPolicyAttached, false),
            (Check::KeyFromInitialSetup, false),
            (Check::QuotaReached, false),
            (Check::BaselineWouldDeny, false),
        ];
        for (c, account) in table {
            assert_eq!(c.is_account_level(), account, "{c}");
            assert_eq!(Check::ACCOUNT.contains(&c), account, "{c}");
            assert_eq!(
                c.scope(),
                if account {
                    CheckScope::Account
                } else {
                    CheckScope::User
                }
            );
        }
        assert_eq!(Check::ACCOUNT.len(), 11);
        assert_eq!(Check::ALL.len(), 25);
    }

    #[test]
    fn key_age_boundaries_89_90_91() {
        let cfg = cfg();
        let snap = snap_with_baseline_groups();
        for (age, expect_old) in [(89, false), (90, false), (91, true)] {
            let u = user("k")
                .keys(&[key("AKIAK1", age, Some(1))])
                .in_baseline()
                .build();
            let v = evaluate_user(&u, &snap, &cfg, now());
            assert_eq!(
                ids(&v).contains(&"key-too-old"),
                expect_old,
                "age {age}: {:?}",
                v.findings
            );
            if expect_old {
                let f = v
                    .findings
                    .iter()
                    .find(|f| f.check == Check::KeyTooOld)
                    .unwrap();
                assert_eq!(f.key_id.as_deref(), Some("AKIAK1"));
                assert!(
                    f.reason.contains("AKIAK1 is 91 days old") && f.reason.contains("limit 90"),
                    "{}",
                    f.reason
                );
            }
        }
    }

    #[test]
    fn key_unused_boundaries_and_never_used() {
        let cfg = cfg();
        let snap = snap_with_baseline_groups();
        let table = [
            // (key age, days since last use (None = never), expect key-unused)
            (60, Some(44), false),
            (60, Some(45), false),
            (60, Some(46), true),
            (45, None, false),
            (46, None, true),
            (10, None, false),
        ];
        for (age, used, expect) in table {
            let u = user("k")
                .keys(&[key("AKIAK2", age, used)])
                .in_baseline()
                .build();
            let v = evaluate_user(&u, &snap, &cfg, now());
            assert_eq!(
                ids(&v).contains(&"key-unused"),
                expect,
                "age {age} used {used:?}: {:?}",
                v.findings
            );
        }
        // Inactive keys are neither too old nor unused.
        let u = user("k")
            .keys(&[inactive(key("AKIAK3", 400, None))])
            .in_baseline()
            .build();
        assert!(evaluate_user(&u, &snap, &cfg, now()).findings.is_empty());
    }

    #[test]
    fn console_checks() {
        let cfg = cfg();
        let snap = snap_with_baseline_groups();
        let table: Vec<(&str, UserState, Vec<&str>)> = vec![
            (
                "mfa and recent login",
                user("a").password(Some(3), 100).mfa().in_baseline().build(),
                vec![],
            ),
            (
                "no mfa",
                user("a").password(Some(3), 100).in_baseline().build(),
                vec!["console-without-mfa"],
            ),
            (
                "unused 46",
                user("a")
                    .password(Some(46), 100)
                    .mfa()
                    .in_baseline()
                    .build(),
                vec!["console-unused"],
            ),
            (
                "unused 45",
                user("a")
                    .password(Some(45), 100)
                    .mfa()
                    .in_baseline()
                    .build(),
                vec![],
            ),
            (
                "never used, set 50 days ago",
                user("a").password(None, 50).mfa().in_baseline().build(),
                vec!["console-unused"],
            ),
            (
                "never used, set 5 days ago",
                user("a").password(None, 5).mfa().in_baseline().build(),
                vec![],
            ),
            (
                "no mfa policy",
                user("a").password(Some(1), 10).mfa().build(),
                vec!["mfa-policy-missing"],
            ),
        ];
        for (name, u, want) in table {
            let v = evaluate_user(&u, &snap, &cfg, now());
            assert_eq!(ids(&v), want, "{name}: {:?}", v.findings);
        }
    }

    #[test]
    fn classification_and_access_mismatch() {
        let cfg = cfg();
        let snap = snap_with_baseline_groups();
        let u = user("p")
            .tag(ACCESS_TAG, "programmatic")
            .password(Some(1), 10)
            .mfa()
            .keys(&[key("AKIAP", 5, Some(1))])
            .in_baseline()
            .build();
        let v = evaluate_user(&u, &snap, &cfg, now());
        assert_eq!(v.class, AccessClass::Programmatic);
        assert_eq!(v.class_source, ClassSource::Tag);
        assert_eq!(ids(&v), vec!["console-on-programmatic-user"]);

        let u = user("c")
            .tag(ACCESS_TAG, "console")
            .password(Some(1), 10)
            .mfa()
            .keys(&[key("AKIAC", 5, Some(1))])
            .in_baseline()
            .build();
        assert_eq!(
            ids(&evaluate_user(&u, &snap, &cfg, now())),
            vec!["keys-on-console-user"]
        );

        // Derived: password only → console, keys only → programmatic, both → both.
        let u = user("d").password(Some(1), 10).mfa().in_baseline().build();
        assert_eq!(classify(&u, &cfg).0, AccessClass::Console);
        let u = user("d").keys(&[key("AKIAD", 5, Some(1))]).build();
        assert_eq!(classify(&u, &cfg).0, AccessClass::Programmatic);
        let u = user("d")
            .password(Some(1), 10)
            .keys(&[key("AKIAD", 5, Some(1))])
            .build();
        assert_eq!(classify(&u, &cfg).0, AccessClass::Both);

        // An empty or unknown tag value is noted and treated as untagged.
        let u = user("e")
            .tag(ACCESS_TAG, "")
            .keys(&[key("AKIAE", 5, Some(1))])
            .build();
        let v = evaluate_user(&u, &snap, &cfg, now());
        assert_eq!(v.class, AccessClass::Programmatic);
        assert_eq!(v.class_source, ClassSource::Derived);
        assert_eq!(v.notes.len(), 1, "{:?}", v.notes);
    }

    #[test]
    fn programmatic_users_do_not_need_the_mfa_policy_by_default() {
        let cfg = cfg();
        let snap = snap_with_baseline_groups();
        let u = user("svc").keys(&[key("AKIAS", 5, Some(1))]).build();
        assert!(evaluate_user(&u, &snap, &cfg, now()).findings.is_empty());
        let mut all = cfg.clone();
        all.baseline.mfa_policy.applies_to = crate::config::AppliesTo::All;
        assert_eq!(
            ids(&evaluate_user(&u, &snap, &all, now())),
            vec!["mfa-policy-missing"]
        );
    }

    #[test]
    fn source_ip_policy_applies_to_all_when_enabled() {
        let mut cfg = cfg();
        cfg.baseline.source_ip_policy.enabled = true;
        cfg.baseline.source_ip_policy.allowed_cidrs = vec!["192.0.2.0/24".into()];
        let snap = snap_with_baseline_groups();
        let u = user("svc").keys(&[key("AKIAS", 5, Some(1))]).build();
        assert_eq!(
            ids(&evaluate_user(&u, &snap, &cfg, now())),
            vec!["source-ip-policy-missing"]
        );
        let u = user("svc")
            .keys(&[key("AKIAS", 5, Some(1))])
            .group("iam-warden-source-ip")
            .build();
        assert!(evaluate_user(&u, &snap, &cfg, now()).findings.is_empty());
        // Attached directly also counts (for this check; with `attach = "group"` the
        // direct attachment is itself a CIS 1.14 finding).
        let u = user("svc")
            .keys(&[key("AKIAS", 5, Some(1))])
            .attached("arn:aws:iam::123456789012:policy/iam-warden/iam-warden-source-ip")
            .build();
        assert_eq!(
            ids(&evaluate_user(&u, &snap, &cfg, now())),
            vec!["user-policy-attached"]
        );
    }

    #[test]
    fn two_active_keys() {
        let cfg = cfg();
        let snap = snap_with_baseline_groups();
        let u = user("k")
            .keys(&[key("AKIA1", 5, Some(1)), key("AKIA2", 3, Some(1))])
            .build();
        let v = evaluate_user(&u, &snap, &cfg, now());
        assert_eq!(ids(&v), vec!["two-active-keys"]);
        assert!(v.findings[0].reason.contains("AKIA1") && v.findings[0].reason.contains("AKIA2"));
        let u = user("k")
            .keys(&[key("AKIA1", 5, Some(1)), inactive(key("AKIA2", 3, Some(1)))])
            .build();
        assert!(evaluate_user(&u, &snap, &cfg, now()).findings.is_empty());
    }

    #[test]
    fn report_keys_without_ids_are_named_by_slot() {
        let cfg = cfg();
        let snap = snap_with_baseline_groups();
        let mut k = key("x", 100, Some(1));
        k.id = None;
        let u = user("k").keys(&[k]).build();
        let v = evaluate_user(&u, &snap, &cfg, now());
        let f = &v.findings[0];
        assert_eq!(f.check, Check::KeyTooOld);
        assert_eq!(f.key_id, None);
        assert!(
            f.reason.starts_with("access key 1 (created ")
                && f.reason.contains(") is 100 days old;"),
            "{}",
            f.reason
        );
        assert_eq!(f.reason.matches("created").count(), 1, "{}", f.reason);
    }

    #[test]
    fn exemptions_by_name_tag_path_group_and_own_identity() {
        let mut cfg = cfg();
        cfg.exemptions.users = vec!["break-glass".into()];
        cfg.exemptions.path_prefixes = vec!["/emergency/".into()];
        cfg.exemptions.groups = vec!["admins".into()];
        let mut snap = snap_with_baseline_groups();
        snap.caller_arn = "arn:aws:iam::123456789012:user/automation/iam-warden".into();
        let bad = |b: UserBuilder| {
            b.password(None, 300)
                .keys(&[key("AKIAX", 300, None)])
                .build()
        };
        let cases = [
            (bad(user("break-glass")), "exemptions.users"),
            (bad(user("t").tag(EXEMPT_TAG, "TRUE")), "tag"),
            (bad(user("p").path("/emergency/ops/")), "prefix"),
            (bad(user("g").group("admins")), "group admins"),
            (bad(user("iam-warden").path("/automation/")), "own identity"),
        ];
        for (u, why) in cases {
            let v = evaluate_user(&u, &snap, &cfg, now());
            assert!(
                v.findings.is_empty(),
                "{}: exempt users are never violations",
                u.name
            );
            assert!(
                v.exempt.as_deref().unwrap_or_default().contains(why),
                "{}: {:?}",
                u.name,
                v.exempt
            );
        }
        // Tag false, or another path, is not exempt.
        let u = bad(user("t2").tag(EXEMPT_TAG, "false"));
        assert!(evaluate_user(&u, &snap, &cfg, now()).exempt.is_none());
        // An assumed-role caller exempts no user.
        snap.caller_arn = "arn:aws:sts::123456789012:assumed-role/iam-warden/s".into();
        let u = bad(user("iam-warden"));
        assert!(evaluate_user(&u, &snap, &cfg, now()).exempt.is_none());
    }

    #[test]
    fn password_policy_gaps_by_field() {
        let cfg = cfg();
        assert_eq!(
            password_policy_gaps(None, &cfg),
            vec!["the account has no password policy"]
        );
        let strong = PasswordPolicyState {
            minimum_length: 14,
            require_uppercase: true,
            require_lowercase: true,
            require_numbers: true,
            require_symbols: true,
            reuse_prevention: 24,
            max_age_days: 90,
            allow_users_to_change: true,
            hard_expiry: false,
        };
        assert!(password_policy_gaps(Some(&strong), &cfg).is_empty());
        let stronger = PasswordPolicyState {
            minimum_length: 20,
            max_age_days: 30,
            ..strong.clone()
        };
        assert!(
            password_policy_gaps(Some(&stronger), &cfg).is_empty(),
            "stronger is fine"
        );
        let weak = PasswordPolicyState {
            minimum_length: 8,
            require_symbols: false,
            reuse_prevention: 5,
            max_age_days: 0,
            ..strong
        };
        let gaps = password_policy_gaps(Some(&weak), &cfg);
        assert_eq!(gaps.len(), 4, "{gaps:?}");
        assert!(gaps[0].contains("8 < 14"));
        let snap = AccountSnapshot {
            password_policy: Some(weak),
            ..Default::default()
        };
        let f = evaluate_account(&snap, &cfg, now());
        assert_eq!(f[0].check, Check::PasswordPolicyWeak);
    }

    #[test]
    fn check_ids_are_stable() {
        let ids: Vec<_> = Check::ALL.iter().map(|c| c.id()).collect();
        assert_eq!(
            ids,
            [
                "console-without-mfa",
                "mfa-policy-missing",
                "source-ip-policy-missing",
                "key-too-old",
                "key-unused",
                "console-unused",
                "two-active-keys",
                "console-on-programmatic-user",
                "keys-on-console-user",
                "password-policy-weak",
                "quota-reached",
                "rotation-stuck",
                "user-policy-attached",
                "key-from-initial-setup",
                "root-access-key",
                "root-without-mfa",
                "root-virtual-mfa",
                "root-used",
                "policy-full-admin",
                "no-support-role",
                "server-certificate-expired",
                "access-analyzer-disabled",
                "no-identity-federation",
                "cloudshell-full-access",
                "baseline-would-deny"
            ]
        );
        assert_eq!(
            serde_json::to_string(&Check::KeyTooOld).unwrap(),
            "\"key-too-old\""
        );
        for c in Check::ALL {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                c.id(),
                "JSON and id agree"
            );
        }
    }
}
