//! Scenarios: what each one asks of the clients, the publishers and the cluster.
//!
//! # Layout
//! - this file: [`Plan`], built from the command line by [`plan`].
//! - [`run`]: the orchestration shared by every scenario (targets, shards, phases,
//!   report).
//! - [`live`]: merging what shards report, and the progress line.
//! - [`target`]: a local cluster or remote servers; [`summary`]: the report.
//! - [`chaos`]: killing and draining local nodes mid-run.

pub mod chaos;
pub mod live;
pub mod run;
pub mod summary;
pub mod target;

use crate::cli::{Common, FanoutArgs, Scenario};
use crate::shard::{ClientPublish, Layout};
use serde_json::json;
use std::time::Duration;

/// Publications through the server API.
#[derive(Clone, Debug)]
pub struct ApiPublish {
    /// Channel to publish to.
    pub channel: String,
    /// Publications per second (0: as fast as possible).
    pub rate: f64,
    /// Payload size, bytes.
    pub payload: usize,
    /// Concurrent API connections.
    pub publishers: usize,
    /// Publish in delta mode, and subscribe in it.
    pub delta: bool,
}

/// A failure injected during the measured phase (local clusters only).
#[derive(Clone, Debug, PartialEq)]
pub enum Chaos {
    /// Nothing.
    None,
    /// SIGKILL one node.
    Kill {
        /// Node index; `None` for the last one.
        node: Option<usize>,
        /// When, from the start of the measured phase.
        at: Duration,
    },
    /// Drain (SIGTERM) and restart each node in turn.
    Rolling {
        /// When the first node is drained.
        start_at: Duration,
        /// Pause between a node being back and draining the next.
        pause: Duration,
    },
}

/// What a scenario does, independent of where it runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Scenario name.
    pub name: &'static str,
    /// Parameters, for the report.
    pub params: serde_json::Value,
    /// Simulated clients.
    pub clients: usize,
    /// Their channels.
    pub layout: Layout,
    /// Clients publish (rooms).
    pub client_publish: Option<ClientPublish>,
    /// The server API publishes (fan-out family).
    pub api_publish: Option<ApiPublish>,
    /// Clients reconnect with recovery when disconnected.
    pub reconnect: bool,
    /// Connections per second while ramping up (0: unlimited).
    pub connect_rate: f64,
    /// Failure injection.
    pub chaos: Chaos,
    /// Subscribers avoid the first node, which receives the publishes (cluster).
    pub cross_node: bool,
    /// Needs a local cluster (failure injection).
    pub needs_local: bool,
    /// Least number of nodes.
    pub min_nodes: usize,
    /// Every client must have confirmed its subscription before publishing starts.
    pub require_subscribed: bool,
}

/// A short run id appended to channel names, so concurrent or repeated runs against
/// the same servers never share a stream.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{:06x}",
        (nanos ^ std::process::id().rotate_left(16)) & 0xFF_FFFF
    )
}

fn fanout_plan(name: &'static str, a: &FanoutArgs) -> Plan {
    let channel = format!("{}-{}", a.channel, run_id());
    Plan {
        name,
        params: json!({
            "subscribers": a.subscribers, "rate": a.rate, "payload": a.payload,
            "publishers": a.publishers, "channel": channel, "delta": a.delta,
        }),
        clients: a.subscribers,
        layout: Layout {
            prefix: channel.clone(),
            count: 1,
            group: 1,
        },
        client_publish: None,
        api_publish: Some(ApiPublish {
            channel,
            rate: a.rate,
            payload: a.payload,
            publishers: a.publishers,
            delta: a.delta,
        }),
        reconnect: false,
        connect_rate: a.common.connect_rate,
        chaos: Chaos::None,
        cross_node: false,
        needs_local: false,
        min_nodes: 1,
        require_subscribed: true,
    }
}

/// The plan and the shared flags of a scenario (`None` for the hidden worker).
pub fn plan(scenario: &Scenario) -> Option<(Common, Plan)> {
    Some(match scenario {
        Scenario::ConnectStorm(a) => {
            let plan = Plan {
                name: "connect-storm",
                params: json!({"connections": a.connections, "rate": a.rate, "subscribe": a.subscribe}),
                clients: a.connections,
                layout: Layout {
                    prefix: format!("storm-{}", run_id()),
                    count: usize::from(a.subscribe),
                    group: 1,
                },
                client_publish: None,
                api_publish: None,
                reconnect: false,
                connect_rate: a.rate,
                chaos: Chaos::None,
                cross_node: false,
                needs_local: false,
                min_nodes: 1,
                require_subscribed: false,
            };
            (a.common.clone(), plan)
        }
        Scenario::Fanout(a) => (a.common.clone(), fanout_plan("fanout", a)),
        Scenario::Cluster(a) => {
            let mut plan = fanout_plan("cluster", a);
            plan.cross_node = true;
            plan.min_nodes = 2;
            (a.common.clone(), plan)
        }
        Scenario::Failover(a) => {
            let mut plan = fanout_plan("failover", &a.fanout);
            let at = a.kill_at.unwrap_or(a.fanout.common.duration / 3);
            plan.chaos = Chaos::Kill {
                node: a.kill_node,
                at,
            };
            plan.params["kill_at_s"] = json!(at.as_secs_f64());
            plan.reconnect = true;
            plan.needs_local = true;
            plan.min_nodes = 2;
            (a.fanout.common.clone(), plan)
        }
        Scenario::Rolling(a) => {
            let mut plan = fanout_plan("rolling", &a.fanout);
            plan.chaos = Chaos::Rolling {
                start_at: a.start_at,
                pause: a.pause,
            };
            plan.params["start_at_s"] = json!(a.start_at.as_secs_f64());
            plan.params["pause_s"] = json!(a.pause.as_secs_f64());
            plan.reconnect = true;
            plan.needs_local = true;
            (a.fanout.common.clone(), plan)
        }
        Scenario::Rooms(a) => {
            let clients = a.rooms * a.members;
            // Each member publishes every `clients / rate` seconds, so all together
            // they publish `rate` times a second.
            let period_ms = if a.rate > 0.0 {
                clients as f64 * 1000.0 / a.rate
            } else {
                0.0
            };
            let plan = Plan {
                name: "rooms",
                params: json!({"rooms": a.rooms, "members": a.members, "rate": a.rate, "payload": a.payload}),
                clients,
                layout: Layout {
                    prefix: format!("room-{}", run_id()),
                    count: a.rooms,
                    group: a.members.max(1),
                },
                client_publish: Some(ClientPublish {
                    period_ms,
                    payload: a.payload,
                }),
                api_publish: None,
                reconnect: false,
                connect_rate: a.common.connect_rate,
                chaos: Chaos::None,
                cross_node: false,
                needs_local: false,
                min_nodes: 1,
                require_subscribed: false,
            };
            (a.common.clone(), plan)
        }
        Scenario::Idle(a) => {
            let plan = Plan {
                name: "idle",
                params: json!({"connections": a.connections, "channels": a.channels}),
                clients: a.connections,
                layout: Layout {
                    prefix: format!("idle-{}", run_id()),
                    count: a.channels,
                    group: 1,
                },
                client_publish: None,
                api_publish: None,
                reconnect: false,
                connect_rate: a.common.connect_rate,
                chaos: Chaos::None,
                cross_node: false,
                needs_local: false,
                min_nodes: 1,
                require_subscribed: false,
            };
            (a.common.clone(), plan)
        }
        Scenario::Worker(_) => return None,
    })
}
