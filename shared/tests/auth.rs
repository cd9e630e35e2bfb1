//! The auth API as other crates see it: paths, re-exports and the error texts a node
//! sends or logs. The detailed cases live in the unit tests (`shared/src/auth/`).

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

use herald_shared::auth::{
    mint, now_secs, Algorithm, AuthConfig, AuthError, MintClaims, SignKey, Verifier, VerifyKey,
};

const SECRET: &[u8] = b"integration-secret";

#[test]
fn connect_and_subscribe_tokens_from_outside_the_crate() {
    let verifier = Verifier::new(&AuthConfig::hmac(Algorithm::HS256, SECRET)).unwrap();
    let key = SignKey::Hmac(SECRET.to_vec());

    let connection = MintClaims {
        sub: "42".into(),
        exp: Some(now_secs() + 60),
        channels: vec!["news".into()],
        info: Some(serde_json::json!({"name": "Ann"})),
        ..Default::default()
    };
    let token = mint(Algorithm::HS256, &key, &connection).unwrap();
    let claims = verifier.clone().verify_connection(&token).unwrap();
    assert_eq!(claims.sub, "42");
    assert_eq!(claims.channels, ["news"]);
    assert_eq!(claims.info.unwrap().as_str(), r#"{"name":"Ann"}"#);

    let subscription = MintClaims {
        channel: Some("$secret".into()),
        ..connection
    };
    let token = mint(Algorithm::HS256, &key, &subscription).unwrap();
    let claims = verifier.verify_subscription(&token).unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.channel.as_str()),
        ("42", "$secret")
    );
}

#[test]
fn error_texts_name_the_problem_but_never_the_token() {
    let verifier = Verifier::new(&AuthConfig::hmac(Algorithm::HS256, SECRET)).unwrap();
    let expired = MintClaims {
        sub: "42".into(),
        exp: Some(now_secs() - 10),
        ..Default::default()
    };
    let token = mint(Algorithm::HS256, &SignKey::Hmac(SECRET.to_vec()), &expired).unwrap();
    let err = verifier.verify_connection(&token).unwrap_err();
    assert_eq!(err.to_string(), "token expired");

    let forged = mint(
        Algorithm::HS256,
        &SignKey::Hmac(b"guess".to_vec()),
        &expired,
    )
    .unwrap();
    let err = verifier.verify_connection(&forged).unwrap_err();
    assert!(matches!(err, AuthError::Invalid(_)));
    assert_eq!(err.to_string(), "invalid token: bad signature");

    let err = Verifier::new(&AuthConfig::new(
        Algorithm::RS256,
        VerifyKey::Hmac(SECRET.into()),
    ));
    assert!(matches!(err, Err(AuthError::Key(_))));
}
