use super::*;
use crate::baseline::checks::ClassSource;
use crate::config::AccessClass;

fn verdict(user: &str, findings: Vec<Finding>) -> UserVerdict {
    UserVerdict {
        user: user.into(),
        class: AccessClass::Console,
        class_source: ClassSource::Derived,
        exempt: None,
        findings,
        notes: vec![],
    }
}

fn strong() -> PasswordPolicyState {
    PasswordPolicyState {
        minimum_length: 14,
        reuse_prevention: 24,
        ..Default::default()
    }
}

fn status(r: &[ControlResult], id: &str) -> Status {
    r.iter().find(|c| c.id == id).unwrap().status
}

#[test]
fn every_control_once_in_order_with_manual_ones_never_passed() {
    let ids: Vec<&str> = CONTROLS.iter().map(|c| c.id).collect();
    let want: Vec<String> = (1..=21).map(|i| format!("1.{i}")).collect();
    assert_eq!(ids, want);
    let p = strong();
    let facts = Facts {
        account_read: true,
        password_policy: Some(&p),
        ..Default::default()
    };
    let r = evaluate(&[], &[], &facts, &Config::default());
    for id in ["1.1", "1.2", "1.17"] {
        assert_eq!(status(&r, id), Status::Manual, "{id}");
    }
    // Every automated control is evidenced by at least one check (1.7, 1.8 by the
    // password policy check), so none passes without a check behind it.
    for c in CONTROLS.iter().filter(|c| !c.manual) {
        assert!(!checks_of(c.id).is_empty(), "{} has no check", c.id);
    }
    assert!(r
        .iter()
        .filter(|c| !CONTROLS.iter().any(|k| k.id == c.id && k.manual))
        .all(|c| c.status == Status::Pass));
}

#[test]
fn fail_cannot_check_and_not_applicable() {
    let p = PasswordPolicyState {
        minimum_length: 8,
        reuse_prevention: 24,
        ..Default::default()
    };
    let mut na = BTreeMap::new();
    na.insert("1.18", "no server certificates stored".to_string());
    na.insert("1.9", "no console users".to_string());
    let facts = Facts {
        account_read: true,
        password_policy: Some(&p),
        not_applicable: na,
    };
    let users = vec![verdict(
        "bob",
        vec![Finding::new(Check::TwoActiveKeys, "2 active access keys")],
    )];
    let account = vec![
        Finding::cannot_check(Check::RootAccessKey, "no root row")
            .with_resource("arn:aws:iam::1:root"),
        Finding::new(Check::PolicyFullAdmin, "god allows *").with_resource("arn:p1"),
        Finding::cannot_check(Check::PolicyFullAdmin, "cannot evaluate x").with_resource("arn:p2"),
    ];
    let r = evaluate(&users, &account, &facts, &Config::default());
    assert_eq!(status(&r, "1.7"), Status::Fail);
    assert_eq!(status(&r, "1.8"), Status::Pass);
    assert_eq!(status(&r, "1.3"), Status::CannotCheck);
    let c12 = r.iter().find(|c| c.id == "1.12").unwrap();
    assert_eq!(c12.status, Status::Fail);
    assert_eq!(c12.items[0].subject, "user bob");
    let c15 = r.iter().find(|c| c.id == "1.15").unwrap();
    assert_eq!(c15.status, Status::Fail, "a failure wins over cannot-check");
    assert_eq!(c15.items.len(), 2, "both listed: {:?}", c15.items);
    assert_eq!(status(&r, "1.18"), Status::NotApplicable);
    assert_eq!(status(&r, "1.9"), Status::NotApplicable);
    // A failing control is never "not applicable".
    let mut facts = facts.clone();
    facts.not_applicable.insert("1.12", "x".into());
    let r = evaluate(&users, &account, &facts, &Config::default());
    assert_eq!(status(&r, "1.12"), Status::Fail);
}

#[test]
fn without_account_facts_or_password_policy_nothing_passes() {
    let facts = Facts::default();
    let r = evaluate(&[], &[], &facts, &Config::default());
    for id in [
        "1.3", "1.4", "1.5", "1.6", "1.15", "1.16", "1.18", "1.19", "1.20", "1.21",
    ] {
        assert_eq!(status(&r, id), Status::CannotCheck, "{id}");
    }
    assert_eq!(status(&r, "1.7"), Status::Fail);
    assert_eq!(status(&r, "1.8"), Status::Fail);
    // User controls are judged from the users.
    assert_eq!(status(&r, "1.9"), Status::Pass);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json[2]["status"], "cannot-check");
    assert_eq!(json[19]["informational"], true);
}
