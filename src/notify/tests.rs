use std::time::Duration;

use chrono::TimeZone;

use super::webhook::{backoff, display_url, hex, hmac_sha256};
use super::*;

fn notice() -> Notice {
    Notice {
        time: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
        account: "123456789012".into(),
        user: "alice".into(),
        owner: Some("alice@example.com".into()),
        event: NoticeEvent::KeyRotated,
        access_key_id: Some(concat!("AKIA", "EXAMPLE000000001").into()),
        reason: "key older than 90 days".into(),
        due: Some(Utc.with_ymd_and_hms(2026, 12, 15, 10, 0, 0).unwrap()),
    }
}

#[test]
fn hmac_sha256_matches_the_rfc_4231_test_vectors() {
    // RFC 4231, test cases 1 and 2.
    let cases: [(&[u8], &[u8], &str); 2] = [
        (
            &[0x0b; 20],
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
    ];
    for (key, data, want) in cases {
        assert_eq!(hex(&hmac_sha256(key, data)), want);
    }
    // A key longer than the block (131 bytes of 0xaa), RFC 4231 test case 6.
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn the_signature_header_is_sha256_hex_of_the_exact_body() {
    let key = SigningKey::from_bytes(b"Jefe");
    assert_eq!(
        key.signature(b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // One byte more is another signature.
    assert_ne!(
        key.signature(b"what do ya want for nothing? "),
        key.signature(b"what do ya want for nothing?")
    );
    assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
}

#[test]
fn the_body_is_the_notice_with_its_schema_and_nothing_else() {
    let n = notice();
    let body = n.to_json();
    assert!(!body.contains('\n'), "one line: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "access_key_id",
            "account",
            "due",
            "event",
            "owner",
            "reason",
            "schema",
            "time",
            "user"
        ]
    );
    assert_eq!(v["schema"], SCHEMA);
    assert_eq!(v["event"], "key-rotated");
    assert_eq!(v["user"], "alice");
    assert_eq!(v["owner"], "alice@example.com");
    assert_eq!(v["access_key_id"], concat!("AKIA", "EXAMPLE000000001"));
    assert_eq!(v["time"], "2026-12-01T10:00:00Z");
    assert_eq!(v["due"], "2026-12-15T10:00:00Z");
    // It reads back into the same notice (receivers in Rust can use the type).
    let back: Notice = serde_json::from_value(v).unwrap();
    assert_eq!(back, n);
    // Optional fields are null, not missing.
    let bare = Notice {
        access_key_id: None,
        due: None,
        owner: None,
        ..notice()
    };
    let v: serde_json::Value = serde_json::from_str(&bare.to_json()).unwrap();
    assert!(v["access_key_id"].is_null() && v["due"].is_null() && v["owner"].is_null());
}

#[test]
fn event_names_are_stable_and_match_the_metric_catalogue() {
    let names: Vec<&str> = NoticeEvent::ALL.iter().map(|e| e.as_str()).collect();
    assert_eq!(names, crate::metrics::NOTICE_EVENTS);
    for e in NoticeEvent::ALL {
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            serde_json::Value::String(e.as_str().into())
        );
    }
}

#[test]
fn logged_urls_lose_credentials_query_and_fragment() {
    let cases = [
        (
            "https://hooks.example.com/x/y?token=s3cr3t",
            "https://hooks.example.com/x/y",
        ),
        (
            "https://user:pw@hooks.example.com:8443/h#frag",
            "https://hooks.example.com:8443/h",
        ),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://h?x=1", "http://h"),
    ];
    for (url, want) in cases {
        assert_eq!(display_url(url), want, "{url}");
    }
}

#[test]
fn backoff_is_full_jitter_under_a_capped_exponential() {
    let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
    for attempt in 1..=40 {
        let ceiling = (base * 2u32.pow((attempt - 1).min(10))).min(cap);
        for _ in 0..50 {
            let d = backoff(attempt, base, cap);
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
    }
    // Jitter: not always the same value.
    let seen: std::collections::BTreeSet<_> = (0..50).map(|_| backoff(5, base, cap)).collect();
    assert!(seen.len() > 1, "{seen:?}");
}

#[test]
fn the_owner_is_the_tag_else_the_default() {
    let cfg = Notifications {
        default_owner: Some("security@example.com".into()),
        ..Notifications::default()
    };
    let tags = |v: &[(&str, &str)]| -> Tags {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let cases: [(Tags, &Notifications, Option<&str>); 4] = [
        (
            tags(&[("iam-warden/owner", "bob@example.com")]),
            &cfg,
            Some("bob@example.com"),
        ),
        (
            tags(&[("iam-warden/owner", "  ")]),
            &cfg,
            Some("security@example.com"),
        ),
        (tags(&[("team", "x")]), &cfg, Some("security@example.com")),
        (tags(&[]), &Notifications::default(), None),
    ];
    for (t, c, want) in cases {
        assert_eq!(owner_of(c, &t).as_deref(), want, "{t:?}");
    }
}

#[test]
fn the_signing_key_file_is_read_trimmed_and_its_problems_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("key");
    std::fs::write(&good, "Jefe\n").unwrap();
    let key = SigningKey::read(&good).unwrap();
    assert_eq!(
        key.signature(b"what do ya want for nothing?"),
        SigningKey::from_bytes(b"Jefe").signature(b"what do ya want for nothing?"),
        "the trailing newline is not part of the key"
    );

    let missing = dir.path().join("nope");
    let e = SigningKey::read(&missing).unwrap_err().to_string();
    assert!(
        e.contains(&missing.display().to_string()) && e.contains("no such file"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");

    // Unreadable (a directory; permission bits do not stop root, who runs the tests).
    let e = SigningKey::read(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains(&dir.path().display().to_string()) && e.contains("cannot read it"),
        "{e}"
    );

    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").unwrap();
    let e = SigningKey::read(&empty).unwrap_err().to_string();
    assert!(
        e.contains(&empty.display().to_string()) && e.contains("is empty"),
        "{e}"
    );
}

#[test]
fn the_sns_subject_is_short_printable_ascii() {
    let n = Notice {
        user: format!("{}é\n", "u".repeat(200)),
        ..notice()
    };
    let s = sns_subject(&n);
    assert!(s.len() <= 100, "{}", s.len());
    assert!(s.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{s}");
    assert_eq!(sns_subject(&notice()), "iam-warden: key-rotated for alice");
}

#[test]
fn the_cli_drains_for_every_attempt_and_backoff_at_most() {
    let cases = [
        (5, 5, Duration::from_millis(28_750)), // 5 × 5 s + 0.25 + 0.5 + 1 + 2 s
        (1, 1, Duration::from_secs(1)),
        (2, 3, Duration::from_millis(6_750)),
        // Backoff ceilings stop growing at 30 s.
        (
            1,
            20,
            Duration::from_secs(20)
                + Duration::from_millis(250 + 500 + 1_000 + 2_000 + 4_000 + 8_000 + 16_000)
                + Duration::from_secs(30) * 12,
        ),
    ];
    for (timeout, attempts, want) in cases {
        let cfg = Notifications {
            timeout: crate::config::Secs::from_secs(timeout),
            max_attempts: attempts,
            ..Notifications::default()
        };
        assert_eq!(Channels::worst_case(&cfg), want, "{timeout} s × {attempts}");
    }
}

#[test]
fn the_topic_region_comes_from_its_arn() {
    let cases = [
        ("arn:aws:sns:eu-west-1:123456789012:t", Some("eu-west-1")),
        (
            "arn:aws-us-gov:sns:us-gov-west-1:123456789012:t",
            Some("us-gov-west-1"),
        ),
        ("arn:aws:sns::123456789012:t", None),
        ("not-an-arn", None),
    ];
    for (arn, want) in cases {
        assert_eq!(sns::topic_region(arn), want, "{arn}");
    }
}
