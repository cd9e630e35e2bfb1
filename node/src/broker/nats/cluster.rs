//! The cluster plane: stream set-up, heartbeats, server API actions for every node, and
//! scatter-gather queries for presence and channels.
//!
//! Every node heartbeats on one subject and remembers the others; a node silent for
//! `HERALD_NODE_TIMEOUT` is dead. A presence query asks every node at once and waits for
//! an answer from each live node (or the query timeout): the members of a node that
//! died are simply never reported again, so there are no ghosts to clean up.

use super::{subjects, Inner, NsStream};
use crate::broker::BrokerError;
use crate::node::Node;
use async_nats::jetstream::stream;
use bytes::Bytes;
use futures_util::StreamExt;
use herald_shared::codec::{self, Envelope, NodeStatus, WireClientInfo};
use herald_shared::protocol::ClientInfo;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Other nodes as their heartbeats describe them.
#[derive(Default)]
pub struct Peers {
    inner: Mutex<HashMap<String, (NodeStatus, Instant)>>,
}

impl Peers {
    /// Records a heartbeat; true when the node was not known (new, or back after
    /// being counted dead).
    fn seen(&self, status: NodeStatus) -> bool {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        p.insert(status.id.clone(), (status, Instant::now()))
            .is_none()
    }

    /// Nodes heard from within `timeout`.
    fn alive(&self, timeout: Duration) -> Vec<NodeStatus> {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|_, (_, at)| at.elapsed() <= timeout);
        p.values().map(|(s, _)| s.clone()).collect()
    }
}

/// NATS connection events: readiness follows the connection; after a reconnect every
/// channel catches up with its stream before the node reports ready again.
pub async fn on_event(inner: Arc<Inner>, event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => {
            let was_set_up = inner.set_up.load(Ordering::Acquire);
            if was_set_up {
                inner.restoring.store(true, Ordering::Release);
                tracing::info!("NATS reconnected: catching up every channel");
                let i = inner.clone();
                tokio::spawn(async move {
                    let _ = i.client.flush().await;
                    super::live::catch_up_all(&i).await;
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
pub async fn run(inner: Arc<Inner>, stop: CancellationToken) {
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
pub async fn announce(inner: &Inner, state: &str) {
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
    let draining = inner
        .node()
        .is_some_and(|n| n.draining.load(Ordering::Relaxed) || n.stop.is_cancelled());
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
            duplicate_window: crate::broker::IDEMPOTENCY_WINDOW.min(opts.history_ttl),
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
        .map_err(|_| BrokerError::Unavailable("JetStream did not answer".into()))
        .and_then(|r| r.map_err(|e| BrokerError::Unavailable(e.to_string())))
        .map_err(|e| {
            BrokerError::Unavailable(format!(
                "stream {}: {e}",
                subjects::stream_name(ns.as_deref())
            ))
        })?;
        let stream = inner
            .js
            .get_stream(subjects::stream_name(ns.as_deref()))
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let epoch = format!("{:x}", info.created.unix_timestamp_nanos());
        inner
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ns, NsStream { stream, epoch });
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
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        tokio::spawn(listen(inner.clone(), sub));
    }
    inner
        .client
        .flush()
        .await
        .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
    // Be known to the others before answering as ready.
    let env = Envelope::Heartbeat(local_status(inner));
    let _ = inner
        .client
        .publish(subjects::HEARTBEAT, Bytes::from(codec::encode(&env)))
        .await;
    Ok(())
}

fn local_status(inner: &Inner) -> NodeStatus {
    match inner.node() {
        Some(node) => node_status(&node),
        None => NodeStatus {
            id: inner.node_id.clone(),
            ..Default::default()
        },
    }
}

/// This node's numbers.
pub fn node_status(node: &Node) -> NodeStatus {
    let channels = node.hub.channels();
    NodeStatus {
        id: node.config.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        num_clients: node.registry.all().len() as u64,
        num_users: node.registry.num_users() as u64,
        num_channels: channels.len() as u64,
        num_subs: channels.iter().map(|(_, n)| *n as u64).sum(),
        uptime: node.started.elapsed().as_secs(),
        draining: node.draining.load(Ordering::Relaxed),
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
                if let Some(node) = inner.node() {
                    tokio::spawn(async move { crate::control::apply(&node, c).await });
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
                    .hub
                    .channels()
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

/// Asks every node; collects answers until each live node answered or the timeout.
async fn gather(
    inner: &Inner,
    subject: &'static str,
    query: Envelope,
) -> Result<Vec<Envelope>, BrokerError> {
    let mut expected: HashSet<String> = inner
        .peers
        .alive(inner.opts.node_timeout)
        .into_iter()
        .map(|s| s.id)
        .collect();
    expected.insert(inner.node_id.clone());
    let inbox = inner.client.new_inbox();
    let mut sub = inner
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
    inner
        .client
        .publish_with_reply(subject, inbox, Bytes::from(codec::encode(&query)))
        .await
        .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + inner.opts.query_timeout;
    while !expected.is_empty() {
        let msg = match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => m,
            _ => break,
        };
        match codec::decode(&msg.payload) {
            Ok(env) => {
                let from = match &env {
                    Envelope::PresenceReply { node, .. } | Envelope::ChannelsReply { node, .. } => {
                        node.clone()
                    }
                    _ => continue,
                };
                expected.remove(&from);
                answers.push(env);
            }
            Err(e) => tracing::warn!(error = %e, "rejected a query answer"),
        }
    }
    if !expected.is_empty() {
        tracing::debug!(missing = ?expected, "query answered without some nodes");
    }
    Ok(answers)
}

/// Members of `channel` on every live node.
pub async fn presence(
    inner: &Inner,
    channel: &str,
) -> Result<HashMap<String, ClientInfo>, BrokerError> {
    let answers = gather(
        inner,
        subjects::PRESENCE_QUERY,
        Envelope::PresenceQuery {
            channel: channel.to_owned(),
        },
    )
    .await?;
    let mut out = HashMap::new();
    for env in answers {
        if let Envelope::PresenceReply { members, .. } = env {
            for (client, w) in members {
                match w.to_info() {
                    Ok(info) => {
                        out.insert(client, info);
                    }
                    Err(e) => tracing::warn!(error = %e, "bad presence entry"),
                }
            }
        }
    }
    Ok(out)
}

/// Channels with subscribers on any live node.
pub async fn channels(inner: &Inner) -> Result<HashMap<String, u64>, BrokerError> {
    let answers = gather(inner, subjects::CHANNELS_QUERY, Envelope::ChannelsQuery).await?;
    let mut out: HashMap<String, u64> = HashMap::new();
    for env in answers {
        if let Envelope::ChannelsReply { channels, .. } = env {
            for (c, n) in channels {
                *out.entry(c).or_default() += n;
            }
        }
    }
    Ok(out)
}

/// Every live node; this node's entry is computed now.
pub fn nodes(inner: &Inner) -> Vec<NodeStatus> {
    let me = local_status(inner);
    let mut out: Vec<NodeStatus> = inner
        .peers
        .alive(inner.opts.node_timeout)
        .into_iter()
        .filter(|s| s.id != me.id)
        .collect();
    out.push(me);
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}
