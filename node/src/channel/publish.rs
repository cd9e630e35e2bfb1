//! Publishing to a channel.

use super::{namespace, permitted, Caller, ChannelError};
use crate::broker::{Outgoing, Scope};
use crate::node::Node;
use herald_shared::protocol::{ErrorCode, Publication, RawJson, StreamPosition};
use std::collections::BTreeMap;
use std::time::Instant;

/// What to publish.
#[derive(Clone, Debug, Default)]
pub struct Publish<'a> {
    /// The payload; missing is a bad request (after the permission check).
    pub data: Option<RawJson>,
    /// Deliver without keeping it in history.
    pub skip_history: bool,
    /// Tags carried with the publication.
    pub tags: BTreeMap<String, String>,
    /// Publish once per key within the broker's idempotency window.
    pub idempotency_key: Option<&'a str>,
    /// Publish in delta mode (also on for every publication of a namespace with
    /// `delta_publish`): delta subscribers may get it as a fossil delta.
    pub delta: bool,
}

/// Publishes to `channel`. A client must be subscribed to it in a namespace with
/// `allow_publish`; its publication carries its client info. Returns the position the
/// publication got (offset 0 without history).
pub async fn publish(
    node: &Node,
    caller: Caller<'_>,
    channel: &str,
    p: Publish<'_>,
) -> Result<StreamPosition, ChannelError> {
    let ns = namespace(node, channel)?;
    permitted(caller, ns.allow_publish, channel)?;
    let Some(data) = p.data else {
        return Err(ErrorCode::BadRequest.into());
    };
    let info = match caller {
        Caller::Server => None,
        Caller::Client(conn) | Caller::Approved(conn) => {
            Some(conn.client_info(conn.chan_info(channel)))
        }
    };
    let publication = Outgoing {
        publication: Publication {
            data,
            info,
            offset: 0,
            tags: p.tags,
            delta: false,
            delta_publish: p.delta || ns.delta_publish,
        },
        skip_history: p.skip_history,
        idempotency_key: p.idempotency_key,
    };
    let started = Instant::now();
    let position = node
        .broker
        .publish(Scope { channel, ns }, publication)
        .await
        .map_err(|e| {
            tracing::warn!(channel = %channel, error = %e, "publish failed");
            ErrorCode::Internal
        })?;
    metrics::histogram!(crate::metrics::PUBLISH_DURATION).record(started.elapsed().as_secs_f64());
    node.metrics.publications.increment(1);
    if let Some(c) = node.metrics.namespaces.for_channel(channel) {
        c.publications.increment(1);
    }
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn data() -> Option<RawJson> {
        Some(RawJson::parse(r#"{"x":1}"#).unwrap())
    }

    #[tokio::test]
    async fn clients_need_permission_and_a_subscription() {
        let node = testing::node(testing::config(|c| {
            c.namespaces.default.allow_publish = true
        }));
        let conn = testing::conn(&node, "alice");
        let publish = |caller| {
            let node = node.clone();
            async move {
                let p = Publish {
                    data: data(),
                    ..Default::default()
                };
                publish(&node, caller, "room", p).await
            }
        };
        assert_eq!(
            publish(Caller::Client(&conn)).await,
            Err(ErrorCode::PermissionDenied.into()),
            "not subscribed"
        );
        testing::subscribed(&conn, "room");
        assert_eq!(publish(Caller::Client(&conn)).await.unwrap().offset, 1);
        assert_eq!(publish(Caller::Server).await.unwrap().offset, 2);
    }

    #[tokio::test]
    async fn names_and_payloads_are_checked() {
        let node = testing::node(testing::config(|_| {}));
        let p = || Publish {
            data: data(),
            ..Default::default()
        };
        let r = publish(&node, Caller::Server, "", p()).await;
        assert_eq!(r, Err(ChannelError::BadName("channel is required")));
        let long = "x".repeat(256);
        assert!(matches!(
            publish(&node, Caller::Server, &long, p()).await,
            Err(ChannelError::BadName(_))
        ));
        let r = publish(&node, Caller::Server, "nope:c", p()).await;
        assert_eq!(r, Err(ErrorCode::UnknownChannel.into()));
        let r = publish(&node, Caller::Server, "c", Publish::default()).await;
        assert_eq!(r, Err(ErrorCode::BadRequest.into()));
    }

    #[tokio::test]
    async fn subscribers_get_it_with_the_publishers_info() {
        let node = testing::node(testing::config(|c| {
            c.namespaces.default.allow_publish = true
        }));
        let conn = testing::conn(&node, "alice");
        testing::subscribed(&conn, "room");
        node.hub
            .add("room", conn.id, conn.out.clone(), Default::default(), false);
        let p = Publish {
            data: data(),
            ..Default::default()
        };
        publish(&node, Caller::Client(&conn), "room", p)
            .await
            .unwrap();
        let sent = testing::sent(&conn);
        assert!(sent[0].contains(r#""user":"alice""#), "{sent:?}");
    }
}
