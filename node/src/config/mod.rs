//! Node configuration: what each setting means and its default.
//!
//! Settings come from environment variables (`HERALD_*`) and, optionally, a TOML file
//! named by `HERALD_CONFIG`; the environment wins. Loading lives in [`load`]; every
//! bad value is reported, naming the setting, before the binary exits with code 64.
//! The README's configuration table lists the same names, defaults and meanings.

mod cluster;
mod drain;
mod load;
mod proxy;

pub use cluster::{default_advertise, ClusterOptions};
pub use drain::DrainOptions;
pub use load::load;
pub use proxy::{ProxyKind, ProxyOptions};

use herald_shared::auth::AuthConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything a node needs to run.
///
/// `Debug` is safe to log: the API key and credentials in the NATS URL print as
/// `<redacted>` (token keys already print as their kind only).
#[derive(Clone)]
pub struct NodeConfig {
    /// `HERALD_LISTEN`: address and port for WebSockets, the server API and probes.
    /// Default `0.0.0.0:8000`.
    pub listen: SocketAddr,
    /// `HERALD_NODE_ID`: this node's name in the cluster, the connect reply and `/api/info`.
    /// Default: the host name, else a random id.
    pub node_id: String,
    /// `HERALD_NATS_URL`: NATS server(s), comma-separated. Unset: the embedded in-process broker.
    pub nats_url: Option<String>,
    /// Connection and subscription token verification. `None` when no key is configured:
    /// then only anonymous connections are possible (and only if allowed).
    pub auth: Option<AuthConfig>,
    /// `HERALD_TOKEN_JWKS_*`: the JWKS endpoint whose keys verify RSA and EC tokens (by
    /// their `kid`), beside or instead of `auth`'s key. `None`: no JWKS.
    pub jwks: Option<JwksOptions>,
    /// `HERALD_ALLOW_ANONYMOUS`: accept a connect without a token (user id empty). Default false.
    pub allow_anonymous: bool,
    /// `HERALD_API_KEY`: key for the server API (`X-API-Key`). Unset: the API answers 401 to all.
    pub api_key: Option<String>,
    /// Channel options: the default namespace and named ones.
    pub namespaces: Namespaces,
    /// Resource limits.
    pub limits: Limits,
    /// `HERALD_PING_INTERVAL` (seconds): server ping period, told to clients. Default 25.
    pub ping_interval: Duration,
    /// `HERALD_PONG_TIMEOUT` (seconds): how long a pong may take after a ping. Default 8.
    pub pong_timeout: Duration,
    /// `HERALD_EXPIRY_GRACE` (seconds): how long past token expiry a connection may stay
    /// while the client refreshes. Default 5.
    pub expiry_grace: Duration,
    /// `HERALD_WRITE_INTERVAL` (seconds): least time between two writes to one
    /// connection. What is queued meanwhile goes out together in the next write; a
    /// connection that has not written for this long writes at once. Default 0: write as
    /// soon as the writer runs.
    pub write_interval: Duration,
    /// `HERALD_LOG_FORMAT`: `plain` or `json`. Default `plain`. (`RUST_LOG` filters.)
    pub log_format: herald_shared::telemetry::LogFormat,
    /// `HERALD_OTEL_ENDPOINT`: OTLP/HTTP base URL traces are exported to
    /// (`http://collector:4318`). Default unset: no traces.
    pub otel_endpoint: Option<String>,
    /// `HERALD_OTEL_SAMPLE_RATIO`: share of new traces recorded, 0 to 1. Default 1.
    pub otel_sample_ratio: f64,
    /// How the node uses NATS (only read when `nats_url` is set).
    pub cluster: ClusterOptions,
    /// How the node drains on SIGTERM or `POST /admin/drain`.
    pub drain: DrainOptions,
    /// Which client events the application's backend answers over HTTP.
    pub proxy: ProxyOptions,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let NodeConfig {
            listen,
            node_id,
            nats_url,
            auth,
            jwks,
            allow_anonymous,
            api_key,
            namespaces,
            limits,
            ping_interval,
            pong_timeout,
            expiry_grace,
            write_interval,
            log_format,
            otel_endpoint,
            otel_sample_ratio,
            cluster,
            drain,
            proxy,
        } = self;
        f.debug_struct("NodeConfig")
            .field("listen", listen)
            .field("node_id", node_id)
            .field("nats_url", &nats_url.as_deref().map(redact_url_credentials))
            .field("auth", auth)
            .field("jwks", jwks)
            .field("allow_anonymous", allow_anonymous)
            .field("api_key", &api_key.as_ref().map(|_| "<redacted>"))
            .field("namespaces", namespaces)
            .field("limits", limits)
            .field("ping_interval", ping_interval)
            .field("pong_timeout", pong_timeout)
            .field("expiry_grace", expiry_grace)
            .field("write_interval", write_interval)
            .field("log_format", log_format)
            .field("otel_endpoint", otel_endpoint)
            .field("otel_sample_ratio", otel_sample_ratio)
            .field("cluster", cluster)
            .field("drain", drain)
            .field("proxy", proxy)
            .finish()
    }
}

/// `nats://user:pass@host:4222,tls://tok@h2` → `nats://<redacted>@host:4222,tls://<redacted>@h2`.
fn redact_url_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let rest = match rest.rsplit_once('@') {
                Some((_, host)) => format!("<redacted>@{host}"),
                None => rest.to_owned(),
            };
            if scheme.is_empty() {
                rest
            } else {
                format!("{scheme}://{rest}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Options of one namespace (`ns:` prefix of a channel name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceOptions {
    /// `HERALD_HISTORY_SIZE`: publications kept per channel; 0 turns history off. Default 100.
    pub history_size: usize,
    /// `HERALD_HISTORY_TTL` (seconds): how long each publication stays in history (and so
    /// stays recoverable). Default 300.
    pub history_ttl: Duration,
    /// `HERALD_PRESENCE`: keep who is subscribed. Default false.
    pub presence: bool,
    /// `HERALD_JOIN_LEAVE`: send join/leave pushes to subscribers that ask for them. Default false.
    pub join_leave: bool,
    /// `HERALD_FORCE_PUSH_JOIN_LEAVE`: send join/leave pushes to every subscriber. Default false.
    pub force_push_join_leave: bool,
    /// `HERALD_ALLOW_PUBLISH`: subscribers of a channel may publish to it. Default false.
    pub allow_publish: bool,
    /// `HERALD_ALLOW_SUBSCRIBE`: any connected client may subscribe to a public channel
    /// (channels starting with `$` always need a subscription token). Default true.
    pub allow_subscribe: bool,
    /// `HERALD_ALLOW_PRESENCE_FOR_SUBSCRIBER`: subscribers may call presence and
    /// presence_stats. Default true.
    pub allow_presence: bool,
    /// `HERALD_ALLOW_HISTORY_FOR_SUBSCRIBER`: subscribers may call history. Default true.
    pub allow_history: bool,
    /// `HERALD_RECOVERY`: subscribers may recover missed publications (needs history).
    /// Default true.
    pub recovery: bool,
    /// `HERALD_PROXY_SUBSCRIBE` (`proxy_subscribe` in `[namespaces.NAME]`): the backend
    /// decides subscribes without a subscription token (needs
    /// `HERALD_PROXY_SUBSCRIBE_ENDPOINT`). Default false.
    pub proxy_subscribe: bool,
    /// `HERALD_PROXY_PUBLISH` (`proxy_publish`): the backend decides client publishes,
    /// instead of `allow_publish`, and may rewrite their data (needs
    /// `HERALD_PROXY_PUBLISH_ENDPOINT`). Default false.
    pub proxy_publish: bool,
    /// `HERALD_PROXY_SUB_REFRESH` (`proxy_sub_refresh`): a subscription the subscribe
    /// proxy gave an `expire_at` is extended by the backend when it is reached (needs
    /// `HERALD_PROXY_SUB_REFRESH_ENDPOINT`). Default false.
    pub proxy_sub_refresh: bool,
    /// `HERALD_FORCE_RECOVERY_MODE` (`stream` or `cache`): what a recovering subscriber
    /// gets. `stream`: every missed publication; `cache`: only the channel's latest
    /// publication (state-like channels). Default `stream`.
    pub force_recovery_mode: RecoveryMode,
    /// `HERALD_ALLOWED_DELTA_TYPES` (list; only `fossil` exists): subscribers asking for
    /// `delta: "fossil"` get publications as fossil deltas against the previous one.
    /// Default empty (no delta).
    pub allowed_delta_types: Vec<DeltaType>,
    /// `HERALD_DELTA_PUBLISH`: every publication of the namespace is published in delta
    /// mode (as the server API's `delta: true`). Default false.
    pub delta_publish: bool,
    /// `HERALD_ALLOW_TAGS_FILTER`: subscribers may narrow their subscription with a
    /// `tags_filter` (`tf` on the wire). Default false.
    pub allow_tags_filter: bool,
}

/// What a recovering subscriber gets (`force_recovery_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Every publication missed since its position (never a partial set).
    #[default]
    Stream,
    /// Only the channel's latest publication, with `recovered: true`.
    Cache,
}

impl std::str::FromStr for RecoveryMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stream" => Ok(RecoveryMode::Stream),
            "cache" => Ok(RecoveryMode::Cache),
            _ => Err("expected stream or cache".into()),
        }
    }
}

/// A delta encoding of publication data (`allowed_delta_types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaType {
    /// Fossil's delta format, as Centrifugo and its SDKs use it.
    Fossil,
}

impl std::str::FromStr for DeltaType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fossil" => Ok(DeltaType::Fossil),
            _ => Err("expected fossil (the only delta type)".into()),
        }
    }
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions {
            history_size: 100,
            history_ttl: Duration::from_secs(300),
            presence: false,
            join_leave: false,
            force_push_join_leave: false,
            allow_publish: false,
            allow_subscribe: true,
            allow_presence: true,
            allow_history: true,
            recovery: true,
            proxy_subscribe: false,
            proxy_publish: false,
            proxy_sub_refresh: false,
            force_recovery_mode: RecoveryMode::Stream,
            allowed_delta_types: Vec::new(),
            delta_publish: false,
            allow_tags_filter: false,
        }
    }
}

impl NamespaceOptions {
    /// Whether channels of this namespace keep history (and so carry offsets).
    pub fn has_history(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }

    /// Whether subscribers may ask for fossil deltas.
    pub fn allows_fossil(&self) -> bool {
        self.allowed_delta_types.contains(&DeltaType::Fossil)
    }
}

/// The default namespace plus named ones (from the TOML file's `[namespaces.NAME]` tables).
#[derive(Clone, Debug, Default)]
pub struct Namespaces {
    /// Options for channels without a `ns:` prefix.
    pub default: NamespaceOptions,
    /// Named namespaces.
    pub named: HashMap<String, NamespaceOptions>,
}

impl Namespaces {
    /// The options for a channel, or `None` when its namespace does not exist.
    pub fn for_channel(&self, channel: &str) -> Option<&NamespaceOptions> {
        let name = channel.trim_start_matches('$');
        match name.split_once(':') {
            Some((ns, _)) => self.named.get(ns),
            None => Some(&self.default),
        }
    }
}

/// Limits, each with a default that fits one node on a small machine.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `HERALD_MAX_CONNECTIONS`: open client connections; more are refused with 503. Default 20000.
    pub max_connections: usize,
    /// `HERALD_HANDSHAKE_TIMEOUT` (seconds): from TCP accept until the `connect` command is
    /// answered. Default 10.
    pub handshake_timeout: Duration,
    /// `HERALD_MAX_MESSAGE_SIZE` (bytes): largest WebSocket message a client may send. Default 65536.
    pub max_message_size: usize,
    /// `HERALD_MAX_CHANNELS_PER_CONNECTION`: subscriptions per connection. Default 128.
    pub max_channels_per_connection: usize,
    /// `HERALD_COMMANDS_PER_SECOND`: commands per connection per second (burst of the same
    /// size); 0 turns the limit off. Default 100.
    pub commands_per_second: u32,
    /// `HERALD_QUEUE_MAX_BYTES` (bytes): outbound bytes queued for one connection before it is
    /// disconnected as slow (code 3008). Default 1048576.
    pub queue_max_bytes: usize,
    /// `HERALD_ALLOWED_ORIGINS`: comma-separated Origins allowed to upgrade (`*` wildcard in
    /// a host, e.g. `https://*.example.com`). Unset: any Origin, and requests without one.
    pub allowed_origins: Vec<String>,
    /// `HERALD_MAX_API_BODY` (bytes): largest server API request body. Default 1048576.
    pub max_api_body: usize,
    /// `HERALD_USER_CONNECTION_LIMIT`: connections one user (non-empty user id) may hold
    /// on this node; a connect past it is closed 3504 "connection limit", as Centrifugo's
    /// `client.user_connection_limit`. 0 turns the limit off. Default 0.
    pub user_connection_limit: usize,
    /// `HERALD_CONNECTION_RATE_LIMIT`: new WebSocket upgrades this node accepts per second
    /// (token bucket, burst of the same size); more are answered HTTP 503, as Centrifugo's
    /// `client.connection_rate_limit`. 0 turns the limit off. Default 0.
    pub connection_rate_limit: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 20_000,
            handshake_timeout: Duration::from_secs(10),
            max_message_size: 65_536,
            max_channels_per_connection: 128,
            commands_per_second: 100,
            queue_max_bytes: 1 << 20,
            allowed_origins: Vec::new(),
            max_api_body: 1 << 20,
            user_connection_limit: 0,
            connection_rate_limit: 0,
        }
    }
}

/// Where the JWKS comes from and how often it is read again (Centrifugo's
/// `token_jwks_public_endpoint`).
#[derive(Clone, Debug)]
pub struct JwksOptions {
    /// `HERALD_TOKEN_JWKS_URL`: `http://` or `https://` (system root certificates).
    pub url: hyper::Uri,
    /// `HERALD_TOKEN_JWKS_REFRESH_INTERVAL`: how often the set is fetched again even when
    /// no token asks for a new key, so removed keys stop working. Default 1 hour.
    pub refresh_interval: Duration,
    /// `HERALD_TOKEN_JWKS_MIN_REFETCH_INTERVAL`: the least time between two fetches
    /// started by tokens with an unknown `kid`; also the first retry delay after a
    /// failed fetch. Default 10 s.
    pub min_refetch_interval: Duration,
    /// `HERALD_TOKEN_JWKS_TIMEOUT`: bound on one fetch, connect to last byte. Default 5 s.
    pub timeout: Duration,
}

impl NodeConfig {
    /// A configuration for tests and embedding: listen on `127.0.0.1:0`, HMAC `secret`,
    /// API key `key`, defaults elsewhere.
    pub fn for_tests(secret: &str, api_key: &str) -> Self {
        NodeConfig {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            node_id: "test-node".into(),
            nats_url: None,
            auth: Some(AuthConfig::hmac(
                jsonwebtoken::Algorithm::HS256,
                secret.as_bytes(),
            )),
            jwks: None,
            allow_anonymous: false,
            api_key: Some(api_key.into()),
            namespaces: Namespaces::default(),
            limits: Limits::default(),
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            expiry_grace: Duration::from_secs(5),
            write_interval: Duration::ZERO,
            log_format: herald_shared::telemetry::LogFormat::Plain,
            otel_endpoint: None,
            otel_sample_ratio: herald_shared::otel::DEFAULT_SAMPLE_RATIO,
            cluster: ClusterOptions::default(),
            // Tests stop nodes all the time: no grace, no window.
            drain: DrainOptions {
                grace: Duration::ZERO,
                window: Duration::ZERO,
                timeout: Duration::from_secs(5),
            },
            proxy: ProxyOptions::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_secrets() {
        let secret = "hmac-secret-0123456789";
        let mut c = NodeConfig::for_tests(secret, "the-api-key-value");
        c.nats_url = Some("nats://herald:nats-password@n1:4222,n2:4222".into());
        let text = format!("{c:?} {c:#?}");
        for s in [secret, "the-api-key-value", "nats-password", "herald:"] {
            assert!(!text.contains(s), "{s:?} in {text}");
        }
        assert!(text.contains("<redacted>@n1:4222,n2:4222"), "{text}");
        assert!(text.contains("Hmac(<redacted>)"), "{text}");
    }
}
