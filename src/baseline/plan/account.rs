//! The account-level part of the plan: baseline policies, baseline groups, the password
//! policy.

use super::*;
use crate::baseline::checks::{password_policy_gaps, Check, Finding};
use crate::baseline::policies::{same_meaning, DesiredPolicy};
use crate::config::{Attach, Config};
use crate::inventory::{AccountSnapshot, PasswordPolicyState};

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
