//! What the NATS broker's tasks share: the connection, the streams, this node's
//! members, the channels listened to, and the JetStream reads and writes they all use.

use super::peers::Peers;
use super::recent::Range;
use super::rounds::Rounds;
use super::subjects;
use crate::broker::presence::LocalPresence;
use crate::broker::{BrokerError, BrokerEvents};
use crate::config::{ClusterOptions, NamespaceOptions, Namespaces};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use herald_shared::codec;
use herald_shared::protocol::Publication;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OnceCell};

/// Header marking a position marker (not a publication).
pub(super) const MARKER_HEADER: &str = "Herald-Marker";

/// A namespace's stream and its epoch.
#[derive(Clone)]
pub(super) struct NsStream {
    /// The JetStream stream.
    pub(super) stream: stream::Stream,
    /// Its identity, from its creation time.
    pub(super) epoch: String,
}

/// One channel this node listens to (the task itself is in `live`).
pub(super) struct LiveChannel {
    /// Set once the NATS subscription is active at the server.
    pub(super) ready: OnceCell<()>,
    /// Asks the task to catch up with the stream (after a reconnect); answered when done.
    pub(super) catch_up: mpsc::UnboundedSender<oneshot::Sender<()>>,
    /// The receiving end, until the task takes it.
    pub(super) catch_up_rx: Mutex<Option<mpsc::UnboundedReceiver<oneshot::Sender<()>>>>,
    /// The task; aborted when the node stops listening.
    pub(super) task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Publications last read for recoveries and extended by the live task, shared by
    /// the next recoveries ([`super::recent`]); its lock makes them take turns.
    pub(super) recent: tokio::sync::Mutex<Option<Range>>,
    /// Recoveries' lookups of the channel's top, by epoch ([`super::rounds`]).
    pub(super) top: Rounds<String, u64>,
    /// Recoveries' lookups of whether a position is still stored, by epoch and offset.
    pub(super) stored: Rounds<(String, u64), bool>,
}

impl LiveChannel {
    /// A channel whose listening task has not started yet.
    pub(super) fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        LiveChannel {
            ready: OnceCell::new(),
            catch_up: tx,
            catch_up_rx: Mutex::new(Some(rx)),
            task: Mutex::new(None),
            recent: tokio::sync::Mutex::new(None),
            top: Rounds::new(),
            stored: Rounds::new(),
        }
    }
}

impl Drop for LiveChannel {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().take() {
            t.abort();
        }
    }
}

/// State shared by the broker's tasks.
pub(super) struct Inner {
    /// The one NATS connection of this node.
    pub(super) client: async_nats::Client,
    /// JetStream over it, with the publish timeout.
    pub(super) js: jetstream::Context,
    /// Cluster settings.
    pub(super) opts: ClusterOptions,
    /// Namespaces, for their history settings.
    pub(super) namespaces: Namespaces,
    /// This node's id.
    pub(super) node_id: String,
    /// Streams by namespace (`None`: default); filled by set-up.
    pub(super) streams: Mutex<HashMap<Option<String>, NsStream>>,
    /// Channels this node listens to.
    pub(super) live: Mutex<HashMap<String, Arc<LiveChannel>>>,
    /// This node's members.
    pub(super) presence: LocalPresence,
    /// Other nodes, from their heartbeats.
    pub(super) peers: Peers,
    /// NATS connection is up.
    pub(super) connected: AtomicBool,
    /// Streams exist and control subscriptions run.
    pub(super) set_up: AtomicBool,
    /// After a reconnect, until every channel caught up.
    pub(super) restoring: AtomicBool,
    /// The node's events, registered by `start`.
    pub(super) events: OnceLock<Arc<dyn BrokerEvents>>,
}

impl Inner {
    /// The node's events, once registered.
    pub(super) fn events(&self) -> Option<&Arc<dyn BrokerEvents>> {
        self.events.get()
    }

    /// Why the broker cannot serve (publish, read) right now, if it cannot.
    pub(super) fn unusable(&self) -> Option<BrokerError> {
        if !self.connected.load(Ordering::Acquire)
            || self.client.connection_state() != async_nats::connection::State::Connected
        {
            Some(BrokerError::NotConnected)
        } else if !self.set_up.load(Ordering::Acquire) {
            Some(BrokerError::NotSetUp)
        } else {
            None
        }
    }

    /// Waits (up to the publish timeout) until NATS is connected and the streams are
    /// set up: a node that just started, or whose NATS server is failing over, makes
    /// callers wait briefly instead of failing them at once.
    pub(super) async fn ensure_connected(&self) -> Result<(), BrokerError> {
        let deadline = tokio::time::Instant::now() + self.opts.publish_timeout;
        loop {
            let Some(problem) = self.unusable() else {
                return Ok(());
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(problem);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The stream of `channel`'s namespace.
    pub(super) fn ns_stream(&self, channel: &str) -> Result<NsStream, BrokerError> {
        let ns = subjects::namespace_of(channel).map(str::to_owned);
        self.streams
            .lock()
            .get(&ns)
            .cloned()
            .ok_or(BrokerError::NotSetUp)
    }

    /// The options of `channel`'s namespace.
    pub(super) fn ns_options(&self, channel: &str) -> Option<&NamespaceOptions> {
        self.namespaces.for_channel(channel)
    }

    /// Publishes on core NATS.
    pub(super) async fn publish(
        &self,
        what: &'static str,
        subject: impl async_nats::ToSubject,
        payload: Bytes,
    ) -> Result<(), BrokerError> {
        self.client
            .publish(subject, payload)
            .await
            .map_err(|e| BrokerError::nats(what, e))
    }

    /// [`Inner::publish`] in a trace span whose context travels in the message's
    /// headers (a publication without history: no JetStream, no ack).
    pub(super) async fn publish_traced(
        &self,
        subject: String,
        payload: Bytes,
    ) -> Result<(), BrokerError> {
        let span = tracing::info_span!(
            target: herald_shared::otel::TRACE_TARGET,
            "herald.nats.publish",
            subject = %subject,
        );
        let mut headers = HeaderMap::new();
        herald_shared::otel::inject(&span, |k, v| headers.insert(k, v));
        if headers.iter().next().is_none() {
            return tracing::Instrument::instrument(
                self.publish("NATS publish", subject, payload),
                span,
            )
            .await;
        }
        let publish = self.client.publish_with_headers(subject, headers, payload);
        tracing::Instrument::instrument(publish, span)
            .await
            .map_err(|e| BrokerError::nats("NATS publish", e))
    }

    /// Publishes to JetStream, retrying transient failures until the publish timeout.
    pub(super) async fn js_publish(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<u64, BrokerError> {
        let deadline = tokio::time::Instant::now() + self.opts.publish_timeout;
        loop {
            // One span per attempt: the NATS publish and the JetStream ack. Its context
            // rides in the message's headers to every node that delivers it.
            let span = tracing::info_span!(
                target: herald_shared::otel::TRACE_TARGET,
                "herald.jetstream.publish",
                subject = %subject,
                seq = tracing::field::Empty,
            );
            let mut headers = headers.clone();
            herald_shared::otel::inject(&span, |k, v| headers.insert(k, v));
            let attempt = async {
                let sent = std::time::Instant::now();
                let seq = self
                    .js
                    .publish_with_headers(subject.clone(), headers, payload.clone())
                    .await
                    .map_err(|e| BrokerError::nats("JetStream publish", e))?
                    .await
                    .map(|ack| ack.sequence)
                    .map_err(|e| BrokerError::nats("JetStream publish", e))?;
                metrics::histogram!(crate::metrics::NATS_PUBLISH_RTT)
                    .record(sent.elapsed().as_secs_f64());
                tracing::Span::current().record("seq", seq);
                Ok(seq)
            };
            match tracing::Instrument::instrument(attempt, span).await {
                Ok(seq) => return Ok(seq),
                Err(e) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "JetStream publish failed, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Sequence of the newest stored message of `subject` (0: none).
    pub(super) async fn last_seq(
        &self,
        stream: &stream::Stream,
        subject: &str,
    ) -> Result<u64, BrokerError> {
        match stream.direct_get_last_for_subject(subject).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if matches!(e.kind(), stream::DirectGetErrorKind::NotFound) => Ok(0),
            Err(e) => Err(BrokerError::nats("JetStream read", e)),
        }
    }

    /// Writes a marker if the subject holds nothing; returns the newest sequence.
    pub(super) async fn write_marker(
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
            .map_err(|e| BrokerError::nats("JetStream marker", e))?
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
            Err(e) => Err(BrokerError::nats("JetStream marker", e)),
        }
    }

    /// Stored publications of `subject` with `after < seq <= up_to`, markers skipped.
    pub(super) async fn read_range(
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
                Err(e) => return Err(BrokerError::nats("JetStream read", e)),
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
}
