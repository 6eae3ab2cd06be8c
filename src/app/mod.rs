//! The commands, each with its report and renderer: `audit` ([`audit`]), `plan` and
//! `enforce --once` ([`enforce`]), `impact` ([`impact`]), `run` ([`daemon`]). Each is a function the binary calls
//! and the tests can drive. Exit codes: 0 compliant / ok, 1 findings, 2 error (from `main`).
//! This is the top layer: it wires the controller, the sources and the HTTP server.

pub mod audit;
pub mod daemon;
pub mod enforce;
pub mod impact;
pub mod multi;
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

/// The accounts in scope for a multi-account command (`accounts.source` = `list` or
/// `organization`), narrowed to `only` (`--account ID`) when given.
pub async fn scope(
    cfg: &Config,
    clients: &Clients,
    only: Option<&str>,
) -> Result<crate::accounts::Scope> {
    let mut scope = crate::accounts::discover(cfg, clients).await?;
    if let Some(id) = only {
        scope.narrow(id)?;
    }
    Ok(scope)
}

/// `--account ID` with `accounts.source = "self"`: the caller's account must be `id`.
pub async fn check_own_account(clients: &Clients, id: &str) -> Result<()> {
    if !crate::config::is_account_id(id) {
        return Err(crate::error::Error::Config(format!(
            "--account {id:?} is not an account id; write its 12 digits"
        )));
    }
    let (_, own) = clients.caller_identity().await?;
    if own != id {
        return Err(crate::error::Error::Config(format!(
            "--account {id}: iam-warden's credentials are of account {own} and accounts.source = \"self\"; use credentials of {id}, or set accounts.source = \"list\" with it in [[accounts.list]]"
        )));
    }
    Ok(())
}
