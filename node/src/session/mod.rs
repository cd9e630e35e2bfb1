//! One client WebSocket connection.
//!
//! Two tasks per connection, because fastwebsockets' `read_frame` must not be raced in
//! `select!`: the reader (this module) reads frames and runs the protocol
//! ([`handler`]); the [writer] drains the outbound queue and owns every deadline. The
//! reader forwards what the WebSocket protocol obliges it to send (pongs, the close
//! echo) to the writer through the queue.
//!
//! # Layout
//! - [`conn`]: per-connection state shared with the hub and the server API.
//! - [`outbound`]: the bounded outbound queue.
//! - [`handler`]: the client protocol's commands.
//! - [`writer`]: the writer task.

pub mod conn;
pub mod handler;
pub mod outbound;
pub mod writer;

use crate::node::Node;
use bytes::Bytes;
use conn::Conn;
use fastwebsockets::{OpCode, WebSocket, WebSocketError};
use handler::{Flow, Session};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use outbound::CloseReason;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// How long the reader keeps reading after the close was sent, waiting for the
/// client's close frame, so the close frame is not lost to a TCP reset.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// RFC 6455 close codes used for transport-level problems.
mod ws_close {
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
pub async fn serve(node: Arc<Node>, ws: WebSocket<TokioIo<Upgraded>>, remote: SocketAddr) {
    let id = node.next_conn_id();
    let span = tracing::debug_span!("conn", conn.id = id, client.addr = %remote);
    async move {
        let conn = Arc::new(Conn::new(id, remote, node.config.limits.queue_max_bytes));
        node.metrics.connections.increment(1.0);
        let (mut rd, wr) = ws.split(tokio::io::split);
        // Checked per frame here; the whole message (all fragments) is checked below.
        rd.set_max_message_size(node.config.limits.max_message_size + 1);
        let writer = tokio::spawn(writer::run(wr, node.clone(), conn.clone()).in_current_span());

        read_loop(&node, &conn, &mut rd).await;

        // The reader is done: make sure the writer ends too, then clean up.
        conn.out.close(CloseReason {
            code: 1000,
            reason: "".into(),
            push: false,
        });
        let code = writer.await.ok().flatten();
        cleanup(&node, &conn).await;
        node.metrics.connections.decrement(1.0);
        if let Some(code) = code {
            crate::metrics::disconnect(code);
        }
        tracing::debug!(code = ?code, "connection closed");
    }
    .instrument(span)
    .await
}

type ReadHalf = fastwebsockets::WebSocketRead<tokio::io::ReadHalf<TokioIo<Upgraded>>>;

async fn read_loop(node: &Arc<Node>, conn: &Arc<Conn>, rd: &mut ReadHalf) {
    let mut session = Session::new(node.clone(), conn.clone());
    let max = node.config.limits.max_message_size;
    // A message arriving in fragments: opcode of its first frame and the bytes so far.
    let mut partial: Option<(OpCode, Vec<u8>)> = None;
    let out = conn.out.clone();
    let mut obligations = move |frame: fastwebsockets::Frame<'_>| {
        match frame.opcode {
            OpCode::Pong => out.push_pong(Bytes::copy_from_slice(&frame.payload)),
            OpCode::Close => {
                let code = if frame.payload.len() >= 2 {
                    u16::from_be_bytes([frame.payload[0], frame.payload[1]])
                } else {
                    1000
                };
                out.close(transport_close(code, ""));
            }
            _ => {}
        }
        std::future::ready(Ok::<(), Infallible>(()))
    };

    loop {
        if conn.out.is_closing() {
            break;
        }
        let frame = tokio::select! {
            biased;
            // Once a close is decided the frame being read no longer matters: dropping
            // a half-read frame is fine because nothing is read after it but the linger.
            _ = conn.out.closed() => break,
            f = rd.read_frame(&mut obligations) => f,
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
            OpCode::Text if frame.fin && partial.is_none() => {
                if let Flow::Close(c) = session.handle_frame(&frame.payload).await {
                    conn.out.close(c);
                    break;
                }
                None
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
                buf.extend_from_slice(&frame.payload);
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
            OpCode::Close => break,
            _ => None,
        };
        if let Some(message) = complete {
            if std::str::from_utf8(&message).is_err() {
                conn.out
                    .close(transport_close(ws_close::INVALID_PAYLOAD, "invalid UTF-8"));
                break;
            }
            if let Flow::Close(c) = session.handle_frame(&message).await {
                conn.out.close(c);
                break;
            }
        }
    }

    // Linger: let the client read our close and answer it, discarding what it sends.
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        loop {
            match rd.read_frame(&mut obligations).await {
                Ok(f) if f.opcode == OpCode::Close => break,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    })
    .await;
}

/// The close code for a read error, or `None` when the peer is simply gone.
fn close_for_error(e: &WebSocketError) -> Option<CloseReason> {
    use WebSocketError as E;
    Some(match e {
        E::FrameTooLarge => transport_close(ws_close::MESSAGE_TOO_BIG, "message too big"),
        E::InvalidUTF8 => transport_close(ws_close::INVALID_PAYLOAD, "invalid UTF-8"),
        E::ReservedBitsNotZero
        | E::ControlFrameFragmented
        | E::PingFrameTooLarge
        | E::InvalidFragment
        | E::InvalidContinuationFrame
        | E::InvalidCloseFrame
        | E::InvalidCloseCode
        | E::InvalidValue => transport_close(ws_close::PROTOCOL_ERROR, "protocol error"),
        _ => return None,
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
    node.sessions.fetch_sub(1, Ordering::Relaxed);
}
