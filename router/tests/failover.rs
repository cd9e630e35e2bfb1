//! Health and failover with real `herald-node` processes: killed nodes, nodes that stop
//! answering, nothing healthy at all. Draining is shown with a tiny fake node (a real
//! node closes its sessions on SIGTERM, so it cannot show tunnels surviving a drain).

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Two nodes and a router in front of them, all healthy.
async fn two_nodes() -> (NodeProc, NodeProc, TestRouter) {
    let n1 = NodeProc::start("n1");
    let n2 = NodeProc::start("n2");
    let addrs = [n1.addr_text(), n2.addr_text()];
    let r = TestRouter::start(router_config(&addrs)).await;
    r.wait_ring(&addrs).await;
    (n1, n2, r)
}

/// The node of the pair with id `id`, and the other one.
fn split<'a>(
    id: &str,
    a: &'a mut NodeProc,
    b: &'a mut NodeProc,
) -> (&'a mut NodeProc, &'a mut NodeProc) {
    if a.id == id {
        (a, b)
    } else {
        (b, a)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_sends_its_clients_to_another_node() {
    let (mut n1, mut n2, r) = two_nodes().await;
    let mut first = connect(r.addr, None, "").await;
    let cookie = first.cookie.clone().expect("cookie");
    let (owner, other) = split(&first.node, &mut n1, &mut n2);
    owner.kill();
    // The tunnel to the dead node ends; the client reconnects with its cookie.
    wait_closed(&mut first.ws).await;
    let again = connect(r.addr, Some(&cookie), "").await;
    assert_eq!(again.node, other.id);
    // Health catches up: the dead node leaves the ring.
    r.wait_ring(&[other.addr_text()]).await;
    assert_eq!(r.state_of(&owner.addr_text()), Some("down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unready_node_leaves_the_ring_while_its_open_tunnel_stays() {
    let (mut n1, mut n2, r) = two_nodes().await;
    let mut first = connect(r.addr, None, "").await;
    let cookie = first.cookie.clone().expect("cookie");
    let (owner, other) = split(&first.node, &mut n1, &mut n2);

    // A stopped process answers no probe: after `fall` misses it leaves the ring.
    owner.signal("STOP");
    r.wait_ring(&[other.addr_text()]).await;
    let meanwhile = connect(r.addr, Some(&cookie), "").await;
    assert_eq!(meanwhile.node, other.id, "new connections go elsewhere");

    // The open tunnel was left alone: once the node runs again, it answers through it.
    owner.signal("CONT");
    let reply = command(
        &mut first.ws,
        2,
        r#"{"id":2,"presence_stats":{"channel":"c"}}"#,
    )
    .await;
    assert_eq!(reply["id"], 2, "{reply}");
    // And it comes back into the ring, taking its keys back.
    r.wait_ring(&[owner.addr_text(), other.addr_text()]).await;
    assert_eq!(connect(r.addr, Some(&cookie), "").await.node, owner.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_healthy_answers_503_with_retry_after() {
    let mut node = NodeProc::start("only");
    let r = TestRouter::start(router_config(&[node.addr_text()])).await;
    r.wait_ring(&[node.addr_text()]).await;
    node.kill();
    // Whether the router has noticed yet (empty ring) or finds out now (refused
    // connection, no other candidate), the answer is the same.
    for _ in 0..2 {
        let refused = raw_upgrade(r.addr).await;
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert_eq!(refused.headers["retry-after"], "2");
    }
    r.wait_ring(&[]).await;
    let api = http(r.addr, "POST", "/api/info", &[("x-api-key", API_KEY)], "{}").await;
    assert_eq!(api.status, 503);
    assert!(api.headers.contains_key("retry-after"));
    let ready = http(r.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
}

/// A fake node: `/readyz` says ready until `draining` is set, then what a draining node
/// says; upgrades are refused as a draining node refuses them.
async fn fake_node(draining: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let draining = draining.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let draining = draining.load(Ordering::SeqCst);
                        async move {
                            let (status, body) = match (req.uri().path(), draining) {
                                ("/readyz", false) => (StatusCode::OK, r#"{"status":"ready"}"#),
                                ("/readyz", true) => (
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    r#"{"status":"not ready","reason":"draining"}"#,
                                ),
                                _ => (
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    r#"{"error":"node is draining"}"#,
                                ),
                            };
                            let mut r =
                                Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                            *r.status_mut() = status;
                            Ok::<_, Infallible>(r)
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_leaves_the_ring_at_once_whatever_the_fall_threshold() {
    let real = NodeProc::start("real");
    let draining = Arc::new(AtomicBool::new(false));
    let fake = fake_node(draining.clone()).await.to_string();
    let mut config = router_config(&[real.addr_text(), fake.clone()]);
    // Far more failures than the test could wait for: only "draining" removes it fast.
    config.health.fall = 100;
    let r = TestRouter::start(config).await;
    r.wait_ring(&[real.addr_text(), fake.clone()]).await;

    draining.store(true, Ordering::SeqCst);
    r.wait_ring(&[real.addr_text()]).await;
    assert_eq!(r.state_of(&fake), Some("draining"));
    // Every key now lands on the real node.
    for i in 1..=6u64 {
        let key = format!("{i:016x}");
        assert_eq!(connect(r.addr, Some(&key), "").await.node, "real");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_is_retried_on_the_next_node() {
    let real = NodeProc::start("real");
    // The fake node says ready but refuses upgrades as draining: the router learns it
    // from the refusal itself and tries the next candidate.
    let draining = Arc::new(AtomicBool::new(false));
    let fake = fake_node(draining).await.to_string();
    let mut config = router_config(&[real.addr_text(), fake.clone()]);
    config.health.interval = std::time::Duration::from_secs(3600);
    let r = TestRouter::start(config).await;
    r.wait_ring(&[real.addr_text(), fake.clone()]).await;
    // Find a key the fake node owns.
    let ring = r.router.backends.ring();
    let key = (1..1000u64)
        .find(|k| &*ring.owner(*k).unwrap().addr == fake.as_str())
        .expect("some key belongs to the fake node");
    let landing = connect(r.addr, Some(&format!("{key:016x}")), "").await;
    assert_eq!(landing.node, "real");
    assert_eq!(r.state_of(&fake), Some("draining"));
}
