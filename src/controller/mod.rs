//! The controller: work queue, dispatch from sources, reconcile loop.

pub mod dispatch;
pub mod queue;
