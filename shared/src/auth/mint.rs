//! Signing tokens: quick starts, tests, load generators and `herald-node token`.
//!
//! Production backends mint their own tokens with any JWT library; this exists so that
//! Herald's own tools need nothing else.

use super::{fits, AuthError, MintClaims, SignKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Signs `claims` with `key` under `algorithm` and returns the compact JWT text.
///
/// Fails with [`AuthError::Key`] when the key cannot be read or does not fit the
/// algorithm. The header is `{"typ":"JWT","alg":...}`.
pub fn mint(algorithm: Algorithm, key: &SignKey, claims: &MintClaims) -> Result<String, AuthError> {
    mint_with_kid(algorithm, key, None, claims)
}

/// As [`mint()`], with a `kid` in the header when given: the JWKS key that verifies it.
pub fn mint_with_kid(
    algorithm: Algorithm,
    key: &SignKey,
    kid: Option<&str>,
    claims: &MintClaims,
) -> Result<String, AuthError> {
    if !fits(algorithm, key.kind()) {
        return Err(AuthError::Key(format!(
            "algorithm {algorithm:?} cannot be used with a {} key",
            key.kind()
        )));
    }
    let key = encoding_key(key)?;
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key)
        .map_err(|e| AuthError::Key(format!("cannot sign: {:?}", e.kind())))
}

/// Parses the signing key. Parsing again on every call is fine at the rates tools mint.
fn encoding_key(key: &SignKey) -> Result<EncodingKey, AuthError> {
    let bad = |what: &str, e: jsonwebtoken::errors::Error| {
        AuthError::Key(format!("cannot read the {what}: {:?}", e.kind()))
    };
    match key {
        // An empty secret would sign tokens that no node accepts (it refuses empty secrets).
        SignKey::Hmac(secret) if secret.is_empty() => {
            Err(AuthError::Key("the HMAC secret is empty".into()))
        }
        SignKey::Hmac(secret) => Ok(EncodingKey::from_secret(secret)),
        SignKey::RsaPem(pem) => {
            EncodingKey::from_rsa_pem(pem).map_err(|e| bad("RSA private key PEM", e))
        }
        SignKey::EcPem(pem) => {
            EncodingKey::from_ec_pem(pem).map_err(|e| bad("EC private key PEM", e))
        }
        SignKey::EdPem(pem) => {
            EncodingKey::from_ed_pem(pem).map_err(|e| bad("Ed25519 private key PEM", e))
        }
    }
}
