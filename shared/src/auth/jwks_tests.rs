//! Unit tests for JWKS keys: parsing a document, selecting a key by `kid`, and how JWKS
//! keys and a configured key share one verifier.

use super::tests::{claims, mint_hs256, SECRET};
use super::*;
use std::sync::Arc;

const JWKS: &[u8] = include_bytes!("../../tests/keys/jwks.json");
const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/keys/rsa_private.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../tests/keys/ec_private.pem");
const EC384_PRIVATE: &[u8] = include_bytes!("../../tests/keys/ec384_private.pem");

fn rsa() -> SignKey {
    SignKey::RsaPem(RSA_PRIVATE.into())
}

fn token(alg: Algorithm, key: &SignKey, kid: Option<&str>) -> String {
    mint_with_kid(alg, key, kid, &claims("alice")).expect("mint")
}

/// A verifier with JWKS keys only, filled from `doc`.
fn jwks_verifier(doc: &[u8]) -> (Verifier, Arc<KeySetCell>) {
    let cell = KeySetCell::new();
    cell.store(KeySet::parse(doc).expect("parses"));
    let cfg = AuthConfig {
        key: None,
        ..AuthConfig::hmac(Algorithm::HS256, SECRET)
    };
    let v = Verifier::with_key_set(&cfg, Some(cell.clone())).expect("config");
    (v, cell)
}

#[test]
fn parses_rsa_and_ec_keys_by_kid() {
    let set = KeySet::parse(JWKS).unwrap();
    assert_eq!(set.kids(), ["ec-256", "ec-384", "rsa-1"]);
    assert_eq!(set.skipped(), 0);
}

#[test]
fn verifies_each_algorithm_with_the_key_its_kid_names() {
    let (v, _) = jwks_verifier(JWKS);
    let ec384 = SignKey::EcPem(EC384_PRIVATE.into());
    let ec = SignKey::EcPem(EC_PRIVATE.into());
    for (alg, key, kid) in [
        (Algorithm::RS256, rsa(), "rsa-1"),
        (Algorithm::RS384, rsa(), "rsa-1"),
        (Algorithm::RS512, rsa(), "rsa-1"),
        (Algorithm::PS256, rsa(), "rsa-1"),
        (Algorithm::ES256, ec, "ec-256"),
        (Algorithm::ES384, ec384, "ec-384"),
    ] {
        let t = token(alg, &key, Some(kid));
        assert_eq!(
            v.verify_connection(&t).expect("valid").sub,
            "alice",
            "{alg:?}"
        );
    }
}

#[test]
fn unknown_or_missing_kid_and_wrong_key_are_refused() {
    let (v, _) = jwks_verifier(JWKS);
    let t = token(Algorithm::RS256, &rsa(), Some("rotated-later"));
    assert!(matches!(
        v.verify_connection(&t),
        Err(AuthError::UnknownKey)
    ));
    let t = token(Algorithm::RS256, &rsa(), None);
    tests::assert_invalid(v.verify_connection(&t), &t, "no kid");
    // A good token whose payload was changed after signing.
    let good = token(Algorithm::RS256, &rsa(), Some("rsa-1"));
    let parts: Vec<&str> = good.split('.').collect();
    let other = token(Algorithm::RS256, &rsa(), Some("rsa-1"));
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        tests::b64url(br#"{"sub":"mallory"}"#),
        parts[2]
    );
    tests::assert_invalid(v.verify_connection(&forged), &forged, "bad signature");
    assert!(v.verify_connection(&other).is_ok());
    // An RSA token naming an EC key: the algorithm does not fit the key.
    let t = token(Algorithm::RS256, &rsa(), Some("ec-256"));
    tests::assert_invalid(v.verify_connection(&t), &t, "does not fit");
    // HMAC tokens have nothing to be checked with when only JWKS keys are configured.
    let t = mint_hs256(&claims("alice"));
    tests::assert_invalid(v.verify_connection(&t), &t, "not allowed");
}

#[test]
fn a_key_whose_alg_is_named_verifies_only_that_alg() {
    let mut doc: serde_json::Value = serde_json::from_slice(JWKS).unwrap();
    doc["keys"][0]["alg"] = "RS512".into();
    let (v, _) = jwks_verifier(doc.to_string().as_bytes());
    assert!(v
        .verify_connection(&token(Algorithm::RS512, &rsa(), Some("rsa-1")))
        .is_ok());
    let t = token(Algorithm::RS256, &rsa(), Some("rsa-1"));
    tests::assert_invalid(v.verify_connection(&t), &t, "does not fit");
    // A JWK `alg` that is no signature algorithm here, or does not fit the key type.
    doc["keys"][0]["alg"] = "RSA-OAEP".into();
    doc["keys"][1]["alg"] = "RS256".into();
    let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(set.kids(), ["ec-384"]);
}

#[test]
fn unusable_entries_are_skipped_and_bad_documents_refused() {
    let doc = br#"{"keys":[
        {"kty":"oct","kid":"sym","k":"c2VjcmV0"},
        {"kty":"OKP","kid":"ed","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty":"RSA","n":"AQAB","e":"AQAB"},
        {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
        {"kty":"EC","kid":"p521","crv":"P-521","x":"AA","y":"AA"},
        {"kty":"weird","kid":"w"},
        "not an object"
    ]}"#;
    let set = KeySet::parse(doc).expect("a document with odd entries still parses");
    assert!(set.is_empty());
    assert_eq!(set.skipped(), 7);
    for bad in [&b"not json"[..], b"{}", br#"{"keys":{}}"#, b"[]"] {
        assert!(matches!(KeySet::parse(bad), Err(AuthError::Key(_))));
    }
    let many = format!(
        r#"{{"keys":[{}]}}"#,
        vec!["{}"; MAX_JWKS_KEYS + 1].join(",")
    );
    assert!(KeySet::parse(many.as_bytes()).is_err());
    // The first of two keys with one kid wins.
    let twice = String::from_utf8(JWKS.to_vec())
        .unwrap()
        .replace("ec-384", "ec-256");
    let set = KeySet::parse(twice.as_bytes()).unwrap();
    assert_eq!((set.len(), set.skipped()), (2, 1));
}

#[test]
fn a_rotated_key_is_used_once_stored() {
    let (v, cell) = jwks_verifier(br#"{"keys":[]}"#);
    let t = token(Algorithm::RS256, &rsa(), Some("rsa-1"));
    assert!(matches!(
        v.verify_connection(&t),
        Err(AuthError::UnknownKey)
    ));
    cell.store(KeySet::parse(JWKS).unwrap());
    assert!(v.verify_connection(&t).is_ok());
}

#[test]
fn hmac_and_jwks_side_by_side_pick_by_alg() {
    let cell = KeySetCell::new();
    cell.store(KeySet::parse(JWKS).unwrap());
    let v =
        Verifier::with_key_set(&AuthConfig::hmac(Algorithm::HS256, SECRET), Some(cell)).unwrap();
    assert!(v.verify_connection(&mint_hs256(&claims("a"))).is_ok());
    assert!(v
        .verify_connection(&token(Algorithm::RS256, &rsa(), Some("rsa-1")))
        .is_ok());
    // HS384 is not the pinned algorithm and no JWKS key is HMAC.
    let hs384 = mint(
        Algorithm::HS384,
        &SignKey::Hmac(SECRET.to_vec()),
        &claims("a"),
    )
    .unwrap();
    assert!(v.verify_connection(&hs384).is_err());
}

#[test]
fn a_public_key_serves_tokens_without_kid_and_jwks_those_with_one() {
    let cell = KeySetCell::new();
    cell.store(KeySet::parse(br#"{"keys":[]}"#).unwrap());
    let pem = include_bytes!("../../tests/keys/rsa_public.pem");
    let cfg = AuthConfig::new(Algorithm::RS256, VerifyKey::RsaPem(pem.to_vec()));
    let v = Verifier::with_key_set(&cfg, Some(cell)).unwrap();
    assert!(v
        .verify_connection(&token(Algorithm::RS256, &rsa(), None))
        .is_ok());
    let t = token(Algorithm::RS256, &rsa(), Some("rsa-1"));
    assert!(matches!(
        v.verify_connection(&t),
        Err(AuthError::UnknownKey)
    ));
}

#[test]
fn without_key_or_jwks_there_is_nothing_to_verify_with() {
    let cfg = AuthConfig {
        key: None,
        ..AuthConfig::hmac(Algorithm::HS256, SECRET)
    };
    assert!(matches!(Verifier::new(&cfg), Err(AuthError::Key(_))));
}
