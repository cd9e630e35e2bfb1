//! The cluster broker: NATS core for fan-out and control, JetStream for history.
//!
//! - Each namespace with history has one stream capturing its channels' publish
//!   subjects, limited per subject to the namespace's history size and by age to its
//!   TTL. The stream sequence is the offset; the stream's creation time is the epoch.
//!   The stream republishes every stored message on a `herald.live.…` subject with its
//!   sequence and the previous sequence of the same subject: nodes listen there, so
//!   live copies carry offsets and a missing one is noticed (and fetched) at once.
//! - A node listens to a channel only while it has local subscribers, and stops a
//!   short while after the last one leaves ([`live`]).
//! - Presence: each node is the authority for its own members and answers queries;
//!   nodes heartbeat, and a node that stops heartbeating stops being asked ([`cluster`]).
//!
//! # Recovery rule
//! JetStream drops a subject's messages oldest first (per-subject limit, age, purge),
//! so a position `X` that is still stored proves everything after it is stored too:
//! recovery from `X` is complete iff `X` is the channel's newest message or is still
//! stored. A subscriber always gets a stored position: subscribing to a channel with
//! nothing stored writes a small marker message that positions can point at.

mod cluster;
pub use cluster::node_status;
mod live;
mod rejoin;
pub mod subjects;

use super::presence::{stats, LocalPresence};
use super::{BrokerError, HistoryQuery, PresenceStats};
use crate::config::{ClusterOptions, NamespaceOptions, Namespaces};
use crate::hub::Hub;
use crate::node::Node;
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use herald_shared::codec;
use herald_shared::protocol::{ClientInfo, HistoryResult, Publication, StreamPosition};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// Header marking a position marker (not a publication).
const MARKER_HEADER: &str = "Herald-Marker";

/// A namespace's stream and its epoch.
#[derive(Clone)]
struct NsStream {
    stream: stream::Stream,
    epoch: String,
}

/// State shared by the broker's tasks.
pub(crate) struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    hub: Arc<Hub>,
    opts: ClusterOptions,
    namespaces: Namespaces,
    node_id: String,
    /// Streams by namespace (`None`: default); filled by set-up.
    streams: Mutex<HashMap<Option<String>, NsStream>>,
    /// Channels this node listens to.
    live: Mutex<HashMap<String, Arc<live::LiveChannel>>>,
    /// This node's members.
    presence: LocalPresence,
    /// Other nodes, from their heartbeats.
    peers: cluster::Peers,
    /// NATS connection is up.
    connected: AtomicBool,
    /// Streams exist and control subscriptions run.
    set_up: AtomicBool,
    /// After a reconnect, until every channel caught up.
    restoring: AtomicBool,
    /// The node, for control actions and heartbeat numbers.
    node: OnceLock<Weak<Node>>,
}

/// Broker over NATS.
#[derive(Clone)]
pub struct NatsBroker {
    inner: Arc<Inner>,
}

impl NatsBroker {
    /// Connects (in the background if NATS is not reachable yet: the node then reports
    /// not ready until it is).
    pub async fn connect(
        url: &str,
        node_id: &str,
        hub: Arc<Hub>,
        namespaces: Namespaces,
        opts: ClusterOptions,
    ) -> Result<Self, BrokerError> {
        let events: Arc<OnceLock<Weak<Inner>>> = Arc::new(OnceLock::new());
        let ev = events.clone();
        let options = async_nats::ConnectOptions::new()
            .name(format!("herald-node {node_id}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .subscription_capacity(opts.subscription_capacity)
            .event_callback(move |event| {
                let ev = ev.clone();
                async move {
                    if let Some(inner) = ev.get().and_then(Weak::upgrade) {
                        cluster::on_event(inner, event).await;
                    }
                }
            });
        let servers = url
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BrokerError::Unavailable(format!("HERALD_NATS_URL: {e}")))?;
        let client = options
            .connect(servers)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(opts.publish_timeout);
        let inner = Arc::new(Inner {
            client,
            js,
            hub,
            opts,
            namespaces,
            node_id: node_id.to_owned(),
            streams: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            presence: LocalPresence::default(),
            peers: cluster::Peers::default(),
            connected: AtomicBool::new(false),
            set_up: AtomicBool::new(false),
            restoring: AtomicBool::new(false),
            node: OnceLock::new(),
        });
        let _ = events.set(Arc::downgrade(&inner));
        Ok(NatsBroker { inner })
    }

    /// Starts the background work (set-up, heartbeats, control and queries) for `node`.
    pub fn start(&self, node: &Arc<Node>) {
        let _ = self.inner.node.set(Arc::downgrade(node));
        tokio::spawn(cluster::run(self.inner.clone(), node.stop.clone()));
    }

    /// Why the broker cannot serve, if it cannot.
    pub fn ready(&self) -> Result<(), String> {
        let i = &self.inner;
        if !i.connected.load(Ordering::Acquire)
            || i.client.connection_state() != async_nats::connection::State::Connected
        {
            return Err("NATS is not connected".into());
        }
        if !i.set_up.load(Ordering::Acquire) {
            return Err("JetStream streams are not set up yet".into());
        }
        if i.restoring.load(Ordering::Acquire) {
            return Err("restoring channel subscriptions after a NATS reconnect".into());
        }
        Ok(())
    }

    /// Waits (up to the publish timeout) until NATS is connected and the streams are
    /// set up: a node that just started, or whose NATS server is failing over, makes
    /// callers wait briefly instead of failing them at once.
    async fn ensure_connected(&self) -> Result<(), BrokerError> {
        let i = &self.inner;
        let deadline = tokio::time::Instant::now() + i.opts.publish_timeout;
        loop {
            let problem = if !i.connected.load(Ordering::Acquire)
                || i.client.connection_state() != async_nats::connection::State::Connected
            {
                "NATS is not connected"
            } else if !i.set_up.load(Ordering::Acquire) {
                "JetStream streams are not set up yet"
            } else {
                return Ok(());
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::Unavailable(problem.into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes; see [`super::Broker::publish`].
    pub async fn publish(
        &self,
        channel: &str,
        publication: &Publication,
        ns: &NamespaceOptions,
        skip_history: bool,
        idempotency_key: Option<&str>,
    ) -> Result<StreamPosition, BrokerError> {
        self.ensure_connected().await?;
        let payload = Bytes::from(codec::encode_publication(publication));
        if !ns.has_history() || skip_history {
            // No stream captures it when skipping history: publish straight to listeners.
            let subject = if ns.has_history() {
                subjects::delivery_subject(channel, true)
            } else {
                subjects::publish_subject(channel)
            };
            self.inner
                .client
                .publish(subject, payload)
                .await
                .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
            return Ok(StreamPosition::default());
        }
        let ns_stream = self.ns_stream(channel)?;
        let mut headers = HeaderMap::new();
        // Retries below (and the caller's, with an idempotency key) are deduplicated by
        // JetStream through this id; a duplicate's ack carries the first one's sequence.
        let msg_id = match idempotency_key {
            Some(key) => format!("k.{}.{key}", subjects::escape(channel)),
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        let seq = self
            .inner
            .js_publish(subjects::publish_subject(channel), headers, payload)
            .await?;
        Ok(StreamPosition {
            offset: seq,
            epoch: ns_stream.epoch,
        })
    }

    /// Delivers a join or leave to every node serving the channel.
    pub async fn join_leave(
        &self,
        channel: &str,
        info: &ClientInfo,
        kind: JoinLeave,
        ns: &NamespaceOptions,
    ) -> Result<(), BrokerError> {
        self.ensure_connected().await?;
        let wire = codec::WireClientInfo::from_info(info);
        let env = match kind {
            JoinLeave::Join => codec::Envelope::Join(wire),
            JoinLeave::Leave => codec::Envelope::Leave(wire),
            JoinLeave::LeaveMoving => codec::Envelope::LeaveMoving(wire),
        };
        self.inner
            .client
            .publish(
                subjects::delivery_subject(channel, ns.has_history()),
                Bytes::from(codec::encode(&env)),
            )
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    /// Starts listening to a channel (idempotent; waits until the listener is active).
    pub async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.ensure_connected().await?;
        live::subscribe(&self.inner, channel).await
    }

    /// The channel lost its last local subscriber: stop listening after the delay.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        live::schedule_unsubscribe(&self.inner, channel);
        Ok(())
    }

    fn ns_stream(&self, channel: &str) -> Result<NsStream, BrokerError> {
        self.inner.ns_stream(channel)
    }

    /// Reads history; see [`super::Broker::history`].
    pub async fn history(
        &self,
        channel: &str,
        q: &HistoryQuery,
        ns: &NamespaceOptions,
    ) -> Result<HistoryResult, BrokerError> {
        if !ns.has_history() {
            return Ok(HistoryResult::default());
        }
        self.ensure_connected().await?;
        let s = self.ns_stream(channel)?;
        let subject = subjects::publish_subject(channel);
        let mut top = self.inner.last_seq(&s.stream, &subject).await?;
        if top == 0 && q.establish_position {
            top = self.inner.write_marker(&s.stream, &subject).await?;
        }
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut publications = Vec::new();
        if limit > 0 && top > 0 {
            let after = q.since.as_ref().map(|p| p.offset).unwrap_or(0);
            publications = self
                .inner
                .read_range(&s.stream, &subject, after, top)
                .await?;
            // The stream keeps one message more per channel (room for a position
            // marker); without a marker that extra one is past the history size.
            let excess = publications.len().saturating_sub(ns.history_size);
            publications.drain(..excess);
            if q.reverse {
                publications.reverse();
            }
            publications.truncate(limit);
        }
        Ok(HistoryResult {
            publications,
            offset: top,
            epoch: s.epoch,
        })
    }

    /// Whether recovery from `since` can be complete: it is the channel's newest
    /// position, or it is still stored (see the module's recovery rule).
    pub async fn recoverable(
        &self,
        channel: &str,
        since: &StreamPosition,
        top: u64,
        ns: &NamespaceOptions,
    ) -> Result<bool, BrokerError> {
        let s = self.ns_stream(channel)?;
        if since.epoch != s.epoch || since.offset > top || !ns.has_history() {
            return Ok(false);
        }
        if since.offset == top {
            return Ok(true);
        }
        if since.offset == 0 {
            return Ok(false);
        }
        match s.stream.direct_get(since.offset).await {
            Ok(m) => Ok(m.subject.as_str() == subjects::publish_subject(channel)),
            Err(e) if matches!(e.kind(), stream::DirectGetErrorKind::NotFound) => Ok(false),
            Err(e) => Err(BrokerError::Unavailable(e.to_string())),
        }
    }

    /// Drops a channel's history.
    pub async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        self.ensure_connected().await?;
        let ns = subjects::namespace_of(channel).map(str::to_owned);
        let has = match &ns {
            None => self.inner.namespaces.default.has_history(),
            Some(n) => self
                .inner
                .namespaces
                .named
                .get(n)
                .is_some_and(|o| o.has_history()),
        };
        if !has {
            return Ok(());
        }
        let s = self.ns_stream(channel)?;
        s.stream
            .purge()
            .filter(subjects::publish_subject(channel))
            .await
            .map(|_| ())
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    /// Records a local member.
    pub fn add_presence(&self, channel: &str, client: &str, info: &ClientInfo) {
        self.inner.presence.add(channel, client, info);
    }

    /// Removes a local member.
    pub fn remove_presence(&self, channel: &str, client: &str) {
        self.inner.presence.remove(channel, client);
    }

    /// Members of a channel on every live node.
    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<HashMap<String, ClientInfo>, BrokerError> {
        self.ensure_connected().await?;
        cluster::presence(&self.inner, channel).await
    }

    /// Presence numbers across the cluster.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        Ok(stats(&self.presence(channel).await?))
    }

    /// Channels with subscribers on any live node, with their numbers.
    pub async fn channels(&self) -> Result<HashMap<String, u64>, BrokerError> {
        self.ensure_connected().await?;
        cluster::channels(&self.inner).await
    }

    /// Every live node's status (this one's fresh).
    pub fn nodes(&self) -> Vec<codec::NodeStatus> {
        cluster::nodes(&self.inner)
    }

    /// Sends a server API action to every node (this one included).
    pub async fn control(&self, control: codec::Control) -> Result<(), BrokerError> {
        self.ensure_connected().await?;
        self.inner
            .client
            .publish(
                subjects::CONTROL,
                Bytes::from(codec::encode(&codec::Envelope::Control(control))),
            )
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    /// Drains the NATS connection (shutdown).
    pub async fn close(&self) {
        cluster::announce(&self.inner, "leaving").await;
        // Flush first: the last leaves (LeaveMoving) of the drained sessions were queued
        // moments ago, and a drain that closes the connection right away was seen to
        // lose them (the flapping test, under load).
        if let Err(e) = self.inner.client.flush().await {
            tracing::warn!(error = %e, "NATS flush before closing failed");
        }
        let _ = self.inner.client.drain().await;
    }
}

/// Which presence change to announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinLeave {
    /// A member joined.
    Join,
    /// A member left.
    Leave,
    /// A member left because this node drains (likely to rejoin elsewhere).
    LeaveMoving,
}

impl Inner {
    fn ns_stream(&self, channel: &str) -> Result<NsStream, BrokerError> {
        let ns = subjects::namespace_of(channel).map(str::to_owned);
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ns)
            .cloned()
            .ok_or_else(|| BrokerError::Unavailable("stream not set up".into()))
    }

    fn ns_options(&self, channel: &str) -> Option<&NamespaceOptions> {
        self.namespaces.for_channel(channel)
    }

    /// Publishes to JetStream, retrying transient failures until the publish timeout.
    async fn js_publish(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<u64, BrokerError> {
        let deadline = tokio::time::Instant::now() + self.opts.publish_timeout;
        loop {
            let attempt = async {
                self.js
                    .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map(|ack| ack.sequence)
                    .map_err(|e| e.to_string())
            };
            match attempt.await {
                Ok(seq) => return Ok(seq),
                Err(e) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(BrokerError::Unavailable(format!("JetStream publish: {e}")));
                    }
                    tracing::debug!(error = %e, "JetStream publish failed, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Sequence of the newest stored message of `subject` (0: none).
    async fn last_seq(&self, stream: &stream::Stream, subject: &str) -> Result<u64, BrokerError> {
        match stream.direct_get_last_for_subject(subject).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if matches!(e.kind(), stream::DirectGetErrorKind::NotFound) => Ok(0),
            Err(e) => Err(BrokerError::Unavailable(e.to_string())),
        }
    }

    /// Writes a marker if the subject holds nothing; returns the newest sequence.
    async fn write_marker(
        &self,
        stream: &stream::Stream,
        subject: &str,
    ) -> Result<u64, BrokerError> {
        let mut headers = HeaderMap::new();
        headers.insert(MARKER_HEADER, "1");
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
        let ack = self
            .js
            .publish_with_headers(subject.to_owned(), headers, Bytes::new())
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?
            .await;
        match ack {
            Ok(a) => Ok(a.sequence),
            // Someone published first: the newest message is a fine position.
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::PublishErrorKind::WrongLastSequence
                ) =>
            {
                self.last_seq(stream, subject).await
            }
            Err(e) => Err(BrokerError::Unavailable(e.to_string())),
        }
    }

    /// Stored publications of `subject` with `after < seq <= up_to`, markers skipped.
    async fn read_range(
        &self,
        stream: &stream::Stream,
        subject: &str,
        after: u64,
        up_to: u64,
    ) -> Result<Vec<Publication>, BrokerError> {
        let mut out = Vec::new();
        let mut next = after + 1;
        while next <= up_to {
            let m = match stream
                .direct_get_next_for_subject(subject.to_owned(), Some(next))
                .await
            {
                Ok(m) => m,
                Err(e) if matches!(e.kind(), stream::DirectGetErrorKind::NotFound) => break,
                Err(e) => return Err(BrokerError::Unavailable(e.to_string())),
            };
            if m.sequence > up_to {
                break;
            }
            next = m.sequence + 1;
            if m.headers.get(MARKER_HEADER).is_some() {
                continue;
            }
            match codec::decode_publication(&m.payload) {
                Ok(mut p) => {
                    p.offset = m.sequence;
                    out.push(p);
                }
                Err(e) => {
                    tracing::warn!(subject, seq = m.sequence, error = %e, "skipping undecodable stored message");
                }
            }
        }
        Ok(out)
    }

    fn node(&self) -> Option<Arc<Node>> {
        self.node.get().and_then(Weak::upgrade)
    }
}
