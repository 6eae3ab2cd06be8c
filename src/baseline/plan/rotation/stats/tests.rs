//! Table tests of the key gauges.

use chrono::Duration;

use super::*;
use crate::baseline::plan::plan_user;
use crate::baseline::testkit::*;
use crate::inventory::Observed;

const OLD: &str = "AKIAOLD000000000001";
const NEW: &str = "AKIANEW000000000002";
const DAY: f64 = 86_400.0;

/// (case, users, keys by phase that are not zero)
type PhaseCase = (&'static str, Vec<UserState>, Vec<(&'static str, usize)>);
/// (case, users, the earliest due time)
type DueCase = (&'static str, Vec<UserState>, Option<chrono::DateTime<Utc>>);

fn rot_tag(
    id: &str,
    phase: &str,
    since: i64,
    created: Option<i64>,
    new: Option<&str>,
) -> (String, String) {
    let mut v = format!(
        "phase={phase} since={}",
        days_ago(since).format("%Y-%m-%dT%H:%M:%SZ")
    );
    if let Some(c) = created {
        v.push_str(&format!(
            " created={}",
            days_ago(c).format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    if let Some(n) = new {
        v.push_str(&format!(" new={n}"));
    }
    (format!("{ROTATION_TAG_PREFIX}{id}"), v)
}

fn tagged(b: UserBuilder, tags: &[(String, String)]) -> UserState {
    tags.iter().fold(b, |b, (k, v)| b.tag(k, v)).build()
}

/// A user read from the credential report: keys without ids.
fn from_report(mut u: UserState) -> UserState {
    u.observed = Observed::CredentialReport;
    for k in &mut u.keys {
        k.id = None;
    }
    u
}

fn stats(users: &[UserState]) -> KeyStats {
    let plans: Vec<_> = users
        .iter()
        .map(|u| plan_user(u, &snap_with_baseline_groups(), &cfg(), now()).unwrap())
        .collect();
    key_stats(users, &plans, now())
}

fn phases(s: &KeyStats) -> Vec<(&'static str, usize)> {
    KEY_PHASES
        .iter()
        .map(|p| (*p, s.phase(p)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[test]
fn keys_by_phase() {
    let cases: Vec<PhaseCase> = vec![
        ("no users", vec![], vec![]),
        (
            "untagged keys are active or inactive",
            vec![user("a")
                .keys(&[key(OLD, 10, Some(1)), inactive(key(NEW, 20, None))])
                .build()],
            vec![("active", 1), ("inactive", 1)],
        ),
        (
            "a draining key and its new key",
            vec![tagged(
                user("d").keys(&[key(OLD, 95, Some(0)), key(NEW, 2, Some(0))]),
                &[rot_tag(OLD, "draining", 2, None, Some(NEW))],
            )],
            vec![("active", 1), ("draining", 1)],
        ),
        (
            "warned, stuck and deactivated, by id",
            vec![
                tagged(
                    user("w").keys(&[key(OLD, 80, Some(0))]),
                    &[rot_tag(OLD, "warned", 4, None, None)],
                ),
                tagged(
                    user("s").keys(&[key(OLD, 110, Some(0)), key(NEW, 20, Some(0))]),
                    &[rot_tag(OLD, "stuck", 20, None, Some(NEW))],
                ),
                tagged(
                    user("x").keys(&[inactive(key(OLD, 100, Some(5))), key(NEW, 9, Some(0))]),
                    &[rot_tag(OLD, "deactivated", 2, None, Some(NEW))],
                ),
            ],
            vec![
                ("active", 2),
                ("warned", 1),
                ("stuck", 1),
                ("deactivated", 1),
            ],
        ),
        (
            "rotating: the intent before the new key exists",
            vec![tagged(
                user("r").keys(&[key(OLD, 91, Some(0))]),
                &[rot_tag(OLD, "rotating", 0, None, None)],
            )],
            vec![("rotating", 1)],
        ),
        (
            "quarantined by id; its tag does not parse as a rotation phase",
            vec![tagged(
                user("q").keys(&[inactive(key(OLD, 3, Some(0))), key(NEW, 1, None)]),
                &[(
                    format!("{ROTATION_TAG_PREFIX}{OLD}"),
                    "phase=quarantined since=2026-05-31T00:00:00Z".into(),
                )],
            )],
            vec![("active", 1), ("quarantined", 1)],
        ),
        (
            "report keys: tags match by created, a quarantine goes to an untagged inactive key",
            vec![
                from_report(tagged(
                    user("rd").keys(&[key(OLD, 95, Some(0)), key(NEW, 2, Some(0))]),
                    &[rot_tag(OLD, "draining", 2, Some(95), Some(NEW))],
                )),
                from_report(tagged(
                    user("rq").keys(&[key(OLD, 3, Some(0)), inactive(key(NEW, 1, None))]),
                    &[(
                        format!("{ROTATION_TAG_PREFIX}{NEW}"),
                        "phase=quarantined since=2026-05-31T00:00:00Z".into(),
                    )],
                )),
            ],
            vec![("active", 2), ("draining", 1), ("quarantined", 1)],
        ),
        (
            "a quarantine tag without an inactive key to give it to counts nothing",
            vec![from_report(tagged(
                user("gone").keys(&[key(OLD, 3, Some(0))]),
                &[(
                    format!("{ROTATION_TAG_PREFIX}{NEW}"),
                    "phase=quarantined since=2026-05-31T00:00:00Z".into(),
                )],
            ))],
            vec![("active", 1)],
        ),
        (
            "report keys made within a second: the tag counts once",
            vec![from_report(tagged(
                user("twins").keys(&[key(OLD, 95, Some(0)), key(NEW, 95, Some(0))]),
                &[rot_tag(OLD, "draining", 2, Some(95), Some(NEW))],
            ))],
            vec![("active", 1), ("draining", 1)],
        ),
        (
            "a malformed tag leaves the key's plain state",
            vec![tagged(
                user("m").keys(&[key(OLD, 10, Some(0))]),
                &[(
                    format!("{ROTATION_TAG_PREFIX}{OLD}"),
                    "phase=nonsense".into(),
                )],
            )],
            vec![("active", 1)],
        ),
        (
            "exempt users are left out",
            vec![user("e")
                .tag(EXEMPT_TAG, "true")
                .keys(&[key(OLD, 500, Some(0))])
                .build()],
            vec![],
        ),
    ];
    for (name, users, want) in cases {
        let s = stats(&users);
        assert_eq!(phases(&s), want, "{name}");
        let total: usize = s.by_phase.iter().sum();
        let keys: usize = users
            .iter()
            .filter(|u| u.tags.get(EXEMPT_TAG).is_none())
            .map(|u| u.keys.len())
            .sum();
        assert_eq!(total, keys, "{name}: every key in exactly one phase");
    }
}

#[test]
fn age_distribution_and_oldest_active_key() {
    let users = vec![
        user("a")
            .keys(&[key(OLD, 5, Some(0)), key(NEW, 77, Some(0))])
            .build(),
        user("b")
            .keys(&[key(OLD, 400, Some(0)), inactive(key(NEW, 1000, None))])
            .build(),
        user("e")
            .tag(EXEMPT_TAG, "true")
            .keys(&[key(OLD, 2000, Some(0))])
            .build(),
    ];
    let s = stats(&users);
    // Active, managed keys: 5, 77 and 400 days (the inactive and the exempt key are out).
    assert_eq!(s.age_count, 3);
    assert_eq!(s.age_sum_seconds, (5.0 + 77.0 + 400.0) * DAY);
    assert_eq!(s.oldest_active_age_seconds, 400.0 * DAY);
    let want: Vec<(u32, u64)> = vec![
        (7, 1),
        (30, 1),
        (60, 1),
        (76, 1),
        (90, 2),
        (104, 2),
        (180, 2),
        (365, 2),
        (730, 3),
    ];
    let got: Vec<(u32, u64)> = KEY_AGE_BUCKETS_DAYS
        .iter()
        .copied()
        .zip(s.age_buckets)
        .collect();
    assert_eq!(got, want);
    // A bound is inclusive (le); a key from the future has age 0.
    let edge = vec![user("c")
        .keys(&[key(OLD, 7, Some(0)), key(NEW, -1, None)])
        .build()];
    let s = stats(&edge);
    assert_eq!(s.age_buckets[0], 2);
    assert_eq!(s.oldest_active_age_seconds, 7.0 * DAY);
    assert_eq!(stats(&[]).oldest_active_age_seconds, 0.0);
}

#[test]
fn next_due_is_the_earliest_of_the_managed_users() {
    let cases: Vec<DueCase> = vec![
        ("nothing", vec![], None),
        (
            "a fresh key is warned at max - warn_days (76 days)",
            vec![user("a").keys(&[key(OLD, 10, Some(0))]).build()],
            Some(days_ago(10) + Duration::days(76)),
        ),
        (
            "a draining key: the end of grace (14 days after since) when its new key is unused",
            vec![
                user("a").keys(&[key(OLD, 10, Some(0))]).build(),
                tagged(
                    user("d").keys(&[key(OLD, 95, Some(0)), key(NEW, 2, None)]),
                    &[rot_tag(OLD, "draining", 2, None, Some(NEW))],
                ),
            ],
            Some(days_ago(2) + Duration::days(14)),
        ),
        (
            "an exempt user's due time does not count",
            vec![user("e")
                .tag(EXEMPT_TAG, "true")
                .keys(&[key(OLD, 10, Some(0))])
                .build()],
            None,
        ),
        (
            "only inactive keys: nothing due by time",
            vec![user("i").keys(&[inactive(key(OLD, 10, None))]).build()],
            None,
        ),
    ];
    for (name, users, want) in cases {
        assert_eq!(stats(&users).next_due, want, "{name}");
    }
}

#[test]
fn plans_are_matched_by_name_not_position() {
    let users = vec![
        user("a").keys(&[key(OLD, 10, Some(0))]).build(),
        user("e")
            .tag(EXEMPT_TAG, "true")
            .keys(&[key(NEW, 10, Some(0))])
            .build(),
    ];
    let mut plans: Vec<_> = users
        .iter()
        .map(|u| plan_user(u, &snap_with_baseline_groups(), &cfg(), now()).unwrap())
        .collect();
    plans.reverse();
    let s = key_stats(&users, &plans, now());
    assert_eq!(s.phase("active"), 1, "the exempt user's key stays out");
    // A user without a plan is left out.
    assert_eq!(key_stats(&users, &plans[..1], now()).phase("active"), 0);
}
