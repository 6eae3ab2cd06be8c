//! The plan: (observed state, baseline, now) → the writes that bring the account onto the
//! baseline, each with its reason. Pure; [`crate::apply`] executes it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::baseline::checks::{Check, Finding, UserVerdict};
use crate::baseline::policies::desired_policies;
use crate::config::{Config, Delivery, INACTIVE_SINCE_TAG_PREFIX, ROTATION_TAG_PREFIX};
use crate::error::Result;
use crate::inventory::{AccountSnapshot, PasswordPolicyState, UserState};
mod access_loss;
mod account;
pub mod cis;
pub mod rotation;
mod user;

pub use access_loss::{is_new_user, reduces_access, AccessLoss, BreakerNote};
pub use account::{plan_account_level, stronger_password_policy};
pub use rotation::{orphan_candidate, Phase, RotationTag, ORPHAN_AFTER, ORPHAN_BEFORE};
use user::plan_user_with;
pub use user::{inactive_marks, InactiveMark};

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
    /// Make a user whose console password is older than the password policy's maximum age
    /// set a new one at the next sign-in (UpdateLoginProfile PasswordResetRequired).
    RequirePasswordReset {
        user: String,
        /// When the password was last set, as observed: recorded in the
        /// `iam-warden/password-reset` tag so that the same password is never reset twice.
        changed: DateTime<Utc>,
        /// The password's age in whole days when planned.
        age_days: i64,
    },
    /// Deactivate an exposed access key at once and tag it quarantined. Never planned by
    /// the planner: `controller::quarantine` builds it from an AWS Health event or AWS's
    /// quarantine policy, resolves the key live, and applies it outside the plan (no write
    /// limiter, no breaker).
    QuarantineAccessKey {
        user: String,
        key_id: String,
    },
    /// Rotate one key, as one action: tag the intent (phase rotating), CreateAccessKey,
    /// store the new key (delivery), tag the old key draining. Resumes an unfinished
    /// rotation (a new key whose secret was not stored is deleted first).
    RotateAccessKey {
        user: String,
        key: KeyRef,
        delivery: Delivery,
        /// The secret or parameter name (not secret).
        secret_name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        kms_key_id: Option<String>,
        /// The owner to tag the secret with.
        #[serde(skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        /// `rotation.store_retry`: after a failed store, no new key before this long.
        store_retry_secs: u64,
    },
    /// Deactivate a rotated key once drained (checked live again: the new key used, this
    /// key quiet for `drain_quiet_secs`), or forced after grace.
    DeactivateRotatedKey {
        user: String,
        key: KeyRef,
        /// The key that replaces it (`None`: the user's other key, delivery = none).
        new_key: Option<String>,
        drain_quiet_secs: u64,
        force: bool,
    },
    /// Delete an inactive key past its recovery window (rotation-deactivated, or making
    /// room for a rotation).
    DeleteRotatedKey {
        user: String,
        key: KeyRef,
    },
    /// Record a phase of one key's rotation in its tag (warned, stuck, ...).
    SetRotationPhase {
        user: String,
        key: KeyRef,
        phase: Phase,
        #[serde(skip_serializing_if = "Option::is_none")]
        new_key: Option<String>,
    },
    /// Remove the rotation tag of a key that no longer exists.
    ClearRotationTag {
        user: String,
        key_id: String,
    },
    /// Delete a server certificate that has expired (CIS 1.18; opt-in,
    /// `cis.delete_expired_server_certificates`).
    DeleteServerCertificate {
        name: String,
        arn: String,
    },
    /// Detach a managed policy from a user (CIS 1.21: `AWSCloudShellFullAccess`; opt-in,
    /// `cis.detach_cloudshell_full_access`). Takes the policy's access away: counted.
    DetachUserPolicy {
        user: String,
        policy_arn: String,
    },
    /// Detach a managed policy from a group (CIS 1.21). `members`: the group's existing
    /// members who lose the policy's access, counted by the breaker.
    DetachGroupPolicy {
        group: String,
        policy_arn: String,
        members: Vec<String>,
    },
    /// Detach a managed policy from a role (CIS 1.21). A role is not a user: not counted.
    DetachRolePolicy {
        role: String,
        policy_arn: String,
    },
    /// Move a managed policy attached to a user directly into `group` (CIS 1.14; opt-in,
    /// `cis.move_direct_policies_to_groups`): ensure the group (made by iam-warden), attach
    /// the policy to it, add the user, and only then detach the policy from the user. Each
    /// step is idempotent; access never drops, so it is not counted.
    MoveUserPolicyToGroup {
        user: String,
        policy_arn: String,
        group: String,
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
            Action::RequirePasswordReset { .. } => "require_password_reset",
            Action::QuarantineAccessKey { .. } => "quarantine_access_key",
            Action::RotateAccessKey { .. } => "rotate_access_key",
            Action::DeactivateRotatedKey { .. } => "deactivate_rotated_key",
            Action::DeleteRotatedKey { .. } => "delete_rotated_key",
            Action::SetRotationPhase { .. } => "set_rotation_phase",
            Action::ClearRotationTag { .. } => "clear_rotation_tag",
            Action::DeleteServerCertificate { .. } => "delete_server_certificate",
            Action::DetachUserPolicy { .. } => "detach_user_policy",
            Action::DetachGroupPolicy { .. } => "detach_group_policy",
            Action::DetachRolePolicy { .. } => "detach_role_policy",
            Action::MoveUserPolicyToGroup { .. } => "move_user_policy_to_group",
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
            | Action::ClearKeyMark { user, .. }
            | Action::RequirePasswordReset { user, .. }
            | Action::QuarantineAccessKey { user, .. } => Some(user),
            Action::RotateAccessKey { user, .. }
            | Action::DeactivateRotatedKey { user, .. }
            | Action::DeleteRotatedKey { user, .. }
            | Action::SetRotationPhase { user, .. }
            | Action::ClearRotationTag { user, .. } => Some(user),
            Action::DetachUserPolicy { user, .. } | Action::MoveUserPolicyToGroup { user, .. } => {
                Some(user)
            }
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
            | Action::MarkKeyInactive { key, .. }
            | Action::DeactivateRotatedKey { key, .. }
            | Action::DeleteRotatedKey { key, .. } => key.to_string(),
            Action::RotateAccessKey {
                key, secret_name, ..
            } => format!("{key} -> {secret_name}"),
            Action::SetRotationPhase { key, phase, .. } => format!("{key} -> {phase}"),
            Action::ClearKeyMark { key_id, .. } => format!("{INACTIVE_SINCE_TAG_PREFIX}{key_id}"),
            Action::RequirePasswordReset { user, .. } => format!("login profile of {user}"),
            Action::QuarantineAccessKey { key_id, .. } => key_id.clone(),
            Action::ClearRotationTag { key_id, .. } => format!("{ROTATION_TAG_PREFIX}{key_id}"),
            Action::DeleteServerCertificate { arn, .. } => arn.clone(),
            Action::DetachUserPolicy { policy_arn, .. } => policy_arn.clone(),
            Action::DetachGroupPolicy {
                group, policy_arn, ..
            } => format!("{group} -> {policy_arn}"),
            Action::DetachRolePolicy { role, policy_arn } => format!("{role} -> {policy_arn}"),
            Action::MoveUserPolicyToGroup {
                policy_arn, group, ..
            } => format!("{policy_arn} -> {group}"),
        }
    }

    /// The users an account-level action takes access away from (what the breaker counts
    /// beyond the users' own plans): the members of a group losing a policy.
    pub fn members_losing_access(&self) -> &[String] {
        match self {
            Action::DetachGroupPolicy { members, .. } => members.as_slice(),
            _ => &[],
        }
    }
}

/// A planned action that is not applied, and why (iam-warden's own identity, a group with
/// an exempt member): journaled as skipped by `enforce` and the daemon's account reconcile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedAction {
    #[serde(flatten)]
    pub planned: PlannedAction,
    pub skipped: String,
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
    /// When the next rotation phase of this user is due by time alone (`None`: nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_due: Option<DateTime<Utc>>,
}

impl UserPlan {
    /// The plan takes access away from an existing user: the breaker counts it.
    pub fn counts_toward_breaker(&self) -> bool {
        self.breaker.counts
    }
}
/// The plan for the whole account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub account_actions: Vec<PlannedAction>,
    pub account_findings: Vec<Finding>,
    pub users: Vec<UserPlan>,
    /// Opt-in CIS actions left out on purpose (iam-warden's own role, a group with an
    /// exempt member), each with the reason: journaled as skipped, never applied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_skipped: Vec<SkippedAction>,
}

impl Plan {
    /// Users with at least one action.
    pub fn users_changed(&self) -> usize {
        self.users.iter().filter(|u| !u.actions.is_empty()).count()
    }

    /// Users whose existing access the plan reduces (what the blast-radius breaker
    /// counts): those whose own plan does, and the members of a group losing a policy.
    pub fn users_losing_access(&self) -> usize {
        let mut names: std::collections::BTreeSet<&str> = self
            .users
            .iter()
            .filter(|u| u.breaker.counts)
            .map(|u| u.verdict.user.as_str())
            .collect();
        for a in &self.account_actions {
            names.extend(a.action.members_losing_access().iter().map(String::as_str));
        }
        names.len()
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
    let (mut account_actions, account_findings) = plan_account_level(snap, cfg, &desired);
    let (cis, account_skipped) = cis::account_actions(snap, cfg, now);
    account_actions.extend(cis);
    let users = snap
        .users
        .iter()
        .map(|u| plan_user_with(u, snap, cfg, &desired, now))
        .collect();
    Ok(Plan {
        account_actions,
        account_findings,
        users,
        account_skipped,
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

#[cfg(test)]
mod tests;
