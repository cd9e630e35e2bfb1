//! The queue's bound, its close decision and its wake-ups, without a socket.

use super::*;

#[test]
fn bounded_in_bytes_and_closes_slow() {
    let q = Arc::new(Outbound::new(10));
    assert_eq!(q.push(Bytes::from_static(b"12345")), Pushed::Queued);
    assert_eq!(q.push(Bytes::from_static(b"12345")), Pushed::Queued);
    assert_eq!(q.push(Bytes::from_static(b"1")), Pushed::Slow);
    assert_eq!(q.push(Bytes::from_static(b"1")), Pushed::Closing);
    let b = q.take();
    assert_eq!(b.items.len(), 2);
    assert_eq!(b.close.map(|c| c.code), Some(3008));
    assert!(q.is_closing());
    assert_eq!(q.queued_bytes(), 0);
    assert_eq!(q.close_code(), Some(3008), "kept after the writer took it");
}

#[test]
fn first_close_wins() {
    let q = Arc::new(Outbound::new(100));
    assert!(q.close(DisconnectCode::Shutdown));
    assert!(!q.close(DisconnectCode::Slow));
    assert_eq!(q.take().close.map(|c| c.code), Some(3001));
}

#[tokio::test]
async fn push_wakes_the_writer() {
    let q = Arc::new(Outbound::new(100));
    let q2 = q.clone();
    let waiter = tokio::spawn(async move {
        q2.wait().await;
        q2.take().items.len()
    });
    q.push(Bytes::from_static(b"x"));
    assert_eq!(waiter.await.unwrap(), 1);
}

#[test]
fn a_lag_sample_rides_with_the_batch_that_carries_it() {
    let q = Arc::new(Outbound::new(100));
    assert_eq!(q.push(Bytes::from_static(b"a")), Pushed::Queued);
    assert_eq!(q.take().probe, 0, "plain pushes carry no sample");
    assert_eq!(q.push_probed(Bytes::from_static(b"b"), 7), Pushed::Queued);
    assert_eq!(q.push_probed(Bytes::from_static(b"c"), 9), Pushed::Queued);
    let b = q.take();
    assert_eq!(
        (b.items.len(), b.probe),
        (2, 7),
        "the oldest sample of the batch"
    );
    assert_eq!(q.take().probe, 0, "taken once");
    // A closing queue takes nothing, not even the sample.
    q.close(DisconnectCode::Shutdown);
    assert_eq!(q.push_probed(Bytes::from_static(b"d"), 11), Pushed::Closing);
    assert_eq!(q.take().probe, 0);
}

#[test]
fn the_close_reason_is_kept_for_the_log() {
    let q = Arc::new(Outbound::new(4));
    assert_eq!(q.close_reason(), "");
    q.push(Bytes::from_static(b"12345"));
    assert_eq!(q.close_code(), Some(3008));
    assert_eq!(q.close_reason(), DisconnectCode::Slow.reason());
}
