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
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::aws::Clients;
use crate::config::{Mode, Notifications};
use crate::error::Result;
use crate::inventory::Tags;
use crate::journal::Journal;
use crate::metrics::{Metrics, NoticeRaised, NotificationDelivery, NotifyChannel, NotifyOutcome};

mod deliver;
mod sns;
pub mod webhook;

use deliver::{journal_notice, run, Deliverer};

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
        let sns = sns_topic.map(|arn| (clients.sns().clone(), arn));
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

#[cfg(test)]
mod tests;
