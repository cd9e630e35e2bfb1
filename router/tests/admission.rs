//! `HERALD_ROUTER_NODE_CONNECT_RATE`: upgrades beyond a node's budget are answered 503
//! with a jittered `Retry-After`, and are not sent to another node.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

mod common;

use common::*;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_budget_gets_503_and_stays_off_other_nodes() {
    let node = NodeProc::start("budgeted");
    let other = NodeProc::start("spare");
    let addrs = [node.addr_text(), other.addr_text()];
    let mut config = router_config(&addrs);
    config.limits.node_connect_rate = 1;
    config.limits.node_connect_burst = 3;
    let r = TestRouter::start(config).await;
    r.wait_ring(&addrs).await;

    // Find a cookie that the router sends to "budgeted". Probing costs budget, so use a
    // second router with admission off to learn where keys land.
    let mut scout_config = router_config(&addrs);
    scout_config.limits.node_connect_rate = 0;
    let scout = TestRouter::start(scout_config).await;
    scout.wait_ring(&addrs).await;
    let mut cookie = None;
    for i in 1..=64u64 {
        let key = format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if connect(scout.addr, Some(&key), "").await.node == "budgeted" {
            cookie = Some(key);
            break;
        }
    }
    let cookie = cookie.expect("some key lands on the budgeted node");

    let started = Instant::now();
    let mut passed = 0u64;
    let mut throttled = Vec::new();
    for _ in 0..10 {
        let landing =
            raw_upgrade_with(r.addr, &[("cookie", &format!("herald_node={cookie}"))]).await;
        match landing.status {
            101 => passed += 1,
            503 => throttled.push(landing),
            other => panic!("unexpected status {other}: {}", landing.body),
        }
    }
    // The bucket's promise: the burst plus one a second, however slow this machine is.
    let allowed = 3 + started.elapsed().as_secs() + 1;
    assert!(passed >= 3, "the burst passes: {passed}");
    assert!(
        passed <= allowed,
        "{passed} passed, at most {allowed} allowed"
    );
    assert!(!throttled.is_empty(), "some of ten are over budget");
    for t in &throttled {
        assert!(t.body.contains("budget"), "{}", t.body);
        let secs: u64 = t.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=4).contains(&secs), "Retry-After {secs}");
    }
    // A 503 rather than a 101 from the spare node: nothing fell through.
    let metrics = http(r.addr, "GET", "/metrics", &[], "").await.body;
    assert!(
        metrics.contains("herald_router_upgrades_total{result=\"throttled\"}"),
        "{metrics}"
    );
    // A key of the other node is within its own budget.
    let mut spare_key = None;
    for i in 1..=64u64 {
        let key = format!("{:016x}", i.wrapping_mul(0x5851_f42d_4c95_7f2d));
        if connect(scout.addr, Some(&key), "").await.node == "spare" {
            spare_key = Some(key);
            break;
        }
    }
    let spare_key = spare_key.expect("some key lands on the spare node");
    assert_eq!(connect(r.addr, Some(&spare_key), "").await.node, "spare");
}
