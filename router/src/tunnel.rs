//! A tunnel: the bytes of one upgraded connection copied both ways between client and
//! node until either side closes, the tunnel idles too long, or shutdown closes it.
//!
//! A side that closes its socket is passed on as a half-close, and the tunnel ends when
//! both directions are done: WebSocket peers close their sockets after the close
//! handshake, and a peer that never does is ended by the idle timeout.
//!
//! Each side is wrapped in [`Metered`], which counts the bytes read from it and stamps
//! the time of the last read, so byte counters are live (not only at the end) and the
//! idle check costs one atomic store per read.

use crate::metrics;
use crate::ring::RingNode;
use ::metrics::Counter;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Both sides closed (or one did and the other followed).
    Closed,
    /// One side failed (reset, broken pipe): a normal way for a peer to leave.
    Error,
    /// No bytes either way for the idle timeout.
    Idle,
    /// Shutdown's grace ran out.
    Shutdown,
}

impl End {
    /// The name logged (`closed`, `error`, `idle`, `shutdown`).
    pub fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Error => "error",
            End::Idle => "idle",
            End::Shutdown => "shutdown",
        }
    }
}

/// An IO that counts the bytes read from it and when the last read happened.
pub struct Metered<T> {
    /// The wrapped IO.
    inner: T,
    /// Bytes read from this side, which are bytes going to the other side.
    bytes: Counter,
    /// Milliseconds since `start` of the last read, shared by both sides.
    last: Arc<AtomicU64>,
    /// When the tunnel started.
    start: Instant,
}

impl<T> Metered<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, bytes: Counter, last: Arc<AtomicU64>, start: Instant) -> Self {
        Metered {
            inner,
            bytes,
            last,
            start,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.bytes.increment(n as u64);
            let ms = self.start.elapsed().as_millis() as u64;
            self.last.store(ms, Ordering::Relaxed);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Copies between `client` and `node` until the tunnel ends; `idle` zero means no idle
/// limit. Keeps the node's tunnel gauge and the duration histogram.
pub async fn run<C, N>(
    client: C,
    node: N,
    ring_node: &RingNode,
    idle: Duration,
    close: CancellationToken,
) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    N: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let up = ::metrics::counter!(metrics::TUNNEL_BYTES, "direction" => "client_to_node");
    let down = ::metrics::counter!(metrics::TUNNEL_BYTES, "direction" => "node_to_client");
    let mut client = Metered::new(client, up, last.clone(), start);
    let mut node = Metered::new(node, down, last.clone(), start);
    let gauge = ::metrics::gauge!(metrics::TUNNELS, "node" => ring_node.addr.to_string());
    gauge.increment(1.0);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut node);
    tokio::pin!(copy);
    let end = loop {
        let deadline = if idle.is_zero() {
            None
        } else {
            Some(start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle)
        };
        let idle_wait = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut copy => break match r {
                Ok(_) => End::Closed,
                Err(e) => {
                    tracing::debug!(node = %ring_node.addr, error = %e, "tunnel side failed");
                    End::Error
                }
            },
            _ = close.cancelled() => break End::Shutdown,
            // Woken at the deadline of the last read seen; reads since push it back.
            _ = idle_wait => {
                let since = start + Duration::from_millis(last.load(Ordering::Relaxed));
                if since.elapsed() >= idle {
                    break End::Idle;
                }
            }
        }
    };
    gauge.decrement(1.0);
    metrics::tunnel_closed(start.elapsed());
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_until_a_side_closes() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (node, mut node_far) = tokio::io::duplex(64);
        let rn = RingNode::new("t:1");
        let task = tokio::spawn(async move {
            run(client, node, &rn, Duration::ZERO, CancellationToken::new()).await
        });
        client_far.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        node_far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        node_far.write_all(b"pong").await.unwrap();
        client_far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        drop(client_far);
        drop(node_far);
        assert_eq!(task.await.unwrap(), End::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_tunnel_is_closed_and_traffic_keeps_it_open() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (node, mut node_far) = tokio::io::duplex(64);
        let rn = RingNode::new("t:1");
        let idle = Duration::from_secs(10);
        let task =
            tokio::spawn(
                async move { run(client, node, &rn, idle, CancellationToken::new()).await },
            );
        let mut buf = [0u8; 1];
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client_far.write_all(b"x").await.unwrap();
            node_far.read_exact(&mut buf).await.unwrap();
        }
        assert!(
            !task.is_finished(),
            "traffic every 6 s keeps a 10 s idle limit away"
        );
        assert_eq!(task.await.unwrap(), End::Idle);
    }

    #[tokio::test]
    async fn shutdown_closes_the_tunnel() {
        let (client, _client_far) = tokio::io::duplex(64);
        let (node, _node_far) = tokio::io::duplex(64);
        let close = CancellationToken::new();
        let rn = RingNode::new("t:1");
        let c = close.clone();
        let task = tokio::spawn(async move { run(client, node, &rn, Duration::ZERO, c).await });
        close.cancel();
        assert_eq!(task.await.unwrap(), End::Shutdown);
    }
}
