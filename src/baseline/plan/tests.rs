use super::*;
use crate::baseline::testkit::*;
use crate::config::Attach;
use crate::inventory::ManagedPolicyState;
use chrono::Duration;

fn names(p: &UserPlan) -> Vec<&'static str> {
    p.actions.iter().map(|a| a.action.name()).collect()
}

fn compliant_account(cfg: &Config) -> AccountSnapshot {
    let mut snap = snap_with_baseline_groups();
    for d in desired_policies(cfg).unwrap() {
        snap.policies.insert(
            d.name.clone(),
            ManagedPolicyState {
                name: d.name.clone(),
                arn: policy_arn(&d.name),
                path: "/iam-warden/".into(),
                default_version_id: Some("v1".into()),
                default_document: Some(d.document.clone()),
                version_ids: vec!["v1".into()],
            },
        );
    }
    snap.password_policy = Some(stronger_password_policy(None, cfg));
    snap
}

#[test]
fn user_table() {
    // The baseline without rotation (it is on by default; its table is rotation::tests).
    let mut cfg = cfg();
    cfg.rotation.enabled = false;
    let snap = compliant_account(&cfg);
    let table: Vec<(&str, UserState, Vec<&str>)> = vec![
        (
            "compliant console user",
            user("a").password(Some(1), 10).mfa().in_baseline().build(),
            vec![],
        ),
        (
            "console user not in group",
            user("a").password(Some(1), 10).mfa().build(),
            vec!["add_user_to_group"],
        ),
        (
            "compliant programmatic",
            user("s").keys(&[key("AKIA1", 10, Some(1))]).build(),
            vec![],
        ),
        (
            "programmatic with console",
            user("s")
                .tag(ACCESS_TAG, "programmatic")
                .password(Some(1), 10)
                .keys(&[key("AKIA1", 10, Some(1))])
                .build(),
            vec!["delete_login_profile"],
        ),
        (
            "unused console",
            user("a")
                .password(Some(60), 100)
                .mfa()
                .in_baseline()
                .build(),
            vec!["delete_login_profile"],
        ),
        (
            "unused key",
            user("s").keys(&[key("AKIA1", 100, Some(50))]).build(),
            vec!["deactivate_access_key"],
        ),
        (
            "key used 45 days ago stays",
            user("s").keys(&[key("AKIA1", 100, Some(45))]).build(),
            vec![],
        ),
        (
            "old but used key: finding only",
            user("s").keys(&[key("AKIA1", 200, Some(1))]).build(),
            vec![],
        ),
        (
            "inactive without mark: start the clock",
            user("s")
                .keys(&[inactive(key("AKIA1", 100, Some(76)))])
                .build(),
            vec!["tag_user"],
        ),
        (
            "inactive 31 days: delete",
            user("s")
                .keys(&[inactive(key("AKIA1", 100, Some(76)))])
                .tag(&mark_tag("AKIA1"), &mark_value(31, 100))
                .build(),
            vec!["delete_access_key"],
        ),
        (
            "inactive 30 days: keep",
            user("s")
                .keys(&[inactive(key("AKIA1", 100, Some(76)))])
                .tag(&mark_tag("AKIA1"), &mark_value(30, 100))
                .build(),
            vec![],
        ),
        (
            "active again: clear the mark",
            user("s")
                .keys(&[key("AKIA1", 100, Some(1))])
                .tag(&mark_tag("AKIA1"), &mark_value(3, 100))
                .build(),
            vec!["untag_user"],
        ),
        (
            "key gone: clear the mark",
            user("s")
                .tag(&mark_tag("AKIAGONE"), &mark_value(3, 100))
                .build(),
            vec!["untag_user"],
        ),
        (
            "malformed mark never deletes",
            user("s")
                .keys(&[key("AKIA1", 10, Some(1))])
                .tag(&mark_tag("AKIA1"), "whenever")
                .build(),
            vec![],
        ),
        (
            "exempt user untouched",
            user("b")
                .tag(EXEMPT_TAG, "true")
                .password(None, 300)
                .keys(&[key("AKIA1", 300, None)])
                .build(),
            vec![],
        ),
    ];
    for (name, u, want) in table {
        let p = plan_user(&u, &snap, &cfg, now()).unwrap();
        assert_eq!(names(&p), want, "{name}: {:?}", p.actions);
    }
}

fn mark_tag(id: &str) -> String {
    format!("{INACTIVE_SINCE_TAG_PREFIX}{id}")
}

fn mark_value(since_days: i64, created_days: i64) -> String {
    InactiveMark::tag_value(days_ago(since_days), days_ago(created_days))
}

#[test]
fn report_keys_are_matched_to_their_mark_by_creation_time() {
    let cfg = cfg();
    let snap = compliant_account(&cfg);
    let mut k = inactive(key("x", 100, Some(90)));
    k.id = None;
    let u = user("s")
        .keys(&[k])
        .tag(&mark_tag("AKIAFROMTAG"), &mark_value(40, 100))
        .build();
    let p = plan_user(&u, &snap, &cfg, now()).unwrap();
    match &p.actions[..] {
        [PlannedAction {
            action: Action::DeleteAccessKey { key, .. },
            ..
        }] => assert_eq!(key.id.as_deref(), Some("AKIAFROMTAG")),
        other => panic!("{other:?}"),
    }
    // A mark for a key created at another time is not this key's: it is cleared and the key gets its own.
    let mut k = inactive(key("x", 100, Some(90)));
    k.id = None;
    let u = user("s")
        .keys(&[k])
        .tag(&mark_tag("AKIAOTHER"), &mark_value(40, 200))
        .build();
    let names: Vec<_> = plan_user(&u, &snap, &cfg, now())
        .unwrap()
        .actions
        .iter()
        .map(|a| a.action.name())
        .collect();
    assert_eq!(names, vec!["tag_user", "untag_user"]);
}

#[test]
fn key_actions_name_exactly_one_key() {
    let cfg = cfg();
    let snap = compliant_account(&cfg);
    let u = user("s")
        .keys(&[
            key("AKIAUSED", 100, Some(1)),
            key("AKIAIDLE", 100, Some(80)),
        ])
        .build();
    let p = plan_user(&u, &snap, &cfg, now()).unwrap();
    assert_eq!(p.actions.len(), 1);
    match &p.actions[0].action {
        Action::DeactivateAccessKey {
            key, unused_days, ..
        } => {
            assert_eq!(key.id.as_deref(), Some("AKIAIDLE"));
            assert_eq!(key.slot, 2);
            assert_eq!(*unused_days, Some(45));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn console_users_keys_are_deactivated_only_when_configured() {
    let mut cfg = cfg();
    let snap = compliant_account(&cfg);
    let u = user("c")
        .tag(ACCESS_TAG, "console")
        .password(Some(1), 10)
        .mfa()
        .in_baseline()
        .keys(&[key("AKIAC", 10, Some(1))])
        .build();
    assert!(plan_user(&u, &snap, &cfg, now())
        .unwrap()
        .actions
        .is_empty());
    cfg.baseline.credentials.deactivate_keys_of_console_users = true;
    assert_eq!(
        names(&plan_user(&u, &snap, &cfg, now()).unwrap()),
        vec!["deactivate_access_key"]
    );
}

#[test]
fn quotas_give_findings_not_actions() {
    let cfg = cfg();
    let snap = compliant_account(&cfg);
    let mut b = user("a").password(Some(1), 10).mfa();
    for i in 0..10 {
        b = b.group(&format!("g{i}"));
    }
    let p = plan_user(&b.build(), &snap, &cfg, now()).unwrap();
    assert!(p.actions.is_empty());
    assert!(p
        .verdict
        .findings
        .iter()
        .any(|f| f.check == Check::QuotaReached && f.reason.contains("10 groups")));
    let mut ucfg = cfg.clone();
    ucfg.baseline.attach = Attach::User;
    let mut b = user("a").password(Some(1), 10).mfa();
    for i in 0..10 {
        b = b.attached(&policy_arn(&format!("p{i}")));
    }
    let p = plan_user(&b.build(), &snap, &ucfg, now()).unwrap();
    assert!(p.actions.is_empty());
    assert!(p
        .verdict
        .findings
        .iter()
        .any(|f| f.check == Check::QuotaReached));
    let p = plan_user(
        &user("a").password(Some(1), 10).mfa().build(),
        &snap,
        &ucfg,
        now(),
    )
    .unwrap();
    assert_eq!(names(&p), vec!["attach_user_policy"]);
}

#[test]
fn account_level_creates_repairs_and_is_quiet_when_compliant() {
    let cfg = cfg();
    let empty = AccountSnapshot::default();
    let p = plan_account(&empty, &cfg, now()).unwrap();
    let got: Vec<_> = p.account_actions.iter().map(|a| a.action.name()).collect();
    assert_eq!(
        got,
        vec![
            "create_policy",
            "create_group",
            "attach_group_policy",
            "update_password_policy"
        ]
    );

    let snap = compliant_account(&cfg);
    assert!(plan_account(&snap, &cfg, now()).unwrap().is_empty());

    // Someone edits the policy: a new version; with 5 versions the oldest non-default goes.
    let mut edited = snap.clone();
    let pol = edited.policies.get_mut("iam-warden-require-mfa").unwrap();
    pol.default_document = Some(serde_json::json!({"Version":"2012-10-17","Statement":[]}));
    pol.version_ids = vec!["v1", "v2", "v3", "v4", "v5"]
        .into_iter()
        .map(String::from)
        .collect();
    pol.default_version_id = Some("v1".into());
    let p = plan_account(&edited, &cfg, now()).unwrap();
    match &p.account_actions[0].action {
        Action::CreatePolicyVersion { delete_version, .. } => {
            assert_eq!(delete_version.as_deref(), Some("v2"))
        }
        other => panic!("{other:?}"),
    }
    // Someone detaches the policy from the group.
    let mut detached = snap.clone();
    detached
        .groups
        .get_mut("iam-warden-require-mfa")
        .unwrap()
        .attached_policies
        .clear();
    let p = plan_account(&detached, &cfg, now()).unwrap();
    assert_eq!(
        p.account_actions
            .iter()
            .map(|a| a.action.name())
            .collect::<Vec<_>>(),
        vec!["attach_group_policy"]
    );
}

fn action_table() -> Vec<(&'static str, Action)> {
    let c = cfg();
    let key = KeyRef {
        id: Some("AKIA1".into()),
        slot: 1,
        created: days_ago(100),
    };
    let u = || "u".to_string();
    vec![
        (
            "delete key",
            Action::DeleteAccessKey {
                user: u(),
                key: key.clone(),
                unused_days: 45,
            },
        ),
        (
            "deactivate key",
            Action::DeactivateAccessKey {
                user: u(),
                key: key.clone(),
                unused_days: Some(45),
            },
        ),
        (
            "delete login profile",
            Action::DeleteLoginProfile {
                user: u(),
                unused_days: None,
            },
        ),
        (
            "mfa group",
            Action::AddUserToGroup {
                user: u(),
                group: c.baseline.mfa_policy.group.clone(),
            },
        ),
        (
            "mfa policy",
            Action::AttachUserPolicy {
                user: u(),
                policy: c.baseline.mfa_policy.name.clone(),
            },
        ),
        (
            "source-ip group",
            Action::AddUserToGroup {
                user: u(),
                group: c.baseline.source_ip_policy.group.clone(),
            },
        ),
        (
            "source-ip policy",
            Action::AttachUserPolicy {
                user: u(),
                policy: c.baseline.source_ip_policy.name.clone(),
            },
        ),
        (
            "other group",
            Action::AddUserToGroup {
                user: u(),
                group: "admins".into(),
            },
        ),
        ("mark", Action::MarkKeyInactive { user: u(), key }),
        (
            "clear mark",
            Action::ClearKeyMark {
                user: u(),
                key_id: "AKIA1".into(),
            },
        ),
        (
            "create policy",
            Action::CreatePolicy {
                policy: "p".into(),
                document: "{}".into(),
            },
        ),
        ("create group", Action::CreateGroup { group: "g".into() }),
        (
            "attach group policy",
            Action::AttachGroupPolicy {
                group: "g".into(),
                policy: "p".into(),
            },
        ),
        (
            "password policy",
            Action::UpdatePasswordPolicy {
                policy: PasswordPolicyState::default(),
            },
        ),
    ]
}

#[test]
fn reduces_access_table() {
    use AccessLoss::*;
    let mut c = cfg();
    c.baseline.source_ip_policy.enabled = true;
    let no_mfa = user("u").password(Some(1), 10).build();
    let with_mfa = user("u").password(Some(1), 10).mfa().build();
    // (action, without an MFA device, with one)
    let want: Vec<(&str, Option<AccessLoss>, Option<AccessLoss>)> = vec![
        ("delete key", Some(DeletesAccessKey), Some(DeletesAccessKey)),
        (
            "deactivate key",
            Some(DeactivatesAccessKey),
            Some(DeactivatesAccessKey),
        ),
        (
            "delete login profile",
            Some(RemovesConsolePassword),
            Some(RemovesConsolePassword),
        ),
        ("mfa group", Some(RequiresMfaWithoutDevice), None),
        ("mfa policy", Some(RequiresMfaWithoutDevice), None),
        (
            "source-ip group",
            Some(RestrictsSourceIp),
            Some(RestrictsSourceIp),
        ),
        (
            "source-ip policy",
            Some(RestrictsSourceIp),
            Some(RestrictsSourceIp),
        ),
        ("other group", Some(UnknownPolicy), Some(UnknownPolicy)),
        ("mark", None, None),
        ("clear mark", None, None),
        ("create policy", None, None),
        ("create group", None, None),
        ("attach group policy", None, None),
        ("password policy", None, None),
    ];
    let actions = action_table();
    assert_eq!(actions.len(), want.len());
    for ((name, action), (wname, without, with)) in actions.iter().zip(want) {
        assert_eq!(*name, wname);
        assert_eq!(
            reduces_access(action, &no_mfa, &c),
            without,
            "{name} without MFA"
        );
        assert_eq!(
            reduces_access(action, &with_mfa, &c),
            with,
            "{name} with MFA"
        );
    }
    // A disabled source-IP policy's group is not the baseline's: counted to be safe.
    let off = cfg();
    assert_eq!(
        reduces_access(&actions[5].1, &with_mfa, &off),
        Some(UnknownPolicy)
    );
}

#[test]
fn new_user_grace_boundary() {
    let grace = std::time::Duration::from_secs(3600);
    let table = [
        ("created just now", now(), true),
        ("59 min 59 s ago", now() - Duration::seconds(3599), true),
        (
            "exactly the grace ago",
            now() - Duration::seconds(3600),
            false,
        ),
        ("2 h ago", now() - Duration::hours(2), false),
        (
            "in the future (clock skew)",
            now() + Duration::seconds(30),
            true,
        ),
    ];
    for (name, created, want) in table {
        assert_eq!(is_new_user(created, now(), grace), want, "{name}");
    }
    assert!(
        !is_new_user(now(), now(), std::time::Duration::ZERO),
        "grace 0 counts everyone"
    );
}

#[test]
fn breaker_note_per_user_plan() {
    let cfg = cfg();
    let snap = compliant_account(&cfg);
    let minutes_old = |b: UserBuilder, m: i64| {
        let mut u = b.build();
        u.created = now() - Duration::minutes(m);
        u
    };
    // (case, user, counts, reduces, new user)
    let table: Vec<(&str, UserState, bool, Vec<AccessLoss>, bool)> = vec![
        (
            "existing console user without MFA joins the MFA group",
            user("a").password(Some(1), 10).build(),
            true,
            vec![AccessLoss::RequiresMfaWithoutDevice],
            false,
        ),
        (
            "existing console user with MFA joins the MFA group",
            user("a").password(Some(1), 10).mfa().build(),
            false,
            vec![],
            false,
        ),
        (
            "new console user without MFA (3 min old)",
            minutes_old(user("a").password(None, 0), 3),
            false,
            vec![AccessLoss::RequiresMfaWithoutDevice],
            true,
        ),
        (
            "user 2 h old without MFA",
            minutes_old(user("a").password(None, 0), 120),
            true,
            vec![AccessLoss::RequiresMfaWithoutDevice],
            false,
        ),
        (
            "unused console and no MFA",
            user("a").password(Some(60), 100).build(),
            true,
            vec![
                AccessLoss::RemovesConsolePassword,
                AccessLoss::RequiresMfaWithoutDevice,
            ],
            false,
        ),
        (
            "unused key",
            user("s").keys(&[key("AKIA1", 100, Some(50))]).build(),
            true,
            vec![AccessLoss::DeactivatesAccessKey],
            false,
        ),
        (
            "inactive key: only a mark",
            user("s")
                .keys(&[inactive(key("AKIA1", 100, Some(76)))])
                .build(),
            false,
            vec![],
            false,
        ),
        (
            "compliant",
            user("a").password(Some(1), 10).mfa().in_baseline().build(),
            false,
            vec![],
            false,
        ),
    ];
    for (name, u, counts, reduces, new_user) in table {
        let p = plan_user(&u, &snap, &cfg, now()).unwrap();
        assert_eq!(p.breaker.counts, counts, "{name}: {:?}", p.actions);
        assert_eq!(p.counts_toward_breaker(), counts, "{name}");
        assert_eq!(p.breaker.reduces, reduces, "{name}");
        assert_eq!(p.breaker.new_user_created.is_some(), new_user, "{name}");
    }
    // Grace 0: the new user counts.
    let mut strict = cfg.clone();
    strict.safety.new_user_grace = crate::config::Secs::from_secs(0);
    let u = minutes_old(user("a").password(None, 0), 3);
    assert!(plan_user(&u, &snap, &strict, now()).unwrap().breaker.counts);
    // What people read.
    let p = plan_user(&u, &snap, &cfg, now()).unwrap();
    assert_eq!(
        p.breaker.describe(now()).as_deref(),
        Some("new user (created 3 min ago): not counted by the breaker (puts a user without an MFA device under the MFA policy)")
    );
    let p = plan_user(
        &user("a")
            .password(Some(60), 100)
            .mfa()
            .in_baseline()
            .build(),
        &snap,
        &cfg,
        now(),
    )
    .unwrap();
    assert_eq!(
        p.breaker.describe(now()).as_deref(),
        Some("counts toward the breaker: removes the console password")
    );
    let p = plan_user(
        &user("a").password(Some(1), 10).mfa().build(),
        &snap,
        &cfg,
        now(),
    )
    .unwrap();
    assert_eq!(p.breaker.describe(now()), None, "takes nothing away");
    // Exempt users have no actions and never count.
    let p = plan_user(
        &user("b")
            .tag(EXEMPT_TAG, "true")
            .password(None, 300)
            .build(),
        &snap,
        &cfg,
        now(),
    )
    .unwrap();
    assert!(!p.breaker.counts && p.actions.is_empty());
    let plan = Plan {
        account_actions: vec![],
        account_findings: vec![],
        account_skipped: vec![],
        users: vec![
            plan_user(
                &user("x").password(Some(60), 100).build(),
                &snap,
                &cfg,
                now(),
            )
            .unwrap(),
            plan_user(
                &user("y").password(Some(1), 10).mfa().build(),
                &snap,
                &cfg,
                now(),
            )
            .unwrap(),
        ],
    };
    assert_eq!((plan.users_changed(), plan.users_losing_access()), (2, 1));
}

#[test]
fn password_policy_never_weakens_a_stronger_field() {
    let cfg = cfg();
    let have = PasswordPolicyState {
        minimum_length: 20,
        max_age_days: 30,
        reuse_prevention: 5,
        ..Default::default()
    };
    let p = stronger_password_policy(Some(&have), &cfg);
    assert_eq!(p.minimum_length, 20);
    assert_eq!(p.max_age_days, 30);
    assert_eq!(p.reuse_prevention, 24);
    assert!(p.require_symbols);
}

#[test]
fn expired_passwords_must_be_reset_once() {
    use crate::config::PASSWORD_RESET_TAG;
    let cfg = cfg(); // max_age_days 90, reset_expired on
    let snap = compliant_account(&cfg);
    let recorded = |changed: i64| {
        format!(
            "changed={} at={}",
            days_ago(changed).to_rfc3339(),
            days_ago(1).to_rfc3339()
        )
    };
    let mut off = cfg.clone();
    off.baseline.password_policy.max_age_days = 0;
    let mut no_reset = cfg.clone();
    no_reset.baseline.password_policy.reset_expired = false;
    let mut policy_off = cfg.clone();
    policy_off.baseline.password_policy.enabled = false;
    // (name, config, user, planned?)
    let console = |set: i64| user("a").password(Some(1), set).mfa().in_baseline();
    let table: Vec<(&str, &Config, UserState, bool)> = vec![
        (
            "90 days old: at the limit",
            &cfg,
            console(90).build(),
            false,
        ),
        ("91 days old: over it", &cfg, console(91).build(), true),
        ("400 days old", &cfg, console(400).build(), true),
        ("fresh", &cfg, console(3).build(), false),
        ("max_age_days 0: off", &off, console(400).build(), false),
        (
            "reset_expired false",
            &no_reset,
            console(400).build(),
            false,
        ),
        (
            "password policy off",
            &policy_off,
            console(400).build(),
            false,
        ),
        (
            "already reset for this password",
            &cfg,
            console(120).tag(PASSWORD_RESET_TAG, &recorded(120)).build(),
            false,
        ),
        (
            "the tag is for an older password",
            &cfg,
            console(120).tag(PASSWORD_RESET_TAG, &recorded(300)).build(),
            true,
        ),
        (
            "a tag edited into nonsense: planned again",
            &cfg,
            console(120)
                .tag(PASSWORD_RESET_TAG, "changed=yesterday")
                .build(),
            true,
        ),
        (
            "programmatic user (its password is removed instead)",
            &cfg,
            user("svc")
                .password(Some(1), 400)
                .tag(ACCESS_TAG, "programmatic")
                .build(),
            false,
        ),
        (
            "unused password: deleted, not reset",
            &cfg,
            user("idle")
                .password(Some(200), 400)
                .mfa()
                .in_baseline()
                .build(),
            false,
        ),
        (
            "exempt user",
            &cfg,
            console(400).tag(EXEMPT_TAG, "true").build(),
            false,
        ),
        (
            "no password",
            &cfg,
            user("n").mfa().in_baseline().build(),
            false,
        ),
    ];
    for (name, c, u, want) in table {
        let p = plan_user(&u, &snap, c, now()).unwrap();
        let resets: Vec<_> = p
            .actions
            .iter()
            .filter(|a| matches!(a.action, Action::RequirePasswordReset { .. }))
            .collect();
        assert_eq!(resets.len(), usize::from(want), "{name}: {:?}", names(&p));
        if let Some(r) = resets.first() {
            let Action::RequirePasswordReset {
                changed, age_days, ..
            } = &r.action
            else {
                unreachable!()
            };
            assert_eq!(Some(*changed), u.password.as_ref().and_then(|p| p.changed));
            assert!(*age_days > 90, "{name}");
            assert!(r.reason.contains("max_age_days = 90"), "{}", r.reason);
            // A forced reset takes nothing away: not counted by the breaker.
            assert!(!p.counts_toward_breaker(), "{name}");
            assert_eq!(reduces_access(&r.action, &u, c), None);
        }
    }
}

#[test]
fn expired_server_certificates_are_deleted_only_when_opted_in_and_known_expired() {
    use crate::inventory::cis::{CisFacts, ServerCertificate};
    let mut cfg = cfg();
    let cert = |name: &str, days: Option<i64>| ServerCertificate {
        name: name.into(),
        arn: format!("arn:aws:iam::{ACCOUNT}:server-certificate/{name}"),
        expiration: days.map(|d| now() - chrono::Duration::days(d)),
    };
    let mut snap = compliant_account(&cfg);
    snap.cis = Some(CisFacts {
        server_certificates: vec![
            cert("old", Some(3)),
            cert("valid", Some(-3)),
            cert("odd", None),
        ],
        ..Default::default()
    });
    let names = |snap: &AccountSnapshot, cfg: &Config| -> Vec<String> {
        plan_account(snap, cfg, now())
            .unwrap()
            .account_actions
            .iter()
            .filter_map(|a| match &a.action {
                Action::DeleteServerCertificate { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    };
    assert!(names(&snap, &cfg).is_empty(), "off by default");
    cfg.cis.delete_expired_server_certificates = true;
    assert_eq!(
        names(&snap, &cfg),
        vec!["old"],
        "never one without an expiry date"
    );
    let a = Action::DeleteServerCertificate {
        name: "old".into(),
        arn: "arn:x".into(),
    };
    assert_eq!(a.name(), "delete_server_certificate");
    assert_eq!(a.target(), "arn:x");
    assert_eq!(a.user(), None);
    // Without the CIS facts (the daemon's account reconcile): nothing.
    snap.cis = None;
    assert!(names(&snap, &cfg).is_empty());
}
