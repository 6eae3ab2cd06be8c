//! `cloudtrail-recorder` (src/bin/cloudtrail-recorder/) against a real moto server, driven
//! by the real aws-sdk-iam / aws-sdk-cloudtrail clients.

use crate::support;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_cloudtrail::operation::lookup_events::LookupEventsError;
use aws_sdk_cloudtrail::primitives::DateTime;
use aws_sdk_cloudtrail::types::{Event, LookupAttribute, LookupAttributeKey};
use iam_warden::sources::event::{parse_record_str, targets, BaselineNames, ReconcileKey, Target};
use serde_json::{json, Value};
use support::recorder::{http, Recorder};
use support::{eventually, shared_moto, Account};

fn iam_source() -> LookupAttribute {
    LookupAttribute::builder()
        .attribute_key(LookupAttributeKey::EventSource)
        .attribute_value("iam.amazonaws.com")
        .build()
        .unwrap()
}

fn attr(key: LookupAttributeKey, value: &str) -> LookupAttribute {
    LookupAttribute::builder()
        .attribute_key(key)
        .attribute_value(value)
        .build()
        .unwrap()
}

/// All pages of a LookupEvents query.
async fn lookup_all(
    ct: &aws_sdk_cloudtrail::Client,
    attribute: Option<LookupAttribute>,
    start: Option<DateTime>,
    end: Option<DateTime>,
) -> Vec<Event> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = ct
            .lookup_events()
            .set_lookup_attributes(attribute.clone().map(|a| vec![a]))
            .set_start_time(start)
            .set_end_time(end)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("LookupEvents");
        out.extend(page.events().iter().cloned());
        match page.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => return out,
        }
    }
}

fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.event_name().unwrap()).collect()
}

fn record(ev: &Event) -> Value {
    serde_json::from_str(ev.cloud_trail_event().expect("CloudTrailEvent")).expect("record JSON")
}

fn since(secs_ago: u64) -> DateTime {
    DateTime::from(SystemTime::now() - Duration::from_secs(secs_ago))
}

fn until(secs_ahead: u64) -> DateTime {
    DateTime::from(SystemTime::now() + Duration::from_secs(secs_ahead))
}

fn tag(k: &str, v: &str) -> aws_sdk_iam::types::Tag {
    aws_sdk_iam::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
        .unwrap()
}

const PASSWORD: &str = "Never-Record-Me-7f3a!";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_writes_are_recorded_and_looked_up_newest_first() {
    let rec = Recorder::start(shared_moto(), "0");
    let acct = Account::new(shared_moto()).await;
    let iam = rec.iam(&acct);
    let ct = rec.cloudtrail(&acct);
    let start = since(2);

    iam.create_user()
        .user_name("alice")
        .tags(tag("team", "red"))
        .send()
        .await
        .unwrap();
    iam.create_login_profile()
        .user_name("alice")
        .password(PASSWORD)
        .password_reset_required(true)
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .unwrap();
    let key = key.access_key().unwrap();
    let (key_id, secret) = (
        key.access_key_id().to_string(),
        key.secret_access_key().to_string(),
    );
    iam.create_group().group_name("devs").send().await.unwrap();
    iam.add_user_to_group()
        .user_name("alice")
        .group_name("devs")
        .send()
        .await
        .unwrap();
    iam.tag_user()
        .user_name("alice")
        .tags(tag("owner", "bob"))
        .send()
        .await
        .unwrap();
    // Reads are not recorded.
    iam.get_user().user_name("alice").send().await.unwrap();
    iam.list_users().send().await.unwrap();
    // Failed writes are not recorded (moto answers 409 EntityAlreadyExists).
    let err = iam
        .create_user()
        .user_name("alice")
        .send()
        .await
        .expect_err("duplicate CreateUser must fail");
    assert!(
        err.into_service_error()
            .is_entity_already_exists_exception(),
        "expected EntityAlreadyExists"
    );
    // Other services pass through unchanged and are not recorded.
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&acct.sdk)
            .endpoint_url(&rec.url)
            .build(),
    );
    let who = sts.get_caller_identity().send().await.unwrap();
    assert_eq!(who.account(), Some(acct.id.as_str()));

    let events = lookup_all(&ct, Some(iam_source()), Some(start), Some(until(2))).await;
    assert_eq!(
        names(&events),
        [
            "TagUser",
            "AddUserToGroup",
            "CreateGroup",
            "CreateAccessKey",
            "CreateLoginProfile",
            "CreateUser"
        ],
        "newest first, writes only"
    );
    let ak = acct.creds.access_key_id();
    let mut ids = HashSet::new();
    for ev in &events {
        assert_eq!(ev.event_source(), Some("iam.amazonaws.com"));
        assert_eq!(ev.read_only(), Some("false"));
        assert_eq!(ev.access_key_id(), Some(ak));
        assert_eq!(ev.username(), Some("iam-warden-test"), "role session name");
        assert!(ids.insert(ev.event_id().unwrap().to_string()));
        let r = record(ev);
        assert_eq!(r["eventID"].as_str(), ev.event_id());
        assert_eq!(r["eventName"].as_str(), ev.event_name());
        assert_eq!(r["recipientAccountId"], json!(acct.id));
        assert_eq!(r["userIdentity"]["accountId"], json!(acct.id));
        assert_eq!(r["userIdentity"]["type"], json!("AssumedRole"));
        assert_eq!(r["userIdentity"]["accessKeyId"], json!(ak));
        assert_eq!(r["readOnly"], json!(false));
        assert_eq!(r["eventType"], json!("AwsApiCall"));
        assert_eq!(r["awsRegion"], json!("us-east-1"));
        assert_eq!(r["sourceIPAddress"], json!("127.0.0.1"));
        assert!(!r["requestID"].as_str().unwrap().is_empty());
        let t = r["eventTime"].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 20, "second precision: {t}");
        let secs = chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp();
        assert_eq!(ev.event_time().unwrap().secs(), secs);
        assert!(r["userAgent"].as_str().unwrap().contains("aws-sdk-rust"));
    }
    let by_name = |n: &str| record(events.iter().find(|e| e.event_name() == Some(n)).unwrap());
    let create_user = by_name("CreateUser");
    assert_eq!(create_user["requestParameters"]["userName"], json!("alice"));
    assert_eq!(
        create_user["requestParameters"]["tags"],
        json!([{"key": "team", "value": "red"}])
    );
    assert_eq!(
        create_user["responseElements"]["user"]["userName"],
        json!("alice")
    );
    assert_eq!(
        create_user["responseElements"]["user"]["arn"],
        json!(format!("arn:aws:iam::{}:user/alice", acct.id))
    );
    let login = by_name("CreateLoginProfile");
    assert_eq!(
        login["requestParameters"],
        json!({"userName": "alice", "passwordResetRequired": true}),
        "no password in the request parameters"
    );
    let create_key = by_name("CreateAccessKey");
    assert_eq!(
        create_key["responseElements"]["accessKey"]["accessKeyId"],
        json!(key_id)
    );
    assert_eq!(
        create_key["responseElements"]["accessKey"]["userName"],
        json!("alice")
    );
    assert_eq!(
        create_key["responseElements"]["accessKey"]["status"],
        json!("Active")
    );
    assert!(create_key["responseElements"]["accessKey"]
        .get("secretAccessKey")
        .is_none());
    let add = by_name("AddUserToGroup");
    assert_eq!(
        add["requestParameters"],
        json!({"userName": "alice", "groupName": "devs"})
    );
    assert_eq!(add["responseElements"], Value::Null);
    assert_eq!(
        by_name("TagUser")["requestParameters"]["tags"],
        json!([{"key": "owner", "value": "bob"}])
    );

    // Neither the password nor the secret appears anywhere.
    let (raw, recorded) = rec.recorded(&acct.id).await;
    assert_eq!(recorded.len(), 6, "{raw}");
    let looked_up = format!("{events:?}");
    for hay in [&raw, &looked_up] {
        assert!(!hay.contains(PASSWORD), "password leaked");
        assert!(!hay.contains(&secret), "secret access key leaked");
    }
}

/// Top-level keys of real records that a proxy on plain HTTP cannot or need not produce.
const EXEMPT_KEYS: &[&str] = &[
    "tlsDetails",
    "sessionCredentialFromConsole",
    "additionalEventData",
];

/// Real CloudTrail records (JSON arrays): `IAM_WARDEN_CLOUDTRAIL_FIXTURES`, or
/// `shared/fixtures/cloudtrail-real` beside the crate. The comparison is skipped with a
/// notice when neither exists.
fn fixtures_dir() -> PathBuf {
    std::env::var_os("IAM_WARDEN_CLOUDTRAIL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/cloudtrail-real")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_events_have_the_shape_of_real_ones_and_parse() {
    let rec = Recorder::start(shared_moto(), "0");
    let acct = Account::new(shared_moto()).await;
    let iam = rec.iam(&acct);
    let ct = rec.cloudtrail(&acct);
    iam.create_user().user_name("shape").send().await.unwrap();
    iam.create_access_key()
        .user_name("shape")
        .send()
        .await
        .unwrap();
    let events = lookup_all(&ct, Some(iam_source()), None, None).await;
    assert_eq!(names(&events), ["CreateAccessKey", "CreateUser"]);

    // The iam-warden parser accepts them and maps them to the user.
    for ev in &events {
        let parsed = parse_record_str(ev.cloud_trail_event().unwrap())
            .unwrap_or_else(|e| panic!("parser rejects a recorded event: {e}"));
        assert_eq!(parsed.event_id, ev.event_id().unwrap());
        assert_eq!(parsed.error_code, None);
        assert!(!parsed.read_only);
        assert_eq!(
            targets(&parsed, &BaselineNames::default()),
            vec![Target::Reconcile(ReconcileKey::User("shape".into()))],
            "{}",
            parsed.event_name
        );
    }

    let dir = fixtures_dir();
    if !dir.is_dir() {
        eprintln!(
            "NOTICE: {} is missing; skipping the comparison with real CloudTrail records",
            dir.display()
        );
        return;
    }
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let real: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for real_rec in real.as_array().unwrap() {
            let name = real_rec["eventName"].as_str().unwrap();
            if name != "CreateUser" && name != "CreateAccessKey" {
                continue;
            }
            let ours = record(
                events
                    .iter()
                    .find(|e| e.event_name() == Some(name))
                    .unwrap(),
            );
            let real_keys: BTreeSet<&String> = real_rec.as_object().unwrap().keys().collect();
            for k in real_keys {
                if EXEMPT_KEYS.contains(&k.as_str()) {
                    continue;
                }
                assert!(
                    ours.get(k).is_some(),
                    "recorded {name} lacks key {k:?} of the real record in {}",
                    path.display()
                );
            }
            for k in real_rec["userIdentity"].as_object().unwrap().keys() {
                // userName is only for IAMUser callers; ours is an assumed role.
                if k != "userName" {
                    assert!(ours["userIdentity"].get(k).is_some(), "userIdentity.{k}");
                }
            }
            let section = if name == "CreateUser" {
                "user"
            } else {
                "accessKey"
            };
            for k in real_rec["responseElements"][section]
                .as_object()
                .unwrap()
                .keys()
            {
                if k != "tags" {
                    assert!(
                        ours["responseElements"][section].get(k).is_some(),
                        "responseElements.{section}.{k}"
                    );
                }
            }
            compared += 1;
        }
    }
    assert!(
        compared >= 2,
        "no CreateUser/CreateAccessKey fixtures found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_see_only_their_own_events() {
    let rec = Recorder::start(shared_moto(), "0");
    let a = Account::new(shared_moto()).await;
    let b = Account::new(shared_moto()).await;
    assert_ne!(a.id, b.id);
    rec.iam(&a)
        .create_user()
        .user_name("in-a")
        .send()
        .await
        .unwrap();
    rec.iam(&b)
        .create_user()
        .user_name("in-b")
        .send()
        .await
        .unwrap();
    rec.iam(&b)
        .create_group()
        .group_name("group-b")
        .send()
        .await
        .unwrap();

    let ev_a = lookup_all(&rec.cloudtrail(&a), None, None, None).await;
    let ev_b = lookup_all(&rec.cloudtrail(&b), None, None, None).await;
    assert_eq!(names(&ev_a), ["CreateUser"]);
    assert_eq!(names(&ev_b), ["CreateGroup", "CreateUser"]);
    assert_eq!(
        record(&ev_a[0])["requestParameters"]["userName"],
        json!("in-a")
    );
    for (acct, evs) in [(&a, &ev_a), (&b, &ev_b)] {
        for ev in evs {
            assert_eq!(record(ev)["recipientAccountId"], json!(acct.id));
        }
        assert_eq!(rec.recorded(&acct.id).await.1.len(), evs.len());
    }

    // Reset forgets everything.
    let (status, _) = http("POST", &format!("{}/recorder/reset", rec.url), None).await;
    assert_eq!(status, 200);
    assert!(lookup_all(&rec.cloudtrail(&a), None, None, None)
        .await
        .is_empty());
    assert!(rec.recorded(&b.id).await.1.is_empty());
}

fn injected(id: &str, name: &str, time: &str) -> Value {
    json!({
        "eventVersion": "1.09",
        "eventID": id,
        "eventName": name,
        "eventTime": time,
        "eventSource": "iam.amazonaws.com",
        "readOnly": false,
        "requestParameters": {"userName": format!("user-{id}")},
        "userIdentity": {"type": "IAMUser", "userName": "admin", "accessKeyId": "AKIAINJECTED"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_time_window_and_errors() {
    let rec = Recorder::start(shared_moto(), "0");
    let acct = Account::new(shared_moto()).await;
    acct.user("pager").await; // straight to moto: not recorded
    let iam = rec.iam(&acct);
    let ct = rec.cloudtrail(&acct);

    // 60 writes, concurrently.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..60 {
        let iam = iam.clone();
        set.spawn(async move {
            iam.tag_user()
                .user_name("pager")
                .tags(tag(&format!("k{i}"), "v"))
                .send()
                .await
                .unwrap();
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }

    let page1 = ct.lookup_events().send().await.unwrap();
    assert_eq!(page1.events().len(), 50);
    let token = page1
        .next_token()
        .expect("a NextToken after 50 of 60")
        .to_string();
    // An event arriving between pages neither shifts nor duplicates the second page.
    iam.create_user().user_name("late").send().await.unwrap();
    let page2 = ct.lookup_events().next_token(&token).send().await.unwrap();
    assert_eq!(page2.events().len(), 10);
    assert_eq!(page2.next_token(), None);
    let ids: HashSet<&str> = page1
        .events()
        .iter()
        .chain(page2.events())
        .map(|e| e.event_id().unwrap())
        .collect();
    assert_eq!(ids.len(), 60, "no duplicates across pages");
    assert!(page1
        .events()
        .iter()
        .chain(page2.events())
        .all(|e| e.event_name() == Some("TagUser")));
    let times: Vec<i64> = page1
        .events()
        .iter()
        .chain(page2.events())
        .map(|e| e.event_time().unwrap().secs())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let fresh = lookup_all(&ct, None, None, None).await;
    assert_eq!(fresh.len(), 61);
    assert_eq!(fresh[0].event_name(), Some("CreateUser"));
    let small = ct.lookup_events().max_results(7).send().await.unwrap();
    assert_eq!(small.events().len(), 7);

    // Time window, on injected events with chosen times (inclusive bounds).
    let other = Account::new(shared_moto()).await;
    rec.inject(
        &other.id,
        &json!([
            injected("e10", "CreateUser", "2024-01-01T10:00:00Z"),
            injected("e11", "AttachUserPolicy", "2024-01-01T11:00:00Z"),
            injected("e12", "DeleteUser", "2024-01-01T12:00:00Z"),
        ]),
    )
    .await;
    let ct2 = rec.cloudtrail(&other);
    let at = |h: i64, m: i64| DateTime::from_secs(1_704_067_200 + h * 3600 + m * 60);
    let ids_of = |evs: &[Event]| -> Vec<String> {
        evs.iter()
            .map(|e| e.event_id().unwrap().to_string())
            .collect()
    };
    let w = lookup_all(&ct2, None, Some(at(10, 30)), Some(at(11, 30))).await;
    assert_eq!(ids_of(&w), ["e11"]);
    let w = lookup_all(&ct2, None, Some(at(11, 0)), Some(at(12, 0))).await;
    assert_eq!(ids_of(&w), ["e12", "e11"]);
    let w = lookup_all(&ct2, None, None, None).await;
    assert_eq!(ids_of(&w), ["e12", "e11", "e10"]);
    let w = lookup_all(
        &ct2,
        Some(attr(LookupAttributeKey::EventName, "CreateUser")),
        None,
        None,
    )
    .await;
    assert_eq!(ids_of(&w), ["e10"]);
    let w = lookup_all(
        &ct2,
        Some(attr(LookupAttributeKey::ResourceName, "user-e12")),
        None,
        None,
    )
    .await;
    assert_eq!(ids_of(&w), ["e12"]);
    let w = lookup_all(
        &ct2,
        Some(attr(LookupAttributeKey::Username, "admin")),
        None,
        None,
    )
    .await;
    assert_eq!(w.len(), 3);
    assert_eq!(w[0].access_key_id(), Some("AKIAINJECTED"));
    let w = lookup_all(
        &ct2,
        Some(attr(LookupAttributeKey::EventId, "e10")),
        None,
        None,
    )
    .await;
    assert_eq!(ids_of(&w), ["e10"]);

    // Errors surface as the SDK's modelled errors.
    let err = ct
        .lookup_events()
        .next_token("not-a-token")
        .send()
        .await
        .expect_err("invalid NextToken");
    assert!(
        matches!(
            err.into_service_error(),
            LookupEventsError::InvalidNextTokenException(_)
        ),
        "expected InvalidNextTokenException"
    );
    // A token used with a different query is invalid too.
    let err = ct
        .lookup_events()
        .lookup_attributes(iam_source())
        .next_token(&token)
        .send()
        .await
        .expect_err("NextToken of another query");
    assert!(matches!(
        err.into_service_error(),
        LookupEventsError::InvalidNextTokenException(_)
    ));
    let err = ct
        .lookup_events()
        .lookup_attributes(iam_source())
        .lookup_attributes(attr(LookupAttributeKey::EventName, "TagUser"))
        .send()
        .await
        .expect_err("two lookup attributes");
    assert!(
        matches!(
            err.into_service_error(),
            LookupEventsError::InvalidLookupAttributesException(_)
        ),
        "expected InvalidLookupAttributesException"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_delay_hides_fresh_events() {
    let rec = Recorder::start(shared_moto(), "2s");
    let acct = Account::new(shared_moto()).await;
    let ct = rec.cloudtrail(&acct);
    let before = Instant::now();
    rec.iam(&acct)
        .create_user()
        .user_name("delayed")
        .send()
        .await
        .unwrap();
    let now = lookup_all(&ct, None, None, None).await;
    if before.elapsed() < Duration::from_millis(1900) {
        assert!(now.is_empty(), "visible before the delivery delay");
    }
    // The admin view shows it at once.
    assert_eq!(rec.recorded(&acct.id).await.1.len(), 1);
    let events = eventually("the delayed event", Duration::from_secs(20), || {
        let ct = ct.clone();
        async move {
            let evs = lookup_all(&ct, None, None, None).await;
            (!evs.is_empty()).then_some(evs)
        }
    })
    .await;
    assert!(
        before.elapsed() >= Duration::from_secs(2),
        "visible after {:?}",
        before.elapsed()
    );
    assert_eq!(names(&events), ["CreateUser"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_identity_iam_user_and_assumed_role() {
    let rec = Recorder::start(shared_moto(), "0");
    let acct = Account::new(shared_moto()).await;
    let iam = rec.iam(&acct);
    iam.create_user().user_name("bob").send().await.unwrap();
    let key = iam
        .create_access_key()
        .user_name("bob")
        .send()
        .await
        .unwrap();
    let key = key.access_key().unwrap();
    let bob = rec.iam_with(
        &acct,
        Credentials::from_keys(key.access_key_id(), key.secret_access_key(), None),
    );
    bob.create_user().user_name("carol").send().await.unwrap();
    // Without UserName, CreateAccessKey acts on the caller.
    let own = bob.create_access_key().send().await.unwrap();
    assert_eq!(own.access_key().unwrap().user_name(), "bob");

    let (_, recs) = rec.recorded(&acct.id).await;
    let created = |user: &str| {
        recs.iter()
            .find(|r| {
                r["eventName"] == json!("CreateUser")
                    && r["requestParameters"]["userName"] == json!(user)
            })
            .unwrap_or_else(|| panic!("no CreateUser {user} in {recs:#?}"))
            .clone()
    };
    let by_role = created("bob");
    assert_eq!(by_role["userIdentity"]["type"], json!("AssumedRole"));
    assert!(by_role["userIdentity"]["arn"]
        .as_str()
        .unwrap()
        .starts_with(&format!(
            "arn:aws:sts::{}:assumed-role/iam-warden-test/",
            acct.id
        )));
    assert_eq!(
        by_role["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"],
        json!(format!("arn:aws:iam::{}:role/iam-warden-test", acct.id))
    );
    assert!(by_role["userIdentity"].get("userName").is_none());

    let by_bob = created("carol");
    let id = &by_bob["userIdentity"];
    assert_eq!(id["type"], json!("IAMUser"));
    assert_eq!(id["userName"], json!("bob"));
    assert_eq!(id["accountId"], json!(acct.id));
    assert_eq!(
        id["arn"],
        json!(format!("arn:aws:iam::{}:user/bob", acct.id))
    );
    assert_eq!(id["accessKeyId"], json!(key.access_key_id()));
    assert_eq!(by_bob["recipientAccountId"], json!(acct.id));

    // The parser attributes bob's own-key call to bob.
    let own_key = recs
        .iter()
        .find(|r| {
            r["eventName"] == json!("CreateAccessKey")
                && r["userIdentity"]["type"] == json!("IAMUser")
        })
        .expect("bob's CreateAccessKey");
    assert_eq!(own_key["requestParameters"], Value::Null);
    let parsed = parse_record_str(&own_key.to_string()).unwrap();
    assert_eq!(parsed.caller_iam_user(), Some("bob"));
    assert_eq!(
        targets(&parsed, &BaselineNames::default()),
        vec![Target::Reconcile(ReconcileKey::User("bob".into()))]
    );

    // LookupEvents by Username finds bob's calls, with bob's key.
    let ct = rec.cloudtrail(&acct);
    let evs = lookup_all(
        &ct,
        Some(attr(LookupAttributeKey::Username, "bob")),
        None,
        None,
    )
    .await;
    assert_eq!(names(&evs), ["CreateAccessKey", "CreateUser"]);
    assert!(evs
        .iter()
        .all(|e| e.access_key_id() == Some(key.access_key_id())));
}
