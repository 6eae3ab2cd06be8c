//! The HTTP client of the IAM and STS clients: paces, classifies and retries each attempt.

use std::sync::Arc;

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

use super::classify::{action_of, answer_is_complete, classify, parse_retry_after, Class};
use super::Pacer;

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
