//! The faults, their names, and the proxy's shared state: which request gets which fault.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Fault {
    Throttle,
    ThrottleRetryAfter,
    E500,
    E503,
    Reset,
    AppliedThen500,
    AppliedThenReset,
    Slow,
    Truncated,
    NonXml,
    Hang,
    KmsEncryptionFailure,
    KmsInvalidKeyId,
    AccessDenied,
}

const FAULTS: &[(&str, Fault)] = &[
    ("throttle", Fault::Throttle),
    ("throttle-retry-after", Fault::ThrottleRetryAfter),
    ("500", Fault::E500),
    ("503", Fault::E503),
    ("reset", Fault::Reset),
    ("applied-then-500", Fault::AppliedThen500),
    ("applied-then-reset", Fault::AppliedThenReset),
    ("slow", Fault::Slow),
    ("truncated", Fault::Truncated),
    ("non-xml", Fault::NonXml),
    ("hang", Fault::Hang),
    ("kms-encryption-failure", Fault::KmsEncryptionFailure),
    ("kms-invalid-key-id", Fault::KmsInvalidKeyId),
    ("access-denied", Fault::AccessDenied),
];

impl Fault {
    pub(crate) fn parse(s: &str) -> Result<Fault, String> {
        FAULTS
            .iter()
            .find(|(n, _)| *n == s.trim())
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let names: Vec<_> = FAULTS.iter().map(|(n, _)| *n).collect();
                format!("unknown fault {s:?}: use one of {}", names.join(", "))
            })
    }

    pub(crate) fn name(self) -> &'static str {
        FAULTS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| *n)
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) requests: u64,
    pub(crate) forwarded: u64,
    pub(crate) faults: BTreeMap<&'static str, u64>,
    pub(crate) by_action: BTreeMap<String, BTreeMap<&'static str, u64>>,
}

pub(crate) struct Shared {
    pub(crate) upstream: String,
    pub(crate) rng: fastrand::Rng,
    pub(crate) rate: f64,
    pub(crate) kinds: Vec<Fault>,
    pub(crate) scripts: VecDeque<(String, Fault)>,
    /// Refusals: every request of the operation whose body contains the text is answered
    /// `access-denied` (e.g. `AssumeRole` of one account's role).
    pub(crate) refusals: Vec<(String, String)>,
    pub(crate) stats: Stats,
}

pub(crate) struct Proxy {
    pub(crate) shared: Mutex<Shared>,
    pub(crate) slow: Duration,
    pub(crate) retry_after: String,
}

impl Proxy {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fault for this request, if any, and count it.
    pub(crate) fn decide(&self, action: Option<&str>, body: &[u8]) -> Option<Fault> {
        let mut s = self.lock();
        s.stats.requests += 1;
        let action = action?;
        let body = String::from_utf8_lossy(body);
        let refused = s
            .refusals
            .iter()
            .any(|(a, text)| a == action && body.contains(text.as_str()));
        let fault = if refused {
            Some(Fault::AccessDenied)
        } else if let Some(i) = s.scripts.iter().position(|(a, _)| a == action) {
            s.scripts.remove(i).map(|(_, f)| f)
        } else if !s.kinds.is_empty() && s.rng.f64() < s.rate {
            let n = s.kinds.len();
            let i = s.rng.usize(..n);
            Some(s.kinds[i])
        } else {
            None
        }?;
        *s.stats.faults.entry(fault.name()).or_insert(0) += 1;
        *s.stats
            .by_action
            .entry(action.to_string())
            .or_default()
            .entry(fault.name())
            .or_insert(0) += 1;
        Some(fault)
    }

    pub(crate) fn stats_json(&self) -> String {
        let s = self.lock();
        serde_json::json!({
            "requests": s.stats.requests,
            "forwarded": s.stats.forwarded,
            "faults": s.stats.faults,
            "by_action": s.stats.by_action,
            "scripts_pending": s.scripts.len(),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_round_trip() {
        for (name, f) in FAULTS {
            assert_eq!(Fault::parse(name), Ok(*f));
            assert_eq!(f.name(), *name);
        }
        assert!(Fault::parse("nope").unwrap_err().contains("use one of"));
    }
}
