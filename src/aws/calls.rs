//! The call counter every client carries: each HTTP attempt by service, operation and
//! outcome, counted by an interceptor.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

pub use crate::pacing::is_read_operation;

/// Outcome of one HTTP attempt of an AWS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallOutcome {
    Ok,
    Error,
    Throttled,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Throttled => "throttled",
        }
    }
}

type CallKey = (String, String, CallOutcome);
type CallHook = Arc<dyn Fn(&str, &str, CallOutcome) + Send + Sync>;
type RateHook = Arc<dyn Fn(f64) + Send + Sync>;

/// Counts every HTTP attempt every client makes, by service, operation and outcome.
/// Shared (cheap to clone); the metrics module exports it, tests and benchmarks read it.
#[derive(Clone, Default)]
pub struct CallStats {
    inner: Arc<Mutex<BTreeMap<CallKey, u64>>>,
    hook: Option<CallHook>,
    rate_hook: Option<RateHook>,
}

impl fmt::Debug for CallStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallStats")
            .field("total", &self.total())
            .finish()
    }
}

impl CallStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also call `hook` on every attempt (the metrics module uses it).
    pub fn with_hook(hook: impl Fn(&str, &str, CallOutcome) + Send + Sync + 'static) -> Self {
        CallStats {
            inner: Arc::default(),
            hook: Some(Arc::new(hook)),
            rate_hook: None,
        }
    }

    /// Also call `hook` with the current write rate whenever it may have changed.
    pub fn with_rate_hook(mut self, hook: impl Fn(f64) + Send + Sync + 'static) -> Self {
        self.rate_hook = Some(Arc::new(hook));
        self
    }

    /// The current adaptive write rate (per second), for the metrics gauge.
    pub fn write_rate(&self, rate: f64) {
        if let Some(h) = &self.rate_hook {
            h(rate);
        }
    }

    pub fn record(&self, service: &str, operation: &str, outcome: CallOutcome) {
        if let Ok(mut m) = self.inner.lock() {
            *m.entry((service.to_string(), operation.to_string(), outcome))
                .or_insert(0) += 1;
        }
        if let Some(h) = &self.hook {
            h(service, operation, outcome);
        }
    }

    /// A copy of all counts.
    pub fn snapshot(&self) -> BTreeMap<CallKey, u64> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Attempts of write operations (not Get/List/Generate/...).
    pub fn writes(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((_, op, _), _)| !is_read_operation(op))
            .map(|(_, n)| n)
            .sum()
    }

    /// Attempts of one operation, any service and outcome.
    pub fn count(&self, operation: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((_, op, _), _)| op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    /// `Operation=count` pairs, for reports.
    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((_, op, _), n) in self.snapshot() {
            *out.entry(op).or_insert(0) += n;
        }
        out
    }
}

#[derive(Debug)]
pub(super) struct CountingInterceptor {
    service: &'static str,
    stats: CallStats,
}

impl CountingInterceptor {
    /// Counts the calls of a client as `service` in `stats`.
    pub(super) fn new(service: &'static str, stats: &CallStats) -> CountingInterceptor {
        CountingInterceptor {
            service,
            stats: stats.clone(),
        }
    }
}

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "iam-warden-call-counter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "unknown".into());
        let outcome = match context.response() {
            Some(r) if r.status().is_success() => CallOutcome::Ok,
            Some(r) => {
                let throttled = r.status().as_u16() == 429
                    || r.body()
                        .bytes()
                        .map(|b| {
                            let s = String::from_utf8_lossy(b);
                            s.contains("Throttl") || s.contains("RequestLimitExceeded")
                        })
                        .unwrap_or(false);
                if throttled {
                    CallOutcome::Throttled
                } else {
                    CallOutcome::Error
                }
            }
            None => CallOutcome::Error,
        };
        self.stats.record(self.service, &op, outcome);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_stats_count_and_split_reads_and_writes() {
        let seen = Arc::new(Mutex::new(0u32));
        let s2 = seen.clone();
        let s = CallStats::with_hook(move |_, _, _| *s2.lock().unwrap() += 1);
        s.record("iam", "GetUser", CallOutcome::Ok);
        s.record("iam", "GetUser", CallOutcome::Throttled);
        s.record("iam", "UpdateAccessKey", CallOutcome::Ok);
        assert_eq!(s.total(), 3);
        assert_eq!(s.writes(), 1);
        assert_eq!(s.count("GetUser"), 2);
        assert_eq!(*seen.lock().unwrap(), 3);
        assert_eq!(s.clone().total(), 3, "clones share counts");
    }
}
