//! TLS at the router, in process: a real `wss://` client (tokio-tungstenite over
//! tokio-rustls, trusting the test's own CA) through the router to a real `herald-node`;
//! junk instead of a handshake, a handshake that stops half-way, and plain HTTP on the TLS
//! port all leave the router serving; `Terminator::reload` swaps the certificate for new
//! connections and keeps the old one when the new files are bad.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

mod common;

use common::tls::*;
use common::*;
use futures_util::StreamExt;
use herald_router::router::Router;
use herald_router::tls::Terminator;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// A TLS router in this process, in front of `nodes`.
async fn start_tls(
    nodes: &[String],
    files: &TlsFiles,
    handshake: Duration,
) -> (TestRouter, std::sync::Arc<Terminator>) {
    let mut config = router_config(nodes);
    config.limits.handshake_timeout = handshake;
    config.tls = Some(files.config());
    let tls = Terminator::load(&files.config()).expect("certificate loads");
    let listener = herald_router::server::bind(config.listen).expect("bind");
    let addr = listener.local_addr().unwrap();
    let router = Router::with_tls(config, Some(tls.clone()));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(herald_router::serve(
        router.clone(),
        listener,
        shutdown.clone(),
    ));
    let r = TestRouter {
        addr,
        router,
        shutdown,
        task,
    };
    r.wait_ring(nodes).await;
    (r, tls)
}

/// The value of the counter `name{result="<result>"}` in the router's metrics, 0 if absent.
fn counter(r: &TestRouter, name: &str, result: &str) -> u64 {
    let want = format!("{name}{{result=\"{result}\"}} ");
    r.router
        .prometheus
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads from `s` until the far end closes (EOF or reset), returning the bytes read.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the router closes the connection");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_client_reaches_a_node_through_the_router() {
    let ca = TestCa::new();
    let issued = ca.issue();
    let files = TlsFiles::new(&issued);
    let (nodes, addrs) = start_nodes(&["tls-a"]);
    let (r, _tls) = start_tls(&addrs, &files, Duration::from_secs(10)).await;

    let (mut ws, node, shown) = wss_connect(r.addr, ca.client_config()).await;
    assert_eq!(node, nodes[0].id);
    assert_eq!(shown, issued.der);
    // The tunnel carries the protocol both ways: subscribe, then a publication sent
    // through the router's HTTPS side to the server API arrives on the wss tunnel.
    let sub = command(&mut ws, 2, r#"{"id":2,"subscribe":{"channel":"news"}}"#).await;
    assert!(sub.get("error").is_none(), "{sub}");
    let api = https_request(
        r.addr,
        ca.client_config(),
        "POST",
        "/api/publish",
        &[("x-api-key", API_KEY), ("content-type", "application/json")],
        r#"{"channel":"news","data":{"n":1}}"#,
    )
    .await;
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    let push = async {
        loop {
            let msg = ws.next().await.expect("open").expect("frame");
            if let Message::Text(t) = msg {
                if t.as_str().contains(r#""n":1"#) {
                    return t.as_str().to_owned();
                }
            }
        }
    };
    let push = tokio::time::timeout(WAIT, push)
        .await
        .expect("publication in time");
    assert!(push.contains("news"), "{push}");

    // The router's own endpoints are served over TLS too.
    let health = https_get(r.addr, ca.client_config(), "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(counter(&r, "herald_router_tls_handshakes_total", "ok") >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusting_or_h2_only_client_fails_in_the_handshake_and_others_are_served() {
    let ca = TestCa::new();
    let files = TlsFiles::new(&ca.issue());
    let (_nodes, addrs) = start_nodes(&["tls-b"]);
    let (r, _tls) = start_tls(&addrs, &files, Duration::from_secs(10)).await;
    // Another CA's client rejects the router's certificate: the handshake fails.
    let stranger = TestCa::new();
    assert!(tls_connect(r.addr, stranger.client_config()).await.is_err());
    // A client offering only h2 in ALPN: the router speaks HTTP/1.1 only and says so.
    let mut h2_only = (*ca.client_config()).clone();
    h2_only.alpn_protocols = vec![b"h2".to_vec()];
    let err = tls_connect(r.addr, std::sync::Arc::new(h2_only))
        .await
        .expect_err("no common application protocol");
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");
    // ...and the router keeps serving clients that do trust it.
    let (_ws, node, _) = wss_connect(r.addr, ca.client_config()).await;
    assert_eq!(node, "tls-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_handshake_flood_leaves_the_router_serving() {
    let ca = TestCa::new();
    let files = TlsFiles::new(&ca.issue());
    let (_nodes, addrs) = start_nodes(&["tls-c"]);
    let (r, _tls) = start_tls(&addrs, &files, Duration::from_secs(10)).await;
    let failed_before = counter(&r, "herald_router_tls_handshakes_total", "failed");

    const FLOOD: usize = 300;
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let addr = r.addr;
        flood.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let junk: Vec<u8> = match i % 3 {
                // Plain HTTP to the TLS port.
                0 => b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                // A TLS record header announcing a handshake, then noise.
                1 => [&[0x16, 0x03, 0x01, 0x00, 0x40][..], &[0xAB; 64]].concat(),
                // Pure noise.
                _ => (0..512).map(|n| (n * 7 + i) as u8).collect(),
            };
            let _ = s.write_all(&junk).await;
            read_until_closed(&mut s).await
        }));
    }
    // While the flood is on, a real client gets through.
    let (mut ws, node, _) = wss_connect(r.addr, ca.client_config()).await;
    assert_eq!(node, "tls-c");
    for f in flood {
        let answer = f.await.expect("flood task");
        // Whatever came back is a TLS alert at most, never an HTTP answer.
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    }
    // Every junk connection was counted as a failed handshake and gave its slot back.
    r.wait_for("the flood's handshakes to be counted", |r| {
        counter(r, "herald_router_tls_handshakes_total", "failed") >= failed_before + FLOOD as u64
    })
    .await;
    r.wait_for("only the real client to stay open", |r| {
        r.router.open_connections() == 1
    })
    .await;
    let reply = command(&mut ws, 2, r#"{"id":2,"subscribe":{"channel":"c"}}"#).await;
    assert!(reply.get("error").is_none(), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_mid_handshake_is_closed_at_the_timeout() {
    let ca = TestCa::new();
    let files = TlsFiles::new(&ca.issue());
    let (_nodes, addrs) = start_nodes(&["tls-d"]);
    let (r, _tls) = start_tls(&addrs, &files, Duration::from_secs(1)).await;
    let timeouts_before = counter(&r, "herald_router_tls_handshakes_total", "timeout");

    // Half a ClientHello: a handshake record header promising 512 bytes, and 10 of them.
    let mut half = TcpStream::connect(r.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
        .await
        .unwrap();
    // And one that sends nothing at all.
    let mut silent = TcpStream::connect(r.addr).await.unwrap();
    let (a, b) = tokio::join!(read_until_closed(&mut half), read_until_closed(&mut silent));
    assert!(a.is_empty() && b.is_empty(), "{a:?} {b:?}");
    r.wait_for("both timeouts to be counted", |r| {
        counter(r, "herald_router_tls_handshakes_total", "timeout") >= timeouts_before + 2
    })
    .await;
    r.wait_for("their slots to free", |r| r.router.open_connections() == 0)
        .await;
    // Meanwhile nothing else was held up.
    let (_ws, node, _) = wss_connect(r.addr, ca.client_config()).await;
    assert_eq!(node, "tls-d");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_certificate_for_new_connections_only() {
    let ca = TestCa::new();
    let first = ca.issue();
    let files = TlsFiles::new(&first);
    let (_nodes, addrs) = start_nodes(&["tls-e"]);
    let (r, tls) = start_tls(&addrs, &files, Duration::from_secs(10)).await;
    let (mut old_ws, _, shown) = wss_connect(r.addr, ca.client_config()).await;
    assert_eq!(shown, first.der);

    let second = ca.issue();
    files.replace(&second.cert_pem, &second.key_pem);
    tls.reload().expect("the new certificate loads");
    let (_new_ws, _, shown) = wss_connect(r.addr, ca.client_config()).await;
    assert_eq!(shown, second.der);
    // The tunnel opened under the old certificate still carries traffic.
    let reply = command(&mut old_ws, 2, r#"{"id":2,"subscribe":{"channel":"r"}}"#).await;
    assert!(reply.get("error").is_none(), "{reply}");

    // Bad files: each reload fails, says why, and the second certificate stays.
    let third = ca.issue();
    let cases: [(&str, &str, &str); 4] = [
        ("not a pem", &third.key_pem, "no PEM CERTIFICATE"),
        (&third.cert_pem, "", "no PEM private key"),
        (&third.cert_pem, &second.key_pem, "does not match"),
        ("", "", "no PEM CERTIFICATE"),
    ];
    for (cert, key, why) in cases {
        files.replace(cert, key);
        let err = tls.reload().expect_err("a bad pair is refused").to_string();
        assert!(err.contains(why), "{err}");
        let (_ws, _, shown) = wss_connect(r.addr, ca.client_config()).await;
        assert_eq!(shown, second.der, "after {why}");
    }
    let expired = ca.issue_between(Some((2001, 1, 1)), Some((2002, 1, 1)));
    files.replace(&expired.cert_pem, &expired.key_pem);
    let err = tls.reload().expect_err("expired").to_string();
    assert!(err.contains("expired at 2002-01-01T00:00:00Z"), "{err}");
    std::fs::remove_file(&files.cert).unwrap();
    let err = tls.reload().expect_err("missing").to_string();
    assert!(err.contains("cannot read"), "{err}");
    let (_ws, _, shown) = wss_connect(r.addr, ca.client_config()).await;
    assert_eq!(shown, second.der);
    assert!(counter(&r, "herald_router_tls_reloads_total", "failed") >= 6);
    assert!(counter(&r, "herald_router_tls_reloads_total", "ok") >= 1);
}
