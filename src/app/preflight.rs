//! The pre-flight gate (`safety.preview_window`, opt-in): before `plan` / `enforce` first
//! puts a user under the MFA or source-IP policy, read that user's CloudTrail calls of the
//! window (one `LookupEvents` query with `Username` = the user, all users together within
//! CloudTrail's 2 requests per second), judge them with `baseline::impact`, and let
//! `baseline::impact::gate` decide. A held change leaves the plan: it becomes a
//! `baseline-would-deny` finding and a [`HeldChange`] (journaled as skipped by `enforce`).
//! Accepted users (tag or config) are not read.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::Clients;
use crate::baseline::checks::{Check, Finding};
use crate::baseline::impact::gate::{acceptance, decide, gated_policy, Gate, Preview};
use crate::baseline::impact::{evaluate, Rules, Tally, UserScope, UserTally};
use crate::baseline::policies::BaselinePolicy;
use crate::baseline::{BreakerNote, Plan, PlannedAction};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::inventory::AccountSnapshot;
use crate::metrics::{ChangeHeld, Metrics};
use crate::sources::trail::{lookup_pacer, replay_lookup_paced};

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

/// One user's judged calls from `start` to `end`, or why they could not be read.
async fn read_user(
    clients: &Clients,
    tick: &mut tokio::time::Interval,
    user: &str,
    scopes: &HashMap<String, UserScope>,
    rules: &Rules,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> std::result::Result<UserTally, String> {
    let mut tally = Tally::default();
    replay_lookup_paced(
        &clients.cloudtrail,
        tick,
        Some(user),
        start,
        end,
        |r| tally.add(&evaluate(r, scopes, rules)),
        |_| {},
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(tally.users.remove(user).unwrap_or_default())
}

/// Gate the plan: held changes are taken out of it (each user's breaker note is made again
/// from what is left) and returned. Does nothing when `safety.preview_window` is unset.
pub async fn gate_plan(
    cfg: &Config,
    clients: &Clients,
    snap: &AccountSnapshot,
    plan: &mut Plan,
    now: DateTime<Utc>,
    metrics: Option<&Metrics>,
) -> Result<Vec<HeldChange>> {
    let Some(window) = cfg.safety.preview_window else {
        return Ok(Vec::new());
    };
    let mut held = Vec::new();
    if !plan
        .users
        .iter()
        .any(|u| u.actions.iter().any(|a| gated_policy(a).is_some()))
    {
        return Ok(held);
    }
    let rules = Rules::from_config(cfg, &snap.account_id)?;
    let scopes = crate::app::impact::user_scopes(snap, cfg);
    let start = now
        - chrono::Duration::from_std(window.get())
            .map_err(|e| Error::Config(format!("safety.preview_window is out of range: {e}")))?;
    let window_text = window.to_string();
    let mut tick = lookup_pacer();
    for u in &mut plan.users {
        if !u.actions.iter().any(|a| gated_policy(a).is_some()) {
            continue;
        }
        let name = u.verdict.user.clone();
        let Some(state) = snap.users.iter().find(|s| s.name == name) else {
            continue;
        };
        let accepted = acceptance(&name, &state.tags, &cfg.safety);
        let read = match accepted {
            Some(_) => None,
            None => Some(read_user(clients, &mut tick, &name, &scopes, &rules, (start, now)).await),
        };
        let preview = match &read {
            None => Preview::NotRead,
            Some(Ok(t)) => Preview::Calls(t),
            Some(Err(e)) => Preview::Unreadable(e),
        };
        let mut keep = Vec::with_capacity(u.actions.len());
        for mut pa in std::mem::take(&mut u.actions) {
            let Some(policy) = gated_policy(&pa) else {
                keep.push(pa);
                continue;
            };
            let pname = policy_name(cfg, policy);
            match decide(
                &name,
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
                        user: &name,
                        denied,
                        calls,
                        reason: &reason,
                    }
                    .emit(metrics);
                    u.verdict
                        .findings
                        .push(Finding::new(Check::BaselineWouldDeny, reason.clone()));
                    held.push(HeldChange {
                        user: name.clone(),
                        policy,
                        denied,
                        calls,
                        reason,
                        planned: pa,
                    });
                }
            }
        }
        u.actions = keep;
        u.breaker = BreakerNote::classify(state, &u.actions, cfg, now);
    }
    Ok(held)
}
