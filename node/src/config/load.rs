//! Reads a [`NodeConfig`] from `HERALD_*` settings and the optional TOML file named by
//! `HERALD_CONFIG`, collecting every bad value (see `herald_shared::config`).
//!
//! Defaults of channel options and limits are the `Default` impls in the parent module,
//! so each lives in one place; the others are the `DEFAULT_*` constants here.

use super::{Limits, NamespaceOptions, Namespaces, NodeConfig};
use herald_shared::auth::{Algorithm, AuthConfig, Verifier, VerifyKey, MAX_LEEWAY_SECS};
use herald_shared::config::{ConfigError, Lookup, Reader, Settings, Value};
use herald_shared::telemetry::{check_log_filter, LogFormat};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Bound;
use std::time::Duration;

/// Prefix stripped (and the rest lowercased) to make TOML keys: `HERALD_LISTEN` -> `listen`.
const PREFIX: &str = "HERALD_";
/// Path of the optional TOML file.
const ENV_CONFIG: &str = "HERALD_CONFIG";
/// Log filter, read by `tracing`; checked here so a typo is reported, not ignored.
const ENV_RUST_LOG: &str = "RUST_LOG";

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
const ENV_LOG_FORMAT: &str = "HERALD_LOG_FORMAT";

const ENV_TOKEN_HMAC_SECRET: &str = "HERALD_TOKEN_HMAC_SECRET";
/// Shortest HMAC secret accepted, bytes: shorter ones can be brute-forced from one token.
const MIN_HMAC_SECRET: usize = 16;
const ENV_TOKEN_RSA_PUBLIC_KEY: &str = "HERALD_TOKEN_RSA_PUBLIC_KEY";
const ENV_TOKEN_ECDSA_PUBLIC_KEY: &str = "HERALD_TOKEN_ECDSA_PUBLIC_KEY";
const ENV_TOKEN_ED25519_PUBLIC_KEY: &str = "HERALD_TOKEN_ED25519_PUBLIC_KEY";
const ENV_TOKEN_ALGORITHM: &str = "HERALD_TOKEN_ALGORITHM";
const ENV_TOKEN_AUDIENCE: &str = "HERALD_TOKEN_AUDIENCE";
const ENV_TOKEN_ISSUER: &str = "HERALD_TOKEN_ISSUER";
const ENV_TOKEN_LEEWAY: &str = "HERALD_TOKEN_LEEWAY";

/// Every algorithm a key can be used with, by name as in JWT headers.
const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// Reads the node's configuration from `lookup` (and the file it names in
/// `HERALD_CONFIG`). On failure returns every problem found, each naming its setting.
pub fn load(lookup: &dyn Lookup) -> Result<NodeConfig, Vec<ConfigError>> {
    let mut s = Settings::load(lookup, PREFIX, ENV_CONFIG);
    if let Some(filter) = s.value(ENV_RUST_LOG) {
        if let Err(reason) = check_log_filter(&filter.text) {
            s.report(filter.error(reason));
        }
    }
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
    let log_format = s.parse(ENV_LOG_FORMAT, LogFormat::default());
    let auth = auth(&mut s);
    let cluster = super::cluster::cluster(&mut s);
    let drain = super::drain::drain(&mut s);
    s.finish()?;
    Ok(NodeConfig {
        listen,
        node_id,
        nats_url: (!nats_urls.is_empty()).then(|| nats_urls.join(",")),
        auth,
        allow_anonymous,
        api_key,
        namespaces: Namespaces { default, named },
        limits,
        ping_interval,
        pong_timeout,
        expiry_grace,
        log_format,
        cluster,
        drain,
    })
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
    }
}

/// A setting read in two steps (text, then checked): unset, set but bad (already
/// reported), or good.
enum Slot<T> {
    Unset,
    Bad,
    Set(Value, T),
}

impl<T> Slot<T> {
    fn read(
        s: &mut Settings<'_>,
        name: &str,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Self {
        let Some(value) = s.value(name) else {
            return Slot::Unset;
        };
        match check(&value.text) {
            Ok(v) => Slot::Set(value, v),
            Err(reason) => {
                s.report(value.error(reason));
                Slot::Bad
            }
        }
    }

    fn is_unset(&self) -> bool {
        matches!(self, Slot::Unset)
    }
}

/// Token verification: at most one key kind, an algorithm fitting it, the key checked by
/// building a [`Verifier`] now rather than on the first connect.
fn auth(s: &mut Settings<'_>) -> Option<AuthConfig> {
    let keys = [
        (
            ENV_TOKEN_HMAC_SECRET,
            Slot::read(s, ENV_TOKEN_HMAC_SECRET, hmac_secret),
        ),
        (
            ENV_TOKEN_RSA_PUBLIC_KEY,
            Slot::read(s, ENV_TOKEN_RSA_PUBLIC_KEY, |t| {
                pem(t).map(VerifyKey::RsaPem)
            }),
        ),
        (
            ENV_TOKEN_ECDSA_PUBLIC_KEY,
            Slot::read(s, ENV_TOKEN_ECDSA_PUBLIC_KEY, |t| {
                pem(t).map(VerifyKey::EcPem)
            }),
        ),
        (
            ENV_TOKEN_ED25519_PUBLIC_KEY,
            Slot::read(s, ENV_TOKEN_ED25519_PUBLIC_KEY, |t| {
                pem(t).map(VerifyKey::EdPem)
            }),
        ),
    ];
    let algorithm = Slot::read(s, ENV_TOKEN_ALGORITHM, parse_algorithm);
    let audience = s.string(ENV_TOKEN_AUDIENCE);
    let issuer = s.string(ENV_TOKEN_ISSUER);
    let leeway = Slot::read(s, ENV_TOKEN_LEEWAY, |t| {
        herald_shared::config::parse_int_in(t, &(..=MAX_LEEWAY_SECS))
    });

    let given: Vec<&str> = keys
        .iter()
        .filter(|(_, slot)| !slot.is_unset())
        .map(|(name, _)| *name)
        .collect();
    if given.len() > 1 {
        s.report(ConfigError::new(
            given[1],
            "",
            format!(
                "only one token key may be set, but {} are",
                given.join(" and ")
            ),
        ));
        return None;
    }
    let Some((_, Slot::Set(key_value, key))) = keys.into_iter().find(|(_, k)| !k.is_unset()) else {
        if given.is_empty() {
            // Without a key nothing is verified: these settings would silently do nothing.
            let orphans = [
                (ENV_TOKEN_ALGORITHM, !algorithm.is_unset()),
                (ENV_TOKEN_AUDIENCE, audience.is_some()),
                (ENV_TOKEN_ISSUER, issuer.is_some()),
                (ENV_TOKEN_LEEWAY, !leeway.is_unset()),
            ];
            for (name, _) in orphans.iter().filter(|(_, set)| *set) {
                s.report(ConfigError::new(
                    *name,
                    "",
                    format!("has no effect without a token key; set {ENV_TOKEN_HMAC_SECRET} or a public key"),
                ));
            }
        }
        return None;
    };

    let algorithm = match algorithm {
        Slot::Unset => default_algorithm(&key),
        Slot::Bad => return None,
        Slot::Set(value, alg) => {
            let fitting = algorithms_for(&key);
            if !fitting.contains(&alg) {
                let names: Vec<&str> = ALGORITHMS
                    .iter()
                    .filter(|(_, a)| fitting.contains(a))
                    .map(|(n, _)| *n)
                    .collect();
                s.report(value.error(format!(
                    "cannot be used with {}; expected {}",
                    key_value.setting,
                    names.join(", ")
                )));
                return None;
            }
            alg
        }
    };
    let config = AuthConfig {
        algorithm,
        key,
        audience,
        issuer,
        leeway_secs: match leeway {
            Slot::Set(_, secs) => secs,
            Slot::Unset | Slot::Bad => 0,
        },
    };
    match Verifier::new(&config) {
        Ok(_) => Some(config),
        Err(e) => {
            s.report(key_value.error(e.to_string()));
            None
        }
    }
}

fn hmac_secret(text: &str) -> Result<VerifyKey, String> {
    if text.len() < MIN_HMAC_SECRET {
        return Err(format!(
            "weak secret: at least {MIN_HMAC_SECRET} bytes are needed, 32 or more recommended"
        ));
    }
    Ok(VerifyKey::Hmac(text.as_bytes().to_vec()))
}

/// PEM text, or `@/path/to/key.pem` to read a file. A PEM squeezed onto one line with
/// literal `\n` escapes (as in `.env` files) is unfolded.
fn pem(text: &str) -> Result<Vec<u8>, String> {
    if let Some(path) = text.strip_prefix('@') {
        let path = path.trim();
        return std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"));
    }
    if !text.contains('\n') && text.contains("\\n") {
        return Ok(text.replace("\\n", "\n").into_bytes());
    }
    Ok(text.as_bytes().to_vec())
}

fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    if text.eq_ignore_ascii_case("none") {
        return Err("unsigned tokens (\"none\") are never accepted".into());
    }
    ALGORITHMS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, alg)| *alg)
        .ok_or_else(|| {
            let names: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
            format!("expected one of {}", names.join(", "))
        })
}

fn algorithms_for(key: &VerifyKey) -> &'static [Algorithm] {
    use Algorithm::*;
    match key {
        VerifyKey::Hmac(_) => &[HS256, HS384, HS512],
        VerifyKey::RsaPem(_) => &[RS256, RS384, RS512, PS256, PS384, PS512],
        VerifyKey::EcPem(_) => &[ES256, ES384],
        VerifyKey::EdPem(_) => &[EdDSA],
    }
}

fn default_algorithm(key: &VerifyKey) -> Algorithm {
    match key {
        VerifyKey::Hmac(_) => Algorithm::HS256,
        VerifyKey::RsaPem(_) => Algorithm::RS256,
        VerifyKey::EcPem(_) => Algorithm::ES256,
        VerifyKey::EdPem(_) => Algorithm::EdDSA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::config::MapLookup;
    use std::io::Write as _;

    const SECRET: &str = "0123456789abcdef-test-secret";
    /// Test-only public keys (see shared/tests/keys/README.md).
    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tests/keys");

    fn key_file(name: &str) -> String {
        format!("{KEYS}/{name}")
    }

    fn load_pairs(pairs: &[(&str, &str)]) -> Result<NodeConfig, Vec<ConfigError>> {
        load(&MapLookup::from_pairs(pairs))
    }

    fn errors(pairs: &[(&str, &str)]) -> Vec<ConfigError> {
        load_pairs(pairs).expect_err("errors expected")
    }

    fn settings_named(errs: &[ConfigError]) -> Vec<&str> {
        errs.iter().map(|e| e.setting.as_str()).collect()
    }

    fn toml_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write temp file");
        f
    }

    #[test]
    fn defaults() {
        let c = load_pairs(&[("HOSTNAME", "web-1")]).expect("defaults load");
        assert_eq!(c.listen, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(c.node_id, "web-1");
        assert_eq!(c.nats_url, None);
        assert!(c.auth.is_none());
        assert!(!c.allow_anonymous);
        assert_eq!(c.api_key, None);
        assert_eq!(c.namespaces.default, NamespaceOptions::default());
        assert!(c.namespaces.named.is_empty());
        let (l, d) = (&c.limits, Limits::default());
        assert_eq!(l.max_connections, d.max_connections);
        assert_eq!(l.handshake_timeout, d.handshake_timeout);
        assert_eq!(l.max_message_size, d.max_message_size);
        assert_eq!(l.max_channels_per_connection, d.max_channels_per_connection);
        assert_eq!(l.commands_per_second, d.commands_per_second);
        assert_eq!(l.queue_max_bytes, d.queue_max_bytes);
        assert!(l.allowed_origins.is_empty());
        assert_eq!(l.max_api_body, d.max_api_body);
        assert_eq!(c.ping_interval, Duration::from_secs(25));
        assert_eq!(c.pong_timeout, Duration::from_secs(8));
        assert_eq!(c.expiry_grace, Duration::from_secs(5));
        assert_eq!(c.log_format, LogFormat::Plain);
    }

    #[test]
    fn node_id_falls_back_to_a_generated_one() {
        // No HOSTNAME: /etc/hostname or a random id; either way a valid one.
        let c = load_pairs(&[]).expect("loads");
        assert!(check_node_id(&c.node_id).is_ok(), "{}", c.node_id);
        let c = load_pairs(&[("HOSTNAME", "bad host name")]).expect("loads");
        assert_ne!(c.node_id, "bad host name");
    }

    #[test]
    fn every_setting_overridden() {
        let c = load_pairs(&[
            ("HERALD_LISTEN", "127.0.0.1:9000"),
            ("HERALD_NODE_ID", "node-a"),
            ("HERALD_NATS_URL", "nats://n1:4222, tls://n2:4222"),
            ("HERALD_ALLOW_ANONYMOUS", "yes"),
            ("HERALD_API_KEY", "api-key-1"),
            ("HERALD_HISTORY_SIZE", "10"),
            ("HERALD_HISTORY_TTL", "60.5"),
            ("HERALD_PRESENCE", "true"),
            ("HERALD_JOIN_LEAVE", "on"),
            ("HERALD_FORCE_PUSH_JOIN_LEAVE", "1"),
            ("HERALD_ALLOW_PUBLISH", "true"),
            ("HERALD_ALLOW_SUBSCRIBE", "false"),
            ("HERALD_ALLOW_PRESENCE_FOR_SUBSCRIBER", "no"),
            ("HERALD_ALLOW_HISTORY_FOR_SUBSCRIBER", "off"),
            ("HERALD_RECOVERY", "0"),
            ("HERALD_MAX_CONNECTIONS", "5"),
            ("HERALD_HANDSHAKE_TIMEOUT", "2.5"),
            ("HERALD_MAX_MESSAGE_SIZE", "1MiB"),
            ("HERALD_MAX_CHANNELS_PER_CONNECTION", "3"),
            ("HERALD_COMMANDS_PER_SECOND", "0"),
            ("HERALD_QUEUE_MAX_BYTES", "2048"),
            (
                "HERALD_ALLOWED_ORIGINS",
                "https://a.example.com, https://*.example.org",
            ),
            ("HERALD_MAX_API_BODY", "4KiB"),
            ("HERALD_PING_INTERVAL", "10"),
            ("HERALD_PONG_TIMEOUT", "20"),
            ("HERALD_EXPIRY_GRACE", "0"),
            ("HERALD_LOG_FORMAT", "json"),
            ("HERALD_TOKEN_HMAC_SECRET", SECRET),
            ("HERALD_TOKEN_ALGORITHM", "HS512"),
            ("HERALD_TOKEN_AUDIENCE", "herald"),
            ("HERALD_TOKEN_ISSUER", "https://auth.example.com"),
            ("HERALD_TOKEN_LEEWAY", "30"),
            ("RUST_LOG", "info,herald_node=debug"),
        ])
        .expect("loads");
        assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.node_id, "node-a");
        assert_eq!(c.nats_url.as_deref(), Some("nats://n1:4222,tls://n2:4222"));
        assert!(c.allow_anonymous);
        assert_eq!(c.api_key.as_deref(), Some("api-key-1"));
        assert_eq!(
            c.namespaces.default,
            NamespaceOptions {
                history_size: 10,
                history_ttl: Duration::from_millis(60_500),
                presence: true,
                join_leave: true,
                force_push_join_leave: true,
                allow_publish: true,
                allow_subscribe: false,
                allow_presence: false,
                allow_history: false,
                recovery: false,
            }
        );
        let l = &c.limits;
        assert_eq!(l.max_connections, 5);
        assert_eq!(l.handshake_timeout, Duration::from_millis(2500));
        assert_eq!(l.max_message_size, 1 << 20);
        assert_eq!(l.max_channels_per_connection, 3);
        assert_eq!(l.commands_per_second, 0);
        assert_eq!(l.queue_max_bytes, 2048);
        assert_eq!(
            l.allowed_origins,
            ["https://a.example.com", "https://*.example.org"]
        );
        assert_eq!(l.max_api_body, 4096);
        assert_eq!(c.ping_interval, Duration::from_secs(10));
        assert_eq!(
            c.pong_timeout,
            Duration::from_secs(20),
            "may exceed the ping interval"
        );
        assert_eq!(c.expiry_grace, Duration::ZERO);
        assert_eq!(c.log_format, LogFormat::Json);
        let auth = c.auth.expect("auth configured");
        assert_eq!(auth.algorithm, Algorithm::HS512);
        assert!(matches!(&auth.key, VerifyKey::Hmac(k) if k == SECRET.as_bytes()));
        assert_eq!(auth.audience.as_deref(), Some("herald"));
        assert_eq!(auth.issuer.as_deref(), Some("https://auth.example.com"));
        assert_eq!(auth.leeway_secs, 30);
    }

    #[test]
    fn empty_api_key_is_unset() {
        let c = load_pairs(&[("HERALD_API_KEY", "")]).expect("loads");
        assert_eq!(c.api_key, None);
    }

    #[test]
    fn file_and_environment_precedence() {
        let f = toml_file(
            r#"
            listen = "127.0.0.1:7000"
            history_size = 20
            presence = true
            allowed_origins = ["https://a.example.com", "https://b.example.com"]
            ping_interval = 30
            token_hmac_secret = "0123456789abcdef-from-the-file"
            "#,
        );
        let path = f.path().to_str().unwrap();
        let c = load_pairs(&[
            ("HERALD_CONFIG", path),
            ("HERALD_HISTORY_SIZE", "5"),
            ("HERALD_PING_INTERVAL", ""),
        ])
        .expect("loads");
        assert_eq!(c.listen, "127.0.0.1:7000".parse().unwrap(), "from the file");
        assert_eq!(c.namespaces.default.history_size, 5, "environment wins");
        assert!(c.namespaces.default.presence);
        assert_eq!(c.limits.allowed_origins.len(), 2);
        assert_eq!(
            c.ping_interval,
            Duration::from_secs(30),
            "empty variable: file"
        );
        assert!(c.auth.is_some());
    }

    #[test]
    fn namespaces_from_the_file() {
        let f = toml_file(
            r#"
            history_size = 20
            [namespaces.chat]
            presence = true
            join_leave = true
            history_ttl = 600
            [namespaces.feed-v2]
            history_size = 0
            allow_history_for_subscriber = false
            "#,
        );
        let c = load_pairs(&[
            ("HERALD_CONFIG", f.path().to_str().unwrap()),
            ("HERALD_ALLOW_PUBLISH", "true"),
        ])
        .expect("loads");
        let ns = &c.namespaces;
        assert_eq!(ns.named.len(), 2);
        let chat = &ns.named["chat"];
        assert!(chat.presence && chat.join_leave);
        assert_eq!(chat.history_size, 20, "inherits the default namespace");
        assert!(chat.allow_publish, "inherits the environment's default too");
        assert_eq!(chat.history_ttl, Duration::from_secs(600));
        let feed = &ns.named["feed-v2"];
        assert!(!feed.has_history());
        assert!(!feed.allow_history);
        assert!(!ns.default.presence);
        assert_eq!(ns.for_channel("chat:room"), Some(chat));
        assert_eq!(ns.for_channel("nope:room"), None);
    }

    #[test]
    fn bad_namespace_tables_are_reported() {
        let f = toml_file(
            r#"
            [namespaces."bad name"]
            presence = true
            [namespaces.chat]
            history_size = -1
            presense = true
            "#,
        );
        let errs = errors(&[("HERALD_CONFIG", f.path().to_str().unwrap())]);
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "namespaces.bad name: a namespace name may contain only letters, digits, '_' and '-'"
                    .to_owned(),
                r#"namespaces.chat.history_size: invalid value "-1": expected a non-negative integer"#
                    .to_owned(),
                format!(
                    "namespaces.chat.presense: unknown setting in {}; did you mean presence?",
                    f.path().display()
                ),
            ]
        );
    }

    #[test]
    fn unknown_file_key_is_rejected() {
        let f = toml_file("max_conections = 10\n");
        let errs = errors(&[("HERALD_CONFIG", f.path().to_str().unwrap())]);
        assert_eq!(settings_named(&errs), ["max_conections"]);
        assert!(errs[0].reason.ends_with("did you mean max_connections?"));
    }

    #[test]
    fn missing_or_invalid_file_names_herald_config() {
        let errs = errors(&[("HERALD_CONFIG", "/nonexistent/herald.toml")]);
        assert_eq!(settings_named(&errs), ["HERALD_CONFIG"]);
        let f = toml_file("listen = \n");
        let errs = errors(&[("HERALD_CONFIG", f.path().to_str().unwrap())]);
        assert_eq!(settings_named(&errs), ["HERALD_CONFIG"]);
        assert!(errs[0].reason.starts_with("not valid TOML"), "{}", errs[0]);
    }

    #[test]
    fn a_bad_value_per_kind_names_the_setting() {
        let cases: &[(&str, &str)] = &[
            ("HERALD_LISTEN", "abc"),
            ("HERALD_NODE_ID", "has space"),
            ("HERALD_NATS_URL", "http://n1:4222"),
            ("HERALD_ALLOW_ANONYMOUS", "maybe"),
            ("HERALD_HISTORY_SIZE", "-1"),
            ("HERALD_HISTORY_TTL", "5m"),
            ("HERALD_MAX_CONNECTIONS", "0"),
            ("HERALD_HANDSHAKE_TIMEOUT", "0"),
            ("HERALD_MAX_MESSAGE_SIZE", "64"),
            ("HERALD_MAX_MESSAGE_SIZE", "17MiB"),
            ("HERALD_MAX_CHANNELS_PER_CONNECTION", "0"),
            ("HERALD_COMMANDS_PER_SECOND", "fast"),
            ("HERALD_QUEUE_MAX_BYTES", "10"),
            ("HERALD_ALLOWED_ORIGINS", "https://example.com/"),
            ("HERALD_MAX_API_BODY", "1"),
            ("HERALD_PING_INTERVAL", "0"),
            ("HERALD_PING_INTERVAL", "3601"),
            ("HERALD_PONG_TIMEOUT", "0.5"),
            ("HERALD_EXPIRY_GRACE", "-5"),
            ("HERALD_LOG_FORMAT", "xml"),
            ("HERALD_TOKEN_LEEWAY", "1.5"),
            ("RUST_LOG", "herald_node=loud"),
        ];
        for (name, value) in cases {
            let mut pairs = vec![(*name, *value)];
            if name.starts_with("HERALD_TOKEN_") {
                pairs.push(("HERALD_TOKEN_HMAC_SECRET", SECRET));
            }
            let errs = errors(&pairs);
            assert_eq!(settings_named(&errs), [*name], "{name}={value}: {errs:?}");
            assert_eq!(errs[0].value, *value);
        }
    }

    #[test]
    fn several_bad_values_are_all_reported() {
        let errs = errors(&[
            ("HERALD_LISTEN", "abc"),
            ("HERALD_PRESENCE", "perhaps"),
            ("HERALD_MAX_MESSAGE_SIZE", "1"),
            ("HERALD_PING_INTERVAL", "0"),
            ("HERALD_TOKEN_HMAC_SECRET", "short"),
        ]);
        assert_eq!(
            settings_named(&errs),
            [
                "HERALD_LISTEN",
                "HERALD_PRESENCE",
                "HERALD_MAX_MESSAGE_SIZE",
                "HERALD_PING_INTERVAL",
                "HERALD_TOKEN_HMAC_SECRET",
            ]
        );
        assert_eq!(
            errs[0].to_string(),
            r#"HERALD_LISTEN: invalid value "abc": expected address:port, such as 0.0.0.0:8000 or [::]:8000"#
        );
        let secret = errs[4].to_string();
        assert!(
            secret.contains("<redacted>") && !secret.contains("short"),
            "{secret}"
        );
        assert!(secret.contains("weak secret"), "{secret}");
    }

    #[test]
    fn two_key_kinds_are_an_error() {
        let rsa = format!("@{}", key_file("rsa_public.pem"));
        let errs = errors(&[
            ("HERALD_TOKEN_HMAC_SECRET", SECRET),
            ("HERALD_TOKEN_RSA_PUBLIC_KEY", &rsa),
        ]);
        assert_eq!(settings_named(&errs), ["HERALD_TOKEN_RSA_PUBLIC_KEY"]);
        assert!(errs[0]
            .reason
            .contains("HERALD_TOKEN_HMAC_SECRET and HERALD_TOKEN_RSA_PUBLIC_KEY"));
    }

    #[test]
    fn public_keys_pick_their_default_algorithm() {
        let cases = [
            (
                "HERALD_TOKEN_RSA_PUBLIC_KEY",
                "rsa_public.pem",
                Algorithm::RS256,
            ),
            (
                "HERALD_TOKEN_ECDSA_PUBLIC_KEY",
                "ec_public.pem",
                Algorithm::ES256,
            ),
            (
                "HERALD_TOKEN_ED25519_PUBLIC_KEY",
                "ed_public.pem",
                Algorithm::EdDSA,
            ),
        ];
        for (name, file, alg) in cases {
            let at_path = format!("@{}", key_file(file));
            let c = load_pairs(&[(name, &at_path)]).expect(name);
            assert_eq!(c.auth.expect("auth").algorithm, alg, "{name}");
            // Inline PEM works the same.
            let pem = std::fs::read_to_string(key_file(file)).unwrap();
            let c = load_pairs(&[(name, &pem)]).expect(name);
            assert_eq!(c.auth.expect("auth").algorithm, alg, "{name} inline");
        }
        let c = load_pairs(&[("HERALD_TOKEN_HMAC_SECRET", SECRET)]).expect("hmac");
        assert_eq!(c.auth.expect("auth").algorithm, Algorithm::HS256);
    }

    #[test]
    fn one_line_pem_with_escaped_newlines_is_accepted() {
        let pem = std::fs::read_to_string(key_file("ec_public.pem")).unwrap();
        let folded = pem.trim().replace('\n', "\\n");
        let c = load_pairs(&[("HERALD_TOKEN_ECDSA_PUBLIC_KEY", &folded)]).expect("loads");
        assert!(c.auth.is_some());
    }

    #[test]
    fn algorithm_must_fit_the_key() {
        let errs = errors(&[
            ("HERALD_TOKEN_HMAC_SECRET", SECRET),
            ("HERALD_TOKEN_ALGORITHM", "RS256"),
        ]);
        assert_eq!(settings_named(&errs), ["HERALD_TOKEN_ALGORITHM"]);
        assert!(
            errs[0].reason.contains("HS256, HS384, HS512"),
            "{}",
            errs[0]
        );
        for bad in ["none", "NONE", "HS999"] {
            let errs = errors(&[
                ("HERALD_TOKEN_HMAC_SECRET", SECRET),
                ("HERALD_TOKEN_ALGORITHM", bad),
            ]);
            assert_eq!(settings_named(&errs), ["HERALD_TOKEN_ALGORITHM"], "{bad}");
        }
        let c = load_pairs(&[
            (
                "HERALD_TOKEN_RSA_PUBLIC_KEY",
                &format!("@{}", key_file("rsa_public.pem")),
            ),
            ("HERALD_TOKEN_ALGORITHM", "ps384"),
        ])
        .expect("PS384 fits an RSA key");
        assert_eq!(c.auth.unwrap().algorithm, Algorithm::PS384);
    }

    #[test]
    fn unusable_keys_name_their_setting() {
        let errs = errors(&[("HERALD_TOKEN_RSA_PUBLIC_KEY", "not a pem")]);
        assert_eq!(settings_named(&errs), ["HERALD_TOKEN_RSA_PUBLIC_KEY"]);
        assert!(!errs[0].to_string().contains("not a pem"), "redacted");

        let errs = errors(&[("HERALD_TOKEN_ED25519_PUBLIC_KEY", "@/nonexistent/key.pem")]);
        assert_eq!(settings_named(&errs), ["HERALD_TOKEN_ED25519_PUBLIC_KEY"]);
        assert!(errs[0].reason.contains("/nonexistent/key.pem"));

        // An EC key where an Ed25519 one belongs.
        let ec = format!("@{}", key_file("ec_public.pem"));
        let errs = errors(&[("HERALD_TOKEN_ED25519_PUBLIC_KEY", &ec)]);
        assert_eq!(settings_named(&errs), ["HERALD_TOKEN_ED25519_PUBLIC_KEY"]);

        // A P-384 key with ES256.
        let ec384 = format!("@{}", key_file("ec384_public.pem"));
        let errs = errors(&[("HERALD_TOKEN_ECDSA_PUBLIC_KEY", &ec384)]);
        assert_eq!(settings_named(&errs), ["HERALD_TOKEN_ECDSA_PUBLIC_KEY"]);
        let c = load_pairs(&[
            ("HERALD_TOKEN_ECDSA_PUBLIC_KEY", &ec384),
            ("HERALD_TOKEN_ALGORITHM", "ES384"),
        ])
        .expect("ES384 with a P-384 key");
        assert_eq!(c.auth.unwrap().algorithm, Algorithm::ES384);
    }

    #[test]
    fn token_settings_without_a_key_are_errors() {
        let errs = errors(&[
            ("HERALD_TOKEN_ALGORITHM", "HS256"),
            ("HERALD_TOKEN_AUDIENCE", "herald"),
        ]);
        assert_eq!(
            settings_named(&errs),
            ["HERALD_TOKEN_ALGORITHM", "HERALD_TOKEN_AUDIENCE"]
        );
    }

    #[test]
    fn leeway_is_bounded() {
        let errs = errors(&[
            ("HERALD_TOKEN_HMAC_SECRET", SECRET),
            ("HERALD_TOKEN_LEEWAY", "86401"),
        ]);
        assert_eq!(settings_named(&errs), ["HERALD_TOKEN_LEEWAY"]);
    }

    #[test]
    fn origins_and_nats_urls_are_checked() {
        for ok in [
            "*",
            "https://app.example.com",
            "http://localhost:3000",
            "https://*.example.com",
        ] {
            assert!(check_origin(ok).is_ok(), "{ok}");
        }
        for bad in [
            "example.com",
            "https://example.com/",
            "https://",
            "https://a/b",
            "https://*.*.x",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
        for ok in [
            "nats://127.0.0.1:4222",
            "tls://n:4222",
            "n1:4222",
            "wss://n/ws",
        ] {
            assert!(check_nats_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://n:4222", "nats://", "nats:// n", ":4222"] {
            assert!(check_nats_url(bad).is_err(), "{bad}");
        }
    }
}
