//! A local cluster for one-command runs: nats-server with JetStream, N herald-node
//! processes and, when herald-router is available, one router or several (`--routers`)
//! in front of them, each routing to every node.
//!
//! # Layout
//! - this file: [`LocalCluster`]: start, kill, drain-and-restart, tear down.
//! - [`process`]: child processes, their "listening" lines and logs.
//! - [`procstat`]: CPU and memory of the server processes from `/proc`.

pub mod process;
pub mod procstat;

use crate::cli::{LocalOpts, RouterMode};
use crate::ws::{Target, WsConn};
use anyhow::{bail, Context};
use process::{free_port, locate, spawn_announced, Announce, Proc};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// Query parameter a local router reads clients' stickiness keys from.
pub const STICKY_QUERY: &str = "lt_key";

/// A node of the local cluster.
pub struct LocalNode {
    /// `HERALD_NODE_ID`.
    pub id: String,
    /// Where it listens (kept across restarts).
    pub addr: SocketAddr,
    /// The process; `None` after a kill.
    pub proc: Option<Proc>,
}

/// Processes started for a run; torn down by [`LocalCluster::shutdown`] (and killed on
/// drop should the run fail half-way).
pub struct LocalCluster {
    /// Logs and JetStream storage.
    pub dir: tempfile::TempDir,
    /// nats-server, unless the single node uses its embedded broker.
    nats: Option<Proc>,
    /// The nodes, in start order.
    pub nodes: Vec<LocalNode>,
    /// The routers, in start order; empty when none was started.
    routers: Vec<Proc>,
    /// Where each router listens, in the same order.
    pub router_addrs: Vec<SocketAddr>,
    /// herald-node binary.
    node_bin: PathBuf,
    /// Environment every node gets (besides listen address and id).
    node_env: Vec<(String, String)>,
}

impl LocalCluster {
    /// Starts everything; `secret` and `api_key` configure the nodes.
    pub async fn start(
        n: usize,
        opts: &LocalOpts,
        secret: &str,
        api_key: &str,
    ) -> anyhow::Result<Self> {
        if n == 0 {
            bail!("--local needs at least one node");
        }
        // Bad router flags are reported before anything starts.
        let router_env = parse_env(&opts.router_env, "--router-env")?;
        if opts.routers == 0 {
            bail!("--routers must be 1 or more (use --router off for none)");
        }
        if opts.routers > 1 && opts.router == RouterMode::Off {
            bail!("--routers {} with --router off", opts.routers);
        }
        let node_bin = locate(opts.node_bin.as_deref(), "herald-node", &[]).context(
            "herald-node not found next to herald-loadtest (build it, or pass --node-bin)",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("herald-loadtest-")
            .tempdir()?;
        let mut cluster = LocalCluster {
            dir,
            nats: None,
            nodes: Vec::new(),
            routers: Vec::new(),
            router_addrs: Vec::new(),
            node_bin,
            node_env: Vec::new(),
        };
        let nats_url = if n == 1 && opts.no_nats {
            None
        } else {
            Some(cluster.start_nats(opts).await?)
        };
        let mut env = vec![
            ("HERALD_TOKEN_HMAC_SECRET".to_owned(), secret.to_owned()),
            ("HERALD_API_KEY".to_owned(), api_key.to_owned()),
            (
                "HERALD_HISTORY_SIZE".to_owned(),
                opts.history_size.to_string(),
            ),
            ("HERALD_ALLOW_PUBLISH".to_owned(), "true".to_owned()),
            (
                "HERALD_MAX_CONNECTIONS".to_owned(),
                opts.max_connections.to_string(),
            ),
            ("RUST_LOG".to_owned(), opts.node_log.clone()),
        ];
        if let Some(url) = nats_url {
            env.push(("HERALD_NATS_URL".to_owned(), url));
        }
        env.extend(parse_env(&opts.node_env, "--node-env")?);
        cluster.node_env = env;
        for i in 0..n {
            let id = format!("lt-node-{i}");
            // Not port 0: the port must still be free when the node restarts on it.
            let listen = format!("127.0.0.1:{}", free_port()?).parse()?;
            let (proc, addr) = cluster.spawn_node(&id, listen).await?;
            cluster.nodes.push(LocalNode {
                id,
                addr,
                proc: Some(proc),
            });
        }
        let router_bin = locate(opts.router_bin.as_deref(), "herald-router", &[]);
        let want_router = match opts.router {
            RouterMode::Off => false,
            RouterMode::On => true,
            // Asking for several routers is asking for routers.
            RouterMode::Auto => opts.routers > 1 || (router_bin.is_some() && n >= 2),
        };
        if want_router {
            let bin = router_bin
                .context("a router is wanted, but herald-router was not found (--router-bin)")?;
            for i in 0..opts.routers {
                cluster
                    .start_router(i, &bin, &opts.node_log, STICKY_QUERY, &router_env)
                    .await?;
            }
        }
        Ok(cluster)
    }

    async fn start_nats(&mut self, opts: &LocalOpts) -> anyhow::Result<String> {
        let bin = locate(
            opts.nats_bin.as_deref(),
            "nats-server",
            &["/usr/sbin", "/usr/bin"],
        )
        .context("nats-server not found (apt-get install nats-server, or --nats-bin)")?;
        let store = self.dir.path().join("jetstream");
        let mut cmd = Command::new(bin);
        cmd.args(["-js", "-p", "-1", "-a", "127.0.0.1", "-sd"])
            .arg(&store);
        let log = self.dir.path().join("nats.log");
        let (proc, addr) = spawn_announced(
            cmd,
            &log,
            Announce::Stderr,
            "Listening for client connections on ",
        )
        .await
        .context("nats-server")?;
        self.nats = Some(proc);
        Ok(format!("nats://{addr}"))
    }

    /// Starts one node process listening on `listen`.
    async fn spawn_node(&self, id: &str, listen: SocketAddr) -> anyhow::Result<(Proc, SocketAddr)> {
        let mut cmd = Command::new(&self.node_bin);
        // Settings from the caller's environment must not leak into the cluster.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HERALD_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.node_env.iter().map(|(k, v)| (k, v)))
            .env("HERALD_LISTEN", listen.to_string())
            .env("HERALD_NODE_ID", id);
        let log = self.dir.path().join(format!("{id}.log"));
        let (proc, word) = spawn_announced(cmd, &log, Announce::Stdout, "listening on ")
            .await
            .with_context(|| format!("node {id}"))?;
        let addr: SocketAddr = word
            .parse()
            .with_context(|| format!("node {id} announced {word:?}"))?;
        // "listening" comes before the broker is connected; clients that arrive in
        // between wait for it, which would count as connect or subscribe time.
        wait_ready(addr)
            .await
            .with_context(|| format!("node {id} (log: {})", proc.log.display()))?;
        Ok((proc, addr))
    }

    /// Starts router number `i` in front of every node, with `env` (`--router-env`)
    /// on top of the settings a local run needs.
    async fn start_router(
        &mut self,
        i: usize,
        bin: &PathBuf,
        log_filter: &str,
        sticky_query: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<()> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.addr.to_string()).collect();
        let mut cmd = Command::new(bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HERALD_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        // Where it listens and what it routes to are the cluster's, whatever env says.
        cmd.env("HERALD_ROUTER_LISTEN", addr.to_string())
            .env("HERALD_ROUTER_NODES", nodes.join(","))
            .env("RUST_LOG", log_filter)
            // Clients carry their own key: spread by client, not by (shared) source address.
            .env("HERALD_ROUTER_STICKY_QUERY", sticky_query)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let log = self.dir.path().join(router_log_name(i));
        let file = std::fs::File::create(&log)?;
        cmd.stdout(file.try_clone()?).stderr(file);
        let child = cmd.spawn().context("starting herald-router")?;
        self.routers.push(Proc { child, log });
        // Ready when an upgrade through it succeeds (it has found a healthy node).
        let target = Target {
            addr,
            host: addr.to_string(),
            path: "/connection/websocket".into(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Ok(_)) = tokio::time::timeout(
                Duration::from_secs(2),
                WsConn::connect(&target, None, 1, None),
            )
            .await
            {
                self.router_addrs.push(addr);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "herald-router did not accept a WebSocket within 20 s (log: {})",
            self.dir.path().join(router_log_name(i)).display()
        )
    }

    /// WebSocket URLs of the nodes.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("ws://{}/connection/websocket", n.addr))
            .collect()
    }

    /// The routers' WebSocket URLs; empty when there is no router.
    pub fn router_urls(&self) -> Vec<String> {
        self.router_addrs
            .iter()
            .map(|a| format!("ws://{a}/connection/websocket"))
            .collect()
    }

    /// `(label, pid)` of every server process, for CPU and memory sampling.
    pub fn pids(&self) -> Vec<(String, Option<u32>)> {
        let mut out: Vec<(String, Option<u32>)> = self
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.proc.as_ref().and_then(Proc::pid)))
            .collect();
        if let Some(p) = &self.nats {
            out.push(("nats-server".into(), p.pid()));
        }
        for (i, p) in self.routers.iter().enumerate() {
            let label = match i {
                0 => "herald-router".to_owned(),
                _ => format!("herald-router-{i}"),
            };
            out.push((label, p.pid()));
        }
        out
    }

    /// SIGKILL node `i` (failover).
    pub async fn kill_node(&mut self, i: usize) {
        if let Some(mut p) = self.nodes.get_mut(i).and_then(|n| n.proc.take()) {
            p.kill().await;
        }
    }

    /// SIGTERM node `i`, wait for it to exit, start it again on the same address.
    pub async fn drain_and_restart(&mut self, i: usize) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(i).context("no such node")?;
        if let Some(mut p) = node.proc.take() {
            p.terminate()
                .await
                .with_context(|| format!("draining {}", node.id))?;
        }
        let (id, addr) = (node.id.clone(), node.addr);
        let (proc, _) = self.spawn_node(&id, addr).await?;
        self.nodes[i].proc = Some(proc);
        Ok(())
    }

    /// Stops the router, the nodes (SIGTERM, so they exit cleanly) and NATS.
    pub async fn shutdown(mut self) {
        for mut r in std::mem::take(&mut self.routers) {
            let _ = r.terminate().await;
        }
        let mut stops = Vec::new();
        for node in &mut self.nodes {
            if let Some(mut p) = node.proc.take() {
                stops.push(async move {
                    let _ = p.terminate().await;
                });
            }
        }
        futures_join_all(stops).await;
        if let Some(mut n) = self.nats.take() {
            let _ = n.terminate().await;
        }
    }
}

/// `KEY=VALUE` items of `flag` as pairs.
fn parse_env(items: &[String], flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("{flag} {kv:?}: expected KEY=VALUE"))
        })
        .collect()
}

/// Log file of router `i`: `router.log`, then `router-1.log`, ….
fn router_log_name(i: usize) -> String {
    match i {
        0 => "router.log".to_owned(),
        _ => format!("router-{i}.log"),
    }
}

/// Runs futures concurrently and waits for all (a tiny `join_all`).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(futs: Vec<F>) {
    let mut set = tokio::task::JoinSet::new();
    for f in futs {
        set.spawn(f);
    }
    while set.join_next().await.is_some() {}
}

/// Polls `GET /readyz` until it answers 200 (at most 20 s).
async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Ok(200)) = tokio::time::timeout(
            Duration::from_secs(2),
            process::http_status(addr, "/readyz"),
        )
        .await
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("/readyz did not answer 200 within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
