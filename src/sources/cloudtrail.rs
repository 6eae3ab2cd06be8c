//! CloudTrail `LookupEvents` poller: the source that needs nothing but read access to
//! CloudTrail (no EventBridge rule, no queue).
//!
//! Every `poll_interval` it asks for IAM events (`EventSource = iam.amazonaws.com`, the one
//! lookup attribute a call may carry) in the window `[start, now]`, where
//! `start = (checkpoint.polled_until, or now - initial_lookback on a first start) - overlap`.
//! CloudTrail delivers events late (usually within about 5 minutes) and in no guaranteed
//! order, so each poll re-reads `overlap` of the previous window, and events already seen
//! are recognised by their `EventId` and skipped (counted as `duplicate`).
//!
//! - **Rate.** `LookupEvents` allows 2 requests per second per account and region; the
//!   poller spaces its calls (pages included) by at least 500 ms, on a pace it shares with
//!   the other `LookupEvents` callers of the daemon ([`CloudTrailPoller::with_pacer`]).
//!   With many accounts, each account's poller keeps its own pace (the limit is per
//!   account) and all of them share one [`LookupLimit`] on how many accounts poll at once
//!   (`sources.cloudtrail.max_concurrent_accounts`, [`CloudTrailPoller::with_limit`]).
//! - **Bounded memory.** Seen ids are kept with their `eventTime` and forgotten once they
//!   are older than the window start minus one minute (no later window can return them), with
//!   a hard cap of [`MAX_SEEN`] ids (oldest forgotten first).
//! - **Never fatal.** A record that cannot be parsed is counted as `malformed` and skipped. A
//!   failed `LookupEvents` call leaves the checkpoint where it was (the next poll covers the
//!   window again) and [`CloudTrailPoller::run`] keeps polling.
//! - **Checkpoint.** After each successful poll the window end and the ids the next window
//!   may see again are written to `state_dir` ([`super::checkpoint`]), so a restart neither
//!   misses the events created while the daemon was down nor replays those already handled.
//!   An event counts as handled once it was handed to the work queue; the full resync at
//!   start-up catches anything whose reconcile was cut short by a shutdown.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudtrail::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudtrail::types::{Event, LookupAttribute, LookupAttributeKey};
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::Instant;

use super::checkpoint::{Checkpoint, SeenEvent};
use super::event::{metric_event_name, parse_record_str, IAM_EVENT_SOURCE};
use super::trail::{LookupLimit, LookupPacer};
use crate::aws::{aws_error, Clients};
use crate::config::CloudTrailSource;
use crate::controller::dispatch::Dispatch;
use crate::error::{Error, Result};
use crate::metrics::{EventMalformed, EventOutcome, Source};

/// Minimum spacing of two `LookupEvents` calls (AWS allows 2 per second).
pub const MIN_CALL_SPACING: Duration = Duration::from_millis(500);

/// Page size (the maximum `LookupEvents` allows).
pub const PAGE_SIZE: i32 = 50;

/// At most this many event ids are remembered for de-duplication.
pub const MAX_SEEN: usize = 100_000;

/// `LookupEvents` reaches back at most 90 days.
const MAX_LOOKBACK: Duration = Duration::from_secs(90 * 86_400);

/// Seen ids are kept this long before the window start.
const SEEN_SLACK: Duration = Duration::from_secs(60);

/// How many recent call instants [`CloudTrailPoller::recent_calls`] keeps.
const CALL_LOG: usize = 64;

/// What one poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Events `LookupEvents` returned.
    pub events: usize,
    /// Events handed to the dispatcher (new and parseable; it may still ignore them).
    pub dispatched: usize,
    /// Events skipped because their id was seen before.
    pub duplicates: usize,
    /// Events skipped because their record could not be parsed.
    pub malformed: usize,
    /// `LookupEvents` calls (pages).
    pub pages: usize,
}

/// Event ids seen recently, with their event time; bounded.
#[derive(Debug, Default)]
pub(crate) struct SeenIds {
    by_id: HashMap<Arc<str>, DateTime<Utc>>,
    by_time: BTreeSet<(DateTime<Utc>, Arc<str>)>,
    cap: usize,
}

impl SeenIds {
    pub(crate) fn new(cap: usize) -> SeenIds {
        SeenIds {
            cap: cap.max(1),
            ..SeenIds::default()
        }
    }

    /// Remembers `id`; false if it was already known.
    pub(crate) fn insert(&mut self, id: &str, time: DateTime<Utc>) -> bool {
        if self.by_id.contains_key(id) {
            return false;
        }
        let id: Arc<str> = Arc::from(id);
        self.by_id.insert(id.clone(), time);
        self.by_time.insert((time, id));
        while self.by_id.len() > self.cap {
            match self.by_time.pop_first() {
                Some((_, old)) => {
                    self.by_id.remove(&old);
                }
                None => break,
            }
        }
        true
    }

    /// Forgets ids whose event time is before `cutoff`.
    pub(crate) fn evict_before(&mut self, cutoff: DateTime<Utc>) {
        while let Some((t, _)) = self.by_time.first() {
            if *t >= cutoff {
                break;
            }
            if let Some((_, id)) = self.by_time.pop_first() {
                self.by_id.remove(&id);
            }
        }
    }

    /// The ids with event time at or after `cutoff`, oldest first.
    pub(crate) fn since(&self, cutoff: DateTime<Utc>) -> Vec<SeenEvent> {
        self.by_time
            .iter()
            .filter(|(t, _)| *t >= cutoff)
            .map(|(t, id)| SeenEvent {
                id: id.to_string(),
                time: *t,
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// Polls CloudTrail `LookupEvents` for IAM events and dispatches them.
pub struct CloudTrailPoller {
    client: aws_sdk_cloudtrail::Client,
    dispatch: Dispatch,
    state_dir: PathBuf,
    poll_interval: Duration,
    overlap: chrono::Duration,
    initial_lookback: chrono::Duration,
    polled_until: Option<DateTime<Utc>>,
    seen: SeenIds,
    pacer: LookupPacer,
    /// Shared with the other accounts' pollers: how many poll at once.
    limit: Option<LookupLimit>,
    recent_calls: VecDeque<Instant>,
}

fn chrono_duration(d: Duration) -> Result<chrono::Duration> {
    chrono::Duration::from_std(d)
        .map_err(|_| Error::Config(format!("duration {d:?} is too large; use at most 90 days")))
}

fn to_aws(t: DateTime<Utc>) -> AwsDateTime {
    AwsDateTime::from_millis(t.timestamp_millis())
}

fn from_aws(t: &AwsDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

impl CloudTrailPoller {
    /// A poller using `clients.cloudtrail`, resuming from the checkpoint in `state_dir` if
    /// there is one (a corrupt checkpoint is logged and ignored, see [`super::checkpoint`]).
    pub fn new(
        clients: &Clients,
        cfg: &CloudTrailSource,
        state_dir: &Path,
        dispatch: Dispatch,
    ) -> Result<Self> {
        let overlap = chrono_duration(cfg.overlap.get())?;
        let initial_lookback = chrono_duration(cfg.initial_lookback.get())?;
        let checkpoint = Checkpoint::load(state_dir)?;
        let mut seen = SeenIds::new(MAX_SEEN);
        let polled_until = checkpoint.map(|cp| {
            for s in &cp.seen {
                seen.insert(&s.id, s.time);
            }
            tracing::info!(
                polled_until = %cp.polled_until.to_rfc3339(),
                seen = cp.seen.len(),
                "resuming CloudTrail polling from the checkpoint"
            );
            cp.polled_until
        });
        Ok(CloudTrailPoller {
            client: clients.cloudtrail().clone(),
            dispatch,
            state_dir: state_dir.to_path_buf(),
            poll_interval: cfg.poll_interval.get(),
            overlap,
            initial_lookback,
            polled_until,
            seen,
            pacer: LookupPacer::with_spacing(MIN_CALL_SPACING),
            limit: None,
            recent_calls: VecDeque::with_capacity(CALL_LOG),
        })
    }

    /// The end of the last successful poll window (from the checkpoint before the first poll).
    pub fn polled_until(&self) -> Option<DateTime<Utc>> {
        self.polled_until
    }

    /// When the most recent `LookupEvents` calls were made (at most 64), oldest first.
    pub fn recent_calls(&self) -> impl Iterator<Item = Instant> + '_ {
        self.recent_calls.iter().copied()
    }

    /// The checkpoint as it would be saved now, if a poll ever succeeded.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let until = self.polled_until?;
        let cutoff = until - self.overlap - SEEN_SLACK_CHRONO;
        Some(Checkpoint::new(until, self.seen.since(cutoff)))
    }

    /// Writes the checkpoint to the state directory (nothing to write before a first
    /// successful poll).
    pub async fn save_checkpoint(&self) -> Result<()> {
        let Some(cp) = self.checkpoint() else {
            return Ok(());
        };
        let dir = self.state_dir.clone();
        match tokio::task::spawn_blocking(move || cp.save(&dir)).await {
            Ok(r) => r,
            Err(e) => Err(Error::Other(format!(
                "writing the CloudTrail checkpoint was interrupted: {e}"
            ))),
        }
    }

    /// Share `pacer` with the other `LookupEvents` callers of the process (the daemon's
    /// pre-flight gate), so that together they stay within AWS's limit.
    pub fn with_pacer(mut self, pacer: LookupPacer) -> Self {
        self.pacer = pacer;
        self
    }

    /// Poll only while holding a permit of `limit`, shared with the other accounts'
    /// pollers (each keeps its own pacer).
    pub fn with_limit(mut self, limit: LookupLimit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Waits until the next `LookupEvents` call is allowed, and records it.
    async fn gate(&mut self) {
        let now = self.pacer.wait().await;
        if self.recent_calls.len() == CALL_LOG {
            self.recent_calls.pop_front();
        }
        self.recent_calls.push_back(now);
    }

    /// One poll: all pages of the window, each new event dispatched. On success the
    /// checkpoint advances to the window end and is saved (a failed save is logged, not
    /// returned: the poll itself worked). On a failed call the checkpoint stays.
    pub async fn poll_once(&mut self) -> Result<PollStats> {
        // Held from the first page to the last (the window starts once it is granted).
        let permit = match self.limit.clone() {
            Some(limit) => limit.acquire().await,
            None => None,
        };
        let now = Utc::now();
        let base = self
            .polled_until
            .unwrap_or_else(|| now - self.initial_lookback);
        let oldest = now - chrono_duration(MAX_LOOKBACK)?;
        let start = (base - self.overlap).max(oldest).min(now);
        let end = now;
        self.seen.evict_before(start - SEEN_SLACK_CHRONO);

        let attribute = LookupAttribute::builder()
            .attribute_key(LookupAttributeKey::EventSource)
            .attribute_value(IAM_EVENT_SOURCE)
            .build()
            .map_err(|e| Error::Other(format!("building the LookupEvents attribute: {e}")))?;
        let mut stats = PollStats::default();
        let mut token: Option<String> = None;
        loop {
            self.gate().await;
            let out = self
                .client
                .lookup_events()
                .lookup_attributes(attribute.clone())
                .start_time(to_aws(start))
                .end_time(to_aws(end))
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await;
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    let err = aws_error("cloudtrail", "LookupEvents", e);
                    tracing::warn!(
                        error = %err,
                        window_start = %start.to_rfc3339(),
                        pages_done = stats.pages,
                        "CloudTrail poll failed; the next poll covers this window again"
                    );
                    return Err(err);
                }
            };
            stats.pages += 1;
            for ev in out.events() {
                self.handle(ev, &mut stats);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }

        drop(permit);
        self.polled_until = Some(end);
        self.dispatch
            .metrics()
            .poll_ok(Source::CloudTrail, Utc::now());
        tracing::debug!(
            window_start = %start.to_rfc3339(),
            window_end = %end.to_rfc3339(),
            events = stats.events,
            dispatched = stats.dispatched,
            duplicates = stats.duplicates,
            malformed = stats.malformed,
            pages = stats.pages,
            "CloudTrail poll done"
        );
        if let Err(e) = self.save_checkpoint().await {
            tracing::warn!(error = %e, "cannot save the CloudTrail checkpoint; after a restart, polling resumes from the previous one");
        }
        Ok(stats)
    }

    /// A record that cannot be parsed: counted and logged once.
    fn malformed(&self, label: &str, id: Option<&str>, error: &dyn std::fmt::Display) {
        EventMalformed {
            source: Source::CloudTrail,
            event_name: label,
            id,
            error,
            receive_count: None,
            body_start: None,
        }
        .emit(self.dispatch.metrics());
    }

    fn handle(&mut self, ev: &Event, stats: &mut PollStats) {
        stats.events += 1;
        let label = metric_event_name(ev.event_name().unwrap_or(""));
        let parsed = ev
            .cloud_trail_event()
            .ok_or("the event has no CloudTrailEvent")
            .map(parse_record_str);
        let record = parsed.as_ref().ok().and_then(|r| r.as_ref().ok());
        let id: Option<String> = ev
            .event_id()
            .filter(|s| !s.is_empty())
            .or(record.map(|p| p.event_id.as_str()))
            .map(str::to_owned);
        let id = id.as_deref();
        let time = ev
            .event_time()
            .and_then(from_aws)
            .or(record.map(|p| p.event_time))
            .unwrap_or_else(Utc::now);
        if let Some(key) = id {
            if !self.seen.insert(key, time) {
                stats.duplicates += 1;
                self.dispatch
                    .metrics()
                    .event_received(label, EventOutcome::Duplicate);
                return;
            }
        }
        match parsed {
            Ok(Ok(record)) => {
                stats.dispatched += 1;
                self.dispatch
                    .dispatch(&record, Source::CloudTrail, Instant::now());
            }
            Ok(Err(e)) => {
                stats.malformed += 1;
                self.malformed(label, id, &e);
            }
            Err(e) => {
                stats.malformed += 1;
                self.malformed(label, id, &e);
            }
        }
    }

    /// Polls until `shutdown` becomes true (or its sender is dropped): a poll, then
    /// `poll_interval` of waiting, and so on. A failed poll is logged and retried at the next
    /// interval; this never returns early because of AWS. A poll in progress at shutdown is
    /// abandoned (its window is polled again after a restart). The checkpoint is saved after
    /// each successful poll and once more at the end; only that last save can fail `run`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        tracing::info!(
            poll_interval_seconds = self.poll_interval.as_secs_f64(),
            overlap_seconds = self.overlap.num_seconds(),
            "CloudTrail poller started"
        );
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => break,
                r = self.poll_once() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "CloudTrail poll failed; retrying at the next interval");
                    }
                }
            }
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => break,
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        let saved = self.save_checkpoint().await;
        tracing::info!(
            polled_until = self.polled_until.map(|t| t.to_rfc3339()),
            seen = self.seen.len(),
            "CloudTrail poller stopped"
        );
        saved
    }
}

const SEEN_SLACK_CHRONO: chrono::Duration = chrono::Duration::seconds(SEEN_SLACK.as_secs() as i64);

/// Resolves once shutdown is requested or can no longer be requested (sender dropped).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid time")
    }

    #[test]
    fn seen_ids_deduplicate_and_evict_by_time() {
        let mut s = SeenIds::new(100);
        assert!(s.insert("a", t(10)));
        assert!(s.insert("b", t(5)));
        assert!(s.insert("c", t(20)));
        assert!(!s.insert("a", t(10)));
        assert!(!s.insert("b", t(99)), "known id, whatever its time");
        assert_eq!(s.len(), 3);
        s.evict_before(t(10));
        assert_eq!(s.len(), 2);
        assert!(s.insert("b", t(5)), "b was forgotten");
        let ids: Vec<String> = s.since(t(10)).into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["a", "c"]);
        s.evict_before(t(1000));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn seen_ids_hard_cap_forgets_the_oldest() {
        let mut s = SeenIds::new(3);
        for (i, id) in ["new", "old", "mid", "newest"].iter().enumerate() {
            let time = match *id {
                "old" => t(0),
                "mid" => t(50),
                "new" => t(100),
                _ => t(200 + i as i64),
            };
            s.insert(id, time);
        }
        assert_eq!(s.len(), 3);
        assert!(s.insert("old", t(0)), "the oldest was evicted");
        assert!(!s.insert("newest", t(0)));
    }

    #[test]
    fn time_conversion_round_trips() {
        let now = DateTime::parse_from_rfc3339("2024-08-01T13:42:21.250Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(from_aws(&to_aws(now)), Some(now));
    }
}
