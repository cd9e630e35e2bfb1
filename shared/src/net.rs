//! Listening and stopping, the same way in every Herald binary: a listener with a
//! backlog sized for connect storms, an accept step that survives running out of file
//! descriptors, and SIGTERM/SIGINT turned into a cancellation.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

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
