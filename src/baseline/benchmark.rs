//! The CIS AWS Foundations Benchmark v5.0.0 section 1 view of an audit: each control with
//! its status and what fails it. Pure: it reads the findings (whose checks name their
//! controls in [`Check::cis_controls`], the one table) and a few facts of the snapshot.
//! Manual controls are listed as manual, never as passed; a control whose input could not
//! be read is "cannot-check", never passed.

use std::collections::BTreeMap;

use serde::Serialize;

use super::checks::{Check, Finding, UserVerdict};
use crate::config::Config;
use crate::inventory::PasswordPolicyState;

/// The benchmark's name on the command line (`audit --benchmark cis-5.0`).
pub const CIS_5_0: &str = "cis-5.0";

/// A control of section 1.
#[derive(Debug, Clone, Copy)]
pub struct Control {
    pub id: &'static str,
    pub title: &'static str,
    /// Checked by a person, not by iam-warden.
    pub manual: bool,
    /// A finding of this control is informational (CIS 1.20).
    pub informational: bool,
}

const fn auto(id: &'static str, title: &'static str) -> Control {
    Control {
        id,
        title,
        manual: false,
        informational: false,
    }
}

const fn manual(id: &'static str, title: &'static str) -> Control {
    Control {
        id,
        title,
        manual: true,
        informational: false,
    }
}

/// CIS AWS Foundations Benchmark v5.0.0, section 1 (Identity and Access Management).
pub const CONTROLS: [Control; 21] = [
    manual("1.1", "Maintain current contact details"),
    manual("1.2", "Ensure security contact information is registered"),
    auto("1.3", "Ensure no 'root' user account access key exists"),
    auto("1.4", "Ensure MFA is enabled for the 'root' user account"),
    auto(
        "1.5",
        "Ensure hardware MFA is enabled for the 'root' user account",
    ),
    auto(
        "1.6",
        "Eliminate use of the 'root' user for administrative and daily tasks",
    ),
    auto(
        "1.7",
        "Ensure IAM password policy requires minimum length of 14 or greater",
    ),
    auto("1.8", "Ensure IAM password policy prevents password reuse"),
    auto(
        "1.9",
        "Ensure MFA is enabled for all IAM users that have a console password",
    ),
    auto(
        "1.10",
        "Do not create access keys during initial setup for IAM users with a console password",
    ),
    auto(
        "1.11",
        "Ensure credentials unused for 45 days or more are disabled",
    ),
    auto(
        "1.12",
        "Ensure there is only one active access key for any single IAM user",
    ),
    auto(
        "1.13",
        "Ensure access keys are rotated every 90 days or less",
    ),
    auto(
        "1.14",
        "Ensure IAM users receive permissions only through groups",
    ),
    auto(
        "1.15",
        "Ensure IAM policies that allow full \"*:*\" administrative privileges are not attached",
    ),
    auto(
        "1.16",
        "Ensure a support role has been created to manage incidents with AWS Support",
    ),
    manual(
        "1.17",
        "Ensure IAM instance roles are used for AWS resource access from instances",
    ),
    auto(
        "1.18",
        "Ensure that all expired SSL/TLS certificates stored in AWS IAM are removed",
    ),
    auto(
        "1.19",
        "Ensure that IAM External Access Analyzer is enabled for all regions",
    ),
    Control {
        id: "1.20",
        title:
            "Ensure IAM users are managed centrally via identity federation or AWS Organizations",
        manual: false,
        informational: true,
    },
    auto(
        "1.21",
        "Ensure access to AWSCloudShellFullAccess is restricted",
    ),
];

/// CIS 1.8 asks that the last 24 passwords not be reused.
pub const CIS_REUSE_PREVENTION: u32 = 24;
/// CIS 1.7's minimum password length.
pub const CIS_MIN_LENGTH: u32 = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    NotApplicable,
    Manual,
    CannotCheck,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotApplicable => "not-applicable",
            Status::Manual => "manual",
            Status::CannotCheck => "cannot-check",
        }
    }
}

/// One failing (or uncheckable) item of a control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// `user NAME`, a resource ARN, or `account`.
    pub subject: String,
    pub check: Check,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlResult {
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub informational: bool,
    /// The iam-warden checks that evidence the control.
    pub checks: Vec<Check>,
    /// What fails the control (status fail), or what could not be checked (cannot-check).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
    /// Why manual, not applicable, or judged with limits other than CIS's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the view needs besides the findings.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// The CIS account facts were read (`cis.enabled`).
    pub account_read: bool,
    pub password_policy: Option<&'a PasswordPolicyState>,
    /// Controls that do not apply to this account, with why (e.g. no server certificates).
    pub not_applicable: BTreeMap<&'static str, String>,
}

fn subject(f: &Finding) -> String {
    f.resource.clone().unwrap_or_else(|| "account".into())
}

/// The checks that evidence `id`.
pub fn checks_of(id: &str) -> Vec<Check> {
    Check::ALL
        .into_iter()
        .filter(|c| c.cis_controls().contains(&id))
        .collect()
}

/// 1.7 and 1.8 from the password policy itself (the baseline's password check covers
/// more fields and its own limits).
fn password_control(id: &str, have: Option<&PasswordPolicyState>) -> (Status, Vec<Item>) {
    let fail = |reason: String| {
        (
            Status::Fail,
            vec![Item {
                subject: "account".into(),
                check: Check::PasswordPolicyWeak,
                reason,
            }],
        )
    };
    let Some(p) = have else {
        return fail("the account has no password policy".into());
    };
    match id {
        "1.7" if p.minimum_length < CIS_MIN_LENGTH => fail(format!(
            "minimum password length {} < {CIS_MIN_LENGTH}",
            p.minimum_length
        )),
        "1.8" if p.reuse_prevention < CIS_REUSE_PREVENTION => fail(format!(
            "password reuse prevention {} < {CIS_REUSE_PREVENTION}",
            p.reuse_prevention
        )),
        _ => (Status::Pass, Vec::new()),
    }
}

/// Where the configured limits differ from CIS's, say so.
fn limit_note(id: &str, cfg: &Config) -> Option<String> {
    let c = &cfg.baseline.credentials;
    match id {
        "1.11" if c.unused_days != 45 => Some(format!(
            "judged with baseline.credentials.unused_days = {} (CIS: 45)",
            c.unused_days
        )),
        "1.13" if c.max_key_age_days != 90 => Some(format!(
            "judged with baseline.credentials.max_key_age_days = {} (CIS: 90)",
            c.max_key_age_days
        )),
        "1.6" => Some(format!(
            "root use within cis.root_used_days = {} day(s) fails",
            cfg.cis.root_used_days
        )),
        _ => None,
    }
}

/// Each control of section 1 with its status.
pub fn evaluate(
    users: &[UserVerdict],
    account: &[Finding],
    facts: &Facts,
    cfg: &Config,
) -> Vec<ControlResult> {
    CONTROLS
        .iter()
        .map(|c| {
            let checks = checks_of(c.id);
            let mut r = ControlResult {
                id: c.id,
                title: c.title,
                status: Status::Pass,
                informational: c.informational,
                checks: checks.clone(),
                items: Vec::new(),
                note: limit_note(c.id, cfg),
            };
            if c.manual {
                r.status = Status::Manual;
                r.note = Some("not automatable: check it by hand".into());
                return r;
            }
            if c.id == "1.7" || c.id == "1.8" {
                (r.status, r.items) = password_control(c.id, facts.password_policy);
                return r;
            }
            if checks.iter().any(|k| k.is_account_level()) && !facts.account_read {
                r.status = Status::CannotCheck;
                r.note = Some("the CIS account checks were not made (cis.enabled = false)".into());
                return r;
            }
            let user_items = users.iter().flat_map(|u| {
                u.findings
                    .iter()
                    .filter(|f| checks.contains(&f.check))
                    .map(move |f| (format!("user {}", u.user), f))
            });
            let account_items = account
                .iter()
                .filter(|f| checks.contains(&f.check))
                .map(|f| (subject(f), f));
            let (unchecked, failing): (Vec<_>, Vec<_>) = user_items
                .chain(account_items)
                .partition(|(_, f)| f.cannot_check);
            let to_items = |v: Vec<(String, &Finding)>| {
                v.into_iter()
                    .map(|(subject, f)| Item {
                        subject,
                        check: f.check,
                        reason: f.reason.clone(),
                    })
                    .collect::<Vec<_>>()
            };
            if !failing.is_empty() {
                r.status = Status::Fail;
                r.items = to_items(failing);
                r.items.extend(to_items(unchecked));
            } else if !unchecked.is_empty() {
                r.status = Status::CannotCheck;
                r.items = to_items(unchecked);
            } else if let Some(why) = facts.not_applicable.get(c.id) {
                r.status = Status::NotApplicable;
                r.note = Some(why.clone());
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests;
