//! What a node sees of a proxied request: hop-by-hop headers removed, `X-Forwarded-For`
//! and `X-Forwarded-Proto` added, the upgrade headers kept on upgrades. A fake node that
//! echoes the request headers shows it (a real node does not reveal them).

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use serde_json::Value;
use std::convert::Infallible;

/// A node that is ready and answers every other request with its headers as JSON: 200
/// for plain requests, 400 for upgrades (so the router passes the answer back).
async fn echo_node() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let headers: serde_json::Map<String, Value> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or(""))))
                            .collect();
                        let status = if req.uri().path() == "/readyz" {
                            StatusCode::OK
                        } else if req.headers().contains_key("upgrade") {
                            StatusCode::BAD_REQUEST
                        } else {
                            StatusCode::OK
                        };
                        let body =
                            serde_json::json!({"path": req.uri().to_string(), "headers": headers});
                        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
                        *r.status_mut() = status;
                        Ok::<_, Infallible>(r)
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_see_forwarded_headers_and_no_hop_by_hop_ones() {
    let node = echo_node().await;
    let r = TestRouter::start(router_config(std::slice::from_ref(&node))).await;
    r.wait_ring(std::slice::from_ref(&node)).await;

    let plain = http(
        r.addr,
        "POST",
        "/api/info?x=1",
        &[
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-api-key", "k"),
        ],
        "{}",
    )
    .await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    let seen: Value = serde_json::from_str(&plain.body).unwrap();
    let h = &seen["headers"];
    assert_eq!(seen["path"], "/api/info?x=1");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-api-key"], "k");
    for hop in ["x-hop", "keep-alive"] {
        assert!(h.get(hop).is_none(), "{hop} forwarded: {h}");
    }

    let upgrade = raw_upgrade(r.addr).await;
    assert_eq!(upgrade.status, 400, "the node's 4xx is passed back");
    let seen: Value = serde_json::from_str(&upgrade.body).unwrap();
    let h = &seen["headers"];
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "upgrade");
    assert_eq!(h["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
}
