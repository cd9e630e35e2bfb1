//! `connect` and `refresh`: who the connection is, and for how long.

use super::subscribe::prepare;
use super::{to_json, Client, CmdResult, Failure};
use crate::conn::Identity;
use crate::metrics;
use bytes::Bytes;
use herald_shared::auth::{now_secs, AuthError};
use herald_shared::protocol::command::{ConnectRequest, RefreshRequest};
use herald_shared::protocol::reply::{encode_reply, RefreshResult};
use herald_shared::protocol::{ConnectResult, DisconnectCode, ErrorCode};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// Verifies the token (or allows an anonymous connect), fixes the identity, subscribes
/// to the channels asked for inside connect, and queues the reply itself, before the
/// subscriptions go live.
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
    let client = uuid::Uuid::new_v4().to_string();
    c.conn.set_identity(Identity {
        client: client.clone(),
        user: user.clone(),
        info,
    });
    c.allowed = channels.into_iter().collect();
    let ttl = exp.map(|e| e.saturating_sub(now_secs()));
    c.conn.expires_at.store(exp.unwrap_or(0), Ordering::Relaxed);
    c.node.registry.connected(&c.conn);
    metrics::connect("ok");
    tracing::debug!(client.addr = %c.conn.remote, client = %client, user = %user, "connected");

    // Subscriptions requested inside connect are answered inside the connect reply.
    let mut subs = HashMap::new();
    let mut go_live = Vec::new();
    for (channel, mut sr) in req.subs {
        sr.channel = channel.clone();
        if let Ok((result, position)) = prepare(c, sr).await {
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
        ping: c.node.config.ping_interval.as_secs() as u32,
        pong: true,
        node: c.node.config.node_id.clone(),
    };
    c.conn
        .out
        .push(Bytes::from(encode_reply(id, "connect", &result)));
    for (channel, position) in go_live {
        c.node.hub.go_live(&channel, c.conn.id, position);
    }
    Ok(None)
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
    Ok(Some(to_json(&r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::cmd::Client;
    use crate::testing;

    fn fresh(change: impl FnOnce(&mut crate::config::NodeConfig)) -> Client {
        let node = testing::node(testing::config(change));
        let conn = testing::unconnected(&node);
        Client::new(node, conn)
    }

    fn token(user: &str) -> String {
        testing::token(user, None)
    }

    #[tokio::test]
    async fn a_valid_token_connects_and_subscribes() {
        let mut c = fresh(|_| {});
        let mut req = ConnectRequest {
            token: token("alice"),
            ..Default::default()
        };
        req.subs.insert("news".into(), Default::default());
        assert_eq!(connect(&mut c, 1, req).await, Ok(None));
        assert_eq!(c.conn.user(), "alice");
        assert!(c.conn.is_subscribed("news"));
        let sent = testing::sent(&c.conn);
        assert!(
            sent[0].starts_with(r#"{"id":1,"connect":{"client":"#),
            "{sent:?}"
        );
        assert!(sent[0].contains(r#""news""#), "{sent:?}");
        assert_eq!(c.node.registry.find("alice", None).len(), 1);
        let again = connect(&mut c, 2, ConnectRequest::default()).await;
        assert_eq!(again, Err(Failure::Close(DisconnectCode::BadRequest)));
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
