//! Backend proxy settings: which client events the node asks the application's backend
//! about over HTTP (Centrifugo's "proxy"), how long it waits, and which headers of the
//! WebSocket upgrade it forwards.
//!
//! Each proxy is on when its endpoint is set. Subscribe, publish and sub_refresh are
//! further switched per namespace (`proxy_subscribe`, `proxy_publish`,
//! `proxy_sub_refresh`, see [`super::NamespaceOptions`]); connect, refresh and rpc apply
//! to every connection.

use herald_shared::config::{Reader, Settings};
use std::ops::Bound;
use std::time::Duration;

const ENV_CONNECT: &str = "HERALD_PROXY_CONNECT_ENDPOINT";
const ENV_REFRESH: &str = "HERALD_PROXY_REFRESH_ENDPOINT";
const ENV_SUBSCRIBE: &str = "HERALD_PROXY_SUBSCRIBE_ENDPOINT";
const ENV_PUBLISH: &str = "HERALD_PROXY_PUBLISH_ENDPOINT";
const ENV_SUB_REFRESH: &str = "HERALD_PROXY_SUB_REFRESH_ENDPOINT";
const ENV_RPC: &str = "HERALD_PROXY_RPC_ENDPOINT";
const ENV_TIMEOUT: &str = "HERALD_PROXY_TIMEOUT";
const ENV_HTTP_HEADERS: &str = "HERALD_PROXY_HTTP_HEADERS";
const ENV_MAX_CONCURRENCY: &str = "HERALD_PROXY_MAX_CONCURRENCY";
/// Longest `HERALD_PROXY_TIMEOUT`: a client waits this long for an answer, and beyond a
/// minute a value is surely a unit mistake.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Headers never forwarded even when listed: they describe the upgrade itself, or would
/// let a client steer the node's own request (`host`, `content-length`).
const NEVER_FORWARDED: [&str; 10] = [
    "host",
    "connection",
    "upgrade",
    "content-length",
    "content-type",
    "transfer-encoding",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "te",
];

/// Which proxy a call is for: the `type` label of the proxy metrics, and the setting
/// that names its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// `connect`: a client without a token connects.
    Connect,
    /// `refresh`: a proxied connection reached its `expire_at`.
    Refresh,
    /// `subscribe`: a client subscribes in a namespace with `proxy_subscribe`.
    Subscribe,
    /// `publish`: a client publishes in a namespace with `proxy_publish`.
    Publish,
    /// `sub_refresh`: a proxied subscription reached its `expire_at`.
    SubRefresh,
    /// `rpc`: a client's `rpc` command.
    Rpc,
}

impl ProxyKind {
    /// Every kind, for metrics set-up and tables.
    pub const ALL: [ProxyKind; 6] = [
        ProxyKind::Connect,
        ProxyKind::Refresh,
        ProxyKind::Subscribe,
        ProxyKind::Publish,
        ProxyKind::SubRefresh,
        ProxyKind::Rpc,
    ];

    /// The metrics label.
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Connect => "connect",
            ProxyKind::Refresh => "refresh",
            ProxyKind::Subscribe => "subscribe",
            ProxyKind::Publish => "publish",
            ProxyKind::SubRefresh => "sub_refresh",
            ProxyKind::Rpc => "rpc",
        }
    }

    fn setting(self) -> &'static str {
        match self {
            ProxyKind::Connect => ENV_CONNECT,
            ProxyKind::Refresh => ENV_REFRESH,
            ProxyKind::Subscribe => ENV_SUBSCRIBE,
            ProxyKind::Publish => ENV_PUBLISH,
            ProxyKind::SubRefresh => ENV_SUB_REFRESH,
            ProxyKind::Rpc => ENV_RPC,
        }
    }
}

/// How the node calls the application's backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyOptions {
    /// `HERALD_PROXY_CONNECT_ENDPOINT`: `http://` URL called when a client connects
    /// without a token. Default unset (tokens only).
    pub connect: Option<String>,
    /// `HERALD_PROXY_REFRESH_ENDPOINT`: called when a connection the connect proxy gave an
    /// `expire_at` reaches it, instead of waiting for the client's refresh token.
    /// Default unset (the connection ends at `expire_at` plus `HERALD_EXPIRY_GRACE`).
    pub refresh: Option<String>,
    /// `HERALD_PROXY_SUBSCRIBE_ENDPOINT`: called on subscribe (without a subscription
    /// token) in namespaces with `proxy_subscribe`. Default unset.
    pub subscribe: Option<String>,
    /// `HERALD_PROXY_PUBLISH_ENDPOINT`: called on a client publish in namespaces with
    /// `proxy_publish`. Default unset.
    pub publish: Option<String>,
    /// `HERALD_PROXY_SUB_REFRESH_ENDPOINT`: called when a proxied subscription in a
    /// namespace with `proxy_sub_refresh` reaches its `expire_at`. Default unset.
    pub sub_refresh: Option<String>,
    /// `HERALD_PROXY_RPC_ENDPOINT`: answers the clients' `rpc` commands. Default unset
    /// (`rpc` answers error 104 "method not found").
    pub rpc: Option<String>,
    /// `HERALD_PROXY_TIMEOUT` (seconds): the whole backend call, waiting for a free slot
    /// included. Default 1 (Centrifugo's default).
    pub timeout: Duration,
    /// `HERALD_PROXY_HTTP_HEADERS`: comma-separated names of upgrade request headers
    /// forwarded to the backend (case-insensitive, e.g. `Cookie,Authorization`).
    /// Default none.
    pub http_headers: Vec<String>,
    /// `HERALD_PROXY_MAX_CONCURRENCY`: backend calls in flight per node; more wait for a
    /// free slot within the timeout. Default 256.
    pub max_concurrency: usize,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            connect: None,
            refresh: None,
            subscribe: None,
            publish: None,
            sub_refresh: None,
            rpc: None,
            timeout: Duration::from_secs(1),
            http_headers: Vec::new(),
            max_concurrency: 256,
        }
    }
}

impl ProxyOptions {
    /// The endpoint of `kind`, when that proxy is on.
    pub fn endpoint(&self, kind: ProxyKind) -> Option<&str> {
        match kind {
            ProxyKind::Connect => self.connect.as_deref(),
            ProxyKind::Refresh => self.refresh.as_deref(),
            ProxyKind::Subscribe => self.subscribe.as_deref(),
            ProxyKind::Publish => self.publish.as_deref(),
            ProxyKind::SubRefresh => self.sub_refresh.as_deref(),
            ProxyKind::Rpc => self.rpc.as_deref(),
        }
    }

    /// Whether any proxy is on.
    pub fn any(&self) -> bool {
        ProxyKind::ALL.iter().any(|k| self.endpoint(*k).is_some())
    }

    /// Whether a proxy other than connect is on: then the forwarded headers stay with
    /// the connection after `connect`.
    pub fn after_connect(&self) -> bool {
        ProxyKind::ALL
            .iter()
            .any(|k| *k != ProxyKind::Connect && self.endpoint(*k).is_some())
    }
}

/// Reads the proxy settings; bad values are reported to `s`.
pub(super) fn proxy(s: &mut Settings<'_>) -> ProxyOptions {
    let d = ProxyOptions::default();
    let mut endpoint = |kind: ProxyKind| {
        let v = s.value(kind.setting())?;
        match check_endpoint(&v.text) {
            Ok(()) => Some(v.text),
            Err(reason) => {
                s.report(v.error(reason));
                None
            }
        }
    };
    let connect = endpoint(ProxyKind::Connect);
    let refresh = endpoint(ProxyKind::Refresh);
    let subscribe = endpoint(ProxyKind::Subscribe);
    let publish = endpoint(ProxyKind::Publish);
    let sub_refresh = endpoint(ProxyKind::SubRefresh);
    let rpc = endpoint(ProxyKind::Rpc);
    ProxyOptions {
        connect,
        refresh,
        subscribe,
        publish,
        sub_refresh,
        rpc,
        timeout: s.secs_in(
            ENV_TIMEOUT,
            d.timeout,
            (
                Bound::Excluded(Duration::ZERO),
                Bound::Included(MAX_TIMEOUT),
            ),
        ),
        http_headers: s.list_with(ENV_HTTP_HEADERS, check_header_name),
        max_concurrency: s.int(ENV_MAX_CONCURRENCY, d.max_concurrency, 1..=65_536),
    }
}

/// Names the endpoint setting a namespace switch needs, for the check that a
/// `proxy_*` switch is not on without its endpoint.
pub(super) fn endpoint_setting(kind: ProxyKind) -> &'static str {
    kind.setting()
}

/// An `http://host[:port]/path` URL. HTTPS is refused with the reason: the node has no
/// TLS client (a backend on another host is reached through a local TLS sidecar).
fn check_endpoint(url: &str) -> Result<(), String> {
    if url.len() > 8 && url[..8].eq_ignore_ascii_case("https://") {
        return Err("https:// is not supported (the node has no TLS client): use http:// to the backend or a local TLS sidecar".into());
    }
    let uri: hyper::Uri = url.parse().map_err(|_| {
        "expected an http:// URL such as http://127.0.0.1:3000/centrifugo/connect".to_owned()
    })?;
    if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
        return Err(
            "expected an http:// URL such as http://127.0.0.1:3000/centrifugo/connect".into(),
        );
    }
    Ok(())
}

/// A header name (RFC 9110 token), lowercased; the upgrade's own headers are refused.
fn check_header_name(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    if hyper::header::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        return Err("expected a header name such as Cookie or Authorization".into());
    }
    if NEVER_FORWARDED.contains(&lower.as_str()) {
        return Err(format!(
            "{name} belongs to the upgrade itself and is never forwarded"
        ));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::config::MapLookup;

    fn read(pairs: &[(&str, &str)]) -> Result<ProxyOptions, String> {
        let lookup = MapLookup::from_pairs(pairs);
        let mut s = Settings::new(&lookup, "HERALD_");
        let p = proxy(&mut s);
        s.finish()
            .map(|()| p)
            .map_err(|e| herald_shared::config::format_errors(&e))
    }

    #[test]
    fn defaults_and_overrides() {
        let d = read(&[]).unwrap();
        assert_eq!(d, ProxyOptions::default());
        assert!(!d.any());
        let p = read(&[
            (
                "HERALD_PROXY_CONNECT_ENDPOINT",
                "http://127.0.0.1:3000/connect",
            ),
            ("HERALD_PROXY_RPC_ENDPOINT", "http://backend/rpc"),
            ("HERALD_PROXY_TIMEOUT", "0.25"),
            ("HERALD_PROXY_HTTP_HEADERS", "Cookie, Authorization"),
            ("HERALD_PROXY_MAX_CONCURRENCY", "8"),
        ])
        .unwrap();
        assert_eq!(
            p.endpoint(ProxyKind::Connect),
            Some("http://127.0.0.1:3000/connect")
        );
        assert!(p.any() && p.after_connect());
        assert_eq!(p.timeout, Duration::from_millis(250));
        assert_eq!(p.http_headers, ["cookie", "authorization"]);
        assert_eq!(p.max_concurrency, 8);
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (name, value) in [
            ("HERALD_PROXY_CONNECT_ENDPOINT", "https://backend/connect"),
            ("HERALD_PROXY_RPC_ENDPOINT", "backend/rpc"),
            ("HERALD_PROXY_PUBLISH_ENDPOINT", "ftp://backend/x"),
            ("HERALD_PROXY_TIMEOUT", "0"),
            ("HERALD_PROXY_TIMEOUT", "120"),
            ("HERALD_PROXY_HTTP_HEADERS", "Cookie,bad header"),
            ("HERALD_PROXY_HTTP_HEADERS", "Host"),
            ("HERALD_PROXY_MAX_CONCURRENCY", "0"),
        ] {
            let err = read(&[(name, value)]).unwrap_err();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
    }
}
