//! The client protocol: what each command does.
//!
//! Replies go into the connection's outbound queue in command order. A command either
//! gets a reply, an error reply (the connection stays), or ends the connection with a
//! disconnect code (the protocol's rule for malformed input and bad credentials).

use super::conn::{ChannelState, Conn, Identity};
use super::outbound::CloseReason;
use crate::broker::HistoryQuery;
use crate::config::NamespaceOptions;
use crate::metrics;
use crate::node::Node;
use bytes::Bytes;
use herald_shared::auth::{now_secs, AuthError};
use herald_shared::protocol::command::{
    ChannelRequest, ConnectRequest, HistoryRequest, PublishRequest, RefreshRequest,
    SubRefreshRequest, SubscribeRequest, FLAG_REJECT_UNRECOVERED,
};
use herald_shared::protocol::reply::{
    encode_error, encode_reply, encode_reply_raw, PresenceResult, RefreshResult,
};
use herald_shared::protocol::{
    decode_frame, ConnectResult, DisconnectCode, ErrorCode, Method, PresenceStatsResult,
    Publication, ReplyError, StreamPosition, SubscribeResult,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Commands one frame may carry.
const MAX_COMMANDS_PER_FRAME: usize = 100;
/// Longest channel name accepted.
pub const MAX_CHANNEL_LEN: usize = 255;

/// What the reader does after a frame.
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Close the connection with this reason.
    Close(CloseReason),
}

/// How a command ends when it does not succeed.
pub enum Failure {
    /// Error reply; the connection stays.
    Error(ErrorCode),
    /// The connection ends.
    Close(DisconnectCode),
}

impl From<ErrorCode> for Failure {
    fn from(e: ErrorCode) -> Self {
        Failure::Error(e)
    }
}

type CmdResult = Result<Option<Vec<u8>>, Failure>;

/// Token bucket: `rate` commands per second with a burst of the same size.
struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32) -> Self {
        RateLimit {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The protocol state of one connection, driven by its reader.
pub struct Session {
    node: Arc<Node>,
    conn: Arc<Conn>,
    limit: RateLimit,
    /// Channels the connection token allows (`channels` claim).
    allowed: HashSet<String>,
}

impl Session {
    /// A session for a fresh connection.
    pub fn new(node: Arc<Node>, conn: Arc<Conn>) -> Self {
        let rate = node.config.limits.commands_per_second;
        Session {
            node,
            conn,
            limit: RateLimit::new(rate),
            allowed: HashSet::new(),
        }
    }

    /// Handles one complete text message.
    pub async fn handle_frame(&mut self, payload: &[u8]) -> Flow {
        self.node.metrics.bytes_in.increment(payload.len() as u64);
        // Any message proves the client is alive.
        self.conn.awaiting_pong.store(false, Ordering::Release);
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
            if matches!(method, Method::Pong) && !self.conn.is_connected() {
                return Flow::Close(DisconnectCode::BadRequest.into());
            }
            // Pongs count too: an SDK sends one per ping, a flood of `{}` is a flood.
            if !self.limit.allow() {
                metrics::command(method.name(), "too_many_requests");
                return Flow::Close(DisconnectCode::TooManyRequests.into());
            }
            if matches!(method, Method::Pong) {
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
        if !self.conn.is_connected() && !matches!(method, Method::Connect(_)) {
            metrics::command(name, "no_connect");
            return Flow::Close(DisconnectCode::BadRequest.into());
        }
        let result = match method {
            Method::Connect(r) => self.connect(id, r).await,
            Method::Subscribe(r) => self.subscribe(id, r).await,
            Method::Unsubscribe(r) => self.unsubscribe(r).await,
            Method::Publish(r) => self.publish(r).await,
            Method::Presence(r) => self.presence(r).await,
            Method::PresenceStats(r) => self.presence_stats(r).await,
            Method::History(r) => self.history(r).await,
            Method::Refresh(r) => self.refresh(r),
            Method::SubRefresh(r) => self.sub_refresh(r),
            Method::Ping => Ok(Some(b"{}".to_vec())),
            // No RPC or send handler is configured on this node.
            Method::Rpc(_) => Err(ErrorCode::MethodNotFound.into()),
            Method::Send(_) => Ok(None),
            Method::Pong => Ok(None),
            Method::Unknown => Err(ErrorCode::MethodNotFound.into()),
        };
        match result {
            Ok(reply) => {
                metrics::command(name, "ok");
                // `connect` and `subscribe` queue their own replies (None here).
                if let Some(body) = reply {
                    if id != 0 {
                        self.conn
                            .out
                            .push(Bytes::from(encode_reply_raw(id, name, &body)));
                    }
                }
                Flow::Continue
            }
            Err(Failure::Error(code)) => {
                metrics::command(name, error_label(code));
                if id != 0 {
                    let e: ReplyError = code.into();
                    self.conn.out.push(Bytes::from(encode_error(id, &e)));
                }
                Flow::Continue
            }
            Err(Failure::Close(code)) => {
                metrics::command(name, "disconnect");
                Flow::Close(code.into())
            }
        }
    }

    async fn connect(&mut self, id: u32, req: ConnectRequest) -> CmdResult {
        if self.conn.is_connected() {
            return Err(Failure::Close(DisconnectCode::BadRequest));
        }
        let (user, info, exp, channels) = if req.token.is_empty() {
            if !self.node.config.allow_anonymous {
                metrics::connect("unauthorized");
                return Err(Failure::Close(DisconnectCode::InvalidToken));
            }
            (String::new(), None, None, Vec::new())
        } else {
            let Some(verifier) = &self.node.verifier else {
                metrics::connect("no_key");
                return Err(Failure::Close(DisconnectCode::InvalidToken));
            };
            match verifier.verify_connection(&req.token) {
                Ok(c) => (c.sub, c.info, c.exp, c.channels),
                Err(AuthError::Expired) => {
                    metrics::connect("token_expired");
                    return Err(ErrorCode::TokenExpired.into());
                }
                Err(e) => {
                    metrics::connect("invalid_token");
                    tracing::info!(client.addr = %self.conn.remote, reason = %e, "connect refused");
                    return Err(Failure::Close(DisconnectCode::InvalidToken));
                }
            }
        };
        let client = uuid::Uuid::new_v4().to_string();
        self.conn.set_identity(Identity {
            client: client.clone(),
            user: user.clone(),
            info,
        });
        self.allowed = channels.into_iter().collect();
        let ttl = exp.map(|e| e.saturating_sub(now_secs()));
        self.conn
            .expires_at
            .store(exp.unwrap_or(0), Ordering::Relaxed);
        self.node.registry.insert(self.conn.clone());
        metrics::connect("ok");
        tracing::debug!(client.addr = %self.conn.remote, client = %client, user = %user, "connected");

        // Subscriptions requested inside connect are answered inside the connect reply.
        let mut subs = std::collections::HashMap::new();
        let mut go_live = Vec::new();
        for (channel, mut sr) in req.subs {
            sr.channel = channel.clone();
            if let Ok((result, position)) = self.subscribe_prepare(sr).await {
                subs.insert(channel.clone(), result);
                go_live.push((channel, position));
            }
        }
        let result = ConnectResult {
            client,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            expires: ttl.is_some(),
            ttl: ttl.map(|t| t.min(u64::from(u32::MAX)) as u32).unwrap_or(0),
            data: None,
            subs,
            ping: self.node.config.ping_interval.as_secs() as u32,
            pong: true,
            node: self.node.config.node_id.clone(),
        };
        self.conn
            .out
            .push(Bytes::from(encode_reply(id, "connect", &result)));
        for (channel, position) in go_live {
            self.node.hub.go_live(&channel, self.conn.id, position);
        }
        Ok(None)
    }

    /// Checks whether this connection may subscribe, returning the `chan_info` and
    /// expiry that come with a subscription token.
    fn authorize_subscribe(
        &self,
        req: &SubscribeRequest,
        ns: &NamespaceOptions,
    ) -> Result<ChannelState, Failure> {
        let user = self.conn.identity().map(|i| i.user.as_str()).unwrap_or("");
        let client = self
            .conn
            .identity()
            .map(|i| i.client.as_str())
            .unwrap_or("");
        if !req.token.is_empty() {
            let Some(verifier) = &self.node.verifier else {
                return Err(ErrorCode::PermissionDenied.into());
            };
            return match verifier.verify_subscription(&req.token) {
                // A token bound to one connection (`client` claim) is good for that one only.
                Ok(c)
                    if c.channel == req.channel
                        && c.sub == user
                        && c.client.as_deref().is_none_or(|cl| cl == client) =>
                {
                    Ok(ChannelState {
                        chan_info: c.info,
                        expires_at: c.exp.unwrap_or(0),
                    })
                }
                Ok(_) => Err(ErrorCode::PermissionDenied.into()),
                Err(AuthError::Expired) => Err(ErrorCode::TokenExpired.into()),
                Err(_) => Err(ErrorCode::PermissionDenied.into()),
            };
        }
        let private = req.channel.starts_with('$');
        if self.allowed.contains(&req.channel) || (!private && ns.allow_subscribe) {
            Ok(ChannelState::default())
        } else {
            Err(ErrorCode::PermissionDenied.into())
        }
    }

    /// Everything of subscribe except queuing the reply: registers the subscriber
    /// (syncing), reads the position or the missed publications, records presence and
    /// joins. Returns the reply and the offset the reply delivers up to, for go-live.
    async fn subscribe_prepare(
        &mut self,
        req: SubscribeRequest,
    ) -> Result<(SubscribeResult, u64), Failure> {
        let channel = req.channel.clone();
        if channel.is_empty() || channel.len() > MAX_CHANNEL_LEN {
            return Err(ErrorCode::BadRequest.into());
        }
        let node = self.node.clone();
        let ns = node
            .config
            .namespaces
            .for_channel(&channel)
            .ok_or(ErrorCode::UnknownChannel)?;
        {
            let chans = self.conn.channels.lock().unwrap_or_else(|e| e.into_inner());
            if chans.contains_key(&channel) {
                return Err(ErrorCode::AlreadySubscribed.into());
            }
            if chans.len() >= node.config.limits.max_channels_per_connection {
                return Err(ErrorCode::LimitExceeded.into());
            }
        }
        let state = self.authorize_subscribe(&req, ns)?;
        let recover = (req.recover && ns.recovery).then(|| StreamPosition {
            offset: req.offset,
            epoch: req.epoch.clone(),
        });
        let options = AttachOptions {
            join_leave: req.join_leave,
            recover,
            reject_unrecovered: req.flag & FLAG_REJECT_UNRECOVERED != 0,
        };
        attach(&node, &self.conn, &channel, ns, state, options).await
    }

    async fn subscribe(&mut self, id: u32, req: SubscribeRequest) -> CmdResult {
        let channel = req.channel.clone();
        let (result, delivered_up_to) = self.subscribe_prepare(req).await?;
        self.conn
            .out
            .push(Bytes::from(encode_reply(id, "subscribe", &result)));
        self.node
            .hub
            .go_live(&channel, self.conn.id, delivered_up_to);
        Ok(None)
    }

    async fn unsubscribe(&mut self, req: ChannelRequest) -> CmdResult {
        unsubscribe_conn(&self.node, &self.conn, &req.channel).await;
        Ok(Some(b"{}".to_vec()))
    }

    async fn publish(&mut self, req: PublishRequest) -> CmdResult {
        let ns = self.channel_ns(&req.channel)?;
        let subscribed = self.is_subscribed(&req.channel);
        if !(ns.allow_publish && subscribed) {
            return Err(ErrorCode::PermissionDenied.into());
        }
        let Some(data) = req.data else {
            return Err(ErrorCode::BadRequest.into());
        };
        let chan_info = self.chan_info(&req.channel);
        let publication = Publication {
            data,
            info: Some(self.conn.client_info(chan_info)),
            offset: 0,
            tags: BTreeMap::new(),
        };
        self.node
            .broker
            .publish(&req.channel, publication, &ns, false, None)
            .await
            .map_err(|e| {
                tracing::warn!(channel = %req.channel, error = %e, "publish failed");
                ErrorCode::Internal
            })?;
        self.node.metrics.publications.increment(1);
        Ok(Some(b"{}".to_vec()))
    }

    async fn presence(&mut self, req: ChannelRequest) -> CmdResult {
        let ns = self.channel_ns(&req.channel)?;
        self.check_presence(&req.channel, &ns)?;
        let presence = self
            .node
            .broker
            .presence(&req.channel)
            .await
            .map_err(|_| ErrorCode::Internal)?;
        Ok(Some(to_json(&PresenceResult { presence })))
    }

    async fn presence_stats(&mut self, req: ChannelRequest) -> CmdResult {
        let ns = self.channel_ns(&req.channel)?;
        self.check_presence(&req.channel, &ns)?;
        let s = self
            .node
            .broker
            .presence_stats(&req.channel)
            .await
            .map_err(|_| ErrorCode::Internal)?;
        let r = PresenceStatsResult {
            num_clients: s.clients as u32,
            num_users: s.users as u32,
        };
        Ok(Some(to_json(&r)))
    }

    async fn history(&mut self, req: HistoryRequest) -> CmdResult {
        let ns = self.channel_ns(&req.channel)?;
        if !ns.has_history() {
            return Err(ErrorCode::NotAvailable.into());
        }
        if !(ns.allow_history && self.is_subscribed(&req.channel)) {
            return Err(ErrorCode::PermissionDenied.into());
        }
        let query = HistoryQuery {
            since: req.since.map(StreamPosition::from),
            limit: match req.limit {
                0 => Some(0),
                n if n < 0 => None,
                n => Some(n as usize),
            },
            reverse: req.reverse,
            establish_position: false,
        };
        let h = self
            .node
            .broker
            .history(&req.channel, &query, &ns)
            .await
            .map_err(|_| ErrorCode::Internal)?;
        if let Some(since) = &query.since {
            if since.epoch != h.epoch {
                return Err(ErrorCode::UnrecoverablePosition.into());
            }
        }
        Ok(Some(to_json(&h)))
    }

    fn refresh(&mut self, req: RefreshRequest) -> CmdResult {
        let Some(verifier) = &self.node.verifier else {
            return Err(ErrorCode::NotAvailable.into());
        };
        let claims = match verifier.verify_connection(&req.token) {
            Ok(c) => c,
            Err(AuthError::Expired) => return Err(ErrorCode::TokenExpired.into()),
            Err(_) => return Err(Failure::Close(DisconnectCode::InvalidToken)),
        };
        let Some(ident) = self.conn.identity().cloned() else {
            return Err(Failure::Close(DisconnectCode::BadRequest));
        };
        if claims.sub != ident.user {
            return Err(Failure::Close(DisconnectCode::InvalidToken));
        }
        let exp = claims.exp.unwrap_or(0);
        self.conn.expires_at.store(exp, Ordering::Relaxed);
        let r = RefreshResult {
            client: ident.client,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            expires: exp != 0,
            ttl: exp.saturating_sub(now_secs()) as u32,
        };
        Ok(Some(to_json(&r)))
    }

    fn sub_refresh(&mut self, req: SubRefreshRequest) -> CmdResult {
        let Some(verifier) = &self.node.verifier else {
            return Err(ErrorCode::NotAvailable.into());
        };
        let claims = match verifier.verify_subscription(&req.token) {
            Ok(c) => c,
            Err(AuthError::Expired) => return Err(ErrorCode::TokenExpired.into()),
            Err(_) => return Err(ErrorCode::PermissionDenied.into()),
        };
        let user = self
            .conn
            .identity()
            .map(|i| i.user.clone())
            .unwrap_or_default();
        if claims.channel != req.channel || claims.sub != user {
            return Err(ErrorCode::PermissionDenied.into());
        }
        let exp = claims.exp.unwrap_or(0);
        {
            let mut chans = self.conn.channels.lock().unwrap_or_else(|e| e.into_inner());
            let Some(st) = chans.get_mut(&req.channel) else {
                return Err(ErrorCode::BadRequest.into());
            };
            st.expires_at = exp;
        }
        let r = RefreshResult {
            expires: exp != 0,
            ttl: exp.saturating_sub(now_secs()) as u32,
            ..Default::default()
        };
        Ok(Some(to_json(&r)))
    }

    fn channel_ns(&self, channel: &str) -> Result<NamespaceOptions, Failure> {
        if channel.is_empty() || channel.len() > MAX_CHANNEL_LEN {
            return Err(ErrorCode::BadRequest.into());
        }
        self.node
            .config
            .namespaces
            .for_channel(channel)
            .cloned()
            .ok_or(Failure::Error(ErrorCode::UnknownChannel))
    }

    fn check_presence(&self, channel: &str, ns: &NamespaceOptions) -> Result<(), Failure> {
        if !ns.presence {
            return Err(ErrorCode::NotAvailable.into());
        }
        if !(ns.allow_presence && self.is_subscribed(channel)) {
            return Err(ErrorCode::PermissionDenied.into());
        }
        Ok(())
    }

    fn is_subscribed(&self, channel: &str) -> bool {
        self.conn
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(channel)
    }

    fn chan_info(&self, channel: &str) -> Option<herald_shared::protocol::RawJson> {
        self.conn
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .and_then(|s| s.chan_info.clone())
    }
}

/// How a subscription is attached.
#[derive(Clone, Debug, Default)]
pub struct AttachOptions {
    /// The client asked for join/leave pushes.
    pub join_leave: bool,
    /// Recover from this position.
    pub recover: Option<StreamPosition>,
    /// Answer error 112 instead of `recovered: false`.
    pub reject_unrecovered: bool,
}

/// Subscribes a connection to a channel it is allowed on (authorisation is the caller's):
/// registers it in the hub as syncing, reads the stream position or the missed
/// publications, records presence and the join. Returns the subscribe result and the
/// offset it delivers up to; the caller queues the reply, then calls `hub.go_live`.
pub async fn attach(
    node: &Node,
    conn: &Arc<Conn>,
    channel: &str,
    ns: &NamespaceOptions,
    state: ChannelState,
    options: AttachOptions,
) -> Result<(SubscribeResult, u64), Failure> {
    node.hub.add(
        channel,
        conn.id,
        conn.out.clone(),
        options.join_leave && ns.join_leave,
        true,
    );
    // Every subscriber waits for the broker: the first one starts live delivery, the
    // others must not read history before it is in place.
    if let Err(e) = node.broker.subscribe(channel).await {
        tracing::warn!(channel = %channel, error = %e, "broker subscribe failed");
        detach_hub(node, conn, channel).await;
        return Err(ErrorCode::Internal.into());
    }

    let mut result = SubscribeResult::default();
    let mut delivered_up_to = 0;
    if ns.has_history() {
        let (position, publications, recovered) = match &options.recover {
            Some(since) => match node.broker.recover(channel, since, ns).await {
                Ok(r) => (r.position, r.publications, Some(r.recovered)),
                Err(e) => {
                    tracing::warn!(channel = %channel, error = %e, "recovery read failed");
                    detach_hub(node, conn, channel).await;
                    return Err(ErrorCode::Internal.into());
                }
            },
            None => {
                let query = HistoryQuery {
                    limit: Some(0),
                    establish_position: true,
                    ..Default::default()
                };
                match node.broker.history(channel, &query, ns).await {
                    Ok(h) => (h.position(), Vec::new(), None),
                    Err(e) => {
                        tracing::warn!(channel = %channel, error = %e, "position read failed");
                        detach_hub(node, conn, channel).await;
                        return Err(ErrorCode::Internal.into());
                    }
                }
            }
        };
        delivered_up_to = position.offset;
        result.epoch = position.epoch;
        result.offset = position.offset;
        result.recoverable = ns.recovery;
        result.positioned = true;
        if let Some(recovered) = recovered {
            result.was_recovering = true;
            if recovered {
                result.recovered = true;
                result.publications = publications;
            } else if options.reject_unrecovered {
                detach_hub(node, conn, channel).await;
                return Err(ErrorCode::UnrecoverablePosition.into());
            }
            // Not recoverable: no publications at all, never a partial set.
        }
    }
    if state.expires_at != 0 {
        result.expires = true;
        result.ttl = state.expires_at.saturating_sub(now_secs()) as u32;
    }

    let info = conn.client_info(state.chan_info.clone());
    conn.channels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(channel.to_owned(), state);
    node.metrics.subscriptions.increment(1.0);
    if ns.presence {
        if let Err(e) = node.broker.add_presence(channel, &info.client, &info).await {
            tracing::warn!(channel = %channel, error = %e, "presence add failed");
        }
    }
    if ns.join_leave {
        if let Err(e) = node.broker.publish_join(channel, &info, ns).await {
            tracing::warn!(channel = %channel, error = %e, "join publish failed");
        }
    }
    Ok((result, delivered_up_to))
}

async fn detach_hub(node: &Node, conn: &Conn, channel: &str) {
    if node.hub.remove(channel, conn.id) {
        let _ = node.broker.unsubscribe(channel).await;
    }
}

/// Removes one subscription of a connection: hub, presence, leave push.
/// Used by the client's `unsubscribe`, the server API and connection close.
pub async fn unsubscribe_conn(node: &Node, conn: &Conn, channel: &str) -> bool {
    let state = conn
        .channels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(channel);
    let Some(state) = state else {
        return false;
    };
    node.metrics.subscriptions.decrement(1.0);
    if node.hub.remove(channel, conn.id) {
        if let Err(e) = node.broker.unsubscribe(channel).await {
            tracing::warn!(channel = %channel, error = %e, "broker unsubscribe failed");
        }
    }
    if let Some(ns) = node.config.namespaces.for_channel(channel) {
        let info = conn.client_info(state.chan_info);
        if ns.presence {
            let _ = node.broker.remove_presence(channel, &info.client).await;
        }
        if ns.join_leave {
            let moving = node.draining.load(std::sync::atomic::Ordering::Relaxed)
                || node.stop.is_cancelled();
            let _ = node.broker.publish_leave(channel, &info, ns, moving).await;
        }
    }
    true
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("reply types always serialise")
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
