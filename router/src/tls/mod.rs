//! TLS on the client side of the router (rustls with the ring provider).
//!
//! With `HERALD_ROUTER_TLS_CERT` and `HERALD_ROUTER_TLS_KEY` set, every accepted
//! connection is a TLS server connection: TLS 1.2 and 1.3 with rustls's default cipher
//! suites and key exchange groups, ALPN `http/1.1` (the only protocol served: a client
//! offering only `h2` is refused in the handshake), no client certificates. The handshake
//! must finish within `HERALD_ROUTER_HANDSHAKE_TIMEOUT`; the HTTP request head then gets
//! the same time again.
//!
//! The certificate is served through a resolver holding the current `CertifiedKey`, so a
//! reload swaps it for new handshakes only: established connections and their tunnels
//! keep the session they negotiated. [`Terminator::reload`] (on SIGHUP, see
//! [`reload_on_sighup`]) reads both files again and keeps the old certificate when the new
//! one is unusable, saying why.
//!
//! - [`certs`]: reading and checking the files; [`validity`]: the certificate's dates;
//!   [`error`]: what is wrong with them; [`probe`]: `herald-router healthcheck` over TLS.

pub mod certs;
pub mod error;
pub mod probe;
pub mod validity;

pub use error::TlsError;

use crate::config::TlsConfig;
use crate::metrics;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The only application protocol offered in ALPN: WebSocket upgrades are HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The router's TLS side: the acceptor and the certificate it serves, reloadable.
pub struct Terminator {
    /// Where the certificate chain is read from.
    cert: PathBuf,
    /// Where the key is read from.
    key: PathBuf,
    /// The certificate new handshakes get.
    current: Arc<Current>,
    /// The ring provider, also used to load keys.
    provider: Arc<CryptoProvider>,
    /// Accepts TLS connections with `current`.
    acceptor: TlsAcceptor,
}

/// Hands rustls the certificate of the moment.
#[derive(Debug)]
struct Current(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// Why a client's TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Not TLS, a protocol error, no common version or ALPN, or the peer went away.
    #[error("TLS handshake failed: {0}")]
    Failed(#[source] std::io::Error),
    /// The handshake took longer than the handshake timeout.
    #[error("TLS handshake not finished within {0:?}")]
    Timeout(Duration),
}

impl Terminator {
    /// Loads the files named by `config`; an unusable certificate or key is an error
    /// naming the file and the reason (the binary exits 64 on it).
    pub fn load(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(ring::default_provider());
        let loaded = certs::load(&config.cert, &config.key, &provider)?;
        let current = Arc::new(Current(ArcSwap::new(loaded.key)));
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        metrics::tls_certificate(loaded.validity.not_after);
        tracing::info!(
            cert = %config.cert.display(),
            not_after = %validity::format(loaded.validity.not_after),
            "TLS certificate loaded"
        );
        Ok(Arc::new(Terminator {
            cert: config.cert.clone(),
            key: config.key.clone(),
            current,
            provider,
            acceptor: TlsAcceptor::from(Arc::new(server)),
        }))
    }

    /// Reads both files again. A usable pair replaces the served certificate for new
    /// handshakes; otherwise the old one stays and the error says why. Counted in
    /// `herald_router_tls_reloads_total{result}` and logged either way.
    pub fn reload(&self) -> Result<(), TlsError> {
        match certs::load(&self.cert, &self.key, &self.provider) {
            Ok(loaded) => {
                self.current.0.store(loaded.key);
                metrics::tls_reload("ok");
                metrics::tls_certificate(loaded.validity.not_after);
                tracing::info!(
                    cert = %self.cert.display(),
                    not_after = %validity::format(loaded.validity.not_after),
                    "TLS certificate reloaded"
                );
                Ok(())
            }
            Err(e) => {
                metrics::tls_reload("failed");
                tracing::error!(error = %e, "TLS certificate not reloaded; still serving the previous one");
                Err(e)
            }
        }
    }

    /// The certificate chain new handshakes get (its first entry is the router's own).
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.0.load_full()
    }

    /// Runs the server handshake on `stream`, within `timeout`. Counted in
    /// `herald_router_tls_handshakes_total{result}`.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, HandshakeError> {
        match tokio::time::timeout(timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                metrics::tls_handshake("ok");
                Ok(tls)
            }
            Ok(Err(e)) => {
                metrics::tls_handshake("failed");
                Err(HandshakeError::Failed(e))
            }
            Err(_) => {
                metrics::tls_handshake("timeout");
                Err(HandshakeError::Timeout(timeout))
            }
        }
    }
}

/// Installs the SIGHUP handler at once and spawns the task that reloads `tls` on every
/// SIGHUP (call from within the runtime, before announcing that the process listens:
/// until then a SIGHUP would kill it). Without TLS a SIGHUP is logged and ignored.
pub fn reload_on_sighup(tls: Option<Arc<Terminator>>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match &tls {
                Some(t) => {
                    tracing::info!("SIGHUP received; reloading the TLS certificate");
                    // reload() logs and counts the outcome.
                    let _ = t.reload();
                }
                None => tracing::info!("SIGHUP received; no TLS certificate to reload"),
            }
        }
    });
    Ok(())
}
