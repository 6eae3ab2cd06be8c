//! AWS access: the one place clients are built, and the call counter every client carries.
//!
//! Clients use the default credential chain (environment, profile, IRSA / web identity,
//! instance role) and timeouts from [`AwsConfig`]; the endpoint can be overridden (config or
//! `AWS_ENDPOINT_URL`) for an emulator. IAM and STS calls are paced and retried by
//! [`crate::pacing`] (installed as the clients' retry strategy); CloudTrail, SQS and the
//! other services use the SDK's standard retries.
//!
//! [`calls`]: the call counter and its interceptor; [`error`]: an SDK error as one line
//! with the fix, and whether a failed write may have been applied; [`services`]: the
//! clients beyond IAM and STS, built on first use.

mod calls;
mod error;
mod services;

pub use calls::{CallOutcome, CallStats};
pub use error::{aws_error, may_have_been_applied};

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

use crate::config::AwsConfig;
use crate::error::Error;
pub use crate::pacing::is_read_operation;
use crate::pacing::{PacedHttpClient, Pacer, PacingSettings};
use calls::CountingInterceptor;
use services::Services;

/// All clients iam-warden uses, sharing one [`CallStats`] and (IAM and STS) one [`Pacer`].
/// IAM and STS are built at once; the other services' clients on first use
/// ([`services`]), through the methods of the same names.
#[derive(Clone, Debug)]
pub struct Clients {
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    pub calls: CallStats,
    pub pacer: Arc<Pacer>,
    /// The HTTP client under the pacing layer (to re-pace with other settings).
    base_http: Option<aws_smithy_runtime_api::client::http::SharedHttpClient>,
    /// The other services' clients, and the SDK config and CloudTrail endpoint override
    /// everything was built from (to build the same clients with other credentials:
    /// [`Clients::with_credentials`]).
    services: Arc<Services>,
    /// The identity these credentials act as (ARN, account id), when STS already said it
    /// (an assumed role's `AssumedRoleUser`): [`Clients::caller_identity`] answers it
    /// without a call.
    identity: Option<Arc<(String, String)>>,
}

impl Clients {
    /// Build clients from the default credential chain and `cfg`.
    /// `cloudtrail_endpoint` overrides the endpoint for CloudTrail only.
    pub async fn connect(
        cfg: &AwsConfig,
        cloudtrail_endpoint: Option<&str>,
        calls: CallStats,
    ) -> Clients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(cfg.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(cfg.connect_timeout.get())
                    .operation_attempt_timeout(cfg.attempt_timeout.get())
                    .operation_timeout(cfg.operation_timeout.get())
                    .build(),
            );
        if let Some(url) = &cfg.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        Self::from_sdk_config(&shared, cloudtrail_endpoint, calls)
    }

    /// Build clients from an already loaded SDK config (tests pass static credentials),
    /// IAM and STS paced with the default [`PacingSettings`].
    pub fn from_sdk_config(
        shared: &aws_types::SdkConfig,
        cloudtrail_endpoint: Option<&str>,
        calls: CallStats,
    ) -> Clients {
        let pacer = Arc::new(Pacer::new(&PacingSettings::default()).unwrap_or_else(|e| {
            // The defaults are valid (a unit test checks); never reached.
            unreachable!("default pacing settings are invalid: {e}")
        }));
        Self::build(shared, cloudtrail_endpoint, calls, pacer)
    }

    /// The same clients with IAM and STS paced by `settings` (a fresh pacer, reporting its
    /// write rate to the call counter's rate hook).
    pub fn paced(self, settings: &PacingSettings) -> Result<Clients, Error> {
        let pacer = pacer_for(settings, &self.calls)?;
        let base = self.base_http()?;
        let (iam, sts) = paced_iam_sts(self.services.shared(), &base, &pacer, &self.calls);
        Ok(Clients {
            iam,
            sts,
            pacer,
            ..self
        })
    }

    /// The same clients with an IAM client whose calls do not wait for the shared rate
    /// buckets (they keep the retries, the backoff and the call counting, and a throttle
    /// they meet still slows everyone else): for the few writes that must not queue behind
    /// a bulk of baseline work, the quarantine of an exposed key.
    pub fn priority(&self) -> Result<Clients, Error> {
        let base = self.base_http()?;
        let iam = self.iam.config().to_builder();
        Ok(Clients {
            iam: aws_sdk_iam::Client::from_conf(
                iam.http_client(paced_http_with(base, &self.pacer, "iam", &self.calls, true))
                    .build(),
            ),
            ..self.clone()
        })
    }

    /// The HTTP client under the pacing layer.
    fn base_http(&self) -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient, Error> {
        self.base_http.clone().ok_or_else(|| {
            Error::Other(
                "the AWS clients have no HTTP client to pace; build them with aws-config".into(),
            )
        })
    }

    fn build(
        shared: &aws_types::SdkConfig,
        cloudtrail_endpoint: Option<&str>,
        calls: CallStats,
        pacer: Arc<Pacer>,
    ) -> Clients {
        // One HTTP client for every service (and, through `with_credentials`, for every
        // account): left unset, each SDK client builds its own on first use, each loading
        // the root certificates again (~0.15 MiB a time; with 100 accounts most of the
        // daemon's heap).
        let base_http = shared.http_client().unwrap_or_else(default_http_client);
        let shared = shared.to_builder().http_client(base_http.clone()).build();
        let (iam, sts) = paced_iam_sts(&shared, &base_http, &pacer, &calls);
        Clients {
            iam,
            sts,
            services: Arc::new(Services::new(
                shared,
                cloudtrail_endpoint.map(str::to_owned),
                calls.clone(),
            )),
            calls,
            pacer,
            base_http: Some(base_http),
            identity: None,
        }
    }

    /// The same clients (region, endpoint, timeouts, HTTP client) acting with
    /// `credentials` (another account's assumed role; `None`: these clients' own), with
    /// their own call counter and their own pacing of IAM and STS by `settings` (IAM's
    /// rate limits are per account). Credentials that expire are fetched again 5 minutes
    /// before they do.
    pub fn with_credentials(
        &self,
        credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
        calls: CallStats,
        settings: &PacingSettings,
    ) -> Result<Clients, Error> {
        // `shared` holds the HTTP client: every account shares its pool and TLS set-up.
        let mut sdk = self.services.shared().to_builder();
        if let Some(c) = credentials {
            sdk = sdk.credentials_provider(c).identity_cache(
                aws_config::identity::IdentityCache::lazy()
                    .buffer_time(std::time::Duration::from_secs(300))
                    .build(),
            );
        }
        let pacer = pacer_for(settings, &calls)?;
        Ok(Clients::build(
            &sdk.build(),
            self.services.cloudtrail_endpoint(),
            calls,
            pacer,
        ))
    }

    /// CloudTrail (LookupEvents), at the CloudTrail endpoint override if one is set.
    pub fn cloudtrail(&self) -> &aws_sdk_cloudtrail::Client {
        self.services.cloudtrail()
    }

    /// The SQS source's queue.
    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        self.services.sqs()
    }

    /// Delivery of rotated keys (`rotation.delivery`).
    pub fn secretsmanager(&self) -> &aws_sdk_secretsmanager::Client {
        self.services.secretsmanager()
    }

    /// Delivery of rotated keys to SSM Parameter Store.
    pub fn ssm(&self) -> &aws_sdk_ssm::Client {
        self.services.ssm()
    }

    /// Owner notifications (`notifications.sns_topic_arn`).
    pub fn sns(&self) -> &aws_sdk_sns::Client {
        self.services.sns()
    }

    /// AWS Organizations (`accounts.source = "organization"`: ListAccounts, ListParents).
    pub fn organizations(&self) -> &aws_sdk_organizations::Client {
        self.services.organizations()
    }

    /// The Security Hub client for `region` (findings are exported in
    /// `export.securityhub`'s region; the same credentials, endpoint, retries and call
    /// counter).
    pub fn securityhub_in(&self, region: &str) -> aws_sdk_securityhub::Client {
        self.services.securityhub_in(region)
    }

    /// The IAM Access Analyzer client for `region` (CIS 1.19; analyzers are regional),
    /// counted like the others.
    pub fn accessanalyzer_in(&self, region: &str) -> aws_sdk_accessanalyzer::Client {
        self.services.accessanalyzer_in(region)
    }

    /// The same clients, knowing the identity they act as: `arn` and `account_id` as STS
    /// answered them (AssumeRole's `AssumedRoleUser`), so that [`Clients::caller_identity`]
    /// makes no call.
    pub fn with_identity(mut self, arn: String, account_id: String) -> Clients {
        self.identity = Some(Arc::new((arn, account_id)));
        self
    }

    /// The caller's ARN (sts:GetCallerIdentity, unless STS already said it:
    /// [`Clients::with_identity`]) and account id.
    pub async fn caller_identity(&self) -> Result<(String, String), Error> {
        if let Some(id) = &self.identity {
            return Ok((id.0.clone(), id.1.clone()));
        }
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| aws_error("sts", "GetCallerIdentity", e))?;
        Ok((
            out.arn().unwrap_or_default().to_string(),
            out.account().unwrap_or_default().to_string(),
        ))
    }
}

/// A fresh pacer for `settings`, reporting its write rate to `calls`' rate hook.
fn pacer_for(settings: &PacingSettings, calls: &CallStats) -> Result<Arc<Pacer>, Error> {
    let hook = calls.clone();
    let pacer = Pacer::new(settings)
        .map_err(|e| Error::Config(format!("controller pacing settings: {e}")))?
        .with_rate_hook(move |r| hook.write_rate(r));
    Ok(Arc::new(pacer))
}

/// IAM and STS from `shared`, over `base` paced by `pacer`: one attempt per SDK call;
/// pacing and retries are in the HTTP layer. What the SDK sees as one attempt is every try
/// the pacer makes, with its waits for the rate and its backoffs: the pacer cuts each try
/// at aws.attempt_timeout itself, so the SDK's attempt timeout and its stalled-stream
/// check (which reads a request waiting for the rate as a stalled upload) are off here;
/// aws.operation_timeout still bounds the whole call.
fn paced_iam_sts(
    shared: &aws_types::SdkConfig,
    base: &aws_smithy_runtime_api::client::http::SharedHttpClient,
    pacer: &Arc<Pacer>,
    calls: &CallStats,
) -> (aws_sdk_iam::Client, aws_sdk_sts::Client) {
    let paced_timeouts = shared
        .timeout_config()
        .map(|t| t.to_builder())
        .unwrap_or_default()
        .disable_operation_attempt_timeout()
        .build();
    let iam = aws_sdk_iam::config::Builder::from(shared)
        .interceptor(CountingInterceptor::new("iam", calls))
        .retry_config(RetryConfig::disabled())
        .timeout_config(paced_timeouts.clone())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .http_client(paced_http(base.clone(), pacer, "iam", calls));
    let sts = aws_sdk_sts::config::Builder::from(shared)
        .interceptor(CountingInterceptor::new("sts", calls))
        .retry_config(RetryConfig::disabled())
        .timeout_config(paced_timeouts)
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .http_client(paced_http(base.clone(), pacer, "sts", calls));
    (
        aws_sdk_iam::Client::from_conf(iam.build()),
        aws_sdk_sts::Client::from_conf(sts.build()),
    )
}

/// The SDK's default HTTPS client (hyper 1, rustls with aws-lc, proxy from the
/// environment), built here because `SdkConfig` leaves it to each client to resolve.
fn default_http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut conn = aws_smithy_http_client::ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        conn.set_connector_settings(settings.cloned());
        if let Some(c) = components {
            conn.set_sleep_impl(c.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}

/// `inner` paced by `pacer`; the attempts it retries are counted in `calls` (the SDK's
/// counting interceptor sees only the last attempt of each call).
fn paced_http(
    inner: aws_smithy_runtime_api::client::http::SharedHttpClient,
    pacer: &Arc<Pacer>,
    service: &'static str,
    calls: &CallStats,
) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    paced_http_with(inner, pacer, service, calls, false)
}

/// [`paced_http`], optionally with priority (no waiting for the buckets).
fn paced_http_with(
    inner: aws_smithy_runtime_api::client::http::SharedHttpClient,
    pacer: &Arc<Pacer>,
    service: &'static str,
    calls: &CallStats,
    priority: bool,
) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    let calls = calls.clone();
    let on_retry: crate::pacing::RetryHook = Arc::new(move |op: &str, class| {
        let outcome = match class {
            crate::pacing::Class::Throttled { .. } => CallOutcome::Throttled,
            _ => CallOutcome::Error,
        };
        calls.record(service, op, outcome);
    });
    aws_smithy_runtime_api::client::http::SharedHttpClient::new(PacedHttpClient {
        inner,
        pacer: pacer.clone(),
        on_retry: Some(on_retry),
        priority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_operations_are_recognised() {
        for op in [
            "GetUser",
            "ListAccessKeys",
            "GenerateCredentialReport",
            "LookupEvents",
            "ReceiveMessage",
        ] {
            assert!(is_read_operation(op), "{op}");
        }
        for op in [
            "CreatePolicyVersion",
            "UpdateAccessKey",
            "DeleteLoginProfile",
            "AddUserToGroup",
            "DeleteMessage",
        ] {
            assert!(!is_read_operation(op), "{op}");
        }
    }
}
