//! `publish`: a client publishes to a channel it is subscribed to, or, in a namespace
//! with `proxy_publish`, wherever the backend's publish proxy lets it (the backend may
//! replace the data, as Centrifugo's `result.data`).

use super::backend::unusable;
use super::{Client, CmdResult};
use crate::channel;
use crate::channel::publish::{publish as publish_op, Publish};
use crate::channel::Caller;
use crate::config::ProxyKind;
use crate::proxy::wire::{self, ProxyRequest};
use herald_shared::protocol::command::PublishRequest;
use herald_shared::protocol::{ErrorCode, ReplyBody};

/// Publishes with the client's info attached; see [`crate::channel::publish`].
pub(in crate::session) async fn publish(c: &mut Client, req: PublishRequest) -> CmdResult {
    let ns = channel::namespace(&c.node, &req.channel)?;
    if ns.proxy_publish && c.proxied(ProxyKind::Publish) {
        return proxied(c, req).await;
    }
    let p = Publish {
        data: req.data,
        ..Default::default()
    };
    publish_op(&c.node, Caller::Client(&c.conn), &req.channel, p).await?;
    Ok(Some(ReplyBody::Publish))
}

/// The backend decides (instead of `allow_publish` and the subscription) and may set
/// the data, `skip_history`, `tags` and `idempotency_key`.
async fn proxied(c: &mut Client, req: PublishRequest) -> CmdResult {
    let kind = ProxyKind::Publish;
    let Some(data) = req.data else {
        return Err(ErrorCode::BadRequest.into());
    };
    let request = ProxyRequest {
        channel: &req.channel,
        data: Some(&data),
        ..c.proxy_request()
    };
    let answer = c.ask::<wire::PublishResult>(kind, &request).await?;
    let r = answer.unwrap_or_default();
    let data = wire::pick(r.data, &r.b64data)
        .map_err(|w| unusable(kind, w))?
        .unwrap_or(data);
    let key = (!r.idempotency_key.is_empty()).then_some(r.idempotency_key.as_str());
    let p = Publish {
        data: Some(data),
        skip_history: r.skip_history,
        tags: r.tags,
        idempotency_key: key,
        delta: false,
    };
    publish_op(&c.node, Caller::Approved(&c.conn), &req.channel, p).await?;
    Ok(Some(ReplyBody::Publish))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::cmd::tests::client;
    use crate::testing;
    use herald_shared::protocol::{ErrorCode, RawJson};

    #[tokio::test]
    async fn subscribers_publish_where_allowed() {
        let mut c = client("alice", |c| c.namespaces.default.allow_publish = true);
        let req = || PublishRequest {
            channel: "room".into(),
            data: Some(RawJson::parse(r#""hi""#).unwrap()),
        };
        assert_eq!(
            publish(&mut c, req()).await,
            Err(ErrorCode::PermissionDenied.into())
        );
        testing::subscribed(&c.conn, "room");
        assert_eq!(publish(&mut c, req()).await, Ok(Some(ReplyBody::Publish)));
        let empty = PublishRequest {
            channel: "room".into(),
            data: None,
        };
        assert_eq!(
            publish(&mut c, empty).await,
            Err(ErrorCode::BadRequest.into())
        );
    }
}
