use super::*;
use crate::controller::key::Exposed;
use serde_json::json;
use std::cell::RefCell;

const OURS: &str = "111122223333";
const OTHER: &str = "444455556666";
/// AWS's documentation example access key id.
const KEY: &str = concat!("AKIA", "IOSFODNN7EXAMPLE");

fn record(account: &str) -> Value {
    json!({
        "eventVersion": "1.09",
        "eventID": "e-1",
        "eventName": "CreateUser",
        "eventTime": "2024-08-01T13:42:21Z",
        "eventSource": "iam.amazonaws.com",
        "requestParameters": {"userName": "bob"},
        "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{account}:assumed-role/admin/x")},
        "recipientAccountId": account,
    })
}

fn cloudtrail(account: Value) -> Value {
    json!({
        "version": "0", "id": "m-1",
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.iam",
        "account": account, "time": "2024-08-01T13:42:21Z", "region": "us-east-1",
        "resources": [], "detail": record(OURS),
    })
}

fn health(account: Value) -> Value {
    json!({
        "version": "0", "id": "h-1", "detail-type": "AWS Health Event", "source": "aws.health",
        "account": account, "time": "2024-08-01T13:42:21Z", "region": "us-east-1",
        "resources": [],
        "detail": {"service": "RISK", "eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
                   "affectedEntities": [{"entityValue": KEY}]},
    })
}

fn without_account(mut v: Value) -> Value {
    v.as_object_mut().map(|o| o.remove("account"));
    v
}

/// Routes `body` with the accounts in `scope` (each routed to its index); also returns the
/// accounts the lookup was asked about.
fn route_in(body: &str, scope: &[&str]) -> (Route<usize>, Vec<String>) {
    let asked = RefCell::new(Vec::new());
    let r = route(body, |a| {
        asked.borrow_mut().push(a.to_owned());
        scope.iter().position(|s| *s == a)
    });
    (r, asked.into_inner())
}

fn skip(reason: SqsSkipReason, account: &str, event: &str) -> Skip {
    Skip {
        reason,
        account: account.into(),
        event: event.into(),
    }
}

#[test]
fn events_of_accounts_in_scope_reach_their_account() {
    let two = [OTHER, OURS];
    let (r, asked) = route_in(&cloudtrail(json!(OURS)).to_string(), &two);
    assert_eq!(asked, [OURS]);
    match r {
        Route::Dispatch { account, to, event } => {
            assert_eq!((account.as_str(), to), (OURS, 1));
            assert!(matches!(event, SqsEvent::CloudTrail(ev) if ev.event_name == "CreateUser"));
        }
        other => panic!("{other:?}"),
    }
    // The envelope's account routes, not the record's recipientAccountId.
    let mut v = cloudtrail(json!(OTHER));
    v["detail"]["recipientAccountId"] = json!(OURS);
    assert!(matches!(
        route_in(&v.to_string(), &two).0,
        Route::Dispatch { to: 0, .. }
    ));
    // An exposed key is quarantined in the account the Health event names.
    match route_in(&health(json!(OTHER)).to_string(), &two).0 {
        Route::Dispatch { account, to, event } => {
            assert_eq!((account.as_str(), to), (OTHER, 0));
            let SqsEvent::Exposed(h) = event else {
                panic!("{event:?}")
            };
            assert_eq!(
                h.exposures[0].exposed,
                Exposed::Key {
                    key_id: KEY.into(),
                    account: OTHER.into()
                }
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Every way the account can be wrong: a counted skip with its reason, what was found, and
/// what the message is; the lookup is asked only about a well-formed id.
#[test]
fn bad_and_foreign_accounts_are_skips() {
    let ct = |a: Value| cloudtrail(a).to_string();
    let hl = |a: Value| health(a).to_string();
    let long = "1".repeat(500);
    use SqsSkipReason::*;
    let cases: Vec<(&str, String, Skip, bool)> = vec![
        (
            "another account",
            ct(json!(OTHER)),
            skip(NotInScope, OTHER, "CreateUser"),
            true,
        ),
        (
            "another account's Health event",
            hl(json!(OTHER)),
            skip(NotInScope, OTHER, "AWS_RISK_CREDENTIALS_EXPOSED"),
            true,
        ),
        (
            "missing",
            without_account(cloudtrail(json!(OURS))).to_string(),
            skip(Missing, "", "CreateUser"),
            false,
        ),
        (
            "missing in a Health event",
            without_account(health(json!(OURS))).to_string(),
            skip(Missing, "", "AWS_RISK_CREDENTIALS_EXPOSED"),
            false,
        ),
        (
            "null",
            ct(Value::Null),
            skip(Missing, "", "CreateUser"),
            false,
        ),
        (
            "number",
            ct(json!(111122223333u64)),
            skip(NotAString, "a JSON number", "CreateUser"),
            false,
        ),
        (
            "boolean",
            ct(json!(true)),
            skip(NotAString, "a JSON boolean", "CreateUser"),
            false,
        ),
        (
            "array",
            ct(json!([OURS])),
            skip(NotAString, "a JSON array", "CreateUser"),
            false,
        ),
        (
            "object",
            hl(json!({"id": OURS})),
            skip(NotAString, "a JSON object", "AWS_RISK_CREDENTIALS_EXPOSED"),
            false,
        ),
        (
            "11 digits",
            ct(json!("11112222333")),
            skip(BadShape, "11112222333", "CreateUser"),
            false,
        ),
        (
            "13 digits",
            ct(json!("1111222233334")),
            skip(BadShape, "1111222233334", "CreateUser"),
            false,
        ),
        (
            "a letter",
            ct(json!("11112222333x")),
            skip(BadShape, "11112222333x", "CreateUser"),
            false,
        ),
        (
            "padded",
            ct(json!(" 111122223333")),
            skip(BadShape, " 111122223333", "CreateUser"),
            false,
        ),
        (
            "empty",
            ct(json!("")),
            skip(BadShape, "", "CreateUser"),
            false,
        ),
        (
            "non-ASCII digits",
            ct(json!("١١١١٢٢٢٢٣٣٣٣")),
            skip(BadShape, "١١١١٢٢٢٢٣٣٣٣", "CreateUser"),
            false,
        ),
        (
            "huge",
            ct(json!(long)),
            skip(BadShape, &format!("{}...", "1".repeat(80)), "CreateUser"),
            false,
        ),
    ];
    for (name, body, want, asks) in cases {
        let (r, asked) = route_in(&body, &[OURS]);
        match r {
            Route::Skip(got) => assert_eq!(got, want, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(!asked.is_empty(), asks, "{name}: lookup asked {asked:?}");
    }
}

/// With one account in scope (`accounts.source = "self"`) another account's event is a
/// skip too, even when a user of that name exists here.
#[test]
fn one_account_in_scope_skips_the_others() {
    for body in [cloudtrail(json!(OTHER)), health(json!(OTHER))] {
        assert!(matches!(
            route_in(&body.to_string(), &[OURS]).0,
            Route::Skip(Skip {
                reason: SqsSkipReason::NotInScope,
                ..
            })
        ));
    }
    assert!(matches!(
        route_in(&cloudtrail(json!(OURS)).to_string(), &[OURS]).0,
        Route::Dispatch { to: 0, .. }
    ));
    // No account in scope at all: everything is skipped.
    assert!(matches!(
        route_in(&cloudtrail(json!(OURS)).to_string(), &[]).0,
        Route::Skip(_)
    ));
}

/// What cannot be read as an object is malformed; so is a broken event of an account in
/// scope (it goes to the dead-letter queue). A broken event of another account is only a
/// skip: that account's messages are none of ours.
#[test]
fn malformed_is_decided_before_and_after_the_account() {
    for body in ["", "not JSON {", "[1,2]", "\"111122223333\"", "null", "42"] {
        assert!(
            matches!(route_in(body, &[OURS]).0, Route::Malformed(_)),
            "{body:?}"
        );
    }
    let mut broken = cloudtrail(json!(OURS));
    broken["detail-type"] = json!("EC2 Instance State-change Notification");
    assert!(matches!(
        route_in(&broken.to_string(), &[OURS]).0,
        Route::Malformed(ParseError::WrongDetailType { .. })
    ));
    let mut no_key = health(json!(OURS));
    no_key["detail"]["affectedEntities"] = json!([]);
    assert!(matches!(
        route_in(&no_key.to_string(), &[OURS]).0,
        Route::Malformed(ParseError::NoExposedKey { .. })
    ));
    broken["account"] = json!(OTHER);
    assert_eq!(
        match route_in(&broken.to_string(), &[OURS]).0 {
            Route::Skip(s) => s,
            other => panic!("{other:?}"),
        },
        skip(SqsSkipReason::NotInScope, OTHER, "CreateUser")
    );
}

/// A bare CloudTrail record is not an EventBridge envelope: it has no `account` (its
/// `recipientAccountId` does not route it), so it is a skip.
#[test]
fn bare_records_are_not_routed() {
    let (r, asked) = route_in(&record(OURS).to_string(), &[OURS]);
    assert!(asked.is_empty());
    match r {
        Route::Skip(s) => assert_eq!(s, skip(SqsSkipReason::Missing, "", "")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn event_labels_are_short() {
    let mut v = cloudtrail(json!(OURS));
    v["detail"]["eventName"] = json!("x".repeat(1000));
    assert!(event_label(&v).len() < 100);
    assert_eq!(
        event_label(&json!({"detail-type": "Object Created"})),
        "Object Created"
    );
    assert_eq!(event_label(&json!({"detail": 5})), "");
}
