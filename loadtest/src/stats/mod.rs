//! What a run measures: counters, latency histograms and per-subscription stream
//! integrity.
//!
//! # Layout
//! - this file: [`Counters`] (a plain snapshot, sent between processes as JSON) and
//!   [`AtomicCounters`] (the live, shared version inside a shard).
//! - [`hist`]: HDR histograms, their wire form and percentile summaries.
//! - [`stream`]: gap, loss and duplicate accounting per subscription.

pub mod hist;
pub mod stream;

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Declares the snapshot and the atomic counter structs from one field list, so the two
/// can never drift apart.
macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident ),* $(,)?) => {
        /// Cumulative counts of one shard, or of the whole run once merged.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Counters {
            $( $(#[doc = $doc])* #[serde(default)] pub $name: u64, )*
        }

        /// The live version of [`Counters`], shared by every client of a shard.
        /// Clients add in batches (once per read) to keep cache-line traffic low.
        #[derive(Debug, Default)]
        pub struct AtomicCounters {
            $( $(#[doc = $doc])* pub $name: AtomicU64, )*
        }

        impl AtomicCounters {
            /// A consistent-enough copy: each field is read once, relaxed.
            pub fn snapshot(&self) -> Counters {
                Counters { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }

        impl Counters {
            /// Adds another shard's counts to these.
            pub fn add(&mut self, other: &Counters) {
                $( self.$name += other.$name; )*
            }
        }
    };
}

counters! {
    /// TCP + WebSocket + `connect` attempts, first connects and reconnects alike.
    conn_attempts,
    /// Attempts that got a successful `connect` reply.
    conn_ok,
    /// Attempts that failed (refused, handshake error, error reply, timeout).
    conn_failed,
    /// Established connections that ended before the run did.
    disconnects,
    /// Connections re-established after a disconnect (counted once per client outage).
    reconnects,
    /// Successful `subscribe` replies.
    subscribed,
    /// `subscribe` error replies.
    sub_failed,
    /// Publications received by subscribers (one per subscriber and publication).
    deliveries,
    /// Bytes of the publication pushes received (their JSON lines, before WebSocket
    /// framing): with `deliveries`, the bytes on the wire per delivered publication.
    pub_bytes,
    /// `publish` commands sent by clients (the rooms scenario).
    client_publishes,
    /// Error replies to clients' `publish` commands.
    client_publish_errors,
    /// Publications never delivered to a subscriber: skipped in a publisher's sequence,
    /// or missing at the end of the run.
    lost,
    /// Publications delivered again or out of order (offset not above the last one).
    duplicates,
    /// Distinct holes in the sequences a subscriber received.
    gaps,
    /// Offsets that jumped by more than one (normal with a namespace-wide stream).
    offset_skips,
    /// Resubscribes answered `recovered: true`.
    recovered,
    /// Resubscribes answered `recovered: false`, or with another epoch.
    unrecovered,
    /// WebSocket payload bytes received.
    bytes_in,
    /// Server pings (`{}`) answered.
    pings,
    /// Clients whose first attempt has finished (ready or failed): the ramp is over
    /// when this reaches the number of clients.
    settled,
}

impl AtomicCounters {
    /// Adds `n` to one counter.
    pub fn add(field: &AtomicU64, n: u64) {
        if n != 0 {
            field.fetch_add(n, Ordering::Relaxed);
        }
    }
}
