//! Live read of one user (after an event, or when the credential report lacks the user):
//! GetUser, ListAccessKeys (+ GetAccessKeyLastUsed per key), GetLoginProfile,
//! ListMFADevices, ListGroupsForUser, ListAttachedUserPolicies.

use chrono::{DateTime, Utc};

use super::{to_chrono, AccessKeyState, Observed, PasswordState, UserState};
use crate::aws::aws_error;
use crate::error::{Error, Result};

/// `Ok(None)` when the user does not exist (deleted since it was seen).
pub async fn read_user(iam: &aws_sdk_iam::Client, name: &str) -> Result<Option<UserState>> {
    match read_user_inner(iam, name).await {
        Ok(u) => Ok(Some(u)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

async fn read_user_inner(iam: &aws_sdk_iam::Client, name: &str) -> Result<UserState> {
    let (user, keys, login, mfa, groups, attached) = tokio::join!(
        iam.get_user().user_name(name).send(),
        read_keys(iam, name),
        iam.get_login_profile().user_name(name).send(),
        iam.list_mfa_devices().user_name(name).send(),
        iam.list_groups_for_user().user_name(name).send(),
        iam.list_attached_user_policies().user_name(name).send(),
    );
    let user = user.map_err(|e| aws_error("iam", "GetUser", e))?;
    let user = user
        .user()
        .ok_or_else(|| Error::Other(format!("GetUser {name} returned no user")))?;
    let password = match login {
        Ok(out) => Some(PasswordState {
            changed: out.login_profile().and_then(|p| to_chrono(p.create_date())),
            last_used: user.password_last_used().and_then(to_chrono),
        }),
        Err(e) => {
            let err = aws_error("iam", "GetLoginProfile", e);
            if !err.is_not_found() {
                return Err(err);
            }
            None
        }
    };
    let mfa = mfa.map_err(|e| aws_error("iam", "ListMFADevices", e))?;
    let groups = groups.map_err(|e| aws_error("iam", "ListGroupsForUser", e))?;
    let attached = attached.map_err(|e| aws_error("iam", "ListAttachedUserPolicies", e))?;
    Ok(UserState {
        name: user.user_name().to_string(),
        arn: user.arn().to_string(),
        path: user.path().to_string(),
        created: to_chrono(user.create_date()).unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        tags: user
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        groups: groups
            .groups()
            .iter()
            .map(|g| g.group_name().to_string())
            .collect(),
        attached_policies: attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect(),
        password,
        mfa_active: !mfa.mfa_devices().is_empty(),
        keys: keys?,
        observed: Observed::Live,
    })
}

/// The user's access keys with ids, oldest first, and when each was last used.
pub async fn read_keys(iam: &aws_sdk_iam::Client, name: &str) -> Result<Vec<AccessKeyState>> {
    let out = iam
        .list_access_keys()
        .user_name(name)
        .send()
        .await
        .map_err(|e| aws_error("iam", "ListAccessKeys", e))?;
    let mut metas: Vec<_> = out.access_key_metadata().iter().collect();
    metas.sort_by_key(|m| m.create_date().map(|d| (d.secs(), d.subsec_nanos())));
    let mut keys = Vec::with_capacity(metas.len());
    for (i, m) in metas.iter().enumerate() {
        let Some(id) = m.access_key_id() else {
            continue;
        };
        keys.push(AccessKeyState {
            id: Some(id.to_string()),
            slot: (i + 1).min(2) as u8,
            active: m.status() == Some(&aws_sdk_iam::types::StatusType::Active),
            created: m
                .create_date()
                .and_then(to_chrono)
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            last_used: key_last_used(iam, id).await?,
        });
    }
    Ok(keys)
}

/// When the key was last used (`None`: never).
pub async fn key_last_used(
    iam: &aws_sdk_iam::Client,
    key_id: &str,
) -> Result<Option<DateTime<Utc>>> {
    let out = iam
        .get_access_key_last_used()
        .access_key_id(key_id)
        .send()
        .await
        .map_err(|e| aws_error("iam", "GetAccessKeyLastUsed", e))?;
    Ok(out
        .access_key_last_used()
        .and_then(|l| l.last_used_date())
        .and_then(to_chrono))
}
