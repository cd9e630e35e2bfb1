//! Test support: a real node on `127.0.0.1:0`, a WebSocket client, and a tiny HTTP client.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use herald_node::config::NodeConfig;
use herald_node::node::Node;
use herald_shared::auth::{mint, Algorithm, MintClaims, SignKey};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

pub(crate) const SECRET: &str = "test-secret-0123456789abcdef";
pub(crate) const API_KEY: &str = "test-api-key";
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A node running in this process.
pub(crate) struct TestNode {
    pub(crate) addr: SocketAddr,
    pub(crate) node: Arc<Node>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl TestNode {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(tweak: impl FnOnce(&mut NodeConfig)) -> Self {
        let mut config = NodeConfig::for_tests(SECRET, API_KEY);
        tweak(&mut config);
        let listener = herald_node::server::bind(config.listen).expect("bind");
        let addr = listener.local_addr().unwrap();
        let node = herald_node::build(config).await.expect("node");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(herald_node::serve(node.clone(), listener, shutdown.clone()));
        TestNode {
            addr,
            node,
            shutdown,
            task,
        }
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    /// Calls the server API; returns (status, body as JSON).
    pub(crate) async fn api(&self, method: &str, body: Value) -> (u16, Value) {
        let (status, text) = http(
            self.addr,
            "POST",
            &format!("/api/{method}"),
            &[("X-API-Key", API_KEY), ("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A connection token for `user`.
pub(crate) fn token(user: &str, ttl: Option<u64>) -> String {
    let claims = MintClaims {
        sub: user.into(),
        exp: ttl.map(|t| herald_shared::auth::now_secs() + t),
        ..Default::default()
    };
    mint(
        Algorithm::HS256,
        &SignKey::Hmac(SECRET.as_bytes().to_vec()),
        &claims,
    )
    .unwrap()
}

/// Minimal HTTP/1.1 request; returns (status, body).
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("http timeout")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A raw protocol client: sends JSON commands, collects replies and pushes.
pub(crate) struct Client {
    pub(crate) ws: Ws,
    next_id: u32,
    /// Messages received but not yet consumed.
    pub(crate) inbox: std::collections::VecDeque<Value>,
    /// Close frame received, if any.
    pub(crate) closed: Option<u16>,
}

impl Client {
    pub(crate) async fn open(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Client::from_ws(ws)
    }

    /// A client on a WebSocket opened by the caller (custom handshake headers).
    pub(crate) fn from_ws(ws: Ws) -> Client {
        Client {
            ws,
            next_id: 0,
            inbox: Default::default(),
            closed: None,
        }
    }

    /// Opens and connects with a token for `user`.
    pub(crate) async fn connect(url: &str, user: &str) -> (Client, Value) {
        let mut c = Client::open(url).await;
        let reply = c
            .call("connect", serde_json::json!({"token": token(user, None)}))
            .await;
        (c, reply)
    }

    pub(crate) async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// Sends a command and waits for its reply (pushes received meanwhile stay in the inbox).
    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let cmd = serde_json::json!({"id": id, method: params});
        self.send_raw(&cmd.to_string()).await;
        self.wait_for(|m| m.get("id").and_then(Value::as_u64) == Some(u64::from(id)))
            .await
            .unwrap_or_else(|| panic!("no reply to {method}; closed with {:?}", self.closed))
    }

    /// Reads one frame into the inbox; false when the connection ended.
    async fn read_frame(&mut self) -> bool {
        match tokio::time::timeout(WAIT, self.ws.next()).await {
            Err(_) => panic!("timed out waiting for the server"),
            Ok(None) | Ok(Some(Err(_))) => false,
            Ok(Some(Ok(Message::Text(t)))) => {
                for line in t.split('\n').filter(|l| !l.is_empty()) {
                    let v: Value = serde_json::from_str(line).expect("server sent JSON");
                    if v.as_object().is_some_and(|o| o.is_empty()) {
                        // Server ping: answer it like the SDKs do.
                        let _ = self.ws.send(Message::Text("{}".into())).await;
                        continue;
                    }
                    self.inbox.push_back(v);
                }
                true
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                self.closed = Some(frame.map(|f: CloseFrame| u16::from(f.code)).unwrap_or(1005));
                false
            }
            Ok(Some(Ok(_))) => true,
        }
    }

    /// Waits for a message matching `pred` and removes it from the inbox.
    pub(crate) async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        loop {
            if let Some(i) = self.inbox.iter().position(&pred) {
                return self.inbox.remove(i);
            }
            if self.closed.is_some() || !self.read_frame().await {
                return None;
            }
        }
    }

    /// Waits for the next publication push on `channel`.
    pub(crate) async fn next_pub(&mut self, channel: &str) -> Value {
        let ch = channel.to_owned();
        let m = self
            .wait_for(move |m| {
                m["push"]["channel"] == ch.as_str() && m["push"].get("pub").is_some()
            })
            .await
            .unwrap_or_else(|| panic!("no publication; closed with {:?}", self.closed));
        m["push"]["pub"].clone()
    }

    /// Reads until the server closes; returns the close code.
    pub(crate) async fn wait_close(&mut self) -> Option<u16> {
        while self.closed.is_none() && self.read_frame().await {}
        self.closed
    }
}
