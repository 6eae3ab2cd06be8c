//! One account's controller: its clients (assumed role, or the caller's own), its
//! configuration (per-account exemptions), journal lines with its id, its breaker window,
//! work queue and dispatch, workers, resync loop, quarantiner, CloudTrail poller (own
//! checkpoint and LookupEvents pace), Security Hub exporter and notifier.
//!
//! While its role cannot be assumed, the account is down (`account_up` 0, one line with
//! the reason and the fix) and tried again with capped exponential backoff; the other
//! accounts carry on. Stopping it (shutdown, or the account left the scope) drains it
//! like the daemon's shutdown.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::{baseline_names, named, resync::resync_loop, worker, Shared};
use crate::accounts::{self, Target};
use crate::app::preflight::LookupReader;
use crate::apply::{partition_of, Applier};
use crate::aws::Clients;
use crate::baseline::breaker::Window;
use crate::controller::dispatch::Dispatch;
use crate::controller::key::ReconcileKey;
use crate::controller::preflight::TrafficReader;
use crate::controller::quarantine::Quarantiner;
use crate::controller::queue::{QueueConfig, WorkQueue};
use crate::controller::reconcile::Context;
use crate::error::Result;
use crate::export::background::{Exporter, Target as ExportTarget};
use crate::export::Scope;
use crate::inventory;
use crate::metrics::AccountStatus;
use crate::notify::{Channels, Notifier};

/// Backoff of an account whose role cannot be assumed: 5 s, doubling, at most this.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(300);

/// A running account controller, as the registry holds it.
pub(super) struct Handle {
    pub target: Target,
    /// `Some(deadline)`: stop, draining in-flight reconciles until the deadline.
    stop: watch::Sender<Option<Instant>>,
    /// True once its queue is drained (or it never started one).
    drained: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Handle {
    /// Start the controller of `target`.
    pub fn spawn(shared: Arc<Shared>, target: Target) -> Handle {
        let (stop, stop_rx) = watch::channel(None);
        let (drained_tx, drained) = watch::channel(false);
        let task = tokio::spawn(supervise(shared, target.clone(), stop_rx, drained_tx));
        Handle {
            target,
            stop,
            drained,
            task,
        }
    }

    /// Ask it to stop, draining until `deadline`.
    pub fn stop(&self, deadline: Instant) {
        let _ = self.stop.send(Some(deadline));
    }

    /// Wait until its queue is drained (or its task ended).
    pub async fn drained(&self) {
        super::wait_for(self.drained.clone()).await;
    }

    /// Wait for its task to end (sources stopped, notices and exports flushed), at most
    /// until `limit`.
    pub async fn finish(self, limit: Instant) {
        let mut task = self.task;
        if tokio::time::timeout_at(limit, &mut task).await.is_err() {
            task.abort();
            tracing::warn!(account = %self.target.id, "account controller did not stop in time");
        }
    }
}

/// Connect (retrying while the role cannot be assumed), run, and drain when stopped.
async fn supervise(
    shared: Arc<Shared>,
    target: Target,
    mut stop: watch::Receiver<Option<Instant>>,
    drained: watch::Sender<bool>,
) {
    let id = target.id.clone();
    shared.metrics.account_started(&id);
    let mut delay = Duration::from_secs(5);
    let connected = loop {
        if stop.borrow().is_some() {
            return;
        }
        match connect(&shared, &target).await {
            Ok(c) => break c,
            Err(error) => {
                AccountStatus {
                    account: &id,
                    up: false,
                    error: Some(&error),
                    retry_in: Some(delay),
                }
                .emit(&shared.metrics);
                shared.readiness.attempted(&id, false);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
        }
        delay = (delay * 2).min(MAX_CONNECT_BACKOFF);
    };
    let running = match Running::start(&shared, &target, connected) {
        Ok(r) => r,
        Err(e) if shared.cfg.accounts.source == crate::config::AccountSource::Caller => {
            let _ = shared.fatal.send(e);
            return;
        }
        Err(e) => {
            let error = format!("cannot start the account's controller: {e}");
            AccountStatus {
                account: &id,
                up: false,
                error: Some(&error),
                retry_in: None,
            }
            .emit(&shared.metrics);
            shared.readiness.attempted(&id, false);
            return;
        }
    };
    // The SQS consumer routes this account's events here from now on (the registry
    // removes the entry when the account leaves the scope).
    if stop.borrow().is_none() {
        shared.router.insert(&id, running.ctx.dispatch.clone());
    }
    let deadline = loop {
        if let Some(d) = *stop.borrow() {
            break d;
        }
        if stop.changed().await.is_err() {
            break Instant::now() + shared.cfg.controller.shutdown_grace.get();
        }
    };
    running.stop(deadline, &drained).await;
}

/// The account's clients and the identity iam-warden has in it (its own writes are not
/// reconciled again, its own identity never touched).
async fn connect(
    shared: &Shared,
    target: &Target,
) -> std::result::Result<(Clients, String), String> {
    if target.role_arn.is_none() && target.id == shared.caller_account {
        return Ok((shared.caller.clone(), shared.caller_arn.clone()));
    }
    let clients = accounts::connect(&shared.cfg, &shared.caller, target).await?;
    let (arn, _) = clients.caller_identity().await.map_err(|e| {
        format!(
            "{}: the assumed role's identity cannot be read: {e}",
            target.role_arn.as_deref().unwrap_or(&target.id)
        )
    })?;
    Ok((clients, arn))
}

/// The CloudTrail checkpoint's directory: `state_dir` for the caller's own account (as a
/// single-account iam-warden), `state_dir/accounts/<id>/` for the others.
pub(super) fn state_dir_for(shared: &Shared, id: &str) -> PathBuf {
    if id == shared.caller_account {
        shared.cfg.state_dir.clone()
    } else {
        shared.cfg.state_dir.join("accounts").join(id)
    }
}

/// The tasks of a connected account.
struct Running {
    ctx: Arc<Context>,
    queue: WorkQueue<ReconcileKey>,
    workers: JoinSet<()>,
    sources: JoinSet<()>,
    sources_stop: watch::Sender<bool>,
    notifier: Arc<Notifier>,
    exporter: Option<Exporter>,
}

impl Running {
    fn start(
        shared: &Arc<Shared>,
        target: &Target,
        connected: (Clients, String),
    ) -> Result<Running> {
        let (clients, own_arn) = connected;
        let id = target.id.clone();
        let cfg = accounts::config_for(&shared.cfg, &id);
        let metrics = shared.metrics.clone();
        let journal = shared.journal.clone();
        let partition = partition_of(&shared.caller_arn);
        let clock = shared.clock;
        let exporter = cfg.export.securityhub.enabled.then(|| {
            let scope = Scope {
                account_id: id.clone(),
                partition: partition.clone(),
                region: cfg.export.securityhub.region(&cfg.aws.region).to_string(),
            };
            Exporter::start(
                ExportTarget {
                    hub: clients.securityhub_in(&scope.region),
                    scope,
                    journal: journal.clone(),
                    mode: cfg.mode.to_string(),
                },
                Some(metrics.clone()),
            )
        });
        // Notices go out through the caller's SNS client (the topic is iam-warden's), each
        // with its account.
        let notifier = Notifier::start(
            &cfg.notifications,
            Channels::load(&cfg.notifications)?,
            cfg.mode,
            &id,
            &shared.caller,
            journal.clone(),
            Some(metrics.clone()),
        );
        let applier = |clients: Clients| Applier {
            clients,
            mode: cfg.mode,
            journal: journal.clone(),
            metrics: Some(metrics.clone()),
            account_id: id.clone(),
            partition: partition.clone(),
            path: cfg.baseline.path.clone(),
            owner_tag: cfg.notifications.owner_tag.clone(),
            max_key_age_days: cfg.baseline.credentials.max_key_age_days,
            notifier: Some(notifier.clone()),
        };
        let queue: WorkQueue<ReconcileKey> = WorkQueue::new(QueueConfig::default());
        // Exposed keys are quarantined at once, by an IAM client that passes the write limiter.
        let quarantiner = Arc::new(
            Quarantiner::new(applier(clients.priority()?), cfg.clone(), &own_arn).with_clock(clock),
        );
        let dispatch = Dispatch::new(
            queue.clone(),
            metrics.clone(),
            baseline_names(&cfg),
            &own_arn,
        )
        .with_quarantine(quarantiner);
        let view = inventory::AccountSnapshot {
            account_id: id.clone(),
            caller_arn: own_arn.clone(),
            ..Default::default()
        };
        // One pace for the account's LookupEvents calls (AWS allows 2 per second per
        // account and region): its CloudTrail poller and pre-flight gate share it.
        let lookup_pacer = crate::sources::trail::LookupPacer::new();
        let preflight: Option<Arc<dyn TrafficReader>> = match cfg.safety.preview_window {
            Some(_) => Some(Arc::new(LookupReader::new(
                &cfg,
                &clients,
                &id,
                lookup_pacer.clone(),
            )?)),
            None => None,
        };
        let ctx = Arc::new(Context {
            cfg: cfg.clone(),
            clients: clients.clone(),
            metrics: metrics.clone(),
            applier: applier(clients.clone()),
            dispatch: dispatch.clone(),
            account: RwLock::new(view),
            breaker: Mutex::new(Window::new(clock.now(), 0)),
            clock,
            exporter: exporter.clone(),
            preflight,
            held: Mutex::new(Default::default()),
            after_account: Mutex::new(None),
        });
        let (sources_stop, stop_rx) = watch::channel(false);
        let mut sources = JoinSet::new();
        if cfg.sources.cloudtrail.enabled {
            let poller = crate::sources::cloudtrail::CloudTrailPoller::new(
                &clients,
                &cfg.sources.cloudtrail,
                &state_dir_for(shared, &id),
                dispatch,
            )?
            .with_pacer(lookup_pacer)
            .with_limit(shared.lookup_limit.clone());
            sources.spawn(named("cloudtrail", poller.run(stop_rx.clone())));
        }
        let mut workers = JoinSet::new();
        for _ in 0..worker::account_workers(&shared.cfg) {
            workers.spawn(worker::worker(ctx.clone(), shared.permits.clone()));
        }
        sources.spawn(resync_loop(
            ctx.clone(),
            shared.readiness.clone(),
            shared.resyncs.clone(),
            stop_rx,
        ));
        Ok(Running {
            ctx,
            queue,
            workers,
            sources,
            sources_stop,
            notifier,
            exporter,
        })
    }

    /// Stop the sources, stop handing out work, wait until `deadline` for in-flight
    /// reconciles (then `drained` is set), save the checkpoint, flush notices and exports.
    async fn stop(mut self, deadline: Instant, drained: &watch::Sender<bool>) {
        let account = self.ctx.applier.account_id.clone();
        let _ = self.sources_stop.send(true);
        self.queue.shutdown();
        if !self.queue.wait_idle(deadline).await {
            tracing::warn!(
                account = %account,
                in_flight = self.queue.in_flight(),
                "shutdown grace ended with reconciles in flight"
            );
        }
        let _ = drained.send(true);
        // Sources save their checkpoints when they see the stop signal.
        let sources = &mut self.sources;
        let _ = tokio::time::timeout_at(
            deadline.max(Instant::now() + Duration::from_secs(2)),
            async { while sources.join_next().await.is_some() {} },
        )
        .await;
        self.workers.abort_all();
        // The reconciles are over: deliver the notices they raised (bounded by the grace).
        self.notifier
            .shutdown(deadline.max(Instant::now() + Duration::from_secs(5)))
            .await;
        // And the findings they exported (bounded the same way).
        if let Some(exporter) = &self.exporter {
            exporter
                .shutdown(deadline.max(Instant::now() + Duration::from_secs(5)))
                .await;
        }
    }
}
