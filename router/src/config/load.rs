//! Reads a [`RouterConfig`] from `HERALD_ROUTER_*` settings and the optional TOML file
//! named by `HERALD_ROUTER_CONFIG`, collecting every bad value (see
//! `herald_shared::config`).
//!
//! Defaults of grouped settings are the `Default` impls in the parent module, so each
//! lives in one place; the others are the `DEFAULT_*` constants here.

use super::{
    DiscoveryConfig, HealthConfig, Limits, NatsDiscovery, OtelConfig, ProxyConfig, RouterConfig,
    StickyConfig, StickyFallback, TlsConfig,
};
use crate::cidr::Cidr;
use herald_shared::config::{ConfigError, Lookup, Reader, Settings};
use herald_shared::telemetry::LogFormat;
use hyper::header::HeaderName;
use std::net::SocketAddr;
use std::ops::Bound;
use std::time::Duration;

/// Prefix stripped (and the rest lowercased) to make TOML keys: `HERALD_ROUTER_LISTEN` ->
/// `listen`.
const PREFIX: &str = "HERALD_ROUTER_";
/// Path of the optional TOML file.
const ENV_CONFIG: &str = "HERALD_ROUTER_CONFIG";

const ENV_LISTEN: &str = "HERALD_ROUTER_LISTEN";
const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8080);
const ENV_LOG_FORMAT: &str = "HERALD_ROUTER_LOG_FORMAT";
const ENV_OTEL_ENDPOINT: &str = "HERALD_ROUTER_OTEL_ENDPOINT";
const ENV_OTEL_SAMPLE_RATIO: &str = "HERALD_ROUTER_OTEL_SAMPLE_RATIO";

const ENV_NODES: &str = "HERALD_ROUTER_NODES";
const ENV_DNS: &str = "HERALD_ROUTER_DNS";
const ENV_DNS_INTERVAL: &str = "HERALD_ROUTER_DNS_INTERVAL";
const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(5);
const ENV_NATS_URL: &str = "HERALD_ROUTER_NATS_URL";
const ENV_NATS_SUBJECT: &str = "HERALD_ROUTER_NATS_SUBJECT";
/// The subject nodes announce themselves on unless `HERALD_ROUTER_NATS_SUBJECT` says
/// otherwise. Configuration owns it, so loading needs nothing from discovery.
pub const DEFAULT_NATS_SUBJECT: &str = "herald.node.announce";
const ENV_NATS_TTL: &str = "HERALD_ROUTER_NATS_TTL";
const DEFAULT_NATS_TTL: Duration = Duration::from_secs(10);

const ENV_COOKIE: &str = "HERALD_ROUTER_COOKIE";
const ENV_COOKIE_MAX_AGE: &str = "HERALD_ROUTER_COOKIE_MAX_AGE";
const ENV_STICKY_QUERY: &str = "HERALD_ROUTER_STICKY_QUERY";
const ENV_STICKY_HEADER: &str = "HERALD_ROUTER_STICKY_HEADER";
const ENV_STICKY_FALLBACK: &str = "HERALD_ROUTER_STICKY_FALLBACK";
const ENV_TRUSTED_PROXIES: &str = "HERALD_ROUTER_TRUSTED_PROXIES";

const ENV_HEALTH_PATH: &str = "HERALD_ROUTER_HEALTH_PATH";
const ENV_HEALTH_INTERVAL: &str = "HERALD_ROUTER_HEALTH_INTERVAL";
const ENV_HEALTH_TIMEOUT: &str = "HERALD_ROUTER_HEALTH_TIMEOUT";
const ENV_HEALTH_RISE: &str = "HERALD_ROUTER_HEALTH_RISE";
const ENV_HEALTH_FALL: &str = "HERALD_ROUTER_HEALTH_FALL";
/// Largest rise or fall threshold: beyond this a node would take minutes to change state.
const MAX_THRESHOLD: u32 = 100;

const ENV_CONNECT_TIMEOUT: &str = "HERALD_ROUTER_CONNECT_TIMEOUT";
const ENV_RETRIES: &str = "HERALD_ROUTER_RETRIES";
/// Most retries: every one delays the client; beyond this, give up and let it back off.
const MAX_RETRIES: usize = 10;
const ENV_IDLE_TIMEOUT: &str = "HERALD_ROUTER_IDLE_TIMEOUT";
const ENV_RETRY_AFTER: &str = "HERALD_ROUTER_RETRY_AFTER";

const ENV_MAX_CONNECTIONS: &str = "HERALD_ROUTER_MAX_CONNECTIONS";
const ENV_HANDSHAKE_TIMEOUT: &str = "HERALD_ROUTER_HANDSHAKE_TIMEOUT";
const ENV_SHUTDOWN_GRACE: &str = "HERALD_ROUTER_SHUTDOWN_GRACE";
const ENV_NODE_CONNECT_RATE: &str = "HERALD_ROUTER_NODE_CONNECT_RATE";
const ENV_NODE_CONNECT_BURST: &str = "HERALD_ROUTER_NODE_CONNECT_BURST";
/// PEM files of the router's certificate chain and private key (both or neither).
pub const ENV_TLS_CERT: &str = "HERALD_ROUTER_TLS_CERT";
/// See [`ENV_TLS_CERT`].
pub const ENV_TLS_KEY: &str = "HERALD_ROUTER_TLS_KEY";
/// Most upgrades a second per node: far beyond what a node accepts, so only a typo.
const MAX_CONNECT_RATE: u32 = 10_000_000;

/// Bound of every duration setting: beyond a day a value is surely a typo.
const MAX_SECS: Duration = Duration::from_secs(86_400);
/// Above zero and at most [`MAX_SECS`].
const POSITIVE: (Bound<Duration>, Bound<Duration>) =
    (Bound::Excluded(Duration::ZERO), Bound::Included(MAX_SECS));

/// Reads the router's configuration from `lookup` (and the file it names in
/// `HERALD_ROUTER_CONFIG`). On failure returns every problem found, each naming its setting.
pub fn load(lookup: &dyn Lookup) -> Result<RouterConfig, Vec<ConfigError>> {
    // Also checks RUST_LOG.
    let mut s = Settings::load(lookup, PREFIX, ENV_CONFIG);
    let listen = s.convert(ENV_LISTEN, DEFAULT_LISTEN, |t| {
        t.parse()
            .map_err(|_| "expected address:port, such as 0.0.0.0:8080 or [::]:8080".into())
    });
    let log_format = s.parse(ENV_LOG_FORMAT, LogFormat::default());
    let discovery = discovery(&mut s);
    let sticky = sticky(&mut s);
    let health = health(&mut s);
    let proxy = proxy(&mut s);
    let limits = limits(&mut s);
    let tls = tls(&mut s);
    let otel = otel(&mut s);
    s.finish()?;
    Ok(RouterConfig {
        listen,
        log_format,
        discovery,
        sticky,
        health,
        proxy,
        limits,
        tls,
        otel,
    })
}

/// The trace exporter's endpoint and sampling, checked as the node checks its own.
fn otel(s: &mut Settings<'_>) -> OtelConfig {
    let d = OtelConfig::default();
    let endpoint = s.convert(ENV_OTEL_ENDPOINT, d.endpoint, |t| {
        herald_shared::otel::check_endpoint(t).map(|()| Some(t.trim_end_matches('/').to_owned()))
    });
    let sample_ratio = s.convert(
        ENV_OTEL_SAMPLE_RATIO,
        d.sample_ratio,
        herald_shared::otel::check_sample_ratio,
    );
    OtelConfig {
        endpoint,
        sample_ratio,
    }
}

/// Both TLS files or neither; whether they hold a usable certificate is checked when the
/// router loads them (`tls::Terminator::load`), so the same checks run on SIGHUP.
fn tls(s: &mut Settings<'_>) -> Option<TlsConfig> {
    let cert = s.string(ENV_TLS_CERT);
    let key = s.string(ENV_TLS_KEY);
    match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsConfig {
            cert: cert.into(),
            key: key.into(),
        }),
        (None, None) => None,
        (cert, _) => {
            let (missing, given) = if cert.is_some() {
                (ENV_TLS_KEY, ENV_TLS_CERT)
            } else {
                (ENV_TLS_CERT, ENV_TLS_KEY)
            };
            s.report(ConfigError::new(
                missing,
                "",
                format!("{given} is set, so {missing} must be too (TLS needs both files)"),
            ));
            None
        }
    }
}

fn discovery(s: &mut Settings<'_>) -> DiscoveryConfig {
    // Items seen, bad ones included: "no nodes" only when none were given at all.
    let mut given = 0;
    let mut check = |t: &str| {
        given += 1;
        check_host_port(t)
    };
    let nodes = s.list_with(ENV_NODES, &mut check);
    let dns = s.list_with(ENV_DNS, &mut check);
    let dns_interval = s.secs_in(ENV_DNS_INTERVAL, DEFAULT_DNS_INTERVAL, POSITIVE);
    let urls = s.list_with(ENV_NATS_URL, |u| {
        u.parse::<async_nats::ServerAddr>()
            .map(|_| u.to_owned())
            .map_err(|e| format!("not a NATS server address: {e}"))
    });
    let subject = s.convert(ENV_NATS_SUBJECT, DEFAULT_NATS_SUBJECT.to_owned(), |t| {
        let ok = !t.starts_with('.')
            && !t.ends_with('.')
            && !t.contains("..")
            && !t.contains(|c: char| c.is_whitespace() || c == '*' || c == '>');
        ok.then(|| t.to_owned())
            .ok_or_else(|| "expected a NATS subject such as herald.node.announce".into())
    });
    let ttl = s.secs_in(ENV_NATS_TTL, DEFAULT_NATS_TTL, POSITIVE);
    let nats = (!urls.is_empty()).then(|| NatsDiscovery {
        url: urls.join(","),
        subject,
        ttl,
    });
    if nodes.is_empty() && dns.is_empty() && nats.is_none() && given == 0 {
        s.report(ConfigError::new(
            ENV_NODES,
            "",
            format!("no nodes to route to: set {ENV_NODES}, {ENV_DNS} or {ENV_NATS_URL}"),
        ));
    }
    DiscoveryConfig {
        nodes,
        dns,
        dns_interval,
        nats,
    }
}

fn sticky(s: &mut Settings<'_>) -> StickyConfig {
    let d = StickyConfig::default();
    let cookie = s.convert(ENV_COOKIE, d.cookie, |t| {
        t.bytes()
            .all(is_token_byte)
            .then(|| t.to_owned())
            .ok_or_else(|| "expected a cookie name: letters, digits and !#$%&'*+-.^_`|~".into())
    });
    let cookie_max_age = s.secs_in(
        ENV_COOKIE_MAX_AGE,
        d.cookie_max_age,
        ..=Duration::from_secs(400 * 86_400),
    );
    let query = s.convert(ENV_STICKY_QUERY, None, |t| {
        (!t.contains(['&', '=', '#', '?', '+', '%', ' ']))
            .then(|| Some(t.to_owned()))
            .ok_or_else(|| "expected a query parameter name".into())
    });
    let header = s.convert(ENV_STICKY_HEADER, None, |t| {
        HeaderName::from_bytes(t.as_bytes())
            .map(Some)
            .map_err(|_| "expected an HTTP header name".into())
    });
    let fallback = s.convert(ENV_STICKY_FALLBACK, d.fallback, |t| match t {
        "random" => Ok(StickyFallback::Random),
        "address" => Ok(StickyFallback::Address),
        _ => Err("expected random or address".into()),
    });
    StickyConfig {
        cookie,
        cookie_max_age,
        query,
        header,
        fallback,
    }
}

fn health(s: &mut Settings<'_>) -> HealthConfig {
    let d = HealthConfig::default();
    let path = s.convert(ENV_HEALTH_PATH, d.path, |t| {
        (t.starts_with('/') && t.parse::<hyper::Uri>().is_ok())
            .then(|| t.to_owned())
            .ok_or_else(|| "expected a path starting with /".into())
    });
    HealthConfig {
        path,
        interval: s.secs_in(ENV_HEALTH_INTERVAL, d.interval, POSITIVE),
        timeout: s.secs_in(ENV_HEALTH_TIMEOUT, d.timeout, POSITIVE),
        rise: s.int(ENV_HEALTH_RISE, d.rise, 1..=MAX_THRESHOLD),
        fall: s.int(ENV_HEALTH_FALL, d.fall, 1..=MAX_THRESHOLD),
    }
}

fn proxy(s: &mut Settings<'_>) -> ProxyConfig {
    let d = ProxyConfig::default();
    ProxyConfig {
        connect_timeout: s.secs_in(ENV_CONNECT_TIMEOUT, d.connect_timeout, POSITIVE),
        retries: s.int(ENV_RETRIES, d.retries, 0..=MAX_RETRIES),
        idle_timeout: s.secs_in(ENV_IDLE_TIMEOUT, d.idle_timeout, ..=MAX_SECS),
        retry_after: s.secs_in(
            ENV_RETRY_AFTER,
            d.retry_after,
            Duration::from_secs(1)..=Duration::from_secs(3600),
        ),
        trusted_proxies: s.list_with(ENV_TRUSTED_PROXIES, Cidr::parse),
    }
}

fn limits(s: &mut Settings<'_>) -> Limits {
    let d = Limits::default();
    Limits {
        max_connections: s.int(ENV_MAX_CONNECTIONS, d.max_connections, 1..),
        handshake_timeout: s.secs_in(ENV_HANDSHAKE_TIMEOUT, d.handshake_timeout, POSITIVE),
        shutdown_grace: s.secs_in(ENV_SHUTDOWN_GRACE, d.shutdown_grace, ..=MAX_SECS),
        node_connect_rate: s.int(
            ENV_NODE_CONNECT_RATE,
            d.node_connect_rate,
            0..=MAX_CONNECT_RATE,
        ),
        node_connect_burst: s.int(
            ENV_NODE_CONNECT_BURST,
            d.node_connect_burst,
            1..=MAX_CONNECT_RATE,
        ),
    }
}

/// Checks `host:port` (IPv6 hosts in brackets: `[::1]:8000`).
pub fn check_host_port(t: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected host:port, such as node-1:8000 or 10.0.0.5:8000";
    let (host, port) = t.rsplit_once(':').ok_or(EXPECTED)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = if host.starts_with('[') {
        host.ends_with(']')
            && host[1..host.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    if port_ok && host_ok {
        Ok(t.to_owned())
    } else {
        Err(EXPECTED.into())
    }
}

/// A byte of an HTTP token (RFC 9110), which a cookie name must be.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::config::MapLookup;
    use std::io::Write as _;

    fn errors(pairs: &[(&str, &str)]) -> Vec<String> {
        load(&MapLookup::from_pairs(pairs))
            .expect_err("errors expected")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn defaults_with_a_node_list() {
        let c = load(&MapLookup::from_pairs(&[(
            ENV_NODES,
            "a:1, [::1]:8000,10.0.0.5:8000",
        )]))
        .expect("valid");
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.discovery.nodes, ["a:1", "[::1]:8000", "10.0.0.5:8000"]);
        assert!(c.discovery.dns.is_empty() && c.discovery.nats.is_none());
        assert_eq!(c.sticky.cookie, "herald_node");
        assert_eq!(c.sticky.fallback, StickyFallback::Random);
        assert_eq!(c.health.rise, 2);
        assert_eq!(c.health.fall, 3);
        assert_eq!(c.proxy.retries, 2);
        assert_eq!(c.limits.max_connections, 100_000);
        assert_eq!(c.tls, None);
        assert_eq!(c.otel, OtelConfig::default());
    }

    #[test]
    fn trace_settings_are_read_and_checked() {
        let c = load(&MapLookup::from_pairs(&[
            (ENV_NODES, "a:1"),
            (ENV_OTEL_ENDPOINT, "http://collector:4318/"),
            (ENV_OTEL_SAMPLE_RATIO, "0.25"),
        ]))
        .expect("valid");
        assert_eq!(c.otel.endpoint.as_deref(), Some("http://collector:4318"));
        assert_eq!(c.otel.sample_ratio, 0.25);
        let e = errors(&[
            (ENV_NODES, "a:1"),
            (ENV_OTEL_ENDPOINT, "https://collector:4318"),
            (ENV_OTEL_SAMPLE_RATIO, "2"),
        ]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains(ENV_OTEL_ENDPOINT), "{e:?}");
        assert!(e[1].contains(ENV_OTEL_SAMPLE_RATIO), "{e:?}");
    }

    #[test]
    fn tls_needs_both_files() {
        let c = load(&MapLookup::from_pairs(&[
            (ENV_NODES, "a:1"),
            (ENV_TLS_CERT, "/etc/herald/cert.pem"),
            (ENV_TLS_KEY, "/etc/herald/key.pem"),
        ]))
        .expect("valid");
        let tls = c.tls.expect("tls");
        assert_eq!(tls.cert, std::path::Path::new("/etc/herald/cert.pem"));
        assert_eq!(tls.key, std::path::Path::new("/etc/herald/key.pem"));
        assert_eq!(
            errors(&[(ENV_NODES, "a:1"), (ENV_TLS_CERT, "/c.pem")]),
            ["HERALD_ROUTER_TLS_KEY: HERALD_ROUTER_TLS_CERT is set, so HERALD_ROUTER_TLS_KEY must be too (TLS needs both files)"]
        );
        assert_eq!(
            errors(&[(ENV_NODES, "a:1"), (ENV_TLS_KEY, "/k.pem")]),
            ["HERALD_ROUTER_TLS_CERT: HERALD_ROUTER_TLS_KEY is set, so HERALD_ROUTER_TLS_CERT must be too (TLS needs both files)"]
        );
    }

    #[test]
    fn reads_every_group() {
        let c = load(&MapLookup::from_pairs(&[
            (ENV_LISTEN, "127.0.0.1:9000"),
            (ENV_DNS, "herald-nodes.default.svc:8000"),
            (ENV_DNS_INTERVAL, "0.5"),
            (ENV_NATS_URL, "nats://127.0.0.1:4222"),
            (ENV_NATS_SUBJECT, "edge.announce"),
            (ENV_COOKIE, "sticky"),
            (ENV_STICKY_QUERY, "room"),
            (ENV_STICKY_HEADER, "X-User"),
            (ENV_HEALTH_FALL, "1"),
            (ENV_IDLE_TIMEOUT, "0"),
            (ENV_SHUTDOWN_GRACE, "2"),
            (ENV_NODE_CONNECT_RATE, "0"),
            (ENV_STICKY_FALLBACK, "address"),
            (ENV_TRUSTED_PROXIES, "10.0.0.0/8, ::1"),
            (ENV_NODE_CONNECT_BURST, "7"),
        ]))
        .expect("valid");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.discovery.dns, ["herald-nodes.default.svc:8000"]);
        assert_eq!(c.discovery.dns_interval, Duration::from_millis(500));
        let nats = c.discovery.nats.expect("nats");
        assert_eq!(nats.subject, "edge.announce");
        assert_eq!(nats.ttl, DEFAULT_NATS_TTL);
        assert_eq!(c.sticky.cookie, "sticky");
        assert_eq!(c.sticky.query.as_deref(), Some("room"));
        assert_eq!(c.sticky.header.expect("header").as_str(), "x-user");
        assert_eq!(c.health.fall, 1);
        assert_eq!(c.proxy.idle_timeout, Duration::ZERO);
        assert_eq!(c.limits.shutdown_grace, Duration::from_secs(2));
        assert_eq!(c.limits.node_connect_rate, 0);
        assert_eq!(c.sticky.fallback, StickyFallback::Address);
        assert_eq!(c.proxy.trusted_proxies.len(), 2);
        assert_eq!(c.limits.node_connect_burst, 7);
    }

    #[test]
    fn no_source_of_nodes_is_an_error() {
        assert_eq!(
            errors(&[]),
            ["HERALD_ROUTER_NODES: no nodes to route to: set HERALD_ROUTER_NODES, HERALD_ROUTER_DNS or HERALD_ROUTER_NATS_URL"]
        );
    }

    #[test]
    fn every_bad_value_names_its_setting() {
        let errs = errors(&[
            (ENV_LISTEN, "nowhere"),
            (ENV_NODES, "a:1,b,c:0,[zz]:1"),
            (ENV_COOKIE, "bad cookie"),
            (ENV_STICKY_HEADER, "bad header"),
            (ENV_HEALTH_RISE, "0"),
            (ENV_HEALTH_INTERVAL, "0"),
            (ENV_RETRIES, "99"),
            (ENV_NATS_SUBJECT, "a.*"),
            (ENV_NATS_URL, "nats://127.0.0.1:4222"),
            (ENV_NODE_CONNECT_BURST, "0"),
            (ENV_STICKY_FALLBACK, "nat"),
            (ENV_TRUSTED_PROXIES, "10.0.0.0/40"),
        ]);
        let names: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            names,
            [
                ENV_LISTEN,
                ENV_NODES,
                ENV_NODES,
                ENV_NODES,
                ENV_NATS_SUBJECT,
                ENV_COOKIE,
                ENV_STICKY_HEADER,
                ENV_STICKY_FALLBACK,
                ENV_HEALTH_INTERVAL,
                ENV_HEALTH_RISE,
                ENV_RETRIES,
                ENV_TRUSTED_PROXIES,
                ENV_NODE_CONNECT_BURST,
            ],
            "{errs:#?}"
        );
        assert!(errs[1].contains(r#""b""#), "{}", errs[1]);
    }

    #[test]
    fn reads_the_file_and_rejects_unknown_keys() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "nodes = [\"a:1\", \"b:2\"]\nhealth_rise = 4").unwrap();
        let path = f.path().to_str().unwrap().to_owned();
        let c = load(&MapLookup::from_pairs(&[(ENV_CONFIG, &path)])).expect("valid");
        assert_eq!(c.discovery.nodes, ["a:1", "b:2"]);
        assert_eq!(c.health.rise, 4);

        writeln!(f, "helth_fall = 1").unwrap();
        let errs = errors(&[(ENV_CONFIG, &path)]);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("did you mean health_fall?"), "{}", errs[0]);
    }
}
