//! The `herald-router` binary: exit code 64 on a bad setting, a banner with its address,
//! and a graceful stop on SIGTERM that closes tunnels after the grace.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn router_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herald-router"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    c
}

#[test]
fn a_bad_value_exits_64_naming_each_setting() {
    let out = router_command()
        .env("HERALD_ROUTER_LISTEN", "nowhere")
        .env("HERALD_ROUTER_NODES", "a:1,b")
        .env("HERALD_ROUTER_HEALTH_FALL", "0")
        .output()
        .expect("run herald-router");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for setting in [
        "HERALD_ROUTER_LISTEN",
        "HERALD_ROUTER_NODES",
        "HERALD_ROUTER_HEALTH_FALL",
    ] {
        assert!(
            stderr.contains(setting),
            "{setting} not named in:\n{stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
}

#[test]
fn no_nodes_at_all_exits_64() {
    let out = router_command().output().expect("run herald-router");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_ROUTER_NODES"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_then_closes_tunnels_after_the_grace() {
    let node = NodeProc::start("bin-node");
    let mut child = router_command()
        .env("HERALD_ROUTER_LISTEN", "127.0.0.1:0")
        .env("HERALD_ROUTER_NODES", node.addr_text())
        .env("HERALD_ROUTER_HEALTH_INTERVAL", "0.2")
        .env("HERALD_ROUTER_SHUTDOWN_GRACE", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start herald-router");
    let rx = watch_stdout(child.stdout.take().unwrap());
    let addr = listening_addr(&rx);

    // Wait until the node is in its ring (its /readyz turns 200).
    let deadline = tokio::time::Instant::now() + WAIT;
    while http(addr, "GET", "/readyz", &[], "").await.status != 200 {
        assert!(tokio::time::Instant::now() < deadline, "router never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut landing = connect(addr, None, "").await;
    assert_eq!(landing.node, "bin-node");

    signal(child.id(), "TERM");
    // The tunnel outlives the stop of accepting, then is closed when the grace ends.
    let reply = command(
        &mut landing.ws,
        2,
        r#"{"id":2,"presence_stats":{"channel":"c"}}"#,
    )
    .await;
    assert_eq!(reply["id"], 2);
    wait_closed(&mut landing.ws).await;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
