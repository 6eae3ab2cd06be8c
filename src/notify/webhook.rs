//! The webhook channel: an HTTP(S) POST of the JSON notice, signed with HMAC-SHA256 of the
//! exact body (`X-Iam-Warden-Signature: sha256=<hex>`), retried with capped exponential
//! backoff and full jitter. It uses the same hyper client and rustls (aws-lc) connector as
//! the AWS SDK clients (`aws_smithy_http_client`), so there is one TLS stack; the
//! connector speaks http:// and https://.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Iam-Warden-Signature";

/// The HMAC key read from `notifications.webhook_secret_file`. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// A key from its bytes (tests; the daemon reads it with [`SigningKey::read`]).
    pub fn from_bytes(key: &[u8]) -> SigningKey {
        SigningKey(key.to_vec())
    }

    /// Read the key from `path` (surrounding whitespace, e.g. a trailing newline, is not
    /// part of it). Missing, unreadable or empty: an error naming the file, never its
    /// content.
    pub fn read(path: &Path) -> Result<SigningKey> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "notifications.webhook_secret_file {}: cannot read it ({}); create the file \
                 holding the webhook's HMAC key, readable by iam-warden",
                path.display(),
                io_reason(&e)
            ))
        })?;
        let key = bytes.trim_ascii();
        if key.is_empty() {
            return Err(Error::Config(format!(
                "notifications.webhook_secret_file {} is empty; write the webhook's HMAC key \
                 into it (e.g. openssl rand -hex 32)",
                path.display()
            )));
        }
        warn_if_shared(path);
        Ok(SigningKey(key.to_vec()))
    }

    /// `sha256=<lowercase hex HMAC-SHA256 of body>`, the value of [`SIGNATURE_HEADER`].
    pub fn signature(&self, body: &[u8]) -> String {
        format!("sha256={}", hex(&hmac_sha256(&self.0, body)))
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        // Group bits are allowed: Kubernetes mounts a Secret 0440 when the pod sets an
        // fsGroup, and a systemd credential may be group-readable by design.
        if m.permissions().mode() & 0o007 != 0 {
            tracing::warn!(
                file = %path.display(),
                "notifications.webhook_secret_file is readable by every user; chmod 600 (or 640) it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

/// HMAC-SHA256 of `body` keyed with `key`.
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length (a long one is hashed first): this cannot fail.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The URL as it may be logged: without user info, query string and fragment (they may
/// hold a token).
pub fn display_url(url: &str) -> String {
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..cut];
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

/// The delay before retry `attempt` (1 = the first retry): a random time below
/// min(cap, base · 2^(attempt-1)) ("full jitter").
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let ceiling = exp.min(cap);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=ms))
}

/// Whether an answer is worth another attempt.
fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// The result of one POST.
pub(super) enum Attempt {
    Sent,
    /// Try again (transport error, timeout, 408/429/5xx).
    Retry(String),
    /// Retrying cannot help (another 4xx, an unusable URL).
    Fatal(String),
}

/// One webhook endpoint: the URL, its signing key, the connector.
pub(super) struct Webhook {
    url: String,
    shown: String,
    key: SigningKey,
    connector: aws_smithy_http_client::Connector,
    timeout: Duration,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.shown)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    pub(super) fn new(url: &str, key: SigningKey, timeout: Duration) -> Webhook {
        let connector = aws_smithy_http_client::Connector::builder()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .proxy_config(ProxyConfig::from_env())
            .build();
        Webhook {
            url: url.to_string(),
            shown: display_url(url),
            key,
            connector,
            timeout,
        }
    }

    /// The URL without query string (for logs).
    pub(super) fn shown(&self) -> &str {
        &self.shown
    }

    /// One signed POST of `body`, bounded by the timeout.
    pub(super) async fn post(&self, body: &[u8]) -> Attempt {
        let mut req = HttpRequest::new(SdkBody::from(body.to_vec()));
        if req.set_method("POST").is_err() {
            return Attempt::Fatal("cannot build a POST request".into());
        }
        if let Err(e) = req.set_uri(self.url.as_str()) {
            return Attempt::Fatal(format!(
                "notifications.webhook_url is not a usable URL ({e}); fix it"
            ));
        }
        let headers = req.headers_mut();
        headers.insert("content-type", "application/json");
        headers.insert("content-length", body.len().to_string());
        headers.insert(
            "user-agent",
            concat!("iam-warden/", env!("CARGO_PKG_VERSION")),
        );
        headers.insert(SIGNATURE_HEADER, self.key.signature(body));
        match tokio::time::timeout(self.timeout, self.connector.call(req)).await {
            Err(_) => Attempt::Retry(format!(
                "no answer within {} s (notifications.timeout)",
                self.timeout.as_secs_f64()
            )),
            Ok(Err(e)) => Attempt::Retry(one_line_error(&e)),
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    Attempt::Sent
                } else if retryable_status(status) {
                    Attempt::Retry(format!("the receiver answered HTTP {status}"))
                } else {
                    Attempt::Fatal(format!(
                        "the receiver answered HTTP {status}; check the URL and that the \
                         receiver accepts the signature"
                    ))
                }
            }
        }
    }
}

/// A connector error as one line: the innermost cause that says something.
fn one_line_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !t.trim().is_empty() {
            text = t;
        }
        cur = c.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
