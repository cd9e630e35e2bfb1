//! # herald-node
//!
//! A Herald node: terminates client WebSockets, speaks the Centrifugo v2 client
//! protocol (JSON), serves the server API, `/healthz`, `/readyz` and `/metrics`.
//!
//! # Layout
//!
//! Each layer uses only the ones below it (the README's "Inside the node" has the map):
//! - [`server`]: accept loop, HTTP routing, upgrade, probes; hands over to
//! - [`api`] (the server API) and [`session`] (one client connection, its commands),
//!   which both work through
//! - [`channel`]: the channel operations (publish, history, presence, attach, detach,
//!   server-side actions) with their checks, on top of
//! - [`node`]: the shared state, holding the [`hub`] (local fan-out), the [`broker`]
//!   (offsets, history, presence; embedded or NATS) and the [`conn`] registry;
//!   [`events`] is the node's side of the broker.
//! - [`conn`]: per-connection state and its outbound queue, the bottom layer.
//! - [`proxy`]: the HTTP client asking the application's backend about client events
//!   (Centrifugo's proxy), beside the broker: the session uses it.
//! - [`jwks`]: fetches the JWKS endpoint's keys for the verifier, beside the proxy.
//! - [`config`], [`metrics`]: settings and metric names, used everywhere.
//! - [`drain`]: leaving without a herd; [`token_cmd`]: the `herald-node token` subcommand.

pub mod api;
pub mod broker;
pub mod channel;
pub mod config;
pub mod conn;
pub mod drain;
pub mod events;
pub mod hub;
pub mod jwks;
pub mod metrics;
pub mod node;
pub mod proxy;
pub mod server;
pub mod session;
#[cfg(test)]
mod testing;
pub mod token_cmd;

// Only the integration tests speak WebSocket as a client.
#[cfg(test)]
use tokio_tungstenite as _;

use broker::memory::MemoryBroker;
use broker::nats::NatsBroker;
use broker::Broker;
use node::Node;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Builds and starts the node's state for `config`: the embedded broker, or NATS when
/// `HERALD_NATS_URL` is set (the Prometheus recorder is process-wide).
pub async fn build(config: config::NodeConfig) -> Result<Arc<Node>, node::NodeError> {
    let prometheus = herald_shared::telemetry::install_metrics_recorder();
    let hub = Arc::new(hub::Hub::new(config.limits.queue_max_bytes));
    let broker: Box<dyn Broker> = match &config.nats_url {
        None => Box::new(MemoryBroker::new()),
        Some(url) => Box::new(
            NatsBroker::connect(
                url,
                &config.node_id,
                config.namespaces.clone(),
                config.cluster.clone(),
            )
            .await?,
        ),
    };
    let node = Node::new(config, prometheus, hub, broker)?;
    let events = Arc::new(events::NodeEvents::new(&node));
    node.broker.start(events, node.stop.clone());
    if let Some(jwks) = &node.jwks {
        jwks.start(node.stop.clone());
    }
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
