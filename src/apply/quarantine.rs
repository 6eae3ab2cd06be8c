//! Exposed keys: deactivate exactly the named key and record the quarantine in the key's
//! rotation tag (`iam-warden/rotation/<KeyId>` = `phase=quarantined since=<RFC 3339>`).

use aws_sdk_iam::types::{StatusType, Tag};
use chrono::{DateTime, SecondsFormat, Utc};

use super::{Applier, Outcome};
use crate::aws::aws_error;
use crate::baseline::plan::KeyRef;
use crate::config::ROTATION_TAG_PREFIX;
use crate::error::{Error, Result};

/// The journal reason of every quarantine write.
pub const EXPOSED_REASON: &str = "exposed";

/// The rotation phase a quarantined key is in.
pub const QUARANTINED_PHASE: &str = "quarantined";

/// The rotation tag value of a key quarantined at `since`.
pub fn quarantine_tag_value(since: DateTime<Utc>) -> String {
    format!(
        "phase={QUARANTINED_PHASE} since={}",
        since.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// The rotation tag value of a key created at `created`, quarantined at `since`: the
/// key's CreateDate lets plans made from the credential report (whose keys have no id)
/// match the tag to the key.
pub fn quarantine_tag_value_of(since: DateTime<Utc>, created: DateTime<Utc>) -> String {
    format!(
        "{} created={}",
        quarantine_tag_value(since),
        created.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// Whether a rotation tag value already records a quarantine.
pub fn is_quarantine_tag(value: &str) -> bool {
    value
        .split_whitespace()
        .any(|f| f == format!("phase={QUARANTINED_PHASE}"))
}

impl Applier {
    /// Deactivate `key_id` of `user` (resolved live: a key that is not the user's any more
    /// is skipped, no other key is touched) and tag it quarantined. Idempotent: an
    /// inactive key is not updated again, an existing quarantine tag is kept (its `since`
    /// is when the key was first quarantined).
    pub(super) async fn quarantine_key(
        &self,
        user: &str,
        key_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let key = KeyRef {
            id: Some(key_id.to_string()),
            slot: 0,
            created: now,
        };
        let (id, active, created) = match self.resolve_key(user, &key).await? {
            Ok(k) => k,
            Err(skip) => return Ok(skip),
        };
        let iam = &self.clients.iam;
        if active {
            // UpdateAccessKey is harmless to repeat: the pacing layer retries it.
            iam.update_access_key()
                .user_name(user)
                .access_key_id(&id)
                .status(StatusType::Inactive)
                .send()
                .await
                .map_err(|e| aws_error("iam", "UpdateAccessKey", e))?;
        }
        self.tag_quarantined(user, &id, created, now).await;
        Ok(if active {
            Outcome::Applied
        } else {
            Outcome::Skipped(format!("{id} is already inactive"))
        })
    }

    /// Write the key's quarantine tag unless it is there (journaled as its own write). A
    /// failure is logged and journaled: the key is inactive, which is what matters.
    async fn tag_quarantined(
        &self,
        user: &str,
        id: &str,
        created: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let tag_key = format!("{ROTATION_TAG_PREFIX}{id}");
        let iam = &self.clients.iam;
        let existing = iam
            .list_user_tags()
            .user_name(user)
            .send()
            .await
            .map_err(|e| aws_error("iam", "ListUserTags", e))
            .map(|out| {
                out.tags()
                    .iter()
                    .any(|t| t.key() == tag_key && is_quarantine_tag(t.value()))
            });
        if matches!(existing, Ok(true)) {
            return;
        }
        self.tag_user_journaled(
            user,
            &tag_key,
            &quarantine_tag_value_of(now, created),
            EXPOSED_REASON,
        )
        .await;
    }

    /// TagUser `key` = `value` as its own journaled write (intent, then the outcome).
    /// Returns whether it was applied; a failure is journaled and logged, not returned.
    pub(super) async fn tag_user_journaled(
        &self,
        user: &str,
        key: &str,
        value: &str,
        reason: &str,
    ) -> bool {
        let r = match Tag::builder()
            .key(key)
            .value(value)
            .build()
            .map_err(|e| Error::Other(format!("cannot build the tag {key}: {e}")))
            .and_then(|tag| {
                self.intent("tag_user", Some(user), key, reason)
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
        let applied = outcome == Outcome::Applied;
        self.record("tag_user", Some(user), key, reason, &outcome);
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_tag_value_format() {
        let since: DateTime<Utc> = "2026-12-01T15:30:17.250Z".parse().unwrap();
        let v = quarantine_tag_value(since);
        assert_eq!(v, "phase=quarantined since=2026-12-01T15:30:17Z");
        assert!(is_quarantine_tag(&v));
        assert!(is_quarantine_tag("since=x phase=quarantined new=AKIA1"));
        assert!(!is_quarantine_tag(
            "phase=draining since=2026-12-01T15:30:17Z"
        ));
        assert!(!is_quarantine_tag("phase=quarantinedx"));
        assert!(!is_quarantine_tag(""));
        let created: DateTime<Utc> = "2026-08-01T10:00:00Z".parse().unwrap();
        let v = quarantine_tag_value_of(since, created);
        assert_eq!(
            v,
            "phase=quarantined since=2026-12-01T15:30:17Z created=2026-08-01T10:00:00Z"
        );
        assert!(is_quarantine_tag(&v));
    }
}
