//! The client protocol's dispatcher: decodes a frame's commands, applies the rate
//! limit and the "connect first" rule, runs each command ([`super::cmd`]) and queues
//! its reply.
//!
//! Replies go into the connection's outbound queue in command order. A command either
//! gets a reply, an error reply (the connection stays), or ends the connection with a
//! disconnect code (the protocol's rule for malformed input and bad credentials).

use super::cmd::{self, Client, Failure};
use super::rate::RateLimit;
use crate::conn::outbound::CloseReason;
use crate::conn::Conn;
use crate::metrics;
use crate::node::Node;
use herald_shared::protocol::{DisconnectCode, ErrorCode, Method, ReplyBody, ReplyError};
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

    /// Keeps the upgrade headers the backend proxy forwards.
    pub fn with_proxy_headers(mut self, headers: crate::proxy::Headers) -> Self {
        self.client.backend.headers = headers;
        self
    }

    /// When a backend refresh (refresh or sub_refresh proxy) is due, unix seconds.
    pub fn refresh_due(&self) -> Option<u64> {
        self.client.backend.next_due()
    }

    /// Runs the backend refreshes that are due; `Close` when one ends the connection.
    pub async fn refresh(&mut self) -> Flow {
        let now = herald_shared::auth::now_secs();
        let c = &mut self.client;
        if c.backend.refresh_at.is_some_and(|at| at <= now) {
            if let Some(close) = cmd::connect::refresh_by_proxy(c).await {
                return Flow::Close(close);
            }
        }
        let due: Vec<String> = c
            .backend
            .sub_refresh_at
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(ch, _)| ch.clone())
            .collect();
        for channel in due {
            if let Some(close) = cmd::subscribe::sub_refresh_by_proxy(c, &channel).await {
                return Flow::Close(close);
            }
        }
        Flow::Continue
    }

    /// Handles one complete message (a text frame's JSON, or a binary frame's Protobuf:
    /// the connection's encoding).
    pub async fn handle_frame(&mut self, payload: &[u8]) -> Flow {
        let conn = self.client.conn.clone();
        self.client
            .node
            .metrics
            .bytes_in
            .increment(payload.len() as u64);
        // Any message proves the client is alive.
        conn.awaiting_pong.store(false, Ordering::Release);
        let encoding = conn.encoding();
        let commands = match encoding.decode_frame(payload, MAX_COMMANDS_PER_FRAME) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, encoding = encoding.name(), "malformed frame");
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
        // As Centrifugo: only `send` goes without an id (nothing answers it); a command
        // that needs a reply and has no id closes 3501. So do an empty channel and a
        // publish without data.
        let bad = match &method {
            Method::Send(_) | Method::Pong => false,
            Method::Subscribe(r) => id == 0 || r.channel.is_empty(),
            Method::Publish(r) => id == 0 || r.channel.is_empty() || r.data.is_none(),
            _ => id == 0,
        };
        if bad {
            metrics::command(name, "bad_request");
            return Flow::Close(DisconnectCode::BadRequest.into());
        }
        let was_connected = c.conn.is_connected();
        let result = match method {
            Method::Connect(r) => cmd::connect::connect(c, id, r).await,
            Method::Subscribe(r) => cmd::subscribe::subscribe(c, id, r).await,
            Method::Unsubscribe(r) => cmd::subscribe::unsubscribe(c, r).await,
            Method::Publish(r) => cmd::publish::publish(c, r).await,
            Method::Presence(r) => cmd::presence::presence(c, r).await,
            Method::PresenceStats(r) => cmd::presence::presence_stats(c, r).await,
            Method::History(r) => cmd::history::history(c, r).await,
            Method::Refresh(r) => cmd::connect::refresh(c, r).await,
            Method::SubRefresh(r) => cmd::subscribe::sub_refresh(c, r).await,
            Method::Ping => Ok(Some(ReplyBody::Ping)),
            // `rpc` goes to the backend when its proxy is on; `send` has no handler.
            Method::Rpc(r) => cmd::rpc::rpc(c, r).await,
            Method::Send(_) => Ok(None),
            Method::Pong => Ok(None),
            Method::Unknown => Err(ErrorCode::MethodNotFound.into()),
        };
        let out = &c.conn.out;
        if !was_connected && c.conn.is_connected() {
            // The writer parked with the connect deadline and the lane sent the reply
            // without waking it: without this the first ping waited for that deadline.
            out.wake_writer();
        }
        let encoding = out.encoding();
        match result {
            Ok(reply) => {
                metrics::command(name, "ok");
                // `connect` and `subscribe` queue their own replies (None here).
                if let Some(body) = reply {
                    if id != 0 {
                        out.push(encoding.reply(id, &body));
                    }
                }
                Flow::Continue
            }
            Err(Failure::Error(code)) => {
                metrics::command(name, error_label(code));
                if id != 0 {
                    let e: ReplyError = code.into();
                    out.push(encoding.error(id, &e));
                }
                Flow::Continue
            }
            Err(Failure::Reply(e)) => {
                metrics::command(name, "backend_error");
                if id != 0 {
                    out.push(encoding.error(id, &e));
                }
                Flow::Continue
            }
            Err(Failure::Close(code)) => {
                metrics::command(name, "disconnect");
                Flow::Close(code.into())
            }
            Err(Failure::Disconnect(close)) => {
                metrics::command(name, "disconnect");
                Flow::Close(close)
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
