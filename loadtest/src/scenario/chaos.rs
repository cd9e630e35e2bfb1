//! Failure injection on a local cluster: kill a node, or drain and restart each one.

use super::Chaos;
use crate::local::LocalCluster;
use crate::report::RunEvent;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Carries out `chaos` relative to `start`; returns what happened, in order.
pub async fn run(chaos: Chaos, cluster: Arc<Mutex<LocalCluster>>, start: Instant) -> Vec<RunEvent> {
    let mut events = Vec::new();
    let at = |events: &mut Vec<RunEvent>, what: String| {
        events.push(RunEvent {
            at_s: start.elapsed().as_secs_f64(),
            what,
        })
    };
    match chaos {
        Chaos::None => {}
        Chaos::Kill { node, at: when } => {
            tokio::time::sleep_until((start + when).into()).await;
            let mut c = cluster.lock().await;
            let i = node.unwrap_or(c.nodes.len().saturating_sub(1));
            let id = c.nodes.get(i).map(|n| n.id.clone()).unwrap_or_default();
            c.kill_node(i).await;
            at(&mut events, format!("killed {id} (SIGKILL)"));
        }
        Chaos::Rolling { start_at, pause } => {
            tokio::time::sleep_until((start + start_at).into()).await;
            let n = cluster.lock().await.nodes.len();
            for i in 0..n {
                let mut c = cluster.lock().await;
                let id = c.nodes[i].id.clone();
                at(&mut events, format!("draining {id} (SIGTERM)"));
                let t = Instant::now();
                match c.drain_and_restart(i).await {
                    Ok(()) => at(
                        &mut events,
                        format!("{id} back after {:.2} s", t.elapsed().as_secs_f64()),
                    ),
                    Err(e) => at(&mut events, format!("{id}: restart failed: {e:#}")),
                }
                drop(c);
                if i + 1 < n {
                    tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
                }
            }
        }
    }
    events
}
