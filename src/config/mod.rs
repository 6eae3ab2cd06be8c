//! Configuration: built-in defaults, then a TOML file (must exist when given), then
//! `IAM_WARDEN_*` environment variables (`__` nests: `IAM_WARDEN_RESYNC__INTERVAL=5m`).
//! Unknown keys are rejected; [`Config::validate`] range-checks every value.
//!
//! This file holds the schema and its defaults; loading is in `load.rs`, validation in
//! `validate.rs`, the tag names in `tags.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

mod accounts;
mod cis;
mod export;
mod lifecycle;
mod load;
mod secs;
mod tags;
mod validate;

pub use accounts::{
    is_account_id, is_ou_id, parse_role_arn, partition_of_region, AccountEntry, AccountSource,
    Accounts,
};
pub use cis::Cis;
pub use export::{Export, SecurityHubExport};
pub use lifecycle::{Delivery, Notifications, Rotation, STORE_RETRY};
pub use secs::Secs;
pub use tags::{
    ACCEPT_IMPACT_TAG, ACCESS_TAG, EXEMPT_TAG, INACTIVE_SINCE_TAG_PREFIX, OWNER_TAG,
    PASSWORD_RESET_TAG, ROTATION_TAG_PREFIX,
};
pub use validate::{delivery_name, valid_iam_name};

/// Actions AWS's documented deny-unless-MFA policy allows without MFA (its `NotAction`
/// list): enough for a user to enrol an MFA device.
pub const ARTICLE_MFA_NOT_ACTIONS: &[&str] = &[
    "iam:CreateVirtualMFADevice",
    "iam:EnableMFADevice",
    "iam:GetUser",
    "iam:ListMFADevices",
    "iam:ListVirtualMFADevices",
    "iam:ResyncMFADevice",
    "sts:GetSessionToken",
];

/// Actions a user without MFA needs to change an expired password at sign-in (a forced
/// reset, `baseline.password_policy.reset_expired`): in the default `allowed_without_mfa`.
pub const PASSWORD_CHANGE_ACTIONS: &[&str] =
    &["iam:ChangePassword", "iam:GetAccountPasswordPolicy"];

/// The default `baseline.mfa_policy.allowed_without_mfa`: AWS's list and the password
/// change actions, sorted.
pub fn default_allowed_without_mfa() -> Vec<String> {
    let mut v: Vec<String> = ARTICLE_MFA_NOT_ACTIONS
        .iter()
        .chain(PASSWORD_CHANGE_ACTIONS)
        .map(|s| s.to_string())
        .collect();
    v.sort();
    v
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Plan and journal would-be writes, change nothing.
    #[default]
    DryRun,
    /// Apply the plan.
    Enforce,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `dry-run` (default) or `enforce`.
    pub mode: Mode,
    /// Directory for the CloudTrail checkpoint (and the journal unless `journal` is set).
    pub state_dir: PathBuf,
    /// Journal file; empty means `<state_dir>/journal.jsonl`.
    pub journal: Option<PathBuf>,
    pub aws: AwsConfig,
    pub baseline: Baseline,
    pub exemptions: Exemptions,
    pub safety: Safety,
    pub resync: Resync,
    pub sources: Sources,
    pub server: Server,
    pub controller: Controller,
    pub rotation: Rotation,
    pub notifications: Notifications,
    pub export: Export,
    /// The CIS AWS Foundations v5.0 section 1 account checks.
    pub cis: Cis,
    /// The accounts covered: the caller's (default), a list, or an organization's.
    pub accounts: Accounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// IAM is global; its API and CloudTrail events live in us-east-1.
    pub region: String,
    /// Endpoint override (e.g. a local emulator). Empty: `AWS_ENDPOINT_URL` or the real AWS.
    pub endpoint_url: Option<String>,
    /// Attempts per call including the first, for server errors, lost answers and
    /// timeouts; throttled attempts may go on up to 4 times this (see `crate::pacing`).
    pub max_attempts: u32,
    /// Retry backoff: attempt n waits a random time below min(max, base * 2^(n-1)).
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub connect_timeout: Secs,
    /// Time limit for one attempt of a call.
    pub attempt_timeout: Secs,
    /// Time limit for a whole call including retries.
    pub operation_timeout: Secs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    /// Baseline policies are attached to baseline groups and users join the groups (CIS IAM.2).
    Group,
    /// Baseline policies are attached to each user directly.
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessClass {
    Console,
    Programmatic,
    Both,
}

impl AccessClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessClass::Console => "console",
            AccessClass::Programmatic => "programmatic",
            AccessClass::Both => "both",
        }
    }
    pub fn console(self) -> bool {
        matches!(self, AccessClass::Console | AccessClass::Both)
    }
    pub fn keys(self) -> bool {
        matches!(self, AccessClass::Programmatic | AccessClass::Both)
    }
}

impl FromStr for AccessClass {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "console" => Ok(AccessClass::Console),
            "programmatic" => Ok(AccessClass::Programmatic),
            "both" => Ok(AccessClass::Both),
            other => Err(format!(
                "`{other}` is not an access class; use console, programmatic or both"
            )),
        }
    }
}

/// Which users a baseline policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppliesTo {
    /// Users with console access (class console or both).
    Console,
    /// Users with key access (class programmatic or both).
    Programmatic,
    /// Every non-exempt user.
    All,
}

impl AppliesTo {
    pub fn covers(self, class: AccessClass) -> bool {
        match self {
            AppliesTo::All => true,
            AppliesTo::Console => class.console(),
            AppliesTo::Programmatic => class.keys(),
        }
    }
}

/// How untagged users are classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Untagged {
    /// From what the user has: password only → console, keys only → programmatic,
    /// both → both, neither → programmatic (nothing to sign in with).
    Derive,
    Console,
    Programmatic,
    Both,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Baseline {
    /// `group` (default, CIS IAM.2) or `user`.
    pub attach: Attach,
    /// IAM path for the policies and groups iam-warden creates.
    pub path: String,
    pub mfa_policy: MfaPolicy,
    pub source_ip_policy: SourceIpPolicy,
    pub classification: Classification,
    pub credentials: Credentials,
    pub password_policy: PasswordPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaPolicy {
    pub enabled: bool,
    pub name: String,
    /// Baseline group the policy is attached to (with `attach = "group"`).
    pub group: String,
    /// Actions allowed without MFA (the policy's NotAction list).
    pub allowed_without_mfa: Vec<String>,
    /// `console` (default): with BoolIfExists the policy blocks every long-term access-key
    /// call, so programmatic users only get it when set to `all` or `programmatic`.
    pub applies_to: AppliesTo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceIpPolicy {
    /// Off by default: it needs the organisation's own CIDRs.
    pub enabled: bool,
    pub name: String,
    pub group: String,
    /// Allowed source networks, IPv4 or IPv6 CIDR (e.g. "203.0.113.0/24", "2001:db8::/32").
    pub allowed_cidrs: Vec<String>,
    /// VPC endpoints whose calls are allowed (`aws:SourceVpce`, e.g. "vpce-0a1b2c3d"): a
    /// call through a VPC endpoint has no `aws:SourceIp`, so `allowed_cidrs` never allows it.
    pub allowed_vpc_endpoints: Vec<String>,
    /// VPCs whose calls through any VPC endpoint are allowed (`aws:SourceVpc`, "vpc-...").
    pub allowed_vpcs: Vec<String>,
    pub applies_to: AppliesTo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Classification {
    /// User tag naming the access class.
    pub tag: String,
    /// Class assumed for users without the tag.
    pub untagged: Untagged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Credentials {
    /// Access keys older than this are findings (CIS IAM.3).
    pub max_key_age_days: u32,
    /// Credentials unused this long are findings and are revoked (CIS IAM.22).
    pub unused_days: u32,
    /// A key inactive for this many further days is deleted.
    pub delete_inactive_key_after_days: u32,
    /// Deactivate access keys of `console` users (off by default: only a finding).
    pub deactivate_keys_of_console_users: bool,
    /// Delete login profiles of `programmatic` users.
    pub remove_console_of_programmatic_users: bool,
    /// Revoke credentials unused for `unused_days`.
    pub revoke_unused: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    pub enabled: bool,
    pub minimum_length: u32,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_numbers: bool,
    pub require_symbols: bool,
    /// Remember this many previous passwords (0 = off).
    pub reuse_prevention: u32,
    /// Passwords expire after this many days (0 = never).
    pub max_age_days: u32,
    pub allow_users_to_change: bool,
    pub hard_expiry: bool,
    /// Console users whose password is older than `max_age_days` must set a new one at the
    /// next sign-in (UpdateLoginProfile PasswordResetRequired; once per password).
    pub reset_expired: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exemptions {
    pub users: Vec<String>,
    /// Users with this tag set to `true` are exempt.
    pub tag: String,
    pub path_prefixes: Vec<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Safety {
    /// The breaker trips when one pass would change more users than this...
    pub max_users_changed: u32,
    /// ...or more than this percentage of all users.
    pub max_users_changed_percent: f64,
    /// Let a tripped breaker through (same as `--confirm-large-change`).
    pub confirm_large_change: bool,
    /// A user created less than this long ago (by its CreateDate) is brought onto the
    /// baseline without counting toward the breaker.
    pub new_user_grace: Secs,
    /// The pre-flight gate (opt-in; unset = off): before a user is first put under the
    /// MFA or source-IP policy, its CloudTrail calls of this window are judged against
    /// the policy; if any would have been denied, the change is held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_window: Option<Secs>,
    /// Users whose held changes go through anyway (as the user tag
    /// `iam-warden/accept-impact=true` does).
    pub accept_impact_users: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resync {
    pub interval: Secs,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Sources {
    pub cloudtrail: CloudTrailSource,
    pub sqs: SqsSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudTrailSource {
    pub enabled: bool,
    pub poll_interval: Secs,
    /// Each poll re-reads this far back (CloudTrail delivery is late and unordered).
    pub overlap: Secs,
    /// On a first start without checkpoint, look back this far.
    pub initial_lookback: Secs,
    /// How many accounts' polls run at once (each account keeps its own 2/s pace).
    pub max_concurrent_accounts: u32,
    /// Separate endpoint for CloudTrail (e.g. a recorder in tests); defaults to aws.endpoint_url.
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqsSource {
    /// Queue fed by an EventBridge rule; empty = off.
    pub queue_url: Option<String>,
    pub wait_time: Secs,
    pub max_messages: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub listen: SocketAddr,
    /// The `account` label of the per-account compliance series (`users`,
    /// `users_failing_check`, `account_check_failing`, `account_check_cannot_check`):
    /// true, the account id (accounts x checks series); false, one `account="all"` series
    /// each, the sum over the accounts (for very large organizations). `account_up` and
    /// `last_resync_success_timestamp_seconds` keep the account id either way.
    pub metrics_per_account: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Controller {
    pub workers: u32,
    /// Reconciles one account may run at once (at most `workers`): an account with a
    /// large backlog never holds every worker.
    pub account_workers: u32,
    /// Start and ceiling of the adaptive limit on IAM writes (AIMD token bucket: halved on
    /// throttling, recovers after quiet periods).
    pub writes_per_second: f64,
    pub write_burst: u32,
    /// Start and ceiling of the adaptive limit on IAM/STS reads (its own bucket).
    pub reads_per_second: f64,
    /// The adaptive limits never go below this.
    pub min_rate_per_second: f64,
    /// On shutdown, wait this long for in-flight reconciles.
    pub shutdown_grace: Secs,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::DryRun,
            state_dir: PathBuf::from("/var/lib/iam-warden"),
            journal: None,
            aws: AwsConfig::default(),
            baseline: Baseline::default(),
            exemptions: Exemptions::default(),
            safety: Safety::default(),
            resync: Resync::default(),
            sources: Sources::default(),
            server: Server::default(),
            controller: Controller::default(),
            rotation: Rotation::default(),
            notifications: Notifications::default(),
            export: Export::default(),
            cis: Cis::default(),
            accounts: Accounts::default(),
        }
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: "us-east-1".into(),
            endpoint_url: None,
            max_attempts: 5,
            backoff_base_ms: 100,
            backoff_max_ms: 20_000,
            connect_timeout: Secs::from_secs(5),
            attempt_timeout: Secs::from_secs(30),
            operation_timeout: Secs::from_secs(120),
        }
    }
}

impl Default for Baseline {
    fn default() -> Self {
        Baseline {
            attach: Attach::Group,
            path: "/iam-warden/".into(),
            mfa_policy: MfaPolicy::default(),
            source_ip_policy: SourceIpPolicy::default(),
            classification: Classification::default(),
            credentials: Credentials::default(),
            password_policy: PasswordPolicy::default(),
        }
    }
}

impl Default for MfaPolicy {
    fn default() -> Self {
        MfaPolicy {
            enabled: true,
            name: "iam-warden-require-mfa".into(),
            group: "iam-warden-require-mfa".into(),
            allowed_without_mfa: default_allowed_without_mfa(),
            applies_to: AppliesTo::Console,
        }
    }
}

impl Default for SourceIpPolicy {
    fn default() -> Self {
        SourceIpPolicy {
            enabled: false,
            name: "iam-warden-source-ip".into(),
            group: "iam-warden-source-ip".into(),
            allowed_cidrs: Vec::new(),
            allowed_vpc_endpoints: Vec::new(),
            allowed_vpcs: Vec::new(),
            applies_to: AppliesTo::All,
        }
    }
}

impl Default for Classification {
    fn default() -> Self {
        Classification {
            tag: ACCESS_TAG.into(),
            untagged: Untagged::Derive,
        }
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            max_key_age_days: 90,
            unused_days: 45,
            delete_inactive_key_after_days: 30,
            deactivate_keys_of_console_users: false,
            remove_console_of_programmatic_users: true,
            revoke_unused: true,
        }
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            enabled: true,
            minimum_length: 14,
            require_uppercase: true,
            require_lowercase: true,
            require_numbers: true,
            require_symbols: true,
            reuse_prevention: 24,
            max_age_days: 90,
            allow_users_to_change: true,
            hard_expiry: false,
            reset_expired: true,
        }
    }
}

impl Default for Exemptions {
    fn default() -> Self {
        Exemptions {
            users: Vec::new(),
            tag: EXEMPT_TAG.into(),
            path_prefixes: Vec::new(),
            groups: Vec::new(),
        }
    }
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            max_users_changed: 25,
            max_users_changed_percent: 10.0,
            confirm_large_change: false,
            new_user_grace: Secs::from_secs(3600),
            preview_window: None,
            accept_impact_users: Vec::new(),
        }
    }
}

impl Default for Resync {
    fn default() -> Self {
        Resync {
            interval: Secs::from_secs(600),
        }
    }
}

impl Default for CloudTrailSource {
    fn default() -> Self {
        CloudTrailSource {
            enabled: true,
            poll_interval: Secs::from_secs(60),
            overlap: Secs::from_secs(900),
            initial_lookback: Secs::from_secs(3600),
            max_concurrent_accounts: 4,
            endpoint_url: None,
        }
    }
}

impl Default for SqsSource {
    fn default() -> Self {
        SqsSource {
            queue_url: None,
            wait_time: Secs::from_secs(20),
            max_messages: 10,
        }
    }
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::from(([0, 0, 0, 0], 9464)),
            metrics_per_account: true,
        }
    }
}

impl Default for Controller {
    fn default() -> Self {
        Controller {
            // 16: a burst of new users is bound by the write rate, not by workers waiting
            // out a throttled call's backoff (README, the SQS burst benchmark: 30 %
            // throttling, 200 users, the last on the baseline after 81 s with 16 workers,
            // 166 s with 4). The pacing bounds the calls whatever the number.
            workers: 16,
            account_workers: 4,
            // AWS publishes no IAM request rate; 20/s is a start the AIMD bucket corrects
            // (see `crate::pacing`).
            writes_per_second: 20.0,
            write_burst: 10,
            reads_per_second: 100.0,
            min_rate_per_second: 0.5,
            shutdown_grace: Secs::from_secs(20),
        }
    }
}

impl Config {
    /// The effective journal path.
    pub fn journal_path(&self) -> PathBuf {
        self.journal
            .clone()
            .unwrap_or_else(|| self.state_dir.join("journal.jsonl"))
    }

    /// Parsed allowed CIDRs of the source-IP policy (validated by [`Config::validate`]).
    pub fn allowed_cidrs(&self) -> Vec<IpNet> {
        self.baseline
            .source_ip_policy
            .allowed_cidrs
            .iter()
            .filter_map(|c| c.trim().parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests;
