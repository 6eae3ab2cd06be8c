//! `audit`, `plan` and `enforce --once` across the accounts in scope
//! (`accounts.source = "list"` or `"organization"`): up to `accounts.concurrency`
//! accounts at once, each with its own clients (assumed role, pacing, call counter) and
//! its own report; an account that cannot be read is listed under `errors` and the others
//! carry on. With `source = "self"` the commands keep their single-account reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::accounts::{self, AccountError, Scope};
use crate::app::audit::{AuditReport, AUDIT_SCHEMA};
use crate::app::enforce::{EnforceOptions, EnforceReport};
use crate::aws::Clients;
use crate::baseline::checks::Check;
use crate::config::Config;
use crate::error::Result;

/// One account's outcome: its report, or why it could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct AccountRun<R> {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The account's clients, when its role could be assumed (for `audit --export`).
    #[serde(skip)]
    pub clients: Option<Clients>,
}

/// An account listed but left out.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

/// Run `work` for every account of `scope`, `accounts.concurrency` at once, in the
/// scope's order (by account id).
pub async fn for_each_account<R, F, Fut>(
    cfg: &Config,
    caller: &Clients,
    scope: &Scope,
    work: F,
) -> Vec<AccountRun<R>>
where
    F: Fn(Config, Clients) -> Fut,
    Fut: Future<Output = Result<R>>,
{
    let concurrency = usize::try_from(cfg.accounts.concurrency)
        .unwrap_or(1)
        .max(1);
    let work = &work;
    stream::iter(scope.targets.iter().map(|t| async move {
        let mut run = AccountRun {
            id: t.id.clone(),
            name: t.name.clone(),
            report: None,
            error: None,
            clients: None,
        };
        match accounts::connect(cfg, caller, t).await {
            Err(e) => run.error = Some(e),
            Ok(clients) => {
                match work(accounts::config_for(cfg, &t.id), clients.clone()).await {
                    Ok(r) => run.report = Some(r),
                    Err(e) => run.error = Some(e.to_string()),
                }
                run.clients = Some(clients);
            }
        }
        if let Some(e) = &run.error {
            tracing::warn!(account = %t.id, error = %e, "account not read");
        }
        run
    }))
    .buffered(concurrency)
    .collect()
    .await
}

fn errors<R>(runs: &[AccountRun<R>]) -> Vec<AccountError> {
    runs.iter()
        .filter_map(|r| {
            r.error.as_ref().map(|e| AccountError {
                id: r.id.clone(),
                name: r.name.clone(),
                error: e.clone(),
            })
        })
        .collect()
}

fn skipped(scope: &Scope) -> Vec<Skipped> {
    scope
        .skipped
        .iter()
        .map(|(id, reason)| Skipped {
            id: id.clone(),
            reason: reason.clone(),
        })
        .collect()
}

fn heading(id: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("account {id} ({n})"),
        None => format!("account {id}"),
    }
}

/// The per-account part of a multi-account text report, the same for `audit`, `plan` and
/// `enforce`: one section per account (`=== account … ===`, then its report as `text`
/// prints it, or `<unread>: <why>`), then the errors and the skipped accounts.
fn account_sections<R>(
    out: &mut String,
    runs: &[AccountRun<R>],
    errors: &[AccountError],
    skipped: &[Skipped],
    unread: &str,
    text: impl Fn(&R) -> String,
) {
    for a in runs {
        let _ = writeln!(out, "\n=== {} ===", heading(&a.id, a.name.as_deref()));
        match (&a.report, &a.error) {
            (Some(r), _) => out.push_str(&text(r)),
            (None, Some(e)) => {
                let _ = writeln!(out, "{unread}: {e}");
            }
            (None, None) => {}
        }
    }
    if !errors.is_empty() {
        let _ = writeln!(out, "\nerrors:");
        for e in errors {
            let _ = writeln!(out, "  {}: {}", e.id, e.error);
        }
    }
    if !skipped.is_empty() {
        let _ = writeln!(out, "\nskipped:");
        for x in skipped {
            let _ = writeln!(out, "  {}: {}", x.id, x.reason);
        }
    }
}

/// The totals of a multi-account audit.
#[derive(Debug, Clone, Serialize)]
pub struct MultiSummary {
    /// Accounts in scope, audited, and not readable.
    pub accounts: usize,
    pub audited: usize,
    pub failed: usize,
    pub users: usize,
    pub compliant: usize,
    pub violating: usize,
    pub exempt: usize,
    pub findings: usize,
    pub by_check: BTreeMap<&'static str, usize>,
}

/// `audit` across accounts (docs/audit-json.md: the `accounts` array).
#[derive(Debug, Clone, Serialize)]
pub struct MultiAudit {
    pub schema: &'static str,
    pub evaluated_at: DateTime<Utc>,
    /// `list` or `organization`.
    pub source: &'static str,
    /// The account iam-warden ran with.
    pub caller_account: String,
    pub summary: MultiSummary,
    pub accounts: Vec<AccountRun<AuditReport>>,
    pub errors: Vec<AccountError>,
    pub skipped: Vec<Skipped>,
    /// Every AWS call: discovery, AssumeRole and each account's.
    pub aws_calls: u64,
    /// The calls of discovery and AssumeRole (the caller's).
    pub discovery_aws_calls: u64,
}

/// Audit every account of `scope` at `now` (with the CIS benchmark view when `benchmark`).
pub async fn audit(
    cfg: &Config,
    caller: &Clients,
    scope: &Scope,
    now: DateTime<Utc>,
    benchmark: bool,
    discovery_calls_before: u64,
) -> MultiAudit {
    let runs = for_each_account(cfg, caller, scope, |c, clients| async move {
        crate::app::audit::audit_with(&c, &clients, now, benchmark).await
    })
    .await;
    let mut by_check: BTreeMap<&'static str, usize> =
        Check::ALL.iter().map(|c| (c.id(), 0)).collect();
    let reports: Vec<&AuditReport> = runs.iter().filter_map(|r| r.report.as_ref()).collect();
    for r in &reports {
        for (k, n) in &r.summary.by_check {
            *by_check.entry(*k).or_insert(0) += n;
        }
    }
    let sum = |f: fn(&AuditReport) -> usize| reports.iter().map(|r| f(r)).sum::<usize>();
    let summary = MultiSummary {
        accounts: runs.len(),
        audited: reports.len(),
        failed: runs.len() - reports.len(),
        users: sum(|r| r.summary.users),
        compliant: sum(|r| r.summary.compliant),
        violating: sum(|r| r.summary.violating),
        exempt: sum(|r| r.summary.exempt),
        findings: sum(|r| r.summary.findings),
        by_check,
    };
    let discovery = caller.calls.total() - discovery_calls_before;
    let account_calls: u64 = reports.iter().map(|r| r.aws_calls).sum();
    MultiAudit {
        schema: AUDIT_SCHEMA,
        evaluated_at: now,
        source: scope.source.as_str(),
        caller_account: scope.caller_account.clone(),
        summary,
        errors: errors(&runs),
        skipped: skipped(scope),
        accounts: runs,
        aws_calls: discovery + account_calls,
        discovery_aws_calls: discovery,
    }
}

impl MultiAudit {
    /// 2: no account could be read; 1: findings (or failed benchmark controls) or an
    /// account not read; 0: every account read and compliant.
    pub fn exit_code(&self) -> u8 {
        if self.summary.audited == 0 {
            return 2;
        }
        let ok = self
            .accounts
            .iter()
            .filter_map(|a| a.report.as_ref())
            .all(|r| match &r.benchmark {
                Some(b) => b.passed(),
                None => r.compliant(),
            });
        u8::from(!ok || self.summary.failed > 0)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The OCSF records of every audited account, one JSON array.
    pub fn to_ocsf(&self, cfg: &Config) -> String {
        let mut all = Vec::new();
        for r in self.accounts.iter().filter_map(|a| a.report.as_ref()) {
            if let Ok(serde_json::Value::Array(v)) = serde_json::from_str(&r.to_ocsf(cfg)) {
                all.extend(v);
            }
        }
        serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into())
    }

    /// One section per account (its audit, or its CIS benchmark view), then the errors.
    pub fn to_text(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "iam-warden audit of {} accounts (accounts.source = {}) at {}",
            s.accounts,
            self.source,
            self.evaluated_at.format("%Y-%m-%d %H:%M:%SZ")
        );
        let _ = writeln!(
            out,
            "{} audited, {} not readable; {} users: {} compliant, {} violating, {} exempt; {} findings",
            s.audited, s.failed, s.users, s.compliant, s.violating, s.exempt, s.findings
        );
        account_sections(
            &mut out,
            &self.accounts,
            &self.errors,
            &self.skipped,
            "NOT AUDITED",
            |r| match &r.benchmark {
                Some(b) => b.to_text(r),
                None => r.to_text(),
            },
        );
        let _ = writeln!(
            out,
            "\n{} AWS API calls ({} for discovery and AssumeRole)",
            self.aws_calls, self.discovery_aws_calls
        );
        out
    }
}

/// `plan` / `enforce --once` across accounts.
#[derive(Debug, Clone, Serialize)]
pub struct MultiEnforce {
    pub schema: &'static str,
    pub mode: crate::config::Mode,
    pub command: &'static str,
    pub evaluated_at: DateTime<Utc>,
    pub source: &'static str,
    pub caller_account: String,
    pub accounts: Vec<AccountRun<EnforceReport>>,
    pub errors: Vec<AccountError>,
    pub skipped: Vec<Skipped>,
    pub aws_calls: u64,
    pub aws_write_calls: u64,
}

/// Plan (and, unless `opts.plan_only`, enforce) every account of `scope`; one journal
/// for all, each line with its account.
pub async fn enforce(
    cfg: &Config,
    caller: &Clients,
    scope: &Scope,
    opts: &EnforceOptions,
) -> Result<MultiEnforce> {
    let now = opts.at.unwrap_or_else(Utc::now);
    let journal = if opts.plan_only {
        None
    } else {
        Some(Arc::new(crate::journal::Journal::open(
            &cfg.journal_path(),
        )?))
    };
    let opts = EnforceOptions {
        at: Some(now),
        journal,
        ..opts.clone()
    };
    let calls0 = caller.calls.total();
    let writes0 = caller.calls.writes();
    let opts = &opts;
    let runs = for_each_account(cfg, caller, scope, |c, clients| async move {
        crate::app::enforce::enforce(&c, &clients, opts).await
    })
    .await;
    let reports: Vec<&EnforceReport> = runs.iter().filter_map(|r| r.report.as_ref()).collect();
    Ok(MultiEnforce {
        schema: "iam-warden.enforce/v1",
        mode: cfg.mode,
        command: if opts.plan_only { "plan" } else { "enforce" },
        evaluated_at: now,
        source: scope.source.as_str(),
        caller_account: scope.caller_account.clone(),
        aws_calls: caller.calls.total() - calls0 + reports.iter().map(|r| r.aws_calls).sum::<u64>(),
        aws_write_calls: caller.calls.writes() - writes0
            + reports.iter().map(|r| r.aws_write_calls).sum::<u64>(),
        errors: errors(&runs),
        skipped: skipped(scope),
        accounts: runs,
    })
}

impl MultiEnforce {
    /// 2: no account could be read; 3: a breaker tripped in some account; 1: an account
    /// not read, or what the single-account command exits 1 for; 0: all done.
    pub fn exit_code(&self) -> u8 {
        let reports: Vec<&EnforceReport> = self
            .accounts
            .iter()
            .filter_map(|a| a.report.as_ref())
            .collect();
        if reports.is_empty() {
            return 2;
        }
        let codes: Vec<u8> = reports.iter().map(|r| r.exit_code()).collect();
        if codes.contains(&3) {
            3
        } else {
            u8::from(!self.errors.is_empty() || codes.iter().any(|c| *c != 0))
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "iam-warden {} of {} accounts (accounts.source = {}) at {} (mode {})",
            self.command,
            self.accounts.len(),
            self.source,
            self.evaluated_at.format("%Y-%m-%d %H:%M:%SZ"),
            self.mode
        );
        account_sections(
            &mut out,
            &self.accounts,
            &self.errors,
            &self.skipped,
            "NOT READ",
            EnforceReport::to_text,
        );
        let _ = writeln!(
            out,
            "\n{} AWS API calls ({} writes) in all accounts",
            self.aws_calls, self.aws_write_calls
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn unread<R>(id: &str, name: Option<&str>, error: &str) -> AccountRun<R> {
        AccountRun {
            id: id.into(),
            name: name.map(str::to_string),
            report: None,
            error: Some(error.into()),
            clients: None,
        }
    }

    /// The accounts that could not be read, the errors and the skipped print alike in the
    /// audit and in plan / enforce (only the word for "not read" differs).
    #[test]
    fn audit_and_enforce_print_their_accounts_alike() {
        let at = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        let why = "cannot assume role iam-warden: fix its trust policy";
        let errors = vec![
            AccountError {
                id: "111111111111".into(),
                name: Some("dev".into()),
                error: why.into(),
            },
            AccountError {
                id: "333333333333".into(),
                name: None,
                error: why.into(),
            },
        ];
        let skipped = vec![Skipped {
            id: "222222222222".into(),
            reason: "SUSPENDED".into(),
        }];
        let audit = MultiAudit {
            schema: AUDIT_SCHEMA,
            evaluated_at: at,
            source: "list",
            caller_account: "999999999999".into(),
            summary: MultiSummary {
                accounts: 2,
                audited: 0,
                failed: 2,
                users: 0,
                compliant: 0,
                violating: 0,
                exempt: 0,
                findings: 0,
                by_check: BTreeMap::new(),
            },
            accounts: vec![
                unread("111111111111", Some("dev"), why),
                unread("333333333333", None, why),
            ],
            errors: errors.clone(),
            skipped: skipped.clone(),
            aws_calls: 3,
            discovery_aws_calls: 3,
        };
        let sections = |unread: &str| {
            format!(
                "\n=== account 111111111111 (dev) ===\n{unread}: {why}\n\
                 \n=== account 333333333333 ===\n{unread}: {why}\n\
                 \nerrors:\n  111111111111: {why}\n  333333333333: {why}\n\
                 \nskipped:\n  222222222222: SUSPENDED\n"
            )
        };
        assert_eq!(
            audit.to_text(),
            format!(
                "iam-warden audit of 2 accounts (accounts.source = list) at 2026-05-01 12:00:00Z\n\
                 0 audited, 2 not readable; 0 users: 0 compliant, 0 violating, 0 exempt; 0 findings\n\
                 {}\n3 AWS API calls (3 for discovery and AssumeRole)\n",
                sections("NOT AUDITED")
            )
        );
        let enforce = MultiEnforce {
            schema: "iam-warden.enforce/v1",
            mode: crate::config::Mode::DryRun,
            command: "plan",
            evaluated_at: at,
            source: "organization",
            caller_account: "999999999999".into(),
            accounts: vec![
                unread("111111111111", Some("dev"), why),
                unread("333333333333", None, why),
            ],
            errors,
            skipped,
            aws_calls: 4,
            aws_write_calls: 0,
        };
        assert_eq!(
            enforce.to_text(),
            format!(
                "iam-warden plan of 2 accounts (accounts.source = organization) at 2026-05-01 12:00:00Z (mode {})\n\
                 {}\n4 AWS API calls (0 writes) in all accounts\n",
                crate::config::Mode::DryRun,
                sections("NOT READ")
            )
        );
    }
}
