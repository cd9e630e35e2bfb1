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
//! - [`api`]: the server API; [`control`]: its actions on connections.
//! - [`node`]: shared state of a running node.
//! - [`metrics`]: metric names.
//! - [`token_cmd`]: the `herald-node token` subcommand.

pub mod api;
pub mod broker;
pub mod config;
pub mod control;
pub mod drain;
pub mod hub;
pub mod metrics;
pub mod node;
pub mod server;
pub mod session;
pub mod token_cmd;

use node::Node;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Builds the node's state for `config`: the embedded broker, or NATS when
/// `HERALD_NATS_URL` is set (the Prometheus recorder is process-wide).
pub async fn build(config: config::NodeConfig) -> Result<Arc<Node>, node::NodeError> {
    let prometheus = herald_shared::telemetry::install_metrics_recorder();
    let hub = Arc::new(hub::Hub::new(config.limits.queue_max_bytes));
    let broker = match &config.nats_url {
        None => broker::Broker::Memory(broker::memory::MemoryBroker::new(hub.clone())),
        Some(url) => broker::Broker::Nats(
            broker::nats::NatsBroker::connect(
                url,
                &config.node_id,
                hub.clone(),
                config.namespaces.clone(),
                config.cluster.clone(),
            )
            .await?,
        ),
    };
    let node = Node::new(config, prometheus, hub, broker)?;
    node.broker.start(&node);
    Ok(node)
}

/// Serves on `listener` until `shutdown` fires, then closes every client with the
/// reconnect-advising "shutdown" code and returns once they are gone (bounded).
pub async fn run(
    listener: TcpListener,
    config: config::NodeConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut config = config;
    if config.cluster.advertise.is_none() {
        let bound = listener.local_addr()?;
        config.cluster.advertise = Some(config::default_advertise(&config.node_id, bound));
    }
    let node = build(config).await?;
    serve(node, listener, shutdown).await;
    Ok(())
}

/// Runs an already built node (tests use this to keep a handle on the state).
pub async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: CancellationToken) {
    let accept = tokio::spawn(server::accept_loop(node.clone(), listener));
    tokio::select! {
        _ = shutdown.cancelled() => tracing::info!("shutting down: draining"),
        _ = node.drain_requested.cancelled() => tracing::info!("drain requested over the admin API"),
    }
    // The listener keeps answering meanwhile: /readyz says 503, upgrades get 503.
    drain::run(&node).await;
    let _ = accept.await;
    tracing::info!("stopped");
}
