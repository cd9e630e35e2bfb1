//! Unit tests for public-key algorithms (RSA, EC, Ed25519) and key configuration. Keys are
//! test-only fixtures made with the `openssl` CLI (see `shared/tests/keys/README.md`).

use super::tests::{assert_invalid, claims, SECRET};
use super::*;

const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/keys/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../tests/keys/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../../tests/keys/ec_public.pem");
const EC384_PRIVATE: &[u8] = include_bytes!("../../tests/keys/ec384_private.pem");
const EC384_PUBLIC: &[u8] = include_bytes!("../../tests/keys/ec384_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("../../tests/keys/ed_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("../../tests/keys/ed_public.pem");

#[test]
fn public_key_round_trips() {
    let cases = [
        (
            Algorithm::RS256,
            SignKey::RsaPem(RSA_PRIVATE.into()),
            VerifyKey::RsaPem(RSA_PUBLIC.into()),
        ),
        (
            Algorithm::ES256,
            SignKey::EcPem(EC_PRIVATE.into()),
            VerifyKey::EcPem(EC_PUBLIC.into()),
        ),
        (
            Algorithm::ES384,
            SignKey::EcPem(EC384_PRIVATE.into()),
            VerifyKey::EcPem(EC384_PUBLIC.into()),
        ),
        (
            Algorithm::EdDSA,
            SignKey::EdPem(ED_PRIVATE.into()),
            VerifyKey::EdPem(ED_PUBLIC.into()),
        ),
    ];
    for (alg, sign_key, verify_key) in cases {
        let verifier = Verifier::new(&AuthConfig::new(alg, verify_key)).unwrap();
        assert_eq!(verifier.algorithm(), alg);
        let token = mint(alg, &sign_key, &claims("u1")).unwrap();
        assert_eq!(
            verifier.verify_connection(&token).unwrap().sub,
            "u1",
            "{alg:?}"
        );

        let mut sub = claims("u1");
        sub.channel = Some("$private".into());
        let token = mint(alg, &sign_key, &sub).unwrap();
        let got = verifier.verify_subscription(&token).unwrap();
        assert_eq!((got.sub.as_str(), got.channel.as_str()), ("u1", "$private"));

        // A one-character change of the signature must break it.
        let mut tampered = token.clone().into_bytes();
        let i = tampered.len() - 5;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        assert_invalid(
            verifier.verify_subscription(std::str::from_utf8(&tampered).unwrap()),
            &token,
            "signature",
        );
    }
}

#[test]
fn hmac_signed_with_rsa_public_key_is_invalid() {
    // The classic key-confusion attack: the public key is public, so an attacker can use
    // its PEM bytes as an HMAC secret.
    let token = mint(
        Algorithm::HS256,
        &SignKey::Hmac(RSA_PUBLIC.to_vec()),
        &claims("admin"),
    )
    .unwrap();
    let verifier = Verifier::new(&AuthConfig::new(
        Algorithm::RS256,
        VerifyKey::RsaPem(RSA_PUBLIC.into()),
    ))
    .unwrap();
    assert_invalid(verifier.verify_connection(&token), &token, "algorithm");
}

#[test]
fn key_that_does_not_fit_the_algorithm_is_a_key_error() {
    let bad = [
        AuthConfig::new(Algorithm::HS256, VerifyKey::RsaPem(RSA_PUBLIC.into())),
        AuthConfig::hmac(Algorithm::RS256, RSA_PUBLIC),
        AuthConfig::hmac(Algorithm::EdDSA, SECRET),
        AuthConfig::new(Algorithm::ES256, VerifyKey::RsaPem(RSA_PUBLIC.into())),
        AuthConfig::new(Algorithm::RS256, VerifyKey::EcPem(EC_PUBLIC.into())),
        AuthConfig::new(Algorithm::ES256, VerifyKey::EcPem(EC384_PUBLIC.into())),
        AuthConfig::new(Algorithm::ES384, VerifyKey::EcPem(EC_PUBLIC.into())),
        AuthConfig::new(Algorithm::ES256, VerifyKey::EcPem(ED_PUBLIC.into())),
        AuthConfig::new(Algorithm::EdDSA, VerifyKey::EdPem(EC_PUBLIC.into())),
        AuthConfig::new(Algorithm::RS256, VerifyKey::RsaPem(RSA_PRIVATE.into())),
        AuthConfig::new(Algorithm::ES256, VerifyKey::EcPem(EC_PRIVATE.into())),
        AuthConfig::new(Algorithm::EdDSA, VerifyKey::EdPem(ED_PRIVATE.into())),
        AuthConfig::new(Algorithm::RS256, VerifyKey::RsaPem(b"not a pem".to_vec())),
        AuthConfig::new(
            Algorithm::RS256,
            VerifyKey::RsaPem(
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec(),
            ),
        ),
        AuthConfig::hmac(Algorithm::HS256, b""),
    ];
    for cfg in bad {
        let what = format!("{cfg:?}");
        assert!(
            matches!(Verifier::new(&cfg), Err(AuthError::Key(_))),
            "{what}"
        );
    }
    let mut cfg = AuthConfig::hmac(Algorithm::HS256, SECRET);
    cfg.leeway_secs = MAX_LEEWAY_SECS + 1;
    assert!(matches!(Verifier::new(&cfg), Err(AuthError::Key(_))));
}

#[test]
fn mint_refuses_keys_that_do_not_fit() {
    for (alg, key) in [
        (Algorithm::RS256, SignKey::Hmac(SECRET.to_vec())),
        (Algorithm::HS256, SignKey::RsaPem(RSA_PRIVATE.into())),
        (Algorithm::RS256, SignKey::RsaPem(b"junk".to_vec())),
        (Algorithm::ES256, SignKey::EcPem(EC_PUBLIC.into())),
        (Algorithm::HS256, SignKey::Hmac(Vec::new())),
    ] {
        assert!(
            matches!(mint(alg, &key, &claims("u")), Err(AuthError::Key(_))),
            "{alg:?} {key:?}"
        );
    }
}
