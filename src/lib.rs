//! iam-warden: keeps every IAM user of an AWS account on a security baseline.
//!
//! Module map (one concern each):
//! - [`config`]: figment configuration, validation.
//! - [`aws`]: AWS client construction (the only place clients are built) and the call counter.
//! - [`pacing`]: adaptive pacing and retries of every IAM and STS call (below apply and inventory).
//! - [`inventory`]: observing the account (whole-account snapshot, single-user reads).
//! - [`baseline`]: pure logic: findings and planned actions from (state, baseline, now).
//! - [`apply`]: executing planned actions against IAM, journaled.
//! - [`journal`]: the append-only JSON-lines journal.
//! - [`private_fs`]: the journal's and checkpoint's files and directories are private (0600/0700).
//! - [`report`]: rendering audit and plan results.
//! - [`controller`]: the work queue and the reconcile loop of the daemon.
//! - [`sources`]: CloudTrail and SQS event sources.
//! - [`metrics`]: the Prometheus registry and every metric.
//! - [`http`]: /metrics, /healthz, /readyz.

pub mod app;
pub mod apply;
pub mod aws;
pub mod baseline;
pub mod config;
pub mod controller;
pub mod error;
pub mod http;
pub mod inventory;
pub mod journal;
pub mod memory;
pub mod metrics;
pub mod pacing;
pub mod private_fs;
pub mod report;
pub mod sources;

pub use error::{Error, Result};
