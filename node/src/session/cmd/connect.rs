//! `connect` and `refresh`: who the connection is, and for how long.

use super::{Client, CmdResult, Failure};
use crate::channel;
use crate::channel::control::attach_server_side;
use crate::config::NamespaceOptions;
use crate::conn::Identity;
use crate::metrics;
use crate::node::Node;
use herald_shared::auth::{now_secs, AuthError};
use herald_shared::protocol::command::{ConnectRequest, RefreshRequest};
use herald_shared::protocol::reply::RefreshResult;
use herald_shared::protocol::{
    ConnectResult, DisconnectCode, ErrorCode, ReplyBody, StreamPosition,
};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// Verifies the token (or allows an anonymous connect), fixes the identity, subscribes
/// the connection server-side to the channels of the token's `channels` claim (as
/// Centrifugo does; recovering those the request's `subs` asks to), and queues the
/// reply itself, before the subscriptions go live.
pub(in crate::session) async fn connect(c: &mut Client, id: u32, req: ConnectRequest) -> CmdResult {
    if c.conn.is_connected() {
        return Err(Failure::Close(DisconnectCode::BadRequest));
    }
    let (user, info, exp, channels) = if req.token.is_empty() {
        if !c.node.config.allow_anonymous {
            metrics::connect("unauthorized");
            return Err(Failure::Close(DisconnectCode::InvalidToken));
        }
        (String::new(), None, None, Vec::new())
    } else {
        let Some(verifier) = &c.node.verifier else {
            metrics::connect("no_key");
            return Err(Failure::Close(DisconnectCode::InvalidToken));
        };
        match verifier.verify_connection(&req.token) {
            Ok(claims) => (claims.sub, claims.info, claims.exp, claims.channels),
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
    let node = c.node.clone();
    let claimed = claimed_channels(&node, channels)?;
    let client = uuid::Uuid::new_v4().to_string();
    c.conn.set_identity(Identity {
        client: client.clone(),
        user: user.clone(),
        info,
    });
    let ttl = exp.map(|e| e.saturating_sub(now_secs()));
    c.conn.expires_at.store(exp.unwrap_or(0), Ordering::Relaxed);
    c.node.registry.connected(&c.conn);
    metrics::connect("ok");
    tracing::debug!(client.addr = %c.conn.remote, client = %client, user = %user, "connected");

    // Server-side subscriptions are answered inside the connect reply.
    let mut subs = HashMap::new();
    let mut go_live = Vec::new();
    for (channel, ns) in claimed {
        let recover = req
            .subs
            .get(&channel)
            .filter(|sr| sr.recover)
            .map(|sr| StreamPosition {
                offset: sr.offset,
                epoch: sr.epoch.clone(),
            });
        match attach_server_side(&node, &c.conn, &channel, ns, None, recover).await {
            Ok((result, position)) => {
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
        data: None,
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

/// The claim's channels with their namespaces, each once, checked before the connection
/// is anything: a bad name or an unknown namespace fails the connect with that error
/// (Centrifugo answers 102 for an unknown one), more channels than a connection may
/// hold close it 3505 (channel limit).
fn claimed_channels(
    node: &Node,
    channels: Vec<String>,
) -> Result<Vec<(String, &NamespaceOptions)>, Failure> {
    let mut claimed: Vec<(String, &NamespaceOptions)> = Vec::with_capacity(channels.len());
    for channel in channels {
        if claimed.iter().any(|(have, _)| *have == channel) {
            continue;
        }
        let ns = channel::namespace(node, &channel)?;
        claimed.push((channel, ns));
    }
    if claimed.len() > node.config.limits.max_channels_per_connection {
        return Err(Failure::Close(DisconnectCode::ChannelLimit));
    }
    Ok(claimed)
}

/// A new connection token for the same user extends the connection's life.
pub(in crate::session) fn refresh(c: &mut Client, req: RefreshRequest) -> CmdResult {
    let Some(verifier) = &c.node.verifier else {
        return Err(ErrorCode::NotAvailable.into());
    };
    let claims = match verifier.verify_connection(&req.token) {
        Ok(claims) => claims,
        Err(AuthError::Expired) => return Err(ErrorCode::TokenExpired.into()),
        Err(_) => return Err(Failure::Close(DisconnectCode::InvalidToken)),
    };
    let Some(ident) = c.conn.identity().cloned() else {
        return Err(Failure::Close(DisconnectCode::BadRequest));
    };
    if claims.sub != ident.user {
        return Err(Failure::Close(DisconnectCode::InvalidToken));
    }
    let exp = claims.exp.unwrap_or(0);
    c.conn.expires_at.store(exp, Ordering::Relaxed);
    let r = RefreshResult {
        client: ident.client,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        expires: exp != 0,
        ttl: exp.saturating_sub(now_secs()) as u32,
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
            Err(Failure::Close(DisconnectCode::InvalidToken)),
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
        );
        assert!(ok.is_ok());
        let other = refresh(
            &mut c,
            RefreshRequest {
                token: token("bob"),
            },
        );
        assert_eq!(other, Err(Failure::Close(DisconnectCode::InvalidToken)));
    }
}
