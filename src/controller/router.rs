//! Which account's [`Dispatch`] an event goes to. One SQS queue can carry the events of
//! every account (an organization-wide EventBridge rule, or a central event bus): the
//! source reads the account an event is about and asks the [`Router`] for that account's
//! dispatch. An account without one is not in scope, and its events are not acted on.
//!
//! Accounts come and go at discovery (`accounts.source = "organization"`), while the
//! sources keep running: the table is shared by every clone and guarded by a `RwLock`
//! (reads, one per event, far outnumber the writes, one per discovered or dropped account).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::dispatch::Dispatch;
use crate::metrics::Metrics;

/// The accounts in scope, each with its dispatch once its controller runs (`None` while
/// it cannot: its role cannot be assumed yet). Clones share one table.
#[derive(Clone)]
pub struct Router {
    metrics: Arc<Metrics>,
    accounts: Arc<RwLock<BTreeMap<String, Option<Dispatch>>>>,
}

impl Router {
    /// An empty table; `metrics` counts what the sources do before an event is routed
    /// (polls, malformed and skipped messages).
    pub fn new(metrics: Arc<Metrics>) -> Router {
        Router {
            metrics,
            accounts: Arc::default(),
        }
    }

    /// A table with one account (`accounts.source = "self"`).
    pub fn single(metrics: Arc<Metrics>, account_id: &str, dispatch: Dispatch) -> Router {
        let r = Router::new(metrics);
        r.insert(account_id, dispatch);
        r
    }

    /// `account_id` is in scope, its controller not running yet: its events are skipped
    /// as `account_down` (not `not_in_scope`) until [`Router::insert`]. Keeps a dispatch
    /// already there.
    pub fn expect(&self, account_id: &str) {
        self.accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(account_id.to_owned())
            .or_insert(None);
    }

    /// Route the events of `account_id` (12 digits) to `dispatch` from now on; returns the
    /// dispatch it replaces, if any.
    pub fn insert(&self, account_id: &str, dispatch: Dispatch) -> Option<Dispatch> {
        self.accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(account_id.to_owned(), Some(dispatch))
            .flatten()
    }

    /// Stop routing the events of `account_id` (it left the scope); returns its dispatch.
    pub fn remove(&self, account_id: &str) -> Option<Dispatch> {
        self.accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(account_id)
            .flatten()
    }

    /// The dispatch of `account_id`, `None` when that account is not in scope or its
    /// controller is not running.
    pub fn get(&self, account_id: &str) -> Option<Dispatch> {
        self.accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(account_id)
            .cloned()
            .flatten()
    }

    /// Whether `account_id` is in scope, its controller running or not.
    pub fn in_scope(&self, account_id: &str) -> bool {
        self.accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(account_id)
    }

    /// The accounts in scope, sorted.
    pub fn accounts(&self) -> Vec<String> {
        self.accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// How many accounts are in scope.
    pub fn len(&self) -> usize {
        self.accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::key::ReconcileKey;
    use crate::controller::mapping::BaselineNames;
    use crate::controller::queue::WorkQueue;
    use crate::metrics::QueueSource;
    use tokio::time::Instant;

    fn dispatch(m: &Arc<Metrics>) -> Dispatch {
        Dispatch::new(
            WorkQueue::default(),
            m.clone(),
            BaselineNames::default(),
            "",
        )
    }

    #[test]
    fn routes_by_account_and_follows_inserts_and_removals() {
        let m = Metrics::new("test").unwrap();
        let (a, b) = (dispatch(&m), dispatch(&m));
        a.enqueue(
            ReconcileKey::User("in-a".into()),
            QueueSource::Resync,
            None,
            Instant::now(),
        );
        let r = Router::new(m.clone());
        assert!(r.is_empty());
        assert!(r.get("111111111111").is_none());
        assert!(r.insert("222222222222", b.clone()).is_none());
        assert!(r.insert("111111111111", a).is_none());
        assert_eq!(r.accounts(), ["111111111111", "222222222222"]);
        assert_eq!(r.len(), 2);
        // Told apart by their queues: only a's holds a key.
        assert_eq!(r.get("111111111111").map(|d| d.queue().depth()), Some(1));
        assert_eq!(r.get("222222222222").map(|d| d.queue().depth()), Some(0));
        assert!(r.get("333333333333").is_none());
        assert!(r.get("").is_none());

        // A clone shares the table: an account removed through one is gone for all.
        let clone = r.clone();
        assert!(clone.remove("111111111111").is_some());
        assert!(r.get("111111111111").is_none());
        assert!(r.remove("111111111111").is_none());
        assert_eq!(r.accounts(), ["222222222222"]);
        // Re-inserting replaces and returns the old one.
        assert!(r.insert("222222222222", dispatch(&m)).is_some());
        assert_eq!(r.len(), 1);
        assert!(Arc::ptr_eq(r.metrics(), &m));
    }

    #[test]
    fn an_expected_account_is_in_scope_without_a_dispatch_until_inserted() {
        let m = Metrics::new("test").unwrap();
        let r = Router::new(m.clone());
        r.expect("111111111111");
        assert!(r.in_scope("111111111111"));
        assert!(
            r.get("111111111111").is_none(),
            "not running: nothing to route to"
        );
        assert!(!r.in_scope("222222222222"));
        assert_eq!(r.len(), 1);
        // Up: routed; expecting it again keeps its dispatch.
        assert!(r.insert("111111111111", dispatch(&m)).is_none());
        r.expect("111111111111");
        assert!(r.get("111111111111").is_some());
        // Gone from the scope: neither routed nor in scope.
        assert!(r.remove("111111111111").is_some());
        assert!(!r.in_scope("111111111111"));
        r.expect("111111111111");
        assert!(
            r.remove("111111111111").is_none(),
            "never up: no dispatch to return"
        );
        assert!(r.is_empty());
    }

    #[test]
    fn single_has_exactly_one_account() {
        let m = Metrics::new("test").unwrap();
        let r = Router::single(m.clone(), "123456789012", dispatch(&m));
        assert_eq!(r.accounts(), ["123456789012"]);
        assert!(r.get("123456789012").is_some());
        assert!(r.get("210987654321").is_none());
    }

    /// Readers and writers from several threads at once: nothing is lost, nothing blocks
    /// forever.
    #[test]
    fn concurrent_inserts_and_lookups() {
        let m = Metrics::new("test").unwrap();
        let r = Router::new(m.clone());
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (r, m) = (r.clone(), m.clone());
                s.spawn(move || {
                    for i in 0..50u64 {
                        let id = format!("{:012}", t * 1000 + i);
                        r.insert(&id, dispatch(&m));
                        assert!(r.get(&id).is_some());
                    }
                });
            }
        });
        assert_eq!(r.len(), 200);
    }
}
