//! The embedded broker: history, offsets and presence in this process's memory.
//!
//! Offsets are assigned and publications handed up under the channel's stream lock, so
//! subscribers see each channel's publications in offset order. The epoch is random per
//! stream: a restarted node (or a stream that expired) gets a new one, which is exactly
//! what tells a recovering client that its position is gone.

use super::presence::{stats, LocalPresence};
use super::{
    Broker, BrokerError, BrokerEvents, BrokerFuture, HistoryQuery, JoinLeave, Outgoing,
    PresenceStats, Recovery, Scope, IDEMPOTENCY_WINDOW,
};
use crate::config::NamespaceOptions;
use futures_util::future::{self, BoxFuture, FutureExt};
use herald_shared::codec::{Control, NodeStatus};
use herald_shared::protocol::{
    Broadcast, ClientInfo, HistoryResult, Publication, PushBody, StreamPosition,
};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often streams past their TTL are forgotten.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

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
    /// Idempotency keys seen within [`IDEMPOTENCY_WINDOW`], with the offset their
    /// publication got.
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
#[derive(Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Where publications are delivered; set by [`Broker::start`].
    events: OnceLock<Arc<dyn BrokerEvents>>,
    /// Streams of channels with history.
    streams: Mutex<HashMap<String, Arc<Mutex<Stream>>>>,
    /// Presence of the members (all of them are local).
    presence: LocalPresence,
    /// Idempotency keys of publications to channels without history (channel, key).
    plain_keys: Mutex<HashMap<(String, String), Instant>>,
}

impl MemoryBroker {
    /// A broker with nothing in it; it delivers once started.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Inner {
    fn stream(&self, channel: &str) -> Arc<Mutex<Stream>> {
        self.streams
            .lock()
            .entry(channel.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Stream::new())))
            .clone()
    }

    fn deliver(&self, channel: &str, offset: u64, publication: &Publication) {
        if let Some(events) = self.events.get() {
            let received = crate::metrics::now_nanos();
            let _fanout = tracing::info_span!(
                target: herald_shared::otel::TRACE_TARGET,
                "herald.fanout",
                channel = %channel,
            )
            .entered();
            let push = Broadcast::new(channel, PushBody::Pub(publication));
            events.publication(channel, offset, &push, received);
        }
    }

    fn publish(
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
                let mut keys = self.plain_keys.lock();
                keys.retain(|_, at| now.duration_since(*at) < IDEMPOTENCY_WINDOW);
                if keys
                    .insert((channel.to_owned(), key.to_owned()), now)
                    .is_some()
                {
                    return StreamPosition::default();
                }
            }
            publication.offset = 0;
            self.deliver(channel, 0, &publication);
            return StreamPosition::default();
        }
        let stream = self.stream(channel);
        let mut st = stream.lock();
        let now = Instant::now();
        if let Some(key) = idempotency_key {
            st.keys
                .retain(|_, (_, at)| now.duration_since(*at) < IDEMPOTENCY_WINDOW);
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
        // Delivered under the stream lock: concurrent publishers cannot reorder offsets.
        self.deliver(channel, st.top, &publication);
        if !skip_history {
            st.pubs.push_back((now, publication));
            while st.pubs.len() > ns.history_size {
                st.pubs.pop_front();
            }
            st.trim(now, ns.history_ttl);
            st.expires = now + ns.history_ttl;
        }
        StreamPosition {
            offset: st.top,
            epoch: st.epoch.clone(),
        }
    }

    fn history(&self, channel: &str, q: &HistoryQuery, ns: &NamespaceOptions) -> HistoryResult {
        if !ns.has_history() {
            return HistoryResult::default();
        }
        let stream = self.stream(channel);
        let mut st = stream.lock();
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

    /// Offsets are contiguous per channel here: recovery from `since` is complete iff
    /// the epoch is the same and the first kept publication follows `since` directly.
    fn recover(&self, channel: &str, since: &StreamPosition, ns: &NamespaceOptions) -> Recovery {
        let query = HistoryQuery {
            since: Some(since.clone()),
            limit: None,
            reverse: false,
            establish_position: true,
        };
        let h = self.history(channel, &query, ns);
        let recovered = since.epoch == h.epoch
            && since.offset <= h.offset
            && match h.publications.first() {
                Some(p) => p.offset == since.offset + 1,
                None => since.offset == h.offset,
            };
        Recovery::from_history(h, recovered)
    }

    fn remove_history(&self, channel: &str) {
        let streams = self.streams.lock();
        if let Some(s) = streams.get(channel) {
            s.lock().pubs.clear();
        }
    }

    /// Forgets streams whose last publication is older than their TTL.
    fn sweep(&self) -> usize {
        let now = Instant::now();
        let serves = |channel: &str| self.events.get().is_some_and(|e| e.serves(channel));
        let mut streams = self.streams.lock();
        let before = streams.len();
        // Keep streams someone is subscribed to: their epoch must not change under them.
        streams.retain(|channel, s| s.lock().expires > now || serves(channel));
        before - streams.len()
    }
}

impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    /// Forgets expired streams every [`SWEEP_INTERVAL`] until `stop`.
    fn start(&self, events: Arc<dyn BrokerEvents>, stop: CancellationToken) {
        let _ = self.inner.events.set(events);
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => match inner.upgrade() {
                        Some(i) => { i.sweep(); }
                        None => break,
                    },
                }
            }
        });
    }

    fn ready(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    fn publish<'a>(&'a self, to: Scope<'a>, p: Outgoing<'a>) -> BrokerFuture<'a, StreamPosition> {
        let pos = (self.inner).publish(
            to.channel,
            p.publication,
            to.ns,
            p.skip_history,
            p.idempotency_key,
        );
        future::ready(Ok(pos)).boxed()
    }

    fn join_leave<'a>(
        &'a self,
        to: Scope<'a>,
        who: &'a ClientInfo,
        k: JoinLeave,
    ) -> BrokerFuture<'a> {
        let (channel, info, ns) = (to.channel, who, to.ns);
        let body = match k {
            JoinLeave::Join => PushBody::Join(info),
            JoinLeave::Leave | JoinLeave::LeaveMoving => PushBody::Leave(info),
        };
        if let Some(events) = self.inner.events.get() {
            let push = Broadcast::new(channel, body);
            events.join_leave(channel, &push, ns.force_push_join_leave);
        }
        future::ready(Ok(())).boxed()
    }

    /// Everything is local: the node already sees every publication.
    fn subscribe<'a>(&'a self, _channel: &'a str) -> BrokerFuture<'a, ()> {
        future::ready(Ok(())).boxed()
    }

    fn unsubscribe<'a>(&'a self, _channel: &'a str) -> BrokerFuture<'a, ()> {
        future::ready(Ok(())).boxed()
    }

    fn history<'a>(
        &'a self,
        of: Scope<'a>,
        q: &'a HistoryQuery,
    ) -> BrokerFuture<'a, HistoryResult> {
        future::ready(Ok(self.inner.history(of.channel, q, of.ns))).boxed()
    }

    fn recover<'a>(
        &'a self,
        of: Scope<'a>,
        since: &'a StreamPosition,
    ) -> BrokerFuture<'a, Recovery> {
        future::ready(Ok(self.inner.recover(of.channel, since, of.ns))).boxed()
    }

    fn remove_history<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        self.inner.remove_history(channel);
        future::ready(Ok(())).boxed()
    }

    fn add_presence<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
        info: &'a ClientInfo,
    ) -> BrokerFuture<'a, ()> {
        self.inner.presence.add(channel, client, info);
        future::ready(Ok(())).boxed()
    }

    fn remove_presence<'a>(&'a self, channel: &'a str, client: &'a str) -> BrokerFuture<'a, ()> {
        self.inner.presence.remove(channel, client);
        future::ready(Ok(())).boxed()
    }

    fn presence<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, HashMap<String, ClientInfo>> {
        future::ready(Ok(self.inner.presence.get(channel))).boxed()
    }

    fn presence_stats<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, PresenceStats> {
        future::ready(Ok(stats(&self.inner.presence.get(channel)))).boxed()
    }

    fn channels(&self) -> BrokerFuture<'_, HashMap<String, u64>> {
        let channels = match self.inner.events.get() {
            Some(e) => e
                .local_channels()
                .into_iter()
                .map(|(c, n)| (c, n as u64))
                .collect(),
            None => HashMap::new(),
        };
        future::ready(Ok(channels)).boxed()
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        self.inner
            .events
            .get()
            .map(|e| e.status())
            .into_iter()
            .collect()
    }

    /// Every node is this one: applied here, before the caller is answered.
    fn control(&self, control: Control) -> BrokerFuture<'_, ()> {
        let applied = self.inner.events.get().map(|e| e.control(control));
        async move {
            if let Some(applied) = applied {
                applied.await;
            }
            Ok(())
        }
        .boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        future::ready(()).boxed()
    }
}

#[cfg(test)]
mod tests;
