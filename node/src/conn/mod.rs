//! One client connection as the rest of the node sees it: its outbound queue, who it
//! is once connected, its subscriptions, and the timers its writer enforces.
//!
//! This is the lowest layer of the node: the hub, the channel operations and the
//! session all use it, and it uses none of them.
//!
//! # Layout
//! - [`outbound`]: the bounded outbound queue every producer appends to.
//! - [`registry`]: every open connection, found by id, client id or user.
//! - [`lanes`]: the tasks that write for connections whose writer is idle.
//! - [`wire`]: server frame headers and coalesced frames, for both writers.
//! - [`socket`]: the connection's TCP stream, shared by its reader and writers.

pub mod lanes;
pub mod outbound;
pub mod registry;
pub mod socket;
pub mod wire;

use herald_shared::protocol::{ClientInfo, Encoding, RawJson};
use outbound::Outbound;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Who the connection is, fixed by `connect`.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Connection id given to the client (`client` in the connect reply).
    pub client: String,
    /// User id from the token (empty for anonymous).
    pub user: String,
    /// The token's `info` claim.
    pub info: Option<RawJson>,
    /// The token's `meta` claim: kept server-side, never sent to any client.
    pub meta: Option<RawJson>,
}

/// One subscription of the connection.
#[derive(Clone, Debug, Default)]
pub struct ChannelState {
    /// The subscription token's `info`, shown as `chan_info`.
    pub chan_info: Option<RawJson>,
    /// Unix seconds when the subscription token expires; 0 = never.
    pub expires_at: u64,
    /// A token's `override.presence`: whether the subscriber appears in presence;
    /// `None`: as the namespace says. Kept so that detach undoes what attach did.
    pub presence: Option<bool>,
    /// A token's `override.join_leave`: whether its join and leave are published;
    /// `None`: as the namespace says.
    pub join_leave: Option<bool>,
}

/// Shared per-connection state.
pub struct Conn {
    /// Node-local numeric id (hub and registry key).
    pub id: u64,
    /// Peer address.
    pub remote: SocketAddr,
    /// Outbound queue.
    pub out: Arc<Outbound>,
    /// Set once by a successful `connect`.
    identity: OnceLock<Identity>,
    /// Subscriptions: channel → state. Touched by the session and the server API.
    channels: Mutex<HashMap<String, ChannelState>>,
    /// A ping was sent and no answer has come since.
    pub awaiting_pong: AtomicBool,
    /// When the last unanswered ping was queued (`metrics::now_nanos`; 0: none), for
    /// the ping round-trip metric.
    pub ping_sent: AtomicU64,
    /// Unix seconds when the connection token expires; 0 = never.
    pub expires_at: AtomicU64,
}

impl Conn {
    /// A JSON connection that has not sent `connect` yet.
    pub fn new(id: u64, remote: SocketAddr, queue_max_bytes: usize) -> Self {
        Self::with_encoding(id, remote, queue_max_bytes, Encoding::Json)
    }

    /// A connection of `encoding` that has not sent `connect` yet.
    pub fn with_encoding(
        id: u64,
        remote: SocketAddr,
        queue_max_bytes: usize,
        encoding: Encoding,
    ) -> Self {
        Conn {
            id,
            remote,
            out: Arc::new(Outbound::with_encoding(queue_max_bytes, encoding)),
            identity: OnceLock::new(),
            channels: Mutex::new(HashMap::new()),
            awaiting_pong: AtomicBool::new(false),
            ping_sent: AtomicU64::new(0),
            expires_at: AtomicU64::new(0),
        }
    }

    /// The encoding the client chose at the upgrade.
    pub fn encoding(&self) -> Encoding {
        self.out.encoding()
    }

    /// Who it is, once connected.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.get()
    }

    /// Fixes the identity; false if it was already set.
    pub fn set_identity(&self, identity: Identity) -> bool {
        self.identity.set(identity).is_ok()
    }

    /// Whether `connect` succeeded.
    pub fn is_connected(&self) -> bool {
        self.identity.get().is_some()
    }

    /// User id, empty when anonymous or not connected.
    pub fn user(&self) -> &str {
        self.identity().map(|i| i.user.as_str()).unwrap_or("")
    }

    /// The client info shown in presence, joins and publications for `channel`.
    pub fn client_info(&self, chan_info: Option<RawJson>) -> ClientInfo {
        match self.identity() {
            Some(i) => ClientInfo {
                user: i.user.clone(),
                client: i.client.clone(),
                conn_info: i.info.clone(),
                chan_info,
            },
            None => ClientInfo::default(),
        }
    }

    /// Whether the connection is subscribed to `channel`.
    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.channels.lock().contains_key(channel)
    }

    /// How many channels the connection is subscribed to.
    pub fn num_channels(&self) -> usize {
        self.channels.lock().len()
    }

    /// The `chan_info` of the connection's subscription to `channel`.
    pub fn chan_info(&self, channel: &str) -> Option<RawJson> {
        self.channels
            .lock()
            .get(channel)
            .and_then(|s| s.chan_info.clone())
    }

    /// Channels the connection is subscribed to.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels.lock().keys().cloned().collect()
    }

    /// Records a subscription.
    pub fn add_channel(&self, channel: &str, state: ChannelState) {
        self.channels.lock().insert(channel.to_owned(), state);
    }

    /// Forgets a subscription, returning its state if there was one.
    pub fn remove_channel(&self, channel: &str) -> Option<ChannelState> {
        self.channels.lock().remove(channel)
    }

    /// Sets when the subscription to `channel` expires; false when not subscribed.
    pub fn set_channel_expiry(&self, channel: &str, expires_at: u64) -> bool {
        match self.channels.lock().get_mut(channel) {
            Some(st) => {
                st.expires_at = expires_at;
                true
            }
            None => false,
        }
    }

    /// The earliest expiry among the connection and its subscriptions (0 = none).
    pub fn next_expiry(&self) -> u64 {
        let mut next = self.expires_at.load(Ordering::Relaxed);
        let chans = self.channels.lock();
        for st in chans.values() {
            if st.expires_at != 0 && (next == 0 || st.expires_at < next) {
                next = st.expires_at;
            }
        }
        next
    }

    /// Channels whose subscription token expired before `now` (unix seconds).
    pub fn expired_channels(&self, now: u64) -> Vec<String> {
        let chans = self.channels.lock();
        chans
            .iter()
            .filter(|(_, st)| st.expires_at != 0 && st.expires_at <= now)
            .map(|(c, _)| c.clone())
            .collect()
    }
}
