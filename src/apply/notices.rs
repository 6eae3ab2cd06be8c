//! Owner notifications from the applier's seams: a rotation phase change
//! ([`Applier::phase_changed`]), an exposed key (the quarantine) and a required password
//! reset. The owner comes from the user's tags (`notifications.owner_tag`), taken from the
//! caller when at hand, else read live. Without a notifier (one-shot reads, tests) nothing
//! is raised. A notice never holds a secret: it names the key by its id only.

use chrono::{DateTime, Duration, Utc};

use super::Applier;
use crate::baseline::plan::{Action, PlannedAction, RotationTag};
use crate::inventory::{AccountSnapshot, Tags};
use crate::notify::NoticeEvent;

/// The key a phase event is about, with its CreateDate when known (the due date of a
/// `key-expiring` notice is CreateDate + `max_key_age_days`).
#[derive(Debug, Clone, Copy)]
pub struct PhaseKey<'a> {
    pub key_id: &'a str,
    pub created: Option<DateTime<Utc>>,
}

impl<'a> PhaseKey<'a> {
    pub fn of(tag: &'a RotationTag) -> PhaseKey<'a> {
        PhaseKey {
            key_id: &tag.key_id,
            created: tag.created,
        }
    }

    pub fn id(key_id: &'a str) -> PhaseKey<'a> {
        PhaseKey {
            key_id,
            created: None,
        }
    }
}

/// The notice a rotation phase event raises (`None`: internal steps such as the intent or
/// a discarded orphan key).
pub fn notice_event(phase_event: &str) -> Option<NoticeEvent> {
    Some(match phase_event {
        "warned" => NoticeEvent::KeyExpiring,
        "draining" | "replaced" => NoticeEvent::KeyRotated,
        "deactivated" => NoticeEvent::KeyDeactivated,
        "deleted" => NoticeEvent::KeyDeleted,
        "reactivated" => NoticeEvent::KeyReactivated,
        "stuck" => NoticeEvent::RotationStuck,
        _ => return None,
    })
}

impl Applier {
    /// Dry-run: the notice `pa` would raise, journaled and counted as `dry_run` by the
    /// notifier (never delivered). The owner from `snap`'s copy of the user, else live.
    pub(super) async fn would_notify(&self, snap: &AccountSnapshot, pa: &PlannedAction) {
        if self.notifier.is_none() {
            return;
        }
        let (event, user, key) = match &pa.action {
            Action::SetRotationPhase {
                user, key, phase, ..
            } => (notice_event(phase.as_str()), user, Some(key)),
            Action::RotateAccessKey { user, key, .. } => {
                (Some(NoticeEvent::KeyRotated), user, Some(key))
            }
            Action::DeactivateRotatedKey { user, key, .. } => {
                (Some(NoticeEvent::KeyDeactivated), user, Some(key))
            }
            Action::DeleteRotatedKey { user, key } => {
                (Some(NoticeEvent::KeyDeleted), user, Some(key))
            }
            Action::RequirePasswordReset { user, .. } => {
                (Some(NoticeEvent::PasswordResetRequired), user, None)
            }
            _ => return,
        };
        let Some(event) = event else {
            return;
        };
        let due = match (event, key) {
            (NoticeEvent::KeyExpiring, Some(k)) => {
                Some(k.created + Duration::days(i64::from(self.max_key_age_days)))
            }
            _ => None,
        };
        let label = key.map(|k| k.id.clone().unwrap_or_else(|| k.to_string()));
        self.notify_owner(
            event,
            user,
            label.as_deref(),
            &format!("dry-run (nothing was changed): {}", pa.reason),
            due,
            snap.user(user).map(|u| &u.tags),
        )
        .await;
    }

    /// The owner's notice for a phase event (see [`notice_event`]).
    pub(super) async fn notify_phase(
        &self,
        user: &str,
        key: PhaseKey<'_>,
        event: &str,
        reason: &str,
        tags: Option<&Tags>,
    ) {
        let Some(ev) = notice_event(event) else {
            return;
        };
        let due = match ev {
            NoticeEvent::KeyExpiring => key
                .created
                .map(|c| c + Duration::days(i64::from(self.max_key_age_days))),
            _ => None,
        };
        self.notify_owner(ev, user, Some(key.key_id), reason, due, tags)
            .await;
    }

    /// Raise one notice to `user`'s owner (journaled and counted; delivered in the
    /// background in mode enforce). `tags`: the user's tags if at hand, else read live
    /// (unreadable: the default owner, and a warning).
    pub async fn notify_owner(
        &self,
        event: NoticeEvent,
        user: &str,
        key_id: Option<&str>,
        reason: &str,
        due: Option<DateTime<Utc>>,
        tags: Option<&Tags>,
    ) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let read;
        let tags = match tags {
            Some(t) => t,
            None => {
                read = match self.live_tags(user).await {
                    Ok(v) => v.into_iter().collect(),
                    Err(e) => {
                        tracing::warn!(user, error = %e, "cannot read the user's tags for the owner of a notice; the default owner is used");
                        Tags::default()
                    }
                };
                &read
            }
        };
        let mut notice = notifier.notice(event, user, tags, reason, Utc::now());
        if let Some(k) = key_id {
            notice = notice.with_key(k);
        }
        if let Some(d) = due {
            notice = notice.with_due(d);
        }
        notifier.notify(notice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_events_map_to_notices() {
        let table = [
            ("warned", Some(NoticeEvent::KeyExpiring)),
            ("rotating", None),
            ("draining", Some(NoticeEvent::KeyRotated)),
            ("replaced", Some(NoticeEvent::KeyRotated)),
            ("stuck", Some(NoticeEvent::RotationStuck)),
            ("deactivated", Some(NoticeEvent::KeyDeactivated)),
            ("deleted", Some(NoticeEvent::KeyDeleted)),
            ("discarded", None),
            ("reactivated", Some(NoticeEvent::KeyReactivated)),
        ];
        for (phase, want) in table {
            assert_eq!(notice_event(phase), want, "{phase}");
        }
    }
}
