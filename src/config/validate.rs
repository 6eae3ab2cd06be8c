//! Validation: every value range-checked, every name and network parsed. Each problem is
//! one message naming the key, the bad value and what is allowed; all problems are
//! reported together, in the order of the sections below.

use ipnet::IpNet;

use super::{
    AwsConfig, Baseline, Config, Controller, Credentials, Delivery, Exemptions, Notifications,
    PasswordPolicy, Rotation, Safety, Sources,
};
use crate::error::{Error, Result};

impl Config {
    /// Range checks. Each problem names the key, the bad value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let mut errs = Problems::default();
        credentials(&self.baseline.credentials, &mut errs);
        password_policy(&self.baseline.password_policy, &mut errs);
        aws_ranges(&self.aws, &mut errs);
        errs.range(
            "resync.interval (seconds)",
            self.resync.interval.0.as_secs(),
            10,
            7 * 86_400,
        );
        sources(&self.sources, &mut errs);
        controller_ranges(&self.controller, &mut errs);
        safety_ranges(&self.safety, &mut errs);
        controller_rates(&self.controller, &mut errs);
        safety_percent(&self.safety, &mut errs);
        baseline_policies(&self.baseline, &mut errs);
        exemptions(&self.baseline, &self.exemptions, &mut errs);
        endpoints(self, &mut errs);
        rotation(&self.rotation, &self.baseline.credentials, &mut errs);
        notifications(&self.notifications, &mut errs);
        for p in self.cis.problems() {
            errs.push(p);
        }
        for p in self.accounts.problems(&self.aws.region) {
            errs.push(p);
        }
        errs.into_result()
    }
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, msg: impl Into<String>) {
        self.0.push(msg.into());
    }

    fn range(&mut self, key: &str, v: u64, lo: u64, hi: u64) {
        if v < lo || v > hi {
            self.push(format!("{key} = {v} is out of range; allowed {lo}..={hi}"));
        }
    }

    fn into_result(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(self.0.join("; ")))
        }
    }
}

fn credentials(c: &Credentials, errs: &mut Problems) {
    errs.range(
        "baseline.credentials.max_key_age_days",
        c.max_key_age_days.into(),
        1,
        3650,
    );
    errs.range(
        "baseline.credentials.unused_days",
        c.unused_days.into(),
        1,
        3650,
    );
    errs.range(
        "baseline.credentials.delete_inactive_key_after_days",
        c.delete_inactive_key_after_days.into(),
        1,
        3650,
    );
}

fn password_policy(p: &PasswordPolicy, errs: &mut Problems) {
    errs.range(
        "baseline.password_policy.minimum_length",
        p.minimum_length.into(),
        6,
        128,
    );
    errs.range(
        "baseline.password_policy.reuse_prevention",
        p.reuse_prevention.into(),
        0,
        24,
    );
    errs.range(
        "baseline.password_policy.max_age_days",
        p.max_age_days.into(),
        0,
        1095,
    );
}

fn aws_ranges(aws: &AwsConfig, errs: &mut Problems) {
    errs.range("aws.max_attempts", aws.max_attempts.into(), 1, 20);
    errs.range("aws.backoff_base_ms", aws.backoff_base_ms, 1, 60_000);
    errs.range("aws.backoff_max_ms", aws.backoff_max_ms, 1, 300_000);
    errs.range(
        "aws.connect_timeout (seconds)",
        aws.connect_timeout.0.as_secs(),
        1,
        300,
    );
    errs.range(
        "aws.attempt_timeout (seconds)",
        aws.attempt_timeout.0.as_secs(),
        1,
        900,
    );
    errs.range(
        "aws.operation_timeout (seconds)",
        aws.operation_timeout.0.as_secs(),
        1,
        3600,
    );
}

fn sources(s: &Sources, errs: &mut Problems) {
    let ct = &s.cloudtrail;
    errs.range(
        "sources.cloudtrail.poll_interval (seconds)",
        ct.poll_interval.0.as_secs(),
        1,
        3600,
    );
    errs.range(
        "sources.cloudtrail.overlap (seconds)",
        ct.overlap.0.as_secs(),
        0,
        86_400,
    );
    errs.range(
        "sources.cloudtrail.initial_lookback (seconds)",
        ct.initial_lookback.0.as_secs(),
        0,
        90 * 86_400,
    );
    errs.range(
        "sources.cloudtrail.max_concurrent_accounts",
        ct.max_concurrent_accounts.into(),
        1,
        100,
    );
    errs.range(
        "sources.sqs.wait_time (seconds)",
        s.sqs.wait_time.0.as_secs(),
        0,
        20,
    );
    errs.range("sources.sqs.max_messages", s.sqs.max_messages.into(), 1, 10);
}

fn controller_ranges(c: &Controller, errs: &mut Problems) {
    errs.range("controller.workers", c.workers.into(), 1, 64);
    errs.range(
        "controller.account_workers",
        c.account_workers.into(),
        1,
        64,
    );
    errs.range("controller.write_burst", c.write_burst.into(), 1, 1000);
    errs.range(
        "controller.shutdown_grace (seconds)",
        c.shutdown_grace.0.as_secs(),
        0,
        600,
    );
}

fn safety_ranges(s: &Safety, errs: &mut Problems) {
    errs.range(
        "safety.new_user_grace (seconds)",
        s.new_user_grace.0.as_secs(),
        0,
        7 * 86_400,
    );
    errs.range(
        "safety.max_users_changed",
        s.max_users_changed.into(),
        0,
        1_000_000,
    );
    if let Some(w) = s.preview_window {
        let secs = w.0.as_secs();
        if secs == 0 || secs > 90 * 86_400 {
            errs.push(format!(
                "safety.preview_window = \"{w}\" is out of range; allowed more than 0 up to 90d (CloudTrail keeps 90 days of event history), e.g. \"24h\"; leave it unset to turn the gate off"
            ));
        }
    }
}

/// The token-bucket rates and their floor: finite, positive, bounded.
fn controller_rates(c: &Controller, errs: &mut Problems) {
    let w = c.writes_per_second;
    if !(w.is_finite() && w > 0.0 && w <= 100.0) {
        errs.push(format!(
            "controller.writes_per_second = {w} is out of range; allowed more than 0 up to 100"
        ));
    }
    let r = c.reads_per_second;
    if !(r.is_finite() && r > 0.0 && r <= 1000.0) {
        errs.push(format!(
            "controller.reads_per_second = {r} is out of range; allowed more than 0 up to 1000"
        ));
    }
    let f = c.min_rate_per_second;
    // A floor above a bucket's starting rate is lowered to that rate by the pacer, so a
    // deliberately slow writes_per_second needs no matching floor.
    if !(f.is_finite() && f > 0.0 && f <= 1000.0) {
        errs.push(format!(
            "controller.min_rate_per_second = {f} is out of range; allowed more than 0 up to 1000 (a floor above writes_per_second or reads_per_second is lowered to that rate)"
        ));
    }
}

fn safety_percent(s: &Safety, errs: &mut Problems) {
    let pct = s.max_users_changed_percent;
    if !(pct.is_finite() && (0.0..=100.0).contains(&pct)) {
        errs.push(format!(
            "safety.max_users_changed_percent = {pct} is out of range; allowed 0..=100"
        ));
    }
}

/// The IAM path, the policy and group names, the MFA policy's actions, the source-IP
/// policy's networks.
fn baseline_policies(b: &Baseline, errs: &mut Problems) {
    let path = &b.path;
    if !(path.starts_with('/') && path.ends_with('/') && path.len() <= 512) {
        errs.push(format!(
            "baseline.path = {path:?} is not an IAM path; it must start and end with '/' (e.g. \"/iam-warden/\")"
        ));
    }
    for (key, name) in [
        ("baseline.mfa_policy.name", &b.mfa_policy.name),
        ("baseline.mfa_policy.group", &b.mfa_policy.group),
        ("baseline.source_ip_policy.name", &b.source_ip_policy.name),
        ("baseline.source_ip_policy.group", &b.source_ip_policy.group),
    ] {
        if !valid_iam_name(name, 128) {
            errs.push(format!(
                "{key} = {name:?} is not a valid IAM name; use 1-128 characters from A-Z a-z 0-9 +=,.@_-"
            ));
        }
    }
    if b.mfa_policy.enabled && b.mfa_policy.allowed_without_mfa.is_empty() {
        errs.push("baseline.mfa_policy.allowed_without_mfa is empty; list at least the actions a user needs to set up MFA (see the default)");
    }
    for a in &b.mfa_policy.allowed_without_mfa {
        if !valid_action(a) {
            errs.push(format!(
                "baseline.mfa_policy.allowed_without_mfa contains {a:?}, which is not an IAM action; write service:Action, e.g. \"iam:GetUser\""
            ));
        }
    }
    let sip = &b.source_ip_policy;
    for cidr in &sip.allowed_cidrs {
        if let Err(e) = cidr.trim().parse::<IpNet>() {
            errs.push(format!(
                "baseline.source_ip_policy.allowed_cidrs contains {cidr:?}: {e}; write an IPv4 or IPv6 network such as \"203.0.113.0/24\" or \"2001:db8::/32\""
            ));
        }
    }
    for (key, list, prefix, example) in [
        (
            "allowed_vpc_endpoints",
            &sip.allowed_vpc_endpoints,
            "vpce-",
            "vpce-0a1b2c3d4e5f67890",
        ),
        (
            "allowed_vpcs",
            &sip.allowed_vpcs,
            "vpc-",
            "vpc-0a1b2c3d4e5f67890",
        ),
    ] {
        for id in list {
            if !valid_aws_id(id, prefix) {
                errs.push(format!(
                    "baseline.source_ip_policy.{key} contains {id:?}, which is not a {prefix}... id; write it as AWS shows it, e.g. \"{example}\""
                ));
            }
        }
    }
    if sip.enabled && sip.allowed_cidrs.is_empty() {
        errs.push("baseline.source_ip_policy.enabled is true but allowed_cidrs is empty; that would deny every request: list your networks or set enabled = false");
    }
    if b.mfa_policy.enabled
        && sip.enabled
        && (b.mfa_policy.name == sip.name || b.mfa_policy.group == sip.group)
    {
        errs.push("baseline.mfa_policy and baseline.source_ip_policy use the same policy or group name; give each its own");
    }
}

/// The classification and exemption tags, the exempt path prefixes.
fn exemptions(b: &Baseline, ex: &Exemptions, errs: &mut Problems) {
    if b.classification.tag.trim().is_empty() {
        errs.push("baseline.classification.tag is empty; use e.g. \"iam-warden/access\"");
    }
    if ex.tag.trim().is_empty() {
        errs.push("exemptions.tag is empty; use e.g. \"iam-warden/exempt\"");
    }
    for p in &ex.path_prefixes {
        if !p.starts_with('/') {
            errs.push(format!(
                "exemptions.path_prefixes contains {p:?}; an IAM path starts with '/' (e.g. \"/service/\")"
            ));
        }
    }
}

/// Endpoint URLs and the region.
fn endpoints(cfg: &Config, errs: &mut Problems) {
    for (key, url) in [
        ("aws.endpoint_url", &cfg.aws.endpoint_url),
        (
            "sources.cloudtrail.endpoint_url",
            &cfg.sources.cloudtrail.endpoint_url,
        ),
        ("sources.sqs.queue_url", &cfg.sources.sqs.queue_url),
    ] {
        if let Some(u) = url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                errs.push(format!(
                    "{key} = {u:?} is not a URL; write it with http:// or https://"
                ));
            }
        }
    }
    if cfg.aws.region.trim().is_empty() {
        errs.push("aws.region is empty; IAM lives in us-east-1");
    }
    if let Some(r) = cfg.export.securityhub.region.as_deref() {
        if !r.is_empty() && !is_region_name(r) {
            errs.push(format!(
                "export.securityhub.region = {r:?} is not an AWS region name; write one like \"eu-west-1\", or leave it out for aws.region"
            ));
        }
    }
}

/// The shape of an AWS region name: `us-east-1`, `us-gov-west-1`, `cn-northwest-1`: two
/// lowercase letters, one or more lowercase words, a number, joined by `-`. Pure.
pub fn is_region_name(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    let lower = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    parts.len() >= 3
        && parts[0].len() == 2
        && lower(&parts[0])
        && parts[1..parts.len() - 1].iter().all(lower)
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The `[rotation]` durations and the delivery name template.
fn rotation(r: &Rotation, c: &Credentials, errs: &mut Problems) {
    if r.warn_days >= c.max_key_age_days {
        errs.push(format!(
            "rotation.warn_days = {} must be less than baseline.credentials.max_key_age_days = {}; warn a few days before the age limit (default 14)",
            r.warn_days, c.max_key_age_days
        ));
    }
    errs.range(
        "rotation.drain_quiet (seconds)",
        r.drain_quiet.0.as_secs(),
        60,
        90 * 86_400,
    );
    let retry = r.store_retry.get().as_secs();
    if !(60..=30 * 86_400).contains(&retry) {
        errs.push(format!(
            "rotation.store_retry = \"{}\" is out of range: a rotation whose new key could not be stored is retried this long after the failure (each attempt creates and deletes a key); write a duration from \"1m\" to \"30d\", e.g. \"1d\" (the default)",
            r.store_retry
        ));
    }
    errs.range("rotation.grace_days", r.grace_days.into(), 1, 365);
    errs.range("rotation.recovery_days", r.recovery_days.into(), 0, 365);
    if r.delivery != Delivery::None {
        // A user name made of every character IAM allows in one: the template must render
        // to a valid name for it, except for characters the store itself rejects (those
        // users get a finding when their key is due).
        if let Err(e) = delivery_name(&r.name_template, "user.name-1_x", r.delivery) {
            errs.push(format!(
                "rotation.name_template = {:?}: {e}",
                r.name_template
            ));
        }
    }
    if let Some(k) = &r.kms_key_id {
        if k.trim().is_empty() || k.chars().any(char::is_whitespace) {
            errs.push(format!(
                "rotation.kms_key_id = {k:?} is not a KMS key id, ARN or alias; leave it out for the AWS-managed key"
            ));
        }
    }
}

/// The secret (Secrets Manager) or parameter (SSM) name for `user`: `template` with
/// `{user}` replaced, checked against the store's naming rules. The error says why the
/// name is invalid (for a person; no secret involved).
pub fn delivery_name(
    template: &str,
    user: &str,
    delivery: Delivery,
) -> std::result::Result<String, String> {
    if !template.contains("{user}") {
        return Err("the template must contain {user} (one secret per user), e.g. \"iam-warden/{user}/access-key\"".into());
    }
    let rest = template.replace("{user}", "");
    if rest.contains('{') || rest.contains('}') {
        return Err("the only placeholder is {user}; remove the other braces".into());
    }
    let name = template.replace("{user}", user);
    match delivery {
        Delivery::SecretsManager => {
            let bad = name
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)));
            if let Some(c) = bad {
                return Err(format!(
                    "the secret name {name:?} contains {c:?}; Secrets Manager allows A-Z a-z 0-9 /_+=.@-"
                ));
            }
            if name.len() > 512 {
                return Err(format!(
                    "the secret name is {} characters; Secrets Manager allows at most 512",
                    name.len()
                ));
            }
        }
        Delivery::Ssm => {
            let bad = name
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "/_.-".contains(*c)));
            if let Some(c) = bad {
                return Err(format!(
                    "the parameter name {name:?} contains {c:?}; SSM allows A-Z a-z 0-9 /_.-"
                ));
            }
            if name.contains('/') && !name.starts_with('/') {
                return Err(format!(
                    "the parameter name {name:?} is hierarchical and must start with '/', e.g. \"/iam-warden/{{user}}/access-key\""
                ));
            }
            let lower = name.trim_start_matches('/').to_ascii_lowercase();
            if lower.starts_with("aws") || lower.starts_with("ssm") {
                return Err(format!(
                    "the parameter name {name:?} starts with aws or ssm, which SSM reserves"
                ));
            }
            if name.len() > 1011 || name.split('/').count() > 16 {
                return Err(format!(
                    "the parameter name {name:?} is too long (SSM allows 1011 characters and 15 levels)"
                ));
            }
        }
        Delivery::None => {}
    }
    Ok(name)
}

/// `[notifications]`: URLs, the signing key file, the SNS topic, the bounds.
fn notifications(n: &Notifications, errs: &mut Problems) {
    if n.owner_tag.trim().is_empty() {
        errs.push("notifications.owner_tag is empty; use e.g. \"iam-warden/owner\"");
    }
    if let Some(u) = &n.webhook_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            errs.push(format!(
                "notifications.webhook_url = {u:?} is not a URL; write it with https://"
            ));
        }
        if n.webhook_secret_file.is_none() {
            errs.push("notifications.webhook_url is set but webhook_secret_file is not; name a file holding the HMAC key that signs each body");
        }
    }
    if let Some(t) = &n.sns_topic_arn {
        if !(t.starts_with("arn:") && t.split(':').count() == 6 && t.contains(":sns:")) {
            errs.push(format!(
                "notifications.sns_topic_arn = {t:?} is not an SNS topic ARN; write arn:aws:sns:REGION:ACCOUNT:NAME"
            ));
        }
    }
    errs.range(
        "notifications.timeout (seconds)",
        n.timeout.0.as_secs(),
        1,
        60,
    );
    errs.range("notifications.max_attempts", n.max_attempts.into(), 1, 20);
    errs.range(
        "notifications.queue_capacity",
        n.queue_capacity.into(),
        1,
        100_000,
    );
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

/// `vpce-0a1b2c3d` / `vpc-0a1b2c3d`: the prefix, then 8 or 17 lowercase hex digits.
fn valid_aws_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
