//! What the rest of the node knows about one connection: its queue, who it is once
//! connected, its subscriptions, and the timers its writer enforces.

use super::outbound::Outbound;
use herald_shared::protocol::{ClientInfo, RawJson};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Who the connection is, fixed by `connect`.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Connection id given to the client (`client` in the connect reply).
    pub client: String,
    /// User id from the token (empty for anonymous).
    pub user: String,
    /// The token's `info` claim.
    pub info: Option<RawJson>,
}

/// One subscription of the connection.
#[derive(Clone, Debug, Default)]
pub struct ChannelState {
    /// The subscription token's `info`, shown as `chan_info`.
    pub chan_info: Option<RawJson>,
    /// Unix seconds when the subscription token expires; 0 = never.
    pub expires_at: u64,
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
    pub channels: Mutex<HashMap<String, ChannelState>>,
    /// A ping was sent and no answer has come since.
    pub awaiting_pong: AtomicBool,
    /// Unix seconds when the connection token expires; 0 = never.
    pub expires_at: AtomicU64,
}

impl Conn {
    /// A connection that has not sent `connect` yet.
    pub fn new(id: u64, remote: SocketAddr, queue_max_bytes: usize) -> Self {
        Conn {
            id,
            remote,
            out: Arc::new(Outbound::new(queue_max_bytes)),
            identity: OnceLock::new(),
            channels: Mutex::new(HashMap::new()),
            awaiting_pong: AtomicBool::new(false),
            expires_at: AtomicU64::new(0),
        }
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

    /// The earliest expiry among the connection and its subscriptions (0 = none).
    pub fn next_expiry(&self) -> u64 {
        let mut next = self.expires_at.load(Ordering::Relaxed);
        let chans = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        for st in chans.values() {
            if st.expires_at != 0 && (next == 0 || st.expires_at < next) {
                next = st.expires_at;
            }
        }
        next
    }

    /// Channels whose subscription token expired before `now` (unix seconds).
    pub fn expired_channels(&self, now: u64) -> Vec<String> {
        let chans = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        chans
            .iter()
            .filter(|(_, st)| st.expires_at != 0 && st.expires_at <= now)
            .map(|(c, _)| c.clone())
            .collect()
    }
}
