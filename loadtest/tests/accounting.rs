//! HDR histograms, stream integrity (gaps, losses, duplicates, recovery), payload stamps.

// Cargo links each test crate with every dependency of the package, and a test uses a
// few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

use herald_loadtest::protocol::{encode_payload, read_stamp, Stamp};
use herald_loadtest::stats::hist::{new_hist, record, Sharded, Summary, WireHist};
use herald_loadtest::stats::stream::{Delta, StreamTracker};

#[test]
fn histogram_survives_the_wire_and_merges() {
    let mut a = new_hist();
    let mut b = new_hist();
    for v in 1..=1000u64 {
        record(&mut a, v * 10);
    }
    record(&mut b, 5_000_000);
    let wire: WireHist =
        serde_json::from_str(&serde_json::to_string(&WireHist::from_hist(&a)).unwrap()).unwrap();
    let mut merged = new_hist();
    wire.merge_into(&mut merged);
    // The rebuilt histogram has the same buckets as the original.
    assert_eq!(merged, a);
    WireHist::from_hist(&b).merge_into(&mut merged);
    assert_eq!(merged.len(), 1001);
    let s = Summary::of(&merged);
    assert_eq!(s.count, 1001);
    // Three significant digits: the percentiles are within 0.1 % of the truth.
    assert!((s.p50_ms - 5.01).abs() < 0.01, "{s:?}");
    assert!((s.p99_ms - 9.9).abs() < 0.02, "{s:?}");
    assert!((s.max_ms - 5000.0).abs() < 5.0, "{s:?}");
}

#[test]
fn histogram_clamps_and_summarises_empty() {
    let mut h = new_hist();
    record(&mut h, 0);
    record(&mut h, u64::MAX);
    assert_eq!(h.len(), 2);
    assert_eq!(Summary::of(&new_hist()), Summary::default());
}

#[test]
fn sharded_histogram_keeps_totals_and_resets_intervals() {
    let s = Sharded::new(4);
    s.record_batch(0, &[100, 200]);
    s.record_batch(5, &[300]);
    assert_eq!(s.take_interval().len(), 3);
    assert_eq!(s.take_interval().len(), 0);
    s.record_batch(2, &[400]);
    assert_eq!(s.take_interval().len(), 1);
    assert_eq!(s.total().len(), 4);
}

/// A tracker subscribed (before publishing began) at offset `top` of epoch "e".
fn subscribed(top: u64) -> StreamTracker {
    let mut t = StreamTracker::default();
    assert_eq!(
        t.on_subscribed("e", top, false, false, false),
        Delta::default()
    );
    t
}

#[test]
fn in_order_publications_are_clean() {
    let mut t = subscribed(10);
    let mut d = Delta::default();
    for (i, offset) in (11..=20).enumerate() {
        d.add(t.on_publication(offset, Some((7, i as u64 + 1))));
    }
    assert_eq!(d, Delta::default());
    assert_eq!(t.tail(&[(7, 10)]), (0, 0));
    assert_eq!(t.recover_from(), Some(("e", 20)));
}

#[test]
fn sequence_gaps_count_what_was_skipped() {
    let mut t = subscribed(0);
    t.on_publication(1, Some((1, 1)));
    let d = t.on_publication(2, Some((1, 5)));
    assert_eq!((d.gaps, d.lost), (1, 3));
    // Another publisher in the same channel is counted separately.
    let d = t.on_publication(3, Some((2, 1)));
    assert_eq!(d, Delta::default());
    // Its first publication missing shows once its second arrives.
    let mut t = subscribed(0);
    let d = t.on_publication(9, Some((2, 2)));
    assert_eq!((d.gaps, d.lost), (1, 1));
}

#[test]
fn offset_skips_are_not_losses() {
    // NATS mode: a namespace-wide stream numbers the neighbours' publications too.
    let mut t = subscribed(100);
    let d = t.on_publication(105, Some((1, 1)));
    assert_eq!(d.offset_skips, 1);
    assert_eq!((d.lost, d.gaps, d.duplicates), (0, 0, 0));
}

#[test]
fn duplicates_by_offset_and_by_sequence() {
    let mut t = subscribed(0);
    t.on_publication(1, Some((1, 1)));
    t.on_publication(2, Some((1, 2)));
    assert_eq!(t.on_publication(2, Some((1, 2))).duplicates, 1);
    assert_eq!(t.on_publication(1, None).duplicates, 1);
    // A publisher's retry stored twice: new offset, same number; not the server's fault.
    assert_eq!(t.on_publication(3, Some((1, 2))), Delta::default());
    // Without history (offset 0) the sequence is the only witness.
    let mut t = subscribed(0);
    t.on_publication(0, Some((1, 1)));
    assert_eq!(t.on_publication(0, Some((1, 1))).duplicates, 1);
}

#[test]
fn tail_losses_at_the_end() {
    let mut t = subscribed(0);
    t.on_publication(1, Some((1, 1)));
    t.on_publication(2, Some((1, 2)));
    // Publisher 1 sent 5, publisher 2 sent 3 that never arrived.
    assert_eq!(t.tail(&[(1, 5), (2, 3)]), (6, 2));
    // Subscribed after publishing began: a publisher never seen is not counted.
    let mut late = StreamTracker::default();
    late.on_subscribed("e", 50, false, false, true);
    assert_eq!(late.tail(&[(2, 3)]), (0, 0));
    // Never subscribed: nothing to say.
    assert_eq!(StreamTracker::default().tail(&[(1, 5)]), (0, 0));
}

#[test]
fn recovery_outcomes() {
    let mut t = subscribed(0);
    t.on_publication(1, Some((1, 1)));
    t.on_publication(2, Some((1, 2)));
    // Reconnect: the reply brings offsets 3 and 4, then reports recovered.
    t.on_publication(3, Some((1, 3)));
    t.on_publication(4, Some((1, 4)));
    assert_eq!(t.on_subscribed("e", 4, true, true, true).recovered, 1);
    assert_eq!(t.on_publication(5, Some((1, 5))), Delta::default());
    // Not recovered: counted, and the skipped numbers show up as a gap later.
    let d = t.on_subscribed("e", 9, true, false, true);
    assert_eq!((d.recovered, d.unrecovered), (0, 1));
    let d = t.on_publication(10, Some((1, 10)));
    assert_eq!((d.gaps, d.lost), (1, 4));
    // A new epoch is never a recovery, even if the server claimed one.
    assert_eq!(t.on_subscribed("f", 1, true, true, true).unrecovered, 1);
    assert_eq!(t.recover_from(), Some(("f", 1)));
}

#[test]
fn payload_stamps_round_trip_at_the_requested_size() {
    let stamp = Stamp {
        sent_micros: 1_795_000_000_123_456,
        publisher: 1 << 40,
        seq: 42,
    };
    for size in [0, 64, 1000] {
        let mut out = Vec::new();
        encode_payload(&mut out, stamp, size);
        assert!(
            out.len() >= size && (size < 64 || out.len() == size),
            "{size}: {}",
            out.len()
        );
        let v: serde_json::Value = serde_json::from_slice(&out).expect("payload is JSON");
        assert_eq!(v["s"], 42);
        assert_eq!(read_stamp(&out), Some(stamp));
    }
    assert_eq!(read_stamp(br#"{"text":"hi"}"#), None);
    assert_eq!(read_stamp(br#"{"t":1,"g":2}"#), None);
}
