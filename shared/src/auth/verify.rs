//! The [`Verifier`]: checks a token's signature, algorithm and time claims, then reads
//! the claims Herald uses.
//!
//! Which key checks a token: the configured key when the token's `alg` is the pinned
//! algorithm and (for public keys) it has no `kid`, or there are no JWKS keys; otherwise,
//! with a JWKS configured and an RSA or EC `alg`, the JWKS key named by its `kid`. So an
//! HMAC secret and a JWKS work side by side, as in Centrifugo, each token picking by
//! its `alg`.

use super::claims::{WireConnection, WireOverride, WireSubscribeOptions};
use super::jwks::{KeySetCell, JWKS_ALGORITHMS};
use super::{
    fits, now_secs, pem_label, AuthConfig, AuthError, ConnectionClaims, SubscriptionClaims,
    VerifyKey, MAX_LEEWAY_SECS,
};
use crate::protocol::RawJson;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Verifies connection and subscription tokens against one pinned algorithm and key,
/// and/or the keys of a JWKS.
///
/// Built once from the configuration (all key problems surface here, at start-up) and
/// then shared: cloning is a reference-count bump.
#[derive(Clone)]
pub struct Verifier {
    /// Key and validation rules; immutable after [`Verifier::new`].
    inner: Arc<Inner>,
}

/// The parts of a [`Verifier`] shared by every clone.
struct Inner {
    /// The parsed public key or secret; `None` with JWKS keys only.
    key: Option<DecodingKey>,
    /// Whether `key` is an HMAC secret (then a `kid` in the header does not matter).
    hmac: bool,
    /// The JWKS keys, filled by the node's fetcher.
    jwks: Option<Arc<KeySetCell>>,
    /// The validation rules for each algorithm a JWKS token may name.
    jwks_validation: Vec<Validation>,
    /// The HMAC secret being rotated out, and the unix second after which it is refused.
    previous: Option<(DecodingKey, Option<u64>)>,
    /// Pinned algorithm, leeway, audience and issuer rules, in `jsonwebtoken`'s terms.
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.inner.validation;
        f.debug_struct("Verifier")
            .field("algorithm", &v.algorithms)
            .field("audience", &v.aud)
            .field("issuer", &v.iss)
            .field("leeway_secs", &v.leeway)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Parses the key and fixes the validation rules.
    ///
    /// Fails with [`AuthError::Key`] when the key cannot be read, when its kind does not
    /// fit the algorithm (HS256 with an RSA key, RS256 with an HMAC secret, an EC key of
    /// the wrong curve...), or when the leeway is above [`MAX_LEEWAY_SECS`].
    pub fn new(cfg: &AuthConfig) -> Result<Self, AuthError> {
        Verifier::with_key_set(cfg, None)
    }

    /// As [`Verifier::new`], with the JWKS keys `jwks` (which may still be empty and is
    /// filled later) for tokens the configured key is not for. Without `cfg.key`, every
    /// token is verified by the JWKS keys.
    pub fn with_key_set(
        cfg: &AuthConfig,
        jwks: Option<Arc<KeySetCell>>,
    ) -> Result<Self, AuthError> {
        let alg = cfg.algorithm;
        if cfg.leeway_secs > MAX_LEEWAY_SECS {
            return Err(AuthError::Key(format!(
                "leeway of {} seconds is above the maximum of {MAX_LEEWAY_SECS}",
                cfg.leeway_secs
            )));
        }
        let jwks_validation = JWKS_ALGORITHMS
            .iter()
            .map(|a| validation(*a, cfg))
            .collect();
        let Some(cfg_key) = &cfg.key else {
            if jwks.is_none() {
                return Err(AuthError::Key("no key and no JWKS to verify with".into()));
            }
            if cfg.previous.is_some() {
                return Err(AuthError::Key(
                    "a previous secret is only for HMAC keys".into(),
                ));
            }
            return Ok(Verifier {
                inner: Arc::new(Inner {
                    key: None,
                    hmac: false,
                    jwks,
                    jwks_validation,
                    previous: None,
                    validation: validation(alg, cfg),
                }),
            });
        };
        if !fits(alg, cfg_key.kind()) {
            return Err(AuthError::Key(format!(
                "algorithm {alg:?} cannot be used with a {} key",
                cfg_key.kind()
            )));
        }
        let key = decoding_key(cfg_key)?;
        let hmac = matches!(cfg_key, VerifyKey::Hmac(_));
        let previous = match &cfg.previous {
            None => None,
            Some(_) if !hmac => {
                return Err(AuthError::Key(
                    "a previous secret is only for HMAC keys".into(),
                ))
            }
            Some(p) => Some((
                decoding_key(&VerifyKey::Hmac(p.secret.clone()))?,
                p.valid_until,
            )),
        };
        // Build the verifier `jsonwebtoken` would build per token once now, so that a key
        // of the wrong curve fails at start-up instead of on every connect.
        if let Err(e) = jsonwebtoken::crypto::verify("", b"", &key, alg) {
            return Err(AuthError::Key(format!(
                "key does not fit {alg:?}: {:?}",
                e.kind()
            )));
        }
        Ok(Verifier {
            inner: Arc::new(Inner {
                key: Some(key),
                hmac,
                jwks,
                jwks_validation,
                previous,
                validation: validation(alg, cfg),
            }),
        })
    }

    /// The pinned algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.validation.algorithms[0]
    }

    /// Verifies a connection token (the `token` of the `connect` command).
    ///
    /// A token carrying a `channel` claim is a subscription token and is refused here, so
    /// one kind cannot stand in for the other.
    pub fn verify_connection(&self, token: &str) -> Result<ConnectionClaims, AuthError> {
        let claims = self.decode(token)?;
        if claims.channel.is_some() {
            return Err(invalid("subscription token used as a connection token"));
        }
        WireConnection {
            sub: claims.sub,
            exp: claims.exp,
            expire_at: claims.expire_at,
            info: claims.info,
            b64info: claims.b64info,
            channels: claims.channels,
            subs: claims.subs,
            meta: claims.meta,
        }
        .into_claims()
    }

    /// Verifies a subscription token (the `token` of a `subscribe` to a private channel).
    ///
    /// The caller checks that `channel` is the channel asked for and, when `client` is
    /// present, that it is this connection's client id.
    pub fn verify_subscription(&self, token: &str) -> Result<SubscriptionClaims, AuthError> {
        let claims = self.decode(token)?;
        let channel = match claims.channel {
            Some(channel) if !channel.is_empty() => channel,
            _ => return Err(invalid("subscription token without a channel claim")),
        };
        let options = WireSubscribeOptions {
            info: claims.info,
            b64info: claims.b64info,
            data: claims.data,
            b64data: claims.b64data,
            override_: claims.override_,
        }
        .into_options()?;
        Ok(SubscriptionClaims {
            sub: claims.sub.unwrap_or_default(),
            channel,
            exp: claims.exp,
            // `expire_at` present wins over `exp`, and 0 means "never", as in Centrifugo.
            expire_at: match claims.expire_at {
                Some(0) => None,
                Some(at) => Some(at),
                None => claims.exp,
            },
            info: options.info,
            data: options.data,
            override_: options.override_,
            client: claims.client,
        })
    }

    /// Checks header, signature and time/audience/issuer claims, and reads the claims.
    fn decode(&self, token: &str) -> Result<TokenClaims, AuthError> {
        // Parsing the header separately only to say what was wrong with it: an unknown
        // `alg` (notably `none`) fails here as a JSON error, indistinguishable later.
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::Json(_) => {
                invalid("bad header: malformed, or an unsupported alg such as none")
            }
            _ => map_error(&e),
        })?;
        let inner = &self.inner;
        let by_key = inner
            .key
            .as_ref()
            .filter(|_| header.alg == self.algorithm() && (inner.hmac || header.kid.is_none()));
        let key = match (by_key, &inner.jwks) {
            (Some(key), _) => key,
            (None, Some(jwks)) if JWKS_ALGORITHMS.contains(&header.alg) => {
                return self.decode_by_jwks(token, header.alg, header.kid.as_deref(), jwks);
            }
            // The configured key, whose pinned algorithm refuses this token.
            (None, _) => match &inner.key {
                Some(key) => key,
                None => return Err(invalid("algorithm not allowed")),
            },
        };
        let first = jsonwebtoken::decode::<TokenClaims>(token, key, &inner.validation);
        match (first, &inner.previous) {
            (Err(e), Some((previous, valid_until)))
                if matches!(e.kind(), ErrorKind::InvalidSignature)
                    && valid_until.is_none_or(|until| now_secs() <= until) =>
            {
                jsonwebtoken::decode::<TokenClaims>(token, previous, &self.inner.validation)
                    .map(|data| data.claims)
                    .map_err(|e| map_error(&e))
            }
            (first, _) => first.map(|data| data.claims).map_err(|e| map_error(&e)),
        }
    }
}

impl Verifier {
    /// Verifies with the JWKS key named by `kid`, which must fit `alg`.
    fn decode_by_jwks(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
        jwks: &KeySetCell,
    ) -> Result<TokenClaims, AuthError> {
        let Some(kid) = kid.filter(|k| !k.is_empty()) else {
            return Err(invalid("no kid in the header: a JWKS key is needed"));
        };
        let set = jwks.load();
        let Some(jwk) = set.get(kid) else {
            return Err(AuthError::UnknownKey);
        };
        if !jwk.fits(alg) {
            return Err(invalid("algorithm does not fit the JWKS key"));
        }
        let at = JWKS_ALGORITHMS.iter().position(|a| *a == alg);
        let validation = &self.inner.jwks_validation[at.unwrap_or_default()];
        jsonwebtoken::decode::<TokenClaims>(token, &jwk.key, validation)
            .map(|data| data.claims)
            .map_err(|e| map_error(&e))
    }
}

/// The validation rules for tokens naming `alg`.
fn validation(alg: Algorithm, cfg: &AuthConfig) -> Validation {
    let mut validation = Validation::new(alg);
    // `exp` is optional (a token without it never expires) but checked when present.
    validation.required_spec_claims.clear();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = cfg.leeway_secs;
    validation.reject_tokens_expiring_in_less_than = 0;
    // Off when unconfigured: `jsonwebtoken` would otherwise reject every token that
    // carries an `aud` claim. When configured, the claim must be there.
    validation.validate_aud = cfg.audience.is_some();
    if let Some(aud) = &cfg.audience {
        validation.set_audience(&[aud]);
        validation.required_spec_claims.insert("aud".into());
    }
    if let Some(iss) = &cfg.issuer {
        validation.set_issuer(&[iss]);
        validation.required_spec_claims.insert("iss".into());
    }
    validation
}

/// The claims read from either kind of token; which are required depends on the kind.
#[derive(Deserialize)]
struct TokenClaims {
    /// User id.
    #[serde(default)]
    sub: Option<String>,
    /// Expiry, unix seconds; integer or float as `jsonwebtoken` itself accepts.
    #[serde(default, deserialize_with = "unix_time")]
    exp: Option<u64>,
    /// Connection expiry instead of `exp` (0 = never).
    #[serde(default, deserialize_with = "unix_time")]
    expire_at: Option<u64>,
    /// Arbitrary JSON, kept verbatim.
    #[serde(default)]
    info: Option<RawJson>,
    /// Base64 of the info; wins over `info`.
    #[serde(default)]
    b64info: Option<String>,
    /// Subscription token: JSON for the subscribe result.
    #[serde(default)]
    data: Option<RawJson>,
    /// Subscription token: base64 of the data; wins over `data`.
    #[serde(default)]
    b64data: Option<String>,
    /// Subscription token: namespace options changed for this subscription.
    #[serde(default, rename = "override")]
    override_: Option<WireOverride>,
    /// Channels the connection is subscribed to server-side at connect.
    #[serde(default)]
    channels: Option<Vec<String>>,
    /// Server-side subscriptions with options; wins over `channels`.
    #[serde(default)]
    subs: Option<BTreeMap<String, WireSubscribeOptions>>,
    /// Server-side data about the connection.
    #[serde(default)]
    meta: Option<RawJson>,
    /// The channel a subscription token grants.
    #[serde(default)]
    channel: Option<String>,
    /// The client id a subscription token was issued for (Centrifugo v2).
    #[serde(default)]
    client: Option<String>,
}

/// Reads a NumericDate (RFC 7519): a non-negative number of seconds, possibly fractional.
fn unix_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(secs) = n.as_u64() {
        return Ok(Some(secs));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(Some(f.round() as u64)),
        _ => Err(serde::de::Error::custom(
            "time claim is not a non-negative number",
        )),
    }
}

/// Turns the key configuration into `jsonwebtoken`'s key, checking what it would only
/// discover later, per token.
fn decoding_key(key: &VerifyKey) -> Result<DecodingKey, AuthError> {
    let bad = |what: &str, e: jsonwebtoken::errors::Error| {
        AuthError::Key(format!("cannot read the {what}: {:?}", e.kind()))
    };
    match key {
        VerifyKey::Hmac(secret) if secret.is_empty() => {
            Err(AuthError::Key("the HMAC secret is empty".into()))
        }
        VerifyKey::Hmac(secret) => Ok(DecodingKey::from_secret(secret)),
        VerifyKey::RsaPem(pem) => {
            // `jsonwebtoken` accepts a private key here too, then fails every signature
            // check; refuse it now with a message that says why.
            match pem_label(pem) {
                Some("PUBLIC KEY" | "RSA PUBLIC KEY") => {}
                Some(label) => {
                    return Err(AuthError::Key(format!(
                        "the RSA key PEM is a {label:?}, expected a PUBLIC KEY"
                    )))
                }
                None => return Err(AuthError::Key("the RSA key is not PEM".into())),
            }
            DecodingKey::from_rsa_pem(pem).map_err(|e| bad("RSA public key PEM", e))
        }
        VerifyKey::EcPem(pem) => {
            DecodingKey::from_ec_pem(pem).map_err(|e| bad("EC public key PEM", e))
        }
        VerifyKey::EdPem(pem) => {
            let key =
                DecodingKey::from_ed_pem(pem).map_err(|e| bad("Ed25519 public key PEM", e))?;
            // The Ed25519 verifier slices the first 32 bytes without checking: a short
            // key would panic on the first token.
            match key.try_get_as_bytes() {
                Ok(bytes) if bytes.len() == 32 => Ok(key),
                _ => Err(AuthError::Key(
                    "the Ed25519 public key is not 32 bytes".into(),
                )),
            }
        }
    }
}

/// An [`AuthError::Invalid`] with a fixed reason.
fn invalid(reason: &str) -> AuthError {
    AuthError::Invalid(reason.to_owned())
}

/// Maps `jsonwebtoken`'s error to ours with a short reason that never quotes the token
/// or its claim values (serde's messages would).
fn map_error(e: &jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature => invalid("bad signature"),
        ErrorKind::InvalidAlgorithm => invalid("algorithm not allowed"),
        ErrorKind::ImmatureSignature => invalid("not valid yet (nbf is in the future)"),
        ErrorKind::InvalidAudience => invalid("wrong audience"),
        ErrorKind::InvalidIssuer => invalid("wrong issuer"),
        ErrorKind::InvalidSubject => invalid("wrong subject"),
        // The claim names come from our own configuration or the library, not the token.
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::Invalid(format!("missing {claim} claim"))
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            AuthError::Invalid(format!("malformed {claim} claim"))
        }
        ErrorKind::Json(_) => invalid("malformed claims"),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            invalid("malformed token")
        }
        _ => invalid("rejected"),
    }
}
