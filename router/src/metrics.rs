//! Metric names, the recorder, and small helpers.
//!
//! The bottom layer: it knows names and labels, not the router's types, so every other
//! module may record through it.
//!
//! Every name starts with `herald_router_`. Per-node series carry a `node` label (its
//! `host:port`). The recorder is the shared one's settings plus long buckets for tunnel
//! durations, which last minutes to hours, not the milliseconds of request latencies.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusHandle};
use std::sync::Once;
use std::time::Duration;

/// Open client connections, tunnels included (gauge).
pub const CONNECTIONS: &str = "herald_router_connections";
/// Open tunnels by `node` (gauge).
pub const TUNNELS: &str = "herald_router_tunnels";
/// WebSocket upgrades by `result` (counter).
pub const UPGRADES: &str = "herald_router_upgrades_total";
/// Plain HTTP requests proxied, by `result` (counter).
pub const HTTP_REQUESTS: &str = "herald_router_http_requests_total";
/// Node health: 1 for the node's current `state`, 0 for the others (gauge).
pub const NODE_STATE: &str = "herald_router_node_state";
/// Attempts on a further node after one refused or failed (counter).
pub const RETRIES: &str = "herald_router_retries_total";
/// Times the ring changed (counter).
pub const REHASHES: &str = "herald_router_rehashes_total";
/// Nodes in the ring (gauge).
pub const RING_NODES: &str = "herald_router_ring_nodes";
/// Tunnel bytes by `direction`: `client_to_node` or `node_to_client` (counter).
pub const TUNNEL_BYTES: &str = "herald_router_tunnel_bytes_total";
/// Out-of-schedule probes started because a node's tunnels ended together (counter).
pub const BURST_PROBES: &str = "herald_router_burst_probes_total";
/// TLS handshakes by `result`: `ok`, `failed`, `timeout` (counter).
pub const TLS_HANDSHAKES: &str = "herald_router_tls_handshakes_total";
/// Certificate reloads (SIGHUP) by `result`: `ok`, `failed` (counter).
pub const TLS_RELOADS: &str = "herald_router_tls_reloads_total";
/// `notAfter` of the served certificate, Unix seconds (gauge).
pub const TLS_CERT_EXPIRY: &str = "herald_router_tls_certificate_expiry_timestamp_seconds";
/// Connections to nodes the router could not open for want of its own local ports or
/// files, by `during`: `upgrade`, `http`, `probe` (counter).
pub const LOCAL_EXHAUSTION: &str = "herald_router_local_exhaustion_total";
/// How long tunnels lasted (histogram, seconds).
pub const TUNNEL_DURATION: &str = "herald_router_tunnel_duration_seconds";

/// Buckets of [`TUNNEL_DURATION`], seconds: one second to one day.
const TUNNEL_BUCKETS: &[f64] = &[
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];

/// Installs the process-wide recorder once and returns a handle to render it.
/// Idempotent, so tests can run several routers in one process.
pub fn install_recorder() -> PrometheusHandle {
    static DESCRIBED: Once = Once::new();
    let handle = herald_shared::telemetry::install_metrics_recorder_with(|builder| {
        // A `Full` matcher sorts before the shared `Suffix("_seconds")` one, so it wins.
        builder
            .set_buckets_for_metric(Matcher::Full(TUNNEL_DURATION.into()), TUNNEL_BUCKETS)
            .unwrap_or_else(|_| herald_shared::telemetry::prometheus_builder())
    });
    DESCRIBED.call_once(describe);
    handle
}

/// Sets `addr`'s one-hot [`NODE_STATE`] gauges: 1 for the state named `current`, 0 for
/// the other `states`; `None` (forgotten) zeroes them all.
pub fn node_state(addr: &str, states: &[&'static str], current: Option<&'static str>) {
    for &s in states {
        let v = if Some(s) == current { 1.0 } else { 0.0 };
        gauge!(NODE_STATE, "node" => addr.to_owned(), "state" => s).set(v);
    }
}

/// Counts a ring change to `nodes` nodes.
pub fn rehash(nodes: usize) {
    counter!(REHASHES).increment(1);
    gauge!(RING_NODES).set(nodes as f64);
}

/// Counts an upgrade by result.
pub fn upgrade(result: &'static str) {
    counter!(UPGRADES, "result" => result).increment(1);
}

/// Counts a proxied HTTP request by result.
pub fn http_request(result: &'static str) {
    counter!(HTTP_REQUESTS, "result" => result).increment(1);
}

/// Counts a retry on another node.
pub fn retry() {
    counter!(RETRIES).increment(1);
}

/// Counts a connection to a node that the router's own limits stopped, `during` an
/// `upgrade`, an `http` request or a `probe`.
pub fn local_exhaustion(during: &'static str) {
    counter!(LOCAL_EXHAUSTION, "during" => during).increment(1);
}

/// Counts a probe started by a burst of tunnel ends.
pub fn burst_probe() {
    counter!(BURST_PROBES).increment(1);
}

/// Counts a TLS handshake by result.
pub fn tls_handshake(result: &'static str) {
    counter!(TLS_HANDSHAKES, "result" => result).increment(1);
}

/// Counts a certificate reload by result.
pub fn tls_reload(result: &'static str) {
    counter!(TLS_RELOADS, "result" => result).increment(1);
}

/// Sets the served certificate's expiry (Unix seconds).
pub fn tls_certificate(not_after: i64) {
    gauge!(TLS_CERT_EXPIRY).set(not_after as f64);
}

/// Records a finished tunnel.
pub fn tunnel_closed(duration: Duration) {
    histogram!(TUNNEL_DURATION).record(duration.as_secs_f64());
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    // At zero from the start, so an alert on its increase has a series to watch.
    for during in ["upgrade", "http", "probe"] {
        counter!(LOCAL_EXHAUSTION, "during" => during).absolute(0);
    }
    describe_gauge!(CONNECTIONS, "Open client connections, tunnels included.");
    describe_gauge!(TUNNELS, "Open WebSocket tunnels by node.");
    describe_counter!(UPGRADES, "WebSocket upgrades by result.");
    describe_counter!(HTTP_REQUESTS, "Plain HTTP requests proxied, by result.");
    describe_gauge!(NODE_STATE, "Node health: 1 for the node's current state.");
    describe_counter!(RETRIES, "Attempts on a further node after one failed.");
    describe_counter!(REHASHES, "Times the set of nodes in the ring changed.");
    describe_gauge!(RING_NODES, "Nodes taking new connections.");
    describe_counter!(
        BURST_PROBES,
        "Probes started at once because a node's tunnels ended together."
    );
    describe_counter!(
        LOCAL_EXHAUSTION,
        "Connections to nodes not opened: the router ran out of local ports or files."
    );
    describe_counter!(TLS_HANDSHAKES, "Client TLS handshakes by result.");
    describe_counter!(TLS_RELOADS, "TLS certificate reloads (SIGHUP) by result.");
    describe_gauge!(
        TLS_CERT_EXPIRY,
        Unit::Seconds,
        "Expiry (notAfter, Unix time) of the served TLS certificate."
    );
    describe_counter!(
        TUNNEL_BYTES,
        Unit::Bytes,
        "Bytes copied through tunnels, by direction."
    );
    describe_histogram!(
        TUNNEL_DURATION,
        Unit::Seconds,
        "How long WebSocket tunnels lasted."
    );
}
