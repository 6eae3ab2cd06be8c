//! The controller: work queue, dispatch from sources, reconcile, the daemon.

pub mod daemon;
pub mod dispatch;
pub mod queue;
pub mod reconcile;
