//! Connections to nodes: one TCP connection and one HTTP/1.1 exchange each.
//!
//! Why no pool: nearly all traffic is WebSocket upgrades, and an upgraded connection is
//! never reused; probes run every few seconds per node; the server API is low volume.
//! A fresh connection also means a dead node shows up as a refused connect, which is
//! exactly the passive health signal we want.

use crate::error::ProxyError;
use hyper::body::Body as HttpBody;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Connects to `addr` (`host:port`) and completes the HTTP/1.1 client handshake. The
/// connection task is spawned with upgrades enabled; it ends when the sender is dropped,
/// the exchange ends, or the connection is handed over to a tunnel.
pub async fn connect<B>(addr: &str) -> Result<SendRequest<B>, ProxyError>
where
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ProxyError::connect(addr, source))?;
    // Small frames both ways (pings, short messages): do not wait to coalesce them.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ProxyError::Exchange {
            node: addr.to_owned(),
            source,
        })?;
    let node = addr.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(node = %node, error = %e, "node connection ended");
        }
    });
    Ok(sender)
}
