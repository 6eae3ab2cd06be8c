//! One record, one verdict: [`evaluate`].

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;
use serde_json::Value;

use super::record::Record;
use crate::baseline::policies::{desired_policies, BaselinePolicy};
use crate::config::{AccessClass, AppliesTo, Config};
use crate::error::{Error, Result};

/// What the evaluation knows about a user of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserScope {
    pub class: AccessClass,
    /// Exempt users (and iam-warden's own identity) never get a baseline policy.
    pub exempt: bool,
}

/// The deny-unless-MFA policy as its document says.
#[derive(Debug, Clone, PartialEq)]
pub struct MfaRule {
    /// The document's `NotAction` list (may hold `*` / `?` wildcards).
    pub not_actions: Vec<String>,
    pub applies_to: AppliesTo,
}

/// The deny-unless-source-IP policy as its document says.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceIpRule {
    pub cidrs: Vec<IpNet>,
    pub vpc_endpoints: Vec<String>,
    pub vpcs: Vec<String>,
}

/// The baseline policies of the configuration, compiled from their documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// The account whose users are judged.
    pub account_id: String,
    pub mfa: Option<MfaRule>,
    /// `None` when the source-IP policy is disabled.
    pub source_ip: Option<SourceIpRule>,
    /// The source-IP policy's `applies_to`, also when it is disabled (the networks to
    /// suggest are those of the users it would cover).
    pub source_ip_applies_to: AppliesTo,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

impl Rules {
    /// From the documents [`desired_policies`] builds for `cfg`.
    pub fn from_config(cfg: &Config, account_id: &str) -> Result<Rules> {
        let b = &cfg.baseline;
        let mut rules = Rules {
            account_id: account_id.to_string(),
            mfa: None,
            source_ip: None,
            source_ip_applies_to: b.source_ip_policy.applies_to,
        };
        for p in desired_policies(cfg)? {
            let st = &p.document["Statement"][0];
            match p.kind {
                BaselinePolicy::Mfa => {
                    rules.mfa = Some(MfaRule {
                        not_actions: strings(&st["NotAction"]),
                        applies_to: b.mfa_policy.applies_to,
                    })
                }
                BaselinePolicy::SourceIp => {
                    let c = &st["Condition"];
                    let mut cidrs = Vec::new();
                    for s in strings(&c["NotIpAddress"]["aws:SourceIp"]) {
                        cidrs.push(s.parse::<IpNet>().map_err(|e| {
                            Error::Config(format!(
                                "baseline.source_ip_policy.allowed_cidrs contains {s:?}: {e}; write an IPv4 or IPv6 network such as \"203.0.113.0/24\""
                            ))
                        })?);
                    }
                    rules.source_ip = Some(SourceIpRule {
                        cidrs,
                        vpc_endpoints: strings(&c["StringNotEqualsIfExists"]["aws:SourceVpce"]),
                        vpcs: strings(&c["StringNotEqualsIfExists"]["aws:SourceVpc"]),
                    })
                }
            }
        }
        Ok(rules)
    }
}

/// Why a call would have been denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// MFA policy: the call is not in `allowed_without_mfa` and the session had no MFA.
    NoMfa,
    /// Source-IP policy: an IPv4 source outside `allowed_cidrs`.
    OutsideNetworks,
    /// Source-IP policy: an IPv6 source outside `allowed_cidrs`.
    Ipv6,
    /// Source-IP policy: through a VPC endpoint not in `allowed_vpc_endpoints`.
    VpcEndpoint,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::NoMfa,
        Reason::OutsideNetworks,
        Reason::Ipv6,
        Reason::VpcEndpoint,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoMfa => "no-mfa",
            Reason::OutsideNetworks => "outside-networks",
            Reason::Ipv6 => "ipv6",
            Reason::VpcEndpoint => "vpc-endpoint",
        }
    }
    pub fn policy(self) -> BaselinePolicy {
        match self {
            Reason::NoMfa => BaselinePolicy::Mfa,
            _ => BaselinePolicy::SourceIp,
        }
    }
}

/// Why a record was not judged (counted, never silent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skip {
    /// No `userIdentity`.
    NoUserIdentity,
    /// Made by a principal of another account.
    OtherAccount,
    /// A role session, root, an AWS service...: the baseline binds IAM users only.
    NotAnIamUser,
    /// An IAM user the account does not have (any more).
    UnknownUser,
    /// Not an API call (a console sign-in, a service event): no IAM policy is evaluated.
    NotAnApiCall,
    /// No `eventSource` / `eventName`.
    NoAction,
    /// No `sourceIPAddress`.
    NoSourceAddress,
    /// A `sourceIPAddress` that is neither an address nor an AWS service name.
    HostnameAddress,
}

impl Skip {
    pub const ALL: [Skip; 8] = [
        Skip::NoUserIdentity,
        Skip::OtherAccount,
        Skip::NotAnIamUser,
        Skip::UnknownUser,
        Skip::NotAnApiCall,
        Skip::NoAction,
        Skip::NoSourceAddress,
        Skip::HostnameAddress,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NoUserIdentity => "no-user-identity",
            Skip::OtherAccount => "other-account",
            Skip::NotAnIamUser => "not-an-iam-user",
            Skip::UnknownUser => "unknown-user",
            Skip::NotAnApiCall => "not-an-api-call",
            Skip::NoAction => "no-action",
            Skip::NoSourceAddress => "no-source-address",
            Skip::HostnameAddress => "hostname-address",
        }
    }
}

/// Where a call came from, as the source-IP policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An address (`aws:SourceIp`).
    Address(IpAddr),
    /// A VPC endpoint (`aws:SourceVpce`; no `aws:SourceIp`).
    VpcEndpoint(String),
    /// An AWS service on the user's behalf (`aws:ViaAWSService` true).
    AwsService(String),
}

/// A judged call of a user of the account.
#[derive(Debug, Clone, PartialEq)]
pub struct Call<'a> {
    pub user: &'a str,
    /// `service:EventName`, e.g. `s3:ListBuckets`.
    pub action: String,
    pub time: &'a str,
    pub via: Via,
    /// In the source-IP policy's scope (by `applies_to` and exemption; also when disabled).
    pub source_ip_scope: bool,
    pub mfa_denied: Option<Reason>,
    pub source_ip_denied: Option<Reason>,
    /// Denied through a VPC endpoint while `allowed_vpcs` is set: CloudTrail does not
    /// name the VPC, so the call may come from an allowed one.
    pub vpc_unknown: bool,
}

impl Call<'_> {
    pub fn denied(&self) -> bool {
        self.mfa_denied.is_some() || self.source_ip_denied.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    Skip(Skip),
    Call(Call<'a>),
}

/// The IAM action of a record: `eventSource` without `.amazonaws.com` (the few services
/// whose action prefix differs from their endpoint name mapped), `:`, `eventName`.
pub fn iam_action(event_source: &str, event_name: &str) -> String {
    let svc = event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source);
    let svc = match svc {
        "monitoring" => "cloudwatch",
        "email" => "ses",
        "runtime.sagemaker" | "api.sagemaker" => "sagemaker",
        other => other,
    };
    format!("{svc}:{event_name}")
}

/// IAM action matching: case-insensitive, `*` any run, `?` one character.
fn action_matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some((b'*', rest)) => (0..=a.len()).any(|i| go(rest, &a[i..])),
            Some((b'?', rest)) => !a.is_empty() && go(rest, &a[1..]),
            Some((c, rest)) => a
                .split_first()
                .is_some_and(|(x, ar)| x.eq_ignore_ascii_case(c) && go(rest, ar)),
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// A source address that names an AWS service (`ec2.amazonaws.com`, `AWS Internal`).
fn is_service_name(addr: &str) -> bool {
    addr.ends_with(".amazonaws.com") || addr.eq_ignore_ascii_case("AWS Internal")
}

/// Would the baseline as `rules` say have denied this call? `users` are the account's
/// IAM users by name.
pub fn evaluate<'a>(
    rec: &'a Record,
    users: &HashMap<String, UserScope>,
    rules: &Rules,
) -> Outcome<'a> {
    let Some(id) = &rec.user_identity else {
        return Outcome::Skip(Skip::NoUserIdentity);
    };
    let account = id
        .account_id
        .as_deref()
        .or(rec.recipient_account_id.as_deref());
    if account != Some(rules.account_id.as_str()) {
        return Outcome::Skip(Skip::OtherAccount);
    }
    let session = id.session_context.as_ref();
    // An IAM user's long-term key or its GetSessionToken/console session (type IAMUser),
    // or a GetFederationToken session issued by the user (type FederatedUser).
    let name = match id.kind.as_deref() {
        Some("IAMUser") => id.user_name.as_deref().or_else(|| {
            id.arn
                .as_deref()
                .and_then(|a| a.split_once(":user/"))
                .and_then(|(_, rest)| rest.rsplit('/').next())
        }),
        Some("FederatedUser") => session
            .and_then(|s| s.session_issuer.as_ref())
            .filter(|i| i.kind.as_deref() == Some("IAMUser"))
            .and_then(|i| i.user_name.as_deref()),
        _ => None,
    };
    let Some(name) = name else {
        return Outcome::Skip(Skip::NotAnIamUser);
    };
    let Some(scope) = users.get(name) else {
        return Outcome::Skip(Skip::UnknownUser);
    };
    if rec.event_type.as_deref().is_some_and(|t| t != "AwsApiCall") {
        return Outcome::Skip(Skip::NotAnApiCall);
    }
    let (Some(source), Some(event)) = (rec.event_source.as_deref(), rec.event_name.as_deref())
    else {
        return Outcome::Skip(Skip::NoAction);
    };
    let Some(addr) = rec.source_ip_address.as_deref().map(str::trim) else {
        return Outcome::Skip(Skip::NoSourceAddress);
    };
    let via = if let Some(svc) = &id.invoked_by {
        Via::AwsService(svc.clone())
    } else if is_service_name(addr) {
        Via::AwsService(addr.to_string())
    } else if let Some(vpce) = &rec.vpc_endpoint_id {
        Via::VpcEndpoint(vpce.clone())
    } else {
        match addr.parse::<IpAddr>() {
            Ok(ip) => Via::Address(ip),
            Err(_) => return Outcome::Skip(Skip::HostnameAddress),
        }
    };
    let action = iam_action(source, event);
    let in_scope = |applies_to: AppliesTo| !scope.exempt && applies_to.covers(scope.class);

    // MFA policy, `BoolIfExists aws:MultiFactorAuthPresent false`: the key is true only
    // for a session created with MFA (console sign-in with MFA, GetSessionToken with an
    // MFA code: sessionContext.attributes.mfaAuthenticated = "true"); a long-term key has
    // no such key, and IfExists makes an absent key match, so the deny applies.
    let mfa_denied = rules.mfa.as_ref().and_then(|m| {
        let mfa = session
            .and_then(|s| s.attributes.as_ref())
            .and_then(|a| a.mfa_authenticated.as_ref())
            .is_some_and(|v| v == "true" || v == &Value::Bool(true));
        let allowed = m.not_actions.iter().any(|p| action_matches(p, &action));
        (in_scope(m.applies_to) && !allowed && !mfa).then_some(Reason::NoMfa)
    });

    // Source-IP policy, `NotIpAddress aws:SourceIp` and `Bool aws:ViaAWSService false`:
    // a call an AWS service makes on the user's behalf has ViaAWSService true, so the deny
    // does not apply; a call through a VPC endpoint has no aws:SourceIp, NotIpAddress of an
    // absent key is true, so it is denied unless its endpoint is excepted.
    let source_ip_scope = in_scope(rules.source_ip_applies_to);
    let mut vpc_unknown = false;
    let source_ip_denied = rules.source_ip.as_ref().and_then(|r| {
        if !source_ip_scope {
            return None;
        }
        match &via {
            Via::AwsService(_) => None,
            Via::VpcEndpoint(e) => {
                if r.vpc_endpoints.iter().any(|v| v == e) {
                    None
                } else {
                    vpc_unknown = !r.vpcs.is_empty();
                    Some(Reason::VpcEndpoint)
                }
            }
            Via::Address(ip) => {
                if r.cidrs.iter().any(|n| n.contains(ip)) {
                    None
                } else if ip.is_ipv6() {
                    Some(Reason::Ipv6)
                } else {
                    Some(Reason::OutsideNetworks)
                }
            }
        }
    });
    Outcome::Call(Call {
        user: name,
        action,
        time: rec.event_time.as_deref().unwrap_or(""),
        via,
        source_ip_scope,
        mfa_denied,
        source_ip_denied,
        vpc_unknown,
    })
}
