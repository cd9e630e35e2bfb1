//! The client protocol's commands, one file per command or group, like mini-redis's
//! `cmd/`. Each takes the connection's [`Client`] state and its request, and answers
//! with a reply body, an error reply or a disconnect ([`CmdResult`]); the
//! [dispatcher](super::handler) queues the reply and counts the command.
//!
//! What a command does to a channel (publish, history, presence, attach) is a
//! [channel operation](crate::channel), shared with the server API; what is left here
//! is the client's side: tokens, claims, per-connection limits, reply shapes.

pub(super) mod backend;
pub(super) mod connect;
pub(super) mod history;
pub(super) mod presence;
pub(super) mod publish;
pub(super) mod rpc;
pub(super) mod subscribe;

use crate::channel::ChannelError;
use crate::conn::outbound::CloseReason;
use crate::conn::Conn;
use crate::node::Node;
use crate::session::proxied::Backend;
use herald_shared::protocol::{DisconnectCode, ErrorCode, ReplyBody, ReplyError};
use std::sync::Arc;

/// The protocol state of one connection that commands work on.
pub(super) struct Client {
    /// The node.
    pub(super) node: Arc<Node>,
    /// The connection.
    pub(super) conn: Arc<Conn>,
    /// What the backend proxy needs of this connection (empty without a proxy).
    pub(super) backend: Backend,
}

impl Client {
    /// The state of a fresh connection.
    pub(super) fn new(node: Arc<Node>, conn: Arc<Conn>) -> Self {
        Client {
            node,
            conn,
            backend: Backend::default(),
        }
    }
}

/// How a command ends when it does not succeed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// Error reply; the connection stays.
    Error(ErrorCode),
    /// The connection ends.
    Close(DisconnectCode),
    /// Error reply with a code and text of the backend's (proxy answers).
    Reply(ReplyError),
    /// The connection ends with a code and reason of the backend's (proxy answers).
    Disconnect(CloseReason),
}

impl From<ErrorCode> for Failure {
    fn from(e: ErrorCode) -> Self {
        Failure::Error(e)
    }
}

impl From<ChannelError> for Failure {
    fn from(e: ChannelError) -> Self {
        Failure::Error(e.code())
    }
}

/// A command's outcome: a reply to queue, encoded by the dispatcher in the
/// connection's encoding (`None`: nothing, or the command queued its own reply), or how
/// it failed.
pub(super) type CmdResult = Result<Option<ReplyBody>, Failure>;

#[cfg(test)]
pub(super) mod tests {
    //! What the commands' tests share.

    use super::Client;
    use crate::config::NodeConfig;
    use crate::testing;

    /// A client of a node configured by `change`, connected as `user`.
    pub(in crate::session) fn client(user: &str, change: impl FnOnce(&mut NodeConfig)) -> Client {
        let node = testing::node(testing::config(change));
        let conn = testing::conn(&node, user);
        Client::new(node, conn)
    }
}
