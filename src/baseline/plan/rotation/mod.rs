//! The access-key rotation lifecycle, per key (by AccessKeyId, never by user). Pure:
//! (user state with its tags, configuration, now) → planned actions, findings, and when the
//! user's next phase is due.
//!
//! Phases live in the user tag `iam-warden/rotation/<AccessKeyId>` with a value like
//! `phase=draining since=2026-12-01T00:00:00Z created=2026-08-01T00:00:00Z new=AKIA...`
//! (`created` is the key's CreateDate: it matches credential-report keys, which have no id):
//!
//! ```text
//!   (age >= max - warn_days) --> warned --(age >= max, delivery set)--> rotating
//!   rotating --(new key created and stored)--> draining
//!   draining --(new key used AND old key quiet for drain_quiet)--> deactivated
//!   draining --(grace_days passed, old key still used)--> stuck (reported once)
//!   stuck --(drain proof, or force_after_grace)--> deactivated
//!   deactivated --(recovery_days)--> deleted;  deactivated --(reactivate)--> draining
//!   (exposed) --> quarantined (inactive, never reactivated) --(delivery set, no other key)-->
//!     replaced (new=<id>) --(recovery_days)--> deleted
//! ```
//!
//! With `delivery = "none"` no key is ever created: warned, then at max age + `grace_days`
//! the key is deactivated if another key of the user proves the drain (that key used, this
//! one quiet for `drain_quiet`), else it is `stuck`.
//!
//! Interplay with the unused-key path (`revoke_unused`, `iam-warden/inactive-since/`):
//! a key that carries a rotation tag, and the new key a draining or stuck tag names, belong
//! to the rotation: the unused path never deactivates, marks or deletes them (a key
//! deactivated by rotation is deleted after `recovery_days` by the rotation, not after
//! `delete_inactive_key_after_days`). A key without a rotation tag that the unused path
//! deactivates (unused for `unused_days`) is not rotated: nobody consumes it. A malformed
//! rotation tag is a `rotation-stuck` finding and nothing is done to its key (for a user
//! read from the credential report, whose keys have no id, to none of its keys).

mod quarantined;
mod stats;
mod tag;
mod tagged;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};

use super::{Action, KeyRef, PlannedAction};
use crate::baseline::checks::{Check, Finding};
use crate::config::{delivery_name, Config, Delivery, ROTATION_TAG_PREFIX};
use crate::inventory::{AccessKeyState, Observed, UserState};
pub use quarantined::{orphan_candidate, ORPHAN_AFTER, ORPHAN_BEFORE};
pub use stats::{key_stats, KeyStats, KEY_AGE_BUCKETS_DAYS, KEY_PHASES};
pub use tag::{is_access_key_id, rotation_tags, Phase, RotationTag};
use tagged::plan_tagged;

/// The old and new key of a rotation in progress (draining or stuck, both keys active):
/// the `two-active-keys` check reports such a user as rotating, not as a violation.
pub fn rotating_pair(user: &UserState) -> Option<(String, String)> {
    let (tags, _) = rotation_tags(user);
    tags.iter()
        .filter(|t| matches!(t.phase, Phase::Draining | Phase::Stuck))
        .find_map(|t| {
            let old = user.keys.iter().find(|k| k.active && t.matches(k))?;
            let new = &user.keys[new_key_index(user, t)?];
            new.active.then(|| (old.label(), new.label()))
        })
}

/// The rotation's part of one user's plan.
#[derive(Debug, Default, PartialEq)]
pub struct RotationPlan {
    pub actions: Vec<PlannedAction>,
    pub findings: Vec<Finding>,
    /// Keys (by index in `user.keys`) the rotation owns: the unused-key path leaves them.
    pub owned: BTreeSet<usize>,
    /// Earliest time a rotation phase of this user is due.
    pub next_due: Option<DateTime<Utc>>,
}

impl RotationPlan {
    fn due(&mut self, t: DateTime<Utc>) {
        self.next_due = Some(self.next_due.map_or(t, |d| d.min(t)));
    }
}

/// The owner to notify: the user's owner tag, else the configured default.
pub fn owner_of(user: &UserState, cfg: &Config) -> Option<String> {
    user.tags
        .get(&cfg.notifications.owner_tag)
        .cloned()
        .or_else(|| cfg.notifications.default_owner.clone())
}

/// Plan the rotation of every key of `user` (not exempt). `unused` says whether the
/// unused-key path deactivates a key (such keys are not rotated).
pub fn plan_rotation(
    user: &UserState,
    cfg: &Config,
    now: DateTime<Utc>,
    unused: &dyn Fn(&AccessKeyState) -> bool,
) -> RotationPlan {
    let mut rp = RotationPlan::default();
    if !cfg.rotation.enabled {
        return rp;
    }
    let (tags, bad) = rotation_tags(user);
    for (tag_key, err) in &bad {
        let mut f = Finding::new(Check::RotationStuck, err.clone());
        f.key_id = tag_key
            .strip_prefix(ROTATION_TAG_PREFIX)
            .map(str::to_string);
        rp.findings.push(f);
        match user
            .keys
            .iter()
            .position(|k| k.id.as_deref() == tag_key.strip_prefix(ROTATION_TAG_PREFIX))
        {
            Some(i) => {
                rp.owned.insert(i);
            }
            // A report user's keys have no id: none of them is touched.
            None if user.observed == Observed::CredentialReport => {
                rp.owned.extend(0..user.keys.len());
            }
            None => {}
        }
    }
    // New keys that a rotation names belong to it too.
    for t in tags
        .iter()
        .filter(|t| matches!(t.phase, Phase::Draining | Phase::Stuck))
    {
        if let Some(i) = new_key_index(user, t) {
            rp.owned.insert(i);
        }
    }
    // Two unfinished rotations in one user is tags edited into nonsense: neither resumes.
    let unfinished: Vec<&RotationTag> =
        tags.iter().filter(|t| t.phase == Phase::Rotating).collect();
    if unfinished.len() > 1 {
        for t in &unfinished {
            let mut f = Finding::new(
                Check::RotationStuck,
                format!(
                    "{} has an unfinished rotation, and so does another key of the user; remove the wrong tag {} to resume",
                    t.key_id,
                    RotationTag::tag_key(&t.key_id)
                ),
            );
            f.key_id = Some(t.key_id.clone());
            rp.findings.push(f);
            if let Some(i) = user.keys.iter().position(|k| t.matches(k)) {
                rp.owned.insert(i);
            }
        }
    }
    let mut matched: BTreeSet<&str> = BTreeSet::new();
    let mut deleting: BTreeSet<usize> = BTreeSet::new();
    for (i, k) in user.keys.iter().enumerate() {
        if rp.owned.contains(&i) && !tags.iter().any(|t| t.matches(k)) {
            continue; // a new key of a rotation, or a key with a malformed tag
        }
        let tag = tags.iter().find(|t| t.matches(k));
        if let Some(t) = tag {
            matched.insert(t.key_id.as_str());
            rp.owned.insert(i);
        }
        let key = KeyRef {
            id: k.id.clone().or_else(|| tag.map(|t| t.key_id.clone())),
            slot: k.slot,
            created: k.created,
        };
        let ctx = KeyCtx {
            user,
            cfg,
            now,
            k,
            index: i,
            key,
        };
        match tag {
            None if !k.active || unused(k) => {}
            // Warned, then deactivated or unused: the unused-key path has it; the stale
            // warning goes.
            Some(t) if t.phase == Phase::Warned && (!k.active || unused(k)) => {
                rp.owned.remove(&i);
                rp.actions.push(PlannedAction {
                    action: Action::ClearRotationTag {
                        user: user.name.clone(),
                        key_id: t.key_id.clone(),
                    },
                    reason: format!(
                        "{} is {}; no rotation",
                        k.label(),
                        if k.active { "unused" } else { "inactive" }
                    ),
                    check: None,
                });
            }
            None
            | Some(RotationTag {
                phase: Phase::Warned,
                ..
            }) => plan_age(&ctx, tag, unused, &mut deleting, &mut rp),
            Some(t) => plan_tagged(&ctx, t, unused, &mut deleting, &mut rp),
        }
    }
    // Tags of keys that are gone (only knowable with ids, i.e. read live).
    if user.observed == Observed::Live {
        for t in tags.iter().filter(|t| !matched.contains(t.key_id.as_str())) {
            rp.actions.push(PlannedAction {
                action: Action::ClearRotationTag {
                    user: user.name.clone(),
                    key_id: t.key_id.clone(),
                },
                reason: format!("{} no longer exists", t.key_id),
                check: None,
            });
        }
    }
    rp
}

struct KeyCtx<'a> {
    user: &'a UserState,
    cfg: &'a Config,
    now: DateTime<Utc>,
    k: &'a AccessKeyState,
    index: usize,
    key: KeyRef,
}

impl KeyCtx<'_> {
    fn name(&self) -> String {
        self.user.name.clone()
    }

    fn set_phase(&self, phase: Phase, new_key: Option<String>, reason: String) -> PlannedAction {
        PlannedAction {
            action: Action::SetRotationPhase {
                user: self.name(),
                key: self.key.clone(),
                phase,
                new_key,
            },
            reason,
            check: None,
        }
    }

    fn deactivate(&self, new_key: Option<String>, force: bool, reason: String) -> PlannedAction {
        PlannedAction {
            action: Action::DeactivateRotatedKey {
                user: self.name(),
                key: self.key.clone(),
                new_key,
                drain_quiet_secs: self.cfg.rotation.drain_quiet.get().as_secs(),
                force,
            },
            reason,
            check: Some(Check::KeyTooOld),
        }
    }

    /// The rotate action for this key (a new key stored under `secret_name`).
    fn rotate(&self, secret_name: String, reason: String) -> PlannedAction {
        let r = &self.cfg.rotation;
        PlannedAction {
            action: Action::RotateAccessKey {
                user: self.name(),
                key: self.key.clone(),
                delivery: r.delivery,
                secret_name,
                kms_key_id: r.kms_key_id.clone(),
                owner: owner_of(self.user, self.cfg),
                store_retry_secs: r.store_retry.get().as_secs(),
            },
            reason,
            check: Some(Check::KeyTooOld),
        }
    }

    fn stuck_finding(&self, reason: String) -> Finding {
        let mut f = Finding::new(Check::RotationStuck, reason);
        f.key_id = self.key.id.clone();
        f
    }

    fn quiet_since(&self) -> Option<DateTime<Utc>> {
        self.k
            .last_used
            .map(|u| u + to_duration(self.cfg.rotation.drain_quiet.get()))
    }
}

fn to_duration(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

fn days(n: u32) -> Duration {
    Duration::days(i64::from(n))
}

/// The index of the new key a rotation tag names: by id, or (report keys) the other key.
fn new_key_index(user: &UserState, t: &RotationTag) -> Option<usize> {
    let n = t.new_key.as_deref()?;
    user.keys
        .iter()
        .position(|k| k.id.as_deref() == Some(n))
        .or_else(|| {
            user.keys
                .iter()
                .position(|k| k.id.is_none() && !t.matches(k))
        })
}

/// The drain proof from observed state: the other key used, this key quiet.
fn drained(ctx: &KeyCtx<'_>, other: Option<&AccessKeyState>) -> bool {
    let quiet = ctx.quiet_since().is_none_or(|q| q <= ctx.now);
    other.is_some_and(|o| o.active && o.last_used.is_some()) && quiet
}

/// An active key without a tag, or warned: warn, rotate at the limit (or, without
/// delivery, deactivate / report it after grace).
fn plan_age(
    ctx: &KeyCtx<'_>,
    tag: Option<&RotationTag>,
    unused: &dyn Fn(&AccessKeyState) -> bool,
    deleting: &mut BTreeSet<usize>,
    rp: &mut RotationPlan,
) {
    let (cfg, k, now) = (ctx.cfg, ctx.k, ctx.now);
    let r = &cfg.rotation;
    let max = cfg.baseline.credentials.max_key_age_days;
    let due_at = k.created + days(max);
    let warn_at = k.created + days(max.saturating_sub(r.warn_days));
    let warned = tag.is_some();
    if now < warn_at {
        rp.due(warn_at);
        return;
    }
    if now < due_at || (r.delivery == Delivery::None && !warned) {
        if !warned {
            rp.actions.push(ctx.set_phase(
                Phase::Warned,
                None,
                format!(
                    "{} reaches the age limit of {max} days on {}",
                    k.label(),
                    due_at.format("%Y-%m-%d")
                ),
            ));
        }
        rp.due(if r.delivery == Delivery::None {
            due_at + days(r.grace_days)
        } else {
            due_at
        });
        return;
    }
    let others: Vec<(usize, &AccessKeyState)> = ctx
        .user
        .keys
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != ctx.index)
        .collect();
    if r.delivery == Delivery::None {
        let end = due_at + days(r.grace_days);
        if now < end {
            rp.due(end);
            return;
        }
        let other = others.iter().map(|(_, o)| *o).find(|o| o.active);
        if drained(ctx, other) {
            rp.actions.push(ctx.deactivate(
                other.and_then(|o| o.id.clone()),
                false,
                format!(
                    "{} is past its age limit and grace; the user's other key is in use and this one is quiet",
                    k.label()
                ),
            ));
        } else {
            let why = format!(
                "{} is past its age limit of {max} days plus {} days of grace and no other key of the user replaces it (delivery = \"none\": the user rotates it)",
                k.label(),
                r.grace_days
            );
            rp.findings.push(ctx.stuck_finding(why.clone()));
            rp.actions.push(ctx.set_phase(Phase::Stuck, None, why));
        }
        return;
    }
    let name = match delivery_name(&r.name_template, &ctx.user.name, r.delivery) {
        Ok(n) => n,
        Err(e) => {
            rp.findings.push(ctx.stuck_finding(format!(
                "{} is due for rotation but rotation.name_template gives no valid name for this user: {e}",
                k.label()
            )));
            return;
        }
    };
    // IAM allows two keys: the other one must go first, or rotation waits.
    for (oi, o) in &others {
        if o.active {
            if o.last_used.is_some() && k.last_used.is_some() {
                rp.findings.push(ctx.stuck_finding(format!(
                    "{} is due for rotation but the user has two active keys in use ({} too); no third key can be made: retire one",
                    k.label(),
                    o.label()
                )));
            } else if !unused(o) {
                rp.findings.push(ctx.stuck_finding(format!(
                    "{} is due for rotation but the user's other key {} is active; rotation waits until it is retired",
                    k.label(),
                    o.label()
                )));
            }
            return;
        }
        let deletable = deletable_inactive(ctx, o);
        match deletable {
            Some(reason) if deleting.insert(*oi) => {
                rp.owned.insert(*oi);
                rp.actions.push(PlannedAction {
                    action: Action::DeleteRotatedKey {
                        user: ctx.name(),
                        key: KeyRef {
                            id: o.id.clone(),
                            slot: o.slot,
                            created: o.created,
                        },
                    },
                    reason,
                    check: Some(Check::KeyTooOld),
                });
            }
            Some(_) => {
                rp.owned.insert(*oi);
            }
            None => {
                rp.findings.push(ctx.stuck_finding(format!(
                    "{} is due for rotation but the user's inactive key {} is within its recovery window; rotation waits for its deletion",
                    k.label(),
                    o.label()
                )));
                return;
            }
        }
    }
    rp.actions.push(ctx.rotate(
        name,
        format!(
            "{} reached the age limit of {max} days on {}",
            k.label(),
            due_at.format("%Y-%m-%d")
        ),
    ));
}

/// An inactive other key past its recovery window: why it may be deleted first.
fn deletable_inactive(ctx: &KeyCtx<'_>, o: &AccessKeyState) -> Option<String> {
    let recovery = days(ctx.cfg.rotation.recovery_days);
    let (tags, _) = rotation_tags(ctx.user);
    let since = tags
        .iter()
        .find(|t| t.matches(o) && matches!(t.phase, Phase::Deactivated | Phase::Quarantined))
        .map(|t| t.since)
        .or_else(|| {
            super::inactive_marks(ctx.user)
                .into_iter()
                .find(|m| o.id.as_deref() == Some(m.key_id.as_str()))
                .map(|m| m.since)
        })?;
    (since + recovery <= ctx.now).then(|| {
        format!(
            "{} has been inactive since {}, past the recovery window of {} days; deleted first to make room for the rotation of {}",
            o.label(),
            since.format("%Y-%m-%d"),
            ctx.cfg.rotation.recovery_days,
            ctx.k.label()
        )
    })
}

#[cfg(test)]
mod tests;
