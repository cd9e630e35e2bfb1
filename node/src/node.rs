//! The node's shared state: configuration, hub, broker, verifier, the registry of
//! connections, and the shutdown signals. One `Arc<Node>` is handed to every task.

use crate::broker::{Broker, BrokerError};
use crate::config::NodeConfig;
use crate::hub::Hub;
use crate::metrics::NodeMetrics;
use crate::session::conn::Conn;
use crate::session::outbound::Outbound;
use herald_shared::auth::{AuthError, Verifier};
use herald_shared::protocol::DisconnectCode;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connected clients, found by connection id, client id or user id (for the server API).
#[derive(Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    by_id: HashMap<u64, Arc<Conn>>,
    by_client: HashMap<String, u64>,
    by_user: HashMap<String, HashSet<u64>>,
}

impl Registry {
    /// Adds a connection that completed `connect`.
    pub fn insert(&self, conn: Arc<Conn>) {
        let Some(ident) = conn.identity() else {
            return;
        };
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.by_client.insert(ident.client.clone(), conn.id);
        r.by_user
            .entry(ident.user.clone())
            .or_default()
            .insert(conn.id);
        r.by_id.insert(conn.id, conn);
    }

    /// Removes a connection.
    pub fn remove(&self, conn: &Conn) {
        let Some(ident) = conn.identity() else {
            return;
        };
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.by_id.remove(&conn.id);
        r.by_client.remove(&ident.client);
        if let Some(set) = r.by_user.get_mut(&ident.user) {
            set.remove(&conn.id);
            if set.is_empty() {
                r.by_user.remove(&ident.user);
            }
        }
    }

    /// Connections of `user`, optionally only the one with client id `client`.
    pub fn find(&self, user: &str, client: Option<&str>) -> Vec<Arc<Conn>> {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ids) = r.by_user.get(user) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| r.by_id.get(id))
            .filter(|c| match client {
                Some(cl) => c.identity().is_some_and(|i| i.client == cl),
                None => true,
            })
            .cloned()
            .collect()
    }

    /// Every registered connection.
    pub fn all(&self) -> Vec<Arc<Conn>> {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.by_id.values().cloned().collect()
    }

    /// Number of distinct users connected.
    pub fn num_users(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_user
            .len()
    }
}

/// Every open session's outbound queue, connected or not.
///
/// Shutdown closes sessions through this list rather than by each writer watching
/// `Node::stop`: every poll of a `CancellationToken` takes its mutex, one for the whole
/// node, so a fan-out that woke a thousand writers had them all queue on that lock.
#[derive(Default)]
pub struct OpenSessions {
    inner: Mutex<HashMap<u64, Arc<Outbound>>>,
}

impl OpenSessions {
    /// Adds a session that just started.
    pub fn insert(&self, id: u64, out: Arc<Outbound>) {
        self.lock().insert(id, out);
    }

    /// Removes a session that ended.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes every open session with `code`.
    pub fn close_all(&self, code: DisconnectCode) {
        let all: Vec<Arc<Outbound>> = self.lock().values().cloned().collect();
        for out in all {
            out.close(code);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Outbound>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Shared state of a running node.
pub struct Node {
    /// The configuration it was started with.
    pub config: NodeConfig,
    /// Local subscriptions and fan-out.
    pub hub: Arc<Hub>,
    /// History, offsets, presence and cross-node delivery.
    pub broker: Broker,
    /// Token verification; `None` when no key is configured.
    pub verifier: Option<Verifier>,
    /// Connected clients, for the server API.
    pub registry: Registry,
    /// Metric handles for the hot path.
    pub metrics: NodeMetrics,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// "Stop": fired on shutdown (by [`Node::stop_sessions`]); accept loops watch it.
    pub stop: CancellationToken,
    /// Every open session, for closing them all at shutdown.
    pub open: OpenSessions,
    /// "All done": every connection task is tracked here.
    pub tracker: TaskTracker,
    /// Set when the node stops taking new connections (shutdown or drain).
    pub draining: AtomicBool,
    /// Fired by `POST /admin/drain`: drain and exit, as on SIGTERM.
    pub drain_requested: CancellationToken,
    /// Open WebSocket sessions (upgraded, whether or not connected yet).
    pub sessions: AtomicUsize,
    /// When the node started, for `/api/info`.
    pub started: Instant,
    next_conn_id: AtomicU64,
}

/// Errors building a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The token key could not be used.
    #[error("token verification key: {0}")]
    Auth(#[from] AuthError),
    /// The broker could not be set up.
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
}

impl Node {
    /// Builds a node around its hub and broker (see [`crate::build`]).
    pub fn new(
        config: NodeConfig,
        prometheus: PrometheusHandle,
        hub: Arc<Hub>,
        broker: Broker,
    ) -> Result<Arc<Self>, NodeError> {
        let verifier = match &config.auth {
            Some(a) => Some(Verifier::new(a)?),
            None => None,
        };
        Ok(Arc::new(Node {
            config,
            hub,
            broker,
            verifier,
            registry: Registry::default(),
            metrics: NodeMetrics::new(),
            prometheus,
            stop: CancellationToken::new(),
            open: OpenSessions::default(),
            tracker: TaskTracker::new(),
            draining: AtomicBool::new(false),
            drain_requested: CancellationToken::new(),
            sessions: AtomicUsize::new(0),
            started: Instant::now(),
            next_conn_id: AtomicU64::new(1),
        }))
    }

    /// Fires `stop` and closes every open session, connected or not, with the
    /// reconnect-advising shutdown code. A session that starts meanwhile sees `stop`
    /// and closes itself (see `session::serve`).
    pub fn stop_sessions(&self) {
        self.stop.cancel();
        self.open.close_all(DisconnectCode::Shutdown);
    }

    /// A new connection id, unique on this node.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Why the node is not ready, if it is not.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.draining.load(Ordering::Relaxed) || self.stop.is_cancelled() {
            return Some("draining".into());
        }
        self.broker.ready().err().map(|e| format!("broker: {e}"))
    }
}
