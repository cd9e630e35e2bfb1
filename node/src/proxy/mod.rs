//! The backend proxy: the node asks the application's backend over HTTP about client
//! events (connect, refresh, subscribe, publish, sub_refresh, rpc), as Centrifugo's
//! proxy does, with the same JSON bodies ([`wire`]).
//!
//! One [`Proxy`] per node holds a pooled HTTP/1 client (hyper-util's legacy `Client`:
//! keep-alive connections to the backend are reused), a semaphore bounding the calls
//! in flight (`HERALD_PROXY_MAX_CONCURRENCY`), and the timeout that bounds each whole
//! call, the wait for a slot included (`HERALD_PROXY_TIMEOUT`). A call ends in an
//! [`Answer`] (the backend's result, error or disconnect) or a [`ProxyError`] that says
//! where it failed; the session turns both into what the client sees.
//!
//! This module knows nothing of sessions or channels: it sits beside the broker, below
//! the session, using only the configuration.
//!
//! # Layout
//! - this file: the client, its errors and metrics.
//! - [`wire`]: request and answer bodies.

pub mod wire;

use crate::config::{ProxyKind, ProxyOptions};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wire::{BackendDisconnect, BackendError, Envelope, ProxyRequest};

/// Requests counted by `type` and `result` (counter).
pub const REQUESTS: &str = "herald_node_proxy_requests_total";
/// Seconds per backend call by `type`, whatever its result (histogram).
pub const DURATION: &str = "herald_node_proxy_duration_seconds";

/// Largest answer body read: bigger ones are a parse error, not a memory bill.
const MAX_ANSWER: usize = 1 << 20;
/// Idle keep-alive connections kept per backend host (Centrifugo keeps 255).
const MAX_IDLE_PER_HOST: usize = 256;
/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Upgrade request headers kept for the backend (names lowercased, values as sent).
pub type Headers = Vec<(HeaderName, HeaderValue)>;

/// The backend's answer to one call.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<R> {
    /// `result` (absent: `None`, which each kind reads in Centrifugo's way).
    Result(Option<R>),
    /// `error`: the client gets this error reply.
    Error(BackendError),
    /// `disconnect`: the connection closes with this code.
    Disconnect(BackendDisconnect),
}

/// Why a call got no answer. The texts never hold header values or bodies: they are
/// logged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    /// No answer within `HERALD_PROXY_TIMEOUT` (waiting for a slot included).
    #[error("backend did not answer within {0:?}")]
    Timeout(Duration),
    /// The backend could not be reached or dropped the connection.
    #[error("backend unreachable: {0}")]
    Unreachable(String),
    /// The backend answered with a status other than 200.
    #[error("backend answered HTTP {0}")]
    Status(u16),
    /// The answer is not the proxy JSON (or too large, or a disconnect code that is not
    /// a close code).
    #[error("backend answer does not parse: {0}")]
    Parse(String),
}

impl ProxyError {
    /// The metrics `result` label.
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::Timeout(_) => "timeout",
            ProxyError::Unreachable(_) => "unreachable",
            ProxyError::Status(_) => "status",
            ProxyError::Parse(_) => "parse",
        }
    }
}

/// The node's client for the backend.
pub struct Proxy {
    /// The settings (endpoints, timeout, headers).
    options: ProxyOptions,
    /// The parsed endpoint of each kind, by [`ProxyKind::ALL`]'s order.
    endpoints: [Option<Uri>; 6],
    /// Pooled keep-alive connections.
    client: Client<HttpConnector, Full<Bytes>>,
    /// Calls in flight, at most `max_concurrency`.
    slots: Semaphore,
}

impl Proxy {
    /// The client for `options`; `None` when no proxy is on. Endpoints were checked by
    /// the configuration, so one that does not parse here is left off.
    pub fn new(options: &ProxyOptions) -> Option<Self> {
        if !options.any() {
            return None;
        }
        let endpoints = ProxyKind::ALL.map(|k| options.endpoint(k).and_then(|e| e.parse().ok()));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(options.timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        for kind in ProxyKind::ALL {
            if options.endpoint(kind).is_some() {
                for result in ["ok", "error", "disconnect"] {
                    metrics::counter!(REQUESTS, "type" => kind.name(), "result" => result)
                        .absolute(0);
                }
            }
        }
        describe();
        Some(Proxy {
            options: options.clone(),
            endpoints,
            client,
            slots: Semaphore::new(options.max_concurrency),
        })
    }

    /// Whether the proxy of `kind` is on.
    pub fn enabled(&self, kind: ProxyKind) -> bool {
        self.endpoint(kind).is_some()
    }

    /// The settings.
    pub fn options(&self) -> &ProxyOptions {
        &self.options
    }

    fn endpoint(&self, kind: ProxyKind) -> Option<&Uri> {
        let i = ProxyKind::ALL.iter().position(|k| *k == kind)?;
        self.endpoints[i].as_ref()
    }

    /// Keeps the headers of an upgrade request that are to be forwarded (none when no
    /// proxy is on, or none is listed).
    pub fn capture(&self, headers: &hyper::HeaderMap) -> Headers {
        let mut kept = Headers::new();
        for name in &self.options.http_headers {
            for value in headers.get_all(name.as_str()) {
                if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                    kept.push((name, value.clone()));
                }
            }
        }
        kept
    }

    /// Calls the backend's `kind` endpoint with `request` and the forwarded `headers`,
    /// bounded by the timeout; counts and times the call.
    pub async fn call<R: DeserializeOwned>(
        &self,
        kind: ProxyKind,
        headers: &Headers,
        request: &ProxyRequest<'_>,
    ) -> Result<Answer<R>, ProxyError> {
        let started = Instant::now();
        let timeout = self.options.timeout;
        let outcome =
            match tokio::time::timeout(timeout, self.exchange(kind, headers, request)).await {
                Ok(r) => r,
                Err(_) => Err(ProxyError::Timeout(timeout)),
            };
        metrics::histogram!(DURATION, "type" => kind.name())
            .record(started.elapsed().as_secs_f64());
        let result = match &outcome {
            Ok(Answer::Result(_)) => "ok",
            Ok(Answer::Error(_)) => "error",
            Ok(Answer::Disconnect(_)) => "disconnect",
            Err(e) => e.label(),
        };
        metrics::counter!(REQUESTS, "type" => kind.name(), "result" => result).increment(1);
        if let Err(e) = &outcome {
            tracing::warn!(proxy = kind.name(), client = request.client, error = %e, "backend proxy call failed");
        }
        outcome
    }

    async fn exchange<R: DeserializeOwned>(
        &self,
        kind: ProxyKind,
        headers: &Headers,
        request: &ProxyRequest<'_>,
    ) -> Result<Answer<R>, ProxyError> {
        let Some(uri) = self.endpoint(kind) else {
            return Err(ProxyError::Unreachable("no endpoint configured".into()));
        };
        let body = serde_json::to_vec(request).expect("proxy requests always serialise");
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .expect("a request from a checked URI and header names");
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| ProxyError::Unreachable("proxy closed".into()))?;
        let resp = self.client.request(req).await.map_err(|e| {
            // hyper-util's error names the stage (connect, send); its source says why.
            let why = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            ProxyError::Unreachable(format!("{e}: {why}"))
        })?;
        if resp.status() != StatusCode::OK {
            return Err(ProxyError::Status(resp.status().as_u16()));
        }
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ProxyError::Parse(format!("answer larger than {MAX_ANSWER} bytes"))
                } else {
                    ProxyError::Unreachable(format!("reading the answer: {e}"))
                }
            })?
            .to_bytes();
        decode(&body)
    }
}

/// Reads an answer body. Error texts name the kind of problem and where, never the
/// body's values (they may be user data or secrets).
fn decode<R: DeserializeOwned>(body: &[u8]) -> Result<Answer<R>, ProxyError> {
    let envelope: Envelope<R> = serde_json::from_slice(body).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "unexpected type or value",
            serde_json::error::Category::Eof => "unexpected end",
        };
        ProxyError::Parse(format!("{kind} at line {} column {}", e.line(), e.column()))
    })?;
    if let Some(d) = envelope.disconnect {
        if !(3000..=4999).contains(&d.code) {
            return Err(ProxyError::Parse(format!(
                "disconnect code {} is not a close code (3000-4999)",
                d.code
            )));
        }
        return Ok(Answer::Disconnect(d));
    }
    if let Some(e) = envelope.error {
        return Ok(Answer::Error(e));
    }
    Ok(Answer::Result(envelope.result))
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "Backend proxy calls by type and result (ok, error, disconnect, timeout, unreachable, status, parse)."
    );
    metrics::describe_histogram!(DURATION, "Seconds per backend proxy call, by type.");
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::RpcResult;

    #[test]
    fn answers_in_centrifugos_order() {
        let a: Answer<RpcResult> = decode(
            br#"{"result":{"data":1},"error":{"code":1},"disconnect":{"code":4000,"reason":"x"}}"#,
        )
        .unwrap();
        assert!(matches!(a, Answer::Disconnect(d) if d.code == 4000));
        let a: Answer<RpcResult> = decode(br#"{"result":{"data":1},"error":{"code":1}}"#).unwrap();
        assert!(matches!(a, Answer::Error(e) if e.code == 1));
        let a: Answer<RpcResult> = decode(br#"{}"#).unwrap();
        assert!(matches!(a, Answer::Result(None)));
    }

    #[test]
    fn bad_answers_are_parse_errors_without_their_values() {
        let secret = br#"{"result":{"data":"s3cret-value"},"error":"s3cret"}"#;
        let e = decode::<RpcResult>(secret).unwrap_err();
        assert!(
            matches!(&e, ProxyError::Parse(t) if !t.contains("s3cret")),
            "{e}"
        );
        let e = decode::<RpcResult>(b"<html>oops</html>").unwrap_err();
        assert_eq!(e.label(), "parse");
        let e = decode::<RpcResult>(br#"{"disconnect":{"code":1000}}"#).unwrap_err();
        assert_eq!(e.label(), "parse");
    }
}
