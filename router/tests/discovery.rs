//! Each discovery mode with real nodes: DNS names resolved to `ip:port`, and nodes
//! announced over a real `nats-server`. (The static list is what every other test uses.)

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

mod common;

use common::*;
use herald_router::config::{NatsDiscovery, RouterConfig};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_names_resolve_to_nodes() {
    let node = NodeProc::start("dns-node");
    let mut config = router_config(&[]);
    config.discovery.dns = vec![format!("localhost:{}", node.addr.port())];
    config.discovery.dns_interval = Duration::from_millis(200);
    let r = TestRouter::start(config).await;
    // localhost may also resolve to ::1, where the node does not listen: only the IPv4
    // address passes its probes.
    let id = format!("127.0.0.1:{}", node.addr.port());
    r.wait_for("the resolved node in the ring", |r| {
        r.ring() == [id.clone()]
    })
    .await;
    assert_eq!(connect(r.addr, None, "").await.node, "dns-node");
}

/// A `nats-server` on a free port; killed when dropped.
struct NatsServer {
    url: String,
    child: Child,
}

impl NatsServer {
    fn start() -> Self {
        // A port picked by binding port 0 can be taken by another test's process before
        // nats-server binds it: then nats-server exits, or something else answers. Check
        // that our nats-server is the one answering, else try another port.
        for _ in 0..10 {
            if let Some(server) = Self::try_start() {
                return server;
            }
        }
        panic!("nats-server did not start on any of 10 free ports");
    }

    fn try_start() -> Option<Self> {
        use std::io::Read;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let mut child = Command::new(binary)
            .args(["-p", &port.to_string(), "-a", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if child.try_wait().ok().flatten().is_some() {
                return None; // exited: the port was taken
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = [0u8; 5];
                if s.read_exact(&mut head).is_ok() && &head == b"INFO " {
                    break;
                }
                let _ = child.kill();
                let _ = child.wait();
                return None; // someone else answers on that port
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            child,
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes `payload` every 100 ms until `done` holds (the router may not have
/// subscribed yet when the first one goes out).
async fn announce_until(
    client: &async_nats::Client,
    payload: String,
    r: &TestRouter,
    what: &str,
    done: impl Fn(&TestRouter) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(r) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        client
            .publish("herald.node.announce", payload.clone().into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_announcements_add_drain_and_remove_nodes() {
    let nats = NatsServer::start();
    let n1 = NodeProc::start("nats-n1");
    let n2 = NodeProc::start("nats-n2");
    let mut config: RouterConfig = router_config(&[]);
    config.discovery.nats = Some(NatsDiscovery {
        url: nats.url.clone(),
        subject: "herald.node.announce".into(),
        ttl: Duration::from_secs(30),
    });
    // One probe per node, when it is discovered, and no more: the nodes here never
    // really drain, so a later probe of n1 would find it ready and put it back in the
    // ring right after its "draining" announcement took it out (CI once saw 101 where
    // 503 was due). What this test checks is what announcements do.
    config.health.interval = Duration::from_secs(3600);
    let r = TestRouter::start(config).await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let (a1, a2) = (n1.addr_text(), n2.addr_text());

    let hello = format!(r#"{{"id":"nats-n1","addr":"{a1}","state":"ready"}}"#);
    announce_until(&client, hello, &r, "n1 in the ring", |r| {
        r.ring() == [a1.clone()]
    })
    .await;
    assert_eq!(connect(r.addr, None, "").await.node, "nats-n1");
    let view = r.router.backends.view();
    assert_eq!(view[0].name.as_deref(), Some("nats-n1"));

    // A short TTL that is not renewed: the node is forgotten when it runs out.
    let brief = format!(r#"{{"id":"nats-n2","addr":"{a2}","ttl":1}}"#);
    announce_until(&client, brief, &r, "n2 known", |r| {
        r.state_of(&a2).is_some()
    })
    .await;
    r.wait_for("n2 expired", |r| r.state_of(&a2).is_none())
        .await;

    // Draining: out of the ring at once, still known.
    let drain = format!(r#"{{"id":"nats-n1","addr":"{a1}","state":"draining"}}"#);
    announce_until(&client, drain, &r, "n1 draining", |r| {
        r.state_of(&a1) == Some("draining")
    })
    .await;
    r.wait_for("an empty ring", |r| r.ring().is_empty()).await;
    assert_eq!(raw_upgrade(r.addr).await.status, 503);

    // Leaving: forgotten.
    let bye = format!(r#"{{"id":"nats-n1","addr":"{a1}","state":"leaving"}}"#);
    announce_until(&client, bye, &r, "n1 forgotten", |r| {
        r.state_of(&a1).is_none()
    })
    .await;
}
