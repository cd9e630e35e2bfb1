//! The JWKS fetcher (`HERALD_TOKEN_JWKS_URL`): keeps the verifier's key set fresh from
//! the endpoint, as Centrifugo's `token_jwks_public_endpoint` does.
//!
//! The node starts whatever the endpoint's state (Centrifugo does not fetch before it
//! serves either): the first fetch runs in the background, then every
//! `HERALD_TOKEN_JWKS_REFRESH_INTERVAL`, sooner with a doubling back-off after a failure.
//! A token naming a `kid` the set lacks makes the session call [`Jwks::refetch_on_miss`]
//! and verify once more, so a key published after the last fetch works at once. Such
//! refetches start at most once per `HERALD_TOKEN_JWKS_MIN_REFETCH_INTERVAL`, and
//! concurrent ones wait for the fetch in flight: tokens with random `kid`s cannot make
//! the node hammer the endpoint. A fetch that fails (unreachable, not 200, timeout, a
//! document that does not parse) keeps the previous set; tokens it cannot verify are
//! refused as any invalid token (connect: close 3500).
//!
//! Beside the proxy, below the session: it knows only its options and the key cell.

use crate::config::JwksOptions;
use bytes::Bytes;
use herald_shared::auth::{AuthError, KeySet, KeySetCell};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Largest JWKS document read, bytes.
const MAX_DOCUMENT: usize = 1 << 20;

/// Why a fetch did not give a key set. The texts hold no document content.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// No connection, TLS failure, or the body broke off.
    #[error("JWKS endpoint unreachable: {0}")]
    Unreachable(String),
    /// An answer other than 200.
    #[error("JWKS endpoint answered HTTP {0}")]
    Status(u16),
    /// No whole answer within `HERALD_TOKEN_JWKS_TIMEOUT`.
    #[error("JWKS endpoint did not answer within {0:?}")]
    Timeout(Duration),
    /// The document is too large or not a JWKS.
    #[error("JWKS does not parse: {0}")]
    Parse(String),
}

impl JwksError {
    /// The metrics `result` label.
    fn label(&self) -> &'static str {
        match self {
            JwksError::Unreachable(_) => "unreachable",
            JwksError::Status(_) => "status",
            JwksError::Timeout(_) => "timeout",
            JwksError::Parse(_) => "parse",
        }
    }
}

/// One node's JWKS fetcher.
pub struct Jwks {
    /// Endpoint and intervals.
    options: JwksOptions,
    /// The set the verifier reads.
    keys: Arc<KeySetCell>,
    /// Pooled HTTP/1 client, HTTPS with the system's roots.
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// When the last fetch started; held during a fetch so concurrent callers wait for
    /// it instead of starting their own.
    last: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    /// A fetcher filling `keys`; nothing is fetched until [`Jwks::start`].
    pub fn new(options: JwksOptions, keys: Arc<KeySetCell>) -> Arc<Self> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_native_roots() {
            Ok(b) => b,
            Err(e) => {
                // Plain http:// endpoints still work; https:// ones fail their fetches
                // with a certificate error in the log.
                tracing::warn!(error = %e, "no system root certificates for the JWKS endpoint");
                let roots = tokio_rustls::rustls::RootCertStore::empty();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                    tokio_rustls::rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Arc::new(Jwks {
            options,
            keys,
            client,
            last: tokio::sync::Mutex::new(None),
        })
    }

    /// Fetches now and then periodically until `stop`.
    pub fn start(self: &Arc<Self>, stop: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut backoff = this.options.min_refetch_interval;
            loop {
                let wait = match this.fetch_now().await {
                    Ok(()) => {
                        backoff = this.options.min_refetch_interval;
                        this.options.refresh_interval
                    }
                    Err(_) => {
                        let wait = backoff.min(this.options.refresh_interval);
                        backoff = backoff.saturating_mul(2);
                        wait
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    /// After a token named an unknown `kid`: fetches unless a fetch started less than
    /// `HERALD_TOKEN_JWKS_MIN_REFETCH_INTERVAL` ago, waiting for one in flight. The
    /// caller verifies again either way (the set may have changed meanwhile).
    pub async fn refetch_on_miss(&self) {
        let mut last = self.last.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.options.min_refetch_interval) {
            return;
        }
        let _ = self.fetch_locked(&mut last).await;
    }

    /// One fetch, whatever the rate limit (the periodic refresh).
    async fn fetch_now(&self) -> Result<(), JwksError> {
        let mut last = self.last.lock().await;
        self.fetch_locked(&mut last).await
    }

    async fn fetch_locked(&self, last: &mut Option<Instant>) -> Result<(), JwksError> {
        *last = Some(Instant::now());
        let result = match tokio::time::timeout(self.options.timeout, self.get()).await {
            Ok(r) => r,
            Err(_) => Err(JwksError::Timeout(self.options.timeout)),
        };
        let label = match &result {
            Ok(set) => {
                tracing::info!(
                    keys = ?set.kids(),
                    skipped = set.skipped(),
                    "JWKS fetched"
                );
                "ok"
            }
            Err(e) => {
                tracing::warn!(url = %self.options.url, error = %e, "JWKS fetch failed; keeping the previous keys");
                e.label()
            }
        };
        metrics::counter!(crate::metrics::JWKS_FETCHES, "result" => label).increment(1);
        result.map(|set| self.keys.store(set))
    }

    async fn get(&self) -> Result<KeySet, JwksError> {
        let request = Request::get(self.options.url.clone())
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| JwksError::Unreachable(e.to_string()))?;
        let answer = self
            .client
            .request(request)
            .await
            .map_err(|e| JwksError::Unreachable(e.to_string()))?;
        if answer.status() != StatusCode::OK {
            return Err(JwksError::Status(answer.status().as_u16()));
        }
        let body = Limited::new(answer.into_body(), MAX_DOCUMENT)
            .collect()
            .await
            .map_err(|e| JwksError::Parse(format!("body: {e}")))?
            .to_bytes();
        KeySet::parse(&body).map_err(|e| match e {
            AuthError::Key(reason) => JwksError::Parse(reason),
            other => JwksError::Parse(other.to_string()),
        })
    }
}

/// Runs `verify`; when it names a `kid` the JWKS lacks, refetches (rate-limited) and
/// runs it once more.
pub async fn verify<T>(
    jwks: Option<&Jwks>,
    verify: impl Fn() -> Result<T, AuthError>,
) -> Result<T, AuthError> {
    match (verify(), jwks) {
        (Err(AuthError::UnknownKey), Some(jwks)) => {
            jwks.refetch_on_miss().await;
            verify()
        }
        (result, _) => result,
    }
}
