//! The router's `/metrics` after real traffic: the documented series are there and
//! `promtool check metrics` finds nothing to complain about. Alone in its file (its own
//! process) so other tests' traffic does not change the counts.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let node = NodeProc::start("metrics-node");
    let r = TestRouter::start(router_config(&[node.addr_text()])).await;
    r.wait_ring(&[node.addr_text()]).await;
    let mut landing = connect(r.addr, None, "").await;
    landing.ws.close(None).await.expect("close");
    wait_closed(&mut landing.ws).await;
    // Closing the socket ends the client's half of the tunnel (the node closed its own).
    drop(landing);
    // The tunnel's end is recorded just after the close: wait for it.
    let mut text = String::new();
    for _ in 0..100 {
        text = http(r.addr, "GET", "/metrics", &[], "").await.body;
        if text.contains("herald_router_tunnel_duration_seconds_count 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for name in [
        "herald_router_connections",
        "herald_router_tunnels{",
        "herald_router_upgrades_total{result=\"ok\"} 1",
        "herald_router_node_state{",
        "herald_router_rehashes_total",
        "herald_router_ring_nodes 1",
        "herald_router_tunnel_bytes_total{direction=\"client_to_node\"}",
        "herald_router_tunnel_bytes_total{direction=\"node_to_client\"}",
        "herald_router_tunnel_duration_seconds_bucket{le=\"60\"} 1",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed");
    use std::io::Write as _;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
