use super::settle::same_document;
use super::*;

fn aws(code: Option<&str>, ambiguous: bool) -> Error {
    Error::Aws {
        service: "iam",
        operation: "Test",
        code: code.map(str::to_string),
        message: "m".into(),
        hint: None,
        detail: "".into(),
        ambiguous,
    }
}

#[derive(Debug, PartialEq)]
enum Want {
    Done(Outcome),
    ReRead,
    Fail,
}

#[test]
fn attempts_of_writes_that_are_not_harmless_twice_are_settled() {
    use WriteKind::*;
    let exists = || Some("EntityAlreadyExists");
    let gone = || Some("NoSuchEntity");
    let skipped = Want::Done(Outcome::Skipped("already exists".into()));
    let cases: Vec<(WriteKind, bool, Result<()>, Want)> = vec![
        (Create, false, Ok(()), Want::Done(Outcome::Applied)),
        (Remove, true, Ok(()), Want::Done(Outcome::Applied)),
        // unclear failures: re-read, whatever the kind and attempt
        (
            Create,
            false,
            Err(aws(Some("InternalFailure"), true)),
            Want::ReRead,
        ),
        (Other, true, Err(aws(None, true)), Want::ReRead),
        (Remove, false, Err(aws(None, true)), Want::ReRead),
        // creates: already there before iam-warden acted vs made by an earlier attempt
        (Create, false, Err(aws(exists(), false)), skipped),
        (
            Create,
            true,
            Err(aws(exists(), false)),
            Want::Done(Outcome::Applied),
        ),
        // removals: already gone before (the caller says "no longer exists") vs removed
        // by an earlier attempt
        (Remove, false, Err(aws(gone(), false)), Want::Fail),
        (
            Remove,
            true,
            Err(aws(gone(), false)),
            Want::Done(Outcome::Applied),
        ),
        // the same codes mean nothing special for the other kinds
        (Other, true, Err(aws(exists(), false)), Want::Fail),
        (Other, true, Err(aws(gone(), false)), Want::Fail),
        (Create, true, Err(aws(gone(), false)), Want::Fail),
        // refused calls are final
        (
            Create,
            true,
            Err(aws(Some("AccessDenied"), false)),
            Want::Fail,
        ),
        (
            Other,
            false,
            Err(aws(Some("Throttling"), false)),
            Want::Fail,
        ),
        (Remove, false, Err(Error::Other("x".into())), Want::Fail),
    ];
    for (i, (kind, repeated, r, want)) in cases.into_iter().enumerate() {
        let got = match after_attempt(kind, repeated, r) {
            Settle::Done(o) => Want::Done(o),
            Settle::ReRead(e) => {
                assert!(e.may_have_been_applied());
                Want::ReRead
            }
            Settle::Fail(_) => Want::Fail,
        };
        assert_eq!(got, want, "case {i}: {kind:?} repeated={repeated}");
    }
}

#[test]
fn the_version_with_the_desired_document_is_found() {
    let doc =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
    let encoded: String =
        percent_encoding::utf8_percent_encode(doc, percent_encoding::NON_ALPHANUMERIC).to_string();
    let other = r#"{"Version":"2012-10-17","Statement":[]}"#;
    let v = |id: &str, def: bool, d: Option<&str>| (id.to_string(), def, d.map(str::to_string));
    assert_eq!(
        find_version(
            &[v("v1", true, Some(other)), v("v2", false, Some(&encoded))],
            doc
        ),
        Some(("v2".to_string(), false)),
        "URL-encoded as IAM returns it, not the default yet"
    );
    // whitespace and key order do not matter, the meaning does
    let spaced = r#"{ "Statement": [ {"Resource":"*", "Action":"*", "Effect":"Deny"} ], "Version": "2012-10-17" }"#;
    assert_eq!(
        find_version(&[v("v3", true, Some(spaced))], doc),
        Some(("v3".to_string(), true))
    );
    assert_eq!(
        find_version(&[v("v1", true, Some(other)), v("v2", false, None)], doc),
        None
    );
    assert_eq!(find_version(&[], doc), None);
    assert!(
        !same_document(Some("not json"), "not json"),
        "garbage never matches"
    );
}
