//! `publish`: a client publishes to a channel it is subscribed to.

use super::{Client, CmdResult};
use crate::channel::publish::{publish as publish_op, Publish};
use crate::channel::Caller;
use herald_shared::protocol::command::PublishRequest;
use herald_shared::protocol::ReplyBody;

/// Publishes with the client's info attached; see [`crate::channel::publish`].
pub(in crate::session) async fn publish(c: &mut Client, req: PublishRequest) -> CmdResult {
    let p = Publish {
        data: req.data,
        ..Default::default()
    };
    publish_op(&c.node, Caller::Client(&c.conn), &req.channel, p).await?;
    Ok(Some(ReplyBody::Publish))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::cmd::tests::client;
    use crate::testing;
    use herald_shared::protocol::{ErrorCode, RawJson};

    #[tokio::test]
    async fn subscribers_publish_where_allowed() {
        let mut c = client("alice", |c| c.namespaces.default.allow_publish = true);
        let req = || PublishRequest {
            channel: "room".into(),
            data: Some(RawJson::parse(r#""hi""#).unwrap()),
        };
        assert_eq!(
            publish(&mut c, req()).await,
            Err(ErrorCode::PermissionDenied.into())
        );
        testing::subscribed(&c.conn, "room");
        assert_eq!(publish(&mut c, req()).await, Ok(Some(ReplyBody::Publish)));
        let empty = PublishRequest {
            channel: "room".into(),
            data: None,
        };
        assert_eq!(
            publish(&mut c, empty).await,
            Err(ErrorCode::BadRequest.into())
        );
    }
}
