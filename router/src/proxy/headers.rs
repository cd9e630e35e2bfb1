//! Header rules of a proxy (RFC 9110 §7.6.1): hop-by-hop headers stay on their hop, and
//! the node learns who the client is from `X-Forwarded-For` and `X-Forwarded-Proto`.

use crate::cidr::Cidr;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers that describe one connection, never forwarded as they are.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, those the `Connection` header names included. `Upgrade`
/// is hop-by-hop too; the caller puts it back when it forwards an upgrade.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade_websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        });
    connection_upgrade && upgrade_websocket
}

/// Puts back the headers of a WebSocket upgrade after [`strip_hop_by_hop`].
pub fn set_upgrade(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// Appends the client's address to `X-Forwarded-For` (keeping what earlier proxies
/// wrote) and sets `X-Forwarded-Proto`: `https` when the router itself terminated TLS
/// (`tls`), whatever the client sent; otherwise `http` unless a proxy in front of us (a
/// TLS terminator) already said which scheme the client used.
pub fn add_forwarded(headers: &mut HeaderMap, client: SocketAddr, tls: bool) {
    let ip = client.ip().to_string();
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let value = if prior.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if tls {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    } else if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

/// The client's address: `peer` itself, unless `peer` is one of the `trusted` proxies;
/// then the right-most `X-Forwarded-For` entry that is not a trusted proxy (entries to its
/// left were written by the client or by proxies we do not know, so they prove nothing).
/// When every entry is trusted, the left-most one; when the header is missing or garbled,
/// `peer`.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer.ip()) {
        return peer.ip();
    }
    let mut entries = Vec::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        let Ok(text) = value.to_str() else {
            return peer.ip();
        };
        for entry in text.split(',') {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) => entries.push(ip),
                // A garbled entry: nothing left of it can be trusted, stop there.
                Err(_) => entries.clear(),
            }
        }
    }
    entries
        .iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .or_else(|| entries.first().copied())
        .unwrap_or(peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("sec-websocket-key", "abc"),
            ("cookie", "a=b"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["sec-websocket-key", "cookie"]);
    }

    #[test]
    fn recognises_websocket_upgrades() {
        assert!(is_websocket_upgrade(&map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket")
        ])));
        assert!(!is_websocket_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(!is_websocket_upgrade(&map(&[
            ("connection", "upgrade"),
            ("upgrade", "h2c")
        ])));
    }

    #[test]
    fn client_ip_believes_only_trusted_peers() {
        let trusted = [
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("192.0.2.1").unwrap(),
        ];
        let h = map(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.3")]);
        let untrusted_peer: SocketAddr = "198.51.100.4:9".parse().unwrap();
        assert_eq!(client_ip(untrusted_peer, &h, &trusted), untrusted_peer.ip());
        let proxy: SocketAddr = "192.0.2.1:9".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted).to_string(),
            "203.0.113.9",
            "right-most untrusted, not the spoofable left-most"
        );
        assert_eq!(client_ip(proxy, &h, &[]), proxy.ip(), "nothing trusted");
        let all_trusted = map(&[
            ("x-forwarded-for", "10.0.0.9"),
            ("x-forwarded-for", "10.0.0.3"),
        ]);
        assert_eq!(
            client_ip(proxy, &all_trusted, &trusted).to_string(),
            "10.0.0.9"
        );
        let garbled = map(&[("x-forwarded-for", "203.0.113.9, junk")]);
        assert_eq!(client_ip(proxy, &garbled, &trusted), proxy.ip());
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy.ip());
    }

    #[test]
    fn forwarded_headers_append_and_keep_the_scheme() {
        let client: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, client, false);
        assert_eq!(h[&X_FORWARDED_FOR], "192.0.2.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");

        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        add_forwarded(&mut h, client, false);
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.9, 192.0.2.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");

        // TLS at the router: the scheme is ours to say, a client's claim is replaced.
        let mut h = map(&[("x-forwarded-proto", "http")]);
        add_forwarded(&mut h, client, true);
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
    }
}
