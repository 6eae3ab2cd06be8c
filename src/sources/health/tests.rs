use super::*;
use serde_json::json;

/// The documented example event (tests/fixtures, see its README), as AWS publishes it.
const DOCUMENTED: &str = include_str!("../../../tests/fixtures/health-credentials-exposed.json");

/// AWS's documentation example access key id.
const KEY: &str = concat!("AKIA", "IOSFODNN7EXAMPLE");

fn documented() -> Value {
    serde_json::from_str(DOCUMENTED).unwrap()
}

/// The documented event with `entities` as its affected entities.
fn with_entities(entities: Value) -> Value {
    let mut v = documented();
    v["detail"]["affectedEntities"] = entities;
    v
}

#[test]
fn documented_example_parses_once_its_placeholder_is_a_key_id() {
    let v = with_entities(json!([{"entityValue": KEY}]));
    let got = parse_health(&v).unwrap();
    assert_eq!(
        got.exposures,
        vec![Exposure {
            exposed: Exposed::Key {
                key_id: KEY.into(),
                account: "123456789012".into(),
            },
            event_id: "121345678-1234-1234-1234-123456789012".into(),
            event_time: "2016-06-05T06:27:57Z".parse().unwrap(),
        }]
    );
    assert!(got.rejected.is_empty());
    // Through the SQS entry point, from the body's text.
    assert_eq!(
        parse_sqs_message(&v.to_string()).unwrap(),
        SqsEvent::Exposed(got)
    );
}

#[test]
fn documented_placeholder_is_not_a_key_id() {
    let err = parse_health(&documented()).unwrap_err();
    assert!(
        matches!(&err, ParseError::NoExposedKey { found } if found == "ACCESS_KEY_ID_HERE"),
        "{err}"
    );
    assert!(err.to_string().contains("AKIA"), "{err}");
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn several_keys_deduplicated_and_bad_entities_rejected() {
    let other = concat!("AKIA", "0000000000000002");
    let v = with_entities(json!([
        {"entityValue": KEY},
        {"entityValue": "not-a-key"},
        {"entityValue": format!(" {other} ")},
        {"entityValue": KEY},
        {"entityValue": 42},
        concat!("AKIA", "0000000000000003"),
    ]));
    let got = parse_health(&v).unwrap();
    let keys: Vec<_> = got
        .exposures
        .iter()
        .map(|e| match &e.exposed {
            Exposed::Key { key_id, .. } => key_id.as_str(),
            Exposed::User { .. } => panic!("a user"),
        })
        .collect();
    assert_eq!(keys, vec![KEY, other]);
    assert_eq!(
        got.rejected,
        vec!["not-a-key", "a object entity", "a string entity"]
    );
}

#[test]
fn malformed_health_events_table() {
    let key = json!([{"entityValue": KEY}]);
    let good = with_entities(key.clone());
    type Edit = fn(&mut Value);
    type Want = fn(&ParseError) -> bool;
    let table: Vec<(&str, Edit, Want)> = vec![
        (
            "no entities",
            |v| {
                v["detail"]
                    .as_object_mut()
                    .unwrap()
                    .remove("affectedEntities");
            },
            |e| matches!(e, ParseError::NoExposedKey { found } if found == "none"),
        ),
        (
            "empty entities",
            |v| v["detail"]["affectedEntities"] = json!([]),
            |e| matches!(e, ParseError::NoExposedKey { .. }),
        ),
        (
            "entities not a list",
            |v| v["detail"]["affectedEntities"] = json!({"entityValue": KEY}),
            |e| matches!(e, ParseError::NoExposedKey { .. }),
        ),
        (
            "a temporary key id",
            |v| {
                v["detail"]["affectedEntities"] =
                    json!([{"entityValue": concat!("ASIA", "IOSFODNN7EXAMPLE")}])
            },
            |e| matches!(e, ParseError::NoExposedKey { found } if found.starts_with("ASIA")),
        ),
        (
            "a key id in lower case",
            |v| v["detail"]["affectedEntities"] = json!([{"entityValue": "akiaiosfodnn7example"}]),
            |e| matches!(e, ParseError::NoExposedKey { .. }),
        ),
        (
            "a key id too long",
            |v| {
                v["detail"]["affectedEntities"] =
                    json!([{"entityValue": concat!("AKIA", "IOSFODNN7EXAMPLEX")}])
            },
            |e| matches!(e, ParseError::NoExposedKey { .. }),
        ),
        (
            "wrong event type",
            |v| v["detail"]["eventTypeCode"] = json!("AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"),
            |e| matches!(e, ParseError::HealthEventType { found } if found.starts_with("AWS_EC2")),
        ),
        (
            "no event type",
            |v| {
                v["detail"].as_object_mut().unwrap().remove("eventTypeCode");
            },
            |e| matches!(e, ParseError::HealthEventType { found } if found.is_empty()),
        ),
        (
            "an abuse event",
            |v| v["detail-type"] = json!("AWS Health Abuse Event"),
            |e| matches!(e, ParseError::HealthDetailType { .. }),
        ),
        (
            "no account",
            |v| {
                v.as_object_mut().unwrap().remove("account");
            },
            |e| matches!(e, ParseError::HealthMissing("account")),
        ),
        (
            "account not a string",
            |v| v["account"] = json!(123456789012u64),
            |e| matches!(e, ParseError::HealthMissing("account")),
        ),
        (
            "no id",
            |v| v["id"] = json!(""),
            |e| matches!(e, ParseError::HealthMissing("id")),
        ),
        (
            "time not RFC 3339",
            |v| v["time"] = json!("Sat, 05 Jun 2016 15:10:09 GMT"),
            |e| matches!(e, ParseError::BadTime { .. }),
        ),
        (
            "no detail",
            |v| {
                v.as_object_mut().unwrap().remove("detail");
            },
            |e| matches!(e, ParseError::HealthMissing("detail")),
        ),
        (
            "detail a string",
            |v| v["detail"] = json!("{}"),
            |e| {
                matches!(
                    e,
                    ParseError::NotAnObject {
                        found: "string",
                        ..
                    }
                )
            },
        ),
    ];
    for (name, edit, want) in table {
        let mut v = good.clone();
        edit(&mut v);
        let err = parse_sqs_message(&v.to_string()).unwrap_err();
        assert!(want(&err), "{name}: {err}");
        let msg = err.to_string();
        assert!(!msg.contains('\n') && msg.len() < 600, "{name}: {msg}");
    }
    // Every rejection of the event's kind says how to narrow the rule.
    let mut v = good.clone();
    v["detail"]["eventTypeCode"] = json!("AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED");
    assert!(parse_health(&v)
        .unwrap_err()
        .to_string()
        .contains(HEALTH_PATTERN));
}

#[test]
fn another_account_is_parsed_and_left_to_the_controller() {
    let mut v = with_entities(json!([{"entityValue": KEY}]));
    v["account"] = json!("999999999999");
    let got = parse_health(&v).unwrap();
    assert!(matches!(
        &got.exposures[0].exposed,
        Exposed::Key { account, .. } if account == "999999999999"
    ));
}

#[test]
fn sqs_bodies_are_told_apart() {
    // A CloudTrail envelope still parses as before.
    let rec = crate::controller::mapping::testkit::record("CreateUser", json!({"userName": "bob"}));
    let env = json!({
        "version": "0", "id": "x", "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam", "account": "123456789012", "time": "2024-08-01T13:42:21Z",
        "region": "us-east-1", "resources": [], "detail": rec,
    });
    assert!(matches!(
        parse_sqs_message(&env.to_string()),
        Ok(SqsEvent::CloudTrail(ev)) if ev.event_name == "CreateUser"
    ));
    // Other sources keep the CloudTrail errors.
    let mut other = env.clone();
    other["source"] = json!("aws.s3");
    assert!(matches!(
        parse_sqs_message(&other.to_string()),
        Err(ParseError::WrongSource { .. })
    ));
    assert!(matches!(parse_sqs_message("{"), Err(ParseError::Json(_))));
    assert!(matches!(
        parse_sqs_message("[]"),
        Err(ParseError::NotAnObject { .. })
    ));
    // Truncated Health bodies are JSON errors, never a panic.
    let body = with_entities(json!([{"entityValue": KEY}])).to_string();
    for cut in [1, body.len() / 2, body.len() - 1] {
        assert!(matches!(
            parse_sqs_message(&body[..cut]),
            Err(ParseError::Json(_))
        ));
    }
}

#[test]
fn key_id_shape() {
    for ok in [KEY, concat!("AKIA", "0123456789ABCDEF")] {
        assert!(is_access_key_id(ok), "{ok}");
    }
    for bad in [
        "",
        "AKIA",
        concat!("ASIA", "IOSFODNN7EXAMPLE"),
        "AKIAIOSFODNN7EXAMPL",
        concat!("AKIA", "IOSFODNN7EXAMPLE1"),
        "AKIAIOSFODNN7EXAMPL-",
        "AKIAiOSFODNN7EXAMPLE",
        "AKIAIOSFODNN7EXAMPLÉ",
    ] {
        assert!(!is_access_key_id(bad), "{bad}");
    }
}
