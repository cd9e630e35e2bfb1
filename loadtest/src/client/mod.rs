//! One simulated user: connects, subscribes, counts what it receives, optionally
//! publishes, and reconnects with recovery when the scenario asks for it.
//!
//! Everything a client measures goes into per-client locals during one read and is
//! added to the shard's shared counters once per read, so thousands of clients on a
//! few threads do not fight over cache lines.
//!
//! # Layout
//! - this file: the client, its connection loop, reconnects and publishing.
//! - [`messages`]: what the client does with each message from the server.
//! - [`pusher`]: the same for a Pusher-protocol server.

mod messages;
mod pusher;

use crate::cli::Protocol;
use crate::protocol;
use crate::shard::ctx::ShardCtx;
use crate::stats::stream::{Delta, StreamTracker};
use crate::stats::AtomicCounters;
use crate::ws::WsConn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::{sleep, timeout, Interval, MissedTickBehavior};

/// Id of the `connect` command; subscribes follow, publishes start at [`FIRST_PUBLISH_ID`].
const CONNECT_ID: u32 = 1;
/// First id used for `publish` commands (subscribe ids stay below it).
const FIRST_PUBLISH_ID: u32 = 1_000;
/// Longest pause between reconnect attempts.
const MAX_BACKOFF_MS: u64 = 2_000;

/// One subscription and its position in the channel's stream.
struct Sub {
    /// The channel.
    channel: String,
    /// Offsets seen so far.
    tracker: StreamTracker,
    /// The subscribe in flight asked for recovery.
    recovering: bool,
    /// Delta mode: the last payload's JSON text, the base of the next delta.
    base: Vec<u8>,
}

/// Where a session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the `connect` reply.
    Connecting,
    /// Waiting for this many `subscribe` replies.
    Subscribing(usize),
    /// Connected and subscribed.
    Ready,
}

/// How a session ended.
enum Ended {
    /// The run is over.
    Stopped,
    /// It never became ready (refused, timed out, error reply).
    Failed,
    /// It was ready and then the connection ended.
    Lost,
}

/// What one read changed, added to the shared counters in one go.
#[derive(Default)]
struct Batch {
    /// Publications received.
    deliveries: u64,
    /// Bytes of their pushes.
    pub_bytes: u64,
    /// Stream integrity changes.
    delta: Delta,
    /// Pings answered.
    pings: u64,
    /// Error replies to publishes.
    publish_errors: u64,
    /// Error replies to subscribes.
    sub_failed: u64,
    /// Successful subscribes.
    subscribed: u64,
}

/// One simulated user.
pub struct Client {
    /// The shard's shared state.
    ctx: Arc<ShardCtx>,
    /// Global index (spreads clients over nodes, source addresses and channels).
    index: usize,
    /// Connection token.
    token: String,
    /// `name=key` for a router's stickiness, when the shard has a parameter name.
    sticky: Option<String>,
    /// Channels this client subscribes to.
    subs: Vec<Sub>,
    /// Commands produced while handling a frame, sent as one frame afterwards.
    out: Vec<u8>,
    /// Scratch for payloads.
    scratch: Vec<u8>,
    /// Latencies of the current read, recorded in one batch.
    latencies: Vec<u64>,
    /// Which of the shard's URLs to use next.
    url_at: usize,
    /// Next publish command id.
    publish_id: u32,
    /// Sequence number of the last publication sent (in the payload).
    publish_seq: u64,
    /// State of the jitter generator.
    rng: u64,
    /// The first attempt (connect storm accounting) has been counted as settled.
    settled: bool,
    /// The server said not to reconnect (a code from 3500–3999 or 4500–4999).
    give_up: bool,
    /// When the current outage began, for reconnect times.
    outage_since: Option<Instant>,
}

impl Client {
    /// A client with global index `index`.
    pub fn new(ctx: Arc<ShardCtx>, index: usize) -> Self {
        let subs = ctx
            .spec
            .channels
            .channels_of(index)
            .into_iter()
            .map(|channel| Sub {
                channel,
                tracker: StreamTracker::default(),
                recovering: false,
                base: Vec::new(),
            })
            .collect();
        let token = ctx.token_for(index);
        let sticky = ctx
            .spec
            .sticky_query
            .as_ref()
            .map(|name| format!("{name}=lt-{index}"));
        Client {
            url_at: index % ctx.targets.len(),
            rng: 0x9E37_79B9_7F4A_7C15 ^ (index as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            ctx,
            index,
            token,
            sticky,
            subs,
            out: Vec::with_capacity(256),
            scratch: Vec::new(),
            latencies: Vec::new(),
            publish_id: FIRST_PUBLISH_ID,
            publish_seq: 0,
            settled: false,
            give_up: false,
            outage_since: None,
        }
    }

    /// Runs until the shard stops (or, without reconnects, until the connection ends).
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            match self.session().await {
                Ended::Stopped => break,
                Ended::Failed => {
                    AtomicCounters::add(&self.ctx.counters.conn_failed, 1);
                    self.settle();
                    failures = failures.saturating_add(1);
                }
                Ended::Lost => {
                    AtomicCounters::add(&self.ctx.counters.disconnects, 1);
                    self.outage_since = Some(Instant::now());
                    failures = 0;
                }
            }
            if !self.ctx.spec.reconnect || self.give_up || self.ctx.stop.is_cancelled() {
                break;
            }
            // Next node (when the target is a list of nodes), after a jittered backoff so
            // that the clients of a dead node do not come back as one herd.
            self.url_at = (self.url_at + 1) % self.ctx.targets.len();
            let cap = (100u64 << failures.min(5)).min(MAX_BACKOFF_MS);
            let pause = Duration::from_millis(self.next_rand() % cap.max(1));
            tokio::select! {
                _ = self.ctx.stop.cancelled() => break,
                _ = sleep(pause) => {}
            }
        }
        self.settle();
        self.count_tail();
    }

    /// One connection, from TCP connect until it ends.
    async fn session(&mut self) -> Ended {
        let ctx = self.ctx.clone();
        let started = Instant::now();
        let limit = Duration::from_millis(ctx.spec.connect_timeout_ms);
        let target = &ctx.targets[self.url_at];
        let source = (!ctx.sources.is_empty()).then(|| ctx.sources[self.index % ctx.sources.len()]);
        AtomicCounters::add(&ctx.counters.conn_attempts, 1);
        let opened = tokio::select! {
            _ = ctx.stop.cancelled() => return Ended::Stopped,
            r = timeout(limit, WsConn::connect(target, source, self.rng as u32, self.sticky.as_deref())) => r,
        };
        let mut ws = match opened {
            Ok(Ok(ws)) => ws,
            _ => return Ended::Failed,
        };
        self.out.clear();
        match ctx.spec.protocol {
            Protocol::Centrifugo => {
                protocol::encode_connect(&mut self.out, CONNECT_ID, &self.token);
                ws.queue_text(&self.out);
                self.out.clear();
            }
            // The server speaks first: `pusher:connection_established`.
            Protocol::Pusher => {}
        }
        let mut phase = Phase::Connecting;
        // What came in with the upgrade response (a server that speaks first) is
        // already buffered: handle it before waiting for more bytes.
        let mut batch = Batch::default();
        let early = self.drain_events(&mut ws, &mut phase, started, &mut batch);
        self.flush_batch(&mut batch);
        if early.is_err() {
            return Ended::Failed;
        }
        let deadline = sleep(limit);
        tokio::pin!(deadline);
        // Created once ready: a timer that ticked unobserved while connecting would fire
        // late for every client at once and line all their phases up.
        let mut publish_timer: Option<Interval> = None;
        loop {
            if phase == Phase::Ready && publish_timer.is_none() {
                publish_timer = self.publish_timer();
            }
            if ws.has_pending() && ws.flush().await.is_err() {
                return if phase == Phase::Ready {
                    Ended::Lost
                } else {
                    Ended::Failed
                };
            }
            tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => {
                    ws.queue_close(1000);
                    let _ = timeout(Duration::from_secs(1), ws.flush()).await;
                    return Ended::Stopped;
                }
                _ = &mut deadline, if phase != Phase::Ready => return Ended::Failed,
                _ = tick(&mut publish_timer), if phase == Phase::Ready && publish_timer.is_some() => {
                    if ctx.publishing.load(Ordering::Relaxed) {
                        self.queue_publish(&mut ws);
                    }
                }
                read = ws.fill() => {
                    let mut batch = Batch::default();
                    let result = match read {
                        Ok(n) => {
                            AtomicCounters::add(&ctx.counters.bytes_in, n as u64);
                            self.drain_events(&mut ws, &mut phase, started, &mut batch)
                        }
                        Err(_) => Err(()),
                    };
                    self.flush_batch(&mut batch);
                    if result.is_err() {
                        return if phase == Phase::Ready { Ended::Lost } else { Ended::Failed };
                    }
                }
            }
        }
    }

    /// A timer for this client's publishes, first tick at a random phase so clients
    /// do not publish in lockstep.
    fn publish_timer(&mut self) -> Option<Interval> {
        let publish = self.ctx.spec.publish.as_ref()?;
        if self.subs.is_empty() || publish.period_ms <= 0.0 {
            return None;
        }
        let period =
            Duration::from_secs_f64(publish.period_ms / 1000.0).max(Duration::from_micros(100));
        let phase = Duration::from_micros(self.next_rand() % (period.as_micros() as u64).max(1));
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Some(timer)
    }

    /// Queues one `publish` to this client's first channel.
    fn queue_publish(&mut self, ws: &mut WsConn) {
        let size = self.ctx.spec.publish.as_ref().map_or(0, |p| p.payload);
        self.scratch.clear();
        self.publish_seq += 1;
        let stamp = protocol::Stamp {
            sent_micros: protocol::now_micros(),
            publisher: self.index as u64,
            seq: self.publish_seq,
        };
        protocol::encode_payload(&mut self.scratch, stamp, size);
        self.out.clear();
        protocol::encode_publish(
            &mut self.out,
            self.publish_id,
            &self.subs[0].channel,
            &self.scratch,
        );
        self.publish_id = self.publish_id.checked_add(1).unwrap_or(FIRST_PUBLISH_ID);
        ws.queue_text(&self.out);
        self.out.clear();
        AtomicCounters::add(&self.ctx.counters.client_publishes, 1);
        if let Some(slot) = self.ctx.pub_seqs.get(self.index - self.ctx.spec.first) {
            slot.store(self.publish_seq, Ordering::Relaxed);
        }
    }

    /// splitmix64: jitter and timer phases.
    fn next_rand(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Waits for the next tick of an optional timer (never, without one).
async fn tick(timer: &mut Option<Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}
