//! Sending findings to AWS Security Hub: BatchImportFindings in batches of at most 100,
//! and the resolution of findings iam-warden exported before that are gone. The state is
//! in Security Hub itself: the active iam-warden findings are read back with GetFindings.
//!
//! Calls for E findings exported before (active), R of them resolved: ceil(E/100)
//! GetFindings pages (at least one) and ceil((C+R)/100) BatchImportFindings, where C counts
//! only the current findings that are new, changed ([`asff::fingerprint`]) or due for a
//! refresh ([`fate`]). Every export reads first, the daemon's every resync too: an unchanged
//! finding is never imported again (each import is a finding ingestion event, billed past
//! Security Hub's free tier, and an EventBridge "Findings - Imported" event; reads are
//! neither), so a steady account costs its pages of reads and no import. No
//! DescribeHub: the first
//! call answers InvalidAccessException when Security Hub is not enabled, which becomes the
//! one-line error naming the fix. Security Hub's calls use the SDK's standard retries
//! (throttling included, `aws.max_attempts`), not the IAM pacer: its quotas are its own.

use std::collections::BTreeMap;

use aws_sdk_securityhub::types::{
    AwsSecurityFinding, AwsSecurityFindingFilters, Compliance, ComplianceStatus, MapFilter,
    MapFilterComparison, RecordState, Resource, Severity, SeverityLabel, StringFilter,
    StringFilterComparison, Workflow, WorkflowStatus,
};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use sha2::{Digest, Sha256};

use super::asff::{self, AsffFinding};
use super::{ExportFinding, Scope, GENERATOR_PREFIX};
use crate::aws::aws_error;
use crate::error::{Error, Result};
use crate::journal::{Entry, Journal};

/// BatchImportFindings takes at most 100 findings.
pub const BATCH: usize = 100;
/// GetFindings returns at most 100 per page.
pub const PAGE: i32 = 100;
/// An unchanged finding is sent again once it was last updated this many days ago plus
/// its spread ([`refresh_age`]): Security Hub deletes findings not updated for 90 days.
pub const REFRESH_AFTER_DAYS: i64 = 30;
/// The refreshes of findings exported together are spread, by finding id, over this many
/// more days, so they do not all come due in one export: every unchanged finding is sent
/// again 30 to 60 days after its last update, well within Security Hub's 90.
pub const REFRESH_SPREAD_DAYS: i64 = 30;

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
    /// Current findings not sent, as Security Hub already holds them (included in `active`).
    pub unchanged: usize,
    /// Current unchanged findings sent again so Security Hub keeps them (in `active`).
    pub refreshed: usize,
}

impl ExportReport {
    /// One line for people.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "Security Hub: {} findings active ({} unchanged, not sent again; {} refreshed), \
             {} resolved, in {} BatchImportFindings calls",
            self.active, self.unchanged, self.refreshed, self.resolved, self.batches
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

/// What an export learned about the findings in Security Hub, kept between exports by a
/// long-running caller (the daemon): the first-observed time of every current iam-warden
/// finding, for a finding Security Hub no longer lists as active (archived by someone)
/// that comes back.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Finding id → (first observed, the user it names).
    first: BTreeMap<String, (DateTime<Utc>, Option<String>)>,
}

impl Known {
    /// How many findings' first-observed times are kept.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }
}

/// Send `findings` (the current ones) and resolve the earlier ones `sweep` covers that are
/// no longer among them.
///
/// The earlier findings `sweep` covers are read (their first-observed times are kept and
/// their fingerprints compared), then the current findings that are new, changed or due
/// for a refresh ([`fate`]) and the resolved ones are sent together; a batch sent anyway is
/// filled up with the unchanged findings last updated longest ago (at least
/// [`REFRESH_AFTER_DAYS`]). 10,000 findings: 1 + 100 calls the first time, 100 + 0 when
/// nothing changed, 100 + 1 with up to 100 changed or gone.
pub async fn export(
    hub: &aws_sdk_securityhub::Client,
    scope: &Scope,
    findings: &[ExportFinding],
    sweep: &Sweep,
    now: DateTime<Utc>,
    known: &mut Known,
    journal: Option<&JournalTo<'_>>,
) -> Result<ExportReport> {
    let user = match sweep {
        Sweep::User(u) => Some(u.as_str()),
        Sweep::All => None,
    };
    // Whole milliseconds, as ASFF timestamps carry: this export's own UpdatedAt is then
    // exactly `now`, and "updated before `now`" excludes what it sent.
    let now = now.trunc_subsecs(3);
    let mut earlier = Box::pin(active_findings(hub, scope, user)).await?;
    let mut report = ExportReport {
        active: findings.len(),
        ..Default::default()
    };
    let mut current: Vec<AwsSecurityFinding> = Vec::with_capacity(findings.len());
    // Unchanged findings that may fill a batch sent anyway: (last updated, finding).
    let mut fillers: Vec<(DateTime<Utc>, AsffFinding)> = Vec::new();
    // Every current finding's id, first observed time and user.
    let mut seen: BTreeMap<String, (DateTime<Utc>, Option<String>)> = BTreeMap::new();
    for f in findings {
        let id = asff::finding_id(&scope.account_id, f.check.id(), &f.resource_id);
        let before = earlier.get(&id);
        let first = before
            .and_then(|e| time(e.first_observed_at.as_deref()))
            .or_else(|| known.first.get(&id).map(|(t, _)| *t))
            .unwrap_or(now);
        let a = asff::finding(f, scope, first, now);
        let print = a.product_fields.get(asff::FINGERPRINT_FIELD);
        match fate(&id, print.map_or("", String::as_str), before, now) {
            Fate::New | Fate::Changed => current.push(to_sdk(&a)),
            Fate::Refresh => {
                report.refreshed += 1;
                current.push(to_sdk(&a));
            }
            Fate::Unchanged { updated } => {
                report.unchanged += 1;
                if now - updated >= Duration::days(REFRESH_AFTER_DAYS) {
                    fillers.push((updated, a));
                }
            }
        }
        seen.insert(id, (first, f.user.clone()));
    }
    let to_resolve = |earlier: BTreeMap<String, AwsSecurityFinding>| -> Vec<AwsSecurityFinding> {
        earlier
            .into_values()
            .filter(|e| !e.id.as_deref().is_some_and(|id| seen.contains_key(id)))
            .filter(|e| user.is_none() || user_of(e) == user)
            .map(|e| resolve(e, now))
            .collect()
    };
    let resolved = to_resolve(std::mem::take(&mut earlier));
    report.resolved = resolved.len();
    // The last batch's free places: the oldest unchanged findings, at no extra call.
    let free = (BATCH - (current.len() + resolved.len()) % BATCH) % BATCH;
    fillers.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    for (_, a) in fillers.iter().take(free) {
        current.push(to_sdk(a));
        report.unchanged -= 1;
        report.refreshed += 1;
    }
    let all: Vec<AwsSecurityFinding> = current.into_iter().chain(resolved).collect();
    send(hub, scope, &all, user, journal, &mut report).await?;
    match user {
        None => known.first = seen,
        Some(u) => {
            known
                .first
                .retain(|_, (_, owner)| owner.as_deref() != Some(u));
            known.first.extend(seen);
        }
    }
    Ok(report)
}

/// What a read-first export does with a current finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Security Hub holds no ACTIVE finding with its id: sent.
    New,
    /// It holds one that says something else (another fingerprint, or none: exported
    /// before fingerprints): sent.
    Changed,
    /// It holds the same, last updated [`refresh_age`] ago or longer (or at an unreadable
    /// time): sent again, so Security Hub does not delete it.
    Refresh,
    /// It holds the same, last updated at `updated`: not sent (unless it fills a batch).
    Unchanged { updated: DateTime<Utc> },
}

/// The [`Fate`] of the current finding `id` with fingerprint `print`, given the ACTIVE
/// finding Security Hub holds under that id (`earlier`), at `now`. Pure.
pub fn fate(
    id: &str,
    print: &str,
    earlier: Option<&AwsSecurityFinding>,
    now: DateTime<Utc>,
) -> Fate {
    let Some(e) = earlier else {
        return Fate::New;
    };
    let held = e
        .product_fields
        .as_ref()
        .and_then(|m| m.get(asff::FINGERPRINT_FIELD));
    if held.map(String::as_str) != Some(print) {
        return Fate::Changed;
    }
    match time(e.updated_at.as_deref()) {
        Some(updated) if now - updated < refresh_age(id) => Fate::Unchanged { updated },
        _ => Fate::Refresh,
    }
}

/// How long after its last update an unchanged finding is sent again:
/// [`REFRESH_AFTER_DAYS`] plus a spread of less than [`REFRESH_SPREAD_DAYS`] that depends
/// only on the id (the same in every process and run). Pure.
pub fn refresh_age(id: &str) -> Duration {
    let hash = Sha256::digest(id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&hash[..8]);
    let spread = (REFRESH_SPREAD_DAYS * 86_400) as u64;
    Duration::days(REFRESH_AFTER_DAYS)
        + Duration::seconds((u64::from_be_bytes(head) % spread) as i64)
}

/// An ASFF timestamp, when readable.
fn time(t: Option<&str>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Send `findings` in batches of [`BATCH`], one journal line per batch.
async fn send(
    hub: &aws_sdk_securityhub::Client,
    scope: &Scope,
    findings: &[AwsSecurityFinding],
    user: Option<&str>,
    journal: Option<&JournalTo<'_>>,
    report: &mut ExportReport,
) -> Result<()> {
    for batch in findings.chunks(BATCH) {
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
                user: user.map(str::to_string),
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
    Ok(())
}

/// The user an exported finding names (`ProductFields["iam-warden/user"]`).
fn user_of(f: &AwsSecurityFinding) -> Option<&str> {
    f.product_fields
        .as_ref()
        .and_then(|m| m.get("iam-warden/user"))
        .map(String::as_str)
}

/// The ACTIVE findings iam-warden exported to this account's product, by id: all of them,
/// or only `user`'s, and only those last updated before `updated_before` when given (the
/// stale ones of an export that started then). The filters are sent to Security Hub and
/// applied here as well: moto ignores GetFindings filters and returns every finding.
pub async fn active_findings(
    hub: &aws_sdk_securityhub::Client,
    scope: &Scope,
    user: Option<&str>,
) -> Result<BTreeMap<String, AwsSecurityFinding>> {
    let product = asff::product_arn(scope);
    let filters = filters(scope, user);
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
                    .is_some_and(|g| g.starts_with(GENERATOR_PREFIX))
                && user.is_none_or(|u| user_of(&f) == Some(u));
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

/// The GetFindings filters of [`active_findings`]. Pure.
pub fn filters(scope: &Scope, user: Option<&str>) -> AwsSecurityFindingFilters {
    let eq = |v: &str| {
        StringFilter::builder()
            .value(v)
            .comparison(StringFilterComparison::Equals)
            .build()
    };
    let product = asff::product_arn(scope);
    let mut filters = AwsSecurityFindingFilters::builder()
        .product_arn(eq(&product))
        .aws_account_id(eq(&scope.account_id))
        .record_state(eq("ACTIVE"))
        .generator_id(
            StringFilter::builder()
                .value(GENERATOR_PREFIX)
                .comparison(StringFilterComparison::Prefix)
                .build(),
        );
    if let Some(u) = user {
        filters = filters.product_fields(
            MapFilter::builder()
                .key("iam-warden/user")
                .value(u)
                .comparison(MapFilterComparison::Equals)
                .build(),
        );
    }
    filters.build()
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
