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
mod history;
mod live;
mod peers;
mod query;
mod recent;
mod rejoin;
mod rounds;
mod state;
pub mod subjects;

use super::presence::stats;
use super::{
    Broker, BrokerError, BrokerEvents, BrokerFuture, HistoryQuery, JoinLeave, Outgoing,
    PresenceStats, Recovery, Scope,
};
use crate::config::{ClusterOptions, NamespaceOptions, Namespaces};
use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use herald_shared::codec;
use herald_shared::protocol::{ClientInfo, HistoryResult, StreamPosition};
use state::Inner;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
            .map_err(|e| BrokerError::BadUrl(e.to_string()))?;
        let client = options
            .connect(servers)
            .await
            .map_err(|e| BrokerError::nats("NATS connect", e))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(opts.publish_timeout);
        let inner = Arc::new(Inner {
            client,
            js,
            opts,
            namespaces,
            node_id: node_id.to_owned(),
            streams: Default::default(),
            live: Default::default(),
            presence: Default::default(),
            peers: Default::default(),
            connected: AtomicBool::new(false),
            set_up: AtomicBool::new(false),
            restoring: AtomicBool::new(false),
            events: OnceLock::new(),
        });
        let _ = events.set(Arc::downgrade(&inner));
        Ok(NatsBroker { inner })
    }

    async fn publish(
        &self,
        to: Scope<'_>,
        p: &Outgoing<'_>,
    ) -> Result<StreamPosition, BrokerError> {
        let Scope { channel, ns } = to;
        let (publication, skip_history, idempotency_key) =
            (&p.publication, p.skip_history, p.idempotency_key);
        self.inner.ensure_connected().await?;
        let payload = Bytes::from(codec::encode_publication(publication));
        if !ns.has_history() || skip_history {
            // No stream captures it when skipping history: publish straight to listeners.
            let subject = if ns.has_history() {
                subjects::delivery_subject(channel, true)
            } else {
                subjects::publish_subject(channel)
            };
            self.inner.publish_traced(subject, payload).await?;
            return Ok(StreamPosition::default());
        }
        let ns_stream = self.inner.ns_stream(channel)?;
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

    async fn join_leave(
        &self,
        channel: &str,
        info: &ClientInfo,
        kind: JoinLeave,
        ns: &NamespaceOptions,
    ) -> Result<(), BrokerError> {
        self.inner.ensure_connected().await?;
        let wire = codec::WireClientInfo::from_info(info);
        let env = match kind {
            JoinLeave::Join => codec::Envelope::Join(wire),
            JoinLeave::Leave => codec::Envelope::Leave(wire),
            JoinLeave::LeaveMoving => codec::Envelope::LeaveMoving(wire),
        };
        let subject = subjects::delivery_subject(channel, ns.has_history());
        self.inner
            .publish("NATS publish", subject, Bytes::from(codec::encode(&env)))
            .await
    }

    async fn presence(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, BrokerError> {
        self.inner.ensure_connected().await?;
        query::presence(&self.inner, channel).await
    }

    async fn control(&self, control: codec::Control) -> Result<(), BrokerError> {
        self.inner.ensure_connected().await?;
        let env = codec::Envelope::Control(control);
        self.inner
            .publish(
                "NATS publish",
                subjects::CONTROL,
                Bytes::from(codec::encode(&env)),
            )
            .await?;
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| BrokerError::nats("NATS flush", e))
    }

    async fn close(&self) {
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

impl Broker for NatsBroker {
    fn kind(&self) -> &'static str {
        "nats"
    }

    /// Starts the background work (set-up, heartbeats, control and queries).
    fn start(&self, events: Arc<dyn BrokerEvents>, stop: CancellationToken) {
        let _ = self.inner.events.set(events);
        tokio::spawn(cluster::run(self.inner.clone(), stop));
    }

    fn ready(&self) -> Result<(), BrokerError> {
        if let Some(problem) = self.inner.unusable() {
            return Err(problem);
        }
        if self.inner.restoring.load(Ordering::Acquire) {
            return Err(BrokerError::Restoring);
        }
        Ok(())
    }

    fn publish<'a>(&'a self, to: Scope<'a>, p: Outgoing<'a>) -> BrokerFuture<'a, StreamPosition> {
        let span = tracing::info_span!(
            target: herald_shared::otel::TRACE_TARGET,
            "herald.broker.publish",
            channel = %to.channel,
            broker = "nats",
        );
        tracing::Instrument::instrument(
            async move { NatsBroker::publish(self, to, &p).await },
            span,
        )
        .boxed()
    }

    fn join_leave<'a>(
        &'a self,
        to: Scope<'a>,
        who: &'a ClientInfo,
        k: JoinLeave,
    ) -> BrokerFuture<'a> {
        NatsBroker::join_leave(self, to.channel, who, k, to.ns).boxed()
    }

    /// Starts listening to a channel (idempotent; waits until the listener is active).
    fn subscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        async move {
            self.inner.ensure_connected().await?;
            live::subscribe(&self.inner, channel).await
        }
        .boxed()
    }

    /// The channel lost its last local subscriber: stop listening after the delay.
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        live::schedule_unsubscribe(&self.inner, channel);
        futures_util::future::ready(Ok(())).boxed()
    }

    fn history<'a>(
        &'a self,
        of: Scope<'a>,
        q: &'a HistoryQuery,
    ) -> BrokerFuture<'a, HistoryResult> {
        history::history(&self.inner, of.channel, q, of.ns).boxed()
    }

    fn recover<'a>(
        &'a self,
        of: Scope<'a>,
        since: &'a StreamPosition,
    ) -> BrokerFuture<'a, Recovery> {
        history::recover(&self.inner, of.channel, since, of.ns).boxed()
    }

    fn remove_history<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, ()> {
        history::remove_history(&self.inner, channel).boxed()
    }

    /// Records a local member (each node answers for its own).
    fn add_presence<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
        info: &'a ClientInfo,
    ) -> BrokerFuture<'a, ()> {
        self.inner.presence.add(channel, client, info);
        futures_util::future::ready(Ok(())).boxed()
    }

    fn remove_presence<'a>(&'a self, channel: &'a str, client: &'a str) -> BrokerFuture<'a, ()> {
        self.inner.presence.remove(channel, client);
        futures_util::future::ready(Ok(())).boxed()
    }

    /// Members of a channel on every live node.
    fn presence<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, HashMap<String, ClientInfo>> {
        NatsBroker::presence(self, channel).boxed()
    }

    fn presence_stats<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, PresenceStats> {
        async move { Ok(stats(&NatsBroker::presence(self, channel).await?)) }.boxed()
    }

    /// Channels with subscribers on any live node, with their numbers.
    fn channels(&self) -> BrokerFuture<'_, HashMap<String, u64>> {
        async move {
            self.inner.ensure_connected().await?;
            query::channels(&self.inner).await
        }
        .boxed()
    }

    /// Every live node's status (this one's fresh).
    fn nodes(&self) -> Vec<codec::NodeStatus> {
        query::nodes(&self.inner)
    }

    /// Sends a server API action to every node (this one included).
    fn control(&self, control: codec::Control) -> BrokerFuture<'_, ()> {
        NatsBroker::control(self, control).boxed()
    }

    /// Drains the NATS connection (shutdown).
    fn close(&self) -> BoxFuture<'_, ()> {
        NatsBroker::close(self).boxed()
    }
}
