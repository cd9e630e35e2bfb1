//! `connect` and `refresh`: who the connection is, and for how long; by token, or by
//! the backend's connect and refresh proxies.

use super::backend::unusable;
use super::{Client, CmdResult, Failure};
use crate::channel;
use crate::channel::control::{attach_server_side, ServerSide};
use crate::config::{NamespaceOptions, ProxyKind};
use crate::conn::outbound::CloseReason;
use crate::conn::Identity;
use crate::metrics;
use crate::node::Node;
use crate::proxy::wire::{self, ProxyRequest};
use herald_shared::auth::{now_secs, AuthError, ConnectionClaims, SubscribeOptions};
use herald_shared::protocol::command::{ConnectRequest, RefreshRequest};
use herald_shared::protocol::reply::RefreshResult;
use herald_shared::protocol::{
    ConnectResult, DisconnectCode, ErrorCode, RawJson, ReplyBody, StreamPosition,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

/// Verifies the token (or asks the connect proxy, or allows an anonymous connect), then
/// [`establish`]es the connection with those claims.
pub(in crate::session) async fn connect(c: &mut Client, id: u32, req: ConnectRequest) -> CmdResult {
    if c.conn.is_connected() {
        return Err(Failure::Close(DisconnectCode::BadRequest));
    }
    let client = uuid::Uuid::new_v4().to_string();
    let mut by_proxy = false;
    let (claims, data) = if req.token.is_empty() {
        if c.proxied(ProxyKind::Connect) {
            by_proxy = true;
            match proxy_connect(c, &client, &req).await {
                Ok(Some(answer)) => answer,
                Ok(None) => anonymous(c)?,
                Err(f) => {
                    metrics::connect("proxy_refused");
                    return Err(f);
                }
            }
        } else {
            anonymous(c)?
        }
    } else {
        let Some(verifier) = &c.node.verifier else {
            metrics::connect("no_key");
            return Err(Failure::Close(DisconnectCode::InvalidToken));
        };
        let jwks = c.node.jwks.as_deref();
        match crate::jwks::verify(jwks, || verifier.verify_connection(&req.token)).await {
            Ok(claims) => (claims, None),
            Err(AuthError::Expired) => {
                metrics::connect("token_expired");
                return Err(ErrorCode::TokenExpired.into());
            }
            Err(e) => {
                metrics::connect("invalid_token");
                tracing::info!(client.addr = %c.conn.remote, reason = %e, "connect refused");
                return Err(Failure::Close(DisconnectCode::InvalidToken));
            }
        }
    };
    establish(c, id, req, client, claims, data, by_proxy).await
}

/// A connect without a token and without the connect proxy's say.
fn anonymous(c: &Client) -> Result<(ConnectionClaims, Option<RawJson>), Failure> {
    if !c.node.config.allow_anonymous {
        metrics::connect("unauthorized");
        // No credentials: Centrifugo closes 3501 "bad request".
        return Err(Failure::Close(DisconnectCode::BadRequest));
    }
    Ok((ConnectionClaims::default(), None))
}

/// Asks the connect proxy. Its answer becomes the claims a token would carry (and the
/// reply's `data`); `None`: the backend answered without a `result`, which Centrifugo
/// reads as "no credentials" (anonymous, when allowed).
async fn proxy_connect(
    c: &Client,
    client: &str,
    req: &ConnectRequest,
) -> Result<Option<(ConnectionClaims, Option<RawJson>)>, Failure> {
    let kind = ProxyKind::Connect;
    let request = ProxyRequest {
        data: req.data.as_ref(),
        name: &req.name,
        version: &req.version,
        ..ProxyRequest::new(client, c.conn.encoding())
    };
    let Some(r) = c.ask::<wire::ConnectResult>(kind, &request).await? else {
        return Ok(None);
    };
    let info = wire::pick(r.info, &r.b64info).map_err(|w| unusable(kind, w))?;
    let data = wire::pick(r.data, &r.b64data).map_err(|w| unusable(kind, w))?;
    let mut subs = BTreeMap::new();
    for (channel, o) in r.subs {
        let sub = SubscribeOptions {
            info: wire::pick(o.info, &o.b64info).map_err(|w| unusable(kind, w))?,
            data: wire::pick(o.data, &o.b64data).map_err(|w| unusable(kind, w))?,
            ..Default::default()
        };
        subs.insert(channel, sub);
    }
    // The proxy's `channels` and `subs` both subscribe (a channel in both takes the
    // `subs` options).
    for channel in r.channels {
        subs.entry(channel).or_default();
    }
    let expire_at = wire::unix(r.expire_at);
    let claims = ConnectionClaims {
        sub: r.user,
        exp: expire_at,
        expire_at,
        info,
        channels: Vec::new(),
        subs,
        meta: r.meta,
    };
    Ok(Some((claims, data)))
}

/// Fixes the identity from `claims` (a verified token's or the connect proxy's: one
/// path for both), subscribes the connection server-side to the claims' `subs` (else
/// its `channels`, as Centrifugo does; recovering those the request's `subs` asks to),
/// and queues the reply itself, before the subscriptions go live.
///
/// A connection the connect proxy admitted with an `expire_at` is refreshed by the
/// refresh proxy when that is on (server-side: the reply says it does not expire);
/// otherwise `expire_at` works as a token's.
async fn establish(
    c: &mut Client,
    id: u32,
    req: ConnectRequest,
    client: String,
    claims: ConnectionClaims,
    data: Option<RawJson>,
    by_proxy: bool,
) -> CmdResult {
    let node = c.node.clone();
    let claimed = claimed_channels(&node, claims.server_side())?;
    // Counted on this node, as Centrifugo's `client.user_connection_limit` is.
    let limit = node.config.limits.user_connection_limit;
    if limit > 0 && !claims.sub.is_empty() && node.registry.find(&claims.sub, None).len() >= limit {
        metrics::connect("user_connection_limit");
        return Err(Failure::Close(DisconnectCode::ConnectionLimit));
    }
    let now = now_secs();
    if by_proxy && claims.expire_at.is_some_and(|e| e <= now) {
        metrics::connect("expired");
        return Err(Failure::Close(DisconnectCode::Expired));
    }
    // An `expire_at` already past is refused with 110, as Centrifugo does (its `exp`, if
    // any, was valid: that case is 109 above).
    if claims.expire_at.is_some_and(|at| at < now) {
        metrics::connect("expired");
        return Err(ErrorCode::Expired.into());
    }
    let user = claims.sub;
    c.conn.set_identity(Identity {
        client: client.clone(),
        user: user.clone(),
        info: claims.info,
        meta: claims.meta.clone(),
    });
    let exp = claims.expire_at;
    // Refreshed by the refresh proxy (server-side): the reply says it does not expire.
    let server_refresh = by_proxy && c.proxied(ProxyKind::Refresh);
    let client_exp = if server_refresh { None } else { exp };
    let ttl = client_exp.map(|e| e.saturating_sub(now));
    c.conn
        .expires_at
        .store(client_exp.unwrap_or(0), Ordering::Relaxed);
    if server_refresh {
        c.backend.refresh_at = exp;
    }
    c.backend.meta = claims.meta;
    if !node.config.proxy.after_connect() {
        // No later proxy call will send them: the connection does not keep them.
        c.backend.headers = Vec::new();
    }
    c.node.registry.connected(&c.conn);
    metrics::connect("ok");
    tracing::debug!(client.addr = %c.conn.remote, client = %client, user = %user, "connected");

    // Server-side subscriptions are answered inside the connect reply.
    let mut subs = HashMap::new();
    let mut go_live = Vec::new();
    for (channel, ns, options) in claimed {
        let recover = req
            .subs
            .get(&channel)
            .filter(|sr| sr.recover)
            .map(|sr| StreamPosition {
                offset: sr.offset,
                epoch: sr.epoch.clone(),
            });
        let o = &options.override_;
        let side = ServerSide {
            chan_info: options.info.clone(),
            recover,
            push_join_leave: o.force_push_join_leave.unwrap_or(ns.force_push_join_leave),
            recovery: o.force_recovery.unwrap_or(ns.recovery),
            presence: o.presence,
            join_leave: o.join_leave,
        };
        match attach_server_side(&node, &c.conn, &channel, ns, side).await {
            Ok((mut result, position)) => {
                result.data = options.data.clone();
                subs.insert(channel.clone(), result);
                go_live.push((channel, position));
            }
            // The session's cleanup detaches what was attached; the client reconnects.
            Err(_) => return Err(Failure::Close(DisconnectCode::ServerError)),
        }
    }
    let result = ConnectResult {
        client,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        expires: ttl.is_some(),
        ttl: ttl.map(|t| t.min(u64::from(u32::MAX)) as u32).unwrap_or(0),
        data,
        subs,
        ping: c.node.config.ping_interval.as_secs() as u32,
        pong: true,
        node: c.node.config.node_id.clone(),
    };
    let reply = c.conn.encoding().reply(id, &ReplyBody::Connect(result));
    c.conn.out.push(reply);
    for (channel, position) in go_live {
        c.node.hub.go_live(&channel, c.conn.id, position);
    }
    Ok(None)
}

/// Seconds a connection or subscription gets when its refresh call fails (timeout,
/// backend down): Centrifugo's choice, so a backend outage does not end every session.
pub(in crate::session) const RETRY_REFRESH_SECS: u64 = 60;

/// The refresh proxy's turn: the connection reached its `expire_at`. Returns the close
/// when the backend says it expired (3005) or answers a disconnect.
pub(in crate::session) async fn refresh_by_proxy(c: &mut Client) -> Option<CloseReason> {
    let kind = ProxyKind::Refresh;
    let answer = {
        let request = c.proxy_request();
        c.ask::<wire::RefreshResult>(kind, &request).await
    };
    let now = now_secs();
    match answer {
        Ok(Some(r)) if !r.expired => {
            if r.meta.is_some() {
                c.backend.meta = r.meta;
            }
            match wire::unix(r.expire_at) {
                None => c.backend.refresh_at = None,
                Some(at) if at > now => c.backend.refresh_at = Some(at),
                Some(_) => return Some(DisconnectCode::Expired.into()),
            }
            None
        }
        // Expired, or no result at all (Centrifugo reads both as expired; an `error`
        // answer has no result either).
        Ok(_) | Err(Failure::Reply(_)) => Some(DisconnectCode::Expired.into()),
        Err(Failure::Disconnect(close)) => Some(close),
        Err(_) => {
            c.backend.refresh_at = Some(now + RETRY_REFRESH_SECS);
            None
        }
    }
}

/// A server-side subscription: a channel, its namespace and the claim's options.
type Claimed<'a> = (String, &'a NamespaceOptions, SubscribeOptions);

/// The claim's channels with their namespaces, each once, checked before the connection
/// is anything: a bad name or an unknown namespace fails the connect with that error
/// (Centrifugo answers 102 for an unknown one), more channels than a connection may
/// hold close it 3505 (channel limit).
fn claimed_channels(
    node: &Node,
    channels: Vec<(String, SubscribeOptions)>,
) -> Result<Vec<Claimed<'_>>, Failure> {
    let mut claimed: Vec<Claimed<'_>> = Vec::with_capacity(channels.len());
    for (channel, options) in channels {
        if claimed.iter().any(|(have, _, _)| *have == channel) {
            continue;
        }
        let ns = channel::namespace(node, &channel)?;
        claimed.push((channel, ns, options));
    }
    if claimed.len() > node.config.limits.max_channels_per_connection {
        return Err(Failure::Close(DisconnectCode::ChannelLimit));
    }
    Ok(claimed)
}

/// A new connection token for the same user extends the connection's life.
pub(in crate::session) async fn refresh(c: &mut Client, req: RefreshRequest) -> CmdResult {
    let Some(verifier) = &c.node.verifier else {
        return Err(ErrorCode::NotAvailable.into());
    };
    let jwks = c.node.jwks.as_deref();
    let claims = match crate::jwks::verify(jwks, || verifier.verify_connection(&req.token)).await {
        Ok(claims) => claims,
        // As Centrifugo: an expired refresh token ends the connection (3005).
        Err(AuthError::Expired) => return Err(Failure::Close(DisconnectCode::Expired)),
        Err(_) => return Err(Failure::Close(DisconnectCode::InvalidToken)),
    };
    let Some(ident) = c.conn.identity().cloned() else {
        return Err(Failure::Close(DisconnectCode::BadRequest));
    };
    if claims.sub != ident.user {
        return Err(Failure::Close(DisconnectCode::InvalidToken));
    }
    let exp = claims.expire_at.unwrap_or(0);
    c.conn.expires_at.store(exp, Ordering::Relaxed);
    // As Centrifugo: only `expires` and `ttl` (client and version are the connect's).
    let r = RefreshResult {
        expires: exp != 0,
        ttl: exp.saturating_sub(now_secs()) as u32,
        ..Default::default()
    };
    Ok(Some(ReplyBody::Refresh(r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::cmd::Client;
    use crate::testing;
    use herald_shared::auth::MintClaims;

    fn fresh(change: impl FnOnce(&mut crate::config::NodeConfig)) -> Client {
        let node = testing::node(testing::config(change));
        let conn = testing::unconnected(&node);
        Client::new(node, conn)
    }

    fn token(user: &str) -> String {
        testing::token(user, None)
    }

    fn claiming(user: &str, channels: &[&str]) -> String {
        testing::mint_token(&MintClaims {
            sub: user.into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        })
    }

    /// The connect reply's `connect` object.
    fn reply(c: &Client) -> serde_json::Value {
        let sent = testing::sent(&c.conn);
        let reply: serde_json::Value = serde_json::from_str(&sent[0]).expect("JSON");
        reply["connect"].clone()
    }

    #[tokio::test]
    async fn the_channels_claim_subscribes_server_side() {
        let mut c = fresh(|_| {});
        let mut req = ConnectRequest {
            token: claiming("alice", &["news", "news", "sport"]),
            ..Default::default()
        };
        // Only the claim subscribes: `subs` just says where to recover from.
        req.subs.insert("unclaimed".into(), Default::default());
        assert_eq!(connect(&mut c, 1, req).await, Ok(None));
        assert_eq!(c.conn.user(), "alice");
        assert!(c.conn.is_subscribed("news") && c.conn.is_subscribed("sport"));
        assert!(!c.conn.is_subscribed("unclaimed"));
        let subs = reply(&c)["subs"].clone();
        let mut names: Vec<_> = subs.as_object().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["news", "sport"], "{subs}");
        assert_eq!(subs["news"]["recoverable"], true, "{subs}");
        assert_eq!(subs["news"]["positioned"], true, "{subs}");
        assert!(subs["news"]["epoch"].is_string(), "{subs}");
        assert_eq!(c.node.registry.find("alice", None).len(), 1);
        let again = connect(&mut c, 2, ConnectRequest::default()).await;
        assert_eq!(again, Err(Failure::Close(DisconnectCode::BadRequest)));
    }

    #[tokio::test]
    async fn a_claimed_channel_recovers_from_the_position_in_subs() {
        use crate::channel::publish::{publish, Publish};
        use crate::channel::Caller;
        use herald_shared::protocol::command::SubscribeRequest;
        use herald_shared::protocol::RawJson;

        let mut first = fresh(|_| {});
        let node = first.node.clone();
        let req = ConnectRequest {
            token: claiming("alice", &["news"]),
            ..Default::default()
        };
        connect(&mut first, 1, req).await.unwrap();
        let epoch = reply(&first)["subs"]["news"]["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
        for _ in 0..3 {
            let p = Publish {
                data: Some(RawJson::parse("1").unwrap()),
                ..Default::default()
            };
            publish(&node, Caller::Server, "news", p).await.unwrap();
        }

        let mut again = Client::new(node.clone(), testing::unconnected(&node));
        let mut req = ConnectRequest {
            token: claiming("alice", &["news"]),
            ..Default::default()
        };
        let since = SubscribeRequest {
            recover: true,
            offset: 1,
            epoch,
            ..Default::default()
        };
        req.subs.insert("news".into(), since);
        connect(&mut again, 1, req).await.unwrap();
        let news = reply(&again)["subs"]["news"].clone();
        assert_eq!(news["recovered"], true, "{news}");
        assert_eq!(news["was_recovering"], true, "{news}");
        assert_eq!(news["offset"], 3, "{news}");
        assert_eq!(news["publications"].as_array().unwrap().len(), 2, "{news}");
    }

    #[tokio::test]
    async fn a_bad_claim_refuses_the_connect() {
        let mut c = fresh(|_| {});
        let req = ConnectRequest {
            token: claiming("alice", &["news", "nope:x"]),
            ..Default::default()
        };
        let r = connect(&mut c, 1, req).await;
        assert_eq!(r, Err(Failure::Error(ErrorCode::UnknownChannel)));
        assert!(!c.conn.is_connected() && !c.conn.is_subscribed("news"));

        let mut c = fresh(|c| c.limits.max_channels_per_connection = 1);
        let req = ConnectRequest {
            token: claiming("alice", &["a", "b"]),
            ..Default::default()
        };
        let r = connect(&mut c, 1, req).await;
        assert_eq!(r, Err(Failure::Close(DisconnectCode::ChannelLimit)));
        assert!(!c.conn.is_connected());
    }

    #[tokio::test]
    async fn bad_or_missing_tokens_close() {
        let mut c = fresh(|_| {});
        let req = ConnectRequest {
            token: "nonsense".into(),
            ..Default::default()
        };
        let r = connect(&mut c, 1, req).await;
        assert_eq!(r, Err(Failure::Close(DisconnectCode::InvalidToken)));
        let r = connect(&mut c, 1, ConnectRequest::default()).await;
        assert_eq!(
            r,
            Err(Failure::Close(DisconnectCode::BadRequest)),
            "anonymous off"
        );
        let mut anon = fresh(|c| c.allow_anonymous = true);
        assert_eq!(
            connect(&mut anon, 1, ConnectRequest::default()).await,
            Ok(None)
        );
    }

    #[tokio::test]
    async fn refresh_needs_the_same_user() {
        let mut c = fresh(|_| {});
        let req = ConnectRequest {
            token: token("alice"),
            ..Default::default()
        };
        connect(&mut c, 1, req).await.unwrap();
        let ok = refresh(
            &mut c,
            RefreshRequest {
                token: token("alice"),
            },
        )
        .await;
        assert!(ok.is_ok());
        let other = refresh(
            &mut c,
            RefreshRequest {
                token: token("bob"),
            },
        )
        .await;
        assert_eq!(other, Err(Failure::Close(DisconnectCode::InvalidToken)));
    }
}
