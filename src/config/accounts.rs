//! `[accounts]`: which AWS accounts iam-warden covers: the caller's own (`self`, the
//! default), a fixed list, or the active accounts of an AWS Organization.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Secs;

/// Where the accounts in scope come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccountSource {
    /// The account of the caller's credentials, as a single-account iam-warden.
    #[default]
    #[serde(rename = "self")]
    Caller,
    /// The accounts of `[[accounts.list]]`.
    List,
    /// The ACTIVE accounts of the organization (Organizations ListAccounts, from the
    /// management or a delegated administrator account).
    Organization,
}

impl AccountSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountSource::Caller => "self",
            AccountSource::List => "list",
            AccountSource::Organization => "organization",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Accounts {
    /// `self` (default), `list` or `organization`.
    pub source: AccountSource,
    /// `source = "list"`: the accounts, each with an optional role ARN.
    pub list: Vec<AccountEntry>,
    /// The role assumed in each account: `arn:<partition>:iam::<id>:role/<role_name>`.
    pub role_name: String,
    /// The external id the member role's trust policy requires (optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Account ids and organizational unit ids (`ou-...`) in scope; empty: all.
    pub include: Vec<String>,
    /// Account ids and organizational unit ids (`ou-...`) never touched.
    pub exclude: Vec<String>,
    /// `source = "organization"`: how often the daemon lists the accounts again.
    pub discovery_interval: Secs,
    /// Accounts read (and enforced) at once by `audit`, `plan` and `enforce --once`, and
    /// accounts the daemon resyncs at once.
    pub concurrency: u32,
    /// Per-account exempt users: account id → user names (in addition to `[exemptions]`).
    pub exempt: BTreeMap<String, Vec<String>>,
}

/// One `[[accounts.list]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    /// The 12-digit account id.
    pub id: String,
    /// The role to assume in it; default `arn:<partition>:iam::<id>:role/<role_name>`
    /// (the caller's own account: its own credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

impl Default for Accounts {
    fn default() -> Self {
        Accounts {
            source: AccountSource::Caller,
            list: Vec::new(),
            role_name: "iam-warden".into(),
            external_id: None,
            include: Vec::new(),
            exclude: Vec::new(),
            discovery_interval: Secs::from_secs(3600),
            concurrency: 8,
            exempt: BTreeMap::new(),
        }
    }
}

/// A 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// An organizational unit id (`ou-` root part `-` 8 to 32 characters) or a root id
/// (`r-` 4 to 32 characters), lowercase letters and digits.
pub fn is_ou_id(s: &str) -> bool {
    let alnum = |p: &str, lo: usize, hi: usize| {
        (lo..=hi).contains(&p.len())
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if let Some(rest) = s.strip_prefix("ou-") {
        return rest
            .split_once('-')
            .is_some_and(|(root, ou)| alnum(root, 4, 32) && alnum(ou, 8, 32));
    }
    s.strip_prefix("r-").is_some_and(|r| alnum(r, 4, 32))
}

/// The partition of a region: `aws-cn` for `cn-*`, `aws-us-gov` for `us-gov-*`, the ISO
/// partitions, else `aws`.
pub fn partition_of_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else {
        "aws"
    }
}

/// The parts of a role ARN `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`: (partition,
/// account), or why it is not one.
pub fn parse_role_arn(arn: &str) -> std::result::Result<(&str, &str), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && is_account_id(parts[4])
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty() && !n.ends_with('/'));
    if ok {
        Ok((parts[1], parts[4]))
    } else {
        Err(format!(
            "{arn:?} is not an IAM role ARN; write arn:aws:iam::123456789012:role/iam-warden"
        ))
    }
}

impl Accounts {
    /// The role ARN for account `id` in `partition` when the list gives none.
    pub fn role_arn_for(&self, partition: &str, id: &str) -> String {
        format!("arn:{partition}:iam::{id}:role/{}", self.role_name)
    }

    /// Whether filters name organizational units (which need ListParents).
    pub fn filters_by_ou(&self) -> bool {
        self.include
            .iter()
            .chain(&self.exclude)
            .any(|x| is_ou_id(x))
    }

    /// Problems with the values, one message each; `region` is `aws.region`.
    pub(super) fn problems(&self, region: &str) -> Vec<String> {
        let mut out = Vec::new();
        let src = self.source.as_str();
        match self.source {
            AccountSource::List if self.list.is_empty() => out.push(
                "accounts.source = \"list\" but accounts.list is empty; add [[accounts.list]] entries with id = \"123456789012\", or use source = \"self\"".to_string(),
            ),
            AccountSource::Caller | AccountSource::Organization if !self.list.is_empty() => {
                out.push(format!(
                    "accounts.list has {} entries but accounts.source = \"{src}\" ignores them; set source = \"list\" or remove the entries",
                    self.list.len()
                ));
            }
            _ => {}
        }
        if self.source == AccountSource::Caller
            && !(self.include.is_empty() && self.exclude.is_empty())
        {
            out.push("accounts.include / accounts.exclude apply to source = \"list\" or \"organization\"; with source = \"self\" remove them".to_string());
        }
        let partition = partition_of_region(region);
        let mut seen = BTreeSet::new();
        for (i, e) in self.list.iter().enumerate() {
            if !is_account_id(&e.id) {
                out.push(format!(
                    "accounts.list[{i}].id = {:?} is not an account id; write the 12 digits, e.g. \"123456789012\" (quoted)",
                    e.id
                ));
            } else if !seen.insert(e.id.as_str()) {
                out.push(format!(
                    "accounts.list has account {} twice; list each account once",
                    e.id
                ));
            }
            if let Some(arn) = &e.role_arn {
                match parse_role_arn(arn) {
                    Err(why) => out.push(format!("accounts.list[{i}].role_arn = {why}")),
                    Ok((p, _)) if p != partition => out.push(format!(
                        "accounts.list[{i}].role_arn {arn:?} is in partition {p} but aws.region {region:?} is in {partition}; use an ARN of partition {partition} or set aws.region to a region of {p}"
                    )),
                    Ok((_, acct)) if acct != e.id => out.push(format!(
                        "accounts.list[{i}].role_arn {arn:?} is a role of account {acct}, not of {}; assume a role of the account itself",
                        e.id
                    )),
                    Ok(_) => {}
                }
            }
        }
        for (key, ids) in [
            ("accounts.include", &self.include),
            ("accounts.exclude", &self.exclude),
        ] {
            for x in ids {
                if !is_account_id(x) && !is_ou_id(x) {
                    out.push(format!(
                        "{key} has {x:?}, which is neither an account id (12 digits) nor an organizational unit id (ou-xxxx-xxxxxxxx or r-xxxx)"
                    ));
                } else if is_ou_id(x) && self.source != AccountSource::Organization {
                    out.push(format!(
                        "{key} has the organizational unit {x:?}, which needs source = \"organization\"; name account ids instead"
                    ));
                }
            }
        }
        if !super::valid_iam_name(&self.role_name, 64) {
            out.push(format!(
                "accounts.role_name = {:?} is not an IAM role name; use 1 to 64 of A-Z a-z 0-9 +=,.@_- (default \"iam-warden\")",
                self.role_name
            ));
        }
        if let Some(x) = &self.external_id {
            let ok = (2..=1224).contains(&x.len())
                && x.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c));
            if !ok {
                out.push("accounts.external_id is not a valid external id; use 2 to 1224 of A-Z a-z 0-9 +=,.@:/-_ (the value the member role's trust policy requires)".to_string());
            }
        }
        let secs = self.discovery_interval.0.as_secs();
        if !(60..=7 * 86_400).contains(&secs) {
            out.push(format!(
                "accounts.discovery_interval = \"{}\" is out of range; allowed 1m to 7d (default 1h)",
                self.discovery_interval
            ));
        }
        if !(1..=64).contains(&self.concurrency) {
            out.push(format!(
                "accounts.concurrency = {} is out of range; allowed 1..=64 (default 8)",
                self.concurrency
            ));
        }
        for (id, users) in &self.exempt {
            if !is_account_id(id) {
                out.push(format!(
                    "accounts.exempt has the key {id:?}, which is not an account id; write \"123456789012\" = [\"user\"]"
                ));
            }
            for u in users {
                if !super::valid_iam_name(u, 64) {
                    out.push(format!(
                        "accounts.exempt.\"{id}\" has {u:?}, which is not an IAM user name"
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Accounts)) -> Vec<String> {
        let mut a = Accounts::default();
        f(&mut a);
        a.problems("us-east-1")
    }

    fn entry(id: &str, role_arn: Option<&str>) -> AccountEntry {
        AccountEntry {
            id: id.into(),
            role_arn: role_arn.map(str::to_owned),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(with(|_| {}), Vec::<String>::new());
    }

    #[test]
    fn ids_and_ou_ids_are_recognised() {
        for (s, account, ou) in [
            ("123456789012", true, false),
            ("12345678901", false, false),
            ("1234567890123", false, false),
            ("12345678901a", false, false),
            ("ou-ab12-cdef3456", false, true),
            ("ou-ab12-cdef345", false, false),
            ("ou-AB12-cdef3456", false, false),
            ("r-ab12", false, true),
            ("r-ab1", false, false),
            ("", false, false),
        ] {
            assert_eq!(is_account_id(s), account, "{s}");
            assert_eq!(is_ou_id(s), ou, "{s}");
        }
    }

    #[test]
    fn partitions_follow_the_region() {
        for (r, p) in [
            ("us-east-1", "aws"),
            ("eu-west-3", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
        ] {
            assert_eq!(partition_of_region(r), p, "{r}");
        }
    }

    /// Each bad shape gives one message naming the key and the fix.
    #[test]
    fn bad_shapes_are_one_clear_message_each() {
        type Case = (&'static str, fn(&mut Accounts), &'static [&'static str]);
        let cases: &[Case] = &[
            (
                "list without entries",
                |a| a.source = AccountSource::List,
                &["accounts.list is empty", "[[accounts.list]]"],
            ),
            (
                "entries without source list",
                |a| a.list = vec![entry("123456789012", None)],
                &["ignores them", "source = \"list\""],
            ),
            (
                "id of the wrong shape",
                |a| {
                    a.source = AccountSource::List;
                    a.list = vec![entry("12345", None)];
                },
                &["accounts.list[0].id = \"12345\"", "12 digits"],
            ),
            (
                "duplicate",
                |a| {
                    a.source = AccountSource::List;
                    a.list = vec![entry("123456789012", None), entry("123456789012", None)];
                },
                &["account 123456789012 twice"],
            ),
            (
                "role ARN in another partition",
                |a| {
                    a.source = AccountSource::List;
                    a.list = vec![entry(
                        "123456789012",
                        Some("arn:aws-cn:iam::123456789012:role/iam-warden"),
                    )];
                },
                &["partition aws-cn", "aws.region \"us-east-1\" is in aws"],
            ),
            (
                "role ARN of another account",
                |a| {
                    a.source = AccountSource::List;
                    a.list = vec![entry(
                        "123456789012",
                        Some("arn:aws:iam::210987654321:role/iam-warden"),
                    )];
                },
                &["role of account 210987654321, not of 123456789012"],
            ),
            (
                "not a role ARN",
                |a| {
                    a.source = AccountSource::List;
                    a.list = vec![entry(
                        "123456789012",
                        Some("arn:aws:iam::123456789012:user/x"),
                    )];
                },
                &["is not an IAM role ARN", "arn:aws:iam::123456789012:role/"],
            ),
            (
                "bad include",
                |a| {
                    a.source = AccountSource::Organization;
                    a.include = vec!["finance".into()];
                },
                &["accounts.include has \"finance\"", "ou-xxxx-xxxxxxxx"],
            ),
            (
                "OU filter without organization",
                |a| {
                    a.source = AccountSource::List;
                    a.list = vec![entry("123456789012", None)];
                    a.exclude = vec!["ou-ab12-cdef3456".into()];
                },
                &["needs source = \"organization\""],
            ),
            (
                "filters with self",
                |a| a.exclude = vec!["123456789012".into()],
                &["with source = \"self\" remove them"],
            ),
            (
                "role name",
                |a| a.role_name = "bad role".into(),
                &["accounts.role_name = \"bad role\""],
            ),
            (
                "external id",
                |a| a.external_id = Some("x".into()),
                &["accounts.external_id", "2 to 1224"],
            ),
            (
                "concurrency",
                |a| a.concurrency = 0,
                &["accounts.concurrency = 0", "1..=64"],
            ),
            (
                "discovery interval",
                |a| a.discovery_interval = Secs::from_secs(5),
                &["accounts.discovery_interval = \"5s\"", "1m to 7d"],
            ),
            (
                "exempt key",
                |a| {
                    a.exempt.insert("prod".into(), vec!["alice".into()]);
                },
                &["accounts.exempt has the key \"prod\""],
            ),
        ];
        for (name, f, want) in cases {
            let got = with(f);
            assert_eq!(got.len(), 1, "{name}: {got:?}");
            assert!(!got[0].contains('\n'), "{name}: one line");
            for w in *want {
                assert!(got[0].contains(w), "{name}: {:?} lacks {w:?}", got[0]);
            }
        }
    }

    #[test]
    fn a_good_list_and_organization_pass() {
        let list = with(|a| {
            a.source = AccountSource::List;
            a.list = vec![
                entry("123456789012", None),
                entry(
                    "210987654321",
                    Some("arn:aws:iam::210987654321:role/path/iam-warden"),
                ),
            ];
            a.exclude = vec!["123456789012".into()];
            a.exempt
                .insert("210987654321".into(), vec!["break-glass".into()]);
        });
        assert_eq!(list, Vec::<String>::new());
        let org = with(|a| {
            a.source = AccountSource::Organization;
            a.include = vec!["ou-ab12-cdef3456".into(), "r-ab12".into()];
            a.exclude = vec!["123456789012".into()];
            a.external_id = Some("iam-warden-7f3a".into());
        });
        assert_eq!(org, Vec::<String>::new());
    }
}
