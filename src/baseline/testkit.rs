//! Fixture builders for the pure baseline tests.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::config::Config;
pub use crate::config::{ACCESS_TAG, EXEMPT_TAG};
use crate::inventory::{
    AccessKeyState, AccountSnapshot, GroupState, Observed, PasswordState, UserState,
};

pub const ACCOUNT: &str = "123456789012";

/// The fixed "now" of the tests.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap()
}

pub fn days_ago(d: i64) -> DateTime<Utc> {
    now() - Duration::days(d)
}

pub fn cfg() -> Config {
    Config::default()
}

/// An active key `age` days old, last used `used` days ago (None = never).
pub fn key(id: &str, age: i64, used: Option<i64>) -> AccessKeyState {
    AccessKeyState {
        id: Some(id.to_string()),
        slot: 1,
        active: true,
        created: days_ago(age),
        last_used: used.map(days_ago),
    }
}

pub fn inactive(mut k: AccessKeyState) -> AccessKeyState {
    k.active = false;
    k
}

pub fn policy_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:policy/iam-warden/{name}")
}

/// An account whose baseline groups exist with their policies attached.
pub fn snap_with_baseline_groups() -> AccountSnapshot {
    let c = cfg();
    let mut groups = BTreeMap::new();
    for (g, p) in [
        (&c.baseline.mfa_policy.group, &c.baseline.mfa_policy.name),
        (
            &c.baseline.source_ip_policy.group,
            &c.baseline.source_ip_policy.name,
        ),
    ] {
        groups.insert(
            g.clone(),
            GroupState {
                name: g.clone(),
                arn: format!("arn:aws:iam::{ACCOUNT}:group/iam-warden/{g}"),
                path: "/iam-warden/".into(),
                attached_policies: vec![policy_arn(p)],
            },
        );
    }
    AccountSnapshot {
        account_id: ACCOUNT.into(),
        caller_arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/iam-warden/test"),
        groups,
        ..Default::default()
    }
}

pub struct UserBuilder(UserState);

pub fn user(name: &str) -> UserBuilder {
    UserBuilder(UserState {
        name: name.to_string(),
        arn: format!("arn:aws:iam::{ACCOUNT}:user/{name}"),
        path: "/".into(),
        created: days_ago(400),
        tags: Default::default(),
        groups: Vec::new(),
        attached_policies: Vec::new(),
        password: None,
        mfa_active: false,
        keys: Vec::new(),
        observed: Observed::Live,
    })
}

impl UserBuilder {
    /// A console password set `set` days ago, last used `used` days ago (None = never).
    pub fn password(mut self, used: Option<i64>, set: i64) -> Self {
        self.0.password = Some(PasswordState {
            changed: Some(days_ago(set)),
            last_used: used.map(days_ago),
        });
        self
    }
    pub fn mfa(mut self) -> Self {
        self.0.mfa_active = true;
        self
    }
    pub fn keys(mut self, keys: &[AccessKeyState]) -> Self {
        self.0.keys = keys
            .iter()
            .enumerate()
            .map(|(i, k)| AccessKeyState {
                slot: i as u8 + 1,
                ..k.clone()
            })
            .collect();
        self
    }
    pub fn tag(mut self, k: &str, v: &str) -> Self {
        self.0.tags.insert(k.into(), v.into());
        self
    }
    pub fn path(mut self, p: &str) -> Self {
        self.0.path = p.into();
        self.0.arn = format!("arn:aws:iam::{ACCOUNT}:user{p}{}", self.0.name);
        self
    }
    pub fn group(mut self, g: &str) -> Self {
        self.0.groups.push(g.into());
        self
    }
    /// Member of the MFA baseline group.
    pub fn in_baseline(self) -> Self {
        let g = cfg().baseline.mfa_policy.group;
        self.group(&g)
    }
    pub fn attached(mut self, arn: &str) -> Self {
        self.0.attached_policies.push(arn.into());
        self
    }
    pub fn build(self) -> UserState {
        self.0
    }
}
