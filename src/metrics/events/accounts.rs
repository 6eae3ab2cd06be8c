//! Events of the accounts in scope: an account up or down, discovery, the per-account
//! series and queues.

use std::time::Duration;

use crate::baseline::plan::rotation::KeyStats;
use crate::metrics::registry::Metrics;

/// An account's state changed: its role could (not) be assumed, its resync (no longer)
/// fails. Sets `iam_warden_account_up{account}` and logs once: down at warn with the
/// reason and how to fix it (one line, never a secret), up at info.
#[derive(Debug, Clone, Copy)]
pub struct AccountStatus<'a> {
    pub account: &'a str,
    pub up: bool,
    /// Down: why, with the fix.
    pub error: Option<&'a str>,
    /// Down: when it is tried again.
    pub retry_in: Option<Duration>,
}

impl AccountStatus<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let AccountStatus {
            account,
            up,
            error,
            retry_in,
        } = *self;
        metrics
            .account_up
            .with_label_values(&[account])
            .set(i64::from(up));
        let retry_in_s = retry_in.map(|d| d.as_secs());
        if up {
            tracing::info!(account, up, "account up");
        } else {
            tracing::warn!(account, up, error, retry_in_s, "account down");
        }
    }
}

impl Metrics {
    /// `server.metrics_per_account`: whether each account has its own compliance series
    /// (else one `account="all"` series each, summed). Set before the first account starts.
    pub fn set_per_account(&self, per_account: bool) {
        if let Ok(mut a) = self.accounts.lock() {
            a.per_account = per_account;
        }
    }

    /// A controller for `account` started: its series at zero (`account_up` 0 until its
    /// first resync succeeds), replacing the empty-account placeholders.
    pub fn account_started(&self, account: &str) {
        let Ok(mut a) = self.accounts.lock() else {
            return;
        };
        if !a.started {
            a.started = true;
            self.remove_series("", true);
        }
        a.figures.entry(account.to_string()).or_default();
        let f = a.published(account);
        self.write_figures(a.label(account), &f);
        self.account_up.with_label_values(&[account]).set(0);
        self.last_resync_success_timestamp_seconds
            .with_label_values(&[account]);
        tracing::info!(account, "account controller started");
    }

    /// `account` left the scope: its series are removed (with the detail off, the sums
    /// no longer count it).
    pub fn account_stopped(&self, account: &str) {
        let Ok(mut a) = self.accounts.lock() else {
            return;
        };
        a.figures.remove(account);
        a.queues.remove(account);
        // Its breaker, keys and credential report no longer count.
        a.tripped.remove(account);
        self.breaker_tripped.set(i64::from(!a.tripped.is_empty()));
        a.keys.remove(account);
        self.write_key_stats(&KeyStats::merged(a.keys.values()));
        a.reports.remove(account);
        let (depth, in_flight) = a
            .queues
            .values()
            .fold((0, 0), |(d, f), (x, y)| (d + x, f + y));
        self.set_queue(depth, in_flight);
        if a.per_account {
            self.remove_series(account, true);
        } else {
            let _ = self.account_up.remove_label_values(&[account]);
            let _ = self
                .last_resync_success_timestamp_seconds
                .remove_label_values(&[account]);
            let f = a.published(account);
            self.write_figures(crate::metrics::accounts::ALL_ACCOUNTS, &f);
        }
        tracing::info!(account, "account left the scope; its controller stopped");
    }

    /// A discovery of the accounts in scope: counted by result and logged (a failure at
    /// warn with the error and when it is retried; the current accounts are kept).
    pub fn accounts_discovered(
        &self,
        result: std::result::Result<(usize, usize, usize), &str>,
        retry_in: Option<Duration>,
    ) {
        match result {
            Ok((accounts, added, removed)) => {
                self.account_discoveries_total
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(accounts, added, removed, "accounts discovered");
            }
            Err(error) => {
                self.account_discoveries_total
                    .with_label_values(&["error"])
                    .inc();
                let retry_in_s = retry_in.map(|d| d.as_secs());
                tracing::warn!(
                    error,
                    retry_in_s,
                    "account discovery failed; the accounts found before are kept"
                );
            }
        }
    }
}

impl Metrics {
    /// `account`'s work queue: keys waiting and reconciles running. The queue gauges are
    /// the sums over the accounts.
    pub fn set_account_queue(&self, account: &str, depth: usize, in_flight: usize) {
        let Ok(mut a) = self.accounts.lock() else {
            return;
        };
        a.queues.insert(account.to_string(), (depth, in_flight));
        let (depth, in_flight) = a
            .queues
            .values()
            .fold((0, 0), |(d, f), (x, y)| (d + x, f + y));
        self.set_queue(depth, in_flight);
    }
}
