//! EventBridge → SQS consumer: the low-latency source (seconds instead of CloudTrail's
//! minutes). Off unless `sources.sqs.queue_url` is set.
//!
//! An EventBridge rule with the pattern
//! `{"source":["aws.iam"],"detail-type":["AWS API Call via CloudTrail"]}` (in us-east-1,
//! where IAM's events are recorded) sends each IAM API call to an SQS queue; this consumer
//! long-polls the queue and hands each event to the work queue of the account it is about.
//!
//! # Many accounts, one queue
//!
//! The queue may carry the events of many accounts (an organization-wide rule, or every
//! account's rule sending to a central event bus). Each message is routed by the
//! EventBridge envelope's `account` field ([`super::route`]) to that account's
//! [`Dispatch`] in the [`Router`]. A message about an account that is not in scope, or
//! whose `account` is missing, not a string or not 12 digits, is counted
//! (`iam_warden_sqs_messages_skipped_total{reason}`), logged with the account and how to
//! fix it, and **deleted**: it is never acted on in another account, and retrying it would
//! not change that. An account not in scope is warned about once (then at debug), so an
//! organization-wide rule does not flood the log.
//!
//! The same queue may also receive AWS Health exposed-credentials events (a second rule,
//! `{"source":["aws.health"],"detail-type":["AWS Health Event"],"detail":{"eventTypeCode":
//! ["AWS_RISK_CREDENTIALS_EXPOSED"]}}`): each named key is quarantined at once
//! (`controller::quarantine`), and the message is deleted once every quarantine is settled.
//!
//! # At-least-once
//!
//! A message is deleted only once the work it caused is done:
//!
//! - an event that causes no work (a read, a failed call, iam-warden's own write, a call
//!   that does not touch the baseline) is deleted at once;
//! - an event that enqueued reconciles is deleted only after every one of those reconciles
//!   has *finished* ([`Dispatch::wait_done`]). The consumer waits at most until shortly before
//!   the message becomes visible again (the queue's `VisibilityTimeout` minus 5 s, or half of
//!   it when it is 10 s or less; read once at start, 30 s if it cannot be read). If the
//!   reconcile is slower, or iam-warden crashes or stops first, the message is left alone,
//!   SQS delivers it again and it is dispatched again. A redelivered event costs at most one
//!   more reconcile (the controller is level-triggered), a lost one would leave a user off
//!   the baseline until the next full resync: so the consumer errs on redelivery.
//! - a message skipped because of its account (above) is deleted at once;
//! - a message that cannot be parsed is counted as `malformed`, logged (its first 200
//!   characters at most) and **left in the queue**: the queue's redrive policy moves it to
//!   the dead-letter queue after `maxReceiveCount` receives, where an operator can look at it.
//!   Give the queue a redrive policy; without one such a message comes back forever (the
//!   consumer warns at start when the queue has none).
//!
//! At most [`DEFAULT_MAX_IN_FLIGHT`] messages are waited on at once; at the bound the
//! consumer stops receiving until one is settled, so messages it cannot attend to stay in
//! the queue (visible) instead of timing out in its memory.
//!
//! On shutdown the consumer stops receiving at once (an in-progress long poll is
//! abandoned). Messages still being waited on keep waiting while the controller drains:
//! those whose reconciles finish are deleted. In the daemon ([`SqsConsumer::release_unsettled_on`])
//! the others are then *released* (`ChangeMessageVisibility` to 0), so the next daemon (a
//! restarted one, another replica) gets them at once instead of after the rest of their
//! visibility timeout; a message whose release fails is redelivered after that timeout.
//! Without that signal they are left to the visibility timeout.
//!
//! Receive errors (network, permissions, a missing queue) are logged and retried with
//! backoff (1 s, 2 s, 4 s, … at most 30 s, reset after a successful receive); they never stop
//! the consumer.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use chrono::Utc;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::cloudtrail::stopped;
use super::health::SqsEvent;
use super::route::{route, Route};
use crate::aws::{aws_error, Clients};
use crate::config::SqsSource;
use crate::controller::dispatch::{Dispatch, Dispatched};
use crate::controller::router::Router;
use crate::error::{Error, Result};
use crate::metrics::{EventMalformed, Source, SqsMessageSkipped, SqsSkipReason};

/// Default bound on messages waited on at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 100;

/// Visibility timeout assumed when the queue's cannot be read.
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest backoff after receive errors.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// At most this many characters of an unparseable message body reach the log.
const LOG_BODY_CHARS: usize = 200;

/// At most this many accounts out of scope are remembered as warned about (then the
/// memory starts over, and each is warned about once more).
const MAX_WARNED_ACCOUNTS: usize = 1_000;

/// Consumes EventBridge IAM events from an SQS queue.
pub struct SqsConsumer {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    wait_time: Duration,
    max_messages: u32,
    max_in_flight: usize,
    /// Each account's dispatch; a message is routed by the account it is about.
    router: Router,
    /// Accounts out of scope already warned about (bounded).
    warned: Warned,
    /// Becomes true once the controller has drained after shutdown: unsettled messages
    /// are released then.
    drained: Option<watch::Receiver<bool>>,
}

/// What became of a message whose reconciles were waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Its reconciles finished; deleted (or the delete failed and it comes back: harmless).
    Deleted,
    /// Shutdown with its reconciles unfinished: made visible again at once.
    Released,
    /// Not finished before its hold ended (or the release failed): SQS delivers it again
    /// after its visibility timeout.
    Left,
}

/// The accounts out of scope already warned about: at most [`MAX_WARNED_ACCOUNTS`], then
/// the memory starts over.
#[derive(Debug, Default)]
struct Warned(Mutex<HashSet<String>>);

impl Warned {
    /// Whether this is the first skip of `account` to warn about; remembers it.
    fn first(&self, account: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(account) {
            return false;
        }
        if seen.len() >= MAX_WARNED_ACCOUNTS {
            seen.clear();
        }
        seen.insert(account.to_owned())
    }
}

/// How long to wait for the reconciles of a message received with this visibility timeout.
pub fn hold_for(visibility: Duration) -> Duration {
    let margin = Duration::from_secs(5);
    if visibility > Duration::from_secs(10) {
        visibility - margin
    } else {
        visibility / 2
    }
}

/// The next backoff after a receive error.
fn next_backoff(current: Duration) -> Duration {
    if current.is_zero() {
        Duration::from_secs(1)
    } else {
        (current * 2).min(MAX_BACKOFF)
    }
}

/// The first `n` characters of `s`.
fn prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl SqsConsumer {
    /// A consumer of `cfg.queue_url` using `clients.sqs`, routing each message to the
    /// dispatch of its account in `router`. Fails when no queue is configured.
    pub fn new(clients: &Clients, cfg: &SqsSource, router: Router) -> Result<Self> {
        let queue_url = cfg
            .queue_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                Error::Config(
                    "sources.sqs.queue_url is not set: set it to the URL of the SQS queue that \
                     the EventBridge rule for IAM events targets, or leave the SQS source off"
                        .into(),
                )
            })?
            .to_string();
        Ok(SqsConsumer {
            sqs: clients.sqs().clone(),
            queue_url,
            wait_time: cfg.wait_time.get(),
            max_messages: cfg.max_messages.clamp(1, 10),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            router,
            warned: Warned::default(),
            drained: None,
        })
    }

    /// After shutdown, wait for `drained` to become true (the controller has finished or
    /// given up draining its reconciles), then delete the messages whose reconciles finished
    /// and release the others for immediate redelivery; [`run`](Self::run) returns once all
    /// are settled. Without it, `run` returns at once on shutdown and unsettled messages
    /// wait out their visibility timeout.
    pub fn release_unsettled_on(mut self, drained: watch::Receiver<bool>) -> Self {
        self.drained = Some(drained);
        self
    }

    /// Changes the bound on messages waited on at once (at least 1).
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// The queue consumed.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The queue's visibility timeout (default 30 s if it cannot be read); warns when the
    /// queue has no redrive policy.
    async fn queue_settings(&self) -> Duration {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await;
        match out {
            Ok(out) => {
                let attrs = out.attributes();
                if attrs
                    .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
                    .is_none_or(|p| p.trim().is_empty())
                {
                    tracing::warn!(
                        queue_url = %self.queue_url,
                        "the SQS queue has no redrive policy: a message iam-warden cannot parse \
                         comes back forever; attach a dead-letter queue (maxReceiveCount 5)"
                    );
                }
                match attrs
                    .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    Some(secs) => Duration::from_secs(secs),
                    None => DEFAULT_VISIBILITY_TIMEOUT,
                }
            }
            Err(e) => {
                let err = aws_error("sqs", "GetQueueAttributes", e);
                tracing::warn!(
                    error = %err,
                    queue_url = %self.queue_url,
                    default_seconds = DEFAULT_VISIBILITY_TIMEOUT.as_secs(),
                    "cannot read the SQS queue's visibility timeout; assuming the default"
                );
                DEFAULT_VISIBILITY_TIMEOUT
            }
        }
    }

    /// Consumes until `shutdown` becomes true (or its sender is dropped). Never returns an
    /// error because of AWS: receive errors are retried with backoff.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        if *shutdown.borrow() {
            return Ok(());
        }
        let visibility = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return Ok(()),
            v = self.queue_settings() => v,
        };
        let hold = hold_for(visibility);
        tracing::info!(
            queue_url = %self.queue_url,
            visibility_timeout_seconds = visibility.as_secs(),
            hold_seconds = hold.as_secs_f64(),
            "SQS consumer started"
        );
        let permits = Arc::new(Semaphore::new(self.max_in_flight));
        let mut settling: JoinSet<Settled> = JoinSet::new();
        let wait_secs = i32::try_from(self.wait_time.as_secs().min(20)).unwrap_or(20);
        let mut backoff = Duration::ZERO;
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Reap settled messages (their results are only counted at shutdown).
            while settling.try_join_next().is_some() {}
            let free = permits.available_permits();
            if free == 0 {
                // At the bound: receive nothing until a message is settled.
                tokio::select! {
                    biased;
                    _ = stopped(&mut shutdown) => break,
                    p = permits.clone().acquire_owned() => drop(p),
                }
                continue;
            }
            let n = free.min(self.max_messages as usize);
            let n = i32::try_from(n).unwrap_or(10);
            let receive = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(n)
                .wait_time_seconds(wait_secs)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send();
            let result = tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => break,
                r = receive => r,
            };
            match result {
                Ok(out) => {
                    backoff = Duration::ZERO;
                    self.router.metrics().poll_ok(Source::Sqs, Utc::now());
                    for m in out.messages() {
                        self.handle(m, hold, &permits, &mut settling).await;
                    }
                }
                Err(e) => {
                    let err = aws_error("sqs", "ReceiveMessage", e);
                    backoff = next_backoff(backoff);
                    tracing::warn!(
                        error = %err,
                        queue_url = %self.queue_url,
                        retry_in_seconds = backoff.as_secs(),
                        "receiving from the SQS queue failed; retrying"
                    );
                    tokio::select! {
                        biased;
                        _ = stopped(&mut shutdown) => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
        let waiting = self.max_in_flight - permits.available_permits();
        if self.drained.is_none() {
            tracing::info!(
                waiting,
                "SQS consumer stopped receiving; messages whose reconcile finishes are still \
                 deleted, the others will be delivered again after their visibility timeout"
            );
            settling.detach_all();
            return Ok(());
        }
        tracing::info!(
            waiting,
            "SQS consumer stopped receiving; waiting for the drain to delete or release the \
             messages still in hand"
        );
        let (mut deleted, mut released, mut left) = (0usize, 0usize, 0usize);
        while let Some(r) = settling.join_next().await {
            match r {
                Ok(Settled::Deleted) => deleted += 1,
                Ok(Settled::Released) => released += 1,
                Ok(Settled::Left) | Err(_) => left += 1,
            }
        }
        tracing::info!(
            deleted,
            released,
            left,
            "SQS consumer stopped: messages handled were deleted, unfinished ones released for \
             immediate redelivery (left: redelivered after their visibility timeout)"
        );
        Ok(())
    }

    async fn handle(
        &self,
        m: &Message,
        hold: Duration,
        permits: &Arc<Semaphore>,
        settling: &mut JoinSet<Settled>,
    ) {
        let received = Instant::now();
        let message_id = m.message_id().unwrap_or("");
        let receive_count = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .map(String::as_str)
            .unwrap_or("?");
        let Some(receipt) = m.receipt_handle().filter(|r| !r.is_empty()) else {
            tracing::warn!(message_id, "SQS message without a receipt handle; skipped");
            return;
        };
        let body = m.body().unwrap_or("");
        let (dispatch, parsed) = match route(body, |account| self.router.get(account)) {
            Route::Dispatch { to, event, .. } => (to, event),
            Route::Skip(mut skip) => {
                if skip.reason == SqsSkipReason::NotInScope && self.router.in_scope(&skip.account) {
                    skip.reason = SqsSkipReason::AccountDown;
                }
                // One warning per account and reason, then debug lines.
                let repeat =
                    matches!(
                        skip.reason,
                        SqsSkipReason::NotInScope | SqsSkipReason::AccountDown
                    ) && !self
                        .warned
                        .first(&format!("{}/{}", skip.reason.as_str(), skip.account));
                SqsMessageSkipped {
                    reason: skip.reason,
                    account: &skip.account,
                    message_id,
                    event: &skip.event,
                    in_scope: self.router.len(),
                    repeat,
                }
                .emit(self.router.metrics());
                delete(&self.sqs, &self.queue_url, receipt, message_id).await;
                return;
            }
            Route::Malformed(e) => {
                EventMalformed {
                    source: Source::Sqs,
                    event_name: "other",
                    id: Some(message_id),
                    error: &e,
                    receive_count: Some(receive_count),
                    body_start: Some(prefix(body, LOG_BODY_CHARS)),
                }
                .emit(self.router.metrics());
                return;
            }
        };
        let dispatched = match parsed {
            SqsEvent::CloudTrail(ev) => dispatch.dispatch_all(&ev, Source::Sqs, received),
            SqsEvent::Exposed(health) => {
                if !health.rejected.is_empty() {
                    tracing::warn!(
                        message_id,
                        rejected = ?health.rejected,
                        "AWS Health event names entities that are not IAM access key ids; those are ignored"
                    );
                }
                Dispatched {
                    tickets: Vec::new(),
                    quarantines: health
                        .exposures
                        .into_iter()
                        .filter_map(|ex| dispatch.quarantine(ex))
                        .collect(),
                }
            }
        };
        if dispatched.is_empty() {
            delete(&self.sqs, &self.queue_url, receipt, message_id).await;
            return;
        }
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            // Cannot happen (at most `free` messages were asked for), but stay correct.
            Err(_) => match permits.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        settling.spawn(settle(
            dispatch,
            self.sqs.clone(),
            self.queue_url.clone(),
            receipt.to_string(),
            message_id.to_string(),
            dispatched,
            received + hold,
            self.drained.clone(),
            permit,
        ));
    }
}

/// Waits for the message's quarantines (each must be settled: a failed one is retried by
/// redelivery) and reconciles, then deletes it. When they do not finish before `deadline`
/// the message is left to its visibility timeout; when `drained` becomes true first
/// (shutdown) it is released for immediate redelivery (a redelivered exposure is handled
/// again: idempotent).
#[allow(clippy::too_many_arguments)]
async fn settle(
    dispatch: Dispatch,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    receipt: String,
    message_id: String,
    dispatched: Dispatched,
    deadline: Instant,
    drained: Option<watch::Receiver<bool>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) -> Settled {
    let Dispatched {
        tickets,
        quarantines,
    } = dispatched;
    let no_quarantines = quarantines.is_empty();
    let work = async {
        let q = quarantines_settled(quarantines, deadline).await;
        dispatch.wait_done(&tickets, deadline).await && q
    };
    let (done, shutting_down) = match drained {
        Some(mut drained) => tokio::select! {
            done = work => (done, false),
            // Every reconcile that will finish has finished once the drain is over.
            _ = stopped(&mut drained) => (
                no_quarantines && dispatch.wait_done(&tickets, Instant::now()).await,
                true,
            ),
        },
        None => (work.await, false),
    };
    if done {
        delete(&sqs, &queue_url, &receipt, &message_id).await;
        return Settled::Deleted;
    }
    if shutting_down {
        return release(&sqs, &queue_url, &receipt, &message_id).await;
    }
    tracing::debug!(
        message_id,
        "reconcile not finished before the message's visibility timeout; leaving it to be \
         delivered again"
    );
    Settled::Left
}

/// Whether every quarantine finished before `deadline` and settled its exposure.
async fn quarantines_settled(
    quarantines: Vec<tokio::task::JoinHandle<bool>>,
    deadline: Instant,
) -> bool {
    let mut all = true;
    for h in quarantines {
        all &= matches!(tokio::time::timeout_at(deadline, h).await, Ok(Ok(true)));
    }
    all
}

/// Make a received message visible again at once (ChangeMessageVisibility 0).
async fn release(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    receipt: &str,
    message_id: &str,
) -> Settled {
    match sqs
        .change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(receipt)
        .visibility_timeout(0)
        .send()
        .await
    {
        Ok(_) => {
            tracing::debug!(message_id, "unfinished SQS message released for redelivery");
            Settled::Released
        }
        Err(e) => {
            let err = aws_error("sqs", "ChangeMessageVisibility", e);
            tracing::warn!(
                error = %err,
                message_id,
                "cannot release an unfinished SQS message; it is delivered again after its \
                 visibility timeout"
            );
            Settled::Left
        }
    }
}

async fn delete(sqs: &aws_sdk_sqs::Client, queue_url: &str, receipt: &str, message_id: &str) {
    if let Err(e) = sqs
        .delete_message()
        .queue_url(queue_url)
        .receipt_handle(receipt)
        .send()
        .await
    {
        let err = aws_error("sqs", "DeleteMessage", e);
        tracing::warn!(
            error = %err,
            message_id,
            "cannot delete a handled SQS message; it will be delivered again (harmless)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_leaves_a_margin_before_redelivery() {
        assert_eq!(hold_for(Duration::from_secs(30)), Duration::from_secs(25));
        assert_eq!(hold_for(Duration::from_secs(11)), Duration::from_secs(6));
        assert_eq!(hold_for(Duration::from_secs(10)), Duration::from_secs(5));
        assert_eq!(hold_for(Duration::from_secs(1)), Duration::from_millis(500));
        assert_eq!(hold_for(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..8 {
            b = next_backoff(b);
            seen.push(b.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn each_account_out_of_scope_is_warned_about_once_in_bounded_memory() {
        let w = Warned::default();
        assert!(w.first("444455556666"));
        assert!(!w.first("444455556666"));
        assert!(w.first("777788889999"));
        for i in 2..MAX_WARNED_ACCOUNTS {
            assert!(w.first(&format!("{i:012}")));
        }
        assert!(!w.first("444455556666"), "still remembered at the cap");
        // One more account: the memory starts over, so the first one is warned about again.
        assert!(w.first("000000000000-new"));
        assert!(w.first("444455556666"));
        assert!(w.0.lock().unwrap().len() <= MAX_WARNED_ACCOUNTS);
    }

    #[test]
    fn prefix_cuts_on_char_boundaries() {
        assert_eq!(prefix("héllo", 2), "hé");
        assert_eq!(prefix("abc", 200), "abc");
        assert_eq!(prefix(&"x".repeat(500), 200).len(), 200);
    }
}
