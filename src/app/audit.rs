//! `iam-warden audit`: read the account and judge it ([`audit`]); the audit result and its
//! two renderings: readable text and a stable JSON schema
//! (documented in docs/audit-json.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::Clients;
use crate::baseline::benchmark::{self, ControlResult, Status};
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
    /// `audit --benchmark cis-5.0`: each CIS section 1 control with its status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub benchmark: Option<Benchmark>,
}

/// The CIS AWS Foundations v5.0 section 1 view of the audit.
#[derive(Debug, Clone, Serialize)]
pub struct Benchmark {
    /// `cis-5.0`.
    pub name: &'static str,
    /// Controls per status (every status listed, zeros included).
    pub summary: BTreeMap<&'static str, usize>,
    pub controls: Vec<ControlResult>,
}

impl Benchmark {
    /// The controls of section 1 judged from `report` (its findings) and `snap`.
    pub fn build(report: &AuditReport, snap: &AccountSnapshot, cfg: &Config) -> Self {
        let judged: Vec<_> = report
            .users
            .iter()
            .filter(|v| v.exempt.is_none())
            .filter_map(|v| snap.user(&v.user))
            .collect();
        let mut na = BTreeMap::new();
        if !judged.iter().any(|u| u.password.is_some()) {
            na.insert(
                "1.9",
                "no judged IAM user has a console password".to_string(),
            );
            na.insert(
                "1.10",
                "no judged IAM user has a console password".to_string(),
            );
        }
        if !judged.iter().any(|u| u.active_keys().next().is_some()) {
            na.insert(
                "1.12",
                "no judged IAM user has an active access key".to_string(),
            );
            na.insert(
                "1.13",
                "no judged IAM user has an active access key".to_string(),
            );
        }
        if !judged
            .iter()
            .any(|u| u.password.is_some() || u.active_keys().next().is_some())
        {
            na.insert("1.11", "no judged IAM user has credentials".to_string());
        }
        if judged.is_empty() {
            na.insert("1.14", "no IAM user to judge".to_string());
        }
        if snap
            .cis
            .as_ref()
            .is_some_and(|c| c.server_certificates.is_empty())
        {
            na.insert("1.18", "no server certificates stored in IAM".to_string());
        }
        let facts = benchmark::Facts {
            account_read: snap.cis.is_some(),
            password_policy: snap.password_policy.as_ref(),
            not_applicable: na,
        };
        let controls = benchmark::evaluate(&report.users, &report.account_findings, &facts, cfg);
        let mut summary: BTreeMap<&'static str, usize> = [
            Status::Pass,
            Status::Fail,
            Status::NotApplicable,
            Status::Manual,
            Status::CannotCheck,
        ]
        .iter()
        .map(|s| (s.as_str(), 0))
        .collect();
        for c in &controls {
            *summary.entry(c.status.as_str()).or_insert(0) += 1;
        }
        Benchmark {
            name: benchmark::CIS_5_0,
            summary,
            controls,
        }
    }

    /// No control fails or could not be checked (manual ones are for a person).
    pub fn passed(&self) -> bool {
        self.controls
            .iter()
            .all(|c| !matches!(c.status, Status::Fail | Status::CannotCheck))
    }

    pub fn to_text(&self, report: &AuditReport) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "CIS AWS Foundations Benchmark v5.0.0 section 1, account {} at {}",
            report.account_id,
            report.evaluated_at.format("%Y-%m-%d %H:%M:%SZ")
        );
        let counts: Vec<String> = self
            .summary
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let _ = writeln!(
            out,
            "{}
",
            counts.join(", ")
        );
        for c in &self.controls {
            let info = if c.informational {
                " (informational)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "{:<5} {:<15} {}{info}",
                c.id,
                c.status.as_str(),
                c.title
            );
            if let Some(n) = &c.note {
                let _ = writeln!(out, "{:21} note: {n}", "");
            }
            for i in &c.items {
                let _ = writeln!(out, "{:21} {} [{}]: {}", "", i.subject, i.check, i.reason);
            }
        }
        if report.summary.exempt > 0 {
            let _ = writeln!(
                out,
                "
{} exempt user(s) not judged (see `audit` for who and why)",
                report.summary.exempt
            );
        }
        let _ = writeln!(
            out,
            "
{} AWS API calls",
            report.aws_calls
        );
        out
    }
}

impl AuditReport {
    pub fn build(snap: &AccountSnapshot, cfg: &Config, now: DateTime<Utc>, aws_calls: u64) -> Self {
        let users: Vec<UserVerdict> = snap
            .users
            .iter()
            .map(|u| evaluate_user(u, snap, cfg, now))
            .collect();
        let account_findings = evaluate_account(snap, cfg, now);
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
            benchmark: None,
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
        let _ = writeln!(
            out,
            "{:<30} {:>8}  {:<9} CIS v5.0",
            "check", "findings", "severity"
        );
        for c in Check::ALL {
            let n = s.by_check.get(c.id()).copied().unwrap_or(0);
            if n > 0 || c != Check::QuotaReached {
                let _ = writeln!(
                    out,
                    "{:<30} {:>8}  {:<9} {}",
                    c.id(),
                    n,
                    c.severity().to_string(),
                    c.cis_controls().join(", ")
                );
            }
        }
        if !self.account_findings.is_empty() {
            let _ = writeln!(out, "\naccount:");
            for f in &self.account_findings {
                let on = f
                    .resource
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                let _ = writeln!(out, "  [{}] {}{on}: {}", f.severity, f.check, f.reason);
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
    audit_with(cfg, clients, now, false).await
}

/// [`audit`], with the CIS v5.0 section 1 view when `benchmark`.
pub async fn audit_with(
    cfg: &Config,
    clients: &Clients,
    now: DateTime<Utc>,
    benchmark: bool,
) -> Result<AuditReport> {
    let before = clients.calls.total();
    let snap = if cfg.cis.enabled {
        let regions = cfg.cis.analyzer_regions(&cfg.aws.region);
        inventory::read_account_cis(clients, &regions).await?
    } else {
        inventory::read_account(clients).await?
    };
    let mut report = AuditReport::build(&snap, cfg, now, clients.calls.total() - before);
    if benchmark {
        report.benchmark = Some(Benchmark::build(&report, &snap, cfg));
    }
    Ok(report)
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
