//! End to end: the real binary against a real local cluster (nats-server and
//! herald-node processes), checking the exit status and the JSON report. Runs are
//! small (a few seconds); nothing here asserts on timing.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// herald-node next to the binary under test, built once if missing.
fn node_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_herald-loadtest"));
        let dir = exe.parent().expect("binary directory");
        let node = dir.join("herald-node");
        if !node.is_file() {
            let target_dir = dir.parent().expect("target directory");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "-p", "herald-node", "--target-dir"])
                .arg(target_dir)
                .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("running cargo build -p herald-node");
            assert!(status.success(), "cargo build -p herald-node failed");
        }
        node
    })
}

/// Whether nats-server is installed (CI installs it; without it, single-node runs use
/// the node's embedded broker and cluster runs are skipped).
fn have_nats() -> bool {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .iter()
        .any(|p| Path::new(p).is_file())
        || std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nats-server").is_file()))
}

/// Runs the load test with `args` plus a JSON report; returns (exit code, report).
fn run(args: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald-loadtest"));
    cmd.args(args)
        .arg("--json")
        .arg(&json)
        .arg("--node-bin")
        .arg(node_bin())
        .arg("--quiet");
    if !have_nats() && args.contains(&"--local") {
        cmd.arg("--no-nats");
    }
    let out = cmd.output().expect("running herald-loadtest");
    let code = out.status.code().unwrap_or(-1);
    let report = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    if report.is_null() {
        eprintln!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (code, report)
}

fn metric(report: &Value, name: &str) -> f64 {
    report["metrics"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no metric {name} in {report}"))
}

#[test]
fn fanout_on_one_local_node_delivers_everything() {
    let (code, r) = run(&[
        "fanout",
        "--local",
        "1",
        "--duration",
        "2s",
        "--subscribers",
        "50",
        "--rate",
        "50",
        "--expect",
        "lost==0",
        "--expect",
        "duplicates==0",
    ]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["scenario"], "fanout");
    assert_eq!(r["passed"], true);
    assert_eq!(r["tail_checked"], true);
    assert_eq!(metric(&r, "connections_opened"), 50.0);
    let published = r["api_publications"].as_u64().unwrap();
    assert!(published > 0);
    // Every subscriber got every publication, exactly once.
    assert_eq!(r["totals"]["deliveries"].as_u64().unwrap(), published * 50);
    assert_eq!(r["latency"]["count"].as_u64().unwrap(), published * 50);
    assert!(metric(&r, "p99_ms") > 0.0);
    assert!(r["server"].as_array().is_some_and(|s| !s.is_empty()));
    assert_eq!(r["expectations"].as_array().map(Vec::len), Some(2));
}

#[test]
fn worker_processes_and_client_publishers_account_for_everything() {
    // Two worker processes re-executed from the binary, reporting JSON lines.
    let (code, r) = run(&[
        "fanout",
        "--local",
        "1",
        "--workers",
        "2",
        "--subscribers",
        "20",
        "--rate",
        "20",
        "--duration",
        "1s",
        "--expect",
        "lost==0",
    ]);
    assert_eq!(code, 0, "{r:#}");
    let published = r["api_publications"].as_u64().unwrap();
    assert_eq!(r["totals"]["deliveries"].as_u64().unwrap(), published * 20);
    assert_eq!(r["totals"]["conn_ok"], 20);
    // Rooms: members publish through the client protocol; each room has 3 members.
    let (code, r) = run(&[
        "rooms",
        "--local",
        "1",
        "--rooms",
        "4",
        "--members",
        "3",
        "--rate",
        "24",
        "--duration",
        "1s",
        "--expect",
        "lost==0",
        "--expect",
        "duplicates==0",
    ]);
    assert_eq!(code, 0, "{r:#}");
    let sent = r["totals"]["client_publishes"].as_u64().unwrap();
    assert!(sent > 0);
    assert_eq!(r["totals"]["deliveries"].as_u64().unwrap(), sent * 3);
    assert_eq!(r["tail_checked"], true);
}

#[test]
fn a_missed_target_fails_the_run() {
    let (code, r) = run(&[
        "connect-storm",
        "--local",
        "1",
        "--connections",
        "20",
        "--duration",
        "200ms",
        "--expect",
        "connections_opened>=1000",
        "--expect",
        "connections_failed==0",
    ]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["passed"], false);
    assert_eq!(metric(&r, "connections_opened"), 20.0);
    let verdicts: Vec<bool> = r["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["passed"].as_bool().unwrap())
        .collect();
    assert_eq!(verdicts, [false, true]);
}

#[test]
fn failover_recovers_without_loss() {
    if !have_nats() {
        eprintln!("nats-server not installed: skipping the two-node failover run");
        return;
    }
    let (code, r) = run(&[
        "failover",
        "--local",
        "2",
        "--router",
        "off",
        "--subscribers",
        "40",
        "--rate",
        "40",
        "--duration",
        "3s",
        "--kill-at",
        "1s",
        "--expect",
        "lost==0",
        "--expect",
        "duplicates==0",
    ]);
    assert_eq!(code, 0, "{r:#}");
    // Half the clients were on the killed node: they came back and recovered.
    assert!(metric(&r, "reconnects") >= 1.0, "{r:#}");
    assert!(metric(&r, "recovered") >= 1.0, "{r:#}");
    assert_eq!(metric(&r, "unrecovered"), 0.0);
    assert!(r["events"][0]["what"].as_str().unwrap().contains("killed"));
}

#[test]
fn failover_through_two_routers_recovers_without_loss() {
    let router = Path::new(env!("CARGO_BIN_EXE_herald-loadtest")).with_file_name("herald-router");
    if !have_nats() || !router.is_file() {
        eprintln!("nats-server or herald-router missing: skipping the two-router failover run");
        return;
    }
    let (code, r) = run(&[
        "failover",
        "--local",
        "3",
        "--routers",
        "2",
        "--router-env",
        "HERALD_ROUTER_HEALTH_INTERVAL=0.5",
        "--subscribers",
        "60",
        "--rate",
        "40",
        "--duration",
        "4s",
        "--kill-at",
        "1s",
        "--expect",
        "lost==0",
        "--expect",
        "duplicates==0",
    ]);
    assert_eq!(code, 0, "{r:#}");
    let target = r["target"].as_str().unwrap_or_default();
    assert!(target.contains("spread over 2 herald-routers"), "{target}");
    let names: Vec<&str> = r["server"]
        .as_array()
        .expect("server processes")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"herald-router") && names.contains(&"herald-router-1"),
        "{names:?}"
    );
    // A third of the clients were on the killed node: they came back through a router.
    assert!(metric(&r, "reconnects") >= 1.0, "{r:#}");
    assert!(metric(&r, "recovered") >= 1.0, "{r:#}");
    assert_eq!(metric(&r, "unrecovered"), 0.0);
}

#[test]
fn bad_router_flags_are_refused_before_a_run() {
    for args in [
        &[
            "fanout",
            "--local",
            "2",
            "--routers",
            "2",
            "--router",
            "off",
        ][..],
        &["fanout", "--local", "2", "--routers", "0", "--router", "on"][..],
        &["fanout", "--local", "2", "--router-env", "NO_EQUALS_SIGN"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_herald-loadtest"))
            .args(args)
            .arg("--node-bin")
            .arg(node_bin())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--routers") || stderr.contains("--router-env"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn unknown_metrics_are_refused_before_starting() {
    let out = Command::new(env!("CARGO_BIN_EXE_herald-loadtest"))
        .args(["fanout", "--local", "1", "--expect", "nosuch==0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
}
