//! The fields of a CloudTrail record the evaluation needs (every other field is skipped
//! while parsing, which keeps a million records cheap).

use serde::Deserialize;

/// A CloudTrail log file as delivered to S3: `{"Records": [...]}`.
#[derive(Debug, Default, Deserialize)]
pub struct TrailFile {
    #[serde(rename = "Records", default)]
    pub records: Vec<Record>,
}

/// One CloudTrail record, reduced to what [`super::evaluate`] reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub event_time: Option<String>,
    pub event_source: Option<String>,
    pub event_name: Option<String>,
    /// `AwsApiCall`, `AwsConsoleSignIn`, `AwsServiceEvent`, ...
    pub event_type: Option<String>,
    #[serde(rename = "sourceIPAddress")]
    pub source_ip_address: Option<String>,
    pub recipient_account_id: Option<String>,
    pub user_identity: Option<UserIdentity>,
    /// Set when the call came through a VPC endpoint (then `aws:SourceIp` is absent).
    pub vpc_endpoint_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub arn: Option<String>,
    pub account_id: Option<String>,
    pub access_key_id: Option<String>,
    pub user_name: Option<String>,
    /// The AWS service that made the call on the principal's behalf.
    pub invoked_by: Option<String>,
    pub session_context: Option<SessionContext>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext {
    pub attributes: Option<Attributes>,
    pub session_issuer: Option<SessionIssuer>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attributes {
    /// `"true"` or `"false"` (a string in CloudTrail; a JSON boolean is accepted too).
    pub mfa_authenticated: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionIssuer {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub user_name: Option<String>,
    pub arn: Option<String>,
}
