//! `presence` and `presence_stats`.

use super::{to_json, Client, CmdResult};
use crate::channel::presence;
use crate::channel::Caller;
use herald_shared::protocol::command::ChannelRequest;
use herald_shared::protocol::reply::PresenceResult;

/// Who is present in a channel the client is subscribed to.
pub(in crate::session) async fn presence(c: &mut Client, req: ChannelRequest) -> CmdResult {
    let presence = presence::presence(&c.node, Caller::Client(&c.conn), &req.channel).await?;
    Ok(Some(to_json(&PresenceResult { presence })))
}

/// How many are present in a channel the client is subscribed to.
pub(in crate::session) async fn presence_stats(c: &mut Client, req: ChannelRequest) -> CmdResult {
    let stats = presence::stats(&c.node, Caller::Client(&c.conn), &req.channel).await?;
    Ok(Some(to_json(&stats)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::cmd::tests::client;
    use crate::testing;
    use herald_shared::protocol::ErrorCode;

    #[tokio::test]
    async fn members_of_a_subscribed_channel() {
        let mut c = client("alice", |c| c.namespaces.default.presence = true);
        let req = || ChannelRequest {
            channel: "room".into(),
        };
        assert_eq!(
            presence_stats(&mut c, req()).await,
            Err(ErrorCode::PermissionDenied.into())
        );
        testing::subscribed(&c.conn, "room");
        let stats = presence_stats(&mut c, req()).await.unwrap().unwrap();
        assert_eq!(stats, br#"{"num_clients":0,"num_users":0}"#);
        let members = presence(&mut c, req()).await.unwrap().unwrap();
        assert_eq!(members, br#"{"presence":{}}"#);
    }
}
