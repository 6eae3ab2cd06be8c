//! The commands, each with its report and renderer: `audit` ([`audit`]), `plan` and
//! `enforce --once` ([`enforce`]), `impact` ([`impact`]), `run` ([`daemon`]). Each is a function the binary calls
//! and the tests can drive. Exit codes: 0 compliant / ok, 1 findings, 2 error (from `main`).
//! This is the top layer: it wires the controller, the sources and the HTTP server.

pub mod audit;
pub mod daemon;
pub mod enforce;
pub mod impact;
pub mod preflight;

pub use audit::{audit, audit_with, AuditReport};
pub use enforce::{enforce, reactivate, Breaker, EnforceOptions, EnforceReport};
pub use impact::{impact, ImpactOptions, ImpactReport};

use crate::aws::{CallStats, Clients};
use crate::config::Config;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// Build the AWS clients for `cfg`.
pub async fn clients(cfg: &Config) -> Result<Clients> {
    Clients::connect(
        &cfg.aws,
        cfg.sources.cloudtrail.endpoint_url.as_deref(),
        CallStats::new(),
    )
    .await
    .paced(&crate::pacing::PacingSettings::from_config(cfg))
}
