//! Rendezvous (highest-random-weight) hashing over the healthy nodes.
//!
//! Every (key, node) pair gets a pseudo-random score; a key goes to the node with the
//! highest score, and the next highest ones are the fallbacks in order. Why rendezvous and
//! not a ring of virtual nodes: with a few dozen nodes scoring each one per connection is
//! cheaper than it sounds, needs no tuning, spreads evenly, and removing a node moves only
//! the keys that node owned. Scores use a fixed hash (FNV-1a folded through a 64-bit
//! finaliser), never `std`'s per-process `RandomState`, so every router replica and every
//! restart agrees on where a key goes.

use std::sync::Arc;

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, then [`mix`]: FNV alone is weak in its high bits for short keys.
pub fn hash(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    });
    mix(h)
}

/// The 64-bit finaliser of MurmurHash3 (`fmix64`): every input bit flips about half of
/// the output bits.
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The weight of `node_hash` for `key`: both hashes are already mixed, the product with an
/// odd constant keeps key and node from cancelling out, and the final mix spreads it.
pub fn score(key: u64, node_hash: u64) -> u64 {
    mix(key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ node_hash)
}

/// A node as the ring sees it.
#[derive(Debug)]
pub struct RingNode {
    /// The node's identity and where to connect: `host:port` as configured, resolved or
    /// announced. Also the `node` label of metrics.
    pub addr: Arc<str>,
    /// [`hash`] of `addr`, computed once.
    pub hash: u64,
}

impl RingNode {
    /// A node reached at `addr`.
    pub fn new(addr: &str) -> Self {
        RingNode {
            addr: addr.into(),
            hash: hash(addr.as_bytes()),
        }
    }
}

/// The nodes that take new connections: a read-only snapshot, swapped whole when health
/// or membership changes.
#[derive(Debug, Default)]
pub struct Ring {
    /// Healthy nodes, sorted by address so two snapshots of one set are equal.
    nodes: Vec<Arc<RingNode>>,
}

impl Ring {
    /// A ring of `nodes` (order does not matter).
    pub fn new(mut nodes: Vec<Arc<RingNode>>) -> Self {
        nodes.sort_by(|a, b| a.addr.cmp(&b.addr));
        nodes.dedup_by(|a, b| a.addr == b.addr);
        Ring { nodes }
    }

    /// Whether no node is healthy.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many nodes take connections.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The nodes, sorted by address.
    pub fn nodes(&self) -> &[Arc<RingNode>] {
        &self.nodes
    }

    /// The node that owns `key`, if any node is healthy.
    pub fn owner(&self, key: u64) -> Option<&Arc<RingNode>> {
        // Ties (astronomically rare) go to the smaller address, as in `candidates`.
        self.nodes.iter().max_by(|a, b| {
            score(key, a.hash)
                .cmp(&score(key, b.hash))
                .then(b.addr.cmp(&a.addr))
        })
    }

    /// Up to `limit` nodes for `key`, best first: the owner, then where its connections
    /// should go when the owner refuses or cannot be reached.
    pub fn candidates(&self, key: u64, limit: usize) -> Vec<Arc<RingNode>> {
        let mut scored: Vec<(u64, &Arc<RingNode>)> =
            self.nodes.iter().map(|n| (score(key, n.hash), n)).collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.addr.cmp(&b.1.addr)));
        scored
            .into_iter()
            .take(limit)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(addrs: &[&str]) -> Ring {
        Ring::new(addrs.iter().map(|a| Arc::new(RingNode::new(a))).collect())
    }

    fn owner(ring: &Ring, key: u64) -> Arc<str> {
        ring.owner(key).expect("a node").addr.clone()
    }

    const NODES: &[&str] = &[
        "10.0.0.1:8000",
        "10.0.0.2:8000",
        "10.0.0.3:8000",
        "10.0.0.4:8000",
        "10.0.0.5:8000",
    ];

    #[test]
    fn hash_is_fixed_across_processes() {
        // Pinned values: a change here would send every client to another node on upgrade.
        assert_eq!(hash(b""), mix(FNV_OFFSET));
        assert_eq!(hash(b"a"), mix(0xaf63_dc4c_8601_ec8c));
        assert_ne!(hash(b"10.0.0.1:8000"), hash(b"10.0.0.2:8000"));
    }

    #[test]
    fn order_of_nodes_does_not_matter() {
        let a = ring(NODES);
        let mut reversed = NODES.to_vec();
        reversed.reverse();
        let b = ring(&reversed);
        for key in 0..2_000u64 {
            let k = hash(&key.to_le_bytes());
            assert_eq!(owner(&a, k), owner(&b, k));
            assert_eq!(owner(&a, k), a.candidates(k, 1)[0].addr);
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let full = ring(NODES);
        let without = ring(&[NODES[0], NODES[1], NODES[3], NODES[4]]);
        let mut moved = 0;
        for key in 0..10_000u64 {
            let k = hash(format!("client-{key}").as_bytes());
            let before = owner(&full, k);
            let after = owner(&without, k);
            if &*before == NODES[2] {
                moved += 1;
                // Its keys go to their second choice, as the candidate list promised.
                assert_eq!(after, full.candidates(k, 2)[1].addr);
            } else {
                assert_eq!(before, after, "key {key} moved though its node stayed");
            }
        }
        assert!(moved > 1_000, "the removed node owned {moved} keys");
    }

    #[test]
    fn adding_a_node_takes_keys_only_for_itself() {
        let small = ring(&NODES[..4]);
        let big = ring(NODES);
        for key in 0..5_000u64 {
            let k = hash(&key.to_be_bytes());
            let after = owner(&big, k);
            if &*after != NODES[4] {
                assert_eq!(owner(&small, k), after);
            }
        }
    }

    #[test]
    fn keys_spread_evenly() {
        // 50_000 keys over 5 nodes: 10_000 each expected, standard deviation about 90.
        // ±5% is more than five deviations: a failure means a biased hash, not bad luck.
        let r = ring(NODES);
        let mut counts = std::collections::HashMap::new();
        for key in 0..50_000u64 {
            let k = hash(format!("192.168.{}.{}", key / 256, key % 256).as_bytes());
            *counts.entry(owner(&r, k)).or_insert(0u32) += 1;
        }
        assert_eq!(counts.len(), NODES.len());
        for (node, n) in &counts {
            assert!((9_500..=10_500).contains(n), "{node} got {n} of 50000 keys");
        }
        // Chi-squared with 4 degrees of freedom: 18.47 is the 0.1% critical value.
        let chi2: f64 = counts
            .values()
            .map(|&n| (f64::from(n) - 10_000.0).powi(2) / 10_000.0)
            .sum();
        assert!(chi2 < 18.47, "chi-squared {chi2}");
    }

    #[test]
    fn candidates_are_distinct_and_bounded() {
        let r = ring(NODES);
        let c = r.candidates(hash(b"k"), 3);
        assert_eq!(c.len(), 3);
        assert!(c[0].addr != c[1].addr && c[1].addr != c[2].addr && c[0].addr != c[2].addr);
        assert_eq!(r.candidates(hash(b"k"), 10).len(), NODES.len());
        assert!(Ring::default().candidates(1, 3).is_empty());
        assert!(Ring::default().owner(1).is_none());
    }

    #[test]
    fn duplicates_collapse() {
        let r = ring(&["a:1", "a:1", "b:1"]);
        assert_eq!(r.len(), 2);
    }
}
