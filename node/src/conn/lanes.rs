//! Lanes: the few tasks that write to connections whose writer task is idle.
//!
//! At everyday rates most publications find a connection's queue empty. Waking that
//! connection's writer task for each one cost a task wake-up per delivery, often on the
//! other worker thread (a `futex` call to unpark it, then its `epoll_wait`): measured on
//! 1,000 subscribers × 50 publications/s, 15× the `epoll_wait` and 100× the `futex`
//! calls of a server that writes from the fan-out. Instead, a producer that finds the
//! writer idle hands the connection to its lane (one per worker thread, chosen by
//! connection id); the lane's task, woken once for a whole fan-out, writes each
//! connection's queue as one frame with a non-blocking `write()`.
//!
//! Coalescing stays: while a lane works through a fan-out, what arrives for a
//! connection it has already served waits in that connection's queue and goes out in
//! one frame on the lane's next pass, so a busy node writes fewer, larger frames.
//!
//! A lane paces itself so that it never takes a whole core: a pass that took `d` is
//! followed by the next one no sooner than [`DUTY`] × `d` after its start (at most
//! [`MAX_SPACING`] later). At everyday rates passes are short and far apart, so this
//! never delays anything; when passes come back to back, what arrives meanwhile is
//! coalesced, and the node writes fewer, larger frames instead of falling behind.
//! Within a pass the lane yields every [`YIELD_EVERY`] connections, so API requests
//! and readers on the same worker thread are not held up by a long fan-out.
//!
//! The writer task still owns everything that can wait: a socket that takes only part
//! of a frame (the rest is handed to the writer, which finishes it under its stall
//! bound), pongs, the close, pings and deadlines.

use super::outbound::{IdleWriter, Outbound};
use parking_lot::Mutex;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A lane spends at most one part in `DUTY` of its time writing before it starts to
/// space its passes out.
const DUTY: u32 = 3;

/// The longest a lane waits between the starts of two passes: bounds the latency the
/// pacing adds.
const MAX_SPACING: Duration = Duration::from_millis(20);

/// Connections written between two yields to the scheduler.
const YIELD_EVERY: usize = 256;

/// Connections with something queued and an idle writer, waiting for a lane's pass.
pub struct Lane {
    /// Connections to serve on the next pass, in the order they were handed over.
    dirty: Mutex<Vec<Arc<Outbound>>>,
    /// Wakes the lane's task; a wake while it works is kept as a permit.
    wake: Notify,
    /// `herald_node_bytes_out_total`.
    bytes_out: metrics::Counter,
}

impl IdleWriter for Lane {
    /// Hands over a connection whose writer is idle; wakes the lane for the first one.
    fn schedule(&self, out: Arc<Outbound>) {
        let mut dirty = self.dirty.lock();
        let first = dirty.is_empty();
        dirty.push(out);
        drop(dirty);
        if first {
            self.wake.notify_one();
        }
    }
}

impl Lane {
    /// The lane's task: one pass per wake-up, until the runtime stops.
    async fn run(self: Arc<Self>) {
        let mut pass: Vec<Arc<Outbound>> = Vec::new();
        // One frame buffer for the lane, reused for every connection.
        let mut buf: Vec<u8> = Vec::new();
        let mut next_pass = Instant::now();
        loop {
            self.wake.notified().await;
            if Instant::now() < next_pass {
                tokio::time::sleep_until(next_pass).await;
            }
            let started = Instant::now();
            std::mem::swap(&mut *self.dirty.lock(), &mut pass);
            let mut sent = 0;
            for (i, out) in pass.drain(..).enumerate() {
                sent += out.write_now(&mut buf);
                if i % YIELD_EVERY == YIELD_EVERY - 1 {
                    tokio::task::yield_now().await;
                }
            }
            if sent > 0 {
                self.bytes_out.increment(sent as u64);
            }
            next_pass = started + (started.elapsed() * DUTY).min(MAX_SPACING);
            // A burst of big frames should not pin memory for the node's life.
            if buf.capacity() > 1 << 20 {
                buf = Vec::new();
            }
            if pass.capacity() > 1 << 16 {
                pass = Vec::new();
            }
        }
    }
}

/// The node's lanes, started at the first connection that uses one.
pub struct Lanes {
    lanes: OnceLock<Box<[Arc<Lane>]>>,
    bytes_out: metrics::Counter,
}

impl Lanes {
    /// Lanes that count written bytes in `bytes_out`; no task runs until
    /// [`Lanes::lane`] is first called.
    pub fn new(bytes_out: metrics::Counter) -> Self {
        Lanes {
            lanes: OnceLock::new(),
            bytes_out,
        }
    }

    /// The lane of connection `conn_id`. The first call starts one lane task per worker
    /// thread of the current runtime.
    pub fn lane(&self, conn_id: u64) -> Arc<Lane> {
        let lanes = self.lanes.get_or_init(|| {
            let n = tokio::runtime::Handle::current()
                .metrics()
                .num_workers()
                .max(1);
            (0..n)
                .map(|_| {
                    let lane = Arc::new(Lane {
                        dirty: Mutex::new(Vec::new()),
                        wake: Notify::new(),
                        bytes_out: self.bytes_out.clone(),
                    });
                    tokio::spawn(lane.clone().run());
                    lane
                })
                .collect()
        });
        lanes[(conn_id % lanes.len() as u64) as usize].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::socket::SharedWrite;
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: the server's end (shared, as a session holds it) and the client.
    async fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Arc::new(server), client)
    }

    fn lanes() -> Lanes {
        Lanes::new(metrics::Counter::noop())
    }

    /// The writer has taken its first batch and parked: from now on the lane writes.
    fn parked(out: &Outbound) {
        let _ = out.take();
        assert!(out.park());
    }

    #[tokio::test]
    async fn an_idle_writers_messages_go_out_through_the_lane_coalesced() {
        let (server, mut client) = pair().await;
        let lanes = lanes();
        let out = Arc::new(Outbound::new(1 << 20));
        out.attach(lanes.lane(7), server);
        parked(&out);
        out.push(Bytes::from_static(b"a"));
        out.push(Bytes::from_static(b"bc"));
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(
            &got, b"\x81\x04a\nbc",
            "one text frame, messages joined by \\n"
        );
        // The writer was never needed: nothing is left for it.
        let batch = out.take();
        assert!(batch.items.is_empty() && batch.partial.is_none());
    }

    #[tokio::test]
    async fn a_full_socket_hands_the_rest_of_the_frame_to_the_writer() {
        let (server, mut client) = pair().await;
        let lanes = lanes();
        let out = Arc::new(Outbound::new(64 << 20));
        out.attach(lanes.lane(1), server.clone());
        parked(&out);
        // The client reads nothing: push until the lane could not finish a frame.
        let size = 100 * 1024;
        let mut sent = 0u8;
        while !out.has_partial() {
            assert!(sent < 250, "the socket never filled");
            out.push(Bytes::from(vec![b'0' + sent % 64; size]));
            sent += 1;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        // The writer's turn: the rest of that frame, then whatever was queued after it.
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        let batch = out.take();
        let mut wr = SharedWrite(server.clone());
        wr.write_all(&batch.partial.unwrap()).await.unwrap();
        let mut items = batch.items;
        let mut buf = Vec::new();
        while !items.is_empty() {
            let start = crate::conn::wire::coalesce(
                &mut items,
                &mut buf,
                herald_shared::protocol::Encoding::Json,
            );
            wr.write_all(&buf[start..]).await.unwrap();
        }
        out.detach();
        drop(wr);
        drop(server);
        let all = reader.await.unwrap();
        // Every frame whole, in order: 0x81 127 <len:8> then `size` bytes of its fill.
        let mut at = 0;
        let mut n = 0u8;
        while at < all.len() {
            assert_eq!(all[at], 0x81, "frame {n} starts a frame");
            let len = u64::from_be_bytes(all[at + 2..at + 10].try_into().unwrap()) as usize;
            let payload = &all[at + 10..at + 10 + len];
            for (k, chunk) in payload.split(|b| *b == b'\n').enumerate() {
                assert_eq!(chunk.len(), size);
                assert!(chunk.iter().all(|b| *b == b'0' + (n + k as u8) % 64));
            }
            n += payload.split(|b| *b == b'\n').count() as u8;
            at += 10 + len;
        }
        assert_eq!(n, sent, "every message arrived once, in order");
    }

    #[tokio::test]
    async fn what_comes_after_a_partial_frame_waits_for_the_writer() {
        let (server, mut client) = pair().await;
        let lanes = lanes();
        let out = Arc::new(Outbound::new(64 << 20));
        out.attach(lanes.lane(3), server.clone());
        parked(&out);
        let size = 100 * 1024;
        let mut sent = 0usize;
        while !out.has_partial() {
            assert!(sent < 250, "the socket never filled");
            out.push(Bytes::from(vec![b'a'; size]));
            sent += 1;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        // The client catches up, so the socket is writable again before the writer
        // has run: a message queued now must not overtake the rest of the frame.
        let mut head = vec![0u8; 64 * 1024];
        let mut got = Vec::new();
        while let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), client.read(&mut head)).await
        {
            got.extend_from_slice(&head[..n]);
        }
        out.push(Bytes::from_static(b"late"));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let batch = out.take();
        assert!(batch.partial.is_some(), "the writer finishes the frame");
        assert_eq!(
            batch.items,
            [Bytes::from_static(b"late")],
            "the late message waited for the writer"
        );
        // Nothing reached the socket meanwhile.
        let r = tokio::time::timeout(std::time::Duration::from_millis(30), client.read(&mut head));
        assert!(r.await.is_err(), "no byte after the client caught up");
        assert!(!got.is_empty());
    }
}
