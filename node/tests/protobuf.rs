//! The Protobuf encoding of the client protocol end to end against a real node on
//! 127.0.0.1:0: binary frames of length-delimited commands and replies, the same
//! answers as JSON, and the closes for bad input.

// A test binary links every dependency of the package; it uses only some of them.
#![allow(unused_crate_dependencies)]

mod common;

use common::{Client, TestNode, WAIT};
use futures_util::{SinkExt, StreamExt};
use herald_shared::protocol::protobuf::{decode_replies, encode_commands, pb};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Protobuf client by hand: commands out, replies and pushes in.
struct PbClient {
    ws: Ws,
    next_id: u32,
    inbox: std::collections::VecDeque<pb::Reply>,
    /// Close code and reason received.
    closed: Option<(u16, String)>,
    /// Frames received (to check they are binary and coalesced).
    frames: usize,
}

impl PbClient {
    /// Opens with the subprotocol (`query` false) or `?cf_protocol=protobuf`.
    async fn open(t: &TestNode, query: bool) -> PbClient {
        let ws = if query {
            let url = format!("{}?cf_protocol=protobuf", t.ws_url());
            tokio_tungstenite::connect_async(url).await.expect("ws").0
        } else {
            let mut req = t.ws_url().into_client_request().unwrap();
            req.headers_mut().insert(
                "sec-websocket-protocol",
                "centrifuge-protobuf".parse().unwrap(),
            );
            let (ws, response) = tokio_tungstenite::connect_async(req).await.expect("ws");
            let selected = response.headers().get("sec-websocket-protocol");
            assert_eq!(
                selected.map(|v| v.as_bytes()),
                Some(&b"centrifuge-protobuf"[..])
            );
            ws
        };
        PbClient {
            ws,
            next_id: 0,
            inbox: Default::default(),
            closed: None,
            frames: 0,
        }
    }

    async fn send(&mut self, commands: &[pb::Command]) {
        let frame = encode_commands(commands);
        self.ws.send(Message::Binary(frame.into())).await.unwrap();
    }

    /// Sends one command (its id set here) and waits for its reply.
    async fn call(&mut self, mut command: pb::Command) -> pb::Reply {
        self.next_id += 1;
        command.id = self.next_id;
        let id = command.id;
        self.send(&[command]).await;
        self.wait_for(|r| r.id == id)
            .await
            .unwrap_or_else(|| panic!("no reply to {id}; closed with {:?}", self.closed))
    }

    async fn read_frame(&mut self) -> bool {
        match tokio::time::timeout(WAIT, self.ws.next()).await {
            Err(_) => panic!("timed out waiting for the server"),
            Ok(None) | Ok(Some(Err(_))) => false,
            Ok(Some(Ok(Message::Binary(b)))) => {
                self.frames += 1;
                for reply in decode_replies(&b).expect("server sent length-delimited replies") {
                    if reply == pb::Reply::default() {
                        // Server ping: answer with an empty command, as the SDKs do.
                        let pong = encode_commands(&[pb::Command::default()]);
                        let _ = self.ws.send(Message::Binary(pong.into())).await;
                        continue;
                    }
                    self.inbox.push_back(reply);
                }
                true
            }
            Ok(Some(Ok(Message::Text(t)))) => panic!("a text frame on a Protobuf connection: {t}"),
            Ok(Some(Ok(Message::Close(frame)))) => {
                self.closed = Some(
                    frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())),
                );
                false
            }
            Ok(Some(Ok(_))) => true,
        }
    }

    async fn wait_for(&mut self, pred: impl Fn(&pb::Reply) -> bool) -> Option<pb::Reply> {
        loop {
            if let Some(i) = self.inbox.iter().position(&pred) {
                return self.inbox.remove(i);
            }
            if self.closed.is_some() || !self.read_frame().await {
                return None;
            }
        }
    }

    async fn next_pub(&mut self, channel: &str) -> pb::Publication {
        let r = self
            .wait_for(|r| {
                r.push
                    .as_ref()
                    .is_some_and(|p| p.channel == channel && p.r#pub.is_some())
            })
            .await
            .unwrap_or_else(|| panic!("no publication; closed with {:?}", self.closed));
        r.push.unwrap().r#pub.unwrap()
    }

    async fn wait_close(&mut self) -> Option<u16> {
        while self.closed.is_none() && self.read_frame().await {}
        self.closed.as_ref().map(|c| c.0)
    }

    async fn connect(t: &TestNode, user: &str) -> (PbClient, pb::ConnectResult) {
        let mut c = PbClient::open(t, false).await;
        let r = c
            .call(pb::Command {
                connect: Some(pb::ConnectRequest {
                    token: common::token(user, None),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        let connect = r
            .connect
            .unwrap_or_else(|| panic!("connect failed: {:?}", r.error));
        (c, connect)
    }
}

fn subscribe(channel: &str) -> pb::Command {
    pb::Command {
        subscribe: Some(pb::SubscribeRequest {
            channel: channel.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn publish(channel: &str, data: &[u8]) -> pb::Command {
    pb::Command {
        publish: Some(pb::PublishRequest {
            channel: channel.into(),
            data: data.to_vec(),
        }),
        ..Default::default()
    }
}

/// Clients may publish, and presence is kept.
fn open_namespace(c: &mut herald_node::config::NodeConfig) {
    c.namespaces.default.allow_publish = true;
    c.namespaces.default.presence = true;
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON payload")
}

#[tokio::test]
async fn connect_subscribe_publish_history_and_presence_in_protobuf() {
    let t = TestNode::start_with(open_namespace).await;
    let (mut c, connect) = PbClient::connect(&t, "alice").await;
    assert!(!connect.client.is_empty());
    assert_eq!((connect.ping, connect.pong), (25, true));
    assert_eq!(connect.node, "test-node");

    let sub = c
        .call(subscribe("news"))
        .await
        .subscribe
        .expect("subscribe");
    assert!(!sub.epoch.is_empty() && sub.positioned && sub.recoverable);

    // A server API publication (JSON data) reaches the Protobuf client as its JSON text.
    let (status, body) = t
        .api("publish", json!({"channel": "news", "data": {"n": 1}}))
        .await;
    assert_eq!(status, 200, "{body}");
    let p = c.next_pub("news").await;
    assert_eq!((p.offset, json_of(&p.data)), (1, json!({"n": 1})));

    // The client's own publication: JSON bytes, with its info attached.
    let r = c.call(publish("news", br#"{"n":2}"#)).await;
    assert!(r.publish.is_some(), "{r:?}");
    let p = c.next_pub("news").await;
    assert_eq!((p.offset, json_of(&p.data)), (2, json!({"n": 2})));
    assert_eq!(p.info.expect("publisher info").user, "alice");

    let h = c
        .call(pb::Command {
            history: Some(pb::HistoryRequest {
                channel: "news".into(),
                limit: -1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .history
        .expect("history");
    assert_eq!((h.offset, h.epoch.as_str()), (2, sub.epoch.as_str()));
    let offsets: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [1, 2]);

    let presence = c
        .call(pb::Command {
            presence: Some(pb::PresenceRequest {
                channel: "news".into(),
            }),
            ..Default::default()
        })
        .await
        .presence
        .expect("presence");
    let users: Vec<&str> = presence
        .presence
        .values()
        .map(|i| i.user.as_str())
        .collect();
    assert_eq!(users, ["alice"]);

    // Recovery from a position, the same as in JSON.
    let (mut again, _) = PbClient::connect(&t, "alice").await;
    let mut cmd = subscribe("news");
    let s = cmd.subscribe.as_mut().unwrap();
    (s.recover, s.offset, s.epoch) = (true, 1, sub.epoch.clone());
    let r = again.call(cmd).await.subscribe.expect("subscribe");
    assert!(r.recovered && r.was_recovering, "{r:?}");
    assert_eq!(
        r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [2]
    );

    // Errors are error replies; the connection stays.
    let r = c.call(subscribe("nowhere:1")).await;
    assert_eq!(r.error.map(|e| e.code), Some(102));
    assert!(c
        .call(pb::Command {
            ping: Some(pb::PingRequest {}),
            ..Default::default()
        })
        .await
        .ping
        .is_some());
}

#[tokio::test]
async fn json_and_protobuf_subscribers_get_the_same_publications() {
    let t = TestNode::start_with(open_namespace).await;
    let (mut j, _) = Client::connect(&t.ws_url(), "json").await;
    j.call("subscribe", json!({"channel": "mixed"})).await;
    let (mut p, _) = PbClient::connect(&t, "pb").await;
    p.call(subscribe("mixed"))
        .await
        .subscribe
        .expect("subscribe");

    // JSON publisher → Protobuf subscriber: the JSON text as bytes.
    let r = j
        .call(
            "publish",
            json!({"channel": "mixed", "data": {"from": "json"}}),
        )
        .await;
    assert!(r.get("publish").is_some(), "{r}");
    assert_eq!(
        json_of(&p.next_pub("mixed").await.data),
        json!({"from": "json"})
    );
    assert_eq!(j.next_pub("mixed").await["data"], json!({"from": "json"}));

    // Protobuf publisher → JSON subscriber: the bytes, which are JSON, as JSON.
    p.call(publish("mixed", br#"{"from":"pb"}"#)).await;
    assert_eq!(j.next_pub("mixed").await["data"], json!({"from": "pb"}));
    assert_eq!(
        json_of(&p.next_pub("mixed").await.data),
        json!({"from": "pb"})
    );
}

#[tokio::test]
async fn several_commands_in_one_frame_and_replies_coalesced() {
    let t = TestNode::start().await;
    let mut c = PbClient::open(&t, true).await;
    let mut connect = pb::Command {
        id: 1,
        connect: Some(pb::ConnectRequest {
            token: common::token("bob", None),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut a = subscribe("a");
    a.id = 2;
    let mut b = subscribe("b");
    b.id = 3;
    let unknown = pb::Command {
        id: 4,
        ..Default::default()
    };
    connect.id = 1;
    c.send(&[connect, a, b, unknown]).await;
    let r = c.wait_for(|r| r.id == 4).await.expect("reply 4");
    assert_eq!(r.error.map(|e| e.code), Some(104));
    for id in 1..=3 {
        assert!(c.inbox.iter().any(|r| r.id == id), "reply {id}");
    }
    assert!(c.frames < 4, "replies share frames: {} frames", c.frames);
}

#[tokio::test]
async fn bad_protobuf_input_closes_with_documented_codes() {
    let t = TestNode::start_with(|c| c.limits.max_message_size = 1024).await;

    // A frame that does not decode: bad request, told in a Protobuf disconnect push.
    let (mut c, _) = PbClient::connect(&t, "a").await;
    c.ws.send(Message::Binary(vec![2, 0x0f, 0x00].into()))
        .await
        .unwrap();
    assert_eq!(c.wait_close().await, Some(3501));
    let push = c
        .inbox
        .iter()
        .find_map(|r| r.push.as_ref()?.disconnect.clone());
    assert_eq!(push.map(|d| (d.code, d.reconnect)), Some((3501, false)));

    // A length prefix past the end of the frame.
    let (mut c, _) = PbClient::connect(&t, "b").await;
    c.ws.send(Message::Binary(vec![50, 0x08, 0x01].into()))
        .await
        .unwrap();
    assert_eq!(c.wait_close().await, Some(3501));

    // A text (JSON) frame on a Protobuf connection.
    let (mut c, _) = PbClient::connect(&t, "c").await;
    c.ws.send(Message::Text(r#"{"id":2,"ping":{}}"#.into()))
        .await
        .unwrap();
    assert_eq!(c.wait_close().await, Some(3501));
    let reason = c.closed.as_ref().map(|c| c.1.as_str());
    assert_eq!(
        reason,
        Some("bad request: text frame on a Protobuf connection")
    );

    // A payload that is not JSON.
    let (mut c, _) = PbClient::connect(&t, "d").await;
    c.call(subscribe("x")).await;
    c.send(&[publish("x", &[0xff, 0x00])]).await;
    assert_eq!(c.wait_close().await, Some(3501));

    // Over the size limit: 1009, as for JSON.
    let (mut c, _) = PbClient::connect(&t, "e").await;
    c.send(&[publish("x", &vec![b'1'; 2048])]).await;
    assert_eq!(c.wait_close().await, Some(1009));

    // And the reverse: a binary frame on a JSON connection.
    let (mut j, _) = Client::connect(&t.ws_url(), "f").await;
    j.ws.send(Message::Binary(br#"{"id":2,"ping":{}}"#.to_vec().into()))
        .await
        .unwrap();
    assert_eq!(j.wait_close().await, Some(3501));

    // The node is unharmed: new clients of both kinds work.
    let (mut c, _) = PbClient::connect(&t, "g").await;
    assert!(c.call(subscribe("x")).await.subscribe.is_some());
    let (_, reply) = Client::connect(&t.ws_url(), "h").await;
    assert!(reply["connect"]["client"].is_string(), "{reply}");
}

#[tokio::test]
async fn commands_before_connect_and_the_rate_limit_close_as_in_json() {
    let t = TestNode::start_with(|c| c.limits.commands_per_second = 3).await;
    let mut c = PbClient::open(&t, false).await;
    c.send(&[subscribe("a")]).await;
    assert_eq!(c.wait_close().await, Some(3501));

    let (mut c, _) = PbClient::connect(&t, "r").await;
    let pings: Vec<pb::Command> = (0..10)
        .map(|i| pb::Command {
            id: 10 + i,
            ping: Some(pb::PingRequest {}),
            ..Default::default()
        })
        .collect();
    c.send(&pings).await;
    assert_eq!(c.wait_close().await, Some(3013));
}
