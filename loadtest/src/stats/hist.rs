//! HDR histograms of microseconds: recording from many clients, the wire form sent by
//! workers, and percentile summaries for the report.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Largest value recorded, in microseconds (one hour); larger values are clamped.
pub const MAX_MICROS: u64 = 3_600_000_000;

/// An empty histogram of microseconds, 1 µs to one hour, three significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static bounds are valid")
}

/// Records one value, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// A histogram as `(value, count)` pairs of its non-empty buckets: what workers send.
/// Recording each pair back with `record_n` rebuilds the same buckets exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireHist(pub Vec<(u64, u64)>);

impl WireHist {
    /// The non-empty buckets of `h`.
    pub fn from_hist(h: &Histogram<u64>) -> Self {
        WireHist(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    /// Adds these buckets to `into`.
    pub fn merge_into(&self, into: &mut Histogram<u64>) {
        for &(value, count) in &self.0 {
            // Values come from a histogram with the same bounds; clamp anyway so a
            // malformed line cannot fail the merge.
            let _ = into.record_n(value.clamp(1, MAX_MICROS), count);
        }
    }
}

/// Percentiles of a histogram of microseconds, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Number of values.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest value (within the histogram's precision).
    pub max_ms: f64,
}

impl Summary {
    /// Summarises `h`; all zero when it is empty.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Summary::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Summary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// The total and the current-second histogram of one shard slot.
struct Pair {
    /// Everything since the start.
    total: Histogram<u64>,
    /// Since the last progress report.
    interval: Histogram<u64>,
}

/// Latency histograms split into independently locked slots, so thousands of clients
/// on several threads rarely wait for each other; merged only when read.
pub struct Sharded {
    /// One slot per client index modulo the slot count.
    slots: Box<[Mutex<Pair>]>,
}

impl Sharded {
    /// `n` slots (at least one).
    pub fn new(n: usize) -> Self {
        Sharded {
            slots: (0..n.max(1))
                .map(|_| {
                    Mutex::new(Pair {
                        total: new_hist(),
                        interval: new_hist(),
                    })
                })
                .collect(),
        }
    }

    /// Records a batch of values (microseconds) into the slot of client `client`.
    pub fn record_batch(&self, client: usize, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let mut slot = self.slots[client % self.slots.len()].lock();
        for &v in values {
            record(&mut slot.total, v);
            record(&mut slot.interval, v);
        }
    }

    /// Everything recorded since the last call, and resets that interval.
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut out = new_hist();
        for slot in self.slots.iter() {
            let mut slot = slot.lock();
            let _ = out.add(&slot.interval);
            slot.interval.reset();
        }
        out
    }

    /// Everything recorded so far.
    pub fn total(&self) -> Histogram<u64> {
        let mut out = new_hist();
        for slot in self.slots.iter() {
            let _ = out.add(&slot.lock().total);
        }
        out
    }
}
