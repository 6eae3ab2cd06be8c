//! Sending findings to AWS Security Hub: BatchImportFindings in batches of at most 100,
//! and the resolution of findings iam-warden exported before that are gone. The state is
//! in Security Hub itself: the active iam-warden findings are read back with GetFindings.
//!
//! Calls for N current and R resolved findings, E of them exported before: 1 DescribeHub
//! (Security Hub enabled?), ceil(E/100) GetFindings pages, ceil((N+R)/100)
//! BatchImportFindings. Security Hub's calls use the SDK's standard retries (throttling
//! included, `aws.max_attempts`), not the IAM pacer: its quotas are its own.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_securityhub::types::{
    AwsSecurityFinding, AwsSecurityFindingFilters, Compliance, ComplianceStatus, RecordState,
    Resource, Severity, SeverityLabel, StringFilter, StringFilterComparison, Workflow,
    WorkflowStatus,
};
use chrono::{DateTime, Utc};

use super::asff::{self, AsffFinding};
use super::{ExportFinding, Scope, GENERATOR_PREFIX};
use crate::aws::aws_error;
use crate::error::{Error, Result};
use crate::journal::{Entry, Journal};

/// BatchImportFindings takes at most 100 findings.
pub const BATCH: usize = 100;
/// GetFindings returns at most 100 per page.
pub const PAGE: i32 = 100;

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Current findings sent (created or updated).
    pub active: usize,
    /// Earlier findings that are gone, sent back as PASSED / RESOLVED / ARCHIVED.
    pub resolved: usize,
    /// Findings Security Hub refused (`FailedFindings`).
    pub failed: usize,
    /// The first refusal: `<id>: <code> <message>`.
    pub first_failure: Option<String>,
    pub batches: usize,
}

impl ExportReport {
    /// One line for people.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "Security Hub: {} findings active, {} resolved, in {} BatchImportFindings calls",
            self.active, self.resolved, self.batches
        );
        if self.failed > 0 {
            s.push_str(&format!(
                "; {} refused (first: {})",
                self.failed,
                self.first_failure.as_deref().unwrap_or("no detail")
            ));
        }
        s
    }
}

/// Which earlier findings the export may resolve: all of iam-warden's (a whole-account
/// export), or only those of one user (an export after one user's reconcile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sweep {
    All,
    User(String),
}

/// Where the export journals its batches.
pub struct JournalTo<'a> {
    pub journal: &'a Journal,
    pub mode: String,
}

/// The error when Security Hub is not enabled in the account and region.
fn not_enabled(scope: &Scope) -> Error {
    Error::Other(format!(
        "Security Hub is not enabled in account {} region {}: enable it (aws securityhub \
         enable-security-hub --region {}) or set export.securityhub.enabled = false",
        scope.account_id, scope.region, scope.region
    ))
}

/// Send `findings` (the current ones) and resolve the earlier ones `sweep` covers that are
/// no longer among them.
pub async fn export(
    hub: &aws_sdk_securityhub::Client,
    scope: &Scope,
    findings: &[ExportFinding],
    sweep: &Sweep,
    now: DateTime<Utc>,
    journal: Option<&JournalTo<'_>>,
) -> Result<ExportReport> {
    // The SDK's futures are large (debug builds overflow a 2 MiB worker stack): boxed.
    match Box::pin(hub.describe_hub().send()).await {
        Ok(_) => {}
        Err(e) => {
            let err = aws_error("securityhub", "DescribeHub", e);
            return Err(match err.aws_code() {
                Some("InvalidAccessException") => not_enabled(scope),
                _ => err,
            });
        }
    }
    let earlier = Box::pin(active_findings(hub, scope)).await?;
    let mut current: Vec<AwsSecurityFinding> = Vec::with_capacity(findings.len());
    let mut ids = BTreeSet::new();
    for f in findings {
        let id = asff::finding_id(&scope.account_id, f.check.id(), &f.resource_id);
        let first = earlier
            .get(&id)
            .and_then(|e| e.first_observed_at.as_deref())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        current.push(to_sdk(&asff::finding(f, scope, first, now)));
        ids.insert(id);
    }
    let resolved: Vec<AwsSecurityFinding> = earlier
        .into_values()
        .filter(|e| !e.id.as_deref().is_some_and(|id| ids.contains(id)))
        .filter(|e| match sweep {
            Sweep::All => true,
            Sweep::User(u) => user_of(e) == Some(u.as_str()),
        })
        .map(|e| resolve(e, now))
        .collect();
    let mut report = ExportReport {
        active: current.len(),
        resolved: resolved.len(),
        ..Default::default()
    };
    let all: Vec<AwsSecurityFinding> = current.into_iter().chain(resolved).collect();
    for batch in all.chunks(BATCH) {
        report.batches += 1;
        let n = batch.len();
        let resolving = batch
            .iter()
            .filter(|f| f.record_state == Some(RecordState::Archived))
            .count();
        let sent = Box::pin(
            hub.batch_import_findings()
                .set_findings(Some(batch.to_vec()))
                .send(),
        )
        .await;
        let (failed, first, error) = match &sent {
            Ok(out) => {
                let first = out.failed_findings().first().map(|f| {
                    format!(
                        "{}: {} {}",
                        f.id().unwrap_or_default(),
                        f.error_code().unwrap_or_default(),
                        f.error_message().unwrap_or_default()
                    )
                });
                (out.failed_count().unwrap_or(0).max(0) as usize, first, None)
            }
            Err(_) => (n, None, Some(())),
        };
        if let Some(j) = journal {
            let outcome = if error.is_some() || failed == n {
                "failed"
            } else {
                "applied"
            };
            let _ = j.journal.record(&Entry {
                time: Utc::now(),
                account: scope.account_id.clone(),
                user: match sweep {
                    Sweep::User(u) => Some(u.clone()),
                    Sweep::All => None,
                },
                action: "securityhub_batch_import_findings".into(),
                target: asff::product_arn(scope),
                reason: format!(
                    "batch {}: {} findings ({} active, {} resolved), {} refused",
                    report.batches,
                    n,
                    n - resolving,
                    resolving,
                    failed
                ),
                mode: j.mode.clone(),
                outcome: outcome.into(),
                error: first.clone(),
            });
        }
        match sent {
            Ok(_) => {
                report.failed += failed;
                if report.first_failure.is_none() {
                    report.first_failure = first;
                }
            }
            Err(e) => {
                let err = aws_error("securityhub", "BatchImportFindings", e);
                return Err(match err.aws_code() {
                    Some("InvalidAccessException") => not_enabled(scope),
                    _ => err,
                });
            }
        }
    }
    Ok(report)
}

/// The user an exported finding names (`ProductFields["iam-warden/user"]`).
fn user_of(f: &AwsSecurityFinding) -> Option<&str> {
    f.product_fields
        .as_ref()
        .and_then(|m| m.get("iam-warden/user"))
        .map(String::as_str)
}

/// Every ACTIVE finding iam-warden exported to this account's product, by id. The filter
/// is sent to Security Hub and applied here as well (moto ignores GetFindings filters).
pub async fn active_findings(
    hub: &aws_sdk_securityhub::Client,
    scope: &Scope,
) -> Result<BTreeMap<String, AwsSecurityFinding>> {
    let eq = |v: &str| {
        StringFilter::builder()
            .value(v)
            .comparison(StringFilterComparison::Equals)
            .build()
    };
    let product = asff::product_arn(scope);
    let filters = AwsSecurityFindingFilters::builder()
        .product_arn(eq(&product))
        .aws_account_id(eq(&scope.account_id))
        .record_state(eq("ACTIVE"))
        .generator_id(
            StringFilter::builder()
                .value(GENERATOR_PREFIX)
                .comparison(StringFilterComparison::Prefix)
                .build(),
        )
        .build();
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = Box::pin(
            hub.get_findings()
                .filters(filters.clone())
                .max_results(PAGE)
                .set_next_token(token.take())
                .send(),
        )
        .await
        .map_err(|e| {
            let err = aws_error("securityhub", "GetFindings", e);
            match err.aws_code() {
                Some("InvalidAccessException") => not_enabled(scope),
                _ => err,
            }
        })?;
        for f in page.findings.unwrap_or_default() {
            let ours = f.product_arn.as_deref() == Some(product.as_str())
                && f.aws_account_id.as_deref() == Some(scope.account_id.as_str())
                && f.record_state == Some(RecordState::Active)
                && f.generator_id
                    .as_deref()
                    .is_some_and(|g| g.starts_with(GENERATOR_PREFIX));
            if let (true, Some(id)) = (ours, f.id.clone()) {
                out.insert(id, f);
            }
        }
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(out)
}

/// An earlier finding that is gone: PASSED, RESOLVED, ARCHIVED, updated now.
fn resolve(mut f: AwsSecurityFinding, now: DateTime<Utc>) -> AwsSecurityFinding {
    let requirements = f
        .compliance
        .as_ref()
        .and_then(|c| c.related_requirements.clone());
    f.compliance = Some(
        Compliance::builder()
            .status(ComplianceStatus::Passed)
            .set_related_requirements(requirements)
            .build(),
    );
    f.workflow = Some(Workflow::builder().status(WorkflowStatus::Resolved).build());
    f.record_state = Some(RecordState::Archived);
    f.updated_at = Some(asff::timestamp(now));
    // Fields Security Hub sets itself are not sent back.
    f.processed_at = None;
    f.workflow_state = None;
    f
}

/// The SDK's form of an [`AsffFinding`].
pub fn to_sdk(a: &AsffFinding) -> AwsSecurityFinding {
    let resources = a
        .resources
        .iter()
        .map(|r| {
            Resource::builder()
                .r#type(r.kind)
                .id(&r.id)
                .partition(r.partition.as_str().into())
                .region(&r.region)
                .build()
        })
        .collect();
    AwsSecurityFinding::builder()
        .schema_version(a.schema_version)
        .id(&a.id)
        .product_arn(&a.product_arn)
        .product_name(a.product_name)
        .company_name(a.company_name)
        .region(&a.region)
        .generator_id(&a.generator_id)
        .aws_account_id(&a.aws_account_id)
        .set_types(Some(a.types.iter().map(|t| t.to_string()).collect()))
        .first_observed_at(&a.first_observed_at)
        .created_at(&a.created_at)
        .updated_at(&a.updated_at)
        .severity(
            Severity::builder()
                .label(SeverityLabel::from(a.severity.label))
                .build(),
        )
        .title(&a.title)
        .description(&a.description)
        .set_resources(Some(resources))
        .compliance(
            Compliance::builder()
                .status(ComplianceStatus::from(a.compliance.status))
                .set_related_requirements(
                    (!a.compliance.related_requirements.is_empty())
                        .then(|| a.compliance.related_requirements.clone()),
                )
                .build(),
        )
        .workflow(
            Workflow::builder()
                .status(WorkflowStatus::from(a.workflow.status))
                .build(),
        )
        .record_state(RecordState::from(a.record_state))
        .set_product_fields(Some(
            a.product_fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ))
        .build()
}
