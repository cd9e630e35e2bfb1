//! Router configuration: what each setting means and its default.
//!
//! Settings come from environment variables (`HERALD_ROUTER_*`) and, optionally, a TOML
//! file named by `HERALD_ROUTER_CONFIG` (key = the name without `HERALD_ROUTER_`, lower
//! case); the environment wins. Loading lives in [`load`]; every bad value is reported,
//! naming the setting, before the binary exits with code 64. The README's router table
//! lists the same names, defaults and meanings.

mod load;

pub use load::{check_host_port, load, DEFAULT_NATS_SUBJECT, ENV_TLS_CERT, ENV_TLS_KEY};

use crate::cidr::Cidr;
use herald_shared::telemetry::LogFormat;
use hyper::header::HeaderName;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the router needs to run.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// `HERALD_ROUTER_LISTEN`: address and port for clients, `/healthz`, `/readyz` and
    /// `/metrics`. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// `HERALD_ROUTER_LOG_FORMAT`: `plain` or `json`. Default `plain`.
    pub log_format: LogFormat,
    /// Where the nodes are found.
    pub discovery: DiscoveryConfig,
    /// How a client's key is found and remembered.
    pub sticky: StickyConfig,
    /// Active health checks.
    pub health: HealthConfig,
    /// Talking to nodes.
    pub proxy: ProxyConfig,
    /// Limits and shutdown.
    pub limits: Limits,
    /// TLS on the client side; `None` serves plain HTTP.
    pub tls: Option<TlsConfig>,
    /// OpenTelemetry trace export.
    pub otel: OtelConfig,
}

/// OpenTelemetry traces of the router: a span per proxied upgrade or request, whose
/// context goes to the node in `traceparent`.
#[derive(Clone, Debug, PartialEq)]
pub struct OtelConfig {
    /// `HERALD_ROUTER_OTEL_ENDPOINT`: OTLP/HTTP base URL (`http://collector:4318`) spans
    /// are exported to. Default unset: no spans are made at all.
    pub endpoint: Option<String>,
    /// `HERALD_ROUTER_OTEL_SAMPLE_RATIO`: share of new traces recorded, 0 to 1; a request
    /// bringing a sampled `traceparent` is recorded either way. Default 1.
    pub sample_ratio: f64,
}

impl Default for OtelConfig {
    fn default() -> Self {
        OtelConfig {
            endpoint: None,
            sample_ratio: herald_shared::otel::DEFAULT_SAMPLE_RATIO,
        }
    }
}

/// TLS termination at the router: both files are read at start and again on SIGHUP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// `HERALD_ROUTER_TLS_CERT`: PEM file with the certificate chain, the router's own
    /// certificate first. Default unset (plain HTTP).
    pub cert: PathBuf,
    /// `HERALD_ROUTER_TLS_KEY`: PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    /// Set together with the certificate or not at all.
    pub key: PathBuf,
}

/// Node discovery; the three sources can be combined.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryConfig {
    /// `HERALD_ROUTER_NODES`: `host:port` of each node, comma-separated. Default none.
    pub nodes: Vec<String>,
    /// `HERALD_ROUTER_DNS`: `name:port` entries whose every A/AAAA record is a node (a
    /// Kubernetes headless Service). Default none.
    pub dns: Vec<String>,
    /// `HERALD_ROUTER_DNS_INTERVAL` (seconds): how often DNS names are resolved again.
    /// Default 5.
    pub dns_interval: Duration,
    /// NATS announcements; `None` when `HERALD_ROUTER_NATS_URL` is unset.
    pub nats: Option<NatsDiscovery>,
}

/// Node announcements over NATS.
#[derive(Clone, Debug)]
pub struct NatsDiscovery {
    /// `HERALD_ROUTER_NATS_URL`: NATS server(s), comma-separated.
    pub url: String,
    /// `HERALD_ROUTER_NATS_SUBJECT`: the subject nodes announce on. Default
    /// `herald.node.announce`.
    pub subject: String,
    /// `HERALD_ROUTER_NATS_TTL` (seconds): how long an announcement without its own `ttl`
    /// keeps a node known. Default 10.
    pub ttl: Duration,
}

/// How a client's stickiness key is found.
#[derive(Clone, Debug)]
pub struct StickyConfig {
    /// `HERALD_ROUTER_COOKIE`: name of the cookie set on the first upgrade. Default
    /// `herald_node`.
    pub cookie: String,
    /// `HERALD_ROUTER_COOKIE_MAX_AGE` (seconds): the cookie's `Max-Age`; 0 makes it a
    /// session cookie. Default 86400.
    pub cookie_max_age: Duration,
    /// `HERALD_ROUTER_STICKY_QUERY`: query parameter holding the key when there is no
    /// cookie. Default unset.
    pub query: Option<String>,
    /// `HERALD_ROUTER_STICKY_HEADER`: request header holding the key when there is no
    /// cookie or query parameter. Default unset.
    pub header: Option<HeaderName>,
    /// `HERALD_ROUTER_STICKY_FALLBACK`: the key of a request with no cookie, query
    /// parameter or header key. Default `random`.
    pub fallback: StickyFallback,
}

/// What keys a request that brings no key of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StickyFallback {
    /// A random key (the cookie then keeps the client on its node): clients behind one
    /// NAT spread over the nodes.
    Random,
    /// The client's IP address: every client behind one NAT lands on one node.
    Address,
}

impl Default for StickyConfig {
    fn default() -> Self {
        StickyConfig {
            cookie: "herald_node".into(),
            cookie_max_age: Duration::from_secs(86_400),
            query: None,
            header: None,
            fallback: StickyFallback::Random,
        }
    }
}

/// Active health checks of every node.
#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// `HERALD_ROUTER_HEALTH_PATH`: the readiness path probed on each node. Default `/readyz`.
    pub path: String,
    /// `HERALD_ROUTER_HEALTH_INTERVAL` (seconds): time between probes of one node. Default 2.
    pub interval: Duration,
    /// `HERALD_ROUTER_HEALTH_TIMEOUT` (seconds): how long one probe may take. Default 1.
    pub timeout: Duration,
    /// `HERALD_ROUTER_HEALTH_RISE`: good checks in a row before a node that went down
    /// takes connections again. Default 2.
    pub rise: u32,
    /// `HERALD_ROUTER_HEALTH_FALL`: failed checks (probes or proxied attempts) in a row
    /// before a node leaves the ring. Default 3.
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            path: "/readyz".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

/// Talking to nodes.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// `HERALD_ROUTER_CONNECT_TIMEOUT` (seconds): connecting to a node and getting its
    /// answer to an upgrade. Default 3.
    pub connect_timeout: Duration,
    /// `HERALD_ROUTER_RETRIES`: further nodes tried, in rendezvous order, when the chosen
    /// one refuses or cannot be reached. Default 2.
    pub retries: usize,
    /// `HERALD_ROUTER_IDLE_TIMEOUT` (seconds): a tunnel with no bytes either way this long
    /// is closed; 0 never. Default 300 (nodes ping every 25 s, so only a stuck peer idles).
    pub idle_timeout: Duration,
    /// `HERALD_ROUTER_RETRY_AFTER` (seconds): `Retry-After` of a 503 when no node can take
    /// a request. Default 2.
    pub retry_after: Duration,
    /// `HERALD_ROUTER_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed; the
    /// client's address is then its right-most entry not in these ranges. Default none.
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout: Duration::from_secs(3),
            retries: 2,
            idle_timeout: Duration::from_secs(300),
            retry_after: Duration::from_secs(2),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Limits and shutdown.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `HERALD_ROUTER_MAX_CONNECTIONS`: open client connections, tunnels included; more
    /// are answered 503. Default 100000.
    pub max_connections: usize,
    /// `HERALD_ROUTER_HANDSHAKE_TIMEOUT` (seconds): how long a client may take to finish
    /// its TLS handshake (with TLS on), and then again to send its request headers.
    /// Default 10.
    pub handshake_timeout: Duration,
    /// `HERALD_ROUTER_SHUTDOWN_GRACE` (seconds): after SIGTERM, how long open tunnels may
    /// keep running before they are closed. Default 30.
    pub shutdown_grace: Duration,
    /// `HERALD_ROUTER_NODE_CONNECT_RATE` (upgrades per second): new WebSocket upgrades
    /// each node is sent, per router; more are answered 503. 0 turns it off. Default 5000,
    /// half of what one node on two cores accepts with token checks, leaving room for a
    /// second router replica.
    pub node_connect_rate: u32,
    /// `HERALD_ROUTER_NODE_CONNECT_BURST` (upgrades): how many a node's budget saves up
    /// while it is quiet. Default 250 (50 ms at the default rate).
    pub node_connect_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            node_connect_rate: 5000,
            node_connect_burst: 250,
        }
    }
}

impl RouterConfig {
    /// A configuration for tests and embedding: listen on `127.0.0.1:0`, route to `nodes`,
    /// defaults elsewhere.
    pub fn for_tests(nodes: &[String]) -> Self {
        RouterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_format: LogFormat::Plain,
            discovery: DiscoveryConfig {
                nodes: nodes.to_vec(),
                dns: Vec::new(),
                dns_interval: Duration::from_secs(5),
                nats: None,
            },
            sticky: StickyConfig::default(),
            health: HealthConfig::default(),
            proxy: ProxyConfig::default(),
            limits: Limits::default(),
            tls: None,
            otel: OtelConfig::default(),
        }
    }
}
