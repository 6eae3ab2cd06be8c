//! Adaptive pacing of every IAM and STS call: one layer below `apply`, `inventory` and the
//! controller.
//!
//! - Two AIMD token buckets ([`RateLimiter`]): one for writes, one for reads. Each starts at
//!   its ceiling (`controller.writes_per_second`, `controller.reads_per_second`), halves on a
//!   throttling answer (at most once per [`DECREASE_GAP`], so one burst of throttles is one
//!   signal), and after every [`QUIET_PERIOD`] without a throttle grows by a tenth of its
//!   ceiling again; it never goes below `controller.min_rate_per_second`. A halving made
//!   while calls were waiting for the bucket is judged after [`PROBE_PERIOD`]: when it kept
//!   the successful calls per second, it answered a limit on our rate and stands; when it
//!   halved them, the throttling does not follow our rate (an account-wide limit spent by
//!   others, injected faults) and the halving is undone, with no halving for
//!   [`HOLD_PERIOD`] unless the share of throttles rises above what the probe saw.
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

mod backoff;
mod bucket;
mod classify;
mod connector;

use std::sync::Arc;
use std::time::Duration;

pub use backoff::Backoff;
pub use bucket::{
    RateLimitError, RateLimiter, DECREASE_GAP, HOLD_PERIOD, PROBE_PERIOD, QUIET_PERIOD,
};
pub use classify::{
    action_of, answer_is_complete, classify, error_code, is_read_operation, parse_retry_after,
    repeat_is_harmless, Class,
};
pub use connector::{PacedConnector, PacedHttpClient, RetryHook};

/// Throttled attempts may go on up to this many times `aws.max_attempts` attempts in all
/// (other failures stop at `aws.max_attempts`); `aws.operation_timeout` bounds both.
pub const THROTTLE_ATTEMPT_FACTOR: u32 = 4;

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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
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
}
