//! The state the clients of one shard share. Below both the shard's runner and the
//! clients: the runner builds it and starts clients with it; clients read and record
//! into it and never reach back into the runner.

use super::spec::{FinalSeqs, ShardSpec};
use crate::stats::hist::{new_hist, Sharded};
use crate::stats::AtomicCounters;
use crate::ws::Target;
use hdrhistogram::Histogram;
use herald_shared::auth::{mint, Algorithm, MintClaims, SignKey};
use parking_lot::Mutex;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::OnceLock;
use tokio_util::sync::CancellationToken;

/// Latency histogram slots per shard (see [`Sharded`]).
const LATENCY_SLOTS: usize = 32;

/// State shared by the clients of one shard.
pub struct ShardCtx {
    /// The shard's parameters.
    pub spec: ShardSpec,
    /// Resolved `spec.urls`.
    pub targets: Vec<Target>,
    /// Source addresses to bind, empty for none.
    pub sources: Vec<IpAddr>,
    /// Live counters.
    pub counters: AtomicCounters,
    /// End-to-end latencies.
    pub latency: Sharded,
    /// First connect times.
    pub connect_hist: Mutex<Histogram<u64>>,
    /// Reconnect times.
    pub reconnect_hist: Mutex<Histogram<u64>>,
    /// Fires when the run is over.
    pub stop: CancellationToken,
    /// Set just before `stop`: the publishers' last numbers, for losses at the tail.
    pub final_seqs: OnceLock<FinalSeqs>,
    /// Last sequence number published by each client of the shard (by local index).
    pub pub_seqs: Vec<AtomicU64>,
    /// Publishing clients publish only while this is set (the measured phase).
    pub publishing: AtomicBool,
    /// Signing key for tokens.
    key: SignKey,
}

impl ShardCtx {
    /// Fresh state for the clients of `spec`, connecting to `targets` from `sources`.
    pub fn new(spec: ShardSpec, targets: Vec<Target>, sources: Vec<IpAddr>) -> Self {
        let count = spec.count;
        ShardCtx {
            key: SignKey::Hmac(spec.secret.as_bytes().to_vec()),
            spec,
            targets,
            sources,
            counters: AtomicCounters::default(),
            latency: Sharded::new(LATENCY_SLOTS),
            connect_hist: Mutex::new(new_hist()),
            reconnect_hist: Mutex::new(new_hist()),
            stop: CancellationToken::new(),
            final_seqs: OnceLock::new(),
            pub_seqs: (0..count).map(|_| AtomicU64::new(0)).collect(),
            publishing: AtomicBool::new(false),
        }
    }

    /// A connection token for client `index` (user `lt-<index>`, no expiry); empty
    /// without a secret (`--no-token`).
    pub fn token_for(&self, index: usize) -> String {
        if self.spec.secret.is_empty() {
            return String::new();
        }
        let claims = MintClaims {
            sub: format!("lt-{index}"),
            ..Default::default()
        };
        mint(Algorithm::HS256, &self.key, &claims).unwrap_or_default()
    }
}
