//! The client protocol's dispatcher: decodes a frame's commands, applies the rate
//! limit and the "connect first" rule, runs each command ([`super::cmd`]) and queues
//! its reply.
//!
//! Replies go into the connection's outbound queue in command order. A command either
//! gets a reply, an error reply (the connection stays), or ends the connection with a
//! disconnect code (the protocol's rule for malformed input and bad credentials).

use super::cmd::{self, Client, Failure, EMPTY};
use super::rate::RateLimit;
use crate::conn::outbound::CloseReason;
use crate::conn::Conn;
use crate::metrics;
use crate::node::Node;
use bytes::Bytes;
use herald_shared::protocol::reply::{encode_error, encode_reply_raw};
use herald_shared::protocol::{decode_frame, DisconnectCode, ErrorCode, Method, ReplyError};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Commands one frame may carry.
const MAX_COMMANDS_PER_FRAME: usize = 100;

/// What the reader does after a frame.
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Close the connection with this reason.
    Close(CloseReason),
}

/// The protocol state of one connection, driven by its reader.
pub struct Session {
    client: Client,
    limit: RateLimit,
}

impl Session {
    /// A session for a fresh connection.
    pub fn new(node: Arc<Node>, conn: Arc<Conn>) -> Self {
        let rate = node.config.limits.commands_per_second;
        Session {
            client: Client::new(node, conn),
            limit: RateLimit::new(rate),
        }
    }

    /// Handles one complete text message.
    pub async fn handle_frame(&mut self, payload: &[u8]) -> Flow {
        let conn = self.client.conn.clone();
        self.client
            .node
            .metrics
            .bytes_in
            .increment(payload.len() as u64);
        // Any message proves the client is alive.
        conn.awaiting_pong.store(false, Ordering::Release);
        let commands = match decode_frame(payload, MAX_COMMANDS_PER_FRAME) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "malformed frame");
                return Flow::Close(DisconnectCode::BadRequest.into());
            }
        };
        // A frame without commands (blank lines) still costs a token: otherwise a flood
        // of them would be the one thing the rate limit does not see.
        if commands.is_empty() && !self.limit.allow() {
            metrics::command("empty", "too_many_requests");
            return Flow::Close(DisconnectCode::TooManyRequests.into());
        }
        for command in commands {
            let (id, method) = match command.into_method() {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "malformed command");
                    return Flow::Close(DisconnectCode::BadRequest.into());
                }
            };
            if matches!(method, Method::Pong) && !conn.is_connected() {
                return Flow::Close(DisconnectCode::BadRequest.into());
            }
            // Pongs count too: an SDK sends one per ping, a flood of `{}` is a flood.
            if !self.limit.allow() {
                metrics::command(method.name(), "too_many_requests");
                return Flow::Close(DisconnectCode::TooManyRequests.into());
            }
            if matches!(method, Method::Pong) {
                let sent = conn.ping_sent.swap(0, Ordering::Relaxed);
                if sent != 0 {
                    crate::metrics::ping_rtt().record(crate::metrics::seconds_since(sent));
                }
                continue;
            }
            if let Flow::Close(c) = self.handle(id, method).await {
                return Flow::Close(c);
            }
        }
        Flow::Continue
    }

    async fn handle(&mut self, id: u32, method: Method) -> Flow {
        let name = method.name();
        let c = &mut self.client;
        if !c.conn.is_connected() && !matches!(method, Method::Connect(_)) {
            metrics::command(name, "no_connect");
            return Flow::Close(DisconnectCode::BadRequest.into());
        }
        let result = match method {
            Method::Connect(r) => cmd::connect::connect(c, id, r).await,
            Method::Subscribe(r) => cmd::subscribe::subscribe(c, id, r).await,
            Method::Unsubscribe(r) => cmd::subscribe::unsubscribe(c, r).await,
            Method::Publish(r) => cmd::publish::publish(c, r).await,
            Method::Presence(r) => cmd::presence::presence(c, r).await,
            Method::PresenceStats(r) => cmd::presence::presence_stats(c, r).await,
            Method::History(r) => cmd::history::history(c, r).await,
            Method::Refresh(r) => cmd::connect::refresh(c, r),
            Method::SubRefresh(r) => cmd::subscribe::sub_refresh(c, r),
            Method::Ping => Ok(Some(EMPTY.to_vec())),
            // No RPC or send handler is configured on this node.
            Method::Rpc(_) => Err(ErrorCode::MethodNotFound.into()),
            Method::Send(_) => Ok(None),
            Method::Pong => Ok(None),
            Method::Unknown => Err(ErrorCode::MethodNotFound.into()),
        };
        let out = &c.conn.out;
        match result {
            Ok(reply) => {
                metrics::command(name, "ok");
                // `connect` and `subscribe` queue their own replies (None here).
                if let Some(body) = reply {
                    if id != 0 {
                        out.push(Bytes::from(encode_reply_raw(id, name, &body)));
                    }
                }
                Flow::Continue
            }
            Err(Failure::Error(code)) => {
                metrics::command(name, error_label(code));
                if id != 0 {
                    let e: ReplyError = code.into();
                    out.push(Bytes::from(encode_error(id, &e)));
                }
                Flow::Continue
            }
            Err(Failure::Close(code)) => {
                metrics::command(name, "disconnect");
                Flow::Close(code.into())
            }
        }
    }
}

fn error_label(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Internal => "internal",
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::UnknownChannel => "unknown_channel",
        ErrorCode::PermissionDenied => "permission_denied",
        ErrorCode::MethodNotFound => "method_not_found",
        ErrorCode::AlreadySubscribed => "already_subscribed",
        ErrorCode::LimitExceeded => "limit_exceeded",
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::NotAvailable => "not_available",
        ErrorCode::TokenExpired => "token_expired",
        ErrorCode::Expired => "expired",
        ErrorCode::TooManyRequests => "too_many_requests",
        ErrorCode::UnrecoverablePosition => "unrecoverable_position",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[tokio::test]
    async fn commands_before_connect_close() {
        let node = testing::node(testing::config(|c| c.allow_anonymous = true));
        let conn = testing::unconnected(&node);
        let mut s = Session::new(node, conn.clone());
        let flow = s
            .handle_frame(br#"{"id":1,"presence":{"channel":"c"}}"#)
            .await;
        assert!(matches!(flow, Flow::Close(c) if c.code == DisconnectCode::BadRequest.code()));
    }

    #[tokio::test]
    async fn replies_in_order_with_errors_in_place() {
        let node = testing::node(testing::config(|c| c.allow_anonymous = true));
        let conn = testing::unconnected(&node);
        let mut s = Session::new(node, conn.clone());
        let frame = concat!(
            r#"{"id":1,"connect":{}}"#,
            "\n",
            r#"{"id":2,"rpc":{}}"#,
            "\n",
            r#"{"id":3,"ping":{}}"#
        );
        assert!(matches!(
            s.handle_frame(frame.as_bytes()).await,
            Flow::Continue
        ));
        let sent = testing::sent(&conn);
        assert!(sent[0].starts_with(r#"{"id":1,"connect""#), "{sent:?}");
        assert!(
            sent[1].starts_with(r#"{"id":2,"error":{"code":104"#),
            "{sent:?}"
        );
        assert_eq!(sent[2], r#"{"id":3,"ping":{}}"#);
        let flow = s.handle_frame(b"not json").await;
        assert!(matches!(flow, Flow::Close(_)));
    }

    #[tokio::test]
    async fn the_rate_limit_closes() {
        let node = testing::node(testing::config(|c| {
            c.allow_anonymous = true;
            c.limits.commands_per_second = 2;
        }));
        let conn = testing::unconnected(&node);
        let mut s = Session::new(node, conn);
        let frame = concat!(r#"{"id":1,"connect":{}}"#, "\n", r#"{"id":2,"ping":{}}"#);
        assert!(matches!(
            s.handle_frame(frame.as_bytes()).await,
            Flow::Continue
        ));
        let flow = s.handle_frame(br#"{"id":3,"ping":{}}"#).await;
        let code = DisconnectCode::TooManyRequests.code();
        assert!(matches!(flow, Flow::Close(c) if c.code == code));
    }
}
