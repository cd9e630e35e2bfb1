//! Connection and subscription tokens (JWT): verification, and minting for tests and tools.
//!
//! A node builds one [`Verifier`] from its [`AuthConfig`] at start-up and calls it on every
//! `connect` (connection token) and every subscribe to a private channel (subscription
//! token). The algorithm is pinned by configuration: a token whose header names any other
//! algorithm is rejected, and `alg: none` is never accepted (the `jsonwebtoken` crate cannot
//! even parse it). Claims follow Centrifugo: `sub`, `exp`, `expire_at`, `info`, `b64info`,
//! `channels`, `subs`, `meta` in connection tokens; `channel`, `client`, `exp`, `expire_at`,
//! `info`, `b64info`, `data`, `b64data`, `override` in subscription tokens. Keys: one
//! configured key (HMAC secret or public key) and/or the keys of a JWKS endpoint, chosen
//! per token by its `alg` and `kid`. During a key rotation a previous HMAC secret is still accepted
//! until a configured time.
//!
//! # Layout
//! - this file: configuration, keys, claims and the error type.
//! - `verify`: the [`Verifier`], built once and shared by every connection.
//! - `claims`: a connection token's claims as written, bounded and decoded.
//! - `jwks`: [`KeySet`] (a JWKS document's keys by `kid`) and the [`KeySetCell`] a
//!   node's fetcher fills for its verifier.
//! - `mint`: [`mint()`], signing tokens for quick starts, tests and `herald-node token`.
//! - `tests`, `key_tests`, `claim_tests`, `jwks_tests`: unit tests.

mod claims;
mod jwks;
mod mint;
mod verify;

#[cfg(test)]
mod claim_tests;
#[cfg(test)]
mod jwks_tests;
#[cfg(test)]
mod key_tests;
#[cfg(test)]
mod tests;

pub use claims::{MAX_CLAIMED_CHANNELS, MAX_INFO_BYTES, MAX_META_BYTES, MAX_SUB_DATA_BYTES};
pub use jsonwebtoken::Algorithm;
pub use jwks::{KeySet, KeySetCell, MAX_JWKS_KEYS};
pub use mint::{mint, mint_with_kid};
pub use verify::Verifier;

use crate::protocol::RawJson;
use std::fmt;

/// Largest `leeway_secs` accepted. Larger values are almost certainly a unit mistake
/// (milliseconds?) and would in effect turn expiry checks off.
pub const MAX_LEEWAY_SECS: u64 = 86_400;

/// Key material to verify tokens.
///
/// `Debug` prints the kind only: HMAC secrets must never reach a log line.
#[derive(Clone)]
pub enum VerifyKey {
    /// Shared secret for HS256/HS384/HS512, raw bytes.
    Hmac(Vec<u8>),
    /// RSA public key, PEM (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`), for RS*/PS*.
    RsaPem(Vec<u8>),
    /// EC public key, PEM (`BEGIN PUBLIC KEY`), for ES256 (P-256) or ES384 (P-384).
    EcPem(Vec<u8>),
    /// Ed25519 public key, PEM (`BEGIN PUBLIC KEY`), for EdDSA.
    EdPem(Vec<u8>),
}

impl VerifyKey {
    /// The name of the key kind, for logs and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyKey::Hmac(_) => "Hmac",
            VerifyKey::RsaPem(_) => "RsaPem",
            VerifyKey::EcPem(_) => "EcPem",
            VerifyKey::EdPem(_) => "EdPem",
        }
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(<redacted>)", self.kind())
    }
}

/// Key material to sign tokens: the private halves of [`VerifyKey`]'s kinds.
///
/// `Debug` prints the kind only.
#[derive(Clone)]
pub enum SignKey {
    /// Shared secret for HS256/HS384/HS512, raw bytes.
    Hmac(Vec<u8>),
    /// RSA private key, PEM (PKCS#1 or PKCS#8), for RS*/PS*.
    RsaPem(Vec<u8>),
    /// EC private key, PEM (PKCS#8 `BEGIN PRIVATE KEY`), for ES256/ES384.
    EcPem(Vec<u8>),
    /// Ed25519 private key, PEM (PKCS#8 `BEGIN PRIVATE KEY`), for EdDSA.
    EdPem(Vec<u8>),
}

impl SignKey {
    /// The name of the key kind, for logs and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            SignKey::Hmac(_) => "Hmac",
            SignKey::RsaPem(_) => "RsaPem",
            SignKey::EcPem(_) => "EcPem",
            SignKey::EdPem(_) => "EdPem",
        }
    }
}

impl fmt::Debug for SignKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(<redacted>)", self.kind())
    }
}

/// How tokens are verified. `Debug` is safe to log: the key prints as its kind only.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The one algorithm accepted with `key`; tokens naming any other `alg` are verified
    /// by the JWKS keys when there are any, else rejected. Unused without `key`.
    pub algorithm: Algorithm,
    /// Key to check signatures with; its kind must fit `algorithm`. `None` when tokens
    /// are verified by JWKS keys only.
    pub key: Option<VerifyKey>,
    /// When set, a token's `aud` must be present and contain this value. Default: unset,
    /// and then `aud` is not checked at all.
    pub audience: Option<String>,
    /// When set, a token's `iss` must be present and equal this value. Default: unset.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds. Default 0; at most
    /// [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u64,
    /// The HMAC secret being rotated out: a token whose signature fails with `key` is
    /// checked with this one too, until `valid_until`. Only with an HMAC `key`.
    pub previous: Option<PreviousKey>,
}

/// The previous HMAC secret during a key rotation (Centrifugo's
/// `token.hmac_previous_secret_key` and `..._valid_until`).
#[derive(Clone)]
pub struct PreviousKey {
    /// The old shared secret, raw bytes.
    pub secret: Vec<u8>,
    /// Unix seconds after which the old secret is refused; `None`: accepted until the
    /// setting is removed.
    pub valid_until: Option<u64>,
}

impl fmt::Debug for PreviousKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreviousKey")
            .field("secret", &"<redacted>")
            .field("valid_until", &self.valid_until)
            .finish()
    }
}

impl AuthConfig {
    /// Any algorithm and key, no audience or issuer, no leeway.
    pub fn new(algorithm: Algorithm, key: VerifyKey) -> Self {
        AuthConfig {
            algorithm,
            key: Some(key),
            audience: None,
            issuer: None,
            leeway_secs: 0,
            previous: None,
        }
    }

    /// An HMAC configuration (`algorithm` should be HS256, HS384 or HS512).
    pub fn hmac(algorithm: Algorithm, secret: &[u8]) -> Self {
        AuthConfig::new(algorithm, VerifyKey::Hmac(secret.to_vec()))
    }
}

/// What a valid connection token says about the user: the one thing a token (or a
/// connect proxy) produces for a connection.
#[derive(Clone, Debug, Default)]
pub struct ConnectionClaims {
    /// `sub`: the user id. Empty when the claim is absent (an anonymous user).
    pub sub: String,
    /// `exp`: unix seconds after which the token itself is invalid; `None` = never.
    pub exp: Option<u64>,
    /// When the connection expires and must refresh, unix seconds; `None` = never. The
    /// `expire_at` claim when present (`0` = never), else `exp`, as in Centrifugo.
    pub expire_at: Option<u64>,
    /// `info` (or `b64info` decoded, which wins): JSON kept verbatim, attached to presence
    /// and publications. At most [`MAX_INFO_BYTES`].
    pub info: Option<RawJson>,
    /// `channels`: channels the node subscribes the connection to server-side at connect,
    /// with the namespace's options. Ignored when `subs` is not empty (as in Centrifugo).
    pub channels: Vec<String>,
    /// `subs`: server-side subscriptions with per-channel options.
    pub subs: std::collections::BTreeMap<String, SubscribeOptions>,
    /// `meta`: JSON kept server-side with the connection (for proxies), never sent to
    /// clients. At most [`MAX_META_BYTES`].
    pub meta: Option<RawJson>,
}

impl ConnectionClaims {
    /// The server-side subscriptions: `subs` when it has any, else `channels` with
    /// default options.
    pub fn server_side(&self) -> Vec<(String, SubscribeOptions)> {
        if !self.subs.is_empty() {
            return self
                .subs
                .iter()
                .map(|(c, o)| (c.clone(), o.clone()))
                .collect();
        }
        self.channels
            .iter()
            .map(|c| (c.clone(), SubscribeOptions::default()))
            .collect()
    }
}

/// Options of one server-side subscription from the `subs` claim.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubscribeOptions {
    /// `info` (or `b64info` decoded): the subscriber's `chan_info`.
    pub info: Option<RawJson>,
    /// `data` (or `b64data` decoded): sent in the subscription's result.
    pub data: Option<RawJson>,
    /// `override`: namespace options changed for this subscription.
    pub override_: SubscribeOverride,
}

/// Namespace options a `subs` entry overrides (`None`: the namespace's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeOverride {
    /// `presence`: the subscriber appears in presence.
    pub presence: Option<bool>,
    /// `join_leave`: the subscriber's join and leave are announced.
    pub join_leave: Option<bool>,
    /// `force_push_join_leave`: the subscriber receives join and leave pushes.
    pub force_push_join_leave: Option<bool>,
    /// `force_recovery`: recovery on for this subscription.
    pub force_recovery: Option<bool>,
    /// `force_positioning`: stream positions sent for this subscription.
    pub force_positioning: Option<bool>,
}

/// What a valid subscription token (private channels) grants.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionClaims {
    /// `sub`: the user id the token was issued to; empty when absent (Centrifugo v2
    /// backends bind to `client` instead).
    pub sub: String,
    /// `channel`: the one channel this token grants; never empty.
    pub channel: String,
    /// `exp`: unix seconds after which the subscription must refresh; `None` = never.
    pub exp: Option<u64>,
    /// When the subscription expires and must refresh, unix seconds; `None` = never. The
    /// `expire_at` claim when present (`0` = never), else `exp`, as in Centrifugo.
    pub expire_at: Option<u64>,
    /// `info` (or `b64info` decoded, which wins): the subscriber's `chan_info`. At most
    /// [`MAX_INFO_BYTES`].
    pub info: Option<RawJson>,
    /// `data` (or `b64data` decoded): sent in the subscribe result. At most
    /// [`MAX_SUB_DATA_BYTES`].
    pub data: Option<RawJson>,
    /// `override`: namespace options changed for this subscription.
    pub override_: SubscribeOverride,
    /// `client`: the connection (client id) the token was issued for, as Centrifugo v2
    /// backends set it. When present the session must check it equals its own client id.
    pub client: Option<String>,
}

/// Why a token (or the key configuration) was refused.
///
/// Reason texts never contain the token: they may be logged and sent to clients.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `exp` is in the past (beyond the leeway): the client gets error 109 "token expired"
    /// and is expected to fetch a fresh token.
    #[error("token expired")]
    Expired,
    /// The token names a `kid` the JWKS does not have (or none at all) and needs a JWKS
    /// key. A node refetches the key set (rate-limited) and tries once more; then the
    /// client is refused as for any invalid token.
    #[error("invalid token: no JWKS key for its kid")]
    UnknownKey,
    /// Anything else wrong with a token: bad signature, other or `none` algorithm,
    /// malformed, `nbf` in the future, wrong audience or issuer, missing `channel`...
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A configuration problem: unreadable key, key kind not fitting the algorithm,
    /// leeway out of range. Reported at start-up, never caused by a client.
    #[error("token key configuration: {0}")]
    Key(String),
}

/// Claims for minting tokens (quick starts, tests, `herald-node token`).
///
/// Fields at their default are left out of the token.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MintClaims {
    /// `sub`: the user id (written even when empty, as Centrifugo's tools do).
    pub sub: String,
    /// `exp`: unix seconds; `None` makes a token that never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// `channels`: channels the connection is subscribed to server-side at connect
    /// (connection tokens; Centrifugo's meaning).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// `subs`: server-side subscriptions with options, as Centrifugo writes them
    /// (`{"chan": {"info": ..., "override": {"force_recovery": {"value": true}}}}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subs: Option<serde_json::Value>,
    /// `expire_at`: connection expiry, unix seconds (`0` = never), instead of `exp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<u64>,
    /// `b64info`: base64 of the info (wins over `info`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64info: Option<String>,
    /// `meta`: server-side JSON about the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
    /// `info`: arbitrary JSON about the user or subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    /// `channel`: set for a subscription token, unset for a connection token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// `aud`: audience, for nodes configured to require one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// `override` of a subscription token: namespace options changed for it, written as
    /// in `subs` entries (`{"presence": {"value": false}}`).
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_: Option<serde_json::Value>,
    /// `iss`: issuer, for nodes configured to require one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// `nbf`: unix seconds before which the token is not valid yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// The current time in unix seconds, the unit of `exp` and `nbf`.
///
/// A clock before 1970 reads as 0 rather than panicking.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether `algorithm` belongs with a key of this kind, named like [`VerifyKey::kind`].
fn fits(algorithm: Algorithm, kind: &str) -> bool {
    use jsonwebtoken::AlgorithmFamily as F;
    matches!(
        (algorithm.family(), kind),
        (F::Hmac, "Hmac") | (F::Rsa, "RsaPem") | (F::Ec, "EcPem") | (F::Ed, "EdPem")
    )
}

/// The label of the first PEM block (`PUBLIC KEY`, `RSA PRIVATE KEY`...), if any.
fn pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let len = text[start..].find("-----")?;
    Some(&text[start..start + len])
}
