//! Owner notifications: every rotation phase change, stuck rotation and exposed key is one
//! [`Notice`]. [`Notifier::notify`] journals it (action `notify`, target = the event),
//! counts it, and hands it to a background task through a bounded queue; the task
//! delivers it to the configured channels (a signed webhook, an SNS topic) with retries.
//! The caller never waits for a channel and never sees a delivery error: each delivery is
//! counted (`iam_warden_notifications_total{channel,outcome}`), logged once and journaled.
//!
//! In mode `dry-run` nothing is delivered: the notice is journaled as `dry_run`.
//!
//! A [`Notice`] has no field that could hold a secret (no secret access key, no password,
//! no signing key); callers must not put one into `reason` either.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::aws::Clients;
use crate::config::{Mode, Notifications};
use crate::error::Result;
use crate::inventory::Tags;
use crate::journal::{Entry, Journal};
use crate::metrics::{Metrics, NoticeRaised, NotificationDelivery, NotifyChannel, NotifyOutcome};

mod sns;
pub mod webhook;

pub use sns::subject as sns_subject;
pub use webhook::{SigningKey, SIGNATURE_HEADER};

/// The `schema` field of every notice body.
pub const SCHEMA: &str = "iam-warden.notice/v1";
/// Deliveries running at once (each may wait for retries).
const MAX_IN_FLIGHT: usize = 16;
/// Retry backoff: retry n waits a random time below min(cap, base · 2^(n-1)).
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// What happened to a key or user, by its stable kebab-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeEvent {
    /// The key reaches the age limit soon (`due`).
    KeyExpiring,
    /// A new key was created and stored; the old one is draining.
    KeyRotated,
    KeyDeactivated,
    KeyDeleted,
    /// Put back by `iam-warden reactivate`.
    KeyReactivated,
    /// The grace period passed and the old key is still in use.
    RotationStuck,
    /// AWS reported the key as exposed.
    KeyExposed,
    /// The user must set a new password at the next sign-in.
    PasswordResetRequired,
}

impl NoticeEvent {
    pub const ALL: [NoticeEvent; 8] = [
        NoticeEvent::KeyExpiring,
        NoticeEvent::KeyRotated,
        NoticeEvent::KeyDeactivated,
        NoticeEvent::KeyDeleted,
        NoticeEvent::KeyReactivated,
        NoticeEvent::RotationStuck,
        NoticeEvent::KeyExposed,
        NoticeEvent::PasswordResetRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeEvent::KeyExpiring => "key-expiring",
            NoticeEvent::KeyRotated => "key-rotated",
            NoticeEvent::KeyDeactivated => "key-deactivated",
            NoticeEvent::KeyDeleted => "key-deleted",
            NoticeEvent::KeyReactivated => "key-reactivated",
            NoticeEvent::RotationStuck => "rotation-stuck",
            NoticeEvent::KeyExposed => "key-exposed",
            NoticeEvent::PasswordResetRequired => "password-reset-required",
        }
    }
}

/// One owner notification. It cannot hold a secret: there is no field for one (the key
/// is named by its id only), and `reason` is a sentence iam-warden writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub time: DateTime<Utc>,
    pub account: String,
    pub user: String,
    /// The user's owner tag (`notifications.owner_tag`), else `notifications.default_owner`.
    pub owner: Option<String>,
    pub event: NoticeEvent,
    pub access_key_id: Option<String>,
    pub reason: String,
    /// When the next step is due (e.g. the key's age limit for `key-expiring`).
    pub due: Option<DateTime<Utc>>,
}

/// The webhook body / SNS message: the notice with a schema name.
#[derive(Serialize)]
struct Body<'a> {
    schema: &'static str,
    #[serde(flatten)]
    notice: &'a Notice,
}

impl Notice {
    /// The key this notice is about.
    pub fn with_key(mut self, access_key_id: impl Into<String>) -> Notice {
        self.access_key_id = Some(access_key_id.into());
        self
    }

    /// When the next step is due.
    pub fn with_due(mut self, due: DateTime<Utc>) -> Notice {
        self.due = Some(due);
        self
    }

    /// The JSON body sent to the webhook and to SNS (one line, [`SCHEMA`] first).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Body {
            schema: SCHEMA,
            notice: self,
        })
        .unwrap_or_else(|e| format!("{{\"schema\":\"{SCHEMA}\",\"error\":\"{e}\"}}"))
    }
}

/// The owner of a user: its `owner_tag` tag when set and not blank, else `default_owner`.
pub fn owner_of(cfg: &Notifications, tags: &Tags) -> Option<String> {
    tags.get(cfg.owner_tag.trim())
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .or_else(|| cfg.default_owner.clone().filter(|o| !o.trim().is_empty()))
}

/// The configured channels, checked: load them at startup, before anything else, so a
/// missing signing key stops the process at once.
#[derive(Debug)]
pub struct Channels {
    webhook: Option<webhook::Webhook>,
    sns_topic: Option<String>,
}

impl Channels {
    /// Read the webhook signing key: missing, unreadable or empty is an error naming the
    /// file (the key is never printed).
    pub fn load(cfg: &Notifications) -> Result<Channels> {
        let webhook = match (&cfg.webhook_url, &cfg.webhook_secret_file) {
            (Some(url), Some(file)) => Some(webhook::Webhook::new(
                url,
                SigningKey::read(file)?,
                cfg.timeout.get(),
            )),
            (Some(_), None) => {
                return Err(crate::error::Error::Config(
                    "notifications.webhook_url is set but webhook_secret_file is not; name a \
                     file holding the HMAC key that signs each body"
                        .into(),
                ))
            }
            _ => None,
        };
        Ok(Channels {
            webhook,
            sns_topic: cfg.sns_topic_arn.clone(),
        })
    }

    /// The longest one notice can take on a channel: every attempt's timeout plus the
    /// backoff ceilings between them. The CLI drains for this long at most.
    pub fn worst_case(cfg: &Notifications) -> Duration {
        let attempts = cfg.max_attempts.max(1);
        let waits: Duration = (1..attempts)
            .map(|n| (BACKOFF_BASE * 2u32.pow((n - 1).min(16))).min(BACKOFF_CAP))
            .sum();
        cfg.timeout.get() * attempts + waits
    }
}

/// Delivers notices to the channels; shared by the background task and its deliveries.
#[derive(Debug)]
struct Deliverer {
    webhook: Option<webhook::Webhook>,
    sns: Option<(aws_sdk_sns::Client, String)>,
    timeout: Duration,
    max_attempts: u32,
    mode: Mode,
    journal: Arc<Journal>,
    metrics: Option<Arc<Metrics>>,
}

/// The owner-notification sender. Build one per process with [`Notifier::start`], call
/// [`Notifier::notify`] from anywhere, and [`Notifier::shutdown`] before exiting.
#[derive(Debug)]
pub struct Notifier {
    cfg: Notifications,
    account: String,
    mode: Mode,
    journal: Arc<Journal>,
    metrics: Option<Arc<Metrics>>,
    /// Each configured channel with where it delivers (URL without query, topic ARN).
    channels: Vec<(NotifyChannel, String)>,
    tx: Mutex<Option<mpsc::Sender<Notice>>>,
    deadline: watch::Sender<Option<Instant>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Notifier {
    /// Start the background task delivering to `channels` (from [`Channels::load`]).
    /// Needs a Tokio runtime.
    pub fn start(
        cfg: &Notifications,
        channels: Channels,
        mode: Mode,
        account: &str,
        clients: &Clients,
        journal: Arc<Journal>,
        metrics: Option<Arc<Metrics>>,
    ) -> Arc<Notifier> {
        let timeout = cfg.timeout.get();
        let Channels { webhook, sns_topic } = channels;
        let sns = sns_topic.map(|arn| (clients.sns.clone(), arn));
        let mut channels = Vec::new();
        if let Some(w) = &webhook {
            channels.push((NotifyChannel::Webhook, w.shown().to_string()));
        }
        if let Some((_, arn)) = &sns {
            channels.push((NotifyChannel::Sns, arn.clone()));
        }
        let capacity = usize::try_from(cfg.queue_capacity.max(1)).unwrap_or(1000);
        let (tx, rx) = mpsc::channel(capacity);
        let (deadline, deadline_rx) = watch::channel(None);
        let deliverer = Arc::new(Deliverer {
            webhook,
            sns,
            timeout,
            max_attempts: cfg.max_attempts.max(1),
            mode,
            journal: journal.clone(),
            metrics: metrics.clone(),
        });
        let worker = tokio::spawn(run(rx, deliverer, deadline_rx));
        Arc::new(Notifier {
            cfg: cfg.clone(),
            account: account.to_string(),
            mode,
            journal,
            metrics,
            channels,
            tx: Mutex::new(Some(tx)),
            deadline,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// A notice about `user` (its owner from `tags`), in this notifier's account.
    pub fn notice(
        &self,
        event: NoticeEvent,
        user: &str,
        tags: &Tags,
        reason: impl Into<String>,
        time: DateTime<Utc>,
    ) -> Notice {
        Notice {
            time,
            account: self.account.clone(),
            user: user.to_string(),
            owner: owner_of(&self.cfg, tags),
            event,
            access_key_id: None,
            reason: reason.into(),
            due: None,
        }
    }

    /// The channels notices are delivered to (empty: journal and metric only).
    pub fn channels(&self) -> Vec<NotifyChannel> {
        self.channels.iter().map(|(c, _)| *c).collect()
    }

    /// Journal and count `notice` and queue it for delivery. Never blocks on a channel and
    /// never fails: a full queue drops the notice (journaled as failed, counted as
    /// `dropped` on every channel).
    pub fn notify(&self, notice: Notice) {
        let (disposition, outcome, error) = if self.mode == Mode::DryRun {
            ("dry-run", "dry_run", None)
        } else if self.channels.is_empty() {
            ("journal-only", "applied", None)
        } else {
            let sent = match self.tx.lock() {
                Ok(tx) => match tx.as_ref() {
                    Some(tx) => tx.try_send(notice.clone()).map_err(|e| match e {
                        mpsc::error::TrySendError::Full(_) => format!(
                            "the notification queue is full (notifications.queue_capacity = \
                             {}); dropped: raise it or check why the channels are slow",
                            self.cfg.queue_capacity
                        ),
                        mpsc::error::TrySendError::Closed(_) => {
                            "notifications are shut down; dropped".to_string()
                        }
                    }),
                    None => Err("notifications are shut down; dropped".to_string()),
                },
                Err(_) => Err("the notification queue lock is poisoned; dropped".to_string()),
            };
            match sent {
                Ok(()) => ("queued", "applied", None),
                Err(e) => ("dropped", "failed", Some(e)),
            }
        };
        self.journal_line(&notice, "notify", outcome, error.clone());
        NoticeRaised {
            event: notice.event.as_str(),
            user: &notice.user,
            access_key_id: notice.access_key_id.as_deref(),
            owner: notice.owner.as_deref(),
            disposition,
        }
        .emit(self.metrics.as_deref());
        if let Some(error) = error {
            for (channel, destination) in &self.channels {
                NotificationDelivery {
                    channel: *channel,
                    outcome: NotifyOutcome::Dropped,
                    event: notice.event.as_str(),
                    user: &notice.user,
                    destination,
                    attempts: 0,
                    error: Some(&error),
                }
                .emit(self.metrics.as_deref());
            }
        }
    }

    fn journal_line(&self, notice: &Notice, action: &str, outcome: &str, error: Option<String>) {
        journal_notice(&self.journal, self.mode, notice, action, outcome, error);
    }

    /// Stop taking notices and deliver the queued ones until `deadline`; what is not
    /// delivered by then is counted and journaled as dropped. Returns within about a
    /// second after `deadline`. Later [`Notifier::notify`] calls only journal and count.
    pub async fn shutdown(&self, deadline: Instant) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let _ = self.deadline.send(Some(deadline));
        let worker = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(mut worker) = worker {
            let limit = deadline + Duration::from_secs(1);
            if tokio::time::timeout_at(limit, &mut worker).await.is_err() {
                worker.abort();
                tracing::warn!("owner notifications did not stop in time; the rest are lost");
            }
        }
    }
}

fn journal_notice(
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
async fn run(
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

#[cfg(test)]
mod tests;
