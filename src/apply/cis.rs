//! The opt-in CIS writes: detaching a managed policy (1.21) and moving a user's directly
//! attached managed policy into an iam-warden group (1.14).
//!
//! The move is four idempotent steps, each journaled as its own write: the group (made
//! under `baseline.path`, the mark of iam-warden's groups: IAM groups take no tags), the
//! policy on it, the user in it, and only then the policy off the user. A pass stopped
//! between two steps leaves the user with at least the access it had; the next pass
//! finds the policy still on the user, plans the move again and finishes it.

use super::*;
use crate::inventory::arn_name;

/// What a policy is detached from.
pub(super) enum Principal<'a> {
    User(&'a str),
    Group(&'a str),
    Role(&'a str),
}

impl Applier {
    /// DetachUserPolicy / DetachGroupPolicy / DetachRolePolicy. Already detached (or the
    /// principal gone): NoSuchEntity, reported as skipped by [`Applier::apply`].
    pub(super) async fn detach_policy(
        &self,
        from: Principal<'_>,
        policy_arn: &str,
    ) -> Result<Outcome> {
        let iam = &self.clients.iam;
        match from {
            Principal::User(user) => iam
                .detach_user_policy()
                .user_name(user)
                .policy_arn(policy_arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_error("iam", "DetachUserPolicy", e))?,
            Principal::Group(group) => iam
                .detach_group_policy()
                .group_name(group)
                .policy_arn(policy_arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_error("iam", "DetachGroupPolicy", e))?,
            Principal::Role(role) => iam
                .detach_role_policy()
                .role_name(role)
                .policy_arn(policy_arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_error("iam", "DetachRolePolicy", e))?,
        }
        Ok(Outcome::Applied)
    }

    /// One journaled write of a multi-step action: the intent, the call, the outcome.
    async fn step<F>(
        &self,
        action: &str,
        user: Option<&str>,
        target: &str,
        reason: &str,
        send: F,
    ) -> Result<()>
    where
        F: std::future::Future<Output = Result<()>>,
    {
        self.intent(action, user, target, reason)?;
        let r = send.await;
        let outcome = match &r {
            Ok(()) => Outcome::Applied,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.record(action, user, target, reason, &outcome);
        r
    }

    /// Move `policy_arn` from `user` into `group` (see the module's doc). An existing group
    /// that is not iam-warden's (another path) or that carries another policy is an
    /// error: never taken over, never a way to grant more.
    pub(super) async fn move_user_policy(
        &self,
        user: &str,
        policy_arn: &str,
        group: &str,
        reason: &str,
    ) -> Result<Outcome> {
        let iam = &self.clients.iam;
        let policy = arn_name(policy_arn);
        match iam.get_group().group_name(group).max_items(1).send().await {
            Ok(out) => {
                let path = out.group().map(|g| g.path()).unwrap_or_default();
                if path != self.path {
                    return Err(Error::Other(format!(
                        "group {group} exists at path {path}, not iam-warden's {}: it was not made by iam-warden and is not taken over; rename that group or move policy {policy} off user {user} by hand",
                        self.path
                    )));
                }
            }
            Err(e) => {
                let e = aws_error("iam", "GetGroup", e);
                if !e.is_not_found() {
                    return Err(e);
                }
                let path = &self.path;
                self.step("create_group", None, group, reason, async {
                    iam.create_group()
                        .group_name(group)
                        .path(path)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("iam", "CreateGroup", e))
                })
                .await?;
            }
        }
        let attached = iam
            .list_attached_group_policies()
            .group_name(group)
            .max_items(100)
            .send()
            .await
            .map_err(|e| aws_error("iam", "ListAttachedGroupPolicies", e))?;
        let others: Vec<&str> = attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn())
            .filter(|a| *a != policy_arn)
            .collect();
        if !others.is_empty() {
            return Err(Error::Other(format!(
                "group {group} carries other policies ({}): adding user {user} to it would grant more than {policy}; detach them from the group or move the policy by hand",
                others.join(", ")
            )));
        }
        if attached.attached_policies().is_empty() {
            let target = format!("{group} <- {policy_arn}");
            self.step("attach_group_policy", None, &target, reason, async {
                iam.attach_group_policy()
                    .group_name(group)
                    .policy_arn(policy_arn)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| aws_error("iam", "AttachGroupPolicy", e))
            })
            .await?;
        }
        let groups = iam
            .list_groups_for_user()
            .user_name(user)
            .send()
            .await
            .map_err(|e| aws_error("iam", "ListGroupsForUser", e))?;
        if !groups.groups().iter().any(|g| g.group_name() == group) {
            self.step("add_user_to_group", Some(user), group, reason, async {
                iam.add_user_to_group()
                    .user_name(user)
                    .group_name(group)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| aws_error("iam", "AddUserToGroup", e))
            })
            .await?;
        }
        // Both done: the group gives the user the policy; only now off the user.
        let detached = self
            .step(
                "detach_user_policy",
                Some(user),
                policy_arn,
                reason,
                async {
                    iam.detach_user_policy()
                        .user_name(user)
                        .policy_arn(policy_arn)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("iam", "DetachUserPolicy", e))
                },
            )
            .await;
        match detached {
            Ok(()) => Ok(Outcome::Applied),
            // Detached meanwhile: the move is complete.
            Err(e) if e.is_not_found() => Ok(Outcome::Applied),
            Err(e) => Err(e),
        }
    }
}
