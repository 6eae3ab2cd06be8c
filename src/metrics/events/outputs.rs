//! Events of what goes out: owner notices raised and delivered, Security Hub exports.

use crate::metrics::labels::*;
use crate::metrics::registry::Metrics;

/// An owner notification was raised (and journaled): counted by event and logged once.
/// `user`, `access_key_id` and `owner` go to the log line only, never to a label.
#[derive(Debug, Clone, Copy)]
pub struct NoticeRaised<'a> {
    /// One of [`NOTICE_EVENTS`]; anything else is counted as `other`.
    pub event: &'a str,
    pub user: &'a str,
    pub access_key_id: Option<&'a str>,
    pub owner: Option<&'a str>,
    /// `queued` (handed to the channels), `journal-only` (no channel configured),
    /// `dry-run` (mode dry-run: not delivered) or `dropped` (the queue was full).
    pub disposition: &'a str,
}

impl NoticeRaised<'_> {
    pub fn emit(&self, metrics: Option<&Metrics>) {
        let label = NOTICE_EVENTS
            .iter()
            .copied()
            .find(|e| *e == self.event)
            .unwrap_or("other");
        if let Some(m) = metrics {
            m.notices_total.with_label_values(&[label]).inc();
        }
        let NoticeRaised {
            event,
            user,
            access_key_id,
            owner,
            disposition,
        } = *self;
        tracing::info!(
            event,
            user,
            access_key_id,
            owner,
            disposition,
            "owner notification"
        );
    }
}

/// What became of one notification on one channel: counted under
/// `iam_warden_notifications_total{channel, outcome}` and logged once (sent at info, the
/// rest at warn). `destination` is the webhook URL without its query string, or the SNS
/// topic ARN; `error` is one line and never holds the signing key.
#[derive(Debug, Clone, Copy)]
pub struct NotificationDelivery<'a> {
    pub channel: NotifyChannel,
    pub outcome: NotifyOutcome,
    pub event: &'a str,
    pub user: &'a str,
    pub destination: &'a str,
    pub attempts: u32,
    pub error: Option<&'a str>,
}

impl NotificationDelivery<'_> {
    pub fn emit(&self, metrics: Option<&Metrics>) {
        let (channel, outcome) = (self.channel.as_str(), self.outcome.as_str());
        if let Some(m) = metrics {
            m.notifications_total
                .with_label_values(&[channel, outcome])
                .inc();
        }
        let NotificationDelivery {
            event,
            user,
            destination,
            attempts,
            error,
            ..
        } = *self;
        match self.outcome {
            NotifyOutcome::Sent => tracing::info!(
                channel,
                outcome,
                event,
                user,
                destination,
                attempts,
                "notification delivered"
            ),
            _ => tracing::warn!(
                channel,
                outcome,
                event,
                user,
                destination,
                attempts,
                error,
                "notification not delivered"
            ),
        }
    }
}

/// One Security Hub export by the daemon, counted under
/// `iam_warden_securityhub_exports_total{outcome}` and logged once (exported at debug, the
/// rest at warn). `user` is the user of a per-user export (none: the whole account);
/// `error` is one line.
#[derive(Debug, Clone, Copy)]
pub struct SecurityHubExported<'a> {
    pub outcome: ExportOutcome,
    pub user: Option<&'a str>,
    pub active: usize,
    pub resolved: usize,
    pub error: Option<&'a str>,
}

impl SecurityHubExported<'_> {
    pub fn emit(&self, metrics: Option<&Metrics>) {
        let outcome = self.outcome.as_str();
        if let Some(m) = metrics {
            m.securityhub_exports_total
                .with_label_values(&[outcome])
                .inc();
        }
        let SecurityHubExported {
            user,
            active,
            resolved,
            error,
            ..
        } = *self;
        let scope = user.unwrap_or("whole account");
        match self.outcome {
            ExportOutcome::Exported => tracing::debug!(
                outcome,
                scope,
                active,
                resolved,
                "findings exported to Security Hub"
            ),
            _ => tracing::warn!(
                outcome,
                scope,
                active,
                resolved,
                error,
                "findings not exported to Security Hub"
            ),
        }
    }
}
