//! `[export]`: where findings are sent besides iam-warden's own outputs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Export {
    pub securityhub: SecurityHubExport,
}

/// `[export.securityhub]`: findings as ASFF into AWS Security Hub (`audit --export`, and
/// the daemon after each resync and user reconcile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityHubExport {
    pub enabled: bool,
    /// The Security Hub region (the hub findings go to); empty: `aws.region`.
    pub region: Option<String>,
}

impl SecurityHubExport {
    /// The region findings go to.
    pub fn region<'a>(&'a self, aws_region: &'a str) -> &'a str {
        self.region
            .as_deref()
            .filter(|r| !r.is_empty())
            .unwrap_or(aws_region)
    }
}
