//! The AWS Security Finding Format (ASFF, schema 2018-10-08) of an [`ExportFinding`]:
//! pure, serialisable as the JSON Security Hub documents; `securityhub.rs` sends it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{truncate, ExportFinding, ResourceKind, Scope, GENERATOR_PREFIX};
use crate::baseline::checks::Severity;

pub const SCHEMA_VERSION: &str = "2018-10-08";
/// The finding type of a check that evidences CIS controls.
pub const TYPE_CIS: &str =
    "Software and Configuration Checks/Industry and Regulatory Standards/CIS AWS Foundations Benchmark";
/// The finding type of the baseline's other checks (not a CIS control).
pub const TYPE_BEST_PRACTICE: &str =
    "Software and Configuration Checks/AWS Security Best Practices";
/// ASFF limits: `Id` and `GeneratorId` 512, `Title` 256, `Description` 1024 characters.
pub const MAX_ID: usize = 512;
pub const MAX_TITLE: usize = 256;
pub const MAX_DESCRIPTION: usize = 1024;
/// The `ProductFields` key of a finding's [`fingerprint`]: an export compares it with the
/// one Security Hub holds and does not send a finding again when they are equal.
pub const FINGERPRINT_FIELD: &str = "iam-warden/fingerprint";

/// One ASFF finding (the fields iam-warden sets).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffFinding {
    pub schema_version: &'static str,
    pub id: String,
    pub product_arn: String,
    pub product_name: &'static str,
    pub company_name: &'static str,
    pub region: String,
    pub generator_id: String,
    pub aws_account_id: String,
    pub types: Vec<&'static str>,
    pub first_observed_at: String,
    pub created_at: String,
    pub updated_at: String,
    pub severity: AsffSeverity,
    pub title: String,
    pub description: String,
    pub resources: Vec<AsffResource>,
    pub compliance: AsffCompliance,
    pub workflow: AsffWorkflow,
    pub record_state: &'static str,
    pub product_fields: std::collections::BTreeMap<&'static str, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffSeverity {
    pub label: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffResource {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub id: String,
    pub partition: String,
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffCompliance {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related_requirements: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffWorkflow {
    pub status: &'static str,
}

/// `arn:<partition>:securityhub:<region>:<account>:product/<account>/default`: the
/// account's own product, which accepts findings from the account without a subscription.
pub fn product_arn(scope: &Scope) -> String {
    format!(
        "arn:{}:securityhub:{}:{}:product/{}/default",
        scope.partition, scope.region, scope.account_id, scope.account_id
    )
}

/// `iam-warden/<check>`.
pub fn generator_id(check: &str) -> String {
    format!("{GENERATOR_PREFIX}{check}")
}

/// The stable finding id `iam-warden/<account>/<check>/<resource>`; a resource id that
/// would make it longer than 512 characters is replaced by its SHA-256.
pub fn finding_id(account_id: &str, check: &str, resource_id: &str) -> String {
    let id = format!("{GENERATOR_PREFIX}{account_id}/{check}/{resource_id}");
    if id.len() <= MAX_ID {
        return id;
    }
    let hash = Sha256::digest(resource_id.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("{GENERATOR_PREFIX}{account_id}/{check}/sha256-{hex}")
}

pub fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Low => "LOW",
        Severity::Medium => "MEDIUM",
        Severity::High => "HIGH",
        Severity::Critical => "CRITICAL",
    }
}

/// ASFF timestamps: RFC 3339 in UTC with milliseconds.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A short name of the resource for the title: the last part of an ARN, a key id.
pub fn resource_name(f: &ExportFinding) -> &str {
    match f.kind {
        ResourceKind::AccessKey | ResourceKind::Account => &f.resource_id,
        _ => f
            .resource_id
            .rsplit(['/', ':'])
            .find(|s| !s.is_empty())
            .unwrap_or(&f.resource_id),
    }
}

/// The ASFF finding for `f`, first seen at `first_observed` (kept from an earlier import
/// of the same id), updated at `now`. Active and failed.
pub fn finding(
    f: &ExportFinding,
    scope: &Scope,
    first_observed: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AsffFinding {
    let check = f.check.id();
    let requirements = f.related_requirements();
    let mut resources = vec![AsffResource {
        kind: f.kind.asff_type(),
        id: f.resource_id.clone(),
        partition: scope.partition.clone(),
        region: scope.region.clone(),
    }];
    // A key's finding also names its user.
    if let (ResourceKind::AccessKey, Some(arn)) = (f.kind, &f.user_arn) {
        resources.push(AsffResource {
            kind: ResourceKind::User.asff_type(),
            id: arn.clone(),
            partition: scope.partition.clone(),
            region: scope.region.clone(),
        });
    }
    let mut product_fields = std::collections::BTreeMap::new();
    product_fields.insert("iam-warden/check", check.to_string());
    if let Some(u) = &f.user {
        product_fields.insert("iam-warden/user", u.clone());
    }
    let title = match &f.user {
        Some(u) if f.kind == ResourceKind::AccessKey => {
            format!("{check}: access key {} of user {u}", f.resource_id)
        }
        Some(u) if f.kind == ResourceKind::User => format!("{check}: user {u}"),
        _ => format!("{check}: {}", resource_name(f)),
    };
    let mut a = AsffFinding {
        schema_version: SCHEMA_VERSION,
        id: finding_id(&scope.account_id, check, &f.resource_id),
        product_arn: product_arn(scope),
        product_name: "iam-warden",
        company_name: "iam-warden",
        region: scope.region.clone(),
        generator_id: generator_id(check),
        aws_account_id: scope.account_id.clone(),
        types: vec![if requirements.is_empty() {
            TYPE_BEST_PRACTICE
        } else {
            TYPE_CIS
        }],
        first_observed_at: timestamp(first_observed),
        created_at: timestamp(first_observed),
        updated_at: timestamp(now),
        severity: AsffSeverity {
            label: severity_label(f.severity),
        },
        title: truncate(&title, MAX_TITLE),
        description: truncate(&f.description(), MAX_DESCRIPTION),
        resources,
        compliance: AsffCompliance {
            status: if f.cannot_check {
                "NOT_AVAILABLE"
            } else {
                "FAILED"
            },
            related_requirements: requirements,
        },
        workflow: AsffWorkflow { status: "NEW" },
        record_state: "ACTIVE",
        product_fields,
    };
    let print = fingerprint(&a);
    a.product_fields.insert(FINGERPRINT_FIELD, print);
    a
}

/// What iam-warden says in `a`, as 32 hex digits (of a SHA-256): every field it sets but
/// the times (`FirstObservedAt`, `CreatedAt`, `UpdatedAt`) and the fingerprint itself, and
/// with the ages in the description left out ([`without_ages`]). Equal fingerprints: the
/// finding in Security Hub already says this, and need not be sent again.
pub fn fingerprint(a: &AsffFinding) -> String {
    let mut c = a.clone();
    c.first_observed_at.clear();
    c.created_at.clear();
    c.updated_at.clear();
    c.product_fields.remove(FINGERPRINT_FIELD);
    c.description = without_ages(&c.description);
    // Plain strings, vectors and maps with string keys: serialising cannot fail.
    let json = serde_json::to_vec(&c).unwrap_or_default();
    Sha256::digest(&json)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `text` with every age (`97 days ago`, `400 days old`) replaced by `#`: a finding whose
/// only change is that it is a day older is not a changed finding (its dates are in the
/// text as well; the count is brought up to date by its next import). Limits (`limit 90
/// days`) are kept: changing one changes the finding.
pub fn without_ages(text: &str) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let number = !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
            let age = number
                && words.get(i + 1) == Some(&"days")
                && words
                    .get(i + 2)
                    .is_some_and(|n| n.starts_with("ago") || n.starts_with("old"));
            if age {
                "#"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
