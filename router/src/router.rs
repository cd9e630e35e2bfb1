//! The shared state of a running router, and the connection slots that enforce
//! `HERALD_ROUTER_MAX_CONNECTIONS`.

use crate::admission::Admission;
use crate::backends::Backends;
use crate::config::RouterConfig;
use crate::tls::Terminator;
use metrics::Gauge;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every connection handler shares.
pub struct Router {
    /// The configuration it was started with.
    pub config: RouterConfig,
    /// Known nodes and the ring.
    pub backends: Arc<Backends>,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Fires at shutdown: stop accepting, stop discovery and health checks. Open tunnels
    /// keep running.
    pub stop: CancellationToken,
    /// Fires when shutdown's grace runs out: closes every tunnel still open.
    pub close: CancellationToken,
    /// Every connection, tunnel, health and discovery task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Open client connections (tunnels included), against the limit.
    open: Arc<AtomicUsize>,
    /// Mirrors `open` for `/metrics`.
    open_gauge: Gauge,
    /// Each node's budget of new upgrades.
    pub admission: Admission,
    /// Round-robin position for plain HTTP requests, which need no stickiness.
    pub next_http: AtomicUsize,
    /// TLS on the client side, when configured.
    pub tls: Option<Arc<Terminator>>,
}

impl Router {
    /// A router for `config` serving plain HTTP, with no nodes known yet (discovery
    /// starts in `serve`).
    pub fn new(config: RouterConfig) -> Arc<Self> {
        Self::with_tls(config, None)
    }

    /// Like [`Router::new`], terminating TLS with `tls` when given (loaded from
    /// `config.tls` by [`Terminator::load`]).
    pub fn with_tls(config: RouterConfig, tls: Option<Arc<Terminator>>) -> Arc<Self> {
        let prometheus = crate::metrics::install_recorder();
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let backends = Backends::new(config.health.clone(), stop.clone(), tracker.clone());
        let admission = Admission::new(
            config.limits.node_connect_rate,
            config.limits.node_connect_burst,
        );
        Arc::new(Router {
            admission,
            config,
            backends,
            prometheus,
            stop,
            close: CancellationToken::new(),
            tracker,
            open: Arc::new(AtomicUsize::new(0)),
            open_gauge: metrics::gauge!(crate::metrics::CONNECTIONS),
            next_http: AtomicUsize::new(0),
            tls,
        })
    }

    /// Takes a connection slot; the second value says whether the limit was already
    /// reached (the connection is then answered 503 and closed). Counting first, then
    /// checking, means a burst of accepts cannot overshoot.
    pub fn slot(&self) -> (Arc<Slot>, bool) {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        self.open_gauge.increment(1.0);
        let slot = Arc::new(Slot {
            open: self.open.clone(),
            gauge: self.open_gauge.clone(),
        });
        (slot, before >= self.config.limits.max_connections)
    }

    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One open client connection. Shared by the HTTP connection and the tunnel it may turn
/// into; the count drops when the last holder ends.
pub struct Slot {
    /// The router's count.
    open: Arc<AtomicUsize>,
    /// The router's gauge.
    gauge: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.gauge.decrement(1.0);
    }
}
