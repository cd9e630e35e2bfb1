//! Reads a [`NodeConfig`] from `HERALD_*` settings and the optional TOML file named by
//! `HERALD_CONFIG`, collecting every bad value (see `herald_shared::config`).
//!
//! Defaults of channel options and limits are the `Default` impls in the parent module,
//! so each lives in one place; the others are the `DEFAULT_*` constants here.

use super::{Limits, NamespaceOptions, Namespaces, NodeConfig, ProxyKind, ProxyOptions};
use herald_shared::config::{ConfigError, Lookup, Reader, Settings};
use herald_shared::telemetry::LogFormat;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Bound;
use std::time::Duration;

/// Prefix stripped (and the rest lowercased) to make TOML keys: `HERALD_LISTEN` -> `listen`.
const PREFIX: &str = "HERALD_";
/// Path of the optional TOML file.
const ENV_CONFIG: &str = "HERALD_CONFIG";

const ENV_LISTEN: &str = "HERALD_LISTEN";
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8000);
const ENV_NODE_ID: &str = "HERALD_NODE_ID";
/// Where the default node id comes from first (set by shells, Docker and Kubernetes).
const ENV_HOSTNAME: &str = "HOSTNAME";
const ETC_HOSTNAME: &str = "/etc/hostname";
const ENV_NATS_URL: &str = "HERALD_NATS_URL";
const ENV_ALLOW_ANONYMOUS: &str = "HERALD_ALLOW_ANONYMOUS";
const DEFAULT_ALLOW_ANONYMOUS: bool = false;
const ENV_API_KEY: &str = "HERALD_API_KEY";

const ENV_HISTORY_SIZE: &str = "HERALD_HISTORY_SIZE";
const ENV_HISTORY_TTL: &str = "HERALD_HISTORY_TTL";
const ENV_PRESENCE: &str = "HERALD_PRESENCE";
const ENV_JOIN_LEAVE: &str = "HERALD_JOIN_LEAVE";
const ENV_FORCE_PUSH_JOIN_LEAVE: &str = "HERALD_FORCE_PUSH_JOIN_LEAVE";
const ENV_ALLOW_PUBLISH: &str = "HERALD_ALLOW_PUBLISH";
const ENV_ALLOW_SUBSCRIBE: &str = "HERALD_ALLOW_SUBSCRIBE";
const ENV_ALLOW_PRESENCE: &str = "HERALD_ALLOW_PRESENCE_FOR_SUBSCRIBER";
const ENV_ALLOW_HISTORY: &str = "HERALD_ALLOW_HISTORY_FOR_SUBSCRIBER";
const ENV_RECOVERY: &str = "HERALD_RECOVERY";
const ENV_PROXY_SUBSCRIBE: &str = "HERALD_PROXY_SUBSCRIBE";
const ENV_PROXY_PUBLISH: &str = "HERALD_PROXY_PUBLISH";
const ENV_PROXY_SUB_REFRESH: &str = "HERALD_PROXY_SUB_REFRESH";
const ENV_FORCE_RECOVERY_MODE: &str = "HERALD_FORCE_RECOVERY_MODE";
const ENV_ALLOWED_DELTA_TYPES: &str = "HERALD_ALLOWED_DELTA_TYPES";
const ENV_DELTA_PUBLISH: &str = "HERALD_DELTA_PUBLISH";
const ENV_ALLOW_TAGS_FILTER: &str = "HERALD_ALLOW_TAGS_FILTER";

const ENV_MAX_CONNECTIONS: &str = "HERALD_MAX_CONNECTIONS";
const ENV_HANDSHAKE_TIMEOUT: &str = "HERALD_HANDSHAKE_TIMEOUT";
const ENV_MAX_MESSAGE_SIZE: &str = "HERALD_MAX_MESSAGE_SIZE";
/// Smallest and largest `HERALD_MAX_MESSAGE_SIZE`: a connect command with a token needs a
/// few hundred bytes; beyond 16 MiB one client could pin a lot of memory.
const MIN_MESSAGE_SIZE: usize = 128;
const MAX_MESSAGE_SIZE: usize = 16 << 20;
const ENV_MAX_CHANNELS: &str = "HERALD_MAX_CHANNELS_PER_CONNECTION";
const ENV_COMMANDS_PER_SECOND: &str = "HERALD_COMMANDS_PER_SECOND";
const ENV_QUEUE_MAX_BYTES: &str = "HERALD_QUEUE_MAX_BYTES";
/// Smallest `HERALD_QUEUE_MAX_BYTES`: below this nearly every client would count as slow.
const MIN_QUEUE_BYTES: usize = 1 << 10;
const ENV_ALLOWED_ORIGINS: &str = "HERALD_ALLOWED_ORIGINS";
const ENV_MAX_API_BODY: &str = "HERALD_MAX_API_BODY";
const ENV_USER_CONNECTION_LIMIT: &str = "HERALD_USER_CONNECTION_LIMIT";
const ENV_CONNECTION_RATE_LIMIT: &str = "HERALD_CONNECTION_RATE_LIMIT";
/// Smallest `HERALD_MAX_API_BODY`: room for one small publish command.
const MIN_API_BODY: usize = 128;

const ENV_PING_INTERVAL: &str = "HERALD_PING_INTERVAL";
const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
const ENV_PONG_TIMEOUT: &str = "HERALD_PONG_TIMEOUT";
const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(8);
/// Bounds of ping interval and pong timeout, seconds.
const MIN_PING: Duration = Duration::from_secs(1);
const MAX_PING: Duration = Duration::from_secs(3600);
const ENV_EXPIRY_GRACE: &str = "HERALD_EXPIRY_GRACE";
const DEFAULT_EXPIRY_GRACE: Duration = Duration::from_secs(5);
const MAX_EXPIRY_GRACE: Duration = Duration::from_secs(86_400);
const ENV_WRITE_INTERVAL: &str = "HERALD_WRITE_INTERVAL";
const DEFAULT_WRITE_INTERVAL: Duration = Duration::ZERO;
/// Largest `HERALD_WRITE_INTERVAL`: beyond it the added delay is no longer a batching
/// window but a stall.
const MAX_WRITE_INTERVAL: Duration = Duration::from_secs(1);
const ENV_LOG_FORMAT: &str = "HERALD_LOG_FORMAT";
const ENV_OTEL_ENDPOINT: &str = "HERALD_OTEL_ENDPOINT";
const ENV_OTEL_SAMPLE_RATIO: &str = "HERALD_OTEL_SAMPLE_RATIO";
const DEFAULT_OTEL_SAMPLE_RATIO: f64 = herald_shared::otel::DEFAULT_SAMPLE_RATIO;

/// Reads the node's configuration from `lookup` (and the file it names in
/// `HERALD_CONFIG`). On failure returns every problem found, each naming its setting.
pub fn load(lookup: &dyn Lookup) -> Result<NodeConfig, Vec<ConfigError>> {
    // Also checks RUST_LOG.
    let mut s = Settings::load(lookup, PREFIX, ENV_CONFIG);
    let listen = s.convert(ENV_LISTEN, DEFAULT_LISTEN, |t| {
        t.parse()
            .map_err(|_| "expected address:port, such as 0.0.0.0:8000 or [::]:8000".into())
    });
    let node_id = node_id(&mut s);
    let nats_urls = s.list_with(ENV_NATS_URL, check_nats_url);
    let allow_anonymous = s.bool(ENV_ALLOW_ANONYMOUS, DEFAULT_ALLOW_ANONYMOUS);
    let api_key = s.string(ENV_API_KEY);
    let default = namespace_options(&mut s, &NamespaceOptions::default());
    let named = named_namespaces(&mut s, &default);
    let limits = limits(&mut s);
    let ping_interval = s.secs_in(
        ENV_PING_INTERVAL,
        DEFAULT_PING_INTERVAL,
        MIN_PING..=MAX_PING,
    );
    let pong_timeout = s.secs_in(ENV_PONG_TIMEOUT, DEFAULT_PONG_TIMEOUT, MIN_PING..=MAX_PING);
    let expiry_grace = s.secs_in(ENV_EXPIRY_GRACE, DEFAULT_EXPIRY_GRACE, ..=MAX_EXPIRY_GRACE);
    let write_interval = s.secs_in(
        ENV_WRITE_INTERVAL,
        DEFAULT_WRITE_INTERVAL,
        ..=MAX_WRITE_INTERVAL,
    );
    let log_format = s.parse(ENV_LOG_FORMAT, LogFormat::default());
    let otel_endpoint = s.convert(ENV_OTEL_ENDPOINT, None, |t| {
        herald_shared::otel::check_endpoint(t).map(|()| Some(t.trim_end_matches('/').to_owned()))
    });
    let otel_sample_ratio = s.convert(
        ENV_OTEL_SAMPLE_RATIO,
        DEFAULT_OTEL_SAMPLE_RATIO,
        herald_shared::otel::check_sample_ratio,
    );
    let (auth, jwks) = auth::auth(&mut s);
    let cluster = super::cluster::cluster(&mut s);
    let drain = super::drain::drain(&mut s);
    let proxy = super::proxy::proxy(&mut s);
    let namespaces = Namespaces { default, named };
    proxy_switches_need_endpoints(&mut s, &namespaces, &proxy);
    s.finish()?;
    Ok(NodeConfig {
        listen,
        node_id,
        nats_url: (!nats_urls.is_empty()).then(|| nats_urls.join(",")),
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
    })
}

/// A namespace switch (`proxy_subscribe`...) without its endpoint would silently do
/// nothing, or refuse every client: refused at start-up instead.
fn proxy_switches_need_endpoints(s: &mut Settings<'_>, ns: &Namespaces, proxy: &ProxyOptions) {
    let all =
        std::iter::once(("", &ns.default)).chain(ns.named.iter().map(|(n, o)| (n.as_str(), o)));
    let mut missing: Vec<(String, ProxyKind)> = Vec::new();
    for (name, o) in all {
        for (on, kind, key) in [
            (o.proxy_subscribe, ProxyKind::Subscribe, ENV_PROXY_SUBSCRIBE),
            (o.proxy_publish, ProxyKind::Publish, ENV_PROXY_PUBLISH),
            (
                o.proxy_sub_refresh,
                ProxyKind::SubRefresh,
                ENV_PROXY_SUB_REFRESH,
            ),
        ] {
            if on && proxy.endpoint(kind).is_none() {
                let setting = if name.is_empty() {
                    key.to_owned()
                } else {
                    format!(
                        "namespaces.{name}.{}",
                        key[PREFIX.len()..].to_ascii_lowercase()
                    )
                };
                missing.push((setting, kind));
            }
        }
    }
    missing.sort_by(|a, b| a.0.cmp(&b.0));
    for (setting, kind) in missing {
        s.report(ConfigError::new(
            setting,
            "true",
            format!("needs {} to be set", super::proxy::endpoint_setting(kind)),
        ));
    }
}

/// `HERALD_NODE_ID`, else `HOSTNAME`, else `/etc/hostname`, else `node-` + 8 hex digits.
fn node_id(s: &mut Settings<'_>) -> String {
    if let Some(id) = s.value(ENV_NODE_ID) {
        return match check_node_id(&id.text) {
            Ok(()) => id.text,
            Err(reason) => {
                s.report(id.error(reason));
                String::new()
            }
        };
    }
    // A host name that would not pass as a node id is skipped, not an error: the user
    // did not write it.
    let usable = |name: &String| check_node_id(name).is_ok();
    s.lookup()
        .get(ENV_HOSTNAME)
        .map(|h| h.trim().to_owned())
        .filter(usable)
        .or_else(|| {
            std::fs::read_to_string(ETC_HOSTNAME)
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(usable)
        })
        .unwrap_or_else(|| format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
}

/// Node ids appear in replies, logs and metrics: host-name characters only.
fn check_node_id(id: &str) -> Result<(), String> {
    let ok = (1..=253).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("expected 1 to 253 letters, digits, '.', '_' or '-'".into())
    }
}

/// One NATS server: `host:port` or `nats://`, `tls://`, `ws://`, `wss://` URLs.
fn check_nats_url(url: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "expected a NATS server such as nats://127.0.0.1:4222 (comma-separated for several)";
    let rest = match url.split_once("://") {
        Some((scheme, rest)) => {
            if !["nats", "tls", "ws", "wss"].contains(&scheme.to_ascii_lowercase().as_str()) {
                return Err(EXPECTED.into());
            }
            rest
        }
        None => url,
    };
    if rest.is_empty() || rest.starts_with(['/', ':']) || url.contains(char::is_whitespace) {
        return Err(EXPECTED.into());
    }
    Ok(url.to_owned())
}

/// One allowed Origin: `*`, or `scheme://host[:port]` with at most one `*` in the host.
/// An Origin header never has a path, so a trailing `/` would never match: refused.
fn check_origin(origin: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected an origin such as https://app.example.com or https://*.example.com (no path, no trailing slash)";
    if origin == "*" {
        return Ok(origin.to_owned());
    }
    let Some((scheme, host)) = origin.split_once("://") else {
        return Err(EXPECTED.into());
    };
    let ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !host.is_empty()
        && !host.contains(['/', '?', '#'])
        && !host.contains(char::is_whitespace)
        && host.matches('*').count() <= 1;
    if ok {
        Ok(origin.to_owned())
    } else {
        Err(EXPECTED.into())
    }
}

/// Channel options read through `r`, each defaulting to `d`'s: the default namespace from
/// the environment and file top level, a named one from its `[namespaces.NAME]` table.
fn namespace_options(r: &mut impl Reader, d: &NamespaceOptions) -> NamespaceOptions {
    NamespaceOptions {
        history_size: r.int(ENV_HISTORY_SIZE, d.history_size, ..),
        history_ttl: r.secs(ENV_HISTORY_TTL, d.history_ttl),
        presence: r.bool(ENV_PRESENCE, d.presence),
        join_leave: r.bool(ENV_JOIN_LEAVE, d.join_leave),
        force_push_join_leave: r.bool(ENV_FORCE_PUSH_JOIN_LEAVE, d.force_push_join_leave),
        allow_publish: r.bool(ENV_ALLOW_PUBLISH, d.allow_publish),
        allow_subscribe: r.bool(ENV_ALLOW_SUBSCRIBE, d.allow_subscribe),
        allow_presence: r.bool(ENV_ALLOW_PRESENCE, d.allow_presence),
        allow_history: r.bool(ENV_ALLOW_HISTORY, d.allow_history),
        recovery: r.bool(ENV_RECOVERY, d.recovery),
        proxy_subscribe: r.bool(ENV_PROXY_SUBSCRIBE, d.proxy_subscribe),
        proxy_publish: r.bool(ENV_PROXY_PUBLISH, d.proxy_publish),
        proxy_sub_refresh: r.bool(ENV_PROXY_SUB_REFRESH, d.proxy_sub_refresh),
        force_recovery_mode: r.parse(ENV_FORCE_RECOVERY_MODE, d.force_recovery_mode),
        allowed_delta_types: match r.raw(ENV_ALLOWED_DELTA_TYPES) {
            // Unset: inherited; set (even to nothing): exactly what it says.
            None => d.allowed_delta_types.clone(),
            Some(_) => r.list_with(ENV_ALLOWED_DELTA_TYPES, str::parse),
        },
        delta_publish: r.bool(ENV_DELTA_PUBLISH, d.delta_publish),
        allow_tags_filter: r.bool(ENV_ALLOW_TAGS_FILTER, d.allow_tags_filter),
    }
}

/// The file's `[namespaces.NAME]` tables, each inheriting the default namespace.
fn named_namespaces(
    s: &mut Settings<'_>,
    default: &NamespaceOptions,
) -> HashMap<String, NamespaceOptions> {
    let mut named = HashMap::new();
    for name in s.namespace_names() {
        // Read even a badly named table, so its own mistakes are reported too.
        let options = namespace_options(&mut s.namespace(&name), default);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if valid {
            named.insert(name, options);
        } else {
            s.report(ConfigError::new(
                format!("namespaces.{name}"),
                "",
                "a namespace name may contain only letters, digits, '_' and '-'",
            ));
        }
    }
    named
}

fn limits(s: &mut Settings<'_>) -> Limits {
    let d = Limits::default();
    Limits {
        max_connections: s.int(ENV_MAX_CONNECTIONS, d.max_connections, 1..),
        handshake_timeout: s.secs_in(
            ENV_HANDSHAKE_TIMEOUT,
            d.handshake_timeout,
            (Bound::Excluded(Duration::ZERO), Bound::Included(MAX_PING)),
        ),
        max_message_size: s.bytes(
            ENV_MAX_MESSAGE_SIZE,
            d.max_message_size,
            MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE,
        ),
        max_channels_per_connection: s.int(ENV_MAX_CHANNELS, d.max_channels_per_connection, 1..),
        commands_per_second: s.int(ENV_COMMANDS_PER_SECOND, d.commands_per_second, ..),
        queue_max_bytes: s.bytes(ENV_QUEUE_MAX_BYTES, d.queue_max_bytes, MIN_QUEUE_BYTES..),
        allowed_origins: s.list_with(ENV_ALLOWED_ORIGINS, check_origin),
        max_api_body: s.bytes(ENV_MAX_API_BODY, d.max_api_body, MIN_API_BODY..),
        user_connection_limit: s.int(ENV_USER_CONNECTION_LIMIT, d.user_connection_limit, ..),
        connection_rate_limit: s.int(ENV_CONNECTION_RATE_LIMIT, d.connection_rate_limit, ..),
    }
}

mod auth;
#[cfg(test)]
mod tests;
