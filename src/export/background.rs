//! The daemon's Security Hub exports, off the reconcile path: [`Exporter::submit`] hands
//! the findings of a resync (the whole account) or of one user's reconcile to a background
//! task through a small bounded queue and returns at once. The task sends them one export
//! at a time ([`securityhub::export`]); Security Hub being slow, throttling or down never
//! holds up a reconcile or a resync.
//!
//! The queue keeps at most [`MAX_PENDING`] exports: a newer whole-account export replaces a
//! pending one, a newer export of a user replaces that user's pending one, and when the
//! queue is full the oldest per-user export is dropped (the next resync covers that user).
//! Every export, sent or not, is one `iam_warden_securityhub_exports_total{outcome}` count
//! and, unless sent, one warning ([`SecurityHubExported`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::securityhub::{self, JournalTo, Known, Sweep};
use super::{ExportFinding, Scope};
use crate::journal::Journal;
use crate::metrics::{ExportOutcome, Metrics, SecurityHubExported};

/// Exports waiting at most (one whole-account export and a few users').
pub const MAX_PENDING: usize = 8;

/// One pending export.
#[derive(Debug, Clone)]
pub struct Job {
    pub sweep: Sweep,
    pub findings: Vec<ExportFinding>,
}

impl Job {
    fn user(&self) -> Option<&str> {
        match &self.sweep {
            Sweep::User(u) => Some(u),
            Sweep::All => None,
        }
    }
}

/// The pending exports; pure, so its rules are table-tested.
#[derive(Debug, Default)]
pub struct Pending {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Pending {
    /// Queue `job`; returns the jobs it pushed out (replaced or dropped for room).
    pub fn push(&mut self, job: Job) -> Vec<Job> {
        let mut out = Vec::new();
        // A newer export of the same scope replaces the pending one.
        if let Some(i) = self.jobs.iter().position(|j| j.sweep == job.sweep) {
            out.extend(self.jobs.remove(i));
        }
        if self.jobs.len() >= MAX_PENDING {
            // Room: the oldest per-user export goes (a resync covers its user again).
            let i = self
                .jobs
                .iter()
                .position(|j| j.user().is_some())
                .unwrap_or(0);
            out.extend(self.jobs.remove(i));
        }
        self.jobs.push_back(job);
        out
    }

    pub fn pop(&mut self) -> Option<Job> {
        self.jobs.pop_front()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Notify,
    metrics: Option<Arc<Metrics>>,
}

impl Shared {
    fn dropped(&self, job: &Job, why: &str) {
        SecurityHubExported {
            outcome: ExportOutcome::Dropped,
            user: job.user(),
            active: job.findings.len(),
            resolved: 0,
            error: Some(why),
        }
        .emit(self.metrics.as_deref());
    }
}

/// Where the background task sends: the hub client of the export region and the scope.
pub struct Target {
    pub hub: aws_sdk_securityhub::Client,
    pub scope: Scope,
    pub journal: Arc<Journal>,
    /// The daemon's mode, for the journal lines.
    pub mode: String,
}

/// The handle of the background export task. Cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    scope: Scope,
    shared: Arc<Shared>,
    worker: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Exporter {
    /// Start the background task.
    pub fn start(target: Target, metrics: Option<Arc<Metrics>>) -> Exporter {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            metrics,
        });
        let scope = target.scope.clone();
        let worker = tokio::spawn(run(shared.clone(), target));
        Exporter {
            scope,
            shared,
            worker: Arc::new(Mutex::new(Some(worker))),
        }
    }

    /// Hand `findings` over for export and return at once. `Sweep::All`: the whole
    /// account's current findings; `Sweep::User(u)`: user `u`'s.
    pub fn submit(&self, sweep: Sweep, findings: Vec<ExportFinding>) {
        let job = Job { sweep, findings };
        let out = match self.shared.pending.lock() {
            Ok(mut p) if !p.closed => p.push(job),
            _ => vec![job],
        };
        for j in &out {
            self.shared.dropped(
                j,
                "replaced by a newer export, or the export queue was full",
            );
        }
        self.shared.wake.notify_one();
    }

    /// The account, partition and hub region the findings go to.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Exports waiting to be sent.
    pub fn pending(&self) -> usize {
        self.shared.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Take no more exports; send the pending ones until `deadline`, then stop (what is
    /// left is counted as dropped).
    pub async fn shutdown(&self, deadline: Instant) {
        if let Ok(mut p) = self.shared.pending.lock() {
            p.closed = true;
        }
        self.shared.wake.notify_one();
        let worker = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(mut worker) = worker {
            if tokio::time::timeout_at(deadline, &mut worker)
                .await
                .is_err()
            {
                worker.abort();
                let left: Vec<Job> = match self.shared.pending.lock() {
                    Ok(mut p) => p.jobs.drain(..).collect(),
                    Err(_) => Vec::new(),
                };
                for j in &left {
                    self.shared.dropped(j, "shutdown came before it was sent");
                }
            }
        }
    }
}

/// The background task: one export at a time until closed and empty.
async fn run(shared: Arc<Shared>, target: Target) {
    let mut known = Known::default();
    loop {
        let next = match shared.pending.lock() {
            Ok(mut p) => match p.pop() {
                Some(j) => Ok(j),
                None => Err(p.closed),
            },
            Err(_) => Err(true),
        };
        let job = match next {
            Ok(job) => job,
            Err(true) => return,
            Err(false) => {
                shared.wake.notified().await;
                continue;
            }
        };
        let result = send(&target, &job, &mut known).await;
        let (outcome, active, resolved, error) = match &result {
            Ok(r) if r.failed == 0 => (ExportOutcome::Exported, r.active, r.resolved, None),
            Ok(r) => (
                ExportOutcome::Failed,
                r.active,
                r.resolved,
                Some(r.summary()),
            ),
            Err(e) => (
                ExportOutcome::Failed,
                job.findings.len(),
                0,
                Some(e.to_string()),
            ),
        };
        SecurityHubExported {
            outcome,
            user: job.user(),
            active,
            resolved,
            error: error.as_deref(),
        }
        .emit(shared.metrics.as_deref());
    }
}

/// One export (Security Hub not enabled: its first call fails with the error naming the
/// fix, and the next export asks again).
async fn send(
    target: &Target,
    job: &Job,
    known: &mut Known,
) -> crate::error::Result<securityhub::ExportReport> {
    let journal = JournalTo {
        journal: &target.journal,
        mode: target.mode.clone(),
    };
    // A hung connection must not hold the queue forever (the SDK retries within this).
    let sent = tokio::time::timeout(
        EXPORT_TIMEOUT,
        Box::pin(securityhub::export(
            &target.hub,
            &target.scope,
            &job.findings,
            &job.sweep,
            Utc::now(),
            known,
            Some(&journal),
        )),
    )
    .await;
    match sent {
        Ok(r) => r,
        Err(_) => Err(crate::error::Error::Other(format!(
            "the Security Hub export did not finish within {} s: check the network path to \
             Security Hub in {}",
            EXPORT_TIMEOUT.as_secs(),
            target.scope.region
        ))),
    }
}

/// The longest one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(300);
