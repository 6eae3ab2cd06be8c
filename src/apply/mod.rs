//! Executing planned actions against IAM: the only module that writes.
//!
//! Rules: dry-run writes nothing; every write and would-be write is journaled; a key is
//! only touched by its AccessKeyId after it was resolved live and, for revocations,
//! after its last use was checked live; a user or key that vanished is skipped.

mod cis;
mod keys;
mod notices;
mod password;
mod quarantine;
mod retire;
mod rotation;
mod settle;

use std::sync::Arc;

use aws_sdk_iam::types::StatusType;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::{aws_error, Clients};
use crate::baseline::checks::days_between;
use crate::baseline::plan::{Action, PlannedAction};
use crate::config::{Config, Mode};
use crate::error::{Error, Result};
use crate::inventory::{to_chrono, AccountSnapshot};
use crate::journal::{Entry, Journal};
use crate::metrics::{Metrics, WriteEvent};
use crate::notify::Notifier;

/// How an action whose target was not found is reported: skipped, with this prefix.
pub const GONE: &str = "no longer exists";

/// What became of one planned action: the same type as the write's metric outcome.
pub use crate::metrics::WriteOutcome as Outcome;

use keys::mark_tag;
pub use notices::{notice_event, PhaseKey};
pub use password::password_reset_tag_value;
pub use quarantine::{
    is_quarantine_tag, quarantine_tag_value, quarantine_tag_value_of, EXPOSED_REASON,
};
pub use rotation::set_test_crash_after;
use rotation::RotateRequest;
pub use settle::{after_attempt, find_version, Settle, WriteKind};
use settle::{no_reread, not_found_is_none};

#[derive(Debug, Clone, Serialize)]
pub struct ActionResult {
    #[serde(flatten)]
    pub planned: PlannedAction,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Everything the applier needs; cheap to share between workers.
pub struct Applier {
    pub clients: Clients,
    pub mode: Mode,
    pub journal: Arc<Journal>,
    pub metrics: Option<Arc<Metrics>>,
    pub account_id: String,
    /// `aws`, `aws-cn`, ... (from the caller ARN).
    pub partition: String,
    /// IAM path for created policies and groups.
    pub path: String,
    /// The tag naming a user's owner (`notifications.owner_tag`), set on delivered secrets.
    pub owner_tag: String,
    /// `baseline.credentials.max_key_age_days`: the due date of a `key-expiring` notice.
    pub max_key_age_days: u32,
    /// Owner notifications (phase changes, exposed keys, password resets); `None`: none.
    pub notifier: Option<Arc<Notifier>>,
}

/// `arn:aws:sts::1:assumed-role/x/y` → `aws`.
pub fn partition_of(arn: &str) -> String {
    arn.split(':')
        .nth(1)
        .filter(|p| !p.is_empty())
        .unwrap_or("aws")
        .to_string()
}

impl Applier {
    pub fn new(
        clients: Clients,
        cfg: &Config,
        journal: Arc<Journal>,
        metrics: Option<Arc<Metrics>>,
        snap: &AccountSnapshot,
    ) -> Applier {
        Applier {
            clients,
            mode: cfg.mode,
            journal,
            metrics,
            account_id: snap.account_id.clone(),
            partition: partition_of(&snap.caller_arn),
            path: cfg.baseline.path.clone(),
            owner_tag: cfg.notifications.owner_tag.clone(),
            max_key_age_days: cfg.baseline.credentials.max_key_age_days,
            notifier: None,
        }
    }

    /// Raise owner notifications through `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<Notifier>) -> Applier {
        self.notifier = Some(notifier);
        self
    }

    /// The ARN of a customer-managed policy by name: the live one if known, else the one
    /// iam-warden creates.
    pub fn policy_arn(&self, snap: &AccountSnapshot, name: &str) -> String {
        snap.policies
            .get(name)
            .map(|p| p.arn.clone())
            .unwrap_or_else(|| {
                format!(
                    "arn:{}:iam::{}:policy{}{name}",
                    self.partition, self.account_id, self.path
                )
            })
    }

    /// Apply (or, in dry-run, journal) the actions in order.
    pub async fn apply_all(
        &self,
        snap: &AccountSnapshot,
        actions: &[PlannedAction],
        now: DateTime<Utc>,
    ) -> Vec<ActionResult> {
        let mut out = Vec::with_capacity(actions.len());
        for a in actions {
            out.push(self.apply(snap, a, now).await);
        }
        out
    }

    /// Apply one action and journal it.
    pub async fn apply(
        &self,
        snap: &AccountSnapshot,
        pa: &PlannedAction,
        now: DateTime<Utc>,
    ) -> ActionResult {
        let outcome = if self.mode == Mode::DryRun {
            self.would_notify(snap, pa).await;
            Outcome::DryRun
        } else if let Err(e) = self.intent(
            pa.action.name(),
            pa.action.user(),
            &pa.action.target(),
            &pa.reason,
        ) {
            Outcome::Failed(format!("not sent: {e}"))
        } else {
            match self.execute(snap, &pa.action, &pa.reason, now).await {
                Ok(o) => o,
                Err(e) if e.is_not_found() => Outcome::Skipped(format!("{GONE}: {e}")),
                Err(e) if e.is_limit_exceeded() => {
                    Outcome::Skipped(format!("IAM quota reached: {e}"))
                }
                Err(e) => Outcome::Failed(e.to_string()),
            }
        };
        self.recorded(pa, outcome)
    }

    /// Journal a planned action that is not applied, and why (held by the pre-flight
    /// gate, iam-warden's own identity, a group with an exempt member).
    pub fn record_skipped(&self, pa: &PlannedAction, why: &str) -> ActionResult {
        self.recorded(pa, Outcome::Skipped(why.to_string()))
    }

    /// Record what became of `pa` (log line, metric, journal) and report it.
    fn recorded(&self, pa: &PlannedAction, outcome: Outcome) -> ActionResult {
        self.record(
            pa.action.name(),
            pa.action.user(),
            &pa.action.target(),
            &pa.reason,
            &outcome,
        );
        ActionResult {
            planned: pa.clone(),
            outcome,
        }
    }

    /// Journal that a write is about to be sent, before it is (synced): a process killed
    /// between the call and [`Applier::record`] still leaves the write in the journal. A
    /// journal that cannot be written stops the write.
    fn intent(&self, action: &str, user: Option<&str>, target: &str, reason: &str) -> Result<()> {
        self.journal.record(&Entry {
            time: Utc::now(),
            account: self.account_id.clone(),
            user: user.map(str::to_string),
            action: action.to_string(),
            target: target.to_string(),
            reason: reason.to_string(),
            mode: self.mode.to_string(),
            outcome: crate::journal::INTENT.to_string(),
            error: None,
        })
    }

    /// Journal an event that is not a planned action (e.g. the breaker).
    pub fn record(
        &self,
        action: &str,
        user: Option<&str>,
        target: &str,
        reason: &str,
        outcome: &Outcome,
    ) {
        WriteEvent {
            action,
            outcome,
            user,
            target,
        }
        .emit(self.metrics.as_deref());
        let entry = Entry {
            time: Utc::now(),
            account: self.account_id.clone(),
            user: user.map(str::to_string),
            action: action.to_string(),
            target: target.to_string(),
            reason: reason.to_string(),
            mode: self.mode.to_string(),
            outcome: outcome.as_str().to_string(),
            error: outcome.detail().map(str::to_string),
        };
        if let Err(e) = self.journal.record(&entry) {
            // A journal that cannot be written is loud: the write already happened.
            tracing::error!(error = %e, "journal write failed");
        }
    }

    async fn execute(
        &self,
        snap: &AccountSnapshot,
        action: &Action,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let iam = &self.clients.iam;
        match action {
            Action::CreatePolicy { policy, document } => {
                let arn = self.policy_arn(snap, policy);
                let path = &self.path;
                let send = move || async move {
                    iam.create_policy()
                        .policy_name(policy)
                        .path(path)
                        .policy_document(document)
                        .description(
                            "iam-warden baseline policy (managed by iam-warden; edits are reverted)",
                        )
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("iam", "CreatePolicy", e))
                };
                let arn = &arn;
                let reread = move || async move { self.policy_has_document(arn, document).await };
                self.settle(WriteKind::Create, send, reread).await
            }
            Action::CreatePolicyVersion {
                policy_arn,
                document,
                delete_version,
                policy,
            } => {
                if let Some(v) = delete_version {
                    let target = format!("{policy_arn} {v}");
                    let reason = format!("{policy} has 5 versions; making room");
                    self.intent("delete_policy_version", None, &target, &reason)?;
                    let send = move || async move {
                        iam.delete_policy_version()
                            .policy_arn(policy_arn)
                            .version_id(v)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| aws_error("iam", "DeletePolicyVersion", e))
                    };
                    let r = self.settle(WriteKind::Remove, send, no_reread).await;
                    let o = match &r {
                        Ok(o) => o.clone(),
                        Err(e) => Outcome::Failed(e.to_string()),
                    };
                    self.record("delete_policy_version", None, &target, &reason, &o);
                    r?;
                }
                let send = move || async move {
                    iam.create_policy_version()
                        .policy_arn(policy_arn)
                        .policy_document(document)
                        .set_as_default(true)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("iam", "CreatePolicyVersion", e))
                };
                let reread =
                    move || async move { self.version_with_document(policy_arn, document).await };
                self.settle(WriteKind::Other, send, reread).await
            }
            Action::CreateGroup { group } => {
                let path = &self.path;
                let send = move || async move {
                    iam.create_group()
                        .group_name(group)
                        .path(path)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("iam", "CreateGroup", e))
                };
                let reread = move || async move {
                    match iam.get_group().group_name(group).send().await {
                        Ok(_) => Ok(Some(Outcome::Applied)),
                        Err(e) => not_found_is_none(aws_error("iam", "GetGroup", e)),
                    }
                };
                self.settle(WriteKind::Create, send, reread).await
            }
            Action::AttachGroupPolicy { group, policy } => {
                iam.attach_group_policy()
                    .group_name(group)
                    .policy_arn(self.policy_arn(snap, policy))
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "AttachGroupPolicy", e))?;
                Ok(Outcome::Applied)
            }
            Action::UpdatePasswordPolicy { policy: p } => {
                let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
                let mut req = iam
                    .update_account_password_policy()
                    .minimum_password_length(clamp(p.minimum_length))
                    .require_uppercase_characters(p.require_uppercase)
                    .require_lowercase_characters(p.require_lowercase)
                    .require_numbers(p.require_numbers)
                    .require_symbols(p.require_symbols)
                    .allow_users_to_change_password(p.allow_users_to_change)
                    .hard_expiry(p.hard_expiry);
                if p.reuse_prevention > 0 {
                    req = req.password_reuse_prevention(clamp(p.reuse_prevention));
                }
                if p.max_age_days > 0 {
                    req = req.max_password_age(clamp(p.max_age_days));
                }
                req.send()
                    .await
                    .map_err(|e| aws_error("iam", "UpdateAccountPasswordPolicy", e))?;
                Ok(Outcome::Applied)
            }
            Action::AddUserToGroup { user, group } => {
                let send = move || async move {
                    iam.add_user_to_group()
                        .user_name(user)
                        .group_name(group)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("iam", "AddUserToGroup", e))
                };
                let reread = move || async move {
                    let out = iam
                        .list_groups_for_user()
                        .user_name(user)
                        .send()
                        .await
                        .map_err(|e| aws_error("iam", "ListGroupsForUser", e))?;
                    Ok(out
                        .groups()
                        .iter()
                        .any(|g| g.group_name() == group)
                        .then_some(Outcome::Applied))
                };
                self.settle(WriteKind::Other, send, reread).await
            }
            Action::AttachUserPolicy { user, policy } => {
                iam.attach_user_policy()
                    .user_name(user)
                    .policy_arn(self.policy_arn(snap, policy))
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "AttachUserPolicy", e))?;
                Ok(Outcome::Applied)
            }
            Action::DeleteLoginProfile { user, unused_days } => {
                if let Some(limit) = unused_days {
                    // The report may be hours old: check the last sign-in live.
                    let u = iam
                        .get_user()
                        .user_name(user)
                        .send()
                        .await
                        .map_err(|e| aws_error("iam", "GetUser", e))?;
                    if let Some(used) = u
                        .user()
                        .and_then(|u| u.password_last_used())
                        .and_then(to_chrono)
                    {
                        let d = days_between(used, now);
                        if d <= i64::from(*limit) {
                            return Ok(Outcome::Skipped(format!(
                                "the password was used {d} days ago, within {limit} days"
                            )));
                        }
                    }
                }
                let send = move || async move {
                    iam.delete_login_profile()
                        .user_name(user)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("iam", "DeleteLoginProfile", e))
                };
                self.settle(WriteKind::Remove, send, no_reread).await
            }
            Action::DeactivateAccessKey {
                user,
                key,
                unused_days,
            } => {
                let (id, active, created) = match self.resolve_key(user, key).await? {
                    Ok(k) => k,
                    Err(skip) => return Ok(skip),
                };
                if !active {
                    return Ok(Outcome::Skipped(format!("{id} is already inactive")));
                }
                if let Some(limit) = unused_days {
                    if let Some(skip) = self.recently_used(&id, *limit, now).await? {
                        return Ok(skip);
                    }
                }
                iam.update_access_key()
                    .user_name(user)
                    .access_key_id(&id)
                    .status(StatusType::Inactive)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "UpdateAccessKey", e))?;
                self.mark_inactive(
                    user,
                    &id,
                    created,
                    now,
                    "deactivated by iam-warden; starts the delete-after clock",
                )
                .await;
                Ok(Outcome::Applied)
            }
            Action::DeleteAccessKey {
                user,
                key,
                unused_days,
            } => {
                let (id, active, _) = match self.resolve_key(user, key).await? {
                    Ok(k) => k,
                    Err(skip) => return Ok(skip),
                };
                if active {
                    return Ok(Outcome::Skipped(format!(
                        "{id} is active again; only inactive keys are deleted"
                    )));
                }
                if let Some(skip) = self.recently_used(&id, *unused_days, now).await? {
                    return Ok(skip);
                }
                let key_id = &id;
                let send = move || async move {
                    iam.delete_access_key()
                        .user_name(user)
                        .access_key_id(key_id)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_error("iam", "DeleteAccessKey", e))
                };
                let outcome = self.settle(WriteKind::Remove, send, no_reread).await?;
                if outcome == Outcome::Applied {
                    self.clear_mark_after_delete(user, &id, "the key it marked was deleted")
                        .await;
                }
                Ok(outcome)
            }
            Action::MarkKeyInactive { user, key } => {
                let (id, active, created) = match self.resolve_key(user, key).await? {
                    Ok(k) => k,
                    Err(skip) => return Ok(skip),
                };
                if active {
                    return Ok(Outcome::Skipped(format!("{id} is active again")));
                }
                iam.tag_user()
                    .user_name(user)
                    .tags(mark_tag(&id, now, created)?)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "TagUser", e))?;
                Ok(Outcome::Applied)
            }
            Action::ClearKeyMark { user, key_id } => {
                self.clear_mark(user, key_id).await?;
                Ok(Outcome::Applied)
            }
            Action::RequirePasswordReset { user, changed, .. } => {
                self.require_password_reset(user, *changed, now).await
            }
            Action::QuarantineAccessKey { user, key_id } => {
                self.quarantine_key(user, key_id, now).await
            }
            Action::RotateAccessKey {
                user,
                key,
                delivery,
                secret_name,
                kms_key_id,
                owner,
                store_retry_secs,
            } => {
                let req = RotateRequest {
                    user,
                    key,
                    delivery: *delivery,
                    secret_name,
                    kms_key_id: kms_key_id.as_deref(),
                    owner: owner.as_deref(),
                    store_retry: chrono::Duration::from_std(std::time::Duration::from_secs(
                        *store_retry_secs,
                    ))
                    .unwrap_or(chrono::Duration::MAX),
                };
                self.rotate(&req, now).await
            }
            Action::DeactivateRotatedKey {
                user,
                key,
                new_key,
                drain_quiet_secs,
                force,
            } => {
                self.deactivate_rotated(
                    user,
                    key,
                    new_key.as_deref(),
                    *drain_quiet_secs,
                    *force,
                    now,
                )
                .await
            }
            Action::DeleteRotatedKey { user, key } => self.delete_rotated(user, key).await,
            Action::SetRotationPhase {
                user,
                key,
                phase,
                new_key,
            } => {
                self.set_phase(user, key, *phase, new_key.as_deref(), reason, now)
                    .await
            }
            Action::ClearRotationTag { user, key_id } => {
                self.clear_rotation_tag(user, key_id).await
            }
            // Gone already: NoSuchEntity, reported as skipped (idempotent).
            Action::DeleteServerCertificate { name, .. } => {
                iam.delete_server_certificate()
                    .server_certificate_name(name)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "DeleteServerCertificate", e))?;
                Ok(Outcome::Applied)
            }
            Action::DetachUserPolicy { user, policy_arn } => {
                self.detach_policy(cis::Principal::User(user), policy_arn)
                    .await
            }
            Action::DetachGroupPolicy {
                group, policy_arn, ..
            } => {
                self.detach_policy(cis::Principal::Group(group), policy_arn)
                    .await
            }
            Action::DetachRolePolicy { role, policy_arn } => {
                self.detach_policy(cis::Principal::Role(role), policy_arn)
                    .await
            }
            Action::MoveUserPolicyToGroup {
                user,
                policy_arn,
                group,
            } => self.move_user_policy(user, policy_arn, group, reason).await,
        }
    }
}

impl From<Error> for Outcome {
    fn from(e: Error) -> Self {
        Outcome::Failed(e.to_string())
    }
}

#[cfg(test)]
mod tests;
