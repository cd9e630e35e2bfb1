//! Placement of clients that bring no key: `HERALD_ROUTER_STICKY_FALLBACK=random` spreads
//! one address over the nodes and pins each client by cookie; `address` with
//! `HERALD_ROUTER_TRUSTED_PROXIES` keys by the address a trusted proxy reports.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

mod common;

use common::*;
use herald_router::cidr::Cidr;
use herald_router::config::StickyFallback;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_without_a_key_spreads_and_each_client_stays_by_cookie() {
    let (_nodes, addrs) = start_nodes(&["p1", "p2", "p3"]);
    let r = TestRouter::start(router_config(&addrs)).await;
    r.wait_ring(&addrs).await;

    let mut seen = HashSet::new();
    for _ in 0..24 {
        let first = connect(r.addr, None, "").await;
        let cookie = first.cookie.expect("a random key is pinned by cookie");
        assert_eq!(connect(r.addr, Some(&cookie), "").await.node, first.node);
        seen.insert(first.node);
    }
    // Each of 24 random keys picks one of 3 nodes: all on one has odds 3 * 3^-24.
    assert!(
        seen.len() >= 2,
        "24 clients of one address all went to {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_mode_believes_x_forwarded_for_only_from_trusted_peers() {
    let (_nodes, addrs) = start_nodes(&["p1", "p2", "p3"]);
    let mut config = router_config(&addrs);
    config.sticky.fallback = StickyFallback::Address;
    let untrusting = TestRouter::start(config.clone()).await;
    config.proxy.trusted_proxies = vec![Cidr::parse("127.0.0.0/8").unwrap()];
    let trusting = TestRouter::start(config).await;
    untrusting.wait_ring(&addrs).await;
    trusting.wait_ring(&addrs).await;

    let mut via_trusted = HashSet::new();
    let mut via_untrusted = HashSet::new();
    for i in 1..=12 {
        let client = format!("203.0.113.{i}");
        // A spoofed left-most entry and a trusted proxy's own entry on the right.
        let xff = format!("198.51.100.77, {client}, 127.0.0.5");
        let headers = [("x-forwarded-for", xff.as_str())];
        let a = connect_with(trusting.addr, &headers, "").await.node;
        let b = connect_with(trusting.addr, &headers, "").await.node;
        assert_eq!(a, b, "one reported client address, one node");
        via_trusted.insert(a);
        via_untrusted.insert(connect_with(untrusting.addr, &headers, "").await.node);
    }
    assert!(
        via_trusted.len() >= 2,
        "12 client addresses all went to {via_trusted:?}"
    );
    assert_eq!(
        via_untrusted.len(),
        1,
        "an untrusted peer's X-Forwarded-For is ignored: its own address decides"
    );
}
