//! Executing planned actions against IAM: the only module that writes.
//!
//! Rules: dry-run writes nothing; every write and would-be write is journaled; a key is
//! only touched by its AccessKeyId after it was resolved live and, for revocations,
//! after its last use was checked live; a user or key that vanished is skipped.

use std::sync::Arc;

use aws_sdk_iam::types::StatusType;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::{aws_error, Clients};
use crate::baseline::checks::days_between;
use crate::baseline::plan::{Action, InactiveMark, KeyRef, PlannedAction};
use crate::config::INACTIVE_SINCE_TAG_PREFIX;
use crate::config::{Config, Mode};
use crate::error::{Error, Result};
use crate::inventory::{live, to_chrono, AccountSnapshot};
use crate::journal::{Entry, Journal};
use crate::metrics::{Metrics, WriteOutcome};

/// What became of one planned action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    DryRun,
    /// Not done, on purpose (vanished user, key used recently, quota...).
    Skipped(String),
    Failed(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::DryRun => "dry_run",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            Outcome::Skipped(s) | Outcome::Failed(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn metric(&self) -> WriteOutcome {
        match self {
            Outcome::Applied => WriteOutcome::Applied,
            Outcome::DryRun => WriteOutcome::DryRun,
            Outcome::Skipped(_) => WriteOutcome::Skipped,
            Outcome::Failed(_) => WriteOutcome::Failed,
        }
    }
}

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
        }
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
            Outcome::DryRun
        } else {
            match self.execute(snap, &pa.action, now).await {
                Ok(o) => o,
                Err(e) if e.is_not_found() => Outcome::Skipped(format!("no longer exists: {e}")),
                Err(e) if e.is_limit_exceeded() => {
                    Outcome::Skipped(format!("IAM quota reached: {e}"))
                }
                Err(e) => Outcome::Failed(e.to_string()),
            }
        };
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

    /// Journal an event that is not a planned action (e.g. the breaker).
    pub fn record(
        &self,
        action: &str,
        user: Option<&str>,
        target: &str,
        reason: &str,
        outcome: &Outcome,
    ) {
        if let Some(m) = &self.metrics {
            m.write(action, outcome.metric(), user, target);
        } else {
            tracing::info!(action, user, target, outcome = outcome.label(), "write");
        }
        let entry = Entry {
            time: Utc::now(),
            account: self.account_id.clone(),
            user: user.map(str::to_string),
            action: action.to_string(),
            target: target.to_string(),
            reason: reason.to_string(),
            mode: self.mode.to_string(),
            outcome: outcome.label().to_string(),
            error: outcome.detail(),
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
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let iam = &self.clients.iam;
        match action {
            Action::CreatePolicy { policy, document } => {
                let r = iam
                    .create_policy()
                    .policy_name(policy)
                    .path(&self.path)
                    .policy_document(document)
                    .description(
                        "iam-warden baseline policy (managed by iam-warden; edits are reverted)",
                    )
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "CreatePolicy", e));
                already_exists_is_ok(r.map(|_| ()))
            }
            Action::CreatePolicyVersion {
                policy_arn,
                document,
                delete_version,
                policy,
            } => {
                if let Some(v) = delete_version {
                    let r = iam
                        .delete_policy_version()
                        .policy_arn(policy_arn)
                        .version_id(v)
                        .send()
                        .await
                        .map_err(|e| aws_error("iam", "DeletePolicyVersion", e));
                    let o = match &r {
                        Ok(_) => Outcome::Applied,
                        Err(e) => Outcome::Failed(e.to_string()),
                    };
                    self.record(
                        "delete_policy_version",
                        None,
                        &format!("{policy_arn} {v}"),
                        &format!("{policy} has 5 versions; making room"),
                        &o,
                    );
                    r?;
                }
                iam.create_policy_version()
                    .policy_arn(policy_arn)
                    .policy_document(document)
                    .set_as_default(true)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "CreatePolicyVersion", e))?;
                Ok(Outcome::Applied)
            }
            Action::CreateGroup { group } => {
                let r = iam
                    .create_group()
                    .group_name(group)
                    .path(&self.path)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "CreateGroup", e));
                already_exists_is_ok(r.map(|_| ()))
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
                iam.add_user_to_group()
                    .user_name(user)
                    .group_name(group)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "AddUserToGroup", e))?;
                Ok(Outcome::Applied)
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
                iam.delete_login_profile()
                    .user_name(user)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "DeleteLoginProfile", e))?;
                Ok(Outcome::Applied)
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
                iam.delete_access_key()
                    .user_name(user)
                    .access_key_id(&id)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "DeleteAccessKey", e))?;
                if let Err(e) = self.clear_mark(user, &id).await {
                    // Harmless: the next pass removes the stale tag.
                    tracing::warn!(user, key = %id, error = %e, "could not remove the inactive-since tag");
                }
                Ok(Outcome::Applied)
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
        }
    }

    /// Find the key live: by id, or (report keys) by its exact creation time. Never
    /// guesses: `Err(Outcome::Skipped)` when the key is not there any more.
    async fn resolve_key(
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
    async fn mark_inactive(
        &self,
        user: &str,
        id: &str,
        created: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: &str,
    ) {
        let r = match mark_tag(id, now, created) {
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
        self.record(
            "tag_user",
            Some(user),
            &format!("{INACTIVE_SINCE_TAG_PREFIX}{id}"),
            reason,
            &outcome,
        );
    }

    async fn clear_mark(&self, user: &str, id: &str) -> Result<()> {
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
    async fn recently_used(
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

fn mark_tag(
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

fn already_exists_is_ok(r: Result<()>) -> Result<Outcome> {
    match r {
        Ok(()) => Ok(Outcome::Applied),
        Err(e) if e.aws_code() == Some("EntityAlreadyExists") => {
            Ok(Outcome::Skipped("already exists".into()))
        }
        Err(e) => Err(e),
    }
}

impl From<Error> for Outcome {
    fn from(e: Error) -> Self {
        Outcome::Failed(e.to_string())
    }
}
