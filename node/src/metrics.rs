//! Metric names and the handles the hot path uses.
//!
//! Every name starts with `herald_node_`. Counters touched per message are resolved
//! once into handles here, so fan-out does not look names up per delivery.

use metrics::{counter, gauge, Counter, Gauge};

/// Open client connections (gauge).
pub const CONNECTIONS: &str = "herald_node_connections";
/// Connect attempts by `result` (counter).
pub const CONNECTS: &str = "herald_node_connects_total";
/// Commands by `method` and `result` (counter).
pub const COMMANDS: &str = "herald_node_commands_total";
/// Publications accepted by this node (counter).
pub const PUBLICATIONS: &str = "herald_node_publications_total";
/// Messages queued to clients by fan-out (counter).
pub const DELIVERIES: &str = "herald_node_deliveries_total";
/// WebSocket payload bytes received from clients (counter).
pub const BYTES_IN: &str = "herald_node_bytes_in_total";
/// WebSocket payload bytes written to clients (counter).
pub const BYTES_OUT: &str = "herald_node_bytes_out_total";
/// Disconnects by close `code` (counter).
pub const DISCONNECTS: &str = "herald_node_disconnects_total";
/// Clients disconnected because their outbound queue filled up (counter).
pub const SLOW_CONSUMER_DROPS: &str = "herald_node_slow_consumer_drops_total";
/// Subscriptions on this node (gauge).
pub const SUBSCRIPTIONS: &str = "herald_node_subscriptions";
/// Time a publication takes to be accepted by the broker (stored in JetStream and
/// acknowledged, in a cluster), seconds.
pub const PUBLISH_DURATION: &str = "herald_node_publish_duration_seconds";
/// 1 while the NATS connection is up (cluster mode), else 0.
pub const NATS_CONNECTED: &str = "herald_node_nats_connected";
/// 1 while the node drains, else 0.
pub const DRAINING: &str = "herald_node_draining";
/// Clients disconnected by a drain.
pub const DRAIN_DISCONNECTS: &str = "herald_node_drain_disconnects_total";
/// Server API requests by `method` and `result` (counter).
pub const API_REQUESTS: &str = "herald_node_api_requests_total";
/// Upgrades refused by `reason` (counter).
pub const UPGRADES_REFUSED: &str = "herald_node_upgrades_refused_total";

/// Handles for the metrics touched on every message. Fan-out counters
/// ([`DELIVERIES`], [`SLOW_CONSUMER_DROPS`]) live in the hub.
#[derive(Clone)]
pub struct NodeMetrics {
    /// See [`CONNECTIONS`].
    pub connections: Gauge,
    /// See [`SUBSCRIPTIONS`].
    pub subscriptions: Gauge,
    /// See [`PUBLICATIONS`].
    pub publications: Counter,
    /// See [`BYTES_IN`].
    pub bytes_in: Counter,
    /// See [`BYTES_OUT`].
    pub bytes_out: Counter,
}

impl NodeMetrics {
    /// Registers the metrics (they show in `/metrics` from the start, at zero).
    pub fn new() -> Self {
        describe();
        // Shown from the start: dashboards and alerts see 0, not "no data".
        gauge!(DRAINING).set(0.0);
        counter!(DRAIN_DISCONNECTS).absolute(0);
        NodeMetrics {
            connections: gauge!(CONNECTIONS),
            subscriptions: gauge!(SUBSCRIPTIONS),
            publications: counter!(PUBLICATIONS),
            bytes_in: counter!(BYTES_IN),
            bytes_out: counter!(BYTES_OUT),
        }
    }
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts a command by method and result (`ok` or an error/close name).
pub fn command(method: &'static str, result: &'static str) {
    counter!(COMMANDS, "method" => method, "result" => result).increment(1);
}

/// Counts a connect attempt by result.
pub fn connect(result: &'static str) {
    counter!(CONNECTS, "result" => result).increment(1);
}

/// Counts a disconnect by close code.
pub fn disconnect(code: u16) {
    counter!(DISCONNECTS, "code" => code.to_string()).increment(1);
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Open client connections.");
    describe_counter!(CONNECTS, "Connect attempts by result.");
    describe_counter!(COMMANDS, "Client commands by method and result.");
    describe_counter!(PUBLICATIONS, "Publications accepted by this node.");
    describe_counter!(DELIVERIES, "Messages queued to clients by fan-out.");
    describe_counter!(BYTES_IN, "WebSocket payload bytes received from clients.");
    describe_counter!(BYTES_OUT, "WebSocket payload bytes written to clients.");
    describe_counter!(DISCONNECTS, "Client disconnects by close code.");
    describe_counter!(
        SLOW_CONSUMER_DROPS,
        "Clients disconnected because their outbound queue was full."
    );
    describe_gauge!(SUBSCRIPTIONS, "Channel subscriptions on this node.");
    describe_counter!(API_REQUESTS, "Server API requests by method and result.");
    describe_counter!(UPGRADES_REFUSED, "WebSocket upgrades refused, by reason.");
    describe_histogram!(
        PUBLISH_DURATION,
        "Seconds until the broker accepted a publication (JetStream ack in a cluster)."
    );
    describe_gauge!(
        NATS_CONNECTED,
        "1 while the NATS connection is up (cluster mode)."
    );
    describe_gauge!(
        DRAINING,
        "1 while the node drains (SIGTERM or /admin/drain), else 0."
    );
    describe_counter!(
        DRAIN_DISCONNECTS,
        "Clients disconnected by a drain (code 3001)."
    );
}
