//! `iam-warden audit`: read the account and judge it ([`audit`]); the audit result and its
//! two renderings: readable text and a stable JSON schema
//! (documented in docs/audit-json.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::Clients;
use crate::baseline::checks::{evaluate_account, evaluate_user, Check, Finding, UserVerdict};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::export::securityhub::{ExportReport, JournalTo, Known, Sweep};
use crate::export::{self, ExportFinding, Scope};
use crate::inventory;
use crate::inventory::AccountSnapshot;
use crate::journal::Journal;

pub const AUDIT_SCHEMA: &str = "iam-warden.audit/v1";

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub users: usize,
    pub compliant: usize,
    pub violating: usize,
    pub exempt: usize,
    pub findings: usize,
    /// Findings per check id (every check listed, zeros included).
    pub by_check: BTreeMap<&'static str, usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub schema: &'static str,
    /// The time the checks were evaluated at (now, or `--at`).
    pub evaluated_at: DateTime<Utc>,
    pub account_id: String,
    pub credential_report_generated_at: Option<DateTime<Utc>>,
    pub summary: Summary,
    pub account_findings: Vec<Finding>,
    /// Every user, sorted by name: compliant ones with an empty `findings`.
    pub users: Vec<UserVerdict>,
    pub warnings: Vec<String>,
    /// AWS API calls the audit made.
    pub aws_calls: u64,
    /// Each user's ARN, for the exports (not part of the audit JSON).
    #[serde(skip)]
    pub user_arns: BTreeMap<String, String>,
    /// The account's partition (`aws`, `aws-cn`, ...), from the caller's ARN.
    #[serde(skip)]
    pub partition: String,
}

impl AuditReport {
    pub fn build(snap: &AccountSnapshot, cfg: &Config, now: DateTime<Utc>, aws_calls: u64) -> Self {
        let users: Vec<UserVerdict> = snap
            .users
            .iter()
            .map(|u| evaluate_user(u, snap, cfg, now))
            .collect();
        let account_findings = evaluate_account(snap, cfg);
        let mut by_check: BTreeMap<&'static str, usize> =
            Check::ALL.iter().map(|c| (c.id(), 0)).collect();
        for f in users
            .iter()
            .flat_map(|u| &u.findings)
            .chain(&account_findings)
        {
            *by_check.entry(f.check.id()).or_insert(0) += 1;
        }
        let exempt = users.iter().filter(|u| u.exempt.is_some()).count();
        let violating = users.iter().filter(|u| !u.findings.is_empty()).count();
        let summary = Summary {
            users: users.len(),
            compliant: users.len() - exempt - violating,
            violating,
            exempt,
            findings: by_check.values().sum(),
            by_check,
        };
        let mut warnings = snap.warnings.clone();
        warnings.extend(
            users
                .iter()
                .flat_map(|u| u.notes.iter().map(move |n| format!("user {}: {n}", u.user))),
        );
        AuditReport {
            schema: AUDIT_SCHEMA,
            evaluated_at: now,
            account_id: snap.account_id.clone(),
            credential_report_generated_at: snap.report_generated,
            summary,
            account_findings,
            users,
            warnings,
            aws_calls,
            user_arns: snap
                .users
                .iter()
                .map(|u| (u.name.clone(), u.arn.clone()))
                .collect(),
            partition: crate::apply::partition_of(&snap.caller_arn),
        }
    }

    /// The scope of the exports: this account, its partition, the hub's region.
    pub fn export_scope(&self, cfg: &Config) -> Scope {
        Scope {
            account_id: self.account_id.clone(),
            partition: self.partition.clone(),
            region: cfg.export.securityhub.region(&cfg.aws.region).to_string(),
        }
    }

    /// The findings, one per (check, resource), for Security Hub and OCSF.
    pub fn export_findings(&self, scope: &Scope) -> Vec<ExportFinding> {
        export::collect(
            scope,
            &self.account_findings,
            self.users
                .iter()
                .map(|v| (v, self.user_arns.get(&v.user).map(String::as_str))),
        )
    }

    /// The findings as OCSF Compliance Finding records (a JSON array), found at
    /// `evaluated_at`.
    pub fn to_ocsf(&self, cfg: &Config) -> String {
        let scope = self.export_scope(cfg);
        export::ocsf::to_json(
            &self.export_findings(&scope),
            &scope,
            self.evaluated_at,
            env!("CARGO_PKG_VERSION"),
        )
    }

    pub fn compliant(&self) -> bool {
        self.summary.findings == 0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_text(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "iam-warden audit of account {} at {}",
            self.account_id,
            self.evaluated_at.format("%Y-%m-%d %H:%M:%SZ")
        );
        if let Some(t) = self.credential_report_generated_at {
            let _ = writeln!(
                out,
                "credential report generated {}",
                t.format("%Y-%m-%d %H:%M:%SZ")
            );
        }
        let _ = writeln!(
            out,
            "\n{} users: {} compliant, {} violating, {} exempt; {} findings\n",
            s.users, s.compliant, s.violating, s.exempt, s.findings
        );
        let _ = writeln!(out, "{:<30} {:>8}  severity", "check", "findings");
        for c in Check::ALL {
            let n = s.by_check.get(c.id()).copied().unwrap_or(0);
            if n > 0 || c != Check::QuotaReached {
                let _ = writeln!(out, "{:<30} {:>8}  {}", c.id(), n, c.severity());
            }
        }
        if !self.account_findings.is_empty() {
            let _ = writeln!(out, "\naccount:");
            for f in &self.account_findings {
                let _ = writeln!(out, "  [{}] {}: {}", f.severity, f.check, f.reason);
            }
        }
        let violating: Vec<_> = self
            .users
            .iter()
            .filter(|u| !u.findings.is_empty())
            .collect();
        if !violating.is_empty() {
            let _ = writeln!(out, "\nfindings by user:");
            for u in violating {
                let _ = writeln!(
                    out,
                    "  {} ({}, {})",
                    u.user,
                    u.class.as_str(),
                    u.class_source.describe()
                );
                for f in &u.findings {
                    let _ = writeln!(out, "    [{}] {}: {}", f.severity, f.check, f.reason);
                }
            }
        }
        let exempt: Vec<_> = self.users.iter().filter(|u| u.exempt.is_some()).collect();
        if !exempt.is_empty() {
            let _ = writeln!(out, "\nexempt:");
            for u in exempt {
                let _ = writeln!(
                    out,
                    "  {}: {}",
                    u.user,
                    u.exempt.as_deref().unwrap_or_default()
                );
            }
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "\nwarnings:");
            for w in &self.warnings {
                let _ = writeln!(out, "  {w}");
            }
        }
        let _ = writeln!(out, "\n{} AWS API calls", self.aws_calls);
        out
    }
}

/// Read the account and judge it at `now`.
pub async fn audit(cfg: &Config, clients: &Clients, now: DateTime<Utc>) -> Result<AuditReport> {
    let before = clients.calls.total();
    let snap = inventory::read_account(clients).await?;
    Ok(AuditReport::build(
        &snap,
        cfg,
        now,
        clients.calls.total() - before,
    ))
}

/// `audit --export`: send the report's findings to Security Hub and resolve the earlier
/// iam-warden findings that are gone; one journal line per batch.
pub async fn export_to_securityhub(
    cfg: &Config,
    clients: &Clients,
    report: &AuditReport,
) -> Result<ExportReport> {
    let sh = &cfg.export.securityhub;
    if !sh.enabled {
        return Err(Error::Config(
            "--export sends findings to Security Hub, which is off: set \
             export.securityhub.enabled = true (and export.securityhub.region if the hub is \
             not in aws.region)"
                .into(),
        ));
    }
    let scope = report.export_scope(cfg);
    let journal = Journal::open(&cfg.journal_path())?;
    let hub = clients.securityhub_in(&scope.region);
    export::securityhub::check_hub(&hub, &scope).await?;
    export::securityhub::export(
        &hub,
        &scope,
        &report.export_findings(&scope),
        &Sweep::All,
        Utc::now(),
        &mut Known::default(),
        Some(&JournalTo {
            journal: &journal,
            mode: cfg.mode.to_string(),
        }),
    )
    .await
}
