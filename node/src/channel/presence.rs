//! Who is present in a channel.

use super::{namespace, permitted, Caller, ChannelError};
use crate::node::Node;
use herald_shared::protocol::{ClientInfo, ErrorCode, PresenceStatsResult};
use std::collections::HashMap;

/// The namespace must keep presence; a client must be subscribed in a namespace with
/// `allow_presence`.
fn check(node: &Node, caller: Caller<'_>, channel: &str) -> Result<(), ChannelError> {
    let ns = namespace(node, channel)?;
    if !ns.presence {
        return Err(ErrorCode::NotAvailable.into());
    }
    permitted(caller, ns.allow_presence, channel)
}

/// Members of `channel`: connection id → who.
pub async fn presence(
    node: &Node,
    caller: Caller<'_>,
    channel: &str,
) -> Result<HashMap<String, ClientInfo>, ChannelError> {
    check(node, caller, channel)?;
    node.broker
        .presence(channel)
        .await
        .map_err(|_| ErrorCode::Internal.into())
}

/// How many connections and distinct users are present in `channel`.
pub async fn stats(
    node: &Node,
    caller: Caller<'_>,
    channel: &str,
) -> Result<PresenceStatsResult, ChannelError> {
    check(node, caller, channel)?;
    let s = node
        .broker
        .presence_stats(channel)
        .await
        .map_err(|_| ErrorCode::Internal)?;
    Ok(PresenceStatsResult {
        num_clients: s.clients as u32,
        num_users: s.users as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[tokio::test]
    async fn counts_members_for_those_allowed() {
        let node = testing::node(testing::config(|c| {
            c.namespaces.default.presence = true;
            c.namespaces.default.allow_presence = true;
        }));
        let conn = testing::conn(&node, "alice");
        let info = conn.client_info(None);
        node.broker
            .add_presence("c", &info.client, &info)
            .await
            .unwrap();
        let r = stats(&node, Caller::Client(&conn), "c").await;
        assert_eq!(r, Err(ErrorCode::PermissionDenied.into()));
        testing::subscribed(&conn, "c");
        let s = stats(&node, Caller::Client(&conn), "c").await.unwrap();
        assert_eq!((s.num_clients, s.num_users), (1, 1));
        let p = presence(&node, Caller::Server, "c").await.unwrap();
        assert_eq!(p[&info.client].user, "alice");
    }

    #[tokio::test]
    async fn not_available_without_presence() {
        let node = testing::node(testing::config(|_| {}));
        let r = presence(&node, Caller::Server, "c").await;
        assert_eq!(r, Err(ErrorCode::NotAvailable.into()));
    }
}
