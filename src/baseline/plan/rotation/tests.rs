//! Table tests of the rotation lifecycle (pure).

use chrono::Duration;

use super::*;
use crate::baseline::plan::{plan_user, UserPlan};
use crate::baseline::testkit::*;
use crate::config::{Config, Delivery, ROTATION_TAG_PREFIX, STORE_RETRY};
use crate::inventory::{Observed, UserState};

const OLD: &str = "AKIAOLD000000000001";
const NEW: &str = "AKIANEW000000000002";

fn run(u: &UserState, cfg: &Config) -> UserPlan {
    plan_user(u, &snap_with_baseline_groups(), cfg, now()).unwrap()
}

fn names(p: &UserPlan) -> Vec<&'static str> {
    p.actions.iter().map(|a| a.action.name()).collect()
}

fn checks(p: &UserPlan) -> Vec<&'static str> {
    p.verdict.findings.iter().map(|f| f.check.id()).collect()
}

/// A rotation tag for `OLD` in `phase` since `since` days ago.
fn tag(phase: &str, since: i64, new: Option<&str>) -> (String, String) {
    let mut v = format!("phase={phase} since={}", days_ago(since).to_rfc3339());
    if let Some(n) = new {
        v.push_str(&format!(" new={n}"));
    }
    (format!("{ROTATION_TAG_PREFIX}{OLD}"), v)
}

/// The default `rotation.store_retry`.
fn retry() -> Duration {
    to_duration(STORE_RETRY.get())
}

fn hours_ago(h: i64) -> chrono::DateTime<chrono::Utc> {
    now() - Duration::hours(h)
}

fn with_tag(b: UserBuilder, t: (String, String)) -> UserBuilder {
    b.tag(&t.0, &t.1)
}

struct Case {
    name: &'static str,
    user: UserState,
    cfg: Config,
    actions: Vec<&'static str>,
    findings: Vec<&'static str>,
    next_due: Option<chrono::DateTime<chrono::Utc>>,
}

/// Run each case and check its actions, findings (`dedup`: each check once) and next due.
fn assert_cases(cases: Vec<Case>, dedup: bool) {
    for c in cases {
        let p = run(&c.user, &c.cfg);
        assert_eq!(names(&p), c.actions, "{}: {:#?}", c.name, p.actions);
        let mut got = checks(&p);
        got.sort_unstable();
        if dedup {
            got.dedup();
        }
        let mut want = c.findings.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{}: {:#?}", c.name, p.verdict.findings);
        assert_eq!(p.next_due, c.next_due, "{}", c.name);
    }
}

#[test]
fn lifecycle_table() {
    let d = cfg(); // max 90, warn 14, quiet 1 d, grace 14, recovery 7, unused 45
    let none = {
        let mut c = cfg();
        c.rotation.delivery = Delivery::None;
        c
    };
    let force = {
        let mut c = cfg();
        c.rotation.force_after_grace = true;
        c
    };
    let off = {
        let mut c = cfg();
        c.rotation.enabled = false;
        c
    };
    let mut new_used_now = key(NEW, 3, Some(0));
    new_used_now.last_used = Some(hours_ago(1));
    let mut old_used_2h = key(OLD, 95, Some(0));
    old_used_2h.last_used = Some(hours_ago(2));
    let cases = vec![
        Case {
            name: "young key: nothing, due at the warning date",
            user: user("u").keys(&[key(OLD, 10, Some(1))]).build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec![],
            next_due: Some(days_ago(10) + Duration::days(76)),
        },
        Case {
            name: "within warn_days of the limit: warned once",
            user: user("u").keys(&[key(OLD, 80, Some(1))]).build(),
            cfg: d.clone(),
            actions: vec!["set_rotation_phase"],
            findings: vec![],
            next_due: Some(days_ago(80) + Duration::days(90)),
        },
        Case {
            name: "warned already: nothing until the limit",
            user: with_tag(user("u"), tag("warned", 4, None))
                .keys(&[key(OLD, 84, Some(1))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec![],
            next_due: Some(days_ago(84) + Duration::days(90)),
        },
        Case {
            name: "at the limit and used: rotated",
            user: with_tag(user("u"), tag("warned", 14, None))
                .keys(&[key(OLD, 90, Some(1))])
                .build(),
            cfg: d.clone(),
            actions: vec!["rotate_access_key"],
            findings: vec![],
            next_due: None,
        },
        Case {
            name: "past the limit without a warning: rotated at once",
            user: user("u").keys(&[key(OLD, 120, Some(1))]).build(),
            cfg: d.clone(),
            actions: vec!["rotate_access_key"],
            findings: vec!["key-too-old"],
            next_due: None,
        },
        Case {
            name: "old and unused: revoked by the unused path, not rotated",
            user: user("u").keys(&[key(OLD, 120, Some(60))]).build(),
            cfg: d.clone(),
            actions: vec!["deactivate_access_key"],
            findings: vec!["key-too-old", "key-unused"],
            next_due: None,
        },
        Case {
            name: "rotation off: only the finding",
            user: user("u").keys(&[key(OLD, 120, Some(1))]).build(),
            cfg: off.clone(),
            actions: vec![],
            findings: vec!["key-too-old"],
            next_due: None,
        },
        Case {
            name: "exempt: untouched",
            user: user("u")
                .tag(EXEMPT_TAG, "true")
                .keys(&[key(OLD, 120, Some(1))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec![],
            next_due: None,
        },
        Case {
            name: "store failed 2 h ago (stuck, no new key): finding, retried a day after",
            user: with_tag(
                user("u"),
                (
                    format!("{ROTATION_TAG_PREFIX}{OLD}"),
                    format!("phase=stuck since={}", hours_ago(2).to_rfc3339()),
                ),
            )
            .keys(&[key(OLD, 91, Some(1))])
            .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old", "rotation-stuck"],
            next_due: Some(hours_ago(2) + retry()),
        },
        Case {
            name: "store failed over a day ago: the rotation is retried",
            user: with_tag(user("u"), tag("stuck", 2, None))
                .keys(&[key(OLD, 92, Some(1))])
                .build(),
            cfg: d.clone(),
            actions: vec!["rotate_access_key"],
            findings: vec!["key-too-old"],
            next_due: None,
        },
        Case {
            name: "intent written, no draining tag: the rotation resumes",
            user: with_tag(user("u"), tag("rotating", 0, None))
                .keys(&[key(OLD, 91, Some(1))])
                .build(),
            cfg: d.clone(),
            actions: vec!["rotate_access_key"],
            findings: vec!["key-too-old"],
            next_due: None,
        },
        Case {
            name: "draining, new key not used yet: wait for grace",
            user: with_tag(user("u"), tag("draining", 3, Some(NEW)))
                .keys(&[key(OLD, 95, Some(0)), key(NEW, 3, None)])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old"],
            next_due: Some(days_ago(3) + Duration::days(14)),
        },
        Case {
            name: "draining, both used, old used 2 h ago: wait for drain_quiet",
            user: with_tag(user("u"), tag("draining", 3, Some(NEW)))
                .keys(&[old_used_2h.clone(), new_used_now.clone()])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old"],
            next_due: Some(hours_ago(2) + Duration::days(1)),
        },
        Case {
            name: "draining, new used, old quiet for 2 days: deactivated",
            user: with_tag(user("u"), tag("draining", 3, Some(NEW)))
                .keys(&[key(OLD, 95, Some(2)), new_used_now.clone()])
                .build(),
            cfg: d.clone(),
            actions: vec!["deactivate_rotated_key"],
            findings: vec!["key-too-old"],
            next_due: None,
        },
        Case {
            name: "draining past grace, old still used: stuck (reported once), kept",
            user: with_tag(user("u"), tag("draining", 15, Some(NEW)))
                .keys(&[old_used_2h.clone(), new_used_now.clone()])
                .build(),
            cfg: d.clone(),
            actions: vec!["set_rotation_phase"],
            findings: vec!["key-too-old", "rotation-stuck"],
            next_due: None,
        },
        Case {
            name: "draining past grace with force_after_grace: stuck and deactivated",
            user: with_tag(user("u"), tag("draining", 15, Some(NEW)))
                .keys(&[old_used_2h.clone(), new_used_now.clone()])
                .build(),
            cfg: force.clone(),
            actions: vec!["set_rotation_phase", "deactivate_rotated_key"],
            findings: vec!["key-too-old", "rotation-stuck"],
            next_due: None,
        },
        Case {
            name: "stuck, still used: finding only, no second report",
            user: with_tag(user("u"), tag("stuck", 1, Some(NEW)))
                .keys(&[old_used_2h.clone(), new_used_now.clone()])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old", "rotation-stuck"],
            next_due: None,
        },
        Case {
            name: "stuck, then the consumer switched: deactivated",
            user: with_tag(user("u"), tag("stuck", 1, Some(NEW)))
                .keys(&[key(OLD, 110, Some(3)), new_used_now.clone()])
                .build(),
            cfg: d.clone(),
            actions: vec!["deactivate_rotated_key"],
            findings: vec!["key-too-old"],
            next_due: None,
        },
        Case {
            name: "draining but the new key is gone: stuck finding, nothing touched",
            user: with_tag(user("u"), tag("draining", 3, Some(NEW)))
                .keys(&[key(OLD, 95, Some(2))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old", "rotation-stuck"],
            next_due: None,
        },
        Case {
            name: "deactivated within recovery: kept, not marked by the unused path",
            user: with_tag(user("u"), tag("deactivated", 3, Some(NEW)))
                .keys(&[inactive(key(OLD, 100, Some(5))), new_used_now.clone()])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec![],
            next_due: Some(days_ago(3) + Duration::days(7)),
        },
        Case {
            name: "deactivated past recovery: deleted",
            user: with_tag(user("u"), tag("deactivated", 8, Some(NEW)))
                .keys(&[inactive(key(OLD, 110, Some(10))), new_used_now.clone()])
                .build(),
            cfg: d.clone(),
            actions: vec!["delete_rotated_key"],
            findings: vec![],
            next_due: Some(days_ago(3) + Duration::days(76)),
        },
        Case {
            name: "deactivated, then reactivated outside iam-warden: drains again",
            user: with_tag(user("u"), tag("deactivated", 2, Some(NEW)))
                .keys(&[key(OLD, 100, Some(0)), new_used_now.clone()])
                .build(),
            cfg: d.clone(),
            actions: vec!["set_rotation_phase"],
            // Both active and the tag not yet draining again: two keys at this moment.
            findings: vec!["key-too-old", "two-active-keys"],
            next_due: Some(days_ago(3) + Duration::days(76)),
        },
        Case {
            name: "malformed tag: a finding, nothing done to the key (not even unused)",
            user: user("u")
                .tag(
                    &format!("{ROTATION_TAG_PREFIX}{OLD}"),
                    "phase=sideways since=x",
                )
                .keys(&[key(OLD, 120, Some(60))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old", "key-unused", "rotation-stuck"],
            next_due: None,
        },
        Case {
            name: "warned, then unused: the warning goes, the unused path revokes",
            user: with_tag(user("u"), tag("warned", 50, None))
                .keys(&[key(OLD, 120, Some(60))])
                .build(),
            cfg: d.clone(),
            actions: vec!["deactivate_access_key", "clear_rotation_tag"],
            findings: vec!["key-too-old", "key-unused"],
            next_due: None,
        },
        Case {
            name: "warned, then deactivated by someone: the warning goes",
            user: with_tag(user("u"), tag("warned", 5, None))
                .keys(&[inactive(key(OLD, 85, Some(60)))])
                .build(),
            cfg: d.clone(),
            actions: vec!["tag_user", "clear_rotation_tag"],
            findings: vec![],
            next_due: None,
        },
        Case {
            name: "tag of a key that no longer exists: cleared",
            user: with_tag(user("u"), tag("warned", 2, None))
                .keys(&[key(NEW, 3, Some(0))])
                .build(),
            cfg: d.clone(),
            actions: vec!["clear_rotation_tag"],
            findings: vec![],
            next_due: Some(days_ago(3) + Duration::days(76)),
        },
        Case {
            name: "two keys: inactive one past recovery deleted first, then rotation",
            user: user("u")
                .tag(
                    &format!("{ROTATION_TAG_PREFIX}{NEW}"),
                    &format!("phase=deactivated since={}", days_ago(10).to_rfc3339()),
                )
                .keys(&[key(OLD, 120, Some(1)), inactive(key(NEW, 200, Some(30)))])
                .build(),
            cfg: d.clone(),
            actions: vec!["delete_rotated_key", "rotate_access_key"],
            findings: vec!["key-too-old"],
            next_due: None,
        },
        Case {
            name: "two keys: inactive one within its window, rotation waits",
            user: user("u")
                .tag(
                    &format!("{ROTATION_TAG_PREFIX}{NEW}"),
                    &format!("phase=deactivated since={}", days_ago(2).to_rfc3339()),
                )
                .keys(&[key(OLD, 120, Some(1)), inactive(key(NEW, 200, Some(30)))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old", "rotation-stuck"],
            next_due: Some(days_ago(2) + Duration::days(7)),
        },
        Case {
            name: "two active keys, both used: two-active-keys, no new key",
            user: user("u")
                .keys(&[key(OLD, 120, Some(1)), key(NEW, 30, Some(1))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old", "two-active-keys", "rotation-stuck"],
            next_due: Some(days_ago(30) + Duration::days(76)),
        },
        Case {
            name: "delivery none: warned before the limit",
            user: user("u").keys(&[key(OLD, 80, Some(1))]).build(),
            cfg: none.clone(),
            actions: vec!["set_rotation_phase"],
            findings: vec![],
            next_due: Some(days_ago(80) + Duration::days(104)),
        },
        Case {
            name: "delivery none: past the limit within grace, no key created",
            user: with_tag(user("u"), tag("warned", 20, None))
                .keys(&[key(OLD, 95, Some(1))])
                .build(),
            cfg: none.clone(),
            actions: vec![],
            findings: vec!["key-too-old"],
            next_due: Some(days_ago(95) + Duration::days(104)),
        },
        Case {
            name: "delivery none: after grace, the user's other key in use: deactivated",
            user: with_tag(user("u"), tag("warned", 30, None))
                .keys(&[key(OLD, 110, Some(5)), key(NEW, 10, Some(0))])
                .build(),
            cfg: none.clone(),
            actions: vec!["deactivate_rotated_key"],
            findings: vec!["key-too-old", "two-active-keys"],
            next_due: Some(days_ago(10) + Duration::days(76)),
        },
        Case {
            name: "delivery none: after grace, no other key: stuck",
            user: with_tag(user("u"), tag("warned", 30, None))
                .keys(&[key(OLD, 110, Some(0))])
                .build(),
            cfg: none.clone(),
            actions: vec!["set_rotation_phase"],
            findings: vec!["key-too-old", "rotation-stuck"],
            next_due: None,
        },
        Case {
            name: "secret name invalid for this user: a finding, nothing else",
            user: user("a,b").keys(&[key(OLD, 95, Some(1))]).build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old", "rotation-stuck"],
            next_due: None,
        },
    ];
    assert_cases(cases, false);
}

#[test]
fn actions_carry_what_apply_needs() {
    let mut c = cfg();
    c.rotation.kms_key_id = Some("alias/rot".into());
    c.notifications.default_owner = Some("team@example.com".into());
    c.rotation.store_retry = "6h".parse().unwrap();
    let u = user("svc").keys(&[key(OLD, 95, Some(1))]).build();
    let p = run(&u, &c);
    match &p.actions[0].action {
        Action::RotateAccessKey {
            user,
            key,
            delivery,
            secret_name,
            kms_key_id,
            owner,
            store_retry_secs,
        } => {
            assert_eq!(*store_retry_secs, 6 * 3600);
            assert_eq!(user, "svc");
            assert_eq!(key.id.as_deref(), Some(OLD));
            assert_eq!(*delivery, Delivery::SecretsManager);
            assert_eq!(secret_name, "iam-warden/svc/access-key");
            assert_eq!(kms_key_id.as_deref(), Some("alias/rot"));
            assert_eq!(owner.as_deref(), Some("team@example.com"));
        }
        other => panic!("{other:?}"),
    }
    // The owner tag wins over the default.
    let u = user("svc")
        .tag(crate::config::OWNER_TAG, "alice@example.com")
        .keys(&[key(OLD, 95, Some(1))])
        .build();
    assert_eq!(owner_of(&u, &c).as_deref(), Some("alice@example.com"));
    // Drained deactivation does not count toward the breaker; forced does.
    let drained = with_tag(user("u"), tag("draining", 3, Some(NEW)))
        .keys(&[key(OLD, 95, Some(2)), key(NEW, 3, Some(0))])
        .build();
    let p = run(&drained, &cfg());
    assert!(!p.counts_toward_breaker(), "{:?}", p.breaker);
    let mut old_used = key(OLD, 95, Some(0));
    old_used.last_used = Some(hours_ago(1));
    let stuck = with_tag(user("u"), tag("draining", 15, Some(NEW)))
        .keys(&[old_used, key(NEW, 15, Some(0))])
        .build();
    let mut f = cfg();
    f.rotation.force_after_grace = true;
    assert!(run(&stuck, &f).counts_toward_breaker());
}

#[test]
fn report_keys_match_tags_by_creation_time() {
    // A credential-report user: no key ids. The draining tag carries created=.
    let mut old = key(OLD, 95, Some(2));
    let mut new = key(NEW, 3, Some(0));
    let created = old.created;
    old.id = None;
    new.id = None;
    let mut u = user("u")
        .tag(
            &format!("{ROTATION_TAG_PREFIX}{OLD}"),
            &RotationTag {
                key_id: OLD.into(),
                phase: Phase::Draining,
                since: days_ago(3),
                created: Some(created),
                new_key: Some(NEW.into()),
                wall: None,
                failed: None,
            }
            .value(),
        )
        .keys(&[old, new])
        .build();
    u.observed = Observed::CredentialReport;
    let p = run(&u, &cfg());
    assert_eq!(names(&p), vec!["deactivate_rotated_key"]);
    match &p.actions[0].action {
        Action::DeactivateRotatedKey { key, .. } => {
            assert_eq!(key.id.as_deref(), Some(OLD), "the id learnt from the tag");
            assert_eq!(key.slot, 1);
        }
        other => panic!("{other:?}"),
    }
    // A report user with a malformed tag: no key of it is touched.
    let mut bad = user("b")
        .tag(&format!("{ROTATION_TAG_PREFIX}{OLD}"), "garbage")
        .keys(&[key(OLD, 120, Some(60))])
        .build();
    bad.keys[0].id = None;
    bad.observed = Observed::CredentialReport;
    let p = run(&bad, &cfg());
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    // A report user's tag whose key is not matched is not cleared (ids unknown).
    let mut r = with_tag(user("r"), tag("warned", 2, None))
        .keys(&[key(NEW, 3, Some(0))])
        .build();
    r.keys[0].id = None;
    r.observed = Observed::CredentialReport;
    assert!(run(&r, &cfg()).actions.is_empty());
}

#[test]
fn tags_round_trip_and_reject_nonsense() {
    let t = RotationTag {
        key_id: OLD.into(),
        phase: Phase::Draining,
        since: now(),
        created: Some(days_ago(90)),
        new_key: Some(NEW.into()),
        wall: None,
        failed: None,
    };
    let v = t.value();
    assert!(v.len() <= 256);
    assert!(
        v.chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c)),
        "{v}"
    );
    let key = RotationTag::tag_key(OLD);
    assert_eq!(RotationTag::parse(&key, &v), Some(Ok(t)));
    assert_eq!(
        RotationTag::parse("iam-warden/other/x", "phase=warned"),
        None
    );
    for bad in [
        "",
        "phase=warned",
        "since=2026-01-01T00:00:00Z",
        "phase=nope since=2026-01-01T00:00:00Z",
        "phase=warned since=yesterday",
        "phase=draining since=2026-01-01T00:00:00Z",
        "phase=draining since=2026-01-01T00:00:00Z new=lower",
        "phase=warned since=2026-01-01T00:00:00Z extra",
    ] {
        let e = RotationTag::parse(&key, bad).unwrap().unwrap_err();
        assert!(e.contains("fix or remove it"), "{bad}: {e}");
    }
    assert!(RotationTag::parse(
        &format!("{ROTATION_TAG_PREFIX}not-a-key"),
        "phase=warned since=2026-01-01T00:00:00Z"
    )
    .unwrap()
    .is_err());
}

#[test]
fn draining_user_is_rotating_not_two_active_keys() {
    let u = with_tag(user("u"), tag("draining", 3, Some(NEW)))
        .keys(&[key(OLD, 95, Some(0)), key(NEW, 3, None)])
        .build();
    let p = run(&u, &cfg());
    assert!(!checks(&p).contains(&"two-active-keys"), "{:?}", p.verdict);
    assert!(
        p.verdict.notes.iter().any(|n| n.starts_with("rotating:")),
        "{:?}",
        p.verdict.notes
    );
    // Rotation off: the same user is a two-active-keys violation.
    let mut off = cfg();
    off.rotation.enabled = false;
    assert!(checks(&run(&u, &off)).contains(&"two-active-keys"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const IDS: [&str; 3] = [OLD, NEW, "AKIATHIRD0000000003"];
    const PHASES: [&str; 6] = [
        "warned",
        "rotating",
        "draining",
        "stuck",
        "deactivated",
        "bogus",
    ];

    /// Keys: (active, age days, last used hours ago); a tag per key id: (phase index,
    /// since days, new key index); force_after_grace; delivery index.
    type Keys = Vec<(bool, i64, Option<i64>)>;
    type TagSpecs = Vec<Option<(usize, i64, Option<usize>)>>;

    fn state() -> impl Strategy<Value = (Keys, TagSpecs, bool, u8)> {
        (
            prop::collection::vec(
                (any::<bool>(), 0i64..200, prop::option::of(0i64..4000)),
                0..=2,
            ),
            prop::collection::vec(
                prop::option::of((0usize..6, 0i64..40, prop::option::of(0usize..3))),
                3,
            ),
            any::<bool>(),
            0u8..3,
        )
    }

    fn build(
        keys: &[(bool, i64, Option<i64>)],
        tags: &[Option<(usize, i64, Option<usize>)>],
    ) -> UserState {
        let ks: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, (active, age, used))| {
                let mut k = key(IDS[i], *age, None);
                k.active = *active;
                k.last_used = used.map(|h| (now() - Duration::hours(h)).max(k.created));
                k
            })
            .collect();
        let mut b = user("p").keys(&ks);
        for (i, t) in tags.iter().enumerate() {
            if let Some((phase, since, new)) = t {
                let mut v = format!(
                    "phase={} since={}",
                    PHASES[*phase],
                    days_ago(*since).to_rfc3339()
                );
                if let Some(n) = new {
                    v.push_str(&format!(" new={}", IDS[*n]));
                }
                b = b.tag(&format!("{ROTATION_TAG_PREFIX}{}", IDS[i]), &v);
            }
        }
        b.build()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn never_a_wrong_key((keys, tags, force, delivery) in state()) {
            let mut c = cfg();
            c.rotation.force_after_grace = force;
            c.rotation.delivery = [Delivery::SecretsManager, Delivery::Ssm, Delivery::None][delivery as usize];
            if c.rotation.delivery == Delivery::Ssm {
                c.rotation.name_template = "/iam-warden/{user}/key".into();
            }
            let u = build(&keys, &tags);
            let (parsed, _) = rotation_tags(&u);
            let p = run(&u, &c);
            let quiet = c.rotation.drain_quiet.get();
            let mut rotations = 0;
            for a in &p.actions {
                match &a.action {
                    Action::DeactivateRotatedKey { key, force: forced, .. } => {
                        let id = key.id.as_deref().unwrap();
                        let t = parsed.iter().find(|t| t.key_id == id);
                        // Only a key whose own tag says its rotation is under way.
                        prop_assert!(t.is_some_and(|t| matches!(t.phase, Phase::Warned | Phase::Draining | Phase::Stuck)), "{id}: {:?}", p.actions);
                        let k = u.keys.iter().find(|k| k.id.as_deref() == Some(id)).unwrap();
                        prop_assert!(k.active);
                        if !forced {
                            prop_assert!(k.last_used.is_none_or(|l| (now() - l).to_std().unwrap_or_default() >= quiet), "used within drain_quiet: {:?}", k);
                        } else {
                            prop_assert!(force);
                        }
                    }
                    Action::RotateAccessKey { key, .. } => {
                        rotations += 1;
                        prop_assert!(c.rotation.delivery != Delivery::None);
                        let k = u.keys.iter().find(|k| k.id == key.id).unwrap();
                        prop_assert!(k.active);
                        // Never a third key: any other key is inactive and deleted first
                        // (a resumed rotation is checked by the applier, live).
                        let resumed = parsed.iter().any(|t| Some(&t.key_id) == key.id.as_ref() && t.phase == Phase::Rotating);
                        for o in u.keys.iter().filter(|o| o.id != key.id && !resumed) {
                            prop_assert!(!o.active);
                            let deleted = p.actions.iter().any(|b| matches!(&b.action, Action::DeleteRotatedKey { key, .. } if key.id == o.id));
                            prop_assert!(deleted, "{:?}", p.actions);
                        }
                    }
                    Action::DeleteRotatedKey { key, .. } => {
                        let k = u.keys.iter().find(|k| k.id == key.id).unwrap();
                        prop_assert!(!k.active, "only inactive keys are deleted");
                    }
                    _ => {}
                }
            }
            prop_assert!(rotations <= 1);
            // Exempt or rotation off: no rotation action at all.
            let names_of = |p: &UserPlan| p.actions.iter().map(|a| a.action.name()).collect::<Vec<_>>();
            let rot = |n: &&str| n.contains("rotat");
            let mut off = c.clone();
            off.rotation.enabled = false;
            prop_assert!(!names_of(&run(&u, &off)).iter().any(rot));
            let mut ex = u.clone();
            ex.tags.insert(EXEMPT_TAG.into(), "true".into());
            prop_assert!(run(&ex, &c).actions.is_empty());
        }
    }
}

/// The rotation tag of `OLD` in `phase` since `since` days ago, with a new key and the
/// intent's wall time.
fn tag_at(
    phase: Phase,
    since: i64,
    new: Option<&str>,
    wall: Option<chrono::DateTime<chrono::Utc>>,
) -> (String, String) {
    let t = RotationTag {
        key_id: OLD.into(),
        phase,
        since: days_ago(since),
        created: None,
        new_key: new.map(str::to_string),
        wall,
        failed: None,
    };
    (RotationTag::tag_key(OLD), t.value())
}

fn created_at(mut k: AccessKeyState, t: chrono::DateTime<chrono::Utc>) -> AccessKeyState {
    k.created = t;
    k
}

#[test]
fn quarantined_keys_and_the_orphan_window() {
    let d = cfg(); // recovery 7
    let none = {
        let mut c = cfg();
        c.rotation.delivery = Delivery::None;
        c
    };
    let q = Phase::Quarantined;
    let wall = hours_ago(1);
    let exposed = || inactive(key(OLD, 10, Some(0)));
    let cases = vec![
        Case {
            name: "quarantined, no other key: replaced at once",
            user: with_tag(user("u"), tag_at(q, 0, None, None))
                .keys(&[exposed()])
                .build(),
            cfg: d.clone(),
            actions: vec!["rotate_access_key"],
            findings: vec![],
            next_due: Some(days_ago(0) + Duration::days(7)),
        },
        Case {
            name: "quarantined, delivery none: a finding only",
            user: with_tag(user("u"), tag_at(q, 0, None, None))
                .keys(&[exposed()])
                .build(),
            cfg: none.clone(),
            actions: vec![],
            findings: vec!["rotation-stuck"],
            next_due: Some(days_ago(0) + Duration::days(7)),
        },
        Case {
            name: "quarantined, the user has another active key: it is the replacement",
            user: with_tag(user("u"), tag_at(q, 0, None, None))
                .keys(&[exposed(), key(NEW, 5, Some(0))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec![],
            next_due: Some(days_ago(0) + Duration::days(7)),
        },
        Case {
            name: "quarantined, the other key is inactive: no room for a new one",
            user: with_tag(user("u"), tag_at(q, 0, None, None))
                .keys(&[exposed(), inactive(key(NEW, 5, Some(3)))])
                .build(),
            cfg: d.clone(),
            // The unused-key path marks the other inactive key (its delete clock).
            actions: vec!["tag_user"],
            findings: vec!["rotation-stuck"],
            next_due: Some(days_ago(0) + Duration::days(7)),
        },
        Case {
            name: "quarantined and replaced: waits for the recovery window",
            user: with_tag(user("u"), tag_at(q, 2, Some(NEW), None))
                .keys(&[exposed(), key(NEW, 2, Some(0))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec![],
            next_due: Some(days_ago(2) + Duration::days(7)),
        },
        Case {
            name: "quarantined past the recovery window: deleted",
            user: with_tag(user("u"), tag_at(q, 8, Some(NEW), None))
                .keys(&[exposed(), key(NEW, 8, Some(0))])
                .build(),
            cfg: d.clone(),
            actions: vec!["delete_rotated_key"],
            findings: vec![],
            // The new key's own warning (90 - 14 days after it was made).
            next_due: Some(days_ago(8) + Duration::days(76)),
        },
        Case {
            name: "quarantined but active again: never reactivated, a finding",
            user: with_tag(user("u"), tag_at(q, 1, None, None))
                .keys(&[key(OLD, 10, Some(0))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["rotation-stuck"],
            next_due: None,
        },
        Case {
            name:
                "quarantined, replacement interrupted, its key made right after the intent: resumed",
            user: with_tag(user("u"), tag_at(q, 0, None, Some(wall)))
                .keys(&[
                    exposed(),
                    created_at(key(NEW, 0, None), wall + Duration::seconds(2)),
                ])
                .build(),
            cfg: d.clone(),
            actions: vec!["rotate_access_key"],
            findings: vec![],
            next_due: Some(days_ago(0) + Duration::days(7)),
        },
        Case {
            name: "quarantined, replacement interrupted, a key a person made before: left alone",
            user: with_tag(user("u"), tag_at(q, 0, None, Some(wall)))
                .keys(&[
                    exposed(),
                    created_at(key(NEW, 0, None), wall - Duration::hours(2)),
                ])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["rotation-stuck"],
            next_due: Some(days_ago(0) + Duration::days(7)),
        },
        Case {
            name: "rotating, the other key made 10 min after the intent: the orphan, resumed",
            user: with_tag(user("u"), tag_at(Phase::Rotating, 0, None, Some(wall)))
                .keys(&[
                    key(OLD, 91, Some(1)),
                    created_at(key(NEW, 0, None), wall + Duration::minutes(10)),
                ])
                .build(),
            cfg: d.clone(),
            actions: vec!["rotate_access_key"],
            findings: vec!["key-too-old", "two-active-keys"],
            next_due: Some(wall + Duration::minutes(10) + Duration::days(76)),
        },
        Case {
            name: "rotating, the other key made by a person long before the intent: left alone",
            user: with_tag(user("u"), tag_at(Phase::Rotating, 0, None, Some(wall)))
                .keys(&[key(OLD, 91, Some(1)), key(NEW, 60, Some(1))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old", "rotation-stuck", "two-active-keys"],
            next_due: Some(days_ago(60) + Duration::days(76)),
        },
        Case {
            name: "rotating without a recorded wall time: no key is taken for the orphan",
            user: with_tag(user("u"), tag_at(Phase::Rotating, 0, None, None))
                .keys(&[key(OLD, 91, Some(1)), key(NEW, 0, None)])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old", "rotation-stuck", "two-active-keys"],
            next_due: Some(days_ago(0) + Duration::days(76)),
        },
    ];
    assert_cases(cases, true);
}

#[test]
fn quarantine_tags_parse_and_the_orphan_window_is_bounded() {
    let key = RotationTag::tag_key(OLD);
    // The value the quarantine writes is a phase, not a malformed tag.
    let t = RotationTag::parse(&key, "phase=quarantined since=2026-12-01T15:30:17Z")
        .unwrap()
        .unwrap();
    assert_eq!(t.phase, Phase::Quarantined);
    assert_eq!((t.new_key.clone(), t.wall), (None, None));
    assert!(!t.quarantine_replacing());
    let w: chrono::DateTime<chrono::Utc> = "2026-12-01T15:31:00Z".parse().unwrap();
    let replacing = RotationTag {
        wall: Some(w),
        ..t.clone()
    };
    assert!(replacing.quarantine_replacing());
    let back = RotationTag::parse(&key, &replacing.value())
        .unwrap()
        .unwrap();
    assert_eq!(back, replacing, "round trip with wall=");
    assert!(crate::apply::is_quarantine_tag(&replacing.value()));
    let done = RotationTag {
        new_key: Some(NEW.into()),
        wall: None,
        ..t
    };
    assert!(!done.quarantine_replacing());
    assert_eq!(
        RotationTag::parse(&key, &done.value()).unwrap().unwrap(),
        done
    );
    assert!(RotationTag::parse(
        &key,
        "phase=quarantined since=2026-12-01T15:30:17Z wall=soon"
    )
    .unwrap()
    .is_err());
    // The orphan window: -1 min .. +10 min around the intent's wall time; none without it.
    let s = |n: i64| w + Duration::seconds(n);
    for (created, want) in [
        (s(-61), false),
        (s(-60), true),
        (s(0), true),
        (s(599), true),
        (s(600), true),
        (s(601), false),
        (s(-86_400 * 30), false),
    ] {
        assert_eq!(orphan_candidate(Some(w), created), want, "{created}");
    }
    assert!(!orphan_candidate(None, w));
}

#[test]
fn a_quarantined_key_of_a_report_user_is_matched_by_its_create_date() {
    let mut k = inactive(key(OLD, 10, Some(0)));
    let created = k.created;
    k.id = None;
    let value = crate::apply::quarantine_tag_value_of(days_ago(0), created);
    let mut u = user("u")
        .tag(&RotationTag::tag_key(OLD), &value)
        .keys(&[k])
        .build();
    u.observed = Observed::CredentialReport;
    let p = run(&u, &cfg());
    assert_eq!(names(&p), vec!["rotate_access_key"], "{:#?}", p.actions);
    match &p.actions[0].action {
        Action::RotateAccessKey { key, .. } => {
            assert_eq!(key.id.as_deref(), Some(OLD), "the id learnt from the tag")
        }
        other => panic!("{other:?}"),
    }
}

/// The rotation tag of `OLD` whose new key could not be stored `failed_h` hours ago.
fn failed_tag(
    phase: Phase,
    since: chrono::DateTime<chrono::Utc>,
    failed_h: i64,
) -> (String, String) {
    let t = RotationTag {
        key_id: OLD.into(),
        phase,
        since,
        created: None,
        new_key: None,
        wall: None,
        failed: Some(hours_ago(failed_h)),
    };
    (RotationTag::tag_key(OLD), t.value())
}

#[test]
fn a_store_that_failed_waits_for_its_retry() {
    let d = cfg(); // recovery 7, store retry 1 d
    let none = {
        let mut c = cfg();
        c.rotation.delivery = Delivery::None;
        c
    };
    let with_retry = |r: &str| {
        let mut c = cfg();
        c.rotation.store_retry = r.parse().unwrap();
        c
    };
    let (hour, two_days) = (with_retry("1h"), with_retry("2d"));
    let q = Phase::Quarantined;
    let exposed = || inactive(key(OLD, 10, Some(0)));
    let cases = vec![
        Case {
            name: "quarantined, its replacement's store failed 2 h ago: no new key, a finding",
            user: with_tag(user("u"), failed_tag(q, hours_ago(3), 2))
                .keys(&[exposed()])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["rotation-stuck"],
            next_due: Some(hours_ago(2) + retry()),
        },
        Case {
            name: "quarantined, the store failed over a day ago: replaced again",
            user: with_tag(user("u"), failed_tag(q, hours_ago(30), 25))
                .keys(&[exposed()])
                .build(),
            cfg: d.clone(),
            actions: vec!["rotate_access_key"],
            findings: vec![],
            next_due: Some(hours_ago(30) + Duration::days(7)),
        },
        Case {
            name: "quarantined, the store failed, delivery now none: the user must make a key",
            user: with_tag(user("u"), failed_tag(q, hours_ago(3), 2))
                .keys(&[exposed()])
                .build(),
            cfg: none.clone(),
            actions: vec![],
            findings: vec!["rotation-stuck"],
            next_due: Some(hours_ago(3) + Duration::days(7)),
        },
        Case {
            name: "quarantined, the store failed, past the recovery window: deleted",
            user: with_tag(user("u"), failed_tag(q, days_ago(8), 2))
                .keys(&[exposed()])
                .build(),
            cfg: d.clone(),
            actions: vec!["delete_rotated_key"],
            findings: vec![],
            next_due: None,
        },
        Case {
            name: "quarantined, the store failed, active again: never reactivated, a finding",
            user: with_tag(user("u"), failed_tag(q, hours_ago(3), 2))
                .keys(&[key(OLD, 10, Some(0))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["rotation-stuck"],
            next_due: None,
        },
        Case {
            name: "stuck since 3 days, the store failed again 2 h ago: the failure counts",
            user: with_tag(user("u"), failed_tag(Phase::Stuck, days_ago(3), 2))
                .keys(&[key(OLD, 93, Some(1))])
                .build(),
            cfg: d.clone(),
            actions: vec![],
            findings: vec!["key-too-old", "rotation-stuck"],
            next_due: Some(hours_ago(2) + retry()),
        },
        Case {
            name: "quarantined, the store failed 2 h ago, store_retry = 1h: replaced again",
            user: with_tag(user("u"), failed_tag(q, hours_ago(3), 2))
                .keys(&[exposed()])
                .build(),
            cfg: hour.clone(),
            actions: vec!["rotate_access_key"],
            findings: vec![],
            next_due: Some(hours_ago(3) + Duration::days(7)),
        },
        Case {
            name: "stuck, the store failed 2 h ago, store_retry = 1h: rotated again",
            user: with_tag(user("u"), failed_tag(Phase::Stuck, hours_ago(2), 2))
                .keys(&[key(OLD, 93, Some(1))])
                .build(),
            cfg: hour.clone(),
            actions: vec!["rotate_access_key"],
            findings: vec!["key-too-old"],
            next_due: None,
        },
        Case {
            name: "stuck, the store failed 25 h ago, store_retry = 2d: still waits",
            user: with_tag(user("u"), failed_tag(Phase::Stuck, hours_ago(25), 25))
                .keys(&[key(OLD, 93, Some(1))])
                .build(),
            cfg: two_days.clone(),
            actions: vec![],
            findings: vec!["key-too-old", "rotation-stuck"],
            next_due: Some(hours_ago(25) + Duration::days(2)),
        },
        Case {
            name: "stuck, the store failed 25 h ago: rotated again",
            user: with_tag(user("u"), failed_tag(Phase::Stuck, hours_ago(25), 25))
                .keys(&[key(OLD, 93, Some(1))])
                .build(),
            cfg: d.clone(),
            actions: vec!["rotate_access_key"],
            findings: vec!["key-too-old"],
            next_due: None,
        },
    ];
    assert_cases(cases, true);
}

#[test]
fn a_failed_store_finding_names_the_key_the_store_and_the_fix() {
    let u = with_tag(user("app"), failed_tag(Phase::Quarantined, hours_ago(3), 2))
        .keys(&[inactive(key(OLD, 10, Some(0)))])
        .build();
    let p = run(&u, &cfg());
    let f = p
        .verdict
        .findings
        .iter()
        .find(|f| f.check.id() == "rotation-stuck")
        .expect("a rotation-stuck finding");
    assert_eq!(f.key_id.as_deref(), Some(OLD));
    let retry = (hours_ago(2) + retry())
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for want in [
        "the replacement of the quarantined",
        OLD,
        "secretsmanager iam-warden/app/access-key",
        "stays inactive and quarantined",
        retry.as_str(),
        "rotation.kms_key_id",
    ] {
        assert!(f.reason.contains(want), "{want:?} in {}", f.reason);
    }
    assert!(!f.reason.contains('\n'), "one line: {}", f.reason);
}

#[test]
fn a_failed_store_is_recorded_in_the_tag() {
    let key = RotationTag::tag_key(OLD);
    let q = RotationTag::parse(&key, &failed_tag(Phase::Quarantined, days_ago(1), 2).1)
        .unwrap()
        .unwrap();
    assert_eq!(q.phase, Phase::Quarantined);
    assert!(
        !q.quarantine_replacing(),
        "a failed replacement is not in progress"
    );
    assert!(crate::apply::is_quarantine_tag(&q.value()));
    assert_eq!(RotationTag::parse(&key, &q.value()), Some(Ok(q.clone())));
    let table = [
        ("phase=quarantined since=2026-12-01T00:00:00Z", None),
        (
            "phase=quarantined since=2026-12-01T00:00:00Z failed=2026-12-02T00:00:00Z",
            Some("2026-12-02T00:00:00Z"),
        ),
        (
            "phase=quarantined since=2026-12-01T00:00:00Z new=AKIANEW000000000002 failed=2026-12-02T00:00:00Z",
            None,
        ),
        // A stuck tag written before failed= existed: the failure is its since.
        ("phase=stuck since=2026-12-01T00:00:00Z", Some("2026-12-01T00:00:00Z")),
        (
            "phase=stuck since=2026-12-01T00:00:00Z failed=2026-12-03T00:00:00Z",
            Some("2026-12-03T00:00:00Z"),
        ),
        ("phase=stuck since=2026-12-01T00:00:00Z new=AKIANEW000000000002", None),
        ("phase=warned since=2026-12-01T00:00:00Z failed=2026-12-03T00:00:00Z", None),
    ];
    for (value, want) in table {
        let t = RotationTag::parse(&key, value).unwrap().unwrap();
        let want = want.map(|w| w.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
        assert_eq!(t.store_failed_at(), want, "{value}");
    }
    assert!(
        RotationTag::parse(&key, "phase=stuck since=2026-12-01T00:00:00Z failed=never")
            .unwrap()
            .is_err()
    );
}
