//! The baseline: pure functions from observed state, configuration and time to findings
//! ([`checks`]), the baseline policy documents ([`policies`]) and the writes that fix the
//! findings ([`plan`]). No I/O here.

pub mod checks;
pub mod plan;
pub mod policies;
#[cfg(test)]
pub(crate) mod testkit;

pub use checks::{Check, Finding, Severity, UserVerdict};
pub use plan::{Action, Plan, PlannedAction, UserPlan};
