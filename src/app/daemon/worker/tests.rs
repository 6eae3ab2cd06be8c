//! Fairness of the real work loop (real `WorkQueue`s, the real semaphore) with a fake
//! reconcile of 10 ms (tokio's paused clock): a 5,000-key backlog in account A does not
//! hold back a key enqueued later in account B.

use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinSet;

use super::*;
use crate::controller::queue::QueueConfig;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Done(char),
    Enqueued,
}

async fn until(what: &str, log: &Mutex<Vec<Event>>, f: impl Fn(&[Event]) -> bool) {
    // A deadline in (paused) time: an hour of 10 ms reconciles is far beyond the bound.
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !f(&log.lock().expect("log")) {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The number of A reconciles that completed between B's key being enqueued and B's
/// reconcile completing, with `workers` permits and `per_account` workers per account.
async fn a_done_while_b_waits(workers: usize, per_account: usize, backlog: usize) -> usize {
    let permits = Arc::new(Semaphore::new(workers));
    let log = Arc::new(Mutex::new(Vec::new()));
    let a: WorkQueue<ReconcileKey> = WorkQueue::new(QueueConfig::default());
    let b: WorkQueue<ReconcileKey> = WorkQueue::new(QueueConfig::default());
    for i in 0..backlog {
        a.add(ReconcileKey::User(format!("a{i}")));
    }
    let mut tasks = JoinSet::new();
    for (name, q) in [('A', &a), ('B', &b)] {
        for _ in 0..per_account {
            let log = log.clone();
            tasks.spawn(work_loop(q.clone(), permits.clone(), move |lease| {
                let log = log.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    log.lock().expect("log").push(Event::Done(name));
                    lease.done(QueueOutcome::success());
                }
            }));
        }
    }
    until("A's backlog starting", &log, |l| l.len() >= 50).await;
    {
        // One step (no await between): the enqueue is ordered among the completions.
        log.lock().expect("log").push(Event::Enqueued);
        assert!(b.add(ReconcileKey::User("new-user".into())));
    }
    until("B's reconcile", &log, |l| l.contains(&Event::Done('B'))).await;
    let log = log.lock().expect("log").clone();
    a.shutdown();
    b.shutdown();
    tasks.abort_all();
    let from = log
        .iter()
        .position(|e| *e == Event::Enqueued)
        .expect("enqueued");
    let to = log
        .iter()
        .position(|e| *e == Event::Done('B'))
        .expect("B done");
    assert!(
        log.iter().filter(|e| **e == Event::Done('A')).count() < backlog / 10,
        "B was done only after most of A's backlog"
    );
    log[from..to]
        .iter()
        .filter(|e| **e == Event::Done('A'))
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_backlog_in_one_account_does_not_hold_back_another() {
    // (controller.workers, controller.account_workers)
    for (workers, per_account) in [(4, 4), (8, 4), (4, 1), (1, 1), (16, 4), (4, 2)] {
        let n = a_done_while_b_waits(workers, per_account, 5_000).await;
        assert!(
            n <= workers,
            "workers {workers}, account_workers {per_account}: B waited for {n} of A's reconciles (bound {workers})"
        );
    }
}

#[test]
fn account_workers_are_capped_by_workers_and_self_keeps_all() {
    let mut cfg = Config::default();
    for (source, workers, per_account, want) in [
        (AccountSource::Caller, 4, 4, 4),
        (AccountSource::Caller, 16, 4, 16),
        (AccountSource::List, 16, 4, 4),
        (AccountSource::List, 2, 4, 2),
        (AccountSource::Organization, 8, 8, 8),
        (AccountSource::Organization, 8, 1, 1),
    ] {
        cfg.accounts.source = source;
        cfg.controller.workers = workers;
        cfg.controller.account_workers = per_account;
        assert_eq!(
            account_workers(&cfg),
            want,
            "{source:?} workers {workers} account_workers {per_account}"
        );
    }
}
