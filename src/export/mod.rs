//! Findings exported where security teams look: AWS Security Hub (ASFF, [`asff`], sent by
//! [`securityhub`]) and OCSF Compliance Finding records ([`ocsf`]).
//!
//! Both formats are built from the same list of [`ExportFinding`]s: one per (check,
//! resource), from any set of findings (an audit report, a daemon resync), so new checks
//! flow through unchanged. The resource of a finding is `Finding.resource` when the check
//! names one, else the access key it is about, else its user; an account-level finding
//! without a resource is about the account (`AWS::::Account:<id>`).

pub mod asff;
pub mod background;
pub mod ocsf;
pub mod securityhub;

use std::collections::BTreeMap;

use crate::baseline::checks::{Check, Finding, Severity, UserVerdict};

/// The standard the CIS control ids of [`Check::cis_controls`] belong to.
pub const CIS_STANDARD: &str = "CIS AWS Foundations Benchmark v5.0.0";
/// Every iam-warden finding's `GeneratorId` starts with this.
pub const GENERATOR_PREFIX: &str = "iam-warden/";

/// Where the findings are reported: the account, its partition and the region of the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub account_id: String,
    pub partition: String,
    pub region: String,
}

/// What a resource is, as ASFF names it (OCSF takes the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResourceKind {
    User,
    AccessKey,
    Group,
    Policy,
    Role,
    Account,
    Other,
}

impl ResourceKind {
    /// The ASFF `Resources[].Type`.
    pub fn asff_type(self) -> &'static str {
        match self {
            ResourceKind::User => "AwsIamUser",
            ResourceKind::AccessKey => "AwsIamAccessKey",
            ResourceKind::Group => "AwsIamGroup",
            ResourceKind::Policy => "AwsIamPolicy",
            ResourceKind::Role => "AwsIamRole",
            ResourceKind::Account => "AwsAccount",
            ResourceKind::Other => "Other",
        }
    }

    /// The kind of resource an IAM ARN names.
    pub fn of_arn(arn: &str) -> ResourceKind {
        let rest = arn.splitn(6, ':').nth(5).unwrap_or_default();
        let kind = rest.split('/').next().unwrap_or_default();
        match kind {
            "user" => ResourceKind::User,
            "group" => ResourceKind::Group,
            "policy" => ResourceKind::Policy,
            "role" => ResourceKind::Role,
            "root" => ResourceKind::Account,
            _ => ResourceKind::Other,
        }
    }
}

/// One finding per (check, resource), ready for either format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFinding {
    pub check: Check,
    pub severity: Severity,
    /// The reasons of the findings merged into this one (one, unless several findings of
    /// the check name the same resource, e.g. two report-only keys of one user).
    pub reasons: Vec<String>,
    pub kind: ResourceKind,
    /// The resource's id: an ARN, an access key id, or `AWS::::Account:<id>`.
    pub resource_id: String,
    /// The user the finding is about, when it is about a user or one of its keys.
    pub user: Option<String>,
    pub user_arn: Option<String>,
    /// The check could not be made (e.g. no root row in the credential report): not a
    /// failure, not a pass (ASFF `NOT_AVAILABLE`, OCSF compliance `Unknown`).
    pub cannot_check: bool,
}

impl ExportFinding {
    /// The reasons on one line.
    pub fn description(&self) -> String {
        self.reasons.join("; ")
    }

    /// `CIS AWS Foundations Benchmark v5.0.0/1.9`, ... for the check's controls.
    pub fn related_requirements(&self) -> Vec<String> {
        self.check
            .cis_controls()
            .iter()
            .map(|c| format!("{CIS_STANDARD}/{c}"))
            .collect()
    }
}

/// The account as a resource id.
pub fn account_resource(account_id: &str) -> String {
    format!("AWS::::Account:{account_id}")
}

/// The findings of an audit or a resync, one per (check, resource), in a stable order.
/// `users` gives each verdict with its user's ARN when known (else it is made from the
/// account and the name).
pub fn collect<'a>(
    scope: &Scope,
    account_findings: &'a [Finding],
    users: impl IntoIterator<Item = (&'a UserVerdict, Option<&'a str>)>,
) -> Vec<ExportFinding> {
    let mut out: BTreeMap<(Check, String), ExportFinding> = BTreeMap::new();
    let mut add = |f: &Finding, user: Option<(&str, String)>| {
        let (kind, id) = match (&f.resource, &f.key_id, &user) {
            (Some(arn), _, _) => (ResourceKind::of_arn(arn), arn.clone()),
            (None, Some(key), Some(_)) => (ResourceKind::AccessKey, key.clone()),
            (None, _, Some((_, arn))) => (ResourceKind::User, arn.clone()),
            (None, _, None) => (ResourceKind::Account, account_resource(&scope.account_id)),
        };
        let e = out
            .entry((f.check, id.clone()))
            .or_insert_with(|| ExportFinding {
                check: f.check,
                severity: f.severity,
                reasons: Vec::new(),
                kind,
                resource_id: id,
                user: user.as_ref().map(|(n, _)| n.to_string()),
                user_arn: user.as_ref().map(|(_, a)| a.clone()),
                cannot_check: true,
            });
        // One real failure among the merged findings makes the whole one a failure.
        e.cannot_check &= f.cannot_check;
        e.severity = e.severity.max(f.severity);
        if !e.reasons.contains(&f.reason) {
            e.reasons.push(f.reason.clone());
        }
    };
    for f in account_findings {
        add(f, None);
    }
    for (v, arn) in users {
        let arn = arn.map(str::to_string).unwrap_or_else(|| {
            format!(
                "arn:{}:iam::{}:user/{}",
                scope.partition, scope.account_id, v.user
            )
        });
        for f in &v.findings {
            add(f, Some((&v.user, arn.clone())));
        }
    }
    out.into_values().collect()
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let ell = '…';
    let mut end = max.saturating_sub(ell.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ell}", &s[..end])
}

#[cfg(test)]
mod tests;
