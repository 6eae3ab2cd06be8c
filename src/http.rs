//! The admin HTTP server: `/metrics`, `/healthz` and `/readyz` on one port.
//!
//! - `GET /metrics`: every metric, Prometheus text format 0.0.4.
//! - `GET /healthz` (liveness): 200 `ok` while the main loop is alive, i.e. it called
//!   [`Health::heartbeat`] within the staleness window; 503 `stale` otherwise. It never
//!   checks whether AWS is reachable (an AWS outage must not get the pod restarted).
//! - `GET /readyz` (readiness): 503 `not ready` until [`Health::set_ready`]`(true)`
//!   (configuration valid and first resync finished), 200 `ready` then, and 503
//!   `shutting down` for ever once [`Health::set_shutting_down`] was called.
//! - Anything else: 404.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::error::Error;
use crate::metrics::{self, Metrics};

/// Default staleness window of [`Health`]: `/healthz` turns 503 when the main loop has not
/// called [`Health::heartbeat`] for this long.
pub const DEFAULT_STALENESS: Duration = Duration::from_secs(60);

/// How long [`serve`] lets open connections finish after shutdown was requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Liveness and readiness, shared between the main loop and the HTTP server.
/// Cheap to clone; clones share state.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Readiness and shutdown change together under one lock, so the `iam_warden_ready`
    /// gauge always matches what `/readyz` answers.
    state: Mutex<Readiness>,
    /// Nanoseconds since `start` of the last heartbeat.
    last_beat: AtomicU64,
    start: Instant,
    staleness: Duration,
    metrics: Option<Arc<Metrics>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Readiness {
    ready: bool,
    shutting_down: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(DEFAULT_STALENESS, None)
    }
}

impl Health {
    /// Not ready, alive (a heartbeat now). `/healthz` turns stale after `staleness`
    /// without a heartbeat. With `metrics`, readiness is mirrored in `iam_warden_ready`.
    pub fn new(staleness: Duration, metrics: Option<Arc<Metrics>>) -> Health {
        if let Some(m) = &metrics {
            m.set_ready(false);
        }
        Health {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                last_beat: AtomicU64::new(0),
                start: Instant::now(),
                staleness,
                metrics,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, Readiness> {
        // the state is two bools, always consistent: a poisoned lock is still usable
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Ready or not. Has no effect once [`Health::set_shutting_down`] was called.
    pub fn set_ready(&self, ready: bool) {
        let mut st = self.state();
        if st.shutting_down {
            return;
        }
        let was = std::mem::replace(&mut st.ready, ready);
        if let Some(m) = &self.inner.metrics {
            m.set_ready(ready);
        }
        drop(st);
        if was != ready {
            tracing::info!(ready, "readiness changed");
        }
    }

    pub fn is_ready(&self) -> bool {
        let st = self.state();
        st.ready && !st.shutting_down
    }

    /// Shutdown started: not ready, for ever.
    pub fn set_shutting_down(&self) {
        let mut st = self.state();
        let was = std::mem::replace(&mut st.shutting_down, true);
        st.ready = false;
        if let Some(m) = &self.inner.metrics {
            m.set_ready(false);
        }
        drop(st);
        if !was {
            tracing::info!("shutting down: /readyz answers 503 from now on");
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.state().shutting_down
    }

    /// The main loop is alive. Call it at least once per staleness window.
    pub fn heartbeat(&self) {
        let nanos = u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.inner.last_beat.fetch_max(nanos, Ordering::SeqCst);
    }

    /// Time since the last heartbeat.
    pub fn since_heartbeat(&self) -> Duration {
        let last = Duration::from_nanos(self.inner.last_beat.load(Ordering::SeqCst));
        self.inner.start.elapsed().saturating_sub(last)
    }

    /// The last heartbeat is within the staleness window.
    pub fn is_alive(&self) -> bool {
        self.since_heartbeat() <= self.inner.staleness
    }

    pub fn staleness(&self) -> Duration {
        self.inner.staleness
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// The router (exposed for tests that want to call it without a socket).
pub fn router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        s.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(s): State<AppState>) -> Response {
    if s.health.is_alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let since = s.health.since_heartbeat().as_secs_f64();
        tracing::warn!(
            since_heartbeat_seconds = since,
            "/healthz: the main loop has not sent a heartbeat within the staleness window"
        );
        (StatusCode::SERVICE_UNAVAILABLE, "stale\n").into_response()
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.health.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if s.health.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: try /metrics, /healthz or /readyz\n",
    )
        .into_response()
}

/// Bind the admin port. The error names the address and, when the port is taken, says to
/// stop the other process or choose another `server.listen`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "the address is already in use (another iam-warden or another program holds the port): stop it or choose another address with server.listen (IAM_WARDEN_SERVER__LISTEN)"
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need privileges): choose a port above 1024 with server.listen (IAM_WARDEN_SERVER__LISTEN)"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "that address is not assigned to this host: use 0.0.0.0 or a local address in server.listen (IAM_WARDEN_SERVER__LISTEN)"
            }
            _ => "check server.listen (IAM_WARDEN_SERVER__LISTEN)",
        };
        Error::Other(format!(
            "cannot listen on {addr} for /metrics, /healthz and /readyz: {e}; {hint}"
        ))
    })
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` resolves,
/// then stop accepting, let open requests finish (at most a few seconds) and return.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "the admin port".into());
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = tx.send(true);
    };
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let server = axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(signal)
        .into_future();
    let mut server = std::pin::pin!(server);
    let err = |e: std::io::Error| Error::Other(format!("the HTTP server on {addr} failed: {e}"));
    tokio::select! {
        r = &mut server => return r.map_err(err),
        _ = rx.wait_for(|stopping| *stopping) => {}
    }
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(r) => r.map_err(err),
        Err(_) => {
            tracing::warn!(
                %addr,
                "HTTP connections still open {}s after shutdown; closing them",
                DRAIN_TIMEOUT.as_secs()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_false_for_ever_after_shutdown_starts() {
        let m = Metrics::new("t").expect("metrics");
        let h = Health::new(DEFAULT_STALENESS, Some(m.clone()));
        assert!(!h.is_ready());
        h.set_ready(true);
        assert!(h.is_ready());
        assert_eq!(m.ready.get(), 1);
        let clone = h.clone();
        clone.set_shutting_down();
        assert!(!h.is_ready());
        assert_eq!(m.ready.get(), 0);
        h.set_ready(true);
        assert!(!h.is_ready());
        assert_eq!(m.ready.get(), 0);
    }

    #[test]
    fn heartbeat_keeps_alive() {
        let h = Health::new(Duration::from_secs(3600), None);
        assert!(h.is_alive(), "alive at start");
        h.heartbeat();
        assert!(h.since_heartbeat() < Duration::from_secs(3600));
        let h = Health::new(Duration::ZERO, None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while h.is_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!h.is_alive(), "zero window turns stale");
    }
}
