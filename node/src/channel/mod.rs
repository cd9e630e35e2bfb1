//! Channel operations: what both the client protocol ([`crate::session`]) and the
//! server API ([`crate::api`]) do to channels, each written once with its checks.
//!
//! Every operation takes the [`Caller`]: a client connection gets the namespace's
//! permission checks (`allow_publish`, `allow_history`, `allow_presence`, each only for
//! subscribers), the server API is trusted. Name and namespace checks, availability
//! (history, presence), broker calls, their metrics and logs live here and nowhere else.
//!
//! # Layout
//! - [`publish`]: publish (offsets, idempotency, metrics).
//! - [`history`]: history reads (limit, epoch check) and removal.
//! - [`presence`]: presence and presence stats.
//! - [`subscribe`]: attaching a connection to a channel (recovery, presence, join)
//!   and detaching it.
//! - [`control`]: server API actions applied to this node's connections of a user
//!   (subscribe, unsubscribe, disconnect).

pub mod control;
pub mod history;
pub mod presence;
pub mod publish;
pub mod subscribe;

use crate::config::NamespaceOptions;
use crate::conn::Conn;
use crate::node::Node;
use herald_shared::protocol::ErrorCode;

/// Longest channel name accepted.
pub const MAX_CHANNEL_LEN: usize = 255;

/// Who asks for an operation.
#[derive(Clone, Copy)]
pub enum Caller<'a> {
    /// The server API (trusted: no per-client permission checks).
    Server,
    /// A client, through this connection.
    Client(&'a Conn),
    /// A client whose request the backend's proxy approved: no namespace permission or
    /// subscription check, but its client info is attached as for [`Caller::Client`].
    Approved(&'a Conn),
}

/// Why an operation was refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// The channel name is empty or too long (the text says which). Clients get
    /// "bad request"; the server API answers 400 with this text.
    BadName(&'static str),
    /// A protocol error about a well-formed request.
    Code(ErrorCode),
}

impl From<ErrorCode> for ChannelError {
    fn from(c: ErrorCode) -> Self {
        ChannelError::Code(c)
    }
}

impl ChannelError {
    /// The protocol error code a client is answered with.
    pub fn code(self) -> ErrorCode {
        match self {
            ChannelError::BadName(_) => ErrorCode::BadRequest,
            ChannelError::Code(c) => c,
        }
    }
}

/// Checks a channel name and finds its namespace.
pub fn namespace<'n>(node: &'n Node, channel: &str) -> Result<&'n NamespaceOptions, ChannelError> {
    if channel.is_empty() {
        return Err(ChannelError::BadName("channel is required"));
    }
    if channel.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::BadName("channel name too long"));
    }
    node.config
        .namespaces
        .for_channel(channel)
        .ok_or(ChannelError::Code(ErrorCode::UnknownChannel))
}

/// A client may use a channel feature only when the namespace allows it and it is
/// subscribed to the channel; the server API always may.
fn permitted(caller: Caller<'_>, allowed: bool, channel: &str) -> Result<(), ChannelError> {
    match caller {
        Caller::Server | Caller::Approved(_) => Ok(()),
        Caller::Client(conn) if allowed && conn.is_subscribed(channel) => Ok(()),
        Caller::Client(_) => Err(ErrorCode::PermissionDenied.into()),
    }
}
