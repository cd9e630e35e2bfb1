//! Recovery reads shared by the subscribers of one channel.
//!
//! When a node dies its clients come back to the survivors together, most of them on
//! the same channels and missing the same publications. Reading each one's range from
//! JetStream costs one round trip per missed publication per client (measured: with
//! 2,000 clients missing ~40 each, the survivors spend seconds waiting on ~80,000
//! sequential reads). Instead every channel this node listens to keeps the stored
//! publications it last read for a recovery ([`Range`]); recoveries of one channel take
//! turns (single flight: while the first reads, the others wait, then find their range
//! here) and read only what the range does not cover yet. The live path extends the
//! range too ([`Range::live`]), so a recovery of a recent position usually needs no
//! read of publications at all.
//!
//! Why serving from here is as good as reading: a subject's stored messages never
//! change and new ones only get higher sequences, so what was stored in `(a, b]` when
//! it was read is still everything that can be in `(a, b]`, less what JetStream dropped
//! since, oldest first. Whether the client's own position is still stored (the recovery
//! rule) is still asked of JetStream, so a position that was dropped still answers
//! `recovered: false`. A live message extends the range only when its subject's
//! previous sequence (`Nats-Last-Sequence`) is inside the range: nothing of the subject
//! lies between, so the range stays gap-free.

use crate::broker::BrokerError;
use async_nats::jetstream::stream;
use herald_shared::protocol::Publication;
use std::collections::VecDeque;
use std::future::Future;

/// Every stored publication of one channel's subject in `(after, up_to]`, in order.
#[derive(Debug)]
pub(super) struct Range {
    /// The stream's identity when read: another epoch's offsets are another sequence.
    epoch: String,
    /// Exclusive start.
    after: u64,
    /// Inclusive end.
    up_to: u64,
    /// The publications in between, ascending offsets (markers are not kept).
    pubs: VecDeque<Publication>,
    /// At most this many are kept (the stream keeps no more per subject).
    keep: usize,
}

impl Range {
    /// An empty range at `at`: covers nothing yet; holds at most `keep`.
    fn empty(epoch: &str, at: u64, keep: usize) -> Self {
        Range {
            epoch: epoch.to_owned(),
            after: at,
            up_to: at,
            pubs: VecDeque::new(),
            keep,
        }
    }

    /// Adds the publications read for `(after, self.after]`.
    fn prepend(&mut self, after: u64, pubs: Vec<Publication>) {
        for p in pubs.into_iter().rev() {
            if p.offset > after && p.offset <= self.after {
                self.pubs.push_front(p);
            }
        }
        self.after = after;
    }

    /// Adds the publications read for `(self.up_to, up_to]`.
    fn extend(&mut self, up_to: u64, pubs: Vec<Publication>) {
        for p in pubs {
            if p.offset > self.up_to && p.offset <= up_to {
                self.pubs.push_back(p);
            }
        }
        self.up_to = up_to;
    }

    /// A live message at `seq` whose subject's previous message is `prev` (`pub_`:
    /// `None` for a position marker). Extends the range when nothing can lie between.
    pub(super) fn live(&mut self, prev: u64, seq: u64, pub_: Option<&Publication>) {
        if prev > self.up_to || seq <= self.up_to || prev < self.after {
            return;
        }
        if let Some(p) = pub_ {
            let mut p = p.clone();
            p.offset = seq;
            self.pubs.push_back(p);
        }
        self.up_to = seq;
        self.trim();
    }

    /// Publications in `(after, up_to]`; the range must cover it.
    fn slice(&self, after: u64, up_to: u64) -> Vec<Publication> {
        debug_assert!(after >= self.after && up_to <= self.up_to);
        let start = self.pubs.partition_point(|p| p.offset <= after);
        self.pubs
            .iter()
            .skip(start)
            .take_while(|p| p.offset <= up_to)
            .cloned()
            .collect()
    }

    /// Keeps the newest `keep` publications: older ones are dropped from the stream.
    fn trim(&mut self) {
        while self.pubs.len() > self.keep {
            if let Some(p) = self.pubs.pop_front() {
                self.after = p.offset;
            }
        }
    }
}

/// What a shared read did, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// Served from the range: no publication read from JetStream.
    Shared,
    /// Part or all of it read from JetStream.
    JetStream,
}

impl Source {
    /// The metric label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Source::Shared => "shared",
            Source::JetStream => "jetstream",
        }
    }
}

/// Where a shared read reads from: the stream and subject of one channel.
pub(super) struct Target<'a> {
    /// The namespace's stream.
    pub(super) stream: &'a stream::Stream,
    /// Its epoch.
    pub(super) epoch: &'a str,
    /// The channel's subject in it.
    pub(super) subject: &'a str,
}

/// Stored publications of the target with `after < offset <= up_to`, from `slot` where
/// it covers them, reading only the rest; `keep` bounds what the slot holds (the
/// namespace's per-subject limit). The caller holds the slot's lock: that is the
/// single flight. `read_range(after, up_to)` reads the target's subject from JetStream
/// (the broker's `Inner::read_range`; passed in so this module stays below the state).
pub(super) async fn read<F, Fut>(
    read_range: F,
    slot: &mut Option<Range>,
    target: Target<'_>,
    after: u64,
    up_to: u64,
    keep: usize,
) -> Result<(Vec<Publication>, Source), BrokerError>
where
    F: Fn(u64, u64) -> Fut,
    Fut: Future<Output = Result<Vec<Publication>, BrokerError>>,
{
    let mut range = match slot.take() {
        // A range wholly before the position helps nothing: start again there.
        Some(r) if r.epoch == target.epoch && r.up_to >= after => r,
        _ => Range::empty(target.epoch, after.min(up_to), keep),
    };
    range.keep = keep;
    let mut source = Source::Shared;
    if after < range.after {
        let pubs = read_range(after, range.after).await?;
        range.prepend(after, pubs);
        source = Source::JetStream;
    }
    if up_to > range.up_to {
        let pubs = read_range(range.up_to, up_to).await?;
        range.extend(up_to, pubs);
        source = Source::JetStream;
    }
    let out = range.slice(after, up_to);
    range.trim();
    *slot = Some(range);
    Ok((out, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::protocol::RawJson;

    fn p(offset: u64) -> Publication {
        Publication {
            data: RawJson::parse(&offset.to_string()).unwrap(),
            info: None,
            offset,
            tags: Default::default(),
            delta: false,
            delta_publish: false,
        }
    }

    fn offsets(pubs: &[Publication]) -> Vec<u64> {
        pubs.iter().map(|p| p.offset).collect()
    }

    #[test]
    fn prepend_and_extend_make_one_gap_free_range() {
        let mut r = Range::empty("e", 10, 100);
        r.extend(14, vec![p(11), p(13), p(14)]);
        r.prepend(5, vec![p(6), p(9)]);
        assert_eq!((r.after, r.up_to), (5, 14));
        assert_eq!(offsets(&r.slice(5, 14)), vec![6, 9, 11, 13, 14]);
        assert_eq!(offsets(&r.slice(9, 13)), vec![11, 13]);
        assert!(r.slice(14, 14).is_empty());
        // Stray reads outside the asked bounds are not taken in.
        r.extend(16, vec![p(12), p(16), p(17)]);
        assert_eq!(offsets(&r.slice(5, 16)), vec![6, 9, 11, 13, 14, 16]);
    }

    #[test]
    fn live_messages_extend_only_without_a_hole() {
        let mut r = Range::empty("e", 10, 100);
        r.extend(12, vec![p(12)]);
        // The subject's previous message is the range's end: nothing in between.
        r.live(12, 15, Some(&p(0)));
        assert_eq!((r.up_to, offsets(&r.slice(10, 15))), (15, vec![12, 15]));
        // A marker moves the end without a publication.
        r.live(15, 16, None);
        assert_eq!((r.up_to, offsets(&r.slice(10, 16))), (16, vec![12, 15]));
        // Its previous message was never seen here: a hole, left for a read.
        r.live(18, 20, Some(&p(20)));
        assert_eq!(r.up_to, 16);
        // Already inside (a repeat): ignored.
        r.live(12, 15, Some(&p(15)));
        assert_eq!(offsets(&r.slice(10, 16)), vec![12, 15]);
    }

    #[test]
    fn trimming_keeps_the_newest_and_moves_the_start() {
        let mut r = Range::empty("e", 0, 2);
        r.extend(5, (1..=5).map(p).collect());
        r.trim();
        assert_eq!((r.after, r.up_to), (3, 5));
        assert_eq!(offsets(&r.slice(3, 5)), vec![4, 5]);
        // Live messages are bounded the same way.
        r.live(5, 6, Some(&p(6)));
        assert_eq!((r.after, offsets(&r.slice(4, 6))), (4, vec![5, 6]));
    }
}
