//! `iam-warden run`: the long-running controller. Sources (CloudTrail poller, SQS
//! consumer, periodic resync) feed a de-duplicating work queue; workers reconcile keys;
//! one HTTP port serves /metrics, /healthz and /readyz.
//!
//! Shutdown: the `shutdown` future resolving turns readiness off, stops the sources,
//! stops handing out work, waits up to `controller.shutdown_grace` for in-flight
//! reconciles, then lets the SQS consumer delete the messages whose reconciles finished
//! and release the others for immediate redelivery, saves the CloudTrail checkpoint (the
//! poller does) and returns.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::app::preflight::LookupReader;
use crate::apply::{partition_of, Applier};
use crate::aws::Clients;
use crate::baseline::breaker::{Verdict, Window};
use crate::baseline::checks::evaluate_account;
use crate::baseline::plan::{plan_account, rotation};
use crate::config::Config;
use crate::controller::dispatch::Dispatch;
use crate::controller::key::ReconcileKey;
use crate::controller::mapping::BaselineNames;
use crate::controller::preflight::TrafficReader;
use crate::controller::quarantine::Quarantiner;
use crate::controller::queue::{Outcome as QueueOutcome, QueueConfig, WorkQueue};
use crate::controller::reconcile::{due_before, reconcile, store_view, Clock, Context, Next};
use crate::error::{Error, Result};
use crate::export::background::{Exporter, Target};
use crate::export::securityhub::Sweep;
use crate::export::{self, Scope};
use crate::http::{self, Health};
use crate::inventory;
use crate::journal::Journal;
use crate::metrics::{Metrics, QueueSource, ReconcileDone, ReconcileResult};
use crate::notify::Notifier;

/// Run the daemon until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_with_clock(cfg, metrics, shutdown, Clock::real()).await
}

/// [`run`] with a given clock for planning (tests: `IAM_WARDEN_TEST_CLOCK`).
pub async fn run_with_clock(
    cfg: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Clock,
) -> Result<()> {
    // A missing webhook signing key stops the daemon at once, before it waits for AWS.
    let channels = crate::notify::Channels::load(&cfg.notifications)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let health = Health::new(http::DEFAULT_STALENESS, Some(metrics.clone()));
    let listener = http::bind(cfg.server.listen).await?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| cfg.server.listen.to_string());
    tracing::info!(addr = %addr, mode = %cfg.mode, version = env!("CARGO_PKG_VERSION"), "listening");
    // The HTTP port outlives the sources: while draining, /readyz answers 503.
    let (http_stop, http_stop_rx) = watch::channel(false);
    let server = tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        health.clone(),
        wait_for(http_stop_rx),
    ));
    let server = HttpServer {
        task: server,
        stop: http_stop,
        health: health.clone(),
    };

    // The heartbeat proves the runtime is alive (/healthz), independent of AWS.
    let hb = health.clone();
    let mut hb_stop = stop_rx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => hb.heartbeat(),
                _ = hb_stop.changed() => return,
            }
        }
    });

    let clients = Clients::connect(
        &cfg.aws,
        cfg.sources.cloudtrail.endpoint_url.as_deref(),
        metrics.call_stats(),
    )
    .await
    .paced(&crate::pacing::PacingSettings::from_config(&cfg))?;
    // Who are we? Retry until AWS answers (readiness stays off meanwhile).
    let Some((caller_arn, account_id)) =
        retry_until_stopped("read the caller identity", &stop_rx, || {
            clients.caller_identity()
        })
        .await
    else {
        return server.finish().await;
    };
    tracing::info!(account = %account_id, identity = %caller_arn, "running as");

    let journal = Arc::new(Journal::open(&cfg.journal_path())?);
    let exporter = cfg.export.securityhub.enabled.then(|| {
        let scope = Scope {
            account_id: account_id.clone(),
            partition: partition_of(&caller_arn),
            region: cfg.export.securityhub.region(&cfg.aws.region).to_string(),
        };
        Exporter::start(
            Target {
                hub: clients.securityhub_in(&scope.region),
                scope,
                journal: journal.clone(),
                mode: cfg.mode.to_string(),
            },
            Some(metrics.clone()),
        )
    });
    let notifier = Notifier::start(
        &cfg.notifications,
        channels,
        cfg.mode,
        &account_id,
        &clients,
        journal.clone(),
        Some(metrics.clone()),
    );
    let queue: WorkQueue<ReconcileKey> = WorkQueue::new(QueueConfig::default());
    let names = baseline_names(&cfg);
    // Exposed keys are quarantined at once, by an IAM client that passes the write limiter.
    let quarantiner = Arc::new(
        Quarantiner::new(
            Applier {
                clients: clients.priority()?,
                mode: cfg.mode,
                journal: journal.clone(),
                metrics: Some(metrics.clone()),
                account_id: account_id.clone(),
                partition: partition_of(&caller_arn),
                path: cfg.baseline.path.clone(),
                owner_tag: cfg.notifications.owner_tag.clone(),
                max_key_age_days: cfg.baseline.credentials.max_key_age_days,
                notifier: Some(notifier.clone()),
            },
            cfg.clone(),
            &caller_arn,
        )
        .with_clock(clock),
    );
    let dispatch = Dispatch::new(queue.clone(), metrics.clone(), names, &caller_arn)
        .with_quarantine(quarantiner);
    let view = inventory::AccountSnapshot {
        account_id: account_id.clone(),
        caller_arn: caller_arn.clone(),
        ..Default::default()
    };
    let applier = Applier {
        clients: clients.clone(),
        mode: cfg.mode,
        journal,
        metrics: Some(metrics.clone()),
        account_id,
        partition: partition_of(&caller_arn),
        path: cfg.baseline.path.clone(),
        owner_tag: cfg.notifications.owner_tag.clone(),
        max_key_age_days: cfg.baseline.credentials.max_key_age_days,
        notifier: Some(notifier.clone()),
    };
    // One pace for every LookupEvents call (AWS allows 2 per second per account and
    // region): the CloudTrail poller and the pre-flight gate share it.
    let lookup_pacer = crate::sources::trail::LookupPacer::new();
    let preflight: Option<Arc<dyn TrafficReader>> = match cfg.safety.preview_window {
        Some(_) => Some(Arc::new(LookupReader::new(
            &cfg,
            &clients,
            &applier.account_id,
            lookup_pacer.clone(),
        )?)),
        None => None,
    };
    let ctx = Arc::new(Context {
        cfg: cfg.clone(),
        clients: clients.clone(),
        metrics: metrics.clone(),
        applier,
        dispatch: dispatch.clone(),
        account: RwLock::new(view),
        breaker: Mutex::new(Window::new(clock.now(), 0)),
        clock,
        exporter: exporter.clone(),
        preflight,
        held: Mutex::new(Default::default()),
    });

    let mut tasks = JoinSet::new();
    for _ in 0..cfg.controller.workers {
        tasks.spawn(worker(ctx.clone()));
    }
    let mut sources = JoinSet::new();
    sources.spawn(resync_loop(ctx.clone(), health.clone(), stop_rx.clone()));
    if cfg.sources.cloudtrail.enabled {
        let poller = crate::sources::cloudtrail::CloudTrailPoller::new(
            &clients,
            &cfg.sources.cloudtrail,
            &cfg.state_dir,
            dispatch.clone(),
        )?
        .with_pacer(lookup_pacer.clone())
        .with_limit(crate::sources::trail::LookupLimit::from_config(
            &cfg.sources.cloudtrail,
        ));
        sources.spawn(named("cloudtrail", poller.run(stop_rx.clone())));
    }
    // Set once the drain is over: the SQS consumer then deletes or releases what it holds.
    let (drained_tx, drained_rx) = watch::channel(false);
    if cfg.sources.sqs.queue_url.is_some() {
        // One account in scope: another account's event is skipped, never acted on here.
        let router = crate::controller::router::Router::single(
            metrics.clone(),
            &ctx.applier.account_id,
            dispatch.clone(),
        );
        let consumer = crate::sources::sqs::SqsConsumer::new(&clients, &cfg.sources.sqs, router)?
            .release_unsettled_on(drained_rx);
        sources.spawn(named("sqs", consumer.run(stop_rx.clone())));
    }

    wait_for(stop_rx.clone()).await;
    tracing::info!("shutting down: readiness off, sources stopping, draining in-flight reconciles");
    health.set_shutting_down();
    let deadline = Instant::now() + cfg.controller.shutdown_grace.get();
    queue.shutdown();
    let drained = queue.wait_idle(deadline).await;
    if !drained {
        tracing::warn!(
            in_flight = queue.in_flight(),
            "shutdown grace ended with reconciles in flight"
        );
    }
    let _ = drained_tx.send(true);
    // Sources save their checkpoints when they see the stop signal.
    let _ = tokio::time::timeout_at(
        deadline.max(Instant::now() + Duration::from_secs(2)),
        async { while sources.join_next().await.is_some() {} },
    )
    .await;
    tasks.abort_all();
    // The reconciles are over: deliver the notices they raised (bounded by the grace).
    notifier
        .shutdown(deadline.max(Instant::now() + Duration::from_secs(5)))
        .await;
    // And the findings they exported (bounded the same way).
    if let Some(exporter) = &exporter {
        exporter
            .shutdown(deadline.max(Instant::now() + Duration::from_secs(5)))
            .await;
    }
    server.finish().await
}

/// The admin HTTP server task; stopped last.
struct HttpServer {
    task: tokio::task::JoinHandle<Result<()>>,
    stop: watch::Sender<bool>,
    health: Health,
}

impl HttpServer {
    async fn finish(self) -> Result<()> {
        self.health.set_shutting_down();
        let _ = self.stop.send(true);
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(Error::Other(format!("the HTTP server task failed: {e}"))),
            Err(_) => Ok(()),
        }
    }
}

async fn named(name: &'static str, f: impl Future<Output = Result<()>>) {
    if let Err(e) = f.await {
        tracing::error!(source = name, error = %e, "event source stopped");
    }
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Retry `f` with backoff until it succeeds (Some) or a stop is signalled (None).
async fn retry_until_stopped<T, F, Fut>(
    what: &str,
    stop: &watch::Receiver<bool>,
    mut f: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return None;
        }
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "cannot {what}"),
        }
        let mut s = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = s.changed() => {}
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// The names the event mapping needs to recognise baseline groups and policies.
pub fn baseline_names(cfg: &Config) -> BaselineNames {
    let b = &cfg.baseline;
    let mut names = BaselineNames::default();
    for (enabled, group, policy) in [
        (
            b.mfa_policy.enabled,
            &b.mfa_policy.group,
            &b.mfa_policy.name,
        ),
        (
            b.source_ip_policy.enabled,
            &b.source_ip_policy.group,
            &b.source_ip_policy.name,
        ),
    ] {
        if enabled {
            names.group_names.push(group.clone());
            names.policy_names.push(policy.clone());
        }
    }
    names
}

/// One worker: take a key, reconcile it, report to the queue, the dispatch and metrics.
async fn worker(ctx: Arc<Context>) {
    let queue = ctx.dispatch.queue().clone();
    while let Some(lease) = queue.next().await {
        ctx.metrics.queue_waited(lease.waited());
        ctx.metrics.set_queue(queue.depth(), queue.in_flight());
        let key = lease.key().clone();
        let covered = ctx.dispatch.starting(&key);
        let started = Instant::now();
        let span = tracing::info_span!("reconcile", key = %key, attempt = lease.attempt());
        let result = {
            let _e = span.enter();
            reconcile(&key, &ctx).await
        };
        match result {
            Ok(next) => {
                let (res, requeue_at) = match next {
                    Next::Requeue(at) => (ReconcileResult::Success, at),
                    Next::Dropped => (ReconcileResult::Dropped, None),
                };
                ReconcileDone {
                    key: Some(&key),
                    result: res,
                    duration: started.elapsed(),
                    error: None,
                    retry_in: None,
                }
                .emit(&ctx.metrics);
                ctx.dispatch.finished(&key, covered);
                lease.done(QueueOutcome::Success { requeue_at });
                if requeue_at.is_some() {
                    ctx.metrics.queue_added(QueueSource::Requeue);
                }
            }
            Err(e) => {
                let duration = started.elapsed();
                let fin = lease.done(QueueOutcome::Failure);
                ReconcileDone {
                    key: Some(&key),
                    result: ReconcileResult::Error,
                    duration,
                    error: Some(&e),
                    retry_in: fin.retry_after,
                }
                .emit(&ctx.metrics);
                ctx.metrics.queue_added(QueueSource::Retry);
            }
        }
        ctx.metrics.set_queue(queue.depth(), queue.in_flight());
    }
}

/// Resync now, then every `resync.interval`, until stopped. The first success makes the
/// daemon ready.
async fn resync_loop(ctx: Arc<Context>, health: Health, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        let result = resync(&ctx).await;
        // The snapshot is dropped by now: give its pages back.
        crate::memory::release_free_memory();
        let wait = match result {
            Ok(()) => {
                failures = 0;
                health.set_ready(true);
                ctx.cfg.resync.interval.get()
            }
            Err(e) => {
                failures += 1;
                ctx.metrics.resync_done(false, Utc::now());
                tracing::warn!(error = %e, "resync failed");
                // Retry sooner than the interval while failing.
                Duration::from_secs(5u64.saturating_mul(1 << failures.min(6)))
                    .min(ctx.cfg.resync.interval.get())
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Read the whole account, publish compliance metrics, enqueue only the users whose plan
/// is not empty (no per-user calls for compliant users), and the account key if needed.
pub async fn resync(ctx: &Context) -> Result<()> {
    let now = ctx.clock.now();
    let cis = &ctx.cfg.cis;
    let snap = if cis.enabled {
        let regions = cis.analyzer_regions(&ctx.cfg.aws.region);
        inventory::read_account_cis(&ctx.clients, &regions).await?
    } else {
        inventory::read_account(&ctx.clients).await?
    };
    let plan = plan_account(&snap, &ctx.cfg, now)?;
    // The password policy and, with `cis.enabled`, the CIS account checks.
    let account_findings = evaluate_account(&snap, &ctx.cfg, now);
    ctx.metrics.set_account_checks(&account_findings);
    if let Some(generated) = snap.report_generated {
        ctx.metrics.credential_report_age(generated, Utc::now());
    }
    // The findings of changes the pre-flight gate holds come from the users' reconciles.
    let verdicts: Vec<_> = plan
        .users
        .iter()
        .map(|u| ctx.with_held(&u.verdict, &u.actions))
        .collect();
    let (mut compliant, mut violating, mut exempt) = (0, 0, 0);
    let mut failing: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &verdicts {
        if v.exempt.is_some() {
            exempt += 1;
        } else if v.findings.is_empty() {
            compliant += 1;
        } else {
            violating += 1;
        }
        let mut checks: Vec<&str> = v.findings.iter().map(|f| f.check.id()).collect();
        checks.dedup();
        for c in checks {
            *failing.entry(c).or_insert(0) += 1;
        }
    }
    for f in &plan.account_findings {
        *failing.entry(f.check.id()).or_insert(0) += 1;
    }
    ctx.metrics
        .set_compliance(compliant, violating, exempt, &failing);
    ctx.metrics
        .set_key_stats(&rotation::key_stats(&snap.users, &plan.users, now));
    if let Some(exporter) = &ctx.exporter {
        // The whole account's findings; the earlier ones that are gone are resolved.
        let arns: BTreeMap<&str, &str> = snap
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.arn.as_str()))
            .collect();
        let findings = export::collect(
            exporter.scope(),
            &account_findings,
            verdicts
                .iter()
                .map(|v| (v.as_ref(), arns.get(v.user.as_str()).copied())),
        );
        exporter.submit(Sweep::All, findings);
    }
    let users_total = snap.users.len();
    let changed = plan.users_changed();
    let losing = plan.users_losing_access();
    store_view(ctx, snap);
    // A new breaker window; the resync's own plan may trip it at once.
    let verdict = Verdict::evaluate(losing, changed, users_total, &ctx.cfg.safety, false);
    let blocked = verdict.blocks();
    if blocked {
        if let Ok(mut b) = ctx.breaker.lock() {
            b.reset(now, users_total);
        }
        ctx.trip_breaker(
            None,
            &format!("resync: {}", verdict.describe()),
            "blast-radius breaker tripped at resync; only users whose changes take nothing away are enqueued",
        );
    } else {
        ctx.reset_breaker(now, users_total);
    }
    let received = Instant::now();
    if !plan.account_actions.is_empty() {
        ctx.dispatch
            .enqueue(ReconcileKey::Account, QueueSource::Resync, None, received);
    }
    for u in plan
        .users
        .iter()
        .filter(|u| !u.actions.is_empty())
        // Tripped: only the users whose changes take nothing away.
        .filter(|u| !blocked || !u.counts_toward_breaker())
    {
        ctx.dispatch.enqueue(
            ReconcileKey::User(u.verdict.user.clone()),
            QueueSource::Resync,
            None,
            received,
        );
    }
    // Rotation phases due before the next resync: scheduled at their time.
    let horizon =
        now + chrono::Duration::from_std(ctx.cfg.resync.interval.get()).unwrap_or_default();
    for (user, due) in due_before(&plan.users, horizon) {
        let key = ReconcileKey::User(user.to_string());
        if ctx.dispatch.queue().add_at(key, ctx.clock.instant_at(due)) {
            ctx.metrics.queue_added(QueueSource::Requeue);
        }
    }
    ctx.metrics.resync_done(true, Utc::now());
    tracing::info!(
        users = users_total,
        compliant,
        violating,
        exempt,
        to_reconcile = changed,
        losing_access = losing,
        "resync done"
    );
    Ok(())
}
