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

use crate::config::NamespaceOptions;
use herald_shared::protocol::{ClientInfo, HistoryResult, Publication, StreamPosition};
use std::collections::HashMap;

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

/// What to read from a channel's history.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// Only publications after this position (its epoch is checked by the caller).
    pub since: Option<StreamPosition>,
    /// At most this many publications; `None`: all that are kept; `Some(0)`: only the position.
    pub limit: Option<usize>,
    /// Newest first.
    pub reverse: bool,
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
}

impl Broker {
    /// A short name for logs and `/api/info`.
    pub fn kind(&self) -> &'static str {
        match self {
            Broker::Memory(_) => "memory",
        }
    }

    /// Publishes to a channel. With history, the publication gets the next offset and is
    /// kept; the returned position is the publication's. Without history offset is 0.
    pub async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        ns: &NamespaceOptions,
        skip_history: bool,
    ) -> Result<StreamPosition, BrokerError> {
        match self {
            Broker::Memory(b) => Ok(b.publish(channel, publication, ns, skip_history)),
        }
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
        }
    }

    /// Tells subscribers who want it that `info` left `channel`.
    pub async fn publish_leave(
        &self,
        channel: &str,
        info: &ClientInfo,
        ns: &NamespaceOptions,
    ) -> Result<(), BrokerError> {
        match self {
            Broker::Memory(b) => {
                b.join_leave(channel, info, false, ns);
                Ok(())
            }
        }
    }

    /// This node starts serving `channel` (its first local subscriber arrived).
    pub async fn subscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        match self {
            // Everything is local: the hub already sees every publication.
            Broker::Memory(_) => Ok(()),
        }
    }

    /// This node stops serving `channel` (its last local subscriber left).
    pub async fn unsubscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        match self {
            Broker::Memory(_) => Ok(()),
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
        }
    }

    /// Drops a channel's history (its offsets continue; its epoch stays).
    pub async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        match self {
            Broker::Memory(b) => {
                b.remove_history(channel);
                Ok(())
            }
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
            Broker::Memory(b) => {
                b.add_presence(channel, client, info);
                Ok(())
            }
        }
    }

    /// Removes connection `client` from `channel`'s presence.
    pub async fn remove_presence(&self, channel: &str, client: &str) -> Result<(), BrokerError> {
        match self {
            Broker::Memory(b) => {
                b.remove_presence(channel, client);
                Ok(())
            }
        }
    }

    /// Who is present in `channel`: connection id → info.
    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, ClientInfo>, BrokerError> {
        match self {
            Broker::Memory(b) => Ok(b.presence(channel)),
        }
    }

    /// How many connections and users are present in `channel`.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        match self {
            Broker::Memory(b) => Ok(b.presence_stats(channel)),
        }
    }

    /// Whether the broker can serve right now (for `/readyz`); `Err` carries the reason.
    pub fn ready(&self) -> Result<(), String> {
        match self {
            Broker::Memory(_) => Ok(()),
        }
    }
}
