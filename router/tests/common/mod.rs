//! Test support: real `herald-node` processes on `127.0.0.1:0`, routers in this process,
//! a WebSocket client that reports which node it landed on, and a small HTTP client.
#![allow(dead_code)]

pub(crate) mod tls;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use herald_router::config::RouterConfig;
use herald_router::router::Router;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// Bound of every wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(20);
/// The nodes' token secret (unused by anonymous clients, but a node wants a key).
pub(crate) const SECRET: &str = "router-tests-secret-0123456789";
/// The nodes' server API key.
pub(crate) const API_KEY: &str = "key";

/// A client WebSocket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The workspace root.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("router/ has a parent")
        .to_path_buf()
}

/// The `herald-node` binary: `$CARGO_TARGET_DIR/debug/herald-node` (else
/// `<workspace>/target/debug/herald-node`). When it is missing it is built once, into a
/// target directory of its own: the outer `cargo test` holds the lock on the usual one.
pub(crate) fn node_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace().join("target"));
            let usual = target.join("debug").join("herald-node");
            if usual.exists() {
                return usual;
            }
            let own = target.join("router-tests");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "herald-node", "--quiet"])
                .env("CARGO_TARGET_DIR", &own)
                .current_dir(workspace())
                .status()
                .expect("run cargo build -p herald-node");
            assert!(status.success(), "cargo build -p herald-node failed");
            own.join("debug").join("herald-node")
        })
        .clone()
}

/// Reads lines from a child's output in a thread; sends the address of the first line
/// that says `listening on ADDR`, then keeps reading so the pipe never fills.
pub(crate) fn watch_stdout(
    out: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                if let Some(addr) = rest.split_whitespace().next().and_then(|a| a.parse().ok()) {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    rx
}

/// Waits for the address a child prints.
pub(crate) fn listening_addr(rx: &std::sync::mpsc::Receiver<SocketAddr>) -> SocketAddr {
    rx.recv_timeout(WAIT)
        .expect("the process prints its address")
}

/// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`) to process `pid`.
pub(crate) fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A `herald-node` process; killed when dropped.
pub(crate) struct NodeProc {
    /// Its `HERALD_NODE_ID`.
    pub(crate) id: String,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// The process.
    child: Child,
}

impl NodeProc {
    /// Starts node `id` on a free port, anonymous connections allowed.
    pub(crate) fn start(id: &str) -> Self {
        let mut child = Command::new(node_binary())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HERALD_LISTEN", "127.0.0.1:0")
            .env("HERALD_NODE_ID", id)
            .env("HERALD_TOKEN_HMAC_SECRET", SECRET)
            .env("HERALD_API_KEY", API_KEY)
            .env("HERALD_ALLOW_ANONYMOUS", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start herald-node");
        let rx = watch_stdout(child.stdout.take().expect("stdout"));
        let addr = listening_addr(&rx);
        NodeProc {
            id: id.to_owned(),
            addr,
            child,
        }
    }

    /// `host:port` as the router is told.
    pub(crate) fn addr_text(&self) -> String {
        self.addr.to_string()
    }

    /// Sends `sig` to the node.
    pub(crate) fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }

    /// Kills the node (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        // A stopped process must be continued to die promptly on some systems.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A configuration for tests: fast health checks, one good probe to come back, two bad
/// ones to leave; short shutdown grace.
pub(crate) fn router_config(nodes: &[String]) -> RouterConfig {
    let mut c = RouterConfig::for_tests(nodes);
    c.health.interval = Duration::from_millis(200);
    c.health.timeout = Duration::from_millis(500);
    c.health.rise = 1;
    c.health.fall = 2;
    c.limits.shutdown_grace = Duration::from_secs(1);
    c
}

/// A router running in this process.
pub(crate) struct TestRouter {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its state.
    pub(crate) router: Arc<Router>,
    /// Stops it.
    pub(crate) shutdown: CancellationToken,
    /// Its serve task.
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl TestRouter {
    /// Starts a router for `config` on a free port.
    pub(crate) async fn start(config: RouterConfig) -> Self {
        let listener = herald_router::server::bind(config.listen).expect("bind");
        let addr = listener.local_addr().unwrap();
        let router = Router::new(config);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(herald_router::serve(
            router.clone(),
            listener,
            shutdown.clone(),
        ));
        TestRouter {
            addr,
            router,
            shutdown,
            task,
        }
    }

    /// The addresses in the ring now.
    pub(crate) fn ring(&self) -> Vec<String> {
        let ring = self.router.backends.ring();
        ring.nodes().iter().map(|n| n.addr.to_string()).collect()
    }

    /// The state (`up`, `down`, `draining`) of node `addr`, if known.
    pub(crate) fn state_of(&self, addr: &str) -> Option<&'static str> {
        self.router
            .backends
            .view()
            .into_iter()
            .find(|v| v.addr == addr)
            .map(|v| v.state)
    }

    /// Waits until `check` holds, panicking with `what` after [`WAIT`].
    pub(crate) async fn wait_for(&self, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !check(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; nodes: {:?}",
                self.router.backends.view()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until exactly `addrs` are in the ring.
    pub(crate) async fn wait_ring(&self, addrs: &[String]) {
        let mut want = addrs.to_vec();
        want.sort();
        self.wait_for(&format!("ring {want:?}"), |r| r.ring() == want)
            .await;
    }
}

/// The result of a WebSocket connect through the router.
pub(crate) struct Landing {
    /// The open WebSocket, after the protocol's connect.
    pub(crate) ws: Ws,
    /// The node id from the connect reply.
    pub(crate) node: String,
    /// The router's cookie value, if it set one.
    pub(crate) cookie: Option<String>,
}

/// Opens a WebSocket to `addr` (with `herald_node=<cookie>` if given, and `query` appended
/// to the path), sends the protocol's connect and reads where it landed.
pub(crate) async fn connect(addr: SocketAddr, cookie: Option<&str>, query: &str) -> Landing {
    let cookie = cookie.map(|c| format!("herald_node={c}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    connect_with(addr, &headers, query).await
}

/// Like [`connect`], with `headers` added to the upgrade request.
pub(crate) async fn connect_with(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    query: &str,
) -> Landing {
    let url = format!("ws://{addr}/connection/websocket{query}");
    let mut request = url.into_client_request().expect("request");
    for (k, v) in headers {
        let name: hyper::header::HeaderName = k.parse().unwrap();
        request.headers_mut().append(name, v.parse().unwrap());
    }
    let (mut ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("upgrade in time")
        .expect("upgrade through the router");
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("herald_node="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned());
    let reply = command(&mut ws, 1, r#"{"id":1,"connect":{}}"#).await;
    let node = reply["connect"]["node"]
        .as_str()
        .unwrap_or_else(|| panic!("connect reply names the node: {reply}"))
        .to_owned();
    Landing { ws, node, cookie }
}

/// Sends `text` and returns the reply with `id`, skipping pings and pushes (over TCP or
/// TLS).
pub(crate) async fn command<S>(ws: &mut WebSocketStream<S>, id: u64, text: &str) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.expect("send");
    let read = async {
        loop {
            let msg = ws.next().await.expect("open").expect("frame");
            let Message::Text(t) = msg else { continue };
            for line in t.as_str().lines() {
                let v: Value = serde_json::from_str(line).expect("JSON");
                if v["id"].as_u64() == Some(id) {
                    return v;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("reply in time")
}

/// Waits until `ws` is closed by the far end (a close frame, an error, or the end).
pub(crate) async fn wait_closed(ws: &mut Ws) {
    let read = async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("closed in time");
}

/// An HTTP/1.1 response: status, headers, body.
pub(crate) struct HttpResponse {
    /// Status code.
    pub(crate) status: u16,
    /// Headers.
    pub(crate) headers: hyper::HeaderMap,
    /// Body as text.
    pub(crate) body: String,
}

/// Sends one request to `addr` with the router's own client code path.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let exchange = async {
        let mut sender = herald_router::upstream::connect::<Full<Bytes>>(&addr.to_string())
            .await
            .expect("connect");
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = sender.send_request(request).await.expect("response");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        HttpResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("HTTP in time")
}

/// A WebSocket upgrade request sent by hand, to see refusals the WebSocket client hides.
pub(crate) async fn raw_upgrade(addr: SocketAddr) -> HttpResponse {
    raw_upgrade_with(addr, &[]).await
}

/// [`raw_upgrade`] with `extra` headers (a cookie, a forwarded address).
pub(crate) async fn raw_upgrade_with(addr: SocketAddr, extra: &[(&str, &str)]) -> HttpResponse {
    let mut headers = vec![
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    headers.extend_from_slice(extra);
    http(addr, "GET", "/connection/websocket", &headers, "").await
}

/// Nodes named `ids`, started, and their addresses in start order.
pub(crate) fn start_nodes(ids: &[&str]) -> (Vec<NodeProc>, Vec<String>) {
    let nodes: Vec<NodeProc> = ids.iter().map(|id| NodeProc::start(id)).collect();
    let addrs = nodes.iter().map(NodeProc::addr_text).collect();
    (nodes, addrs)
}
