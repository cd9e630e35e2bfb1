//! The writer task of one connection: drains the outbound queue into frames, sends
//! server pings, and enforces the deadlines (connect, pong, token expiry).
//!
//! Everything queued since the last write goes out as one frame (JSON objects joined
//! by `\n` in a text frame, or length-delimited Protobuf replies in a binary frame), so
//! a burst of publications costs one `write()`. Deadlines are checked
//! here because this task is the one that wakes on time; the reader only reacts to
//! what the client sends. With `HERALD_WRITE_INTERVAL` set, a connection that wrote
//! less than that long ago waits out the rest of the interval first, so that a busy
//! channel costs one `write()` per interval rather than one per publication.
//!
//! Every write is bounded by `ping_interval + pong_timeout`: a client that takes no
//! bytes for that long (its TCP window stays shut) could not have answered a ping
//! either, and is closed as slow (3008) instead of holding the writer, its connection
//! slot and its socket forever.

use super::frames::MAX_CONTROL_PAYLOAD;
use crate::conn::outbound::CloseReason;
use crate::conn::wire::{coalesce, frame_in_place, opcode, MAX_SERVER_HEAD};
use crate::conn::Conn;
use crate::node::Node;
use fastwebsockets::OpCode;
use herald_shared::protocol::{codes::reconnect_allowed, DisconnectCode, PushBody};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Runs until the connection is closed; returns the close code it sent (if any), or
/// decided when the client stopped reading before it could be sent.
pub async fn run<W: AsyncWrite + Unpin>(wr: W, node: Arc<Node>, conn: Arc<Conn>) -> Option<u16> {
    let stall = node.config.ping_interval + node.config.pong_timeout;
    let mut ws = Bounded { wr, stall };
    match write_loop(&mut ws, &node, &conn).await {
        Ok(code) => code,
        Err(Stalled) => {
            tracing::debug!(stall = ?stall, "client stopped reading: closing as slow");
            // No-op when a close was already decided (then that code is the one).
            conn.out.close(DisconnectCode::Slow);
            conn.out.close_code()
        }
    }
}

/// A write could not finish in time: the client does not read.
struct Stalled;

/// The write half with every write bounded in time.
///
/// Frames are written here rather than through fastwebsockets' `WebSocketWrite`, which
/// copies every frame under 1 KiB into a buffer of its own that it keeps for the
/// connection's life. Here the header goes into room left in front of the payload, so
/// a frame is one `write()` of one buffer, and nothing is held while idle.
struct Bounded<W> {
    wr: W,
    stall: Duration,
}

impl<W: AsyncWrite + Unpin> Bounded<W> {
    /// Writes `frame[start..]`. `Ok(false)`: the client is gone.
    async fn write_all(&mut self, frame: &[u8]) -> Result<bool, Stalled> {
        match tokio::time::timeout(self.stall, self.wr.write_all(frame)).await {
            Ok(r) => Ok(r.is_ok()),
            Err(_) => Err(Stalled),
        }
    }

    /// Writes one frame whose payload follows [`MAX_SERVER_HEAD`] bytes of room at the
    /// start of `buf`.
    async fn write_framed(&mut self, opcode: OpCode, buf: &mut [u8]) -> Result<bool, Stalled> {
        let start = frame_in_place(opcode, buf);
        self.write_all(&buf[start..]).await
    }

    /// Writes a small frame (pong, close, the disconnect push).
    async fn write_small(&mut self, opcode: OpCode, parts: &[&[u8]]) -> Result<bool, Stalled> {
        let mut buf = vec![0u8; MAX_SERVER_HEAD];
        for p in parts {
            buf.extend_from_slice(p);
        }
        self.write_framed(opcode, &mut buf).await
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    ws: &mut Bounded<W>,
    node: &Arc<Node>,
    conn: &Arc<Conn>,
) -> Result<Option<u16>, Stalled> {
    let cfg = &node.config;
    let handshake_deadline = Instant::now() + cfg.limits.handshake_timeout;
    let mut next_ping: Option<Instant> = None;
    let mut pong_deadline: Option<Instant> = None;
    // One timer for the connection's life, moved only when the next deadline moves: a
    // new timer per wake-up cost a timer-wheel insert and removal per delivery.
    let timer = tokio::time::sleep_until(handshake_deadline);
    tokio::pin!(timer);

    // When the last write that carried messages went out (see `write_interval`).
    let mut last_write: Option<Instant> = None;

    loop {
        if let Some(at) = last_write.take() {
            // Wrote recently: let more gather, so a busy connection costs one write()
            // per interval instead of one per publication.
            let ready = at + cfg.write_interval;
            if Instant::now() < ready && !conn.out.is_closing() {
                timer.as_mut().reset(ready);
                (&mut timer).await;
            }
        }
        let batch = conn.out.take();
        if !batch.items.is_empty() && !cfg.write_interval.is_zero() {
            last_write = Some(Instant::now());
        }
        // The end of a frame the lane could not finish goes first, as it is
        // (nothing may come between the two parts of a frame, not even a pong).
        if let Some(rest) = &batch.partial {
            if !ws.write_all(rest).await? {
                return Ok(None);
            }
        }
        for pong in &batch.pongs {
            if !ws.write_small(OpCode::Pong, &[pong]).await? {
                return Ok(None);
            }
        }
        // Write what is queued, coalesced. The buffer lives only for this batch: an
        // idle connection holds none.
        let mut items = batch.items;
        let mut buf = Vec::new();
        while !items.is_empty() {
            let start = coalesce(&mut items, &mut buf, conn.encoding());
            node.metrics
                .bytes_out
                .increment((buf.len() - MAX_SERVER_HEAD) as u64);
            if !ws.write_all(&buf[start..]).await? {
                return Ok(None);
            }
        }
        if batch.probe != 0 {
            crate::metrics::delivery_lag().record(crate::metrics::seconds_since(batch.probe));
        }
        if let Some(close) = batch.close {
            return send_close(ws, close, conn).await.map(Some);
        }

        // Deadlines: connect, then ping/pong and token expiry.
        let now = Instant::now();
        if !conn.is_connected() {
            if now >= handshake_deadline {
                conn.out.close(DisconnectCode::Stale);
                continue;
            }
        } else {
            let ping_every = cfg.ping_interval;
            let np = *next_ping.get_or_insert(now + ping_every);
            if let Some(pd) = pong_deadline {
                if !conn.awaiting_pong.load(Ordering::Acquire) {
                    pong_deadline = None;
                } else if now >= pd {
                    conn.out.close(DisconnectCode::NoPong);
                    continue;
                }
            }
            if now >= np {
                conn.awaiting_pong.store(true, Ordering::Release);
                conn.ping_sent
                    .store(crate::metrics::now_nanos(), Ordering::Relaxed);
                // An earlier ping still unanswered keeps its deadline: with a pong
                // timeout longer than the ping interval, moving it at every ping would
                // never close a client that stopped answering.
                if pong_deadline.is_none() {
                    pong_deadline = Some(now + cfg.pong_timeout);
                }
                next_ping = Some(now + ping_every);
                // `{}` in JSON, an empty `Reply` in Protobuf.
                conn.out.push(conn.encoding().ping());
                continue;
            }
            let expiry = conn.next_expiry();
            if expiry != 0 {
                let grace = cfg.expiry_grace.as_secs();
                let unix_now = herald_shared::auth::now_secs();
                if unix_now >= expiry.saturating_add(grace) {
                    let code = if conn.expires_at.load(Ordering::Relaxed) != 0
                        && unix_now
                            >= conn
                                .expires_at
                                .load(Ordering::Relaxed)
                                .saturating_add(grace)
                    {
                        DisconnectCode::Expired
                    } else {
                        DisconnectCode::SubExpired
                    };
                    conn.out.close(code);
                    continue;
                }
            }
        }

        let deadline = next_deadline(node, conn, handshake_deadline, next_ping, pong_deadline);
        if deadline != timer.deadline() || timer.is_elapsed() {
            timer.as_mut().reset(deadline);
        }
        // Something came in since the batch was taken: take it first. Otherwise the
        // writer is idle from here on, and a lane writes what comes (see `conn::lanes`).
        if !conn.out.park() {
            continue;
        }
        // Shutdown is not watched here: `Node::stop_sessions` closes every queue.
        tokio::select! {
            biased;
            _ = conn.out.wait() => {}
            _ = &mut timer => {}
        }
    }
}

/// When the writer must wake up even if nothing is queued.
fn next_deadline(
    node: &Node,
    conn: &Conn,
    handshake_deadline: Instant,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
) -> Instant {
    if !conn.is_connected() {
        return handshake_deadline;
    }
    let mut d = next_ping.unwrap_or_else(|| Instant::now() + node.config.ping_interval);
    if let Some(pd) = pong_deadline {
        d = d.min(pd);
    }
    let expiry = conn.next_expiry();
    if expiry != 0 {
        let at = expiry.saturating_add(node.config.expiry_grace.as_secs());
        let secs = at.saturating_sub(herald_shared::auth::now_secs());
        d = d.min(Instant::now() + Duration::from_secs(secs));
    }
    d
}

/// Sends the `disconnect` push (protocol codes) and the close frame.
async fn send_close<W: AsyncWrite + Unpin>(
    ws: &mut Bounded<W>,
    close: CloseReason,
    conn: &Conn,
) -> Result<u16, Stalled> {
    if close.push {
        let encoding = conn.encoding();
        let body = PushBody::Disconnect {
            code: close.code,
            reason: &close.reason,
            reconnect: reconnect_allowed(close.code),
        };
        let push = encoding.push("", &body);
        ws.write_small(opcode(encoding), &[&push]).await?;
    }
    // A close reason is cut to what fits a control frame, on a character boundary.
    let mut reason = close.reason.as_ref();
    while reason.len() > MAX_CONTROL_PAYLOAD - 2 {
        let mut cut = MAX_CONTROL_PAYLOAD - 2;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason = &reason[..cut];
    }
    ws.write_small(
        OpCode::Close,
        &[&close.code.to_be_bytes(), reason.as_bytes()],
    )
    .await?;
    let _ = tokio::time::timeout(ws.stall, ws.wr.flush()).await;
    Ok(close.code)
}
