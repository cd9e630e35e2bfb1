//! A shard: a set of clients run by one process, and what it reports.
//!
//! The parent runs one shard in-process when the clients fit under one process's file
//! limit, or starts worker processes (`herald-loadtest worker`) that each run one shard
//! and report the same [`ShardMsg`]s as JSON lines.

use crate::client::Client;
use crate::stats::hist::{lock, new_hist, Sharded, WireHist};
use crate::stats::{AtomicCounters, Counters};
use crate::ws::Target;
use hdrhistogram::Histogram;
use herald_shared::auth::{mint, Algorithm, MintClaims, SignKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Latency histogram slots per shard (see [`Sharded`]).
const LATENCY_SLOTS: usize = 32;

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
    /// HMAC secret for connection tokens.
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
    /// A connection token for client `index` (user `lt-<index>`, no expiry).
    pub fn token_for(&self, index: usize) -> String {
        let claims = MintClaims {
            sub: format!("lt-{index}"),
            ..Default::default()
        };
        mint(Algorithm::HS256, &self.key, &claims).unwrap_or_default()
    }
}

/// Runs a shard until told to stop (or until `control` closes), sending progress every
/// second and a final report to `tx`.
pub async fn run(
    spec: ShardSpec,
    mut control: mpsc::Receiver<Control>,
    tx: mpsc::Sender<ShardMsg>,
) {
    let mut targets = Vec::with_capacity(spec.urls.len());
    for url in &spec.urls {
        match Target::parse(url).await {
            Ok(t) => targets.push(t),
            Err(message) => {
                let _ = tx.send(ShardMsg::Error { message }).await;
                return;
            }
        }
    }
    if targets.is_empty() {
        let _ = tx
            .send(ShardMsg::Error {
                message: "no target URL".into(),
            })
            .await;
        return;
    }
    let loopback = targets.iter().all(|t| t.addr.ip().is_loopback());
    let sources = if loopback {
        (0..spec.source_ips.min(250))
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))
            .collect()
    } else {
        Vec::new()
    };
    let spec_count = spec.count;
    let ctx = Arc::new(ShardCtx {
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
        pub_seqs: (0..spec_count).map(|_| AtomicU64::new(0)).collect(),
        publishing: AtomicBool::new(false),
    });
    let clients = tokio::spawn(launch(ctx.clone()));
    let progress = tokio::spawn(progress(ctx.clone(), tx.clone()));
    let settled = tokio::spawn(watch_settled(ctx.clone(), tx.clone()));
    let finals = loop {
        match control.recv().await {
            Some(Control::Publish { on: true }) => ctx.publishing.store(true, Ordering::Relaxed),
            Some(Control::Publish { on: false }) => {
                ctx.publishing.store(false, Ordering::Relaxed);
                // Let a publish that read the flag just before finish recording its number.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx
                    .send(ShardMsg::Published {
                        seqs: published(&ctx),
                    })
                    .await;
            }
            Some(Control::Stop { finals }) => break finals,
            None => break FinalSeqs::default(),
        }
    };
    let _ = ctx.final_seqs.set(finals);
    ctx.stop.cancel();
    // Clients close politely within a second; do not wait for stragglers forever.
    let _ = tokio::time::timeout(Duration::from_secs(5), clients).await;
    progress.abort();
    settled.abort();
    let msg = ShardMsg::Final {
        counters: ctx.counters.snapshot(),
        latency: WireHist::from_hist(&ctx.latency.total()),
        connect: WireHist::from_hist(&lock(&ctx.connect_hist)),
        reconnect: WireHist::from_hist(&lock(&ctx.reconnect_hist)),
    };
    let _ = tx.send(msg).await;
}

/// Starts the clients at the shard's connect rate, then waits for all of them.
async fn launch(ctx: Arc<ShardCtx>) {
    let mut set = tokio::task::JoinSet::new();
    let start = Instant::now();
    let rate = ctx.spec.connect_rate;
    for i in 0..ctx.spec.count {
        if rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::select! {
                _ = ctx.stop.cancelled() => break,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        } else if ctx.stop.is_cancelled() {
            break;
        }
        set.spawn(Client::new(ctx.clone(), ctx.spec.first + i).run());
    }
    while set.join_next().await.is_some() {}
}

/// Sends a progress message every second.
async fn progress(ctx: Arc<ShardCtx>, tx: mpsc::Sender<ShardMsg>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    loop {
        every.tick().await;
        let msg = ShardMsg::Progress {
            counters: ctx.counters.snapshot(),
            interval: WireHist::from_hist(&ctx.latency.take_interval()),
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

/// Reports the moment every client has settled (polled every few milliseconds, which
/// bounds the error of the measured connect rate).
async fn watch_settled(ctx: Arc<ShardCtx>, tx: mpsc::Sender<ShardMsg>) {
    let count = ctx.spec.count as u64;
    while !ctx.stop.is_cancelled() {
        if ctx.counters.settled.load(Ordering::Relaxed) >= count {
            let at_micros = crate::protocol::now_micros();
            let _ = tx.send(ShardMsg::Settled { at_micros }).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `(channel, publisher, last seq)` of every client of the shard that published.
fn published(ctx: &ShardCtx) -> Vec<(String, u64, u64)> {
    ctx.pub_seqs
        .iter()
        .enumerate()
        .filter_map(|(i, seq)| {
            let seq = seq.load(Ordering::Relaxed);
            let index = ctx.spec.first + i;
            let channel = ctx.spec.channels.channels_of(index).into_iter().next()?;
            (seq > 0).then_some((channel, index as u64, seq))
        })
        .collect()
}
