//! The hub: which local connections are subscribed to which channel, and fan-out.
//!
//! A publication reaches the hub as a [`Broadcast`]: encoded at most once per encoding
//! (JSON, Protobuf), on the first subscriber that needs that form, into one `Bytes` for
//! all its recipients; the hub appends a clone to each subscriber's outbound queue.
//! Nothing is allocated per recipient beyond the queue slot, and a channel without a
//! Protobuf subscriber never pays for a Protobuf encoding.
//!
//! A subscriber that is still being set up (its subscribe is reading history to
//! recover) is "syncing": publications for it are held back with their offsets, and
//! [`Hub::go_live`] releases those newer than what the history already gave it. That is
//! how live delivery and backfill merge without a gap or a duplicate.
//!
//! Delta mode and tags filters (see [`frames`]): a subscriber in delta mode whose last
//! publication was the channel's previous one takes the one shared delta frame; any
//! other delta subscriber (new, just recovered, or filtered out of the previous one)
//! takes the shared full frame. Tags filters are evaluated once per distinct filter.

pub mod frames;

use crate::conn::outbound::{Outbound, Pushed};
use bytes::Bytes;
use frames::{FilterGroups, Frames};
use herald_shared::protocol::filter::FilterNode;
use herald_shared::protocol::{Broadcast, DisconnectCode, Encoding, PushBody, RawJson};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;

const SHARDS: usize = 64;

/// One local subscriber of a channel.
struct Subscriber {
    /// The connection's id (unique on this node).
    conn_id: u64,
    /// Its outbound queue.
    out: Arc<Outbound>,
    /// The queue's encoding, kept here to pick the form of a fan-out without a call.
    encoding: Encoding,
    /// It asked for join/leave pushes.
    join_leave: bool,
    /// In delta mode: publication data as JSON strings, deltas where it has the base.
    delta: bool,
    /// Its tags filter's slot in the channel's [`FilterGroups`].
    filter: Option<usize>,
    /// Delta mode: the channel's fan-out number of the last publication it was given
    /// (0: none yet), so it takes a delta only against what it has.
    seen: u64,
    /// `Some` while syncing: publications (offset, fan-out number, bytes) held back
    /// until go-live.
    pending: Option<Vec<(u64, u64, Bytes)>>,
    /// Bytes held in `pending`, bounded like the outbound queue.
    pending_bytes: usize,
    /// Offsets up to this one were in its subscribe reply: a live copy that arrives late
    /// (it was in flight from the broker while history was read) is not sent again.
    delivered_up_to: u64,
}

#[derive(Default)]
struct Channel {
    /// In no particular order: a removal moves the last one into the gap.
    subs: Vec<Subscriber>,
    /// Where each connection's entry is in `subs`. A big channel's storm of subscribes
    /// and unsubscribes (a failover, a drain) is then linear in the storm, not quadratic
    /// in the channel: each one used to scan `subs`, and each removal shifted the rest.
    at: HashMap<u64, usize>,
    /// The distinct tags filters among `subs`.
    filters: FilterGroups,
    /// Subscribers in delta mode.
    delta_subs: usize,
    /// Publications fanned out so far (what [`Subscriber::seen`] counts in).
    seq: u64,
    /// The last publication's data, kept while a delta subscriber exists: the base
    /// of the next delta.
    last: Option<RawJson>,
}

/// How a subscriber takes its channel's traffic.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    /// It asked for join/leave pushes (and the namespace sends them).
    pub join_leave: bool,
    /// Delta mode (fossil) was agreed.
    pub delta: bool,
    /// Only publications whose tags pass.
    pub filter: Option<Arc<FilterNode>>,
}

type Shard = RwLock<HashMap<Arc<str>, Arc<Mutex<Channel>>>>;

/// Local subscriptions of this node.
pub struct Hub {
    shards: Box<[Shard]>,
    /// Bound on bytes held back for one syncing subscriber.
    max_pending_bytes: usize,
    /// `herald_node_deliveries_total`, counted here so every broker's fan-out counts.
    deliveries: metrics::Counter,
    /// `herald_node_slow_consumer_drops_total`.
    slow: metrics::Counter,
}

impl Channel {
    /// Removes `conn_id`'s subscription, if any, with its filter and delta counts.
    fn drop_sub(&mut self, conn_id: u64) {
        let Some(i) = self.at.remove(&conn_id) else {
            return;
        };
        let sub = self.subs.swap_remove(i);
        if let Some(moved) = self.subs.get(i) {
            self.at.insert(moved.conn_id, i);
        }
        if let Some(slot) = sub.filter {
            self.filters.leave(slot);
        }
        self.delta_subs -= usize::from(sub.delta);
    }

    /// Adds a subscription (`conn_id` has none here).
    fn push_sub(&mut self, sub: Subscriber) {
        self.at.insert(sub.conn_id, self.subs.len());
        self.subs.push(sub);
    }

    /// `conn_id`'s subscription.
    fn sub_mut(&mut self, conn_id: u64) -> Option<&mut Subscriber> {
        let i = *self.at.get(&conn_id)?;
        self.subs.get_mut(i)
    }
}

/// What a fan-out did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Messages queued for live subscribers.
    pub delivered: usize,
    /// Subscribers that were disconnected as slow by this fan-out.
    pub slow: usize,
}

fn shard_of(channel: &str) -> usize {
    // FNV-1a: cheap and good enough to spread channel names over the shards.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in channel.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h as usize) % SHARDS
}

impl Hub {
    /// An empty hub; `max_pending_bytes` bounds what is held for one syncing subscriber.
    /// Fan-out is counted in the metrics recorder installed at this point (none: not
    /// counted).
    pub fn new(max_pending_bytes: usize) -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            max_pending_bytes,
            deliveries: metrics::counter!(crate::metrics::DELIVERIES),
            slow: metrics::counter!(crate::metrics::SLOW_CONSUMER_DROPS),
        }
    }

    fn count(&self, f: Fanout) -> Fanout {
        if f.delivered > 0 {
            self.deliveries.increment(f.delivered as u64);
        }
        if f.slow > 0 {
            self.slow.increment(f.slow as u64);
        }
        f
    }

    fn channel(&self, channel: &str) -> Option<Arc<Mutex<Channel>>> {
        let shard = self.shards[shard_of(channel)].read();
        shard.get(channel).cloned()
    }

    /// Adds a subscriber. `syncing` holds its publications back until [`Hub::go_live`].
    /// Returns true when it is the channel's first local subscriber.
    pub fn add(
        &self,
        channel: &str,
        conn_id: u64,
        out: Arc<Outbound>,
        delivery: Delivery,
        syncing: bool,
    ) -> bool {
        let mut shard = self.shards[shard_of(channel)].write();
        let entry = shard.entry(Arc::from(channel)).or_default().clone();
        let mut ch = entry.lock();
        let first = ch.subs.is_empty();
        ch.drop_sub(conn_id);
        let filter = delivery.filter.as_ref().map(|f| ch.filters.join(f));
        ch.delta_subs += usize::from(delivery.delta);
        ch.push_sub(Subscriber {
            conn_id,
            encoding: out.encoding(),
            out,
            join_leave: delivery.join_leave,
            delta: delivery.delta,
            filter,
            seen: 0,
            pending: syncing.then(Vec::new),
            pending_bytes: 0,
            delivered_up_to: 0,
        });
        first
    }

    /// Removes a subscriber. Returns true when the channel has no local subscriber left.
    pub fn remove(&self, channel: &str, conn_id: u64) -> bool {
        let mut shard = self.shards[shard_of(channel)].write();
        let Some(entry) = shard.get(channel).cloned() else {
            return true;
        };
        let mut ch = entry.lock();
        ch.drop_sub(conn_id);
        let empty = ch.subs.is_empty();
        drop(ch);
        if empty {
            shard.remove(channel);
        }
        empty
    }

    /// Ends syncing for a subscriber: queues, in order, the held-back publications whose
    /// offset is above `delivered_up_to` (what its subscribe reply already carried) and
    /// from then on delivers live. Returns false if the subscriber is gone.
    pub fn go_live(&self, channel: &str, conn_id: u64, delivered_up_to: u64) -> bool {
        let Some(entry) = self.channel(channel) else {
            return false;
        };
        let mut ch = entry.lock();
        let Some(sub) = ch.sub_mut(conn_id) else {
            return false;
        };
        sub.delivered_up_to = delivered_up_to;
        if let Some(pending) = sub.pending.take() {
            sub.pending_bytes = 0;
            let newer: Vec<_> = pending
                .into_iter()
                .filter(|(offset, _, _)| *offset == 0 || *offset > delivered_up_to)
                .collect();
            // Held-back frames of a delta subscriber are full ones: its base is the
            // last of them, or nothing (what the reply carried may not be the
            // channel's last publication).
            sub.seen = newer.last().map_or(0, |(_, seq, _)| *seq);
            sub.out.push_all(newer.into_iter().map(|(_, _, b)| b));
        }
        true
    }

    /// Delivers a publication to every local subscriber whose filter it passes, each
    /// in its connection's encoding (`push`: encoded at most once per encoding), and the
    /// shared delta-mode frames to delta subscribers (JSON only).
    ///
    /// `received` (a `metrics::now_nanos` time: when the broker got it) travels with the
    /// copy queued for the last subscriber only, whose writer records the delivery lag
    /// when it writes it: one sample per fan-out, the sweep's slowest, and nothing per
    /// recipient (0: no sample).
    pub fn publish(&self, channel: &str, push: &Broadcast<'_>, received: u64) -> Fanout {
        let PushBody::Pub(p) = *push.body() else {
            return Fanout::default();
        };
        let Some(entry) = self.channel(channel) else {
            return Fanout::default();
        };
        let mut guard = entry.lock();
        let ch = &mut *guard;
        ch.seq += 1;
        let seq = ch.seq;
        let previous = if ch.delta_subs > 0 {
            ch.last.replace(p.data.clone())
        } else {
            ch.last = None;
            None
        };
        let passes = ch.filters.evaluate(&p.tags);
        let mut frames = Frames::new(channel, p, previous.as_ref(), push);
        let offset = p.offset;
        let mut f = Fanout::default();
        let max_pending = self.max_pending_bytes;
        let last = ch.subs.len().saturating_sub(1);
        for (i, sub) in ch.subs.iter_mut().enumerate() {
            if sub.filter.is_some_and(|i| !passes[i]) {
                continue;
            }
            if sub.pending.is_none() && offset != 0 && offset <= sub.delivered_up_to {
                continue;
            }
            let frame = if sub.delta && sub.encoding == Encoding::Json {
                let has_base = sub.pending.is_none() && sub.seen != 0 && sub.seen + 1 == seq;
                sub.seen = seq;
                frames.for_delta(has_base).0
            } else {
                frames.plain(sub.encoding)
            };
            match sub.pending.as_mut() {
                Some(pending) => {
                    sub.pending_bytes += frame.len();
                    if sub.pending_bytes > max_pending {
                        // Held back too much while syncing: the client must resync.
                        sub.out.close(DisconnectCode::InsufficientState);
                        sub.pending = Some(Vec::new());
                        sub.pending_bytes = 0;
                        f.slow += 1;
                    } else {
                        pending.push((offset, seq, frame));
                    }
                }
                None => {
                    let probe = if i == last { received } else { 0 };
                    match sub.out.push_probed(frame, probe) {
                        Pushed::Queued => f.delivered += 1,
                        Pushed::Slow => f.slow += 1,
                        Pushed::Closing => {}
                    }
                }
            }
        }
        drop(guard);
        self.count(f)
    }

    /// Delivers a join or leave push to the subscribers that want them (`force`: all).
    pub fn join_leave(&self, channel: &str, push: &Broadcast<'_>, force: bool) -> Fanout {
        let Some(entry) = self.channel(channel) else {
            return Fanout::default();
        };
        let ch = entry.lock();
        let mut f = Fanout::default();
        for sub in ch.subs.iter() {
            if !(force || sub.join_leave) || sub.pending.is_some() {
                continue;
            }
            match sub.out.push(push.get(sub.encoding).clone()) {
                Pushed::Queued => f.delivered += 1,
                Pushed::Slow => f.slow += 1,
                Pushed::Closing => {}
            }
        }
        self.count(f)
    }

    /// Closes every local subscriber of `channel` with `code` (the channel's stream
    /// could not be followed; they reconnect and recover).
    pub fn close_channel(&self, channel: &str, code: DisconnectCode) {
        let Some(entry) = self.channel(channel) else {
            return;
        };
        let ch = entry.lock();
        for sub in ch.subs.iter() {
            sub.out.close(code);
        }
    }

    /// Whether any local connection is subscribed to `channel`.
    pub fn has_subscribers(&self, channel: &str) -> bool {
        self.channel(channel).is_some()
    }

    /// Every channel with local subscribers, with their number.
    pub fn channels(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read();
            for (name, ch) in shard.iter() {
                let n = ch.lock().subs.len();
                out.push((name.to_string(), n));
            }
        }
        out
    }

    /// Total subscriptions on this node.
    pub fn num_subscriptions(&self) -> usize {
        self.channels().iter().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests;
