//! The broker below the node: where publications get their offsets, where history and
//! presence live, and how a publication reaches the nodes that have subscribers.
//!
//! [`Broker`] is the one interface the node calls; two implementations exist:
//! - [`memory::MemoryBroker`], the embedded default: one process, everything in memory.
//! - [`nats::NatsBroker`], NATS JetStream (cluster mode), selected by `HERALD_NATS_URL`.
//!
//! A broker never calls up into the node. What it has to hand upward (live
//! publications and join/leave pushes for local subscribers, server API actions from
//! other nodes, this node's status) goes through the [`BrokerEvents`] the node
//! registers with [`Broker::start`], as the centrifuge library's `BrokerEventHandler`.
//! It is the broker's job to hand publications of one channel upward in offset order.

pub mod memory;
pub mod nats;
pub mod presence;

use crate::config::NamespaceOptions;
use futures_util::future::BoxFuture;
use herald_shared::codec::{Control, NodeStatus};
use herald_shared::protocol::{Broadcast, ClientInfo, HistoryResult, Publication, StreamPosition};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Errors from the broker. They reach clients as "internal error" (retryable).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The NATS connection is down.
    #[error("NATS is not connected")]
    NotConnected,
    /// The JetStream streams are not set up yet.
    #[error("JetStream streams are not set up yet")]
    NotSetUp,
    /// After a reconnect, until every channel caught up with its stream.
    #[error("restoring channel subscriptions after a NATS reconnect")]
    Restoring,
    /// `HERALD_NATS_URL` does not parse.
    #[error("HERALD_NATS_URL: {0}")]
    BadUrl(String),
    /// A NATS or JetStream request failed (`what` says which).
    #[error("{what}: {source}")]
    Nats {
        /// The request that failed.
        what: &'static str,
        /// What NATS said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A JetStream request went unanswered within its bound.
    #[error("{0}: JetStream did not answer in time")]
    Timeout(&'static str),
    /// A stream could not be created or updated.
    #[error("stream {stream}: {source}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// Why.
        source: Box<BrokerError>,
    },
}

impl BrokerError {
    /// A failed NATS request.
    pub fn nats(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        BrokerError::Nats {
            what,
            source: Box::new(e),
        }
    }
}

/// A broker call in flight. Boxed: brokers are used as `dyn Broker`; one allocation
/// per call (never per recipient) is the price.
pub type BrokerFuture<'a, T = ()> = BoxFuture<'a, Result<T, BrokerError>>;

/// A channel with its namespace's options: what publishing, join/leave, history and
/// recovery act on.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The channel.
    pub channel: &'a str,
    /// Its namespace's options (history size and TTL, join/leave, recovery).
    pub ns: &'a NamespaceOptions,
}

/// A publication on its way into the broker.
#[derive(Clone, Debug)]
pub struct Outgoing<'a> {
    /// What to publish (its offset is the broker's to give).
    pub publication: Publication,
    /// Deliver without keeping it in history.
    pub skip_history: bool,
    /// Publish once per key within [`IDEMPOTENCY_WINDOW`].
    pub idempotency_key: Option<&'a str>,
}

/// How long a publish `idempotency_key` is remembered (JetStream's duplicate window in
/// a cluster, shortened to the namespace's history TTL when that is shorter).
pub const IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

/// What to read from a channel's history.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// Only publications after this position (its epoch is checked by the caller).
    pub since: Option<StreamPosition>,
    /// At most this many publications; `None`: all that are kept; `Some(0)`: only the position.
    pub limit: Option<usize>,
    /// Newest first.
    pub reverse: bool,
    /// A subscriber needs a position to recover from later: make sure the channel has
    /// one (the NATS broker writes a marker into an empty channel's stream).
    pub establish_position: bool,
}

/// What a recovering subscriber gets.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Every publication after the client's position, when `recovered`; else none.
    pub publications: Vec<Publication>,
    /// The channel's position now.
    pub position: StreamPosition,
    /// Whether `publications` is exactly what the client missed.
    pub recovered: bool,
}

impl Recovery {
    /// The answer from a history read after the client's position: its publications
    /// when they are exactly what was missed, else none at all (never a partial set).
    pub fn from_history(h: HistoryResult, recovered: bool) -> Self {
        let position = h.position();
        Recovery {
            publications: if recovered {
                h.publications
            } else {
                Vec::new()
            },
            position,
            recovered,
        }
    }
}

/// Presence numbers of a channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PresenceStats {
    /// Connections present.
    pub clients: usize,
    /// Distinct user ids among them.
    pub users: usize,
}

/// Which presence change to announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinLeave {
    /// A member joined.
    Join,
    /// A member left.
    Leave,
    /// A member left because this node drains (likely to rejoin elsewhere; see
    /// `ClusterOptions::rejoin_grace`).
    LeaveMoving,
}

/// What a broker hands up to the node it serves. Registered once, at
/// [`Broker::start`]; the node's implementation forwards deliveries to its hub and
/// actions to the channel operations.
pub trait BrokerEvents: Send + Sync + 'static {
    /// A publication push for `channel` with its offset (0: none), for the local
    /// subscribers; encoded by whoever needs it, once per encoding. Called in offset
    /// order per channel. `received` is when the broker got it
    /// (`crate::metrics::now_nanos`), for the delivery-lag metric.
    fn publication(&self, channel: &str, offset: u64, push: &Broadcast<'_>, received: u64);
    /// A join or leave push for the local subscribers that asked for them (`force`: for
    /// all of them).
    fn join_leave(&self, channel: &str, push: &Broadcast<'_>, force: bool);
    /// The channel's stream could not be followed: its local subscribers must
    /// reconnect and recover.
    fn resync(&self, channel: &str);
    /// Whether this node has local subscribers of `channel`.
    fn serves(&self, channel: &str) -> bool;
    /// Channels with local subscribers, and how many.
    fn local_channels(&self) -> Vec<(String, usize)>;
    /// This node's numbers, for heartbeats and `/api/info`.
    fn status(&self) -> NodeStatus;
    /// Whether the node is draining or stopping (announced to routers).
    fn leaving(&self) -> bool;
    /// A server API action (from any node, this one included) to apply to this
    /// node's connections; resolves once applied.
    fn control(&self, control: Control) -> BoxFuture<'static, ()>;
}

/// History, presence and delivery across the nodes of a cluster (or within one).
pub trait Broker: Send + Sync {
    /// A short name for logs and `/api/info`.
    fn kind(&self) -> &'static str;

    /// Registers the node's events and starts background work (NATS set-up,
    /// heartbeats, sweeping) until `stop`.
    fn start(&self, events: Arc<dyn BrokerEvents>, stop: CancellationToken);

    /// Whether the broker can serve right now (for `/readyz`); `Err` carries the reason.
    fn ready(&self) -> Result<(), BrokerError>;

    /// Publishes to a channel. With history, the publication gets the next offset and is
    /// kept; the returned position is the publication's. Without history offset is 0.
    /// A publication with an `idempotency_key` already used on the channel within
    /// [`IDEMPOTENCY_WINDOW`] is not published again; the first one's position is
    /// returned (in a cluster: for channels with history, through JetStream's
    /// de-duplication).
    fn publish<'a>(&'a self, to: Scope<'a>, p: Outgoing<'a>) -> BrokerFuture<'a, StreamPosition>;

    /// Tells subscribers who want it that `info` joined or left `channel`.
    fn join_leave<'a>(
        &'a self,
        to: Scope<'a>,
        who: &'a ClientInfo,
        k: JoinLeave,
    ) -> BrokerFuture<'a>;

    /// This node serves `channel` (a local subscriber arrived). Resolves once live
    /// delivery is in place, so history read afterwards cannot miss anything.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()>;

    /// This node's last local subscriber of `channel` left.
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()>;

    /// Reads a channel's history and its current position.
    fn history<'a>(&'a self, of: Scope<'a>, q: &'a HistoryQuery)
        -> BrokerFuture<'a, HistoryResult>;

    /// Everything published after `since`, and whether that is exactly what was missed.
    /// Never a partial set: when something is gone, no publications at all.
    fn recover<'a>(
        &'a self,
        of: Scope<'a>,
        since: &'a StreamPosition,
    ) -> BrokerFuture<'a, Recovery>;

    /// Drops a channel's history (its offsets continue; its epoch stays).
    fn remove_history<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()>;

    /// Records that connection `client` with `info` is present in `channel`.
    fn add_presence<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
        info: &'a ClientInfo,
    ) -> BrokerFuture<'a, ()>;

    /// Removes connection `client` from `channel`'s presence.
    fn remove_presence<'a>(&'a self, channel: &'a str, client: &'a str) -> BrokerFuture<'a, ()>;

    /// Who is present in `channel`: connection id → info.
    fn presence<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, HashMap<String, ClientInfo>>;

    /// How many connections and users are present in `channel`.
    fn presence_stats<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, PresenceStats>;

    /// Channels with subscribers, and how many (across the cluster).
    fn channels(&self) -> BrokerFuture<'_, HashMap<String, u64>>;

    /// Every live node's status.
    fn nodes(&self) -> Vec<NodeStatus>;

    /// Applies a server API action on every node's connections.
    fn control(&self, control: Control) -> BrokerFuture<'_, ()>;

    /// Lets go of the broker at shutdown (NATS: drain the connection).
    fn close(&self) -> BoxFuture<'_, ()>;
}
