//! The outbound queue of one connection.
//!
//! Everything a connection must send (replies, pushes, pings, the final disconnect)
//! goes through here. Producers (the session's reader, the hub's fan-out, the server
//! API) append messages already encoded in the connection's encoding (see
//! [`Outbound::encoding`]); the connection's writer task takes the whole queue at once
//! and writes it as one frame (see [`super::wire::coalesce`]), so a burst of
//! publications costs one `write()` instead of one each.
//!
//! With a socket attached ([`Outbound::attach`]), a producer that finds the writer
//! idle hands the connection to its lane instead of waking the writer; the lane writes
//! the queue straight to the socket (see [`super::lanes`]). The writer is "busy" from
//! the moment it takes a batch until it parks again with nothing left to do, and only
//! one of the two ever writes: the lane writes under this queue's lock, and only while
//! the writer is parked.
//!
//! The queue is bounded in bytes. A producer that would push it past the bound marks
//! the connection for closing with the protocol's "slow" code instead of growing
//! memory: a client that stops reading cannot make the node hold more than
//! `queue_max_bytes` for it.

use super::wire::{coalesce, MAX_COALESCED_FRAME, MAX_SERVER_HEAD};
use bytes::Bytes;
use herald_shared::protocol::{DisconnectCode, Encoding};
use parking_lot::{Mutex, MutexGuard};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
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
    /// The rest of a frame the lane could only partly write: goes out first, as is.
    pub partial: Option<Bytes>,
    /// Encoded messages, in order.
    pub items: VecDeque<Bytes>,
    /// WebSocket pong payloads owed to the client (answers to its pings).
    pub pongs: Vec<Bytes>,
    /// Set once: close the connection after writing `items`.
    pub close: Option<CloseReason>,
    /// When the broker received the oldest sampled publication in `items`
    /// (`metrics::now_nanos`; 0: none): the writer records the delivery lag once it has
    /// written them.
    pub probe: u64,
}

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
    /// The reason text of that decision, for the log line of the close.
    reason: Cow<'static, str>,
    /// The writer took a batch and has not parked since: producers wake it, not a lane.
    writer_busy: bool,
    /// Handed to the lane and not served yet.
    scheduled: bool,
    /// The unwritten end of a frame the lane started: the writer must finish it first.
    partial: Option<Bytes>,
    /// The socket the lane writes to; `None` before [`Outbound::attach`] and after
    /// [`Outbound::detach`] (then only the writer writes, through its own handle).
    socket: Option<Arc<TcpStream>>,
    /// Receive time of the oldest sampled publication queued (see [`Batch::probe`]).
    probe: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            items: VecDeque::new(),
            bytes: 0,
            pongs: Vec::new(),
            close: None,
            closed: false,
            code: None,
            reason: Cow::Borrowed(""),
            // Busy until the writer first parks: what comes before goes through it.
            writer_busy: true,
            scheduled: false,
            partial: None,
            socket: None,
            probe: 0,
        }
    }
}

/// Writes for a connection whose writer is idle: the lanes ([`super::lanes`]), which
/// sit above this queue and call [`Outbound::write_now`].
pub trait IdleWriter: Send + Sync {
    /// `out` has something queued and its writer is parked.
    fn schedule(&self, out: Arc<Outbound>);
}

/// Who a producer must wake after queueing.
enum Wake {
    None,
    Writer,
    Lane,
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
    /// The lane that writes for an idle writer; set by [`Outbound::attach`].
    lane: OnceLock<Arc<dyn IdleWriter>>,
    /// What the queued messages are encoded in, and so how frames join them.
    encoding: Encoding,
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
    /// An empty queue of JSON messages bounded at `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self::with_encoding(max_bytes, Encoding::Json)
    }

    /// An empty queue of `encoding` messages bounded at `max_bytes`.
    pub fn with_encoding(max_bytes: usize, encoding: Encoding) -> Self {
        Outbound {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            closing: Notify::new(),
            max_bytes,
            lane: OnceLock::new(),
            encoding,
        }
    }

    /// The encoding every message queued here must be in.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Lets `lane` write queued messages straight to `socket` while the writer is idle.
    pub fn attach(&self, lane: Arc<dyn IdleWriter>, socket: Arc<TcpStream>) {
        if self.lane.set(lane).is_ok() {
            self.lock().socket = Some(socket);
        }
    }

    /// Lets go of the socket (the connection is over): only the writer's own handle,
    /// if any, keeps it open.
    pub fn detach(&self) {
        self.lock().socket = None;
    }

    /// Whom to wake for a message just queued (`was_empty`: the queue had none).
    fn wake_for(st: &mut State, was_empty: bool) -> Wake {
        if st.writer_busy || st.socket.is_none() {
            return if was_empty { Wake::Writer } else { Wake::None };
        }
        if st.scheduled {
            return Wake::None;
        }
        st.scheduled = true;
        Wake::Lane
    }

    fn wake(self: &Arc<Self>, wake: Wake) {
        match wake {
            Wake::None => {}
            Wake::Writer => self.wake.notify_one(),
            Wake::Lane => match self.lane.get() {
                Some(lane) => lane.schedule(self.clone()),
                None => self.wake.notify_one(),
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Appends one encoded message.
    pub fn push(self: &Arc<Self>, message: Bytes) -> Pushed {
        self.push_all(std::iter::once(message))
    }

    /// Appends one encoded message that carries a delivery-lag sample: `received` is
    /// when the broker got it (`metrics::now_nanos`; 0: no sample). The queue keeps the
    /// oldest sample until the write that carries it.
    pub fn push_probed(self: &Arc<Self>, message: Bytes, received: u64) -> Pushed {
        self.push_inner(std::iter::once(message), received)
    }

    /// Appends several messages atomically (nothing else interleaves). Used to flush a
    /// subscription's buffered publications right after its subscribe reply.
    pub fn push_all(self: &Arc<Self>, messages: impl IntoIterator<Item = Bytes>) -> Pushed {
        self.push_inner(messages, 0)
    }

    fn push_inner(
        self: &Arc<Self>,
        messages: impl IntoIterator<Item = Bytes>,
        probe: u64,
    ) -> Pushed {
        let mut st = self.lock();
        if st.close.is_some() || st.closed {
            return Pushed::Closing;
        }
        let was_empty = st.items.is_empty();
        for m in messages {
            if st.bytes + m.len() > self.max_bytes {
                st.close = Some(DisconnectCode::Slow.into());
                st.code = Some(DisconnectCode::Slow.code());
                st.reason = Cow::Borrowed(DisconnectCode::Slow.reason());
                drop(st);
                self.closing_decided();
                return Pushed::Slow;
            }
            st.bytes += m.len();
            st.items.push_back(m);
        }
        if st.probe == 0 {
            st.probe = probe;
        }
        let wake = Self::wake_for(&mut st, was_empty);
        drop(st);
        self.wake(wake);
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
        st.reason = reason.reason.clone();
        st.close = Some(reason);
        drop(st);
        self.closing_decided();
        true
    }

    /// The code of the close decision, if one was made.
    pub fn close_code(&self) -> Option<u16> {
        self.lock().code
    }

    /// The reason text of the close decision ("" when none was made or it had none).
    pub fn close_reason(&self) -> Cow<'static, str> {
        self.lock().reason.clone()
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
        st.writer_busy = true;
        let partial = st.partial.take();
        let items = std::mem::take(&mut st.items);
        st.bytes = 0;
        let pongs = std::mem::take(&mut st.pongs);
        let close = st.close.take();
        if close.is_some() {
            st.closed = true;
        }
        let probe = std::mem::take(&mut st.probe);
        Batch {
            partial,
            items,
            pongs,
            close,
            probe,
        }
    }

    /// The writer is about to wait. False when something arrived since its last
    /// [`Outbound::take`] (it must take again); true when it may wait, and from now on
    /// the lane writes for it.
    pub fn park(&self) -> bool {
        let mut st = self.lock();
        if !st.items.is_empty()
            || !st.pongs.is_empty()
            || st.close.is_some()
            || st.partial.is_some()
        {
            return false;
        }
        st.writer_busy = false;
        true
    }

    /// The lane's turn: writes what is queued as one frame with one non-blocking
    /// `write()`, unless the writer is busy or has work only it can do (a close, pongs,
    /// more than one frame). What the socket does not take is left for the writer.
    /// Returns the payload bytes written. `buf` is the lane's scratch buffer.
    pub fn write_now(&self, buf: &mut Vec<u8>) -> usize {
        let mut st = self.lock();
        st.scheduled = false;
        if st.writer_busy
            || st.partial.is_some()
            || st.items.is_empty()
            || st.close.is_some()
            || st.closed
        {
            return 0;
        }
        let Some(socket) = st.socket.clone() else {
            drop(st);
            self.wake.notify_one();
            return 0;
        };
        if !st.pongs.is_empty() || st.bytes + st.items.len() > MAX_COALESCED_FRAME {
            drop(st);
            self.wake.notify_one();
            return 0;
        }
        let start = coalesce(&mut st.items, buf, self.encoding);
        st.bytes = 0;
        let probe = std::mem::take(&mut st.probe);
        let payload = buf.len() - MAX_SERVER_HEAD;
        let frame = &buf[start..];
        let written = match socket.try_write(frame) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            // The writer meets the same error on its next write and ends the connection.
            Err(_) => 0,
        };
        if written < frame.len() {
            // From here the writer owns the socket until it parks again: a later
            // message must not reach the socket before the rest of this frame (with
            // nothing written, a lane that wrote the next message would swap them).
            st.partial = Some(Bytes::copy_from_slice(&frame[written..]));
            st.writer_busy = true;
            drop(st);
            self.wake.notify_one();
        } else {
            drop(st);
        }
        // Written, or handed to the kernel in part (the writer finishes the frame).
        if probe != 0 {
            crate::metrics::delivery_lag().record(crate::metrics::seconds_since(probe));
        }
        payload
    }

    /// Wakes the writer with nothing queued, to look at its deadlines again (the
    /// connection just connected: from now on it owes pings, not a connect deadline).
    /// A lane delivers what is queued for a parked writer without waking it, so a
    /// state change the writer must act on needs this.
    pub fn wake_writer(&self) {
        self.wake.notify_one();
    }

    /// Waits until something may be queued.
    pub async fn wait(&self) {
        self.wake.notified().await
    }

    /// Whether the lane left part of a frame for the writer.
    #[cfg(test)]
    pub(super) fn has_partial(&self) -> bool {
        self.lock().partial.is_some()
    }

    /// Bytes queued right now.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests;
