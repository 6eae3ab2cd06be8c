//! AWS access: the one place clients are built, and the call counter every client carries.
//!
//! Clients use the default credential chain (environment, profile, IRSA / web identity,
//! instance role) and timeouts from [`AwsConfig`]; the endpoint can be overridden (config or
//! `AWS_ENDPOINT_URL`) for an emulator. IAM and STS calls are paced and retried by
//! [`crate::pacing`] (installed as the clients' retry strategy); CloudTrail, SQS and the
//! other services use the SDK's standard retries.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::AwsConfig;
use crate::error::Error;
pub use crate::pacing::is_read_operation;
use crate::pacing::{PacedHttpClient, Pacer, PacingSettings};

/// Outcome of one HTTP attempt of an AWS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallOutcome {
    Ok,
    Error,
    Throttled,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Throttled => "throttled",
        }
    }
}

type CallKey = (String, String, CallOutcome);
type CallHook = Arc<dyn Fn(&str, &str, CallOutcome) + Send + Sync>;
type RateHook = Arc<dyn Fn(f64) + Send + Sync>;

/// Counts every HTTP attempt every client makes, by service, operation and outcome.
/// Shared (cheap to clone); the metrics module exports it, tests and benchmarks read it.
#[derive(Clone, Default)]
pub struct CallStats {
    inner: Arc<Mutex<BTreeMap<CallKey, u64>>>,
    hook: Option<CallHook>,
    rate_hook: Option<RateHook>,
}

impl fmt::Debug for CallStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallStats")
            .field("total", &self.total())
            .finish()
    }
}

impl CallStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also call `hook` on every attempt (the metrics module uses it).
    pub fn with_hook(hook: impl Fn(&str, &str, CallOutcome) + Send + Sync + 'static) -> Self {
        CallStats {
            inner: Arc::default(),
            hook: Some(Arc::new(hook)),
            rate_hook: None,
        }
    }

    /// Also call `hook` with the current write rate whenever it may have changed.
    pub fn with_rate_hook(mut self, hook: impl Fn(f64) + Send + Sync + 'static) -> Self {
        self.rate_hook = Some(Arc::new(hook));
        self
    }

    /// The current adaptive write rate (per second), for the metrics gauge.
    pub fn write_rate(&self, rate: f64) {
        if let Some(h) = &self.rate_hook {
            h(rate);
        }
    }

    pub fn record(&self, service: &str, operation: &str, outcome: CallOutcome) {
        if let Ok(mut m) = self.inner.lock() {
            *m.entry((service.to_string(), operation.to_string(), outcome))
                .or_insert(0) += 1;
        }
        if let Some(h) = &self.hook {
            h(service, operation, outcome);
        }
    }

    /// A copy of all counts.
    pub fn snapshot(&self) -> BTreeMap<CallKey, u64> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Attempts of write operations (not Get/List/Generate/...).
    pub fn writes(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((_, op, _), _)| !is_read_operation(op))
            .map(|(_, n)| n)
            .sum()
    }

    /// Attempts of one operation, any service and outcome.
    pub fn count(&self, operation: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((_, op, _), _)| op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    /// `Operation=count` pairs, for reports.
    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((_, op, _), n) in self.snapshot() {
            *out.entry(op).or_insert(0) += n;
        }
        out
    }
}

#[derive(Debug)]
struct CountingInterceptor {
    service: &'static str,
    stats: CallStats,
}

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "iam-warden-call-counter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "unknown".into());
        let outcome = match context.response() {
            Some(r) if r.status().is_success() => CallOutcome::Ok,
            Some(r) => {
                let throttled = r.status().as_u16() == 429
                    || r.body()
                        .bytes()
                        .map(|b| {
                            let s = String::from_utf8_lossy(b);
                            s.contains("Throttl") || s.contains("RequestLimitExceeded")
                        })
                        .unwrap_or(false);
                if throttled {
                    CallOutcome::Throttled
                } else {
                    CallOutcome::Error
                }
            }
            None => CallOutcome::Error,
        };
        self.stats.record(self.service, &op, outcome);
        Ok(())
    }
}

/// All clients iam-warden uses, sharing one [`CallStats`] and (IAM and STS) one [`Pacer`].
#[derive(Clone, Debug)]
pub struct Clients {
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Delivery of rotated keys (`rotation.delivery`).
    pub secretsmanager: aws_sdk_secretsmanager::Client,
    pub ssm: aws_sdk_ssm::Client,
    /// Owner notifications (`notifications.sns_topic_arn`).
    pub sns: aws_sdk_sns::Client,
    /// Findings exported to Security Hub (`export.securityhub`), in `aws.region`; see
    /// [`Clients::securityhub_in`] for another region.
    pub securityhub: aws_sdk_securityhub::Client,
    /// IAM Access Analyzer (CIS 1.19), in `aws.region`; [`Clients::accessanalyzer_in`]
    /// for another region.
    pub accessanalyzer: aws_sdk_accessanalyzer::Client,
    /// AWS Organizations (`accounts.source = "organization"`: ListAccounts, ListParents).
    pub organizations: aws_sdk_organizations::Client,
    pub calls: CallStats,
    pub pacer: Arc<Pacer>,
    /// The HTTP client under the pacing layer (to re-pace with other settings).
    base_http: Option<aws_smithy_runtime_api::client::http::SharedHttpClient>,
    /// The SDK config the clients were built from, and the CloudTrail endpoint override:
    /// to build the same clients with other credentials ([`Clients::with_credentials`]).
    shared: aws_types::SdkConfig,
    cloudtrail_endpoint: Option<String>,
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
        let calls = self.calls.clone();
        let pacer = Pacer::new(settings)
            .map_err(|e| Error::Config(format!("controller pacing settings: {e}")))?
            .with_rate_hook(move |r| calls.write_rate(r));
        let calls = &self.calls;
        let pacer = Arc::new(pacer);
        let Some(base) = self.base_http.clone() else {
            return Err(Error::Other(
                "the AWS clients have no HTTP client to pace; build them with aws-config".into(),
            ));
        };
        let iam = self.iam.config().to_builder();
        let sts = self.sts.config().to_builder();
        Ok(Clients {
            iam: aws_sdk_iam::Client::from_conf(
                iam.http_client(paced_http(base.clone(), &pacer, "iam", calls))
                    .build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                sts.http_client(paced_http(base, &pacer, "sts", calls))
                    .build(),
            ),
            pacer,
            ..self
        })
    }

    /// The same clients with an IAM client whose calls do not wait for the shared rate
    /// buckets (they keep the retries, the backoff and the call counting, and a throttle
    /// they meet still slows everyone else): for the few writes that must not queue behind
    /// a bulk of baseline work, the quarantine of an exposed key.
    pub fn priority(&self) -> Result<Clients, Error> {
        let Some(base) = self.base_http.clone() else {
            return Err(Error::Other(
                "the AWS clients have no HTTP client to pace; build them with aws-config".into(),
            ));
        };
        let iam = self.iam.config().to_builder();
        Ok(Clients {
            iam: aws_sdk_iam::Client::from_conf(
                iam.http_client(paced_http_with(base, &self.pacer, "iam", &self.calls, true))
                    .build(),
            ),
            ..self.clone()
        })
    }

    fn build(
        shared: &aws_types::SdkConfig,
        cloudtrail_endpoint: Option<&str>,
        calls: CallStats,
        pacer: Arc<Pacer>,
    ) -> Clients {
        let counter = |service| CountingInterceptor {
            service,
            stats: calls.clone(),
        };
        // IAM and STS: one attempt per SDK call; pacing and retries are in the HTTP layer.
        // What the SDK sees as one attempt is every try the pacer makes, with its waits for
        // the rate and its backoffs: the pacer cuts each try at aws.attempt_timeout itself,
        // so the SDK's attempt timeout and its stalled-stream check (which reads a request
        // waiting for the rate as a stalled upload) are off here; aws.operation_timeout
        // still bounds the whole call.
        let paced_timeouts = shared
            .timeout_config()
            .map(|t| t.to_builder())
            .unwrap_or_default()
            .disable_operation_attempt_timeout()
            .build();
        let mut iam = aws_sdk_iam::config::Builder::from(shared)
            .interceptor(counter("iam"))
            .retry_config(RetryConfig::disabled())
            .timeout_config(paced_timeouts.clone())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        let mut sts = aws_sdk_sts::config::Builder::from(shared)
            .interceptor(counter("sts"))
            .retry_config(RetryConfig::disabled())
            .timeout_config(paced_timeouts)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        let base_http = shared.http_client().unwrap_or_else(default_http_client);
        iam = iam.http_client(paced_http(base_http.clone(), &pacer, "iam", &calls));
        sts = sts.http_client(paced_http(base_http.clone(), &pacer, "sts", &calls));
        let iam = aws_sdk_iam::Client::from_conf(iam.build());
        let sts = aws_sdk_sts::Client::from_conf(sts.build());
        let mut ct =
            aws_sdk_cloudtrail::config::Builder::from(shared).interceptor(counter("cloudtrail"));
        if let Some(url) = cloudtrail_endpoint {
            ct = ct.endpoint_url(url);
        }
        let cloudtrail = aws_sdk_cloudtrail::Client::from_conf(ct.build());
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(shared)
                .interceptor(counter("sqs"))
                .build(),
        );
        let secretsmanager = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(shared)
                .interceptor(counter("secretsmanager"))
                .build(),
        );
        let ssm = aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(shared)
                .interceptor(counter("ssm"))
                .build(),
        );
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(shared)
                .interceptor(counter("sns"))
                .build(),
        );
        let securityhub = aws_sdk_securityhub::Client::from_conf(
            aws_sdk_securityhub::config::Builder::from(shared)
                .interceptor(counter("securityhub"))
                .build(),
        );
        let accessanalyzer = aws_sdk_accessanalyzer::Client::from_conf(
            aws_sdk_accessanalyzer::config::Builder::from(shared)
                .interceptor(counter("accessanalyzer"))
                // One attempt: a failure is reported as "cannot check" (never a pass) and
                // the next audit asks again; retries would multiply the audit's calls.
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        let organizations = aws_sdk_organizations::Client::from_conf(
            aws_sdk_organizations::config::Builder::from(shared)
                .interceptor(counter("organizations"))
                .build(),
        );
        Clients {
            iam,
            sts,
            cloudtrail,
            sqs,
            secretsmanager,
            ssm,
            sns,
            securityhub,
            accessanalyzer,
            organizations,
            calls,
            pacer,
            base_http: Some(base_http),
            shared: shared.clone(),
            cloudtrail_endpoint: cloudtrail_endpoint.map(str::to_owned),
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
        let mut sdk = self.shared.to_builder();
        if let Some(c) = credentials {
            sdk = sdk.credentials_provider(c).identity_cache(
                aws_config::identity::IdentityCache::lazy()
                    .buffer_time(std::time::Duration::from_secs(300))
                    .build(),
            );
        }
        Clients::from_sdk_config(&sdk.build(), self.cloudtrail_endpoint.as_deref(), calls)
            .paced(settings)
    }

    /// The Security Hub client for `region` (the same credentials, endpoint, retries and
    /// call counter).
    pub fn securityhub_in(&self, region: &str) -> aws_sdk_securityhub::Client {
        if self.securityhub.config().region().map(|r| r.as_ref()) == Some(region) {
            return self.securityhub.clone();
        }
        aws_sdk_securityhub::Client::from_conf(
            self.securityhub
                .config()
                .to_builder()
                .region(Region::new(region.to_string()))
                .build(),
        )
    }

    /// The Access Analyzer client for `region` (analyzers are regional), counted like the
    /// others.
    pub fn accessanalyzer_in(&self, region: &str) -> aws_sdk_accessanalyzer::Client {
        aws_sdk_accessanalyzer::Client::from_conf(
            self.accessanalyzer
                .config()
                .to_builder()
                .region(Region::new(region.to_string()))
                .build(),
        )
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

    #[test]
    fn call_stats_count_and_split_reads_and_writes() {
        let seen = Arc::new(Mutex::new(0u32));
        let s2 = seen.clone();
        let s = CallStats::with_hook(move |_, _, _| *s2.lock().unwrap() += 1);
        s.record("iam", "GetUser", CallOutcome::Ok);
        s.record("iam", "GetUser", CallOutcome::Throttled);
        s.record("iam", "UpdateAccessKey", CallOutcome::Ok);
        assert_eq!(s.total(), 3);
        assert_eq!(s.writes(), 1);
        assert_eq!(s.count("GetUser"), 2);
        assert_eq!(*seen.lock().unwrap(), 3);
        assert_eq!(s.clone().total(), 3, "clones share counts");
    }

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
