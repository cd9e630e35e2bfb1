//! Where nodes come from: the static list, DNS names resolved again and again, and
//! announcements over NATS. Each source names nodes in [`Backends`]; a node is known while
//! any source names it, and is identified by the address the router connects to, so two
//! routers that reach a node at the same address agree on its keys whichever way they
//! found it.

pub mod dns;
pub mod nats;

use crate::backends::{Backends, Source};
use crate::config::DiscoveryConfig;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Names the static nodes and starts the DNS and NATS watchers; they stop with `stop`.
pub fn start(
    backends: &Arc<Backends>,
    config: &DiscoveryConfig,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) {
    if !config.nodes.is_empty() {
        backends.set_source(&Source::Static, &config.nodes);
    }
    for entry in &config.dns {
        tracker.spawn(dns::watch(
            backends.clone(),
            entry.clone(),
            config.dns_interval,
            stop.clone(),
            dns::system_resolve,
        ));
    }
    if let Some(nats) = &config.nats {
        tracker.spawn(nats::watch(backends.clone(), nats.clone(), stop.clone()));
    }
}
