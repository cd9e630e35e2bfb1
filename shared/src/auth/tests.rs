//! Unit tests for token verification and minting with HMAC keys, and the helpers that
//! [`key_tests`](super::key_tests) shares.

use super::*;
use jsonwebtoken::EncodingKey;

pub(super) const SECRET: &[u8] = b"s3cr3t-for-unit-tests-9f2c";

pub(super) fn hmac_verifier(alg: Algorithm) -> Verifier {
    Verifier::new(&AuthConfig::hmac(alg, SECRET)).expect("valid config")
}

pub(super) fn claims(sub: &str) -> MintClaims {
    MintClaims {
        sub: sub.into(),
        exp: Some(now_secs() + 600),
        ..Default::default()
    }
}

pub(super) fn mint_hs256(c: &MintClaims) -> String {
    mint(Algorithm::HS256, &SignKey::Hmac(SECRET.to_vec()), c).expect("mint")
}

/// Base64url without padding, so tests can handcraft tokens the minting code never would.
pub(super) fn b64url(input: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A token with exactly this header and payload text, HMAC-signed with `secret`.
pub(super) fn handcrafted(alg: Algorithm, secret: &[u8], header: &str, payload: &str) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    let sig =
        jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(secret), alg)
            .expect("sign");
    format!("{message}.{sig}")
}

/// Asserts `Invalid` whose reason mentions `why` and does not quote the token.
pub(super) fn assert_invalid<T: std::fmt::Debug>(
    result: Result<T, AuthError>,
    token: &str,
    why: &str,
) {
    match result {
        Err(AuthError::Invalid(reason)) => {
            // Short samples ("a.b") could match a reason by chance; real tokens cannot.
            assert!(token.len() < 8 || !reason.contains(token), "{reason}");
            assert!(
                reason.contains(why),
                "reason {reason:?} should mention {why:?}"
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn b64url_matches_rfc4648_vectors() {
    assert_eq!(b64url(b"f"), "Zg");
    assert_eq!(b64url(b"fo"), "Zm8");
    assert_eq!(b64url(b"foo"), "Zm9v");
    assert_eq!(b64url(b"foob"), "Zm9vYg");
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
}

#[test]
fn hmac_round_trips() {
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let mut c = claims("user-42");
        c.channels = vec!["news".into(), "chat:lobby".into()];
        c.info = Some(serde_json::json!({"name": "Ann"}));
        let token = mint(alg, &SignKey::Hmac(SECRET.to_vec()), &c).unwrap();
        let got = hmac_verifier(alg).verify_connection(&token).unwrap();
        assert_eq!(got.sub, "user-42");
        assert_eq!(got.exp, c.exp);
        assert_eq!(got.channels, c.channels);
        assert_eq!(got.info.unwrap().as_str(), r#"{"name":"Ann"}"#);
    }
}

#[test]
fn expired_token_is_expired_unless_within_leeway() {
    let mut c = claims("u");
    c.exp = Some(now_secs() - 30);
    let token = mint_hs256(&c);
    assert!(matches!(
        hmac_verifier(Algorithm::HS256).verify_connection(&token),
        Err(AuthError::Expired)
    ));
    let mut cfg = AuthConfig::hmac(Algorithm::HS256, SECRET);
    cfg.leeway_secs = 60;
    assert!(Verifier::new(&cfg)
        .unwrap()
        .verify_connection(&token)
        .is_ok());
    assert_eq!(AuthError::Expired.to_string(), "token expired");
}

#[test]
fn token_without_exp_never_expires() {
    let token = mint_hs256(&MintClaims {
        sub: "u".into(),
        ..Default::default()
    });
    assert_eq!(
        hmac_verifier(Algorithm::HS256)
            .verify_connection(&token)
            .unwrap()
            .exp,
        None
    );
}

#[test]
fn wrong_secret_is_invalid() {
    let token = mint(
        Algorithm::HS256,
        &SignKey::Hmac(b"other-secret".to_vec()),
        &claims("u"),
    )
    .unwrap();
    assert_invalid(
        hmac_verifier(Algorithm::HS256).verify_connection(&token),
        &token,
        "signature",
    );
}

#[test]
fn other_algorithm_than_pinned_is_invalid() {
    let token = mint(
        Algorithm::HS384,
        &SignKey::Hmac(SECRET.to_vec()),
        &claims("u"),
    )
    .unwrap();
    assert_invalid(
        hmac_verifier(Algorithm::HS256).verify_connection(&token),
        &token,
        "algorithm",
    );
}

#[test]
fn alg_none_is_invalid() {
    let payload = b64url(br#"{"sub":"admin"}"#);
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE"}"#,
    ] {
        let header = b64url(header.as_bytes());
        for sig in ["", "AAAA"] {
            let token = format!("{header}.{payload}.{sig}");
            let verifier = hmac_verifier(Algorithm::HS256);
            assert_invalid(verifier.verify_connection(&token), &token, "alg");
            assert_invalid(verifier.verify_subscription(&token), &token, "alg");
        }
    }
}

#[test]
fn nbf_in_the_future_is_invalid() {
    let mut c = claims("u");
    c.nbf = Some(now_secs() + 120);
    let token = mint_hs256(&c);
    assert_invalid(
        hmac_verifier(Algorithm::HS256).verify_connection(&token),
        &token,
        "nbf",
    );
    c.nbf = Some(now_secs() - 1);
    assert!(hmac_verifier(Algorithm::HS256)
        .verify_connection(&mint_hs256(&c))
        .is_ok());
}

#[test]
fn audience_and_issuer_are_checked_only_when_configured() {
    let mut cfg = AuthConfig::hmac(Algorithm::HS256, SECRET);
    cfg.audience = Some("herald".into());
    cfg.issuer = Some("https://auth.example".into());
    let strict = Verifier::new(&cfg).unwrap();
    let lax = hmac_verifier(Algorithm::HS256);

    let mut good = claims("u");
    good.aud = Some("herald".into());
    good.iss = Some("https://auth.example".into());
    let token = mint_hs256(&good);
    assert!(strict.verify_connection(&token).is_ok());
    assert!(
        lax.verify_connection(&token).is_ok(),
        "aud present but not configured"
    );

    let variants = [
        MintClaims {
            aud: Some("other".into()),
            ..good.clone()
        },
        MintClaims {
            iss: Some("https://evil.example".into()),
            ..good.clone()
        },
        MintClaims {
            aud: None,
            ..good.clone()
        },
        MintClaims {
            iss: None,
            ..good.clone()
        },
    ];
    let why = ["audience", "issuer", "aud", "iss"];
    for (c, why) in variants.into_iter().zip(why) {
        let token = mint_hs256(&c);
        assert_invalid(strict.verify_connection(&token), &token, why);
    }
}

#[test]
fn garbage_is_invalid_and_never_panics() {
    let verifier = hmac_verifier(Algorithm::HS256);
    let long = "x".repeat(10_000);
    let samples = [
        "",
        ".",
        "..",
        "...",
        "abc",
        "a.b.c",
        "a.b",
        "a.b.c.d",
        "🦀.🦀.🦀",
        "eyJ.eyJ.",
        long.as_str(),
        "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiJ9.e30.%%%",
    ];
    for token in samples {
        assert_invalid(verifier.verify_connection(token), token, "");
        assert_invalid(verifier.verify_subscription(token), token, "");
    }
}

#[test]
fn info_claim_is_kept_verbatim() {
    let info = r#"{"z": 1,  "a" : [1.50, "\u00e9", null]}"#;
    let payload = format!(r#"{{"sub":"u","info":{info},"channels":["a"]}}"#);
    let token = handcrafted(
        Algorithm::HS256,
        SECRET,
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &payload,
    );
    let got = hmac_verifier(Algorithm::HS256)
        .verify_connection(&token)
        .unwrap();
    assert_eq!(got.info.expect("info").as_str(), info);
    assert_eq!(got.channels, ["a"]);

    let payload = r#"{"channel":"$c","client":"cid","info":"just a string"}"#;
    let token = handcrafted(Algorithm::HS256, SECRET, r#"{"alg":"HS256"}"#, payload);
    let got = hmac_verifier(Algorithm::HS256)
        .verify_subscription(&token)
        .unwrap();
    assert_eq!(got.info.expect("info").as_str(), r#""just a string""#);
    assert_eq!(got.client.as_deref(), Some("cid"));
    assert_eq!(got.sub, "");
}

#[test]
fn claim_types_are_checked_and_not_echoed() {
    let verifier = hmac_verifier(Algorithm::HS256);
    let exp = now_secs() + 60;
    let ok_float = handcrafted(
        Algorithm::HS256,
        SECRET,
        r#"{"alg":"HS256"}"#,
        &format!(r#"{{"exp":{exp}.4}}"#),
    );
    assert_eq!(
        verifier.verify_connection(&ok_float).unwrap().exp,
        Some(exp)
    );
    for payload in [
        r#"{"sub":1234567}"#,
        r#"{"exp":"tomorrow-secret"}"#,
        r#"{"exp":-5}"#,
        r#"{"channels":"a,b"}"#,
        r#"{"nbf":"soon"}"#,
        r#"[1,2]"#,
        "not json",
    ] {
        let token = handcrafted(Algorithm::HS256, SECRET, r#"{"alg":"HS256"}"#, payload);
        match verifier.verify_connection(&token) {
            Err(AuthError::Invalid(reason)) => {
                assert!(
                    !reason.contains("1234567") && !reason.contains("tomorrow"),
                    "{reason}"
                );
            }
            other => panic!("{payload}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn token_kinds_do_not_stand_in_for_each_other() {
    let verifier = hmac_verifier(Algorithm::HS256);
    let connection = mint_hs256(&claims("u"));
    assert_invalid(
        verifier.verify_subscription(&connection),
        &connection,
        "channel",
    );
    let mut empty = claims("u");
    empty.channel = Some(String::new());
    let empty = mint_hs256(&empty);
    assert_invalid(verifier.verify_subscription(&empty), &empty, "channel");
    let mut sub = claims("u");
    sub.channel = Some("$c".into());
    let sub = mint_hs256(&sub);
    assert_invalid(verifier.verify_connection(&sub), &sub, "subscription token");
}

#[test]
fn debug_never_shows_key_material() {
    let cfg = AuthConfig::hmac(Algorithm::HS256, SECRET);
    let secret = std::str::from_utf8(SECRET).unwrap();
    for text in [
        format!("{cfg:?}"),
        format!("{:?}", cfg.key),
        format!("{:?}", SignKey::Hmac(SECRET.to_vec())),
        format!("{:?}", Verifier::new(&cfg).unwrap()),
    ] {
        assert!(
            !text.contains(secret) && !text.contains("115, 51"),
            "{text}"
        );
    }
    assert!(format!("{cfg:?}").contains("Hmac"));
    let rsa = format!(
        "{:?}",
        SignKey::RsaPem(b"-----BEGIN PRIVATE KEY-----".to_vec())
    );
    assert_eq!(rsa, "RsaPem(<redacted>)");
}

#[test]
fn verifier_is_cheap_to_share() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Verifier>();
    shareable::<AuthConfig>();
}
