use super::*;

fn cfg(jitter: f64) -> QueueConfig {
    QueueConfig {
        jitter,
        ..QueueConfig::default()
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ----- core: synthetic instants, fully deterministic -----

#[test]
fn backoff_doubles_and_is_capped() {
    let c = QueueConfig::default();
    let got: Vec<u64> = (0..12).map(|n| c.backoff(n).as_secs()).collect();
    assert_eq!(got, vec![0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(c.backoff(40), secs(300));
    assert_eq!(c.backoff(u32::MAX), secs(300));
    let huge = QueueConfig {
        backoff_base: Duration::MAX,
        backoff_max: Duration::MAX,
        jitter: 0.0,
    };
    assert_eq!(huge.backoff(3), Duration::MAX);
}

#[test]
fn jitter_only_shortens_within_bounds() {
    let c = cfg(0.25);
    assert_eq!(c.jittered(3, 0.0), secs(4));
    assert_eq!(c.jittered(3, 0.5), Duration::from_millis(3500));
    let lowest = c.jittered(3, 0.999_999);
    assert!(lowest >= secs(3) && lowest < Duration::from_millis(3001));
    for _ in 0..1000 {
        let d = c.jittered(10, fastrand::f64());
        assert!(d > Duration::from_secs(225) && d <= secs(300), "{d:?}");
    }
    assert_eq!(cfg(f64::NAN).jittered(2, 0.9), secs(2));
    assert_eq!(cfg(7.0).jittered(2, 0.5), secs(1));
    assert_eq!(cfg(-1.0).jittered(2, 0.5), secs(2));
}

#[test]
fn dedup_earliest_due_wins() {
    let t0 = Instant::now();
    let mut core = Core::default();
    assert_eq!(core.add_at("a", t0 + secs(10)), Added::Scheduled);
    assert_eq!(core.add_at("a", t0 + secs(20)), Added::Unchanged); // later: no delay
    assert_eq!(core.add_at("a", t0 + secs(10)), Added::Unchanged);
    assert_eq!(core.waiting, 1);
    assert_eq!(core.pop_due(t0 + secs(9)).unwrap_err(), Some(t0 + secs(10)));
    assert_eq!(core.add_at("a", t0 + secs(5)), Added::Scheduled); // earlier: wins
    assert_eq!(core.waiting, 1);
    assert_eq!(core.pop_due(t0 + secs(4)).unwrap_err(), Some(t0 + secs(5)));
    let p = core.pop_due(t0 + secs(7)).unwrap();
    assert_eq!((p.key, p.attempt, p.waited), ("a", 0, secs(2)));
    // exactly once: the stale entry at +10 does not hand "a" out again
    assert_eq!(core.pop_due(t0 + secs(100)).unwrap_err(), None);
    assert_eq!((core.waiting, core.in_flight), (0, 1));
}

#[test]
fn pops_in_due_order_then_fifo() {
    let t0 = Instant::now();
    let mut core = Core::default();
    core.add_at("late", t0 + secs(3));
    core.add_at("first", t0);
    core.add_at("second", t0);
    core.add_at("mid", t0 + secs(1));
    let order: Vec<_> = std::iter::from_fn(|| core.pop_due(t0 + secs(5)).ok())
        .map(|p| p.key)
        .collect();
    assert_eq!(order, vec!["first", "second", "mid", "late"]);
}

#[test]
fn add_while_in_flight_runs_once_more_after_done() {
    let t0 = Instant::now();
    let c = cfg(0.0);
    let mut core = Core::default();
    core.add_at("a", t0);
    let _lease = core.pop_due(t0).unwrap();
    assert_eq!(core.add_at("a", t0 + secs(1)), Added::Pending);
    assert_eq!(core.add_at("a", t0 + secs(2)), Added::Unchanged);
    assert_eq!(core.add_at("a", t0 + secs(1)), Added::Unchanged);
    // not handed out while in flight, even though it is due
    assert_eq!(core.pop_due(t0 + secs(5)).unwrap_err(), None);
    assert_eq!(core.waiting, 0);
    let f = core.finish(&"a", Outcome::success(), t0 + secs(5), &c, 0.0);
    assert_eq!(f.next_due, Some(t0 + secs(1)));
    let p = core.pop_due(t0 + secs(5)).unwrap();
    assert_eq!((p.key, p.waited), ("a", secs(4)));
    core.finish(&"a", Outcome::success(), t0 + secs(6), &c, 0.0);
    // exactly one more run
    assert_eq!(core.pop_due(t0 + secs(100)).unwrap_err(), None);
    assert!(core.slots.is_empty());
}

#[test]
fn failure_backoff_grows_caps_and_resets() {
    let mut t = Instant::now();
    let c = cfg(0.0);
    let mut core = Core::default();
    core.add_at("a", t);
    let mut delays = Vec::new();
    for attempt in 0..11 {
        let p = core.pop_due(t).unwrap();
        assert_eq!(p.attempt, attempt);
        let f = core.finish(&"a", Outcome::Failure, t, &c, 0.0);
        assert_eq!(f.failures, attempt + 1);
        let d = f.retry_after.unwrap();
        assert_eq!(f.next_due, Some(t + d));
        // not due a moment before the backoff ends
        assert_eq!(
            core.pop_due(t + d - Duration::from_millis(1)).unwrap_err(),
            Some(t + d)
        );
        delays.push(d.as_secs());
        t += d;
    }
    assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    let p = core.pop_due(t).unwrap();
    assert_eq!(p.attempt, 11);
    let f = core.finish(&"a", Outcome::success(), t, &c, 0.0);
    assert_eq!((f.failures, f.next_due, f.retry_after), (0, None, None));
    core.add_at("a", t);
    assert_eq!(core.pop_due(t).unwrap().attempt, 0);
    let f = core.finish(&"a", Outcome::Failure, t, &c, 0.0);
    assert_eq!(f.retry_after, Some(secs(1)));
}

#[test]
fn failure_backoffs_are_per_key() {
    let t = Instant::now();
    let c = cfg(0.0);
    let mut core = Core::default();
    core.add_at("a", t);
    core.add_at("b", t);
    assert_eq!(core.pop_due(t).unwrap().key, "a");
    core.finish(&"a", Outcome::Failure, t, &c, 0.0);
    let b = core.pop_due(t).unwrap();
    assert_eq!((b.key, b.attempt), ("b", 0));
    let f = core.finish(&"b", Outcome::success(), t, &c, 0.0);
    assert_eq!(f.failures, 0);
    assert_eq!(core.pop_due(t).unwrap_err(), Some(t + secs(1)));
    let a = core.pop_due(t + secs(1)).unwrap();
    assert_eq!((a.key, a.attempt), ("a", 1));
}

#[test]
fn add_can_bring_a_backing_off_key_forward_without_resetting_failures() {
    let t = Instant::now();
    let c = cfg(0.0);
    let mut core = Core::default();
    core.add_at("a", t);
    for _ in 0..3 {
        let due = core.pop_due(t + secs(1000)).map(|_| ()).ok();
        assert!(due.is_some());
        core.finish(&"a", Outcome::Failure, t, &c, 0.0);
    }
    assert_eq!(core.pop_due(t).unwrap_err(), Some(t + secs(4)));
    assert_eq!(core.add_at("a", t), Added::Scheduled);
    let p = core.pop_due(t).unwrap();
    assert_eq!(p.attempt, 3);
    let f = core.finish(&"a", Outcome::Failure, t, &c, 0.0);
    assert_eq!(f.retry_after, Some(secs(8)));
}

#[test]
fn requeue_at_honoured_and_pending_earlier_wins() {
    let t = Instant::now();
    let c = cfg(0.0);
    let mut core = Core::default();
    core.add_at("a", t);
    core.pop_due(t).unwrap();
    let f = core.finish(
        &"a",
        Outcome::Success {
            requeue_at: Some(t + secs(3600)),
        },
        t,
        &c,
        0.0,
    );
    assert_eq!(f.next_due, Some(t + secs(3600)));
    assert_eq!(
        core.pop_due(t + secs(3599)).unwrap_err(),
        Some(t + secs(3600))
    );
    assert_eq!(core.pop_due(t + secs(3600)).unwrap().key, "a");
    // an add during the run is due sooner than the requeue: it wins
    core.add_at("a", t + secs(3601));
    core.finish(
        &"a",
        Outcome::Success {
            requeue_at: Some(t + secs(7200)),
        },
        t + secs(3600),
        &c,
        0.0,
    );
    assert_eq!(core.pop_due(t).unwrap_err(), Some(t + secs(3601)));
    // and failure after a pending add: the add is earlier than the backoff
    core.pop_due(t + secs(3601)).unwrap();
    core.add_at("a", t + secs(3601));
    let f = core.finish(&"a", Outcome::Failure, t + secs(3601), &c, 0.0);
    assert_eq!(f.next_due, Some(t + secs(3601)));
    assert_eq!(f.retry_after, Some(secs(1)));
}

#[test]
fn remove_drops_waiting_and_pending() {
    let t = Instant::now();
    let c = cfg(0.0);
    let mut core = Core::default();
    core.add_at("a", t);
    core.add_at("b", t);
    assert!(core.remove(&"a"));
    assert!(!core.remove(&"a"));
    assert_eq!(core.waiting, 1);
    assert_eq!(core.pop_due(t).unwrap().key, "b");
    core.add_at("b", t);
    assert!(core.remove(&"b")); // pending re-run dropped
    let f = core.finish(&"b", Outcome::success(), t, &c, 0.0);
    assert_eq!(f.next_due, None);
    assert_eq!(core.pop_due(t + secs(10)).unwrap_err(), None);
    assert!(core.slots.is_empty());
}

#[test]
fn stale_heap_entries_are_compacted() {
    let t = Instant::now();
    let mut core = Core::default();
    for i in 0..10_000u64 {
        core.add_at(i % 10, t + secs(100_000 - i));
    }
    assert_eq!(core.waiting, 10);
    assert!(core.heap.len() <= 2 * 10 + 65, "{}", core.heap.len());
    let mut keys = Vec::new();
    while let Ok(p) = core.pop_due(t + secs(1_000_000)) {
        keys.push(p.key);
    }
    keys.sort_unstable();
    assert_eq!(keys, (0..10).collect::<Vec<_>>());
}

#[test]
fn finish_of_unknown_key_is_harmless() {
    let t = Instant::now();
    let mut core: Core<&str> = Core::default();
    let f = core.finish(&"x", Outcome::Failure, t, &cfg(0.0), 0.0);
    assert_eq!(f.next_due, None);
    assert_eq!(core.in_flight, 0);
}

// ----- async: no dependence on time passing -----

/// Polls a future once; `Some` if it completed.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn next_hands_out_due_keys_and_counts() {
    let q = WorkQueue::new(cfg(0.0));
    assert!(q.add("a"));
    assert!(!q.add("a"));
    assert!(q.add("b"));
    assert_eq!(q.depth(), 2);
    let a = q.next().await.unwrap();
    assert_eq!((*a.key(), a.attempt()), ("a", 0));
    assert_eq!((q.depth(), q.in_flight()), (1, 1));
    let f = a.done(Outcome::success());
    assert_eq!(f.next_due, None);
    let b = q.next().await.unwrap();
    assert_eq!(*b.key(), "b");
    b.done(Outcome::Failure);
    let s = q.stats();
    assert_eq!(
        s,
        QueueStats {
            depth: 1,
            in_flight: 0,
            adds_total: 3,
            retries_total: 1,
            abandoned_total: 0
        }
    );
}

#[tokio::test]
async fn no_concurrent_runs_of_one_key() {
    let q = WorkQueue::new(cfg(0.0));
    q.add("a");
    let lease = q.next().await.unwrap();
    assert!(q.add("a")); // remembered
    assert_eq!(q.depth(), 0);
    // a second worker gets nothing while "a" is in flight
    let second = q.next();
    tokio::pin!(second);
    assert!(futures_poll_once(second.as_mut()).await.is_none());
    lease.done(Outcome::success());
    // ...and is woken with the re-run once "a" is done
    let again = tokio::time::timeout(secs(5), second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*again.key(), "a");
    again.done(Outcome::success());
    assert_eq!((q.depth(), q.in_flight()), (0, 0));
}

#[tokio::test]
async fn dropped_lease_counts_as_failure_and_is_not_lost() {
    let q = WorkQueue::new(cfg(0.0));
    q.add("a");
    let lease = q.next().await.unwrap();
    drop(lease);
    let s = q.stats();
    assert_eq!(
        (s.depth, s.in_flight, s.retries_total, s.abandoned_total),
        (1, 0, 1, 1)
    );
    // a reconcile task that panics drops its lease too
    q.add("a"); // bring it forward
    let lease = q.next().await.unwrap();
    assert_eq!(lease.attempt(), 1);
    let h = tokio::spawn(async move {
        let _l = lease;
        panic!("reconcile blew up");
    });
    assert!(h.await.is_err());
    assert_eq!(q.stats().abandoned_total, 2);
    assert_eq!(q.depth(), 1);
}

#[tokio::test]
async fn shutdown_wakes_waiting_workers_and_drains() {
    let q: WorkQueue<u32> = WorkQueue::default();
    q.add(1);
    let lease = q.next().await.unwrap();
    q.add_after(3, secs(3600));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let q = q.clone();
        workers.push(tokio::spawn(
            async move { q.next().await.map(|l| *l.key()) },
        ));
    }
    // let the workers reach their wait
    tokio::task::yield_now().await;
    q.shutdown();
    assert!(q.is_shutdown());
    for w in workers {
        let got = tokio::time::timeout(secs(5), w).await.unwrap().unwrap();
        assert_eq!(got, None);
    }
    assert!(q.next().await.is_none());
    assert!(!q.add(4));
    assert_eq!(q.stats().adds_total, 2);
    // the lease of key 1 is still out: not drained by a deadline already passed
    assert!(!q.wait_idle(Instant::now()).await);
    let drain = {
        let q = q.clone();
        tokio::spawn(async move { q.wait_idle(Instant::now() + secs(3600)).await })
    };
    tokio::task::yield_now().await;
    let f = lease.done(Outcome::Failure);
    assert_eq!(f.next_due, None); // no requeue after shutdown
    assert!(tokio::time::timeout(secs(5), drain).await.unwrap().unwrap());
    assert_eq!(q.in_flight(), 0);
    assert!(q.wait_idle(Instant::now()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_keys_many_workers_each_processed_exactly_once() {
    const KEYS: u32 = 1000;
    let q: WorkQueue<u32> = WorkQueue::new(cfg(0.0));
    for k in 0..KEYS {
        assert!(q.add(k));
        assert!(!q.add(k)); // de-duplicated
    }
    assert_eq!(q.depth(), KEYS as usize);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (q, seen) = (q.clone(), Arc::clone(&seen));
        workers.push(tokio::spawn(async move {
            while let Some(lease) = q.next().await {
                tokio::task::yield_now().await;
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(*lease.key());
                    seen.len()
                };
                lease.done(Outcome::success());
                if n == KEYS as usize {
                    q.shutdown();
                }
            }
        }));
    }
    for w in workers {
        tokio::time::timeout(secs(30), w).await.unwrap().unwrap();
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..KEYS).collect::<Vec<_>>());
    let s = q.stats();
    assert_eq!(
        (s.depth, s.in_flight, s.adds_total),
        (0, 0, 2 * KEYS as u64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_key_with_many_workers_never_runs_twice_at_once() {
    let q: WorkQueue<&str> = WorkQueue::new(cfg(0.0));
    let running = Arc::new(AtomicU64::new(0));
    let runs = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (q, running, runs) = (q.clone(), Arc::clone(&running), Arc::clone(&runs));
        workers.push(tokio::spawn(async move {
            while let Some(lease) = q.next().await {
                assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "concurrent run");
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                runs.fetch_add(1, Ordering::SeqCst);
                lease.done(Outcome::success());
            }
        }));
    }
    for _ in 0..500 {
        q.add("hot");
        tokio::task::yield_now().await;
    }
    // the last add is honoured: the key runs once more after whatever is in flight
    let last = runs.load(Ordering::SeqCst);
    tokio::time::timeout(secs(30), async {
        while q.depth() + q.in_flight() > 0 || runs.load(Ordering::SeqCst) == last {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    q.shutdown();
    for w in workers {
        w.await.unwrap();
    }
    let runs = runs.load(Ordering::SeqCst);
    assert!(runs > last && (1..=500).contains(&runs), "{runs} runs");
    assert_eq!(q.stats().in_flight, 0);
}

#[tokio::test]
async fn idle_workers_all_see_new_deadlines() {
    // Two idle workers; a delayed key, then a key due now that one worker takes and
    // holds. The other worker must still pick up the delayed key when it is due.
    let q = WorkQueue::new(cfg(0.0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let hold = Arc::new(Notify::new());
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (q, tx, hold) = (q.clone(), tx.clone(), Arc::clone(&hold));
        workers.push(tokio::spawn(async move {
            let lease = q.next().await.unwrap();
            tx.send(*lease.key()).unwrap();
            hold.notified().await;
            lease.done(Outcome::success());
        }));
    }
    tokio::task::yield_now().await;
    q.add_after("delayed", Duration::from_millis(30));
    tokio::task::yield_now().await;
    q.add("now");
    let first = tokio::time::timeout(secs(5), rx.recv()).await.unwrap();
    let second = tokio::time::timeout(secs(5), rx.recv()).await.unwrap();
    assert_eq!((first, second), (Some("now"), Some("delayed")));
    assert_eq!(q.in_flight(), 2);
    hold.notify_waiters();
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(q.in_flight(), 0);
}

// ----- async with time passing: only lower bounds are asserted (timers never fire early),
// durations are tens of milliseconds. -----

#[tokio::test]
async fn delayed_key_is_not_handed_out_early() {
    let q = WorkQueue::new(cfg(0.0));
    let start = Instant::now();
    q.add_after("late", Duration::from_millis(40));
    q.add_after("later", Duration::from_millis(80));
    q.add_after("late", Duration::from_millis(500)); // later add does not delay
    let l = tokio::time::timeout(secs(5), q.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*l.key(), "late");
    let t = start.elapsed();
    assert!(
        t >= Duration::from_millis(40) && t < Duration::from_millis(500),
        "{t:?}"
    );
    l.done(Outcome::success());
    // a worker already waiting for "later" is woken early by an add due now
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.next().await.map(|l| *l.key()) })
    };
    tokio::task::yield_now().await;
    q.add("now");
    assert_eq!(waiter.await.unwrap(), Some("now"));
    let l = tokio::time::timeout(secs(5), q.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*l.key(), "later");
    assert!(start.elapsed() >= Duration::from_millis(80));
}

#[tokio::test]
async fn failure_retry_waits_for_backoff_and_requeue_at_is_honoured() {
    let q = WorkQueue::new(QueueConfig {
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
        jitter: 0.0,
    });
    q.add("a");
    let mut lease = q.next().await.unwrap();
    let mut backoffs = Vec::new();
    for attempt in 1..4 {
        let f = lease.done(Outcome::Failure);
        let backoff = f.retry_after.unwrap();
        backoffs.push(backoff.as_millis());
        let at = Instant::now();
        lease = tokio::time::timeout(secs(5), q.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lease.attempt(), attempt);
        assert!(
            at.elapsed() >= backoff,
            "attempt {attempt}: {:?}",
            at.elapsed()
        );
    }
    assert_eq!(backoffs, vec![20, 40, 50]);
    let at = Instant::now();
    let f = lease.done(Outcome::Success {
        requeue_at: Some(at + Duration::from_millis(30)),
    });
    assert_eq!((f.failures, f.retry_after), (0, None));
    let lease = tokio::time::timeout(secs(5), q.next())
        .await
        .unwrap()
        .unwrap();
    assert!(at.elapsed() >= Duration::from_millis(30));
    assert_eq!(lease.attempt(), 0);
    lease.done(Outcome::success());
    let s = q.stats();
    assert_eq!((s.depth, s.in_flight, s.retries_total), (0, 0, 3));
}
