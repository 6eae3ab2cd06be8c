//! iam-warden: keeps every IAM user of an AWS account on a security baseline.
//!
//! Module map, top layer first. A module uses only modules below it; the unit test in
//! `architecture.rs` fails on a backward import (docs/architecture.md explains the layers).
//! - [`app`]: the commands with their reports: `audit`, `plan`/`enforce --once`, and the
//!   daemon (`run`), which wires the sources, the controller and the HTTP server.
//! - [`sources`]: CloudTrail polling and SQS consumption; parsing records into events.
//! - [`controller`]: the reconcile key, the mapping of events to keys, the work queue,
//!   dispatch and reconcile.
//! - [`apply`]: executing planned actions against IAM, journaled. [`http`]: /metrics,
//!   /healthz, /readyz.
//! - [`export`]: findings as ASFF into Security Hub (with the resolution of those gone)
//!   and as OCSF Compliance Finding records.
//! - [`notify`]: owner notifications (journal line, metric, signed webhook, SNS), delivered
//!   by a background task that never holds up the caller.
//! - [`metrics`]: the Prometheus registry, label catalogues, and the internal events (one
//!   emit = one log line + one metric).
//! - [`baseline`]: pure logic: findings and planned actions from (state, baseline, now).
//! - [`inventory`]: observing the account (whole-account snapshot, single-user reads).
//!   [`delivery`]: storing a rotated key in Secrets Manager or SSM. [`accounts`]: the
//!   accounts in scope (self, a list, an organization) and each one's assumed-role clients.
//! - [`aws`]: AWS client construction (the only place clients are built) and the call counter.
//! - [`pacing`]: adaptive pacing and retries of every IAM and STS call.
//!   [`journal`]: the append-only JSON-lines journal.
//! - [`config`]: figment configuration, validation, tag names.
//! - [`error`], [`memory`], [`private_fs`] (the journal's and checkpoint's files are
//!   private, 0600/0700).

pub mod accounts;
pub mod app;
pub mod apply;
#[cfg(test)]
mod architecture;
pub mod aws;
pub mod baseline;
pub mod config;
pub mod controller;
pub mod delivery;
pub mod error;
pub mod export;
pub mod http;
pub mod inventory;
pub mod journal;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod pacing;
pub mod private_fs;
pub mod sources;

pub use error::{Error, Result};

/// The audit report lives with the `audit` command; the old path keeps working.
pub use app::audit as report;
