//! The plan: (observed state, baseline, now) → the writes that bring the account onto the
//! baseline, each with its reason. Pure; [`crate::apply`] executes it.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::checks::{
    days_between, evaluate_user, password_policy_gaps, Check, Finding, UserVerdict,
};
use super::policies::{desired_policies, same_meaning, DesiredPolicy};
use crate::config::{AccessClass, Attach, Config, Credentials, INACTIVE_SINCE_TAG_PREFIX};
use crate::error::Result;
use crate::inventory::{AccessKeyState, AccountSnapshot, PasswordPolicyState, UserState};

/// IAM quotas that bound the plan.
pub const MAX_GROUPS_PER_USER: usize = 10;
pub const MAX_MANAGED_POLICIES_PER_USER: usize = 10;
pub const MAX_POLICY_VERSIONS: usize = 5;

/// An access key to act on. `id` is `None` when the key was observed through the
/// credential report: apply resolves it by creation time and never guesses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRef {
    pub id: Option<String>,
    pub slot: u8,
    pub created: DateTime<Utc>,
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => f.write_str(id),
            None => write!(
                f,
                "access key {} (created {})",
                self.slot,
                self.created.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        }
    }
}

/// One write.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    CreatePolicy {
        policy: String,
        document: String,
    },
    CreatePolicyVersion {
        policy: String,
        policy_arn: String,
        document: String,
        /// Oldest non-default version to delete first (IAM keeps at most 5).
        delete_version: Option<String>,
    },
    CreateGroup {
        group: String,
    },
    AttachGroupPolicy {
        group: String,
        policy: String,
    },
    UpdatePasswordPolicy {
        policy: PasswordPolicyState,
    },
    AddUserToGroup {
        user: String,
        group: String,
    },
    AttachUserPolicy {
        user: String,
        policy: String,
    },
    DeleteLoginProfile {
        user: String,
        /// Delete only if the password is still unused for this many days (checked live).
        #[serde(skip_serializing_if = "Option::is_none")]
        unused_days: Option<u32>,
    },
    DeactivateAccessKey {
        user: String,
        key: KeyRef,
        unused_days: Option<u32>,
    },
    DeleteAccessKey {
        user: String,
        key: KeyRef,
        unused_days: u32,
    },
    /// Record on the user since when an inactive key is inactive (starts the
    /// delete-after clock): tag `iam-warden/inactive-since/<id>`.
    MarkKeyInactive {
        user: String,
        key: KeyRef,
    },
    /// Remove a stale inactive-since tag (the key is gone or active again).
    ClearKeyMark {
        user: String,
        key_id: String,
    },
}

impl Action {
    /// The metric / journal name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreatePolicy { .. } => "create_policy",
            Action::CreatePolicyVersion { .. } => "create_policy_version",
            Action::CreateGroup { .. } => "create_group",
            Action::AttachGroupPolicy { .. } => "attach_group_policy",
            Action::UpdatePasswordPolicy { .. } => "update_password_policy",
            Action::AddUserToGroup { .. } => "add_user_to_group",
            Action::AttachUserPolicy { .. } => "attach_user_policy",
            Action::DeleteLoginProfile { .. } => "delete_login_profile",
            Action::DeactivateAccessKey { .. } => "deactivate_access_key",
            Action::DeleteAccessKey { .. } => "delete_access_key",
            Action::MarkKeyInactive { .. } => "tag_user",
            Action::ClearKeyMark { .. } => "untag_user",
        }
    }

    pub fn user(&self) -> Option<&str> {
        match self {
            Action::AddUserToGroup { user, .. }
            | Action::AttachUserPolicy { user, .. }
            | Action::DeleteLoginProfile { user, .. }
            | Action::DeactivateAccessKey { user, .. }
            | Action::DeleteAccessKey { user, .. }
            | Action::MarkKeyInactive { user, .. }
            | Action::ClearKeyMark { user, .. } => Some(user),
            _ => None,
        }
    }

    /// What the action acts on (policy, group, key id...), for the journal.
    pub fn target(&self) -> String {
        match self {
            Action::CreatePolicy { policy, .. } => policy.clone(),
            Action::CreatePolicyVersion { policy_arn, .. } => policy_arn.clone(),
            Action::CreateGroup { group } => group.clone(),
            Action::AttachGroupPolicy { group, policy } => format!("{group} <- {policy}"),
            Action::UpdatePasswordPolicy { .. } => "account password policy".into(),
            Action::AddUserToGroup { group, .. } => group.clone(),
            Action::AttachUserPolicy { policy, .. } => policy.clone(),
            Action::DeleteLoginProfile { user, .. } => format!("login profile of {user}"),
            Action::DeactivateAccessKey { key, .. }
            | Action::DeleteAccessKey { key, .. }
            | Action::MarkKeyInactive { key, .. } => key.to_string(),
            Action::ClearKeyMark { key_id, .. } => format!("{INACTIVE_SINCE_TAG_PREFIX}{key_id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedAction {
    #[serde(flatten)]
    pub action: Action,
    pub reason: String,
    /// The check the action fixes, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

/// The plan for one user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserPlan {
    pub verdict: UserVerdict,
    pub actions: Vec<PlannedAction>,
    /// Whether (and why) the plan counts toward the blast-radius breaker.
    pub breaker: BreakerNote,
}

impl UserPlan {
    /// The plan takes access away from an existing user: the breaker counts it.
    pub fn counts_toward_breaker(&self) -> bool {
        self.breaker.counts
    }
}

/// What a planned action takes away from a user's existing access (what the blast-radius
/// breaker counts). Additive changes have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLoss {
    /// DeleteAccessKey.
    DeletesAccessKey,
    /// DeactivateAccessKey.
    DeactivatesAccessKey,
    /// DeleteLoginProfile.
    RemovesConsolePassword,
    /// The MFA policy (group or attached) for a user without an MFA device.
    RequiresMfaWithoutDevice,
    /// The source-IP policy (group or attached): always restricts.
    RestrictsSourceIp,
    /// A group or policy that is not one of the baseline's: counted to be safe.
    UnknownPolicy,
}

impl AccessLoss {
    pub fn describe(self) -> &'static str {
        match self {
            AccessLoss::DeletesAccessKey => "deletes an access key",
            AccessLoss::DeactivatesAccessKey => "deactivates an access key",
            AccessLoss::RemovesConsolePassword => "removes the console password",
            AccessLoss::RequiresMfaWithoutDevice => {
                "puts a user without an MFA device under the MFA policy"
            }
            AccessLoss::RestrictsSourceIp => "restricts the user to the allowed source IPs",
            AccessLoss::UnknownPolicy => "adds a group or policy that is not the baseline's",
        }
    }
}

/// Does `action` reduce `user`'s existing access, and how? Pure; `user` is the state the
/// plan was made from (its MFA devices decide whether the MFA policy takes anything away).
/// Tags, marks and account-level actions never reduce a user's access.
pub fn reduces_access(action: &Action, user: &UserState, cfg: &Config) -> Option<AccessLoss> {
    let b = &cfg.baseline;
    let mfa = || (!user.mfa_active).then_some(AccessLoss::RequiresMfaWithoutDevice);
    match action {
        Action::DeleteAccessKey { .. } => Some(AccessLoss::DeletesAccessKey),
        Action::DeactivateAccessKey { .. } => Some(AccessLoss::DeactivatesAccessKey),
        Action::DeleteLoginProfile { .. } => Some(AccessLoss::RemovesConsolePassword),
        Action::AddUserToGroup { group, .. } => {
            if b.mfa_policy.enabled && *group == b.mfa_policy.group {
                mfa()
            } else if b.source_ip_policy.enabled && *group == b.source_ip_policy.group {
                Some(AccessLoss::RestrictsSourceIp)
            } else {
                Some(AccessLoss::UnknownPolicy)
            }
        }
        Action::AttachUserPolicy { policy, .. } => {
            if b.mfa_policy.enabled && *policy == b.mfa_policy.name {
                mfa()
            } else if b.source_ip_policy.enabled && *policy == b.source_ip_policy.name {
                Some(AccessLoss::RestrictsSourceIp)
            } else {
                Some(AccessLoss::UnknownPolicy)
            }
        }
        Action::MarkKeyInactive { .. }
        | Action::ClearKeyMark { .. }
        | Action::CreatePolicy { .. }
        | Action::CreatePolicyVersion { .. }
        | Action::CreateGroup { .. }
        | Action::AttachGroupPolicy { .. }
        | Action::UpdatePasswordPolicy { .. } => None,
    }
}

/// How one user's plan counts toward the blast-radius breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct BreakerNote {
    /// The plan takes access away from an existing user: it counts.
    pub counts: bool,
    /// What the plan takes away (each kind once), whether or not it counts.
    pub reduces: Vec<AccessLoss>,
    /// The user's CreateDate, when it is within `safety.new_user_grace` of the plan's
    /// time: a new user is brought onto the baseline without counting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_user_created: Option<DateTime<Utc>>,
}

impl BreakerNote {
    /// Classify `actions` planned for `user` at `now`.
    pub fn classify(
        user: &UserState,
        actions: &[PlannedAction],
        cfg: &Config,
        now: DateTime<Utc>,
    ) -> BreakerNote {
        let reduces: Vec<AccessLoss> = actions
            .iter()
            .filter_map(|a| reduces_access(&a.action, user, cfg))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let new_user = is_new_user(user.created, now, cfg.safety.new_user_grace.get());
        BreakerNote {
            counts: !reduces.is_empty() && !new_user,
            new_user_created: new_user.then_some(user.created),
            reduces,
        }
    }

    /// One line for people, `None` when the plan takes nothing away. `now` is the plan's
    /// time (for the new user's age).
    pub fn describe(&self, now: DateTime<Utc>) -> Option<String> {
        let what = || {
            self.reduces
                .iter()
                .map(|l| l.describe())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (self.reduces.is_empty(), self.new_user_created) {
            (true, _) => None,
            (false, Some(created)) => Some(format!(
                "new user (created {} ago): not counted by the breaker ({})",
                age(created, now),
                what()
            )),
            (false, None) => Some(format!("counts toward the breaker: {}", what())),
        }
    }
}

/// Created less than `grace` before `now` (a CreateDate after `now`, clock skew, is new).
pub fn is_new_user(created: DateTime<Utc>, now: DateTime<Utc>, grace: std::time::Duration) -> bool {
    match (now - created).to_std() {
        Ok(age) => age < grace,
        Err(_) => true,
    }
}

fn age(created: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - created).num_seconds().max(0);
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else if s < 2 * 86_400 {
        format!("{} h", s / 3600)
    } else {
        format!("{} days", s / 86_400)
    }
}

/// The plan for the whole account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub account_actions: Vec<PlannedAction>,
    pub account_findings: Vec<Finding>,
    pub users: Vec<UserPlan>,
}

impl Plan {
    /// Users with at least one action.
    pub fn users_changed(&self) -> usize {
        self.users.iter().filter(|u| !u.actions.is_empty()).count()
    }

    /// Users whose existing access the plan reduces (what the blast-radius breaker counts).
    pub fn users_losing_access(&self) -> usize {
        self.users.iter().filter(|u| u.breaker.counts).count()
    }

    pub fn action_count(&self) -> usize {
        self.account_actions.len() + self.users.iter().map(|u| u.actions.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.action_count() == 0
    }
}

/// Plan the whole account.
pub fn plan_account(snap: &AccountSnapshot, cfg: &Config, now: DateTime<Utc>) -> Result<Plan> {
    let desired = desired_policies(cfg)?;
    let (account_actions, account_findings) = plan_account_level(snap, cfg, &desired);
    let users = snap
        .users
        .iter()
        .map(|u| plan_user_with(u, snap, cfg, &desired, now))
        .collect();
    Ok(Plan {
        account_actions,
        account_findings,
        users,
    })
}

/// Plan one user (the daemon's reconcile). `snap` supplies groups and the caller.
pub fn plan_user(
    user: &UserState,
    snap: &AccountSnapshot,
    cfg: &Config,
    now: DateTime<Utc>,
) -> Result<UserPlan> {
    let desired = desired_policies(cfg)?;
    Ok(plan_user_with(user, snap, cfg, &desired, now))
}

/// Account-level actions: baseline policies (created or repaired), baseline groups with
/// their policy, the password policy.
pub fn plan_account_level(
    snap: &AccountSnapshot,
    cfg: &Config,
    desired: &[DesiredPolicy],
) -> (Vec<PlannedAction>, Vec<Finding>) {
    let mut actions = Vec::new();
    for d in desired {
        match snap.policies.get(&d.name) {
            None => actions.push(PlannedAction {
                action: Action::CreatePolicy {
                    policy: d.name.clone(),
                    document: d.document_text(),
                },
                reason: format!("baseline policy {} does not exist", d.name),
                check: None,
            }),
            Some(live) => {
                let same = live
                    .default_document
                    .as_ref()
                    .is_some_and(|doc| same_meaning(doc, &d.document));
                if !same {
                    let delete_version = if live.version_ids.len() >= MAX_POLICY_VERSIONS {
                        live.version_ids
                            .iter()
                            .find(|v| Some(v.as_str()) != live.default_version_id.as_deref())
                            .cloned()
                    } else {
                        None
                    };
                    actions.push(PlannedAction {
                        action: Action::CreatePolicyVersion {
                            policy: d.name.clone(),
                            policy_arn: live.arn.clone(),
                            document: d.document_text(),
                            delete_version,
                        },
                        reason: format!(
                            "the default version {} of {} differs in meaning from the baseline",
                            live.default_version_id.as_deref().unwrap_or("?"),
                            d.name
                        ),
                        check: None,
                    });
                }
            }
        }
        if cfg.baseline.attach == Attach::Group {
            match snap.groups.get(&d.group) {
                None => {
                    actions.push(PlannedAction {
                        action: Action::CreateGroup {
                            group: d.group.clone(),
                        },
                        reason: format!("baseline group {} does not exist", d.group),
                        check: None,
                    });
                    actions.push(attach_group(d));
                }
                Some(g) => {
                    if !g
                        .attached_policies
                        .iter()
                        .any(|a| crate::inventory::arn_name(a) == d.name)
                    {
                        actions.push(attach_group(d));
                    }
                }
            }
        }
    }
    let mut findings = Vec::new();
    let gaps = password_policy_gaps(snap.password_policy.as_ref(), cfg);
    if !gaps.is_empty() {
        let reason = gaps.join("; ");
        findings.push(Finding::new(Check::PasswordPolicyWeak, reason.clone()));
        actions.push(PlannedAction {
            action: Action::UpdatePasswordPolicy {
                policy: stronger_password_policy(snap.password_policy.as_ref(), cfg),
            },
            reason,
            check: Some(Check::PasswordPolicyWeak),
        });
    }
    (actions, findings)
}

fn attach_group(d: &DesiredPolicy) -> PlannedAction {
    PlannedAction {
        action: Action::AttachGroupPolicy {
            group: d.group.clone(),
            policy: d.name.clone(),
        },
        reason: format!("baseline group {} must carry policy {}", d.group, d.name),
        check: None,
    }
}

/// The configured policy, never weakening a field in which the account is stronger.
pub fn stronger_password_policy(
    have: Option<&PasswordPolicyState>,
    cfg: &Config,
) -> PasswordPolicyState {
    let w = &cfg.baseline.password_policy;
    let h = have.cloned().unwrap_or_default();
    let max_age = match (w.max_age_days, h.max_age_days) {
        (0, h) => h,
        (w, 0) => w,
        (w, h) => w.min(h),
    };
    PasswordPolicyState {
        minimum_length: w.minimum_length.max(h.minimum_length),
        require_uppercase: w.require_uppercase || h.require_uppercase,
        require_lowercase: w.require_lowercase || h.require_lowercase,
        require_numbers: w.require_numbers || h.require_numbers,
        require_symbols: w.require_symbols || h.require_symbols,
        reuse_prevention: w.reuse_prevention.max(h.reuse_prevention),
        max_age_days: max_age,
        allow_users_to_change: w.allow_users_to_change,
        hard_expiry: w.hard_expiry || h.hard_expiry,
    }
}

/// The writes that bring one user to the baseline, in order: groups and policies, console
/// access, access keys, stale key marks.
fn plan_user_with(
    user: &UserState,
    snap: &AccountSnapshot,
    cfg: &Config,
    desired: &[DesiredPolicy],
    now: DateTime<Utc>,
) -> UserPlan {
    let mut verdict = evaluate_user(user, snap, cfg, now);
    let mut actions = Vec::new();
    if verdict.exempt.is_some() {
        return UserPlan {
            verdict,
            actions,
            breaker: BreakerNote::default(),
        };
    }
    plan_groups_and_policies(user, snap, cfg, desired, &mut verdict, &mut actions);
    plan_console_access(user, cfg, &verdict, &mut actions);
    let marks = inactive_marks(user);
    let used_marks = plan_keys(user, cfg, verdict.class, &marks, now, &mut actions);
    plan_key_marks(user, &marks, &used_marks, &mut actions);
    let breaker = BreakerNote::classify(user, &actions, cfg, now);
    UserPlan {
        verdict,
        actions,
        breaker,
    }
}

/// Baseline policies, through groups (default) or attached directly. A quota that stops a
/// write becomes a finding instead.
fn plan_groups_and_policies(
    user: &UserState,
    snap: &AccountSnapshot,
    cfg: &Config,
    desired: &[DesiredPolicy],
    verdict: &mut UserVerdict,
    actions: &mut Vec<PlannedAction>,
) {
    let class = verdict.class;
    let b = &cfg.baseline;
    let mut groups = user.groups.len();
    let mut attached = user.attached_policies.len();
    for d in desired {
        let (applies, check) = match d.kind {
            super::policies::BaselinePolicy::Mfa => (
                b.mfa_policy.applies_to.covers(class),
                Check::MfaPolicyMissing,
            ),
            super::policies::BaselinePolicy::SourceIp => (
                b.source_ip_policy.applies_to.covers(class),
                Check::SourceIpPolicyMissing,
            ),
        };
        if !applies || super::checks::has_policy(user, snap, &d.name) {
            continue;
        }
        match b.attach {
            Attach::Group if user.groups.contains(&d.group) => {
                // Member of the group, which lacks the policy: the account-level plan
                // attaches it; nothing to do for the user.
            }
            Attach::Group if groups >= MAX_GROUPS_PER_USER => verdict.findings.push(Finding::new(
                Check::QuotaReached,
                format!(
                    "cannot add to baseline group {}: the user is already in {groups} groups (IAM allows {MAX_GROUPS_PER_USER})",
                    d.group
                ),
            )),
            Attach::Group => {
                groups += 1;
                actions.push(PlannedAction {
                    action: Action::AddUserToGroup { user: user.name.clone(), group: d.group.clone() },
                    reason: format!("{} needs policy {} (class {})", user.name, d.name, class.as_str()),
                    check: Some(check),
                });
            }
            Attach::User if attached >= MAX_MANAGED_POLICIES_PER_USER => verdict.findings.push(Finding::new(
                Check::QuotaReached,
                format!(
                    "cannot attach {}: the user already has {attached} managed policies (IAM allows {MAX_MANAGED_POLICIES_PER_USER})",
                    d.name
                ),
            )),
            Attach::User => {
                attached += 1;
                actions.push(PlannedAction {
                    action: Action::AttachUserPolicy { user: user.name.clone(), policy: d.name.clone() },
                    reason: format!("{} needs policy {} (class {})", user.name, d.name, class.as_str()),
                    check: Some(check),
                });
            }
        }
    }
}

/// Console access: the password of a programmatic user, or an unused one, is removed.
fn plan_console_access(
    user: &UserState,
    cfg: &Config,
    verdict: &UserVerdict,
    actions: &mut Vec<PlannedAction>,
) {
    let class = verdict.class;
    let cred = &cfg.baseline.credentials;
    let has = |c: Check| verdict.findings.iter().any(|f| f.check == c);
    if user.password.is_some() {
        if class == AccessClass::Programmatic
            && cred.remove_console_of_programmatic_users
            && has(Check::ConsoleOnProgrammaticUser)
        {
            actions.push(PlannedAction {
                action: Action::DeleteLoginProfile {
                    user: user.name.clone(),
                    unused_days: None,
                },
                reason: format!(
                    "{} is classified programmatic and must not have a console password",
                    user.name
                ),
                check: Some(Check::ConsoleOnProgrammaticUser),
            });
        } else if cred.revoke_unused && has(Check::ConsoleUnused) {
            let reason = verdict
                .findings
                .iter()
                .find(|f| f.check == Check::ConsoleUnused)
                .map(|f| f.reason.clone())
                .unwrap_or_default();
            actions.push(PlannedAction {
                action: Action::DeleteLoginProfile {
                    user: user.name.clone(),
                    unused_days: Some(cred.unused_days),
                },
                reason,
                check: Some(Check::ConsoleUnused),
            });
        }
    }
}

/// Access keys: always by key, never "all keys of the user". Returns the ids of the
/// inactive-since marks that belong to an existing key.
fn plan_keys<'m>(
    user: &UserState,
    cfg: &Config,
    class: AccessClass,
    marks: &'m [InactiveMark],
    now: DateTime<Utc>,
    actions: &mut Vec<PlannedAction>,
) -> BTreeSet<&'m str> {
    let cred = &cfg.baseline.credentials;
    let mut used_marks: BTreeSet<&str> = BTreeSet::new();
    for k in user.keys.iter() {
        let mark = marks.iter().find(|m| m.matches(k.id.as_deref(), k.created));
        if let Some(m) = mark {
            used_marks.insert(m.key_id.as_str());
        }
        // A report key's id can be learnt from its mark.
        let id = k.id.clone().or_else(|| mark.map(|m| m.key_id.clone()));
        let key = KeyRef {
            id,
            slot: k.slot,
            created: k.created,
        };
        if k.active {
            actions.extend(plan_active_key(user, cred, class, k, mark, key, now));
        } else {
            actions.extend(plan_inactive_key(user, cred, k, mark, key, now));
        }
    }
    used_marks
}

/// An active key: its mark is cleared; it is deactivated when unused too long, or when a
/// console user must not have keys.
fn plan_active_key(
    user: &UserState,
    cred: &Credentials,
    class: AccessClass,
    k: &AccessKeyState,
    mark: Option<&InactiveMark>,
    key: KeyRef,
    now: DateTime<Utc>,
) -> Vec<PlannedAction> {
    let mut actions = Vec::new();
    let since = k.last_used.unwrap_or(k.created);
    let idle = days_between(since, now);
    if let Some(m) = mark {
        actions.push(PlannedAction {
            action: Action::ClearKeyMark {
                user: user.name.clone(),
                key_id: m.key_id.clone(),
            },
            reason: format!("{} is active again", m.key_id),
            check: None,
        });
    }
    if cred.revoke_unused && idle > i64::from(cred.unused_days) {
        actions.push(PlannedAction {
            action: Action::DeactivateAccessKey {
                user: user.name.clone(),
                key,
                unused_days: Some(cred.unused_days),
            },
            reason: format!(
                "{} {} {idle} days ago; limit {} days",
                k.label(),
                if k.last_used.is_some() {
                    "last used"
                } else {
                    "never used; created"
                },
                cred.unused_days
            ),
            check: Some(Check::KeyUnused),
        });
    } else if class == AccessClass::Console && cred.deactivate_keys_of_console_users {
        actions.push(PlannedAction {
            action: Action::DeactivateAccessKey {
                user: user.name.clone(),
                key,
                unused_days: None,
            },
            reason: format!(
                "{} is classified console and must not have active access keys",
                user.name
            ),
            check: Some(Check::KeysOnConsoleUser),
        });
    }
    actions
}

/// An inactive key (only when revocation is on: only revocation deletes keys): marked
/// inactive-since on first sight, deleted once the mark is older than the limit.
fn plan_inactive_key(
    user: &UserState,
    cred: &Credentials,
    k: &AccessKeyState,
    mark: Option<&InactiveMark>,
    key: KeyRef,
    now: DateTime<Utc>,
) -> Option<PlannedAction> {
    if !cred.revoke_unused {
        return None;
    }
    let Some(m) = mark else {
        return Some(PlannedAction {
            action: Action::MarkKeyInactive {
                user: user.name.clone(),
                key,
            },
            reason: format!(
                "{} is inactive; it is deleted {} days from now unless reactivated",
                k.label(),
                cred.delete_inactive_key_after_days
            ),
            check: None,
        });
    };
    let inactive = days_between(m.since, now);
    let limit = i64::from(cred.delete_inactive_key_after_days);
    (inactive > limit).then(|| PlannedAction {
        action: Action::DeleteAccessKey {
            user: user.name.clone(),
            key,
            unused_days: cred.unused_days,
        },
        reason: format!(
            "{} has been inactive for {inactive} days (since {}); deleted after {limit} days",
            m.key_id,
            m.since.format("%Y-%m-%d")
        ),
        check: Some(Check::KeyUnused),
    })
}

/// Marks whose key no longer exists are cleared.
fn plan_key_marks(
    user: &UserState,
    marks: &[InactiveMark],
    used_marks: &BTreeSet<&str>,
    actions: &mut Vec<PlannedAction>,
) {
    for m in marks
        .iter()
        .filter(|m| !used_marks.contains(m.key_id.as_str()))
    {
        actions.push(PlannedAction {
            action: Action::ClearKeyMark {
                user: user.name.clone(),
                key_id: m.key_id.clone(),
            },
            reason: format!("{} no longer exists", m.key_id),
            check: None,
        });
    }
}

/// An `iam-warden/inactive-since/<id>` tag, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InactiveMark {
    pub key_id: String,
    pub since: DateTime<Utc>,
    pub created: Option<DateTime<Utc>>,
}

impl InactiveMark {
    /// The tag's value for a key inactive since `since`, created at `created`.
    pub fn tag_value(since: DateTime<Utc>, created: DateTime<Utc>) -> String {
        format!(
            "since={} created={}",
            since.format("%Y-%m-%dT%H:%M:%SZ"),
            created.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }

    fn matches(&self, id: Option<&str>, created: DateTime<Utc>) -> bool {
        match id {
            Some(id) => id == self.key_id,
            None => self
                .created
                .is_some_and(|c| (c - created).num_seconds().abs() < 1),
        }
    }
}

/// The user's inactive-since tags (a malformed one is ignored, and so never deletes).
pub fn inactive_marks(user: &UserState) -> Vec<InactiveMark> {
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    };
    user.tags
        .iter()
        .filter_map(|(k, v)| {
            let key_id = k.strip_prefix(INACTIVE_SINCE_TAG_PREFIX)?.to_string();
            let mut since = None;
            let mut created = None;
            for part in v.split_whitespace() {
                match part.split_once('=') {
                    Some(("since", t)) => since = parse(t),
                    Some(("created", t)) => created = parse(t),
                    _ => {}
                }
            }
            Some(InactiveMark {
                key_id,
                since: since?,
                created,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::testkit::*;
    use crate::inventory::ManagedPolicyState;
    use chrono::Duration;

    fn names(p: &UserPlan) -> Vec<&'static str> {
        p.actions.iter().map(|a| a.action.name()).collect()
    }

    fn compliant_account(cfg: &Config) -> AccountSnapshot {
        let mut snap = snap_with_baseline_groups();
        for d in desired_policies(cfg).unwrap() {
            snap.policies.insert(
                d.name.clone(),
                ManagedPolicyState {
                    name: d.name.clone(),
                    arn: policy_arn(&d.name),
                    path: "/iam-warden/".into(),
                    default_version_id: Some("v1".into()),
                    default_document: Some(d.document.clone()),
                    version_ids: vec!["v1".into()],
                },
            );
        }
        snap.password_policy = Some(stronger_password_policy(None, cfg));
        snap
    }

    #[test]
    fn user_table() {
        let cfg = cfg();
        let snap = compliant_account(&cfg);
        let table: Vec<(&str, UserState, Vec<&str>)> = vec![
            (
                "compliant console user",
                user("a").password(Some(1), 10).mfa().in_baseline().build(),
                vec![],
            ),
            (
                "console user not in group",
                user("a").password(Some(1), 10).mfa().build(),
                vec!["add_user_to_group"],
            ),
            (
                "compliant programmatic",
                user("s").keys(&[key("AKIA1", 10, Some(1))]).build(),
                vec![],
            ),
            (
                "programmatic with console",
                user("s")
                    .tag(ACCESS_TAG, "programmatic")
                    .password(Some(1), 10)
                    .keys(&[key("AKIA1", 10, Some(1))])
                    .build(),
                vec!["delete_login_profile"],
            ),
            (
                "unused console",
                user("a")
                    .password(Some(60), 100)
                    .mfa()
                    .in_baseline()
                    .build(),
                vec!["delete_login_profile"],
            ),
            (
                "unused key",
                user("s").keys(&[key("AKIA1", 100, Some(50))]).build(),
                vec!["deactivate_access_key"],
            ),
            (
                "key used 45 days ago stays",
                user("s").keys(&[key("AKIA1", 100, Some(45))]).build(),
                vec![],
            ),
            (
                "old but used key: finding only",
                user("s").keys(&[key("AKIA1", 200, Some(1))]).build(),
                vec![],
            ),
            (
                "inactive without mark: start the clock",
                user("s")
                    .keys(&[inactive(key("AKIA1", 100, Some(76)))])
                    .build(),
                vec!["tag_user"],
            ),
            (
                "inactive 31 days: delete",
                user("s")
                    .keys(&[inactive(key("AKIA1", 100, Some(76)))])
                    .tag(&mark_tag("AKIA1"), &mark_value(31, 100))
                    .build(),
                vec!["delete_access_key"],
            ),
            (
                "inactive 30 days: keep",
                user("s")
                    .keys(&[inactive(key("AKIA1", 100, Some(76)))])
                    .tag(&mark_tag("AKIA1"), &mark_value(30, 100))
                    .build(),
                vec![],
            ),
            (
                "active again: clear the mark",
                user("s")
                    .keys(&[key("AKIA1", 100, Some(1))])
                    .tag(&mark_tag("AKIA1"), &mark_value(3, 100))
                    .build(),
                vec!["untag_user"],
            ),
            (
                "key gone: clear the mark",
                user("s")
                    .tag(&mark_tag("AKIAGONE"), &mark_value(3, 100))
                    .build(),
                vec!["untag_user"],
            ),
            (
                "malformed mark never deletes",
                user("s")
                    .keys(&[key("AKIA1", 10, Some(1))])
                    .tag(&mark_tag("AKIA1"), "whenever")
                    .build(),
                vec![],
            ),
            (
                "exempt user untouched",
                user("b")
                    .tag(EXEMPT_TAG, "true")
                    .password(None, 300)
                    .keys(&[key("AKIA1", 300, None)])
                    .build(),
                vec![],
            ),
        ];
        for (name, u, want) in table {
            let p = plan_user(&u, &snap, &cfg, now()).unwrap();
            assert_eq!(names(&p), want, "{name}: {:?}", p.actions);
        }
    }

    fn mark_tag(id: &str) -> String {
        format!("{INACTIVE_SINCE_TAG_PREFIX}{id}")
    }

    fn mark_value(since_days: i64, created_days: i64) -> String {
        InactiveMark::tag_value(days_ago(since_days), days_ago(created_days))
    }

    #[test]
    fn report_keys_are_matched_to_their_mark_by_creation_time() {
        let cfg = cfg();
        let snap = compliant_account(&cfg);
        let mut k = inactive(key("x", 100, Some(90)));
        k.id = None;
        let u = user("s")
            .keys(&[k])
            .tag(&mark_tag("AKIAFROMTAG"), &mark_value(40, 100))
            .build();
        let p = plan_user(&u, &snap, &cfg, now()).unwrap();
        match &p.actions[..] {
            [PlannedAction {
                action: Action::DeleteAccessKey { key, .. },
                ..
            }] => assert_eq!(key.id.as_deref(), Some("AKIAFROMTAG")),
            other => panic!("{other:?}"),
        }
        // A mark for a key created at another time is not this key's: it is cleared and the key gets its own.
        let mut k = inactive(key("x", 100, Some(90)));
        k.id = None;
        let u = user("s")
            .keys(&[k])
            .tag(&mark_tag("AKIAOTHER"), &mark_value(40, 200))
            .build();
        let names: Vec<_> = plan_user(&u, &snap, &cfg, now())
            .unwrap()
            .actions
            .iter()
            .map(|a| a.action.name())
            .collect();
        assert_eq!(names, vec!["tag_user", "untag_user"]);
    }

    #[test]
    fn key_actions_name_exactly_one_key() {
        let cfg = cfg();
        let snap = compliant_account(&cfg);
        let u = user("s")
            .keys(&[
                key("AKIAUSED", 100, Some(1)),
                key("AKIAIDLE", 100, Some(80)),
            ])
            .build();
        let p = plan_user(&u, &snap, &cfg, now()).unwrap();
        assert_eq!(p.actions.len(), 1);
        match &p.actions[0].action {
            Action::DeactivateAccessKey {
                key, unused_days, ..
            } => {
                assert_eq!(key.id.as_deref(), Some("AKIAIDLE"));
                assert_eq!(key.slot, 2);
                assert_eq!(*unused_days, Some(45));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn console_users_keys_are_deactivated_only_when_configured() {
        let mut cfg = cfg();
        let snap = compliant_account(&cfg);
        let u = user("c")
            .tag(ACCESS_TAG, "console")
            .password(Some(1), 10)
            .mfa()
            .in_baseline()
            .keys(&[key("AKIAC", 10, Some(1))])
            .build();
        assert!(plan_user(&u, &snap, &cfg, now())
            .unwrap()
            .actions
            .is_empty());
        cfg.baseline.credentials.deactivate_keys_of_console_users = true;
        assert_eq!(
            names(&plan_user(&u, &snap, &cfg, now()).unwrap()),
            vec!["deactivate_access_key"]
        );
    }

    #[test]
    fn quotas_give_findings_not_actions() {
        let cfg = cfg();
        let snap = compliant_account(&cfg);
        let mut b = user("a").password(Some(1), 10).mfa();
        for i in 0..10 {
            b = b.group(&format!("g{i}"));
        }
        let p = plan_user(&b.build(), &snap, &cfg, now()).unwrap();
        assert!(p.actions.is_empty());
        assert!(p
            .verdict
            .findings
            .iter()
            .any(|f| f.check == Check::QuotaReached && f.reason.contains("10 groups")));
        let mut ucfg = cfg.clone();
        ucfg.baseline.attach = Attach::User;
        let mut b = user("a").password(Some(1), 10).mfa();
        for i in 0..10 {
            b = b.attached(&policy_arn(&format!("p{i}")));
        }
        let p = plan_user(&b.build(), &snap, &ucfg, now()).unwrap();
        assert!(p.actions.is_empty());
        assert!(p
            .verdict
            .findings
            .iter()
            .any(|f| f.check == Check::QuotaReached));
        let p = plan_user(
            &user("a").password(Some(1), 10).mfa().build(),
            &snap,
            &ucfg,
            now(),
        )
        .unwrap();
        assert_eq!(names(&p), vec!["attach_user_policy"]);
    }

    #[test]
    fn account_level_creates_repairs_and_is_quiet_when_compliant() {
        let cfg = cfg();
        let empty = AccountSnapshot::default();
        let p = plan_account(&empty, &cfg, now()).unwrap();
        let got: Vec<_> = p.account_actions.iter().map(|a| a.action.name()).collect();
        assert_eq!(
            got,
            vec![
                "create_policy",
                "create_group",
                "attach_group_policy",
                "update_password_policy"
            ]
        );

        let snap = compliant_account(&cfg);
        assert!(plan_account(&snap, &cfg, now()).unwrap().is_empty());

        // Someone edits the policy: a new version; with 5 versions the oldest non-default goes.
        let mut edited = snap.clone();
        let pol = edited.policies.get_mut("iam-warden-require-mfa").unwrap();
        pol.default_document = Some(serde_json::json!({"Version":"2012-10-17","Statement":[]}));
        pol.version_ids = vec!["v1", "v2", "v3", "v4", "v5"]
            .into_iter()
            .map(String::from)
            .collect();
        pol.default_version_id = Some("v1".into());
        let p = plan_account(&edited, &cfg, now()).unwrap();
        match &p.account_actions[0].action {
            Action::CreatePolicyVersion { delete_version, .. } => {
                assert_eq!(delete_version.as_deref(), Some("v2"))
            }
            other => panic!("{other:?}"),
        }
        // Someone detaches the policy from the group.
        let mut detached = snap.clone();
        detached
            .groups
            .get_mut("iam-warden-require-mfa")
            .unwrap()
            .attached_policies
            .clear();
        let p = plan_account(&detached, &cfg, now()).unwrap();
        assert_eq!(
            p.account_actions
                .iter()
                .map(|a| a.action.name())
                .collect::<Vec<_>>(),
            vec!["attach_group_policy"]
        );
    }

    fn action_table() -> Vec<(&'static str, Action)> {
        let c = cfg();
        let key = KeyRef {
            id: Some("AKIA1".into()),
            slot: 1,
            created: days_ago(100),
        };
        let u = || "u".to_string();
        vec![
            (
                "delete key",
                Action::DeleteAccessKey {
                    user: u(),
                    key: key.clone(),
                    unused_days: 45,
                },
            ),
            (
                "deactivate key",
                Action::DeactivateAccessKey {
                    user: u(),
                    key: key.clone(),
                    unused_days: Some(45),
                },
            ),
            (
                "delete login profile",
                Action::DeleteLoginProfile {
                    user: u(),
                    unused_days: None,
                },
            ),
            (
                "mfa group",
                Action::AddUserToGroup {
                    user: u(),
                    group: c.baseline.mfa_policy.group.clone(),
                },
            ),
            (
                "mfa policy",
                Action::AttachUserPolicy {
                    user: u(),
                    policy: c.baseline.mfa_policy.name.clone(),
                },
            ),
            (
                "source-ip group",
                Action::AddUserToGroup {
                    user: u(),
                    group: c.baseline.source_ip_policy.group.clone(),
                },
            ),
            (
                "source-ip policy",
                Action::AttachUserPolicy {
                    user: u(),
                    policy: c.baseline.source_ip_policy.name.clone(),
                },
            ),
            (
                "other group",
                Action::AddUserToGroup {
                    user: u(),
                    group: "admins".into(),
                },
            ),
            ("mark", Action::MarkKeyInactive { user: u(), key }),
            (
                "clear mark",
                Action::ClearKeyMark {
                    user: u(),
                    key_id: "AKIA1".into(),
                },
            ),
            (
                "create policy",
                Action::CreatePolicy {
                    policy: "p".into(),
                    document: "{}".into(),
                },
            ),
            ("create group", Action::CreateGroup { group: "g".into() }),
            (
                "attach group policy",
                Action::AttachGroupPolicy {
                    group: "g".into(),
                    policy: "p".into(),
                },
            ),
            (
                "password policy",
                Action::UpdatePasswordPolicy {
                    policy: PasswordPolicyState::default(),
                },
            ),
        ]
    }

    #[test]
    fn reduces_access_table() {
        use AccessLoss::*;
        let mut c = cfg();
        c.baseline.source_ip_policy.enabled = true;
        let no_mfa = user("u").password(Some(1), 10).build();
        let with_mfa = user("u").password(Some(1), 10).mfa().build();
        // (action, without an MFA device, with one)
        let want: Vec<(&str, Option<AccessLoss>, Option<AccessLoss>)> = vec![
            ("delete key", Some(DeletesAccessKey), Some(DeletesAccessKey)),
            (
                "deactivate key",
                Some(DeactivatesAccessKey),
                Some(DeactivatesAccessKey),
            ),
            (
                "delete login profile",
                Some(RemovesConsolePassword),
                Some(RemovesConsolePassword),
            ),
            ("mfa group", Some(RequiresMfaWithoutDevice), None),
            ("mfa policy", Some(RequiresMfaWithoutDevice), None),
            (
                "source-ip group",
                Some(RestrictsSourceIp),
                Some(RestrictsSourceIp),
            ),
            (
                "source-ip policy",
                Some(RestrictsSourceIp),
                Some(RestrictsSourceIp),
            ),
            ("other group", Some(UnknownPolicy), Some(UnknownPolicy)),
            ("mark", None, None),
            ("clear mark", None, None),
            ("create policy", None, None),
            ("create group", None, None),
            ("attach group policy", None, None),
            ("password policy", None, None),
        ];
        let actions = action_table();
        assert_eq!(actions.len(), want.len());
        for ((name, action), (wname, without, with)) in actions.iter().zip(want) {
            assert_eq!(*name, wname);
            assert_eq!(
                reduces_access(action, &no_mfa, &c),
                without,
                "{name} without MFA"
            );
            assert_eq!(
                reduces_access(action, &with_mfa, &c),
                with,
                "{name} with MFA"
            );
        }
        // A disabled source-IP policy's group is not the baseline's: counted to be safe.
        let off = cfg();
        assert_eq!(
            reduces_access(&actions[5].1, &with_mfa, &off),
            Some(UnknownPolicy)
        );
    }

    #[test]
    fn new_user_grace_boundary() {
        let grace = std::time::Duration::from_secs(3600);
        let table = [
            ("created just now", now(), true),
            ("59 min 59 s ago", now() - Duration::seconds(3599), true),
            (
                "exactly the grace ago",
                now() - Duration::seconds(3600),
                false,
            ),
            ("2 h ago", now() - Duration::hours(2), false),
            (
                "in the future (clock skew)",
                now() + Duration::seconds(30),
                true,
            ),
        ];
        for (name, created, want) in table {
            assert_eq!(is_new_user(created, now(), grace), want, "{name}");
        }
        assert!(
            !is_new_user(now(), now(), std::time::Duration::ZERO),
            "grace 0 counts everyone"
        );
    }

    #[test]
    fn breaker_note_per_user_plan() {
        let cfg = cfg();
        let snap = compliant_account(&cfg);
        let minutes_old = |b: UserBuilder, m: i64| {
            let mut u = b.build();
            u.created = now() - Duration::minutes(m);
            u
        };
        // (case, user, counts, reduces, new user)
        let table: Vec<(&str, UserState, bool, Vec<AccessLoss>, bool)> = vec![
            (
                "existing console user without MFA joins the MFA group",
                user("a").password(Some(1), 10).build(),
                true,
                vec![AccessLoss::RequiresMfaWithoutDevice],
                false,
            ),
            (
                "existing console user with MFA joins the MFA group",
                user("a").password(Some(1), 10).mfa().build(),
                false,
                vec![],
                false,
            ),
            (
                "new console user without MFA (3 min old)",
                minutes_old(user("a").password(None, 0), 3),
                false,
                vec![AccessLoss::RequiresMfaWithoutDevice],
                true,
            ),
            (
                "user 2 h old without MFA",
                minutes_old(user("a").password(None, 0), 120),
                true,
                vec![AccessLoss::RequiresMfaWithoutDevice],
                false,
            ),
            (
                "unused console and no MFA",
                user("a").password(Some(60), 100).build(),
                true,
                vec![
                    AccessLoss::RemovesConsolePassword,
                    AccessLoss::RequiresMfaWithoutDevice,
                ],
                false,
            ),
            (
                "unused key",
                user("s").keys(&[key("AKIA1", 100, Some(50))]).build(),
                true,
                vec![AccessLoss::DeactivatesAccessKey],
                false,
            ),
            (
                "inactive key: only a mark",
                user("s")
                    .keys(&[inactive(key("AKIA1", 100, Some(76)))])
                    .build(),
                false,
                vec![],
                false,
            ),
            (
                "compliant",
                user("a").password(Some(1), 10).mfa().in_baseline().build(),
                false,
                vec![],
                false,
            ),
        ];
        for (name, u, counts, reduces, new_user) in table {
            let p = plan_user(&u, &snap, &cfg, now()).unwrap();
            assert_eq!(p.breaker.counts, counts, "{name}: {:?}", p.actions);
            assert_eq!(p.counts_toward_breaker(), counts, "{name}");
            assert_eq!(p.breaker.reduces, reduces, "{name}");
            assert_eq!(p.breaker.new_user_created.is_some(), new_user, "{name}");
        }
        // Grace 0: the new user counts.
        let mut strict = cfg.clone();
        strict.safety.new_user_grace = crate::config::Secs::from_secs(0);
        let u = minutes_old(user("a").password(None, 0), 3);
        assert!(plan_user(&u, &snap, &strict, now()).unwrap().breaker.counts);
        // What people read.
        let p = plan_user(&u, &snap, &cfg, now()).unwrap();
        assert_eq!(
            p.breaker.describe(now()).as_deref(),
            Some("new user (created 3 min ago): not counted by the breaker (puts a user without an MFA device under the MFA policy)")
        );
        let p = plan_user(
            &user("a")
                .password(Some(60), 100)
                .mfa()
                .in_baseline()
                .build(),
            &snap,
            &cfg,
            now(),
        )
        .unwrap();
        assert_eq!(
            p.breaker.describe(now()).as_deref(),
            Some("counts toward the breaker: removes the console password")
        );
        let p = plan_user(
            &user("a").password(Some(1), 10).mfa().build(),
            &snap,
            &cfg,
            now(),
        )
        .unwrap();
        assert_eq!(p.breaker.describe(now()), None, "takes nothing away");
        // Exempt users have no actions and never count.
        let p = plan_user(
            &user("b")
                .tag(EXEMPT_TAG, "true")
                .password(None, 300)
                .build(),
            &snap,
            &cfg,
            now(),
        )
        .unwrap();
        assert!(!p.breaker.counts && p.actions.is_empty());
        let plan = Plan {
            account_actions: vec![],
            account_findings: vec![],
            users: vec![
                plan_user(
                    &user("x").password(Some(60), 100).build(),
                    &snap,
                    &cfg,
                    now(),
                )
                .unwrap(),
                plan_user(
                    &user("y").password(Some(1), 10).mfa().build(),
                    &snap,
                    &cfg,
                    now(),
                )
                .unwrap(),
            ],
        };
        assert_eq!((plan.users_changed(), plan.users_losing_access()), (2, 1));
    }

    #[test]
    fn password_policy_never_weakens_a_stronger_field() {
        let cfg = cfg();
        let have = PasswordPolicyState {
            minimum_length: 20,
            max_age_days: 30,
            reuse_prevention: 5,
            ..Default::default()
        };
        let p = stronger_password_policy(Some(&have), &cfg);
        assert_eq!(p.minimum_length, 20);
        assert_eq!(p.max_age_days, 30);
        assert_eq!(p.reuse_prevention, 24);
        assert!(p.require_symbols);
    }
}
