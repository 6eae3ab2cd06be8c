use super::*;
use crate::baseline::plan::{plan_account, AccessLoss, Action, PlannedAction};
use crate::baseline::testkit::*;
use crate::baseline::Check;
use crate::config::Attach;
use crate::inventory::cis::{CisFacts, RoleState};
use crate::inventory::GroupState;

const CLOUDSHELL: &str = "arn:aws:iam::aws:policy/AWSCloudShellFullAccess";

fn on(mut cfg: Config) -> Config {
    cfg.cis.detach_cloudshell_full_access = true;
    cfg.cis.move_direct_policies_to_groups = true;
    cfg
}

fn group(name: &str, policies: &[&str]) -> GroupState {
    GroupState {
        name: name.into(),
        arn: format!("arn:aws:iam::{ACCOUNT}:group/{name}"),
        path: "/".into(),
        attached_policies: policies.iter().map(|p| p.to_string()).collect(),
    }
}

fn role(name: &str, policies: &[&str]) -> RoleState {
    RoleState {
        name: name.into(),
        arn: format!("arn:aws:iam::{ACCOUNT}:role/{name}"),
        attached_policies: policies.iter().map(|p| p.to_string()).collect(),
    }
}

/// The baseline groups, `devs` and `admins` with CloudShell, roles `ops` and iam-warden's
/// own `iam-warden` with CloudShell.
fn snap(users: Vec<UserState>) -> AccountSnapshot {
    let mut s = snap_with_baseline_groups();
    for g in [group("devs", &[CLOUDSHELL]), group("admins", &[CLOUDSHELL])] {
        s.groups.insert(g.name.clone(), g);
    }
    let mut facts = CisFacts::default();
    for r in [
        role("ops", &[CLOUDSHELL]),
        role("iam-warden", &[CLOUDSHELL]),
    ] {
        facts.roles.insert(r.name.clone(), r);
    }
    s.cis = Some(facts);
    s.users = users;
    s
}

fn names(actions: &[PlannedAction]) -> Vec<(String, String)> {
    actions
        .iter()
        .map(|a| (a.action.name().to_string(), a.action.target()))
        .collect()
}

#[test]
fn direct_group_names_stay_within_iams_limits() {
    let long_a = format!("{}A", "p".repeat(127));
    let long_b = format!("{}B", "p".repeat(127));
    let (x110, x111) = ("x".repeat(110), "x".repeat(111));
    // (policy name, want: None = hashed; Some("") = the prefix and the name)
    let table: [(&str, Option<&str>); 6] = [
        ("ReadOnly", Some("iam-warden-direct-ReadOnly")),
        ("a+b=c,d.e@f_g-h", Some("iam-warden-direct-a+b=c,d.e@f_g-h")),
        (&x110, Some("")),
        (&x111, None),
        ("bad name/ü", None),
        (long_a.as_str(), None),
    ];
    for (policy, want) in table {
        let g = direct_group_name(policy);
        assert!(g.len() <= MAX_GROUP_NAME, "{policy}: {g}");
        assert!(g.starts_with(DIRECT_GROUP_PREFIX), "{g}");
        assert!(
            g.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)),
            "{g}"
        );
        match want {
            Some("") => assert_eq!(g, format!("{DIRECT_GROUP_PREFIX}{policy}")),
            Some(w) => assert_eq!(g, w),
            None => {
                let hex = &g[g.len() - 8..];
                assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{g}");
                assert_eq!(g.as_bytes()[g.len() - 9], b'-', "{g}");
            }
        }
        assert_eq!(g, direct_group_name(policy), "stable");
    }
    assert_eq!(direct_group_name(&long_a).len(), MAX_GROUP_NAME);
    assert_ne!(direct_group_name(&long_a), direct_group_name(&long_b));
    assert_ne!(direct_group_name("a b"), direct_group_name("a-b"));
}

#[test]
fn own_role_is_the_caller_or_a_session_of_it() {
    let arn = format!("arn:aws:iam::{ACCOUNT}:role/svc/iam-warden");
    let table = [
        (
            format!("arn:aws:sts::{ACCOUNT}:assumed-role/iam-warden/s1"),
            true,
        ),
        (arn.clone(), true),
        (
            format!("arn:aws:sts::{ACCOUNT}:assumed-role/iam-warden-2/s1"),
            false,
        ),
        (format!("arn:aws:iam::{ACCOUNT}:user/iam-warden"), false),
        (String::new(), false),
    ];
    for (caller, want) in table {
        assert_eq!(is_own_role("iam-warden", &arn, &caller), want, "{caller}");
    }
}

#[test]
fn cloudshell_is_detached_from_groups_and_roles_but_never_from_exempt_or_own() {
    let users = vec![
        user("old").group("devs").build(),
        user("fresh").group("devs").build(),
        user("boss").group("admins").tag(EXEMPT_TAG, "true").build(),
    ];
    let mut s = snap(users);
    s.users[1].created = now() - chrono::Duration::minutes(30);
    // Off by default, and off with cis.enabled = false.
    assert_eq!(account_actions(&s, &cfg(), now()), (vec![], vec![]));
    let mut off = on(cfg());
    off.cis.enabled = false;
    assert_eq!(account_actions(&s, &off, now()), (vec![], vec![]));

    let (actions, skipped) = account_actions(&s, &on(cfg()), now());
    assert_eq!(
        names(&actions),
        vec![
            (
                "detach_group_policy".into(),
                format!("devs -> {CLOUDSHELL}")
            ),
            ("detach_role_policy".into(), format!("ops -> {CLOUDSHELL}")),
        ]
    );
    // The new user loses it too, but is not counted (new_user_grace).
    assert_eq!(
        actions[0].action.members_losing_access(),
        &["old".to_string()]
    );
    assert!(
        actions[0].reason.contains("2 member(s)"),
        "{}",
        actions[0].reason
    );
    assert_eq!(actions[0].check, Some(Check::CloudShellFullAccess));
    let why: Vec<(String, &str)> = skipped
        .iter()
        .map(|s| (s.planned.action.target(), s.skipped.as_str()))
        .collect();
    assert_eq!(why.len(), 2, "{why:?}");
    assert_eq!(why[0].0, format!("admins -> {CLOUDSHELL}"));
    assert!(why[0].1.contains("exempt member(s) boss (tag"), "{why:?}");
    assert_eq!(why[1].0, format!("iam-warden -> {CLOUDSHELL}"));
    assert!(why[1].1.contains("own identity"), "{why:?}");

    // A group in exemptions.groups is skipped even without members.
    let mut c = on(cfg());
    c.exemptions.groups.push("devs".into());
    let (actions, skipped) = account_actions(&s, &c, now());
    assert!(!names(&actions).iter().any(|(_, t)| t.starts_with("devs")));
    assert!(skipped
        .iter()
        .any(|s| s.skipped.contains("exemptions.groups")));
}

#[test]
fn cloudshell_on_a_user_is_detached_and_counted_exempt_and_own_untouched() {
    let me = format!("arn:aws:iam::{ACCOUNT}:user/warden");
    let users = vec![
        user("alice").attached(CLOUDSHELL).build(),
        user("bob")
            .attached(CLOUDSHELL)
            .tag(EXEMPT_TAG, "true")
            .build(),
        user("warden").attached(CLOUDSHELL).build(),
    ];
    let mut s = snap(users);
    s.caller_arn = me;
    let mut c = on(cfg());
    c.cis.move_direct_policies_to_groups = false;
    let plan = plan_account(&s, &c, now()).unwrap();
    let by = |n: &str| plan.users.iter().find(|u| u.verdict.user == n).unwrap();
    let alice = by("alice");
    assert_eq!(
        names(&alice.actions),
        vec![("detach_user_policy".into(), CLOUDSHELL.into())]
    );
    assert!(alice.breaker.counts);
    assert_eq!(alice.breaker.reduces, vec![AccessLoss::DetachesPolicy]);
    assert!(by("bob").actions.is_empty());
    assert!(by("warden").actions.is_empty());
    // The own user is said to be skipped (journaled); the exempt one is just left alone.
    let own: Vec<(String, &str)> = plan
        .account_skipped
        .iter()
        .filter(|s| s.planned.action.user().is_some())
        .map(|s| {
            (
                s.planned.action.user().unwrap().to_string(),
                s.skipped.as_str(),
            )
        })
        .collect();
    assert_eq!(
        own,
        vec![(
            "warden".to_string(),
            "iam-warden's own identity is never changed"
        )]
    );
    // alice, and devs/admins have no members here: 1 user losing access.
    assert_eq!(plan.users_losing_access(), 1);
}

#[test]
fn group_members_count_toward_the_breaker_once() {
    let users = vec![
        user("a").group("devs").attached(CLOUDSHELL).build(),
        user("b").group("devs").build(),
        user("c").build(),
    ];
    let mut c = on(cfg());
    c.cis.move_direct_policies_to_groups = false;
    let plan = plan_account(&snap(users), &c, now()).unwrap();
    // a (own plan and group), b (group): 2 users, a counted once.
    assert_eq!(plan.users_losing_access(), 2);
}

#[test]
fn direct_policies_move_into_groups_without_counting() {
    let mine = policy_arn(&cfg().baseline.mfa_policy.name);
    let other = format!("arn:aws:iam::{ACCOUNT}:policy/team/deploy");
    let aws = "arn:aws:iam::aws:policy/ReadOnlyAccess";
    let u = user("dev")
        .attached(&mine)
        .attached(&other)
        .attached(aws)
        .attached(CLOUDSHELL)
        .build();
    let mut c = on(cfg());
    c.baseline.attach = Attach::User;
    let plan = plan_account(&snap(vec![u]), &c, now()).unwrap();
    let p = &plan.users[0];
    let got: Vec<(String, String)> = names(&p.actions)
        .into_iter()
        .filter(|(n, _)| n != "attach_user_policy")
        .collect();
    assert_eq!(
        got,
        vec![
            ("detach_user_policy".into(), CLOUDSHELL.into()),
            (
                "move_user_policy_to_group".into(),
                format!("{other} -> iam-warden-direct-deploy")
            ),
            (
                "move_user_policy_to_group".into(),
                format!("{aws} -> iam-warden-direct-ReadOnlyAccess")
            ),
        ],
        "the baseline's own attachment stays; CloudShell is detached, not moved"
    );
    let moves: Vec<_> = p
        .actions
        .iter()
        .filter(|a| matches!(a.action, Action::MoveUserPolicyToGroup { .. }))
        .collect();
    for m in &moves {
        assert_eq!(
            crate::baseline::plan::reduces_access(&m.action, &user("dev").build(), &c),
            None
        );
        assert_eq!(m.check, Some(Check::UserPolicyAttached));
    }
    // Only the CloudShell detach counts.
    assert_eq!(p.breaker.reduces, vec![AccessLoss::DetachesPolicy]);

    // Move alone: nothing counts.
    let mut only_move = cfg();
    only_move.cis.move_direct_policies_to_groups = true;
    let u = user("dev").attached(&other).in_baseline().build();
    let plan = plan_account(&snap(vec![u]), &only_move, now()).unwrap();
    assert_eq!(names(&plan.users[0].actions).len(), 1);
    assert!(!plan.users[0].breaker.counts);
    assert_eq!(plan.users_losing_access(), 0);
}

#[test]
fn moves_respect_the_ten_groups_per_user() {
    let p1 = format!("arn:aws:iam::{ACCOUNT}:policy/p1");
    let p2 = format!("arn:aws:iam::{ACCOUNT}:policy/p2");
    let mut b = user("full").in_baseline();
    for i in 0..8 {
        b = b.group(&format!("g{i}"));
    }
    let u = b.attached(&p1).attached(&p2).build();
    let mut c = cfg();
    c.cis.move_direct_policies_to_groups = true;
    c.baseline.source_ip_policy.enabled = false;
    let plan = plan_account(&snap(vec![u.clone()]), &c, now()).unwrap();
    let p = &plan.users[0];
    assert_eq!(
        names(&p.actions),
        vec![(
            "move_user_policy_to_group".into(),
            format!("{p1} -> iam-warden-direct-p1")
        )]
    );
    let quota: Vec<&str> = p
        .verdict
        .findings
        .iter()
        .filter(|f| f.check == Check::QuotaReached)
        .map(|f| f.reason.as_str())
        .collect();
    assert_eq!(quota.len(), 1, "{quota:?}");
    assert!(quota[0].contains("policy p2") && quota[0].contains("10 groups"));
    // Already in the target group (a move stopped before the detach): finished, no room
    // needed.
    let mut u = u;
    u.groups.push("iam-warden-direct-p2".into());
    let plan = plan_account(&snap(vec![u]), &c, now()).unwrap();
    let got = names(&plan.users[0].actions);
    assert!(
        got.contains(&(
            "move_user_policy_to_group".into(),
            format!("{p2} -> iam-warden-direct-p2")
        )),
        "{got:?}"
    );
}
