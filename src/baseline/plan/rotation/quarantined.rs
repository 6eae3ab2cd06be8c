//! Quarantined (exposed) keys in the rotation lifecycle, and the orphan-key window that
//! keeps an interrupted rotation from taking a key a person made for its own.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};

use super::{days, delivery_name, rotation_tags, KeyCtx, RotationPlan, RotationTag};
use crate::baseline::checks::{Check, Finding};
use crate::baseline::plan::{Action, PlannedAction};
use crate::config::Delivery;
use crate::inventory::AccessKeyState;

/// How long before and after the intent's wall time AWS may have created the orphan new
/// key of an interrupted rotation (clock skew; a slow CreateAccessKey).
pub const ORPHAN_BEFORE: Duration = Duration::minutes(1);
pub const ORPHAN_AFTER: Duration = Duration::minutes(10);

/// Could a key created at `created` be the new key of the rotation whose intent was
/// written at wall time `wall`? Only within [`ORPHAN_BEFORE`] .. [`ORPHAN_AFTER`] of it;
/// never without a recorded wall time.
pub fn orphan_candidate(wall: Option<DateTime<Utc>>, created: DateTime<Utc>) -> bool {
    wall.is_some_and(|w| created >= w - ORPHAN_BEFORE && created <= w + ORPHAN_AFTER)
}

/// During an unfinished rotation (or replacement of a quarantined key): another active key
/// without a rotation tag that AWS did not create right after the intent belongs to a
/// person, not to this rotation. It is left alone, the rotation waits, and this is the
/// finding that says so.
pub(super) fn foreign_key(ctx: &KeyCtx<'_>, t: &RotationTag) -> Option<Finding> {
    let (tags, _) = rotation_tags(ctx.user);
    let o = ctx.user.keys.iter().enumerate().find(|(i, o)| {
        *i != ctx.index
            && o.active
            && !tags.iter().any(|x| x.matches(o))
            && !orphan_candidate(t.wall, o.created)
    })?;
    Some(ctx.stuck_finding(format!(
        "{} has an unfinished rotation (intent at {}), but the user's other key {} was created {} and is not this rotation's new key; it is left alone: retire it or remove the tag {} to resume",
        ctx.k.label(),
        t.wall
            .map(|w| w.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| "an unrecorded time".into()),
        o.1.label(),
        o.1.created.format("%Y-%m-%dT%H:%M:%SZ"),
        RotationTag::tag_key(&t.key_id)
    )))
}

/// A quarantined (exposed) key: never reactivated; replaced at once when a delivery is
/// configured and the user has no other key; deleted after `recovery_days`.
pub(super) fn plan_quarantined(
    ctx: &KeyCtx<'_>,
    t: &RotationTag,
    deleting: &mut BTreeSet<usize>,
    rp: &mut RotationPlan,
) {
    let (cfg, k, now) = (ctx.cfg, ctx.k, ctx.now);
    let r = &cfg.rotation;
    if k.active {
        rp.findings.push(ctx.stuck_finding(format!(
            "{} was quarantined as exposed on {} but is active again; iam-warden never reactivates an exposed key: deactivate it, or remove the tag {} if it is known to be safe",
            k.label(),
            t.since.format("%Y-%m-%d"),
            RotationTag::tag_key(&t.key_id)
        )));
        return;
    }
    let end = t.since + days(r.recovery_days);
    if now >= end {
        if deleting.insert(ctx.index) {
            rp.actions.push(PlannedAction {
                action: Action::DeleteRotatedKey {
                    user: ctx.name(),
                    key: ctx.key.clone(),
                },
                reason: format!(
                    "{} was quarantined as exposed on {}; the recovery window of {} days is over",
                    k.label(),
                    t.since.format("%Y-%m-%d"),
                    r.recovery_days
                ),
                check: Some(Check::KeyTooOld),
            });
        }
        return;
    }
    rp.due(end);
    if t.new_key.is_some() {
        return; // replaced
    }
    let others: Vec<&AccessKeyState> = ctx
        .user
        .keys
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != ctx.index)
        .map(|(_, o)| o)
        .collect();
    if r.delivery == Delivery::None {
        if !others.iter().any(|o| o.active) {
            rp.findings.push(ctx.stuck_finding(format!(
                "{} was quarantined as exposed and the user has no other active key; delivery = \"none\": the user must create a new key",
                k.label()
            )));
        }
        return;
    }
    if super::tagged::waits_for_store_retry(ctx, t, rp) {
        return;
    }
    if t.quarantine_replacing() {
        if let Some(f) = foreign_key(ctx, t) {
            rp.findings.push(f);
            return;
        }
    } else if let Some(o) = others.first() {
        // Another key: an active one serves as the replacement; an inactive one leaves no
        // room for a new key (IAM allows two).
        if !o.active {
            rp.findings.push(ctx.stuck_finding(format!(
                "{} was quarantined as exposed but the user's other key {} is inactive, so no new key can be made (IAM allows two); delete one to get a replacement",
                k.label(),
                o.label()
            )));
        }
        return;
    }
    match delivery_name(&r.name_template, &ctx.user.name, r.delivery) {
        Ok(name) => rp.actions.push(ctx.rotate(name, format!(
                "{} was quarantined as exposed on {}: replaced by a new key at once",
                k.label(),
                t.since.format("%Y-%m-%dT%H:%M:%SZ")
            ))),
        Err(e) => rp.findings.push(ctx.stuck_finding(format!(
            "{} was quarantined as exposed but rotation.name_template gives no valid name for this user: {e}",
            k.label()
        ))),
    }
}
