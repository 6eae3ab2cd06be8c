//! Fairness of the real work loop (real `WorkQueue`s, the real semaphore) with a fake
//! reconcile: a 5,000-key backlog in account A does not hold back a key enqueued later in
//! account B. A's reconciles finish one at a time when the test says so (a gate), and the
//! single-threaded runtime runs every ready task between two steps, so the count is exact,
//! not a race against a clock.

use std::sync::Mutex;

use tokio::task::JoinSet;

use super::*;
use crate::controller::queue::QueueConfig;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Done(char),
    Enqueued,
}

/// Let every ready task run until it waits again.
async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

/// The number of A reconciles that completed between B's key being enqueued and B's
/// reconcile completing, with `workers` permits and `per_account` workers per account.
async fn a_done_while_b_waits(workers: usize, per_account: usize, backlog: usize) -> usize {
    let permits = Arc::new(Semaphore::new(workers));
    // A reconcile of A finishes when the test adds a permit here.
    let gate = Arc::new(Semaphore::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let a: WorkQueue<ReconcileKey> = WorkQueue::new(QueueConfig::default());
    let b: WorkQueue<ReconcileKey> = WorkQueue::new(QueueConfig::default());
    for i in 0..backlog {
        a.add(ReconcileKey::User(format!("a{i}")));
    }
    let mut tasks = JoinSet::new();
    for (name, q) in [('A', &a), ('B', &b)] {
        for _ in 0..per_account {
            let (log, gate) = (log.clone(), gate.clone());
            tasks.spawn(work_loop(q.clone(), permits.clone(), move |lease| {
                let (log, gate) = (log.clone(), gate.clone());
                async move {
                    if name == 'A' {
                        gate.acquire().await.expect("gate open").forget();
                    }
                    log.lock().expect("log").push(Event::Done(name));
                    lease.done(QueueOutcome::success());
                }
            }));
        }
    }
    // A's backlog under way: 50 done, `per_account` of them in flight.
    gate.add_permits(50);
    settle().await;
    log.lock().expect("log").push(Event::Enqueued);
    assert!(b.add(ReconcileKey::User("new-user".into())));
    settle().await;
    // Then A's reconciles finish one by one until B's is done.
    let b_done = |l: &[Event]| l.contains(&Event::Done('B'));
    let mut steps = 0;
    while !b_done(&log.lock().expect("log")) {
        steps += 1;
        assert!(steps < backlog, "B's reconcile never ran");
        gate.add_permits(1);
        settle().await;
    }
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
    assert_eq!(
        log[..from]
            .iter()
            .filter(|e| **e == Event::Done('A'))
            .count(),
        50,
        "the backlog had started"
    );
    log[from..to]
        .iter()
        .filter(|e| **e == Event::Done('A'))
        .count()
}

#[tokio::test]
async fn a_backlog_in_one_account_does_not_hold_back_another() {
    // (controller.workers, controller.account_workers, the exact wait): A holds every
    // permit when it has as many workers as there are permits, and B's worker is next in
    // line for the first one released; with permits to spare B never waits.
    for (workers, per_account, want) in [
        (4, 4, 1),
        (1, 1, 1),
        (8, 4, 0),
        (16, 4, 0),
        (4, 2, 0),
        (4, 1, 0),
    ] {
        let n = a_done_while_b_waits(workers, per_account, 5_000).await;
        assert!(
            n <= workers,
            "workers {workers}, account_workers {per_account}: B waited for {n} of A's reconciles (bound {workers})"
        );
        assert_eq!(n, want, "workers {workers}, account_workers {per_account}");
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
