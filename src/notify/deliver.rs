//! The background side of [`super::Notifier`]: the task taking notices off the queue, and
//! the delivery to each channel with retries, backoff and the shutdown deadline.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{sns, webhook, Notice, BACKOFF_BASE, BACKOFF_CAP, MAX_IN_FLIGHT};
use crate::config::Mode;
use crate::journal::{Entry, Journal};
use crate::metrics::{Metrics, NotificationDelivery, NotifyChannel, NotifyOutcome};

/// Delivers notices to the channels; shared by the background task and its deliveries.
#[derive(Debug)]
pub(super) struct Deliverer {
    pub(super) webhook: Option<webhook::Webhook>,
    pub(super) sns: Option<(aws_sdk_sns::Client, String)>,
    pub(super) timeout: Duration,
    pub(super) max_attempts: u32,
    pub(super) mode: Mode,
    pub(super) journal: Arc<Journal>,
    pub(super) metrics: Option<Arc<Metrics>>,
}

/// Resolves once a shutdown deadline is set and has passed (never before a shutdown).
async fn deadline_passed(mut rx: watch::Receiver<Option<Instant>>) {
    loop {
        let at = *rx.borrow_and_update();
        if let Some(at) = at {
            tokio::time::sleep_until(at).await;
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The background task: take notices off the queue and deliver each (up to
/// [`MAX_IN_FLIGHT`] at once) until the queue is closed and empty, or the deadline passes.
pub(super) async fn run(
    mut rx: mpsc::Receiver<Notice>,
    d: Arc<Deliverer>,
    deadline: watch::Receiver<Option<Instant>>,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    loop {
        while in_flight.try_join_next().is_some() {}
        let next = tokio::select! {
            n = rx.recv() => n,
            _ = deadline_passed(deadline.clone()) => None,
        };
        let Some(notice) = next else { break };
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.ok(),
            _ = deadline_passed(deadline.clone()) => None,
        };
        let Some(slot) = slot else {
            d.dropped_everywhere(&notice);
            break;
        };
        let (d, deadline) = (d.clone(), deadline.clone());
        in_flight.spawn(async move {
            d.deliver(&notice, deadline).await;
            drop(slot);
        });
    }
    rx.close();
    while let Ok(notice) = rx.try_recv() {
        d.dropped_everywhere(&notice);
    }
    while in_flight.join_next().await.is_some() {}
}

impl Deliverer {
    fn channels(&self) -> impl Iterator<Item = NotifyChannel> + '_ {
        self.webhook
            .as_ref()
            .map(|_| NotifyChannel::Webhook)
            .into_iter()
            .chain(self.sns.as_ref().map(|_| NotifyChannel::Sns))
    }

    fn destination(&self, channel: NotifyChannel) -> &str {
        match channel {
            NotifyChannel::Webhook => self.webhook.as_ref().map_or("", |w| w.shown()),
            NotifyChannel::Sns => self.sns.as_ref().map_or("", |(_, arn)| arn.as_str()),
        }
    }

    /// Every channel: dropped at shutdown before it was attempted.
    fn dropped_everywhere(&self, notice: &Notice) {
        for channel in self.channels() {
            self.finish(
                channel,
                notice,
                NotifyOutcome::Dropped,
                0,
                Some("shutdown deadline passed before delivery".into()),
            );
        }
    }

    /// Deliver to every channel at once.
    async fn deliver(&self, notice: &Notice, deadline: watch::Receiver<Option<Instant>>) {
        let body = notice.to_json();
        let webhook = async {
            if self.webhook.is_some() {
                self.via(NotifyChannel::Webhook, notice, &body, deadline.clone())
                    .await;
            }
        };
        let sns = async {
            if self.sns.is_some() {
                self.via(NotifyChannel::Sns, notice, &body, deadline.clone())
                    .await;
            }
        };
        tokio::join!(webhook, sns);
    }

    async fn attempt(
        &self,
        channel: NotifyChannel,
        notice: &Notice,
        body: &str,
    ) -> webhook::Attempt {
        match channel {
            NotifyChannel::Webhook => match &self.webhook {
                Some(w) => w.post(body.as_bytes()).await,
                None => webhook::Attempt::Fatal("no webhook configured".into()),
            },
            NotifyChannel::Sns => match &self.sns {
                Some((client, arn)) => sns::publish(client, arn, notice, body, self.timeout).await,
                None => webhook::Attempt::Fatal("no SNS topic configured".into()),
            },
        }
    }

    /// One channel: attempts with backoff until sent, a fatal answer, `max_attempts`, or
    /// the shutdown deadline.
    async fn via(
        &self,
        channel: NotifyChannel,
        notice: &Notice,
        body: &str,
        deadline: watch::Receiver<Option<Instant>>,
    ) {
        use webhook::Attempt;
        const LATE: &str = "shutdown deadline passed before delivery";
        let mut attempts = 0;
        let (outcome, error) = loop {
            attempts += 1;
            let result = tokio::select! {
                r = self.attempt(channel, notice, body) => r,
                _ = deadline_passed(deadline.clone()) => break (NotifyOutcome::Dropped, Some(LATE.to_string())),
            };
            match result {
                Attempt::Sent => break (NotifyOutcome::Sent, None),
                Attempt::Fatal(e) => break (NotifyOutcome::Failed, Some(e)),
                Attempt::Retry(e) if attempts >= self.max_attempts => {
                    break (
                        NotifyOutcome::Failed,
                        Some(format!(
                            "{e} (gave up after {attempts} attempt{}, notifications.max_attempts)",
                            if attempts == 1 { "" } else { "s" }
                        )),
                    )
                }
                Attempt::Retry(_) => {
                    let wait = webhook::backoff(attempts, BACKOFF_BASE, BACKOFF_CAP);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = deadline_passed(deadline.clone()) => break (NotifyOutcome::Dropped, Some(LATE.to_string())),
                    }
                }
            }
        };
        self.finish(channel, notice, outcome, attempts, error);
    }

    /// Count, log and journal what became of `notice` on `channel`.
    fn finish(
        &self,
        channel: NotifyChannel,
        notice: &Notice,
        outcome: NotifyOutcome,
        attempts: u32,
        error: Option<String>,
    ) {
        let destination = self.destination(channel);
        NotificationDelivery {
            channel,
            outcome,
            event: notice.event.as_str(),
            user: &notice.user,
            destination,
            attempts,
            error: error.as_deref(),
        }
        .emit(self.metrics.as_deref());
        let journal_outcome = match outcome {
            NotifyOutcome::Sent => "applied",
            NotifyOutcome::Failed => "failed",
            NotifyOutcome::Dropped => "skipped",
        };
        let action = match channel {
            NotifyChannel::Webhook => "notify_webhook",
            NotifyChannel::Sns => "notify_sns",
        };
        let error = error.map(|e| format!("{} {destination}: {e}", channel.as_str()));
        journal_notice(
            &self.journal,
            self.mode,
            notice,
            action,
            journal_outcome,
            error,
        );
    }
}

pub(super) fn journal_notice(
    journal: &Journal,
    mode: Mode,
    notice: &Notice,
    action: &str,
    outcome: &str,
    error: Option<String>,
) {
    let entry = Entry {
        time: Utc::now(),
        account: notice.account.clone(),
        user: Some(notice.user.clone()),
        action: action.to_string(),
        target: notice.event.as_str().to_string(),
        reason: notice.reason.clone(),
        mode: mode.to_string(),
        outcome: outcome.to_string(),
        error,
    };
    if let Err(e) = journal.record(&entry) {
        tracing::error!(error = %e, "journal write failed");
    }
}
