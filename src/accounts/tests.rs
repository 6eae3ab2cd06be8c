use super::*;

fn v(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

#[test]
fn include_and_exclude_by_account_and_ou() {
    let a = "111111111111";
    let prod = v(&["ou-ab12-prod0001", "r-ab12"]);
    let under_prod = prod.as_slice();
    let none: &[String] = &[];
    let dev = v(&["ou-ab12-dev00001", "ou-ab12-prod0001", "r-ab12"]);
    let under_dev = dev.as_slice();
    // (case, ancestors, include, exclude, selected)
    type Case<'a> = (&'a str, &'a [String], Vec<String>, Vec<String>, bool);
    let cases: &[Case] = &[
        ("no filters", under_prod, v(&[]), v(&[]), true),
        ("included by id", none, v(&[a]), v(&[]), true),
        (
            "other id included",
            &[],
            v(&["222222222222"]),
            v(&[]),
            false,
        ),
        (
            "included by OU",
            under_prod,
            v(&["ou-ab12-prod0001"]),
            v(&[]),
            true,
        ),
        (
            "included by an OU higher up",
            under_dev,
            v(&["ou-ab12-prod0001"]),
            v(&[]),
            true,
        ),
        (
            "included by the root",
            under_dev,
            v(&["r-ab12"]),
            v(&[]),
            true,
        ),
        (
            "outside the included OU",
            under_prod,
            v(&["ou-ab12-dev00001"]),
            v(&[]),
            false,
        ),
        ("excluded by id", under_prod, v(&[]), v(&[a]), false),
        (
            "excluded by an ancestor OU",
            under_dev,
            v(&[]),
            v(&["ou-ab12-prod0001"]),
            false,
        ),
        (
            "exclude wins over include",
            under_prod,
            v(&["ou-ab12-prod0001"]),
            v(&[a]),
            false,
        ),
        (
            "excluded OU elsewhere",
            under_prod,
            v(&[]),
            v(&["ou-ab12-dev00001"]),
            true,
        ),
    ];
    for (name, anc, inc, exc, want) in cases {
        assert_eq!(selected(a, anc, inc, exc), *want, "{name}");
    }
}

fn scope() -> Scope {
    let t = |id: &str| Target {
        id: id.into(),
        name: None,
        role_arn: None,
    };
    Scope {
        source: AccountSource::Organization,
        caller_account: "111111111111".into(),
        caller_arn: "arn:aws:iam::111111111111:user/x".into(),
        targets: vec![t("111111111111"), t("222222222222")],
        skipped: vec![(
            "333333333333".into(),
            "SUSPENDED in the organization".into(),
        )],
    }
}

#[test]
fn narrowing_keeps_one_account_or_says_why_not() {
    let mut s = scope();
    s.narrow("222222222222").unwrap();
    assert_eq!(s.targets.len(), 1);
    assert_eq!(s.targets[0].id, "222222222222");
    let e = scope().narrow("333333333333").unwrap_err().to_string();
    assert!(e.contains("not in scope (SUSPENDED"), "{e}");
    assert!(e.contains("111111111111, 222222222222"), "{e}");
    let e = scope().narrow("12").unwrap_err().to_string();
    assert!(e.contains("12 digits"), "{e}");
}

#[test]
fn per_account_exemptions_add_to_the_global_ones() {
    let mut cfg = Config::default();
    cfg.exemptions.users = vec!["global".into()];
    cfg.accounts
        .exempt
        .insert("222222222222".into(), vec!["break-glass".into()]);
    assert_eq!(
        config_for(&cfg, "222222222222").exemptions.users,
        v(&["global", "break-glass"])
    );
    assert_eq!(
        config_for(&cfg, "111111111111").exemptions.users,
        v(&["global"])
    );
}

#[test]
fn a_refused_assume_role_says_what_to_fix() {
    let e = Error::Aws {
        service: "sts",
        operation: "AssumeRole",
        code: Some("AccessDenied".into()),
        message: "not authorized to perform sts:AssumeRole".into(),
        hint: None,
        detail: "".into(),
        ambiguous: false,
    };
    let arn = "arn:aws:iam::222222222222:role/iam-warden";
    let m = assume_error(arn, "222222222222", &e);
    assert!(
        m.starts_with(&format!(
            "cannot assume {arn}: AccessDenied (not authorized"
        )),
        "{m}"
    );
    assert!(
        m.contains("deploy the member role in account 222222222222"),
        "{m}"
    );
    assert!(
        m.contains("accounts.role_name / accounts.external_id"),
        "{m}"
    );
    assert!(!m.contains('\n'));
}
