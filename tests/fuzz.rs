//! Property-based fuzzing of everything iam-warden reads from outside: CloudTrail records
//! (LookupEvents' `CloudTrailEvent` strings), EventBridge envelopes from SQS and the keys
//! they dispatch, the credential report CSV, policy documents (comparison by meaning,
//! URL-decoding), the TOML configuration and the CloudTrail checkpoint file. The
//! `IAM_WARDEN_*` environment overrides are fuzzed in `tests/fuzz_env.rs` (a binary of
//! their own, since they mutate the process environment).
//!
//! Generators are structure-aware: values shaped like the real inputs, with fields
//! mutated, missing, of the wrong type or huge, plus byte-level mutations of the rendered
//! text. Every target asserts more than "no panic" where a property exists.
//!
//! Cases per target: `WARDEN_FUZZ_CASES` (default 10,000; `make fuzz` runs 1,000,000). Not
//! `IAM_WARDEN_*`: that prefix is the daemon's configuration, and a daemon started by a test
//! would reject the unknown key.
//! Failing seeds are persisted under `proptest-regressions/` and replayed first.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use iam_warden::baseline::policies::{canonical, mfa_document, same_meaning, source_ip_document};
use iam_warden::config::{Config, Secs};
use iam_warden::controller::dispatch::Dispatch;
use iam_warden::controller::queue::WorkQueue;
use iam_warden::inventory::credential_report;
use iam_warden::inventory::decode_policy_document;
use iam_warden::metrics::SqsSkipReason;
use iam_warden::metrics::{Metrics, Source};
use iam_warden::sources::checkpoint::{Checkpoint, SeenEvent, VERSION};
use iam_warden::sources::event::{
    metric_event_name, parse_eventbridge, parse_record, parse_record_str, targets,
    user_name_from_arn, BaselineNames, IamEvent, ReconcileKey, Target, EVENTBRIDGE_DETAIL_TYPE,
    EVENTBRIDGE_SOURCE, KNOWN_EVENT_NAMES,
};
use iam_warden::sources::health::parse_sqs_message;
use iam_warden::sources::route::{route, Route};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngAlgorithm};
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------
// Harness

/// Cases per target, from `WARDEN_FUZZ_CASES` (default 10,000).
fn cases() -> u32 {
    match std::env::var("WARDEN_FUZZ_CASES") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            panic!("WARDEN_FUZZ_CASES = {s:?} is not a whole number of cases; unset it or write e.g. 10000")
        }),
        Err(_) => 10_000,
    }
}

fn fuzz_config(divisor: u32) -> ProptestConfig {
    ProptestConfig {
        cases: (cases() / divisor).max(1),
        // Relative to the package root, where cargo runs tests.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/fuzz.txt",
        ))),
        // ChaCha (the default) dominates a debug build's profile; XorShift is plenty for
        // generating inputs and makes the cases about twice as fast.
        rng_algorithm: RngAlgorithm::XorShift,
        // Shrinking a failure of a cheap target is quick; keep the bound anyway so a
        // failure on a slow machine reports within minutes.
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

/// A person reads every error message: it must be one line.
fn assert_one_line(what: &str, msg: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !msg.contains('\n') && !msg.contains('\r'),
        "{what}: message is not one line: {msg:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Generic generators

/// A string of `len` characters of `alphabet`, expanded from one random number: far
/// cheaper to generate in a debug build than a regex strategy (one value tree per
/// character), which keeps 10,000 cases per target within seconds.
fn chars(alphabet: &'static str, len: std::ops::RangeInclusive<usize>) -> BoxedStrategy<String> {
    let set: Vec<char> = alphabet.chars().collect();
    (any::<u64>(), len)
        .prop_map(move |(mut x, n)| {
            (0..n)
                .map(|_| {
                    // xorshift64
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    set[(x % set.len() as u64) as usize]
                })
                .collect()
        })
        .boxed()
}

const IAM_NAME_CHARS: &str =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+=,.@_-";
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const DIGITS: &str = "0123456789";
const HEX: &str = "0123456789abcdef";
const PRINTABLE: &str = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

/// Short text of every kind: IAM-ish names, punctuation that matters to parsers, any
/// Unicode (control characters included).
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => chars(IAM_NAME_CHARS, 0..=24),
        2 => chars(PRINTABLE, 0..=16),
        2 => prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
        1 => prop::sample::select(vec![
            "", " ", "\n", "\"", "\\", "%", "%zz", "%7B", "\u{0}", "é", "\u{feff}", "null",
            "true", "N/A", "/", ":", "arn:", ",", "\r\n",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// A string longer than anything echoed in a message (80 characters), up to 2,000: long
/// enough to show a missing truncation, short enough to keep 10,000 cases fast.
fn huge() -> impl Strategy<Value = String> {
    (81usize..2_000, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n))
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i32>().prop_map(|i| json!(f64::from(i) / 8.0)),
        text().prop_map(Value::String),
    ]
}

/// Any JSON value, a few levels deep.
fn json_any() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(text(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A field as the real input has it (mostly), or absent, null, of any other type, huge.
fn field(good: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        12 => good.prop_map(Some),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!(""))),
        1 => json_any().prop_map(Some),
        1 => huge().prop_map(|s| Some(Value::String(s))),
    ]
    .boxed()
}

fn object(fields: Vec<(&'static str, Option<Value>)>, extra: Vec<(String, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in extra {
        m.insert(k, v);
    }
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    }
    Value::Object(m)
}

fn extra_fields() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec((text(), json_any()), 1..3),
    ]
}

/// Byte-level mutations of a rendered text, kept valid UTF-8: truncation, insertion,
/// deletion, replacement.
fn mutate(s: &str, op: u8, at: usize, len: usize, insert: &str) -> String {
    let floor = |i: usize| {
        let mut i = i.min(s.len());
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let a = floor(at % (s.len() + 1));
    let b = floor(a + len);
    match op % 4 {
        0 => s[..a].to_owned(),
        1 => format!("{}{insert}{}", &s[..a], &s[a..]),
        2 => format!("{}{}", &s[..a], &s[b..]),
        _ => format!("{}{insert}{}", &s[..a], &s[b..]),
    }
}

fn mutation() -> impl Strategy<Value = (u8, usize, usize, String)> {
    (
        any::<u8>(),
        any::<usize>(),
        0usize..8,
        prop_oneof![text(), Just("\"".to_owned()), Just("{".to_owned())],
    )
}

// ---------------------------------------------------------------------------------------
// CloudTrail records and EventBridge envelopes

const OWN_ARN: &str = "arn:aws:sts::123456789012:assumed-role/iam-warden/daemon";
const BASELINE_GROUPS: &[&str] = &["warden-baseline", "warden-console"];
const BASELINE_POLICIES: &[&str] = &["warden-require-mfa", "warden-source-ip"];
/// Calls that may map to the account-wide key (group, policy, password-policy changes).
const ACCOUNT_CAPABLE: &[&str] = &[
    "AttachGroupPolicy",
    "DetachGroupPolicy",
    "PutGroupPolicy",
    "DeleteGroupPolicy",
    "DeleteGroup",
    "UpdateGroup",
    "CreatePolicyVersion",
    "SetDefaultPolicyVersion",
    "DeletePolicyVersion",
    "DeletePolicy",
    "UpdateAccountPasswordPolicy",
    "DeleteAccountPasswordPolicy",
];

fn names() -> BaselineNames {
    BaselineNames {
        group_names: BASELINE_GROUPS.iter().map(|s| s.to_string()).collect(),
        policy_names: BASELINE_POLICIES.iter().map(|s| s.to_string()).collect(),
    }
}

fn iam_name() -> BoxedStrategy<String> {
    prop_oneof![
        6 => chars(IAM_NAME_CHARS, 1..=64),
        1 => text(),
    ]
    .boxed()
}

fn event_name() -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::sample::select(KNOWN_EVENT_NAMES).prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            "GetUser", "ListUsers", "GenerateCredentialReport", "SimulatePrincipalPolicy",
            "GetCallerIdentity", "AssumeRole", "SomeFutureUserCall",
        ])
        .prop_map(str::to_owned),
        1 => chars("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 1..=30),
    ]
    .boxed()
}

/// RFC 3339 times in the forms CloudTrail and others write (some days invalid), and
/// things that are not RFC 3339.
fn event_time() -> BoxedStrategy<String> {
    let rfc3339 = (
        1970i32..2100,
        1u32..=12,
        1u32..=31,
        0u32..24,
        0u32..60,
        0u32..=60,
        prop::option::of(chars(DIGITS, 1..=9).prop_map(|d| format!(".{d}"))),
        prop_oneof![
            Just("Z".to_owned()),
            Just("z".to_owned()),
            Just("+00:00".to_owned()),
            (-23i32..=23, 0u32..60).prop_map(|(h, m)| format!("{h:+03}:{m:02}")),
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, tz)| {
            format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}{tz}",
                frac.unwrap_or_default()
            )
        });
    prop_oneof![
        8 => rfc3339,
        1 => prop::sample::select(vec![
            "Aug 1, 2024 1:42:21 PM", "2024-08-01", "2024-08-01 13:42:21Z", "1722519741",
            "2024-02-30T00:00:00Z", "+275760-09-13T00:00:00Z",
        ])
        .prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

fn user_arn() -> BoxedStrategy<String> {
    (
        prop_oneof![
            chars(DIGITS, 12..=12),
            Just("aws".to_owned()),
            Just(String::new())
        ],
        prop_oneof![
            Just(String::new()),
            chars(LOWER, 1..=8).prop_map(|p| format!("{p}/")),
            chars("abcdefghijklmnopqrstuvwxyz/", 1..=16).prop_map(|p| format!("{p}/")),
        ],
        iam_name(),
    )
        .prop_map(|(acct, path, name)| format!("arn:aws:iam::{acct}:user/{path}{name}"))
        .boxed()
}

fn caller_arn() -> BoxedStrategy<String> {
    prop_oneof![
        4 => user_arn(),
        2 => chars(LOWER, 1..=8).prop_map(|r| format!("arn:aws:sts::123456789012:assumed-role/{r}/session")),
        1 => Just(OWN_ARN.to_owned()),
        1 => Just("arn:aws:iam::123456789012:root".to_owned()),
        1 => text(),
    ]
    .boxed()
}

fn policy_arn() -> BoxedStrategy<String> {
    (
        prop_oneof![chars(DIGITS, 12..=12), Just("aws".to_owned())],
        prop_oneof![
            Just(String::new()),
            chars(LOWER, 1..=8).prop_map(|p| format!("{p}/"))
        ],
        prop_oneof![
            prop::sample::select(BASELINE_POLICIES).prop_map(str::to_owned),
            iam_name()
        ],
    )
        .prop_map(|(acct, path, name)| format!("arn:aws:iam::{acct}:policy/{path}{name}"))
        .boxed()
}

fn user_identity() -> BoxedStrategy<Value> {
    (
        field(
            prop::sample::select(vec![
                "IAMUser",
                "AssumedRole",
                "Root",
                "AWSService",
                "Unknown",
            ])
            .prop_map(|s| json!(s)),
        ),
        field(caller_arn().prop_map(Value::String)),
        field(iam_name().prop_map(Value::String)),
        field(
            (
                any::<bool>(),
                chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 16..=16),
            )
                .prop_map(|(a, k)| {
                    Value::String(format!("{}{k}", if a { "AKIA" } else { "ASIA" }))
                }),
        ),
        field(chars(DIGITS, 12..=12).prop_map(Value::String)),
        extra_fields(),
    )
        .prop_map(|(ty, arn, user, key, acct, extra)| {
            object(
                vec![
                    ("type", ty),
                    ("arn", arn),
                    ("userName", user),
                    ("accessKeyId", key),
                    ("accountId", acct),
                ],
                extra,
            )
        })
        .boxed()
}

fn request_parameters() -> BoxedStrategy<Value> {
    let opt = |s: BoxedStrategy<Value>| prop::option::weighted(0.6, s);
    (
        opt(iam_name().prop_map(Value::String).boxed()),
        opt(iam_name().prop_map(Value::String).boxed()),
        opt(prop_oneof![
            prop::sample::select(BASELINE_GROUPS).prop_map(|g| json!(g)),
            iam_name().prop_map(Value::String)
        ]
        .boxed()),
        opt(policy_arn().prop_map(Value::String).boxed()),
        prop::option::weighted(0.1, json_any()),
        extra_fields(),
    )
        .prop_map(|(user, new_user, group, policy, junk, extra)| {
            let mut fields = vec![
                ("userName", user),
                ("newUserName", new_user),
                ("groupName", group),
                ("policyArn", policy),
            ];
            // Now and then a field of the wrong type.
            if let Some(j) = junk {
                let k = j.to_string().len() % fields.len();
                fields[k].1 = Some(j);
            }
            object(fields, extra)
        })
        .boxed()
}

/// A CloudTrail record shaped like real ones (IAM writes as CloudTrail logs them),
/// every field of which may be missing, null, of another type or huge.
fn record() -> BoxedStrategy<Value> {
    let head = (
        field(chars(HEX, 32..=32).prop_map(|h| {
            Value::String(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        })),
        field(event_name().prop_map(Value::String)),
        field(
            prop_oneof![
                4 => Just("iam.amazonaws.com".to_owned()),
                1 => Just("sts.amazonaws.com".to_owned()),
                1 => text(),
            ]
            .prop_map(Value::String),
        ),
        field(event_time().prop_map(Value::String)),
        field(prop_oneof![
            Just(json!(false)),
            Just(json!(true)),
            Just(json!("true")),
            Just(json!("FALSE")),
            Just(json!(1)),
        ]),
    );
    let tail = (
        prop::option::weighted(
            0.15,
            prop_oneof![
                Just(json!("AccessDenied")),
                Just(json!("EntityTemporarilyUnmodifiableException")),
                json_any(),
            ],
        ),
        field(user_identity()),
        field(request_parameters()),
        prop::option::of(json_any()),
        extra_fields(),
    );
    (head, tail)
        .prop_map(
            |((id, name, source, time, read_only), (error, identity, request, response, extra))| {
                object(
                    vec![
                        ("eventVersion", Some(json!("1.09"))),
                        ("eventID", id),
                        ("eventName", name),
                        ("eventSource", source),
                        ("eventTime", time),
                        ("readOnly", read_only),
                        ("errorCode", error),
                        ("userIdentity", identity),
                        ("requestParameters", request),
                        ("responseElements", response),
                        ("awsRegion", Some(json!("us-east-1"))),
                    ],
                    extra,
                )
            },
        )
        .boxed()
}

/// An EventBridge envelope around a record, its routing fields sometimes wrong.
fn envelope() -> BoxedStrategy<Value> {
    (
        field(
            prop_oneof![
                6 => Just(EVENTBRIDGE_DETAIL_TYPE.to_owned()),
                1 => Just("EC2 Instance State-change Notification".to_owned()),
                1 => text(),
            ]
            .prop_map(Value::String),
        ),
        field(
            prop_oneof![
                6 => Just(EVENTBRIDGE_SOURCE.to_owned()),
                1 => Just("aws.s3".to_owned()),
                1 => text(),
            ]
            .prop_map(Value::String),
        ),
        prop_oneof![
            8 => record().prop_map(Some),
            1 => Just(None),
            1 => record().prop_map(|r| Some(Value::String(r.to_string()))),
            1 => json_any().prop_map(Some),
        ],
        extra_fields(),
    )
        .prop_map(|(detail_type, source, detail, extra)| {
            object(
                vec![
                    ("version", Some(json!("0"))),
                    ("id", Some(json!("6a7e8feb-b491-4cf7-a9f1-bf3703467718"))),
                    ("detail-type", detail_type),
                    ("source", source),
                    ("account", Some(json!("123456789012"))),
                    ("time", Some(json!("2024-08-01T13:42:21Z"))),
                    ("region", Some(json!("us-east-1"))),
                    ("resources", Some(json!([]))),
                    ("detail", detail),
                ],
                extra,
            )
        })
        .boxed()
}

fn non_empty_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The user names a record may map to: its request's `userName` and `newUserName`, and its
/// caller (`userIdentity.userName`, or the name in a user ARN).
fn users_in(record: &Value) -> BTreeSet<String> {
    let req = record.get("requestParameters").unwrap_or(&Value::Null);
    let id = record.get("userIdentity").unwrap_or(&Value::Null);
    [
        non_empty_str(req, "userName"),
        non_empty_str(req, "newUserName"),
        non_empty_str(id, "userName"),
        non_empty_str(id, "arn").and_then(user_name_from_arn),
    ]
    .into_iter()
    .flatten()
    .map(str::to_owned)
    .collect()
}

/// Checks a parse result against the record it came from; returns the event if parsed.
fn check_record(
    v: &Value,
    parsed: &Result<IamEvent, impl std::fmt::Display>,
) -> Result<(), TestCaseError> {
    let required_ok = ["eventID", "eventName", "eventTime"]
        .iter()
        .all(|k| non_empty_str(v, k).is_some());
    let time = non_empty_str(v, "eventTime").map(DateTime::parse_from_rfc3339);
    match parsed {
        Err(e) => {
            let msg = e.to_string();
            assert_one_line("parse_record", &msg)?;
            // Echoed values are cut at 80 characters, escaped (at most 10 bytes each).
            prop_assert!(
                msg.len() < 1_500,
                "error not truncated: {} chars",
                msg.len()
            );
            prop_assert!(
                !required_ok || matches!(time, Some(Err(_))) || !v.is_object(),
                "a record with eventID, eventName and a valid eventTime was rejected: {msg}"
            );
        }
        Ok(ev) => {
            prop_assert!(required_ok, "accepted a record without its required fields");
            prop_assert_eq!(Some(ev.event_id.as_str()), non_empty_str(v, "eventID"));
            prop_assert_eq!(Some(ev.event_name.as_str()), non_empty_str(v, "eventName"));
            match time {
                Some(Ok(t)) => prop_assert_eq!(ev.event_time, t.with_timezone(&Utc)),
                other => prop_assert!(false, "accepted eventTime {:?}", other),
            }
            prop_assert_eq!(ev.event_source.as_deref(), non_empty_str(v, "eventSource"));
            prop_assert_eq!(ev.error_code.as_deref(), non_empty_str(v, "errorCode"));
            check_targets(v, ev)?;
        }
    }
    Ok(())
}

/// The work an event causes names only users present in the record, never for failed or
/// read-only calls or other services, the account key only for account-wide changes.
fn check_targets(v: &Value, ev: &IamEvent) -> Result<(), TestCaseError> {
    let got = targets(ev, &names());
    let users = users_in(v);
    let distinct: BTreeSet<String> = got.iter().map(|t| format!("{t:?}")).collect();
    prop_assert_eq!(distinct.len(), got.len(), "duplicate targets {:?}", got);
    let read_only = matches!(v.get("readOnly"), Some(Value::Bool(true)))
        || v.get("readOnly")
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("true"));
    let other_service = ev
        .event_source
        .as_deref()
        .is_some_and(|s| s != "iam.amazonaws.com");
    if ev.error_code.is_some() || read_only || other_service {
        prop_assert!(
            got.is_empty(),
            "{:?} for a failed/read-only/foreign call",
            got
        );
    }
    prop_assert_eq!(
        metric_event_name(&ev.event_name) == "other",
        !KNOWN_EVENT_NAMES.contains(&ev.event_name.as_str())
    );
    for t in &got {
        match t {
            Target::Reconcile(ReconcileKey::User(u)) => {
                prop_assert!(
                    users.contains(u),
                    "user {:?} not in the record ({:?})",
                    u,
                    users
                )
            }
            Target::Forget(u) => {
                prop_assert!(
                    matches!(ev.event_name.as_str(), "DeleteUser" | "UpdateUser"),
                    "forget from {}",
                    ev.event_name
                );
                prop_assert!(users.contains(u), "forgot {:?}, not in the record", u);
            }
            Target::Reconcile(ReconcileKey::Account) => prop_assert!(
                ACCOUNT_CAPABLE.contains(&ev.event_name.as_str()),
                "account key from {}",
                ev.event_name
            ),
            Target::Quarantine(ex) => {
                prop_assert_eq!(ev.event_name.as_str(), "AttachUserPolicy");
                match &ex.exposed {
                    iam_warden::controller::key::Exposed::User { user, policy_arn } => {
                        prop_assert!(users.contains(user), "quarantine of {:?}", user);
                        prop_assert!(iam_warden::controller::mapping::is_quarantine_policy(
                            policy_arn
                        ));
                    }
                    other => prop_assert!(false, "a CloudTrail record named a key: {:?}", other),
                }
            }
        }
    }
    Ok(())
}

fn check_envelope(env: &Value, body: &str) -> Result<(), TestCaseError> {
    let parsed = parse_eventbridge(body);
    if let Err(e) = &parsed {
        assert_one_line("parse_eventbridge", &e.to_string())?;
        prop_assert!(e.to_string().len() < 1_500);
    }
    let routed = env.get("detail-type").and_then(Value::as_str) == Some(EVENTBRIDGE_DETAIL_TYPE)
        && env.get("source").and_then(Value::as_str) == Some(EVENTBRIDGE_SOURCE);
    match (routed, env.get("detail")) {
        (true, Some(d @ Value::Object(_))) => {
            let direct = parse_record(d);
            match (&parsed, &direct) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                _ => prop_assert!(false, "envelope {:?} but detail {:?}", parsed, direct),
            }
            check_record(d, &parsed)?;
        }
        _ => prop_assert!(parsed.is_err(), "accepted {}", body),
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config(1))]

    /// Structured records: parsed as the fields say, mapped only to users in the record,
    /// and the string form (LookupEvents' `CloudTrailEvent`) parses the same.
    #[test]
    fn cloudtrail_records(v in record()) {
        let parsed = parse_record(&v);
        check_record(&v, &parsed)?;
        let from_str = parse_record_str(&v.to_string());
        match (&parsed, &from_str) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            _ => prop_assert!(false, "value {:?} but string {:?}", parsed, from_str),
        }
    }

    /// SQS bodies: EventBridge envelopes accepted only for IAM CloudTrail calls with an
    /// object detail, which then parses exactly as the record itself.
    #[test]
    fn eventbridge_envelopes(env in envelope(), pretty in any::<bool>()) {
        let body = if pretty { serde_json::to_string_pretty(&env).expect("serialise") } else { env.to_string() };
        check_envelope(&env, &body)?;
    }

    /// Mutated text of records and envelopes (truncated, spliced, garbage): an error with a
    /// one-line message or, when the text is still JSON, the same result as the value.
    #[test]
    fn mutated_event_text(rec in record(), wrap in any::<bool>(), m in mutation()) {
        let v = if wrap {
            json!({"detail-type": EVENTBRIDGE_DETAIL_TYPE, "source": EVENTBRIDGE_SOURCE, "detail": rec})
        } else {
            rec
        };
        let s = mutate(&v.to_string(), m.0, m.1, m.2, &m.3);
        let as_value = serde_json::from_str::<Value>(&s);
        for r in [parse_record_str(&s), parse_eventbridge(&s)] {
            if let Err(e) = &r {
                assert_one_line("mutated text", &e.to_string())?;
            }
            if as_value.is_err() {
                prop_assert!(r.is_err(), "accepted text that is not JSON: {}", s);
            }
        }
        if let Ok(v) = as_value {
            check_record(&v, &parse_record_str(&s))?;
            check_envelope(&v, &s)?;
        }
    }

    /// Arbitrary text: never a panic, never accepted unless it is a JSON object.
    #[test]
    fn arbitrary_event_text(s in prop_oneof![any::<String>(), json_any().prop_map(|v| v.to_string())]) {
        for r in [parse_record_str(&s), parse_eventbridge(&s)] {
            match r {
                Ok(_) => prop_assert!(s.trim_start().starts_with('{'), "accepted {:?}", s),
                Err(e) => assert_one_line("arbitrary text", &e.to_string())?,
            }
        }
        match parse_sqs_message(&s) {
            Ok(_) => prop_assert!(s.trim_start().starts_with('{'), "accepted {:?}", s),
            Err(e) => assert_one_line("arbitrary SQS body", &e.to_string())?,
        }
    }

    /// SQS message body to reconcile keys (what the consumer does with a body): the
    /// dispatched keys are exactly the event's reconcile targets, none for failed calls or
    /// iam-warden's own writes, and every user key is a user named in the record.
    #[test]
    fn sqs_body_to_keys(env in envelope()) {
        let body = env.to_string();
        let Ok(ev) = parse_eventbridge(&body) else { return Ok(()) };
        let detail = &env["detail"];
        let tickets = dispatch().dispatch(&ev, Source::Sqs, tokio::time::Instant::now());
        let keys: Vec<ReconcileKey> = tickets.into_iter().map(|t| t.key).collect();
        if ev.error_code.is_some() || ev.caller_arn.as_deref() == Some(OWN_ARN) {
            prop_assert!(keys.is_empty(), "dispatched {:?}", keys);
        } else {
            let want: Vec<ReconcileKey> = targets(&ev, &names())
                .into_iter()
                .filter_map(|t| match t {
                    Target::Reconcile(k) => Some(k),
                    Target::Forget(_) | Target::Quarantine(_) => None,
                })
                .collect();
            prop_assert_eq!(&keys, &want);
        }
        let users = users_in(detail);
        for k in &keys {
            if let ReconcileKey::User(u) = k {
                prop_assert!(users.contains(u), "dispatched {:?}, not in the record", u);
            }
        }
    }
}

/// The account in scope in the routing targets (the envelopes' own account).
const IN_SCOPE: &str = "123456789012";

/// An `account` field: the one in scope, another well-formed id, or anything else.
fn account_field() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        4 => Just(Some(json!(IN_SCOPE))),
        2 => chars("0123456789", 12..=12).prop_map(|s| Some(Value::String(s))),
        1 => chars("0123456789", 0..=14).prop_map(|s| Some(Value::String(s))),
        1 => Just(Some(json!(123_456_789_012u64))),
        1 => Just(Some(json!(format!(" {IN_SCOPE}")))),
        3 => field(text().prop_map(Value::String)),
    ]
    .boxed()
}

/// What the router must decide from the `account` field alone: `Ok(id)` for a 12-digit
/// string, else the skip reason.
fn expected_account(v: Option<&Value>) -> Result<&str, SqsSkipReason> {
    match v {
        None | Some(Value::Null) => Err(SqsSkipReason::Missing),
        Some(Value::String(s)) if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(s),
        Some(Value::String(_)) => Err(SqsSkipReason::BadShape),
        Some(_) => Err(SqsSkipReason::NotAString),
    }
}

/// Checks one routing decision against the body it came from.
fn check_route(body: &str, r: &Route<()>) -> Result<(), TestCaseError> {
    let v = serde_json::from_str::<Value>(body).ok();
    let account = v
        .as_ref()
        .filter(|v| v.is_object())
        .map(|v| expected_account(v.get("account")));
    match r {
        Route::Dispatch {
            account: got,
            event,
            ..
        } => {
            prop_assert_eq!(account, Some(Ok(IN_SCOPE)), "dispatched {}", body);
            prop_assert_eq!(got.as_str(), IN_SCOPE);
            let direct = parse_sqs_message(body);
            prop_assert!(
                direct.as_ref().is_ok_and(|d| d == event),
                "route {:?} but parse {:?}",
                event,
                direct
            );
        }
        Route::Skip(skip) => {
            prop_assert!(
                skip.account.chars().count() <= 83,
                "account not cut: {}",
                skip.account.len()
            );
            prop_assert!(
                skip.event.chars().count() <= 83,
                "event not cut: {}",
                skip.event.len()
            );
            match account {
                Some(Ok(id)) => {
                    prop_assert_eq!(skip.reason, SqsSkipReason::NotInScope);
                    prop_assert_ne!(id, IN_SCOPE);
                    prop_assert_eq!(skip.account.as_str(), id);
                }
                Some(Err(reason)) => prop_assert_eq!(skip.reason, reason),
                None => prop_assert!(false, "skipped a body that is not a JSON object: {}", body),
            }
        }
        Route::Malformed(e) => {
            assert_one_line("routing", &e.to_string())?;
            prop_assert!(e.to_string().len() < 1_500);
            // Malformed only before the account is read, or in the account in scope.
            prop_assert!(
                matches!(account, None | Some(Ok(IN_SCOPE))),
                "malformed instead of skipped ({:?}): {}",
                account,
                body
            );
        }
    }
    Ok(())
}

fn route_one(body: &str) -> Route<()> {
    route(body, |a| (a == IN_SCOPE).then_some(()))
}

proptest! {
    #![proptest_config(fuzz_config(1))]

    /// SQS bodies of many accounts: dispatched only for the account in scope (as the body
    /// names it, parsed as the body says), every other account a skip with the reason its
    /// `account` field gives, never a panic; Health events and mutated text too.
    #[test]
    fn sqs_bodies_are_routed_by_their_account(
        env in envelope(),
        account in account_field(),
        health in any::<bool>(),
        m in prop::option::of(mutation()),
    ) {
        let mut env = env;
        if let Some(o) = env.as_object_mut() {
            match account {
                Some(a) => o.insert("account".into(), a),
                None => o.remove("account"),
            };
            if health {
                o.insert("source".into(), json!("aws.health"));
                o.insert("detail-type".into(), json!("AWS Health Event"));
                o.insert("detail".into(), json!({
                    "eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
                    "affectedEntities": [{"entityValue": concat!("AKIA", "IOSFODNN7EXAMPLE")}],
                }));
            }
        }
        let mut body = env.to_string();
        if let Some((op, at, len, insert)) = m {
            body = mutate(&body, op, at, len, &insert);
        }
        check_route(&body, &route_one(&body))?;
    }

    /// Arbitrary text through the router: never a panic, never dispatched unless it is a
    /// JSON object naming the account in scope.
    #[test]
    fn arbitrary_sqs_bodies_are_routed_safely(s in prop_oneof![any::<String>(), json_any().prop_map(|v| v.to_string())]) {
        check_route(&s, &route_one(&s))?;
    }
}

fn dispatch() -> &'static Dispatch {
    static D: OnceLock<Dispatch> = OnceLock::new();
    D.get_or_init(|| {
        Dispatch::new(
            WorkQueue::default(),
            Metrics::new("fuzz").expect("metrics registry"),
            names(),
            OWN_ARN,
        )
    })
}

/// Real CloudTrail records, when the shared fixtures are present, seed the mutations too
/// (skipped with a notice otherwise).
#[test]
fn real_records_survive_mutation() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/cloudtrail-real"
    );
    let entries = match std::fs::read_dir(dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping real CloudTrail fixtures: cannot read {dir}: {e}");
            return;
        }
    };
    let mut texts = Vec::new();
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&path).expect("readable fixture");
            let records: Vec<Value> = serde_json::from_str(&text).expect("fixture is a JSON array");
            texts.extend(records.iter().map(Value::to_string));
        }
    }
    assert!(!texts.is_empty(), "no records in {dir}");
    let mut runner = proptest::test_runner::TestRunner::new(fuzz_config(10));
    runner
        .run(&(prop::sample::select(texts), mutation()), |(text, m)| {
            let v: Value = serde_json::from_str(&text).expect("fixture record");
            check_record(&v, &parse_record_str(&text))?;
            let s = mutate(&text, m.0, m.1, m.2, &m.3);
            for r in [parse_record_str(&s), parse_eventbridge(&s)] {
                if let Err(e) = r {
                    assert_one_line("mutated fixture", &e.to_string())?;
                }
            }
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                check_record(&v, &parse_record_str(&s))?;
            }
            Ok(())
        })
        .expect("fixture mutations hold");
}

// ---------------------------------------------------------------------------------------
// Credential report CSV

/// Every column of the report, in the order IAM writes them.
const REPORT_COLUMNS: &[&str] = &[
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "password_next_rotation",
    "mfa_active",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_1_last_used_region",
    "access_key_1_last_used_service",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    "access_key_2_last_used_region",
    "access_key_2_last_used_service",
    "cert_1_active",
    "cert_1_last_rotated",
    "cert_2_active",
    "cert_2_last_rotated",
];

/// The columns the parser reads (the others may be absent).
const READ_COLUMNS: &[&str] = &[
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "mfa_active",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
];

/// A cell as written, and what it means: `None` when it is invalid.
type TimeCell = (String, Option<Option<DateTime<Utc>>>);
type BoolCell = (String, Option<bool>);

fn pad(s: String, spaces: u8) -> String {
    match spaces % 4 {
        0 => format!(" {s}"),
        1 => format!("{s} "),
        _ => s,
    }
}

fn time_cell() -> BoxedStrategy<TimeCell> {
    let date = (
        0i64..4_102_444_800,
        0u32..1_000_000_000,
        -1439i32..1440,
        0u8..4,
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(secs, nanos, offset, precision, z, spaces)| {
            let t = DateTime::from_timestamp(secs, nanos).expect("in range");
            let t = match precision {
                0 => t - Duration::nanoseconds(i64::from(nanos)),
                1 => t - Duration::nanoseconds(i64::from(nanos % 1_000_000)),
                _ => t,
            };
            // RFC 3339 offsets are whole minutes.
            let tz = FixedOffset::east_opt(offset * 60).expect("within a day");
            let form = match precision {
                0 => chrono::SecondsFormat::Secs,
                1 => chrono::SecondsFormat::Millis,
                _ => chrono::SecondsFormat::Nanos,
            };
            let raw = tz
                .from_utc_datetime(&t.naive_utc())
                .to_rfc3339_opts(form, z);
            (pad(raw, spaces), Some(Some(t)))
        });
    let none = (
        prop::sample::select(vec!["", "N/A", "no_information", "not_supported"]),
        any::<u8>(),
    )
        .prop_map(|(s, spaces)| (pad(s.to_owned(), spaces), Some(None)));
    let bad = prop_oneof![
        prop::sample::select(vec![
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-01-01",
            "n/a",
            "NONE",
            "2025-02-30T00:00:00Z",
        ])
        .prop_map(str::to_owned),
        text(),
    ]
    .prop_filter("a valid time", |s| {
        !matches!(s.trim(), "" | "N/A" | "no_information" | "not_supported")
            && DateTime::parse_from_rfc3339(s.trim()).is_err()
    })
    .prop_map(|s| (s, None));
    prop_oneof![6 => date, 3 => none, 1 => bad].boxed()
}

fn bool_cell() -> BoxedStrategy<BoolCell> {
    prop_oneof![
        4 => prop::sample::select(vec!["true", "TRUE", " True "]).prop_map(|s| (s.to_owned(), Some(true))),
        4 => prop::sample::select(vec!["false", "False", "N/A", "n/a", "not_supported", " NOT_SUPPORTED"])
            .prop_map(|s| (s.to_owned(), Some(false))),
        1 => prop_oneof![
            prop::sample::select(vec!["maybe", "yes", "1", "", "t"]).prop_map(str::to_owned),
            text(),
        ]
        .prop_filter("a valid boolean", |s| {
            !matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "false" | "n/a" | "not_supported")
        })
        .prop_map(|s| (s, None)),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct ModelRow {
    user: String,
    arn: String,
    created: TimeCell,
    password_enabled: BoolCell,
    password_last_used: TimeCell,
    password_last_changed: TimeCell,
    mfa_active: BoolCell,
    keys: [(BoolCell, TimeCell, TimeCell); 2],
    other: String,
}

impl ModelRow {
    fn cell(&self, col: &str) -> String {
        match col {
            "user" => self.user.clone(),
            "arn" => self.arn.clone(),
            "user_creation_time" => self.created.0.clone(),
            "password_enabled" => self.password_enabled.0.clone(),
            "password_last_used" => self.password_last_used.0.clone(),
            "password_last_changed" => self.password_last_changed.0.clone(),
            "mfa_active" => self.mfa_active.0.clone(),
            "access_key_1_active" => self.keys[0].0 .0.clone(),
            "access_key_1_last_rotated" => self.keys[0].1 .0.clone(),
            "access_key_1_last_used_date" => self.keys[0].2 .0.clone(),
            "access_key_2_active" => self.keys[1].0 .0.clone(),
            "access_key_2_last_rotated" => self.keys[1].1 .0.clone(),
            "access_key_2_last_used_date" => self.keys[1].2 .0.clone(),
            _ => self.other.clone(),
        }
    }

    /// The row the parser must produce, or the columns of which one must be reported.
    fn expected(&self) -> Result<credential_report::ReportRow, Vec<&'static str>> {
        fn time(
            bad: &mut Vec<&'static str>,
            col: &'static str,
            c: &TimeCell,
        ) -> Option<DateTime<Utc>> {
            match c.1 {
                Some(t) => t,
                None => {
                    bad.push(col);
                    None
                }
            }
        }
        let mut bad = Vec::new();
        let created = time(&mut bad, "user_creation_time", &self.created);
        let enabled = self.password_enabled.1;
        let password = match enabled {
            Some(true) => Some(iam_warden::inventory::PasswordState {
                changed: time(
                    &mut bad,
                    "password_last_changed",
                    &self.password_last_changed,
                ),
                last_used: time(&mut bad, "password_last_used", &self.password_last_used),
            }),
            _ => None,
        };
        let mut keys = Vec::new();
        let cols = [
            [
                "access_key_1_active",
                "access_key_1_last_rotated",
                "access_key_1_last_used_date",
            ],
            [
                "access_key_2_active",
                "access_key_2_last_rotated",
                "access_key_2_last_used_date",
            ],
        ];
        for (i, (active, rotated, used)) in self.keys.iter().enumerate() {
            if let Some(created) = time(&mut bad, cols[i][1], rotated) {
                let last_used = time(&mut bad, cols[i][2], used);
                match active.1 {
                    Some(a) => keys.push(iam_warden::inventory::AccessKeyState {
                        id: None,
                        slot: i as u8 + 1,
                        active: a,
                        created,
                        last_used,
                    }),
                    None => bad.push(cols[i][0]),
                }
            }
        }
        if enabled.is_none() {
            bad.push("password_enabled");
        }
        if self.mfa_active.1.is_none() {
            bad.push("mfa_active");
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        Ok(credential_report::ReportRow {
            user: self.user.clone(),
            arn: self.arn.clone(),
            created,
            password,
            mfa_active: self.mfa_active.1 == Some(true),
            keys,
        })
    }
}

fn model_row() -> BoxedStrategy<ModelRow> {
    let key = || (bool_cell(), time_cell(), time_cell());
    (
        (
            prop_oneof![4 => iam_name(), 1 => (chars(LOWER, 1..=6), chars(LOWER, 1..=6), prop::option::of(chars(LOWER, 1..=4)))
                .prop_map(|(a, b, c)| match c { Some(c) => format!("{a},{b},{c}"), None => format!("{a},{b}") }), 1 => text()],
            prop_oneof![
                9 => prop_oneof![Just(String::new()), chars(LOWER, 1..=8).prop_map(|p| format!("{p}/"))].prop_map(Some),
                1 => Just(None)
            ],
            time_cell(),
            bool_cell(),
            time_cell(),
            time_cell(),
            bool_cell(),
        ),
        (key(), key(), text()),
    )
        .prop_map(
            |((user, path, created, pe, plu, plc, mfa), (k1, k2, other))| ModelRow {
                arn: match path {
                    Some(p) => format!("arn:aws:iam::123456789012:user/{p}{user}"),
                    None => "not an arn".into(),
                },
                user,
                created,
                password_enabled: pe,
                password_last_used: plu,
                password_last_changed: plc,
                mfa_active: mfa,
                keys: [k1, k2],
                other,
            },
        )
        .boxed()
}

/// A report: header columns (IAM's order, or shuffled with unread ones dropped and extras
/// added), rows, a root row somewhere, rendered quoted or (IAM-like) unquoted.
#[derive(Debug, Clone)]
struct ModelReport {
    columns: Vec<String>,
    rows: Vec<ModelRow>,
    root_at: Option<usize>,
    quote_always: bool,
    crlf: bool,
    unquoted: bool,
}

fn model_report() -> BoxedStrategy<ModelReport> {
    let shuffled = (
        Just(REPORT_COLUMNS.to_vec()).prop_shuffle(),
        prop::collection::vec(any::<bool>(), REPORT_COLUMNS.len()),
        prop::collection::vec(chars("abcdefghijklmnopqrstuvwxyz_", 1..=12), 0..3),
    )
        .prop_map(|(cols, keep, extra)| {
            let mut out: Vec<String> = cols
                .iter()
                .zip(keep)
                .filter(|(c, k)| *k || READ_COLUMNS.contains(c))
                .map(|(c, _)| c.to_string())
                .collect();
            for e in extra {
                if !out.contains(&e) {
                    out.push(e);
                }
            }
            out
        });
    (
        prop_oneof![
            Just(
                REPORT_COLUMNS
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
            ),
            shuffled
        ],
        prop::collection::vec(model_row(), 0..6),
        any::<Option<prop::sample::Index>>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(columns, mut rows, root, quote_always, crlf, unquoted)| {
            // User names are unique in an account.
            for (i, r) in rows.iter_mut().enumerate() {
                let unique = format!("{}{i}", r.user);
                r.arn = r
                    .arn
                    .replace(&format!("/{}", r.user), &format!("/{unique}"));
                r.user = unique;
            }
            ModelReport {
                root_at: root.map(|i| i.index(rows.len() + 1)),
                columns,
                rows,
                quote_always,
                crlf,
                unquoted,
            }
        })
        .boxed()
}

const ROOT_ROW: &str = "<root_account>";

impl ModelReport {
    fn lines(&self) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| self.columns.iter().map(|c| r.cell(c)).collect())
            .collect();
        if let Some(i) = self.root_at {
            let root: Vec<String> = self
                .columns
                .iter()
                .map(|c| match c.as_str() {
                    "user" => ROOT_ROW.to_owned(),
                    "arn" => "arn:aws:iam::123456789012:root".to_owned(),
                    _ => "not_supported".to_owned(),
                })
                .collect();
            out.insert(i, root);
        }
        out
    }

    /// Whether the unquoted (comma-joined) form is unambiguous for the parser: only the
    /// user name and the ARN ending with it may hold commas, nothing holds quotes or line
    /// breaks, and user and ARN are the first two columns.
    fn can_be_unquoted(&self) -> bool {
        let plain = |s: &str| !s.contains(['"', '\r', '\n']);
        self.columns.first().map(String::as_str) == Some("user")
            && self.columns.get(1).map(String::as_str) == Some("arn")
            && self.lines().iter().all(|l| {
                let (user, arn) = (&l[0], &l[1]);
                plain(user)
                    && plain(arn)
                    && (!user.contains(',') || arn.ends_with(&format!("/{user}")))
                    && arn.matches(',').count() == user.matches(',').count()
                    && arn.starts_with("arn:")
                    && !user.starts_with(' ')
                    && l[2..].iter().all(|c| plain(c) && !c.contains(','))
            })
    }

    fn render(&self) -> Vec<u8> {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        if self.unquoted && self.can_be_unquoted() {
            let mut s = self.columns.join(",");
            for l in self.lines() {
                s.push_str(eol);
                s.push_str(&l.join(","));
            }
            return s.into_bytes();
        }
        let mut w = csv::WriterBuilder::new()
            .quote_style(if self.quote_always {
                csv::QuoteStyle::Always
            } else {
                csv::QuoteStyle::Necessary
            })
            .terminator(if self.crlf {
                csv::Terminator::CRLF
            } else {
                csv::Terminator::Any(b'\n')
            })
            .from_writer(Vec::new());
        w.write_record(&self.columns).expect("header");
        for l in self.lines() {
            w.write_record(&l).expect("row");
        }
        w.into_inner().expect("flush")
    }
}

fn check_report_messages(
    r: &Result<credential_report::ParsedReport, iam_warden::Error>,
) -> Result<(), TestCaseError> {
    match r {
        Err(e) => {
            let msg = e.to_string();
            assert_one_line("credential report", &msg)?;
            prop_assert!(msg.len() < 2_000, "error of {} characters", msg.len());
        }
        Ok(p) => {
            for b in &p.bad_rows {
                assert_one_line("credential report bad row", &b.to_string())?;
            }
            for (user, row) in &p.rows {
                prop_assert!(!user.is_empty() && user == &row.user && user != ROOT_ROW);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config(1))]

    /// The parser accepts what a report writer renders: every row is parsed exactly as
    /// written, or reported as a bad row naming its user and a bad column; none is dropped.
    #[test]
    fn credential_report_round_trip(m in model_report()) {
        let parsed = credential_report::parse(&m.render());
        check_report_messages(&parsed)?;
        let parsed = parsed.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.rows.len() + parsed.bad_rows.len(), m.rows.len(), "{:?}", parsed.bad_rows);
        for row in &m.rows {
            match row.expected() {
                Ok(want) => prop_assert_eq!(parsed.rows.get(&row.user), Some(&want)),
                Err(cols) => {
                    prop_assert!(!parsed.rows.contains_key(&row.user), "accepted bad row {:?}", row);
                    let bad = parsed.bad_rows.iter().find(|b| b.user.as_deref() == Some(row.user.as_str()));
                    prop_assert!(bad.is_some(), "{:?} not reported: {:?}", row.user, parsed.bad_rows);
                    let problem = &bad.map(|b| b.problem.clone()).unwrap_or_default();
                    prop_assert!(cols.iter().any(|c| problem.contains(c)), "{} does not name one of {:?}", problem, cols);
                }
            }
        }
    }

    /// Mutated reports and garbage: an error (one line, bounded) or rows and bad rows whose
    /// descriptions are one line each.
    #[test]
    fn credential_report_garbage(
        m in model_report(),
        muts in prop::collection::vec(mutation(), 1..4),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        raw in any::<bool>(),
    ) {
        if raw {
            check_report_messages(&credential_report::parse(&bytes))?;
        }
        let mut s = String::from_utf8_lossy(&m.render()).into_owned();
        for (op, at, len, ins) in muts {
            s = mutate(&s, op, at, len, &ins);
        }
        check_report_messages(&credential_report::parse(s.as_bytes()))?;
        let mut b = s.into_bytes();
        b.extend_from_slice(&bytes);
        check_report_messages(&credential_report::parse(&b))?;
    }
}

// ---------------------------------------------------------------------------------------
// Policy documents

fn action() -> BoxedStrategy<String> {
    prop_oneof![
        4 => (
            prop::sample::select(vec!["iam", "sts", "s3", "ec2", "kms"]),
            chars("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz*?", 1..=20),
        )
            .prop_map(|(s, a)| format!("{s}:{a}")),
        1 => Just("*".to_owned()),
        1 => text(),
    ]
    .boxed()
}

/// A value IAM accepts as a string or a list of strings (or booleans and numbers, which
/// mean their text).
fn string_or_list(s: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    prop_oneof![
        3 => s.clone().prop_map(Value::String),
        3 => prop::collection::vec(s.prop_map(Value::String), 1..5).prop_map(Value::Array),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => (0u32..100_000).prop_map(Value::from),
    ]
    .boxed()
}

fn statement() -> BoxedStrategy<Value> {
    let condition = prop::collection::btree_map(
        prop::sample::select(vec![
            "Bool",
            "BoolIfExists",
            "NotIpAddress",
            "IpAddress",
            "StringEquals",
            "NumericLessThan",
        ]),
        prop::collection::btree_map(
            prop_oneof!["aws:[A-Za-z]{1,20}", text()],
            string_or_list(
                prop_oneof![
                    Just("true".to_owned()),
                    Just("false".to_owned()),
                    chars("0123456789./:abcdef", 1..=18),
                    text()
                ]
                .boxed(),
            ),
            1..3,
        ),
        1..3,
    )
    .prop_map(|m| {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_owned(), Value::Object(v.into_iter().collect())))
                .collect(),
        )
    });
    (
        prop::option::of(text()),
        prop::sample::select(vec!["Allow", "Deny"]),
        any::<bool>(),
        string_or_list(action()),
        any::<bool>(),
        string_or_list(prop_oneof!["\\*", "arn:aws:[a-z]{2,4}:::[a-z*/]{1,12}"].boxed()),
        prop::option::of(condition),
        prop::option::weighted(0.1, json_any()),
    )
        .prop_map(
            |(sid, effect, not, actions, not_res, resources, cond, junk)| {
                let mut m = Map::new();
                if let Some(sid) = sid {
                    m.insert("Sid".into(), Value::String(sid));
                }
                m.insert("Effect".into(), json!(effect));
                m.insert(if not { "NotAction" } else { "Action" }.into(), actions);
                m.insert(
                    if not_res { "NotResource" } else { "Resource" }.into(),
                    resources,
                );
                if let Some(c) = cond {
                    m.insert("Condition".into(), c);
                }
                if let Some(j) = junk {
                    m.insert("Principal".into(), j);
                }
                Value::Object(m)
            },
        )
        .boxed()
}

fn policy_document() -> BoxedStrategy<Value> {
    (
        prop::sample::select(vec!["2012-10-17", "2008-10-17"]),
        prop::option::of(chars("abcdefghijklmnopqrstuvwxyz0123456789-", 1..=12)),
        prop::collection::vec(statement(), 1..4),
        any::<bool>(),
    )
        .prop_map(|(version, id, statements, single)| {
            let mut m = Map::new();
            m.insert("Version".into(), json!(version));
            if let Some(id) = id {
                m.insert("Id".into(), json!(id));
            }
            let st = if single && statements.len() == 1 {
                statements[0].clone()
            } else {
                Value::Array(statements)
            };
            m.insert("Statement".into(), st);
            Value::Object(m)
        })
        .boxed()
}

/// A rewrite that keeps the meaning: list order, a string for a one-element list and back,
/// duplicates, another Sid, a single statement for a one-statement list and back.
fn same_meaning_rewrite(v: &Value, seed: u64, depth: u32) -> Value {
    let bit = |n: u32| (seed.rotate_left(n * 7 + depth * 13)) & 1 == 1;
    match v {
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .map(|i| same_meaning_rewrite(i, seed, depth + 1))
                .collect();
            if bit(1) {
                out.reverse();
            }
            if bit(2) && !out.is_empty() {
                let first = out[0].clone();
                out.push(first);
            }
            if out.len() == 1 && out[0].is_string() && bit(3) {
                return out.remove(0);
            }
            Value::Array(out)
        }
        Value::String(_) if bit(4) => Value::Array(vec![v.clone()]),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                if k == "Sid" {
                    if bit(5) {
                        out.insert(k.clone(), json!(format!("Other{seed}")));
                    }
                    continue;
                }
                let x = match (k.as_str(), x) {
                    ("Statement", Value::Object(_)) if bit(6) => Value::Array(vec![x.clone()]),
                    ("Statement", Value::Array(a)) if a.len() == 1 && bit(6) => a[0].clone(),
                    _ => same_meaning_rewrite(x, seed, depth + 1),
                };
                out.insert(k.clone(), x);
            }
            Value::Object(out)
        }
        _ => v.clone(),
    }
}

/// RFC 3986 "unreserved" left as is, everything else encoded (as IAM does).
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn statements_of(doc: &mut Value) -> Vec<&mut Value> {
    match doc.get_mut("Statement") {
        Some(Value::Array(a)) => a.iter_mut().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    }
}

proptest! {
    #![proptest_config(fuzz_config(1))]

    /// A document means the same as itself, its re-serialised, URL-encoded (as IAM returns
    /// it) and rewritten forms; canonical() is idempotent; one more action or the other
    /// Effect is a different policy.
    #[test]
    fn policy_documents_compare_by_meaning(doc in policy_document(), seed in any::<u64>(), pretty in any::<bool>(), fresh in chars(LOWER, 3..=10)) {
        prop_assert!(same_meaning(&doc, &doc));
        let text = if pretty { serde_json::to_string_pretty(&doc).expect("serialise") } else { doc.to_string() };
        let plain = decode_policy_document(&text);
        prop_assert_eq!(plain.as_ref(), Some(&doc));
        for set in [NON_ALPHANUMERIC, RFC3986] {
            let enc = utf8_percent_encode(&text, set).to_string();
            let back = decode_policy_document(&enc);
            prop_assert!(back.as_ref().is_some_and(|b| same_meaning(&doc, b)), "{} decodes to {:?}", enc, back);
        }
        let rewritten = same_meaning_rewrite(&doc, seed, 0);
        prop_assert!(same_meaning(&doc, &rewritten), "{} vs {}", doc, rewritten);
        prop_assert!(same_meaning(&rewritten, &doc));
        let c = canonical(&doc);
        prop_assert_eq!(&canonical(&c), &c);

        let mut more = doc.clone();
        if let Some(st) = statements_of(&mut more).into_iter().next() {
            let key = if st.get("Action").is_some() { "Action" } else { "NotAction" };
            let new = json!(format!("zz:{fresh}"));
            match st.get_mut(key) {
                Some(Value::Array(a)) => a.push(new),
                Some(other) => *other = json!([other.clone(), new]),
                None => {}
            }
        }
        prop_assert!(!same_meaning(&doc, &more), "one more action is the same policy: {}", more);
        let mut flipped = doc.clone();
        let sts = statements_of(&mut flipped);
        if sts.len() == 1 {
            for st in sts {
                let e = if st["Effect"] == "Allow" { "Deny" } else { "Allow" };
                st["Effect"] = json!(e);
            }
            prop_assert!(!same_meaning(&doc, &flipped));
        }
    }

    /// The baseline documents built from configured lists compare by meaning: order and
    /// duplicates do not matter, one more entry does.
    #[test]
    fn baseline_documents(actions in prop::collection::vec(action(), 1..12), cidrs in prop::collection::vec(text(), 1..6), seed in any::<u64>()) {
        let mut shuffled = actions.clone();
        let n = shuffled.len();
        shuffled.rotate_left((seed as usize) % n);
        shuffled.push(actions[0].clone());
        prop_assert!(same_meaning(&mfa_document(&actions), &mfa_document(&shuffled)));
        let mut more = actions.clone();
        more.push(format!("zz:Fresh{seed}"));
        prop_assert!(!same_meaning(&mfa_document(&actions), &mfa_document(&more)));
        let mut rev = cidrs.clone();
        rev.reverse();
        prop_assert!(same_meaning(&source_ip_document(&cidrs), &source_ip_document(&rev)));
    }

    /// Whatever IAM (or anything in between) hands over as a document: no panic, and a
    /// document that decodes is what its text (or decoded text) parses to.
    #[test]
    fn arbitrary_policy_text(doc in policy_document(), m in mutation(), junk in any::<String>()) {
        let s = mutate(&doc.to_string(), m.0, m.1, m.2, &m.3);
        for t in [s.clone(), utf8_percent_encode(&s, RFC3986).to_string(), junk] {
            if let Some(v) = decode_policy_document(&t) {
                let direct = serde_json::from_str::<Value>(&t).ok();
                let decoded = percent_encoding::percent_decode_str(&t)
                    .decode_utf8()
                    .ok()
                    .and_then(|d| serde_json::from_str::<Value>(&d).ok());
                prop_assert!(direct.as_ref() == Some(&v) || decoded.as_ref() == Some(&v));
                let c = canonical(&v);
                prop_assert_eq!(&canonical(&c), &c);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// TOML configuration

/// Every key of the configuration with its default value, from the defaults themselves.
fn config_leaves() -> &'static Vec<(Vec<String>, toml::Value)> {
    static LEAVES: OnceLock<Vec<(Vec<String>, toml::Value)>> = OnceLock::new();
    LEAVES.get_or_init(|| {
        fn walk(
            v: &toml::Value,
            path: &mut Vec<String>,
            out: &mut Vec<(Vec<String>, toml::Value)>,
        ) {
            match v {
                toml::Value::Table(t) => {
                    for (k, x) in t {
                        path.push(k.clone());
                        walk(x, path, out);
                        path.pop();
                    }
                }
                other => out.push((path.clone(), other.clone())),
            }
        }
        let defaults = toml::Value::try_from(Config::default()).expect("defaults as TOML");
        let mut out = Vec::new();
        walk(&defaults, &mut Vec::new(), &mut out);
        // Keys without a default (None) are absent from the rendering.
        for k in [
            "journal",
            "aws.endpoint_url",
            "sources.cloudtrail.endpoint_url",
            "sources.sqs.queue_url",
        ] {
            out.push((
                k.split('.').map(str::to_owned).collect(),
                toml::Value::String("http://localhost:5000".into()),
            ));
        }
        out
    })
}

fn toml_value() -> BoxedStrategy<toml::Value> {
    let leaf = prop_oneof![
        text().prop_map(toml::Value::String),
        prop_oneof![
            Just(-1i64),
            Just(0),
            Just(1),
            Just(i64::MAX),
            Just(i64::MIN),
            -10i64..5000,
            any::<i64>()
        ]
        .prop_map(toml::Value::Integer),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            any::<f64>(),
            0.0f64..200.0
        ]
        .prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        (
            0u64..20_000,
            prop::sample::select(vec!["", "s", "m", "h", "d", "x", "ms"]),
            any::<bool>()
        )
            .prop_map(|(n, u, neg)| toml::Value::String(format!(
                "{}{n}{u}",
                if neg { "-" } else { "" }
            ))),
        prop::sample::select(vec![
            "dry-run",
            "enforce",
            "group",
            "user",
            "console",
            "programmatic",
            "all",
            "both",
            "derive",
            "/iam-warden/",
            "127.0.0.1:0",
            "[::1]:9464",
            "192.0.2.0/24",
            "2001:db8::/32",
            "iam:GetUser",
            "http://localhost:1",
            "99999999999999999999d",
        ])
        .prop_map(|s| toml::Value::String(s.to_owned())),
        Just(toml::Value::Datetime(
            "1979-05-27T07:32:00Z".parse().expect("datetime")
        )),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map(text(), inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// (key path, value) entries: known keys with their default, another value or another
/// type; unknown keys next to known ones; random keys.
fn config_entries() -> BoxedStrategy<Vec<(Vec<String>, toml::Value)>> {
    let entry = (any::<prop::sample::Index>(), 0u8..10, toml_value(), text()).prop_map(
        |(i, kind, value, key)| {
            let leaves = config_leaves();
            let (path, default) = leaves[i.index(leaves.len())].clone();
            match kind {
                0..=3 => (path, default),
                4..=7 => (path, value),
                8 => {
                    let mut p = path;
                    p.pop();
                    p.push(key);
                    (p, value)
                }
                _ => (vec![key], value),
            }
        },
    );
    prop::collection::vec(entry, 0..8).boxed()
}

fn insert_at(t: &mut toml::Table, path: &[String], v: toml::Value) {
    match path {
        [] => {}
        [k] => {
            t.insert(k.clone(), v);
        }
        [k, rest @ ..] => {
            let e = t
                .entry(k.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = e {
                insert_at(inner, rest, v);
            }
        }
    }
}

fn check_config(src: &str, r: &iam_warden::Result<Config>) -> Result<(), TestCaseError> {
    match r {
        Err(e) => {
            let msg = e.to_string();
            assert_one_line("config", &msg)?;
            prop_assert!(msg.starts_with("invalid configuration: "), "{}", msg);
        }
        Ok(cfg) => {
            prop_assert!(
                cfg.validate().is_ok(),
                "accepted an invalid config from {:?}",
                src
            );
            let rendered = cfg
                .to_toml()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = Config::from_toml_str(&rendered);
            prop_assert_eq!(
                back.as_ref().ok(),
                Some(cfg),
                "does not round-trip: {}",
                rendered
            );
        }
    }
    Ok(())
}

fn example_config() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/iam-warden.toml"
        ))
        .expect("config/iam-warden.toml is readable")
    })
}

proptest! {
    #![proptest_config(fuzz_config(1))]

    /// TOML with known and unknown keys of every type: an error with a one-line message,
    /// or a valid configuration that round-trips through its rendering. Defaults written
    /// out explicitly are accepted as the defaults.
    #[test]
    fn toml_config(entries in config_entries()) {
        let mut t = toml::Table::new();
        let all_defaults = entries.iter().all(|(p, v)| {
            config_leaves().iter().any(|(lp, lv)| lp == p && lv == v && !(p[0] == "journal" || p.last().is_some_and(|k| k.ends_with("_url"))))
        });
        for (path, v) in entries {
            insert_at(&mut t, &path, v);
        }
        let src = toml::to_string(&t).map_err(|e| TestCaseError::reject(e.to_string()))?;
        let r = Config::from_toml_str(&src);
        check_config(&src, &r)?;
        if all_defaults {
            prop_assert_eq!(r.ok(), Some(Config::default()), "defaults rejected: {}", src);
        }
    }

    /// The example configuration and generated ones, mutated as text.
    #[test]
    fn mutated_toml_text(entries in config_entries(), example in any::<bool>(), muts in prop::collection::vec(mutation(), 1..4)) {
        let mut s = if example {
            example_config().to_owned()
        } else {
            let mut t = toml::Table::new();
            for (path, v) in entries {
                insert_at(&mut t, &path, v);
            }
            toml::to_string(&t).unwrap_or_default()
        };
        for (op, at, len, ins) in muts {
            s = mutate(&s, op, at, len, &ins);
        }
        check_config(&s, &Config::from_toml_str(&s))?;
    }

    /// Durations: `<n><unit>` parses to n times the unit or is "too large"; the rendering
    /// parses back; anything else is an error, never a panic.
    #[test]
    fn durations(n in any::<u64>(), unit in prop::sample::select(vec![("", 1u64), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]), junk in text()) {
        let s = format!("{n}{}", unit.0);
        match (s.parse::<Secs>(), n.checked_mul(unit.1)) {
            (Ok(d), Some(want)) => {
                prop_assert_eq!(d.get().as_secs(), want);
                prop_assert_eq!(d.to_string().parse::<Secs>(), Ok(d));
            }
            (Err(e), None) => assert_one_line("duration", &e)?,
            (got, want) => prop_assert!(false, "{} parsed to {:?}, expected {:?}", s, got, want),
        }
        if let Err(e) = junk.parse::<Secs>() {
            assert_one_line("duration", &e)?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// CloudTrail checkpoint file

fn checkpoint_json() -> BoxedStrategy<Value> {
    let seen = (
        field(text().prop_map(Value::String)),
        field(event_time().prop_map(Value::String)),
        extra_fields(),
    )
        .prop_map(|(id, time, extra)| {
            object(
                vec![("id", id), ("time", time)],
                if extra.len() > 1 { extra } else { vec![] },
            )
        });
    (
        field(prop_oneof![8 => Just(json!(VERSION)), 1 => Just(json!(2)), 1 => Just(json!(-1))]),
        field(event_time().prop_map(Value::String)),
        field(prop::collection::vec(seen, 0..4).prop_map(Value::Array)),
        prop::option::weighted(0.1, (text(), json_any())),
    )
        .prop_map(|(version, polled, seen, extra)| {
            object(
                vec![
                    ("version", version),
                    ("polled_until", polled),
                    ("seen", seen),
                ],
                extra.into_iter().collect(),
            )
        })
        .boxed()
}

fn checkpoint_text() -> BoxedStrategy<String> {
    (
        checkpoint_json(),
        any::<bool>(),
        prop::option::weighted(0.3, mutation()),
    )
        .prop_map(|(v, pretty, m)| {
            let s = if pretty {
                serde_json::to_string_pretty(&v).expect("serialise")
            } else {
                v.to_string()
            };
            match m {
                Some((op, at, len, ins)) => mutate(&s, op, at, len, &ins),
                None => s,
            }
        })
        .boxed()
}

proptest! {
    #![proptest_config(fuzz_config(1))]

    /// The checkpoint format: what decodes re-encodes to the same checkpoint.
    #[test]
    fn checkpoint_decoding(s in checkpoint_text()) {
        if let Ok(cp) = serde_json::from_str::<Checkpoint>(&s) {
            let again = serde_json::to_string_pretty(&cp).expect("encode");
            prop_assert_eq!(serde_json::from_str::<Checkpoint>(&again).ok(), Some(cp));
        }
    }
}

proptest! {
    // File I/O per case: a tenth of the cases.
    #![proptest_config(fuzz_config(10))]

    /// Checkpoint::load of any file content: never an error; the checkpoint of the current
    /// version as decoded, or None with the file moved aside.
    #[test]
    fn checkpoint_file(s in checkpoint_text()) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let path = Checkpoint::path(dir.path());
        std::fs::write(&path, &s).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let loaded = Checkpoint::load(dir.path());
        prop_assert!(loaded.is_ok(), "{:?}", loaded);
        match loaded.ok().flatten() {
            Some(cp) => {
                prop_assert_eq!(cp.version, VERSION);
                prop_assert_eq!(serde_json::from_str::<Checkpoint>(&s).ok(), Some(cp));
                prop_assert!(path.is_file());
            }
            None => {
                prop_assert!(!path.exists(), "unusable checkpoint left in place");
                prop_assert!(path.with_extension("json.corrupt").is_file());
            }
        }
    }
}

proptest! {
    // An fsync per case: a hundredth of the cases.
    #![proptest_config(fuzz_config(100))]

    /// What is saved loads back unchanged, whatever the event ids hold.
    #[test]
    fn checkpoint_save_load(secs in 0i64..4_102_444_800, nanos in 0u32..1_000_000_000, seen in prop::collection::vec((any::<String>(), 0i64..4_102_444_800), 0..5)) {
        let at = |s: i64, n: u32| DateTime::from_timestamp(s, n).expect("in range");
        let cp = Checkpoint::new(at(secs, nanos), seen.into_iter().map(|(id, t)| SeenEvent { id, time: at(t, 0) }).collect());
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        cp.save(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let loaded = Checkpoint::load(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(loaded, Some(cp));
    }
}
