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

/// User tag prefix holding the rotation phase of one access key: the key
/// `iam-warden/rotation/<AccessKeyId>`, the value `phase=<phase> since=<RFC 3339>` plus
/// phase-specific fields (e.g. `new=<AccessKeyId>`). The lifecycle continues from it after
/// a restart or on a second replica.
pub const ROTATION_TAG_PREFIX: &str = "iam-warden/rotation/";

/// The default user tag naming the owner to notify (`notifications.owner_tag`).
pub const OWNER_TAG: &str = "iam-warden/owner";

/// User tag recording that iam-warden required a password reset: the value is
/// `changed=<the password's last change, RFC 3339> at=<when the reset was required>`. A
/// password whose last change is the one recorded is not reset again; a newer password
/// that grows too old is.
pub const PASSWORD_RESET_TAG: &str = "iam-warden/password-reset";

/// The user tag that lets a change held by the pre-flight gate (`safety.preview_window`)
/// through when its value is `true`: the operator accepts that the user's recent calls
/// would have been denied.
pub const ACCEPT_IMPACT_TAG: &str = "iam-warden/accept-impact";
