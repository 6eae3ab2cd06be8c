//! Executing the rotation lifecycle: the rotation itself (intent → CreateAccessKey →
//! store → draining, or the replacement of a quarantined key), crash recovery, and the
//! phase tags and events shared with `retire.rs` (the drain-proven deactivation, the
//! delete after recovery, phase tags, `reactivate`).
//!
//! Every phase change goes through [`Applier::phase_changed`]: a journal line, a metric
//! event and the owner's notice (`notices.rs`).
//!
//! Orphan keys: a crash between CreateAccessKey and the store leaves a new key whose secret
//! may be lost. The intent tag records the real wall time (`wall=`), and only a key whose
//! CreateDate lies within [`crate::baseline::plan::ORPHAN_BEFORE`] before to
//! [`crate::baseline::plan::ORPHAN_AFTER`] after it is taken for the rotation's new key;
//! any other key (a person's) is left alone and the rotation waits (`rotation-stuck`). An
//! intent without `wall=` (a tag a person or an older version wrote) therefore never takes
//! a key for its orphan; when no other key exists it resumes, writing the intent again
//! with the wall time before CreateAccessKey.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};

use super::notices::PhaseKey;
use super::{Applier, Outcome};
use crate::aws::aws_error;
use crate::baseline::plan::{orphan_candidate, KeyRef, Phase, RotationTag};
use crate::config::Delivery;
use crate::delivery::{self, NewKey, SecretKey, Target};
use crate::error::{Error, Result};
use crate::inventory::{live, to_chrono, AccessKeyState, Tags};
use crate::journal::Entry;
use crate::metrics::RotationEvent;

static CRASH_AFTER: OnceLock<Option<String>> = OnceLock::new();

/// Tests only: make the process stop (exit 86) right after the named rotation step succeeds
/// (`intent`, `CreateAccessKey`, `store`, `draining`, `UpdateAccessKey`), to prove that
/// the next pass recovers. Set once, from `main` (`IAM_WARDEN_TEST_CRASH_AFTER`).
pub fn set_test_crash_after(step: Option<String>) {
    let _ = CRASH_AFTER.set(step);
}

pub(super) fn crash_point(step: &str) {
    if CRASH_AFTER.get().and_then(|s| s.as_deref()) == Some(step) {
        // Like a crash: no further call, no report, no destructors (exit, not abort, so
        // that no core file is left behind).
        eprintln!("iam-warden: test crash after {step}");
        std::process::exit(86);
    }
}

/// What a rotation needs besides the key.
pub struct RotateRequest<'a> {
    pub user: &'a str,
    pub key: &'a KeyRef,
    pub delivery: Delivery,
    pub secret_name: &'a str,
    pub kms_key_id: Option<&'a str>,
    pub owner: Option<&'a str>,
    /// `rotation.store_retry`: after a failed store, no new key before this long.
    pub store_retry: chrono::Duration,
}

pub(super) fn find<'k>(keys: &'k [AccessKeyState], key: &KeyRef) -> Option<&'k AccessKeyState> {
    keys.iter().find(|k| match &key.id {
        Some(id) => k.id.as_deref() == Some(id),
        None => (k.created - key.created).num_seconds().abs() < 1,
    })
}

pub(super) fn rotation_tag_in(
    tags: &[(String, String)],
    key_id: &str,
) -> Option<std::result::Result<RotationTag, String>> {
    let want = RotationTag::tag_key(key_id);
    tags.iter()
        .find(|(k, _)| *k == want)
        .and_then(|(k, v)| RotationTag::parse(k, v))
}

/// The old key's tag once the new key is stored, and its phase event: draining, or (an
/// exposed key) still quarantined, now naming its replacement.
fn stored_tag(
    old_id: &str,
    old: &AccessKeyState,
    quarantine: Option<&RotationTag>,
    new_id: &str,
    now: DateTime<Utc>,
) -> (RotationTag, &'static str) {
    match quarantine {
        Some(q) => (
            RotationTag {
                new_key: Some(new_id.to_string()),
                wall: None,
                failed: None,
                ..q.clone()
            },
            "replaced",
        ),
        None => (
            RotationTag {
                key_id: old_id.to_string(),
                phase: Phase::Draining,
                since: now,
                created: Some(old.created),
                new_key: Some(new_id.to_string()),
                wall: None,
                failed: None,
            },
            "draining",
        ),
    }
}

/// The old key's tag once the new key could not be stored (and was deleted): the
/// rotation `stuck` without a new key, or (an exposed key) still quarantined; both record
/// the failure (`failed=`) so that no new key is made before `rotation.store_retry`.
fn store_failed_tag(
    old_id: &str,
    old: &AccessKeyState,
    quarantine: Option<&RotationTag>,
    now: DateTime<Utc>,
) -> RotationTag {
    match quarantine {
        Some(q) => RotationTag {
            wall: None,
            failed: Some(now),
            ..q.clone()
        },
        None => RotationTag {
            key_id: old_id.to_string(),
            phase: Phase::Stuck,
            since: now,
            created: Some(old.created),
            new_key: None,
            wall: None,
            failed: Some(now),
        },
    }
}

pub(super) fn gone(user: &str, key: &KeyRef) -> Outcome {
    Outcome::Skipped(format!(
        "{key} of {user} is not there any more; no other key is touched"
    ))
}

impl Applier {
    /// A key entered a rotation phase (or was deleted, discarded, reactivated): one
    /// journal line, one metric event, and the owner's notice (see
    /// [`Applier::notify_phase`]; `tags`: the user's tags when at hand, else read live).
    pub async fn phase_changed(
        &self,
        user: &str,
        tag: PhaseKey<'_>,
        event: &str,
        reason: &str,
        tags: Option<&Tags>,
    ) {
        let key_id = tag.key_id;
        RotationEvent {
            event,
            user,
            key_id,
            reason,
        }
        .emit(self.metrics.as_deref());
        let entry = Entry {
            time: Utc::now(),
            account: self.account_id.clone(),
            user: Some(user.to_string()),
            action: "rotation_phase".into(),
            target: format!("{key_id} -> {event}"),
            reason: reason.to_string(),
            mode: self.mode.to_string(),
            outcome: "applied".into(),
            error: None,
        };
        if let Err(e) = self.journal.record(&entry) {
            tracing::error!(error = %e, "journal write failed");
        }
        self.notify_phase(user, tag, event, reason, tags).await;
    }

    /// The user's tags, read live.
    pub(super) async fn live_tags(&self, user: &str) -> Result<Vec<(String, String)>> {
        let out = self
            .clients
            .iam
            .list_user_tags()
            .user_name(user)
            .send()
            .await
            .map_err(|e| aws_error("iam", "ListUserTags", e))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    /// The key's rotation tag, read live (`None`: no tag).
    pub(super) async fn live_rotation_tag(
        &self,
        user: &str,
        key_id: &str,
    ) -> Result<Option<std::result::Result<RotationTag, String>>> {
        let tags = self.live_tags(user).await?;
        Ok(rotation_tag_in(&tags, key_id))
    }

    pub(super) async fn write_phase(
        &self,
        user: &str,
        tag: &RotationTag,
        event: &str,
        reason: &str,
    ) -> Result<()> {
        self.write_phase_with(user, tag, event, reason, None).await
    }

    /// [`Applier::write_phase`] with the user's tags at hand (for the owner's notice).
    pub(super) async fn write_phase_with(
        &self,
        user: &str,
        tag: &RotationTag,
        event: &str,
        reason: &str,
        tags: Option<&Tags>,
    ) -> Result<()> {
        self.write_tag(user, tag).await?;
        self.phase_changed(user, PhaseKey::of(tag), event, reason, tags)
            .await;
        Ok(())
    }

    /// Write the key's rotation tag (no phase event).
    async fn write_tag(&self, user: &str, tag: &RotationTag) -> Result<()> {
        let t = aws_sdk_iam::types::Tag::builder()
            .key(RotationTag::tag_key(&tag.key_id))
            .value(tag.value())
            .build()
            .map_err(|e| Error::Other(format!("cannot build the rotation tag: {e}")))?;
        self.clients
            .iam
            .tag_user()
            .user_name(user)
            .tags(t)
            .send()
            .await
            .map_err(|e| aws_error("iam", "TagUser", e))?;
        Ok(())
    }

    pub(super) async fn untag(&self, user: &str, keys: Vec<String>) -> Result<()> {
        self.clients
            .iam
            .untag_user()
            .user_name(user)
            .set_tag_keys(Some(keys))
            .send()
            .await
            .map_err(|e| aws_error("iam", "UntagUser", e))?;
        Ok(())
    }

    /// Delete a key as its own journaled write (used to discard an orphan new key).
    async fn delete_key_journaled(&self, user: &str, key_id: &str, reason: &str) -> Result<()> {
        self.intent("delete_access_key", Some(user), key_id, reason)?;
        let r = self
            .clients
            .iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_error("iam", "DeleteAccessKey", e));
        let o = match &r {
            Ok(()) => Outcome::Applied,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.record("delete_access_key", Some(user), key_id, reason, &o);
        r
    }

    /// The rotation, as one action; resumes an unfinished one.
    pub(super) async fn rotate(
        &self,
        req: &RotateRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let user = req.user;
        let iam = &self.clients.iam;
        let keys = live::read_keys(iam, user).await?;
        let Some(old) = find(&keys, req.key) else {
            return Ok(gone(user, req.key));
        };
        let old_id = old.id.clone().unwrap_or_default();
        let tags = self.live_tags(user).await?;
        let user_tags: Tags = tags.iter().cloned().collect();
        let current = rotation_tag_in(&tags, &old_id);
        // An exposed key stays inactive: it is replaced, never rotated while active.
        let quarantine = match &current {
            Some(Ok(t)) if t.phase == Phase::Quarantined => Some(t.clone()),
            _ => None,
        };
        if old.active == quarantine.is_some() {
            return Ok(Outcome::Skipped(if old.active {
                format!("{old_id} was quarantined as exposed but is active again; not replaced until it is deactivated")
            } else {
                format!("{old_id} is inactive; not rotated")
            }));
        }
        // A store that failed waits for its retry, here too (a plan made before the
        // failure was recorded must not make another key).
        if let Some(retry) = current
            .as_ref()
            .and_then(|c| c.as_ref().ok())
            .and_then(RotationTag::store_failed_at)
            .map(|f| f + req.store_retry)
            .filter(|r| now < *r)
        {
            return Ok(Outcome::Skipped(format!(
                "storing a new key for {old_id} failed before; retried after {}",
                retry.format("%Y-%m-%dT%H:%M:%SZ")
            )));
        }
        let (intent_since, wall) = match current {
            Some(Err(e)) => return Ok(Outcome::Skipped(e)),
            Some(Ok(t)) if t.phase == Phase::Rotating || t.quarantine_replacing() => {
                (Some(t.since), t.wall)
            }
            Some(Ok(t)) if t.phase == Phase::Quarantined && t.new_key.is_some() => {
                return Ok(Outcome::Skipped(format!(
                    "{old_id} was quarantined and is already replaced by {}",
                    t.new_key.as_deref().unwrap_or_default()
                )))
            }
            // A rotation whose store failed (stuck without a new key) starts afresh.
            Some(Ok(t)) if t.phase == Phase::Stuck && t.new_key.is_none() => (None, None),
            Some(Ok(t)) if !matches!(t.phase, Phase::Warned | Phase::Quarantined) => {
                return Ok(Outcome::Skipped(format!(
                    "{old_id} is already {}; not rotated again",
                    t.phase
                )))
            }
            _ => (None, None),
        };
        let target = Target {
            delivery: req.delivery,
            name: req.secret_name,
            kms_key_id: req.kms_key_id,
            owner_tag: &self.owner_tag,
            owner: req.owner,
        };
        let mut others: Vec<&AccessKeyState> = keys.iter().filter(|k| k.id != old.id).collect();
        if intent_since.is_some() {
            // An unfinished rotation: a new key may exist whose secret was or was not stored.
            // Only a key without a rotation tag of its own can be this rotation's new key.
            // And only a key AWS created right after the intent (real wall time): a key a
            // person made at another time is never taken for it, nor deleted.
            let untagged = |k: &&AccessKeyState| {
                k.active
                    && k.id
                        .as_deref()
                        .is_some_and(|id| rotation_tag_in(&tags, id).is_none())
            };
            if let Some(foreign) = others
                .iter()
                .copied()
                .find(|k| untagged(k) && !orphan_candidate(wall, k.created))
            {
                return Ok(Outcome::Skipped(format!(
                    "{} of {user} was created at {}, not right after this rotation's intent ({}): it is not the rotation's new key and is left alone; the rotation waits (finding rotation-stuck)",
                    foreign.label(),
                    foreign.created.format("%Y-%m-%dT%H:%M:%SZ"),
                    wall.map(|w| w.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_else(|| "time not recorded".into())
                )));
            }
            let candidate = others.iter().copied().find(untagged);
            if let Some(orphan) = candidate {
                let orphan_id = orphan.id.clone().unwrap_or_default();
                let stored =
                    delivery::stored_key_id(&self.clients, req.delivery, req.secret_name).await?;
                if stored.as_deref() == Some(orphan_id.as_str()) {
                    let (tag, event) =
                        stored_tag(&old_id, old, quarantine.as_ref(), &orphan_id, now);
                    self.write_phase_with(
                        user,
                        &tag,
                        event,
                        &format!(
                            "resumed: {orphan_id} is stored in {}; {old_id} {}",
                            req.secret_name,
                            if quarantine.is_some() {
                                "stays quarantined"
                            } else {
                                "drains"
                            }
                        ),
                        Some(&user_tags),
                    )
                    .await?;
                    return Ok(Outcome::Applied);
                }
                if orphan.last_used.is_some() {
                    return Err(Error::Other(format!(
                        "{orphan_id} of {user} appeared during an unfinished rotation and has been used, but it is not the key stored in {}; a person must check who holds it (then delete it or the tag {})",
                        req.secret_name,
                        RotationTag::tag_key(&old_id)
                    )));
                }
                let why = format!(
                    "{orphan_id} was created by an interrupted rotation but its secret was never stored; deleted, the rotation restarts"
                );
                self.delete_key_journaled(user, &orphan_id, &why).await?;
                self.phase_changed(user, PhaseKey::id(&orphan_id), "discarded", &why, None)
                    .await;
                others.retain(|k| k.id != orphan.id);
            }
        }
        if let Some(o) = others.first() {
            return Ok(Outcome::Skipped(format!(
                "{user} has another key {}; IAM allows two, so the rotation waits",
                o.label()
            )));
        }
        if intent_since.is_none() || wall.is_none() {
            // The wall time is real time, whatever clock the pass runs at: AWS's CreateDate
            // of the new key is compared with it. An intent without one (written by a
            // person or an older version) is written again with it before the key is made:
            // else a crash now would leave a new key no later pass could tell from a
            // person's.
            let tag = match &quarantine {
                Some(q) => RotationTag {
                    wall: Some(Utc::now()),
                    failed: None,
                    ..q.clone()
                },
                None => RotationTag {
                    key_id: old_id.clone(),
                    phase: Phase::Rotating,
                    since: intent_since.unwrap_or(now),
                    created: Some(old.created),
                    new_key: None,
                    wall: Some(Utc::now()),
                    failed: None,
                },
            };
            let why = if intent_since.is_some() {
                "intent (recorded again, with its wall time): a new key is about to be created"
            } else {
                "intent: a new key is about to be created"
            };
            self.write_phase(user, &tag, "rotating", why).await?;
            crash_point("intent");
        }
        let out = match iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .map_err(|e| aws_error("iam", "CreateAccessKey", e))
        {
            Ok(out) => out,
            Err(e) => {
                // Surely not created (e.g. a key made by someone meanwhile: LimitExceeded):
                // drop the intent, so that the next pass never takes someone else's key
                // for this rotation's. Maybe created: the intent stays for the recovery.
                if !e.may_have_been_applied() {
                    let back = match &quarantine {
                        Some(q) => RotationTag {
                            wall: None,
                            ..q.clone()
                        },
                        None => RotationTag {
                            key_id: old_id.clone(),
                            phase: Phase::Warned,
                            since: now,
                            created: Some(old.created),
                            new_key: None,
                            wall: None,
                            failed: None,
                        },
                    };
                    let withdrawn = if quarantine.is_some() {
                        self.write_tag(user, &back).await
                    } else {
                        self.write_phase(
                            user,
                            &back,
                            "warned",
                            &format!("CreateAccessKey failed: {e}"),
                        )
                        .await
                    };
                    if let Err(t) = withdrawn {
                        tracing::warn!(user, key = %old_id, error = %t, "could not withdraw the rotation intent");
                    }
                }
                return Err(e);
            }
        };
        let Some(mut ak) = out.access_key else {
            return Err(Error::Other(format!(
                "CreateAccessKey for {user} returned no key; the next pass checks for it"
            )));
        };
        let secret = SecretKey::new(std::mem::take(&mut ak.secret_access_key));
        let new_id = std::mem::take(&mut ak.access_key_id);
        let created = ak.create_date.as_ref().and_then(to_chrono).unwrap_or(now);
        drop(ak);
        crash_point("CreateAccessKey");
        let stored = delivery::store(
            &self.clients,
            &target,
            &NewKey {
                user,
                access_key_id: &new_id,
                secret: &secret,
                created,
            },
        )
        .await;
        drop(secret);
        // A store whose answer was lost may have been applied: if the new key is what is
        // stored, it is stored (deleting it now would leave consumers a deleted key).
        let stored = match stored {
            Err(e) if e.may_have_been_applied() => {
                match delivery::stored_key_id(&self.clients, req.delivery, req.secret_name).await {
                    Ok(Some(id)) if id == new_id => Ok(()),
                    _ => Err(e),
                }
            }
            other => other,
        };
        if let Err(e) = stored {
            // Never leave an active key whose secret is lost.
            let why = format!("its secret could not be stored in {}: {e}", req.secret_name);
            if let Err(d) = self.delete_key_journaled(user, &new_id, &why).await {
                // The intent stays: the next pass finds the new key as this interrupted
                // rotation's, deletes it, and tries again.
                return Err(Error::Other(format!(
                    "{new_id} of {user} was created but {why}; deleting it failed too ({d}): the next pass deletes it"
                )));
            }
            self.phase_changed(user, PhaseKey::id(&new_id), "discarded", &why, None)
                .await;
            // The old key stays as it was (active; or inactive and quarantined) and the
            // rotation is stuck until the retry: a store that failed once, e.g. for a
            // missing KMS key, fails again at once (no new key every pass). The owner and
            // the metrics hear of it.
            let retry = now + req.store_retry;
            let marked = store_failed_tag(&old_id, old, quarantine.as_ref(), now);
            let (left, what) = if quarantine.is_some() {
                ("stays inactive and quarantined", "replacement")
            } else {
                ("stays active", "rotation")
            };
            let reason = format!(
                "the new key {new_id} was deleted at once, {old_id} {left} and the {what} is retried after {}, because {why}",
                retry.format("%Y-%m-%dT%H:%M:%SZ")
            );
            if let Err(t) = self
                .write_phase_with(user, &marked, "stuck", &reason, Some(&user_tags))
                .await
            {
                tracing::warn!(user, key = %old_id, error = %t, "could not mark the failed rotation; the next pass retries it");
            }
            return Err(Error::Other(reason));
        }
        crash_point("store");
        let (tag, event) = stored_tag(&old_id, old, quarantine.as_ref(), &new_id, now);
        self.write_phase_with(
            user,
            &tag,
            event,
            &format!(
                "{new_id} stored in {}; {old_id} {}",
                req.secret_name,
                if quarantine.is_some() {
                    "stays quarantined (inactive)"
                } else {
                    "drains"
                }
            ),
            Some(&user_tags),
        )
        .await?;
        crash_point("draining");
        Ok(Outcome::Applied)
    }
}
