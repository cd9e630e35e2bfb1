//! Server API actions on a user's connections: subscribe, unsubscribe, disconnect; and
//! the one server-side subscribe that both the API and a token's `channels` claim use.
//!
//! The API turns a request into a [`Control`]; the broker brings it to every node (the
//! embedded broker: just this one), and each node applies it to its own connections
//! here.

use super::subscribe::{attach, detach, AttachOptions};
use crate::config::NamespaceOptions;
use crate::conn::outbound::CloseReason;
use crate::conn::{ChannelState, Conn};
use crate::node::Node;
use herald_shared::auth::now_secs;
use herald_shared::codec::Control;
use herald_shared::protocol::codes::unsubscribe;
use herald_shared::protocol::{
    DisconnectCode, ErrorCode, PushBody, RawJson, StreamPosition, SubscribeResult,
};
use std::borrow::Cow;
use std::sync::atomic::Ordering;

/// Applies an action to this node's matching connections.
pub async fn apply(node: &Node, control: Control) {
    match control {
        Control::Disconnect {
            user,
            client,
            whitelist,
            code,
            reason,
        } => {
            let close = close_reason(code, reason);
            for conn in node.registry.find(&user, only(&client)) {
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
            for conn in node.registry.find(&user, only(&client)) {
                if detach(node, &conn, &channel).await {
                    let body = PushBody::Unsubscribe {
                        code: unsubscribe::SERVER,
                        reason: "server unsubscribe",
                    };
                    conn.out.push(conn.encoding().push(&channel, &body));
                }
            }
        }
        Control::Refresh {
            user,
            client,
            expired,
            expire_at,
        } => {
            let now = now_secs();
            for conn in node.registry.find(&user, only(&client)) {
                // As Centrifugo: `expired`, or an expiry already past, closes with 3005.
                if expired || (expire_at != 0 && expire_at <= now) {
                    conn.out.close(DisconnectCode::Expired);
                    continue;
                }
                conn.expires_at.store(expire_at, Ordering::Relaxed);
                let ttl = expire_at.saturating_sub(now).min(u64::from(u32::MAX)) as u32;
                // The writer reads the new expiry at its next wake-up (at the latest
                // the next ping), as it does after a client's own `refresh`.
                conn.out.push(conn.encoding().push(
                    "",
                    &PushBody::Refresh {
                        expires: expire_at != 0,
                        ttl,
                    },
                ));
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
            let Some(ns) = node.config.namespaces.for_channel(&channel) else {
                return;
            };
            let chan_info = info.as_deref().and_then(|i| RawJson::parse(i).ok());
            let recover = match (recover_offset, recover_epoch) {
                (Some(offset), Some(epoch)) => Some(StreamPosition { offset, epoch }),
                _ => None,
            };
            for conn in node.registry.find(&user, only(&client)) {
                if conn.is_subscribed(&channel) {
                    continue;
                }
                let side = ServerSide {
                    chan_info: chan_info.clone(),
                    recover: recover.clone(),
                    push_join_leave: false,
                    recovery: ns.recovery,
                    ..Default::default()
                };
                let attached = attach_server_side(node, &conn, &channel, ns, side);
                match attached.await {
                    Ok((result, up_to)) => {
                        let body = PushBody::Subscribe(&result);
                        conn.out.push(conn.encoding().push(&channel, &body));
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

/// How one server-side subscription is made.
#[derive(Clone, Debug, Default)]
pub struct ServerSide {
    /// The subscriber's `chan_info`.
    pub chan_info: Option<RawJson>,
    /// The position the client last saw, when it asked to recover.
    pub recover: Option<StreamPosition>,
    /// The subscriber gets join/leave pushes (a `subs` claim's `force_push_join_leave`).
    pub push_join_leave: bool,
    /// Recovery allowed (the namespace's, or a `subs` claim's `force_recovery`).
    pub recovery: bool,
    /// A `subs` claim's `override.presence`; `None`: the namespace's.
    pub presence: Option<bool>,
    /// A `subs` claim's `override.join_leave`; `None`: the namespace's.
    pub join_leave: Option<bool>,
}

/// Subscribes a connection server-side: for the server API's `subscribe` and for the
/// `subs`/`channels` claims of a connection token (Centrifugo's meaning of both).
/// Trusted, so no permission check; it recovers from `recover` only when `recovery`
/// allows. Returns what [`attach`] does: the caller queues the push or the connect
/// reply, then calls `hub.go_live`.
pub async fn attach_server_side(
    node: &Node,
    conn: &Conn,
    channel: &str,
    ns: &NamespaceOptions,
    side: ServerSide,
) -> Result<(SubscribeResult, u64), ErrorCode> {
    let state = ChannelState {
        chan_info: side.chan_info,
        expires_at: 0,
        presence: side.presence,
        join_leave: side.join_leave,
    };
    let options = AttachOptions {
        join_leave: side.push_join_leave,
        recover: side.recover.filter(|_| side.recovery),
        reject_unrecovered: false,
        ..Default::default()
    };
    attach(node, conn, channel, ns, state, options).await
}

/// An empty client id means every connection of the user.
fn only(client: &Option<String>) -> Option<&str> {
    client.as_deref().filter(|c| !c.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[tokio::test]
    async fn subscribe_unsubscribe_and_disconnect_a_user() {
        let node = testing::node(testing::config(|_| {}));
        let (a1, a2, b) = (
            testing::conn(&node, "alice"),
            testing::conn(&node, "alice"),
            testing::conn(&node, "bob"),
        );
        let subscribe = Control::Subscribe {
            user: "alice".into(),
            channel: "news".into(),
            client: None,
            info: None,
            recover_offset: None,
            recover_epoch: None,
        };
        apply(&node, subscribe).await;
        assert!(a1.is_subscribed("news") && a2.is_subscribed("news"));
        assert!(!b.is_subscribed("news"));
        assert!(testing::sent(&a1)[0].contains(r#""subscribe""#));

        let client = a2.identity().map(|i| i.client.clone());
        let unsubscribe = Control::Unsubscribe {
            user: "alice".into(),
            channel: "news".into(),
            client,
        };
        apply(&node, unsubscribe).await;
        assert!(a1.is_subscribed("news") && !a2.is_subscribed("news"));

        let spared = a1.identity().unwrap().client.clone();
        let disconnect = Control::Disconnect {
            user: "alice".into(),
            client: None,
            whitelist: vec![spared],
            code: 4000,
            reason: String::new(),
        };
        apply(&node, disconnect).await;
        assert!(!a1.out.is_closing() && a2.out.is_closing());
        assert_eq!(a2.out.close_code(), Some(4000));
    }

    #[test]
    fn known_codes_keep_their_reason() {
        let r = close_reason(DisconnectCode::Shutdown.code(), String::new());
        assert_eq!(r.reason, DisconnectCode::Shutdown.reason());
        assert_eq!(
            close_reason(4999, String::new()).reason,
            "server disconnect"
        );
        assert_eq!(close_reason(4999, "bye".into()).reason, "bye");
    }
}
