//! `iam-warden run`: the long-running controller, for every account in scope
//! (`[accounts]`). Each account has its own controller (`account.rs`): clients, queue,
//! workers, resync, CloudTrail poller, breaker, exemptions, journal lines with its id; one
//! account failing never stops the others. Shared: the HTTP port (/metrics, /healthz,
//! /readyz), the metrics, the journal file, the SQS consumer and the process-wide limit of
//! `controller.workers` reconciles at once (`worker.rs`: fair between accounts). The
//! accounts are discovered at start and, for an organization, every
//! `accounts.discovery_interval` (`discovery.rs`).
//!
//! Readiness: every account in scope has made its first resync attempt (an account whose
//! role cannot be assumed counts as attempted) and at least one succeeded.
//!
//! Shutdown: the `shutdown` future resolving turns readiness off, stops the sources,
//! stops handing out work, waits up to `controller.shutdown_grace` for in-flight
//! reconciles, then lets the SQS consumer delete the messages whose reconciles finished
//! and release the others for immediate redelivery, saves the CloudTrail checkpoints (the
//! pollers do) and returns.

mod account;
mod discovery;
mod resync;
mod worker;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::aws::Clients;
use crate::config::Config;
use crate::controller::mapping::BaselineNames;
use crate::controller::reconcile::Clock;
use crate::controller::router::Router;
use crate::error::{Error, Result};
use crate::http::{self, Health};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::sources::trail::LookupLimit;

pub use resync::resync;

/// What every account controller shares.
pub(super) struct Shared {
    pub cfg: Config,
    pub metrics: Arc<Metrics>,
    pub journal: Arc<Journal>,
    /// The caller's clients (discovery, AssumeRole, SNS, SQS) and identity.
    pub caller: Clients,
    pub caller_arn: String,
    pub caller_account: String,
    pub clock: Clock,
    /// `controller.workers` permits: reconciles running at once, all accounts together.
    pub permits: Arc<Semaphore>,
    /// `accounts.concurrency` permits: accounts resyncing (reading the whole account) at
    /// once.
    pub resyncs: Arc<Semaphore>,
    /// The SQS consumer's routes: account id → that account's dispatch, entered by each
    /// account controller once connected.
    pub router: Router,
    /// How many accounts' CloudTrail pollers read LookupEvents at once.
    pub lookup_limit: LookupLimit,
    pub readiness: Arc<Readiness>,
    /// With `accounts.source = "self"`, an account controller that cannot start (e.g. an
    /// unreadable checkpoint) stops the daemon with its error, as it always did.
    pub fatal: tokio::sync::mpsc::UnboundedSender<Error>,
}

/// Ready once every account in scope made its first resync attempt and one succeeded;
/// then it stays ready (an account down is reported by `account_up`, not by readiness).
pub(super) struct Readiness {
    health: Health,
    /// Per account: whether a first attempt was made, and whether one succeeded.
    accounts: Mutex<BTreeMap<String, (bool, bool)>>,
}

impl Readiness {
    fn new(health: Health) -> Readiness {
        Readiness {
            health,
            accounts: Mutex::new(BTreeMap::new()),
        }
    }

    /// An account in scope whose first attempt is awaited.
    pub fn expect(&self, id: &str) {
        if let Ok(mut a) = self.accounts.lock() {
            a.entry(id.to_string()).or_insert((false, false));
        }
    }

    /// The account left the scope.
    pub fn forget(&self, id: &str) {
        if let Ok(mut a) = self.accounts.lock() {
            a.remove(id);
        }
        self.update();
    }

    /// A resync attempt of `id` ended (or its role could not be assumed).
    pub fn attempted(&self, id: &str, ok: bool) {
        if let Ok(mut a) = self.accounts.lock() {
            let e = a.entry(id.to_string()).or_insert((false, false));
            e.0 = true;
            e.1 |= ok;
        }
        self.update();
    }

    fn update(&self) {
        if self.health.is_ready() {
            return;
        }
        let ready = self.accounts.lock().is_ok_and(|a| {
            !a.is_empty() && a.values().all(|(tried, _)| *tried) && a.values().any(|(_, ok)| *ok)
        });
        if ready {
            self.health.set_ready(true);
        }
    }
}

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
    crate::notify::Channels::load(&cfg.notifications)?;
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

    metrics.set_per_account(cfg.server.metrics_per_account);
    let journal = Arc::new(Journal::open(&cfg.journal_path())?);
    let permits = Arc::new(Semaphore::new(
        usize::try_from(cfg.controller.workers.max(1)).unwrap_or(1),
    ));
    let (fatal, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        metrics: metrics.clone(),
        journal,
        caller: clients,
        caller_arn,
        caller_account: account_id,
        clock,
        permits,
        resyncs: Arc::new(Semaphore::new(
            usize::try_from(cfg.accounts.concurrency.max(1)).unwrap_or(1),
        )),
        router: Router::new(metrics.clone()),
        lookup_limit: LookupLimit::from_config(&cfg.sources.cloudtrail),
        readiness: Arc::new(Readiness::new(health.clone())),
        fatal,
    });
    // The accounts in scope; retried until found (readiness stays off meanwhile).
    let mut fleet = discovery::Fleet::new(shared.clone());
    if fleet.first_discovery(&stop_rx).await.is_none() {
        return server.finish().await;
    }

    let mut sources = JoinSet::new();
    // Set once the drain is over: the SQS consumer then deletes or releases what it holds.
    let (drained_tx, drained_rx) = watch::channel(false);
    if cfg.sources.sqs.queue_url.is_some() {
        // One consumer for every account: each event goes to the account it names
        // (`Router`); an account not in scope (yet) is counted and skipped.
        // It starts once the daemon is ready: every account has tried its first resync,
        // so an event is not skipped for an account whose controller is still starting
        // (the messages wait in the queue meanwhile).
        let consumer = crate::sources::sqs::SqsConsumer::new(
            &shared.caller,
            &cfg.sources.sqs,
            shared.router.clone(),
        )?
        .release_unsettled_on(drained_rx);
        let (ready, stop) = (health.clone(), stop_rx.clone());
        sources.spawn(async move {
            if until_ready(&ready, &stop).await {
                named("sqs", consumer.run(stop)).await;
            }
        });
    }

    let fatal = tokio::select! {
        _ = fleet.run_discovery(&stop_rx) => None,
        Some(e) = fatal_rx.recv() => Some(e),
    };
    tracing::info!("shutting down: readiness off, sources stopping, draining in-flight reconciles");
    health.set_shutting_down();
    let deadline = Instant::now() + cfg.controller.shutdown_grace.get();
    fleet.drain(deadline).await;
    let _ = drained_tx.send(true);
    let _ = tokio::time::timeout_at(
        deadline.max(Instant::now() + Duration::from_secs(2)),
        async { while sources.join_next().await.is_some() {} },
    )
    .await;
    // Checkpoints saved, notices and findings delivered (each bounded by the grace).
    fleet
        .finish(deadline.max(Instant::now() + Duration::from_secs(10)))
        .await;
    let served = server.finish().await;
    match fatal {
        Some(e) => Err(e),
        None => served,
    }
}

/// Wait until the daemon is ready (true) or stopping (false).
async fn until_ready(health: &Health, stop: &watch::Receiver<bool>) -> bool {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        if *stop.borrow() {
            return false;
        }
        if health.is_ready() {
            return true;
        }
        let mut s = stop.clone();
        tokio::select! {
            _ = tick.tick() => {}
            _ = s.changed() => {}
        }
    }
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

pub(super) async fn named(name: &'static str, f: impl Future<Output = Result<()>>) {
    if let Err(e) = f.await {
        tracing::error!(source = name, error = %e, "event source stopped");
    }
}

pub(super) async fn wait_for(mut rx: watch::Receiver<bool>) {
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
