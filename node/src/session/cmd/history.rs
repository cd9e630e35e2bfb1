//! `history`: a client reads a channel it is subscribed to.

use super::{Client, CmdResult};
use crate::broker::HistoryQuery;
use crate::channel::history::{history as history_op, limit};
use crate::channel::Caller;
use herald_shared::protocol::command::HistoryRequest;
use herald_shared::protocol::{ReplyBody, StreamPosition};

/// Reads history; see [`crate::channel::history`]. A `limit` of 0 asks for the
/// position only, a negative one for everything kept.
pub(in crate::session) async fn history(c: &mut Client, req: HistoryRequest) -> CmdResult {
    let query = HistoryQuery {
        since: req.since.map(StreamPosition::from),
        limit: limit(i64::from(req.limit)),
        reverse: req.reverse,
        establish_position: false,
    };
    let h = history_op(&c.node, Caller::Client(&c.conn), &req.channel, query).await?;
    Ok(Some(ReplyBody::History(h)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::cmd::tests::client;
    use crate::testing;
    use herald_shared::protocol::ErrorCode;

    #[tokio::test]
    async fn subscribers_read_the_position() {
        let mut c = client("alice", |_| {});
        let req = || HistoryRequest {
            channel: "room".into(),
            ..Default::default()
        };
        assert_eq!(
            history(&mut c, req()).await,
            Err(ErrorCode::PermissionDenied.into())
        );
        testing::subscribed(&c.conn, "room");
        let body = history(&mut c, req()).await.unwrap().unwrap();
        let ReplyBody::History(h) = body else {
            panic!("{body:?}")
        };
        assert_eq!(h.offset, 0);
        assert!(h.publications.is_empty());
    }
}
