//! The node's shared state: configuration, hub, broker, verifier, the registry of
//! connections, and the shutdown signals. One `Arc<Node>` is handed to every task.
//!
//! `Node` sits above the hub, the broker and the connections, and below everything
//! that works with them (channel operations, session, server API).

use crate::broker::{Broker, BrokerError};
use crate::config::NodeConfig;
use crate::conn::lanes::Lanes;
use crate::conn::registry::Registry;
use crate::hub::Hub;
use crate::jwks::Jwks;
use crate::metrics::NodeMetrics;
use crate::proxy::Proxy;
use herald_shared::auth::{AuthError, KeySetCell, Verifier};
use herald_shared::codec::NodeStatus;
use herald_shared::protocol::DisconnectCode;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shared state of a running node.
pub struct Node {
    /// The configuration it was started with.
    pub config: NodeConfig,
    /// Local subscriptions and fan-out.
    pub hub: Arc<Hub>,
    /// History, offsets, presence and cross-node delivery.
    pub broker: Box<dyn Broker>,
    /// Token verification; `None` when no key is configured.
    pub verifier: Option<Verifier>,
    /// Keeps the verifier's JWKS keys fresh; `None` without `HERALD_TOKEN_JWKS_URL`.
    pub jwks: Option<Arc<Jwks>>,
    /// The backend proxy; `None` when no proxy endpoint is set.
    pub proxy: Option<Proxy>,
    /// Every open connection: counted, listed, and found by user for the server API.
    pub registry: Registry,
    /// Metric handles for the hot path.
    pub metrics: NodeMetrics,
    /// The tasks that write for connections whose writer is idle.
    pub lanes: Lanes,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// "Stop": fired on shutdown (by [`Node::stop_sessions`]); accept loops watch it.
    pub stop: CancellationToken,
    /// "All done": every connection task is tracked here.
    pub tracker: TaskTracker,
    /// Fired by `POST /admin/drain`: drain and exit, as on SIGTERM.
    pub drain_requested: CancellationToken,
    /// Set when the node stops taking new connections (shutdown or drain).
    draining: AtomicBool,
    /// When the node started, for `/api/info`.
    started: Instant,
    /// New upgrades per second (`HERALD_CONNECTION_RATE_LIMIT`; rate 0 allows all).
    pub(crate) connect_rate: parking_lot::Mutex<crate::session::rate::RateLimit>,
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
    /// Builds a node around its hub and broker (see [`crate::build`], which also
    /// starts the broker).
    pub fn new(
        config: NodeConfig,
        prometheus: PrometheusHandle,
        hub: Arc<Hub>,
        broker: Box<dyn Broker>,
    ) -> Result<Arc<Self>, NodeError> {
        let cell = config.jwks.as_ref().map(|_| KeySetCell::new());
        let verifier = match &config.auth {
            Some(a) => Some(Verifier::with_key_set(a, cell.clone())?),
            None => None,
        };
        let jwks = config
            .jwks
            .clone()
            .zip(cell)
            .map(|(options, cell)| Jwks::new(options, cell));
        let metrics = NodeMetrics::new(config.namespaces.named.keys().map(String::as_str));
        let proxy = Proxy::new(&config.proxy);
        let connect_rate = parking_lot::Mutex::new(crate::session::rate::RateLimit::new(
            config.limits.connection_rate_limit,
        ));
        Ok(Arc::new(Node {
            config,
            hub,
            broker,
            verifier,
            jwks,
            proxy,
            registry: Registry::default(),
            lanes: Lanes::new(metrics.bytes_out.clone()),
            metrics,
            prometheus,
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            draining: AtomicBool::new(false),
            drain_requested: CancellationToken::new(),
            started: Instant::now(),
            connect_rate,
            next_conn_id: AtomicU64::new(1),
        }))
    }

    /// Fires `stop` and closes every open session, connected or not, with the
    /// reconnect-advising shutdown code. A session that starts meanwhile sees `stop`
    /// and closes itself (see `session::serve`).
    pub fn stop_sessions(&self) {
        self.stop.cancel();
        self.registry.close_all(DisconnectCode::Shutdown);
    }

    /// A new connection id, unique on this node.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks the node as draining: not ready, no new connections.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether the node is on its way out (draining, or stopping without a drain):
    /// its members' leaves are "moving", and it takes no new connections.
    pub fn is_leaving(&self) -> bool {
        self.is_draining() || self.stop.is_cancelled()
    }

    /// Why the node is not ready, if it is not.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.is_leaving() {
            return Some("draining".into());
        }
        self.broker.ready().err().map(|e| format!("broker: {e}"))
    }

    /// This node's numbers, for heartbeats and `/api/info`.
    pub fn status(&self) -> NodeStatus {
        let channels = self.hub.channels();
        NodeStatus {
            id: self.config.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            num_clients: self.registry.num_clients() as u64,
            num_users: self.registry.num_users() as u64,
            num_channels: channels.len() as u64,
            num_subs: channels.iter().map(|(_, n)| *n as u64).sum(),
            uptime: self.started.elapsed().as_secs(),
            draining: self.is_draining(),
        }
    }
}
