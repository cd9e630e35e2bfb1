//! The embedded broker's own rules, without a node.

use super::*;
use crate::conn::outbound::Outbound;
use crate::hub::Hub;
use crate::testing::ToHub;
use herald_shared::protocol::RawJson;

fn publication(text: &str) -> Publication {
    Publication {
        data: RawJson::from_value(&text).unwrap(),
        info: None,
        offset: 0,
        tags: Default::default(),
        delta: false,
        delta_publish: false,
    }
}

fn ns(size: usize) -> NamespaceOptions {
    NamespaceOptions {
        history_size: size,
        ..Default::default()
    }
}

#[test]
fn offsets_increase_and_history_is_bounded() {
    let b = Inner::default();
    let n = ns(3);
    let first = b.publish("c", publication("a"), &n, false, None);
    assert_eq!(first.offset, 1);
    for t in ["b", "c", "d", "e"] {
        b.publish("c", publication(t), &n, false, None);
    }
    let h = b.history("c", &HistoryQuery::default(), &n);
    assert_eq!(h.offset, 5);
    assert_eq!(h.epoch, first.epoch);
    let offsets: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, vec![3, 4, 5]);
    let since = HistoryQuery {
        since: Some(StreamPosition {
            offset: 4,
            epoch: h.epoch.clone(),
        }),
        ..Default::default()
    };
    assert_eq!(b.history("c", &since, &n).publications.len(), 1);
    let rev = HistoryQuery {
        limit: Some(2),
        reverse: true,
        ..Default::default()
    };
    let offsets: Vec<u64> = b
        .history("c", &rev, &n)
        .publications
        .iter()
        .map(|p| p.offset)
        .collect();
    assert_eq!(offsets, vec![5, 4]);
}

#[test]
fn publications_reach_the_hub_encoded_once() {
    let b = Inner::default();
    let hub = Arc::new(Hub::new(1 << 20));
    let q = Arc::new(Outbound::new(1 << 20));
    hub.add("c", 1, q.clone(), Default::default(), false);
    let _ = b.events.set(Arc::new(ToHub(hub)));
    b.publish("c", publication("x"), &ns(10), false, None);
    let items = q.take().items;
    assert_eq!(
        std::str::from_utf8(&items[0]).unwrap(),
        r#"{"push":{"channel":"c","pub":{"data":"x","offset":1}}}"#
    );
}

#[test]
fn presence_counts_users_and_clients() {
    let b = Inner::default();
    let info = |u: &str, c: &str| ClientInfo {
        user: u.into(),
        client: c.into(),
        ..Default::default()
    };
    b.presence.add("c", "c1", &info("u1", "c1"));
    b.presence.add("c", "c2", &info("u1", "c2"));
    b.presence.add("c", "c3", &info("u2", "c3"));
    assert_eq!(
        stats(&b.presence.get("c")),
        PresenceStats {
            clients: 3,
            users: 2
        }
    );
    b.presence.remove("c", "c1");
    assert_eq!(b.presence.get("c").len(), 2);
}

#[test]
fn removed_history_keeps_offsets_going() {
    let b = Inner::default();
    let n = ns(10);
    b.publish("c", publication("a"), &n, false, None);
    b.remove_history("c");
    assert!(b
        .history("c", &HistoryQuery::default(), &n)
        .publications
        .is_empty());
    assert_eq!(b.publish("c", publication("b"), &n, false, None).offset, 2);
}

#[test]
fn recovery_is_all_or_nothing() {
    let b = Inner::default();
    let n = NamespaceOptions {
        recovery: true,
        ..ns(2)
    };
    for t in ["a", "b", "c"] {
        b.publish("c", publication(t), &n, false, None);
    }
    let epoch = b.history("c", &HistoryQuery::default(), &n).epoch;
    let at = |offset| StreamPosition {
        offset,
        epoch: epoch.clone(),
    };
    let r = b.recover("c", &at(1), &n);
    assert!(r.recovered && r.publications.len() == 2);
    let r = b.recover("c", &at(0), &n);
    assert!(
        !r.recovered && r.publications.is_empty(),
        "offset 1 is gone"
    );
    assert!(b.recover("c", &at(3), &n).recovered, "nothing missed");
    let other = StreamPosition {
        offset: 1,
        epoch: "other".into(),
    };
    assert!(!b.recover("c", &other, &n).recovered);
    assert_eq!(b.recover("c", &other, &n).position.offset, 3);
}

#[test]
fn an_idempotency_key_publishes_once() {
    let b = Inner::default();
    let first = b.publish("c", publication("a"), &ns(10), false, Some("k1"));
    let again = b.publish("c", publication("a"), &ns(10), false, Some("k1"));
    assert_eq!(first, again);
    let other = b.publish("c", publication("b"), &ns(10), false, Some("k2"));
    assert_eq!(other.offset, first.offset + 1);
    let elsewhere = b.publish("d", publication("a"), &ns(10), false, Some("k1"));
    assert_eq!(elsewhere.offset, 1, "keys are per channel");
}
