//! One client WebSocket connection.
//!
//! Two tasks per connection: the reader (this module) reads frames and runs the
//! protocol ([`handler`]), which may wait on the broker; the [writer] drains the
//! outbound queue and owns every deadline. The reader forwards what the WebSocket
//! protocol obliges it to send (pongs, the close echo) to the writer through the queue.
//!
//! fastwebsockets performs the upgrade; after it, the connection's TCP stream is taken
//! back from hyper and shared ([`crate::conn::socket`]): read by [`frames::FrameReader`]
//! (which holds no buffer while the client is quiet), written by the writer, and, while
//! the writer is idle, by the node's lanes ([`crate::conn::lanes`]).
//!
//! # Layout
//! - [`frames`]: client frames in, server frame headers out (RFC 6455 section 5).
//! - `reassembly`: fragmented messages; `close`: transport closes.
//! - [`handler`]: the dispatcher: rate limit, command order, replies.
//! - `cmd`: the client protocol's commands, one file per command or group.
//! - `proxied`: what the backend proxy keeps per connection.
//! - [`writer`]: the writer task.
//!
//! The connection's state and queue are [`crate::conn`], a layer below.

mod close;
mod cmd;
pub mod frames;
pub mod handler;
mod proxied;
pub(crate) mod rate;
mod reassembly;
pub mod writer;

use crate::channel::subscribe::detach;
use crate::conn::outbound::CloseReason;
use crate::conn::socket::SharedWrite;
use crate::conn::wire::opcode;
use crate::conn::Conn;
use crate::node::Node;
use bytes::Bytes;
use close::{close_answer, close_for_error, transport_close, wrong_frame_type, ws_close};
use fastwebsockets::OpCode;
use frames::FrameReader;
use handler::{Flow, Session};
use herald_shared::protocol::{DisconnectCode, Encoding};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use reassembly::Reassembly;
use std::net::SocketAddr;
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

/// Runs a connection from the completed upgrade to its end.
/// `headers` are the upgrade request's headers the backend proxy forwards (empty
/// without a proxy).
pub async fn serve(
    node: Arc<Node>,
    upgraded: Upgraded,
    remote: SocketAddr,
    encoding: Encoding,
    headers: crate::proxy::Headers,
) {
    // The node serves plain TCP (TLS ends at the load balancer), so the upgraded
    // connection is always hyper's wrapper around our own `TcpStream`.
    let parts = match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => parts,
        Err(_) => {
            node.registry.release();
            tracing::error!(client.addr = %remote, "upgraded connection is not a TCP stream");
            return;
        }
    };
    let stream = Arc::new(parts.io.into_inner());
    let early = parts.read_buf;
    let id = node.next_conn_id();
    let span = tracing::debug_span!("conn", conn.id = id, client.addr = %remote);
    let opened = std::time::Instant::now();
    async move {
        let max = node.config.limits.queue_max_bytes;
        let conn = Arc::new(Conn::with_encoding(id, remote, max, encoding));
        // With a write interval the writer must pace every write itself: no lane.
        if node.config.write_interval.is_zero() {
            conn.out.attach(node.lanes.lane(id), stream.clone());
        }
        node.metrics.connections.increment(1.0);
        // Listed before looking at `stop`: shutdown either finds it in the list or has
        // already fired `stop` (see `Node::stop_sessions`).
        node.registry.open(conn.clone());
        if node.stop.is_cancelled() {
            conn.out.close(DisconnectCode::Shutdown);
        }
        // Checked per frame here; the whole message (all fragments) is checked below.
        let mut frames = FrameReader::new(&early, node.config.limits.max_message_size);
        drop(early);
        let wr = SharedWrite(stream.clone());
        let writer = tokio::spawn(writer::run(wr, node.clone(), conn.clone()).in_current_span());

        let session = Session::new(node.clone(), conn.clone()).with_proxy_headers(headers);
        read_loop(session, &node, &conn, &mut frames, &stream).await;

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
        // The lane may write no more; with the writer gone, `stream` is the last holder.
        conn.out.detach();
        drop(stream);
        Box::pin(cleanup(&node, &conn)).await;
        node.metrics.connections.decrement(1.0);
        if let Some(code) = code {
            crate::metrics::disconnect(code);
        }
        // One line per connection close; its fields are documented (README, Logs).
        let (client, user) = conn
            .identity()
            .map(|i| (i.client.as_str(), i.user.as_str()))
            .unwrap_or(("", ""));
        tracing::debug!(
            close.code = code.unwrap_or(0),
            close.reason = %conn.out.close_reason(),
            duration_s = opened.elapsed().as_secs_f64(),
            client.id = client,
            user,
            "connection closed"
        );
    }
    .instrument(span)
    .await
}

async fn read_loop(
    mut session: Session,
    node: &Arc<Node>,
    conn: &Arc<Conn>,
    frames: &mut FrameReader,
    rd: &tokio::net::TcpStream,
) {
    let encoding = conn.encoding();
    let mut fragments = Reassembly::new(node.config.limits.max_message_size);
    // The client sent its close: nothing more will come, no need to linger for it.
    let mut peer_closed = false;

    loop {
        if conn.out.is_closing() {
            break;
        }
        // A backend refresh (refresh or sub_refresh proxy) due at this unix second.
        let due = session.refresh_due();
        let frame = tokio::select! {
            biased;
            // Once a close is decided the frame being read no longer matters (the
            // reader is cancel-safe anyway: what it read stays for the linger).
            _ = conn.out.closed() => break,
            _ = until_unix(due.unwrap_or(0)), if due.is_some() => {
                if let Flow::Close(c) = session.refresh().await {
                    conn.out.close(c);
                    break;
                }
                continue;
            }
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
            OpCode::Text | OpCode::Binary if fragments.in_progress() => {
                conn.out.close(transport_close(
                    ws_close::PROTOCOL_ERROR,
                    "expected continuation",
                ));
                break;
            }
            // A data frame of the other encoding's type: refused before anything is read
            // into it (a fragmented one at its first fragment).
            OpCode::Text | OpCode::Binary if frame.opcode != opcode(encoding) => {
                conn.out.close(wrong_frame_type(encoding));
                break;
            }
            OpCode::Text | OpCode::Binary if !frame.fin => {
                fragments.start(frame.opcode, frame.payload);
                None
            }
            OpCode::Text if std::str::from_utf8(frame.payload).is_err() => {
                conn.out
                    .close(transport_close(ws_close::INVALID_PAYLOAD, "invalid UTF-8"));
                break;
            }
            // A whole message in one frame.
            OpCode::Text | OpCode::Binary => {
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
            OpCode::Continuation => match fragments.next(frame.payload, frame.fin) {
                Ok(message) => message,
                Err(close) => {
                    conn.out.close(close);
                    break;
                }
            },
            // Pongs (answers to pings we never send) are ignored.
            OpCode::Pong => None,
        };
        if let Some(message) = complete {
            if encoding == Encoding::Json && std::str::from_utf8(&message).is_err() {
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

/// Sleeps until the unix second `at` (at once when it has passed).
async fn until_unix(at: u64) {
    let now = herald_shared::auth::now_secs();
    tokio::time::sleep(Duration::from_secs(at.saturating_sub(now))).await
}

/// Removes every trace of a closed connection: subscriptions, presence, registry.
async fn cleanup(node: &Arc<Node>, conn: &Arc<Conn>) {
    for channel in conn.channel_names() {
        detach(node, conn, &channel).await;
    }
    node.registry.close(conn);
}
