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
use crate::inventory::{decode_policy_document, live, to_chrono, AccountSnapshot};
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
                    self.record(
                        "delete_policy_version",
                        None,
                        &format!("{policy_arn} {v}"),
                        &format!("{policy} has 5 versions; making room"),
                        &o,
                    );
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
                if let Err(e) = self.clear_mark(user, &id).await {
                    // Harmless: the next pass removes the stale tag.
                    tracing::warn!(user, key = %id, error = %e, "could not remove the inactive-since tag");
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
        }
    }

    /// Send a write whose repetition is not harmless (a create, a delete, AddUserToGroup)
    /// until its state is reached. After a failure that may have been applied (5xx, lost or
    /// unreadable answer, timeout) the state is re-read (`reread`: `Some(outcome)` when it
    /// is settled) and the write is sent again only when it was not reached, at most
    /// `aws.max_attempts` times in all. A repeat meeting "already exists" (creates) or "no
    /// such entity" (removals) means an earlier attempt did it: `applied`.
    async fn settle<S, SF, C, CF>(
        &self,
        kind: WriteKind,
        mut send: S,
        mut reread: C,
    ) -> Result<Outcome>
    where
        S: FnMut() -> SF,
        SF: std::future::Future<Output = Result<()>>,
        C: FnMut() -> CF,
        CF: std::future::Future<Output = Result<Option<Outcome>>>,
    {
        let max = self.clients.pacer.max_attempts.max(1);
        let mut attempt = 1u32;
        loop {
            let first = send().await;
            let err = match after_attempt(kind, attempt > 1, first) {
                Settle::Done(o) => return Ok(o),
                Settle::Fail(e) => return Err(e),
                Settle::ReRead(e) => e,
            };
            match reread().await {
                Ok(Some(o)) => return Ok(o),
                Ok(None) => {}
                Err(re) => {
                    tracing::warn!(error = %re, "could not re-read after an unclear write failure");
                    return Err(err);
                }
            }
            if attempt >= max {
                return Err(err);
            }
            tracing::info!(error = %err, attempt, "write not applied after an unclear failure; sending it again");
            tokio::time::sleep(self.clients.pacer.backoff.delay(attempt)).await;
            attempt += 1;
        }
    }

    /// After an unclear CreatePolicy: does the policy exist, with `document` as its default
    /// version?
    async fn policy_has_document(&self, arn: &str, document: &str) -> Result<Option<Outcome>> {
        let iam = &self.clients.iam;
        let p = match iam.get_policy().policy_arn(arn).send().await {
            Ok(p) => p,
            Err(e) => return not_found_is_none(aws_error("iam", "GetPolicy", e)),
        };
        let Some(v) = p.policy().and_then(|p| p.default_version_id()) else {
            return Ok(None);
        };
        let doc = iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(v)
            .send()
            .await
            .map_err(|e| aws_error("iam", "GetPolicyVersion", e))?;
        let live = doc.policy_version().and_then(|v| v.document());
        Ok(Some(if same_document(live, document) {
            Outcome::Applied
        } else {
            Outcome::Skipped("exists with another document; the next pass updates it".into())
        }))
    }

    /// After an unclear CreatePolicyVersion: is there a version with `document`? If it is
    /// not the default, make it the default (harmless to repeat) instead of creating another.
    async fn version_with_document(&self, arn: &str, document: &str) -> Result<Option<Outcome>> {
        let iam = &self.clients.iam;
        let list = iam
            .list_policy_versions()
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| aws_error("iam", "ListPolicyVersions", e))?;
        let mut versions = Vec::new();
        for v in list.versions() {
            let Some(id) = v.version_id() else { continue };
            // ListPolicyVersions may leave the document out: read each (at most 5).
            let doc = match v.document() {
                Some(d) => Some(d.to_string()),
                None => iam
                    .get_policy_version()
                    .policy_arn(arn)
                    .version_id(id)
                    .send()
                    .await
                    .map_err(|e| aws_error("iam", "GetPolicyVersion", e))?
                    .policy_version()
                    .and_then(|v| v.document())
                    .map(str::to_string),
            };
            versions.push((id.to_string(), v.is_default_version(), doc));
        }
        let Some((id, is_default)) = find_version(&versions, document) else {
            return Ok(None);
        };
        if !is_default {
            iam.set_default_policy_version()
                .policy_arn(arn)
                .version_id(&id)
                .send()
                .await
                .map_err(|e| aws_error("iam", "SetDefaultPolicyVersion", e))?;
        }
        Ok(Some(Outcome::Applied))
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

/// What a write whose repetition is not harmless does, for [`after_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Creates an entity: "already exists" on a repeat means an earlier attempt made it.
    Create,
    /// Removes one: "no such entity" on a repeat means an earlier attempt removed it.
    Remove,
    /// Anything else (CreatePolicyVersion, AddUserToGroup): only a re-read tells.
    Other,
}

/// The next step after one attempt of such a write.
#[derive(Debug)]
pub enum Settle {
    Done(Outcome),
    /// It failed in a way that may have been applied: re-read the state.
    ReRead(Error),
    Fail(Error),
}

/// Map one attempt's result; `repeated` is true for attempts after an unclear failure.
/// On the FIRST attempt "already exists" is `skipped` (it was there before iam-warden
/// acted) and "no such entity" is handed back (the caller reports "no longer exists").
pub fn after_attempt(kind: WriteKind, repeated: bool, r: Result<()>) -> Settle {
    let e = match r {
        Ok(()) => return Settle::Done(Outcome::Applied),
        Err(e) => e,
    };
    if e.may_have_been_applied() {
        return Settle::ReRead(e);
    }
    match (kind, e.aws_code()) {
        (WriteKind::Create, Some("EntityAlreadyExists")) if repeated => {
            Settle::Done(Outcome::Applied)
        }
        (WriteKind::Create, Some("EntityAlreadyExists")) => {
            Settle::Done(Outcome::Skipped("already exists".into()))
        }
        (WriteKind::Remove, Some("NoSuchEntity")) if repeated => Settle::Done(Outcome::Applied),
        _ => Settle::Fail(e),
    }
}

/// For removals: nothing to re-read, the repeat itself tells (see [`after_attempt`]).
async fn no_reread() -> Result<Option<Outcome>> {
    Ok(None)
}

fn not_found_is_none(e: Error) -> Result<Option<Outcome>> {
    if e.is_not_found() {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Two policy documents mean the same (either may be URL-encoded, as IAM returns them).
fn same_document(live: Option<&str>, desired: &str) -> bool {
    let desired = decode_policy_document(desired);
    desired.is_some() && live.and_then(decode_policy_document) == desired
}

/// The version (id, is default) whose document is `desired`, among `(id, is default,
/// document)`.
pub fn find_version(
    versions: &[(String, bool, Option<String>)],
    desired: &str,
) -> Option<(String, bool)> {
    versions
        .iter()
        .find(|(_, _, d)| same_document(d.as_deref(), desired))
        .map(|(id, def, _)| (id.clone(), *def))
}

impl From<Error> for Outcome {
    fn from(e: Error) -> Self {
        Outcome::Failed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(code: Option<&str>, ambiguous: bool) -> Error {
        Error::Aws {
            service: "iam",
            operation: "Test",
            code: code.map(str::to_string),
            message: "m".into(),
            hint: None,
            detail: "".into(),
            ambiguous,
        }
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Done(Outcome),
        ReRead,
        Fail,
    }

    #[test]
    fn attempts_of_writes_that_are_not_harmless_twice_are_settled() {
        use WriteKind::*;
        let exists = || Some("EntityAlreadyExists");
        let gone = || Some("NoSuchEntity");
        let skipped = Want::Done(Outcome::Skipped("already exists".into()));
        let cases: Vec<(WriteKind, bool, Result<()>, Want)> = vec![
            (Create, false, Ok(()), Want::Done(Outcome::Applied)),
            (Remove, true, Ok(()), Want::Done(Outcome::Applied)),
            // unclear failures: re-read, whatever the kind and attempt
            (
                Create,
                false,
                Err(aws(Some("InternalFailure"), true)),
                Want::ReRead,
            ),
            (Other, true, Err(aws(None, true)), Want::ReRead),
            (Remove, false, Err(aws(None, true)), Want::ReRead),
            // creates: already there before iam-warden acted vs made by an earlier attempt
            (Create, false, Err(aws(exists(), false)), skipped),
            (
                Create,
                true,
                Err(aws(exists(), false)),
                Want::Done(Outcome::Applied),
            ),
            // removals: already gone before (the caller says "no longer exists") vs removed
            // by an earlier attempt
            (Remove, false, Err(aws(gone(), false)), Want::Fail),
            (
                Remove,
                true,
                Err(aws(gone(), false)),
                Want::Done(Outcome::Applied),
            ),
            // the same codes mean nothing special for the other kinds
            (Other, true, Err(aws(exists(), false)), Want::Fail),
            (Other, true, Err(aws(gone(), false)), Want::Fail),
            (Create, true, Err(aws(gone(), false)), Want::Fail),
            // refused calls are final
            (
                Create,
                true,
                Err(aws(Some("AccessDenied"), false)),
                Want::Fail,
            ),
            (
                Other,
                false,
                Err(aws(Some("Throttling"), false)),
                Want::Fail,
            ),
            (Remove, false, Err(Error::Other("x".into())), Want::Fail),
        ];
        for (i, (kind, repeated, r, want)) in cases.into_iter().enumerate() {
            let got = match after_attempt(kind, repeated, r) {
                Settle::Done(o) => Want::Done(o),
                Settle::ReRead(e) => {
                    assert!(e.may_have_been_applied());
                    Want::ReRead
                }
                Settle::Fail(_) => Want::Fail,
            };
            assert_eq!(got, want, "case {i}: {kind:?} repeated={repeated}");
        }
    }

    #[test]
    fn the_version_with_the_desired_document_is_found() {
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
        let encoded: String =
            percent_encoding::utf8_percent_encode(doc, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let other = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let v = |id: &str, def: bool, d: Option<&str>| (id.to_string(), def, d.map(str::to_string));
        assert_eq!(
            find_version(
                &[v("v1", true, Some(other)), v("v2", false, Some(&encoded))],
                doc
            ),
            Some(("v2".to_string(), false)),
            "URL-encoded as IAM returns it, not the default yet"
        );
        // whitespace and key order do not matter, the meaning does
        let spaced = r#"{ "Statement": [ {"Resource":"*", "Action":"*", "Effect":"Deny"} ], "Version": "2012-10-17" }"#;
        assert_eq!(
            find_version(&[v("v3", true, Some(spaced))], doc),
            Some(("v3".to_string(), true))
        );
        assert_eq!(
            find_version(&[v("v1", true, Some(other)), v("v2", false, None)], doc),
            None
        );
        assert_eq!(find_version(&[], doc), None);
        assert!(
            !same_document(Some("not json"), "not json"),
            "garbage never matches"
        );
    }
}
