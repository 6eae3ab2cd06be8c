use std::path::Path;

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
    // AWS's 7 actions and the 2 a user without MFA needs to change an expired password.
    assert_eq!(c.baseline.mfa_policy.allowed_without_mfa.len(), 9);
    for a in ["iam:ChangePassword", "iam:GetAccountPasswordPolicy"] {
        assert!(
            c.baseline
                .mfa_policy
                .allowed_without_mfa
                .iter()
                .any(|x| x == a),
            "{a}"
        );
    }
    assert!(c.baseline.password_policy.reset_expired);
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
    for bad in ["0", "101"] {
        let e = err_of(&format!(
            "[sources.cloudtrail]\nmax_concurrent_accounts = {bad}\n"
        ));
        assert!(
            e.contains(&format!(
                "sources.cloudtrail.max_concurrent_accounts = {bad}"
            )) && e.contains("1..=100"),
            "{e}"
        );
    }
    let e = err_of("[sources.cloudtrail]\nmax_concurrent_accounts = \"four\"\n");
    assert!(e.contains("max_concurrent_accounts"), "{e}");
}

#[test]
fn errors_are_one_line_whatever_the_input() {
    // Found by tests/fuzz.rs: a TOML syntax error quoted the source lines, a quoted key
    // or a duration with a line break was echoed raw.
    let e = err_of("a\na");
    assert!(!e.contains('\n'), "{e}");
    assert!(
        e.contains("TOML parse error at line 1") && e.contains("expected"),
        "{e}"
    );
    let e = err_of("[aws]\n\"\\r\\n\" = \"\"\n");
    assert!(!e.contains(['\n', '\r']), "{e}");
    assert!(e.contains("unknown key `\\r\\n`"), "{e}");
    let e = err_of("[resync]\ninterval = \"\\n\"\n");
    assert!(!e.contains('\n') && e.contains("resync.interval"), "{e}");
    let e = "\n".parse::<Secs>().unwrap_err();
    assert_eq!(
        e,
        "`\\n` is not a duration; write a whole number with a unit, e.g. 90s, 10m, 1h, 2d"
    );
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
fn vpc_endpoint_and_vpc_ids_are_validated() {
    let c = Config::from_toml_str(
        "[baseline.source_ip_policy]\nallowed_vpc_endpoints = [\"vpce-0a1b2c3d\", \"vpce-0a1b2c3d4e5f67890\"]\nallowed_vpcs = [\"vpc-11223344\"]\n",
    )
    .unwrap();
    assert_eq!(c.baseline.source_ip_policy.allowed_vpc_endpoints.len(), 2);
    for (toml, bad) in [
        ("allowed_vpc_endpoints = [\"vpc-11223344\"]", "vpc-11223344"),
        ("allowed_vpc_endpoints = [\"vpce-XYZ\"]", "vpce-XYZ"),
        ("allowed_vpcs = [\"vpce-0a1b2c3d\"]", "vpce-0a1b2c3d"),
        ("allowed_vpcs = [\"vpc-123\"]", "vpc-123"),
    ] {
        let e = err_of(&format!("[baseline.source_ip_policy]\n{toml}\n"));
        assert!(e.contains(bad) && !e.contains('\n'), "{e}");
        assert!(e.contains("baseline.source_ip_policy.allowed_vpc"), "{e}");
    }
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
    let c = Config::from_toml_str("mode = \"enforce\"\n[resync]\ninterval = \"15m\"\n").unwrap();
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
        "rotation.kms_key_id",
        "notifications.default_owner",
        "notifications.webhook_url",
        "notifications.webhook_secret_file",
        "notifications.sns_topic_arn",
        "safety.preview_window",
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

#[test]
fn delivery_names_follow_each_store_rules() {
    use crate::config::{delivery_name, Delivery};
    let t = "iam-warden/{user}/access-key";
    // (template, user, delivery, Ok(name) or a fragment of the error)
    let cases: &[(&str, &str, Delivery, std::result::Result<&str, &str>)] = &[
        (
            t,
            "alice",
            Delivery::SecretsManager,
            Ok("iam-warden/alice/access-key"),
        ),
        (
            t,
            "a+b=c@d.e-f_g",
            Delivery::SecretsManager,
            Ok("iam-warden/a+b=c@d.e-f_g/access-key"),
        ),
        (t, "a,b", Delivery::SecretsManager, Err("contains ','")),
        (
            "iam-warden/access-key",
            "alice",
            Delivery::SecretsManager,
            Err("must contain {user}"),
        ),
        (
            "{user}/{owner}",
            "alice",
            Delivery::SecretsManager,
            Err("only placeholder"),
        ),
        (
            "/iam-warden/{user}/access-key",
            "alice",
            Delivery::Ssm,
            Ok("/iam-warden/alice/access-key"),
        ),
        (t, "alice", Delivery::Ssm, Err("must start with '/'")),
        (
            "/iam-warden/{user}",
            "a+b",
            Delivery::Ssm,
            Err("contains '+'"),
        ),
        ("/aws/{user}", "alice", Delivery::Ssm, Err("reserves")),
        ("{user}-key", "ssm-user", Delivery::Ssm, Err("reserves")),
    ];
    for (template, user, delivery, want) in cases {
        let got = delivery_name(template, user, *delivery);
        match (want, &got) {
            (Ok(w), Ok(g)) => assert_eq!(w, g, "{template} {user}"),
            (Err(w), Err(g)) => assert!(g.contains(w), "{template} {user}: {g}"),
            _ => panic!("{template} {user} {delivery:?}: want {want:?}, got {got:?}"),
        }
    }
    let long = "x".repeat(520);
    assert!(delivery_name(
        &long.replace('x', "y").replacen("y", "{user}", 1),
        "u",
        Delivery::SecretsManager
    )
    .unwrap_err()
    .contains("at most 512"));
}

#[test]
fn rotation_and_notification_settings_are_checked() {
    for (toml, fragment) in [
        (
            "[rotation]\nwarn_days = 90",
            "rotation.warn_days = 90 must be less than",
        ),
        ("[rotation]\ndelivery = \"ssm\"", "must start with '/'"),
        (
            "[rotation]\ndrain_quiet = \"10s\"",
            "rotation.drain_quiet (seconds) = 10",
        ),
        ("[rotation]\ndelivery = \"vault\"", "rotation.delivery"),
        (
            "[notifications]\nwebhook_url = \"https://h.example\"",
            "webhook_secret_file is not",
        ),
        (
            "[notifications]\nsns_topic_arn = \"topic\"",
            "not an SNS topic ARN",
        ),
        (
            "[notifications]\nmax_attempts = 0",
            "notifications.max_attempts = 0",
        ),
    ] {
        let e = err_of(toml);
        assert!(e.contains(fragment), "{toml:?}: {e}");
    }
    let ok = Config::from_toml_str(
        "[rotation]\ndelivery = \"ssm\"\nname_template = \"/iam-warden/{user}/access-key\"\n\
         [notifications]\nwebhook_url = \"https://h.example\"\nwebhook_secret_file = \"/etc/k\"",
    )
    .unwrap();
    assert_eq!(ok.rotation.delivery, Delivery::Ssm);
    assert!(Config::default().rotation.enabled);
    assert_eq!(
        Config::default().rotation.delivery,
        Delivery::SecretsManager
    );
}

#[test]
fn store_retry_is_a_checked_duration() {
    assert_eq!(Config::default().rotation.store_retry, STORE_RETRY);
    assert_eq!(STORE_RETRY.get().as_secs(), 86_400);
    for (value, want) in [
        ("\"1m\"", Ok(60)),
        ("\"12h\"", Ok(12 * 3600)),
        ("\"30d\"", Ok(30 * 86_400)),
        ("3600", Ok(3600)),
        ("0", Err("rotation.store_retry = \"0s\" is out of range")),
        (
            "\"0d\"",
            Err("rotation.store_retry = \"0s\" is out of range"),
        ),
        (
            "\"59s\"",
            Err("rotation.store_retry = \"59s\" is out of range"),
        ),
        (
            "\"31d\"",
            Err("rotation.store_retry = \"31d\" is out of range"),
        ),
        ("\"soon\"", Err("rotation.store_retry")),
        ("-5", Err("rotation.store_retry")),
    ] {
        let toml = format!("[rotation]\nstore_retry = {value}");
        match want {
            Ok(secs) => {
                let c = Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
                assert_eq!(c.rotation.store_retry.get().as_secs(), secs, "{toml}");
            }
            Err(fragment) => {
                let e = err_of(&toml);
                assert!(e.contains(fragment), "{toml}: {e}");
                assert!(!e.contains('\n'), "one line: {e}");
            }
        }
    }
    // The range error says how to fix it.
    let e = err_of("[rotation]\nstore_retry = 0");
    assert!(
        e.contains("from \"1m\" to \"30d\"") && e.contains("\"1d\""),
        "{e}"
    );
}

#[test]
fn securityhub_region_must_look_like_a_region() {
    for (region, ok) in [
        ("us-east-1", true),
        ("eu-west-1", true),
        ("us-gov-west-1", true),
        ("cn-northwest-1", true),
        ("ap-southeast-4", true),
        ("us-isob-east-1", true),
        ("US-EAST-1", false),
        ("us-east", false),
        ("useast1", false),
        ("us-east-1 ", false),
        ("us_east_1", false),
        ("https://securityhub.us-east-1.amazonaws.com", false),
        ("us--1", false),
        ("us-east-123", false),
    ] {
        assert_eq!(validate::is_region_name(region), ok, "{region:?}");
    }
    let e = err_of("[export.securityhub]\nenabled = true\nregion = \"eu west 1\"\n");
    assert!(
        e.contains("export.securityhub.region = \"eu west 1\"")
            && e.contains("eu-west-1")
            && !e.contains('\n'),
        "{e}"
    );
    // Absent or empty: aws.region.
    for toml in [
        "[export.securityhub]\nenabled = true\n",
        "[export.securityhub]\nregion = \"\"\n",
        "[export.securityhub]\nregion = \"eu-central-2\"\n",
    ] {
        assert!(Config::from_toml_str(toml).is_ok(), "{toml}");
    }
}

#[test]
fn preview_window_is_off_by_default_and_bounded() {
    let mut cfg = Config::default();
    assert_eq!(cfg.safety.preview_window, None);
    for (window, ok) in [
        (0, false),
        (1, true),
        (86_400, true),
        (90 * 86_400, true),
        (90 * 86_400 + 1, false),
    ] {
        cfg.safety.preview_window = Some(Secs::from_secs(window));
        let r = cfg.validate();
        assert_eq!(r.is_ok(), ok, "{window}: {r:?}");
        if let Err(e) = r {
            let e = e.to_string();
            assert!(
                e.contains("safety.preview_window") && e.contains("90d"),
                "{e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}
