//! Table tests: each case cites the AWS documentation behaviour it relies on.

use std::collections::HashMap;
use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::networks::{suggest, toml_snippet, widen};
use super::*;
use crate::config::{AccessClass, AppliesTo, Config};

const ACCT: &str = "111122223333";

fn cfg() -> Config {
    let mut c = Config::default();
    c.baseline.mfa_policy.applies_to = AppliesTo::All;
    c.baseline.source_ip_policy.enabled = true;
    c.baseline.source_ip_policy.allowed_cidrs =
        vec!["203.0.113.0/24".into(), "2001:db8::/32".into()];
    c.baseline.source_ip_policy.allowed_vpc_endpoints = vec!["vpce-0a1b2c3d".into()];
    c
}

fn users() -> HashMap<String, UserScope> {
    let mut m = HashMap::new();
    let s = |class, exempt| UserScope { class, exempt };
    m.insert("alice".into(), s(AccessClass::Both, false));
    m.insert("ci".into(), s(AccessClass::Programmatic, false));
    m.insert("web".into(), s(AccessClass::Console, false));
    m.insert("breakglass".into(), s(AccessClass::Console, true));
    m
}

/// A record of `user` (long-term key) calling `action` from `ip`.
fn rec(user: &str, action: &str, ip: &str) -> Value {
    let (svc, name) = action.split_once(':').unwrap();
    json!({
        "eventTime": "2026-01-05T10:00:00Z",
        "eventSource": format!("{svc}.amazonaws.com"),
        "eventName": name,
        "eventType": "AwsApiCall",
        "sourceIPAddress": ip,
        "recipientAccountId": ACCT,
        "userIdentity": {
            "type": "IAMUser",
            "arn": format!("arn:aws:iam::{ACCT}:user/{user}"),
            "accountId": ACCT,
            "accessKeyId": concat!("AKIA", "EXAMPLEEXAMPLE01"),
            "userName": user
        }
    })
}

/// The same as a session (console or GetSessionToken: ASIA key, sessionContext).
fn session(user: &str, action: &str, ip: &str, mfa: &str) -> Value {
    let mut r = rec(user, action, ip);
    r["userIdentity"]["accessKeyId"] = json!(concat!("ASIA", "EXAMPLEEXAMPLE01"));
    r["userIdentity"]["sessionContext"] =
        json!({"attributes": {"creationDate": "2026-01-05T09:00:00Z", "mfaAuthenticated": mfa}});
    r
}

fn judge(v: &Value, cfg: &Config) -> (Option<Reason>, Option<Reason>, String) {
    let r: Record = serde_json::from_value(v.clone()).unwrap();
    let rules = Rules::from_config(cfg, ACCT).unwrap();
    match evaluate(&r, &users(), &rules) {
        Outcome::Call(c) => (c.mfa_denied, c.source_ip_denied, c.user.to_string()),
        Outcome::Skip(s) => (None, None, format!("skip:{}", s.as_str())),
    }
}

use Reason::*;

#[test]
fn verdicts_per_case() {
    let c = cfg();
    let allowed = "203.0.113.9";
    let outside = "198.51.100.7";
    let mut vpce = rec("alice", "s3:GetObject", "10.0.0.5");
    vpce["vpcEndpointId"] = json!("vpce-99999999");
    let mut vpce_ok = vpce.clone();
    vpce_ok["vpcEndpointId"] = json!("vpce-0a1b2c3d");
    let mut invoked = rec("alice", "kms:Decrypt", outside);
    invoked["userIdentity"]["invokedBy"] = json!("cloudformation.amazonaws.com");
    let mut fed = rec("x", "ec2:DescribeInstances", allowed);
    fed["userIdentity"] = json!({"type": "FederatedUser", "accountId": ACCT,
        "arn": format!("arn:aws:sts::{ACCT}:federated-user/bob"),
        "sessionContext": {"sessionIssuer": {"type": "IAMUser", "userName": "ci",
            "arn": format!("arn:aws:iam::{ACCT}:user/ci")},
            "attributes": {"mfaAuthenticated": "false"}}});
    type Want = (Option<Reason>, Option<Reason>);
    let cases: Vec<(&str, Value, Want)> = vec![
        // "Policy evaluation logic / Condition operators: ...IfExists": a long-term access
        // key call has no aws:MultiFactorAuthPresent; BoolIfExists matches, so the
        // DenyAllExceptListedIfNoMFA statement denies.
        (
            "long-term key, allowed network",
            rec("alice", "s3:ListBuckets", allowed),
            (Some(NoMfa), None),
        ),
        // "AWS global condition context keys: aws:MultiFactorAuthPresent": true for a
        // console session signed in with MFA.
        (
            "mfa console session",
            session("alice", "s3:ListBuckets", allowed, "true"),
            (None, None),
        ),
        (
            "session without mfa",
            session("alice", "s3:ListBuckets", allowed, "false"),
            (Some(NoMfa), None),
        ),
        // "IAM tutorial: Enable your users to configure their own credentials and MFA
        // settings": NotAction actions are allowed without MFA.
        (
            "listed action without mfa",
            rec("alice", "iam:GetUser", allowed),
            (None, None),
        ),
        (
            "sts:GetSessionToken without mfa",
            rec("alice", "sts:GetSessionToken", allowed),
            (None, None),
        ),
        // "aws:SourceIp": the requester's IP; NotIpAddress denies outside the list.
        (
            "outside networks",
            session("alice", "s3:ListBuckets", outside, "true"),
            (None, Some(OutsideNetworks)),
        ),
        // The same key for IPv6 (dual-stack endpoints).
        (
            "ipv6 inside",
            session("alice", "s3:ListBuckets", "2001:db8::5", "true"),
            (None, None),
        ),
        (
            "ipv6 outside",
            session("alice", "s3:ListBuckets", "2a00:1450::1", "true"),
            (None, Some(Ipv6)),
        ),
        // "aws:SourceIp ... not present when the request comes through a VPC endpoint";
        // a NotIpAddress condition on an absent key is true, so the deny applies...
        (
            "vpc endpoint",
            vpce.clone(),
            (Some(NoMfa), Some(VpcEndpoint)),
        ),
        // ...unless aws:SourceVpce matches allowed_vpc_endpoints (StringNotEqualsIfExists).
        ("allowed vpc endpoint", vpce_ok, (Some(NoMfa), None)),
        // "aws:ViaAWSService": true when a service calls another on the principal's behalf
        // (invokedBy), so the Bool ... false condition is not met.
        ("invoked by a service", invoked, (Some(NoMfa), None)),
        (
            "service name as source",
            rec("alice", "kms:Decrypt", "ec2.amazonaws.com"),
            (Some(NoMfa), None),
        ),
        (
            "AWS Internal as source",
            rec("alice", "kms:Decrypt", "AWS Internal"),
            (Some(NoMfa), None),
        ),
        // A GetFederationToken session is bound by the issuing user's policies.
        ("federated session of ci", fed, (Some(NoMfa), None)),
        // Console users are outside the MFA policy only if applies_to says so (here: all).
        (
            "console user outside",
            rec("web", "ec2:DescribeInstances", outside),
            (Some(NoMfa), Some(OutsideNetworks)),
        ),
        // Exempt users never get the policies.
        (
            "exempt user",
            rec("breakglass", "ec2:DescribeInstances", outside),
            (None, None),
        ),
        // Wildcards in NotAction: iam:List* style entries are IAM action patterns.
        (
            "event name case",
            rec("alice", "iam:getuser", allowed),
            (None, None),
        ),
    ];
    for (what, v, want) in cases {
        let (m, s, _) = judge(&v, &c);
        assert_eq!((m, s), want, "{what}");
    }
    // The default applies_to of the MFA policy is console: a programmatic user's key calls
    // are not denied by it (they would all be, BoolIfExists).
    let d = {
        let mut d = cfg();
        d.baseline.mfa_policy.applies_to = AppliesTo::Console;
        d
    };
    assert_eq!(judge(&rec("ci", "s3:ListBuckets", allowed), &d).0, None);
    assert_eq!(
        judge(&rec("web", "s3:ListBuckets", allowed), &d).0,
        Some(NoMfa)
    );
    // Disabled source-IP policy: no source-IP denials, but the scope is still known.
    let mut off = cfg();
    off.baseline.source_ip_policy.enabled = false;
    off.baseline.source_ip_policy.allowed_cidrs.clear();
    assert_eq!(
        judge(&rec("alice", "s3:ListBuckets", outside), &off).1,
        None
    );
    // NotAction with a wildcard, taken from the document.
    let mut w = cfg();
    w.baseline
        .mfa_policy
        .allowed_without_mfa
        .push("s3:List*".into());
    assert_eq!(judge(&rec("alice", "s3:ListBuckets", allowed), &w).0, None);
    assert_eq!(
        judge(&rec("alice", "s3:GetObject", allowed), &w).0,
        Some(NoMfa)
    );
}

#[test]
fn skips_per_reason() {
    let c = cfg();
    let mut no_id = rec("alice", "s3:ListBuckets", "203.0.113.9");
    no_id.as_object_mut().unwrap().remove("userIdentity");
    let mut other = rec("alice", "s3:ListBuckets", "203.0.113.9");
    other["userIdentity"]["accountId"] = json!("999999999999");
    let mut role = rec("alice", "s3:ListBuckets", "203.0.113.9");
    role["userIdentity"]["type"] = json!("AssumedRole");
    let mut signin = rec("alice", "signin:ConsoleLogin", "203.0.113.9");
    signin["eventType"] = json!("AwsConsoleSignIn");
    let mut no_ip = rec("alice", "s3:ListBuckets", "x");
    no_ip.as_object_mut().unwrap().remove("sourceIPAddress");
    let cases = [
        (no_id, "skip:no-user-identity"),
        (other, "skip:other-account"),
        (role, "skip:not-an-iam-user"),
        (
            rec("ghost", "s3:ListBuckets", "203.0.113.9"),
            "skip:unknown-user",
        ),
        (signin, "skip:not-an-api-call"),
        (no_ip, "skip:no-source-address"),
        (
            rec("alice", "s3:ListBuckets", "example.com"),
            "skip:hostname-address",
        ),
        // An anonymised real record: "211.9.016.253" is no valid address.
        (
            rec("alice", "s3:ListBuckets", "211.9.016.253"),
            "skip:hostname-address",
        ),
    ];
    for (v, want) in cases {
        assert_eq!(judge(&v, &c).2, want);
    }
}

#[test]
fn rules_come_from_the_documents() {
    let r = Rules::from_config(&cfg(), ACCT).unwrap();
    let mfa = r.mfa.unwrap();
    assert_eq!(
        mfa.not_actions,
        Config::default().baseline.mfa_policy.allowed_without_mfa
    );
    let sip = r.source_ip.unwrap();
    assert_eq!(sip.cidrs.len(), 2);
    assert_eq!(sip.vpc_endpoints, vec!["vpce-0a1b2c3d".to_string()]);
    assert!(sip.vpcs.is_empty());
    let mut off = Config::default();
    off.baseline.mfa_policy.enabled = false;
    let r = Rules::from_config(&off, ACCT).unwrap();
    assert!(r.mfa.is_none() && r.source_ip.is_none());
}

#[test]
fn tally_counts_and_merges() {
    let c = cfg();
    let rules = Rules::from_config(&c, ACCT).unwrap();
    let recs: Vec<Record> = [
        rec("alice", "s3:ListBuckets", "198.51.100.7"),
        session("alice", "s3:ListBuckets", "203.0.113.9", "true"),
        rec("ci", "iam:GetUser", "203.0.113.10"),
        rec("ghost", "s3:ListBuckets", "203.0.113.9"),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect();
    let u = users();
    let mut a = Tally::default();
    let mut b = Tally::default();
    for (i, r) in recs.iter().enumerate() {
        let t = if i % 2 == 0 { &mut a } else { &mut b };
        t.add(&evaluate(r, &u, &rules));
    }
    a.merge(b);
    assert_eq!((a.records, a.calls, a.denied), (4, 3, 1));
    assert_eq!(a.skips.get(&Skip::UnknownUser), Some(&1));
    let alice = &a.users["alice"];
    assert_eq!((alice.calls, alice.denied), (2, 1));
    assert_eq!(alice.by_reason.get(&NoMfa), Some(&1));
    assert_eq!(alice.by_reason.get(&OutsideNetworks), Some(&1));
    assert_eq!(alice.networks["198.51.100.0/24"].denied, 1);
    assert_eq!(a.addresses.len(), 3);
    assert!(a.locked_out().is_empty());
    assert_eq!(a.users_denied(), 1);
}

#[test]
fn suggestions_aggregate_and_snippet() {
    let mut addrs: HashMap<IpAddr, AddrTally> = HashMap::new();
    for (ip, user) in [
        ("198.51.100.7", "a"),
        ("198.51.100.200", "b"),
        ("198.51.101.3", "a"),
        ("192.0.2.1", "c"),
        ("2001:db8:1:2::1", "a"),
    ] {
        let t = addrs.entry(ip.parse().unwrap()).or_default();
        t.calls += 1;
        t.users.insert(user.into());
    }
    let s = suggest(&addrs, 24, 48, &["192.0.2.0/24".parse().unwrap()]);
    let nets: Vec<String> = s.iter().map(|s| s.network.to_string()).collect();
    assert_eq!(nets, ["198.51.100.0/23", "192.0.2.0/24", "2001:db8:1::/48"]);
    assert_eq!((s[0].calls, s[0].users), (3, 2));
    assert!((s[0].call_share - 0.6).abs() < 1e-9);
    assert!(s[1].already_allowed && !s[0].already_allowed);
    assert_eq!(
        toml_snippet(&s),
        "allowed_cidrs = [\"192.0.2.0/24\", \"198.51.100.0/23\", \"2001:db8:1::/48\"]"
    );
}

proptest! {
    /// Every observed address is covered by exactly one suggestion, every /max network of
    /// a suggestion holds an observed address (nothing broader than needed), and the
    /// suggestions cannot be merged further.
    #[test]
    fn suggestions_cover_exactly_the_observed_networks(
        v4 in proptest::collection::vec((0u8..4, any::<u8>(), any::<u8>()), 1..60),
        max in 20u8..=28,
    ) {
        let mut addrs: HashMap<IpAddr, AddrTally> = HashMap::new();
        for (b, c, d) in v4 {
            let ip: IpAddr = format!("10.{b}.{c}.{d}").parse().unwrap();
            let t = addrs.entry(ip).or_default();
            t.calls += 1;
            t.users.insert(format!("u{c}"));
        }
        let s = suggest(&addrs, max, 48, &[]);
        let total: u64 = s.iter().map(|s| s.calls).sum();
        prop_assert_eq!(total, addrs.values().map(|a| a.calls).sum::<u64>());
        for ip in addrs.keys() {
            prop_assert_eq!(s.iter().filter(|n| n.network.contains(ip)).count(), 1);
        }
        let widened: std::collections::HashSet<ipnet::IpNet> =
            addrs.keys().map(|a| widen(*a, max, 48)).collect();
        for n in &s {
            prop_assert!(n.network.prefix_len() <= max);
            for sub in n.network.subnets(max).unwrap() {
                prop_assert!(widened.contains(&sub), "{} holds no observed address", sub);
            }
        }
        let nets: Vec<ipnet::IpNet> = s.iter().map(|n| n.network).collect();
        prop_assert_eq!(ipnet::IpNet::aggregate(&nets).len(), nets.len());
    }
}

fn field() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        Just("IAMUser".to_string()),
        Just("FederatedUser".to_string()),
        Just("alice".to_string()),
        Just(ACCT.to_string()),
        Just("true".to_string()),
        Just("2001:db8::1".to_string()),
        Just("198.51.100.7".to_string()),
        Just("ec2.amazonaws.com".to_string()),
        Just("vpce-0a1b2c3d".to_string()),
        ".{0,12}",
    ])
}

proptest! {
    /// Any combination of present, absent and odd fields: a verdict or a counted skip,
    /// never a panic; every record is counted once.
    #[test]
    fn any_record_is_judged_or_skipped(f in proptest::collection::vec(field(), 13)) {
        let v = json!({
            "eventTime": f[0], "eventSource": f[1], "eventName": f[2], "eventType": f[3],
            "sourceIPAddress": f[4], "recipientAccountId": f[5], "vpcEndpointId": f[6],
            "userIdentity": {"type": f[7], "userName": f[8], "accountId": f[9],
                "invokedBy": f[10], "arn": f[11],
                "sessionContext": {"attributes": {"mfaAuthenticated": f[12]},
                    "sessionIssuer": {"type": f[7], "userName": f[8]}}}
        });
        let r: Record = serde_json::from_value(v).unwrap();
        let rules = Rules::from_config(&cfg(), ACCT).unwrap();
        let mut t = Tally::default();
        t.add(&evaluate(&r, &users(), &rules));
        prop_assert_eq!(t.records, 1);
        prop_assert_eq!(t.calls + t.skips.values().sum::<u64>(), 1);
    }
}
