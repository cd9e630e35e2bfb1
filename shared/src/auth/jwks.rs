//! JSON Web Key Sets (RFC 7517): the public keys a JWKS endpoint publishes, parsed into
//! keys the [`Verifier`](super::Verifier) selects by a token's `kid`.
//!
//! Nothing here touches the network: the node fetches the document, parses it with
//! [`KeySet::parse`] and stores it in the [`KeySetCell`] it shares with its verifier.
//! Only signature keys Centrifugo verifies with are kept (RSA for RS256/384/512 and
//! PS256/384/512, EC P-256 for ES256 and P-384 for ES384); a key of any other type, one
//! without a `kid`, one marked `"use": "enc"`, or one whose numbers do not make a key is
//! left out and counted, so one odd entry does not make a provider's whole set unusable.

use super::AuthError;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Most keys read from one JWKS document; a provider publishes a handful.
pub const MAX_JWKS_KEYS: usize = 100;

/// The algorithms a token verified by a JWKS key may name.
pub(super) const JWKS_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// What kind of key a JWK is, which decides the algorithms it verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `kty: RSA`: RS* and PS*.
    Rsa,
    /// `kty: EC, crv: P-256`: ES256 only.
    P256,
    /// `kty: EC, crv: P-384`: ES384 only.
    P384,
}

/// One usable key of a set.
pub(super) struct JwkKey {
    /// The key in `jsonwebtoken`'s form.
    pub(super) key: DecodingKey,
    /// RSA or which EC curve.
    kind: Kind,
    /// The JWK's `alg` when it names one: then tokens must name exactly it.
    alg: Option<Algorithm>,
}

impl JwkKey {
    /// Whether a token naming `alg` may be verified with this key.
    pub(super) fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        use Algorithm::*;
        match self.kind {
            Kind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Kind::P256 => alg == ES256,
            Kind::P384 => alg == ES384,
        }
    }
}

/// The usable keys of one JWKS document, by `kid`.
#[derive(Default)]
pub struct KeySet {
    /// Keys by their `kid`; the first of two with the same `kid` wins.
    keys: HashMap<String, JwkKey>,
    /// Entries left out (unsupported, malformed, duplicate, no `kid`), for a log line.
    skipped: usize,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids())
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// The document's shape: only `keys` matters, each entry read on its own.
#[derive(serde::Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Reads a JWKS document. Fails when it is not JSON with a `keys` array or has more
    /// than [`MAX_JWKS_KEYS`] entries; entries that are not usable keys are skipped.
    pub fn parse(json: &[u8]) -> Result<KeySet, AuthError> {
        let doc: Document = serde_json::from_slice(json)
            .map_err(|_| AuthError::Key("JWKS is not JSON with a \"keys\" array".into()))?;
        if doc.keys.len() > MAX_JWKS_KEYS {
            return Err(AuthError::Key(format!(
                "JWKS has more than {MAX_JWKS_KEYS} keys"
            )));
        }
        let mut set = KeySet::default();
        for entry in doc.keys {
            match usable(entry) {
                Some((kid, key)) if !set.keys.contains_key(&kid) => {
                    set.keys.insert(kid, key);
                }
                _ => set.skipped += 1,
            }
        }
        Ok(set)
    }

    /// The usable keys' ids, sorted (for logs and tests).
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// How many usable keys the set has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many entries of the document were left out.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The key with this `kid`.
    pub(super) fn get(&self, kid: &str) -> Option<&JwkKey> {
        self.keys.get(kid)
    }
}

/// The key of one entry, or `None` when it cannot verify tokens here.
fn usable(entry: serde_json::Value) -> Option<(String, JwkKey)> {
    let jwk: Jwk = serde_json::from_value(entry).ok()?;
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Kind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Kind::P256,
            EllipticCurve::P384 => Kind::P384,
            _ => return None,
        },
        // Symmetric (`oct`) keys must never come from a public endpoint; Ed25519 is not
        // what Centrifugo reads from a JWKS either.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(signature_algorithm(a)?),
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    let probe = match kind {
        Kind::Rsa => Algorithm::RS256,
        Kind::P256 => Algorithm::ES256,
        Kind::P384 => Algorithm::ES384,
    };
    let key = JwkKey { key, kind, alg };
    if alg.is_some_and(|a| !key.fits(a)) {
        return None;
    }
    // Numbers that do not make a key fail here rather than on every token.
    jsonwebtoken::crypto::verify("", b"", &key.key, alg.unwrap_or(probe)).ok()?;
    Some((kid, key))
}

/// The JWS algorithm a JWK's `alg` names, if it is one tokens may use here.
fn signature_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

/// The current key set, shared by the verifier (reads on every token) and the node's
/// fetcher (replaces it whole after each good fetch). Starts empty.
#[derive(Debug, Default)]
pub struct KeySetCell {
    /// Swapped whole, so a reader never sees half of two sets.
    current: RwLock<Arc<KeySet>>,
}

impl KeySetCell {
    /// An empty cell: every JWKS token is refused until the first good fetch.
    pub fn new() -> Arc<Self> {
        Arc::new(KeySetCell::default())
    }

    /// Replaces the set.
    pub fn store(&self, set: KeySet) {
        // A panic while holding the lock cannot leave a half-written Arc behind.
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    }

    /// The current set.
    pub fn load(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
