//! The clients of the services beyond IAM and STS, each built on its first use.
//!
//! An SDK client costs ~16 KiB of heap (its config layers and runtime plugins). Every
//! account of an organization has its own clients, and a member account uses two or three
//! of these eight (CloudTrail, Access Analyzer, Security Hub when exporting): built
//! eagerly, the unused ones were 13 MiB of the daemon's heap with 100 accounts.

use std::sync::OnceLock;

use aws_config::retry::RetryConfig;
use aws_config::Region;

use super::calls::{CallStats, CountingInterceptor};

/// The lazily built clients of one set of credentials, shared by every clone of its
/// [`super::Clients`] (a client is built once, whichever clone asks first).
#[derive(Debug)]
pub(super) struct Services {
    /// The SDK config with the shared HTTP client, as IAM's was built from.
    shared: aws_types::SdkConfig,
    cloudtrail_endpoint: Option<String>,
    calls: CallStats,
    cloudtrail: OnceLock<aws_sdk_cloudtrail::Client>,
    sqs: OnceLock<aws_sdk_sqs::Client>,
    secretsmanager: OnceLock<aws_sdk_secretsmanager::Client>,
    ssm: OnceLock<aws_sdk_ssm::Client>,
    sns: OnceLock<aws_sdk_sns::Client>,
    securityhub: OnceLock<aws_sdk_securityhub::Client>,
    accessanalyzer: OnceLock<aws_sdk_accessanalyzer::Client>,
    organizations: OnceLock<aws_sdk_organizations::Client>,
}

/// `$sdk`'s config builder from the shared config, counting its calls as `$service`.
macro_rules! builder {
    ($self:ident, $sdk:ident, $service:expr) => {
        $sdk::config::Builder::from(&$self.shared)
            .interceptor(CountingInterceptor::new($service, &$self.calls))
    };
}

/// The accessors of the clients built with nothing but the shared config, each counted as
/// its field's name: `name: sdk_crate`.
macro_rules! simple_clients {
    ($($name:ident: $sdk:ident),* $(,)?) => {$(
        pub(super) fn $name(&self) -> &$sdk::Client {
            self.$name
                .get_or_init(|| $sdk::Client::from_conf(builder!(self, $sdk, stringify!($name)).build()))
        }
    )*};
}

impl Services {
    pub(super) fn new(
        shared: aws_types::SdkConfig,
        cloudtrail_endpoint: Option<String>,
        calls: CallStats,
    ) -> Services {
        Services {
            shared,
            cloudtrail_endpoint,
            calls,
            cloudtrail: OnceLock::new(),
            sqs: OnceLock::new(),
            secretsmanager: OnceLock::new(),
            ssm: OnceLock::new(),
            sns: OnceLock::new(),
            securityhub: OnceLock::new(),
            accessanalyzer: OnceLock::new(),
            organizations: OnceLock::new(),
        }
    }

    /// The SDK config these clients are built from (credentials, region, endpoint,
    /// timeouts, HTTP client).
    pub(super) fn shared(&self) -> &aws_types::SdkConfig {
        &self.shared
    }

    /// The CloudTrail endpoint override, if any.
    pub(super) fn cloudtrail_endpoint(&self) -> Option<&str> {
        self.cloudtrail_endpoint.as_deref()
    }

    simple_clients! {
        sqs: aws_sdk_sqs,
        secretsmanager: aws_sdk_secretsmanager,
        ssm: aws_sdk_ssm,
        sns: aws_sdk_sns,
        securityhub: aws_sdk_securityhub,
        organizations: aws_sdk_organizations,
    }

    pub(super) fn cloudtrail(&self) -> &aws_sdk_cloudtrail::Client {
        self.cloudtrail.get_or_init(|| {
            let mut b = builder!(self, aws_sdk_cloudtrail, "cloudtrail");
            if let Some(url) = &self.cloudtrail_endpoint {
                b = b.endpoint_url(url);
            }
            aws_sdk_cloudtrail::Client::from_conf(b.build())
        })
    }

    /// Security Hub in `region` (built anew unless it is the config's region).
    pub(super) fn securityhub_in(&self, region: &str) -> aws_sdk_securityhub::Client {
        if self.is_home(region) {
            return self.securityhub().clone();
        }
        aws_sdk_securityhub::Client::from_conf(
            builder!(self, aws_sdk_securityhub, "securityhub")
                .region(Region::new(region.to_string()))
                .build(),
        )
    }

    /// Access Analyzer in `region` (built anew unless it is the config's region). One
    /// attempt: a failure is reported as "cannot check" (never a pass) and the next audit
    /// asks again; retries would multiply the audit's calls.
    pub(super) fn accessanalyzer_in(&self, region: &str) -> aws_sdk_accessanalyzer::Client {
        let build = |region: Option<Region>| {
            aws_sdk_accessanalyzer::Client::from_conf(
                builder!(self, aws_sdk_accessanalyzer, "accessanalyzer")
                    .retry_config(RetryConfig::disabled())
                    .region(region)
                    .build(),
            )
        };
        if self.is_home(region) {
            return self
                .accessanalyzer
                .get_or_init(|| build(self.shared.region().cloned()))
                .clone();
        }
        build(Some(Region::new(region.to_string())))
    }

    /// Whether `region` is the SDK config's own.
    fn is_home(&self, region: &str) -> bool {
        self.shared.region().map(|r| r.as_ref()) == Some(region)
    }
}
