//! TLS in the `herald-router` binary: a certificate it cannot serve stops it at start
//! with exit 64 and the reason; SIGHUP reloads the certificate for new connections while
//! an open `wss://` tunnel keeps working, and a SIGHUP with a broken or mismatched
//! certificate keeps the old one and logs why.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

mod common;

use common::tls::*;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn router_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herald-router"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("HERALD_ROUTER_LISTEN", "127.0.0.1:0");
    c
}

/// Runs the router with `files` (and nodes that need not exist) and returns its exit code
/// and stderr; it must exit by itself.
fn run_to_exit(cert: &std::path::Path, key: &std::path::Path) -> (Option<i32>, String) {
    let out = router_command()
        .env("HERALD_ROUTER_NODES", "127.0.0.1:9")
        .env("HERALD_ROUTER_TLS_CERT", cert)
        .env("HERALD_ROUTER_TLS_KEY", key)
        .output()
        .expect("run herald-router");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unusable_certificate_at_start_exits_64_with_the_reason() {
    let ca = TestCa::new();
    let good = ca.issue();
    let other = ca.issue();
    let expired = ca.issue_between(Some((2001, 1, 1)), Some((2002, 1, 1)));
    let future = ca.issue_between(Some((2090, 1, 1)), Some((2091, 1, 1)));
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        (
            &expired.cert_pem,
            &expired.key_pem,
            "HERALD_ROUTER_TLS_CERT",
            "expired at 2002-01-01T00:00:00Z",
        ),
        (
            &future.cert_pem,
            &future.key_pem,
            "HERALD_ROUTER_TLS_CERT",
            "not valid before 2090-01-01T00:00:00Z",
        ),
        (
            &good.cert_pem,
            &other.key_pem,
            "HERALD_ROUTER_TLS_CERT",
            "does not match the certificate",
        ),
        (
            "garbage",
            &good.key_pem,
            "HERALD_ROUTER_TLS_CERT",
            "no PEM CERTIFICATE",
        ),
        (
            &good.cert_pem,
            &good.cert_pem,
            "HERALD_ROUTER_TLS_KEY",
            "no PEM private key",
        ),
    ];
    for (cert, key, setting, why) in cases {
        let files = TlsFiles::new(&good);
        files.replace(cert, key);
        let (code, stderr) = run_to_exit(&files.cert, &files.key);
        assert_eq!(code, Some(64), "{why}: {stderr}");
        assert!(stderr.contains(setting), "{why}: {stderr}");
        assert!(stderr.contains(why), "{why}: {stderr}");
    }
    // A file that is not there.
    let files = TlsFiles::new(&good);
    let missing = files.dir.path().join("nowhere.pem");
    let (code, stderr) = run_to_exit(&missing, &files.key);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("cannot read") && stderr.contains("nowhere.pem"),
        "{stderr}"
    );
    // One file without the other.
    let out = router_command()
        .env("HERALD_ROUTER_NODES", "127.0.0.1:9")
        .env("HERALD_ROUTER_TLS_CERT", &files.cert)
        .output()
        .expect("run herald-router");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_ROUTER_TLS_KEY"));
}

/// A running router process and the log lines it wrote.
struct RouterProc {
    child: Child,
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl RouterProc {
    fn start(node: &NodeProc, files: &TlsFiles) -> Self {
        let mut child = router_command()
            .env("HERALD_ROUTER_NODES", node.addr_text())
            .env("HERALD_ROUTER_HEALTH_INTERVAL", "0.2")
            .env("HERALD_ROUTER_SHUTDOWN_GRACE", "1")
            .env("HERALD_ROUTER_TLS_CERT", &files.cert)
            .env("HERALD_ROUTER_TLS_KEY", &files.key)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start herald-router");
        let rx = watch_stdout(child.stdout.take().expect("stdout"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let addr = listening_addr(&rx);
        RouterProc { child, addr, log }
    }

    fn sighup(&self) {
        signal(self.child.id(), "HUP");
    }

    /// Waits until a log line contains every one of `words`, and returns it.
    async fn wait_log(&self, words: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|l| words.iter().all(|w| l.contains(w)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {words:?} in {:#?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_count(&self, words: &[&str]) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .count()
    }
}

impl Drop for RouterProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_keeps_open_tunnels() {
    let ca = TestCa::new();
    let first = ca.issue();
    let files = TlsFiles::new(&first);
    let node = NodeProc::start("hup-node");
    let router = RouterProc::start(&node, &files);
    // Wait for the node to be in the ring: /readyz says ready.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !https_get(router.addr, ca.client_config(), "/readyz")
        .await
        .starts_with("HTTP/1.1 200")
    {
        assert!(tokio::time::Instant::now() < deadline, "router never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut tunnel, landed, shown) = wss_connect(router.addr, ca.client_config()).await;
    assert_eq!(landed, "hup-node");
    assert_eq!(shown, first.der);

    // A new certificate, then SIGHUP: new connections get it.
    let second = ca.issue();
    files.replace(&second.cert_pem, &second.key_pem);
    router.sighup();
    router.wait_log(&["TLS certificate reloaded"]).await;
    let (_ws, _, shown) = wss_connect(router.addr, ca.client_config()).await;
    assert_eq!(shown, second.der);
    // The tunnel from before the reload still works both ways.
    let reply = command(&mut tunnel, 2, r#"{"id":2,"subscribe":{"channel":"h"}}"#).await;
    assert!(reply.get("error").is_none(), "{reply}");

    // A broken certificate: the old one stays, the log says why.
    files.replace("-----BEGIN CERTIFICATE-----\nbroken\n", &second.key_pem);
    router.sighup();
    let line = router.wait_log(&["not reloaded"]).await;
    assert!(line.contains("CERTIFICATE"), "{line}");
    // A certificate whose key is another's: refused the same way.
    let third = ca.issue();
    files.replace(&third.cert_pem, &second.key_pem);
    router.sighup();
    let deadline = tokio::time::Instant::now() + WAIT;
    while router.log_count(&["not reloaded", "does not match"]) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mismatch not logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_ws, _, shown) = wss_connect(router.addr, ca.client_config()).await;
    assert_eq!(
        shown, second.der,
        "the last good certificate is still served"
    );
    let metrics = https_get(router.addr, ca.client_config(), "/metrics").await;
    assert!(
        metrics.contains(r#"herald_router_tls_reloads_total{result="failed"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"herald_router_tls_reloads_total{result="ok"} 1"#),
        "{metrics}"
    );
    let reply = command(&mut tunnel, 3, r#"{"id":3,"subscribe":{"channel":"h2"}}"#).await;
    assert!(reply.get("error").is_none(), "{reply}");
    // The container healthcheck speaks TLS to it.
    let status = router_command()
        .arg("healthcheck")
        .env("HERALD_ROUTER_LISTEN", router.addr.to_string())
        .env("HERALD_ROUTER_NODES", node.addr_text())
        .env("HERALD_ROUTER_TLS_CERT", &files.cert)
        .env("HERALD_ROUTER_TLS_KEY", &files.key)
        .status()
        .expect("run healthcheck");
    assert!(status.success());
}
