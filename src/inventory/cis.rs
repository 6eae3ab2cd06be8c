//! The account-level facts CIS AWS Foundations v5.0 section 1 needs beyond the users:
//! the root user (credential report row), roles and attached AWS managed policies (from
//! the same GetAccountAuthorizationDetails), virtual MFA devices, server certificates,
//! identity providers and IAM Access Analyzer. Read once per audit: a fixed number of
//! calls, whatever the number of users (one page each up to 1,000 items).

use std::collections::BTreeMap;

use aws_sdk_iam::types::AssignmentStatusType;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::credential_report::RootEntry;
use super::{to_chrono, ManagedPolicyState};
use crate::aws::{aws_error, Clients};
use crate::error::Result;

/// A role and the managed policies attached to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleState {
    pub name: String,
    pub arn: String,
    pub attached_policies: Vec<String>,
}

/// A virtual MFA device (ListVirtualMFADevices): its serial (an ARN) and the ARN of the
/// user it is assigned to (`…:root` for the root user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualMfa {
    pub serial: String,
    pub user_arn: Option<String>,
}

/// A server certificate stored in IAM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerCertificate {
    pub name: String,
    pub arn: String,
    /// `None`: IAM did not say when it expires (the check says it cannot tell).
    pub expiration: Option<DateTime<Utc>>,
}

/// An IAM Access Analyzer analyzer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Analyzer {
    pub name: String,
    pub arn: String,
    /// `ACTIVE`, `CREATING`, `DISABLED`, `FAILED`.
    pub status: String,
    /// `ACCOUNT`, `ORGANIZATION`, `ACCOUNT_UNUSED_ACCESS`, ….
    pub kind: String,
}

/// What ListAnalyzers answered in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnalyzerRead {
    Read(Vec<Analyzer>),
    /// The call failed: the error, one line (the check reports it cannot tell).
    Failed(String),
}

/// Everything the CIS section 1 account checks judge, beyond users, groups and
/// customer-managed policies.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct CisFacts {
    /// The credential report's `<root_account>` row.
    pub root: RootEntry,
    /// Roles by name.
    pub roles: BTreeMap<String, RoleState>,
    /// AWS managed policies attached to a user, group or role, by ARN, with their default
    /// version's document.
    pub aws_policies: BTreeMap<String, ManagedPolicyState>,
    /// Inline policy names by user name (users without inline policies left out).
    pub user_inline_policies: BTreeMap<String, Vec<String>>,
    /// Assigned virtual MFA devices; read only when the root row says root has MFA
    /// ([`needs_virtual_mfa`]), empty otherwise.
    pub virtual_mfa: Vec<VirtualMfa>,
    pub server_certificates: Vec<ServerCertificate>,
    /// SAML provider ARNs.
    pub saml_providers: Vec<String>,
    /// OpenID Connect provider ARNs.
    pub oidc_providers: Vec<String>,
    /// ListAnalyzers per configured region, in the configured order.
    pub access_analyzers: Vec<(String, AnalyzerRead)>,
}

/// The calls of [`CisFacts`] beyond GAAD and the credential report, concurrently: server
/// certificates, SAML and OIDC providers (an IAM error fails the read, like every other IAM
/// read), and ListAnalyzers in each region (an error there is kept as
/// [`AnalyzerRead::Failed`]: moto, for one, has no Access Analyzer). The virtual MFA
/// devices are read after the credential report, and only when it needs them
/// ([`needs_virtual_mfa`]).
pub async fn read_extra(clients: &Clients, regions: &[String], facts: &mut CisFacts) -> Result<()> {
    let (certs, saml, oidc, analyzers) = tokio::join!(
        read_server_certificates(&clients.iam),
        read_saml(&clients.iam),
        read_oidc(&clients.iam),
        futures_util::future::join_all(regions.iter().map(|r| read_analyzers(clients, r))),
    );
    facts.server_certificates = certs?;
    facts.saml_providers = saml?;
    facts.oidc_providers = oidc?;
    facts.access_analyzers = regions.iter().cloned().zip(analyzers).collect();
    Ok(())
}

/// Whether CIS 1.5 (the root user's MFA is a hardware device) needs the list of virtual
/// MFA devices: only when the credential report's root row says root has MFA. Without MFA
/// 1.5 fails on the report alone; without a readable root row every root check says it
/// cannot check. The list is paged by 1,000 devices (a large account's users' devices too),
/// so this saves every page in the accounts where the answer is already known.
pub fn needs_virtual_mfa(root: &RootEntry) -> bool {
    matches!(root, RootEntry::Read(r) if r.mfa_active)
}

/// The assigned virtual MFA devices (ListVirtualMFADevices, pages of 1,000).
pub async fn read_virtual_mfa(iam: &aws_sdk_iam::Client) -> Result<Vec<VirtualMfa>> {
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let page = iam
            .list_virtual_mfa_devices()
            .assignment_status(AssignmentStatusType::Assigned)
            .max_items(1000)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| aws_error("iam", "ListVirtualMFADevices", e))?;
        out.extend(page.virtual_mfa_devices().iter().map(|d| VirtualMfa {
            serial: d.serial_number().to_string(),
            user_arn: d.user().map(|u| u.arn().to_string()),
        }));
        match (page.is_truncated(), page.marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => return Ok(out),
        }
    }
}

async fn read_server_certificates(iam: &aws_sdk_iam::Client) -> Result<Vec<ServerCertificate>> {
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let page = iam
            .list_server_certificates()
            .max_items(1000)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| aws_error("iam", "ListServerCertificates", e))?;
        out.extend(
            page.server_certificate_metadata_list()
                .iter()
                .map(|c| ServerCertificate {
                    name: c.server_certificate_name().to_string(),
                    arn: c.arn().to_string(),
                    expiration: c.expiration().and_then(to_chrono),
                }),
        );
        match (page.is_truncated(), page.marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => return Ok(out),
        }
    }
}

async fn read_saml(iam: &aws_sdk_iam::Client) -> Result<Vec<String>> {
    let out = iam
        .list_saml_providers()
        .send()
        .await
        .map_err(|e| aws_error("iam", "ListSAMLProviders", e))?;
    Ok(out
        .saml_provider_list()
        .iter()
        .filter_map(|p| p.arn().map(str::to_string))
        .collect())
}

async fn read_oidc(iam: &aws_sdk_iam::Client) -> Result<Vec<String>> {
    let out = iam
        .list_open_id_connect_providers()
        .send()
        .await
        .map_err(|e| aws_error("iam", "ListOpenIDConnectProviders", e))?;
    Ok(out
        .open_id_connect_provider_list()
        .iter()
        .filter_map(|p| p.arn().map(str::to_string))
        .collect())
}

/// ListAnalyzers in `region` (one page of up to 100 analyzers: an account has a handful).
async fn read_analyzers(clients: &Clients, region: &str) -> AnalyzerRead {
    let accessanalyzer = clients.accessanalyzer_in(region);
    match accessanalyzer
        .list_analyzers()
        .max_results(100)
        .send()
        .await
    {
        Ok(out) => AnalyzerRead::Read(
            out.analyzers()
                .iter()
                .map(|a| Analyzer {
                    name: a.name().to_string(),
                    arn: a.arn().to_string(),
                    status: a.status().as_str().to_string(),
                    kind: a.r#type().as_str().to_string(),
                })
                .collect(),
        ),
        Err(e) => AnalyzerRead::Failed(
            aws_error("access-analyzer", "ListAnalyzers", e)
                .to_string()
                .replace('\n', " "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::credential_report::RootRow;

    #[test]
    fn the_virtual_mfa_devices_are_read_only_when_root_has_mfa() {
        let root = |mfa_active| {
            RootEntry::Read(RootRow {
                arn: "arn:aws:iam::123456789012:root".into(),
                mfa_active,
                password_last_used: None,
                keys: Vec::new(),
            })
        };
        // Root has MFA: virtual or hardware is only told by the device list.
        assert!(needs_virtual_mfa(&root(true)));
        // No MFA: 1.5 fails on the report alone.
        assert!(!needs_virtual_mfa(&root(false)));
        // No root row, or an unreadable one: every root check says it cannot check.
        assert!(!needs_virtual_mfa(&RootEntry::Missing));
        assert!(!needs_virtual_mfa(&RootEntry::Unreadable("bad".into())));
    }
}
