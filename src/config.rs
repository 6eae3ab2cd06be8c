//! Configuration: built-in defaults, then a TOML file (must exist when given), then
//! `IAM_WARDEN_*` environment variables (`__` nests: `IAM_WARDEN_RESYNC__INTERVAL=5m`).
//! Unknown keys are rejected; [`Config::validate`] range-checks every value.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The tag that classifies a user's access (`console`, `programmatic`, `both`).
pub const ACCESS_TAG: &str = "iam-warden/access";
/// The tag that exempts a user when its value is `true`.
pub const EXEMPT_TAG: &str = "iam-warden/exempt";

/// User tag prefix recording since when a key is inactive: the key
/// `iam-warden/inactive-since/<AccessKeyId>` has the value
/// `since=<RFC 3339> created=<the key's CreateDate, RFC 3339>`. It starts the
/// `delete_inactive_key_after_days` clock and survives restarts.
pub const INACTIVE_SINCE_TAG_PREFIX: &str = "iam-warden/inactive-since/";

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

/// A duration written as `90s`, `10m`, `1h`, `2d`, or a plain number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Secs(pub Duration);

impl Secs {
    pub const fn from_secs(s: u64) -> Self {
        Secs(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for Secs {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        let (num, mult) = match t.char_indices().last() {
            Some((i, 's')) => (&t[..i], 1),
            Some((i, 'm')) => (&t[..i], 60),
            Some((i, 'h')) => (&t[..i], 3600),
            Some((i, 'd')) => (&t[..i], 86_400),
            _ => (t, 1),
        };
        let n: u64 = num.trim().parse().map_err(|_| {
            format!(
                "`{s}` is not a duration; write a whole number with a unit, e.g. 90s, 10m, 1h, 2d"
            )
        })?;
        n.checked_mul(mult)
            .map(Secs::from_secs)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        if s != 0 && s % 86_400 == 0 {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Secs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"90s\", \"10m\", \"1h\" or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Secs, E> {
                Ok(Secs::from_secs(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Secs, E> {
                u64::try_from(v)
                    .map(Secs::from_secs)
                    .map_err(|_| E::custom(format!("{v} is negative; a duration must be >= 0")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Secs, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Controller {
    pub workers: u32,
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
            allowed_without_mfa: ARTICLE_MFA_NOT_ACTIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
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
        }
    }
}

impl Default for Controller {
    fn default() -> Self {
        Controller {
            workers: 4,
            // AWS publishes no IAM request rate; 20/s is a start the AIMD bucket corrects
            // (see `crate::pacing`).
            writes_per_second: 20.0,
            write_burst: 10,
            reads_per_second: 50.0,
            min_rate_per_second: 0.5,
            shutdown_grace: Secs::from_secs(20),
        }
    }
}

/// Environment variables with the prefix that are not configuration keys.
const ENV_NOT_CONFIG: &[&str] = &["config", "log", "log_format"];

impl Config {
    /// Defaults, then `file` (which must exist when given), then `IAM_WARDEN_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(Error::Config(format!(
                    "config file {} does not exist or is not a file; pass an existing TOML file to --config (see config/iam-warden.toml)",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(
            Env::prefixed("IAM_WARDEN_")
                .ignore(ENV_NOT_CONFIG)
                .split("__")
                .lowercase(true),
        );
        Self::from_figment(fig)
    }

    /// Parse a TOML string on top of the defaults (no environment); for tests and tools.
    pub fn from_toml_str(s: &str) -> Result<Config> {
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(s)),
        )
    }

    fn from_figment(fig: Figment) -> Result<Config> {
        let cfg: Config = fig.extract().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(|e| describe_figment_error(&e)).collect();
            Error::Config(msgs.join("; "))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

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

    /// Range checks. Each problem names the key, the bad value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let mut errs: Vec<String> = Vec::new();
        let mut range = |key: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                errs.push(format!("{key} = {v} is out of range; allowed {lo}..={hi}"));
            }
        };
        let c = &self.baseline.credentials;
        range(
            "baseline.credentials.max_key_age_days",
            c.max_key_age_days.into(),
            1,
            3650,
        );
        range(
            "baseline.credentials.unused_days",
            c.unused_days.into(),
            1,
            3650,
        );
        range(
            "baseline.credentials.delete_inactive_key_after_days",
            c.delete_inactive_key_after_days.into(),
            1,
            3650,
        );
        let p = &self.baseline.password_policy;
        range(
            "baseline.password_policy.minimum_length",
            p.minimum_length.into(),
            6,
            128,
        );
        range(
            "baseline.password_policy.reuse_prevention",
            p.reuse_prevention.into(),
            0,
            24,
        );
        range(
            "baseline.password_policy.max_age_days",
            p.max_age_days.into(),
            0,
            1095,
        );
        range("aws.max_attempts", self.aws.max_attempts.into(), 1, 20);
        range("aws.backoff_base_ms", self.aws.backoff_base_ms, 1, 60_000);
        range("aws.backoff_max_ms", self.aws.backoff_max_ms, 1, 300_000);
        range(
            "aws.connect_timeout (seconds)",
            self.aws.connect_timeout.0.as_secs(),
            1,
            300,
        );
        range(
            "aws.attempt_timeout (seconds)",
            self.aws.attempt_timeout.0.as_secs(),
            1,
            900,
        );
        range(
            "aws.operation_timeout (seconds)",
            self.aws.operation_timeout.0.as_secs(),
            1,
            3600,
        );
        range(
            "resync.interval (seconds)",
            self.resync.interval.0.as_secs(),
            10,
            7 * 86_400,
        );
        let ct = &self.sources.cloudtrail;
        range(
            "sources.cloudtrail.poll_interval (seconds)",
            ct.poll_interval.0.as_secs(),
            1,
            3600,
        );
        range(
            "sources.cloudtrail.overlap (seconds)",
            ct.overlap.0.as_secs(),
            0,
            86_400,
        );
        range(
            "sources.cloudtrail.initial_lookback (seconds)",
            ct.initial_lookback.0.as_secs(),
            0,
            90 * 86_400,
        );
        range(
            "sources.sqs.wait_time (seconds)",
            self.sources.sqs.wait_time.0.as_secs(),
            0,
            20,
        );
        range(
            "sources.sqs.max_messages",
            self.sources.sqs.max_messages.into(),
            1,
            10,
        );
        range("controller.workers", self.controller.workers.into(), 1, 64);
        range(
            "controller.write_burst",
            self.controller.write_burst.into(),
            1,
            1000,
        );
        range(
            "controller.shutdown_grace (seconds)",
            self.controller.shutdown_grace.0.as_secs(),
            0,
            600,
        );
        range(
            "safety.new_user_grace (seconds)",
            self.safety.new_user_grace.0.as_secs(),
            0,
            7 * 86_400,
        );
        range(
            "safety.max_users_changed",
            self.safety.max_users_changed.into(),
            0,
            1_000_000,
        );
        let w = self.controller.writes_per_second;
        if !(w.is_finite() && w > 0.0 && w <= 100.0) {
            errs.push(format!(
                "controller.writes_per_second = {w} is out of range; allowed more than 0 up to 100"
            ));
        }
        let r = self.controller.reads_per_second;
        if !(r.is_finite() && r > 0.0 && r <= 1000.0) {
            errs.push(format!(
                "controller.reads_per_second = {r} is out of range; allowed more than 0 up to 1000"
            ));
        }
        let f = self.controller.min_rate_per_second;
        if !(f.is_finite() && f > 0.0 && f <= w.min(r)) {
            errs.push(format!(
                "controller.min_rate_per_second = {f} is out of range; allowed more than 0 up to the smaller of writes_per_second and reads_per_second"
            ));
        }
        let pct = self.safety.max_users_changed_percent;
        if !(pct.is_finite() && (0.0..=100.0).contains(&pct)) {
            errs.push(format!(
                "safety.max_users_changed_percent = {pct} is out of range; allowed 0..=100"
            ));
        }
        if c.unused_days > c.max_key_age_days.saturating_mul(10) {
            // Not an error in itself; unused_days is checked above.
        }
        let path = &self.baseline.path;
        if !(path.starts_with('/') && path.ends_with('/') && path.len() <= 512) {
            errs.push(format!(
                "baseline.path = {path:?} is not an IAM path; it must start and end with '/' (e.g. \"/iam-warden/\")"
            ));
        }
        for (key, name) in [
            ("baseline.mfa_policy.name", &self.baseline.mfa_policy.name),
            ("baseline.mfa_policy.group", &self.baseline.mfa_policy.group),
            (
                "baseline.source_ip_policy.name",
                &self.baseline.source_ip_policy.name,
            ),
            (
                "baseline.source_ip_policy.group",
                &self.baseline.source_ip_policy.group,
            ),
        ] {
            if !valid_iam_name(name, 128) {
                errs.push(format!(
                    "{key} = {name:?} is not a valid IAM name; use 1-128 characters from A-Z a-z 0-9 +=,.@_-"
                ));
            }
        }
        if self.baseline.mfa_policy.enabled
            && self.baseline.mfa_policy.allowed_without_mfa.is_empty()
        {
            errs.push("baseline.mfa_policy.allowed_without_mfa is empty; list at least the actions a user needs to set up MFA (see the default)".into());
        }
        for a in &self.baseline.mfa_policy.allowed_without_mfa {
            if !valid_action(a) {
                errs.push(format!(
                    "baseline.mfa_policy.allowed_without_mfa contains {a:?}, which is not an IAM action; write service:Action, e.g. \"iam:GetUser\""
                ));
            }
        }
        let sip = &self.baseline.source_ip_policy;
        for cidr in &sip.allowed_cidrs {
            if let Err(e) = cidr.trim().parse::<IpNet>() {
                errs.push(format!(
                    "baseline.source_ip_policy.allowed_cidrs contains {cidr:?}: {e}; write an IPv4 or IPv6 network such as \"203.0.113.0/24\" or \"2001:db8::/32\""
                ));
            }
        }
        if sip.enabled && sip.allowed_cidrs.is_empty() {
            errs.push("baseline.source_ip_policy.enabled is true but allowed_cidrs is empty; that would deny every request: list your networks or set enabled = false".into());
        }
        if self.baseline.mfa_policy.enabled
            && sip.enabled
            && (self.baseline.mfa_policy.name == sip.name
                || self.baseline.mfa_policy.group == sip.group)
        {
            errs.push("baseline.mfa_policy and baseline.source_ip_policy use the same policy or group name; give each its own".into());
        }
        if self.baseline.classification.tag.trim().is_empty() {
            errs.push(
                "baseline.classification.tag is empty; use e.g. \"iam-warden/access\"".into(),
            );
        }
        if self.exemptions.tag.trim().is_empty() {
            errs.push("exemptions.tag is empty; use e.g. \"iam-warden/exempt\"".into());
        }
        for p in &self.exemptions.path_prefixes {
            if !p.starts_with('/') {
                errs.push(format!(
                    "exemptions.path_prefixes contains {p:?}; an IAM path starts with '/' (e.g. \"/service/\")"
                ));
            }
        }
        for (key, url) in [
            ("aws.endpoint_url", &self.aws.endpoint_url),
            (
                "sources.cloudtrail.endpoint_url",
                &self.sources.cloudtrail.endpoint_url,
            ),
            ("sources.sqs.queue_url", &self.sources.sqs.queue_url),
        ] {
            if let Some(u) = url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    errs.push(format!(
                        "{key} = {u:?} is not a URL; write it with http:// or https://"
                    ));
                }
            }
        }
        if self.aws.region.trim().is_empty() {
            errs.push("aws.region is empty; IAM lives in us-east-1".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(errs.join("; ")))
        }
    }

    /// The effective configuration as TOML (for `check-config`).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| Error::Config(format!("cannot render config: {e}")))
    }
}

fn describe_figment_error(e: &figment::Error) -> String {
    let key = if e.path.is_empty() {
        String::new()
    } else {
        format!("key `{}`: ", e.path.join("."))
    };
    let source = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(src) => format!(" (from {src})"),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    let kind = match &e.kind {
        figment::error::Kind::UnknownField(f, allowed) => format!(
            "unknown key `{f}`; allowed keys here: {}",
            allowed.join(", ")
        ),
        other => other.to_string(),
    };
    format!("{key}{kind}{source}")
}

/// IAM names: 1..=max of `[\w+=,.@-]`.
pub fn valid_iam_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

fn valid_action(s: &str) -> bool {
    match s.split_once(':') {
        Some((svc, act)) => {
            !svc.is_empty()
                && !act.is_empty()
                && svc.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && act
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
        }
        None => s == "*",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(toml: &str) -> String {
        match Config::from_toml_str(toml) {
            Ok(c) => panic!("expected an error for {toml:?}, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_are_safe_and_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.mode, Mode::DryRun);
        assert_eq!(c.baseline.credentials.max_key_age_days, 90);
        assert_eq!(c.baseline.credentials.unused_days, 45);
        assert_eq!(c.baseline.password_policy.minimum_length, 14);
        assert_eq!(c.baseline.password_policy.reuse_prevention, 24);
        assert_eq!(c.baseline.attach, Attach::Group);
        assert_eq!(c.baseline.mfa_policy.allowed_without_mfa.len(), 7);
        assert_eq!(c.aws.region, "us-east-1");
    }

    #[test]
    fn durations_parse_with_units() {
        for (s, secs) in [
            ("90s", 90),
            ("10m", 600),
            ("1h", 3600),
            ("2d", 172_800),
            ("42", 42),
        ] {
            assert_eq!(s.parse::<Secs>().unwrap().0.as_secs(), secs, "{s}");
        }
        assert!("ten minutes".parse::<Secs>().is_err());
        assert!("-5m".parse::<Secs>().is_err());
        let c = Config::from_toml_str("[resync]\ninterval = \"5m\"\n").unwrap();
        assert_eq!(c.resync.interval.0.as_secs(), 300);
        let c = Config::from_toml_str("[resync]\ninterval = 120\n").unwrap();
        assert_eq!(c.resync.interval.0.as_secs(), 120);
        assert_eq!(Config::default().safety.new_user_grace.0.as_secs(), 3600);
        let c = Config::from_toml_str("[safety]\nnew_user_grace = \"30m\"\n").unwrap();
        assert_eq!(c.safety.new_user_grace.0.as_secs(), 1800);
        let c = Config::from_toml_str("[safety]\nnew_user_grace = \"0s\"\n").unwrap();
        assert_eq!(c.safety.new_user_grace.0.as_secs(), 0);
        let e = err_of("[safety]\nnew_user_grace = \"8d\"\n");
        assert!(e.contains("safety.new_user_grace"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_key_name() {
        let e = err_of("[baseline.credentials]\nmax_key_age = 30\n");
        assert!(e.contains("max_key_age"), "{e}");
        assert!(
            e.contains("max_key_age_days"),
            "should list allowed keys: {e}"
        );
        let e = err_of("moed = \"enforce\"\n");
        assert!(e.contains("moed"), "{e}");
    }

    #[test]
    fn bad_values_name_key_value_and_range() {
        let e = err_of("[baseline.credentials]\nmax_key_age_days = 0\n");
        assert!(
            e.contains("baseline.credentials.max_key_age_days = 0"),
            "{e}"
        );
        assert!(e.contains("1..=3650"), "{e}");
        let e = err_of("[baseline.credentials]\nunused_days = -5\n");
        assert!(e.contains("unused_days"), "{e}");
        let e = err_of("[baseline.credentials]\nunused_days = 100000\n");
        assert!(e.contains("100000"), "{e}");
        let e = err_of("mode = \"yolo\"\n");
        assert!(e.contains("mode") && e.contains("yolo"), "{e}");
        let e = err_of("[safety]\nmax_users_changed_percent = 150.0\n");
        assert!(e.contains("max_users_changed_percent"), "{e}");
        let e = err_of("[resync]\ninterval = \"soon\"\n");
        assert!(e.contains("resync.interval") && e.contains("soon"), "{e}");
    }

    #[test]
    fn cidrs_are_validated_v4_and_v6() {
        let c = Config::from_toml_str(
            "[baseline.source_ip_policy]\nenabled = true\nallowed_cidrs = [\"192.0.2.0/24\", \"2001:db8::/32\", \" 203.0.113.7/32\"]\n",
        )
        .unwrap();
        assert_eq!(c.allowed_cidrs().len(), 3);
        let e = err_of("[baseline.source_ip_policy]\nallowed_cidrs = [\"192.0.2.300/24\"]\n");
        assert!(e.contains("192.0.2.300/24"), "{e}");
        let e = err_of("[baseline.source_ip_policy]\nallowed_cidrs = [\"10.0.0.0/33\"]\n");
        assert!(e.contains("10.0.0.0/33"), "{e}");
        let e = err_of("[baseline.source_ip_policy]\nenabled = true\n");
        assert!(e.contains("allowed_cidrs is empty"), "{e}");
    }

    #[test]
    fn names_paths_and_actions_are_checked() {
        let e = err_of("[baseline.mfa_policy]\nname = \"has space\"\n");
        assert!(e.contains("baseline.mfa_policy.name"), "{e}");
        let e = err_of("[baseline]\npath = \"iam-warden\"\n");
        assert!(e.contains("baseline.path"), "{e}");
        let e = err_of("[baseline.mfa_policy]\nallowed_without_mfa = [\"GetUser\"]\n");
        assert!(e.contains("GetUser"), "{e}");
        let e = err_of("[exemptions]\npath_prefixes = [\"svc/\"]\n");
        assert!(e.contains("svc/"), "{e}");
        let e = err_of("[aws]\nendpoint_url = \"localhost:5000\"\n");
        assert!(e.contains("aws.endpoint_url"), "{e}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/iam-warden.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/iam-warden.toml"), "{e}");
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let c =
            Config::from_toml_str("mode = \"enforce\"\n[resync]\ninterval = \"15m\"\n").unwrap();
        let rendered = c.to_toml().unwrap();
        let back = Config::from_toml_str(&rendered).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.mode, Mode::Enforce);
    }

    #[test]
    fn example_config_file_is_valid_and_lists_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/iam-warden.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        // Every key of the example parses on its own, and the example (with comments
        // removed from the `# key = value` lines) sets every key that the defaults have.
        Config::from_toml_str(&text).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| {
                        r.split_once(" = ").is_some_and(|(k, _)| {
                            k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        })
                    })
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let example: toml::Value = toml::from_str(&uncommented).unwrap();
        let defaults: toml::Value = toml::Value::try_from(Config::default()).unwrap();
        fn keys(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if v.is_table() {
                        keys(v, &p, out);
                    } else {
                        out.push(p);
                    }
                }
            }
        }
        let (mut want, mut have) = (Vec::new(), Vec::new());
        keys(&defaults, "", &mut want);
        keys(&example, "", &mut have);
        let optional = [
            "journal",
            "aws.endpoint_url",
            "sources.cloudtrail.endpoint_url",
            "sources.sqs.queue_url",
        ];
        let missing: Vec<_> = want.iter().filter(|k| !have.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "config/iam-warden.toml does not document: {missing:?}"
        );
        for k in optional {
            assert!(
                have.iter().any(|h| h == k),
                "config/iam-warden.toml does not document {k}"
            );
        }
    }
}
