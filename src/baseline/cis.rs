//! The CIS AWS Foundations v5.0 section 1 checks beyond the baseline's own: the root user
//! (1.3–1.6), policies attached to users (1.14), full-admin policies (1.15), the support
//! role (1.16), server certificates (1.18), IAM Access Analyzer (1.19), identity
//! federation (1.20), CloudShell full access (1.21). Pure: (snapshot, facts, config, now)
//! → findings. Input that cannot be judged (no root row, a policy that is not JSON, a
//! certificate without expiry, Access Analyzer failing) is a "cannot check" finding,
//! never a pass.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::checks::{days_between, exemption, Check, Finding};
use crate::config::{Attach, Config};
use crate::inventory::cis::{AnalyzerRead, CisFacts};
use crate::inventory::credential_report::{RootEntry, RootRow};
use crate::inventory::{arn_name, AccountSnapshot, ManagedPolicyState, UserState};

/// The AWS managed policy CIS 1.16 wants on a role.
pub const SUPPORT_POLICY: &str = "AWSSupportAccess";
/// The AWS managed policy CIS 1.21 wants on nobody.
pub const CLOUDSHELL_POLICY: &str = "AWSCloudShellFullAccess";

/// The partition of the account (`aws`, `aws-cn`, `aws-us-gov`), from the caller's ARN.
pub fn partition(snap: &AccountSnapshot) -> &str {
    snap.caller_arn
        .strip_prefix("arn:")
        .and_then(|r| r.split(':').next())
        .filter(|p| !p.is_empty())
        .unwrap_or("aws")
}

/// `arn:PARTITION:iam::ACCOUNT:root`: the root user, and the resource of account-wide
/// findings (the ARN IAM gives the account as a principal).
pub fn account_arn(snap: &AccountSnapshot) -> String {
    format!("arn:{}:iam::{}:root", partition(snap), snap.account_id)
}

/// `arn:PARTITION:iam::aws:policy/NAME` (any path) is the AWS managed policy `name`.
pub(crate) fn is_aws_policy(arn: &str, name: &str) -> bool {
    arn.split(':').nth(4) == Some("aws") && arn.contains(":policy/") && arn_name(arn) == name
}

/// CIS 1.10 for one user: a console password and an active key never used.
pub fn initial_setup_keys(user: &UserState, findings: &mut Vec<Finding>) {
    if user.password.is_none() {
        return;
    }
    for k in user.active_keys().filter(|k| k.last_used.is_none()) {
        let mut f = Finding::new(
            Check::KeyFromInitialSetup,
            format!(
                "has a console password and {}, never used (keys are for programs: create one when a program needs it)",
                k.label()
            ),
        );
        f.key_id = k.id.clone();
        findings.push(f);
    }
}

/// The baseline's own policy `arn`, attached to users in `attach = "user"` mode: the
/// operator's choice, neither a CIS 1.14 finding nor moved into a group.
pub(crate) fn is_baseline_attachment(arn: &str, cfg: &Config) -> bool {
    let b = &cfg.baseline;
    let n = arn_name(arn);
    b.attach == Attach::User
        && ((b.mfa_policy.enabled && n == b.mfa_policy.name)
            || (b.source_ip_policy.enabled && n == b.source_ip_policy.name))
        && !is_aws_policy(arn, n)
}

/// CIS 1.14 for one user: managed policies attached to the user and inline policies. The
/// baseline's own policies attached in `attach = "user"` mode are the operator's choice: a
/// note, not a finding.
pub fn direct_policies(
    user: &UserState,
    snap: &AccountSnapshot,
    cfg: &Config,
    findings: &mut Vec<Finding>,
    notes: &mut Vec<String>,
) {
    let (mine, other): (Vec<&String>, Vec<&String>) = user
        .attached_policies
        .iter()
        .partition(|a| is_baseline_attachment(a, cfg));
    if !mine.is_empty() {
        let names: Vec<&str> = mine.iter().map(|a| arn_name(a)).collect();
        notes.push(format!(
            "baseline policies attached to the user itself (attach = \"user\", the operator's choice; CIS 1.14 prefers groups): {}",
            names.join(", ")
        ));
    }
    let inline = snap
        .cis
        .as_ref()
        .and_then(|c| c.user_inline_policies.get(&user.name));
    let mut what = Vec::new();
    if !other.is_empty() {
        let names: Vec<&str> = other.iter().map(|a| arn_name(a)).collect();
        what.push(format!("managed {}", names.join(", ")));
    }
    if let Some(inline) = inline.filter(|i| !i.is_empty()) {
        what.push(format!("inline {}", inline.join(", ")));
    }
    if !what.is_empty() {
        findings.push(Finding::new(
            Check::UserPolicyAttached,
            format!(
                "policies attached to the user, not through a group: {}",
                what.join("; ")
            ),
        ));
    }
}

/// What a policy document grants, for CIS 1.15.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminGrant {
    /// A statement allows Action `*` on Resource `*`.
    FullAdmin,
    /// No such statement. `not_action`: a statement allows `NotAction` on Resource `*`
    /// (broad, but not `*:*` for CIS; reported in the reason of nothing, only noted).
    No { not_action: bool },
}

/// Whether `v` is `"*"` or a list holding `"*"`. `Err` when it is neither a string nor a
/// list of strings.
fn has_star(v: &Value, field: &str) -> Result<bool, String> {
    match v {
        Value::String(s) => Ok(s == "*"),
        Value::Array(a) => a.iter().try_fold(false, |any, x| match x {
            Value::String(s) => Ok(any || s == "*"),
            _ => Err(format!("{field} holds {x}, not a string")),
        }),
        other => Err(format!("{field} is {other}, not a string or a list")),
    }
}

/// Judge a policy document (CIS 1.15): `Err` says why it cannot be evaluated. `"*"` means
/// exactly `*`: `"s3:*"` or `"arn:*"` are not. A statement's `Condition` is ignored (as
/// CIS and Prowler do): a conditional `*:*` still counts.
pub fn admin_grant(doc: &Value) -> Result<AdminGrant, String> {
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        Some(other) => return Err(format!("Statement is {other}, not a list or an object")),
        None => return Err("the document has no Statement".into()),
    };
    let mut not_action = false;
    for st in statements {
        if !st.is_object() {
            return Err(format!("a statement is {st}, not an object"));
        }
        if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let resource_star = match st.get("Resource") {
            Some(r) => has_star(r, "Resource")?,
            None => false, // NotResource: never all resources
        };
        if let Some(a) = st.get("Action") {
            if has_star(a, "Action")? && resource_star {
                return Ok(AdminGrant::FullAdmin);
            }
        } else if st.get("NotAction").is_some() && resource_star {
            not_action = true;
        }
    }
    Ok(AdminGrant::No { not_action })
}

/// The principals (`user NAME`, `group NAME`, `role NAME`) a managed policy is attached to.
fn attached_to(arn: &str, snap: &AccountSnapshot, facts: &CisFacts) -> Vec<String> {
    let has = |list: &[String]| list.iter().any(|a| a == arn);
    let users = snap
        .users
        .iter()
        .filter(|u| has(&u.attached_policies))
        .map(|u| format!("user {}", u.name));
    let groups = snap
        .groups
        .values()
        .filter(|g| has(&g.attached_policies))
        .map(|g| format!("group {}", g.name));
    let roles = facts
        .roles
        .values()
        .filter(|r| has(&r.attached_policies))
        .map(|r| format!("role {}", r.name));
    users.chain(groups).chain(roles).collect()
}

fn full_admin(p: &ManagedPolicyState, snap: &AccountSnapshot, facts: &CisFacts) -> Option<Finding> {
    let kind = if p.arn.split(':').nth(4) == Some("aws") {
        "AWS managed"
    } else {
        "customer-managed"
    };
    let version = p.default_version_id.as_deref().unwrap_or("default version");
    let Some(doc) = &p.default_document else {
        return Some(
            Finding::cannot_check(
                Check::PolicyFullAdmin,
                format!(
                    "cannot evaluate {kind} policy {}: its {version} document is missing or not JSON",
                    p.name
                ),
            )
            .with_resource(&p.arn),
        );
    };
    match admin_grant(doc) {
        Ok(AdminGrant::FullAdmin) => {
            let who = attached_to(&p.arn, snap, facts);
            let who = if who.is_empty() {
                "attached to nothing".to_string()
            } else {
                format!("attached to {}", who.join(", "))
            };
            Some(
                Finding::new(
                    Check::PolicyFullAdmin,
                    format!(
                        "{kind} policy {} ({version}) allows Action \"*\" on Resource \"*\"; {who}",
                        p.name
                    ),
                )
                .with_resource(&p.arn),
            )
        }
        Ok(AdminGrant::No { .. }) => None,
        Err(why) => Some(
            Finding::cannot_check(
                Check::PolicyFullAdmin,
                format!(
                    "cannot evaluate {kind} policy {} ({version}): {why}",
                    p.name
                ),
            )
            .with_resource(&p.arn),
        ),
    }
}

/// The root checks (1.3–1.6) from the report's root row and the virtual MFA devices.
fn root(
    snap: &AccountSnapshot,
    facts: &CisFacts,
    cfg: &Config,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let arn = account_arn(snap);
    let checks = [
        Check::RootAccessKey,
        Check::RootWithoutMfa,
        Check::RootVirtualMfa,
        Check::RootUsed,
    ];
    let r: &RootRow = match &facts.root {
        RootEntry::Read(r) => r,
        RootEntry::Missing => {
            return checks
                .iter()
                .map(|c| {
                    Finding::cannot_check(*c, "the credential report has no <root_account> row")
                        .with_resource(&arn)
                })
                .collect()
        }
        RootEntry::Unreadable(why) => {
            return checks
                .iter()
                .map(|c| {
                    Finding::cannot_check(
                        *c,
                        format!("the credential report's <root_account> row is unreadable: {why}"),
                    )
                    .with_resource(&arn)
                })
                .collect()
        }
    };
    let mut out = Vec::new();
    let active: Vec<String> = r
        .keys
        .iter()
        .filter(|k| k.active)
        .map(|k| format!("access key {}", k.slot))
        .collect();
    if !active.is_empty() {
        out.push(
            Finding::new(
                Check::RootAccessKey,
                format!(
                    "the root user has {} active: delete root access keys, use IAM roles or users",
                    active.join(" and ")
                ),
            )
            .with_resource(&arn),
        );
    }
    if !r.mfa_active {
        out.push(
            Finding::new(Check::RootWithoutMfa, "the root user has no MFA device")
                .with_resource(&arn),
        );
        out.push(
            Finding::new(
                Check::RootVirtualMfa,
                "the root user has no MFA device, so no hardware one",
            )
            .with_resource(&arn),
        );
    } else if let Some(d) = facts.virtual_mfa.iter().find(|d| is_root_device(d, snap)) {
        out.push(
            Finding::new(
                Check::RootVirtualMfa,
                format!(
                    "the root user's MFA is the virtual device {}; use a hardware device",
                    d.serial
                ),
            )
            .with_resource(&arn),
        );
    }
    let mut uses: Vec<(DateTime<Utc>, String)> = Vec::new();
    if let Some(t) = r.password_last_used {
        uses.push((t, "signed in".into()));
    }
    for k in &r.keys {
        if let Some(t) = k.last_used {
            uses.push((t, format!("used access key {}", k.slot)));
        }
    }
    if let Some((t, what)) = uses.into_iter().max_by_key(|(t, _)| *t) {
        let days = days_between(t, now);
        if days < i64::from(cfg.cis.root_used_days) {
            out.push(
                Finding::new(
                    Check::RootUsed,
                    format!(
                        "the root user {what} at {} (within {} day(s), cis.root_used_days)",
                        t.format("%Y-%m-%d %H:%M:%SZ"),
                        cfg.cis.root_used_days
                    ),
                )
                .with_resource(&arn),
            );
        }
    }
    out
}

/// A virtual MFA device of the root user: assigned to `…:root`, or with the serial AWS
/// gives root's device (`arn:…:iam::ACCOUNT:mfa/root-account-mfa-device`).
fn is_root_device(d: &crate::inventory::cis::VirtualMfa, snap: &AccountSnapshot) -> bool {
    d.user_arn.as_deref().is_some_and(|u| u.ends_with(":root"))
        || (d.serial.ends_with(":mfa/root-account-mfa-device")
            && d.serial.split(':').nth(4) == Some(snap.account_id.as_str()))
}

/// The CIS account checks.
pub fn evaluate(
    snap: &AccountSnapshot,
    facts: &CisFacts,
    cfg: &Config,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let mut out = root(snap, facts, cfg, now);
    let account = account_arn(snap);

    // 1.15: every customer-managed policy, and the AWS managed ones attached.
    for p in snap.policies.values().chain(facts.aws_policies.values()) {
        out.extend(full_admin(p, snap, facts));
    }

    // 1.16: a role with AWSSupportAccess.
    if !facts.roles.values().any(|r| {
        r.attached_policies
            .iter()
            .any(|a| is_aws_policy(a, SUPPORT_POLICY))
    }) {
        out.push(
            Finding::new(
                Check::NoSupportRole,
                format!(
                    "no role has {SUPPORT_POLICY} attached ({} role(s) read): create a support role for incidents",
                    facts.roles.len()
                ),
            )
            .with_resource(&account),
        );
    }

    // 1.18: expired server certificates; without an expiry date, cannot tell.
    for c in &facts.server_certificates {
        match c.expiration {
            Some(t) if t <= now => out.push(
                Finding::new(
                    Check::ServerCertificateExpired,
                    format!(
                        "server certificate {} expired {} ({} days ago)",
                        c.name,
                        t.format("%Y-%m-%d"),
                        days_between(t, now)
                    ),
                )
                .with_resource(&c.arn),
            ),
            Some(_) => {}
            None => out.push(
                Finding::cannot_check(
                    Check::ServerCertificateExpired,
                    format!("IAM gives no expiry date for server certificate {}", c.name),
                )
                .with_resource(&c.arn),
            ),
        }
    }

    // 1.19: an ACTIVE analyzer in each configured region.
    for (region, read) in &facts.access_analyzers {
        let resource = format!(
            "arn:{}:access-analyzer:{region}:{}:analyzer",
            partition(snap),
            snap.account_id
        );
        match read {
            AnalyzerRead::Read(list) if list.iter().any(|a| a.status == "ACTIVE") => {}
            AnalyzerRead::Read(list) => {
                let found = if list.is_empty() {
                    "none".to_string()
                } else {
                    list.iter()
                        .map(|a| format!("{} {}", a.name, a.status))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                out.push(
                    Finding::new(
                        Check::AccessAnalyzerDisabled,
                        format!("no ACTIVE IAM Access Analyzer in {region} (analyzers: {found})"),
                    )
                    .with_resource(resource),
                );
            }
            AnalyzerRead::Failed(e) => out.push(
                Finding::cannot_check(
                    Check::AccessAnalyzerDisabled,
                    format!("IAM Access Analyzer in {region} could not be read: {e}"),
                )
                .with_resource(resource),
            ),
        }
    }

    // 1.20 (informational): console users and no identity provider.
    if facts.saml_providers.is_empty() && facts.oidc_providers.is_empty() {
        let console = snap
            .users
            .iter()
            .filter(|u| u.password.is_some() && exemption(u, cfg, &snap.caller_arn).is_none())
            .count();
        if console > 0 {
            out.push(
                Finding::new(
                    Check::NoIdentityFederation,
                    format!(
                        "informational: {console} IAM user(s) sign in to the console and the account has no SAML or OIDC identity provider; consider federation (IAM Identity Center)"
                    ),
                )
                .with_resource(&account),
            );
        }
    }

    // 1.21: AWSCloudShellFullAccess on anyone.
    let cloudshell = |kind: &str, name: &str, arn: &str, attached: &[String]| {
        attached
            .iter()
            .find(|a| is_aws_policy(a, CLOUDSHELL_POLICY))
            .map(|_| {
                Finding::new(
                    Check::CloudShellFullAccess,
                    format!("{CLOUDSHELL_POLICY} is attached to {kind} {name}"),
                )
                .with_resource(arn)
            })
    };
    for u in &snap.users {
        out.extend(cloudshell("user", &u.name, &u.arn, &u.attached_policies));
    }
    for g in snap.groups.values() {
        out.extend(cloudshell("group", &g.name, &g.arn, &g.attached_policies));
    }
    for r in facts.roles.values() {
        out.extend(cloudshell("role", &r.name, &r.arn, &r.attached_policies));
    }
    out
}

#[cfg(test)]
mod tests;
