//! The blast-radius breaker, pure: it guards against taking access away from many
//! existing users at once. It counts only users whose plan reduces their existing access
//! ([`super::plan::BreakerNote::counts`]: a key deactivated or deleted, a console
//! password removed, a user without MFA put under the MFA policy, a user put under the
//! source-IP policy; new users within `safety.new_user_grace` are not counted).
//!
//! - [`Verdict`]: one `plan` / `enforce` pass, or one daemon resync.
//! - [`Window`]: the daemon's running count over one resync interval, reset by each
//!   resync. Time is passed in, never read here.
//!
//! When tripped, the users that count are not changed; users whose plan takes nothing
//! away still are.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Safety;

/// Would `n` users losing access, out of `total`, exceed the limits? With `total` 0 the
/// percentage is undefined and only `max_users_changed` applies.
pub fn over_limit(n: usize, total: usize, safety: &Safety) -> bool {
    n > safety.max_users_changed as usize
        || (total > 0 && n as f64 * 100.0 / total as f64 > safety.max_users_changed_percent)
}

/// "N users would lose access (N of T users; the limit is M users or P%)".
pub fn describe(n: usize, total: usize, safety: &Safety) -> String {
    format!(
        "{n} users would lose access ({n} of {total} users; the limit is {} users or {}%)",
        safety.max_users_changed, safety.max_users_changed_percent
    )
}

/// The breaker's verdict for one pass (`plan` / `enforce --once`) or one resync.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Users whose existing access the pass would reduce: what the breaker counts.
    pub users_losing_access: usize,
    /// Users with any change, counted or not (informational).
    pub users_changed: usize,
    /// The percentage base: all users of the account.
    pub users_total: usize,
    pub max_users_changed: u32,
    pub max_users_changed_percent: f64,
    /// Too many users would lose access.
    pub tripped: bool,
    /// Tripped, but an operator confirmed the large change.
    pub overridden: bool,
}

impl Verdict {
    pub fn evaluate(
        users_losing_access: usize,
        users_changed: usize,
        users_total: usize,
        safety: &Safety,
        confirmed: bool,
    ) -> Verdict {
        let tripped = over_limit(users_losing_access, users_total, safety);
        Verdict {
            users_losing_access,
            users_changed,
            users_total,
            max_users_changed: safety.max_users_changed,
            max_users_changed_percent: safety.max_users_changed_percent,
            tripped,
            overridden: tripped && (confirmed || safety.confirm_large_change),
        }
    }

    /// The users that count are not changed.
    pub fn blocks(&self) -> bool {
        self.tripped && !self.overridden
    }

    pub fn describe(&self) -> String {
        format!(
            "{} users would lose access ({} of {} users; the limit is {} users or {}%)",
            self.users_losing_access,
            self.users_losing_access,
            self.users_total,
            self.max_users_changed,
            self.max_users_changed_percent
        )
    }
}

/// What the window says about one user's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Apply: the plan takes nothing away from an existing user.
    NotCounted,
    /// Apply: the user is counted in this window (now or earlier).
    Counted,
    /// Apply: over the limit, but `confirm_large_change` lets it through. The reason is
    /// set the first time in the window (log it once).
    Overridden(Option<String>),
    /// Do not apply: this user tripped the breaker just now (journal and alert once).
    Tripped(String),
    /// Do not apply: the breaker tripped earlier in this window.
    Blocked,
}

impl Admission {
    /// The user's plan may be applied.
    pub fn applies(&self) -> bool {
        matches!(
            self,
            Admission::NotCounted | Admission::Counted | Admission::Overridden(_)
        )
    }
}

/// The daemon's breaker window: the users counted since the last resync.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    started: DateTime<Utc>,
    users_total: usize,
    counted: BTreeSet<String>,
    tripped: bool,
    overridden: bool,
}

impl Window {
    /// A window starting at `now`, with `users_total` users as the percentage base.
    pub fn new(now: DateTime<Utc>, users_total: usize) -> Window {
        Window {
            started: now,
            users_total,
            counted: BTreeSet::new(),
            tripped: false,
            overridden: false,
        }
    }

    /// Start over (each resync): nothing counted, not tripped.
    pub fn reset(&mut self, now: DateTime<Utc>, users_total: usize) {
        *self = Window::new(now, users_total);
    }

    /// Users counted in this window.
    pub fn counted(&self) -> usize {
        self.counted.len()
    }

    pub fn is_tripped(&self) -> bool {
        self.tripped
    }

    pub fn started(&self) -> DateTime<Utc> {
        self.started
    }

    /// Trip the window from outside (the resync's own plan is over the limit).
    pub fn trip(&mut self) {
        self.tripped = true;
    }

    /// May `user`'s plan be applied? `counts`: the plan reduces the access of an
    /// existing user. A counted user is admitted again for the rest of the window.
    pub fn admit(&mut self, user: &str, counts: bool, safety: &Safety) -> Admission {
        if !counts {
            return Admission::NotCounted;
        }
        if self.counted.contains(user) {
            return Admission::Counted;
        }
        if self.tripped && !safety.confirm_large_change {
            return Admission::Blocked;
        }
        let n = self.counted.len() + 1;
        if !over_limit(n, self.users_total, safety) {
            self.counted.insert(user.to_string());
            return Admission::Counted;
        }
        let reason = format!(
            "this resync window: {}",
            describe(n, self.users_total, safety)
        );
        if safety.confirm_large_change {
            self.counted.insert(user.to_string());
            let first = !self.overridden;
            self.overridden = true;
            return Admission::Overridden(first.then_some(reason));
        }
        self.tripped = true;
        Admission::Tripped(reason)
    }

    /// When to look again at a user the breaker blocked: the window's end (the next
    /// resync starts a new window), or, if that has passed (the resync is late), one
    /// interval from `now`.
    pub fn retry_at(&self, now: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
        let step = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(1));
        let end = self.started + step;
        if end > now {
            end
        } else {
            now + step
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::testkit::now;

    fn safety(max: u32, pct: f64) -> Safety {
        Safety {
            max_users_changed: max,
            max_users_changed_percent: pct,
            ..Safety::default()
        }
    }

    #[test]
    fn limits_table() {
        // (losing access, total, max users, max %, over)
        let table = [
            (0, 0, 25, 10.0, false),
            (25, 1000, 25, 10.0, false),
            (26, 1000, 25, 10.0, true),
            (4, 40, 25, 10.0, false),
            (5, 40, 25, 10.0, true),
            (1, 1, 25, 10.0, true),
            (1, 1, 25, 100.0, false),
            // Base 0: the percentage is undefined; only the absolute limit applies.
            (3, 0, 25, 10.0, false),
            (26, 0, 25, 10.0, true),
            (1, 0, 0, 100.0, true),
            (0, 10, 0, 0.0, false),
        ];
        for (n, total, max, pct, want) in table {
            assert_eq!(
                over_limit(n, total, &safety(max, pct)),
                want,
                "{n} of {total}, limit {max} / {pct}%"
            );
        }
    }

    #[test]
    fn verdict_counts_losing_access_and_can_be_overridden() {
        let s = Safety::default();
        assert!(
            !Verdict::evaluate(3, 30, 30, &s, false).tripped,
            "exactly 10%"
        );
        let v = Verdict::evaluate(4, 30, 30, &s, false);
        assert!(v.tripped && v.blocks() && !v.overridden);
        assert_eq!(
            v.describe(),
            "4 users would lose access (4 of 30 users; the limit is 25 users or 10%)"
        );
        let v = Verdict::evaluate(0, 30, 30, &s, false);
        assert!(!v.tripped && !v.blocks(), "changes that take nothing away");
        let v = Verdict::evaluate(4, 4, 30, &s, true);
        assert!(v.tripped && v.overridden && !v.blocks());
        let confirmed = Safety {
            confirm_large_change: true,
            ..Safety::default()
        };
        assert!(!Verdict::evaluate(30, 30, 30, &confirmed, false).blocks());
    }

    #[test]
    fn window_counts_each_user_once_and_trips_over_the_limit() {
        let s = safety(25, 10.0);
        let mut w = Window::new(now(), 40);
        // Additive plans never count, tripped or not.
        assert_eq!(w.admit("adds-only", false, &s), Admission::NotCounted);
        for u in ["a", "b", "c", "d"] {
            assert_eq!(w.admit(u, true, &s), Admission::Counted, "{u}");
        }
        assert_eq!(
            w.admit("a", true, &s),
            Admission::Counted,
            "already counted"
        );
        assert_eq!(w.counted(), 4);
        match w.admit("e", true, &s) {
            Admission::Tripped(reason) => assert!(
                reason.contains("5 users would lose access (5 of 40 users"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(w.is_tripped());
        assert_eq!(w.admit("e", true, &s), Admission::Blocked, "trips once");
        assert_eq!(w.admit("f", true, &s), Admission::Blocked);
        assert!(!Admission::Blocked.applies());
        // A user counted before the trip is admitted again; additive plans still apply.
        assert_eq!(w.admit("b", true, &s), Admission::Counted);
        assert_eq!(w.admit("g", false, &s), Admission::NotCounted);
        assert!(Admission::NotCounted.applies());
        assert_eq!(w.counted(), 4);
    }

    #[test]
    fn window_resets_at_each_resync() {
        let s = safety(2, 100.0);
        let mut w = Window::new(now(), 10);
        assert!(w.admit("a", true, &s).applies());
        assert!(w.admit("b", true, &s).applies());
        assert!(!w.admit("c", true, &s).applies());
        let later = now() + chrono::Duration::minutes(10);
        w.reset(later, 12);
        assert!(!w.is_tripped());
        assert_eq!(w.counted(), 0);
        assert_eq!(w.started(), later);
        assert_eq!(w.admit("c", true, &s), Admission::Counted);
        assert_eq!(w.admit("d", true, &s), Admission::Counted);
        assert!(matches!(w.admit("e", true, &s), Admission::Tripped(_)));
        // Tripped from outside (the resync's plan alone is over the limit).
        let mut w = Window::new(now(), 10);
        w.trip();
        assert_eq!(w.admit("a", true, &s), Admission::Blocked);
        assert_eq!(w.admit("b", false, &s), Admission::NotCounted);
    }

    #[test]
    fn window_confirm_large_change_overrides_and_says_so_once() {
        let s = Safety {
            max_users_changed: 1,
            max_users_changed_percent: 100.0,
            confirm_large_change: true,
            ..Safety::default()
        };
        let mut w = Window::new(now(), 10);
        assert_eq!(w.admit("a", true, &s), Admission::Counted);
        match w.admit("b", true, &s) {
            Admission::Overridden(Some(r)) => assert!(r.contains("2 users would lose access")),
            other => panic!("{other:?}"),
        }
        assert_eq!(w.admit("c", true, &s), Admission::Overridden(None));
        assert!(Admission::Overridden(None).applies());
        assert!(!w.is_tripped());
        assert_eq!(w.counted(), 3);
        // Even a window tripped at resync lets users through when confirmed.
        let mut w = Window::new(now(), 10);
        w.trip();
        assert!(w.admit("a", true, &s).applies());
    }

    #[test]
    fn window_percentage_base_zero_uses_the_absolute_limit_only() {
        let s = safety(2, 10.0);
        let mut w = Window::new(now(), 0);
        assert_eq!(w.admit("a", true, &s), Admission::Counted);
        assert_eq!(w.admit("b", true, &s), Admission::Counted);
        assert!(matches!(w.admit("c", true, &s), Admission::Tripped(_)));
    }

    #[test]
    fn retry_at_is_the_window_end_or_an_interval_later_when_the_resync_is_late() {
        let w = Window::new(now(), 10);
        let ten = Duration::from_secs(600);
        let at = now() + chrono::Duration::minutes(3);
        assert_eq!(w.retry_at(at, ten), now() + chrono::Duration::minutes(10));
        let late = now() + chrono::Duration::minutes(10);
        assert_eq!(w.retry_at(late, ten), late + chrono::Duration::minutes(10));
        let later = now() + chrono::Duration::minutes(25);
        assert_eq!(
            w.retry_at(later, ten),
            later + chrono::Duration::minutes(10)
        );
    }
}
