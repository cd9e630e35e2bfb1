//! The outbound queue of one connection.
//!
//! Everything a connection must send (replies, pushes, pings, the final disconnect)
//! goes through here. Producers (the session's reader, the hub's fan-out, the server
//! API) append already-encoded JSON objects; the connection's writer task takes the
//! whole queue at once and writes it as one frame, objects joined by `\n`, so a burst
//! of publications costs one `write()` instead of one each.
//!
//! The queue is bounded in bytes. A producer that would push it past the bound marks
//! the connection for closing with the protocol's "slow" code instead of growing
//! memory: a client that stops reading cannot make the node hold more than
//! `queue_max_bytes` for it.

use bytes::Bytes;
use herald_shared::protocol::DisconnectCode;
use parking_lot::{Mutex, MutexGuard};
use std::borrow::Cow;
use std::collections::VecDeque;
use tokio::sync::Notify;

/// Why and how a connection is being closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code (a protocol disconnect code, or an RFC 6455 code like 1009).
    pub code: u16,
    /// Close reason text (a custom one comes from the server API).
    pub reason: Cow<'static, str>,
    /// Whether to send a `disconnect` push before the close frame (protocol codes only).
    pub push: bool,
}

impl From<DisconnectCode> for CloseReason {
    fn from(code: DisconnectCode) -> Self {
        CloseReason {
            code: code.code(),
            reason: Cow::Borrowed(code.reason()),
            push: true,
        }
    }
}

/// What the writer takes from the queue in one go.
pub struct Batch {
    /// Encoded messages, in order.
    pub items: VecDeque<Bytes>,
    /// WebSocket pong payloads owed to the client (answers to its pings).
    pub pongs: Vec<Bytes>,
    /// Set once: close the connection after writing `items`.
    pub close: Option<CloseReason>,
}

#[derive(Default)]
struct State {
    /// Messages waiting for the writer.
    items: VecDeque<Bytes>,
    /// Bytes in `items`.
    bytes: usize,
    /// Pongs owed (kept apart so a full queue never blocks protocol obligations).
    pongs: Vec<Bytes>,
    /// The close decision, first one wins.
    close: Option<CloseReason>,
    /// Set when the writer has taken the close: nothing more is accepted.
    closed: bool,
    /// The code of the close decision, kept after the writer took it: a writer stuck on
    /// a client that does not read never reports the code it meant to send.
    code: Option<u16>,
}

/// A connection's outbound queue; shared by the session, the hub and the API.
pub struct Outbound {
    state: Mutex<State>,
    /// Wakes the writer; a notification sent while it is busy is kept as a permit.
    wake: Notify,
    /// Wakes the reader once a close is decided (the reader then stops reading).
    closing: Notify,
    /// Byte bound of `items` (`HERALD_QUEUE_MAX_BYTES`).
    max_bytes: usize,
}

/// Result of [`Outbound::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// The queue was full: the connection is now closing as slow.
    Slow,
    /// The connection is already closing; the message was dropped.
    Closing,
}

impl Outbound {
    /// An empty queue bounded at `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Outbound {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            closing: Notify::new(),
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Appends one encoded message.
    pub fn push(&self, message: Bytes) -> Pushed {
        let mut st = self.lock();
        if st.close.is_some() || st.closed {
            return Pushed::Closing;
        }
        if st.bytes + message.len() > self.max_bytes {
            st.close = Some(DisconnectCode::Slow.into());
            st.code = Some(DisconnectCode::Slow.code());
            drop(st);
            self.closing_decided();
            return Pushed::Slow;
        }
        st.bytes += message.len();
        let was_empty = st.items.is_empty();
        st.items.push_back(message);
        drop(st);
        if was_empty {
            self.wake.notify_one();
        }
        Pushed::Queued
    }

    /// Appends several messages atomically (nothing else interleaves). Used to flush a
    /// subscription's buffered publications right after its subscribe reply.
    pub fn push_all(&self, messages: impl IntoIterator<Item = Bytes>) -> Pushed {
        let mut st = self.lock();
        if st.close.is_some() || st.closed {
            return Pushed::Closing;
        }
        for m in messages {
            if st.bytes + m.len() > self.max_bytes {
                st.close = Some(DisconnectCode::Slow.into());
                st.code = Some(DisconnectCode::Slow.code());
                drop(st);
                self.closing_decided();
                return Pushed::Slow;
            }
            st.bytes += m.len();
            st.items.push_back(m);
        }
        drop(st);
        self.wake.notify_one();
        Pushed::Queued
    }

    /// Owes the client a pong.
    pub fn push_pong(&self, payload: Bytes) {
        let mut st = self.lock();
        if st.closed || st.pongs.len() >= 8 {
            return; // a ping flood gets a bounded number of answers
        }
        st.pongs.push(payload);
        drop(st);
        self.wake.notify_one();
    }

    /// Asks the writer to close the connection after what is already queued.
    /// The first reason given wins; returns whether this call set it.
    pub fn close(&self, reason: impl Into<CloseReason>) -> bool {
        let mut st = self.lock();
        if st.close.is_some() || st.closed {
            return false;
        }
        let reason = reason.into();
        st.code = Some(reason.code);
        st.close = Some(reason);
        drop(st);
        self.closing_decided();
        true
    }

    /// The code of the close decision, if one was made.
    pub fn close_code(&self) -> Option<u16> {
        self.lock().code
    }

    fn closing_decided(&self) {
        self.wake.notify_one();
        self.closing.notify_one();
    }

    /// Resolves once a close has been decided.
    pub async fn closed(&self) {
        while !self.is_closing() {
            self.closing.notified().await;
        }
    }

    /// True once a close has been decided.
    pub fn is_closing(&self) -> bool {
        let st = self.lock();
        st.close.is_some() || st.closed
    }

    /// Takes everything queued. When the batch carries a close, the queue stops
    /// accepting messages.
    pub fn take(&self) -> Batch {
        let mut st = self.lock();
        let items = std::mem::take(&mut st.items);
        st.bytes = 0;
        let pongs = std::mem::take(&mut st.pongs);
        let close = st.close.take();
        if close.is_some() {
            st.closed = true;
        }
        Batch {
            items,
            pongs,
            close,
        }
    }

    /// Waits until something may be queued.
    pub async fn wait(&self) {
        self.wake.notified().await
    }

    /// Bytes queued right now.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_bytes_and_closes_slow() {
        let q = Outbound::new(10);
        assert_eq!(q.push(Bytes::from_static(b"12345")), Pushed::Queued);
        assert_eq!(q.push(Bytes::from_static(b"12345")), Pushed::Queued);
        assert_eq!(q.push(Bytes::from_static(b"1")), Pushed::Slow);
        assert_eq!(q.push(Bytes::from_static(b"1")), Pushed::Closing);
        let b = q.take();
        assert_eq!(b.items.len(), 2);
        assert_eq!(b.close.map(|c| c.code), Some(3008));
        assert!(q.is_closing());
        assert_eq!(q.queued_bytes(), 0);
        assert_eq!(q.close_code(), Some(3008), "kept after the writer took it");
    }

    #[test]
    fn first_close_wins() {
        let q = Outbound::new(100);
        assert!(q.close(DisconnectCode::Shutdown));
        assert!(!q.close(DisconnectCode::Slow));
        assert_eq!(q.take().close.map(|c| c.code), Some(3001));
    }

    #[tokio::test]
    async fn push_wakes_the_writer() {
        let q = std::sync::Arc::new(Outbound::new(100));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move {
            q2.wait().await;
            q2.take().items.len()
        });
        q.push(Bytes::from_static(b"x"));
        assert_eq!(waiter.await.unwrap(), 1);
    }
}
