//! # herald-router
//!
//! Herald's sticky-session reverse proxy for WebSocket upgrades in front of the nodes.
//! A client's key (a cookie the router sets, else a query parameter or header, else its
//! address) picks a node by rendezvous hashing over the healthy nodes, so every router
//! replica sends a key to the same node and losing a node moves only its keys.
//!
//! # Layout
//! - [`config`]: settings, their defaults and loading.
//! - [`server`]: accept loop, the router's own `/healthz`, `/readyz`, `/metrics`.
//! - [`proxy`]: WebSocket upgrades and plain HTTP to nodes, header rules.
//! - [`tunnel`]: byte copying both ways for one upgraded connection.
//! - [`sticky`]: the stickiness key and its cookie.
//! - [`ring`]: rendezvous hashing.
//! - [`backends`]: known nodes, their health, the ring snapshot.
//! - [`health`]: the rise/fall state machine and `/readyz` probes.
//! - [`discovery`]: static list, DNS, NATS announcements.
//! - [`cidr`]: address ranges of trusted proxies.
//! - [`upstream`]: connections to nodes; [`error`]: what can fail and whose fault it is.
//! - [`admission`]: each node's budget of new upgrades per second.
//! - [`router`]: shared state and connection slots; [`metrics`]: metric names.
//! - [`tls`]: TLS termination for clients, the certificate and its reload on SIGHUP.

// The unit-test build also links the dev-dependencies of `tests/` (tokio-tungstenite).
#![cfg_attr(test, allow(unused_crate_dependencies))]

// The binary's allocator (main.rs), a dependency of the package and so of this target.
use tikv_jemallocator as _;

pub mod admission;
pub mod backends;
pub mod cidr;
pub mod config;
pub mod discovery;
pub mod error;
pub mod health;
pub mod metrics;
pub mod proxy;
pub mod ring;
pub mod router;
pub mod server;
pub mod sticky;
pub mod tls;
pub mod tunnel;
pub mod upstream;

use router::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for tunnels to go once it has closed them.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Serves `config` on `listener` (terminating TLS with `tls` when given) until `shutdown`
/// fires, then drains (see [`serve`]).
pub async fn run(
    listener: TcpListener,
    config: config::RouterConfig,
    tls: Option<Arc<tls::Terminator>>,
    shutdown: CancellationToken,
) {
    serve(Router::with_tls(config, tls), listener, shutdown).await;
}

/// Starts discovery and serves on `listener` until `shutdown` fires. Then it stops
/// accepting, lets open tunnels run for up to `HERALD_ROUTER_SHUTDOWN_GRACE`, closes the
/// rest, and returns once they are gone (bounded). Tests use this to keep a handle on the
/// state.
pub async fn serve(router: Arc<Router>, listener: TcpListener, shutdown: CancellationToken) {
    discovery::start(
        &router.backends,
        &router.config.discovery,
        &router.stop,
        &router.tracker,
    );
    let accept = tokio::spawn(server::accept_loop(router.clone(), listener));
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = router.stop.cancelled() => {}
    }
    router.stop.cancel();
    let _ = accept.await;
    router.tracker.close();
    let open = router.open_connections();
    tracing::info!(open, grace = ?router.config.limits.shutdown_grace, "stopped accepting; letting open tunnels finish");
    let grace = router.config.limits.shutdown_grace;
    if tokio::time::timeout(grace, router.tracker.wait())
        .await
        .is_err()
    {
        tracing::info!(
            open = router.open_connections(),
            "grace over; closing open tunnels"
        );
        router.close.cancel();
        if tokio::time::timeout(CLOSE_WAIT, router.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("tunnels still open after closing them; exiting anyway");
        }
    }
    tracing::info!("stopped");
}
