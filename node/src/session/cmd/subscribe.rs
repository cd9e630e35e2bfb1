//! `subscribe`, `unsubscribe` and `sub_refresh`: the client's side of a subscription
//! (tokens, claims, per-connection limits); attaching is a channel operation.

use super::{Client, CmdResult, Failure};
use crate::channel;
use crate::channel::subscribe::{attach, detach, AttachOptions};
use crate::config::NamespaceOptions;
use crate::conn::ChannelState;
use herald_shared::auth::{now_secs, AuthError};
use herald_shared::protocol::command::{
    ChannelRequest, SubRefreshRequest, SubscribeRequest, FLAG_REJECT_UNRECOVERED,
};
use herald_shared::protocol::reply::RefreshResult;
use herald_shared::protocol::{ErrorCode, ReplyBody, StreamPosition, SubscribeResult};

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
    let state = authorize(c, &req, ns)?;
    let recover = (req.recover && ns.recovery).then(|| StreamPosition {
        offset: req.offset,
        epoch: req.epoch.clone(),
    });
    let options = AttachOptions {
        join_leave: req.join_leave,
        recover,
        reject_unrecovered: req.flag & FLAG_REJECT_UNRECOVERED != 0,
    };
    attach(&node, &c.conn, &req.channel, ns, state, options)
        .await
        .map_err(Failure::Error)
}

/// Whether this connection may subscribe: a subscription token for it, or a namespace
/// open to all (never for `$` channels). The connection token's `channels` claim grants
/// nothing here: those channels are subscribed server-side at connect.
/// Returns the `chan_info` and expiry that come with a subscription token.
fn authorize(
    c: &Client,
    req: &SubscribeRequest,
    ns: &NamespaceOptions,
) -> Result<ChannelState, Failure> {
    if !req.token.is_empty() {
        let Some(verifier) = &c.node.verifier else {
            return Err(ErrorCode::PermissionDenied.into());
        };
        let client = c.conn.identity().map(|i| i.client.as_str()).unwrap_or("");
        return match verifier.verify_subscription(&req.token) {
            // A token bound to one connection (`client` claim) is good for that one only.
            Ok(t)
                if t.channel == req.channel
                    && t.sub == c.conn.user()
                    && t.client.as_deref().is_none_or(|cl| cl == client) =>
            {
                Ok(ChannelState {
                    chan_info: t.info,
                    expires_at: t.exp.unwrap_or(0),
                })
            }
            Ok(_) => Err(ErrorCode::PermissionDenied.into()),
            Err(AuthError::Expired) => Err(ErrorCode::TokenExpired.into()),
            Err(_) => Err(ErrorCode::PermissionDenied.into()),
        };
    }
    let private = req.channel.starts_with('$');
    if !private && ns.allow_subscribe {
        Ok(ChannelState::default())
    } else {
        Err(ErrorCode::PermissionDenied.into())
    }
}

/// Leaves a channel; not being subscribed is no error.
pub(in crate::session) async fn unsubscribe(c: &mut Client, req: ChannelRequest) -> CmdResult {
    detach(&c.node, &c.conn, &req.channel).await;
    Ok(Some(ReplyBody::Unsubscribe))
}

/// A new subscription token extends one subscription's life.
pub(in crate::session) fn sub_refresh(c: &mut Client, req: SubRefreshRequest) -> CmdResult {
    let Some(verifier) = &c.node.verifier else {
        return Err(ErrorCode::NotAvailable.into());
    };
    let claims = match verifier.verify_subscription(&req.token) {
        Ok(claims) => claims,
        Err(AuthError::Expired) => return Err(ErrorCode::TokenExpired.into()),
        Err(_) => return Err(ErrorCode::PermissionDenied.into()),
    };
    if claims.channel != req.channel || claims.sub != c.conn.user() {
        return Err(ErrorCode::PermissionDenied.into());
    }
    let exp = claims.exp.unwrap_or(0);
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
            Err(ErrorCode::PermissionDenied.into())
        );
        let refresh = SubRefreshRequest {
            channel: "$private".into(),
            token: testing::token("alice", Some("$private")),
        };
        assert!(sub_refresh(&mut c, refresh).is_ok());
    }
}
