//! Unit tests for the connection-token claims read with Centrifugo's meaning, and for
//! the previous HMAC secret of a key rotation.

use super::tests::{assert_invalid, claims, hmac_verifier, mint_hs256, SECRET};
use super::*;

fn verify(c: &MintClaims) -> Result<ConnectionClaims, AuthError> {
    hmac_verifier(Algorithm::HS256).verify_connection(&mint_hs256(c))
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn subs_win_over_channels_with_their_options() {
    let mut c = claims("alice");
    c.channels = vec!["ignored".into()];
    c.subs = Some(serde_json::json!({
        "news": {"info": {"r": 1}, "data": {"hello": true},
                 "override": {"force_push_join_leave": {"value": true}, "presence": {}}},
        "chat:x": {"b64info": b64(r#"{"r":2}"#), "info": {"loses": true}, "b64data": b64("[1]")},
    }));
    let got = verify(&c).expect("valid");
    let side = got.server_side();
    let names: Vec<&str> = side.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["chat:x", "news"]);
    let news = &got.subs["news"];
    assert_eq!(news.info.as_ref().unwrap().as_str(), r#"{"r":1}"#);
    assert_eq!(news.data.as_ref().unwrap().as_str(), r#"{"hello":true}"#);
    assert_eq!(news.override_.force_push_join_leave, Some(true));
    assert_eq!(
        news.override_.presence,
        Some(false),
        "a missing value is false"
    );
    assert_eq!(news.override_.force_recovery, None);
    let chat = &got.subs["chat:x"];
    assert_eq!(
        chat.info.as_ref().unwrap().as_str(),
        r#"{"r":2}"#,
        "b64info wins"
    );
    assert_eq!(chat.data.as_ref().unwrap().as_str(), "[1]");

    let mut only_channels = claims("alice");
    only_channels.channels = vec!["a".into(), "b".into()];
    let side = verify(&only_channels).unwrap().server_side();
    assert_eq!(side.len(), 2);
    assert_eq!(side[0].1, SubscribeOptions::default());
}

#[test]
fn expire_at_wins_over_exp_and_zero_means_never() {
    let now = now_secs();
    let mut c = claims("alice");
    c.exp = Some(now + 3600);
    assert_eq!(verify(&c).unwrap().expire_at, Some(now + 3600), "exp alone");
    c.expire_at = Some(now + 60);
    let got = verify(&c).unwrap();
    assert_eq!((got.exp, got.expire_at), (Some(now + 3600), Some(now + 60)));
    c.expire_at = Some(0);
    assert_eq!(verify(&c).unwrap().expire_at, None);
    c.exp = None;
    c.expire_at = None;
    assert_eq!(verify(&c).unwrap().expire_at, None);
}

#[test]
fn b64info_and_meta() {
    let mut c = claims("alice");
    c.info = Some(serde_json::json!({"from": "json"}));
    c.b64info = Some(b64(r#"{"from":"b64"}"#));
    c.meta = Some(serde_json::json!({"plan": "gold"}));
    let got = verify(&c).unwrap();
    assert_eq!(got.info.unwrap().as_str(), r#"{"from":"b64"}"#);
    assert_eq!(got.meta.unwrap().as_str(), r#"{"plan":"gold"}"#);
    c.b64info = Some(String::new());
    assert_eq!(
        verify(&c).unwrap().info.unwrap().as_str(),
        r#"{"from":"json"}"#,
        "empty b64info is none"
    );
}

/// A change to a token's claims.
type Change = Box<dyn Fn(&mut MintClaims)>;

#[test]
fn hostile_claims_make_the_token_invalid() {
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "bad base64",
            Box::new(|c| c.b64info = Some("%%%".into())),
            "base64",
        ),
        (
            "not JSON",
            Box::new(|c| c.b64info = Some(b64("\u{1}raw bytes"))),
            "JSON",
        ),
        (
            "not UTF-8",
            Box::new(|c| {
                use base64::Engine;
                c.b64info = Some(base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe]))
            }),
            "JSON",
        ),
        (
            "two JSON values",
            Box::new(|c| c.b64info = Some(b64("1 2"))),
            "JSON",
        ),
        (
            "huge info",
            Box::new(|c| c.info = Some(serde_json::json!("x".repeat(MAX_INFO_BYTES)))),
            "larger",
        ),
        (
            "huge b64info",
            Box::new(|c| c.b64info = Some(b64(&format!("\"{}\"", "x".repeat(MAX_INFO_BYTES))))),
            "larger",
        ),
        (
            "huge meta",
            Box::new(|c| c.meta = Some(serde_json::json!("x".repeat(MAX_META_BYTES)))),
            "larger",
        ),
        (
            "bad b64info in subs",
            Box::new(|c| c.subs = Some(serde_json::json!({"a": {"b64info": "%"}}))),
            "base64",
        ),
        (
            "huge data in subs",
            Box::new(|c| {
                c.subs = Some(serde_json::json!({"a": {"data": "x".repeat(MAX_SUB_DATA_BYTES)}}))
            }),
            "larger",
        ),
        (
            "subs not a map",
            Box::new(|c| c.subs = Some(serde_json::json!(["a"]))),
            "malformed",
        ),
        (
            "too many channels",
            Box::new(|c| c.channels = (0..=MAX_CLAIMED_CHANNELS).map(|i| i.to_string()).collect()),
            "more than",
        ),
    ];
    for (what, change, why) in cases {
        let mut c = claims("alice");
        change(&mut c);
        let token = mint_hs256(&c);
        let r = hmac_verifier(Algorithm::HS256).verify_connection(&token);
        assert!(matches!(r, Err(AuthError::Invalid(_))), "{what}: {r:?}");
        assert_invalid(r, &token, why);
    }
}

#[test]
fn the_previous_secret_works_until_its_time() {
    const OLD: &[u8] = b"the-previous-secret-0123456789";
    let old_token = mint(
        Algorithm::HS256,
        &SignKey::Hmac(OLD.to_vec()),
        &claims("alice"),
    )
    .unwrap();
    let verifier = |valid_until| {
        let mut cfg = AuthConfig::hmac(Algorithm::HS256, SECRET);
        cfg.previous = Some(PreviousKey {
            secret: OLD.to_vec(),
            valid_until,
        });
        Verifier::new(&cfg).unwrap()
    };
    let now = now_secs();
    assert_eq!(
        verifier(None).verify_connection(&old_token).unwrap().sub,
        "alice"
    );
    assert!(verifier(Some(now + 60))
        .verify_connection(&old_token)
        .is_ok());
    let r = verifier(Some(now - 1)).verify_connection(&old_token);
    assert_invalid(r, &old_token, "signature");
    // The current secret still works, and no previous secret means no second chance.
    assert!(verifier(Some(now - 1))
        .verify_connection(&mint_hs256(&claims("bob")))
        .is_ok());
    assert!(hmac_verifier(Algorithm::HS256)
        .verify_connection(&old_token)
        .is_err());
    // Only for HMAC keys.
    let mut cfg = AuthConfig::new(Algorithm::EdDSA, VerifyKey::EdPem(Vec::new()));
    cfg.previous = Some(PreviousKey {
        secret: OLD.to_vec(),
        valid_until: None,
    });
    assert!(matches!(Verifier::new(&cfg), Err(AuthError::Key(_))));
}

fn verify_sub(c: &MintClaims) -> Result<SubscriptionClaims, AuthError> {
    hmac_verifier(Algorithm::HS256).verify_subscription(&mint_hs256(c))
}

fn sub_claims() -> MintClaims {
    MintClaims {
        channel: Some("$room".into()),
        ..claims("alice")
    }
}

#[test]
fn subscription_token_reads_b64info_expire_at_data_and_override() {
    let mut c = sub_claims();
    c.exp = Some(now_secs() + 600);
    c.expire_at = Some(now_secs() + 60);
    c.info = Some(serde_json::json!({"loses": true}));
    c.b64info = Some(b64(r#"{"r":7}"#));
    c.override_ = Some(serde_json::json!({
        "presence": {"value": false}, "join_leave": {"value": true},
        "force_push_join_leave": {"value": true}, "force_recovery": {},
        "force_positioning": {"value": true},
    }));
    let got = verify_sub(&c).expect("valid");
    assert_eq!(got.info.unwrap().as_str(), r#"{"r":7}"#);
    assert_eq!(got.expire_at, c.expire_at);
    assert_eq!(
        got.override_,
        SubscribeOverride {
            presence: Some(false),
            join_leave: Some(true),
            force_push_join_leave: Some(true),
            force_recovery: Some(false),
            force_positioning: Some(true),
        }
    );
    // `expire_at: 0` is "never", whatever `exp` says; absent, `exp` decides.
    c.expire_at = Some(0);
    assert_eq!(verify_sub(&c).unwrap().expire_at, None);
    c.expire_at = None;
    assert_eq!(verify_sub(&c).unwrap().expire_at, c.exp);
}

#[test]
fn subscription_token_payloads_are_bounded_and_checked() {
    let mut c = sub_claims();
    c.b64info = Some("%%% not base64".into());
    let t = mint_hs256(&c);
    assert_invalid(
        hmac_verifier(Algorithm::HS256).verify_subscription(&t),
        &t,
        "base64",
    );
    c.b64info = Some(b64("not json"));
    let t = mint_hs256(&c);
    assert_invalid(
        hmac_verifier(Algorithm::HS256).verify_subscription(&t),
        &t,
        "JSON",
    );
    c.b64info = Some(b64(&format!("\"{}\"", "x".repeat(MAX_INFO_BYTES))));
    let t = mint_hs256(&c);
    assert_invalid(
        hmac_verifier(Algorithm::HS256).verify_subscription(&t),
        &t,
        "larger",
    );
}
