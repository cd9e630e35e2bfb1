//! The broker behind the hub: where publications get their offsets, where history and
//! presence live, and how a publication reaches the nodes that have subscribers.
//!
//! Two implementations share one interface so sessions never know which one runs:
//! - [`memory::MemoryBroker`], the embedded default: one process, everything in memory.
//! - NATS JetStream (cluster mode), selected by `HERALD_NATS_URL`.
//!
//! The broker delivers what it receives to the local [`Hub`](crate::hub::Hub); it is the
//! broker's job to hand publications of one channel to the hub in offset order.

pub mod memory;
pub mod nats;
pub mod presence;

use crate::config::NamespaceOptions;
use crate::node::Node;
use herald_shared::codec::{Control, NodeStatus};
use herald_shared::protocol::{ClientInfo, HistoryResult, Publication, StreamPosition};
use std::collections::HashMap;
use std::sync::Arc;

/// Errors from the broker. They reach clients as "internal error" (retryable).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached right now.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker answered with something unusable.
    #[error("broker error: {0}")]
    Internal(String),
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

/// Presence numbers of a channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PresenceStats {
    /// Connections present.
    pub clients: usize,
    /// Distinct user ids among them.
    pub users: usize,
}

/// The broker in use.
pub enum Broker {
    /// Embedded, in-process.
    Memory(memory::MemoryBroker),
    /// NATS and JetStream (cluster mode).
    Nats(nats::NatsBroker),
}

impl Broker {
    /// A short name for logs and `/api/info`.
    pub fn kind(&self) -> &'static str {
        match self {
            Broker::Memory(_) => "memory",
            Broker::Nats(_) => "nats",
        }
    }

    /// Starts background work that needs the node (NATS set-up, heartbeats, sweeping).
    pub fn start(&self, node: &Arc<Node>) {
        match self {
            Broker::Memory(m) => m.start(node),
            Broker::Nats(b) => b.start(node),
        }
    }

    /// Publishes to a channel. With history, the publication gets the next offset and is
    /// kept; the returned position is the publication's. Without history offset is 0.
    /// A publication with an `idempotency_key` already used on the channel within
    /// [`IDEMPOTENCY_WINDOW`] is not published again; the first one's position is
    /// returned (in a cluster: for channels with history, through JetStream's
    /// de-duplication).
    pub async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        ns: &NamespaceOptions,
        skip_history: bool,
        idempotency_key: Option<&str>,
    ) -> Result<StreamPosition, BrokerError> {
        let started = std::time::Instant::now();
        let result = match self {
            Broker::Memory(b) => {
                Ok(b.publish(channel, publication, ns, skip_history, idempotency_key))
            }
            Broker::Nats(b) => {
                b.publish(channel, &publication, ns, skip_history, idempotency_key)
                    .await
            }
        };
        if result.is_ok() {
            metrics::histogram!(crate::metrics::PUBLISH_DURATION)
                .record(started.elapsed().as_secs_f64());
        }
        result
    }

    /// Tells subscribers who want it that `info` joined `channel`.
    pub async fn publish_join(
        &self,
        channel: &str,
        info: &ClientInfo,
        ns: &NamespaceOptions,
    ) -> Result<(), BrokerError> {
        match self {
            Broker::Memory(b) => {
                b.join_leave(channel, info, true, ns);
                Ok(())
            }
            Broker::Nats(b) => b.join_leave(channel, info, nats::JoinLeave::Join, ns).await,
        }
    }

    /// Tells subscribers who want it that `info` left `channel`.
    /// `moving`: the member leaves because this node drains (see
    /// `ClusterOptions::rejoin_grace`).
    pub async fn publish_leave(
        &self,
        channel: &str,
        info: &ClientInfo,
        ns: &NamespaceOptions,
        moving: bool,
    ) -> Result<(), BrokerError> {
        match self {
            Broker::Memory(b) => {
                b.join_leave(channel, info, false, ns);
                Ok(())
            }
            Broker::Nats(b) => {
                let kind = if moving {
                    nats::JoinLeave::LeaveMoving
                } else {
                    nats::JoinLeave::Leave
                };
                b.join_leave(channel, info, kind, ns).await
            }
        }
    }

    /// This node serves `channel` (a local subscriber arrived). Returns once live
    /// delivery is in place, so history read afterwards cannot miss anything.
    pub async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        match self {
            // Everything is local: the hub already sees every publication.
            Broker::Memory(_) => Ok(()),
            Broker::Nats(b) => b.subscribe(channel).await,
        }
    }

    /// This node's last local subscriber of `channel` left.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        match self {
            Broker::Memory(_) => Ok(()),
            Broker::Nats(b) => b.unsubscribe(channel).await,
        }
    }

    /// Reads a channel's history and its current position.
    pub async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        ns: &NamespaceOptions,
    ) -> Result<HistoryResult, BrokerError> {
        match self {
            Broker::Memory(b) => Ok(b.history(channel, query, ns)),
            Broker::Nats(b) => b.history(channel, query, ns).await,
        }
    }

    /// Everything published after `since`, and whether that is exactly what was missed.
    /// Never a partial set: when something is gone, no publications at all.
    pub async fn recover(
        &self,
        channel: &str,
        since: &StreamPosition,
        ns: &NamespaceOptions,
    ) -> Result<Recovery, BrokerError> {
        let query = HistoryQuery {
            since: Some(since.clone()),
            limit: None,
            reverse: false,
            establish_position: true,
        };
        let h = self.history(channel, &query, ns).await?;
        let recovered = match self {
            // Offsets are contiguous per channel here.
            Broker::Memory(_) => {
                since.epoch == h.epoch
                    && since.offset <= h.offset
                    && match h.publications.first() {
                        Some(p) => p.offset == since.offset + 1,
                        None => since.offset == h.offset,
                    }
            }
            Broker::Nats(b) => b.recoverable(channel, since, h.offset, ns).await?,
        };
        let position = h.position();
        Ok(Recovery {
            publications: if recovered {
                h.publications
            } else {
                Vec::new()
            },
            position,
            recovered,
        })
    }

    /// Drops a channel's history (its offsets continue; its epoch stays).
    pub async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        match self {
            Broker::Memory(b) => {
                b.remove_history(channel);
                Ok(())
            }
            Broker::Nats(b) => b.remove_history(channel).await,
        }
    }

    /// Records that connection `client` with `info` is present in `channel`.
    pub async fn add_presence(
        &self,
        channel: &str,
        client: &str,
        info: &ClientInfo,
    ) -> Result<(), BrokerError> {
        match self {
            Broker::Memory(b) => b.add_presence(channel, client, info),
            Broker::Nats(b) => b.add_presence(channel, client, info),
        }
        Ok(())
    }

    /// Removes connection `client` from `channel`'s presence.
    pub async fn remove_presence(&self, channel: &str, client: &str) -> Result<(), BrokerError> {
        match self {
            Broker::Memory(b) => b.remove_presence(channel, client),
            Broker::Nats(b) => b.remove_presence(channel, client),
        }
        Ok(())
    }

    /// Who is present in `channel`: connection id → info.
    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, ClientInfo>, BrokerError> {
        match self {
            Broker::Memory(b) => Ok(b.presence(channel)),
            Broker::Nats(b) => b.presence(channel).await,
        }
    }

    /// How many connections and users are present in `channel`.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        match self {
            Broker::Memory(b) => Ok(b.presence_stats(channel)),
            Broker::Nats(b) => b.presence_stats(channel).await,
        }
    }

    /// Channels with subscribers, and how many (across the cluster).
    pub async fn channels(&self, node: &Node) -> Result<HashMap<String, u64>, BrokerError> {
        match self {
            Broker::Memory(_) => Ok(node
                .hub
                .channels()
                .into_iter()
                .map(|(c, n)| (c, n as u64))
                .collect()),
            Broker::Nats(b) => b.channels().await,
        }
    }

    /// Every live node's status.
    pub fn nodes(&self, node: &Node) -> Vec<NodeStatus> {
        match self {
            Broker::Memory(_) => vec![nats::node_status(node)],
            Broker::Nats(b) => b.nodes(),
        }
    }

    /// Applies a server API action on every node's connections.
    pub async fn control(&self, node: &Arc<Node>, control: Control) -> Result<(), BrokerError> {
        match self {
            Broker::Memory(_) => {
                crate::control::apply(node, control).await;
                Ok(())
            }
            Broker::Nats(b) => b.control(control).await,
        }
    }

    /// Whether the broker can serve right now (for `/readyz`); `Err` carries the reason.
    pub fn ready(&self) -> Result<(), String> {
        match self {
            Broker::Memory(_) => Ok(()),
            Broker::Nats(b) => b.ready(),
        }
    }

    /// Lets go of the broker at shutdown (NATS: drain the connection).
    pub async fn close(&self) {
        if let Broker::Nats(b) = self {
            b.close().await;
        }
    }
}
