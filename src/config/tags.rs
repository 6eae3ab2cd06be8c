//! The names of the IAM user tags iam-warden reads and writes (its crash-surviving state).

/// The tag that classifies a user's access (`console`, `programmatic`, `both`).
pub const ACCESS_TAG: &str = "iam-warden/access";
/// The tag that exempts a user when its value is `true`.
pub const EXEMPT_TAG: &str = "iam-warden/exempt";

/// User tag prefix recording since when a key is inactive: the key
/// `iam-warden/inactive-since/<AccessKeyId>` has the value
/// `since=<RFC 3339> created=<the key's CreateDate, RFC 3339>`. It starts the
/// `delete_inactive_key_after_days` clock and survives restarts.
pub const INACTIVE_SINCE_TAG_PREFIX: &str = "iam-warden/inactive-since/";
