//! The opt-in CIS actions (`[cis]`): expired server certificates deleted (1.18),
//! `AWSCloudShellFullAccess` detached from users, groups and roles (1.21), a user's
//! directly attached managed policies moved into per-policy groups (1.14). Pure.
//!
//! Never touched: exempt users (their plan is empty), a group with an exempt member (or
//! listed in `exemptions.groups`), iam-warden's own user or role; those left out on
//! purpose are returned as [`SkippedAction`]s, journaled as skipped.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::*;
use crate::baseline::checks::{exemption, is_own_identity, Check, Finding, UserVerdict};
use crate::baseline::cis::{is_aws_policy, is_baseline_attachment, CLOUDSHELL_POLICY};
use crate::config::Config;
use crate::inventory::{arn_name, AccountSnapshot, UserState};

/// The prefix of the groups CIS 1.14's move makes: `iam-warden-direct-<policy name>`.
pub const DIRECT_GROUP_PREFIX: &str = "iam-warden-direct-";
/// IAM's limit on a group name.
pub const MAX_GROUP_NAME: usize = 128;

/// The group a directly attached policy named `policy` moves into:
/// `iam-warden-direct-<policy>`, within IAM's 128 characters and its character set
/// (`[A-Za-z0-9+=,.@_-]`; anything else becomes `-`). A name too long is cut and ends
/// with 8 hex digits of the SHA-256 of the whole policy name, so two long names sharing
/// a prefix get two groups.
pub fn direct_group_name(policy: &str) -> String {
    let clean: String = policy
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = format!("{DIRECT_GROUP_PREFIX}{clean}");
    if name.len() <= MAX_GROUP_NAME && clean == policy {
        return name;
    }
    let hash = Sha256::digest(policy.as_bytes());
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let keep = MAX_GROUP_NAME - DIRECT_GROUP_PREFIX.len() - 1 - hex.len();
    let cut: String = clean.chars().take(keep).collect();
    format!("{DIRECT_GROUP_PREFIX}{cut}-{hex}")
}

/// Whether role `name` (ARN `arn`) is iam-warden's own identity: the caller is the role
/// itself or a session of it (`arn:…:sts::ACCOUNT:assumed-role/NAME/SESSION`).
pub fn is_own_role(name: &str, arn: &str, caller_arn: &str) -> bool {
    if caller_arn.is_empty() {
        return false;
    }
    caller_arn == arn
        || caller_arn
            .split_once(":assumed-role/")
            .and_then(|(_, rest)| rest.split('/').next())
            .is_some_and(|role| role == name)
}

/// The account-level opt-in CIS actions, and those left out on purpose.
pub fn account_actions(
    snap: &AccountSnapshot,
    cfg: &Config,
    now: DateTime<Utc>,
) -> (Vec<PlannedAction>, Vec<SkippedAction>) {
    let mut actions = Vec::new();
    let mut skipped = Vec::new();
    let Some(facts) = snap.cis.as_ref().filter(|_| cfg.cis.enabled) else {
        return (actions, skipped);
    };
    if cfg.cis.delete_expired_server_certificates {
        actions.extend(facts.server_certificates.iter().filter_map(|c| {
            let expired = c.expiration.filter(|t| *t <= now)?;
            Some(PlannedAction {
                action: Action::DeleteServerCertificate {
                    name: c.name.clone(),
                    arn: c.arn.clone(),
                },
                reason: format!(
                    "server certificate {} expired {} (CIS 1.18)",
                    c.name,
                    expired.format("%Y-%m-%d")
                ),
                check: Some(Check::ServerCertificateExpired),
            })
        }));
    }
    if !cfg.cis.detach_cloudshell_full_access {
        return (actions, skipped);
    }
    let grace = cfg.safety.new_user_grace.get();
    for g in snap.groups.values() {
        for arn in g
            .attached_policies
            .iter()
            .filter(|a| is_aws_policy(a, CLOUDSHELL_POLICY))
        {
            let members: Vec<&UserState> = snap
                .users
                .iter()
                .filter(|u| u.groups.contains(&g.name))
                .collect();
            let exempt: Vec<String> = members
                .iter()
                .filter_map(|u| {
                    exemption(u, cfg, &snap.caller_arn).map(|why| format!("{} ({why})", u.name))
                })
                .collect();
            let counted: Vec<String> = members
                .iter()
                .filter(|u| !super::is_new_user(u.created, now, grace))
                .map(|u| u.name.clone())
                .collect();
            let planned = PlannedAction {
                action: Action::DetachGroupPolicy {
                    group: g.name.clone(),
                    policy_arn: arn.clone(),
                    members: counted,
                },
                reason: format!(
                    "{CLOUDSHELL_POLICY} is attached to group {} ({} member(s)) (CIS 1.21)",
                    g.name,
                    members.len()
                ),
                check: Some(Check::CloudShellFullAccess),
            };
            let why = if cfg.exemptions.groups.contains(&g.name) {
                Some("the group is listed in exemptions.groups".to_string())
            } else if !exempt.is_empty() {
                Some(format!(
                    "the group has exempt member(s) {}: detach it by hand or move them out",
                    exempt.join(", ")
                ))
            } else {
                None
            };
            match why {
                Some(skip) => skipped.push(SkippedAction {
                    planned,
                    skipped: skip,
                }),
                None => actions.push(planned),
            }
        }
    }
    // iam-warden's own user: never changed (exempt, so its plan is empty); said here.
    for u in snap
        .users
        .iter()
        .filter(|u| is_own_identity(u, &snap.caller_arn))
    {
        for arn in u
            .attached_policies
            .iter()
            .filter(|a| is_aws_policy(a, CLOUDSHELL_POLICY))
        {
            skipped.push(SkippedAction {
                planned: PlannedAction {
                    action: Action::DetachUserPolicy {
                        user: u.name.clone(),
                        policy_arn: arn.clone(),
                    },
                    reason: format!(
                        "{CLOUDSHELL_POLICY} is attached to user {} (CIS 1.21)",
                        u.name
                    ),
                    check: Some(Check::CloudShellFullAccess),
                },
                skipped: "iam-warden's own identity is never changed".into(),
            });
        }
    }
    for r in facts.roles.values() {
        for arn in r
            .attached_policies
            .iter()
            .filter(|a| is_aws_policy(a, CLOUDSHELL_POLICY))
        {
            let planned = PlannedAction {
                action: Action::DetachRolePolicy {
                    role: r.name.clone(),
                    policy_arn: arn.clone(),
                },
                reason: format!(
                    "{CLOUDSHELL_POLICY} is attached to role {} (CIS 1.21)",
                    r.name
                ),
                check: Some(Check::CloudShellFullAccess),
            };
            if is_own_role(&r.name, &r.arn, &snap.caller_arn) {
                skipped.push(SkippedAction {
                    planned,
                    skipped: "iam-warden's own identity is never changed".into(),
                });
            } else {
                actions.push(planned);
            }
        }
    }
    (actions, skipped)
}

/// One user's opt-in CIS actions (after the baseline's): detach `AWSCloudShellFullAccess`
/// (1.21), move the directly attached managed policies into per-policy groups (1.14),
/// within IAM's 10 groups per user (over it: a `quota-reached` finding). Called for
/// users that are not exempt (nor iam-warden's own identity).
pub(super) fn user_actions(
    user: &UserState,
    cfg: &Config,
    verdict: &mut UserVerdict,
    actions: &mut Vec<PlannedAction>,
) {
    let cis = &cfg.cis;
    if !cis.enabled {
        return;
    }
    let cloudshell =
        |a: &str| cis.detach_cloudshell_full_access && is_aws_policy(a, CLOUDSHELL_POLICY);
    for a in user
        .attached_policies
        .iter()
        .filter(|a| cloudshell(a.as_str()))
    {
        actions.push(PlannedAction {
            action: Action::DetachUserPolicy {
                user: user.name.clone(),
                policy_arn: a.clone(),
            },
            reason: format!(
                "{CLOUDSHELL_POLICY} is attached to user {} (CIS 1.21)",
                user.name
            ),
            check: Some(Check::CloudShellFullAccess),
        });
    }
    if !cis.move_direct_policies_to_groups {
        return;
    }
    let joining = actions
        .iter()
        .filter(|a| matches!(a.action, Action::AddUserToGroup { .. }))
        .count();
    let mut groups = user.groups.len() + joining;
    for a in &user.attached_policies {
        if cloudshell(a.as_str()) || is_baseline_attachment(a, cfg) {
            continue;
        }
        let policy = arn_name(a);
        let group = direct_group_name(policy);
        let member = user.groups.contains(&group);
        if !member && groups >= MAX_GROUPS_PER_USER {
            verdict.findings.push(Finding::new(
                Check::QuotaReached,
                format!(
                    "cannot move policy {policy} into group {group}: the user is already in {groups} groups (IAM allows {MAX_GROUPS_PER_USER})"
                ),
            ));
            continue;
        }
        if !member {
            groups += 1;
        }
        actions.push(PlannedAction {
            action: Action::MoveUserPolicyToGroup {
                user: user.name.clone(),
                policy_arn: a.clone(),
                group: group.clone(),
            },
            reason: format!(
                "policy {policy} is attached to user {} directly: moved into group {group}, access unchanged (CIS 1.14)",
                user.name
            ),
            check: Some(Check::UserPolicyAttached),
        });
    }
}

#[cfg(test)]
mod tests;
