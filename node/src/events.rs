//! What the node does with what its broker hands up ([`BrokerEvents`]): deliveries go
//! to the hub, server API actions to the channel operations, status comes from the node.
//!
//! Registered once by [`crate::build`]. The hub is held directly, so a delivery costs
//! one call and no upgrade of the weak node handle; the node is held weakly because it
//! owns the broker that holds these events.

use crate::broker::BrokerEvents;
use crate::channel::control;
use crate::hub::Hub;
use crate::metrics::NamespaceMetrics;
use crate::node::Node;
use futures_util::future::{BoxFuture, FutureExt};
use herald_shared::codec::{Control, NodeStatus};
use herald_shared::protocol::{Broadcast, DisconnectCode, PushBody};
use std::sync::{Arc, Weak};

/// The node's side of its broker.
pub struct NodeEvents {
    hub: Arc<Hub>,
    /// Per-namespace delivery counters (one lookup per fan-out).
    namespaces: Arc<NamespaceMetrics>,
    node: Weak<Node>,
}

impl NodeEvents {
    /// Events for `node`.
    pub fn new(node: &Arc<Node>) -> Self {
        NodeEvents {
            hub: node.hub.clone(),
            namespaces: node.metrics.namespaces.clone(),
            node: Arc::downgrade(node),
        }
    }
}

impl BrokerEvents for NodeEvents {
    fn publication(&self, channel: &str, offset: u64, push: &Broadcast<'_>, received: u64) {
        debug_assert!(matches!(push.body(), PushBody::Pub(p) if p.offset == offset));
        let f = self.hub.publish(channel, push, received);
        if f.delivered > 0 {
            if let Some(ns) = self.namespaces.for_channel(channel) {
                ns.deliveries.increment(f.delivered as u64);
            }
        }
    }

    fn join_leave(&self, channel: &str, push: &Broadcast<'_>, force: bool) {
        self.hub.join_leave(channel, push, force);
    }

    fn resync(&self, channel: &str) {
        self.hub
            .close_channel(channel, DisconnectCode::InsufficientState);
    }

    fn serves(&self, channel: &str) -> bool {
        self.hub.has_subscribers(channel)
    }

    fn local_channels(&self) -> Vec<(String, usize)> {
        self.hub.channels()
    }

    fn status(&self) -> NodeStatus {
        match self.node.upgrade() {
            Some(node) => node.status(),
            None => NodeStatus::default(),
        }
    }

    fn leaving(&self) -> bool {
        self.node.upgrade().is_none_or(|n| n.is_leaving())
    }

    fn control(&self, c: Control) -> BoxFuture<'static, ()> {
        let node = self.node.clone();
        async move {
            if let Some(node) = node.upgrade() {
                control::apply(&node, c).await;
            }
        }
        .boxed()
    }
}
