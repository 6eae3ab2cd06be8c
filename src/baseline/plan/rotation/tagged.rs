//! The rotation of a key that carries a rotation tag (rotating, draining, stuck,
//! deactivated, quarantined): resume, prove the drain, report it stuck, delete it after
//! recovery.

use std::collections::BTreeSet;

use super::quarantined::{foreign_key, plan_quarantined};
use super::{
    days, delivery_name, drained, new_key_index, plan_age, rotation_tags, to_duration, KeyCtx,
    Phase, RotationPlan, RotationTag,
};
use crate::baseline::checks::Check;
use crate::baseline::plan::{Action, PlannedAction};
use crate::config::Delivery;
use crate::inventory::AccessKeyState;

/// A key in phase rotating, draining, stuck or deactivated.
pub(super) fn plan_tagged(
    ctx: &KeyCtx<'_>,
    t: &RotationTag,
    unused: &dyn Fn(&AccessKeyState) -> bool,
    deleting: &mut BTreeSet<usize>,
    rp: &mut RotationPlan,
) {
    let (cfg, k, now) = (ctx.cfg, ctx.k, ctx.now);
    let r = &cfg.rotation;
    let new_idx = new_key_index(ctx.user, t);
    let new_key = new_idx.map(|i| &ctx.user.keys[i]);
    match t.phase {
        Phase::Warned => {}
        Phase::Rotating => {
            let (all, _) = rotation_tags(ctx.user);
            if all.iter().filter(|t| t.phase == Phase::Rotating).count() > 1 {
                return; // reported above
            }
            if !k.active || r.delivery == Delivery::None {
                rp.findings.push(ctx.stuck_finding(format!(
                    "{} has an unfinished rotation (since {}) but is {}; remove the tag {} to restart",
                    k.label(),
                    t.since.format("%Y-%m-%d %H:%M"),
                    if k.active { "delivery is now \"none\"" } else { "inactive" },
                    RotationTag::tag_key(&t.key_id)
                )));
                return;
            }
            if let Some(f) = foreign_key(ctx, t) {
                rp.findings.push(f);
                return;
            }
            match delivery_name(&r.name_template, &ctx.user.name, r.delivery) {
                Ok(name) => rp.actions.push(ctx.rotate(name, format!(
                        "{} has an unfinished rotation since {}: resume it",
                        k.label(),
                        t.since.format("%Y-%m-%dT%H:%M:%SZ")
                    ))),
                Err(e) => rp.findings.push(ctx.stuck_finding(format!(
                    "{} has an unfinished rotation but rotation.name_template gives no valid name for this user: {e}",
                    k.label()
                ))),
            }
        }
        Phase::Stuck if t.new_key.is_none() && r.delivery != Delivery::None && k.active => {
            if !waits_for_store_retry(ctx, t, rp) {
                plan_age(ctx, Some(t), unused, deleting, rp);
            }
        }
        Phase::Draining | Phase::Stuck => {
            if !k.active {
                rp.actions.push(ctx.set_phase(
                    Phase::Deactivated,
                    t.new_key.clone(),
                    format!(
                        "{} was deactivated outside iam-warden; its recovery window starts",
                        k.label()
                    ),
                ));
                return;
            }
            let new_label = t.new_key.clone().unwrap_or_else(|| "another key".into());
            if t.new_key.is_some() && new_key.is_none() {
                rp.findings.push(ctx.stuck_finding(format!(
                    "{} is {} but its new key {new_label} no longer exists; the old key stays active (remove the tag {} to rotate again)",
                    k.label(),
                    t.phase,
                    RotationTag::tag_key(&t.key_id)
                )));
                return;
            }
            let other = new_key.or_else(|| {
                ctx.user
                    .keys
                    .iter()
                    .enumerate()
                    .find(|(i, o)| *i != ctx.index && o.active)
                    .map(|(_, o)| o)
            });
            if drained(ctx, other) {
                rp.actions.push(ctx.deactivate(
                    other.and_then(|o| o.id.clone()).or(t.new_key.clone()),
                    false,
                    format!(
                        "drain proven: {new_label} is in use and {} {}",
                        k.label(),
                        match k.last_used {
                            Some(u) => format!("was last used {}", u.format("%Y-%m-%dT%H:%M:%SZ")),
                            None => "was never used".into(),
                        }
                    ),
                ));
                return;
            }
            let grace_end = t.since + days(r.grace_days);
            if t.phase == Phase::Draining && now < grace_end {
                rp.due(grace_end);
                if other.is_some_and(|o| o.last_used.is_some()) {
                    if let Some(q) = ctx.quiet_since() {
                        rp.due(q);
                    }
                }
                return;
            }
            let why = format!(
                "{} is still in use {} days after its rotation started ({}); its consumer has not switched to {new_label}",
                k.label(),
                (now - t.since).num_days().max(0),
                t.since.format("%Y-%m-%d")
            );
            rp.findings.push(ctx.stuck_finding(why.clone()));
            if t.phase == Phase::Draining {
                rp.actions
                    .push(ctx.set_phase(Phase::Stuck, t.new_key.clone(), why.clone()));
            }
            if r.force_after_grace {
                rp.actions.push(ctx.deactivate(
                    other.and_then(|o| o.id.clone()).or(t.new_key.clone()),
                    true,
                    format!("{why}; rotation.force_after_grace = true"),
                ));
            }
        }
        Phase::Quarantined => plan_quarantined(ctx, t, deleting, rp),
        Phase::Deactivated => {
            if k.active {
                let (phase, reason) = match &t.new_key {
                    Some(_) => (
                        Phase::Draining,
                        "was reactivated outside iam-warden; it drains again",
                    ),
                    None => (Phase::Warned, "was reactivated outside iam-warden"),
                };
                rp.actions.push(ctx.set_phase(
                    phase,
                    t.new_key.clone(),
                    format!("{} {reason}", k.label()),
                ));
                return;
            }
            let end = t.since + days(r.recovery_days);
            if now >= end && !deleting.insert(ctx.index) {
                // Already deleted first, to make room for a rotation.
            } else if now >= end {
                rp.actions.push(PlannedAction {
                    action: Action::DeleteRotatedKey {
                        user: ctx.name(),
                        key: ctx.key.clone(),
                    },
                    reason: format!(
                        "{} was deactivated by rotation on {}; the recovery window of {} days is over",
                        k.label(),
                        t.since.format("%Y-%m-%d"),
                        r.recovery_days
                    ),
                    check: Some(Check::KeyTooOld),
                });
            } else {
                rp.due(end);
            }
        }
    }
}

/// A rotation (or the replacement of a quarantined key) whose new key could not be stored
/// (the new key deleted at once) waits `rotation.store_retry` after the failure: a missing KMS key or
/// a denied store fails the same way until a person fixes it, and each attempt creates and
/// deletes a key. While it waits: a `rotation-stuck` finding naming the key, the store and
/// the fix, and the retry is when the user is due. Returns whether it waits.
pub(super) fn waits_for_store_retry(
    ctx: &KeyCtx<'_>,
    t: &RotationTag,
    rp: &mut RotationPlan,
) -> bool {
    let Some(failed) = t.store_failed_at() else {
        return false;
    };
    let retry = failed + to_duration(ctx.cfg.rotation.store_retry.get());
    if ctx.now >= retry {
        return false;
    }
    let r = &ctx.cfg.rotation;
    let (what, left) = if t.phase == Phase::Quarantined {
        (
            "the replacement of the quarantined",
            "stays inactive and quarantined",
        )
    } else {
        ("the rotation of", "stays active")
    };
    let store = delivery_name(&r.name_template, &ctx.user.name, r.delivery)
        .map(|n| format!("{} {n}", r.delivery.as_str()))
        .unwrap_or_else(|_| r.delivery.as_str().to_string());
    // The key's id (learnt from the tag for a credential-report user).
    let k = ctx.key.to_string();
    rp.findings.push(ctx.stuck_finding(format!(
        "{what} {k} failed on {}: its new key could not be stored in {store} and was deleted; {k} {left} and it is retried after {}; fix the cause the journal and the rotation-stuck notice name (e.g. a KMS key in rotation.kms_key_id that does not exist)",
        failed.format("%Y-%m-%dT%H:%M:%SZ"),
        retry.format("%Y-%m-%dT%H:%M:%SZ")
    )));
    rp.due(retry);
    true
}
