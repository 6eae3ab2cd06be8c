//! The accounts in scope (`[accounts]`): the caller's own, a fixed list, or the ACTIVE
//! accounts of an AWS Organization filtered by account and OU ids; and the clients for
//! each, built from an assumed role with its own pacing and call counter.
//!
//! An account whose role cannot be assumed is an [`AccountError`] for that account (one
//! line: what failed and how to fix it), never an error of the whole run.

pub mod credentials;

use std::collections::BTreeMap;

use aws_credential_types::provider::SharedCredentialsProvider;

use crate::aws::{aws_error, CallStats, Clients};
use crate::config::{is_account_id, AccountSource, Config};
use crate::error::{Error, Result};
use crate::pacing::PacingSettings;

pub use credentials::{AssumedRole, SESSION_NAME};

/// One account in scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    /// The account's name in the organization, when known.
    pub name: Option<String>,
    /// The role to assume; `None`: the caller's own account, read with its own credentials.
    pub role_arn: Option<String>,
}

/// The accounts to work on, sorted by id, and how they were found.
#[derive(Debug, Clone)]
pub struct Scope {
    pub source: AccountSource,
    /// The caller's account id and ARN (sts:GetCallerIdentity).
    pub caller_account: String,
    pub caller_arn: String,
    pub targets: Vec<Target>,
    /// Accounts listed but left out, with why (not ACTIVE, filtered out).
    pub skipped: Vec<(String, String)>,
}

/// An account that could not be read: its id, its name when known, and the one-line
/// reason with the fix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountError {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub error: String,
}

/// Whether an account with these ancestors (its OU chain up to the root) is in scope:
/// not excluded (by its id or an ancestor's), and included (by id or ancestor) when
/// `include` is not empty. Pure.
pub fn selected(id: &str, ancestors: &[String], include: &[String], exclude: &[String]) -> bool {
    let hit = |set: &[String]| set.iter().any(|x| x == id || ancestors.contains(x));
    !hit(exclude) && (include.is_empty() || hit(include))
}

/// The partition of an ARN (`aws`, `aws-cn`, ...).
fn partition_of(arn: &str) -> &str {
    arn.split(':')
        .nth(1)
        .filter(|p| !p.is_empty())
        .unwrap_or("aws")
}

/// Find the accounts in scope: the calls are the caller's identity, and for an
/// organization ListAccounts (paged) and, when the filters name OUs, ListParents.
pub async fn discover(cfg: &Config, caller: &Clients) -> Result<Scope> {
    let a = &cfg.accounts;
    let (caller_arn, caller_account) = caller.caller_identity().await?;
    let partition = partition_of(&caller_arn).to_string();
    let mut skipped = Vec::new();
    let mut targets = Vec::new();
    let role_for = |id: &str, given: Option<&String>| match given {
        Some(arn) => Some(arn.clone()),
        None if id == caller_account => None,
        None => Some(a.role_arn_for(&partition, id)),
    };
    match a.source {
        AccountSource::Caller => targets.push(Target {
            id: caller_account.clone(),
            name: None,
            role_arn: None,
        }),
        AccountSource::List => {
            for e in &a.list {
                if selected(&e.id, &[], &a.include, &a.exclude) {
                    targets.push(Target {
                        id: e.id.clone(),
                        name: None,
                        role_arn: role_for(&e.id, e.role_arn.as_ref()),
                    });
                } else {
                    skipped.push((e.id.clone(), "left out by accounts.include/exclude".into()));
                }
            }
        }
        AccountSource::Organization => {
            let listed = list_organization(caller, &caller_account).await?;
            let mut parents = BTreeMap::new();
            for (id, name, state) in listed {
                if state != "ACTIVE" {
                    skipped.push((id, format!("{state} in the organization")));
                    continue;
                }
                let ancestors = if a.filters_by_ou() {
                    ancestors(caller, &id, &mut parents).await?
                } else {
                    Vec::new()
                };
                if selected(&id, &ancestors, &a.include, &a.exclude) {
                    let role_arn = role_for(&id, None);
                    targets.push(Target {
                        id,
                        name: Some(name).filter(|n| !n.is_empty()),
                        role_arn,
                    });
                } else {
                    skipped.push((id, "left out by accounts.include/exclude".into()));
                }
            }
        }
    }
    targets.sort_by(|x, y| x.id.cmp(&y.id));
    Ok(Scope {
        source: a.source,
        caller_account,
        caller_arn,
        targets,
        skipped,
    })
}

impl Scope {
    /// Keep only account `id` (`--account ID`), or say why it cannot be chosen.
    pub fn narrow(&mut self, id: &str) -> Result<()> {
        if !is_account_id(id) {
            return Err(Error::Config(format!(
                "--account {id:?} is not an account id; write its 12 digits"
            )));
        }
        if !self.targets.iter().any(|t| t.id == id) {
            let why = self
                .skipped
                .iter()
                .find(|(s, _)| s == id)
                .map(|(_, w)| format!(" ({w})"))
                .unwrap_or_default();
            return Err(Error::Config(format!(
                "--account {id} is not in scope{why}; the accounts in scope (accounts.source = \"{}\") are: {}",
                self.source.as_str(),
                self.targets
                    .iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.targets.retain(|t| t.id == id);
        Ok(())
    }
}

/// Every account of the organization: (id, name, state), in the order listed.
async fn list_organization(
    caller: &Clients,
    caller_account: &str,
) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = caller
            .organizations()
            .list_accounts()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| organization_error(aws_error("organizations", "ListAccounts", e)))?;
        for acct in page.accounts() {
            let Some(id) = acct.id() else { continue };
            #[allow(deprecated)]
            let state = acct
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "UNKNOWN".into());
            out.push((
                id.to_string(),
                acct.name().unwrap_or_default().to_string(),
                state,
            ));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    if out.is_empty() {
        return Err(Error::Config(format!(
            "accounts.source = \"organization\" but Organizations ListAccounts returned no account: account {caller_account} is not the management account or a delegated administrator of an organization; run iam-warden there, or use accounts.source = \"list\""
        )));
    }
    Ok(out)
}

/// A refused ListAccounts / ListParents: one line saying where to run iam-warden.
fn organization_error(e: Error) -> Error {
    match &e {
        Error::Aws {
            operation,
            code: Some(code),
            message,
            ..
        } if code.starts_with("AccessDenied") || code == "AWSOrganizationsNotInUseException" => {
            Error::Config(format!(
                "accounts.source = \"organization\": Organizations {operation} was refused ({code}: {message}); run iam-warden with credentials of the organization's management account or a delegated administrator (organizations:ListAccounts, organizations:ListParents), or use accounts.source = \"list\""
            ))
        }
        _ => e,
    }
}

/// The OU chain above `child` up to the root (ListParents, cached per OU).
async fn ancestors(
    caller: &Clients,
    child: &str,
    parents: &mut BTreeMap<String, Option<String>>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut at = child.to_string();
    // An organization is at most 5 OU levels deep under its root; the bound stops a loop.
    for _ in 0..8 {
        let parent = match parents.get(&at) {
            Some(p) => p.clone(),
            None => {
                let page = caller
                    .organizations()
                    .list_parents()
                    .child_id(&at)
                    .send()
                    .await
                    .map_err(|e| {
                        organization_error(aws_error("organizations", "ListParents", e))
                    })?;
                let p = page
                    .parents()
                    .first()
                    .and_then(|p| p.id())
                    .map(str::to_owned);
                if at != child {
                    parents.insert(at.clone(), p.clone());
                }
                p
            }
        };
        match parent {
            Some(p) => {
                out.push(p.clone());
                if p.starts_with("r-") {
                    break;
                }
                at = p;
            }
            None => break,
        }
    }
    Ok(out)
}

/// The clients for one account: its assumed role (or the caller's own credentials), with
/// its own pacing and call counter. The error is that account's, one line with the fix.
pub async fn connect(cfg: &Config, caller: &Clients, target: &Target) -> Result<Clients, String> {
    let settings = PacingSettings::from_config(cfg);
    let (credentials, identity) = match &target.role_arn {
        None => (None, None),
        Some(arn) => {
            let role = AssumedRole::assume(&caller.sts, arn, cfg.accounts.external_id.as_deref())
                .await
                .map_err(|e| assume_error(arn, &target.id, &e))?;
            // STS said who the session is: no GetCallerIdentity per audit or resync.
            let identity = role.identity();
            (Some(SharedCredentialsProvider::new(role)), identity)
        }
    };
    let clients = caller
        .with_credentials(credentials, CallStats::new(), &settings)
        .map_err(|e| e.to_string())?;
    Ok(match identity {
        Some((arn, account)) => clients.with_identity(arn, account),
        None => clients,
    })
}

/// "cannot assume ROLE: CODE: message; how to fix it".
fn assume_error(arn: &str, id: &str, e: &Error) -> String {
    match e {
        Error::Aws {
            code: Some(code),
            message,
            ..
        } => {
            let message = if message == code {
                String::new()
            } else {
                format!(" ({message})")
            };
            format!(
                "cannot assume {arn}: {code}{message}; deploy the member role in account {id} (its trust policy must allow iam-warden's principal; permissions as deploy/iam/iam-warden-policy.json) or fix accounts.role_name / accounts.external_id"
            )
        }
        other => format!("cannot assume {arn}: {other}"),
    }
}

/// `cfg` for account `id`: its `[accounts.exempt]` users added to `exemptions.users`.
pub fn config_for(cfg: &Config, id: &str) -> Config {
    let mut c = cfg.clone();
    if let Some(users) = cfg.accounts.exempt.get(id) {
        c.exemptions.users.extend(users.iter().cloned());
    }
    c
}

#[cfg(test)]
mod tests;
