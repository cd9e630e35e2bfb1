//! Reading and removing a channel's history.

use super::{namespace, permitted, Caller, ChannelError};
use crate::broker::{HistoryQuery, Scope};
use crate::node::Node;
use herald_shared::protocol::{ErrorCode, HistoryResult};

/// The protocol's `limit`: 0 asks for the position only, a negative one for everything
/// kept.
pub fn limit(n: i64) -> Option<usize> {
    match n {
        n if n < 0 => None,
        n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

/// Reads `channel`'s history. The namespace must keep history; a client must be
/// subscribed in a namespace with `allow_history`. A `since` position of another epoch
/// is refused as unrecoverable.
pub async fn history(
    node: &Node,
    caller: Caller<'_>,
    channel: &str,
    query: HistoryQuery,
) -> Result<HistoryResult, ChannelError> {
    let ns = namespace(node, channel)?;
    if !ns.has_history() {
        return Err(ErrorCode::NotAvailable.into());
    }
    permitted(caller, ns.allow_history, channel)?;
    let h = node
        .broker
        .history(Scope { channel, ns }, &query)
        .await
        .map_err(|_| ErrorCode::Internal)?;
    if let Some(since) = &query.since {
        if since.epoch != h.epoch {
            return Err(ErrorCode::UnrecoverablePosition.into());
        }
    }
    Ok(h)
}

/// Drops `channel`'s kept publications (server API only).
pub async fn remove(node: &Node, channel: &str) -> Result<(), ChannelError> {
    namespace(node, channel)?;
    node.broker
        .remove_history(channel)
        .await
        .map_err(|_| ErrorCode::Internal.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::publish::{publish, Publish};
    use crate::testing;
    use herald_shared::protocol::{RawJson, StreamPosition};

    #[tokio::test]
    async fn reads_what_was_published() {
        let node = testing::node(testing::config(|c| {
            c.namespaces.default.allow_history = true
        }));
        for _ in 0..3 {
            let p = Publish {
                data: Some(RawJson::parse("1").unwrap()),
                ..Default::default()
            };
            publish(&node, Caller::Server, "c", p).await.unwrap();
        }
        let q = HistoryQuery {
            limit: limit(-1),
            ..Default::default()
        };
        let h = history(&node, Caller::Server, "c", q.clone())
            .await
            .unwrap();
        assert_eq!((h.publications.len(), h.offset), (3, 3));

        let conn = testing::conn(&node, "u");
        let denied = history(&node, Caller::Client(&conn), "c", q.clone()).await;
        assert_eq!(denied, Err(ErrorCode::PermissionDenied.into()));
        testing::subscribed(&conn, "c");
        assert!(history(&node, Caller::Client(&conn), "c", q).await.is_ok());

        let stale = HistoryQuery {
            since: Some(StreamPosition {
                offset: 1,
                epoch: "another".into(),
            }),
            ..Default::default()
        };
        let r = history(&node, Caller::Server, "c", stale).await;
        assert_eq!(r, Err(ErrorCode::UnrecoverablePosition.into()));

        remove(&node, "c").await.unwrap();
        let h = history(&node, Caller::Server, "c", HistoryQuery::default()).await;
        assert!(h.unwrap().publications.is_empty());
    }

    #[tokio::test]
    async fn not_available_without_history() {
        let node = testing::node(testing::config(|c| c.namespaces.default.history_size = 0));
        let r = history(&node, Caller::Server, "c", HistoryQuery::default()).await;
        assert_eq!(r, Err(ErrorCode::NotAvailable.into()));
    }

    #[test]
    fn limits() {
        assert_eq!(limit(0), Some(0));
        assert_eq!(limit(-1), None);
        assert_eq!(limit(10), Some(10));
    }
}
