//! After the rotation: the drain-proven deactivation (re-checked live), the delete after
//! recovery, phase tags, and `iam-warden reactivate` (which refuses quarantined keys).

use aws_sdk_iam::types::StatusType;
use chrono::{DateTime, Utc};

use super::notices::PhaseKey;
use super::rotation::{crash_point, find, gone, rotation_tag_in};
use super::{Applier, Outcome};
use crate::aws::aws_error;
use crate::baseline::plan::{KeyRef, Phase, RotationTag};
use crate::config::INACTIVE_SINCE_TAG_PREFIX;
use crate::error::{Error, Result};
use crate::inventory::{live, Tags};

impl Applier {
    /// Deactivate a rotated key once the drain is proven live (or forced after grace).
    pub(super) async fn deactivate_rotated(
        &self,
        user: &str,
        key: &KeyRef,
        new_key: Option<&str>,
        quiet_secs: u64,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let keys = live::read_keys(&self.clients.iam, user).await?;
        let Some(old) = find(&keys, key) else {
            return Ok(gone(user, key));
        };
        let old_id = old.id.clone().unwrap_or_default();
        if !old.active {
            return Ok(Outcome::Skipped(format!("{old_id} is already inactive")));
        }
        let all = self.live_tags(user).await?;
        let user_tags: Tags = all.iter().cloned().collect();
        let tag = match rotation_tag_in(&all, &old_id) {
            Some(Ok(t)) if matches!(t.phase, Phase::Warned | Phase::Draining | Phase::Stuck) => t,
            Some(Err(e)) => return Ok(Outcome::Skipped(e)),
            _ => {
                return Ok(Outcome::Skipped(format!(
                    "{old_id} has no rotation in progress any more; not touched"
                )))
            }
        };
        let new = keys
            .iter()
            .find(|k| match new_key.or(tag.new_key.as_deref()) {
                Some(n) => k.id.as_deref() == Some(n),
                None => k.id != old.id && k.active,
            });
        if !force {
            let Some(new) = new.filter(|n| n.active && n.last_used.is_some()) else {
                return Ok(Outcome::Skipped(format!(
                    "the key replacing {old_id} is not active and used yet; {old_id} stays active"
                )));
            };
            if let Some(used) = old.last_used {
                let quiet =
                    chrono::Duration::seconds(i64::try_from(quiet_secs).unwrap_or(i64::MAX));
                if now - used < quiet {
                    return Ok(Outcome::Skipped(format!(
                        "{old_id} was used at {}, less than {quiet_secs} s ago; {} is in use too, so its consumer is still switching",
                        used.format("%Y-%m-%dT%H:%M:%SZ"),
                        new.label()
                    )));
                }
            }
        }
        self.clients
            .iam
            .update_access_key()
            .user_name(user)
            .access_key_id(&old_id)
            .status(StatusType::Inactive)
            .send()
            .await
            .map_err(|e| aws_error("iam", "UpdateAccessKey", e))?;
        crash_point("UpdateAccessKey");
        let next = RotationTag {
            phase: Phase::Deactivated,
            since: now,
            created: Some(old.created),
            failed: None,
            ..tag
        };
        let why = if force {
            "still in use after grace; deactivated because rotation.force_after_grace = true"
        } else {
            "drain proven live: the new key is in use and this one is quiet"
        };
        self.write_phase_with(user, &next, "deactivated", why, Some(&user_tags))
            .await?;
        Ok(Outcome::Applied)
    }

    /// Delete an inactive key past its recovery window, and its tags.
    pub(super) async fn delete_rotated(&self, user: &str, key: &KeyRef) -> Result<Outcome> {
        let keys = live::read_keys(&self.clients.iam, user).await?;
        let Some(k) = find(&keys, key) else {
            return Ok(gone(user, key));
        };
        let id = k.id.clone().unwrap_or_default();
        if k.active {
            return Ok(Outcome::Skipped(format!(
                "{id} is active again; only inactive keys are deleted"
            )));
        }
        self.clients
            .iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(&id)
            .send()
            .await
            .map_err(|e| aws_error("iam", "DeleteAccessKey", e))?;
        self.phase_changed(
            user,
            PhaseKey::id(&id),
            "deleted",
            "inactive past the recovery window",
            None,
        )
        .await;
        if let Err(e) = self
            .untag(
                user,
                vec![
                    RotationTag::tag_key(&id),
                    format!("{INACTIVE_SINCE_TAG_PREFIX}{id}"),
                ],
            )
            .await
        {
            tracing::warn!(user, key = %id, error = %e, "could not remove the tags of a deleted key; the next pass does");
        }
        Ok(Outcome::Applied)
    }

    /// Record a phase (warned, stuck, deactivated, draining again) in the key's tag.
    pub(super) async fn set_phase(
        &self,
        user: &str,
        key: &KeyRef,
        phase: Phase,
        new_key: Option<&str>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let keys = live::read_keys(&self.clients.iam, user).await?;
        let Some(k) = find(&keys, key) else {
            return Ok(gone(user, key));
        };
        let tag = RotationTag {
            key_id: k.id.clone().unwrap_or_default(),
            phase,
            since: now,
            created: Some(k.created),
            new_key: new_key.map(str::to_string),
            wall: None,
            failed: None,
        };
        self.write_phase(user, &tag, phase.as_str(), reason).await?;
        Ok(Outcome::Applied)
    }

    pub(super) async fn clear_rotation_tag(&self, user: &str, key_id: &str) -> Result<Outcome> {
        self.untag(user, vec![RotationTag::tag_key(key_id)]).await?;
        Ok(Outcome::Applied)
    }

    /// `iam-warden reactivate USER ACCESS_KEY_ID`: put back a key the rotation deactivated
    /// (journaled; its lifecycle restarts at draining). Refuses any other key.
    pub async fn reactivate(
        &self,
        user: &str,
        key_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let tag = match self.live_rotation_tag(user, key_id).await? {
            Some(Ok(t)) if t.phase == Phase::Deactivated => t,
            Some(Ok(t)) if t.phase == Phase::Quarantined => {
                return Err(Error::Other(format!(
                    "{key_id} of {user} was quarantined because AWS reported it exposed; iam-warden never reactivates an exposed key — use the key that replaced it, or create a new one"
                )))
            }
            Some(Ok(t)) => {
                return Err(Error::Other(format!(
                    "{key_id} of {user} is in rotation phase {}, not deactivated; reactivate only puts back keys the rotation deactivated",
                    t.phase
                )))
            }
            Some(Err(e)) => return Err(Error::Other(e)),
            None => {
                return Err(Error::Other(format!(
                    "{key_id} of {user} was not deactivated by rotation (no tag {}); reactivate only puts back keys the rotation deactivated — use the IAM console for others",
                    RotationTag::tag_key(key_id)
                )))
            }
        };
        let keys = live::read_keys(&self.clients.iam, user).await?;
        let Some(k) = keys.iter().find(|k| k.id.as_deref() == Some(key_id)) else {
            return Err(Error::Other(format!(
                "{key_id} of {user} no longer exists (deleted after its recovery window); it cannot be reactivated"
            )));
        };
        let reason = "reactivated by an operator (iam-warden reactivate); it drains again";
        let target = format!("{key_id} -> active");
        if self.mode == crate::config::Mode::DryRun {
            let o = Outcome::DryRun;
            self.record("reactivate_access_key", Some(user), &target, reason, &o);
            return Ok(o);
        }
        self.intent("reactivate_access_key", Some(user), &target, reason)?;
        let r = async {
            if !k.active {
                self.clients
                    .iam
                    .update_access_key()
                    .user_name(user)
                    .access_key_id(key_id)
                    .status(StatusType::Active)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "UpdateAccessKey", e))?;
            }
            let next = RotationTag {
                phase: if tag.new_key.is_some() {
                    Phase::Draining
                } else {
                    Phase::Warned
                },
                since: now,
                failed: None,
                ..tag.clone()
            };
            self.write_phase(user, &next, "reactivated", reason).await
        }
        .await;
        let o = match &r {
            Ok(()) => Outcome::Applied,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.record("reactivate_access_key", Some(user), &target, reason, &o);
        r.map(|()| o)
    }
}
