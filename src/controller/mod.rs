//! The controller: the reconcile key and the mapping of events to keys, the work queue,
//! dispatch from sources, reconcile. Sources depend on the controller, never the reverse.

pub mod dispatch;
pub mod key;
pub mod mapping;
pub mod preflight;
pub mod quarantine;
pub mod queue;
pub mod reconcile;
pub mod router;
