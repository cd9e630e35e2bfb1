//! The known nodes: who they are, where they came from, how healthy they are, and the
//! ring of the ones taking connections.
//!
//! Writes (discovery, health) are rare and take a mutex; the proxy reads the ring on
//! every connection without locking, from an `ArcSwap` snapshot rebuilt after each change
//! (pingora's habit). A node is known while at least one discovery source names it; each
//! known node has its own health task, cancelled when the node is forgotten. Forgetting a
//! node, or taking it out of the ring, never touches its open tunnels.
//!
//! Passive detection: tunnels to a node that end together (at least [`TUNNEL_BURST`]
//! within [`BURST_WINDOW`]) trigger one probe of that node at once, out of schedule. A
//! killed node refuses that probe's connection and leaves the ring then, instead of
//! after `fall` probe periods, so its clients' first reconnect finds a live node. A
//! node whose clients merely left together answers the probe and stays.

use crate::config::HealthConfig;
use crate::error::ProxyError;
use crate::health::{self, Health, Outcome, State};
use crate::metrics;
use crate::ring::{Ring, RingNode};
use arc_swap::ArcSwap;
use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tunnels of one node that must end within [`BURST_WINDOW`] to trigger a probe.
pub const TUNNEL_BURST: u32 = 5;

/// The window of [`TUNNEL_BURST`].
pub const BURST_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// A discovery source that can name a node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// `HERALD_ROUTER_NODES`.
    Static,
    /// One `HERALD_ROUTER_DNS` entry, by its `name:port`.
    Dns(Arc<str>),
    /// A NATS announcement.
    Nats,
}

/// One known node.
struct Member {
    /// Its ring entry, shared with snapshots and tunnels.
    node: Arc<RingNode>,
    /// Sources naming it, each with when that naming expires (`None`: until withdrawn).
    sources: HashMap<Source, Option<Instant>>,
    /// Its health counters.
    health: Health,
    /// The name it announced over NATS, for logs (`None` when not announced).
    name: Option<String>,
    /// Stops its health task.
    stop: CancellationToken,
    /// Tunnels ended since `lost_since` (passive detection).
    lost: u32,
    /// Start of the current window of tunnel ends.
    lost_since: Instant,
    /// A burst probe is under way: at most one at a time.
    checking: bool,
}

/// How one node looks from outside, for `/readyz`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeView {
    /// `host:port`.
    pub addr: String,
    /// `up`, `down` or `draining`.
    pub state: &'static str,
    /// The node id it announced, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The known nodes and the current ring.
pub struct Backends {
    /// Every known node by address.
    members: Mutex<BTreeMap<String, Member>>,
    /// The nodes taking new connections; read lock-free on every request.
    ring: ArcSwap<Ring>,
    /// Thresholds and probe settings.
    health: HealthConfig,
    /// Cancelled at shutdown: stops every health task.
    stop: CancellationToken,
    /// Holds the health tasks so shutdown can wait for them.
    tracker: TaskTracker,
}

impl Backends {
    /// No nodes yet. Health tasks stop when `stop` fires.
    pub fn new(health: HealthConfig, stop: CancellationToken, tracker: TaskTracker) -> Arc<Self> {
        Arc::new(Backends {
            members: Mutex::new(BTreeMap::new()),
            ring: ArcSwap::from_pointee(Ring::default()),
            health,
            stop,
            tracker,
        })
    }

    /// The current ring: a snapshot, valid for as long as the caller holds it.
    pub fn ring(&self) -> Arc<Ring> {
        self.ring.load_full()
    }

    /// Every known node, sorted by address.
    pub fn view(&self) -> Vec<NodeView> {
        self.lock()
            .values()
            .map(|m| NodeView {
                addr: m.node.addr.to_string(),
                state: m.health.state.as_str(),
                name: m.name.clone(),
            })
            .collect()
    }

    /// Makes `source` name exactly `addrs`: nodes it no longer names lose it (and are
    /// forgotten when no source is left), new ones are added and probed at once.
    pub fn set_source(self: &Arc<Self>, source: &Source, addrs: &[String]) {
        let mut members = self.lock();
        let mut changed = false;
        for (addr, m) in members.iter_mut() {
            if !addrs.contains(addr) {
                changed |= m.sources.remove(source).is_some();
            }
        }
        for addr in addrs {
            changed |= self.name_node(&mut members, addr, source.clone(), None);
        }
        if changed {
            self.forget_unnamed(&mut members);
            self.rebuild(&members);
        }
    }

    /// Names `addr` from `source` until `until` (`None`: until withdrawn); `name` is how
    /// the node calls itself. Returns whether the node is new.
    pub fn name(
        self: &Arc<Self>,
        addr: &str,
        source: Source,
        until: Option<Instant>,
        name: Option<String>,
    ) -> bool {
        let mut members = self.lock();
        let added = self.name_node(&mut members, addr, source, until);
        if let (Some(m), Some(name)) = (members.get_mut(addr), name) {
            m.name = Some(name);
        }
        if added {
            self.rebuild(&members);
        }
        added
    }

    /// `source` no longer names `addr`.
    pub fn withdraw(&self, addr: &str, source: &Source) {
        let mut members = self.lock();
        if members
            .get_mut(addr)
            .is_some_and(|m| m.sources.remove(source).is_some())
        {
            self.forget_unnamed(&mut members);
            self.rebuild(&members);
        }
    }

    /// Drops namings that expired by `now`, forgetting nodes nothing names any more.
    pub fn expire(&self, now: Instant) {
        let mut members = self.lock();
        let mut changed = false;
        for m in members.values_mut() {
            let before = m.sources.len();
            m.sources.retain(|_, until| until.is_none_or(|t| t > now));
            changed |= m.sources.len() != before;
        }
        if changed {
            self.forget_unnamed(&mut members);
            self.rebuild(&members);
        }
    }

    /// Folds a failed attempt on node `addr` (`during` an `upgrade` or an `http`
    /// request) into its health by what the failure says about the node: a refused
    /// connection takes it out at once, its other faults count as failed checks, and
    /// the router's own limits ([`ProxyError::Local`]) are only counted.
    pub fn attempt_failed(&self, addr: &str, e: &ProxyError, during: &'static str) {
        if e.connect_refused() {
            self.observe(addr, Outcome::Refused);
        } else if e.counts_against_node() {
            self.observe(addr, Outcome::Failed);
        } else if matches!(e, ProxyError::Local { .. }) {
            metrics::local_exhaustion(during);
        }
    }

    /// Folds a check of `addr` (a probe, or a proxied attempt) into its health; the ring is
    /// rebuilt when the node's state changes. Unknown addresses are ignored: the node was
    /// forgotten while the check ran.
    pub fn observe(&self, addr: &str, outcome: Outcome) {
        let mut members = self.lock();
        let Some(m) = members.get_mut(addr) else {
            return;
        };
        let before = m.health.state;
        if m.health
            .observe(outcome, self.health.rise, self.health.fall)
        {
            let after = m.health.state;
            tracing::info!(node = %addr, from = before.as_str(), to = after.as_str(), "node health changed");
            gauge_state(addr, Some(after));
            self.rebuild(&members);
        }
    }

    /// A tunnel to `addr` ended (closed or failed, not idle or shutdown). When enough
    /// end together, probes the node at once; returns whether this call started a probe.
    pub fn tunnel_ended(self: &Arc<Self>, addr: &str) -> bool {
        let mut members = self.lock();
        let Some(m) = members.get_mut(addr) else {
            return false;
        };
        let now = Instant::now();
        if now.duration_since(m.lost_since) > BURST_WINDOW {
            m.lost = 0;
            m.lost_since = now;
        }
        m.lost += 1;
        if m.lost < TUNNEL_BURST || m.checking || m.health.state != State::Up {
            return false;
        }
        m.checking = true;
        m.lost = 0;
        m.lost_since = now;
        drop(members);
        metrics::burst_probe();
        let backends = self.clone();
        let addr = addr.to_owned();
        self.tracker.spawn(async move {
            let outcome = health::probe(&addr, &backends.health).await;
            tracing::info!(node = %addr, ?outcome, "tunnels ended together: probed the node");
            backends.observe(&addr, outcome);
            if let Some(m) = backends.lock().get_mut(&addr) {
                m.checking = false;
            }
        });
        true
    }

    /// Adds `source` to `addr`'s namings, creating the member (and its health task) when
    /// new. Returns whether it is new.
    fn name_node(
        self: &Arc<Self>,
        members: &mut BTreeMap<String, Member>,
        addr: &str,
        source: Source,
        until: Option<Instant>,
    ) -> bool {
        if let Some(m) = members.get_mut(addr) {
            m.sources.insert(source, until);
            return false;
        }
        let node = Arc::new(RingNode::new(addr));
        let stop = self.stop.child_token();
        tracing::info!(node = %addr, ?source, "node discovered");
        gauge_state(addr, Some(State::Down));
        let backends = self.clone();
        self.tracker.spawn(health::watch(
            node.clone(),
            self.health.clone(),
            stop.clone(),
            move |addr, outcome| backends.observe(addr, outcome),
        ));
        members.insert(
            addr.to_owned(),
            Member {
                node,
                sources: HashMap::from([(source, until)]),
                health: Health::default(),
                name: None,
                stop,
                lost: 0,
                lost_since: Instant::now(),
                checking: false,
            },
        );
        true
    }

    /// Forgets every node no source names, stopping its health task.
    fn forget_unnamed(&self, members: &mut BTreeMap<String, Member>) {
        members.retain(|addr, m| {
            let keep = !m.sources.is_empty();
            if !keep {
                tracing::info!(node = %addr, "node forgotten");
                m.stop.cancel();
                gauge_state(addr, None);
            }
            keep
        });
    }

    /// Publishes a new ring of the nodes that are up.
    fn rebuild(&self, members: &BTreeMap<String, Member>) {
        let up: Vec<Arc<RingNode>> = members
            .values()
            .filter(|m| m.health.state == State::Up)
            .map(|m| m.node.clone())
            .collect();
        let ring = Ring::new(up);
        let old = self.ring.load();
        let same = old.len() == ring.len()
            && old
                .nodes()
                .iter()
                .zip(ring.nodes())
                .all(|(a, b)| a.addr == b.addr);
        if !same {
            metrics::rehash(ring.len());
            self.ring.store(Arc::new(ring));
        }
    }

    /// The members. parking_lot's lock does not poison: a panic elsewhere still leaves
    /// consistent data, since every change is finished before the guard drops.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Member>> {
        self.members.lock()
    }
}

/// Sets `addr`'s state gauges; `None` (forgotten) zeroes them.
fn gauge_state(addr: &str, state: Option<State>) {
    metrics::node_state(addr, &State::NAMES, state.map(State::as_str));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends() -> Arc<Backends> {
        // Stopped from the start: no health task runs, the tests feed every outcome.
        let stop = CancellationToken::new();
        stop.cancel();
        Backends::new(HealthConfig::default(), stop, TaskTracker::new())
    }

    fn ring_addrs(b: &Backends) -> Vec<String> {
        b.ring()
            .nodes()
            .iter()
            .map(|n| n.addr.to_string())
            .collect()
    }

    #[tokio::test]
    async fn nodes_join_the_ring_when_up_and_leave_when_draining() {
        let b = backends();
        b.set_source(&Source::Static, &["a:1".into(), "b:1".into()]);
        assert!(b.ring().is_empty(), "not probed yet");
        b.observe("a:1", Outcome::Ready);
        b.observe("b:1", Outcome::Ready);
        assert_eq!(ring_addrs(&b), ["a:1", "b:1"]);
        b.observe("a:1", Outcome::Draining);
        assert_eq!(ring_addrs(&b), ["b:1"]);
        b.observe("b:1", Outcome::Failed);
        b.observe("b:1", Outcome::Failed);
        assert_eq!(ring_addrs(&b), ["b:1"], "fall is 3");
        b.observe("b:1", Outcome::Failed);
        assert!(b.ring().is_empty());
        let states: Vec<&str> = b.view().iter().map(|v| v.state).collect();
        assert_eq!(states, ["draining", "down"]);
    }

    /// An address where nothing listens (bound, then let go).
    fn dead_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    /// Waits (bounded) for `addr` to reach `want`.
    async fn state_of(b: &Backends, addr: &str, want: &str) -> &'static str {
        for _ in 0..200 {
            let s = b.view().into_iter().find(|v| v.addr == addr).unwrap().state;
            if s == want {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        b.view().into_iter().find(|v| v.addr == addr).unwrap().state
    }

    #[tokio::test]
    async fn tunnels_ending_together_probe_a_killed_node_out_of_the_ring() {
        let b = backends();
        let dead = dead_addr();
        b.set_source(&Source::Static, &[dead.clone(), "b:1".into()]);
        b.observe(&dead, Outcome::Ready);
        b.observe("b:1", Outcome::Ready);
        for _ in 1..TUNNEL_BURST {
            assert!(!b.tunnel_ended(&dead), "a few ends are ordinary");
        }
        assert!(b.tunnel_ended(&dead), "the burst starts one probe");
        assert!(!b.tunnel_ended(&dead), "one probe at a time");
        assert_eq!(
            state_of(&b, &dead, "down").await,
            "down",
            "refused: down at once"
        );
        assert_eq!(ring_addrs(&b), ["b:1"]);
    }

    #[tokio::test]
    async fn a_live_node_whose_clients_left_together_stays() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let b = backends();
        b.set_source(&Source::Static, std::slice::from_ref(&live));
        b.observe(&live, Outcome::Ready);
        for _ in 0..TUNNEL_BURST {
            b.tunnel_ended(&live);
        }
        // The probe ran (its end clears `checking`) and the node is still up.
        for _ in 0..200 {
            if !b.lock().get(&live).unwrap().checking {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!b.lock().get(&live).unwrap().checking, "the probe finished");
        assert_eq!(ring_addrs(&b), [live.as_str()]);
    }

    #[tokio::test]
    async fn a_node_stays_while_any_source_names_it() {
        let b = backends();
        b.set_source(&Source::Static, &["a:1".into()]);
        let dns = Source::Dns("nodes:1".into());
        b.set_source(&dns, &["a:1".into(), "b:1".into()]);
        b.observe("a:1", Outcome::Ready);
        b.observe("b:1", Outcome::Ready);
        b.set_source(&dns, &["c:1".into()]);
        let known: Vec<String> = b.view().into_iter().map(|v| v.addr).collect();
        assert_eq!(known, ["a:1", "c:1"], "b:1 forgotten, a:1 still static");
        assert_eq!(ring_addrs(&b), ["a:1"]);
    }

    #[tokio::test]
    async fn announcements_expire_and_can_be_withdrawn() {
        let b = backends();
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(10);
        assert!(b.name("a:1", Source::Nats, Some(later), Some("n1".into())));
        assert!(!b.name("a:1", Source::Nats, Some(later), None), "refreshed");
        assert!(b.name("b:1", Source::Nats, Some(later), None));
        b.observe("a:1", Outcome::Ready);
        assert_eq!(b.view()[0].name.as_deref(), Some("n1"));
        b.withdraw("b:1", &Source::Nats);
        assert_eq!(b.view().len(), 1);
        b.expire(now);
        assert_eq!(b.view().len(), 1, "not expired yet");
        b.expire(later);
        assert!(b.view().is_empty());
        assert!(b.ring().is_empty());
    }
}
