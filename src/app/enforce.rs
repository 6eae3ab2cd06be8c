//! `iam-warden plan` and `enforce --once`: one pass (read, plan, breaker, apply or
//! journal would-be writes) and its report with the text renderer.

use chrono::{DateTime, Utc};

use crate::aws::Clients;
use crate::config::Config;
use crate::error::Result;
use crate::inventory;

/// The blast-radius breaker's verdict for one pass (the pure breaker's [`Verdict`]).
pub use crate::baseline::breaker::Verdict as Breaker;

/// The result of `plan` or `enforce --once`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnforceReport {
    pub schema: &'static str,
    pub mode: crate::config::Mode,
    /// `plan` only shows; `enforce` applies (or, in dry-run, journals would-be writes).
    pub command: &'static str,
    pub evaluated_at: DateTime<Utc>,
    pub account_id: String,
    pub breaker: Breaker,
    pub plan: crate::baseline::Plan,
    /// Outcomes, in the order applied (empty for `plan`; when the breaker blocks, the
    /// users who would lose access have none).
    pub results: Vec<crate::apply::ActionResult>,
    /// Changes the pre-flight gate (`safety.preview_window`) held: not in `plan`, not
    /// applied (journaled as skipped by `enforce`).
    pub held: Vec<crate::app::preflight::HeldChange>,
    pub aws_calls: u64,
    pub aws_write_calls: u64,
}

impl EnforceReport {
    pub fn failed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, crate::apply::Outcome::Failed(_)))
            .count()
    }

    /// 0 ok / nothing to do, 1 changes pending (plan, dry-run) or failures (enforce),
    /// 3 breaker tripped.
    pub fn exit_code(&self) -> u8 {
        if self.breaker.blocks() {
            3
        } else if self.command == "plan" || self.mode == crate::config::Mode::DryRun {
            u8::from(!self.plan.is_empty() || !self.held.is_empty())
        } else {
            u8::from(self.failed() > 0)
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_text(&self) -> String {
        use crate::apply::Outcome;
        use crate::baseline::{Check, PlannedAction};
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "iam-warden {} of account {} at {} (mode {})",
            self.command,
            self.account_id,
            self.evaluated_at.format("%Y-%m-%d %H:%M:%SZ"),
            self.mode
        );
        if self.command == "enforce" && self.mode == crate::config::Mode::DryRun {
            let _ = writeln!(out, "dry-run: nothing was changed; the would-be writes are in the journal. Set mode = \"enforce\" (or IAM_WARDEN_MODE=enforce) to apply.");
        }
        let _ = writeln!(
            out,
            "\n{} changes for {} users and the account",
            self.plan.action_count(),
            self.plan.users_changed()
        );
        if !self.breaker.tripped {
            let _ = writeln!(
                out,
                "breaker: {} (counted: users whose existing access would be reduced; new users and changes that take nothing away are not)",
                self.breaker.describe()
            );
        } else {
            let (state, advice) = if self.breaker.overridden {
                ("OVERRIDDEN", "")
            } else {
                ("TRIPPED", " The users who would lose access are not changed; the others are. Review the plan, then re-run with --confirm-large-change (or set safety.confirm_large_change = true).")
            };
            let _ = writeln!(
                out,
                "\nBLAST-RADIUS BREAKER {state}: {}.{advice}",
                self.breaker.describe()
            );
        }
        let blocked = |u: &crate::baseline::UserPlan| {
            self.command == "enforce" && self.breaker.blocks() && u.counts_toward_breaker()
        };
        let line = |out: &mut String, pa: &PlannedAction, held: bool| {
            let o = match self
                .results
                .iter()
                .find(|r| &r.planned == pa)
                .map(|r| &r.outcome)
            {
                Some(Outcome::Applied) => " -> applied".to_string(),
                Some(Outcome::DryRun) => " -> dry-run".to_string(),
                Some(Outcome::Skipped(s)) => format!(" -> skipped: {s}"),
                Some(Outcome::Failed(s)) => format!(" -> FAILED: {s}"),
                None if held => " -> not applied: breaker tripped".to_string(),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  {} {}: {}{o}",
                pa.action.name(),
                pa.action.target(),
                pa.reason
            );
        };
        if !self.plan.account_actions.is_empty() {
            let _ = writeln!(out, "\naccount:");
            for pa in &self.plan.account_actions {
                line(&mut out, pa, false);
            }
        }
        for u in self.plan.users.iter().filter(|u| !u.actions.is_empty()) {
            let _ = writeln!(out, "\n{}:", u.verdict.user);
            if let Some(note) = u.breaker.describe(self.evaluated_at) {
                let _ = writeln!(out, "  ({note})");
            }
            let held = blocked(u);
            for pa in &u.actions {
                line(&mut out, pa, held);
            }
        }
        if !self.held.is_empty() {
            let _ = writeln!(
                out,
                "\nheld by the pre-flight gate (safety.preview_window), not applied:"
            );
            for h in &self.held {
                let _ = writeln!(
                    out,
                    "  {}: {} {}: {}",
                    h.user,
                    h.planned.action.name(),
                    h.planned.action.target(),
                    h.reason
                );
            }
        }
        let quota: Vec<_> = self
            .plan
            .users
            .iter()
            .flat_map(|u| {
                u.verdict
                    .findings
                    .iter()
                    .filter(|f| matches!(f.check, Check::QuotaReached | Check::RotationStuck))
                    .map(move |f| (u.verdict.user.as_str(), f))
            })
            .collect();
        if !quota.is_empty() {
            let _ = writeln!(out, "\nfindings that need a person:");
            for (u, f) in quota {
                let _ = writeln!(out, "  {u}: [{}] {}: {}", f.severity, f.check, f.reason);
            }
        }
        let mut due: Vec<_> = self
            .plan
            .users
            .iter()
            .filter_map(|u| u.next_due.map(|d| (d, u.verdict.user.as_str())))
            .collect();
        if !due.is_empty() {
            due.sort();
            let _ = writeln!(out, "\nnext key-rotation steps (earliest first):");
            for (d, u) in due.iter().take(20) {
                let _ = writeln!(out, "  {u}: due {}", d.format("%Y-%m-%d %H:%M:%SZ"));
            }
            if due.len() > 20 {
                let _ = writeln!(
                    out,
                    "  ... and {} more users (see --output json)",
                    due.len() - 20
                );
            }
        }
        let _ = writeln!(
            out,
            "\n{} AWS API calls ({} writes)",
            self.aws_calls, self.aws_write_calls
        );
        out
    }
}

/// Options of `plan` / `enforce --once`.
#[derive(Debug, Clone, Default)]
pub struct EnforceOptions {
    pub at: Option<DateTime<Utc>>,
    pub confirm_large_change: bool,
    /// `plan`: show only, no journal.
    pub plan_only: bool,
}

/// One pass: read, plan, check the breaker, then apply (enforce) or journal would-be
/// writes (dry-run). `plan_only` does neither.
pub async fn enforce(
    cfg: &Config,
    clients: &Clients,
    opts: &EnforceOptions,
) -> Result<EnforceReport> {
    use std::sync::Arc;
    let (calls0, writes0) = (clients.calls.total(), clients.calls.writes());
    let now = opts.at.unwrap_or_else(Utc::now);
    // A missing webhook signing key stops the pass before anything is read or written.
    let channels = if opts.plan_only {
        None
    } else {
        Some(crate::notify::Channels::load(&cfg.notifications)?)
    };
    // The CIS account facts only when an opt-in CIS action needs them (5 more calls).
    let snap = if cfg.cis.enforces() {
        let regions = cfg.cis.analyzer_regions(&cfg.aws.region);
        inventory::read_account_cis(clients, &regions).await?
    } else {
        inventory::read_account(clients).await?
    };
    let mut plan = crate::baseline::plan::plan_account(&snap, cfg, now)?;
    // The pre-flight gate (opt-in) takes the held changes out before the breaker counts.
    let held = crate::app::preflight::gate_plan(cfg, clients, &snap, &mut plan, now, None).await?;
    let breaker = Breaker::evaluate(
        plan.users_losing_access(),
        plan.users_changed(),
        snap.users.len(),
        &cfg.safety,
        opts.confirm_large_change,
    );
    let mut results = Vec::new();
    if let Some(channels) = channels {
        let journal = Arc::new(crate::journal::Journal::open(&cfg.journal_path())?);
        let notifier = crate::notify::Notifier::start(
            &cfg.notifications,
            channels,
            cfg.mode,
            &snap.account_id,
            clients,
            journal.clone(),
            None,
        );
        let applier = crate::apply::Applier::new(clients.clone(), cfg, journal, None, &snap)
            .with_notifier(notifier.clone());
        let blocks = breaker.blocks();
        if blocks {
            crate::controller::reconcile::journal_breaker(
                &applier,
                None,
                &breaker.describe(),
                "blast-radius breaker tripped; the users who would lose access are not changed",
            );
        }
        results.extend(applier.apply_all(&snap, &plan.account_actions, now).await);
        // Tripped: only the users whose changes take nothing away. Users are independent
        // (each user's actions stay in order): up to `controller.workers` at once, as in
        // the daemon, so the write limiter rather than each call's latency bounds the pass.
        use futures_util::stream::{self, StreamExt};
        let workers = usize::try_from(cfg.controller.workers).unwrap_or(1).max(1);
        let per_user: Vec<_> = stream::iter(
            plan.users
                .iter()
                .filter(|u| !blocks || !u.counts_toward_breaker())
                .filter(|u| !u.actions.is_empty())
                .map(|u| applier.apply_all(&snap, &u.actions, now)),
        )
        .buffered(workers)
        .collect()
        .await;
        results.extend(per_user.into_iter().flatten());
        crate::controller::reconcile::journal_held(&applier, &held);
        results.extend(held.iter().map(|h| crate::apply::ActionResult {
            planned: h.planned.clone(),
            outcome: crate::apply::Outcome::Skipped(h.reason.clone()),
        }));
        // The last notices are delivered before the command exits (bounded).
        let drain = crate::notify::Channels::worst_case(&cfg.notifications);
        notifier.shutdown(tokio::time::Instant::now() + drain).await;
    }
    Ok(EnforceReport {
        schema: "iam-warden.enforce/v1",
        mode: cfg.mode,
        command: if opts.plan_only { "plan" } else { "enforce" },
        evaluated_at: now,
        account_id: snap.account_id.clone(),
        breaker,
        plan,
        results,
        held,
        aws_calls: clients.calls.total() - calls0,
        aws_write_calls: clients.calls.writes() - writes0,
    })
}

/// `iam-warden reactivate USER ACCESS_KEY_ID`: put back a key the rotation deactivated
/// (journaled; in dry-run only journaled). Errors say why a key is refused.
pub async fn reactivate(
    cfg: &Config,
    clients: &Clients,
    user: &str,
    key_id: &str,
) -> Result<crate::apply::Outcome> {
    use std::sync::Arc;
    let (caller_arn, account_id) = clients.caller_identity().await?;
    let snap = inventory::AccountSnapshot {
        account_id,
        caller_arn,
        ..Default::default()
    };
    let channels = crate::notify::Channels::load(&cfg.notifications)?;
    let journal = Arc::new(crate::journal::Journal::open(&cfg.journal_path())?);
    let notifier = crate::notify::Notifier::start(
        &cfg.notifications,
        channels,
        cfg.mode,
        &snap.account_id,
        clients,
        journal.clone(),
        None,
    );
    let applier = crate::apply::Applier::new(clients.clone(), cfg, journal, None, &snap)
        .with_notifier(notifier.clone());
    let result = applier.reactivate(user, key_id, Utc::now()).await;
    // The key-reactivated notice is delivered before the command exits (bounded).
    let drain = crate::notify::Channels::worst_case(&cfg.notifications);
    notifier.shutdown(tokio::time::Instant::now() + drain).await;
    result
}
