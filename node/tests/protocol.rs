//! The client protocol end to end against a real node on 127.0.0.1:0.

// A test binary links every dependency of the package; it uses only some of them.
#![allow(unused_crate_dependencies)]

mod common;

use common::{Client, TestNode};
use serde_json::{json, Value};

#[tokio::test]
async fn connect_subscribe_and_receive_api_publications_in_offset_order() {
    let t = TestNode::start().await;
    let (mut c, reply) = Client::connect(&t.ws_url(), "alice").await;
    let connect = &reply["connect"];
    assert!(connect["client"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(connect["ping"], 25);
    assert_eq!(connect["pong"], true);
    assert_eq!(connect["node"], "test-node");

    let sub = c.call("subscribe", json!({"channel": "news"})).await;
    let epoch = sub["subscribe"]["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty());
    assert_eq!(sub["subscribe"]["positioned"], true);

    for i in 1..=5 {
        let (status, body) = t
            .api("publish", json!({"channel": "news", "data": {"n": i}}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["offset"], i);
        assert_eq!(body["result"]["epoch"], epoch.as_str());
    }
    for i in 1..=5u64 {
        let p = c.next_pub("news").await;
        assert_eq!(p["offset"], i);
        assert_eq!(p["data"]["n"], i);
    }
}

#[tokio::test]
async fn several_commands_in_one_frame_get_several_replies() {
    let t = TestNode::start().await;
    let (mut c, _) = Client::connect(&t.ws_url(), "bob").await;
    c.send_raw(
        "{\"id\":10,\"subscribe\":{\"channel\":\"a\"}}\n{\"id\":11,\"subscribe\":{\"channel\":\"b\"}}\n{\"id\":12,\"nope\":{}}",
    )
    .await;
    for id in [10u64, 11] {
        let r = c.wait_for(|m| m["id"] == id).await.expect("reply");
        assert!(r.get("subscribe").is_some(), "{r}");
    }
    let r = c.wait_for(|m| m["id"] == 12).await.expect("reply");
    assert_eq!(r["error"]["code"], 104);
}

#[tokio::test]
async fn recovery_returns_exactly_the_missed_publications() {
    let t = TestNode::start().await;
    let (mut c, _) = Client::connect(&t.ws_url(), "carol").await;
    let sub = c.call("subscribe", json!({"channel": "room"})).await;
    let epoch = sub["subscribe"]["epoch"].as_str().unwrap().to_owned();
    t.api("publish", json!({"channel": "room", "data": "one"}))
        .await;
    let last = c.next_pub("room").await["offset"].as_u64().unwrap();
    drop(c);

    for text in ["two", "three", "four"] {
        t.api("publish", json!({"channel": "room", "data": text}))
            .await;
    }
    let (mut c2, _) = Client::connect(&t.ws_url(), "carol").await;
    let sub = c2
        .call(
            "subscribe",
            json!({"channel": "room", "recover": true, "epoch": epoch, "offset": last}),
        )
        .await;
    let r = &sub["subscribe"];
    assert_eq!(r["recovered"], true, "{r}");
    let got: Vec<&str> = r["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["two", "three", "four"]);
    // Live delivery continues right after the recovered ones, no gap, no repeat.
    t.api("publish", json!({"channel": "room", "data": "five"}))
        .await;
    let p = c2.next_pub("room").await;
    assert_eq!(p["data"], "five");
    assert_eq!(p["offset"], last + 4);
}

#[tokio::test]
async fn recovery_from_a_lost_position_says_so_and_sends_nothing() {
    let t = TestNode::start_with(|c| c.namespaces.default.history_size = 2).await;
    let (mut c, _) = Client::connect(&t.ws_url(), "dan").await;
    let sub = c.call("subscribe", json!({"channel": "x"})).await;
    let epoch = sub["subscribe"]["epoch"].as_str().unwrap().to_owned();
    for i in 0..5 {
        t.api("publish", json!({"channel": "x", "data": i})).await;
    }
    let (mut c2, _) = Client::connect(&t.ws_url(), "dan").await;
    let r = c2
        .call(
            "subscribe",
            json!({"channel": "x", "recover": true, "epoch": epoch, "offset": 0}),
        )
        .await;
    assert_eq!(r["subscribe"].get("recovered"), None, "{r}");
    assert_eq!(r["subscribe"]["was_recovering"], true);
    assert!(r["subscribe"].get("publications").is_none());
    // Wrong epoch, with the flag asking for an error instead.
    let (mut c3, _) = Client::connect(&t.ws_url(), "dan").await;
    let r = c3
        .call(
            "subscribe",
            json!({"channel": "x", "recover": true, "epoch": "other", "offset": 5, "flag": 2}),
        )
        .await;
    assert_eq!(r["error"]["code"], 112);
}

#[tokio::test]
async fn bad_input_gets_the_protocol_codes() {
    let t = TestNode::start().await;
    // Malformed JSON closes with 3501.
    let mut c = Client::open(&t.ws_url()).await;
    c.send_raw("{not json").await;
    assert_eq!(c.wait_close().await, Some(3501));
    // A command before connect closes with 3501.
    let mut c = Client::open(&t.ws_url()).await;
    c.send_raw(r#"{"id":1,"subscribe":{"channel":"a"}}"#).await;
    assert_eq!(c.wait_close().await, Some(3501));
    // A bad token closes with 3500, after a disconnect push.
    let mut c = Client::open(&t.ws_url()).await;
    c.send_raw(r#"{"id":1,"connect":{"token":"not.a.jwt"}}"#)
        .await;
    let push = c
        .wait_for(|m| m["push"].get("disconnect").is_some())
        .await
        .expect("disconnect push");
    assert_eq!(push["push"]["disconnect"]["code"], 3500);
    assert_eq!(push["push"]["disconnect"]["reconnect"], false);
    assert_eq!(c.wait_close().await, Some(3500));
    // An expired token is an error reply (109), the connection stays for a retry.
    let mut c = Client::open(&t.ws_url()).await;
    let expired = herald_shared::auth::mint(
        herald_shared::auth::Algorithm::HS256,
        &herald_shared::auth::SignKey::Hmac(common::SECRET.as_bytes().to_vec()),
        &herald_shared::auth::MintClaims {
            sub: "eve".into(),
            exp: Some(herald_shared::auth::now_secs() - 60),
            ..Default::default()
        },
    )
    .unwrap();
    let r = c.call("connect", json!({"token": expired})).await;
    assert_eq!(r["error"]["code"], 109);
    let r = c
        .call("connect", json!({"token": common::token("eve", Some(60))}))
        .await;
    assert_eq!(r["connect"]["expires"], true);
    // Private channel without a token: permission denied; unknown namespace: 102.
    let r = c.call("subscribe", json!({"channel": "$secret"})).await;
    assert_eq!(r["error"]["code"], 103);
    let r = c.call("subscribe", json!({"channel": "nowhere:1"})).await;
    assert_eq!(r["error"]["code"], 102);
    let r = c.call("publish", json!({"channel": "a", "data": 1})).await;
    assert_eq!(r["error"]["code"], 103);
}

#[tokio::test]
async fn oversize_and_invalid_utf8_close_with_websocket_codes() {
    let t = TestNode::start_with(|c| c.limits.max_message_size = 1024).await;
    let (mut c, _) = Client::connect(&t.ws_url(), "f").await;
    c.send_raw(&format!(
        r#"{{"id":2,"publish":{{"channel":"a","data":"{}"}}}}"#,
        "x".repeat(4096)
    ))
    .await;
    assert_eq!(c.wait_close().await, Some(1009));
    let (mut c, _) = Client::connect(&t.ws_url(), "g").await;
    use futures_util::SinkExt;
    // tungstenite refuses to build a text frame with invalid UTF-8, so send raw bytes.
    let frame = tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![0xff, 0xfe, 0xfd],
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    c.ws.send(tokio_tungstenite::tungstenite::Message::Frame(frame))
        .await
        .unwrap();
    assert_eq!(c.wait_close().await, Some(1007));
}

#[tokio::test]
async fn shutdown_closes_clients_with_the_reconnect_code() {
    let t = TestNode::start().await;
    let (mut c, _) = Client::connect(&t.ws_url(), "h").await;
    t.shutdown.cancel();
    assert_eq!(c.wait_close().await, Some(3001));
    tokio::time::timeout(common::WAIT, t.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn api_checks_key_and_body() {
    let t = TestNode::start().await;
    let (status, _) = common::http(
        t.addr,
        "POST",
        "/api/info",
        &[("X-API-Key", "wrong")],
        b"{}",
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = common::http(
        t.addr,
        "POST",
        "/api/publish",
        &[("X-API-Key", common::API_KEY)],
        b"{\"channel\":",
    )
    .await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("bad request"));
    let (status, body) = t.api("publish", json!({"data": 1})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("channel"));
    let (status, body) = t.api("info", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["nodes"][0]["name"], "test-node");
}

#[tokio::test]
async fn probes_answer() {
    let t = TestNode::start().await;
    let (s, _) = common::http(t.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(s, 200);
    let (s, body) = common::http(t.addr, "GET", "/readyz", &[], b"").await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = common::http(t.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(s, 200);
    assert!(body.contains("herald_node_connections"), "{body}");
    t.node.set_draining();
    let (s, body) = common::http(t.addr, "GET", "/readyz", &[], b"").await;
    assert_eq!(s, 503);
    assert!(body.contains("draining"));
}
