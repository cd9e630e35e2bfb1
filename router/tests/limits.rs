//! `HERALD_ROUTER_MAX_CONNECTIONS`: a connection over the limit is answered 503 with
//! `Retry-After`, and a closed tunnel gives its slot back.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_503_until_a_slot_frees() {
    let node = NodeProc::start("limited");
    let mut config = router_config(&[node.addr_text()]);
    config.limits.max_connections = 1;
    let r = TestRouter::start(config).await;
    r.wait_ring(&[node.addr_text()]).await;

    let first = connect(r.addr, None, "").await;
    let refused = raw_upgrade(r.addr).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.headers["retry-after"], "2");
    assert!(
        refused.body.contains("connection limit"),
        "{}",
        refused.body
    );

    // Closing the tunnel frees the slot (once both sides have gone).
    drop(first);
    r.wait_for("the slot to free", |r| r.router.open_connections() == 0)
        .await;
    assert_eq!(connect(r.addr, None, "").await.node, "limited");
}
