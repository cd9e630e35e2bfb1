//! Node health: the rise/fall state machine, the active `GET /readyz` probe, and the
//! loop that probes one node.
//!
//! This module knows nothing of [`Backends`](crate::backends::Backends): the loop hands
//! each outcome to a callback, and the backends (which own the nodes and the ring) fold
//! it in. So health sits below backends and can be tested without one.
//!
//! Active probes and passive failures (a refused connection, a failed upgrade) feed the
//! same counters. A node that says it is draining leaves the ring at once, whatever the
//! thresholds: it has told us it will refuse new connections, and waiting `fall` probes
//! would send clients to certain refusals.

use crate::config::HealthConfig;
use crate::error::ProxyError;
use crate::ring::RingNode;
use crate::upstream;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::StatusCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Largest `/readyz` body read, bytes: the node's is a few dozen.
const MAX_PROBE_BODY: usize = 4096;

/// Where a node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Takes new connections: in the ring.
    Up,
    /// Failed `fall` checks in a row, or never passed one yet.
    Down,
    /// Said it is draining: out of the ring, its open tunnels left alone.
    Draining,
}

impl State {
    /// Every state, for one-hot gauges.
    pub const ALL: [State; 3] = [State::Up, State::Down, State::Draining];

    /// The names of [`State::ALL`], in that order.
    pub const NAMES: [&'static str; 3] = [
        State::ALL[0].as_str(),
        State::ALL[1].as_str(),
        State::ALL[2].as_str(),
    ];

    /// The name in metrics and `/readyz`.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Draining => "draining",
        }
    }
}

/// What one check (active or passive) found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `/readyz` answered 200.
    Ready,
    /// The node said it is draining.
    Draining,
    /// Nothing listens at the node's address: the connection was refused. A live node
    /// never refuses (a full or draining one answers 503), so the node leaves the ring at
    /// once instead of after `fall` checks: this is what a killed node looks like.
    Refused,
    /// Anything else: timed out, reset, 5xx, unparseable.
    Failed,
    /// The router could not check: it ran out of its own local ports or files
    /// ([`crate::error::ProxyError::Local`]). Says nothing about the node: changes
    /// nothing.
    Unchecked,
}

/// The rise/fall counters of one node.
#[derive(Clone, Debug)]
pub struct Health {
    /// Current state.
    pub state: State,
    /// Successful checks in a row.
    ok_streak: u32,
    /// Failed checks in a row.
    fail_streak: u32,
    /// Whether the node was ever up: a new node joins on its first good check (so a fresh
    /// router serves at once), one that went down must pass `rise` checks to come back.
    ever_up: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: State::Down,
            ok_streak: 0,
            fail_streak: 0,
            ever_up: false,
        }
    }
}

impl Health {
    /// Folds in one outcome; returns whether the state changed.
    pub fn observe(&mut self, outcome: Outcome, rise: u32, fall: u32) -> bool {
        let before = self.state;
        match outcome {
            Outcome::Ready => {
                self.ok_streak = self.ok_streak.saturating_add(1);
                self.fail_streak = 0;
                if self.state != State::Up && (!self.ever_up || self.ok_streak >= rise) {
                    self.state = State::Up;
                    self.ever_up = true;
                }
            }
            Outcome::Draining => {
                self.ok_streak = 0;
                self.fail_streak = 0;
                self.state = State::Draining;
            }
            Outcome::Refused => {
                self.ok_streak = 0;
                self.fail_streak = self.fail_streak.saturating_add(1).max(fall);
                self.state = State::Down;
            }
            Outcome::Failed => {
                self.ok_streak = 0;
                self.fail_streak = self.fail_streak.saturating_add(1);
                if self.state != State::Down && self.fail_streak >= fall {
                    self.state = State::Down;
                }
            }
            Outcome::Unchecked => {}
        }
        self.state != before
    }
}

/// Reads a node's answer: 200 is ready; 503 (or any status) whose JSON `reason` (or
/// `error`, as a refused upgrade says it) mentions "draining" is draining; the rest failed.
pub fn classify(status: StatusCode, body: &[u8]) -> Outcome {
    if status == StatusCode::OK {
        return Outcome::Ready;
    }
    let says_draining = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["reason", "error"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|r| r.as_str()).map(str::to_owned))
        })
        .is_some_and(|r| r.to_ascii_lowercase().contains("draining"));
    if says_draining {
        Outcome::Draining
    } else {
        Outcome::Failed
    }
}

/// One `GET /readyz` to `addr`, bounded by `config.timeout`.
pub async fn probe(addr: &str, config: &HealthConfig) -> Outcome {
    let attempt = async {
        let mut sender = match upstream::connect(addr).await {
            Ok(s) => s,
            Err(e) if e.connect_refused() => return Some(Outcome::Refused),
            Err(e @ ProxyError::Local { .. }) => {
                tracing::warn!(node = %addr, error = %e, "health probe not sent: the router is out of local ports or files");
                crate::metrics::local_exhaustion("probe");
                return Some(Outcome::Unchecked);
            }
            Err(_) => return None,
        };
        let request = hyper::Request::get(config.path.as_str())
            .header(hyper::header::HOST, addr)
            .header(hyper::header::USER_AGENT, "herald-router")
            .body(Empty::<Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_PROBE_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Some(classify(status, &body))
    };
    match tokio::time::timeout(config.timeout, attempt).await {
        Ok(Some(outcome)) => outcome,
        _ => Outcome::Failed,
    }
}

/// Probes `node` every `config.interval` until `stop` fires, handing each outcome to
/// `report`.
pub async fn watch(
    node: Arc<RingNode>,
    config: HealthConfig,
    stop: CancellationToken,
    report: impl Fn(&str, Outcome),
) {
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let outcome = tokio::select! {
            _ = stop.cancelled() => break,
            o = probe(&node.addr, &config) => o,
        };
        tracing::trace!(node = %node.addr, ?outcome, "health probe");
        report(&node.addr, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_node_joins_on_its_first_good_check() {
        let mut h = Health::default();
        assert_eq!(h.state, State::Down);
        assert!(h.observe(Outcome::Ready, 3, 2));
        assert_eq!(h.state, State::Up);
    }

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_successes() {
        let mut h = Health::default();
        h.observe(Outcome::Ready, 2, 3);
        assert!(!h.observe(Outcome::Failed, 2, 3));
        assert!(!h.observe(Outcome::Failed, 2, 3));
        assert!(h.observe(Outcome::Failed, 2, 3));
        assert_eq!(h.state, State::Down);
        assert!(!h.observe(Outcome::Ready, 2, 3));
        assert!(h.observe(Outcome::Ready, 2, 3));
        assert_eq!(h.state, State::Up);
    }

    #[test]
    fn a_refused_connection_is_down_at_once_and_rises_as_usual() {
        let mut h = Health::default();
        h.observe(Outcome::Ready, 2, 3);
        assert!(h.observe(Outcome::Refused, 2, 3), "no fall streak needed");
        assert_eq!(h.state, State::Down);
        assert!(!h.observe(Outcome::Ready, 2, 3));
        assert!(h.observe(Outcome::Ready, 2, 3), "back after rise checks");
    }

    #[test]
    fn an_unchecked_probe_changes_nothing() {
        let mut h = Health::default();
        h.observe(Outcome::Ready, 2, 2);
        h.observe(Outcome::Failed, 2, 2);
        for _ in 0..5 {
            assert!(!h.observe(Outcome::Unchecked, 2, 2));
        }
        assert_eq!(h.state, State::Up);
        assert!(
            h.observe(Outcome::Failed, 2, 2),
            "the failure streak was kept"
        );
    }

    #[tokio::test]
    async fn a_probe_of_a_closed_port_is_refused() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        assert_eq!(
            probe(&addr, &HealthConfig::default()).await,
            Outcome::Refused
        );
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let mut h = Health::default();
        h.observe(Outcome::Ready, 1, 2);
        h.observe(Outcome::Failed, 1, 2);
        h.observe(Outcome::Ready, 1, 2);
        assert!(!h.observe(Outcome::Failed, 1, 2));
        assert_eq!(h.state, State::Up);
    }

    #[test]
    fn draining_leaves_at_once_and_comes_back_by_rise() {
        let mut h = Health::default();
        h.observe(Outcome::Ready, 2, 5);
        assert!(h.observe(Outcome::Draining, 2, 5));
        assert_eq!(h.state, State::Draining);
        assert!(!h.observe(Outcome::Ready, 2, 5));
        assert!(h.observe(Outcome::Ready, 2, 5));
        assert_eq!(h.state, State::Up);
    }

    #[test]
    fn a_draining_node_that_stops_answering_is_down() {
        let mut h = Health::default();
        h.observe(Outcome::Ready, 1, 2);
        h.observe(Outcome::Draining, 1, 2);
        h.observe(Outcome::Failed, 1, 2);
        assert_eq!(h.state, State::Draining);
        h.observe(Outcome::Failed, 1, 2);
        assert_eq!(h.state, State::Down);
    }

    #[test]
    fn classifies_node_answers() {
        let ready = br#"{"status":"ready"}"#;
        assert_eq!(classify(StatusCode::OK, ready), Outcome::Ready);
        let draining = br#"{"status":"not ready","reason":"draining"}"#;
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, draining),
            Outcome::Draining
        );
        let refused = br#"{"error":"node is draining"}"#;
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, refused),
            Outcome::Draining
        );
        let broker = br#"{"status":"not ready","reason":"broker: disconnected"}"#;
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, broker),
            Outcome::Failed
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, b"draining, not json"),
            Outcome::Failed
        );
        assert_eq!(classify(StatusCode::NOT_FOUND, b""), Outcome::Failed);
    }
}
