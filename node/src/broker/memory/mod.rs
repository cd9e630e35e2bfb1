//! The embedded broker: history, offsets and presence in this process's memory.
//!
//! Offsets are assigned and publications handed to the hub under the channel's stream
//! lock, so subscribers see each channel's publications in offset order. The epoch is
//! random per stream: a restarted node (or a stream that expired) gets a new one, which
//! is exactly what tells a recovering client that its position is gone.

use super::presence::{stats, LocalPresence};
use super::{HistoryQuery, PresenceStats};
use crate::config::NamespaceOptions;
use crate::hub::Hub;
use herald_shared::protocol::reply::{encode_join_push, encode_leave_push, encode_pub_push};
use herald_shared::protocol::{ClientInfo, HistoryResult, Publication, StreamPosition};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One channel's stream.
struct Stream {
    /// Identity of this stream.
    epoch: String,
    /// Offset of the newest publication ever published (kept when history is trimmed).
    top: u64,
    /// Kept publications with the time they were published, oldest first.
    pubs: VecDeque<(Instant, Publication)>,
    /// When the stream may be forgotten entirely (last publication + TTL).
    expires: Instant,
    /// Idempotency keys seen within [`super::IDEMPOTENCY_WINDOW`], with the offset
    /// their publication got.
    keys: HashMap<String, (u64, Instant)>,
}

impl Stream {
    fn new() -> Self {
        Stream {
            epoch: new_epoch(),
            top: 0,
            pubs: VecDeque::new(),
            expires: Instant::now(),
            keys: HashMap::new(),
        }
    }

    /// Drops publications older than `ttl`.
    fn trim(&mut self, now: Instant, ttl: Duration) {
        while let Some((at, _)) = self.pubs.front() {
            if now.duration_since(*at) >= ttl {
                self.pubs.pop_front();
            } else {
                break;
            }
        }
    }
}

fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// In-memory broker for a single node.
pub struct MemoryBroker {
    /// Where publications are delivered.
    hub: Arc<Hub>,
    /// Streams of channels with history.
    streams: Mutex<HashMap<String, Arc<Mutex<Stream>>>>,
    /// Presence of the members (all of them are local).
    presence: LocalPresence,
    /// Idempotency keys of publications to channels without history (channel, key).
    plain_keys: Mutex<HashMap<(String, String), Instant>>,
}

impl MemoryBroker {
    /// A broker delivering to `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        MemoryBroker {
            hub,
            streams: Mutex::new(HashMap::new()),
            presence: LocalPresence::default(),
            plain_keys: Mutex::new(HashMap::new()),
        }
    }

    fn stream(&self, channel: &str) -> Arc<Mutex<Stream>> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams
            .entry(channel.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Stream::new())))
            .clone()
    }

    /// Forgets expired streams every 10 s until the node stops.
    pub fn start(&self, node: &Arc<crate::node::Node>) {
        let node = node.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = node.stop.cancelled() => break,
                    _ = tick.tick() => {
                        if let super::Broker::Memory(m) = &node.broker {
                            m.sweep();
                        }
                    }
                }
            }
        });
    }

    /// Publishes; see [`super::Broker::publish`].
    pub fn publish(
        &self,
        channel: &str,
        mut publication: Publication,
        ns: &NamespaceOptions,
        skip_history: bool,
        idempotency_key: Option<&str>,
    ) -> StreamPosition {
        if !ns.has_history() {
            if let Some(key) = idempotency_key {
                let now = Instant::now();
                let mut keys = self.plain_keys.lock().unwrap_or_else(|e| e.into_inner());
                keys.retain(|_, at| now.duration_since(*at) < super::IDEMPOTENCY_WINDOW);
                if keys
                    .insert((channel.to_owned(), key.to_owned()), now)
                    .is_some()
                {
                    return StreamPosition::default();
                }
            }
            publication.offset = 0;
            let bytes = encode_pub_push(channel, &publication);
            self.hub.publish(channel, 0, &bytes);
            return StreamPosition::default();
        }
        let stream = self.stream(channel);
        let mut st = stream.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(key) = idempotency_key {
            st.keys
                .retain(|_, (_, at)| now.duration_since(*at) < super::IDEMPOTENCY_WINDOW);
            if let Some((offset, _)) = st.keys.get(key) {
                return StreamPosition {
                    offset: *offset,
                    epoch: st.epoch.clone(),
                };
            }
            let next = st.top + 1;
            st.keys.insert(key.to_owned(), (next, now));
        }
        st.top += 1;
        publication.offset = st.top;
        let bytes = encode_pub_push(channel, &publication);
        if !skip_history {
            st.pubs.push_back((now, publication));
            while st.pubs.len() > ns.history_size {
                st.pubs.pop_front();
            }
            st.trim(now, ns.history_ttl);
            st.expires = now + ns.history_ttl;
        }
        // Delivered under the stream lock: concurrent publishers cannot reorder offsets.
        self.hub.publish(channel, st.top, &bytes);
        StreamPosition {
            offset: st.top,
            epoch: st.epoch.clone(),
        }
    }

    /// Delivers a join (`join = true`) or leave push to local subscribers.
    pub fn join_leave(&self, channel: &str, info: &ClientInfo, join: bool, ns: &NamespaceOptions) {
        let bytes = if join {
            encode_join_push(channel, info)
        } else {
            encode_leave_push(channel, info)
        };
        self.hub
            .join_leave(channel, &bytes, ns.force_push_join_leave);
    }

    /// Reads history; see [`super::Broker::history`].
    pub fn history(&self, channel: &str, q: &HistoryQuery, ns: &NamespaceOptions) -> HistoryResult {
        if !ns.has_history() {
            return HistoryResult::default();
        }
        let stream = self.stream(channel);
        let mut st = stream.lock().unwrap_or_else(|e| e.into_inner());
        st.trim(Instant::now(), ns.history_ttl);
        let after = q.since.as_ref().map(|p| p.offset).unwrap_or(0);
        let limit = q.limit.unwrap_or(usize::MAX);
        let matching = st.pubs.iter().map(|(_, p)| p).filter(|p| p.offset > after);
        let publications: Vec<Publication> = if q.reverse {
            let mut v: Vec<_> = matching.cloned().collect();
            v.reverse();
            v.truncate(limit);
            v
        } else {
            matching.take(limit).cloned().collect()
        };
        HistoryResult {
            publications,
            offset: st.top,
            epoch: st.epoch.clone(),
        }
    }

    /// Drops kept publications of a channel.
    pub fn remove_history(&self, channel: &str) {
        let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = streams.get(channel) {
            s.lock().unwrap_or_else(|e| e.into_inner()).pubs.clear();
        }
    }

    /// Forgets streams whose last publication is older than their TTL (called periodically).
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let before = streams.len();
        streams.retain(|channel, s| {
            let st = s.lock().unwrap_or_else(|e| e.into_inner());
            // Keep streams someone is subscribed to: their epoch must not change under them.
            st.expires > now || self.hub.has_subscribers(channel)
        });
        before - streams.len()
    }

    /// Adds presence.
    pub fn add_presence(&self, channel: &str, client: &str, info: &ClientInfo) {
        self.presence.add(channel, client, info);
    }

    /// Removes presence.
    pub fn remove_presence(&self, channel: &str, client: &str) {
        self.presence.remove(channel, client);
    }

    /// Presence of a channel.
    pub fn presence(&self, channel: &str) -> HashMap<String, ClientInfo> {
        self.presence.get(channel)
    }

    /// Presence numbers of a channel.
    pub fn presence_stats(&self, channel: &str) -> PresenceStats {
        stats(&self.presence.get(channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::outbound::Outbound;
    use herald_shared::protocol::RawJson;

    fn publication(text: &str) -> Publication {
        Publication {
            data: RawJson::from_value(&text).unwrap(),
            info: None,
            offset: 0,
            tags: Default::default(),
        }
    }

    fn ns(size: usize) -> NamespaceOptions {
        NamespaceOptions {
            history_size: size,
            ..Default::default()
        }
    }

    #[test]
    fn offsets_increase_and_history_is_bounded() {
        let b = MemoryBroker::new(Arc::new(Hub::new(1 << 20)));
        let n = ns(3);
        let first = b.publish("c", publication("a"), &n, false, None);
        assert_eq!(first.offset, 1);
        for t in ["b", "c", "d", "e"] {
            b.publish("c", publication(t), &n, false, None);
        }
        let h = b.history("c", &HistoryQuery::default(), &n);
        assert_eq!(h.offset, 5);
        assert_eq!(h.epoch, first.epoch);
        let offsets: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, vec![3, 4, 5]);
        let since = HistoryQuery {
            since: Some(StreamPosition {
                offset: 4,
                epoch: h.epoch.clone(),
            }),
            ..Default::default()
        };
        assert_eq!(b.history("c", &since, &n).publications.len(), 1);
        let rev = HistoryQuery {
            limit: Some(2),
            reverse: true,
            ..Default::default()
        };
        let offsets: Vec<u64> = b
            .history("c", &rev, &n)
            .publications
            .iter()
            .map(|p| p.offset)
            .collect();
        assert_eq!(offsets, vec![5, 4]);
    }

    #[test]
    fn publications_reach_the_hub_encoded_once() {
        let hub = Arc::new(Hub::new(1 << 20));
        let q = Arc::new(Outbound::new(1 << 20));
        hub.add("c", 1, q.clone(), false, false);
        let b = MemoryBroker::new(hub);
        b.publish("c", publication("x"), &ns(10), false, None);
        let items = q.take().items;
        assert_eq!(
            std::str::from_utf8(&items[0]).unwrap(),
            r#"{"push":{"channel":"c","pub":{"data":"x","offset":1}}}"#
        );
    }

    #[test]
    fn presence_counts_users_and_clients() {
        let b = MemoryBroker::new(Arc::new(Hub::new(1 << 20)));
        let info = |u: &str, c: &str| ClientInfo {
            user: u.into(),
            client: c.into(),
            ..Default::default()
        };
        b.add_presence("c", "c1", &info("u1", "c1"));
        b.add_presence("c", "c2", &info("u1", "c2"));
        b.add_presence("c", "c3", &info("u2", "c3"));
        assert_eq!(
            b.presence_stats("c"),
            PresenceStats {
                clients: 3,
                users: 2
            }
        );
        b.remove_presence("c", "c1");
        assert_eq!(b.presence("c").len(), 2);
    }

    #[test]
    fn removed_history_keeps_offsets_going() {
        let b = MemoryBroker::new(Arc::new(Hub::new(1 << 20)));
        let n = ns(10);
        b.publish("c", publication("a"), &n, false, None);
        b.remove_history("c");
        assert!(b
            .history("c", &HistoryQuery::default(), &n)
            .publications
            .is_empty());
        assert_eq!(b.publish("c", publication("b"), &n, false, None).offset, 2);
    }

    #[test]
    fn an_idempotency_key_publishes_once() {
        let hub = Arc::new(Hub::new(1 << 20));
        let b = MemoryBroker::new(hub);
        let first = b.publish("c", publication("a"), &ns(10), false, Some("k1"));
        let again = b.publish("c", publication("a"), &ns(10), false, Some("k1"));
        assert_eq!(first, again);
        let other = b.publish("c", publication("b"), &ns(10), false, Some("k2"));
        assert_eq!(other.offset, first.offset + 1);
        let elsewhere = b.publish("d", publication("a"), &ns(10), false, Some("k1"));
        assert_eq!(elsewhere.offset, 1, "keys are per channel");
    }
}
