//! # herald-node
//!
//! A Herald node: terminates client WebSockets, speaks the Centrifugo v2 client
//! protocol (JSON), serves the server API, `/healthz`, `/readyz` and `/metrics`.
//!
//! # Layout
//! - [`config`]: settings, their defaults and loading.
//! - [`server`]: accept loop, HTTP routing, upgrade, probes.
//! - [`session`]: one client connection: reader, writer, protocol handler, queue.
//! - [`hub`]: local subscriptions and fan-out.
//! - [`broker`]: offsets, history, presence; embedded or NATS.
//! - [`api`]: the server API.
//! - [`node`]: shared state of a running node.
//! - [`metrics`]: metric names.
//! - [`token_cmd`]: the `herald-node token` subcommand.

pub mod api;
pub mod broker;
pub mod config;
pub mod hub;
pub mod metrics;
pub mod node;
pub mod server;
pub mod session;
pub mod token_cmd;

use node::Node;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for connections to finish after closing them.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Builds the node's state for `config` (the Prometheus recorder is process-wide).
pub fn build(config: config::NodeConfig) -> Result<Arc<Node>, node::NodeError> {
    let prometheus = herald_shared::telemetry::install_metrics_recorder();
    Node::new(config, prometheus)
}

/// Serves on `listener` until `shutdown` fires, then closes every client with the
/// reconnect-advising "shutdown" code and returns once they are gone (bounded).
pub async fn run(
    listener: TcpListener,
    config: config::NodeConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let node = build(config)?;
    serve(node, listener, shutdown).await;
    Ok(())
}

/// Runs an already built node (tests use this to keep a handle on the state).
pub async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: CancellationToken) {
    let sweeper = tokio::spawn(sweep(node.clone()));
    let accept = tokio::spawn(server::accept_loop(node.clone(), listener));
    shutdown.cancelled().await;
    tracing::info!("shutting down: closing client connections");
    node.draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    node.stop.cancel();
    let _ = accept.await;
    // Every session's writer watches `stop` and closes its client with code 3001.
    node.tracker.close();
    if tokio::time::timeout(SHUTDOWN_WAIT, node.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown wait; exiting anyway");
    }
    sweeper.abort();
    tracing::info!("stopped");
}

async fn sweep(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        match &node.broker {
            broker::Broker::Memory(m) => {
                m.sweep();
            }
        }
    }
}
