//! The credential-lifecycle gauges of one resync, computed from the snapshot's users, their
//! plans (exemption, `next_due`) and now. Pure; the daemon publishes the result with
//! `Metrics::set_key_stats`.
//!
//! Exempt users (and so iam-warden's own identity) are left out: iam-warden never rotates
//! their keys, so their age would only make the age alerts fire for nothing.

use chrono::{DateTime, Utc};

use super::tag::{rotation_tags, RotationTag};
use crate::baseline::plan::UserPlan;
use crate::config::ROTATION_TAG_PREFIX;
use crate::inventory::{AccessKeyState, UserState};

/// The `phase` label values of `iam_warden_access_keys`: `active` and `inactive` are keys
/// without a rotation tag, the others the phase in the key's rotation tag.
pub const KEY_PHASES: [&str; 8] = [
    "active",
    "warned",
    "rotating",
    "draining",
    "stuck",
    "deactivated",
    "quarantined",
    "inactive",
];

/// The upper bounds (days) of the key-age distribution: the defaults of the lifecycle
/// (warned at 76, rotated at 90, stuck at 104 days) fall on bounds.
pub const KEY_AGE_BUCKETS_DAYS: [u32; 9] = [7, 30, 60, 76, 90, 104, 180, 365, 730];

/// The value of a quarantine's rotation tag names this phase.
const QUARANTINED: &str = "phase=quarantined";

/// What one resync saw of the access keys of the users iam-warden manages.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyStats {
    /// Keys by phase, in the order of [`KEY_PHASES`].
    pub by_phase: [usize; KEY_PHASES.len()],
    /// Active keys at most as old as each bound of [`KEY_AGE_BUCKETS_DAYS`] (cumulative).
    pub age_buckets: [u64; KEY_AGE_BUCKETS_DAYS.len()],
    /// Active keys counted in the distribution.
    pub age_count: u64,
    /// Sum of the ages of the active keys, in seconds.
    pub age_sum_seconds: f64,
    /// Age of the oldest active key in seconds (0 without active keys).
    pub oldest_active_age_seconds: f64,
    /// The earliest time a rotation step becomes due by time alone (`None`: none).
    pub next_due: Option<DateTime<Utc>>,
}

impl KeyStats {
    /// Several accounts' figures as one: counts and sums added, the oldest key the oldest
    /// of all, the next due step the earliest of all.
    pub fn merged<'a>(all: impl IntoIterator<Item = &'a KeyStats>) -> KeyStats {
        let mut m = KeyStats {
            by_phase: [0; KEY_PHASES.len()],
            age_buckets: [0; KEY_AGE_BUCKETS_DAYS.len()],
            age_count: 0,
            age_sum_seconds: 0.0,
            oldest_active_age_seconds: 0.0,
            next_due: None,
        };
        for s in all {
            m.by_phase
                .iter_mut()
                .zip(s.by_phase)
                .for_each(|(a, b)| *a += b);
            m.age_buckets
                .iter_mut()
                .zip(s.age_buckets)
                .for_each(|(a, b)| *a += b);
            m.age_count += s.age_count;
            m.age_sum_seconds += s.age_sum_seconds;
            m.oldest_active_age_seconds =
                m.oldest_active_age_seconds.max(s.oldest_active_age_seconds);
            m.next_due = match (m.next_due, s.next_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        m
    }

    /// The number of keys in `phase` (0 for a name outside [`KEY_PHASES`]).
    pub fn phase(&self, phase: &str) -> usize {
        KEY_PHASES
            .iter()
            .position(|p| *p == phase)
            .map_or(0, |i| self.by_phase[i])
    }

    fn count(&mut self, phase: &str) {
        if let Some(i) = KEY_PHASES.iter().position(|p| *p == phase) {
            self.by_phase[i] += 1;
        }
    }

    fn observe_age(&mut self, seconds: f64) {
        self.age_count += 1;
        self.age_sum_seconds += seconds;
        self.oldest_active_age_seconds = self.oldest_active_age_seconds.max(seconds);
        for (i, d) in KEY_AGE_BUCKETS_DAYS.iter().enumerate() {
            if seconds <= f64::from(*d) * 86_400.0 {
                self.age_buckets[i] += 1;
            }
        }
    }
}

/// The gauges of the keys of `users` (each with its plan, matched by name; a user without
/// a plan, or exempt, is left out) at `now`.
pub fn key_stats(users: &[UserState], plans: &[UserPlan], now: DateTime<Utc>) -> KeyStats {
    let mut s = KeyStats {
        by_phase: [0; KEY_PHASES.len()],
        age_buckets: [0; KEY_AGE_BUCKETS_DAYS.len()],
        age_count: 0,
        age_sum_seconds: 0.0,
        oldest_active_age_seconds: 0.0,
        next_due: None,
    };
    // plan_account plans the users in order: match by position, else by name.
    let plan_of = |i: usize, u: &UserState| {
        plans
            .get(i)
            .filter(|p| p.verdict.user == u.name)
            .or_else(|| plans.iter().find(|p| p.verdict.user == u.name))
    };
    for (i, u) in users.iter().enumerate() {
        let Some(p) = plan_of(i, u) else { continue };
        if p.verdict.exempt.is_some() {
            continue;
        }
        if let Some(d) = p.next_due {
            s.next_due = Some(s.next_due.map_or(d, |n| n.min(d)));
        }
        let (tags, _) = rotation_tags(u);
        let quarantined: Vec<&str> = u
            .tags
            .iter()
            .filter(|(_, v)| v.split_whitespace().any(|f| f == QUARANTINED))
            .filter_map(|(k, _)| k.strip_prefix(ROTATION_TAG_PREFIX))
            .collect();
        // Keys read from the credential report have no id: a quarantine tag (which has no
        // `created=`) is given to one inactive key without a rotation tag.
        let mut unplaced = quarantined.len();
        // A tag counts for one key only (report keys made within a second match alike).
        let mut free: Vec<&RotationTag> = tags.iter().collect();
        for k in &u.keys {
            let phase = key_phase(k, &mut free, &quarantined, &mut unplaced);
            s.count(phase);
            if k.active {
                let age = (now - k.created).num_milliseconds().max(0) as f64 / 1000.0;
                s.observe_age(age);
            }
        }
    }
    s
}

fn key_phase(
    k: &AccessKeyState,
    free: &mut Vec<&RotationTag>,
    quarantined: &[&str],
    unplaced: &mut usize,
) -> &'static str {
    let plain = if k.active { "active" } else { "inactive" };
    if let Some(i) = free.iter().position(|t| t.matches(k)) {
        let p = free.swap_remove(i).phase.as_str();
        return KEY_PHASES
            .iter()
            .find(|x| **x == p)
            .copied()
            .unwrap_or(plain);
    }
    match &k.id {
        Some(id) if quarantined.contains(&id.as_str()) => "quarantined",
        None if !k.active && *unplaced > 0 => {
            *unplaced -= 1;
            "quarantined"
        }
        _ => plain,
    }
}

#[cfg(test)]
mod tests;
