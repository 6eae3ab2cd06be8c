//! The `fault-proxy` (src/bin/fault-proxy/) as a child process in front of a moto server,
//! and iam-warden clients that go through it.

use std::process::{Child, Command, Stdio};

use iam_warden::aws::{CallStats, Clients};
use iam_warden::pacing::PacingSettings;
use serde_json::Value;

use super::recorder::http;
use super::{Account, Moto};

/// A running fault proxy. Dies with the test process (stdin EOF) and on drop.
pub struct FaultProxy {
    pub url: String,
    child: Child,
}

impl FaultProxy {
    /// Start one in front of `moto`: random faults of `kinds` with probability `rate`,
    /// drawn from a generator seeded with `seed`.
    pub fn start(moto: &Moto, seed: u64, rate: f64, kinds: &[&str]) -> FaultProxy {
        Self::start_with(moto, seed, rate, kinds, 150)
    }

    /// [`FaultProxy::start`] with `slow_ms` as the delay of a `slow` answer.
    pub fn start_with(
        moto: &Moto,
        seed: u64,
        rate: f64,
        kinds: &[&str],
        slow_ms: u64,
    ) -> FaultProxy {
        let slow_ms = slow_ms.to_string();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fault-proxy"));
        cmd.args([
            "--upstream",
            &moto.endpoint,
            "--listen",
            "127.0.0.1:0",
            "--seed",
            &seed.to_string(),
            "--rate",
            &rate.to_string(),
            "--faults",
            &kinds.join(","),
            "--slow-ms",
            &slow_ms,
            "--retry-after",
            "0.2",
            "--exit-on-stdin-eof",
        ]);
        let (child, url) = super::spawn_proxy(cmd, Stdio::null(), "fault-proxy");
        FaultProxy { url, child }
    }

    /// iam-warden's clients for `acct` going through the proxy, paced with `settings`.
    pub fn clients(&self, acct: &Account, settings: &PacingSettings) -> Clients {
        let sdk = acct.sdk.to_builder().endpoint_url(&self.url).build();
        Clients::from_sdk_config(&sdk, None, CallStats::new())
            .paced(settings)
            .expect("valid pacing settings")
    }

    /// The next request of `action` gets `fault`, once.
    pub async fn script(&self, action: &str, fault: &str) {
        let (status, body) = http(
            "POST",
            &format!("{}/fault-proxy/script", self.url),
            Some(format!("{action} {fault}\n")),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    /// From now on, every request of `action` whose body contains `text` is refused with
    /// AccessDenied (e.g. `AssumeRole` of one account's role).
    pub async fn refuse(&self, action: &str, text: &str) {
        let (status, body) = http(
            "POST",
            &format!("{}/fault-proxy/refuse", self.url),
            Some(format!("{action} {text}\n")),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Change the probability of random faults.
    pub async fn set_rate(&self, rate: f64) {
        let (status, body) = http(
            "POST",
            &format!("{}/fault-proxy/rate", self.url),
            Some(rate.to_string()),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    /// What the proxy did: `requests`, `forwarded`, `faults` by kind, `by_action`,
    /// `scripts_pending`.
    pub async fn stats(&self) -> Value {
        let (status, body) = http("GET", &format!("{}/fault-proxy/stats", self.url), None).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("stats JSON")
    }

    /// How many times `fault` hit, all operations.
    pub async fn count(&self, fault: &str) -> u64 {
        self.stats().await["faults"][fault].as_u64().unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
