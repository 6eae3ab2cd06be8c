//! Expired console passwords: require a reset at the next sign-in, and record it in the
//! user's `iam-warden/password-reset` tag so that the same password is not reset again.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Applier, Outcome};
use crate::aws::aws_error;
use crate::config::PASSWORD_RESET_TAG;
use crate::error::Result;
use crate::notify::NoticeEvent;

/// The `iam-warden/password-reset` value for a password last changed at `changed`, reset
/// required at `at`.
pub fn password_reset_tag_value(changed: DateTime<Utc>, at: DateTime<Utc>) -> String {
    format!(
        "changed={} at={}",
        changed.to_rfc3339_opts(SecondsFormat::Secs, true),
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

impl Applier {
    /// UpdateLoginProfile PasswordResetRequired (unless GetLoginProfile already shows it),
    /// then the tag. A user without a login profile any more is skipped.
    pub(super) async fn require_password_reset(
        &self,
        user: &str,
        changed: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let iam = &self.clients.iam;
        let profile = iam
            .get_login_profile()
            .user_name(user)
            .send()
            .await
            .map_err(|e| aws_error("iam", "GetLoginProfile", e))?;
        let already = profile
            .login_profile()
            .is_some_and(|p| p.password_reset_required());
        if !already {
            // Harmless to repeat: the pacing layer retries it.
            iam.update_login_profile()
                .user_name(user)
                .password_reset_required(true)
                .send()
                .await
                .map_err(|e| aws_error("iam", "UpdateLoginProfile", e))?;
        }
        // Its own journaled write. If it fails, the next pass finds the reset already
        // required (GetLoginProfile) and only writes the tag.
        self.tag_user_journaled(
            user,
            PASSWORD_RESET_TAG,
            &password_reset_tag_value(changed, now),
            "records the required password reset, so this password is not reset again",
        )
        .await;
        if !already {
            self.notify_owner(
                NoticeEvent::PasswordResetRequired,
                user,
                None,
                &format!(
                    "the console password was last changed on {}, longer ago than the password policy allows; a new password must be set at the next sign-in",
                    changed.format("%Y-%m-%d")
                ),
                None,
                None,
            )
            .await;
        }
        Ok(if already {
            Outcome::Skipped(
                "a password reset was already required; recorded in the tag only".into(),
            )
        } else {
            Outcome::Applied
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_value_format() {
        let changed: DateTime<Utc> = "2026-07-01T10:00:00.5Z".parse().unwrap();
        let at: DateTime<Utc> = "2026-12-01T15:30:17Z".parse().unwrap();
        assert_eq!(
            password_reset_tag_value(changed, at),
            "changed=2026-07-01T10:00:00Z at=2026-12-01T15:30:17Z"
        );
    }
}
