//! Scatter-gather queries: every live node answers for its own members and channels.

use super::cluster::local_status;
use super::state::Inner;
use super::subjects;
use crate::broker::BrokerError;
use bytes::Bytes;
use futures_util::StreamExt;
use herald_shared::codec::{self, Envelope, NodeStatus};
use herald_shared::protocol::ClientInfo;
use std::collections::{HashMap, HashSet};

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
        .map_err(|e| BrokerError::nats("NATS subscribe", e))?;
    inner
        .client
        .publish_with_reply(subject, inbox, Bytes::from(codec::encode(&query)))
        .await
        .map_err(|e| BrokerError::nats("NATS query", e))?;
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
pub(super) async fn presence(
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
pub(super) async fn channels(inner: &Inner) -> Result<HashMap<String, u64>, BrokerError> {
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
pub(super) fn nodes(inner: &Inner) -> Vec<NodeStatus> {
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
