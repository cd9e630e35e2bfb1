//! Starting, listening, serving and stopping, the same way in every Herald binary: the
//! runtime, a listener with a backlog sized for connect storms, an accept step that
//! survives running out of file descriptors, one HTTP/1 connection served with bounded
//! request heads and a graceful shutdown, SIGTERM/SIGINT turned into a cancellation,
//! and the exit codes.

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// Exit codes of the binaries (from `sysexits.h`, as linkerd2-proxy uses them).
pub mod exit {
    /// `EX_USAGE`: an unknown argument or a bad setting (the same as
    /// [`crate::config::EXIT_CONFIG`]).
    pub const USAGE: u8 = 64;
    /// `EX_OSERR`: the listen address cannot be bound.
    pub const CANNOT_BIND: u8 = 71;
    /// Anything else that stops a binary from running (the runtime, signal handlers,
    /// a failure while serving).
    pub const FAILURE: u8 = 1;
}

/// Largest request head (request line and headers) read from a client, bytes; a
/// bigger one is answered 431. hyper's default (its ~400 KiB read buffer) lets every
/// slow client pin that much memory; browsers send a few KiB (cookies included).
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// How long a keep-alive HTTP connection may take to finish its request at shutdown.
pub const HTTP_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Content type of `/metrics` (the Prometheus text format).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Listen backlog. tokio's default (1024) overflows in connect storms: the kernel then
/// drops SYNs and clients wait a whole retransmission timeout.
pub const LISTEN_BACKLOG: u32 = 8192;

/// How long to pause after a failed accept (e.g. out of file descriptors) before the
/// next, instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds a listener with [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The next connection (with `TCP_NODELAY` set), or `None` once `stop` fires.
pub async fn accept(
    listener: &TcpListener,
    stop: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return None,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                return Some((stream, remote));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The multi-threaded tokio runtime every binary runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Serves one HTTP/1 connection (upgrades included) on `stream` (TCP, or TLS over TCP)
/// with `service`: request heads up
/// to [`MAX_REQUEST_HEAD`], read within `header_read_timeout`. When `stop` fires, the
/// connection finishes the request in progress (for at most [`HTTP_SHUTDOWN_WAIT`]) and
/// closes. An upgraded connection is the service's to track: hyper's graceful shutdown
/// does not cover it.
pub async fn serve_http1<IO, S, B>(
    stream: IO,
    service: S,
    header_read_timeout: Duration,
    stop: &CancellationToken,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .max_header_size(MAX_REQUEST_HEAD)
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HTTP_SHUTDOWN_WAIT, conn).await;
            Ok(())
        }
    }
}

/// Installs SIGTERM and SIGINT handlers at once and spawns the task that cancels
/// `shutdown` on the first of them (call from within the runtime). Call it before
/// announcing that the process listens: until the handlers are installed a SIGTERM takes
/// its default action and kills the process without a drain.
pub fn cancel_on_signal(shutdown: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.cancel();
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_until_stopped() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = accept(&listener, &stop).await.expect("a connection");
        assert!(stream.nodelay().unwrap());
        stop.cancel();
        assert!(accept(&listener, &stop).await.is_none());
    }
}
