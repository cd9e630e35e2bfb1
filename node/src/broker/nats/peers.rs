//! Other nodes as their heartbeats describe them.

use herald_shared::codec::NodeStatus;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Node id → its last status and when it came.
#[derive(Default)]
pub(super) struct Peers {
    inner: Mutex<HashMap<String, (NodeStatus, Instant)>>,
}

impl Peers {
    /// Records a heartbeat; true when the node was not known (new, or back after
    /// being counted dead).
    pub(super) fn seen(&self, status: NodeStatus) -> bool {
        let mut p = self.inner.lock();
        p.insert(status.id.clone(), (status, Instant::now()))
            .is_none()
    }

    /// Nodes heard from within `timeout`.
    pub(super) fn alive(&self, timeout: Duration) -> Vec<NodeStatus> {
        let mut p = self.inner.lock();
        p.retain(|_, (_, at)| at.elapsed() <= timeout);
        p.values().map(|(s, _)| s.clone()).collect()
    }
}
