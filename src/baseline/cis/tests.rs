use serde_json::json;

use super::*;
use crate::baseline::checks::evaluate_user;
use crate::baseline::testkit::*;
use crate::inventory::cis::{Analyzer, RoleState, ServerCertificate, VirtualMfa};
use crate::inventory::credential_report::RootKey;

fn root_row(mfa: bool, keys: Vec<RootKey>, signed_in: Option<i64>) -> RootEntry {
    RootEntry::Read(RootRow {
        arn: format!("arn:aws:iam::{ACCOUNT}:root"),
        mfa_active: mfa,
        password_last_used: signed_in.map(days_ago),
        keys,
    })
}

/// Facts of a compliant account: root with hardware MFA, unused for a year; a support
/// role; an active analyzer; a SAML provider.
fn good_facts() -> CisFacts {
    let mut f = CisFacts {
        root: root_row(true, vec![], Some(365)),
        access_analyzers: vec![(
            "us-east-1".into(),
            AnalyzerRead::Read(vec![Analyzer {
                name: "a".into(),
                arn: "arn:aws:access-analyzer:us-east-1:123456789012:analyzer/a".into(),
                status: "ACTIVE".into(),
                kind: "ACCOUNT".into(),
            }]),
        )],
        saml_providers: vec![format!("arn:aws:iam::{ACCOUNT}:saml-provider/idp")],
        ..Default::default()
    };
    f.roles.insert(
        "support".into(),
        RoleState {
            name: "support".into(),
            arn: format!("arn:aws:iam::{ACCOUNT}:role/support"),
            attached_policies: vec!["arn:aws:iam::aws:policy/AWSSupportAccess".into()],
        },
    );
    f
}

fn run(facts: CisFacts) -> Vec<Finding> {
    run_snap(snap_with_baseline_groups(), facts)
}

fn run_snap(mut snap: AccountSnapshot, facts: CisFacts) -> Vec<Finding> {
    snap.cis = Some(facts.clone());
    evaluate(&snap, &facts, &cfg(), now())
}

fn checks(f: &[Finding]) -> Vec<(&'static str, bool)> {
    f.iter().map(|f| (f.check.id(), f.cannot_check)).collect()
}

#[test]
fn a_compliant_account_has_no_cis_findings() {
    let f = run(good_facts());
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn root_checks_from_the_report_row() {
    let key = |slot, active, used: Option<i64>| RootKey {
        slot,
        active,
        last_used: used.map(days_ago),
    };
    type Case = (&'static str, RootEntry, Vec<(&'static str, bool)>);
    let table: Vec<Case> = vec![
        (
            "active key",
            root_row(true, vec![key(1, true, Some(30))], Some(365)),
            vec![("root-access-key", false)],
        ),
        (
            "inactive key only (Prowler checks active keys)",
            root_row(true, vec![key(2, false, None)], Some(365)),
            vec![],
        ),
        (
            "no MFA: 1.4 and 1.5 fail",
            root_row(false, vec![], Some(365)),
            vec![("root-without-mfa", false), ("root-virtual-mfa", false)],
        ),
        (
            "signed in today",
            root_row(true, vec![], Some(0)),
            vec![("root-used", false)],
        ),
        (
            "signed in 1 day ago: outside root_used_days = 1",
            root_row(true, vec![], Some(1)),
            vec![],
        ),
        (
            "key used today",
            root_row(true, vec![key(1, false, Some(0))], None),
            vec![("root-used", false)],
        ),
        ("never used", root_row(true, vec![], None), vec![]),
    ];
    for (name, root, want) in table {
        let f = run(CisFacts {
            root,
            ..good_facts()
        });
        assert_eq!(checks(&f), want, "{name}: {f:?}");
        for x in &f {
            assert_eq!(
                x.resource.as_deref(),
                Some("arn:aws:iam::123456789012:root"),
                "{name}"
            );
        }
    }
}

#[test]
fn a_report_without_a_root_row_is_cannot_check_never_a_pass() {
    for (root, says) in [
        (RootEntry::Missing, "no <root_account> row"),
        (
            RootEntry::Unreadable("line 2: x".into()),
            "unreadable: line 2: x",
        ),
    ] {
        let f = run(CisFacts {
            root,
            ..good_facts()
        });
        assert_eq!(
            checks(&f),
            vec![
                ("root-access-key", true),
                ("root-without-mfa", true),
                ("root-virtual-mfa", true),
                ("root-used", true)
            ]
        );
        assert!(
            f.iter()
                .all(|x| x.reason.starts_with("cannot check: ") && x.reason.contains(says)),
            "{f:?}"
        );
    }
}

#[test]
fn root_virtual_mfa_by_serial_or_user() {
    let table = [
        (
            VirtualMfa {
                serial: format!("arn:aws:iam::{ACCOUNT}:mfa/root-account-mfa-device"),
                user_arn: None,
            },
            true,
        ),
        (
            VirtualMfa {
                serial: format!("arn:aws:iam::{ACCOUNT}:mfa/anything"),
                user_arn: Some(format!("arn:aws:iam::{ACCOUNT}:root")),
            },
            true,
        ),
        (
            VirtualMfa {
                serial: format!("arn:aws:iam::{ACCOUNT}:mfa/alice"),
                user_arn: Some(format!("arn:aws:iam::{ACCOUNT}:user/alice")),
            },
            false,
        ),
        (
            // Another account's root device (an organisation's listing) is not ours.
            VirtualMfa {
                serial: "arn:aws:iam::999999999999:mfa/root-account-mfa-device".into(),
                user_arn: None,
            },
            false,
        ),
    ];
    for (d, virt) in table {
        let f = run(CisFacts {
            virtual_mfa: vec![d.clone()],
            ..good_facts()
        });
        let want = if virt {
            vec![("root-virtual-mfa", false)]
        } else {
            vec![]
        };
        assert_eq!(checks(&f), want, "{d:?}");
    }
}

#[test]
fn full_admin_documents_and_odd_wildcards() {
    let table = [
        (
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
            Ok(AdminGrant::FullAdmin),
        ),
        (
            json!({"Statement": {"Effect": "Allow", "Action": ["*"], "Resource": ["*"]}}),
            Ok(AdminGrant::FullAdmin),
        ),
        (
            json!({"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "*"], "Resource": "*", "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}]}),
            Ok(AdminGrant::FullAdmin),
        ),
        (
            json!({"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}),
            Ok(AdminGrant::No { not_action: false }),
        ),
        (
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": ["arn:*"]}]}),
            Ok(AdminGrant::No { not_action: false }),
        ),
        (
            json!({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
            Ok(AdminGrant::No { not_action: false }),
        ),
        (
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:s3:::x"}]}),
            Ok(AdminGrant::No { not_action: false }),
        ),
        (
            json!({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}),
            Ok(AdminGrant::No { not_action: true }),
        ),
        (
            json!({"Statement": []}),
            Ok(AdminGrant::No { not_action: false }),
        ),
        (json!({"Version": "2012-10-17"}), Err("no Statement")),
        (
            json!({"Statement": "everything"}),
            Err("not a list or an object"),
        ),
        (
            json!({"Statement": [{"Effect": "Allow", "Action": 7, "Resource": "*"}]}),
            Err("Action is 7"),
        ),
        (
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": [1]}]}),
            Err("Resource holds 1"),
        ),
        (json!({"Statement": ["Allow"]}), Err("not an object")),
    ];
    for (doc, want) in table {
        match (admin_grant(&doc), want) {
            (Ok(got), Ok(w)) => assert_eq!(got, w, "{doc}"),
            (Err(e), Err(w)) => assert!(e.contains(w), "{doc}: {e}"),
            (got, w) => panic!("{doc}: got {got:?}, want {w:?}"),
        }
    }
}

fn policy(name: &str, arn: &str, doc: Option<Value>) -> ManagedPolicyState {
    ManagedPolicyState {
        name: name.into(),
        arn: arn.into(),
        path: "/".into(),
        default_version_id: Some("v2".into()),
        default_document: doc,
        version_ids: vec!["v1".into(), "v2".into()],
    }
}

#[test]
fn full_admin_policies_name_their_principals_and_bad_documents_are_findings() {
    let admin = json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let mut snap = snap_with_baseline_groups();
    let local = format!("arn:aws:iam::{ACCOUNT}:policy/god");
    snap.policies
        .insert("god".into(), policy("god", &local, Some(admin.clone())));
    snap.policies.insert(
        "broken".into(),
        policy(
            "broken",
            &format!("arn:aws:iam::{ACCOUNT}:policy/broken"),
            None,
        ),
    );
    snap.policies.insert(
        "unused-god".into(),
        policy(
            "unused-god",
            &format!("arn:aws:iam::{ACCOUNT}:policy/unused-god"),
            Some(admin.clone()),
        ),
    );
    snap.users.push(user("alice").attached(&local).build());
    let mut facts = good_facts();
    let aws_admin = "arn:aws:iam::aws:policy/AdministratorAccess";
    facts.aws_policies.insert(
        aws_admin.into(),
        policy("AdministratorAccess", aws_admin, Some(admin)),
    );
    facts.roles.insert(
        "ops".into(),
        RoleState {
            name: "ops".into(),
            arn: format!("arn:aws:iam::{ACCOUNT}:role/ops"),
            attached_policies: vec![aws_admin.into(), local.clone()],
        },
    );
    let f = run_snap(snap, facts);
    let by = |arn: &str| {
        f.iter()
            .find(|x| x.resource.as_deref() == Some(arn))
            .unwrap_or_else(|| panic!("no finding on {arn}: {f:?}"))
    };
    let g = by(&local);
    assert!(!g.cannot_check);
    assert!(
        g.reason.contains("customer-managed policy god (v2)")
            && g.reason.contains("attached to user alice, role ops"),
        "{}",
        g.reason
    );
    assert!(by(aws_admin)
        .reason
        .contains("AWS managed policy AdministratorAccess"));
    assert!(by(&format!("arn:aws:iam::{ACCOUNT}:policy/unused-god"))
        .reason
        .contains("attached to nothing"));
    let b = by(&format!("arn:aws:iam::{ACCOUNT}:policy/broken"));
    assert!(
        b.cannot_check
            && b.reason
                .contains("cannot evaluate customer-managed policy broken"),
        "{}",
        b.reason
    );
    assert_eq!(f.len(), 4, "{f:?}");
}

#[test]
fn support_role_certificates_analyzer_federation_cloudshell() {
    // 1.16: no role with AWSSupportAccess (a customer policy of that name does not count).
    let mut facts = good_facts();
    facts.roles.get_mut("support").unwrap().attached_policies =
        vec![format!("arn:aws:iam::{ACCOUNT}:policy/AWSSupportAccess")];
    assert_eq!(checks(&run(facts)), vec![("no-support-role", false)]);

    // 1.18: expired, valid, and without expiry.
    let cert = |name: &str, exp: Option<i64>| ServerCertificate {
        name: name.into(),
        arn: format!("arn:aws:iam::{ACCOUNT}:server-certificate/{name}"),
        expiration: exp.map(|d| now() - chrono::Duration::days(d)),
    };
    let f = run(CisFacts {
        server_certificates: vec![
            cert("old", Some(10)),
            cert("new", Some(-30)),
            cert("odd", None),
        ],
        ..good_facts()
    });
    assert_eq!(
        checks(&f),
        vec![
            ("server-certificate-expired", false),
            ("server-certificate-expired", true)
        ]
    );
    assert!(
        f[0].reason.contains("old expired") && f[0].resource.as_deref().unwrap().ends_with("/old")
    );
    assert!(f[1]
        .reason
        .contains("no expiry date for server certificate odd"));

    // 1.19: none, not active, the API failing.
    let an = |status: &str| Analyzer {
        name: "a".into(),
        arn: "x".into(),
        status: status.into(),
        kind: "ACCOUNT".into(),
    };
    let f = run(CisFacts {
        access_analyzers: vec![
            ("us-east-1".into(), AnalyzerRead::Read(vec![])),
            ("eu-west-1".into(), AnalyzerRead::Read(vec![an("DISABLED")])),
            (
                "eu-north-1".into(),
                AnalyzerRead::Failed("AWS access-analyzer ListAnalyzers failed: 404".into()),
            ),
            (
                "us-west-2".into(),
                AnalyzerRead::Read(vec![an("DISABLED"), an("ACTIVE")]),
            ),
        ],
        ..good_facts()
    });
    assert_eq!(
        checks(&f),
        vec![
            ("access-analyzer-disabled", false),
            ("access-analyzer-disabled", false),
            ("access-analyzer-disabled", true)
        ]
    );
    assert!(
        f[0].reason.contains("us-east-1 (analyzers: none)"),
        "{}",
        f[0].reason
    );
    assert!(f[1].reason.contains("a DISABLED"), "{}", f[1].reason);
    assert!(f[2].reason.contains("cannot check") && f[2].reason.contains("404"));
    assert_eq!(
        f[2].resource.as_deref(),
        Some("arn:aws:access-analyzer:eu-north-1:123456789012:analyzer")
    );

    // 1.20: console users and no provider; OIDC alone is enough; no console user: nothing.
    let mut snap = snap_with_baseline_groups();
    snap.users
        .push(user("alice").password(Some(1), 10).mfa().build());
    let no_idp = CisFacts {
        saml_providers: vec![],
        ..good_facts()
    };
    let f = run_snap(snap.clone(), no_idp.clone());
    assert_eq!(checks(&f), vec![("no-identity-federation", false)]);
    assert!(f[0].reason.starts_with("informational: 1 IAM user(s)"));
    let oidc = CisFacts {
        oidc_providers: vec!["arn:aws:iam::1:oidc-provider/x".into()],
        ..no_idp.clone()
    };
    assert!(run_snap(snap, oidc).is_empty());
    assert!(run(no_idp).is_empty());

    // 1.21: on a user, a group and a role.
    let shell = "arn:aws:iam::aws:policy/AWSCloudShellFullAccess";
    let mut snap = snap_with_baseline_groups();
    snap.users.push(user("bob").attached(shell).build());
    snap.groups
        .get_mut("iam-warden-require-mfa")
        .unwrap()
        .attached_policies
        .push(shell.into());
    let mut facts = good_facts();
    facts
        .roles
        .get_mut("support")
        .unwrap()
        .attached_policies
        .push(shell.into());
    let f = run_snap(snap, facts);
    let reasons: Vec<&str> = f.iter().map(|x| x.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "AWSCloudShellFullAccess is attached to user bob",
            "AWSCloudShellFullAccess is attached to group iam-warden-require-mfa",
            "AWSCloudShellFullAccess is attached to role support"
        ]
    );
    assert!(f.iter().all(|x| x.check == Check::CloudShellFullAccess));
}

#[test]
fn policies_on_users_direct_inline_and_the_baseline_own_in_user_mode() {
    let mut cfg = cfg();
    let mut snap = snap_with_baseline_groups();
    let mut facts = CisFacts::default();
    facts
        .user_inline_policies
        .insert("carol".into(), vec!["inline-s3".into()]);
    snap.cis = Some(facts);
    let mfa_arn = policy_arn(&cfg.baseline.mfa_policy.name);
    let other = format!("arn:aws:iam::{ACCOUNT}:policy/reports");
    let ids = |u: &UserState, cfg: &Config| {
        let v = evaluate_user(u, &snap, cfg, now());
        let f: Vec<(String, String)> = v
            .findings
            .iter()
            .filter(|f| f.check == Check::UserPolicyAttached)
            .map(|f| (f.check.id().to_string(), f.reason.clone()))
            .collect();
        (f, v.notes)
    };
    // Group mode: the baseline policy attached directly is a violation like any other.
    let u = user("a")
        .keys(&[key("AKIAA", 5, Some(1))])
        .attached(&mfa_arn)
        .build();
    let (f, _) = ids(&u, &cfg);
    assert_eq!(f.len(), 1, "{f:?}");
    // User mode: the baseline's own policy is a note; another policy is still a finding.
    cfg.baseline.attach = Attach::User;
    let (f, notes) = ids(&u, &cfg);
    assert!(f.is_empty(), "{f:?}");
    assert!(
        notes.iter().any(|n| n.contains("operator's choice")),
        "{notes:?}"
    );
    let u = user("b")
        .keys(&[key("AKIAB", 5, Some(1))])
        .attached(&mfa_arn)
        .attached(&other)
        .build();
    let (f, _) = ids(&u, &cfg);
    assert_eq!(f.len(), 1);
    assert!(
        f[0].1.contains("managed reports") && !f[0].1.contains("iam-warden-require-mfa"),
        "{}",
        f[0].1
    );
    // Inline policies.
    let u = user("carol").keys(&[key("AKIAC", 5, Some(1))]).build();
    let (f, _) = ids(&u, &cfg);
    assert!(f.len() == 1 && f[0].1.contains("inline inline-s3"), "{f:?}");
}

#[test]
fn initial_setup_keys_on_console_users() {
    let cfg = cfg();
    let snap = snap_with_baseline_groups();
    let table = [
        (
            user("a")
                .password(Some(1), 10)
                .mfa()
                .keys(&[key("AKIA1", 5, None)])
                .in_baseline()
                .build(),
            true,
        ),
        (
            user("a")
                .password(Some(1), 10)
                .mfa()
                .keys(&[key("AKIA1", 5, Some(1))])
                .in_baseline()
                .build(),
            false,
        ),
        (
            user("a")
                .password(Some(1), 10)
                .mfa()
                .keys(&[inactive(key("AKIA1", 5, None))])
                .in_baseline()
                .build(),
            false,
        ),
        (user("a").keys(&[key("AKIA1", 5, None)]).build(), false),
    ];
    for (u, want) in table {
        let v = evaluate_user(&u, &snap, &cfg, now());
        let got = v
            .findings
            .iter()
            .any(|f| f.check == Check::KeyFromInitialSetup);
        assert_eq!(got, want, "{:?}", v.findings);
    }
}

#[test]
fn partition_and_account_arn() {
    let mut snap = snap_with_baseline_groups();
    assert_eq!(account_arn(&snap), "arn:aws:iam::123456789012:root");
    snap.caller_arn = "arn:aws-cn:sts::123456789012:assumed-role/x/y".into();
    assert_eq!(account_arn(&snap), "arn:aws-cn:iam::123456789012:root");
    snap.caller_arn = String::new();
    assert_eq!(partition(&snap), "aws");
}
