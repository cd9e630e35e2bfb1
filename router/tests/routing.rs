//! Stickiness and plain HTTP through routers in front of real `herald-node` processes.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

mod common;

use common::*;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_keeps_its_node_across_reconnects_and_router_instances() {
    let (_nodes, addrs) = start_nodes(&["n1", "n2", "n3"]);
    let a = TestRouter::start(router_config(&addrs)).await;
    // The second router lists the nodes in another order: only the set matters.
    let mut reversed = addrs.clone();
    reversed.reverse();
    let b = TestRouter::start(router_config(&reversed)).await;
    a.wait_ring(&addrs).await;
    b.wait_ring(&addrs).await;

    let first = connect(a.addr, None, "").await;
    let cookie = first
        .cookie
        .clone()
        .expect("the first upgrade sets the cookie");
    assert_eq!(cookie.len(), 16, "{cookie}");
    for round in 0..3 {
        for router in [&a, &b] {
            let again = connect(router.addr, Some(&cookie), "").await;
            assert_eq!(
                again.node, first.node,
                "round {round}, router {}",
                router.addr
            );
            assert_eq!(again.cookie, None, "a valid cookie is not set again");
        }
    }

    // Many keys: both routers agree on each, and the keys spread over the nodes.
    let mut seen = HashSet::new();
    for i in 1..=16u64 {
        let key = format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let on_a = connect(a.addr, Some(&key), "").await.node;
        let on_b = connect(b.addr, Some(&key), "").await.node;
        assert_eq!(on_a, on_b, "key {key}");
        seen.insert(on_a);
    }
    assert!(seen.len() >= 2, "16 keys all went to {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cookie_the_query_parameter_then_the_address_is_the_key() {
    let (_nodes, addrs) = start_nodes(&["n1", "n2", "n3"]);
    let mut config = router_config(&addrs);
    config.sticky.query = Some("room".into());
    config.sticky.fallback = herald_router::config::StickyFallback::Address;
    let a = TestRouter::start(config.clone()).await;
    let b = TestRouter::start(config).await;
    a.wait_ring(&addrs).await;
    b.wait_ring(&addrs).await;

    let mut seen = HashSet::new();
    for room in ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10"] {
        let query = format!("?room={room}");
        let first = connect(a.addr, None, &query).await;
        let second = connect(b.addr, None, &query).await;
        assert_eq!(first.node, second.node, "room {room}");
        // The cookie pins the same key: following it lands on the same node.
        let cookie = first.cookie.expect("cookie set");
        assert_eq!(connect(a.addr, Some(&cookie), "").await.node, first.node);
        seen.insert(first.node);
    }
    assert!(seen.len() >= 2, "10 rooms all went to {seen:?}");

    // No cookie, no parameter: the client's address decides, the same on every connect.
    let by_address = connect(a.addr, None, "").await.node;
    for _ in 0..3 {
        assert_eq!(connect(b.addr, None, "").await.node, by_address);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_reaches_a_node_and_the_router_answers_its_own_probes() {
    let node = NodeProc::start("api-node");
    let r = TestRouter::start(router_config(&[node.addr_text()])).await;
    r.wait_ring(&[node.addr_text()]).await;

    let info = http(
        r.addr,
        "POST",
        "/api/info",
        &[("x-api-key", API_KEY), ("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert!(info.body.contains("api-node"), "{}", info.body);

    let denied = http(r.addr, "POST", "/api/info", &[("x-api-key", "wrong")], "{}").await;
    assert_eq!(denied.status, 401, "the node's answer is passed back");

    let ready = http(r.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200);
    let body: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(body["healthy"], 1);
    assert_eq!(body["nodes"][0]["addr"], node.addr_text());
    assert_eq!(body["nodes"][0]["state"], "up");
    assert_eq!(http(r.addr, "GET", "/healthz", &[], "").await.status, 200);
}
