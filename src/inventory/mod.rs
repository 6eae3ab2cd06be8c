//! Observing the account: the typed state that [`crate::baseline`] judges.
//!
//! Two ways to observe: a whole-account snapshot from
//! `GetAccountAuthorizationDetails` plus the credential report ([`snapshot`]), and a live
//! single-user read after an event ([`live`]). Both produce the same [`UserState`].
//! The snapshot costs a handful of calls for the whole account, where per-user reads
//! would cost six calls per user; the live read exists because AWS regenerates the
//! credential report at most every 4 hours, too stale to act on a fresh event.

pub mod cis;
pub mod credential_report;
pub mod live;
pub mod snapshot;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use cis::CisFacts;
pub use snapshot::{read_account, read_account_cis};

/// One access key of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessKeyState {
    /// The AccessKeyId. `None` when observed through the credential report only, which
    /// names keys by slot: resolve it (live) before acting on the key.
    pub id: Option<String>,
    /// 1 or 2: the credential report's slot (or the order of ListAccessKeys).
    pub slot: u8,
    pub active: bool,
    pub created: DateTime<Utc>,
    pub last_used: Option<DateTime<Utc>>,
}

impl AccessKeyState {
    /// How to name this key to a person: its id, or its slot and creation time.
    pub fn label(&self) -> String {
        match &self.id {
            Some(id) => id.clone(),
            None => format!(
                "access key {} (created {})",
                self.slot,
                self.created.format("%Y-%m-%d")
            ),
        }
    }
}

/// The user's console password (login profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PasswordState {
    /// When the password was set (credential report `password_last_changed`, or the login
    /// profile's CreateDate).
    pub changed: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
}

/// Where a user's credential facts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Observed {
    /// Credential report (up to 4 hours old on AWS).
    CredentialReport,
    /// Per-user API calls, just now.
    Live,
}

/// A user's tags: key → value, ordered by key. A sorted vector rather than a `BTreeMap`:
/// users carry a handful of tags, and a map's node costs ~0.5 KiB per user however few
/// they are (5 MiB of a 10,000-user resync).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(Vec<(String, String)>);

impl Tags {
    /// Where tag `key` is (`Ok`) or would be inserted (`Err`).
    fn position(&self, key: &str) -> std::result::Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of tag `key` (IAM tag keys are matched exactly, as `GetUser` returns them).
    pub fn get(&self, key: &str) -> Option<&String> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    /// Set tag `key` (replacing its value if present).
    pub fn insert(&mut self, key: String, value: String) {
        match self.position(&key) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    /// Tags in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for Tags {
    /// Later duplicates of a key win, as with a map.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut v: Vec<(String, String)> = iter.into_iter().collect();
        // Stable: among equal keys the last one read stays last, and is the one kept.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
        for (k, val) in v {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = val,
                _ => out.push((k, val)),
            }
        }
        out.shrink_to_fit();
        Tags(out)
    }
}

impl Serialize for Tags {
    /// As a JSON object, like the map it replaces.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// Everything iam-warden needs to judge one user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserState {
    pub name: String,
    pub arn: String,
    pub path: String,
    pub created: DateTime<Utc>,
    pub tags: Tags,
    pub groups: Vec<String>,
    /// ARNs of managed policies attached to the user directly.
    pub attached_policies: Vec<String>,
    pub password: Option<PasswordState>,
    pub mfa_active: bool,
    pub keys: Vec<AccessKeyState>,
    pub observed: Observed,
}

impl UserState {
    pub fn active_keys(&self) -> impl Iterator<Item = &AccessKeyState> {
        self.keys.iter().filter(|k| k.active)
    }
}

/// A customer-managed policy as the account has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManagedPolicyState {
    pub name: String,
    pub arn: String,
    pub path: String,
    pub default_version_id: Option<String>,
    /// The default version's document, parsed; `None` if it could not be read.
    pub default_document: Option<serde_json::Value>,
    /// Version ids, oldest first; the default is among them.
    pub version_ids: Vec<String>,
}

/// A group and the managed policies attached to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupState {
    pub name: String,
    pub arn: String,
    pub path: String,
    pub attached_policies: Vec<String>,
}

/// The account password policy as IAM reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct PasswordPolicyState {
    pub minimum_length: u32,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_numbers: bool,
    pub require_symbols: bool,
    pub reuse_prevention: u32,
    /// 0 = passwords never expire.
    pub max_age_days: u32,
    pub allow_users_to_change: bool,
    pub hard_expiry: bool,
}

/// The whole account at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct AccountSnapshot {
    pub account_id: String,
    /// The identity iam-warden runs as (always exempt).
    pub caller_arn: String,
    pub users: Vec<UserState>,
    pub groups: BTreeMap<String, GroupState>,
    /// Customer-managed policies by name (IAM policy names are unique in an account).
    pub policies: BTreeMap<String, ManagedPolicyState>,
    /// `None`: the account has no password policy.
    pub password_policy: Option<PasswordPolicyState>,
    /// When AWS generated the credential report used.
    pub report_generated: Option<DateTime<Utc>>,
    /// Users read live because the report did not cover them (created after it, or a row
    /// that could not be parsed).
    pub users_read_live: Vec<String>,
    /// Problems met while reading that did not stop the read (e.g. a malformed report row).
    pub warnings: Vec<String>,
    /// The facts of the CIS section 1 account checks; `None` when not read (the daemon's
    /// per-user and account reconciles, `enforce`): those checks are then not made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cis: Option<CisFacts>,
}

impl AccountSnapshot {
    pub fn user(&self, name: &str) -> Option<&UserState> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// Convert an SDK timestamp.
pub(crate) fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The last path segment of an ARN (`arn:aws:iam::1:policy/path/Name` → `Name`).
pub fn arn_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Policy documents come URL-encoded from IAM (and plain from some emulators): decode
/// whichever we get and parse the JSON.
pub fn decode_policy_document(doc: &str) -> Option<serde_json::Value> {
    if let Ok(v) = serde_json::from_str(doc) {
        return Some(v);
    }
    let decoded = percent_encoding::percent_decode_str(doc)
        .decode_utf8()
        .ok()?;
    serde_json::from_str(&decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_documents_decode_plain_or_url_encoded() {
        let plain = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let enc = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(decode_policy_document(plain), decode_policy_document(enc));
        assert!(decode_policy_document(plain).is_some());
        assert!(decode_policy_document("%7Bnot json").is_none());
    }

    #[test]
    fn tags_behave_like_a_map_ordered_by_key() {
        let t: Tags = [("b", "1"), ("a", "2"), ("b", "3"), ("c", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(t.len(), 3);
        assert_eq!(
            t.get("b").map(String::as_str),
            Some("3"),
            "the last duplicate wins"
        );
        assert_eq!(t.get("a").map(String::as_str), Some("2"));
        assert_eq!(t.get("c").map(String::as_str), Some(""));
        assert_eq!(t.get("B"), None, "keys are matched exactly");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"a":"2","b":"3","c":""}"#
        );
        let mut t2 = Tags::default();
        assert!(t2.is_empty());
        for (k, v) in [("c", ""), ("b", "1"), ("a", "2"), ("b", "3")] {
            t2.insert(k.into(), v.into());
        }
        assert_eq!(t, t2, "insert keeps the same order and replaces values");
    }

    #[test]
    fn arn_names() {
        assert_eq!(
            arn_name("arn:aws:iam::123456789012:policy/iam-warden/p1"),
            "p1"
        );
        assert_eq!(
            arn_name("arn:aws:iam::123456789012:user/a+b=c,d.e@f_g-h"),
            "a+b=c,d.e@f_g-h"
        );
        assert_eq!(arn_name("plain"), "plain");
    }
}
