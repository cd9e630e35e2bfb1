//! Stream integrity per subscription: gaps, losses and duplicates.
//!
//! Two numbers identify a publication here:
//! - its **offset**, the server's position in the channel's stream. Offsets only grow,
//!   so an offset not above the last one seen is a duplicate (or out of order), and the
//!   last offset is where recovery starts after a reconnect. Offsets are not assumed to
//!   be contiguous: a node in NATS mode numbers publications with the JetStream sequence
//!   of a stream shared by a whole namespace, so one channel's offsets skip the
//!   numbers of its neighbours' publications. Skips are counted, not treated as loss.
//! - its **publisher sequence** `(g, s)` in the payload: publisher `g` numbers its
//!   publications 1, 2, 3… (an API publisher retries a failed one with the same
//!   number). A subscriber that has seen `s` from `g` must next see `s + 1`: a higher
//!   number is a gap, and the numbers skipped are lost. At the end each publisher's
//!   last number tells what the subscriber should have seen last (tail losses).

/// What one event changed; added to the shard's counters by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Publications that will never be delivered.
    pub lost: u64,
    /// Publications delivered more than once (or out of order).
    pub duplicates: u64,
    /// Holes in a publisher's sequence (a hole of any size counts once).
    pub gaps: u64,
    /// A resubscribe recovered.
    pub recovered: u64,
    /// A resubscribe did not recover.
    pub unrecovered: u64,
    /// Offsets that jumped by more than one (not a loss by itself; see the module doc).
    pub offset_skips: u64,
}

impl Delta {
    /// Adds another delta to this one.
    pub fn add(&mut self, o: Delta) {
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.gaps += o.gaps;
        self.recovered += o.recovered;
        self.unrecovered += o.unrecovered;
        self.offset_skips += o.offset_skips;
    }
}

/// The position of one subscriber in one channel.
#[derive(Clone, Debug, Default)]
pub struct StreamTracker {
    /// Epoch of the stream the offsets belong to; empty before the first subscribe.
    pub epoch: String,
    /// Highest offset seen (or the stream top when subscribed).
    pub last_offset: u64,
    /// False until the first subscribe reply.
    pub positioned: bool,
    /// Subscribed before publishing began: every publisher's sequence must start at 1.
    /// Otherwise the first number seen from each publisher is where counting starts.
    pub from_start: bool,
    /// `(publisher, last sequence seen)`; a handful per subscription.
    peers: Vec<(u64, u64)>,
}

impl StreamTracker {
    /// The `(epoch, offset)` to recover from on a resubscribe, if any.
    pub fn recover_from(&self) -> Option<(&str, u64)> {
        (self.positioned && !self.epoch.is_empty())
            .then_some((self.epoch.as_str(), self.last_offset))
    }

    /// A subscribe reply arrived. `recovering` says whether the request asked for
    /// recovery; recovered publications go through [`StreamTracker::on_publication`]
    /// *before* this is called. `publishing` says whether publishing has begun.
    pub fn on_subscribed(
        &mut self,
        epoch: &str,
        top: u64,
        recovering: bool,
        recovered: bool,
        publishing: bool,
    ) -> Delta {
        let mut d = Delta::default();
        if !self.positioned {
            self.from_start = !publishing;
        } else if recovering {
            // Publications missed without recovery show up as sequence gaps later.
            if recovered && epoch == self.epoch {
                d.recovered = 1;
            } else {
                d.unrecovered = 1;
            }
        }
        if epoch != self.epoch || top > self.last_offset || !self.positioned {
            self.last_offset = top;
        }
        if epoch != self.epoch {
            self.epoch.clear();
            self.epoch.push_str(epoch);
        }
        self.positioned = true;
        d
    }

    /// A publication arrived: `offset` 0 means a channel without history, `stamp` is
    /// `(publisher, sequence)` when the payload carries one.
    pub fn on_publication(&mut self, offset: u64, stamp: Option<(u64, u64)>) -> Delta {
        let mut d = Delta::default();
        if offset != 0 && self.positioned {
            if offset <= self.last_offset {
                d.duplicates = 1;
                return d;
            }
            if offset > self.last_offset + 1 {
                d.offset_skips = 1;
            }
            self.last_offset = offset;
        }
        let Some((publisher, seq)) = stamp else {
            return d;
        };
        match self.peers.iter_mut().find(|(p, _)| *p == publisher) {
            Some((_, last)) => {
                if seq > *last {
                    if seq > *last + 1 {
                        d.gaps = 1;
                        d.lost = seq - *last - 1;
                    }
                    *last = seq;
                } else if offset == 0 {
                    // Without offsets the sequence is the only way to see a duplicate.
                    // With offsets, a repeated number under a new offset is a publisher's
                    // retry that the server did store twice: not the server's fault.
                    d.duplicates = 1;
                }
            }
            None => {
                if self.from_start && seq > 1 {
                    d.gaps = 1;
                    d.lost = seq - 1;
                }
                self.peers.push((publisher, seq));
            }
        }
        d
    }

    /// At the end: `(publisher, last sequence published)` of this channel's publishers;
    /// returns `(lost, gaps)` for publications that never arrived.
    pub fn tail(&self, finals: &[(u64, u64)]) -> (u64, u64) {
        let (mut lost, mut gaps) = (0, 0);
        if !self.positioned {
            return (0, 0);
        }
        for &(publisher, last_published) in finals {
            let seen = match self.peers.iter().find(|(p, _)| *p == publisher) {
                Some(&(_, s)) => s,
                None if self.from_start => 0,
                None => continue,
            };
            if last_published > seen {
                lost += last_published - seen;
                gaps += 1;
            }
        }
        (lost, gaps)
    }
}
