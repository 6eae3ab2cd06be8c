//! Reading CloudTrail records for `impact`: log files as CloudTrail delivers them to S3
//! ([`replay_dir`]: `*.json.gz` holding `{"Records": [...]}`, or plain `*.json`), a file
//! at a time on every core, or the account's `LookupEvents` ([`replay_lookup`]), paced
//! within its 2 requests per second. A file that cannot be read is a named, counted skip.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cloudtrail::primitives::DateTime as AwsDateTime;
use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;
use serde::Serialize;

use crate::aws::aws_error;
use crate::baseline::impact::{Record, TrailFile};
use crate::error::{Error, Result};

/// A file that was not read, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileSkip {
    pub path: String,
    pub error: String,
}

/// What reading the files did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileStats {
    pub files: u64,
    /// Bytes read from disk (compressed).
    pub bytes: u64,
    pub skipped: Vec<FileSkip>,
}

fn is_trail_file(p: &Path) -> bool {
    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    n.ends_with(".json.gz") || n.ends_with(".json")
}

/// The trail files under `dir` (recursively, as an S3 copy keeps its
/// `AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/` prefixes), sorted.
pub fn trail_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| {
            Error::Other(format!(
                "cannot read the directory {}: {e}; give --from a directory holding CloudTrail log files",
                d.display()
            ))
        })?;
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) if is_trail_file(&p) => out.push(p),
                _ => {}
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Other(format!(
            "no CloudTrail log files (*.json.gz or *.json) under {}; give --from a copy of the trail's S3 prefix",
            dir.display()
        )));
    }
    out.sort();
    Ok(out)
}

/// One file's records. `.gz` is decompressed (all members, as `gzip` concatenates them).
pub fn read_file(path: &Path) -> std::result::Result<(TrailFile, u64), String> {
    let mut raw = Vec::new();
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(|e| format!("cannot read: {e}"))?;
    let json = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::with_capacity(raw.len() * 8);
        MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| format!("not a complete gzip file ({e}); re-copy it from the bucket"))?;
        out
    } else {
        raw
    };
    let file: TrailFile = serde_json::from_slice(&json)
        .map_err(|e| format!("not a CloudTrail log file ({{\"Records\": [...]}}): {e}"))?;
    Ok((file, n as u64))
}

/// Read every trail file under `dir` on `threads` threads, a file at a time per thread
/// (never all files in memory), calling `each` for every record with that thread's state
/// (made by `init`). Returns the states and what was read; unreadable files are skipped with
/// a warning.
pub fn replay_dir<T, I, F>(
    dir: &Path,
    threads: usize,
    init: I,
    each: F,
) -> Result<(Vec<T>, FileStats)>
where
    T: Send,
    I: Fn() -> T + Sync,
    F: Fn(&mut T, &Record) + Sync,
{
    let files = trail_files(dir)?;
    let next = AtomicUsize::new(0);
    let stats = Mutex::new(FileStats::default());
    let threads = threads.clamp(1, files.len());
    let states = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut state = init();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.get(i) else { break };
                        let read = read_file(path);
                        let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
                        st.files += 1;
                        match read {
                            Ok((file, bytes)) => {
                                st.bytes += bytes;
                                drop(st);
                                for r in &file.records {
                                    each(&mut state, r);
                                }
                            }
                            Err(error) => {
                                tracing::warn!(file = %path.display(), %error, "skipping a trail file");
                                st.skipped.push(FileSkip {
                                    path: path.display().to_string(),
                                    error,
                                });
                            }
                        }
                    }
                    state
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join())
            .collect::<std::result::Result<Vec<T>, _>>()
    })
    .map_err(|_| Error::Other("a trail-file reader thread panicked".into()))?;
    let mut stats = stats.into_inner().unwrap_or_else(|e| e.into_inner());
    stats.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((states, stats))
}

/// `LookupEvents` answers at most this many events per page.
const PAGE_SIZE: i32 = 50;
/// AWS's documented limit for `LookupEvents`: 2 requests per second per account and region.
pub const LOOKUP_REQUESTS_PER_SECOND: f64 = 2.0;

/// Where a `LookupEvents` replay is.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupProgress {
    pub pages: u64,
    pub events: u64,
    /// Share of the window read (events come newest first).
    pub done: f64,
    pub elapsed: Duration,
    /// Estimated time left, once something was read.
    pub left: Option<Duration>,
}

/// What a `LookupEvents` replay read.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LookupStats {
    pub pages: u64,
    pub events: u64,
    /// Events whose `CloudTrailEvent` was missing or not JSON.
    pub malformed: u64,
}

/// Read the account's management events from `start` to `end` (newest first), at most
/// [`LOOKUP_REQUESTS_PER_SECOND`], calling `each` for every record and `progress` after
/// every page. `username`: only the events of that user (the lookup attribute `Username`).
pub async fn replay_lookup(
    client: &aws_sdk_cloudtrail::Client,
    username: Option<&str>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    each: impl FnMut(&Record),
    progress: impl FnMut(&LookupProgress),
) -> Result<LookupStats> {
    replay_lookup_paced(
        client,
        &LookupPacer::new(),
        username,
        start,
        end,
        each,
        progress,
    )
    .await
}

/// The pace of every `LookupEvents` call of the process: AWS allows
/// [`LOOKUP_REQUESTS_PER_SECOND`] per account and region for all callers together, so the
/// daemon's CloudTrail poller and its pre-flight gate share one (clones share the pace).
/// Callers wait in turn (first come, first served).
#[derive(Debug, Clone)]
pub struct LookupPacer {
    last: Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>,
    spacing: Duration,
}

impl Default for LookupPacer {
    fn default() -> LookupPacer {
        LookupPacer::new()
    }
}

impl LookupPacer {
    /// Calls spaced by 1 / [`LOOKUP_REQUESTS_PER_SECOND`] (500 ms).
    pub fn new() -> LookupPacer {
        LookupPacer::with_spacing(Duration::from_secs_f64(1.0 / LOOKUP_REQUESTS_PER_SECOND))
    }

    pub fn with_spacing(spacing: Duration) -> LookupPacer {
        LookupPacer {
            last: Arc::new(tokio::sync::Mutex::new(None)),
            spacing,
        }
    }

    /// Wait until the next call is allowed; returns the instant it was allowed at (the
    /// call is to be made now).
    pub async fn wait(&self) -> tokio::time::Instant {
        let mut last = self.last.lock().await;
        if let Some(l) = *last {
            tokio::time::sleep_until(l + self.spacing).await;
        }
        let now = tokio::time::Instant::now();
        *last = Some(now);
        now
    }
}

/// A limit on how many accounts' CloudTrail polls run at once, shared by every account's
/// [`super::cloudtrail::CloudTrailPoller`] (clones share it). Each account keeps its own
/// [`LookupPacer`] (AWS's 2 requests per second are per account and region); this bounds
/// the process as a whole: the connections, memory and CPU of many accounts polling at the
/// same instant. A poll holds one permit from its first page to its last.
#[derive(Debug, Clone)]
pub struct LookupLimit {
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
    waiting: Arc<AtomicUsize>,
}

impl Default for LookupLimit {
    /// The default of `sources.cloudtrail.max_concurrent_accounts`.
    fn default() -> LookupLimit {
        LookupLimit::from_config(&crate::config::CloudTrailSource::default())
    }
}

impl LookupLimit {
    /// `sources.cloudtrail.max_concurrent_accounts` polls at once.
    pub fn from_config(cfg: &crate::config::CloudTrailSource) -> LookupLimit {
        LookupLimit::new(usize::try_from(cfg.max_concurrent_accounts).unwrap_or(usize::MAX))
    }

    /// At most `max` polls at once (at least 1).
    pub fn new(max: usize) -> LookupLimit {
        let max = max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        LookupLimit {
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
            waiting: Arc::default(),
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Polls running now.
    pub fn in_use(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Polls waiting for a permit now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Wait for a permit; the poll runs while it is held. (`None` only if the semaphore
    /// were closed, which it never is: the poll then runs unlimited rather than never.)
    pub async fn acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = self.permits.clone().acquire_owned().await.ok();
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        permit
    }
}

/// [`replay_lookup`] with the caller's pacer.
pub async fn replay_lookup_paced(
    client: &aws_sdk_cloudtrail::Client,
    pacer: &LookupPacer,
    username: Option<&str>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    mut each: impl FnMut(&Record),
    mut progress: impl FnMut(&LookupProgress),
) -> Result<LookupStats> {
    let began = Instant::now();
    let mut stats = LookupStats::default();
    let mut token: Option<String> = None;
    let window = (end - start).num_milliseconds().max(1) as f64;
    let attribute = username.map(|u| {
        aws_sdk_cloudtrail::types::LookupAttribute::builder()
            .attribute_key(aws_sdk_cloudtrail::types::LookupAttributeKey::Username)
            .attribute_value(u)
            .build()
    });
    let attribute = match attribute {
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            return Err(Error::Other(format!(
                "cannot build the LookupEvents Username attribute: {e}"
            )))
        }
        None => None,
    };
    loop {
        pacer.wait().await;
        let out = client
            .lookup_events()
            .start_time(AwsDateTime::from_millis(start.timestamp_millis()))
            .end_time(AwsDateTime::from_millis(end.timestamp_millis()))
            .max_results(PAGE_SIZE)
            .set_lookup_attributes(attribute.clone().map(|a| vec![a]))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error("cloudtrail", "LookupEvents", e))?;
        stats.pages += 1;
        let mut oldest: Option<DateTime<Utc>> = None;
        for ev in out.events() {
            stats.events += 1;
            if let Some(t) = ev.event_time() {
                oldest = DateTime::from_timestamp(t.secs(), t.subsec_nanos());
            }
            match ev.cloud_trail_event().map(serde_json::from_str::<Record>) {
                Some(Ok(r)) => each(&r),
                _ => stats.malformed += 1,
            }
        }
        let next = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let done = match (&next, oldest) {
            (None, _) => 1.0,
            (Some(_), Some(o)) => ((end - o).num_milliseconds() as f64 / window).clamp(0.0, 1.0),
            (Some(_), None) => 0.0,
        };
        let elapsed = began.elapsed();
        let left = (done > 0.0).then(|| elapsed.mul_f64((1.0 - done) / done));
        progress(&LookupProgress {
            pages: stats.pages,
            events: stats.events,
            done,
            elapsed,
            left,
        });
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten polls through clones of a limit of 3: never more than 3 at once, every one runs,
    /// and the waiting are counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookup_limit_bounds_concurrent_polls() {
        let limit = LookupLimit::new(3);
        assert_eq!((limit.max(), limit.in_use(), limit.waiting()), (3, 0, 0));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (limit, running, peak) = (limit.clone(), running.clone(), peak.clone());
            let mut gate = gate.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire().await;
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                running.fetch_sub(1, Ordering::SeqCst);
            });
        }
        // Three hold a permit, seven wait for one.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while (limit.in_use(), limit.waiting()) != (3, 7) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "in use {}, waiting {}",
                limit.in_use(),
                limit.waiting()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(running.load(Ordering::SeqCst), 3);
        release.send(true).expect("gate open");
        let mut done = 0;
        while let Some(r) = tasks.join_next().await {
            r.expect("no panic");
            done += 1;
        }
        assert_eq!(done, 10);
        assert_eq!(peak.load(Ordering::SeqCst), 3, "never more than the limit");
        assert_eq!((limit.in_use(), limit.waiting()), (0, 0));
    }

    #[test]
    fn lookup_limit_is_at_least_one() {
        assert_eq!(LookupLimit::new(0).max(), 1);
        assert_eq!(LookupLimit::default().max(), 4);
        let cfg = crate::config::CloudTrailSource {
            max_concurrent_accounts: 9,
            ..Default::default()
        };
        assert_eq!(LookupLimit::from_config(&cfg).max(), 9);
    }

    /// Clones share one pace: calls from two tasks through two clones are spaced by at
    /// least the spacing, all together, and the first call does not wait.
    #[tokio::test]
    async fn clones_of_a_pacer_share_one_pace() {
        let spacing = Duration::from_millis(40);
        let pacer = LookupPacer::with_spacing(spacing);
        let began = tokio::time::Instant::now();
        let first = pacer.wait().await;
        assert!(first - began < spacing, "the first call waits for nothing");
        let (a, b) = (pacer.clone(), pacer.clone());
        let ta = tokio::spawn(async move {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(a.wait().await);
            }
            v
        });
        let tb = tokio::spawn(async move {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(b.wait().await);
            }
            v
        });
        let mut all = vec![first];
        all.extend(ta.await.expect("task a"));
        all.extend(tb.await.expect("task b"));
        all.sort();
        for w in all.windows(2) {
            assert!(w[1] - w[0] >= spacing, "{:?} apart", w[1] - w[0]);
        }
    }
}
