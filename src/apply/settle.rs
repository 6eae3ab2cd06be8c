//! Writes whose repetition is not harmless, after an unclear failure: re-read, and send
//! again only when the state was not reached.

use super::{Applier, Outcome};
use crate::aws::aws_error;
use crate::error::{Error, Result};
use crate::inventory::decode_policy_document;

impl Applier {
    /// Send a write whose repetition is not harmless (a create, a delete, AddUserToGroup)
    /// until its state is reached. After a failure that may have been applied (5xx, lost or
    /// unreadable answer, timeout) the state is re-read (`reread`: `Some(outcome)` when it
    /// is settled) and the write is sent again only when it was not reached, at most
    /// `aws.max_attempts` times in all. A repeat meeting "already exists" (creates) or "no
    /// such entity" (removals) means an earlier attempt did it: `applied`.
    pub(super) async fn settle<S, SF, C, CF>(
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
    pub(super) async fn policy_has_document(
        &self,
        arn: &str,
        document: &str,
    ) -> Result<Option<Outcome>> {
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
    pub(super) async fn version_with_document(
        &self,
        arn: &str,
        document: &str,
    ) -> Result<Option<Outcome>> {
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
pub(super) async fn no_reread() -> Result<Option<Outcome>> {
    Ok(None)
}

pub(super) fn not_found_is_none(e: Error) -> Result<Option<Outcome>> {
    if e.is_not_found() {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Two policy documents mean the same (either may be URL-encoded, as IAM returns them).
pub(super) fn same_document(live: Option<&str>, desired: &str) -> bool {
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
