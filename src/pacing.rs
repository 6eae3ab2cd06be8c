//! Adaptive pacing of every IAM and STS call: one layer below `apply`, `inventory` and the
//! controller.
//!
//! - Two AIMD token buckets ([`RateLimiter`]): one for writes, one for reads. Each starts at
//!   its ceiling (`controller.writes_per_second`, `controller.reads_per_second`), halves on a
//!   throttling answer (at most once per [`DECREASE_GAP`], so one burst of throttles is one
//!   signal), and after every [`QUIET_PERIOD`] without a throttle grows by a tenth of its
//!   ceiling again; it never goes below `controller.min_rate_per_second`.
//! - Retries: capped exponential backoff with full jitter ([`Backoff`]); a throttled attempt
//!   slows the shared bucket and its retry waits for a token of the slowed bucket, so it is
//!   not an attempt burned at full speed.
//!
//! Where: the layer is the HTTP client of the IAM and STS clients ([`PacedHttpClient`]),
//! with the SDK's own retries turned off for them. It sees every request of every call,
//! including each page of a paginator and the calls of `inventory`, and reads the operation
//! from the request body (`Action=...`, IAM and STS speak the query protocol), so there is
//! exactly one place that paces, classifies and retries. A custom SDK `RetryStrategy` was
//! the first choice, but the generated service configs do not let one be installed (their
//! `runtime_plugin` is crate-private), and a wrapper at each of the ~30 call sites would
//! miss paginator pages. This replaces the SDK's adaptive retry mode, whose client-side
//! rate limiter and retry quota collapse under sustained throttling. The per-try time limit
//! (`aws.attempt_timeout`) is enforced here, so a hanging answer is cut and retried.
//!
//! Writes whose repetition is not harmless (creates, deletes, detaches, AddUserToGroup) are
//! NOT retried here after an ambiguous failure (5xx, lost connection, timeout, unreadable
//! answer): the write may have been applied. They fail with a retryable
//! [`crate::Error::Aws`], and `apply` re-reads the state before trying again (see
//! [`repeat_is_harmless`]). A throttling answer means IAM refused the call, so throttled
//! writes are retried here.
//!
//! Default rates: AWS does not publish a request rate for the IAM API (the "IAM and AWS STS
//! quotas" page of the IAM User Guide lists object quotas; the AWS knowledge-center article
//! "iam-sts-throttling-error" says IAM/STS calls of an account share one rate limit that
//! cannot be raised and that clients should back off). 20 writes/s is a starting point;
//! the AIMD bucket finds the rate the account really sustains.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use tokio::time::Instant;

/// Without a throttle for this long, a bucket grows by a tenth of its ceiling.
pub const QUIET_PERIOD: Duration = Duration::from_secs(1);
/// At most one halving per this period: the throttles of one burst are one signal.
pub const DECREASE_GAP: Duration = Duration::from_secs(1);
/// Throttled attempts may go on up to this many times `aws.max_attempts` attempts in all
/// (other failures stop at `aws.max_attempts`); `aws.operation_timeout` bounds both.
pub const THROTTLE_ATTEMPT_FACTOR: u32 = 4;

/// Why a [`RateLimiter`] could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    /// The rate is not a positive number.
    #[error("rate limit of {0} per second is invalid: use a positive number such as 20")]
    Rate(f64),
    /// The burst is zero.
    #[error("rate limit burst of 0 is invalid: use at least 1 (e.g. 10)")]
    Burst,
}

#[derive(Debug)]
struct State {
    rate: f64,
    /// Theoretical arrival time of the next call (GCRA).
    tat: Option<Instant>,
    last_decrease: Option<Instant>,
    /// Start of the current quiet period (no throttle since).
    quiet_since: Option<Instant>,
}

/// An AIMD token bucket (implemented as GCRA): `burst` calls pass at once, then the current
/// rate per second. The rate starts at the ceiling, halves on [`RateLimiter::throttled`],
/// recovers additively, and stays within `floor..=ceiling`.
#[derive(Debug)]
pub struct RateLimiter {
    ceiling: f64,
    floor: f64,
    burst: u32,
    state: Mutex<State>,
}

impl Default for RateLimiter {
    /// 20 per second, burst 10, floor 0.5: the default limit on IAM writes.
    fn default() -> Self {
        Self {
            ceiling: 20.0,
            floor: 0.5,
            burst: 10,
            state: Mutex::new(State {
                rate: 20.0,
                tat: None,
                last_decrease: None,
                quiet_since: None,
            }),
        }
    }
}

fn valid_rate(r: f64) -> bool {
    r.is_finite() && r > 0.0
}

impl RateLimiter {
    /// A bucket letting `burst` calls through at once and then `rate_per_sec` per second
    /// (the ceiling); the floor is the smaller of 0.5/s and the ceiling.
    pub fn new(rate_per_sec: f64, burst: u32) -> Result<Self, RateLimitError> {
        if !valid_rate(rate_per_sec) || Duration::try_from_secs_f64(1.0 / rate_per_sec).is_err() {
            return Err(RateLimitError::Rate(rate_per_sec));
        }
        if burst == 0 {
            return Err(RateLimitError::Burst);
        }
        Ok(Self {
            ceiling: rate_per_sec,
            floor: rate_per_sec.min(0.5),
            burst,
            state: Mutex::new(State {
                rate: rate_per_sec,
                tat: None,
                last_decrease: None,
                quiet_since: None,
            }),
        })
    }

    /// The same with another floor (clamped to the ceiling).
    pub fn with_floor(mut self, floor: f64) -> Result<Self, RateLimitError> {
        if !valid_rate(floor) {
            return Err(RateLimitError::Rate(floor));
        }
        self.floor = floor.min(self.ceiling);
        Ok(self)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the numbers are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The highest rate (the configured one).
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    pub fn floor(&self) -> f64 {
        self.floor
    }

    /// Calls allowed at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The current rate (calls per second).
    pub fn rate_per_sec(&self) -> f64 {
        self.rate_at(Instant::now())
    }

    pub fn rate_at(&self, now: Instant) -> f64 {
        let mut s = self.lock();
        self.recover(&mut s, now);
        s.rate
    }

    fn recover(&self, s: &mut State, now: Instant) {
        let Some(since) = s.quiet_since else {
            return;
        };
        let quiet = now.saturating_duration_since(since);
        let steps = (quiet.as_secs_f64() / QUIET_PERIOD.as_secs_f64()).floor();
        if steps >= 1.0 {
            s.rate = (s.rate + steps * self.ceiling / 10.0).min(self.ceiling);
            s.quiet_since = if s.rate >= self.ceiling {
                None
            } else {
                Some(since + QUIET_PERIOD.mul_f64(steps))
            };
        }
    }

    /// Take a token for a call arriving at `now`; returns when it may go.
    pub fn reserve_at(&self, now: Instant) -> Instant {
        let mut s = self.lock();
        self.recover(&mut s, now);
        let interval = Duration::try_from_secs_f64(1.0 / s.rate)
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_nanos(1));
        let tolerance = interval.saturating_mul(self.burst - 1);
        let t = s.tat.map_or(now, |t| t.max(now));
        let allowed_at = t.checked_sub(tolerance).map_or(now, |a| a.max(now));
        s.tat = Some(t + interval);
        allowed_at
    }

    /// Take a token; how long to wait before the call.
    pub fn reserve(&self) -> Duration {
        let now = Instant::now();
        self.reserve_at(now).saturating_duration_since(now)
    }

    /// Wait for a token.
    pub async fn acquire(&self) {
        let at = self.reserve_at(Instant::now());
        tokio::time::sleep_until(at).await;
    }

    /// A throttling answer at `now`: halve the rate (once per [`DECREASE_GAP`]) and restart
    /// the quiet period. Returns the new rate.
    pub fn throttled_at(&self, now: Instant) -> f64 {
        let mut s = self.lock();
        self.recover(&mut s, now);
        let may_decrease = s
            .last_decrease
            .is_none_or(|d| now.saturating_duration_since(d) >= DECREASE_GAP);
        if may_decrease {
            s.rate = (s.rate / 2.0).max(self.floor);
            s.last_decrease = Some(now);
            // Calls already scheduled at the old rate keep their slots; the next ones are
            // spaced at the new rate from the end of that schedule.
        }
        s.quiet_since = Some(now);
        s.rate
    }

    pub fn throttled(&self) -> f64 {
        self.throttled_at(Instant::now())
    }
}

/// Capped exponential backoff with full jitter: attempt `n` (1 = the first retry) waits a
/// uniformly random time in `[0, min(max, base * 2^(n-1)))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(20),
        }
    }
}

impl Backoff {
    /// The cap for retry `n` before jitter.
    pub fn cap(&self, n: u32) -> Duration {
        let factor = 2u32.checked_pow(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before retry `n` for a random `r` in `[0, 1)`.
    pub fn delay_with(&self, n: u32, r: f64) -> Duration {
        let r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        self.cap(n).mul_f64(r)
    }

    pub fn delay(&self, n: u32) -> Duration {
        self.delay_with(n, fastrand::f64())
    }
}

/// Read-only calls (everything else counts as a write).
pub fn is_read_operation(op: &str) -> bool {
    [
        "Get", "List", "Generate", "Lookup", "Receive", "Describe", "Simulate",
    ]
    .iter()
    .any(|p| op.starts_with(p))
}

/// Calls that may be sent again after an ambiguous failure without a re-read: reads, and
/// writes that set a state (repeating them changes nothing and does not fail).
pub fn repeat_is_harmless(op: &str) -> bool {
    is_read_operation(op)
        || matches!(
            op,
            "TagUser"
                | "UntagUser"
                | "UpdateAccessKey"
                | "UpdateAccountPasswordPolicy"
                | "AttachUserPolicy"
                | "AttachGroupPolicy"
                | "SetDefaultPolicyVersion"
                | "AssumeRole"
        )
}

/// What a failed attempt means for retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// IAM refused the call for its rate: slow down, then retry. Not applied.
    Throttled { retry_after: Option<Duration> },
    /// A server error, a lost or unreadable answer, a timeout: retry; a write may or may
    /// not have been applied.
    Transient,
    /// An error answer that will not change by retrying (access denied, no such entity...).
    Final,
}

/// Error codes AWS uses for throttling.
const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
];

/// The `<Code>` of an AWS XML error body, or the `__type`/`code` of a JSON one.
pub fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if let Some(i) = text.find("<Code>") {
        let rest = &text[i + "<Code>".len()..];
        let end = rest.find("</Code>")?;
        return Some(rest[..end].trim().to_string());
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let t = v.get("__type").or_else(|| v.get("code"))?.as_str()?;
    Some(t.rsplit('#').next().unwrap_or(t).to_string())
}

/// Classify a failed attempt from its answer: `status` is `None` when there was none
/// (connection lost, timeout). A 2xx that failed could not be read.
pub fn classify(status: Option<u16>, body: &[u8], retry_after: Option<Duration>) -> Class {
    let Some(status) = status else {
        return Class::Transient;
    };
    let code = error_code(body);
    if status == 429 || code.as_deref().is_some_and(|c| THROTTLE_CODES.contains(&c)) {
        return Class::Throttled { retry_after };
    }
    match status {
        200..=299 | 500..=599 => Class::Transient,
        408 => Class::Transient,
        _ => Class::Final,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by AWS and is ignored), at most
/// a minute.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let s: f64 = v.trim().parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(60.0)))
}

/// Pacing settings (from `controller` and `aws` config).
#[derive(Debug, Clone, PartialEq)]
pub struct PacingSettings {
    pub writes_per_second: f64,
    pub write_burst: u32,
    pub reads_per_second: f64,
    pub min_rate_per_second: f64,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub attempt_timeout: Duration,
}

impl Default for PacingSettings {
    fn default() -> Self {
        PacingSettings {
            writes_per_second: 20.0,
            write_burst: 10,
            reads_per_second: 100.0,
            min_rate_per_second: 0.5,
            max_attempts: 5,
            backoff: Backoff::default(),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

impl PacingSettings {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        PacingSettings {
            writes_per_second: cfg.controller.writes_per_second,
            write_burst: cfg.controller.write_burst,
            reads_per_second: cfg.controller.reads_per_second,
            min_rate_per_second: cfg.controller.min_rate_per_second,
            max_attempts: cfg.aws.max_attempts,
            backoff: Backoff {
                base: Duration::from_millis(cfg.aws.backoff_base_ms),
                max: Duration::from_millis(cfg.aws.backoff_max_ms),
            },
            attempt_timeout: cfg.aws.attempt_timeout.get(),
        }
    }
}

type RateHook = Arc<dyn Fn(f64) + Send + Sync>;

/// The two buckets and the retry policy shared by all clients of one [`crate::aws::Clients`].
pub struct Pacer {
    pub writes: RateLimiter,
    pub reads: RateLimiter,
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Time limit of one try (`aws.attempt_timeout`): a hanging answer is cut and retried.
    pub attempt_timeout: Duration,
    on_write_rate: Option<RateHook>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("writes", &self.writes)
            .field("reads", &self.reads)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl Pacer {
    pub fn new(s: &PacingSettings) -> Result<Pacer, RateLimitError> {
        Ok(Pacer {
            writes: RateLimiter::new(s.writes_per_second, s.write_burst)?
                .with_floor(s.min_rate_per_second)?,
            reads: RateLimiter::new(s.reads_per_second, s.write_burst.max(10))?
                .with_floor(s.min_rate_per_second)?,
            max_attempts: s.max_attempts.max(1),
            backoff: s.backoff,
            attempt_timeout: s.attempt_timeout,
            on_write_rate: None,
        })
    }

    /// Call `write_rate(rate)` whenever the write rate may have changed (the metrics
    /// module's gauge). Throttles are counted by the call counter in [`crate::aws`].
    pub fn with_rate_hook(mut self, write_rate: impl Fn(f64) + Send + Sync + 'static) -> Pacer {
        write_rate(self.writes.ceiling());
        self.on_write_rate = Some(Arc::new(write_rate));
        self
    }

    pub fn bucket(&self, op: &str) -> &RateLimiter {
        if is_read_operation(op) {
            &self.reads
        } else {
            &self.writes
        }
    }

    fn report_rate(&self) {
        if let Some(h) = &self.on_write_rate {
            h(self.writes.rate_per_sec());
        }
    }

    /// The decision after attempt number `attempts` (1-based) of `op` failed as `class`;
    /// `r` in `[0, 1)` is the jitter. `None`: do not retry.
    pub fn retry_delay(&self, op: &str, class: Class, attempts: u32, r: f64) -> Option<Duration> {
        self.retry_wait(op, class, attempts, r, false)
    }

    /// [`Pacer::retry_delay`]; with `priority` (the calls of a [`PacedHttpClient`] with
    /// `priority` set) the retry waits for the backoff only, not for a token of the bucket
    /// (a throttle still slows the bucket for everyone else).
    pub fn retry_wait(
        &self,
        op: &str,
        class: Class,
        attempts: u32,
        r: f64,
        priority: bool,
    ) -> Option<Duration> {
        let token = |bucket: &RateLimiter| {
            if priority {
                Duration::ZERO
            } else {
                bucket.reserve()
            }
        };
        match class {
            Class::Final => None,
            Class::Throttled { retry_after } => {
                if attempts >= self.max_attempts.saturating_mul(THROTTLE_ATTEMPT_FACTOR) {
                    return None;
                }
                let bucket = self.bucket(op);
                bucket.throttled();
                self.report_rate();
                let wait = self
                    .backoff
                    .delay_with(attempts, r)
                    .max(retry_after.unwrap_or_default());
                Some(wait + token(bucket))
            }
            Class::Transient => {
                if attempts >= self.max_attempts || !repeat_is_harmless(op) {
                    return None;
                }
                Some(self.backoff.delay_with(attempts, r) + token(self.bucket(op)))
            }
        }
    }
}

/// The `Action` of an AWS query-protocol request body (IAM and STS), `"unknown"` without.
pub fn action_of(body: &[u8]) -> String {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// A 200 answer of a query-protocol call ends with `</{Action}Response>`; one that does not
/// was cut or is not the answer (a proxy's page): it could not be read.
pub fn answer_is_complete(action: &str, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.trim_end().ends_with(&format!("</{action}Response>"))
}

/// Told of every attempt that failed and is retried here (`operation`, how it failed):
/// the SDK's interceptors see only the last attempt of a call, so the call counter learns
/// of the retried ones (throttles above all) through this.
pub type RetryHook = Arc<dyn Fn(&str, Class) + Send + Sync>;

/// The HTTP client of the IAM and STS clients: every attempt the SDK makes goes through
/// [`PacedConnector`].
#[derive(Clone)]
pub struct PacedHttpClient {
    pub inner: SharedHttpClient,
    pub pacer: Arc<Pacer>,
    pub on_retry: Option<RetryHook>,
    /// Priority calls (exposed-key quarantine) pass the buckets without waiting for a
    /// token; they keep the classification, the retries and the backoff.
    pub priority: bool,
}

impl std::fmt::Debug for PacedHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacedHttpClient")
            .field("pacer", &self.pacer)
            .finish()
    }
}

impl HttpClient for PacedHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(PacedConnector {
            inner: self.inner.http_connector(settings, components),
            pacer: self.pacer.clone(),
            on_retry: self.on_retry.clone(),
            priority: self.priority,
        })
    }
}

/// Paces, classifies and retries each SDK attempt (see the module doc).
#[derive(Clone)]
pub struct PacedConnector {
    inner: SharedHttpConnector,
    pacer: Arc<Pacer>,
    on_retry: Option<RetryHook>,
    priority: bool,
}

impl std::fmt::Debug for PacedConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacedConnector")
            .field("pacer", &self.pacer)
            .finish()
    }
}

fn boxed(msg: String) -> BoxError {
    msg.into()
}

impl PacedConnector {
    /// One try: wait for the bucket, send, read the whole answer (bounded by the per-try
    /// timeout). `Ok((response, body))` or the connector error.
    async fn try_once(
        &self,
        op: &str,
        request: HttpRequest,
    ) -> Result<(HttpResponse, bytes::Bytes), ConnectorError> {
        if !self.priority {
            tokio::time::sleep(self.pacer.bucket(op).reserve()).await;
        }
        let inner = self.inner.clone();
        let send = async move {
            let mut resp = inner.call(request).await?;
            let body = std::mem::replace(resp.body_mut(), SdkBody::taken());
            let bytes = ByteStream::new(body)
                .collect()
                .await
                .map_err(|e| ConnectorError::io(e.into()))?
                .into_bytes();
            *resp.body_mut() = SdkBody::from(bytes.clone());
            Ok::<_, ConnectorError>((resp, bytes))
        };
        match tokio::time::timeout(self.pacer.attempt_timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(ConnectorError::timeout(boxed(format!(
                "no complete answer to {op} within {:?} (aws.attempt_timeout)",
                self.pacer.attempt_timeout
            )))),
        }
    }

    async fn call_paced(&self, request: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let op = action_of(request.body().bytes().unwrap_or_default());
        let mut attempts = 0u32;
        let mut request = request;
        loop {
            attempts += 1;
            // IAM and STS bodies are in memory, so a clone for the retry can always be made.
            let retry = request.try_clone();
            let (result, class) = match self.try_once(&op, request).await {
                Ok((resp, body)) => {
                    let status = resp.status().as_u16();
                    let class = if (200..300).contains(&status) {
                        if answer_is_complete(&op, &body) {
                            return Ok(resp);
                        }
                        Class::Transient
                    } else {
                        classify(
                            Some(status),
                            &body,
                            resp.headers()
                                .get("retry-after")
                                .and_then(parse_retry_after),
                        )
                    };
                    let result = if (200..300).contains(&status) {
                        // Unreadable: hand the SDK an error it reports, not a parse panic.
                        Err(ConnectorError::io(boxed(format!(
                            "the answer to {op} was cut or is not an AWS answer ({} bytes)",
                            body.len()
                        ))))
                    } else {
                        Ok(resp)
                    };
                    (result, class)
                }
                Err(e) => (Err(e), Class::Transient),
            };
            let Some(next) = retry else {
                return result;
            };
            match self
                .pacer
                .retry_wait(&op, class, attempts, fastrand::f64(), self.priority)
            {
                Some(wait) => {
                    if let Some(hook) = &self.on_retry {
                        hook(&op, class);
                    }
                    tracing::debug!(operation = %op, attempts, ?class, ?wait, "retrying an AWS call");
                    tokio::time::sleep(wait).await;
                    request = next;
                }
                None => return result,
            }
        }
    }
}

impl HttpConnector for PacedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let this = self.clone();
        HttpConnectorFuture::new(async move { this.call_paced(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rate_limiter_rejects_bad_settings() {
        assert_eq!(
            RateLimiter::new(0.0, 10).unwrap_err(),
            RateLimitError::Rate(0.0)
        );
        assert!(RateLimiter::new(-1.0, 10).is_err());
        assert!(RateLimiter::new(f64::NAN, 10).is_err());
        assert!(RateLimiter::new(f64::INFINITY, 10).is_err());
        assert_eq!(RateLimiter::new(5.0, 0).unwrap_err(), RateLimitError::Burst);
        assert!(RateLimitError::Burst.to_string().contains("at least 1"));
        assert!(RateLimiter::new(5.0, 1).unwrap().with_floor(0.0).is_err());
        let r = RateLimiter::new(5.0, 10).unwrap();
        assert_eq!((r.ceiling(), r.burst(), r.floor()), (5.0, 10, 0.5));
        let d = RateLimiter::default();
        assert_eq!((d.ceiling(), d.burst(), d.floor()), (20.0, 10, 0.5));
        assert_eq!(RateLimiter::new(0.2, 1).unwrap().floor(), 0.2);
    }

    #[test]
    fn burst_then_rate_on_synthetic_time() {
        let r = RateLimiter::new(10.0, 3).unwrap(); // 100 ms per token after the burst
        let t0 = Instant::now();
        let got: Vec<Duration> = (0..6).map(|_| r.reserve_at(t0) - t0).collect();
        assert_eq!(got, vec![ms(0), ms(0), ms(0), ms(100), ms(200), ms(300)]);
        // idle for a minute: the burst is available again, no more
        let later = t0 + Duration::from_secs(60);
        let allowed_now = (0..5).filter(|_| r.reserve_at(later) == later).count();
        assert_eq!(allowed_now, 3);
    }

    #[test]
    fn throttling_halves_once_per_gap_down_to_the_floor() {
        let r = RateLimiter::new(20.0, 1).unwrap().with_floor(2.0).unwrap();
        let t0 = Instant::now();
        assert_eq!(r.throttled_at(t0), 10.0);
        // the rest of the same burst of throttles is the same signal
        assert_eq!(r.throttled_at(t0 + ms(10)), 10.0);
        assert_eq!(r.throttled_at(t0 + ms(500)), 10.0);
        // throttles every half second: one halving per second, never a quiet second
        let mut got = Vec::new();
        for i in 2..=8 {
            got.push(r.throttled_at(t0 + ms(500 * i)));
        }
        assert_eq!(
            got,
            vec![5.0, 5.0, 2.5, 2.5, 2.0, 2.0, 2.0],
            "never below the floor"
        );
    }

    #[test]
    fn recovery_is_additive_after_quiet_periods_up_to_the_ceiling() {
        let r = RateLimiter::new(20.0, 1).unwrap();
        let t0 = Instant::now();
        r.throttled_at(t0);
        r.throttled_at(t0 + ms(600));
        r.throttled_at(t0 + ms(1200)); // 5/s, quiet since t0+1.2s
        assert_eq!(r.rate_at(t0 + ms(2199)), 5.0, "not quiet long enough");
        assert_eq!(
            r.rate_at(t0 + ms(2200)),
            7.0,
            "+ceiling/10 per quiet period"
        );
        assert_eq!(r.rate_at(t0 + ms(4700)), 11.0);
        // a throttle restarts the quiet period
        assert_eq!(r.throttled_at(t0 + ms(4800)), 5.5);
        assert_eq!(r.rate_at(t0 + ms(5700)), 5.5);
        assert_eq!(r.rate_at(t0 + ms(5800)), 7.5);
        assert_eq!(r.rate_at(t0 + Duration::from_secs(600)), 20.0, "capped");
    }

    #[test]
    fn a_halved_bucket_spaces_calls_further_apart() {
        let r = RateLimiter::new(10.0, 1).unwrap();
        let t0 = Instant::now();
        assert_eq!(r.reserve_at(t0), t0);
        assert_eq!(r.reserve_at(t0) - t0, ms(100));
        r.throttled_at(t0); // 5/s
        assert_eq!(
            r.reserve_at(t0) - t0,
            ms(200),
            "the next slot after the old one"
        );
        assert_eq!(r.reserve_at(t0) - t0, ms(400));
    }

    #[test]
    fn backoff_is_capped_exponential_with_full_jitter() {
        let b = Backoff {
            base: ms(100),
            max: ms(1000),
        };
        let caps: Vec<u64> = (1..=7).map(|n| b.cap(n).as_millis() as u64).collect();
        assert_eq!(caps, vec![100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(b.cap(u32::MAX), ms(1000));
        assert_eq!(b.delay_with(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay_with(3, 0.5), ms(200));
        assert_eq!(b.delay_with(3, f64::NAN), Duration::ZERO);
        for _ in 0..100 {
            assert!(b.delay(4) < ms(800));
        }
    }

    #[test]
    fn answers_are_classified() {
        let throttle = br#"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"#;
        let denied = br#"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>"#;
        type Case<'a> = (Option<u16>, &'a [u8], Option<Duration>, Class);
        let cases: &[Case] = &[
            (
                Some(400),
                throttle,
                None,
                Class::Throttled { retry_after: None },
            ),
            (
                Some(400),
                throttle,
                Some(ms(2000)),
                Class::Throttled {
                    retry_after: Some(ms(2000)),
                },
            ),
            (Some(429), b"", None, Class::Throttled { retry_after: None }),
            (
                Some(400),
                br#"{"__type":"com.amazon#ThrottlingException"}"#,
                None,
                Class::Throttled { retry_after: None },
            ),
            (Some(500), b"oops", None, Class::Transient),
            (Some(503), b"", None, Class::Transient),
            (Some(200), b"<CreatePolicyRes", None, Class::Transient),
            (Some(200), b"not xml at all", None, Class::Transient),
            (None, b"", None, Class::Transient),
            (Some(403), denied, None, Class::Final),
            (
                Some(404),
                b"<Error><Code>NoSuchEntity</Code></Error>",
                None,
                Class::Final,
            ),
        ];
        for (status, body, ra, want) in cases {
            assert_eq!(
                classify(*status, body, *ra),
                *want,
                "{status:?} {}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parse_retry_after(" 2 "), Some(ms(2000)));
        assert_eq!(parse_retry_after("0.5"), Some(ms(500)));
        assert_eq!(parse_retry_after("3600"), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn retry_decisions() {
        let s = PacingSettings {
            max_attempts: 3,
            backoff: Backoff {
                base: ms(100),
                max: ms(1000),
            },
            ..PacingSettings::default()
        };
        let p = Pacer::new(&s).unwrap();
        let t = Class::Transient;
        // reads retry transient failures up to max_attempts
        assert!(p.retry_delay("ListUsers", t, 1, 0.0).is_some());
        assert!(p.retry_delay("ListUsers", t, 2, 0.0).is_some());
        assert_eq!(p.retry_delay("ListUsers", t, 3, 0.0), None);
        // writes that must be re-read first are not retried here
        for op in [
            "CreatePolicyVersion",
            "CreateGroup",
            "DeleteAccessKey",
            "AddUserToGroup",
        ] {
            assert_eq!(p.retry_delay(op, t, 1, 0.0), None, "{op}");
        }
        assert!(p.retry_delay("TagUser", t, 1, 0.0).is_some());
        assert_eq!(p.retry_delay("GetUser", Class::Final, 1, 0.0), None);
        // throttles: retried past max_attempts (up to the factor), and they halve the bucket
        let th = Class::Throttled {
            retry_after: Some(ms(700)),
        };
        let before = p.writes.rate_per_sec();
        let d = p.retry_delay("CreatePolicyVersion", th, 3, 0.0).unwrap();
        assert!(d >= ms(700), "Retry-After is honoured: {d:?}");
        assert_eq!(p.writes.rate_per_sec(), before / 2.0);
        assert_eq!(p.reads.rate_per_sec(), 100.0, "reads have their own bucket");
        assert!(p.retry_delay("CreatePolicyVersion", th, 11, 0.0).is_some());
        assert_eq!(p.retry_delay("CreatePolicyVersion", th, 12, 0.0), None);
    }

    #[test]
    fn priority_retries_wait_for_the_backoff_only() {
        let s = PacingSettings {
            writes_per_second: 1.0,
            write_burst: 1,
            max_attempts: 3,
            backoff: Backoff {
                base: ms(100),
                max: ms(100),
            },
            ..PacingSettings::default()
        };
        let p = Pacer::new(&s).unwrap();
        // Empty the write bucket: the next token is a second away.
        p.writes.reserve();
        let t = Class::Transient;
        // r = 0.99: the jittered backoff is just under its 100 ms cap.
        let paced = p.retry_wait("TagUser", t, 1, 0.99, false).unwrap();
        assert!(
            paced >= ms(900),
            "a paced retry waits for a token: {paced:?}"
        );
        for _ in 0..5 {
            let d = p.retry_wait("UpdateAccessKey", t, 1, 0.99, true).unwrap();
            assert!(
                d <= ms(100),
                "a priority retry waits for the backoff only: {d:?}"
            );
        }
        // Retry limits are the same for priority calls.
        assert_eq!(p.retry_wait("UpdateAccessKey", t, 3, 0.0, true), None);
        assert_eq!(p.retry_wait("DeleteAccessKey", t, 1, 0.0, true), None);
        // A throttled priority call still slows the bucket for everyone else.
        let before = p.writes.rate_per_sec();
        let th = Class::Throttled { retry_after: None };
        let d = p.retry_wait("UpdateAccessKey", th, 1, 0.99, true).unwrap();
        assert!(d <= ms(100), "{d:?}");
        assert_eq!(
            p.writes.rate_per_sec(),
            (before / 2.0).max(p.writes.floor())
        );
    }

    #[test]
    fn the_rate_hook_sees_the_write_rate() {
        let seen = Arc::new(Mutex::new(Vec::<f64>::new()));
        let a = seen.clone();
        let p = Pacer::new(&PacingSettings::default())
            .unwrap()
            .with_rate_hook(move |r| a.lock().unwrap().push(r));
        let th = Class::Throttled { retry_after: None };
        p.retry_delay("AttachUserPolicy", th, 1, 0.0).unwrap();
        p.retry_delay("ListUsers", th, 1, 0.0).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![20.0, 10.0, 10.0]);
    }

    #[test]
    fn read_operations_are_recognised() {
        for op in ["GetUser", "ListAccessKeys", "GenerateCredentialReport"] {
            assert!(is_read_operation(op), "{op}");
        }
        for op in ["CreatePolicyVersion", "UpdateAccessKey", "AddUserToGroup"] {
            assert!(!is_read_operation(op), "{op}");
        }
    }

    #[test]
    fn query_requests_and_answers_are_read() {
        assert_eq!(
            action_of(b"Action=CreatePolicyVersion&Version=2010-05-08&PolicyArn=x"),
            "CreatePolicyVersion"
        );
        assert_eq!(action_of(b"Version=2010-05-08"), "unknown");
        let full = b"<GetUserResponse xmlns=\"x\"><GetUserResult/></GetUserResponse>\n";
        assert!(answer_is_complete("GetUser", full));
        assert!(!answer_is_complete("GetUser", &full[..20]));
        assert!(!answer_is_complete("GetUser", b"<html>bad gateway</html>"));
    }

    #[tokio::test]
    async fn acquire_waits_for_the_token() {
        let r = RateLimiter::new(50.0, 3).unwrap(); // 20 ms per token after the burst
        let start = Instant::now();
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(5), r.acquire())
                .await
                .unwrap();
        }
        for i in 1..=3u32 {
            tokio::time::timeout(Duration::from_secs(5), r.acquire())
                .await
                .unwrap();
            assert!(start.elapsed() >= ms(20) * i);
        }
    }
}
