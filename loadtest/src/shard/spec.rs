//! What the parent and a shard tell each other: the shard's parameters and the messages
//! both ways. Sent to worker processes as JSON, so everything here is serde.

use crate::cli::Protocol;
use crate::stats::hist::WireHist;
use crate::stats::Counters;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Which channels a client subscribes to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Channel name, or prefix when there are several.
    pub prefix: String,
    /// Number of channels; 0 means clients do not subscribe.
    pub count: usize,
    /// Consecutive clients sharing a channel (room size); at least 1.
    pub group: usize,
}

impl Layout {
    /// The channels of client `index`.
    pub fn channels_of(&self, index: usize) -> Vec<String> {
        match self.count {
            0 => Vec::new(),
            1 => vec![self.prefix.clone()],
            n => vec![self.name(index / self.group.max(1) % n)],
        }
    }

    /// Every channel of the layout.
    pub fn all(&self) -> Vec<String> {
        match self.count {
            0 => Vec::new(),
            1 => vec![self.prefix.clone()],
            n => (0..n).map(|i| self.name(i)).collect(),
        }
    }

    fn name(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }
}

/// Clients that publish through the client protocol (the rooms scenario).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientPublish {
    /// Milliseconds between two publishes of one client.
    pub period_ms: f64,
    /// Payload size in bytes.
    pub payload: usize,
}

/// Everything a shard needs; sent to workers as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardSpec {
    /// Global index of the shard's first client.
    pub first: usize,
    /// Number of clients.
    pub count: usize,
    /// WebSocket URLs; client `i` starts at `urls[i % len]` and moves to the next one
    /// on each reconnect.
    pub urls: Vec<String>,
    /// HMAC secret for connection tokens; empty: clients connect without a token.
    pub secret: String,
    /// Spread connections over this many source addresses 127.0.0.2, .3, …
    /// (0: let the kernel choose; only used for loopback targets).
    pub source_ips: u32,
    /// New connections per second for this shard (0: as fast as possible).
    pub connect_rate: f64,
    /// Time allowed for TCP, upgrade, `connect` and subscribes, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Reconnect (with recovery) when a connection ends.
    pub reconnect: bool,
    /// Channels to subscribe to.
    pub channels: Layout,
    /// Clients publish on their channel.
    pub publish: Option<ClientPublish>,
    /// Query parameter carrying each client's stickiness key for a router.
    pub sticky_query: Option<String>,
    /// The client protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// Subscribe in fossil delta mode and decode the deltas.
    #[serde(default)]
    pub delta: bool,
}

/// For each channel, `(publisher, last sequence number published)` of its publishers:
/// what every subscriber should have seen last.
pub type FinalSeqs = HashMap<String, Vec<(u64, u64)>>;

/// Publisher ids of server API publishers start here (client publishers use their
/// client index, far below).
pub const API_PUBLISHER_BASE: u64 = 1 << 40;

/// What the parent tells a shard.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Control {
    /// Clients that publish start (`true`) or stop (`false`) publishing; they start off.
    Publish {
        /// Whether to publish.
        on: bool,
    },
    /// The run is over; the publishers' last numbers let clients count tail losses.
    Stop {
        /// Last sequence number of each publisher, per channel.
        finals: FinalSeqs,
    },
}

/// What a shard reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShardMsg {
    /// Once per second: cumulative counters and the last second's latencies.
    Progress {
        /// Cumulative counters.
        counters: Counters,
        /// Latencies recorded since the previous progress message.
        interval: WireHist,
    },
    /// After the stop: everything.
    Final {
        /// Cumulative counters, including losses counted at the end.
        counters: Counters,
        /// End-to-end latency of live publications, µs.
        latency: WireHist,
        /// First connect (TCP to `connect` reply), µs.
        connect: WireHist,
        /// Outage to subscribed again, µs.
        reconnect: WireHist,
    },
    /// Answer to `Publish { on: false }`: the last sequence number of each of this
    /// shard's publishing clients, as `(channel, publisher, seq)`.
    Published {
        /// One entry per client that published.
        seqs: Vec<(String, u64, u64)>,
    },
    /// Every client of the shard has finished its first attempt (ready or failed).
    Settled {
        /// When, in microseconds since the Unix epoch.
        at_micros: u64,
    },
    /// The shard could not start (bad URL...).
    Error {
        /// What went wrong.
        message: String,
    },
}
