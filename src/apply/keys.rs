//! Access keys: resolved live before any write, last use checked live before a
//! revocation, and the inactive-since marks.

use aws_sdk_iam::types::StatusType;
use chrono::{DateTime, Utc};

use super::{Applier, Outcome};
use crate::aws::aws_error;
use crate::baseline::checks::days_between;
use crate::baseline::plan::{InactiveMark, KeyRef};
use crate::config::INACTIVE_SINCE_TAG_PREFIX;
use crate::error::{Error, Result};
use crate::inventory::{live, to_chrono};

impl Applier {
    /// Find the key live: by id, or (report keys) by its exact creation time. Never
    /// guesses: `Err(Outcome::Skipped)` when the key is not there any more.
    pub(super) async fn resolve_key(
        &self,
        user: &str,
        key: &KeyRef,
    ) -> Result<std::result::Result<(String, bool, DateTime<Utc>), Outcome>> {
        let out = self
            .clients
            .iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(|e| aws_error("iam", "ListAccessKeys", e))?;
        let found = out.access_key_metadata().iter().find(|m| match &key.id {
            Some(id) => m.access_key_id() == Some(id.as_str()),
            None => m
                .create_date()
                .and_then(to_chrono)
                .is_some_and(|c| (c - key.created).num_seconds().abs() < 1),
        });
        Ok(
            match found.and_then(|m| {
                Some((
                    m.access_key_id()?.to_string(),
                    m.status() == Some(&StatusType::Active),
                    m.create_date().and_then(to_chrono).unwrap_or(key.created),
                ))
            }) {
                Some(k) => Ok(k),
                None => Err(Outcome::Skipped(format!(
                    "{key} of {user} is not there any more; no other key is touched"
                ))),
            },
        )
    }

    /// Tag the user with the key's inactive-since mark after a deactivation (journaled as
    /// its own write). A failure is logged: the next pass marks the key instead.
    pub(super) async fn mark_inactive(
        &self,
        user: &str,
        id: &str,
        created: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: &str,
    ) {
        let target = format!("{INACTIVE_SINCE_TAG_PREFIX}{id}");
        let r = match mark_tag(id, now, created).and_then(|tag| {
            self.intent("tag_user", Some(user), &target, reason)
                .map(|_| tag)
        }) {
            Ok(tag) => self
                .clients
                .iam
                .tag_user()
                .user_name(user)
                .tags(tag)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_error("iam", "TagUser", e)),
            Err(e) => Err(e),
        };
        let outcome = match r {
            Ok(()) => Outcome::Applied,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.record("tag_user", Some(user), &target, reason, &outcome);
    }

    /// After a key's deletion: remove its `inactive-since` tag, journaled as its own write.
    /// A failure is logged and journaled: harmless, the next pass removes the stale tag.
    pub(super) async fn clear_mark_after_delete(&self, user: &str, id: &str, reason: &str) {
        let target = format!("{INACTIVE_SINCE_TAG_PREFIX}{id}");
        let r = match self.intent("untag_user", Some(user), &target, reason) {
            Ok(_) => self.clear_mark(user, id).await,
            Err(e) => Err(e),
        };
        let outcome = match r {
            Ok(()) => Outcome::Applied,
            Err(e) => {
                tracing::warn!(user, key = %id, error = %e, "could not remove the inactive-since tag; the next pass removes it");
                Outcome::Failed(e.to_string())
            }
        };
        self.record("untag_user", Some(user), &target, reason, &outcome);
    }

    pub(super) async fn clear_mark(&self, user: &str, id: &str) -> Result<()> {
        self.clients
            .iam
            .untag_user()
            .user_name(user)
            .tag_keys(format!("{INACTIVE_SINCE_TAG_PREFIX}{id}"))
            .send()
            .await
            .map_err(|e| aws_error("iam", "UntagUser", e))?;
        Ok(())
    }

    /// `Some(skip)` when the key was used within `limit` days (checked live).
    pub(super) async fn recently_used(
        &self,
        id: &str,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<Outcome>> {
        let used = live::key_last_used(&self.clients.iam, id).await?;
        Ok(used
            .map(|t| days_between(t, now))
            .filter(|d| *d <= i64::from(limit))
            .map(|d| Outcome::Skipped(format!("{id} was used {d} days ago, within {limit} days"))))
    }
}

pub(super) fn mark_tag(
    id: &str,
    since: DateTime<Utc>,
    created: DateTime<Utc>,
) -> Result<aws_sdk_iam::types::Tag> {
    aws_sdk_iam::types::Tag::builder()
        .key(format!("{INACTIVE_SINCE_TAG_PREFIX}{id}"))
        .value(InactiveMark::tag_value(since, created))
        .build()
        .map_err(|e| Error::Other(format!("cannot build the inactive-since tag: {e}")))
}
