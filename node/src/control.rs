//! Server API actions on connections: subscribe, unsubscribe, disconnect.
//!
//! The API turns a request into a [`Control`]; the broker brings it to every node (the
//! embedded broker: just this one), and each node applies it to its own connections here.

use crate::node::Node;
use crate::session::conn::ChannelState;
use crate::session::handler::{attach, unsubscribe_conn, AttachOptions};
use crate::session::outbound::CloseReason;
use herald_shared::codec::Control;
use herald_shared::protocol::codes::unsubscribe;
use herald_shared::protocol::reply::{encode_subscribe_push, encode_unsubscribe_push};
use herald_shared::protocol::{DisconnectCode, RawJson, StreamPosition};
use std::borrow::Cow;
use std::sync::Arc;

/// Applies an action to this node's matching connections.
pub async fn apply(node: &Arc<Node>, control: Control) {
    match control {
        Control::Disconnect {
            user,
            client,
            whitelist,
            code,
            reason,
        } => {
            let close = close_reason(code, reason);
            for conn in node
                .registry
                .find(&user, client.as_deref().filter(|c| !c.is_empty()))
            {
                let spared = conn
                    .identity()
                    .is_some_and(|i| whitelist.contains(&i.client));
                if !spared {
                    conn.out.close(close.clone());
                }
            }
        }
        Control::Unsubscribe {
            user,
            channel,
            client,
        } => {
            for conn in node
                .registry
                .find(&user, client.as_deref().filter(|c| !c.is_empty()))
            {
                if unsubscribe_conn(node, &conn, &channel).await {
                    conn.out.push(encode_unsubscribe_push(
                        &channel,
                        unsubscribe::SERVER,
                        "server unsubscribe",
                    ));
                }
            }
        }
        Control::Subscribe {
            user,
            channel,
            client,
            info,
            recover_offset,
            recover_epoch,
        } => {
            let Some(ns) = node.config.namespaces.for_channel(&channel).cloned() else {
                return;
            };
            let chan_info = info.as_deref().and_then(|i| RawJson::parse(i).ok());
            let recover = match (recover_offset, recover_epoch) {
                (Some(offset), Some(epoch)) => Some(StreamPosition { offset, epoch }),
                _ => None,
            };
            for conn in node
                .registry
                .find(&user, client.as_deref().filter(|c| !c.is_empty()))
            {
                let already = conn
                    .channels
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains_key(&channel);
                if already {
                    continue;
                }
                let state = ChannelState {
                    chan_info: chan_info.clone(),
                    expires_at: 0,
                };
                let options = AttachOptions {
                    join_leave: false,
                    recover: recover.clone(),
                    reject_unrecovered: false,
                };
                match attach(node, &conn, &channel, &ns, state, options).await {
                    Ok((result, up_to)) => {
                        conn.out.push(encode_subscribe_push(&channel, &result));
                        node.hub.go_live(&channel, conn.id, up_to);
                    }
                    Err(_) => {
                        tracing::warn!(channel = %channel, user = %user, "server-side subscribe failed");
                    }
                }
            }
        }
    }
}

/// The close for a disconnect code: known codes keep their protocol reason.
fn close_reason(code: u16, reason: String) -> CloseReason {
    let known = DisconnectCode::ALL.iter().find(|c| c.code() == code);
    let reason = match (reason.is_empty(), known) {
        (false, _) => Cow::Owned(reason),
        (true, Some(known)) => Cow::Borrowed(known.reason()),
        (true, None) => Cow::Borrowed("server disconnect"),
    };
    CloseReason {
        code,
        reason,
        push: true,
    }
}
