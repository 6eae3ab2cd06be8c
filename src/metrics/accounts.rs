//! The per-account series: `users`, `users_failing_check`, `account_check_failing`,
//! `account_check_cannot_check` by `account`, plus `account_up` and
//! `last_resync_success_timestamp_seconds`.
//!
//! Every account's figures are kept (a few hundred bytes each) and written to the series of
//! its own account id, or, with the detail off (`server.metrics_per_account = false`), summed
//! into one `account="all"` series per state and check. Before the first account is known,
//! the series carry an empty account (to Prometheus the same as no label), so that a fresh
//! registry lists every check.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::registry::Metrics;
use crate::baseline::checks::Check;
use crate::baseline::plan::rotation::KeyStats;

/// The label value of the summed series when the per-account detail is off.
pub const ALL_ACCOUNTS: &str = "all";

/// One account's compliance figures, indexed like [`Check::ALL`] and [`Check::ACCOUNT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Figures {
    /// compliant, violating, exempt.
    pub users: [i64; 3],
    pub failing: Vec<i64>,
    pub account_failing: Vec<i64>,
    pub cannot: Vec<i64>,
}

impl Default for Figures {
    fn default() -> Figures {
        Figures {
            users: [0; 3],
            failing: vec![0; Check::ALL.len()],
            account_failing: vec![0; Check::ACCOUNT.len()],
            cannot: vec![0; Check::ACCOUNT.len()],
        }
    }
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        let add = |a: &mut [i64], b: &[i64]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.users, &o.users);
        add(&mut self.failing, &o.failing);
        add(&mut self.account_failing, &o.account_failing);
        add(&mut self.cannot, &o.cannot);
    }
}

/// The accounts with series, and whether each has its own.
#[derive(Debug)]
pub(super) struct AccountSeries {
    pub per_account: bool,
    /// Whether the empty-account placeholders were replaced.
    pub started: bool,
    pub figures: BTreeMap<String, Figures>,
    /// Each account's work queue: (waiting, in flight); the queue gauges are the sums.
    pub queues: BTreeMap<String, (usize, usize)>,
    /// The accounts whose blast-radius breaker is tripped; `breaker_tripped` is 1 while
    /// any is (one account's new window must not clear another's trip).
    pub tripped: BTreeSet<String>,
    /// Each account's access keys at its last resync; the key gauges show them merged.
    pub keys: BTreeMap<String, KeyStats>,
    /// When each account's credential report was generated; the age gauge shows the oldest.
    pub reports: BTreeMap<String, DateTime<Utc>>,
}

impl Default for AccountSeries {
    fn default() -> AccountSeries {
        AccountSeries {
            per_account: true,
            started: false,
            figures: BTreeMap::new(),
            queues: BTreeMap::new(),
            tripped: BTreeSet::new(),
            keys: BTreeMap::new(),
            reports: BTreeMap::new(),
        }
    }
}

impl AccountSeries {
    /// The label value of `account`'s compliance series.
    pub fn label<'a>(&self, account: &'a str) -> &'a str {
        if self.per_account {
            account
        } else {
            ALL_ACCOUNTS
        }
    }

    /// The figures to write for `account`'s label: its own, or the sum of all.
    pub fn published(&self, account: &str) -> Figures {
        if self.per_account {
            return self.figures.get(account).cloned().unwrap_or_default();
        }
        let mut sum = Figures::default();
        for f in self.figures.values() {
            sum.add(f);
        }
        sum
    }
}

const STATES: [&str; 3] = ["compliant", "violating", "exempt"];

impl Metrics {
    /// Every compliance series of `label` at zero.
    pub(super) fn precreate_account(&self, label: &str) {
        self.write_figures(label, &Figures::default());
        self.account_up.with_label_values(&[label]);
        self.last_resync_success_timestamp_seconds
            .with_label_values(&[label]);
    }

    pub(super) fn write_figures(&self, label: &str, f: &Figures) {
        for (state, n) in STATES.iter().zip(f.users) {
            self.users.with_label_values(&[label, state]).set(n);
        }
        for (c, n) in Check::ALL.iter().zip(&f.failing) {
            self.users_failing_check
                .with_label_values(&[label, c.id()])
                .set(*n);
        }
        for (i, c) in Check::ACCOUNT.iter().enumerate() {
            self.account_check_failing
                .with_label_values(&[label, c.id()])
                .set(f.account_failing[i]);
            self.account_check_cannot_check
                .with_label_values(&[label, c.id()])
                .set(f.cannot[i]);
        }
    }

    /// Remove the compliance series of `label` (and, when `up`, its `account_up` and
    /// last-resync series).
    pub(super) fn remove_series(&self, label: &str, up: bool) {
        for state in STATES {
            let _ = self.users.remove_label_values(&[label, state]);
        }
        for c in Check::ALL.iter() {
            let _ = self
                .users_failing_check
                .remove_label_values(&[label, c.id()]);
        }
        for c in Check::ACCOUNT.iter() {
            let _ = self
                .account_check_failing
                .remove_label_values(&[label, c.id()]);
            let _ = self
                .account_check_cannot_check
                .remove_label_values(&[label, c.id()]);
        }
        if up {
            let _ = self.account_up.remove_label_values(&[label]);
            let _ = self
                .last_resync_success_timestamp_seconds
                .remove_label_values(&[label]);
        }
    }

    /// Change `account`'s figures and write its series (or the sum).
    pub(super) fn publish(&self, account: &str, update: impl FnOnce(&mut Figures)) {
        let Ok(mut a) = self.accounts.lock() else {
            return;
        };
        if !a.started {
            a.started = true;
            self.remove_series("", true);
        }
        update(a.figures.entry(account.to_string()).or_default());
        let f = a.published(account);
        self.write_figures(a.label(account), &f);
    }
}
