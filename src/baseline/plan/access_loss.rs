//! What a planned write takes away from a user (what the blast-radius breaker counts).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::*;
use crate::config::Config;
use crate::inventory::UserState;

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
    /// A managed policy detached from the user (CIS 1.21: AWSCloudShellFullAccess).
    DetachesPolicy,
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
            AccessLoss::DetachesPolicy => "detaches a managed policy from the user",
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
        Action::DeleteAccessKey { .. } | Action::DeleteRotatedKey { .. } => {
            Some(AccessLoss::DeletesAccessKey)
        }
        // Drained: the user uses the new key, so nothing is taken away. Forced after
        // grace: the old key is still in use, so it counts.
        Action::DeactivateRotatedKey { force, .. } => {
            force.then_some(AccessLoss::DeactivatesAccessKey)
        }
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
        // A forced password reset takes nothing away: the user signs in with the current
        // password and must choose a new one (the MFA policy lets a user without MFA do
        // that, `baseline.mfa_policy.allowed_without_mfa`). Not counted.
        Action::RequirePasswordReset { .. } => None,
        // An exposed key is an emergency, not baseline drift: it is deactivated at once and
        // never held by the breaker (it is not planned; `controller::quarantine` applies it
        // outside the plan, so this classification is never consulted for a window).
        Action::QuarantineAccessKey { .. } => None,
        Action::MarkKeyInactive { .. }
        | Action::ClearKeyMark { .. }
        | Action::RotateAccessKey { .. }
        | Action::SetRotationPhase { .. }
        | Action::ClearRotationTag { .. }
        | Action::CreatePolicy { .. }
        | Action::CreatePolicyVersion { .. }
        | Action::CreateGroup { .. }
        | Action::AttachGroupPolicy { .. }
        | Action::UpdatePasswordPolicy { .. } => None,
        // An expired certificate serves no one: no user loses access.
        Action::DeleteServerCertificate { .. } => None,
        Action::DetachUserPolicy { .. } => Some(AccessLoss::DetachesPolicy),
        // Account-level: the group's members are counted through
        // `Action::members_losing_access`; a role is not a user.
        Action::DetachGroupPolicy { .. } | Action::DetachRolePolicy { .. } => None,
        // The policy moves to a group the user joins before it is detached: the same
        // access throughout.
        Action::MoveUserPolicyToGroup { .. } => None,
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
