//! The baseline: pure functions from observed state, configuration and time to findings
//! ([`checks`]), the baseline policy documents ([`policies`]) and the writes that fix the
//! findings ([`plan`]), the blast-radius breaker ([`breaker`]), and what the baseline
//! policies would deny of recorded traffic ([`impact`]). No I/O here.

pub mod benchmark;
pub mod breaker;
pub mod checks;
pub mod cis;
pub mod impact;
pub mod plan;
pub mod policies;
#[cfg(test)]
pub(crate) mod testkit;

pub use checks::{Check, Finding, Severity, UserVerdict};
pub use plan::{AccessLoss, Action, BreakerNote, Plan, PlannedAction, UserPlan};
