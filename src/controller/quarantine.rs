//! Exposed-key quarantine: an AWS Health `AWS_RISK_CREDENTIALS_EXPOSED` event, or AWS
//! attaching its `AWSCompromisedKeyQuarantine*` policy to a user, deactivates exactly the
//! exposed key, at once.
//!
//! - At once: it runs as soon as the event is dispatched, outside the work queue (no wait
//!   for a resync or for other reconciles), through an IAM client that does not wait for
//!   the write limiter's tokens (`Clients::priority`; retries and backoff stay), and it
//!   is not planned, so the blast-radius breaker never holds or counts it.
//! - Exactly that key: the key is resolved live (GetAccessKeyLastUsed names its user; the
//!   user's ListAccessKeys must hold it). An unknown key, or a key of another account, is
//!   counted and logged, and nothing changes. The quarantine-policy event names only the
//!   user: the key is deactivated only when the user has exactly one active key; with
//!   several, nothing is deactivated (outcome `ambiguous`: the candidates are logged, the
//!   Health event names the key) — never a guess.
//! - Never: iam-warden's own identity. Exempt users get a finding (log line, journal
//!   entry, metric), not the deactivation, unless `rotation.quarantine_exempt_users`.
//! - Journaled with reason `exposed`; in dry-run only the would-be write is journaled.
//!   The key's rotation tag records `phase=quarantined since=<RFC 3339>`.
//!
//! [`Quarantiner::key_quarantined`] is the one place where "a key was quarantined"
//! happens: it raises the owner's notice; the dispatch then enqueues the user so that the
//! planner replaces the key at once (an exempt user's exposure is notified, not acted on).

use chrono::Utc;

use super::key::{Exposed, Exposure};
use super::reconcile::Clock;
use crate::apply::{Applier, Outcome, EXPOSED_REASON};
use crate::aws::aws_error;
use crate::baseline::checks::{exemption, is_own_identity};
use crate::baseline::plan::{Action, PlannedAction};
use crate::config::Config;
use crate::error::Result;
use crate::inventory::{live, AccountSnapshot, Tags, UserState};
use crate::journal::Entry;
use crate::metrics::{QuarantineEvent, QuarantineOutcome};
use crate::notify::NoticeEvent;

const QUARANTINED: &str = "deactivated and tagged quarantined (iam-warden never reactivates \
     it); review its use in CloudTrail";

/// What became of one exposure, with a line for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: QuarantineOutcome,
    pub user: Option<String>,
    /// The key, or the candidate keys (ambiguous), comma-separated.
    pub key: Option<String>,
    pub detail: String,
    /// Already counted and logged (by [`Quarantiner::key_quarantined`]).
    announced: bool,
}

impl Verdict {
    fn new(
        outcome: QuarantineOutcome,
        user: Option<&str>,
        key: Option<&str>,
        detail: String,
    ) -> Self {
        Verdict {
            outcome,
            user: user.map(str::to_string),
            key: key.map(str::to_string),
            detail,
            announced: false,
        }
    }

    /// Whether the event is settled (an SQS message may be deleted): everything but a
    /// failure, which is retried by redelivery.
    pub fn settled(&self) -> bool {
        self.outcome != QuarantineOutcome::Failed
    }
}

/// A key that was quarantined just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined<'a> {
    pub user: &'a str,
    pub key_id: &'a str,
    pub exposure: &'a Exposure,
    /// The user's tags (its owner, for the notice).
    pub tags: &'a Tags,
}

/// Handles exposures; shared by the sources through the dispatch.
pub struct Quarantiner {
    /// An applier whose IAM client is `Clients::priority`.
    applier: Applier,
    cfg: Config,
    /// iam-warden's own identity: never touched.
    own_arn: String,
    /// The time written into the quarantine tag (the daemon's clock).
    clock: Clock,
}

fn trigger(ex: &Exposure) -> &'static str {
    match ex.exposed {
        Exposed::Key { .. } => "health",
        Exposed::User { .. } => "quarantine_policy",
    }
}

impl Quarantiner {
    /// `applier` should use `Clients::priority` so that the writes pass the limiter.
    pub fn new(applier: Applier, cfg: Config, own_arn: &str) -> Quarantiner {
        Quarantiner {
            applier,
            cfg,
            own_arn: own_arn.to_string(),
            clock: Clock::real(),
        }
    }

    /// Use `clock` (the daemon's) for the quarantine time.
    pub fn with_clock(mut self, clock: Clock) -> Quarantiner {
        self.clock = clock;
        self
    }

    /// Handle one exposure: decide, act, count and log it once. Returns the verdict.
    pub async fn handle(&self, ex: &Exposure) -> Verdict {
        let v = match self.decide_and_act(ex).await {
            Ok(v) => v,
            Err(e) => Verdict::new(
                QuarantineOutcome::Failed,
                None,
                match &ex.exposed {
                    Exposed::Key { key_id, .. } => Some(key_id.as_str()),
                    Exposed::User { .. } => None,
                },
                format!("{e}; the event is retried (SQS delivers it again)"),
            ),
        };
        if !v.announced {
            self.emit(ex, &v);
        }
        v
    }

    fn emit(&self, ex: &Exposure, v: &Verdict) {
        QuarantineEvent {
            outcome: v.outcome,
            trigger: trigger(ex),
            event_id: &ex.event_id,
            user: v.user.as_deref(),
            key: v.key.as_deref(),
            detail: &v.detail,
        }
        .emit(self.applier.metrics.as_deref());
    }

    async fn decide_and_act(&self, ex: &Exposure) -> Result<Verdict> {
        match &ex.exposed {
            Exposed::Key { key_id, account } => {
                if *account != self.applier.account_id {
                    return Ok(Verdict::new(
                        QuarantineOutcome::OtherAccount,
                        None,
                        Some(key_id),
                        format!(
                            "the AWS Health event is for account {account}, this iam-warden \
                             manages account {}; nothing changed (send that account's events \
                             to its own iam-warden)",
                            self.applier.account_id
                        ),
                    ));
                }
                let Some(user) = self.owner_of(key_id).await? else {
                    return Ok(Verdict::new(
                        QuarantineOutcome::UnknownKey,
                        None,
                        Some(key_id),
                        "IAM knows no such access key (GetAccessKeyLastUsed: NoSuchEntity); \
                         nothing changed"
                            .into(),
                    ));
                };
                self.for_user(ex, &user, Some(key_id)).await
            }
            Exposed::User { user, .. } => self.for_user(ex, user, None).await,
        }
    }

    /// The user owning `key_id` (GetAccessKeyLastUsed), `None` when IAM has no such key.
    async fn owner_of(&self, key_id: &str) -> Result<Option<String>> {
        match self
            .applier
            .clients
            .iam
            .get_access_key_last_used()
            .access_key_id(key_id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .user_name()
                .filter(|u| !u.is_empty())
                .map(str::to_string)),
            Err(e) => {
                let err = aws_error("iam", "GetAccessKeyLastUsed", e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The exposure of `key` (or, `None`, of the one active key) of `user`.
    async fn for_user(&self, ex: &Exposure, user: &str, key: Option<&str>) -> Result<Verdict> {
        let Some(state) = live::read_user(&self.applier.clients.iam, user).await? else {
            return Ok(match key {
                Some(k) => Verdict::new(
                    QuarantineOutcome::OtherAccount,
                    Some(user),
                    Some(k),
                    format!("the key's user {user} is not a user of this account; nothing changed"),
                ),
                None => Verdict::new(
                    QuarantineOutcome::UnknownKey,
                    Some(user),
                    None,
                    format!("user {user} does not exist (any more); nothing changed"),
                ),
            });
        };
        let key_id = match key {
            Some(k) => {
                if !state.keys.iter().any(|s| s.id.as_deref() == Some(k)) {
                    return Ok(Verdict::new(
                        QuarantineOutcome::OtherAccount,
                        Some(user),
                        Some(k),
                        format!(
                            "the key is not one of the access keys of this account's user \
                             {user}; nothing changed"
                        ),
                    ));
                }
                k.to_string()
            }
            None => {
                let active: Vec<&str> = state
                    .active_keys()
                    .filter_map(|k| k.id.as_deref())
                    .collect();
                match active.as_slice() {
                    [one] => one.to_string(),
                    [] => {
                        return Ok(Verdict::new(
                            QuarantineOutcome::NoActiveKey,
                            Some(user),
                            None,
                            format!(
                                "AWS attached its compromised-key quarantine policy to {user}, \
                                 who has no active access key; nothing to deactivate"
                            ),
                        ))
                    }
                    several => {
                        let candidates = several.join(",");
                        let v = Verdict::new(
                            QuarantineOutcome::Ambiguous,
                            Some(user),
                            Some(&candidates),
                            format!(
                                "AWS attached its compromised-key quarantine policy to {user}, \
                                 who has {} active keys ({candidates}): any could be the \
                                 exposed one, none is deactivated; the AWS Health event \
                                 AWS_RISK_CREDENTIALS_EXPOSED names the key (route it to \
                                 iam-warden's queue) or deactivate it by hand",
                                several.len()
                            ),
                        );
                        self.journal_skip(user, &candidates, &v.detail);
                        return Ok(v);
                    }
                }
            }
        };
        if let Some(v) = self.refuse_exempt(&state, &key_id) {
            self.journal_skip(user, &key_id, &v.detail);
            self.notify_exposed(
                user,
                &key_id,
                ex,
                &format!("not deactivated: {}", v.detail),
                &state.tags,
            )
            .await;
            return Ok(v);
        }
        let was_active = state
            .keys
            .iter()
            .any(|k| k.id.as_deref() == Some(key_id.as_str()) && k.active);
        let pa = PlannedAction {
            action: Action::QuarantineAccessKey {
                user: user.to_string(),
                key_id: key_id.clone(),
            },
            reason: EXPOSED_REASON.into(),
            check: None,
        };
        let view = AccountSnapshot {
            account_id: self.applier.account_id.clone(),
            ..Default::default()
        };
        let result = self.applier.apply(&view, &pa, self.clock.now()).await;
        let verdict = |o, detail: String| Verdict::new(o, Some(user), Some(&key_id), detail);
        Ok(match result.outcome {
            Outcome::Applied => {
                let mut v = verdict(QuarantineOutcome::Deactivated, QUARANTINED.into());
                self.key_quarantined(&Quarantined {
                    user,
                    key_id: &key_id,
                    exposure: ex,
                    tags: &state.tags,
                })
                .await;
                v.announced = true;
                v
            }
            Outcome::DryRun => {
                let v = verdict(
                    QuarantineOutcome::DryRun,
                    "dry-run: the deactivation is journaled, not done; in mode enforce the key \
                     is deactivated"
                        .into(),
                );
                self.notify_exposed(user, &key_id, ex, &v.detail, &state.tags)
                    .await;
                v
            }
            Outcome::Skipped(why) if !was_active => verdict(
                QuarantineOutcome::Deactivated,
                format!("{why}; quarantine tag ensured"),
            ),
            Outcome::Skipped(why) => verdict(
                QuarantineOutcome::UnknownKey,
                format!("{why}; nothing changed"),
            ),
            Outcome::Failed(e) => verdict(
                QuarantineOutcome::Failed,
                format!("deactivating the key failed: {e}; the event is retried"),
            ),
        })
    }

    /// `Some(exempt verdict)` when the user must not be touched: iam-warden's own identity
    /// (always), an exempt user (unless `rotation.quarantine_exempt_users`).
    fn refuse_exempt(&self, user: &UserState, key_id: &str) -> Option<Verdict> {
        let name = user.name.as_str();
        if is_own_identity(user, &self.own_arn) {
            return Some(Verdict::new(
                QuarantineOutcome::Exempt,
                Some(name),
                Some(key_id),
                "this is iam-warden's own identity, which it never changes; rotate the key by \
                 hand now"
                    .into(),
            ));
        }
        let why = exemption(user, &self.cfg, &self.own_arn)?;
        if self.cfg.rotation.quarantine_exempt_users {
            return None;
        }
        Some(Verdict::new(
            QuarantineOutcome::Exempt,
            Some(name),
            Some(key_id),
            format!(
                "the user is exempt ({why}), so the key is left active; deactivate it by hand, \
                 or set rotation.quarantine_exempt_users = true"
            ),
        ))
    }

    /// Journal an exposure that is left alone on purpose (a finding, not a write).
    fn journal_skip(&self, user: &str, target: &str, detail: &str) {
        let entry = Entry {
            time: Utc::now(),
            account: self.applier.account_id.clone(),
            user: Some(user.to_string()),
            action: "quarantine_access_key".into(),
            target: target.to_string(),
            reason: EXPOSED_REASON.into(),
            mode: self.applier.mode.to_string(),
            outcome: "skipped".into(),
            error: Some(detail.to_string()),
        };
        if let Err(e) = self.applier.journal.record(&entry) {
            tracing::error!(error = %e, "journal write failed");
        }
    }

    /// The one place where a key has just been quarantined (deactivated now, in mode
    /// enforce): counted and logged, and the owner's `key-exposed` notice raised. The
    /// replacement follows: the dispatch enqueues the user, whose plan rotates the
    /// quarantined key (`baseline::plan::rotation`).
    pub async fn key_quarantined(&self, q: &Quarantined<'_>) {
        self.emit(
            q.exposure,
            &Verdict::new(
                QuarantineOutcome::Deactivated,
                Some(q.user),
                Some(q.key_id),
                QUARANTINED.into(),
            ),
        );
        let replaced = if self.cfg.rotation.enabled
            && self.cfg.rotation.delivery != crate::config::Delivery::None
        {
            "; a new key replaces it (stored like a rotated key) unless the user has another \
             key or is exempt"
        } else {
            "; create a new key for its consumer (rotation.delivery = \"none\")"
        };
        self.notify_exposed(
            q.user,
            q.key_id,
            q.exposure,
            &format!("{QUARANTINED}{replaced}"),
            q.tags,
        )
        .await;
    }

    /// The owner's `key-exposed` notice (also when the key is left active: it says so).
    async fn notify_exposed(
        &self,
        user: &str,
        key_id: &str,
        ex: &Exposure,
        what: &str,
        tags: &Tags,
    ) {
        let source = match trigger(ex) {
            "health" => "an AWS Health event",
            _ => "AWS attaching its compromised-key quarantine policy",
        };
        self.applier
            .notify_owner(
                NoticeEvent::KeyExposed,
                user,
                Some(key_id),
                &format!("AWS reported this access key as exposed ({source}): {what}"),
                None,
                Some(tags),
            )
            .await;
    }
}
