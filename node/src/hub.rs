//! The hub: which local connections are subscribed to which channel, and fan-out.
//!
//! A publication reaches the hub already encoded (one `Bytes` for all recipients); the
//! hub appends a clone to each subscriber's outbound queue. Nothing is allocated per
//! recipient beyond the queue slot.
//!
//! A subscriber that is still being set up (its subscribe is reading history to
//! recover) is "syncing": publications for it are held back with their offsets, and
//! [`Hub::go_live`] releases those newer than what the history already gave it. That is
//! how live delivery and backfill merge without a gap or a duplicate.

use crate::conn::outbound::{Outbound, Pushed};
use bytes::Bytes;
use herald_shared::protocol::DisconnectCode;
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
    /// It asked for join/leave pushes.
    join_leave: bool,
    /// `Some` while syncing: publications (offset, bytes) held back until go-live.
    pending: Option<Vec<(u64, Bytes)>>,
    /// Bytes held in `pending`, bounded like the outbound queue.
    pending_bytes: usize,
    /// Offsets up to this one were in its subscribe reply: a live copy that arrives late
    /// (it was in flight from the broker while history was read) is not sent again.
    delivered_up_to: u64,
}

#[derive(Default)]
struct Channel {
    subs: Vec<Subscriber>,
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
        join_leave: bool,
        syncing: bool,
    ) -> bool {
        let mut shard = self.shards[shard_of(channel)].write();
        let entry = shard.entry(Arc::from(channel)).or_default().clone();
        let mut ch = entry.lock();
        let first = ch.subs.is_empty();
        ch.subs.retain(|s| s.conn_id != conn_id);
        ch.subs.push(Subscriber {
            conn_id,
            out,
            join_leave,
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
        ch.subs.retain(|s| s.conn_id != conn_id);
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
        let Some(sub) = ch.subs.iter_mut().find(|s| s.conn_id == conn_id) else {
            return false;
        };
        sub.delivered_up_to = delivered_up_to;
        if let Some(pending) = sub.pending.take() {
            sub.pending_bytes = 0;
            let newer = pending
                .into_iter()
                .filter(|(offset, _)| *offset == 0 || *offset > delivered_up_to)
                .map(|(_, b)| b);
            sub.out.push_all(newer);
        }
        true
    }

    /// Delivers an encoded publication with its offset to every local subscriber.
    ///
    /// `received` (a `metrics::now_nanos` time: when the broker got it) travels with the
    /// copy queued for the last subscriber only, whose writer records the delivery lag
    /// when it writes it: one sample per fan-out, the sweep's slowest, and nothing per
    /// recipient (0: no sample).
    pub fn publish(&self, channel: &str, offset: u64, message: &Bytes, received: u64) -> Fanout {
        let Some(entry) = self.channel(channel) else {
            return Fanout::default();
        };
        let mut ch = entry.lock();
        let mut f = Fanout::default();
        let max_pending = self.max_pending_bytes;
        let last = ch.subs.len().saturating_sub(1);
        for (i, sub) in ch.subs.iter_mut().enumerate() {
            match sub.pending.as_mut() {
                Some(pending) => {
                    sub.pending_bytes += message.len();
                    if sub.pending_bytes > max_pending {
                        // Held back too much while syncing: the client must resync.
                        sub.out.close(DisconnectCode::InsufficientState);
                        sub.pending = Some(Vec::new());
                        sub.pending_bytes = 0;
                        f.slow += 1;
                    } else {
                        pending.push((offset, message.clone()));
                    }
                }
                None if offset != 0 && offset <= sub.delivered_up_to => {}
                None => {
                    let probe = if i == last { received } else { 0 };
                    match sub.out.push_probed(message.clone(), probe) {
                        Pushed::Queued => f.delivered += 1,
                        Pushed::Slow => f.slow += 1,
                        Pushed::Closing => {}
                    }
                }
            }
        }
        self.count(f)
    }

    /// Delivers a join or leave push to the subscribers that want them (`force`: all).
    pub fn join_leave(&self, channel: &str, message: &Bytes, force: bool) -> Fanout {
        let Some(entry) = self.channel(channel) else {
            return Fanout::default();
        };
        let ch = entry.lock();
        let mut f = Fanout::default();
        for sub in ch.subs.iter() {
            if !(force || sub.join_leave) || sub.pending.is_some() {
                continue;
            }
            match sub.out.push(message.clone()) {
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
mod tests {
    use super::*;

    fn queue() -> Arc<Outbound> {
        Arc::new(Outbound::new(1 << 20))
    }

    #[test]
    fn fan_out_reaches_every_subscriber_once() {
        let hub = Hub::new(1 << 20);
        let (a, b) = (queue(), queue());
        assert!(hub.add("c", 1, a.clone(), false, false));
        assert!(!hub.add("c", 2, b.clone(), false, false));
        let f = hub.publish("c", 1, &Bytes::from_static(b"m1"), 0);
        assert_eq!(f.delivered, 2);
        assert_eq!(a.take().items.len(), 1);
        assert_eq!(b.take().items.len(), 1);
        assert!(!hub.remove("c", 1));
        assert!(hub.remove("c", 2));
        assert!(!hub.has_subscribers("c"));
        assert_eq!(
            hub.publish("c", 2, &Bytes::from_static(b"m2"), 0).delivered,
            0
        );
    }

    #[test]
    fn syncing_subscriber_gets_only_newer_offsets_after_go_live() {
        let hub = Hub::new(1 << 20);
        let q = queue();
        hub.add("c", 1, q.clone(), false, true);
        for off in 5..=8u64 {
            hub.publish("c", off, &Bytes::from(format!("p{off}")), 0);
        }
        assert!(q.take().items.is_empty(), "held back while syncing");
        // History gave it up to offset 6; 7 and 8 must follow, once, in order.
        assert!(hub.go_live("c", 1, 6));
        let items: Vec<_> = q.take().items.into_iter().collect();
        assert_eq!(items, vec![Bytes::from("p7"), Bytes::from("p8")]);
        hub.publish("c", 9, &Bytes::from("p9"), 0);
        assert_eq!(q.take().items.len(), 1);
        // A late live copy of something the reply already carried is not sent again.
        hub.publish("c", 6, &Bytes::from("p6"), 0);
        assert!(q.take().items.is_empty());
    }

    #[test]
    fn syncing_buffer_is_bounded() {
        let hub = Hub::new(4);
        let q = queue();
        hub.add("c", 1, q.clone(), false, true);
        hub.publish("c", 1, &Bytes::from("12345"), 0);
        assert_eq!(q.take().close.map(|c| c.code), Some(3010));
    }

    #[test]
    fn one_lag_sample_per_fan_out_on_the_last_subscriber() {
        let hub = Hub::new(1 << 20);
        let qs: Vec<_> = (0..3).map(|_| queue()).collect();
        for (i, q) in qs.iter().enumerate() {
            hub.add("c", i as u64, q.clone(), false, false);
        }
        hub.publish("c", 1, &Bytes::from_static(b"m"), 42);
        let probes: Vec<u64> = qs.iter().map(|q| q.take().probe).collect();
        assert_eq!(probes, [0, 0, 42]);
        hub.publish("c", 2, &Bytes::from_static(b"m"), 0);
        assert!(qs.iter().all(|q| q.take().probe == 0), "0: no sample");
    }

    #[test]
    fn join_leave_only_to_those_who_asked() {
        let hub = Hub::new(1 << 20);
        let (a, b) = (queue(), queue());
        hub.add("c", 1, a.clone(), true, false);
        hub.add("c", 2, b.clone(), false, false);
        assert_eq!(hub.join_leave("c", &Bytes::from("j"), false).delivered, 1);
        assert_eq!(hub.join_leave("c", &Bytes::from("j"), true).delivered, 2);
    }
}
