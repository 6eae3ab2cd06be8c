//! Credentials of a member account: an assumed role (`sts:AssumeRole`, session name
//! `iam-warden`, the external id if configured), fetched through the caller's STS client,
//! so that every AssumeRole is paced and counted like iam-warden's other calls.
//!
//! aws-config's `sts::AssumeRoleProvider` does the same with its own, unpaced and
//! uncounted STS client; this provider is a few lines over the caller's. The SDK's
//! identity cache (set by [`crate::aws::Clients::with_credentials`]) calls it again 5
//! minutes before the credentials expire.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;

use crate::aws::aws_error;
use crate::error::Error;

/// The session name of every assumed role (CloudTrail shows it in the member accounts).
pub const SESSION_NAME: &str = "iam-warden";

/// A role of another account, assumed with the caller's STS client.
#[derive(Debug)]
pub struct AssumedRole {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    external_id: Option<String>,
    /// The credentials of the first AssumeRole (made to find out at once whether the
    /// role can be assumed), handed to the identity cache on its first call.
    first: Mutex<Option<Credentials>>,
}

impl AssumedRole {
    /// Assume `role_arn` once: the provider, or the reason the role cannot be assumed.
    pub async fn assume(
        sts: &aws_sdk_sts::Client,
        role_arn: &str,
        external_id: Option<&str>,
    ) -> Result<AssumedRole, Error> {
        let role = AssumedRole {
            sts: sts.clone(),
            role_arn: role_arn.to_string(),
            external_id: external_id.map(str::to_owned),
            first: Mutex::new(None),
        };
        let creds = role.fetch().await?;
        if let Ok(mut f) = role.first.lock() {
            *f = Some(creds);
        }
        Ok(role)
    }

    async fn fetch(&self) -> Result<Credentials, Error> {
        let out = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(SESSION_NAME)
            .set_external_id(self.external_id.clone())
            .send()
            .await
            .map_err(|e| aws_error("sts", "AssumeRole", e))?;
        let c = out.credentials().ok_or_else(|| {
            Error::Other(format!(
                "STS AssumeRole of {} answered without credentials",
                self.role_arn
            ))
        })?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            expiry,
            "iam-warden-assume-role",
        ))
    }

    /// The first credentials, if they are still good for more than 5 minutes.
    fn take_first(&self) -> Option<Credentials> {
        let c = self.first.lock().ok()?.take()?;
        let fresh = c
            .expiry()
            .is_none_or(|e| e > SystemTime::now() + Duration::from_secs(300));
        fresh.then_some(c)
    }
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            if let Some(c) = self.take_first() {
                return Ok(c);
            }
            self.fetch()
                .await
                .map_err(|e| CredentialsError::provider_error(OneLine(e.to_string())))
        })
    }
}

/// An error carrying only iam-warden's one-line text (never credentials).
#[derive(Debug)]
struct OneLine(String);

impl std::fmt::Display for OneLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OneLine {}
