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
    let (mut account_actions, account_findings) = plan_account_level(snap, cfg, &desired);
    account_actions.extend(account::cis_actions(snap, cfg, now));
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

#[cfg(test)]
mod tests;
