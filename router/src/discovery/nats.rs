//! NATS discovery: nodes announce themselves on a subject and the router listens.
//!
//! # The announcement
//!
//! A node publishes, on `HERALD_ROUTER_NATS_SUBJECT` (default
//! [`DEFAULT_NATS_SUBJECT`](crate::config::DEFAULT_NATS_SUBJECT)), one JSON object per
//! message, at start, every few seconds while it runs (well within the TTL), when it
//! starts draining, and when it leaves:
//!
//! ```json
//! {"id": "node-1", "addr": "10.0.0.5:8000", "state": "ready", "ttl": 10}
//! ```
//!
//! - `id` (string, required): the node's id (`HERALD_NODE_ID`), shown in `/readyz` and logs.
//! - `addr` (string, required): `host:port` where the router reaches the node's HTTP port.
//!   This, not `id`, is the node's identity on the ring.
//! - `state` (string, default `ready`): `ready` (known, and probed; it joins the ring when
//!   its `/readyz` says so), `draining` (out of the ring at once, open tunnels left alone)
//!   or `leaving` (forgotten at once).
//! - `ttl` (seconds, default `HERALD_ROUTER_NATS_TTL`): the node is forgotten this long
//!   after its last announcement, so a node that dies silently is dropped.
//!
//! JSON rather than the nodes' bincode envelopes: announcements are rare, any tool
//! (`nats pub`) can send one, and the router need not share the node's codec version.
//! Unknown fields are ignored, so nodes may add some.

use crate::backends::{Backends, Source};
use crate::config::{check_host_port, NatsDiscovery};
use crate::health::Outcome;
use futures_util::StreamExt;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest TTL an announcement may ask for.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// How often expired announcements are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One node announcement (see the module documentation).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Announcement {
    /// The node's id.
    pub id: String,
    /// `host:port` of the node's HTTP port.
    pub addr: String,
    /// What the node is doing.
    #[serde(default)]
    pub state: AnnouncedState,
    /// Seconds the announcement holds.
    #[serde(default)]
    pub ttl: Option<f64>,
}

/// What an announcing node says it is doing.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AnnouncedState {
    /// Running; taking connections once its probe agrees.
    #[default]
    Ready,
    /// Refusing new connections; existing ones stay.
    Draining,
    /// Going away now.
    Leaving,
}

/// Parses and checks an announcement.
pub fn parse(payload: &[u8]) -> Result<Announcement, String> {
    let a: Announcement = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    check_host_port(&a.addr)?;
    if a.ttl.is_some_and(|t| !(t > 0.0 && t.is_finite())) {
        return Err("ttl must be a positive number of seconds".into());
    }
    Ok(a)
}

/// Applies one announcement to `backends`.
pub fn apply(backends: &Arc<Backends>, a: Announcement, default_ttl: Duration, now: Instant) {
    let ttl = a
        .ttl
        .map_or(default_ttl, |t| Duration::from_secs_f64(t).min(MAX_TTL));
    match a.state {
        AnnouncedState::Leaving => backends.withdraw(&a.addr, &Source::Nats),
        AnnouncedState::Ready => {
            backends.name(&a.addr, Source::Nats, Some(now + ttl), Some(a.id));
        }
        AnnouncedState::Draining => {
            backends.name(&a.addr, Source::Nats, Some(now + ttl), Some(a.id));
            backends.observe(&a.addr, Outcome::Draining);
        }
    }
}

/// Listens for announcements until `stop`. The connection retries in the background if
/// NATS is not up yet, so the router starts (serving its static or DNS nodes) regardless.
pub async fn watch(backends: Arc<Backends>, config: NatsDiscovery, stop: CancellationToken) {
    let servers: Vec<&str> = config.url.split(',').map(str::trim).collect();
    let connect = async_nats::ConnectOptions::new()
        .name("herald-router")
        .retry_on_initial_connect()
        .connect(servers);
    let client = tokio::select! {
        _ = stop.cancelled() => return,
        c = connect => c,
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot connect to NATS; announcements are ignored");
            return;
        }
    };
    let mut sub = match client.subscribe(config.subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, subject = %config.subject, "cannot subscribe to node announcements");
            return;
        }
    };
    tracing::info!(subject = %config.subject, "listening for node announcements");
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = sweep.tick() => backends.expire(Instant::now()),
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                match parse(&msg.payload) {
                    Ok(a) => apply(&backends, a, config.ttl, Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "ignored a bad node announcement"),
                }
            }
        }
    }
    let _ = sub.unsubscribe().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_payload() {
        let a = parse(
            br#"{"id":"node-1","addr":"10.0.0.5:8000","state":"draining","ttl":2.5,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(a.id, "node-1");
        assert_eq!(a.addr, "10.0.0.5:8000");
        assert_eq!(a.state, AnnouncedState::Draining);
        assert_eq!(a.ttl, Some(2.5));
        let minimal = parse(br#"{"id":"n","addr":"n:1"}"#).unwrap();
        assert_eq!((minimal.state, minimal.ttl), (AnnouncedState::Ready, None));
        assert!(parse(br#"{"id":"n","addr":"nowhere"}"#).is_err());
        assert!(parse(br#"{"id":"n","addr":"n:1","ttl":-1}"#).is_err());
        assert!(parse(br#"{"id":"n","addr":"n:1","state":"asleep"}"#).is_err());
        assert!(parse(b"not json").is_err());
    }
}
