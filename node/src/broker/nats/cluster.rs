//! The cluster plane: stream set-up, heartbeats, server API actions for every node, and
//! the answers to other nodes' queries (the queries themselves are in `query`).
//!
//! Every node heartbeats on one subject and remembers the others; a node silent for
//! `HERALD_NODE_TIMEOUT` is dead. A presence query asks every node at once and waits for
//! an answer from each live node (or the query timeout): the members of a node that
//! died are simply never reported again, so there are no ghosts to clean up.

use super::state::{Inner, NsStream};
use super::{live, subjects};
use crate::broker::{BrokerError, IDEMPOTENCY_WINDOW};
use async_nats::jetstream::stream;
use bytes::Bytes;
use futures_util::StreamExt;
use herald_shared::codec::{self, Envelope, NodeStatus, WireClientInfo};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// NATS connection events: readiness follows the connection; after a reconnect every
/// channel catches up with its stream before the node reports ready again.
pub(super) async fn on_event(inner: Arc<Inner>, event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => {
            let was_set_up = inner.set_up.load(Ordering::Acquire);
            if was_set_up {
                inner.restoring.store(true, Ordering::Release);
                tracing::info!("NATS reconnected: catching up every channel");
                let i = inner.clone();
                tokio::spawn(async move {
                    let _ = i.client.flush().await;
                    live::catch_up_all(&i).await;
                    i.restoring.store(false, Ordering::Release);
                    tracing::info!("channels caught up");
                });
            }
            inner.connected.store(true, Ordering::Release);
            metrics::gauge!(crate::metrics::NATS_CONNECTED).set(1.0);
        }
        async_nats::Event::Disconnected => {
            inner.connected.store(false, Ordering::Release);
            metrics::gauge!(crate::metrics::NATS_CONNECTED).set(0.0);
            tracing::warn!("NATS disconnected");
        }
        async_nats::Event::SlowConsumer(sid) => {
            // Dropped live messages are noticed by sequence and read back from JetStream.
            tracing::warn!(sid, "NATS slow consumer: some live messages were dropped");
        }
        other => tracing::info!(event = %other, "NATS event"),
    }
}

/// Longest wait for one stream set-up request before trying again (a request sent
/// while a JetStream cluster settles can go unanswered; a new one is).
const SET_UP_ATTEMPT: Duration = Duration::from_secs(3);

/// Sets up streams and subscriptions (retrying until NATS answers), then heartbeats
/// until `stop`.
pub(super) async fn run(inner: Arc<Inner>, stop: CancellationToken) {
    if inner.client.connection_state() == async_nats::connection::State::Connected {
        inner.connected.store(true, Ordering::Release);
    }
    let up = inner.connected.load(Ordering::Acquire);
    metrics::gauge!(crate::metrics::NATS_CONNECTED).set(if up { 1.0 } else { 0.0 });
    loop {
        match set_up(&inner).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "NATS set-up failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    // Learn the cluster before serving: a presence query asks every node it knows of,
    // so a node that answered before hearing the others would report a partial room.
    // Peers answer a newcomer's first heartbeat at once; every peer beats within one
    // interval anyway.
    heartbeat(&inner).await;
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(inner.opts.heartbeat) => {}
    }
    inner.set_up.store(true, Ordering::Release);
    tracing::info!(
        peers = inner.peers.alive(inner.opts.node_timeout).len(),
        "NATS set-up complete"
    );
    let mut tick = tokio::time::interval(inner.opts.heartbeat);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => heartbeat(&inner).await,
        }
    }
}

/// Tells routers where this node is and whether it takes new connections
/// (`ready`, `draining` or `leaving`); they forget it after `ttl` seconds of silence.
pub(super) async fn announce(inner: &Inner, state: &str) {
    let Some(addr) = inner.opts.advertise.as_deref() else {
        return;
    };
    let body = serde_json::json!({
        "id": inner.node_id,
        "addr": addr,
        "state": state,
        "ttl": inner.opts.node_timeout.as_secs_f64(),
    });
    if let Err(e) = inner
        .client
        .publish(subjects::ANNOUNCE, Bytes::from(body.to_string()))
        .await
    {
        tracing::debug!(error = %e, "announcement not sent");
    }
}

async fn heartbeat(inner: &Inner) {
    let draining = inner.events().is_some_and(|e| e.leaving());
    announce(inner, if draining { "draining" } else { "ready" }).await;
    let env = Envelope::Heartbeat(local_status(inner));
    if let Err(e) = inner
        .client
        .publish(subjects::HEARTBEAT, Bytes::from(codec::encode(&env)))
        .await
    {
        tracing::debug!(error = %e, "heartbeat not sent");
    }
}

async fn set_up(inner: &Arc<Inner>) -> Result<(), BrokerError> {
    let mut namespaces: Vec<(Option<String>, &crate::config::NamespaceOptions)> =
        vec![(None, &inner.namespaces.default)];
    namespaces.extend(
        inner
            .namespaces
            .named
            .iter()
            .map(|(k, v)| (Some(k.clone()), v)),
    );
    for (ns, opts) in namespaces {
        if !opts.has_history() {
            continue;
        }
        let (src, dest) = subjects::stream_subjects(ns.as_deref());
        let config = stream::Config {
            name: subjects::stream_name(ns.as_deref()),
            subjects: vec![src.clone()],
            // One more than the history size: room for a position marker.
            max_messages_per_subject: opts.history_size as i64 + 1,
            max_age: opts.history_ttl,
            storage: if inner.opts.memory_storage {
                stream::StorageType::Memory
            } else {
                stream::StorageType::File
            },
            num_replicas: inner.opts.replicas,
            allow_direct: true,
            // JetStream refuses a duplicate window longer than the messages live.
            duplicate_window: IDEMPOTENCY_WINDOW.min(opts.history_ttl),
            republish: Some(stream::Republish {
                source: src,
                destination: dest,
                headers_only: false,
            }),
            ..Default::default()
        };
        // Bounded as a whole: a JetStream cluster still electing its leaders can leave
        // the request unanswered; the caller retries.
        let info = tokio::time::timeout(
            SET_UP_ATTEMPT.min(inner.opts.publish_timeout),
            inner.js.create_or_update_stream(config),
        )
        .await
        .map_err(|_| BrokerError::Timeout("stream set-up"))
        .and_then(|r| r.map_err(|e| BrokerError::nats("stream set-up", e)))
        .map_err(|e| BrokerError::Stream {
            stream: subjects::stream_name(ns.as_deref()),
            source: Box::new(e),
        })?;
        let stream = inner
            .js
            .get_stream(subjects::stream_name(ns.as_deref()))
            .await
            .map_err(|e| BrokerError::nats("stream lookup", e))?;
        let epoch = format!("{:x}", info.created.unix_timestamp_nanos());
        inner.streams.lock().insert(ns, NsStream { stream, epoch });
    }
    for subject in [
        subjects::CONTROL,
        subjects::HEARTBEAT,
        subjects::PRESENCE_QUERY,
        subjects::CHANNELS_QUERY,
    ] {
        let sub = inner
            .client
            .subscribe(subject)
            .await
            .map_err(|e| BrokerError::nats("NATS subscribe", e))?;
        tokio::spawn(listen(inner.clone(), sub));
    }
    inner
        .client
        .flush()
        .await
        .map_err(|e| BrokerError::nats("NATS flush", e))?;
    // Be known to the others before answering as ready.
    let env = Envelope::Heartbeat(local_status(inner));
    let _ = inner
        .client
        .publish(subjects::HEARTBEAT, Bytes::from(codec::encode(&env)))
        .await;
    Ok(())
}

/// This node's status, from the node (a bare one before it registered).
pub(super) fn local_status(inner: &Inner) -> NodeStatus {
    match inner.events() {
        Some(events) => events.status(),
        None => NodeStatus {
            id: inner.node_id.clone(),
            ..Default::default()
        },
    }
}

async fn listen(inner: Arc<Inner>, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        let env = match codec::decode(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, "rejected a node-to-node message");
                continue;
            }
        };
        match env {
            Envelope::Heartbeat(status) => {
                let newcomer = status.id != inner.node_id;
                if inner.peers.seen(status) && newcomer {
                    // Tell the newcomer about this node now rather than at the next beat.
                    heartbeat(&inner).await;
                }
            }
            Envelope::Control(c) => {
                if let Some(events) = inner.events() {
                    tokio::spawn(events.control(c));
                }
            }
            Envelope::PresenceQuery { channel } => {
                let members = inner
                    .presence
                    .get(&channel)
                    .into_iter()
                    .map(|(k, v)| (k, WireClientInfo::from_info(&v)))
                    .collect();
                reply(
                    &inner,
                    &msg,
                    Envelope::PresenceReply {
                        node: inner.node_id.clone(),
                        members,
                    },
                )
                .await;
            }
            Envelope::ChannelsQuery => {
                let channels = inner
                    .events()
                    .map(|e| e.local_channels())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(c, n)| (c, n as u64))
                    .collect();
                reply(
                    &inner,
                    &msg,
                    Envelope::ChannelsReply {
                        node: inner.node_id.clone(),
                        channels,
                    },
                )
                .await;
            }
            other => tracing::debug!(kind = ?std::mem::discriminant(&other), "ignored message"),
        }
    }
}

async fn reply(inner: &Inner, msg: &async_nats::Message, env: Envelope) {
    if let Some(to) = &msg.reply {
        let _ = inner
            .client
            .publish(to.clone(), Bytes::from(codec::encode(&env)))
            .await;
    }
}
