use super::*;
use herald_shared::auth::{Algorithm, VerifyKey};
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
    assert_eq!(c.write_interval, Duration::ZERO);
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
        ("HERALD_WRITE_INTERVAL", "0.015"),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_FORCE_RECOVERY_MODE", "cache"),
        ("HERALD_ALLOWED_DELTA_TYPES", "fossil"),
        ("HERALD_DELTA_PUBLISH", "true"),
        ("HERALD_ALLOW_TAGS_FILTER", "yes"),
        ("HERALD_OTEL_ENDPOINT", "http://collector:4318/"),
        ("HERALD_OTEL_SAMPLE_RATIO", "0.25"),
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
    assert_eq!(c.otel_endpoint.as_deref(), Some("http://collector:4318"));
    assert_eq!(c.otel_sample_ratio, 0.25);
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
            force_recovery_mode: crate::config::RecoveryMode::Cache,
            allowed_delta_types: vec![crate::config::DeltaType::Fossil],
            delta_publish: true,
            allow_tags_filter: true,
            ..Default::default()
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
    assert_eq!(c.write_interval, Duration::from_millis(15));
    assert_eq!(c.log_format, LogFormat::Json);
    let auth = c.auth.expect("auth configured");
    assert_eq!(auth.algorithm, Algorithm::HS512);
    assert!(matches!(&auth.key, Some(VerifyKey::Hmac(k)) if k == SECRET.as_bytes()));
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
        allowed_delta_types = ["fossil"]
        [namespaces.feed-v2]
        history_size = 0
        allow_history_for_subscriber = false
        allowed_delta_types = []
        force_recovery_mode = "cache"
        allow_tags_filter = true
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
    assert!(
        chat.allows_fossil() && !feed.allows_fossil(),
        "an empty list is a setting"
    );
    assert!(feed.allow_tags_filter && !chat.allow_tags_filter);
    assert_eq!(feed.force_recovery_mode, crate::config::RecoveryMode::Cache);
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
        ("HERALD_WRITE_INTERVAL", "2"),
        ("HERALD_LOG_FORMAT", "xml"),
        ("HERALD_OTEL_ENDPOINT", "https://collector:4318"),
        ("HERALD_OTEL_ENDPOINT", "collector:4318"),
        ("HERALD_OTEL_SAMPLE_RATIO", "2"),
        ("HERALD_OTEL_SAMPLE_RATIO", "-0.5"),
        ("HERALD_TOKEN_LEEWAY", "1.5"),
        ("HERALD_FORCE_RECOVERY_MODE", "latest"),
        ("HERALD_ALLOWED_DELTA_TYPES", "zstd"),
        ("HERALD_ALLOW_TAGS_FILTER", "sometimes"),
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

#[test]
fn previous_hmac_secret_and_its_valid_until() {
    let c = load_pairs(&[
        ("HERALD_TOKEN_HMAC_SECRET", SECRET),
        (
            "HERALD_TOKEN_HMAC_PREVIOUS_SECRET",
            "the-old-secret-0123456789",
        ),
        (
            "HERALD_TOKEN_HMAC_PREVIOUS_SECRET_VALID_UNTIL",
            "2026-12-31T23:59:59Z",
        ),
    ])
    .expect("loads");
    let p = c.auth.unwrap().previous.unwrap();
    assert_eq!(p.secret, b"the-old-secret-0123456789");
    assert_eq!(p.valid_until, Some(1_798_761_599));
    let unix = load_pairs(&[
        ("HERALD_TOKEN_HMAC_SECRET", SECRET),
        (
            "HERALD_TOKEN_HMAC_PREVIOUS_SECRET",
            "the-old-secret-0123456789",
        ),
        (
            "HERALD_TOKEN_HMAC_PREVIOUS_SECRET_VALID_UNTIL",
            "1798761599",
        ),
    ])
    .expect("loads");
    assert_eq!(
        unix.auth.unwrap().previous.unwrap().valid_until,
        Some(1_798_761_599)
    );
    // Bad values, and settings that would do nothing, name their setting.
    for (pairs, named) in [
        (
            vec![
                ("HERALD_TOKEN_HMAC_SECRET", SECRET),
                ("HERALD_TOKEN_HMAC_PREVIOUS_SECRET", "short"),
            ],
            "HERALD_TOKEN_HMAC_PREVIOUS_SECRET",
        ),
        (
            vec![
                ("HERALD_TOKEN_HMAC_SECRET", SECRET),
                (
                    "HERALD_TOKEN_HMAC_PREVIOUS_SECRET_VALID_UNTIL",
                    "1798761599",
                ),
            ],
            "HERALD_TOKEN_HMAC_PREVIOUS_SECRET_VALID_UNTIL",
        ),
        (
            vec![
                ("HERALD_TOKEN_HMAC_SECRET", SECRET),
                (
                    "HERALD_TOKEN_HMAC_PREVIOUS_SECRET",
                    "the-old-secret-0123456789",
                ),
                (
                    "HERALD_TOKEN_HMAC_PREVIOUS_SECRET_VALID_UNTIL",
                    "next tuesday",
                ),
            ],
            "HERALD_TOKEN_HMAC_PREVIOUS_SECRET_VALID_UNTIL",
        ),
        (
            vec![(
                "HERALD_TOKEN_HMAC_PREVIOUS_SECRET",
                "the-old-secret-0123456789",
            )],
            "HERALD_TOKEN_HMAC_PREVIOUS_SECRET",
        ),
    ] {
        let errs = errors(&pairs);
        assert_eq!(settings_named(&errs), [named], "{pairs:?}");
    }
}

#[test]
fn rfc3339_times() {
    use super::auth::unix_or_rfc3339 as t;
    assert_eq!(t("0"), Ok(0));
    assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(t("2000-02-29T12:00:00Z"), Ok(951_825_600));
    assert_eq!(t("2026-12-31T23:59:59.123Z"), Ok(1_798_761_599));
    assert_eq!(t("2027-01-01T01:59:59+02:00"), Ok(1_798_761_599));
    assert_eq!(t("2026-12-31T18:59:59-05:00"), Ok(1_798_761_599));
    for bad in [
        "",
        "2026-13-01T00:00:00Z",
        "2026-12-31",
        "2026-12-31T23:59:59",
        "1969-12-31T23:59:59Z",
        "-5",
        "2026-12-31T23:59:59+2",
    ] {
        assert!(t(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn connection_limits() {
    let c = load_pairs(&[
        ("HERALD_USER_CONNECTION_LIMIT", "3"),
        ("HERALD_CONNECTION_RATE_LIMIT", "50"),
    ])
    .expect("loads");
    assert_eq!(c.limits.user_connection_limit, 3);
    assert_eq!(c.limits.connection_rate_limit, 50);
    let d = load_pairs(&[]).expect("loads");
    assert_eq!(
        (
            d.limits.user_connection_limit,
            d.limits.connection_rate_limit
        ),
        (0, 0)
    );
    let errs = errors(&[
        ("HERALD_USER_CONNECTION_LIMIT", "-1"),
        ("HERALD_CONNECTION_RATE_LIMIT", "lots"),
    ]);
    assert_eq!(
        settings_named(&errs),
        [
            "HERALD_USER_CONNECTION_LIMIT",
            "HERALD_CONNECTION_RATE_LIMIT"
        ]
    );
}

#[test]
fn jwks_alone_or_beside_a_key() {
    let url = "https://auth.example.com/.well-known/jwks.json";
    let c = load_pairs(&[("HERALD_TOKEN_JWKS_URL", url)]).expect("jwks only");
    let auth = c.auth.expect("auth rules for JWKS tokens");
    assert!(auth.key.is_none());
    let jwks = c.jwks.expect("jwks");
    assert_eq!(jwks.url.to_string(), url);
    assert_eq!(jwks.refresh_interval, Duration::from_secs(3600));
    assert_eq!(jwks.min_refetch_interval, Duration::from_secs(10));
    assert_eq!(jwks.timeout, Duration::from_secs(5));

    let c = load_pairs(&[
        ("HERALD_TOKEN_HMAC_SECRET", SECRET),
        ("HERALD_TOKEN_JWKS_URL", "http://127.0.0.1:9/keys"),
        ("HERALD_TOKEN_JWKS_REFRESH_INTERVAL", "60"),
        ("HERALD_TOKEN_JWKS_MIN_REFETCH_INTERVAL", "2"),
        ("HERALD_TOKEN_JWKS_TIMEOUT", "0.5"),
        ("HERALD_TOKEN_ISSUER", "me"),
    ])
    .expect("hmac and jwks");
    assert!(matches!(c.auth.unwrap().key, Some(VerifyKey::Hmac(_))));
    let jwks = c.jwks.unwrap();
    assert_eq!(jwks.refresh_interval, Duration::from_secs(60));
    assert_eq!(jwks.min_refetch_interval, Duration::from_secs(2));
    assert_eq!(jwks.timeout, Duration::from_millis(500));
}

#[test]
fn jwks_settings_are_checked() {
    for bad in ["ftp://x/keys", "/keys", "not a url", "https://"] {
        let errs = errors(&[("HERALD_TOKEN_JWKS_URL", bad)]);
        assert_eq!(settings_named(&errs), ["HERALD_TOKEN_JWKS_URL"], "{bad}");
    }
    let url = ("HERALD_TOKEN_JWKS_URL", "http://127.0.0.1:9/keys");
    let errs = errors(&[url, ("HERALD_TOKEN_JWKS_MIN_REFETCH_INTERVAL", "0")]);
    assert_eq!(
        settings_named(&errs),
        ["HERALD_TOKEN_JWKS_MIN_REFETCH_INTERVAL"]
    );
    // With JWKS keys only, each token's alg picks; a pinned one would do nothing.
    let errs = errors(&[url, ("HERALD_TOKEN_ALGORITHM", "RS256")]);
    assert_eq!(settings_named(&errs), ["HERALD_TOKEN_ALGORITHM"]);
    let errs = errors(&[url, ("HERALD_TOKEN_HMAC_PREVIOUS_SECRET", SECRET)]);
    assert_eq!(settings_named(&errs), ["HERALD_TOKEN_HMAC_PREVIOUS_SECRET"]);
    // Intervals without the URL.
    let errs = errors(&[("HERALD_TOKEN_JWKS_REFRESH_INTERVAL", "60")]);
    assert_eq!(
        settings_named(&errs),
        ["HERALD_TOKEN_JWKS_REFRESH_INTERVAL"]
    );
}
