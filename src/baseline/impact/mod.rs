//! Impact of the baseline policies on real traffic: would the deny-unless-MFA and the
//! deny-unless-source-IP policy, as configured, have denied a CloudTrail-recorded call?
//!
//! Pure: [`Rules`] are compiled from the policy documents [`super::policies`] builds (never
//! a second list of actions or networks), [`evaluate`] judges one [`Record`] for the users
//! of the account ([`UserScope`]), [`Tally`] adds the verdicts up, and
//! [`networks::suggest`] proposes the networks to allow; [`gate`] decides whether the
//! pre-flight gate holds a policy-adding change. Reading the records (trail files,
//! `LookupEvents`) is in `sources::trail`; the command and its report in `app::impact`.

mod eval;
pub mod gate;
pub mod networks;
mod record;
mod tally;

pub use eval::{evaluate, iam_action, Call, Outcome, Reason, Rules, Skip, UserScope, Via};
pub use record::{Attributes, Record, SessionContext, SessionIssuer, TrailFile, UserIdentity};
pub use tally::{AddrTally, NetTally, Tally, UserTally};

#[cfg(test)]
mod tests;
