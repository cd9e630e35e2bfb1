//! Metric names and the handles the hot path uses.
//!
//! Every name starts with `herald_node_`. Counters touched per message are resolved
//! once into handles here, so fan-out does not look names up per delivery.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

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
/// JWKS fetches by `result`: `ok`, `unreachable`, `status`, `timeout`, `parse`
/// (counter; only with `HERALD_TOKEN_JWKS_URL`).
pub const JWKS_FETCHES: &str = "herald_node_jwks_fetches_total";
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
/// Subscribes that asked to recover, by `result`: `recovered`, `position_gone` (the
/// stream is the client's, but its offset is no longer kept), `not_recovered` (another
/// epoch, i.e. the stream was lost or recreated, or a namespace without history).
pub const RECOVERIES: &str = "herald_node_recoveries_total";
/// Publications handed to clients by successful recoveries (counter).
pub const RECOVERED_PUBLICATIONS: &str = "herald_node_recovered_publications_total";
/// Stream-mode recoveries in cluster mode by where their publications came from:
/// `shared` (the channel's range on this node, which earlier recoveries and live
/// delivery filled: no JetStream read) or `jetstream` (some or all read) (counter).
pub const RECOVERY_READS: &str = "herald_node_recovery_reads_total";
/// JetStream lookups of stream-mode recoveries in cluster mode, by `lookup` (`top`: the
/// channel's newest sequence; `position`: whether the client's offset is still stored)
/// and `answer`: `asked` (this recovery's own request) or `shared` (a request another
/// recovery of the channel started after this one arrived) (counter).
pub const RECOVERY_LOOKUPS: &str = "herald_node_recovery_lookups_total";
/// From the broker's receipt of a publication (NATS message read, or the embedded
/// broker's publish) to the socket write that carried it, seconds. Sampled: the last
/// subscriber of every fan-out, so it shows the slowest delivery of each sweep.
pub const DELIVERY_LAG: &str = "herald_node_delivery_lag_seconds";
/// NATS round trip of a JetStream publish: sent until acknowledged, per attempt that
/// got its ack, seconds (cluster mode).
pub const NATS_PUBLISH_RTT: &str = "herald_node_nats_publish_rtt_seconds";
/// Server ping to the client's pong, seconds.
pub const PING_RTT: &str = "herald_node_ping_rtt_seconds";
/// Publications read back from JetStream because live delivery missed them (NATS
/// dropped them, or the connection was down) (counter).
pub const JETSTREAM_REREAD: &str = "herald_node_jetstream_reread_total";
/// Live messages not delivered, by `reason`: `duplicate` (a re-read delivered it
/// already), `unreadable` (a gap could not be read back: the channel's subscribers were
/// closed with 3010 to recover by themselves; counts gaps) (counter).
pub const JETSTREAM_SKIPPED: &str = "herald_node_jetstream_skipped_total";
/// Publications accepted by this node, by `namespace` (counter).
pub const NAMESPACE_PUBLICATIONS: &str = "herald_node_namespace_publications_total";
/// Messages queued to clients by fan-out, by `namespace` (counter).
pub const NAMESPACE_DELIVERIES: &str = "herald_node_namespace_deliveries_total";

/// The `namespace` label of channels without a `ns:` prefix. Parentheses cannot occur in
/// a namespace name, so it never collides with one.
pub const DEFAULT_NAMESPACE_LABEL: &str = "(default)";

/// Nanoseconds on a monotonic clock private to this process (0 is never returned), so
/// a time can be kept in a `u64` (a queue slot, an atomic) and compared later.
pub fn now_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    (base.elapsed().as_nanos() as u64).max(1)
}

/// Seconds since `nanos` (a [`now_nanos`] value).
pub fn seconds_since(nanos: u64) -> f64 {
    now_nanos().saturating_sub(nanos) as f64 / 1e9
}

/// The [`DELIVERY_LAG`] histogram, resolved once (in the recorder installed then).
pub fn delivery_lag() -> &'static Histogram {
    static H: OnceLock<Histogram> = OnceLock::new();
    H.get_or_init(|| histogram!(DELIVERY_LAG))
}

/// The [`PING_RTT`] histogram, resolved once.
pub fn ping_rtt() -> &'static Histogram {
    static H: OnceLock<Histogram> = OnceLock::new();
    H.get_or_init(|| histogram!(PING_RTT))
}

/// Counts a recovery attempt by result (`recovered`, `position_gone`, `not_recovered`)
/// and the publications it gave.
pub fn recovery(result: &'static str, publications: usize) {
    counter!(RECOVERIES, "result" => result).increment(1);
    if publications > 0 {
        counter!(RECOVERED_PUBLICATIONS).increment(publications as u64);
    }
}

/// Per-namespace counters of one namespace.
#[derive(Clone)]
pub struct NamespaceCounters {
    /// See [`NAMESPACE_PUBLICATIONS`].
    pub publications: Counter,
    /// See [`NAMESPACE_DELIVERIES`].
    pub deliveries: Counter,
}

impl NamespaceCounters {
    fn new(label: &str) -> Self {
        NamespaceCounters {
            publications: counter!(NAMESPACE_PUBLICATIONS, "namespace" => label.to_owned()),
            deliveries: counter!(NAMESPACE_DELIVERIES, "namespace" => label.to_owned()),
        }
    }
}

/// Per-namespace counters for the configured namespaces only: the label set is bounded
/// by the configuration, never by channel names. Resolved once; a lookup costs one hash
/// of the namespace name (per publication or fan-out, never per recipient).
#[derive(Clone)]
pub struct NamespaceMetrics {
    default: NamespaceCounters,
    named: HashMap<String, NamespaceCounters>,
}

impl NamespaceMetrics {
    /// Counters for the default namespace and each of `named`, shown at 0 from the start.
    pub fn new<'a>(named: impl IntoIterator<Item = &'a str>) -> Self {
        NamespaceMetrics {
            default: NamespaceCounters::new(DEFAULT_NAMESPACE_LABEL),
            named: named
                .into_iter()
                .map(|n| (n.to_owned(), NamespaceCounters::new(n)))
                .collect(),
        }
    }

    /// The counters of `channel`'s namespace (the rule of `Namespaces::for_channel`);
    /// `None` for a namespace that is not configured.
    pub fn for_channel(&self, channel: &str) -> Option<&NamespaceCounters> {
        match channel.trim_start_matches('$').split_once(':') {
            Some((ns, _)) => self.named.get(ns),
            None => Some(&self.default),
        }
    }
}

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
    /// See [`NAMESPACE_PUBLICATIONS`] and [`NAMESPACE_DELIVERIES`].
    pub namespaces: std::sync::Arc<NamespaceMetrics>,
}

impl NodeMetrics {
    /// Registers the metrics (they show in `/metrics` from the start, at zero), with
    /// per-namespace counters for the default namespace and `namespaces`.
    pub fn new<'a>(namespaces: impl IntoIterator<Item = &'a str>) -> Self {
        describe();
        // Shown from the start: dashboards and alerts see 0, not "no data".
        gauge!(DRAINING).set(0.0);
        counter!(DRAIN_DISCONNECTS).absolute(0);
        for result in ["recovered", "position_gone", "not_recovered"] {
            counter!(RECOVERIES, "result" => result).absolute(0);
        }
        counter!(RECOVERED_PUBLICATIONS).absolute(0);
        for source in ["shared", "jetstream"] {
            counter!(RECOVERY_READS, "source" => source).absolute(0);
        }
        for lookup in ["top", "position"] {
            for answer in ["asked", "shared"] {
                counter!(RECOVERY_LOOKUPS, "lookup" => lookup, "answer" => answer).absolute(0);
            }
        }
        counter!(JETSTREAM_REREAD).absolute(0);
        for reason in ["duplicate", "unreadable"] {
            counter!(JETSTREAM_SKIPPED, "reason" => reason).absolute(0);
        }
        counter!(SLOW_CONSUMER_DROPS).absolute(0);
        // Histograms resolved now, so their families exist before the first sample.
        let _ = (delivery_lag(), ping_rtt());
        let _ = histogram!(NATS_PUBLISH_RTT);
        let _ = histogram!(PUBLISH_DURATION);
        NodeMetrics {
            namespaces: std::sync::Arc::new(NamespaceMetrics::new(namespaces)),
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
        Self::new([])
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
    describe_counter!(
        RECOVERIES,
        "Subscribes that asked to recover, by result (recovered, position_gone, not_recovered)."
    );
    describe_counter!(
        RECOVERED_PUBLICATIONS,
        "Publications handed to clients by successful recoveries."
    );
    describe_counter!(
        RECOVERY_READS,
        "Stream recoveries by where their publications came from (shared range, jetstream)."
    );
    describe_counter!(
        RECOVERY_LOOKUPS,
        "JetStream lookups of stream recoveries by lookup (top, position) and answer (asked, shared)."
    );
    describe_histogram!(
        DELIVERY_LAG,
        "Seconds from the broker's receipt of a publication to the socket write (last subscriber of each fan-out)."
    );
    describe_histogram!(
        NATS_PUBLISH_RTT,
        "Seconds from a JetStream publish to its acknowledgement (cluster mode)."
    );
    describe_histogram!(PING_RTT, "Seconds from a server ping to the client's pong.");
    describe_counter!(
        JWKS_FETCHES,
        "JWKS fetches by result (ok, unreachable, status, timeout, parse)."
    );
    describe_counter!(
        JETSTREAM_REREAD,
        "Publications read back from JetStream because live delivery missed them."
    );
    describe_counter!(
        JETSTREAM_SKIPPED,
        "Live messages not delivered, by reason (duplicate of a re-read; unreadable gap)."
    );
    describe_counter!(
        NAMESPACE_PUBLICATIONS,
        "Publications accepted by this node, by namespace."
    );
    describe_counter!(
        NAMESPACE_DELIVERIES,
        "Messages queued to clients by fan-out, by namespace."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_counters_exist_for_configured_namespaces_only() {
        let m = NamespaceMetrics::new(["chat", "feed"]);
        assert!(m.for_channel("news").is_some(), "the default namespace");
        assert!(m.for_channel("$private").is_some());
        assert!(m.for_channel("chat:room").is_some());
        assert!(m.for_channel("$feed:x").is_some());
        assert!(
            m.for_channel("nosuch:room").is_none(),
            "no label for unknown namespaces"
        );
    }

    #[test]
    fn clock_is_monotonic_and_never_zero() {
        let a = now_nanos();
        let b = now_nanos();
        assert!(a >= 1 && b >= a);
        assert!(seconds_since(a) >= 0.0);
        assert_eq!(
            seconds_since(u64::MAX),
            0.0,
            "a time ahead gives 0, not garbage"
        );
    }
}
