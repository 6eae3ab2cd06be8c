//! The `cloudtrail-recorder` proxy (src/bin/cloudtrail-recorder/) as a child process in
//! front of a moto server, with clients that go through it.

use std::process::{Child, Command, Stdio};

use aws_credential_types::Credentials;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use iam_warden::aws::{CallStats, Clients};
use serde_json::Value;

use super::{Account, Moto};

/// A running recorder. Dies with the test process (it exits on stdin EOF) and on drop.
pub struct Recorder {
    pub url: String,
    child: Child,
}

impl Recorder {
    /// Start one in front of `moto`; `delay` is its CloudTrail delivery delay ("0", "2s").
    pub fn start(moto: &Moto, delay: &str) -> Recorder {
        Self::start_with(moto, delay, &[])
    }

    /// The same with more arguments (e.g. `--record-reads`).
    pub fn start_with(moto: &Moto, delay: &str, extra: &[&str]) -> Recorder {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudtrail-recorder"));
        cmd.args(extra);
        cmd.args([
            "--upstream",
            &moto.endpoint,
            "--listen",
            "127.0.0.1:0",
            "--delay",
            delay,
            "--exit-on-stdin-eof",
        ]);
        let (child, url) = super::spawn_proxy(cmd, Stdio::inherit(), "cloudtrail-recorder");
        Recorder { url, child }
    }

    /// An IAM client of the account's test identity whose writes are recorded.
    pub fn iam(&self, acct: &Account) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(&acct.sdk)
                .endpoint_url(&self.url)
                .build(),
        )
    }

    /// The same with other credentials.
    pub fn iam_with(&self, acct: &Account, creds: Credentials) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(&acct.sdk)
                .endpoint_url(&self.url)
                .credentials_provider(creds)
                .build(),
        )
    }

    pub fn cloudtrail(&self, acct: &Account) -> aws_sdk_cloudtrail::Client {
        aws_sdk_cloudtrail::Client::from_conf(
            aws_sdk_cloudtrail::config::Builder::from(&acct.sdk)
                .endpoint_url(&self.url)
                .build(),
        )
    }

    /// iam-warden's clients with CloudTrail going to the recorder.
    pub fn clients(&self, acct: &Account) -> Clients {
        Clients::from_sdk_config(&acct.sdk, Some(&self.url), CallStats::new())
    }

    /// GET /recorder/events?account=ID: the raw body and the parsed records.
    pub async fn recorded(&self, account: &str) -> (String, Vec<Value>) {
        let (status, body) = http(
            "GET",
            &format!("{}/recorder/events?account={account}", self.url),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("JSON array");
        (body, v.as_array().expect("array").clone())
    }

    /// POST /recorder/events?account=ID: append raw records.
    pub async fn inject(&self, account: &str, records: &Value) {
        let (status, body) = http(
            "POST",
            &format!("{}/recorder/events?account={account}", self.url),
            Some(records.to_string()),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

impl Recorder {
    /// POST /recorder/lookup-denied: from now on answer `LookupEvents` with
    /// `AccessDeniedException` (`true`) or normally again (`false`).
    pub async fn deny_lookups(&self, denied: bool) {
        let (status, body) = http(
            "POST",
            &format!("{}/recorder/lookup-denied", self.url),
            Some(denied.to_string()),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain-HTTP request; (status, body).
pub async fn http(method: &str, url: &str, body: Option<String>) -> (u16, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let resp = client.request(req).await.expect("HTTP request to recorder");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
