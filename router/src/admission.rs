//! Admission control: a budget of new WebSocket upgrades per second for each node.
//!
//! After a node restarts or a network blip, every client reconnects at once, and each
//! connect costs the node a TLS-free but JWT-checked handshake. A token bucket per node
//! (`HERALD_ROUTER_NODE_CONNECT_RATE` tokens a second, at most
//! `HERALD_ROUTER_NODE_CONNECT_BURST` saved up) admits what the node can take and answers
//! the rest 503 with a jittered `Retry-After`, so the herd comes back spread out. An
//! upgrade over budget is never sent to another node: that would break stickiness and
//! pile the herd onto the survivors.
//!
//! Time is `tokio::time::Instant`, so the tests run the buckets on paused time.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

/// One node's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left, fractional so slow rates refill smoothly.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// The buckets of every node that has been asked for, keyed by node address.
#[derive(Debug)]
pub struct Admission {
    /// Tokens added per second; 0 turns admission control off.
    rate: f64,
    /// Most tokens a bucket holds (at least 1 when on).
    burst: f64,
    /// Per node. A forgotten node's entry stays: a few dozen bytes per address ever seen.
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

impl Admission {
    /// Buckets refilling `rate` tokens a second up to `burst` (`rate` 0: everything is
    /// admitted).
    pub fn new(rate: u32, burst: u32) -> Self {
        Admission {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether admission control is on.
    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Takes a token from `node`'s bucket; `false` when it is empty (over budget). A new
    /// node starts with a full bucket.
    pub fn admit(&self, node: &Arc<str>) -> bool {
        if !self.enabled() {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(node.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The `Retry-After` seconds of a throttled upgrade: uniform in `1..=2 * base`, so a
/// herd refused in the same instant spreads over twice the base instead of coming back
/// together (RFC 9110 wants whole seconds).
pub fn retry_after(base: u64) -> u64 {
    let top = base.max(1).saturating_mul(2);
    rand::random_range(1..=top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn node(addr: &str) -> Arc<str> {
        addr.into()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_the_rate_refills() {
        let a = Admission::new(10, 3);
        let n = node("n:1");
        assert!(
            a.admit(&n) && a.admit(&n) && a.admit(&n),
            "the burst passes"
        );
        assert!(
            !a.admit(&n),
            "the fourth at the same instant is over budget"
        );
        // 10 a second: one token every 100 ms.
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(!a.admit(&n), "not refilled yet");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(a.admit(&n), "one token after 100 ms");
        assert!(!a.admit(&n));
        // A long idle refills to the burst, no more.
        tokio::time::advance(Duration::from_secs(60)).await;
        let passed = (0..10).filter(|_| a.admit(&n)).count();
        assert_eq!(passed, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn each_node_has_its_own_bucket() {
        let a = Admission::new(1, 1);
        let (n1, n2) = (node("n:1"), node("n:2"));
        assert!(a.admit(&n1));
        assert!(!a.admit(&n1));
        assert!(a.admit(&n2), "n1's budget does not limit n2");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_zero_admits_everything() {
        let a = Admission::new(0, 1);
        assert!(!a.enabled());
        let n = node("n:1");
        assert!((0..10_000).all(|_| a.admit(&n)));
    }

    #[test]
    fn retry_after_is_jittered_within_bounds() {
        let values: std::collections::HashSet<u64> = (0..200).map(|_| retry_after(2)).collect();
        assert!(values.iter().all(|v| (1..=4).contains(v)), "{values:?}");
        assert!(values.len() > 1, "200 draws gave one value: {values:?}");
        assert!(
            (1..=2).contains(&retry_after(0)),
            "a base of 0 still asks for a wait"
        );
    }
}
