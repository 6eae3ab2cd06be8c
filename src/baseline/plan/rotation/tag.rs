//! The rotation tag `iam-warden/rotation/<AccessKeyId>`: the phase of one key, parsed
//! and written.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::ROTATION_TAG_PREFIX;
use crate::inventory::{AccessKeyState, UserState};

/// The rotation phase of one access key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The owner was told the key reaches the age limit soon.
    Warned,
    /// Intent written; CreateAccessKey may or may not have happened.
    Rotating,
    /// A new key exists and is stored; the old key waits for the drain proof.
    Draining,
    /// Grace passed and the old key is still used (reported once).
    Stuck,
    /// Deactivated by the rotation; deleted after `recovery_days`.
    Deactivated,
    /// Reported exposed and deactivated at once (value written by the quarantine:
    /// `phase=quarantined since=<RFC 3339>`). Never reactivated by iam-warden; replaced by
    /// a new key when a delivery is configured; deleted after `recovery_days`.
    Quarantined,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Warned,
        Phase::Rotating,
        Phase::Draining,
        Phase::Stuck,
        Phase::Deactivated,
        Phase::Quarantined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Warned => "warned",
            Phase::Rotating => "rotating",
            Phase::Draining => "draining",
            Phase::Stuck => "stuck",
            Phase::Deactivated => "deactivated",
            Phase::Quarantined => "quarantined",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Phase, String> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown phase {s:?} (warned, rotating, draining, stuck, deactivated, quarantined)")
            })
    }
}

/// One `iam-warden/rotation/<AccessKeyId>` tag, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationTag {
    pub key_id: String,
    pub phase: Phase,
    /// When the key entered the phase.
    pub since: DateTime<Utc>,
    /// The key's CreateDate (to match credential-report keys, which have no id).
    pub created: Option<DateTime<Utc>>,
    /// The new key of the rotation (draining, stuck, deactivated; quarantined once
    /// replaced).
    pub new_key: Option<String>,
    /// The real wall-clock time at which the rotation's intent was written (never a test
    /// clock): a key is taken for this rotation's orphan new key only if AWS created it
    /// shortly after. Set while rotating (and on a quarantined key being replaced).
    pub wall: Option<DateTime<Utc>>,
    /// When the store of the new key last failed (the new key was deleted at once): the
    /// rotation, or the replacement of a quarantined key, waits `rotation.store_retry`
    /// after it. See [`RotationTag::store_failed_at`].
    pub failed: Option<DateTime<Utc>>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An AccessKeyId as IAM makes them: 16 to 128 upper-case letters and digits.
pub fn is_access_key_id(s: &str) -> bool {
    (16..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

impl RotationTag {
    pub fn tag_key(key_id: &str) -> String {
        format!("{ROTATION_TAG_PREFIX}{key_id}")
    }

    /// The tag value (letters, digits, space and `=:-` only; under 256 characters).
    pub fn value(&self) -> String {
        let mut v = format!("phase={} since={}", self.phase, rfc3339(self.since));
        if let Some(c) = self.created {
            v.push_str(&format!(" created={}", rfc3339(c)));
        }
        if let Some(n) = &self.new_key {
            v.push_str(&format!(" new={n}"));
        }
        if let Some(w) = self.wall {
            v.push_str(&format!(" wall={}", rfc3339(w)));
        }
        if let Some(f) = self.failed {
            v.push_str(&format!(" failed={}", rfc3339(f)));
        }
        v
    }

    /// Parse the tag `key` = `value`; `None` when the key is not a rotation tag.
    pub fn parse(key: &str, value: &str) -> Option<Result<RotationTag, String>> {
        let key_id = key.strip_prefix(ROTATION_TAG_PREFIX)?;
        Some(Self::parse_value(key_id, value).map_err(|e| {
            format!("tag {key} = {value:?} is malformed ({e}); fix or remove it to resume the rotation of this key")
        }))
    }

    fn parse_value(key_id: &str, value: &str) -> Result<RotationTag, String> {
        if !is_access_key_id(key_id) {
            return Err(format!("{key_id:?} is not an AccessKeyId"));
        }
        let time = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| format!("{s:?} is not an RFC 3339 time"))
        };
        let (mut phase, mut since, mut created, mut new_key, mut wall, mut failed) =
            (None, None, None, None, None, None);
        for part in value.split_whitespace() {
            match part.split_once('=') {
                Some(("phase", p)) => phase = Some(p.parse::<Phase>()?),
                Some(("since", t)) => since = Some(time(t)?),
                Some(("created", t)) => created = Some(time(t)?),
                Some(("wall", t)) => wall = Some(time(t)?),
                Some(("failed", t)) => failed = Some(time(t)?),
                Some(("new", n)) if is_access_key_id(n) => new_key = Some(n.to_string()),
                Some(("new", n)) => return Err(format!("new={n:?} is not an AccessKeyId")),
                _ => return Err(format!("unexpected {part:?}")),
            }
        }
        let phase = phase.ok_or("no phase=")?;
        let since = since.ok_or("no since=")?;
        if phase == Phase::Draining && new_key.is_none() {
            return Err("a draining key needs new=<AccessKeyId>".into());
        }
        Ok(RotationTag {
            key_id: key_id.to_string(),
            phase,
            since,
            created,
            new_key,
            wall,
            failed,
        })
    }

    /// When the store of this key's new key last failed, if that is what the tag records:
    /// a rotation `stuck` without a new key (`failed=`, or for a tag written before it
    /// existed, `since`), or a quarantined key whose replacement could not be stored.
    /// Both wait `rotation.store_retry` after it, the key left as it was (active, or
    /// inactive and quarantined).
    pub fn store_failed_at(&self) -> Option<DateTime<Utc>> {
        match self.phase {
            _ if self.new_key.is_some() => None,
            Phase::Stuck => Some(self.failed.unwrap_or(self.since)),
            Phase::Quarantined => self.failed,
            _ => None,
        }
    }

    /// A quarantined key whose replacement was started (intent written) but not stored.
    pub fn quarantine_replacing(&self) -> bool {
        self.phase == Phase::Quarantined && self.wall.is_some() && self.new_key.is_none()
    }

    /// Does this tag belong to `k` (by id, or for a report key by creation time)?
    pub fn matches(&self, k: &AccessKeyState) -> bool {
        match &k.id {
            Some(id) => *id == self.key_id,
            None => self
                .created
                .is_some_and(|c| (c - k.created).num_seconds().abs() < 1),
        }
    }
}

/// The user's rotation tags: parsed ones, and the malformed ones as (tag key, error).
pub fn rotation_tags(user: &UserState) -> (Vec<RotationTag>, Vec<(String, String)>) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for (k, v) in user.tags.iter() {
        match RotationTag::parse(k, v) {
            Some(Ok(t)) => ok.push(t),
            Some(Err(e)) => bad.push((k.clone(), e)),
            None => {}
        }
    }
    (ok, bad)
}
