//! The connection's TCP stream, shared: the reader reads it, the writer task and the
//! lane write it, all through `&TcpStream` (tokio's readiness API), so none of them
//! needs the others' half.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

/// The writer task's handle on a shared stream.
///
/// Only the writer polls write readiness (tokio wakes only the last task that polled
/// it); the lane uses `try_write` alone, and only while the writer is parked.
pub struct SharedWrite(pub Arc<TcpStream>);

impl AsyncWrite for SharedWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here: every write went to the socket.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The stream is shared; it closes when its last holder lets go.
        Poll::Ready(Ok(()))
    }
}
