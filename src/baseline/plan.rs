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
use crate::config::{AccessClass, Attach, Config, INACTIVE_SINCE_TAG_PREFIX};
use crate::error::Result;
use crate::inventory::{AccountSnapshot, PasswordPolicyState, UserState};

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
}

/// The plan for the whole account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub account_actions: Vec<PlannedAction>,
    pub account_findings: Vec<Finding>,
    pub users: Vec<UserPlan>,
}

impl Plan {
    /// Users with at least one action (what the blast-radius breaker counts).
    pub fn users_changed(&self) -> usize {
        self.users.iter().filter(|u| !u.actions.is_empty()).count()
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
        return UserPlan { verdict, actions };
    }
    let class = verdict.class;
    let b = &cfg.baseline;
    let cred = &b.credentials;

    // Baseline policies, through groups (default) or attached directly.
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

    // Console access.
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

    // Access keys: always by key, never "all keys of the user".
    let marks = inactive_marks(user);
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
        let since = k.last_used.unwrap_or(k.created);
        let idle = days_between(since, now);
        if k.active {
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
        } else if !cred.revoke_unused {
            // Only revocation deletes keys.
        } else if let Some(m) = mark {
            let inactive = days_between(m.since, now);
            let limit = i64::from(cred.delete_inactive_key_after_days);
            if inactive > limit {
                actions.push(PlannedAction {
                    action: Action::DeleteAccessKey { user: user.name.clone(), key, unused_days: cred.unused_days },
                    reason: format!(
                        "{} has been inactive for {inactive} days (since {}); deleted after {limit} days",
                        m.key_id,
                        m.since.format("%Y-%m-%d")
                    ),
                    check: Some(Check::KeyUnused),
                });
            }
        } else {
            actions.push(PlannedAction {
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
        }
    }
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
    UserPlan { verdict, actions }
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
