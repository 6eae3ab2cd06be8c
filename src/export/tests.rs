use chrono::TimeZone;
use serde_json::Value;

use super::*;
use crate::config::AccessClass;

fn scope() -> Scope {
    Scope {
        account_id: "123456789012".into(),
        partition: "aws".into(),
        region: "eu-west-1".into(),
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap()
}

fn verdict(user: &str, findings: Vec<Finding>) -> UserVerdict {
    UserVerdict {
        user: user.into(),
        class: AccessClass::Console,
        class_source: crate::baseline::checks::ClassSource::Derived,
        exempt: None,
        findings,
        notes: vec![],
    }
}

fn key_finding(check: Check, key: &str, reason: &str) -> Finding {
    let mut f = Finding::new(check, reason);
    f.key_id = Some(key.into());
    f
}

const ALICE: &str = "arn:aws:iam::123456789012:user/staff/alice";
const KEY: &str = concat!("AKIA", "EXAMPLEKEY000001");

#[test]
fn each_finding_gets_its_resource() {
    let policy = "arn:aws:iam::123456789012:policy/admin-all";
    let account = vec![
        Finding::new(Check::PasswordPolicyWeak, "minimum length 8 < 14"),
        Finding::new(Check::PasswordPolicyWeak, "x").with_resource(policy),
        Finding::new(Check::RotationStuck, "r").with_resource("arn:aws:iam::123456789012:role/r"),
        Finding::new(Check::RotationStuck, "g").with_resource("arn:aws:iam::123456789012:group/g"),
        Finding::new(Check::RotationStuck, "root").with_resource("arn:aws:iam::123456789012:root"),
        Finding::new(Check::RotationStuck, "cert")
            .with_resource("arn:aws:iam::123456789012:server-certificate/c"),
    ];
    let users = [
        verdict(
            "alice",
            vec![
                Finding::new(Check::ConsoleWithoutMfa, "no mfa"),
                key_finding(Check::KeyTooOld, KEY, "old"),
            ],
        ),
        verdict("bob", vec![Finding::new(Check::ConsoleUnused, "unused")]),
    ];
    let arns = [Some(ALICE), None];
    let got = collect(&scope(), &account, users.iter().zip(arns));
    let table: Vec<(Check, ResourceKind, &str, Option<&str>)> = vec![
        (
            Check::ConsoleWithoutMfa,
            ResourceKind::User,
            ALICE,
            Some("alice"),
        ),
        (
            Check::ConsoleUnused,
            ResourceKind::User,
            "arn:aws:iam::123456789012:user/bob",
            Some("bob"),
        ),
        (
            Check::KeyTooOld,
            ResourceKind::AccessKey,
            KEY,
            Some("alice"),
        ),
        (
            Check::PasswordPolicyWeak,
            ResourceKind::Account,
            "AWS::::Account:123456789012",
            None,
        ),
        (
            Check::PasswordPolicyWeak,
            ResourceKind::Policy,
            policy,
            None,
        ),
        (
            Check::RotationStuck,
            ResourceKind::Group,
            "arn:aws:iam::123456789012:group/g",
            None,
        ),
        (
            Check::RotationStuck,
            ResourceKind::Account,
            "arn:aws:iam::123456789012:root",
            None,
        ),
        (
            Check::RotationStuck,
            ResourceKind::Role,
            "arn:aws:iam::123456789012:role/r",
            None,
        ),
        (
            Check::RotationStuck,
            ResourceKind::Other,
            "arn:aws:iam::123456789012:server-certificate/c",
            None,
        ),
    ];
    assert_eq!(got.len(), table.len(), "{got:#?}");
    for (check, kind, id, user) in table {
        let f = got
            .iter()
            .find(|f| f.check == check && f.resource_id == id)
            .unwrap_or_else(|| panic!("no {check} on {id}: {got:#?}"));
        assert_eq!(f.kind, kind, "{check} on {id}");
        assert_eq!(f.user.as_deref(), user, "{check} on {id}");
    }
}

#[test]
fn findings_on_one_resource_merge_into_one() {
    // Two report-only keys (no id) of one user: one finding on the user, both reasons.
    let v = verdict(
        "carol",
        vec![
            Finding::new(Check::KeyTooOld, "access key 1 is 100 days old"),
            Finding::new(Check::KeyTooOld, "access key 2 is 120 days old"),
        ],
    );
    let got = collect(&scope(), &[], [(&v, None)]);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(
        got[0].description(),
        "access key 1 is 100 days old; access key 2 is 120 days old"
    );
}

#[test]
fn a_check_that_could_not_be_made_is_not_available_never_failed_or_passed() {
    let root = "arn:aws:iam::123456789012:root";
    let account = [Finding::cannot_check(Check::RootWithoutMfa, "no root row").with_resource(root)];
    let got = collect(&scope(), &account, []);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].cannot_check);
    let a = serde_json::to_value(asff::finding(&got[0], &scope(), now(), now())).unwrap();
    assert_eq!(a["Compliance"]["Status"], "NOT_AVAILABLE");
    let o = ocsf::record(&got[0], &scope(), now(), "0.1.0");
    assert_eq!(
        (
            o["compliance"]["status_id"].as_i64(),
            o["compliance"]["status"].as_str()
        ),
        (Some(0), Some("Unknown"))
    );
    // Merged with a real failure on the same resource, it is a failure.
    let both = [
        Finding::cannot_check(Check::RootWithoutMfa, "no root row").with_resource(root),
        Finding::new(Check::RootWithoutMfa, "root has no MFA").with_resource(root),
    ];
    let got = collect(&scope(), &both, []);
    assert!(!got[0].cannot_check, "{got:#?}");
    let a = serde_json::to_value(asff::finding(&got[0], &scope(), now(), now())).unwrap();
    assert_eq!(a["Compliance"]["Status"], "FAILED");
}

#[test]
fn asff_fields() {
    let v = verdict(
        "alice",
        vec![
            Finding::new(
                Check::ConsoleWithoutMfa,
                "has a console password and no MFA device",
            ),
            key_finding(Check::KeyTooOld, KEY, "old"),
            Finding::new(Check::MfaPolicyMissing, "policy not attached"),
        ],
    );
    let got = collect(&scope(), &[], [(&v, Some(ALICE))]);
    let first = now() - chrono::Duration::days(3);
    let a: Vec<Value> = got
        .iter()
        .map(|f| serde_json::to_value(asff::finding(f, &scope(), first, now())).unwrap())
        .collect();
    let by = |check: &str| {
        a.iter()
            .find(|x| x["GeneratorId"] == format!("iam-warden/{check}"))
            .unwrap_or_else(|| panic!("no {check}"))
    };
    let mfa = by("console-without-mfa");
    let want = serde_json::json!({
        "SchemaVersion": "2018-10-08",
        "Id": format!("iam-warden/123456789012/console-without-mfa/{ALICE}"),
        "ProductArn": "arn:aws:securityhub:eu-west-1:123456789012:product/123456789012/default",
        "ProductName": "iam-warden",
        "CompanyName": "iam-warden",
        "Region": "eu-west-1",
        "GeneratorId": "iam-warden/console-without-mfa",
        "AwsAccountId": "123456789012",
        "Types": ["Software and Configuration Checks/Industry and Regulatory Standards/CIS AWS Foundations Benchmark"],
        "FirstObservedAt": "2026-04-28T12:00:00.000Z",
        "CreatedAt": "2026-04-28T12:00:00.000Z",
        "UpdatedAt": "2026-05-01T12:00:00.000Z",
        "Severity": {"Label": "CRITICAL"},
        "Title": "console-without-mfa: user alice",
        "Description": "has a console password and no MFA device",
        "Resources": [{"Type": "AwsIamUser", "Id": ALICE, "Partition": "aws", "Region": "eu-west-1"}],
        "Compliance": {"Status": "FAILED", "RelatedRequirements": ["CIS AWS Foundations Benchmark v5.0.0/1.9"]},
        "Workflow": {"Status": "NEW"},
        "RecordState": "ACTIVE",
        "ProductFields": {
            "iam-warden/check": "console-without-mfa",
            "iam-warden/fingerprint": mfa["ProductFields"]["iam-warden/fingerprint"],
            "iam-warden/user": "alice",
        },
    });
    assert_eq!(mfa, &want);
    let print = mfa["ProductFields"]["iam-warden/fingerprint"]
        .as_str()
        .unwrap();
    assert!(
        print.len() == 32 && print.bytes().all(|b| b.is_ascii_hexdigit()),
        "{print}"
    );

    let key = by("key-too-old");
    assert_eq!(key["Resources"][0]["Type"], "AwsIamAccessKey");
    assert_eq!(key["Resources"][0]["Id"], KEY);
    assert_eq!(key["Resources"][1]["Type"], "AwsIamUser");
    assert_eq!(key["Resources"][1]["Id"], ALICE);
    assert_eq!(
        key["Compliance"]["RelatedRequirements"],
        serde_json::json!(["CIS AWS Foundations Benchmark v5.0.0/1.13"])
    );
    assert_eq!(key["Severity"]["Label"], "HIGH");

    // A check CIS does not name: a best-practice type, no requirements.
    let pol = by("mfa-policy-missing");
    assert_eq!(
        pol["Types"],
        serde_json::json!(["Software and Configuration Checks/AWS Security Best Practices"])
    );
    assert!(pol["Compliance"].get("RelatedRequirements").is_none());
    assert_eq!(pol["Compliance"]["Status"], "FAILED");
}

#[test]
fn asff_limits_ids_titles_and_descriptions() {
    // A long path: the id is hashed under 512; a long reason is cut at 1024 bytes on a
    // character boundary (multi-byte characters around the cut).
    let long_arn = format!("arn:aws:iam::123456789012:user/{}/u", "p".repeat(600));
    let reason = "é".repeat(700);
    let v = verdict(
        "u",
        vec![Finding::new(Check::ConsoleUnused, reason.clone())],
    );
    let got = collect(&scope(), &[], [(&v, Some(long_arn.as_str()))]);
    let a = asff::finding(&got[0], &scope(), now(), now());
    assert!(a.id.len() <= asff::MAX_ID, "{}", a.id.len());
    assert!(
        a.id.starts_with("iam-warden/123456789012/console-unused/sha256-"),
        "{}",
        a.id
    );
    assert_eq!(
        a.id,
        asff::finding_id("123456789012", "console-unused", &long_arn),
        "stable"
    );
    assert!(a.description.len() <= asff::MAX_DESCRIPTION);
    assert!(a.description.ends_with('…') && a.description.starts_with("éé"));
    assert!(a.title.len() <= asff::MAX_TITLE);
    for (s, max, want) in [
        ("short", 10, "short"),
        ("abcdef", 5, "ab…"),
        ("ééé", 5, "é…"),
        ("ééé", 4, "…"),
        ("ééé", 6, "ééé"),
    ] {
        assert_eq!(truncate(s, max), want, "{s} {max}");
    }
}

#[test]
fn resource_kind_of_arn() {
    for (arn, kind) in [
        ("arn:aws:iam::1:user/a", ResourceKind::User),
        ("arn:aws:iam::1:user/path/a", ResourceKind::User),
        ("arn:aws-cn:iam::1:policy/p", ResourceKind::Policy),
        (
            "arn:aws:iam::aws:policy/AWSCloudShellFullAccess",
            ResourceKind::Policy,
        ),
        ("arn:aws:iam::1:role/r", ResourceKind::Role),
        ("arn:aws:iam::1:group/g", ResourceKind::Group),
        ("arn:aws:iam::1:root", ResourceKind::Account),
        ("arn:aws:iam::1:server-certificate/c", ResourceKind::Other),
        ("arn:aws:iam::1:saml-provider/x", ResourceKind::Other),
        ("not an arn", ResourceKind::Other),
    ] {
        assert_eq!(ResourceKind::of_arn(arn), kind, "{arn}");
    }
}

/// Required attributes of the OCSF schema (schema.ocsf.io/1.1.0) for the objects the
/// records use: the class `compliance_finding` (2003, with its `finding` and `base_event`
/// parents) and the objects `finding_info`, `compliance`, `metadata`, `product`, `cloud`.
/// `resource_details` and `account` have no required attribute; the records fill their
/// recommended `uid`, `type`, `name` and `uid`.
///
/// Checked against the ocsf-schema repository's own files (events/findings/
/// compliance_finding.json: `compliance` required; events/findings/finding.json:
/// `finding_info` required; objects/compliance.json: `standards`; objects/finding_info.json:
/// `uid` (`title` only recommended in the current schema, required in 1.1.0: kept);
/// objects/metadata.json: `product`, `version`; objects/cloud.json: `provider`;
/// objects/product.json: `name` in the current schema where 1.1.0 required `vendor_name`:
/// both are listed, so the records satisfy either version).
const OCSF_REQUIRED: &[(&str, &[&str])] = &[
    (
        "compliance_finding",
        &[
            "activity_id",
            "category_uid",
            "class_uid",
            "compliance",
            "finding_info",
            "metadata",
            "severity_id",
            "time",
            "type_uid",
        ],
    ),
    ("finding_info", &["title", "uid"]),
    ("compliance", &["standards"]),
    ("metadata", &["product", "version"]),
    ("product", &["name", "vendor_name"]),
    ("cloud", &["provider"]),
];

fn ocsf_required(record: &Value) {
    let object = |name: &str| -> Vec<&Value> {
        match name {
            "compliance_finding" => vec![record],
            "product" => vec![&record["metadata"]["product"]],
            other => vec![&record[other]],
        }
    };
    for (name, fields) in OCSF_REQUIRED {
        for o in object(name) {
            for f in *fields {
                let v = &o[f];
                assert!(
                    !v.is_null() && v != "" && v != &serde_json::json!([]),
                    "OCSF {name}.{f} is required: {o}"
                );
            }
        }
    }
    for r in record["resources"].as_array().expect("resources") {
        for f in ["uid", "type", "name"] {
            assert!(r[f].is_string(), "resource.{f}: {r}");
        }
    }
}

#[test]
fn ocsf_records_have_every_required_field() {
    let v = verdict(
        "alice",
        vec![
            Finding::new(Check::ConsoleWithoutMfa, "no mfa"),
            key_finding(Check::KeyTooOld, KEY, "old"),
            Finding::new(Check::MfaPolicyMissing, "policy not attached"),
        ],
    );
    let account = [Finding::new(Check::PasswordPolicyWeak, "weak")];
    let got = collect(&scope(), &account, [(&v, Some(ALICE))]);
    let text = ocsf::to_json(&got, &scope(), now(), "9.9.9");
    let records: Vec<Value> = serde_json::from_str(&text).expect("one JSON array");
    assert_eq!(records.len(), 4);
    for r in &records {
        ocsf_required(r);
        assert_eq!(r["class_uid"], 2003);
        assert_eq!(r["category_uid"], 2);
        assert_eq!(r["type_uid"], 200301);
        assert_eq!(r["activity_id"], 1);
        assert_eq!(r["time"], now().timestamp_millis());
        assert_eq!(r["metadata"]["version"], "1.1.0");
        assert_eq!(r["metadata"]["product"]["version"], "9.9.9");
        assert_eq!(r["cloud"]["provider"], "AWS");
        assert_eq!(r["cloud"]["account"]["uid"], "123456789012");
        assert_eq!(r["cloud"]["region"], "eu-west-1");
        assert_eq!(r["compliance"]["status_id"], 3);
        assert_eq!(
            r["compliance"]["standards"],
            serde_json::json!(["CIS AWS Foundations Benchmark v5.0.0"])
        );
    }
    let by = |check: &str| {
        records
            .iter()
            .find(|r| r["metadata"]["event_code"] == check)
            .unwrap()
    };
    let mfa = by("console-without-mfa");
    assert_eq!(mfa["severity_id"], 5);
    assert_eq!(
        mfa["compliance"]["requirements"],
        serde_json::json!(["1.9"])
    );
    assert_eq!(mfa["compliance"]["control"], "1.9");
    assert_eq!(mfa["resources"][0]["uid"], ALICE);
    assert_eq!(mfa["resources"][0]["type"], "AwsIamUser");
    assert_eq!(mfa["resources"][0]["name"], "alice");
    assert_eq!(
        mfa["finding_info"]["uid"],
        format!("iam-warden/123456789012/console-without-mfa/{ALICE}")
    );
    let pw = by("password-policy-weak");
    assert_eq!(
        pw["compliance"]["requirements"],
        serde_json::json!(["1.7", "1.8"])
    );
    assert_eq!(pw["resources"][0]["type"], "AwsAccount");
    assert_eq!(by("key-too-old")["resources"][0]["name"], KEY);
    assert!(by("mfa-policy-missing")["compliance"]
        .get("control")
        .is_none());
}

/// A 40-character run of the base64 alphabet with a `/`, `+` or mixed case and digits:
/// what a secret access key looks like.
fn has_secret_shape(text: &str) -> bool {
    let b = text.as_bytes();
    let secretish = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    (0..b.len().saturating_sub(39)).any(|i| {
        let w = &b[i..i + 40];
        w.iter().all(|c| secretish(*c))
            && (i == 0 || !secretish(b[i - 1]))
            && (i + 40 == b.len() || !secretish(b[i + 40]))
            && w.iter().any(|c| c.is_ascii_lowercase())
            && w.iter().any(|c| c.is_ascii_uppercase())
            && w.iter().any(|c| c.is_ascii_digit())
    })
}

#[test]
fn no_output_carries_a_secret() {
    assert!(has_secret_shape(concat!(
        "x ",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
        "EXAMPLEKEY y"
    )));
    let v = verdict(
        "alice",
        vec![
            key_finding(
                Check::KeyTooOld,
                KEY,
                &format!("{KEY} is 91 days old; limit 90 days"),
            ),
            key_finding(Check::KeyUnused, KEY, &format!("{KEY} never used")),
        ],
    );
    let got = collect(&scope(), &[], [(&v, Some(ALICE))]);
    let asff: Vec<_> = got
        .iter()
        .map(|f| asff::finding(f, &scope(), now(), now()))
        .collect();
    let text = format!(
        "{}\n{}",
        serde_json::to_string(&asff).unwrap(),
        ocsf::to_json(&got, &scope(), now(), "1")
    );
    assert!(
        text.contains(KEY),
        "the key id is named (it is not a secret)"
    );
    assert!(!has_secret_shape(&text), "{text}");
}

fn job(sweep: securityhub::Sweep, n: usize) -> background::Job {
    let v = verdict("u", vec![Finding::new(Check::ConsoleWithoutMfa, "no mfa")]);
    let one = collect(&scope(), &[], [(&v, None)]);
    background::Job {
        sweep,
        findings: one.into_iter().cycle().take(n).collect(),
    }
}

#[test]
fn pending_exports_newer_replaces_older_and_stays_bounded() {
    use background::{Pending, MAX_PENDING};
    use securityhub::Sweep;
    let user = |u: &str| Sweep::User(u.to_string());
    let sweeps = |p: &mut Pending| {
        let mut out = Vec::new();
        while let Some(j) = p.pop() {
            out.push((j.sweep, j.findings.len()));
        }
        out
    };

    // A newer whole-account export replaces the pending one (and goes last).
    let mut p = Pending::default();
    assert!(p.push(job(Sweep::All, 1)).is_empty());
    assert!(p.push(job(user("a"), 1)).is_empty());
    let out = p.push(job(Sweep::All, 2));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].sweep, Sweep::All);
    assert_eq!(out[0].findings.len(), 1);
    assert_eq!(sweeps(&mut p), vec![(user("a"), 1), (Sweep::All, 2)]);

    // A newer export of a user replaces that user's, not another's.
    let mut p = Pending::default();
    p.push(job(user("a"), 1));
    p.push(job(user("b"), 1));
    let out = p.push(job(user("a"), 3));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].sweep, user("a"));
    assert_eq!(sweeps(&mut p), vec![(user("b"), 1), (user("a"), 3)]);

    // Full: the oldest per-user export goes, never the whole-account one.
    let mut p = Pending::default();
    p.push(job(Sweep::All, 1));
    for i in 0..MAX_PENDING - 1 {
        assert!(p.push(job(user(&format!("u{i}")), 1)).is_empty());
    }
    assert_eq!(p.len(), MAX_PENDING);
    let out = p.push(job(user("late"), 1));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].sweep, user("u0"));
    assert_eq!(p.len(), MAX_PENDING);
    let left = sweeps(&mut p);
    assert_eq!(left[0], (Sweep::All, 1));
    assert_eq!(left.last(), Some(&(user("late"), 1)));
    assert!(p.is_empty());
}

#[test]
fn getfindings_filters_name_ours_or_one_users() {
    use aws_sdk_securityhub::types::{MapFilterComparison, StringFilterComparison};
    let s = scope();
    let all = securityhub::filters(&s, None);
    assert_eq!(
        all.product_arn()[0].value(),
        Some(asff::product_arn(&s).as_str())
    );
    assert_eq!(all.aws_account_id()[0].value(), Some(s.account_id.as_str()));
    assert_eq!(all.record_state()[0].value(), Some("ACTIVE"));
    assert_eq!(all.generator_id()[0].value(), Some(GENERATOR_PREFIX));
    assert_eq!(
        all.generator_id()[0].comparison(),
        Some(&StringFilterComparison::Prefix)
    );
    assert!(all.product_fields().is_empty() && all.updated_at().is_empty());

    // One user's: ProductFields iam-warden/user.
    let one = securityhub::filters(&s, Some("bob"));
    let m = &one.product_fields()[0];
    assert_eq!(
        (m.key(), m.value(), m.comparison()),
        (
            Some("iam-warden/user"),
            Some("bob"),
            Some(&MapFilterComparison::Equals)
        )
    );
}

fn console_finding(reason: &str, severity: crate::baseline::checks::Severity) -> ExportFinding {
    let mut f = Finding::new(Check::ConsoleUnused, reason);
    f.severity = severity;
    let v = verdict("alice", vec![f]);
    collect(&scope(), &[], [(&v, Some(ALICE))]).remove(0)
}

#[test]
fn ages_are_not_changes_limits_are() {
    for (text, want) in [
        (
            "console password last used 97 days ago (2026-01-24); limit 90 days",
            "console password last used # days ago (2026-01-24); limit 90 days",
        ),
        (
            "AKIAEXAMPLE is 400 days old (created 2025-03-27); limit 90 days",
            "AKIAEXAMPLE is # days old (created 2025-03-27); limit 90 days",
        ),
        (
            "k never used; created 91 days ago",
            "k never used; created # days ago",
        ),
        (
            "3 active access keys: a, b, c",
            "3 active access keys: a, b, c",
        ),
        ("limit 90 days", "limit 90 days"),
        ("", ""),
    ] {
        assert_eq!(asff::without_ages(text), want, "{text}");
    }
}

#[test]
fn fingerprint_covers_what_iam_warden_says_not_when() {
    use crate::baseline::checks::Severity as S;
    let print = |f: &ExportFinding, first_days: i64, now_days: i64| {
        let base = now();
        let a = asff::finding(
            f,
            &scope(),
            base - chrono::Duration::days(first_days),
            base + chrono::Duration::days(now_days),
        );
        assert_eq!(
            a.product_fields.get(asff::FINGERPRINT_FIELD),
            Some(&asff::fingerprint(&a)),
            "the finding carries its own fingerprint"
        );
        asff::fingerprint(&a)
    };
    let f = console_finding(
        "console password last used 97 days ago (2026-01-24); limit 90 days",
        S::Medium,
    );
    let same = print(&f, 3, 0);
    // Other times, or only a day older: the same.
    assert_eq!(print(&f, 10, 5), same);
    let older = console_finding(
        "console password last used 98 days ago (2026-01-24); limit 90 days",
        S::Medium,
    );
    assert_eq!(print(&older, 3, 0), same);
    // Anything else it says: another fingerprint.
    for other in [
        console_finding(
            "console password last used 97 days ago (2026-01-24); limit 60 days",
            S::Medium,
        ),
        console_finding(
            "console password last used 97 days ago (2026-01-25); limit 90 days",
            S::Medium,
        ),
        console_finding(
            "console password last used 97 days ago (2026-01-24); limit 90 days",
            S::High,
        ),
        ExportFinding {
            cannot_check: true,
            ..f.clone()
        },
        ExportFinding {
            resource_id: "arn:aws:iam::123456789012:user/bob".into(),
            ..f.clone()
        },
    ] {
        assert_ne!(print(&other, 3, 0), same, "{other:?}");
    }
}

#[test]
fn an_unchanged_finding_is_not_sent_until_its_refresh_is_due() {
    use aws_sdk_securityhub::types::AwsSecurityFinding;
    use securityhub::{fate, refresh_age, Fate};
    let id = "iam-warden/123456789012/console-unused/arn:aws:iam::123456789012:user/alice";
    let held = |print: Option<&str>, updated: Option<String>| {
        AwsSecurityFinding::builder()
            .id(id)
            .set_product_fields(print.map(|p| {
                [(asff::FINGERPRINT_FIELD.to_string(), p.to_string())]
                    .into_iter()
                    .collect()
            }))
            .set_updated_at(updated)
            .build()
    };
    let at = |ago: chrono::Duration| Some(asff::timestamp(now() - ago));
    let day = chrono::Duration::days(1);
    let due = refresh_age(id);
    let ms = chrono::Duration::milliseconds(1);
    let cases: Vec<(&str, Option<AwsSecurityFinding>, Fate)> = vec![
        ("not in Security Hub", None, Fate::New),
        (
            "exported before fingerprints",
            Some(held(None, at(day))),
            Fate::Changed,
        ),
        (
            "says something else",
            Some(held(Some("other"), at(day))),
            Fate::Changed,
        ),
        (
            "the same, a day ago",
            Some(held(Some("p"), at(day))),
            Fate::Unchanged {
                updated: now() - day,
            },
        ),
        (
            "the same, just before its refresh",
            Some(held(Some("p"), at(due - ms))),
            Fate::Unchanged {
                updated: now() - due + ms,
            },
        ),
        (
            "the same, refresh due",
            Some(held(Some("p"), at(due))),
            Fate::Refresh,
        ),
        (
            "the same, 89 days ago",
            Some(held(Some("p"), at(day * 89))),
            Fate::Refresh,
        ),
        (
            "the same, unreadable time",
            Some(held(Some("p"), Some("yesterday".into()))),
            Fate::Refresh,
        ),
        (
            "the same, no time",
            Some(held(Some("p"), None)),
            Fate::Refresh,
        ),
    ];
    for (what, earlier, want) in cases {
        assert_eq!(fate(id, "p", earlier.as_ref(), now()), want, "{what}");
    }
}

#[test]
fn refreshes_are_spread_over_30_to_60_days_by_id() {
    use securityhub::{refresh_age, REFRESH_AFTER_DAYS, REFRESH_SPREAD_DAYS};
    let lo = chrono::Duration::days(REFRESH_AFTER_DAYS);
    let hi = lo + chrono::Duration::days(REFRESH_SPREAD_DAYS);
    assert!(
        hi < chrono::Duration::days(90),
        "Security Hub keeps 90 days"
    );
    let ages: Vec<chrono::Duration> = (0..1000)
        .map(|i| refresh_age(&format!("iam-warden/123456789012/key-unused/AKIA{i:016}")))
        .collect();
    assert!(ages.iter().all(|a| *a >= lo && *a < hi));
    assert_eq!(
        refresh_age("x"),
        refresh_age("x"),
        "the same for an id, always"
    );
    // Spread: each of the 30 days gets some of 1,000 ids, none more than twice its share.
    let mut per_day = [0usize; 30];
    for a in &ages {
        per_day[((*a - lo).num_days()) as usize] += 1;
    }
    assert!(per_day.iter().all(|n| (1..=67).contains(n)), "{per_day:?}");
}
