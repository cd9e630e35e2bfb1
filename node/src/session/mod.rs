//! One client WebSocket connection.
//!
//! Two tasks per connection: the reader (this module) reads frames and runs the
//! protocol ([`handler`]), which may wait on the broker; the [writer] drains the
//! outbound queue and owns every deadline. The reader forwards what the WebSocket
//! protocol obliges it to send (pongs, the close echo) to the writer through the queue.
//!
//! fastwebsockets performs the upgrade; after it, the connection's TCP stream is taken
//! back from hyper and split into owned halves, read by [`frames::FrameReader`] (which
//! holds no buffer while the client is quiet) and written by the writer.
//!
//! # Layout
//! - [`conn`]: per-connection state shared with the hub and the server API.
//! - [`frames`]: client frames in, server frame headers out (RFC 6455 section 5).
//! - [`outbound`]: the bounded outbound queue.
//! - [`handler`]: the client protocol's commands.
//! - [`writer`]: the writer task.

pub mod conn;
pub mod frames;
pub mod handler;
pub mod outbound;
pub mod writer;

use crate::node::Node;
use bytes::Bytes;
use conn::Conn;
use fastwebsockets::OpCode;
use frames::{FrameReader, ReadError};
use handler::{Flow, Session};
use herald_shared::protocol::DisconnectCode;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use outbound::CloseReason;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// How long the reader keeps reading after the close was sent, waiting for the
/// client's close frame, so the close frame is not lost to a TCP reset.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// How long the writer may still take once the reader is done (it flushes what is
/// queued and the close). A client that does not read would otherwise hold the
/// connection until the writer's own stall timeout.
const WRITER_GRACE: Duration = Duration::from_secs(5);

/// RFC 6455 close codes used for transport-level problems.
mod ws_close {
    pub const NORMAL: u16 = 1000;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

fn transport_close(code: u16, reason: &'static str) -> CloseReason {
    CloseReason {
        code,
        reason: reason.into(),
        push: false,
    }
}

/// Runs a connection from the completed upgrade to its end.
pub async fn serve(node: Arc<Node>, upgraded: Upgraded, remote: SocketAddr) {
    // The node serves plain TCP (TLS ends at the load balancer), so the upgraded
    // connection is always hyper's wrapper around our own `TcpStream`.
    let parts = match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => parts,
        Err(_) => {
            node.sessions.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(client.addr = %remote, "upgraded connection is not a TCP stream");
            return;
        }
    };
    let (rd, wr) = parts.io.into_inner().into_split();
    let early = parts.read_buf;
    let id = node.next_conn_id();
    let span = tracing::debug_span!("conn", conn.id = id, client.addr = %remote);
    async move {
        let conn = Arc::new(Conn::new(id, remote, node.config.limits.queue_max_bytes));
        node.metrics.connections.increment(1.0);
        // Listed before looking at `stop`: shutdown either finds it in the list or has
        // already fired `stop` (see `Node::stop_sessions`).
        node.open.insert(id, conn.out.clone());
        if node.stop.is_cancelled() {
            conn.out.close(DisconnectCode::Shutdown);
        }
        // Checked per frame here; the whole message (all fragments) is checked below.
        let mut frames = FrameReader::new(&early, node.config.limits.max_message_size);
        drop(early);
        let writer = tokio::spawn(writer::run(wr, node.clone(), conn.clone()).in_current_span());

        read_loop(&node, &conn, &mut frames, &rd).await;

        // The reader is done: make sure the writer ends too, then clean up.
        conn.out.close(CloseReason {
            code: 1000,
            reason: "".into(),
            push: false,
        });
        let mut writer = writer;
        let code = match tokio::time::timeout(WRITER_GRACE, &mut writer).await {
            Ok(code) => code.ok().flatten(),
            Err(_) => {
                // Dropping the write half (with the read half below) closes the socket.
                writer.abort();
                tracing::debug!("client not reading: socket closed without the close handshake");
                conn.out.close_code()
            }
        };
        Box::pin(cleanup(&node, &conn)).await;
        node.metrics.connections.decrement(1.0);
        if let Some(code) = code {
            crate::metrics::disconnect(code);
        }
        tracing::debug!(code = ?code, "connection closed");
    }
    .instrument(span)
    .await
}

async fn read_loop(
    node: &Arc<Node>,
    conn: &Arc<Conn>,
    frames: &mut FrameReader,
    rd: &tokio::net::tcp::OwnedReadHalf,
) {
    let mut session = Session::new(node.clone(), conn.clone());
    let max = node.config.limits.max_message_size;
    // A message arriving in fragments: opcode of its first frame and the bytes so far.
    let mut partial: Option<(OpCode, Vec<u8>)> = None;
    // The client sent its close: nothing more will come, no need to linger for it.
    let mut peer_closed = false;

    loop {
        if conn.out.is_closing() {
            break;
        }
        let frame = tokio::select! {
            biased;
            // Once a close is decided the frame being read no longer matters (the
            // reader is cancel-safe anyway: what it read stays for the linger).
            _ = conn.out.closed() => break,
            f = frames.next(rd) => f,
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                if let Some(reason) = close_for_error(&e) {
                    conn.out.close(reason);
                } else {
                    tracing::debug!(error = %e, "read ended");
                    return;
                }
                break;
            }
        };
        let complete: Option<Vec<u8>> = match frame.opcode {
            OpCode::Ping => {
                conn.out.push_pong(Bytes::copy_from_slice(frame.payload));
                None
            }
            OpCode::Close => {
                conn.out.close(close_answer(frame.payload));
                peer_closed = true;
                break;
            }
            OpCode::Text | OpCode::Binary if partial.is_some() => {
                conn.out.close(transport_close(
                    ws_close::PROTOCOL_ERROR,
                    "expected continuation",
                ));
                break;
            }
            OpCode::Text | OpCode::Binary if !frame.fin => {
                partial = Some((frame.opcode, frame.payload.to_vec()));
                None
            }
            OpCode::Binary => {
                conn.out.close(transport_close(
                    ws_close::UNSUPPORTED_DATA,
                    "binary frames are not supported: use JSON text frames",
                ));
                break;
            }
            OpCode::Text if std::str::from_utf8(frame.payload).is_err() => {
                conn.out
                    .close(transport_close(ws_close::INVALID_PAYLOAD, "invalid UTF-8"));
                break;
            }
            // A whole message in one frame.
            OpCode::Text => {
                // Boxed: a command's state (subscribe with recovery is the largest) then
                // exists only while it runs, instead of widening every idle session's
                // task. Measured: idle memory per connection 15.6 -> 12.3 KiB
                // (`herald-loadtest idle --local 1 --connections 10000`).
                if let Flow::Close(c) = Box::pin(session.handle_frame(frame.payload)).await {
                    conn.out.close(c);
                    break;
                }
                None
            }
            OpCode::Continuation => {
                let Some((_, buf)) = partial.as_mut() else {
                    conn.out.close(transport_close(
                        ws_close::PROTOCOL_ERROR,
                        "unexpected continuation",
                    ));
                    break;
                };
                if buf.len() + frame.payload.len() > max {
                    conn.out.close(transport_close(
                        ws_close::MESSAGE_TOO_BIG,
                        "message too big",
                    ));
                    break;
                }
                buf.extend_from_slice(frame.payload);
                if frame.fin {
                    let (op, buf) = partial.take().expect("partial message");
                    if op == OpCode::Binary {
                        conn.out.close(transport_close(
                            ws_close::UNSUPPORTED_DATA,
                            "binary frames are not supported: use JSON text frames",
                        ));
                        break;
                    }
                    Some(buf)
                } else {
                    None
                }
            }
            // Pongs (answers to pings we never send) are ignored.
            OpCode::Pong => None,
        };
        if let Some(message) = complete {
            if std::str::from_utf8(&message).is_err() {
                conn.out
                    .close(transport_close(ws_close::INVALID_PAYLOAD, "invalid UTF-8"));
                break;
            }
            if let Flow::Close(c) = Box::pin(session.handle_frame(&message)).await {
                conn.out.close(c);
                break;
            }
        }
    }

    if peer_closed {
        return;
    }
    // Linger: let the client read our close and answer it, discarding what it sends.
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        loop {
            match frames.next(rd).await {
                Ok(f) if f.opcode == OpCode::Close => break,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    })
    .await;
}

/// How to answer a client's close frame (RFC 6455 section 5.5.1): echo its code, or
/// 1002 for a malformed close (1 byte, or a code no endpoint may send), 1007 for a
/// reason that is not UTF-8.
fn close_answer(payload: &[u8]) -> CloseReason {
    match payload {
        [] => transport_close(ws_close::NORMAL, ""),
        [_] => transport_close(ws_close::PROTOCOL_ERROR, "invalid close frame"),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if std::str::from_utf8(reason).is_err() {
                transport_close(ws_close::INVALID_PAYLOAD, "invalid UTF-8")
            } else if !fastwebsockets::CloseCode::from(code).is_allowed() {
                transport_close(ws_close::PROTOCOL_ERROR, "invalid close code")
            } else {
                transport_close(code, "")
            }
        }
    }
}

/// The close code for a read error, or `None` when the peer is simply gone.
fn close_for_error(e: &ReadError) -> Option<CloseReason> {
    Some(match e {
        ReadError::TooBig => transport_close(ws_close::MESSAGE_TOO_BIG, "message too big"),
        ReadError::Protocol(why) => transport_close(ws_close::PROTOCOL_ERROR, why),
        ReadError::Eof | ReadError::Io(_) => return None,
    })
}

/// Removes every trace of a closed connection: subscriptions, presence, registry.
async fn cleanup(node: &Arc<Node>, conn: &Arc<Conn>) {
    let channels: Vec<String> = conn
        .channels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect();
    for channel in channels {
        handler::unsubscribe_conn(node, conn, &channel).await;
    }
    node.registry.remove(conn);
    node.open.remove(conn.id);
    node.sessions.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frames_are_echoed_or_refused() {
        let code = |p: &[u8]| close_answer(p).code;
        assert_eq!(code(b""), 1000);
        assert_eq!(code(&[0x03]), 1002, "one byte");
        assert_eq!(code(&4000u16.to_be_bytes()), 4000);
        assert_eq!(code(b"\x03\xe8bye"), 1000);
        assert_eq!(code(&1005u16.to_be_bytes()), 1002, "reserved, never sent");
        assert_eq!(code(&999u16.to_be_bytes()), 1002);
        assert_eq!(code(b"\x03\xe8\xff"), 1007, "reason not UTF-8");
    }
}
