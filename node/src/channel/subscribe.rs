//! Attaching a connection to a channel and detaching it: hub, broker, recovery,
//! presence, join and leave. Who may subscribe is the caller's question (the session
//! checks tokens and claims; the server API is trusted).

use crate::broker::{BrokerError, HistoryQuery, JoinLeave, Recovery, Scope};
use crate::config::{NamespaceOptions, RecoveryMode};
use crate::conn::{ChannelState, Conn};
use crate::hub::frames::full_form;
use crate::hub::Delivery;
use crate::node::Node;
use herald_shared::auth::now_secs;
use herald_shared::protocol::filter::FilterNode;
use herald_shared::protocol::{ErrorCode, StreamPosition, SubscribeResult};
use std::sync::Arc;

/// How a subscription is attached.
#[derive(Clone, Debug, Default)]
pub struct AttachOptions {
    /// The client asked for join/leave pushes.
    pub join_leave: bool,
    /// Join/leave pushes whatever the client asked and the namespace says (a token's
    /// `override.force_push_join_leave`).
    pub force_push_join_leave: bool,
    /// Whether the reply says `recoverable`; `None`: the namespace's `recovery` (a
    /// token's `override.force_recovery` sets it).
    pub recovery: Option<bool>,
    /// Recover from this position.
    pub recover: Option<StreamPosition>,
    /// Answer error 112 instead of `recovered: false`.
    pub reject_unrecovered: bool,
    /// Delta mode (fossil), already checked against the namespace.
    pub delta: bool,
    /// Tags filter, already validated and allowed.
    pub filter: Option<Arc<FilterNode>>,
}

/// Subscribes a connection to a channel it is allowed on: registers it in the hub as
/// syncing, reads the stream position or the missed publications, records presence
/// and the join. Returns the subscribe result and the offset it delivers up to; the
/// caller queues the reply, then calls `hub.go_live`.
pub async fn attach(
    node: &Node,
    conn: &Conn,
    channel: &str,
    ns: &NamespaceOptions,
    state: ChannelState,
    options: AttachOptions,
) -> Result<(SubscribeResult, u64), ErrorCode> {
    let delivery = Delivery {
        join_leave: (options.join_leave && ns.join_leave) || options.force_push_join_leave,
        delta: options.delta,
        filter: options.filter.clone(),
    };
    node.hub
        .add(channel, conn.id, conn.out.clone(), delivery, true);
    // Every subscriber waits for the broker: the first one starts live delivery, the
    // others must not read history before it is in place.
    if let Err(e) = node.broker.subscribe(channel).await {
        tracing::warn!(channel = %channel, error = %e, "broker subscribe failed");
        detach_hub(node, conn, channel).await;
        return Err(ErrorCode::Internal);
    }

    let mut result = SubscribeResult::default();
    let mut delivered_up_to = 0;
    if ns.has_history() {
        let read = match &options.recover {
            Some(since) => recover(node, Scope { channel, ns }, since)
                .await
                .map(|r| (r.position, r.publications, Some(r.recovered)))
                .map_err(|e| ("recovery read failed", e)),
            None => {
                let query = HistoryQuery {
                    limit: Some(0),
                    establish_position: true,
                    ..Default::default()
                };
                node.broker
                    .history(Scope { channel, ns }, &query)
                    .await
                    .map(|h| (h.position(), Vec::new(), None))
                    .map_err(|e| ("position read failed", e))
            }
        };
        let (position, publications, recovered) = match read {
            Ok(r) => r,
            Err((what, e)) => {
                tracing::warn!(channel = %channel, error = %e, "{what}");
                detach_hub(node, conn, channel).await;
                return Err(ErrorCode::Internal);
            }
        };
        delivered_up_to = position.offset;
        result.epoch = position.epoch;
        result.offset = position.offset;
        result.recoverable = options.recovery.unwrap_or(ns.recovery);
        result.positioned = true;
        if let Some(recovered) = recovered {
            result.was_recovering = true;
            count_recovery(&options, &result.epoch, recovered, publications.len());
            if recovered {
                result.recovered = true;
                result.publications = publications;
                if let Some(filter) = &options.filter {
                    result.publications.retain(|p| filter.matches(&p.tags));
                }
                if options.delta {
                    // Delta mode: every payload a JSON string; these in full, so the
                    // first live one after recovery is full too (see the hub).
                    for p in result.publications.iter_mut() {
                        *p = full_form(p);
                    }
                }
            } else if options.reject_unrecovered {
                detach_hub(node, conn, channel).await;
                return Err(ErrorCode::UnrecoverablePosition);
            }
            // Not recoverable: no publications at all, never a partial set.
        }
    }
    result.delta = options.delta;
    if !ns.has_history() && options.recover.is_some() {
        // Asked to recover in a namespace that keeps nothing to recover from.
        crate::metrics::recovery("not_recovered", 0);
    }
    if state.expires_at != 0 {
        result.expires = true;
        result.ttl = state.expires_at.saturating_sub(now_secs()) as u32;
    }

    let info = conn.client_info(state.chan_info.clone());
    let (presence, join_leave) = (
        state.presence.unwrap_or(ns.presence),
        state.join_leave.unwrap_or(ns.join_leave),
    );
    conn.add_channel(channel, state);
    node.metrics.subscriptions.increment(1.0);
    if presence {
        if let Err(e) = node.broker.add_presence(channel, &info.client, &info).await {
            tracing::warn!(channel = %channel, error = %e, "presence add failed");
        }
    }
    if join_leave {
        if let Err(e) = node
            .broker
            .join_leave(Scope { channel, ns }, &info, JoinLeave::Join)
            .await
        {
            tracing::warn!(channel = %channel, error = %e, "join publish failed");
        }
    }
    Ok((result, delivered_up_to))
}

/// What a recovering subscriber gets, by the namespace's `force_recovery_mode`.
///
/// Cache mode (as the centrifuge library's `RecoveryModeCache`): only the channel's
/// latest publication, with `recovered: true`, whatever the client's position or
/// epoch, unless the client already has it (same epoch and offset: nothing, still
/// recovered). A channel whose history is empty (or expired) recovers only a client
/// that is already at its position.
async fn recover(
    node: &Node,
    scope: Scope<'_>,
    since: &StreamPosition,
) -> Result<Recovery, BrokerError> {
    if scope.ns.force_recovery_mode == RecoveryMode::Stream {
        return node.broker.recover(scope, since).await;
    }
    let query = HistoryQuery {
        limit: Some(1),
        reverse: true,
        establish_position: true,
        ..Default::default()
    };
    let h = node.broker.history(scope, &query).await?;
    let position = h.position();
    let same = since.offset > 0 && since.offset == position.offset && since.epoch == position.epoch;
    let latest = h.publications.into_iter().next();
    let (publications, recovered) = match latest {
        Some(p) if p.offset == position.offset && !same => (vec![p], true),
        Some(p) => (Vec::new(), p.offset == position.offset),
        None => (Vec::new(), same),
    };
    Ok(Recovery {
        publications,
        position,
        recovered,
    })
}

/// Counts a recovery by its result: `recovered`; `position_gone` when the client's
/// epoch is the stream's but its offset is no longer kept; `not_recovered` when the
/// epoch differs (the stream was lost or recreated since, or the client's is bogus).
fn count_recovery(options: &AttachOptions, epoch: &str, recovered: bool, publications: usize) {
    let result = if recovered {
        "recovered"
    } else if options.recover.as_ref().is_some_and(|p| p.epoch == epoch) {
        "position_gone"
    } else {
        "not_recovered"
    };
    crate::metrics::recovery(result, if recovered { publications } else { 0 });
}

async fn detach_hub(node: &Node, conn: &Conn, channel: &str) {
    if node.hub.remove(channel, conn.id) {
        let _ = node.broker.unsubscribe(channel).await;
    }
}

/// Removes one subscription of a connection: hub, presence, leave push. Used by the
/// client's `unsubscribe`, the server API and connection close. False when the
/// connection was not subscribed.
pub async fn detach(node: &Node, conn: &Conn, channel: &str) -> bool {
    let Some(state) = conn.remove_channel(channel) else {
        return false;
    };
    node.metrics.subscriptions.decrement(1.0);
    if node.hub.remove(channel, conn.id) {
        if let Err(e) = node.broker.unsubscribe(channel).await {
            tracing::warn!(channel = %channel, error = %e, "broker unsubscribe failed");
        }
    }
    if let Some(ns) = node.config.namespaces.for_channel(channel) {
        let (presence, join_leave) = (
            state.presence.unwrap_or(ns.presence),
            state.join_leave.unwrap_or(ns.join_leave),
        );
        let info = conn.client_info(state.chan_info);
        if presence {
            let _ = node.broker.remove_presence(channel, &info.client).await;
        }
        if join_leave {
            // A node on its way out marks the leave: the member likely rejoins elsewhere.
            let kind = if node.is_leaving() {
                JoinLeave::LeaveMoving
            } else {
                JoinLeave::Leave
            };
            let _ = node
                .broker
                .join_leave(Scope { channel, ns }, &info, kind)
                .await;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::publish::{publish, Publish};
    use crate::channel::Caller;
    use crate::testing;
    use herald_shared::protocol::RawJson;

    async fn publish_n(node: &Node, channel: &str, n: usize) {
        for _ in 0..n {
            let p = Publish {
                data: Some(RawJson::parse("1").unwrap()),
                ..Default::default()
            };
            publish(node, Caller::Server, channel, p).await.unwrap();
        }
    }

    #[tokio::test]
    async fn attach_recovers_then_goes_live() {
        let node = testing::node(testing::config(|c| c.namespaces.default.presence = true));
        publish_n(&node, "c", 2).await;
        let first = testing::conn(&node, "a");
        let ns = node.config.namespaces.default.clone();
        let (r, up_to) = attach(
            &node,
            &first,
            "c",
            &ns,
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
        assert_eq!((r.offset, up_to, r.recovered), (2, 2, false));
        let epoch = r.epoch.clone();
        publish_n(&node, "c", 1).await;

        let second = testing::conn(&node, "b");
        let options = AttachOptions {
            recover: Some(StreamPosition { offset: 1, epoch }),
            ..Default::default()
        };
        let (r, up_to) = attach(&node, &second, "c", &ns, Default::default(), options)
            .await
            .unwrap();
        assert!(r.recovered && r.was_recovering);
        assert_eq!(r.publications.len(), 2);
        publish_n(&node, "c", 1).await;
        assert!(testing::sent(&second).is_empty(), "syncing until go-live");
        node.hub.go_live("c", second.id, up_to);
        assert_eq!(testing::sent(&second).len(), 1);
        assert_eq!(node.broker.presence_stats("c").await.unwrap().clients, 2);

        assert!(detach(&node, &second, "c").await);
        assert!(!detach(&node, &second, "c").await, "only once");
        assert!(!second.is_subscribed("c"));
        assert_eq!(node.broker.presence_stats("c").await.unwrap().clients, 1);
    }

    #[tokio::test]
    async fn unrecoverable_positions_can_be_refused() {
        let node = testing::node(testing::config(|_| {}));
        let conn = testing::conn(&node, "a");
        let ns = node.config.namespaces.default.clone();
        let options = AttachOptions {
            recover: Some(StreamPosition {
                offset: 5,
                epoch: "gone".into(),
            }),
            reject_unrecovered: true,
            ..Default::default()
        };
        let r = attach(&node, &conn, "c", &ns, Default::default(), options).await;
        assert_eq!(r.err(), Some(ErrorCode::UnrecoverablePosition));
        assert!(!node.hub.has_subscribers("c"), "nothing left behind");
    }

    #[tokio::test]
    async fn cache_mode_recovers_only_the_latest_publication() {
        let node = testing::node(testing::config(|c| {
            c.namespaces.default.force_recovery_mode = RecoveryMode::Cache
        }));
        let ns = node.config.namespaces.default.clone();
        let conn = testing::conn(&node, "a");
        let (r, _) = attach(
            &node,
            &conn,
            "c",
            &ns,
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
        let epoch = r.epoch.clone();
        let at = |offset: u64, epoch: &str| AttachOptions {
            recover: Some(StreamPosition {
                offset,
                epoch: epoch.into(),
            }),
            ..Default::default()
        };
        // Empty channel, client "at" offset 0: nothing to recover from (as centrifuge,
        // a position needs an offset above 0).
        let c0 = testing::conn(&node, "b");
        let (r, _) = attach(
            &node,
            &c0,
            "c",
            &ns,
            Default::default(),
            at(r.offset, &epoch),
        )
        .await
        .unwrap();
        assert!(!r.recovered && r.publications.is_empty());
        // Empty channel, a position it never had: not recovered.
        let c1 = testing::conn(&node, "b");
        let (r, _) = attach(&node, &c1, "c", &ns, Default::default(), at(99, "other"))
            .await
            .unwrap();
        assert!(!r.recovered && r.was_recovering);

        publish_n(&node, "c", 5).await;
        // Four behind, or a lost epoch: only the latest, recovered.
        for (i, (offset, e)) in [(1, epoch.as_str()), (3, "lost")].into_iter().enumerate() {
            let c = testing::conn(&node, &format!("u{i}"));
            let (r, up_to) = attach(&node, &c, "c", &ns, Default::default(), at(offset, e))
                .await
                .unwrap();
            assert!(r.recovered, "{offset} {e}");
            let offsets: Vec<u64> = r.publications.iter().map(|p| p.offset).collect();
            assert_eq!(offsets, vec![5]);
            assert_eq!(up_to, 5);
        }
        // Already at the latest: recovered, nothing.
        let c = testing::conn(&node, "x");
        let (r, _) = attach(&node, &c, "c", &ns, Default::default(), at(5, &epoch))
            .await
            .unwrap();
        assert!(r.recovered && r.publications.is_empty());
    }

    #[tokio::test]
    async fn delta_mode_recovers_in_full_json_strings() {
        let node = testing::node(testing::config(|c| {
            c.namespaces.default.allowed_delta_types = vec![crate::config::DeltaType::Fossil]
        }));
        let ns = node.config.namespaces.default.clone();
        publish_n(&node, "c", 3).await;
        let conn = testing::conn(&node, "a");
        let options = AttachOptions {
            recover: Some(StreamPosition {
                offset: 1,
                epoch: String::new(),
            }),
            delta: true,
            ..Default::default()
        };
        // The memory broker's epoch: read it first.
        let probe = testing::conn(&node, "p");
        let (r0, _) = attach(
            &node,
            &probe,
            "c",
            &ns,
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
        let options = AttachOptions {
            recover: Some(StreamPosition {
                offset: 1,
                epoch: r0.epoch,
            }),
            ..options
        };
        let (r, _) = attach(&node, &conn, "c", &ns, Default::default(), options)
            .await
            .unwrap();
        assert!(r.delta && r.recovered);
        assert_eq!(r.publications.len(), 2);
        for p in &r.publications {
            assert_eq!(p.data.as_str(), r#""1""#, "JSON text as a JSON string");
            assert!(!p.delta);
        }
    }
}
