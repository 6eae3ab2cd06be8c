//! Whole-account snapshot in a handful of calls: GetAccountAuthorizationDetails (users,
//! groups, customer-managed policies with their documents; paged) plus the credential
//! report, the password policy and the caller identity. Users the report does not cover
//! are read live; users it covers cost no per-user call.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_iam::types::{EntityType, ReportStateType};
use chrono::{DateTime, Utc};

use super::cis::{self, CisFacts, RoleState};
use super::credential_report::{self, ParsedReport};
use super::{
    arn_name, decode_policy_document, live, to_chrono, AccessKeyState, AccountSnapshot, GroupState,
    ManagedPolicyState, Observed, PasswordPolicyState, UserState,
};
use crate::aws::{aws_error, Clients};
use crate::config::ROTATION_TAG_PREFIX;
use crate::error::{Error, Result};

/// How long to wait for AWS to generate the credential report before giving up.
const REPORT_DEADLINE: Duration = Duration::from_secs(120);

/// Read the whole account.
pub async fn read_account(clients: &Clients) -> Result<AccountSnapshot> {
    read(clients, None).await
}

/// Read the whole account and the facts of the CIS section 1 account checks
/// ([`super::CisFacts`]), with IAM Access Analyzer read in each of `analyzer_regions`.
pub async fn read_account_cis(
    clients: &Clients,
    analyzer_regions: &[String],
) -> Result<AccountSnapshot> {
    read(clients, Some(analyzer_regions)).await
}

async fn read(clients: &Clients, cis: Option<&[String]>) -> Result<AccountSnapshot> {
    let iam = &clients.iam;
    let mut facts = CisFacts::default();
    let extra = async {
        match cis {
            Some(regions) => cis::read_extra(clients, regions, &mut facts).await,
            None => Ok(()),
        }
    };
    // The virtual MFA devices (CIS 1.5) after the report, and only if its root row needs
    // them: on a large account they are several pages.
    let report = async {
        let report = read_credential_report(iam).await?;
        let mfa = match cis {
            Some(_) if cis::needs_virtual_mfa(&report.0.root) => cis::read_virtual_mfa(iam).await?,
            _ => Vec::new(),
        };
        Ok::<_, Error>((report, mfa))
    };
    let (caller, gaad, report, password_policy, extra) = tokio::join!(
        clients.caller_identity(),
        read_authorization_details(iam, true, cis.is_some()),
        report,
        read_password_policy(iam),
        extra,
    );
    // Errors in the order of the baseline's reads (the caller's identity first: its error
    // says best what is wrong with credentials or the endpoint), then the CIS reads.
    let (caller_arn, account_id) = caller?;
    let Gaad {
        users: gaad_users,
        groups,
        policies,
        roles,
        aws_policies,
        user_inline_policies,
    } = gaad?;
    let ((mut report, report_generated), virtual_mfa) = report?;
    let password_policy = password_policy?;
    extra?;
    let cis = cis.map(|_| {
        facts.virtual_mfa = virtual_mfa;
        facts.root = std::mem::take(&mut report.root);
        facts.roles = roles;
        facts.aws_policies = aws_policies;
        facts.user_inline_policies = user_inline_policies;
        facts
    });

    let mut snap = AccountSnapshot {
        account_id,
        caller_arn,
        groups,
        policies,
        password_policy,
        report_generated,
        cis,
        ..Default::default()
    };
    snap.warnings.extend(
        report
            .bad_rows
            .iter()
            .map(|b| format!("{b}; this user is read live instead")),
    );
    let (covered, missing) = merge_report(gaad_users, report);
    snap.users = covered;
    // Users created after the report (or whose row was unreadable): per-user calls.
    for name in missing {
        match live::read_user(iam, &name).await? {
            Some(u) => {
                snap.users_read_live.push(name);
                snap.users.push(u);
            }
            None => tracing::debug!(user = %name, "user deleted while the account was read"),
        }
    }
    snap.users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(snap)
}

/// Account-level state only (groups, customer-managed policies, password policy): what
/// the daemon's account reconcile needs, without users.
pub async fn read_account_level(clients: &Clients) -> Result<AccountSnapshot> {
    let iam = &clients.iam;
    let (caller, gaad, password_policy) = tokio::join!(
        clients.caller_identity(),
        read_authorization_details(iam, false, false),
        read_password_policy(iam),
    );
    let (caller_arn, account_id) = caller?;
    let Gaad {
        groups, policies, ..
    } = gaad?;
    Ok(AccountSnapshot {
        account_id,
        caller_arn,
        groups,
        policies,
        password_policy: password_policy?,
        ..Default::default()
    })
}

/// Join GAAD users with their report rows. Returns the users the report covers and the
/// names of those it does not (created after it, or with an unreadable row, or whose keys
/// the rotation could not tell apart: see [`keys_indistinct`]).
pub fn merge_report(
    gaad_users: Vec<UserState>,
    report: ParsedReport,
) -> (Vec<UserState>, Vec<String>) {
    let ParsedReport { mut rows, .. } = report;
    let mut covered = Vec::with_capacity(gaad_users.len());
    let mut missing = Vec::new();
    for mut u in gaad_users {
        match rows.remove(&u.name) {
            Some(row) if keys_indistinct(&u, &row.keys) => missing.push(u.name),
            Some(row) => {
                u.password = row.password;
                u.mfa_active = row.mfa_active;
                u.keys = row.keys;
                u.observed = Observed::CredentialReport;
                covered.push(u);
            }
            None => missing.push(u.name),
        }
    }
    (covered, missing)
}

/// A user with rotation tags whose two report keys were created in the same second: the
/// report names keys by slot and CreateDate only, and rotation tags match report keys by
/// CreateDate, so such keys are read live (with their ids) instead.
fn keys_indistinct(u: &UserState, keys: &[AccessKeyState]) -> bool {
    matches!(keys, [a, b] if (a.created - b.created).num_seconds().abs() < 1)
        && u.tags
            .iter()
            .any(|(k, _)| k.starts_with(ROTATION_TAG_PREFIX))
}

/// What GetAccountAuthorizationDetails told.
#[derive(Default)]
struct Gaad {
    users: Vec<UserState>,
    groups: BTreeMap<String, GroupState>,
    /// Customer-managed policies by name.
    policies: BTreeMap<String, ManagedPolicyState>,
    /// With `cis`: roles by name.
    roles: BTreeMap<String, RoleState>,
    /// With `cis`: AWS managed policies attached to a user, group or role, by ARN.
    aws_policies: BTreeMap<String, ManagedPolicyState>,
    /// With `cis`: inline policy names by user.
    user_inline_policies: BTreeMap<String, Vec<String>>,
}

/// `cis` adds roles and AWS managed policies to the same call (the same number of pages
/// unless the account has thousands of roles).
async fn read_authorization_details(
    iam: &aws_sdk_iam::Client,
    include_users: bool,
    cis: bool,
) -> Result<Gaad> {
    let mut users = Vec::new();
    let mut groups = BTreeMap::new();
    let mut policies = BTreeMap::new();
    let mut g = Gaad::default();
    let mut marker: Option<String> = None;
    loop {
        let mut req = iam.get_account_authorization_details();
        if include_users {
            req = req.filter(EntityType::User);
        }
        if cis {
            req = req
                .filter(EntityType::Role)
                .filter(EntityType::AwsManagedPolicy);
        }
        let mut out = req
            .filter(EntityType::Group)
            .filter(EntityType::LocalManagedPolicy)
            .max_items(1000)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| aws_error("iam", "GetAccountAuthorizationDetails", e))?;
        // Move the strings out of the SDK's structures instead of copying them, and free
        // each SDK user as soon as it is converted (a page can hold 10,000 users on moto).
        let page_users = out.user_detail_list.take().unwrap_or_default();
        users.reserve(page_users.len());
        if cis {
            for u in &page_users {
                let names: Vec<String> = u
                    .user_policy_list()
                    .iter()
                    .filter_map(|p| p.policy_name().map(str::to_string))
                    .collect();
                if let (Some(user), false) = (u.user_name(), names.is_empty()) {
                    g.user_inline_policies.insert(user.to_string(), names);
                }
            }
            for r in out.role_detail_list() {
                let Some(name) = r.role_name() else { continue };
                g.roles.insert(
                    name.to_string(),
                    RoleState {
                        name: name.to_string(),
                        arn: r.arn().unwrap_or_default().to_string(),
                        attached_policies: r
                            .attached_managed_policies()
                            .iter()
                            .filter_map(|p| p.policy_arn().map(str::to_string))
                            .collect(),
                    },
                );
            }
        }
        users.extend(page_users.into_iter().filter_map(user_from_detail));
        for g in out.group_detail_list() {
            let Some(name) = g.group_name() else { continue };
            groups.insert(
                name.to_string(),
                GroupState {
                    name: name.to_string(),
                    arn: g.arn().unwrap_or_default().to_string(),
                    path: g.path().unwrap_or("/").to_string(),
                    attached_policies: g
                        .attached_managed_policies()
                        .iter()
                        .filter_map(|p| p.policy_arn().map(str::to_string))
                        .collect(),
                },
            );
        }
        for p in out.policies() {
            let Some(arn) = p.arn() else { continue };
            // Some emulators omit PolicyName here; the ARN always ends with it.
            let name = p.policy_name().unwrap_or_else(|| arn_name(arn)).to_string();
            let mut versions: Vec<_> = p.policy_version_list().iter().collect();
            versions.sort_by_key(|v| {
                (
                    v.create_date().map(|d| (d.secs(), d.subsec_nanos())),
                    v.version_id().map(version_number),
                )
            });
            let default_document = versions
                .iter()
                .find(|v| v.is_default_version())
                .and_then(|v| v.document())
                .and_then(decode_policy_document);
            let state = ManagedPolicyState {
                name,
                arn: arn.to_string(),
                path: p.path().unwrap_or("/").to_string(),
                default_version_id: p.default_version_id().map(str::to_string),
                default_document,
                version_ids: versions
                    .iter()
                    .filter_map(|v| v.version_id().map(str::to_string))
                    .collect(),
            };
            if is_aws_managed(arn) {
                g.aws_policies.insert(arn.to_string(), state);
            } else {
                policies.insert(state.name.clone(), state);
            }
        }
        match (out.is_truncated(), out.marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => break,
        }
    }
    // Keep only the AWS managed policies something is attached to (an emulator may list
    // every AWS managed policy).
    let attached: std::collections::BTreeSet<&str> = users
        .iter()
        .flat_map(|u: &UserState| &u.attached_policies)
        .chain(
            groups
                .values()
                .flat_map(|g: &GroupState| &g.attached_policies),
        )
        .chain(g.roles.values().flat_map(|r| &r.attached_policies))
        .map(String::as_str)
        .collect();
    g.aws_policies
        .retain(|arn, _| attached.contains(arn.as_str()));
    Ok(Gaad {
        users,
        groups,
        policies,
        ..g
    })
}

/// `arn:aws:iam::aws:policy/…` (in any partition): an AWS managed policy.
pub fn is_aws_managed(arn: &str) -> bool {
    arn.split(':').nth(4) == Some("aws")
}

/// A GAAD user as a [`UserState`] without credentials (the report or a live read adds them).
fn user_from_detail(u: aws_sdk_iam::types::UserDetail) -> Option<UserState> {
    Some(UserState {
        name: u.user_name?,
        arn: u.arn.unwrap_or_default(),
        path: u.path.unwrap_or_else(|| "/".to_string()),
        created: u
            .create_date
            .as_ref()
            .and_then(to_chrono)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        tags: u
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect(),
        groups: u.group_list.unwrap_or_default(),
        attached_policies: u
            .attached_managed_policies
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.policy_arn)
            .collect(),
        password: None,
        mfa_active: false,
        keys: Vec::new(),
        observed: Observed::CredentialReport,
    })
}

/// `v12` → 12 (for ordering versions).
pub(crate) fn version_number(id: &str) -> u64 {
    id.trim_start_matches(['v', 'V']).parse().unwrap_or(0)
}

/// Generate (if AWS has no recent one), wait while AWS is generating it, then get it.
async fn read_credential_report(
    iam: &aws_sdk_iam::Client,
) -> Result<(ParsedReport, Option<DateTime<Utc>>)> {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let state = match iam.generate_credential_report().send().await {
            Ok(out) => out.state().cloned(),
            Err(e) => {
                let err = aws_error("iam", "GenerateCredentialReport", e);
                // LimitExceeded: a generation is already under way; wait for it.
                if !err.is_limit_exceeded() {
                    return Err(err);
                }
                Some(ReportStateType::Inprogress)
            }
        };
        if state == Some(ReportStateType::Complete) {
            match iam.get_credential_report().send().await {
                Ok(out) => {
                    let content = out.content().map(|b| b.as_ref()).unwrap_or_default();
                    let parsed = credential_report::parse(content)?;
                    return Ok((parsed, out.generated_time().and_then(to_chrono)));
                }
                Err(e) => {
                    let err = aws_error("iam", "GetCredentialReport", e);
                    match err.aws_code() {
                        Some("ReportInProgress")
                        | Some("ReportNotPresent")
                        | Some("ReportExpired") => {}
                        _ => return Err(err),
                    }
                }
            }
        }
        if started.elapsed() > REPORT_DEADLINE {
            return Err(Error::CredentialReport(format!(
                "AWS did not finish generating it within {}s; try again in a few minutes",
                REPORT_DEADLINE.as_secs()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn read_password_policy(iam: &aws_sdk_iam::Client) -> Result<Option<PasswordPolicyState>> {
    match iam.get_account_password_policy().send().await {
        Ok(out) => Ok(out.password_policy().map(|p| {
            let num = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
            PasswordPolicyState {
                minimum_length: num(p.minimum_password_length()),
                require_uppercase: p.require_uppercase_characters(),
                require_lowercase: p.require_lowercase_characters(),
                require_numbers: p.require_numbers(),
                require_symbols: p.require_symbols(),
                reuse_prevention: num(p.password_reuse_prevention()),
                max_age_days: if p.expire_passwords() || p.max_password_age().is_some() {
                    num(p.max_password_age())
                } else {
                    0
                },
                allow_users_to_change: p.allow_users_to_change_password(),
                hard_expiry: p.hard_expiry().unwrap_or(false),
            }
        })),
        Err(e) => {
            let err = aws_error("iam", "GetAccountPasswordPolicy", e);
            if err.is_not_found() {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::credential_report::{self, ParsedReport};

    fn gaad_user(name: &str) -> UserState {
        UserState {
            name: name.into(),
            arn: format!("arn:aws:iam::1:user/{name}"),
            path: "/".into(),
            created: DateTime::<Utc>::UNIX_EPOCH,
            tags: Default::default(),
            groups: vec![],
            attached_policies: vec![],
            password: None,
            mfa_active: false,
            keys: vec![],
            observed: Observed::Live,
        }
    }

    #[test]
    fn users_missing_from_the_report_or_with_bad_rows_are_read_live() {
        let csv = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date\n\
                   old,arn:aws:iam::1:user/old,2025-01-01T00:00:00+00:00,true,N/A,2025-01-01T00:00:00+00:00,true,true,2025-01-01T00:00:00+00:00,N/A,false,N/A,N/A\n\
                   broken,arn:aws:iam::1:user/broken,2025-01-01T00:00:00+00:00,perhaps\n\
                   deleted-since,arn:aws:iam::1:user/deleted-since,2025-01-01T00:00:00+00:00,false,N/A,N/A,false,false,N/A,N/A,false,N/A,N/A\n";
        let report: ParsedReport = credential_report::parse(csv.as_bytes()).unwrap();
        assert_eq!(report.bad_rows.len(), 1);
        let (covered, missing) = merge_report(
            vec![gaad_user("old"), gaad_user("broken"), gaad_user("new")],
            report,
        );
        assert_eq!(covered.len(), 1);
        assert_eq!(covered[0].name, "old");
        assert!(
            covered[0].mfa_active && covered[0].password.is_some() && covered[0].keys.len() == 1
        );
        assert_eq!(covered[0].observed, Observed::CredentialReport);
        assert_eq!(missing, vec!["broken".to_string(), "new".to_string()]);
    }

    #[test]
    fn report_keys_made_in_the_same_second_are_read_live_for_rotation() {
        let header = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date\n";
        let row = |name: &str, second: &str| {
            format!("{name},arn:aws:iam::1:user/{name},2025-01-01T00:00:00+00:00,false,N/A,N/A,false,true,2025-01-01T00:00:00+00:00,N/A,true,2025-01-01T00:00:{second}+00:00,N/A\n")
        };
        let csv = format!(
            "{header}{}{}{}",
            row("same", "00"),
            row("apart", "05"),
            row("untagged", "00")
        );
        let report: ParsedReport = credential_report::parse(csv.as_bytes()).unwrap();
        let tagged = |name: &str| {
            let mut u = gaad_user(name);
            u.tags.insert(
                format!("{ROTATION_TAG_PREFIX}AKIAEXAMPLE00000001"),
                "phase=draining since=2025-01-02T00:00:00Z new=AKIAEXAMPLE00000002".into(),
            );
            u
        };
        let (covered, missing) = merge_report(
            vec![tagged("same"), tagged("apart"), gaad_user("untagged")],
            report,
        );
        let names: Vec<&str> = covered.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, vec!["apart", "untagged"]);
        assert_eq!(missing, vec!["same".to_string()]);
    }
}
