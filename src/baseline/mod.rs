//! The baseline: pure functions from observed state, configuration and time to findings
//! ([`checks`]) and to the actions that fix them ([`plan`]). No I/O here.

pub mod checks;
#[cfg(test)]
pub(crate) mod testkit;

pub use checks::{Check, Finding, Severity, UserVerdict};
