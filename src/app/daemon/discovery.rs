//! The accounts in scope and their controllers: found at start and, for an organization,
//! again every `accounts.discovery_interval`; a new account gets a controller, one gone
//! is stopped (drained like a shutdown) and its series removed. A failed discovery keeps
//! the accounts found before, is counted and logged, and is retried with backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::account::Handle;
use super::{wait_for, Shared};
use crate::accounts::{self, Scope, Target};
use crate::config::AccountSource;
use crate::error::Result;

/// The first retry of a failed discovery; doubling, at most the discovery interval.
const DISCOVERY_RETRY: Duration = Duration::from_secs(15);

/// The accounts in scope. With `accounts.source = "self"` the caller's account, with no
/// further call (as a single-account iam-warden).
pub(super) async fn discover(shared: &Shared) -> Result<Scope> {
    if shared.cfg.accounts.source == AccountSource::Caller {
        return Ok(Scope {
            source: AccountSource::Caller,
            caller_account: shared.caller_account.clone(),
            caller_arn: shared.caller_arn.clone(),
            targets: vec![Target {
                id: shared.caller_account.clone(),
                name: None,
                role_arn: None,
            }],
            skipped: Vec::new(),
        });
    }
    accounts::discover(&shared.cfg, &shared.caller).await
}

/// The registry of running account controllers, by account id.
pub(super) struct Fleet {
    shared: Arc<Shared>,
    accounts: BTreeMap<String, Handle>,
}

impl Fleet {
    pub fn new(shared: Arc<Shared>) -> Fleet {
        Fleet {
            shared,
            accounts: BTreeMap::new(),
        }
    }

    /// Discover until it succeeds (counted and logged each time) or a stop is signalled.
    pub async fn first_discovery(&mut self, stop: &watch::Receiver<bool>) -> Option<()> {
        let mut failures = 0u32;
        loop {
            if *stop.borrow() {
                return None;
            }
            match self.discover_once(failures).await {
                None => return Some(()),
                Some(wait) => {
                    failures += 1;
                    let mut s = stop.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = s.changed() => {}
                    }
                }
            }
        }
    }

    /// One discovery: the controllers follow it. `None` on success, else the wait before
    /// the retry (`failures` so far).
    async fn discover_once(&mut self, failures: u32) -> Option<Duration> {
        match discover(&self.shared).await {
            Ok(scope) => {
                for (id, why) in &scope.skipped {
                    tracing::debug!(account = %id, reason = %why, "account not in scope");
                }
                let n = scope.targets.len();
                let (added, removed) = self.sync(scope.targets);
                self.shared
                    .metrics
                    .accounts_discovered(Ok((n, added, removed)), None);
                None
            }
            Err(e) => {
                let wait = DISCOVERY_RETRY
                    .saturating_mul(1 << failures.min(10))
                    .min(self.shared.cfg.accounts.discovery_interval.get());
                self.shared
                    .metrics
                    .accounts_discovered(Err(&e.to_string()), Some(wait));
                Some(wait)
            }
        }
    }

    /// Start the controllers of the new targets and stop those gone (or whose role
    /// changed): (added, removed).
    pub fn sync(&mut self, targets: Vec<Target>) -> (usize, usize) {
        let wanted: BTreeMap<String, Target> =
            targets.into_iter().map(|t| (t.id.clone(), t)).collect();
        let gone: Vec<String> = self
            .accounts
            .iter()
            .filter(|(id, h)| wanted.get(*id) != Some(&h.target))
            .map(|(id, _)| id.clone())
            .collect();
        let grace = self.shared.cfg.controller.shutdown_grace.get();
        for id in &gone {
            if let Some(h) = self.accounts.remove(id) {
                // Its events are no longer routed to it (counted as out of scope if it left).
                self.shared.router.remove(id);
                h.stop(Instant::now() + grace);
                self.shared.readiness.forget(id);
                let metrics = self.shared.metrics.clone();
                // Gone from the scope: its series go; a changed role keeps the series
                // of the account's new controller.
                let left = !wanted.contains_key(id);
                let id = id.clone();
                tokio::spawn(async move {
                    h.finish(Instant::now() + grace + Duration::from_secs(10))
                        .await;
                    if left {
                        metrics.account_stopped(&id);
                    }
                });
            }
        }
        let mut added = 0;
        for (id, t) in wanted {
            if self.accounts.contains_key(&id) {
                continue;
            }
            self.shared.readiness.expect(&id);
            // In scope from now on: until its controller runs, its SQS events are skipped
            // as `account_down`, not as another account's.
            self.shared.router.expect(&id);
            // The controller enters itself in the SQS router once connected.
            self.accounts
                .insert(id, Handle::spawn(self.shared.clone(), t));
            added += 1;
        }
        (added, gone.len())
    }

    /// For an organization, discover again every `accounts.discovery_interval` (sooner
    /// after a failure) until stopped; otherwise just wait for the stop.
    pub async fn run_discovery(&mut self, stop: &watch::Receiver<bool>) {
        if self.shared.cfg.accounts.source != AccountSource::Organization {
            wait_for(stop.clone()).await;
            return;
        }
        let interval = self.shared.cfg.accounts.discovery_interval.get();
        let mut wait = interval;
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wait_for(stop.clone()) => return,
            }
            match self.discover_once(failures).await {
                None => {
                    failures = 0;
                    wait = interval;
                }
                Some(retry) => {
                    failures += 1;
                    wait = retry;
                }
            }
        }
    }

    /// Stop every controller and wait until their queues are drained (or `deadline`).
    pub async fn drain(&self, deadline: Instant) {
        for h in self.accounts.values() {
            h.stop(deadline);
        }
        for h in self.accounts.values() {
            let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), h.drained()).await;
        }
    }

    /// Wait for every controller to end (checkpoints saved, notices and findings flushed).
    pub async fn finish(self, limit: Instant) {
        let all = self.accounts.into_values().map(|h| h.finish(limit));
        futures_util::future::join_all(all).await;
    }
}
