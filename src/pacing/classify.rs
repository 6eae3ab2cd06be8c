//! Reading a call and its answer: the operation and whether it reads, what a failed
//! attempt means for retrying it, whether an answer is complete.

use std::time::Duration;

/// Read-only calls (everything else counts as a write).
pub fn is_read_operation(op: &str) -> bool {
    [
        "Get", "List", "Generate", "Lookup", "Receive", "Describe", "Simulate",
    ]
    .iter()
    .any(|p| op.starts_with(p))
}

/// Calls that may be sent again after an ambiguous failure without a re-read: reads, and
/// writes that set a state (repeating them changes nothing and does not fail).
pub fn repeat_is_harmless(op: &str) -> bool {
    is_read_operation(op)
        || matches!(
            op,
            "TagUser"
                | "UntagUser"
                | "UpdateAccessKey"
                | "UpdateAccountPasswordPolicy"
                | "AttachUserPolicy"
                | "AttachGroupPolicy"
                | "SetDefaultPolicyVersion"
                | "AssumeRole"
        )
}

/// What a failed attempt means for retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// IAM refused the call for its rate: slow down, then retry. Not applied.
    Throttled { retry_after: Option<Duration> },
    /// A server error, a lost or unreadable answer, a timeout: retry; a write may or may
    /// not have been applied.
    Transient,
    /// An error answer that will not change by retrying (access denied, no such entity...).
    Final,
}

/// Error codes AWS uses for throttling.
const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
];

/// The `<Code>` of an AWS XML error body, or the `__type`/`code` of a JSON one.
pub fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if let Some(i) = text.find("<Code>") {
        let rest = &text[i + "<Code>".len()..];
        let end = rest.find("</Code>")?;
        return Some(rest[..end].trim().to_string());
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let t = v.get("__type").or_else(|| v.get("code"))?.as_str()?;
    Some(t.rsplit('#').next().unwrap_or(t).to_string())
}

/// Classify a failed attempt from its answer: `status` is `None` when there was none
/// (connection lost, timeout). A 2xx that failed could not be read.
pub fn classify(status: Option<u16>, body: &[u8], retry_after: Option<Duration>) -> Class {
    let Some(status) = status else {
        return Class::Transient;
    };
    let code = error_code(body);
    if status == 429 || code.as_deref().is_some_and(|c| THROTTLE_CODES.contains(&c)) {
        return Class::Throttled { retry_after };
    }
    match status {
        200..=299 | 500..=599 => Class::Transient,
        408 => Class::Transient,
        _ => Class::Final,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by AWS and is ignored), at most
/// a minute.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let s: f64 = v.trim().parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(60.0)))
}

/// The `Action` of an AWS query-protocol request body (IAM and STS), `"unknown"` without.
pub fn action_of(body: &[u8]) -> String {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// A 200 answer of a query-protocol call ends with `</{Action}Response>`; one that does not
/// was cut or is not the answer (a proxy's page): it could not be read.
pub fn answer_is_complete(action: &str, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.trim_end().ends_with(&format!("</{action}Response>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn answers_are_classified() {
        let throttle = br#"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"#;
        let denied = br#"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>"#;
        type Case<'a> = (Option<u16>, &'a [u8], Option<Duration>, Class);
        let cases: &[Case] = &[
            (
                Some(400),
                throttle,
                None,
                Class::Throttled { retry_after: None },
            ),
            (
                Some(400),
                throttle,
                Some(ms(2000)),
                Class::Throttled {
                    retry_after: Some(ms(2000)),
                },
            ),
            (Some(429), b"", None, Class::Throttled { retry_after: None }),
            (
                Some(400),
                br#"{"__type":"com.amazon#ThrottlingException"}"#,
                None,
                Class::Throttled { retry_after: None },
            ),
            (Some(500), b"oops", None, Class::Transient),
            (Some(503), b"", None, Class::Transient),
            (Some(200), b"<CreatePolicyRes", None, Class::Transient),
            (Some(200), b"not xml at all", None, Class::Transient),
            (None, b"", None, Class::Transient),
            (Some(403), denied, None, Class::Final),
            (
                Some(404),
                b"<Error><Code>NoSuchEntity</Code></Error>",
                None,
                Class::Final,
            ),
        ];
        for (status, body, ra, want) in cases {
            assert_eq!(
                classify(*status, body, *ra),
                *want,
                "{status:?} {}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parse_retry_after(" 2 "), Some(ms(2000)));
        assert_eq!(parse_retry_after("0.5"), Some(ms(500)));
        assert_eq!(parse_retry_after("3600"), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn read_operations_are_recognised() {
        for op in ["GetUser", "ListAccessKeys", "GenerateCredentialReport"] {
            assert!(is_read_operation(op), "{op}");
        }
        for op in ["CreatePolicyVersion", "UpdateAccessKey", "AddUserToGroup"] {
            assert!(!is_read_operation(op), "{op}");
        }
    }

    #[test]
    fn query_requests_and_answers_are_read() {
        assert_eq!(
            action_of(b"Action=CreatePolicyVersion&Version=2010-05-08&PolicyArn=x"),
            "CreatePolicyVersion"
        );
        assert_eq!(action_of(b"Version=2010-05-08"), "unknown");
        let full = b"<GetUserResponse xmlns=\"x\"><GetUserResult/></GetUserResponse>\n";
        assert!(answer_is_complete("GetUser", full));
        assert!(!answer_is_complete("GetUser", &full[..20]));
        assert!(!answer_is_complete("GetUser", b"<html>bad gateway</html>"));
    }
}
