//! The one-shot commands (`audit`, `check-config`), each a function the binary calls and
//! the tests can drive. Exit codes: 0 compliant / ok, 1 findings, 2 error (from `main`).

use chrono::{DateTime, Utc};

use crate::aws::{CallStats, Clients};
use crate::config::Config;
use crate::error::Result;
use crate::inventory;
use crate::report::AuditReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// Build the AWS clients for `cfg`.
pub async fn clients(cfg: &Config) -> Clients {
    Clients::connect(
        &cfg.aws,
        cfg.sources.cloudtrail.endpoint_url.as_deref(),
        CallStats::new(),
    )
    .await
}

/// Read the account and judge it at `now`.
pub async fn audit(cfg: &Config, clients: &Clients, now: DateTime<Utc>) -> Result<AuditReport> {
    let before = clients.calls.total();
    let snap = inventory::read_account(clients).await?;
    Ok(AuditReport::build(
        &snap,
        cfg,
        now,
        clients.calls.total() - before,
    ))
}
