//! `subscribe`, `unsubscribe` and `sub_refresh`: the client's side of a subscription
//! (tokens, claims, the subscribe and sub_refresh proxies, per-connection limits);
//! attaching is a channel operation.

use super::backend::unusable;
use super::{Client, CmdResult, Failure};
use crate::channel;
use crate::channel::subscribe::{attach, detach, AttachOptions};
use crate::config::{NamespaceOptions, ProxyKind};
use crate::conn::outbound::CloseReason;
use crate::conn::ChannelState;
use crate::proxy::wire::{self, ProxyRequest};
use herald_shared::auth::{now_secs, AuthError, SubscribeOverride};
use herald_shared::protocol::codes::unsubscribe;
use herald_shared::protocol::command::{
    ChannelRequest, SubRefreshRequest, SubscribeRequest, FLAG_REJECT_UNRECOVERED,
};
use herald_shared::protocol::filter::FilterNode;
use herald_shared::protocol::reply::RefreshResult;
use herald_shared::protocol::{
    DisconnectCode, ErrorCode, PushBody, RawJson, ReplyBody, StreamPosition, SubscribeResult,
};
use std::sync::Arc;

/// Subscribes and queues the reply itself, then lets the subscription go live (the
/// publications held back meanwhile follow the reply).
pub(in crate::session) async fn subscribe(
    c: &mut Client,
    id: u32,
    req: SubscribeRequest,
) -> CmdResult {
    let channel = req.channel.clone();
    let (result, delivered_up_to) = prepare(c, req).await?;
    let reply = c.conn.encoding().reply(id, &ReplyBody::Subscribe(result));
    c.conn.out.push(reply);
    c.node.hub.go_live(&channel, c.conn.id, delivered_up_to);
    Ok(None)
}

/// Everything of subscribe except queuing the reply: checks, then attaches (as
/// syncing). Returns the reply and the offset it delivers up to, for go-live.
async fn prepare(c: &mut Client, req: SubscribeRequest) -> Result<(SubscribeResult, u64), Failure> {
    let node = c.node.clone();
    let ns = channel::namespace(&node, &req.channel)?;
    if c.conn.is_subscribed(&req.channel) {
        return Err(ErrorCode::AlreadySubscribed.into());
    }
    if c.conn.num_channels() >= node.config.limits.max_channels_per_connection {
        return Err(ErrorCode::LimitExceeded.into());
    }
    let delta = delta_mode(&req, ns)?;
    let filter = tags_filter(c, &req, ns)?;
    let proxied = req.token.is_empty()
        && !req.channel.starts_with('$')
        && ns.proxy_subscribe
        && c.proxied(ProxyKind::Subscribe);
    let (state, data, refresh_at, over) = if proxied {
        let (state, data, at) = proxy_subscribe(c, &req, ns).await?;
        (state, data, at, SubscribeOverride::default())
    } else {
        let (state, data, over) = authorize(c, &req, ns).await?;
        (state, data, None, over)
    };
    let recovery = over.force_recovery.unwrap_or(ns.recovery);
    let recover = (req.recover && recovery).then(|| StreamPosition {
        offset: req.offset,
        epoch: req.epoch.clone(),
    });
    let options = AttachOptions {
        join_leave: req.join_leave,
        force_push_join_leave: over.force_push_join_leave.unwrap_or(false),
        recovery: over.force_recovery,
        recover,
        reject_unrecovered: req.flag & FLAG_REJECT_UNRECOVERED != 0,
        delta,
        filter,
    };
    let (mut result, up_to) = attach(&node, &c.conn, &req.channel, ns, state, options)
        .await
        .map_err(Failure::Error)?;
    result.data = data;
    if let Some(at) = refresh_at {
        c.backend.sub_refresh_at.insert(req.channel.clone(), at);
    }
    Ok((result, up_to))
}

/// Asks the subscribe proxy. Returns the subscription's state (`info` as `chan_info`),
/// the reply's `data`, and when the sub_refresh proxy is to be asked. An `expire_at`
/// without the sub_refresh proxy works as a subscription token's `exp`.
async fn proxy_subscribe(
    c: &Client,
    req: &SubscribeRequest,
    ns: &NamespaceOptions,
) -> Result<(ChannelState, Option<RawJson>, Option<u64>), Failure> {
    let kind = ProxyKind::Subscribe;
    let request = ProxyRequest {
        channel: &req.channel,
        data: req.data.as_ref(),
        ..c.proxy_request()
    };
    let r = c
        .ask::<wire::SubscribeResult>(kind, &request)
        .await?
        .unwrap_or_default();
    let chan_info = wire::pick(r.info, &r.b64info).map_err(|w| unusable(kind, w))?;
    let data = wire::pick(r.data, &r.b64data).map_err(|w| unusable(kind, w))?;
    let exp = wire::unix(r.expire_at);
    if exp.is_some_and(|e| e <= now_secs()) {
        return Err(ErrorCode::Expired.into());
    }
    let by_backend = ns.proxy_sub_refresh && c.proxied(ProxyKind::SubRefresh);
    let state = ChannelState {
        chan_info,
        expires_at: if by_backend { 0 } else { exp.unwrap_or(0) },
        ..Default::default()
    };
    Ok((state, data, exp.filter(|_| by_backend)))
}

/// The sub_refresh proxy's turn: a proxied subscription reached its `expire_at`. The
/// backend extends it, or it ends with an unsubscribe push (2501, the SDK subscribes
/// again, asking the subscribe proxy); a disconnect answer closes the connection.
pub(in crate::session) async fn sub_refresh_by_proxy(
    c: &mut Client,
    channel: &str,
) -> Option<CloseReason> {
    c.backend.sub_refresh_at.remove(channel);
    if !c.conn.is_subscribed(channel) {
        return None;
    }
    let kind = ProxyKind::SubRefresh;
    let answer = {
        let request = ProxyRequest {
            channel,
            ..c.proxy_request()
        };
        c.ask::<wire::SubRefreshResult>(kind, &request).await
    };
    let now = now_secs();
    let extend_to = match answer {
        Ok(Some(r)) if !r.expired => match wire::unix(r.expire_at) {
            None => return None,
            Some(at) if at > now => Some(at),
            Some(_) => None,
        },
        Ok(_) | Err(Failure::Reply(_)) => None,
        Err(Failure::Disconnect(close)) => return Some(close),
        Err(_) => Some(now + super::connect::RETRY_REFRESH_SECS),
    };
    match extend_to {
        Some(at) => {
            c.backend.sub_refresh_at.insert(channel.to_owned(), at);
        }
        None => {
            if detach(&c.node, &c.conn, channel).await {
                let body = PushBody::Unsubscribe {
                    code: unsubscribe::EXPIRED,
                    reason: "subscription expired",
                };
                c.conn.out.push(c.conn.encoding().push(channel, &body));
            }
        }
    }
    None
}

/// Whether the subscription runs in delta mode, as Centrifugo decides it: an unknown
/// delta type ends the connection (3501 bad request); `fossil` in a namespace without
/// it in `allowed_delta_types` is no error, the reply just has no `delta: true` and
/// publications come as usual (the SDKs negotiate by that field).
fn delta_mode(req: &SubscribeRequest, ns: &NamespaceOptions) -> Result<bool, Failure> {
    match req.delta.as_str() {
        "" => Ok(false),
        "fossil" => Ok(ns.allows_fossil()),
        other => {
            tracing::info!(delta = %other, "unknown delta type in subscribe");
            Err(Failure::Close(DisconnectCode::BadRequest))
        }
    }
}

/// The subscription's tags filter: error 107 (bad request) when the namespace does not
/// `allow_tags_filter`, or when the filter is malformed or over its bounds (as
/// Centrifugo answers both).
fn tags_filter(
    c: &Client,
    req: &SubscribeRequest,
    ns: &NamespaceOptions,
) -> Result<Option<Arc<FilterNode>>, Failure> {
    let Some(tf) = &req.tf else {
        return Ok(None);
    };
    if !ns.allow_tags_filter {
        tracing::info!(channel = %req.channel, "tags filter not allowed");
        return Err(ErrorCode::BadRequest.into());
    }
    if let Err(e) = tf.validate() {
        tracing::info!(channel = %req.channel, client = c.conn.id, error = %e, "tags filter refused");
        return Err(ErrorCode::BadRequest.into());
    }
    Ok(Some(Arc::new(tf.clone())))
}

/// Whether this connection may subscribe: a subscription token for it, or a namespace
/// open to all (never for `$` channels). The connection token's `channels` claim grants
/// nothing here: those channels are subscribed server-side at connect.
/// Returns what a subscription token brings: the state (`chan_info`, expiry, presence
/// and join/leave overrides), the reply's `data`, and its `override`.
async fn authorize(
    c: &Client,
    req: &SubscribeRequest,
    ns: &NamespaceOptions,
) -> Result<(ChannelState, Option<RawJson>, SubscribeOverride), Failure> {
    if !req.token.is_empty() {
        let Some(verifier) = &c.node.verifier else {
            return Err(ErrorCode::PermissionDenied.into());
        };
        let client = c.conn.identity().map(|i| i.client.as_str()).unwrap_or("");
        let jwks = c.node.jwks.as_deref();
        let verified = crate::jwks::verify(jwks, || verifier.verify_subscription(&req.token));
        return match verified.await {
            // A token bound to one connection (`client` claim) is good for that one only.
            Ok(t)
                if t.channel == req.channel
                    && t.sub == c.conn.user()
                    && t.client.as_deref().is_none_or(|cl| cl == client) =>
            {
                if t.expire_at.is_some_and(|at| at <= now_secs()) {
                    // `expire_at` in the past with a valid `exp`: the subscription's
                    // expiry, not the token's, so 110 "expired" as Centrifugo answers
                    // any subscription whose expiry is not in the future (not 109).
                    return Err(ErrorCode::Expired.into());
                }
                let state = ChannelState {
                    chan_info: t.info,
                    expires_at: t.expire_at.unwrap_or(0),
                    presence: t.override_.presence,
                    join_leave: t.override_.join_leave,
                };
                Ok((state, t.data, t.override_))
            }
            // A good token for another channel, user or connection: Centrifugo closes
            // 3500 "invalid token".
            Ok(_) => Err(Failure::Close(DisconnectCode::InvalidToken)),
            Err(AuthError::Expired) => Err(ErrorCode::TokenExpired.into()),
            Err(_) => Err(ErrorCode::PermissionDenied.into()),
        };
    }
    let private = req.channel.starts_with('$');
    if !private && ns.allow_subscribe {
        Ok((ChannelState::default(), None, SubscribeOverride::default()))
    } else {
        Err(ErrorCode::PermissionDenied.into())
    }
}

/// Leaves a channel; not being subscribed is no error.
pub(in crate::session) async fn unsubscribe(c: &mut Client, req: ChannelRequest) -> CmdResult {
    c.backend.sub_refresh_at.remove(&req.channel);
    detach(&c.node, &c.conn, &req.channel).await;
    Ok(Some(ReplyBody::Unsubscribe))
}

/// A new subscription token extends one subscription's life.
pub(in crate::session) async fn sub_refresh(c: &mut Client, req: SubRefreshRequest) -> CmdResult {
    let Some(verifier) = &c.node.verifier else {
        return Err(ErrorCode::NotAvailable.into());
    };
    let jwks = c.node.jwks.as_deref();
    let verified = crate::jwks::verify(jwks, || verifier.verify_subscription(&req.token));
    let claims = match verified.await {
        Ok(claims) => claims,
        Err(AuthError::Expired) => return Err(ErrorCode::TokenExpired.into()),
        Err(_) => return Err(ErrorCode::PermissionDenied.into()),
    };
    if claims.channel != req.channel || claims.sub != c.conn.user() {
        return Err(ErrorCode::PermissionDenied.into());
    }
    let exp = claims.expire_at.unwrap_or(0);
    if !c.conn.set_channel_expiry(&req.channel, exp) {
        return Err(ErrorCode::BadRequest.into());
    }
    let r = RefreshResult {
        expires: exp != 0,
        ttl: exp.saturating_sub(now_secs()) as u32,
        ..Default::default()
    };
    Ok(Some(ReplyBody::SubRefresh(r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::cmd::tests::client;
    use crate::testing;

    fn req(channel: &str) -> SubscribeRequest {
        SubscribeRequest {
            channel: channel.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn subscribe_replies_then_goes_live() {
        let mut c = client("alice", |_| {});
        assert_eq!(subscribe(&mut c, 7, req("news")).await, Ok(None));
        let sent = testing::sent(&c.conn);
        assert!(sent[0].starts_with(r#"{"id":7,"subscribe":{"#), "{sent:?}");
        let again = subscribe(&mut c, 8, req("news")).await;
        assert_eq!(again, Err(ErrorCode::AlreadySubscribed.into()));
        assert_eq!(
            unsubscribe(
                &mut c,
                ChannelRequest {
                    channel: "news".into()
                }
            )
            .await,
            Ok(Some(ReplyBody::Unsubscribe))
        );
        assert!(!c.conn.is_subscribed("news"));
    }

    #[tokio::test]
    async fn limits_and_permissions() {
        let mut c = client("alice", |c| c.limits.max_channels_per_connection = 1);
        assert_eq!(
            subscribe(&mut c, 1, req("")).await,
            Err(ErrorCode::BadRequest.into())
        );
        assert_eq!(
            subscribe(&mut c, 1, req("nope:x")).await,
            Err(ErrorCode::UnknownChannel.into())
        );
        assert_eq!(
            subscribe(&mut c, 1, req("$private")).await,
            Err(ErrorCode::PermissionDenied.into())
        );
        subscribe(&mut c, 1, req("a")).await.unwrap();
        assert_eq!(
            subscribe(&mut c, 2, req("b")).await,
            Err(ErrorCode::LimitExceeded.into())
        );
    }

    #[tokio::test]
    async fn subscription_tokens_open_private_channels() {
        let mut c = client("alice", |_| {});
        let with_token = SubscribeRequest {
            token: testing::token("alice", Some("$private")),
            ..req("$private")
        };
        assert_eq!(subscribe(&mut c, 1, with_token).await, Ok(None));
        let stolen = SubscribeRequest {
            token: testing::token("bob", Some("$other")),
            ..req("$other")
        };
        assert_eq!(
            subscribe(&mut c, 2, stolen).await,
            Err(Failure::Close(DisconnectCode::InvalidToken))
        );
        let refresh = SubRefreshRequest {
            channel: "$private".into(),
            token: testing::token("alice", Some("$private")),
        };
        assert!(sub_refresh(&mut c, refresh).await.is_ok());
    }

    #[tokio::test]
    async fn delta_and_tags_filter_requests_are_checked() {
        use crate::config::DeltaType;
        let mut c = client("alice", |c| {
            let mut open = c.namespaces.default.clone();
            open.allowed_delta_types = vec![DeltaType::Fossil];
            open.allow_tags_filter = true;
            c.namespaces.named.insert("open".into(), open);
        });
        let with = |channel: &str, delta: &str, tf: Option<&str>| SubscribeRequest {
            delta: delta.into(),
            tf: tf.map(|t| serde_json::from_str(t).unwrap()),
            ..req(channel)
        };
        let reply = |c: &Client| -> serde_json::Value {
            let sent = testing::sent(&c.conn);
            serde_json::from_str(sent.last().unwrap()).unwrap()
        };
        // Unknown delta type: the connection ends with 3501, as in Centrifugo.
        assert_eq!(
            subscribe(&mut c, 1, with("open:a", "zstd", None)).await,
            Err(Failure::Close(DisconnectCode::BadRequest))
        );
        // Fossil where the namespace has no delta: subscribed, without delta mode.
        assert_eq!(
            subscribe(&mut c, 2, with("plain", "fossil", None)).await,
            Ok(None)
        );
        assert!(reply(&c)["subscribe"].get("delta").is_none());
        assert_eq!(
            subscribe(&mut c, 3, with("open:b", "fossil", None)).await,
            Ok(None)
        );
        assert_eq!(reply(&c)["subscribe"]["delta"], true);

        let eq = r#"{"key":"t","cmp":"eq","val":"x"}"#;
        assert_eq!(
            subscribe(&mut c, 4, with("plain2", "", Some(eq))).await,
            Err(ErrorCode::BadRequest.into()),
            "the namespace does not allow tags filters"
        );
        let bad = r#"{"key":"t","cmp":"like","val":"x"}"#;
        assert_eq!(
            subscribe(&mut c, 5, with("open:c", "", Some(bad))).await,
            Err(ErrorCode::BadRequest.into())
        );
        let mut deep = eq.to_string();
        for _ in 0..20 {
            deep = format!(r#"{{"op":"not","nodes":[{deep}]}}"#);
        }
        assert_eq!(
            subscribe(&mut c, 6, with("open:d", "", Some(&deep))).await,
            Err(ErrorCode::BadRequest.into())
        );
        assert!(!c.conn.is_subscribed("open:c") && !c.conn.is_subscribed("open:d"));
        assert_eq!(
            subscribe(&mut c, 7, with("open:e", "", Some(eq))).await,
            Ok(None)
        );
        assert!(c.conn.is_subscribed("open:e"));
    }
}
