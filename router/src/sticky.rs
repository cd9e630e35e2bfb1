//! The stickiness key of a request, and the cookie that remembers it.
//!
//! The key is, in order: the router's cookie; else the configured query parameter; else
//! the configured header; else, by `HERALD_ROUTER_STICKY_FALLBACK`, a random key
//! (`random`, the default: clients behind one NAT spread over the nodes, and the cookie
//! keeps each where it landed) or the client's IP address (`address`; not its port, which
//! changes on every reconnect). Only the key's 64-bit hash matters for routing, and the cookie holds
//! exactly that hash in hex: a client that arrived by address keeps its node through the
//! cookie even when its address changes (a phone moving networks), and the cookie never
//! reveals the header or address it came from.

use crate::config::{StickyConfig, StickyFallback};
use crate::ring;
use hyper::header::{HeaderMap, HeaderValue, COOKIE};
use hyper::Uri;
use std::net::IpAddr;

/// Where a key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The router's cookie.
    Cookie,
    /// The configured query parameter.
    Query,
    /// The configured header.
    Header,
    /// The client's IP address.
    Address,
    /// Drawn at random for a client that brought no key.
    Random,
}

impl KeySource {
    /// The name in trace spans (`cookie`, `query`, `header`, `address`, `random`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Cookie => "cookie",
            KeySource::Query => "query",
            KeySource::Header => "header",
            KeySource::Address => "address",
            KeySource::Random => "random",
        }
    }
}

/// A request's stickiness key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The hash rendezvous scores with.
    pub hash: u64,
    /// Where it came from; the cookie is set unless it came from the cookie.
    pub source: KeySource,
}

/// The key of a request from `client` (its address as [`crate::proxy::headers::client_ip`]
/// found it).
pub fn key(config: &StickyConfig, headers: &HeaderMap, uri: &Uri, client: IpAddr) -> Key {
    if let Some(hash) = cookie_value(headers, &config.cookie).and_then(parse_cookie) {
        return Key {
            hash,
            source: KeySource::Cookie,
        };
    }
    let from_query = config
        .query
        .as_deref()
        .and_then(|name| query_value(uri, name));
    if let Some(v) = from_query {
        return Key {
            hash: ring::hash(v.as_bytes()),
            source: KeySource::Query,
        };
    }
    let from_header = config
        .header
        .as_ref()
        .and_then(|name| headers.get(name))
        .map(HeaderValue::as_bytes)
        .filter(|v| !v.is_empty());
    if let Some(v) = from_header {
        return Key {
            hash: ring::hash(v),
            source: KeySource::Header,
        };
    }
    match config.fallback {
        StickyFallback::Random => Key {
            hash: rand::random(),
            source: KeySource::Random,
        },
        StickyFallback::Address => Key {
            hash: ring::hash(client.to_string().as_bytes()),
            source: KeySource::Address,
        },
    }
}

/// The `Set-Cookie` value that pins `key`.
pub fn set_cookie(config: &StickyConfig, key: &Key) -> HeaderValue {
    let mut text = format!(
        "{}={:016x}; Path=/; HttpOnly; SameSite=Lax",
        config.cookie, key.hash
    );
    if !config.cookie_max_age.is_zero() {
        text.push_str(&format!("; Max-Age={}", config.cookie_max_age.as_secs()));
    }
    // The name was checked to be a token and the value is hex: always a valid header.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The cookie's value: exactly 16 hex digits, or it is not ours (or was tampered with).
pub fn parse_cookie(value: &str) -> Option<u64> {
    (value.len() == 16)
        .then(|| u64::from_str_radix(value, 16).ok())
        .flatten()
}

/// The value of cookie `name` in any `Cookie` header.
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// The raw (still percent-encoded) value of query parameter `name`, if not empty.
/// Undecoded is fine: the same client sends the same bytes.
fn query_value<'u>(uri: &'u Uri, name: &str) -> Option<&'u str> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderName;

    fn config() -> StickyConfig {
        StickyConfig {
            query: Some("room".into()),
            header: Some(HeaderName::from_static("x-user")),
            fallback: StickyFallback::Address,
            ..StickyConfig::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const CLIENT: &str = "192.0.2.7";

    #[test]
    fn cookie_wins_over_everything() {
        let h = headers(&[
            ("cookie", "a=b; herald_node=00000000000000ff; c=d"),
            ("x-user", "alice"),
        ]);
        let uri: Uri = "/connection/websocket?room=r1".parse().unwrap();
        let k = key(&config(), &h, &uri, CLIENT.parse().unwrap());
        assert_eq!(
            k,
            Key {
                hash: 255,
                source: KeySource::Cookie
            }
        );
    }

    #[test]
    fn falls_back_to_query_then_header_then_address() {
        let c = config();
        let client: IpAddr = CLIENT.parse().unwrap();
        let bad_cookie = headers(&[("cookie", "herald_node=zz"), ("x-user", "alice")]);
        let uri: Uri = "/ws?x=1&room=r1".parse().unwrap();
        let k = key(&c, &bad_cookie, &uri, client);
        assert_eq!((k.source, k.hash), (KeySource::Query, ring::hash(b"r1")));

        let plain: Uri = "/ws?room=".parse().unwrap();
        let k = key(&c, &bad_cookie, &plain, client);
        assert_eq!(
            (k.source, k.hash),
            (KeySource::Header, ring::hash(b"alice"))
        );

        let k = key(&c, &HeaderMap::new(), &plain, client);
        assert_eq!(
            (k.source, k.hash),
            (KeySource::Address, ring::hash(b"192.0.2.7"))
        );
        let again = key(&c, &HeaderMap::new(), &plain, client);
        assert_eq!(again.hash, k.hash, "one address, one key");
    }

    #[test]
    fn without_a_key_random_mode_draws_a_fresh_one_each_time() {
        let c = StickyConfig {
            fallback: StickyFallback::Random,
            ..config()
        };
        let client: IpAddr = CLIENT.parse().unwrap();
        let plain = Uri::from_static("/ws");
        let keys: std::collections::HashSet<u64> = (0..20)
            .map(|_| {
                let k = key(&c, &HeaderMap::new(), &plain, client);
                assert_eq!(k.source, KeySource::Random);
                k.hash
            })
            .collect();
        assert!(keys.len() > 1, "20 draws for one address gave one key");
        // A key the client brings still wins.
        let with_header = headers(&[("x-user", "alice")]);
        assert_eq!(
            key(&c, &with_header, &plain, client).source,
            KeySource::Header
        );
    }

    #[test]
    fn the_cookie_round_trips_the_hash() {
        let c = StickyConfig::default();
        let k = Key {
            hash: 0x0123_4567_89ab_cdef,
            source: KeySource::Address,
        };
        let set = set_cookie(&c, &k);
        let text = set.to_str().unwrap();
        assert!(
            text.starts_with("herald_node=0123456789abcdef; Path=/; HttpOnly"),
            "{text}"
        );
        assert!(text.ends_with("Max-Age=86400"), "{text}");
        let back = key(
            &c,
            &headers(&[("cookie", "herald_node=0123456789abcdef")]),
            &Uri::from_static("/"),
            CLIENT.parse().unwrap(),
        );
        assert_eq!(back.hash, k.hash);
        assert_eq!(parse_cookie("123"), None);
        assert_eq!(parse_cookie("0123456789abcdeg"), None);
    }
}
