//! One user's part of the plan, step by step, and the inactive-since marks of its keys.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::*;
use crate::baseline::checks::{days_between, evaluate_user, Check, Finding, UserVerdict};
use crate::baseline::policies::DesiredPolicy;
use crate::config::{
    AccessClass, Attach, Config, Credentials, INACTIVE_SINCE_TAG_PREFIX, PASSWORD_RESET_TAG,
};
use crate::inventory::{AccessKeyState, AccountSnapshot, UserState};

/// The writes that bring one user to the baseline, in order: groups and policies, console
/// access, access keys, stale key marks.
pub(super) fn plan_user_with(
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
            next_due: None,
        };
    }
    plan_groups_and_policies(user, snap, cfg, desired, &mut verdict, &mut actions);
    super::cis::user_actions(user, cfg, &mut verdict, &mut actions);
    plan_console_access(user, cfg, &verdict, &mut actions);
    plan_password_reset(user, cfg, &verdict, now, &mut actions);
    let cred = &cfg.baseline.credentials;
    let unused = |k: &AccessKeyState| {
        cred.revoke_unused
            && days_between(k.last_used.unwrap_or(k.created), now) > i64::from(cred.unused_days)
    };
    let rotation = super::rotation::plan_rotation(user, cfg, now, &unused);
    let marks = inactive_marks(user);
    let used_marks = plan_keys(
        user,
        cfg,
        verdict.class,
        &marks,
        &rotation.owned,
        now,
        &mut actions,
    );
    plan_key_marks(user, &marks, &used_marks, &mut actions);
    actions.extend(rotation.actions);
    verdict.findings.extend(rotation.findings);
    let breaker = BreakerNote::classify(user, &actions, cfg, now);
    UserPlan {
        verdict,
        actions,
        breaker,
        next_due: rotation.next_due,
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
            crate::baseline::policies::BaselinePolicy::Mfa => (
                b.mfa_policy.applies_to.covers(class),
                Check::MfaPolicyMissing,
            ),
            crate::baseline::policies::BaselinePolicy::SourceIp => (
                b.source_ip_policy.applies_to.covers(class),
                Check::SourceIpPolicyMissing,
            ),
        };
        if !applies || crate::baseline::checks::has_policy(user, snap, &d.name) {
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

/// A console password older than the policy's maximum age must be changed at the next
/// sign-in, once per password: the `iam-warden/password-reset` tag records the password
/// (its last change) that a reset was required for. Off with `max_age_days = 0`,
/// `reset_expired = false` or the password policy disabled; not for users classified
/// programmatic, nor when the password is being removed anyway, nor when the password's
/// date is unknown (never a guess).
fn plan_password_reset(
    user: &UserState,
    cfg: &Config,
    verdict: &UserVerdict,
    now: DateTime<Utc>,
    actions: &mut Vec<PlannedAction>,
) {
    let pp = &cfg.baseline.password_policy;
    if !pp.enabled || !pp.reset_expired || pp.max_age_days == 0 {
        return;
    }
    if verdict.class == AccessClass::Programmatic
        || actions
            .iter()
            .any(|a| matches!(a.action, Action::DeleteLoginProfile { .. }))
    {
        return;
    }
    let Some(changed) = user.password.as_ref().and_then(|p| p.changed) else {
        return;
    };
    let age = days_between(changed, now);
    if age <= i64::from(pp.max_age_days) {
        return;
    }
    if password_reset_recorded(user).is_some_and(|r| r >= changed - chrono::Duration::seconds(1)) {
        return;
    }
    actions.push(PlannedAction {
        action: Action::RequirePasswordReset {
            user: user.name.clone(),
            changed,
            age_days: age,
        },
        reason: format!(
            "the console password is {age} days old, older than baseline.password_policy.max_age_days = {}; it must be changed at the next sign-in",
            pp.max_age_days
        ),
        check: None,
    });
}

/// The password change recorded in the `iam-warden/password-reset` tag (`changed=...`);
/// `None` without the tag or with a value that does not parse (then the reset is planned
/// again: harmless, and it rewrites the tag).
pub fn password_reset_recorded(user: &UserState) -> Option<DateTime<Utc>> {
    user.tags
        .get(PASSWORD_RESET_TAG)?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("changed="))
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Access keys: always by key, never "all keys of the user"; keys the rotation owns are
/// left to it. Returns the ids of the inactive-since marks that belong to an existing key.
fn plan_keys<'m>(
    user: &UserState,
    cfg: &Config,
    class: AccessClass,
    marks: &'m [InactiveMark],
    owned_by_rotation: &BTreeSet<usize>,
    now: DateTime<Utc>,
    actions: &mut Vec<PlannedAction>,
) -> BTreeSet<&'m str> {
    let cred = &cfg.baseline.credentials;
    let mut used_marks: BTreeSet<&str> = BTreeSet::new();
    for (i, k) in user.keys.iter().enumerate() {
        let mark = marks.iter().find(|m| m.matches(k.id.as_deref(), k.created));
        if let Some(m) = mark {
            used_marks.insert(m.key_id.as_str());
        }
        if owned_by_rotation.contains(&i) {
            // The rotation lifecycle decides for this key (its mark, if any, stays).
            continue;
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
