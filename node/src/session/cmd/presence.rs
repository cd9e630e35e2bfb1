//! `presence` and `presence_stats`.

use super::{Client, CmdResult};
use crate::channel::presence;
use crate::channel::Caller;
use herald_shared::protocol::command::ChannelRequest;
use herald_shared::protocol::reply::PresenceResult;
use herald_shared::protocol::ReplyBody;

/// Who is present in a channel the client is subscribed to.
pub(in crate::session) async fn presence(c: &mut Client, req: ChannelRequest) -> CmdResult {
    let presence = presence::presence(&c.node, Caller::Client(&c.conn), &req.channel).await?;
    Ok(Some(ReplyBody::Presence(PresenceResult { presence })))
}

/// How many are present in a channel the client is subscribed to.
pub(in crate::session) async fn presence_stats(c: &mut Client, req: ChannelRequest) -> CmdResult {
    let stats = presence::stats(&c.node, Caller::Client(&c.conn), &req.channel).await?;
    Ok(Some(ReplyBody::PresenceStats(stats)))
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
        assert_eq!(stats, ReplyBody::PresenceStats(Default::default()));
        let members = presence(&mut c, req()).await.unwrap().unwrap();
        assert_eq!(members, ReplyBody::Presence(Default::default()));
    }
}
