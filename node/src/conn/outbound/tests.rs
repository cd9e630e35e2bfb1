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
