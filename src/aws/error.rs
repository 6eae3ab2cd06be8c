//! An AWS SDK error as iam-warden's one-line [`Error`]: what failed, AWS's code and message,
//! and how to fix it; and whether a failed call may nevertheless have been applied.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::Error;

/// Whether a failed call may nevertheless have been applied by AWS: a server error (5xx),
/// a lost, cut or unreadable answer, a timeout. A refused call (a 4xx answer such as
/// throttling or access denied) and a request that was never sent were not applied.
pub fn may_have_been_applied<E>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(se) => se.raw().status().is_server_error(),
        SdkError::DispatchFailure(d) => !d.is_user(),
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        _ => false,
    }
}

const HINT_CREDENTIALS: &str = "no usable AWS credentials: set AWS_PROFILE or \
     AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with an instance role / IRSA";
const HINT_UNREACHABLE: &str = "cannot reach the AWS endpoint: check the network, \
     aws.endpoint_url and AWS_ENDPOINT_URL";
const HINT_TIMEOUT: &str = "AWS did not answer in time: check the network, or raise \
     aws.attempt_timeout / aws.operation_timeout";
const HINT_ACCESS_DENIED: &str =
    "grant iam-warden the permissions in deploy/iam/iam-warden-policy.json";
const HINT_EXPIRED: &str = "the AWS credentials have expired: get fresh ones (e.g. `aws sso \
     login`, or assume the role again) and run again";
const HINT_INVALID: &str = "AWS does not accept these credentials: check the access key id \
     and secret key (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile)";
const HINT_THROTTLED: &str =
    "AWS is throttling; lower controller.writes_per_second or poll less often";
const HINT_NOT_AWS: &str = "the endpoint's answer is not an AWS response: check \
     aws.endpoint_url and AWS_ENDPOINT_URL";

/// Turn an SDK error into an [`Error::Aws`]: the AWS error code, the root cause in words
/// (one line, never the SDK's debug structures) and a hint; the SDK's full report goes
/// to `detail`, and whether the call may have been applied to `ambiguous`.
pub fn aws_error<E>(
    service: &'static str,
    operation: &'static str,
    err: SdkError<E, HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let ambiguous = may_have_been_applied(&err);
    let detail = DisplayErrorContext(&err).to_string().into_boxed_str();
    let (code, message, hint) = match &err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().map(str::to_string);
            let message = e
                .message()
                .map(one_line)
                .filter(|m| !m.is_empty())
                .or_else(|| code.clone())
                .unwrap_or_else(|| root_cause(e).unwrap_or_else(|| "AWS returned an error".into()));
            let hint = code.as_deref().and_then(hint_for_code);
            (code, message, hint)
        }
        SdkError::TimeoutError(_) => (
            None,
            "no answer before the timeout".to_string(),
            Some(HINT_TIMEOUT),
        ),
        SdkError::DispatchFailure(d) => {
            let cause = root_cause(&err);
            if has_credentials_error(&err) {
                let message = match cause {
                    // The chain's own text lists every provider with its reason: too long
                    // for one line (--verbose shows it).
                    Some(c) if !c.starts_with("no credentials found in chain") => {
                        format!("no AWS credentials could be loaded: {c}")
                    }
                    _ => "no AWS credentials found (tried the environment, the profile \
                          files, a web identity token, the ECS container endpoint and the \
                          EC2 instance metadata)"
                        .to_string(),
                };
                (None, message, Some(HINT_CREDENTIALS))
            } else if d.is_timeout() {
                let message = match cause {
                    Some(c) => format!("the request timed out ({c})"),
                    None => "the request timed out".to_string(),
                };
                (None, message, Some(HINT_TIMEOUT))
            } else {
                let message = match cause {
                    Some(c) => format!("the request could not be sent: {c}"),
                    None => "the request could not be sent".to_string(),
                };
                (None, message, Some(HINT_UNREACHABLE))
            }
        }
        SdkError::ResponseError(_) => (
            None,
            match root_cause(&err) {
                Some(c) => format!("the response could not be read: {c}"),
                None => "the response could not be read".to_string(),
            },
            Some(HINT_NOT_AWS),
        ),
        _ => {
            let message = root_cause(&err).unwrap_or_else(|| "the request failed".to_string());
            let hint = has_credentials_error(&err).then_some(HINT_CREDENTIALS);
            (None, message, hint)
        }
    };
    Error::Aws {
        service,
        operation,
        code,
        message,
        hint,
        detail,
        ambiguous,
    }
}

fn hint_for_code(code: &str) -> Option<&'static str> {
    match code {
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            Some(HINT_ACCESS_DENIED)
        }
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => Some(HINT_EXPIRED),
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "InvalidAccessKeyId"
        | "IncompleteSignature" => Some(HINT_INVALID),
        c if c.contains("Throttl") || c == "RequestLimitExceeded" => Some(HINT_THROTTLED),
        _ => None,
    }
}

/// Any error in the chain is a credentials-provider error.
fn has_credentials_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<aws_credential_types::provider::error::CredentialsError>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// The deepest cause in the chain that reads as words: its Display on one line, without
/// debug structures (a `{`) and without the generic wrappers the SDK puts around it.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut texts = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        texts.push(one_line(&e.to_string()));
        next = e.source();
    }
    texts
        .into_iter()
        .rev()
        .find(|t| !t.is_empty() && !t.contains('{') && !is_generic(t))
}

/// Messages that name a layer, not a cause.
fn is_generic(text: &str) -> bool {
    [
        "dispatch failure",
        "io error",
        "other",
        "unhandled error",
        "service error",
        "response error",
        "timeout error",
        "construction failure",
        "client error (Connect)",
        "an error occurred while loading credentials",
        "unexpected credentials error",
    ]
    .contains(&text)
}

/// Whitespace (newlines included) collapsed to single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_that_may_have_been_applied_are_told_apart() {
        use aws_sdk_iam::operation::create_group::CreateGroupError;
        use aws_smithy_runtime_api::client::result::ConnectorError;
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;

        let service = |status: u16, code: &str| {
            let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
            let e = CreateGroupError::generic(ErrorMetadata::builder().code(code).build());
            SdkError::service_error(e, raw)
        };
        let cases: Vec<(&str, SdkError<CreateGroupError, HttpResponse>, bool)> = vec![
            ("500", service(500, "InternalFailure"), true),
            ("503", service(503, "ServiceUnavailable"), true),
            ("throttled", service(400, "Throttling"), false),
            ("exists", service(409, "EntityAlreadyExists"), false),
            ("denied", service(403, "AccessDenied"), false),
            (
                "reset",
                SdkError::dispatch_failure(ConnectorError::io("connection reset".into())),
                true,
            ),
            (
                "attempt timeout",
                SdkError::dispatch_failure(ConnectorError::timeout("no answer".into())),
                true,
            ),
            (
                "bad request built by us",
                SdkError::dispatch_failure(ConnectorError::user("bad header".into())),
                false,
            ),
            (
                "operation timeout",
                SdkError::timeout_error("too slow"),
                true,
            ),
            (
                "never built",
                SdkError::construction_failure("missing field"),
                false,
            ),
        ];
        for (name, err, want) in cases {
            assert_eq!(may_have_been_applied(&err), want, "{name}");
            let e = aws_error("iam", "CreateGroup", err);
            assert_eq!(e.may_have_been_applied(), want, "{name}: {e}");
        }
    }
}
