//! The pre-flight gate (`safety.preview_window`, opt-in) on one user's plan, shared by
//! `plan` / `enforce --once` and the daemon's reconcile: before the plan first puts the
//! user under the MFA or source-IP policy, the user's calls of the window are read through
//! a [`TrafficReader`] (the app implements it with `LookupEvents`; the controller never
//! names a source) and `baseline::impact::gate` decides. A held change leaves the plan: it
//! becomes a `baseline-would-deny` finding, a `ChangeHeld` emit (log line + metric) and a
//! [`HeldChange`] the caller journals as skipped. Accepted users (tag or config) are not
//! read, nor is a user whose plan adds no such policy.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::baseline::checks::{classify, exemption, Check, Finding};
use crate::baseline::impact::gate::{acceptance, decide, gated_policy, Gate, Preview};
use crate::baseline::impact::{UserScope, UserTally};
use crate::baseline::plan::UserPlan;
use crate::baseline::policies::BaselinePolicy;
use crate::baseline::{BreakerNote, PlannedAction};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::inventory::UserState;
use crate::metrics::{ChangeHeld, Metrics};

/// A user's judged calls of a window, or why they could not be read (one line).
pub type TrafficRead<'a> =
    Pin<Box<dyn Future<Output = std::result::Result<UserTally, String>> + Send + 'a>>;

/// Reads one user's recent calls judged against the configured baseline.
pub trait TrafficReader: Send + Sync {
    /// The calls of `user` (in scope `scope`) from `start` to `end`.
    fn read<'a>(
        &'a self,
        user: &'a str,
        scope: UserScope,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> TrafficRead<'a>;
}

/// A policy-adding change the gate held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldChange {
    pub user: String,
    /// `mfa` or `source-ip`.
    pub policy: BaselinePolicy,
    /// Calls of the window the policy would have denied, and all judged calls (0 and 0
    /// when CloudTrail could not be read).
    pub denied: u64,
    pub calls: u64,
    /// One line: the counts, the policy, how to accept.
    pub reason: String,
    pub planned: PlannedAction,
}

fn policy_name(cfg: &Config, p: BaselinePolicy) -> &str {
    match p {
        BaselinePolicy::Mfa => &cfg.baseline.mfa_policy.name,
        BaselinePolicy::SourceIp => &cfg.baseline.source_ip_policy.name,
    }
}

/// Whether the gate would look at this plan at all: the gate is on and the plan first puts
/// the user under a baseline policy. (Cheap; no call.)
pub fn gates(cfg: &Config, plan: &UserPlan) -> bool {
    cfg.safety.preview_window.is_some() && plan.actions.iter().any(|a| gated_policy(a).is_some())
}

/// Gate `plan` (of `user`, read now): held changes are taken out of it (the breaker note is
/// made again from what is left), a finding is added for each, and they are returned.
/// Reads the user's traffic once, only when [`gates`] and the user is not accepted;
/// `reader` None (no way to read CloudTrail) holds like an unreadable trail.
pub async fn gate_user(
    cfg: &Config,
    reader: Option<&dyn TrafficReader>,
    user: &UserState,
    caller_arn: &str,
    plan: &mut UserPlan,
    now: DateTime<Utc>,
    metrics: Option<&Metrics>,
) -> Result<Vec<HeldChange>> {
    let mut held = Vec::new();
    let Some(window) = cfg.safety.preview_window else {
        return Ok(held);
    };
    if !gates(cfg, plan) {
        return Ok(held);
    }
    let start = now
        - chrono::Duration::from_std(window.get())
            .map_err(|e| Error::Config(format!("safety.preview_window is out of range: {e}")))?;
    let window_text = window.to_string();
    let name = user.name.as_str();
    let accepted = acceptance(name, &user.tags, &cfg.safety);
    let read = match (&accepted, reader) {
        (Some(_), _) => None,
        (None, Some(r)) => {
            let scope = UserScope {
                class: classify(user, cfg).0,
                exempt: exemption(user, cfg, caller_arn).is_some(),
            };
            Some(r.read(name, scope, start, now).await)
        }
        (None, None) => Some(Err(
            "no CloudTrail reader is configured for the pre-flight gate".to_string(),
        )),
    };
    let preview = match &read {
        None => Preview::NotRead,
        Some(Ok(t)) => Preview::Calls(t),
        Some(Err(e)) => Preview::Unreadable(e),
    };
    let mut keep = Vec::with_capacity(plan.actions.len());
    for mut pa in std::mem::take(&mut plan.actions) {
        let Some(policy) = gated_policy(&pa) else {
            keep.push(pa);
            continue;
        };
        let pname = policy_name(cfg, policy);
        match decide(
            name,
            policy,
            pname,
            &window_text,
            preview,
            accepted.as_deref(),
        ) {
            Gate::Allow { note } => {
                if let Some(n) = note {
                    pa.reason = format!("{}; {n}", pa.reason);
                }
                keep.push(pa);
            }
            Gate::Hold {
                denied,
                calls,
                reason,
            } => {
                ChangeHeld {
                    policy,
                    user: name,
                    denied,
                    calls,
                    reason: &reason,
                }
                .emit(metrics);
                plan.verdict
                    .findings
                    .push(Finding::new(Check::BaselineWouldDeny, reason.clone()));
                held.push(HeldChange {
                    user: name.to_string(),
                    policy,
                    denied,
                    calls,
                    reason,
                    planned: pa,
                });
            }
        }
    }
    plan.actions = keep;
    plan.breaker = BreakerNote::classify(user, &plan.actions, cfg, now);
    Ok(held)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::baseline::impact::Reason;
    use crate::baseline::plan::{plan_user, Action};
    use crate::baseline::testkit::*;
    use crate::config::{Secs, ACCEPT_IMPACT_TAG};

    /// One read: the user and the window.
    type Read = (String, DateTime<Utc>, DateTime<Utc>);

    /// A reader answering `answer` and noting each read; no AWS.
    struct Notes {
        answer: std::result::Result<UserTally, String>,
        reads: Mutex<Vec<Read>>,
    }

    impl TrafficReader for Notes {
        fn read<'a>(
            &'a self,
            user: &'a str,
            _scope: UserScope,
            start: DateTime<Utc>,
            end: DateTime<Utc>,
        ) -> TrafficRead<'a> {
            self.reads
                .lock()
                .unwrap()
                .push((user.to_string(), start, end));
            let answer = self.answer.clone();
            Box::pin(async move { answer })
        }
    }

    fn notes(answer: std::result::Result<UserTally, String>) -> Notes {
        Notes {
            answer,
            reads: Mutex::new(Vec::new()),
        }
    }

    fn tally(calls: u64, no_mfa: u64) -> UserTally {
        let mut t = UserTally {
            calls,
            denied: no_mfa,
            ..Default::default()
        };
        if no_mfa > 0 {
            t.by_reason.insert(Reason::NoMfa, no_mfa);
        }
        t
    }

    fn adds_to_mfa_group(plan: &UserPlan) -> bool {
        plan.actions
            .iter()
            .any(|a| matches!(&a.action, Action::AddUserToGroup { group, .. } if *group == cfg().baseline.mfa_policy.group))
    }

    /// (case, gate on, user, reader answer (None: no reader), reads, held, reason contains)
    #[tokio::test]
    async fn the_gate_reads_only_when_it_must_and_holds_what_would_break() {
        let console = || user("c").password(Some(1), 10);
        type Case = (
            &'static str,
            bool,
            UserState,
            Option<std::result::Result<UserTally, String>>,
            usize,
            bool,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "gate off",
                false,
                console().build(),
                Some(Ok(tally(5, 5))),
                0,
                false,
                "",
            ),
            (
                "already in the group: nothing gated, nothing read",
                true,
                console().in_baseline().build(),
                Some(Ok(tally(5, 5))),
                0,
                false,
                "",
            ),
            (
                "quiet",
                true,
                console().build(),
                Some(Ok(tally(0, 0))),
                1,
                false,
                "",
            ),
            (
                "calls the policy allows",
                true,
                console().build(),
                Some(Ok(tally(4, 0))),
                1,
                false,
                "",
            ),
            (
                "calls it would deny",
                true,
                console().build(),
                Some(Ok(tally(5, 3))),
                1,
                true,
                "3 of 5 calls of c in the last 1d",
            ),
            (
                "accepted by tag: not read",
                true,
                console().tag(ACCEPT_IMPACT_TAG, "true").build(),
                Some(Ok(tally(5, 3))),
                0,
                false,
                "",
            ),
            (
                "unreadable",
                true,
                console().build(),
                Some(Err("AccessDenied".into())),
                1,
                true,
                "cannot read CloudTrail: AccessDenied",
            ),
            (
                "no reader",
                true,
                console().build(),
                None,
                0,
                true,
                "no CloudTrail reader",
            ),
        ];
        let snap = snap_with_baseline_groups();
        for (name, on, u, answer, reads, holds, text) in cases {
            let mut cfg = cfg();
            if on {
                cfg.safety.preview_window = Some(Secs::from_secs(86_400));
            }
            let mut plan = plan_user(&u, &snap, &cfg, now()).unwrap();
            let planned = plan.actions.len();
            let reader = answer.map(notes);
            let held = gate_user(
                &cfg,
                reader.as_ref().map(|r| r as &dyn TrafficReader),
                &u,
                &snap.caller_arn,
                &mut plan,
                now(),
                None,
            )
            .await
            .unwrap();
            let got_reads = reader
                .as_ref()
                .map_or(Vec::new(), |r| r.reads.lock().unwrap().clone());
            assert_eq!(got_reads.len(), reads, "{name}: {got_reads:?}");
            for (who, start, end) in got_reads {
                assert_eq!(
                    (who.as_str(), start, end),
                    ("c", now() - chrono::Duration::days(1), now()),
                    "{name}"
                );
            }
            let would_deny: Vec<&Finding> = plan
                .verdict
                .findings
                .iter()
                .filter(|f| matches!(f.check, Check::BaselineWouldDeny))
                .collect();
            if holds {
                assert_eq!(held.len(), 1, "{name}: {held:?}");
                assert_eq!(held[0].policy, BaselinePolicy::Mfa, "{name}");
                assert!(held[0].reason.contains(text), "{name}: {}", held[0].reason);
                assert!(!adds_to_mfa_group(&plan), "{name}: left the plan");
                assert_eq!(plan.actions.len(), planned - 1, "{name}");
                assert_eq!(would_deny.len(), 1, "{name}");
                assert_eq!(would_deny[0].reason, held[0].reason, "{name}");
            } else {
                assert!(held.is_empty(), "{name}: {held:?}");
                assert!(would_deny.is_empty(), "{name}");
                assert_eq!(plan.actions.len(), planned, "{name}");
            }
            if name.starts_with("accepted") {
                assert!(
                    plan.actions
                        .iter()
                        .any(|a| a.reason.contains("accepted by tag")),
                    "{name}: {:?}",
                    plan.actions
                );
            }
        }
    }
}
