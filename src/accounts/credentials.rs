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
    /// The ARN of the assumed-role session (`AssumedRoleUser.Arn`, the same for every
    /// AssumeRole of this role: the session name is fixed); empty if STS did not say it.
    session_arn: String,
}

impl AssumedRole {
    /// Assume `role_arn` once: the provider, or the reason the role cannot be assumed.
    pub async fn assume(
        sts: &aws_sdk_sts::Client,
        role_arn: &str,
        external_id: Option<&str>,
    ) -> Result<AssumedRole, Error> {
        let mut role = AssumedRole {
            sts: sts.clone(),
            role_arn: role_arn.to_string(),
            external_id: external_id.map(str::to_owned),
            first: Mutex::new(None),
            session_arn: String::new(),
        };
        let (creds, session_arn) = role.fetch().await?;
        role.session_arn = session_arn;
        if let Ok(mut f) = role.first.lock() {
            *f = Some(creds);
        }
        Ok(role)
    }

    /// The assumed-role session's ARN and its account id (the ARN's fifth field), as STS
    /// answered the first AssumeRole; `None` if it did not say.
    pub fn identity(&self) -> Option<(String, String)> {
        session_identity(&self.session_arn)
    }

    async fn fetch(&self) -> Result<(Credentials, String), Error> {
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
        let session_arn = out
            .assumed_role_user()
            .map(|u| u.arn().to_string())
            .unwrap_or_default();
        Ok((
            Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                expiry,
                "iam-warden-assume-role",
            ),
            session_arn,
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
                .map(|(c, _)| c)
                .map_err(|e| CredentialsError::provider_error(OneLine(e.to_string())))
        })
    }
}

/// The ARN and account id of an assumed-role session ARN
/// (`arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION`); `None` for anything else.
fn session_identity(arn: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "sts", "", account, resource]
            if crate::config::is_account_id(account) && resource.starts_with("assumed-role/") =>
        {
            Some((arn.to_string(), (*account).to_string()))
        }
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::session_identity;

    #[test]
    fn the_session_arn_names_the_account_or_nothing_is_assumed() {
        let arn = "arn:aws:sts::210987654321:assumed-role/iam-warden/iam-warden";
        assert_eq!(
            session_identity(arn),
            Some((arn.to_string(), "210987654321".to_string()))
        );
        let gov = "arn:aws-us-gov:sts::210987654321:assumed-role/iam-warden/iam-warden";
        assert_eq!(
            session_identity(gov).map(|i| i.1),
            Some("210987654321".into())
        );
        // Anything else: GetCallerIdentity is asked instead.
        for bad in [
            "",
            "arn:aws:iam::210987654321:user/alice",
            "arn:aws:sts::21098765432:assumed-role/iam-warden/iam-warden",
            "arn:aws:sts::210987654321:federated-user/x",
            "not an arn",
        ] {
            assert_eq!(session_identity(bad), None, "{bad}");
        }
    }
}
