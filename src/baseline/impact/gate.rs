//! The pre-flight gate's decision (`safety.preview_window`): before a user is first put
//! under the MFA or source-IP policy, would the user's calls of the window have been
//! denied by it? Pure: (the user's tally, acceptance, policy) → [`Gate`]. Reading the
//! calls (`LookupEvents` for the user) is in `app::preflight`.

use super::tally::UserTally;
use crate::baseline::checks::Check;
use crate::baseline::plan::{Action, PlannedAction};
use crate::baseline::policies::BaselinePolicy;
use crate::config::{Safety, ACCEPT_IMPACT_TAG};
use crate::inventory::Tags;

/// What the gate read of the user's recent calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Preview<'a> {
    /// The user's judged calls of the window (an empty tally: no calls).
    Calls(&'a UserTally),
    /// CloudTrail could not be read (why, one line).
    Unreadable(&'a str),
    /// Not read: the operator accepted the impact beforehand.
    NotRead,
}

/// The gate's verdict on one policy-adding change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Apply. `note` says why despite denied calls (accepted), if so.
    Allow { note: Option<String> },
    /// Do not apply; `reason` (one line) says what would break and how to accept it.
    Hold {
        denied: u64,
        calls: u64,
        reason: String,
    },
}

impl Gate {
    pub fn holds(&self) -> bool {
        matches!(self, Gate::Hold { .. })
    }
}

/// The baseline policy a planned action first puts its user under, if it is one the gate
/// judges (adding the user to the policy's group or attaching the policy to the user);
/// every other action goes as before.
pub fn gated_policy(pa: &PlannedAction) -> Option<BaselinePolicy> {
    if !matches!(
        pa.action,
        Action::AddUserToGroup { .. } | Action::AttachUserPolicy { .. }
    ) {
        return None;
    }
    match pa.check {
        Some(Check::MfaPolicyMissing) => Some(BaselinePolicy::Mfa),
        Some(Check::SourceIpPolicyMissing) => Some(BaselinePolicy::SourceIp),
        _ => None,
    }
}

/// How the operator accepted the impact for `user`, if they did: the user tag
/// `iam-warden/accept-impact=true` or `safety.accept_impact_users`.
pub fn acceptance(user: &str, tags: &Tags, safety: &Safety) -> Option<String> {
    if tags
        .get(ACCEPT_IMPACT_TAG)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        Some(format!("tag {ACCEPT_IMPACT_TAG}=true"))
    } else if safety.accept_impact_users.iter().any(|u| u == user) {
        Some("safety.accept_impact_users".to_string())
    } else {
        None
    }
}

/// The calls of `t` the policy would have denied (a source-IP call has one reason, so
/// the reasons of one policy add up to its denied calls).
pub fn denied_by(t: &UserTally, policy: BaselinePolicy) -> u64 {
    t.by_reason
        .iter()
        .filter(|(r, _)| r.policy() == policy)
        .map(|(_, n)| n)
        .sum()
}

fn how_to_accept(user: &str) -> String {
    format!("to apply anyway tag {user} {ACCEPT_IMPACT_TAG}=true or add it to safety.accept_impact_users")
}

/// Decide one change: putting `user` under `policy` (named `policy_name`), with its calls
/// of the last `window` (e.g. `24h`).
pub fn decide(
    user: &str,
    policy: BaselinePolicy,
    policy_name: &str,
    window: &str,
    preview: Preview<'_>,
    accepted: Option<&str>,
) -> Gate {
    if let Some(by) = accepted {
        return Gate::Allow {
            note: Some(format!("pre-flight impact accepted by {by}")),
        };
    }
    match preview {
        Preview::NotRead => Gate::Hold {
            denied: 0,
            calls: 0,
            reason: format!(
                "held: the calls of the last {window} were not read; {}",
                how_to_accept(user)
            ),
        },
        Preview::Unreadable(e) => Gate::Hold {
            denied: 0,
            calls: 0,
            reason: format!(
                "held: cannot read CloudTrail: {e}; the pre-flight gate (safety.preview_window) never applies {policy_name} blind: allow cloudtrail:LookupEvents, or {}",
                how_to_accept(user)
            ),
        },
        Preview::Calls(t) => {
            let denied = denied_by(t, policy);
            if denied == 0 {
                return Gate::Allow { note: None };
            }
            let reasons: Vec<String> = t
                .by_reason
                .iter()
                .filter(|(r, _)| r.policy() == policy)
                .map(|(r, n)| format!("{} {n}", r.as_str()))
                .collect();
            Gate::Hold {
                denied,
                calls: t.calls,
                reason: format!(
                    "held: {denied} of {} calls of {user} in the last {window} would have been denied by {policy_name} ({}); {}",
                    t.calls,
                    reasons.join(", "),
                    how_to_accept(user)
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::impact::Reason;

    fn tally(calls: u64, reasons: &[(Reason, u64)]) -> UserTally {
        let mut t = UserTally {
            calls,
            ..Default::default()
        };
        for (r, n) in reasons {
            t.by_reason.insert(*r, *n);
        }
        t
    }

    #[test]
    fn decisions() {
        use BaselinePolicy::{Mfa, SourceIp};
        let quiet = UserTally::default();
        let mixed = tally(
            10,
            &[
                (Reason::NoMfa, 4),
                (Reason::OutsideNetworks, 2),
                (Reason::Ipv6, 1),
            ],
        );
        let only_mfa = tally(5, &[(Reason::NoMfa, 5)]);
        // (policy, preview, accepted) -> (holds, denied, calls, reason contains)
        type Case<'a> = (
            BaselinePolicy,
            Preview<'a>,
            Option<&'a str>,
            bool,
            u64,
            u64,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (SourceIp, Preview::Calls(&quiet), None, false, 0, 0, ""),
            (Mfa, Preview::Calls(&quiet), None, false, 0, 0, ""),
            (SourceIp, Preview::Calls(&mixed), None, true, 3, 10, "3 of 10 calls of u in the last 24h would have been denied by P (outside-networks 2, ipv6 1)"),
            (Mfa, Preview::Calls(&mixed), None, true, 4, 10, "(no-mfa 4)"),
            // The other policy's denials do not hold this one.
            (SourceIp, Preview::Calls(&only_mfa), None, false, 0, 0, ""),
            (Mfa, Preview::Calls(&only_mfa), None, true, 5, 5, "tag u iam-warden/accept-impact=true"),
            (SourceIp, Preview::Calls(&mixed), Some("tag iam-warden/accept-impact=true"), false, 0, 0, "accepted by tag"),
            (Mfa, Preview::NotRead, Some("safety.accept_impact_users"), false, 0, 0, "accepted by safety.accept_impact_users"),
            // Fail safe: never apply blind.
            (SourceIp, Preview::Unreadable("AccessDenied"), None, true, 0, 0, "cannot read CloudTrail: AccessDenied"),
            (Mfa, Preview::NotRead, None, true, 0, 0, "were not read"),
        ];
        for (i, (policy, preview, accepted, holds, d, c, text)) in cases.into_iter().enumerate() {
            let g = decide("u", policy, "P", "24h", preview, accepted);
            assert_eq!(g.holds(), holds, "case {i}: {g:?}");
            match &g {
                Gate::Hold {
                    denied,
                    calls,
                    reason,
                } => {
                    assert_eq!((*denied, *calls), (d, c), "case {i}");
                    assert!(reason.contains(text), "case {i}: {reason}");
                    assert!(!reason.contains('\n'), "case {i}: one line");
                }
                Gate::Allow { note } => {
                    assert_eq!(note.is_some(), accepted.is_some(), "case {i}");
                    assert!(note.as_deref().unwrap_or("").contains(text), "case {i}");
                }
            }
        }
    }

    #[test]
    fn only_the_policy_adding_actions_are_gated() {
        let pa = |action: Action, check: Option<Check>| PlannedAction {
            action,
            reason: String::new(),
            check,
        };
        let add = || Action::AddUserToGroup {
            user: "u".into(),
            group: "g".into(),
        };
        let attach = || Action::AttachUserPolicy {
            user: "u".into(),
            policy: "p".into(),
        };
        let cases = [
            (
                pa(add(), Some(Check::MfaPolicyMissing)),
                Some(BaselinePolicy::Mfa),
            ),
            (
                pa(attach(), Some(Check::MfaPolicyMissing)),
                Some(BaselinePolicy::Mfa),
            ),
            (
                pa(add(), Some(Check::SourceIpPolicyMissing)),
                Some(BaselinePolicy::SourceIp),
            ),
            (
                pa(attach(), Some(Check::SourceIpPolicyMissing)),
                Some(BaselinePolicy::SourceIp),
            ),
            (pa(add(), None), None),
            (
                pa(
                    Action::DeleteLoginProfile {
                        user: "u".into(),
                        unused_days: None,
                    },
                    Some(Check::ConsoleUnused),
                ),
                None,
            ),
            (
                pa(
                    Action::AttachGroupPolicy {
                        group: "g".into(),
                        policy: "p".into(),
                    },
                    Some(Check::MfaPolicyMissing),
                ),
                None,
            ),
        ];
        for (i, (p, want)) in cases.iter().enumerate() {
            assert_eq!(gated_policy(p), *want, "case {i}: {p:?}");
        }
    }

    #[test]
    fn acceptance_by_tag_or_config() {
        let mut safety = Safety::default();
        let tags = |t: &[(&str, &str)]| -> Tags {
            t.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(acceptance("u", &tags(&[]), &safety), None);
        assert_eq!(
            acceptance("u", &tags(&[(ACCEPT_IMPACT_TAG, "false")]), &safety),
            None
        );
        assert_eq!(
            acceptance("u", &tags(&[(ACCEPT_IMPACT_TAG, " TRUE ")]), &safety).as_deref(),
            Some("tag iam-warden/accept-impact=true")
        );
        safety.accept_impact_users = vec!["u".into()];
        assert_eq!(
            acceptance("u", &tags(&[]), &safety).as_deref(),
            Some("safety.accept_impact_users")
        );
        assert_eq!(acceptance("other", &tags(&[]), &safety), None);
    }
}
