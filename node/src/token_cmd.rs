//! `herald-node token`: mints a connection or subscription token with the node's own
//! HMAC secret, for quick starts and manual testing.
//!
//! Backends mint their own tokens in production; this saves a first-time user from
//! writing JWT code just to try a node. The token carries the node's configured audience
//! and issuer (if any), so the node that printed it accepts it.

use crate::config::NodeConfig;
use herald_shared::auth::{self, AuthError, MintClaims, SignKey, VerifyKey};

/// Help text for `herald-node token --help`, also appended to every usage error.
pub const USAGE: &str = "\
Usage: herald-node token --user ID [--channels A,B] [--ttl SECONDS] [--channel CHANNEL] [--info JSON]

Prints a token signed with this node's HMAC secret (HERALD_TOKEN_HMAC_SECRET).

Options:
  --user ID            user id (the `sub` claim); required, may be empty (--user=)
  --channels A,B       comma-separated channels the connection is subscribed to
                       server-side at connect (connection token; the `channels` claim)
  --ttl SECONDS        lifetime in seconds; 0 = never expires [default: 3600]
  --channel CHANNEL    make a subscription token for CHANNEL instead of a connection token
  --info JSON          the `info` claim: any JSON, e.g. '{\"name\":\"Ann\"}'
  -h, --help           print this help

Each option may also be written --option=value.";

/// Token lifetime when `--ttl` is not given, in seconds.
pub const DEFAULT_TTL_SECS: u64 = 3600;

/// Why no token was printed.
#[derive(Debug, thiserror::Error)]
pub enum TokenCmdError {
    /// The arguments are wrong; the text says which and is followed by [`USAGE`].
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    /// The node has no HMAC secret to sign with (no key, or only a public key).
    #[error("token needs HERALD_TOKEN_HMAC_SECRET: {0}")]
    NoHmacSecret(String),
    /// Signing failed (for example an empty secret).
    #[error("cannot sign the token: {0}")]
    Sign(#[from] AuthError),
}

/// The parsed command line.
#[derive(Debug, Default)]
struct Options {
    /// `--user`: required, so `None` until seen.
    user: Option<String>,
    /// `--channels`, split on commas, blanks dropped.
    channels: Option<Vec<String>>,
    /// `--ttl` in seconds.
    ttl: Option<u64>,
    /// `--channel`: makes a subscription token.
    channel: Option<String>,
    /// `--info`, already checked to be JSON.
    info: Option<serde_json::Value>,
}

/// Runs `herald-node token ARGS...` (`args` excludes `token` itself) and returns the
/// text to print: the token, or the help text for `--help`.
pub fn run(args: &[String], config: &NodeConfig) -> Result<String, TokenCmdError> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(USAGE.to_owned());
    }
    let opts = parse(args)?;
    let Some(user) = opts.user else {
        return Err(usage(
            "--user is required (use --user= for an empty user id)",
        ));
    };
    let Some(auth_config) = &config.auth else {
        return Err(TokenCmdError::NoHmacSecret(
            "this node has no token key configured".into(),
        ));
    };
    let secret = match &auth_config.key {
        Some(VerifyKey::Hmac(secret)) => secret.clone(),
        None => {
            return Err(TokenCmdError::NoHmacSecret(
                "this node verifies tokens with JWKS keys only, which cannot sign them".into(),
            ))
        }
        Some(other) => {
            return Err(TokenCmdError::NoHmacSecret(format!(
                "this node verifies tokens with a public key ({}), which cannot sign them",
                other.kind()
            )))
        }
    };
    let exp = match opts.ttl.unwrap_or(DEFAULT_TTL_SECS) {
        0 => None,
        ttl => Some(
            auth::now_secs()
                .checked_add(ttl)
                .ok_or_else(|| usage("--ttl is too large"))?,
        ),
    };
    let claims = MintClaims {
        sub: user,
        exp,
        channels: opts.channels.unwrap_or_default(),
        info: opts.info,
        channel: opts.channel,
        aud: auth_config.audience.clone(),
        iss: auth_config.issuer.clone(),
        nbf: None,
        ..Default::default()
    };
    Ok(auth::mint(
        auth_config.algorithm,
        &SignKey::Hmac(secret),
        &claims,
    )?)
}

/// Reads `--name value` and `--name=value` pairs; every option at most once.
fn parse(args: &[String]) -> Result<Options, TokenCmdError> {
    let mut opts = Options::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(usage(&format!("unexpected argument {arg:?}")));
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, value.to_owned()),
            None => {
                // A following option is not a value: `--user --ttl 5` forgot the id.
                match rest.next() {
                    Some(value) if !value.starts_with("--") => (flag, value.clone()),
                    _ => return Err(usage(&format!("--{flag} needs a value"))),
                }
            }
        };
        let duplicate = match name {
            "user" => opts.user.replace(value).is_some(),
            "channels" => opts.channels.replace(split_channels(&value)).is_some(),
            "ttl" => {
                let ttl = value.parse().map_err(|_| {
                    usage(&format!(
                        "--ttl must be a whole number of seconds, not {value:?}"
                    ))
                })?;
                opts.ttl.replace(ttl).is_some()
            }
            "channel" if value.is_empty() => return Err(usage("--channel must not be empty")),
            "channel" => opts.channel.replace(value).is_some(),
            "info" => {
                let info = serde_json::from_str(&value)
                    .map_err(|e| usage(&format!("--info is not JSON: {e}")))?;
                opts.info.replace(info).is_some()
            }
            _ => return Err(usage(&format!("unknown option --{name}"))),
        };
        if duplicate {
            return Err(usage(&format!("--{name} given twice")));
        }
    }
    if opts.channel.is_some() && opts.channels.is_some() {
        return Err(usage(
            "--channels belongs in connection tokens; --channel makes a subscription token",
        ));
    }
    Ok(opts)
}

/// `a, b,,c` → `["a", "b", "c"]`.
fn split_channels(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A [`TokenCmdError::Usage`] with this message.
fn usage(message: &str) -> TokenCmdError {
    TokenCmdError::Usage(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::auth::{Algorithm, AuthConfig, Verifier};

    fn config() -> NodeConfig {
        NodeConfig::for_tests("token-cmd-secret", "api-key")
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn verifier(config: &NodeConfig) -> Verifier {
        Verifier::new(config.auth.as_ref().expect("auth configured")).expect("valid key")
    }

    #[test]
    fn connection_token_round_trips() {
        let config = config();
        let token = run(
            &args(&[
                "--user",
                "42",
                "--channels",
                "news, chat:lobby,",
                "--info",
                r#"{"n": 1}"#,
            ]),
            &config,
        )
        .unwrap();
        let claims = verifier(&config).verify_connection(&token).unwrap();
        assert_eq!(claims.sub, "42");
        assert_eq!(claims.channels, ["news", "chat:lobby"]);
        assert_eq!(claims.info.unwrap().as_str(), r#"{"n":1}"#);
        let exp = claims.exp.expect("default ttl sets exp");
        let expected = auth::now_secs() + DEFAULT_TTL_SECS;
        assert!(exp.abs_diff(expected) <= 2, "exp {exp} vs {expected}");
    }

    #[test]
    fn subscription_token_with_equals_form_and_no_expiry() {
        let config = config();
        let token = run(
            &args(&["--user=7", "--channel=$secret", "--ttl=0", "--info=\"x\""]),
            &config,
        )
        .unwrap();
        let verifier = verifier(&config);
        let claims = verifier.verify_subscription(&token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.channel.as_str()),
            ("7", "$secret")
        );
        assert_eq!(claims.exp, None);
        assert_eq!(claims.info.unwrap().as_str(), r#""x""#);
        assert!(
            verifier.verify_connection(&token).is_err(),
            "not a connection token"
        );
    }

    #[test]
    fn empty_user_and_custom_ttl() {
        let config = config();
        let token = run(&args(&["--user=", "--ttl", "60"]), &config).unwrap();
        let claims = verifier(&config).verify_connection(&token).unwrap();
        assert_eq!(claims.sub, "");
        assert!(claims.exp.unwrap() <= auth::now_secs() + 60);
    }

    #[test]
    fn configured_audience_and_issuer_go_into_the_token() {
        let mut config = config();
        let auth = config.auth.as_mut().unwrap();
        auth.audience = Some("herald".into());
        auth.issuer = Some("me".into());
        let token = run(&args(&["--user", "1"]), &config).unwrap();
        assert_eq!(
            verifier(&config).verify_connection(&token).unwrap().sub,
            "1"
        );
    }

    #[test]
    fn help_is_printed_not_an_error() {
        for flag in ["--help", "-h"] {
            let text = run(&args(&["--user", "1", flag]), &config()).unwrap();
            assert!(text.starts_with("Usage: herald-node token"), "{text}");
        }
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let cases: &[&[&str]] = &[
            &[],
            &["--channels", "a"],
            &["--user"],
            &["--user", "--ttl=5"],
            &["--user", "1", "--user", "2"],
            &["--user", "1", "extra"],
            &["--user", "1", "-u"],
            &["--user", "1", "--nope", "x"],
            &["--user", "1", "--ttl", "soon"],
            &["--user", "1", "--ttl", "-5"],
            &["--user", "1", "--info", "{not json"],
            &["--user", "1", "--channel", ""],
            &["--user", "1", "--channel", "c", "--channels", "a,b"],
            &["--user", "1", "--ttl", &u64::MAX.to_string()],
        ];
        for case in cases {
            match run(&args(case), &config()) {
                Err(e @ TokenCmdError::Usage(_)) => {
                    assert!(e.to_string().contains(USAGE), "{case:?}");
                }
                other => panic!("{case:?}: expected a usage error, got {other:?}"),
            }
        }
    }

    #[test]
    fn needs_an_hmac_secret() {
        let mut config = config();
        config.auth = None;
        let err = run(&args(&["--user", "1"]), &config).unwrap_err();
        assert!(matches!(err, TokenCmdError::NoHmacSecret(_)), "{err:?}");
        assert!(err.to_string().contains("HERALD_TOKEN_HMAC_SECRET"));

        config.auth = Some(AuthConfig::new(
            Algorithm::RS256,
            VerifyKey::RsaPem(b"-----BEGIN PUBLIC KEY-----".to_vec()),
        ));
        let err = run(&args(&["--user", "1"]), &config).unwrap_err();
        assert!(
            err.to_string().contains("HERALD_TOKEN_HMAC_SECRET"),
            "{err}"
        );
        assert!(err.to_string().contains("public key"), "{err}");
    }

    #[test]
    fn pinned_hmac_algorithm_is_used() {
        let mut config = config();
        config.auth = Some(AuthConfig::hmac(Algorithm::HS512, b"another-secret"));
        let token = run(&args(&["--user", "1"]), &config).unwrap();
        assert!(verifier(&config).verify_connection(&token).is_ok());
        let hs256 = Verifier::new(&AuthConfig::hmac(Algorithm::HS256, b"another-secret")).unwrap();
        assert!(
            hs256.verify_connection(&token).is_err(),
            "signed with HS512, not HS256"
        );
    }
}
