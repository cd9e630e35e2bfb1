//! Cluster settings: how a node uses NATS when `HERALD_NATS_URL` is set.

use herald_shared::config::{Reader, Settings};
use std::ops::Bound;
use std::time::Duration;

const ENV_NATS_REPLICAS: &str = "HERALD_NATS_REPLICAS";
/// JetStream allows at most 5 replicas per stream.
const MAX_REPLICAS: usize = 5;
const ENV_NATS_STORAGE: &str = "HERALD_NATS_STORAGE";
const ENV_NODE_HEARTBEAT: &str = "HERALD_NODE_HEARTBEAT";
const ENV_NODE_TIMEOUT: &str = "HERALD_NODE_TIMEOUT";
const ENV_UNSUBSCRIBE_DELAY: &str = "HERALD_UNSUBSCRIBE_DELAY";
const ENV_QUERY_TIMEOUT: &str = "HERALD_QUERY_TIMEOUT";
const ENV_NATS_PUBLISH_TIMEOUT: &str = "HERALD_NATS_PUBLISH_TIMEOUT";
const ENV_ADVERTISE_ADDR: &str = "HERALD_ADVERTISE_ADDR";
const ENV_REJOIN_GRACE: &str = "HERALD_REJOIN_GRACE";
const ENV_NATS_SUBSCRIPTION_CAPACITY: &str = "HERALD_NATS_SUBSCRIPTION_CAPACITY";
/// Bound of every cluster duration: beyond an hour a setting is surely a typo.
const MAX_SECS: Duration = Duration::from_secs(3600);

/// Settings that matter only in cluster mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    /// `HERALD_NATS_REPLICAS`: JetStream replicas of each history stream (3 on a
    /// 3-server NATS cluster). Default 1.
    pub replicas: usize,
    /// `HERALD_NATS_STORAGE`: `file` or `memory` for history streams. Default `file`.
    pub memory_storage: bool,
    /// `HERALD_NODE_HEARTBEAT` (seconds): how often a node tells the others it is alive.
    /// Default 1.
    pub heartbeat: Duration,
    /// `HERALD_NODE_TIMEOUT` (seconds): a node silent this long is dead: it is no longer
    /// asked for presence, so its members disappear from everyone's presence. Default 4.
    pub node_timeout: Duration,
    /// `HERALD_UNSUBSCRIBE_DELAY` (seconds): how long a node keeps listening to a channel
    /// after its last local subscriber left (a quick resubscribe costs nothing). Default 5.
    pub unsubscribe_delay: Duration,
    /// `HERALD_QUERY_TIMEOUT` (seconds): how long a presence or channels query waits for
    /// the other nodes' answers. Default 1.
    pub query_timeout: Duration,
    /// `HERALD_NATS_PUBLISH_TIMEOUT` (seconds): how long a publish keeps retrying while
    /// JetStream is unavailable (e.g. a NATS server failing over: electing a new stream
    /// leader takes a few seconds) before the client gets an error. Default 10.
    pub publish_timeout: Duration,
    /// `HERALD_REJOIN_GRACE` (seconds): a member of a draining node who rejoins a
    /// channel on another node within this time produces neither a leave nor a join
    /// push (no flapping during deploys); otherwise the leave is pushed when it ends.
    /// Default 10.
    pub rejoin_grace: Duration,
    /// `HERALD_ADVERTISE_ADDR`: `host:port` where routers reach this node; announced on
    /// `herald.node.announce` for the router's NATS discovery. Default: the listen
    /// address, or `<node id>:<port>` when it listens on all interfaces.
    pub advertise: Option<String>,
    /// `HERALD_NATS_SUBSCRIPTION_CAPACITY`: messages buffered per channel subscription
    /// before NATS drops (and the node reads the dropped ones back from JetStream).
    /// Default 65536.
    pub subscription_capacity: usize,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            replicas: 1,
            memory_storage: false,
            heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(4),
            unsubscribe_delay: Duration::from_secs(5),
            query_timeout: Duration::from_secs(1),
            publish_timeout: Duration::from_secs(10),
            rejoin_grace: Duration::from_secs(10),
            advertise: None,
            subscription_capacity: 65_536,
        }
    }
}

/// Reads the cluster settings; bad values are reported to `s`.
pub(super) fn cluster(s: &mut Settings<'_>) -> ClusterOptions {
    let d = ClusterOptions::default();
    let positive = (Bound::Excluded(Duration::ZERO), Bound::Included(MAX_SECS));
    let replicas = s.int(ENV_NATS_REPLICAS, d.replicas, 1..=MAX_REPLICAS);
    let memory_storage = s.convert(ENV_NATS_STORAGE, d.memory_storage, |t| match t {
        "file" => Ok(false),
        "memory" => Ok(true),
        _ => Err("expected file or memory".into()),
    });
    let heartbeat = s.secs_in(ENV_NODE_HEARTBEAT, d.heartbeat, positive);
    let node_timeout = s.secs_in(ENV_NODE_TIMEOUT, d.node_timeout, positive);
    if node_timeout <= heartbeat {
        if let Some(v) = s.value(ENV_NODE_TIMEOUT) {
            s.report(v.error(format!(
                "must be longer than {ENV_NODE_HEARTBEAT} ({}s), or every node looks dead between heartbeats",
                heartbeat.as_secs_f64()
            )));
        } else if let Some(v) = s.value(ENV_NODE_HEARTBEAT) {
            s.report(v.error(format!(
                "must be shorter than {ENV_NODE_TIMEOUT} ({}s)",
                node_timeout.as_secs_f64()
            )));
        }
    }
    ClusterOptions {
        replicas,
        memory_storage,
        heartbeat,
        node_timeout,
        unsubscribe_delay: s.secs_in(ENV_UNSUBSCRIBE_DELAY, d.unsubscribe_delay, ..=MAX_SECS),
        query_timeout: s.secs_in(ENV_QUERY_TIMEOUT, d.query_timeout, positive),
        publish_timeout: s.secs_in(ENV_NATS_PUBLISH_TIMEOUT, d.publish_timeout, positive),
        rejoin_grace: s.secs_in(ENV_REJOIN_GRACE, d.rejoin_grace, ..=MAX_SECS),
        advertise: s
            .value(ENV_ADVERTISE_ADDR)
            .and_then(|v| match check_host_port(&v.text) {
                Ok(()) => Some(v.text),
                Err(reason) => {
                    s.report(v.error(reason));
                    None
                }
            }),
        subscription_capacity: s.int(
            ENV_NATS_SUBSCRIPTION_CAPACITY,
            d.subscription_capacity,
            1024..=(1 << 24),
        ),
    }
}

/// `host:port` with a non-empty host and a port from 1 to 65535.
fn check_host_port(text: &str) -> Result<(), String> {
    let ok = text
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err("expected host:port, such as 10.0.0.5:8000 or node-1:8000".into())
    }
}

/// What to announce when `HERALD_ADVERTISE_ADDR` is unset: the bound address, or the
/// node id with its port when bound to every interface.
pub fn default_advertise(node_id: &str, bound: std::net::SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        format!("{node_id}:{}", bound.port())
    } else {
        bound.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::config::MapLookup;

    fn read(pairs: &[(&str, &str)]) -> Result<ClusterOptions, String> {
        let lookup = MapLookup::from_pairs(pairs);
        let mut s = Settings::new(&lookup, "HERALD_");
        let c = cluster(&mut s);
        s.finish()
            .map(|()| c)
            .map_err(|e| herald_shared::config::format_errors(&e))
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(read(&[]).unwrap(), ClusterOptions::default());
        let c = read(&[
            ("HERALD_NATS_REPLICAS", "3"),
            ("HERALD_NATS_STORAGE", "memory"),
            ("HERALD_NODE_HEARTBEAT", "0.5"),
            ("HERALD_NODE_TIMEOUT", "2"),
            ("HERALD_UNSUBSCRIBE_DELAY", "0"),
        ])
        .unwrap();
        assert_eq!(c.replicas, 3);
        assert!(c.memory_storage);
        assert_eq!(c.heartbeat, Duration::from_millis(500));
        assert_eq!(c.node_timeout, Duration::from_secs(2));
        assert_eq!(c.unsubscribe_delay, Duration::ZERO);
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (name, value) in [
            ("HERALD_NATS_REPLICAS", "7"),
            ("HERALD_NATS_STORAGE", "disk"),
            ("HERALD_NODE_TIMEOUT", "0.5"),
            ("HERALD_QUERY_TIMEOUT", "0"),
            ("HERALD_NATS_SUBSCRIPTION_CAPACITY", "10"),
            ("HERALD_ADVERTISE_ADDR", "no-port"),
            ("HERALD_ADVERTISE_ADDR", "host:0"),
        ] {
            let err = read(&[(name, value)]).unwrap_err();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn advertise_defaults_follow_the_bound_address() {
        let any: std::net::SocketAddr = "0.0.0.0:8000".parse().unwrap();
        let lo: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(default_advertise("n1", any), "n1:8000");
        assert_eq!(default_advertise("n1", lo), "127.0.0.1:4000");
    }
}
