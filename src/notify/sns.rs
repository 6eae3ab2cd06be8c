//! The SNS channel: `Publish` to `notifications.sns_topic_arn`, the JSON notice as the
//! message, a short subject, and the message attributes `user` and `event` (for
//! subscription filter policies). The SDK's own retries are off for this call: the
//! notifier's loop retries with its backoff and per-attempt timeout.

use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;
use aws_smithy_types::retry::RetryConfig;

use super::webhook::Attempt;
use super::Notice;

/// SNS allows at most 100 characters in a subject.
const SUBJECT_MAX: usize = 100;

/// `iam-warden: <event> for <user>`, printable ASCII, at most 100 characters.
pub fn subject(notice: &Notice) -> String {
    let raw = format!("iam-warden: {} for {}", notice.event.as_str(), notice.user);
    raw.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(SUBJECT_MAX)
        .collect()
}

/// The region of `arn:PARTITION:sns:REGION:ACCOUNT:NAME`.
pub fn topic_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

fn string_attribute(value: &str) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .ok()
}

/// One publish attempt, bounded by `timeout`.
pub(super) async fn publish(
    client: &aws_sdk_sns::Client,
    topic_arn: &str,
    notice: &Notice,
    body: &str,
    timeout: Duration,
) -> Attempt {
    let mut req = client
        .publish()
        .topic_arn(topic_arn)
        .subject(subject(notice))
        .message(body);
    for (name, value) in [
        ("user", notice.user.as_str()),
        ("event", notice.event.as_str()),
    ] {
        match string_attribute(value) {
            Some(v) => req = req.message_attributes(name, v),
            None => return Attempt::Fatal(format!("cannot build the message attribute {name}")),
        }
    }
    let mut config = aws_sdk_sns::config::Builder::default().retry_config(RetryConfig::disabled());
    // A topic in another region than `aws.region` is reached in its own region.
    if let Some(region) = topic_region(topic_arn) {
        config = config.region(aws_sdk_sns::config::Region::new(region.to_string()));
    }
    let call = req.customize().config_override(config).send();
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Attempt::Retry(format!(
            "SNS did not answer within {} s (notifications.timeout)",
            timeout.as_secs_f64()
        )),
        Ok(Ok(_)) => Attempt::Sent,
        Ok(Err(e)) => {
            let err = crate::aws::aws_error("sns", "Publish", e);
            match err.aws_code() {
                Some("NotFound") | Some("NotFoundException") => Attempt::Fatal(format!(
                    "SNS topic {topic_arn} does not exist; create it or fix \
                     notifications.sns_topic_arn"
                )),
                Some(
                    "AuthorizationError"
                    | "AuthorizationErrorException"
                    | "InvalidParameter"
                    | "InvalidParameterException"
                    | "InvalidParameterValue"
                    | "KMSAccessDenied"
                    | "KMSDisabled"
                    | "KMSNotFound"
                    | "AccessDenied"
                    | "AccessDeniedException",
                ) => Attempt::Fatal(err.to_string()),
                _ => Attempt::Retry(err.to_string()),
            }
        }
    }
}
