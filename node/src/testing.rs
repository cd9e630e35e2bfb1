//! For unit tests: a node on the embedded broker, and connections without sockets.
//!
//! The node's broker hands deliveries straight to its hub; server API actions are not
//! wired up (tests call [`crate::channel::control::apply`] themselves).

use crate::broker::memory::MemoryBroker;
use crate::broker::BrokerEvents;
use crate::config::NodeConfig;
use crate::conn::{ChannelState, Conn, Identity};
use crate::hub::Hub;
use crate::node::Node;
use futures_util::future::{self, BoxFuture, FutureExt};
use herald_shared::codec::{Control, NodeStatus};
use herald_shared::protocol::{Broadcast, DisconnectCode};
use std::sync::Arc;

/// Deliveries to the hub, nothing else.
pub(crate) struct ToHub(pub(crate) Arc<Hub>);

impl BrokerEvents for ToHub {
    fn publication(&self, channel: &str, _offset: u64, push: &Broadcast<'_>, received: u64) {
        self.0.publish(channel, push, received);
    }
    fn join_leave(&self, channel: &str, push: &Broadcast<'_>, force: bool) {
        self.0.join_leave(channel, push, force);
    }
    fn resync(&self, channel: &str) {
        self.0
            .close_channel(channel, DisconnectCode::InsufficientState);
    }
    fn serves(&self, channel: &str) -> bool {
        self.0.has_subscribers(channel)
    }
    fn local_channels(&self) -> Vec<(String, usize)> {
        self.0.channels()
    }
    fn status(&self) -> NodeStatus {
        NodeStatus::default()
    }
    fn leaving(&self) -> bool {
        false
    }
    fn control(&self, _: Control) -> BoxFuture<'static, ()> {
        future::ready(()).boxed()
    }
}

/// A started node with `config` (call from within a runtime).
pub(crate) fn node(config: NodeConfig) -> Arc<Node> {
    let hub = Arc::new(Hub::new(config.limits.queue_max_bytes));
    let prometheus = herald_shared::telemetry::install_metrics_recorder();
    let node = Node::new(
        config,
        prometheus,
        hub.clone(),
        Box::new(MemoryBroker::new()),
    )
    .expect("node");
    node.broker.start(Arc::new(ToHub(hub)), node.stop.clone());
    node
}

/// The test configuration ([`NodeConfig::for_tests`]), changed by `change`.
pub(crate) fn config(change: impl FnOnce(&mut NodeConfig)) -> NodeConfig {
    let mut c = NodeConfig::for_tests("secret", "key");
    change(&mut c);
    c
}

/// A connected connection of `user`, listed in the node's registry.
pub(crate) fn conn(node: &Node, user: &str) -> Arc<Conn> {
    let c = unconnected(node);
    c.set_identity(Identity {
        client: format!("client-{}", c.id),
        user: user.into(),
        info: None,
        meta: None,
    });
    node.registry.connected(&c);
    c
}

/// A connection that has not sent `connect`, listed in the node's registry.
pub(crate) fn unconnected(node: &Node) -> Arc<Conn> {
    let c = Arc::new(Conn::new(
        node.next_conn_id(),
        "127.0.0.1:9".parse().expect("address"),
        1 << 20,
    ));
    assert!(node.registry.reserve(usize::MAX));
    node.registry.open(c.clone());
    c
}

/// Marks `conn` as subscribed to `channel` without attaching it.
pub(crate) fn subscribed(conn: &Conn, channel: &str) {
    conn.add_channel(channel, ChannelState::default());
}

/// Everything queued for `conn`, as text.
pub(crate) fn sent(conn: &Conn) -> Vec<String> {
    conn.out
        .take()
        .items
        .into_iter()
        .map(|b| String::from_utf8(b.to_vec()).expect("UTF-8"))
        .collect()
}

/// A token signed with the test configuration's secret, valid for a minute: a
/// connection token, or with `channel` a subscription token.
pub(crate) fn token(user: &str, channel: Option<&str>) -> String {
    use herald_shared::auth::{now_secs, MintClaims};
    mint_token(&MintClaims {
        sub: user.into(),
        exp: Some(now_secs() + 60),
        channel: channel.map(str::to_owned),
        ..Default::default()
    })
}

/// A token with these claims, signed with the test secret.
pub(crate) fn mint_token(claims: &herald_shared::auth::MintClaims) -> String {
    use herald_shared::auth::{mint, Algorithm, SignKey};
    mint(Algorithm::HS256, &SignKey::Hmac(b"secret".to_vec()), claims).expect("token")
}
