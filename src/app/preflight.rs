//! The pre-flight gate (`safety.preview_window`, opt-in) for `plan` / `enforce` and the
//! daemon: [`LookupReader`] reads one user's CloudTrail calls of the window (one
//! `LookupEvents` query with `Username` = the user, paced by the process's
//! [`LookupPacer`], shared with the daemon's CloudTrail poller) and judges them with
//! `baseline::impact`; `controller::preflight::gate_user` decides per user (the decision
//! itself is `baseline::impact::gate`). A held change leaves the plan: it becomes a
//! `baseline-would-deny` finding and a [`HeldChange`] (journaled as skipped).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::aws::Clients;
use crate::baseline::impact::{evaluate, Rules, Tally, UserScope};
use crate::baseline::Plan;
use crate::config::Config;
use crate::controller::preflight::{gate_user, gates, TrafficRead, TrafficReader};
use crate::error::Result;
use crate::inventory::AccountSnapshot;
use crate::metrics::Metrics;
use crate::sources::trail::{replay_lookup_paced, LookupPacer};

pub use crate::controller::preflight::HeldChange;

/// Reads a user's calls with `LookupEvents` and judges them against the configured
/// baseline of the account.
pub struct LookupReader {
    cloudtrail: aws_sdk_cloudtrail::Client,
    rules: Rules,
    pacer: LookupPacer,
}

impl LookupReader {
    /// A reader for the account `account_id` on `pacer` (share the process's).
    pub fn new(
        cfg: &Config,
        clients: &Clients,
        account_id: &str,
        pacer: LookupPacer,
    ) -> Result<LookupReader> {
        Ok(LookupReader {
            cloudtrail: clients.cloudtrail().clone(),
            rules: Rules::from_config(cfg, account_id)?,
            pacer,
        })
    }
}

impl TrafficReader for LookupReader {
    fn read<'a>(
        &'a self,
        user: &'a str,
        scope: UserScope,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> TrafficRead<'a> {
        Box::pin(async move {
            let scopes = HashMap::from([(user.to_string(), scope)]);
            let mut tally = Tally::default();
            replay_lookup_paced(
                &self.cloudtrail,
                &self.pacer,
                Some(user),
                start,
                end,
                |r| tally.add(&evaluate(r, &scopes, &self.rules)),
                |_| {},
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(tally.users.remove(user).unwrap_or_default())
        })
    }
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
    let mut held = Vec::new();
    if !plan.users.iter().any(|u| gates(cfg, u)) {
        return Ok(held);
    }
    let reader = LookupReader::new(cfg, clients, &snap.account_id, LookupPacer::new())?;
    for u in &mut plan.users {
        let Some(state) = snap.users.iter().find(|s| s.name == u.verdict.user) else {
            continue;
        };
        held.extend(gate_user(cfg, Some(&reader), state, &snap.caller_arn, u, now, metrics).await?);
    }
    Ok(held)
}
