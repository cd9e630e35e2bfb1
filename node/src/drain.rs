//! Draining: how a node leaves without a herd and without losing anything.
//!
//! 1. Readiness turns 503 and new upgrades are refused (503, `Retry-After`) at once.
//! 2. After the grace, connected clients are disconnected with 3001 "shutdown" (the
//!    SDKs reconnect, through the router to another node, and recover by offset),
//!    spread evenly over the window.
//! 3. Whatever is left (clients still in their handshake, sessions slow to close) is
//!    closed, the NATS connection drains, and the node exits, all within the timeout.
//!
//! Progress: `herald_node_draining` (1 while draining), `herald_node_drain_disconnects_total`
//! and a log line per tenth of the clients.

use crate::node::Node;
use herald_shared::protocol::DisconnectCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Runs the whole drain; returns when the node may exit (at most the drain timeout
/// after it started).
pub async fn run(node: &Arc<Node>) {
    let opts = node.config.drain.clone();
    let started = Instant::now();
    let deadline = started + opts.timeout;
    node.set_draining();
    metrics::gauge!(crate::metrics::DRAINING).set(1.0);
    tracing::info!(
        drain.step = "start",
        grace_s = opts.grace.as_secs_f64(),
        window_s = opts.window.as_secs_f64(),
        timeout_s = opts.timeout.as_secs_f64(),
        clients = node.registry.num_clients(),
        "draining: not ready, refusing new connections"
    );
    tokio::time::sleep_until((started + opts.grace).min(deadline)).await;
    disconnect_spread(node, opts.window).await;

    // Everyone who is left: handshakes in progress, clients that came between.
    tracing::info!(
        drain.step = "close_rest",
        sessions = node.registry.slots(),
        "drain: closing the sessions that are left"
    );
    node.stop_sessions();
    node.tracker.close();
    let left = deadline.saturating_duration_since(Instant::now());
    if tokio::time::timeout(left.saturating_sub(CLOSE_RESERVE), node.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            sessions = node.registry.slots(),
            "drain: sessions still open at the deadline; exiting anyway"
        );
    }
    let left = deadline.saturating_duration_since(Instant::now());
    tracing::info!(
        drain.step = "broker",
        left_s = left.as_secs_f64(),
        "drain: closing the broker"
    );
    if tokio::time::timeout(left, node.broker.close())
        .await
        .is_err()
    {
        tracing::warn!("drain: the broker did not close in time");
    }
    tracing::info!(
        drain.step = "done",
        took_s = started.elapsed().as_secs_f64(),
        "drained"
    );
}

/// Time kept back from the session wait for closing the broker (NATS drain).
const CLOSE_RESERVE: Duration = Duration::from_secs(1);

/// Disconnects the connected clients evenly over `window` (all at once when zero).
async fn disconnect_spread(node: &Arc<Node>, window: Duration) {
    let conns = node.registry.connected_all();
    let total = conns.len();
    if total == 0 {
        return;
    }
    let counter = metrics::counter!(crate::metrics::DRAIN_DISCONNECTS);
    tracing::info!(
        drain.step = "disconnect",
        total,
        window_s = window.as_secs_f64(),
        "drain: disconnecting clients (3001)"
    );
    let start = Instant::now();
    let mut next_report = total.div_ceil(10);
    for (i, conn) in conns.into_iter().enumerate() {
        // Client i goes at start + window * i / total: even spacing, the first at once.
        let at = start + window.mul_f64(i as f64 / total as f64);
        tokio::time::sleep_until(at).await;
        conn.out.close(DisconnectCode::Shutdown);
        counter.increment(1);
        if i + 1 >= next_report || i + 1 == total {
            tracing::info!(
                drain.step = "progress",
                disconnected = i + 1,
                total,
                "drain progress"
            );
            next_report += total.div_ceil(10);
        }
    }
}
