//! The command line: one subcommand per scenario, shared flags for the target and the
//! run, and each scenario's own flags.

use crate::expect::Expect;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Load and failure scenarios for Herald, with live progress, a report and targets.
///
/// Target either running servers (`--url ws://host:port`, with `--secret` and
/// `--api-key`) or a local cluster started for the run (`--local N`). Parameters come
/// from flags and from a TOML scenario file (`--scenario-file`, keys named like the
/// long flags; flags on the command line win).
#[derive(Debug, Parser)]
#[command(name = "herald-loadtest", version, args_override_self = true)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Every scenario.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Open many connections as fast as allowed; measures the connect rate, connect
    /// times and failures, then holds them for --duration.
    ConnectStorm(ConnectStormArgs),
    /// One big channel: many subscribers, publications through the server API.
    Fanout(FanoutArgs),
    /// Many small chat-like rooms whose members publish to each other.
    Rooms(RoomsArgs),
    /// Publish on the first node, receive on the others (needs two nodes or more).
    Cluster(FanoutArgs),
    /// A fan-out run during which a node is killed (SIGKILL); its clients reconnect
    /// elsewhere and recover what they missed (needs --local 2 or more).
    Failover(FailoverArgs),
    /// A fan-out run during which every node in turn is drained (SIGTERM) and started
    /// again with the same settings (needs --local).
    Rolling(RollingArgs),
    /// Idle subscribed connections over a soak: server memory per connection.
    Idle(IdleArgs),
    /// Internal: runs one shard of clients for a parent process.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

impl Scenario {
    /// The scenario's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::ConnectStorm(_) => "connect-storm",
            Scenario::Fanout(_) => "fanout",
            Scenario::Rooms(_) => "rooms",
            Scenario::Cluster(_) => "cluster",
            Scenario::Failover(_) => "failover",
            Scenario::Rolling(_) => "rolling",
            Scenario::Idle(_) => "idle",
            Scenario::Worker(_) => "worker",
        }
    }
}

/// Flags of every scenario: the target and the run.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// WebSocket URL of a router or node (repeat for several nodes; clients are spread
    /// over them round-robin). Conflicts with --local.
    #[arg(long, conflicts_with = "local")]
    pub url: Vec<String>,
    /// Start a local cluster of N nodes (with nats-server, and a router when
    /// herald-router is found and N >= 2), run, and tear it down.
    #[arg(long, value_name = "N")]
    pub local: Option<usize>,
    /// Server API base URL(s) for publishing and final offsets. Default: http:// on the
    /// host:port of each --url.
    #[arg(long)]
    pub api_url: Vec<String>,
    /// Server API key (X-API-Key). Generated for --local.
    #[arg(long)]
    pub api_key: Option<String>,
    /// HMAC secret the servers verify connection tokens with. Generated for --local.
    #[arg(long)]
    pub secret: Option<String>,
    /// Connect without a token (--url only): for servers that authenticate through a
    /// backend connect proxy (HERALD_PROXY_CONNECT_ENDPOINT) or allow anonymous users.
    #[arg(long, conflicts_with_all = ["secret", "local"])]
    pub no_token: bool,
    /// How long the measured phase lasts (publishing, holding, soaking): 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Write the JSON report to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// A target, METRIC<op>VALUE with op one of >= <= == != > < (repeatable); the exit
    /// status is 1 when one is missed. Metrics: see the report's "metrics".
    #[arg(long, value_name = "EXPR")]
    pub expect: Vec<Expect>,
    /// TOML file of parameters (keys like the long flags, optional `scenario`).
    #[arg(long, value_name = "PATH")]
    pub scenario_file: Option<PathBuf>,
    /// New connections per second while ramping up (0: as fast as possible).
    #[arg(long, default_value_t = 5000.0)]
    pub connect_rate: f64,
    /// Time allowed for one connection to be open, connected and subscribed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Spread connections over this many loopback source addresses (127.0.0.2 …) so
    /// the ephemeral ports of one address do not run out; 0 disables.
    #[arg(long, default_value_t = 16)]
    pub source_ips: u32,
    /// Most connections per process (each needs a file; the limit is about 20,000);
    /// above it clients run in worker processes.
    #[arg(long, default_value_t = 15_000)]
    pub conns_per_worker: usize,
    /// Number of worker processes (0: only as many as --conns-per-worker requires, and
    /// none when the clients fit in this process).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// After publishing stops, wait at most this long for deliveries in flight.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Longest wait for all clients to be connected before the measured phase.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub ramp_timeout: Duration,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Give each client a stickiness key in this query parameter (a router's
    /// HERALD_ROUTER_STICKY_QUERY), so clients spread over the nodes rather than by
    /// source address. Set automatically for a --local router.
    #[arg(long, value_name = "NAME")]
    pub sticky_query: Option<String>,
    /// Pid of a server process behind --url (repeatable): its CPU seconds and resident
    /// memory over the run are read from /proc and reported, with deliveries per
    /// server CPU-second. Needs the server on this machine.
    #[arg(long, value_name = "PID", conflicts_with = "local")]
    pub server_pid: Vec<u32>,
    /// Client protocol of the --url servers. `pusher` (fanout only) drives a
    /// Pusher-compatible server: clients connect to `/app/{--api-key}`, publications go
    /// through `POST /apps/{--app-id}/events` signed with --secret.
    #[arg(long, value_enum, default_value_t = Protocol::Centrifugo)]
    pub protocol: Protocol,
    /// The Pusher app id (with --protocol pusher).
    #[arg(long)]
    pub app_id: Option<String>,
    /// Settings of a local cluster.
    #[command(flatten)]
    pub local_opts: LocalOpts,
}

/// Settings of a `--local` cluster.
#[derive(Debug, Clone, Args)]
pub struct LocalOpts {
    /// herald-node binary. Default: next to this binary.
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// herald-router binary. Default: next to this binary, when it exists.
    #[arg(long)]
    pub router_bin: Option<PathBuf>,
    /// Start a router: auto (when found and N >= 2), on, off.
    #[arg(long, value_enum, default_value_t = RouterMode::Auto)]
    pub router: RouterMode,
    /// Routers to start, each in front of every node; clients are spread over them
    /// round-robin (and move to the next one on a failed connect). Each router holds two
    /// files per tunnel, so past ~9,000 clients one router would pass the 20,000 open
    /// files a process may hold: use 2 or more. More than 1 implies a router.
    #[arg(long, default_value_t = 1)]
    pub routers: usize,
    /// Extra environment for local routers, KEY=VALUE (repeatable), such as
    /// HERALD_ROUTER_NODE_CONNECT_RATE=0 to turn admission control off.
    #[arg(long, value_name = "KEY=VALUE")]
    pub router_env: Vec<String>,
    /// nats-server binary. Default: from PATH, /usr/sbin or /usr/bin.
    #[arg(long)]
    pub nats_bin: Option<PathBuf>,
    /// With --local 1, use the node's embedded broker instead of nats-server.
    #[arg(long)]
    pub no_nats: bool,
    /// HERALD_HISTORY_SIZE of local nodes (publications kept per channel).
    #[arg(long, default_value_t = 1000)]
    pub history_size: u64,
    /// HERALD_MAX_CONNECTIONS of local nodes.
    #[arg(long, default_value_t = 19_500)]
    pub max_connections: u64,
    /// Extra environment for local nodes, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub node_env: Vec<String>,
    /// RUST_LOG of local nodes and router (their logs go to files in a temp dir).
    #[arg(long, default_value = "warn")]
    pub node_log: String,
}

/// The client protocol a server speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Centrifugo's JSON protocol (Herald, Centrifugo), server API `POST /api/publish`.
    #[default]
    Centrifugo,
    /// Pusher Channels protocol 7 (Sockudo), HTTP API `POST /apps/{id}/events`.
    Pusher,
}

/// Whether a local cluster gets a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RouterMode {
    /// When herald-router exists and there are two nodes or more.
    Auto,
    /// Always (fails when herald-router is missing).
    On,
    /// Never: clients connect to the nodes round-robin.
    Off,
}

/// `connect-storm`.
#[derive(Debug, Clone, Args)]
pub struct ConnectStormArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Connections per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Also subscribe each connection to one channel.
    #[arg(long)]
    pub subscribe: bool,
}

/// `fanout` and `cluster`.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Subscribed connections.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Publications per second through the server API (0: as fast as the publishers go).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Payload size in bytes (at least the ~30 bytes of the timestamp).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Concurrent server API connections publishing.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Channel name (a run id is appended).
    #[arg(long, default_value = "fanout")]
    pub channel: String,
    /// Delta compression: subscribers ask for fossil deltas (`delta: "fossil"`) and
    /// decode them, the server API publishes with `delta: true`. The nodes' namespace
    /// must allow it (`--node-env HERALD_ALLOWED_DELTA_TYPES=fossil` with --local).
    /// The report's `wire_bytes_per_delivery` shows what it saves.
    #[arg(long)]
    pub delta: bool,
}

/// `rooms`.
#[derive(Debug, Clone, Args)]
pub struct RoomsArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Number of rooms (channels).
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Members per room; every member subscribes and publishes.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Publications per second over all rooms, sent by members.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
}

/// `failover`.
#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    /// The fan-out load.
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// When to kill the node, from the start of the measured phase (default: a third
    /// of --duration).
    #[arg(long, value_parser = parse_duration)]
    pub kill_at: Option<Duration>,
    /// Index of the node to kill (default: the last one; the API publishes to node 0).
    #[arg(long)]
    pub kill_node: Option<usize>,
}

/// `rolling`.
#[derive(Debug, Clone, Args)]
pub struct RollingArgs {
    /// The fan-out load.
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// When to drain the first node, from the start of the measured phase.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub start_at: Duration,
    /// Pause after a node is back before draining the next.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub pause: Duration,
}

/// `idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Idle connections.
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
    /// Distinct channels the connections subscribe to (one each); 0: no subscription.
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
}

/// `worker` (hidden).
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The shard spec, JSON.
    #[arg(long)]
    pub spec: String,
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a plain number of seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration like 10s, 500ms, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || !(0.0..=30.0 * 86_400.0).contains(&secs) {
        return Err(format!("{text:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}
