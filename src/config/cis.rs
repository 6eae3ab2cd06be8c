//! `[cis]`: the CIS AWS Foundations v5.0 section 1 account checks of `audit`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cis {
    /// Make the CIS section 1 account checks in `audit` (and the daemon's resync): 5 more
    /// calls per audit, whatever the number of users. Off: the audit judges users, groups
    /// and the password policy only, as before.
    pub enabled: bool,
    /// CIS 1.6: the root user signing in or using an access key within this many days is
    /// a finding. 1 (the default, as Prowler's `iam_avoid_root_usage`): any root use in
    /// the last day; CIS asks that root not be used for daily tasks at all.
    pub root_used_days: u32,
    /// CIS 1.19: the regions that must each have an ACTIVE IAM Access Analyzer. Empty (the
    /// default): `aws.region`.
    pub access_analyzer_regions: Vec<String>,
    /// CIS 1.18, opt-in: `enforce` deletes server certificates whose expiry date is past
    /// (dry-run journals it only; a certificate without an expiry date is never deleted).
    pub delete_expired_server_certificates: bool,
    /// CIS 1.21, opt-in: `enforce` detaches `AWSCloudShellFullAccess` from users, groups
    /// and roles (dry-run journals it only). Never from an exempt user, a group with an
    /// exempt member, or iam-warden's own user or role. A user losing it counts toward
    /// the blast-radius breaker (through a group: each member).
    pub detach_cloudshell_full_access: bool,
    /// CIS 1.14 / Security Hub IAM.2, opt-in: `enforce` moves each managed policy attached
    /// to a user directly into a group `iam-warden-direct-<policy>` (made by iam-warden
    /// under `baseline.path`), adds the user, and only then detaches the policy from the
    /// user: access never drops. Inline policies are reported, not moved.
    pub move_direct_policies_to_groups: bool,
}

impl Default for Cis {
    fn default() -> Self {
        Cis {
            enabled: true,
            root_used_days: 1,
            access_analyzer_regions: Vec::new(),
            delete_expired_server_certificates: false,
            detach_cloudshell_full_access: false,
            move_direct_policies_to_groups: false,
        }
    }
}

impl Cis {
    /// The regions Access Analyzer is checked in: the configured ones, or `aws_region`.
    pub fn analyzer_regions(&self, aws_region: &str) -> Vec<String> {
        if self.access_analyzer_regions.is_empty() {
            vec![aws_region.to_string()]
        } else {
            self.access_analyzer_regions.clone()
        }
    }

    /// `enforce` needs the CIS account facts: an opt-in CIS action is on.
    pub fn enforces(&self) -> bool {
        self.enabled
            && (self.delete_expired_server_certificates
                || self.detach_cloudshell_full_access
                || self.move_direct_policies_to_groups)
    }

    /// Problems with the values, one message each.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(1..=365).contains(&self.root_used_days) {
            out.push(format!(
                "cis.root_used_days = {} is out of range; allowed 1..=365",
                self.root_used_days
            ));
        }
        for r in &self.access_analyzer_regions {
            let ok = !r.is_empty()
                && r.len() <= 32
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                out.push(format!(
                    "cis.access_analyzer_regions has {:?}, which is not a region name; use names such as \"us-east-1\"",
                    r.escape_debug().to_string()
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_default_to_the_aws_region_and_values_are_checked() {
        let c = Cis::default();
        assert_eq!(c.analyzer_regions("eu-west-1"), vec!["eu-west-1"]);
        assert!(c.problems().is_empty());
        let c = Cis {
            enabled: true,
            root_used_days: 0,
            access_analyzer_regions: vec!["us-east-1".into(), "US East".into(), "".into()],
            ..Cis::default()
        };
        assert_eq!(
            c.analyzer_regions("eu-west-1"),
            vec!["us-east-1", "US East", ""]
        );
        let p = c.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("cis.root_used_days = 0"), "{p:?}");
        assert!(p[1].contains("US East"), "{p:?}");
    }
}
