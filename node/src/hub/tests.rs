use super::*;
use herald_shared::protocol::delta::apply;
use herald_shared::protocol::{ClientInfo, Publication};

fn queue() -> Arc<Outbound> {
    Arc::new(Outbound::new(1 << 20))
}

fn jl(join_leave: bool) -> Delivery {
    Delivery {
        join_leave,
        ..Default::default()
    }
}

fn publication(offset: u64, data: &str) -> Publication {
    Publication {
        data: RawJson::parse(data).unwrap(),
        info: None,
        offset,
        tags: Default::default(),
        delta: false,
        delta_publish: true,
    }
}

/// Publishes a publication at `offset`; returns the fan-out and its JSON push.
fn publish(hub: &Hub, channel: &str, offset: u64) -> (Fanout, Bytes) {
    let p = publication(offset, "1");
    let push = Broadcast::new(channel, PushBody::Pub(&p));
    (
        hub.publish(channel, &push, 0),
        push.get(Encoding::Json).clone(),
    )
}

/// What a queue got, as pushes.
fn pushes(q: &Outbound) -> Vec<serde_json::Value> {
    q.take()
        .items
        .into_iter()
        .map(|b| serde_json::from_slice(&b).unwrap())
        .collect()
}

/// A 2 KiB state document where one field changes.
fn state(n: u64) -> String {
    let rows: Vec<String> = (0..40)
        .map(|i| format!(r#""row{i:02}":{{"bid":{},"ask":{}}}"#, 1000 + i, 1010 + i))
        .collect();
    format!(r#"{{"seq":{n},{}}}"#, rows.join(","))
}

fn send(hub: &Hub, offset: u64, data: &str) -> Fanout {
    let p = publication(offset, data);
    hub.publish("c", &Broadcast::new("c", PushBody::Pub(&p)), 0)
}

#[test]
fn delta_subscribers_share_one_delta_frame_and_decode_it() {
    let hub = Hub::new(1 << 20);
    let (plain, d1, d2) = (queue(), queue(), queue());
    let delta = Delivery {
        delta: true,
        ..Default::default()
    };
    hub.add("c", 1, plain.clone(), Delivery::default(), false);
    hub.add("c", 2, d1.clone(), delta.clone(), false);
    send(&hub, 1, &state(1));
    hub.add("c", 3, d2.clone(), delta.clone(), false);
    send(&hub, 2, &state(2));
    send(&hub, 3, &state(3));

    // The ordinary subscriber: data as JSON, never a delta.
    let got = pushes(&plain);
    assert_eq!(got.len(), 3);
    assert_eq!(got[2]["push"]["pub"]["data"]["seq"], 3);
    assert!(got[2]["push"]["pub"].get("delta").is_none());

    // d1: the first in full (a JSON string), then deltas that decode to the next.
    let mut base = String::new();
    for (i, m) in pushes(&d1).iter().enumerate() {
        let p = &m["push"]["pub"];
        let text = p["data"].as_str().expect("a JSON string");
        if p["delta"] == true {
            assert!(i > 0);
            assert!(text.len() < 100, "{text}");
            base = apply(&base, text).expect("decodes");
        } else {
            assert_eq!(i, 0, "only the first is full");
            base = text.to_owned();
        }
        assert_eq!(base, state(i as u64 + 1));
    }
    // d2 joined after the first: full (no base), then a delta.
    let got = pushes(&d2);
    assert!(got[0]["push"]["pub"].get("delta").is_none());
    assert_eq!(got[1]["push"]["pub"]["delta"], true);

    // One delta frame for all: the very same bytes in both queues.
    send(&hub, 4, &state(4));
    let (a, b) = (d1.take().items, d2.take().items);
    assert_eq!(
        a[0].as_ptr(),
        b[0].as_ptr(),
        "shared, not encoded per subscriber"
    );
}

#[test]
fn a_delta_needs_the_base_and_a_delta_publication() {
    let hub = Hub::new(1 << 20);
    let q = queue();
    let delivery = Delivery {
        delta: true,
        ..Default::default()
    };
    hub.add("c", 1, q.clone(), delivery, false);
    send(&hub, 1, &state(1));
    // Not published in delta mode: full.
    let mut p = publication(2, &state(2));
    p.delta_publish = false;
    hub.publish("c", &Broadcast::new("c", PushBody::Pub(&p)), 0);
    send(&hub, 3, &state(3));
    let got = pushes(&q);
    let deltas: Vec<bool> = got
        .iter()
        .map(|m| m["push"]["pub"]["delta"] == true)
        .collect();
    assert_eq!(deltas, vec![false, false, true]);
    // Syncing: held back in full, and the first live one after go-live is full too
    // when the held-back ones were all in the reply.
    hub.remove("c", 1);
    hub.add(
        "c",
        1,
        q.clone(),
        Delivery {
            delta: true,
            ..Default::default()
        },
        true,
    );
    send(&hub, 4, &state(4));
    hub.go_live("c", 1, 4);
    send(&hub, 5, &state(5));
    let got = pushes(&q);
    assert_eq!(got.len(), 1);
    assert!(got[0]["push"]["pub"].get("delta").is_none());
}

#[test]
fn equal_filters_share_a_group_and_filtered_delta_subscribers_resync() {
    use herald_shared::protocol::filter::FilterNode;
    let hub = Hub::new(1 << 20);
    let filter: FilterNode = serde_json::from_str(r#"{"key":"t","cmp":"eq","val":"a"}"#).unwrap();
    let f = Some(Arc::new(filter.clone()));
    let (x, y, z) = (queue(), queue(), queue());
    let filtered = Delivery {
        filter: f.clone(),
        delta: true,
        ..Default::default()
    };
    hub.add("c", 1, x.clone(), filtered.clone(), false);
    hub.add("c", 2, y.clone(), filtered, false);
    hub.add("c", 3, z.clone(), Delivery::default(), false);
    {
        let entry = hub.channel("c").unwrap();
        assert_eq!(entry.lock().filters.len(), 1, "one group for equal filters");
    }
    let tagged = |offset, t: &str, data: &str| {
        let mut p = publication(offset, data);
        p.tags.insert("t".into(), t.into());
        hub.publish("c", &Broadcast::new("c", PushBody::Pub(&p)), 0)
    };
    assert_eq!(tagged(1, "a", &state(1)).delivered, 3);
    assert_eq!(tagged(2, "b", &state(2)).delivered, 1, "filtered out");
    assert_eq!(tagged(3, "a", &state(3)).delivered, 3);
    assert_eq!(tagged(4, "a", &state(4)).delivered, 3);
    let got = pushes(&x);
    let deltas: Vec<bool> = got
        .iter()
        .map(|m| m["push"]["pub"]["delta"] == true)
        .collect();
    // After missing offset 2 its base is 1, not 2: full again, then a delta.
    assert_eq!(deltas, vec![false, false, true]);
    assert_eq!(pushes(&z).len(), 4);
    hub.remove("c", 1);
    hub.remove("c", 2);
    let entry = hub.channel("c").unwrap();
    assert_eq!(entry.lock().filters.len(), 0, "groups go with their users");
}

#[test]
fn fan_out_reaches_every_subscriber_once() {
    let hub = Hub::new(1 << 20);
    let (a, b) = (queue(), queue());
    assert!(hub.add("c", 1, a.clone(), jl(false), false));
    assert!(!hub.add("c", 2, b.clone(), jl(false), false));
    let (f, _) = publish(&hub, "c", 1);
    assert_eq!(f.delivered, 2);
    assert_eq!(a.take().items.len(), 1);
    assert_eq!(b.take().items.len(), 1);
    assert!(!hub.remove("c", 1));
    assert!(hub.remove("c", 2));
    assert!(!hub.has_subscribers("c"));
    assert_eq!(publish(&hub, "c", 2).0.delivered, 0);
}

#[test]
fn removals_from_the_middle_keep_every_other_subscriber_reachable() {
    // Removal moves the channel's last entry into the gap: the moved ones must still
    // be found (go_live, a second add, remove) and still get each publication once.
    let hub = Hub::new(1 << 20);
    let queues: Vec<_> = (0..10u64).map(|_| queue()).collect();
    for (id, q) in queues.iter().enumerate() {
        hub.add("c", id as u64, q.clone(), jl(false), true);
    }
    for id in [0u64, 4, 9, 5] {
        assert!(!hub.remove("c", id));
    }
    let left = [1u64, 2, 3, 6, 7, 8];
    for id in left {
        assert!(hub.go_live("c", id, 0), "subscriber {id} is still found");
    }
    assert!(!hub.go_live("c", 4, 0), "a removed one is gone");
    // Subscribing again replaces the entry rather than adding a second one.
    hub.add("c", 8, queues[8].clone(), jl(false), false);
    assert_eq!(hub.channels(), vec![("c".to_string(), left.len())]);
    let (f, _) = publish(&hub, "c", 1);
    assert_eq!(f.delivered, left.len());
    for (id, q) in queues.iter().enumerate() {
        let want = usize::from(left.contains(&(id as u64)));
        assert_eq!(q.take().items.len(), want, "subscriber {id}");
    }
    for id in left {
        hub.remove("c", id);
    }
    assert!(!hub.has_subscribers("c"));
}

#[test]
fn syncing_subscriber_gets_only_newer_offsets_after_go_live() {
    let hub = Hub::new(1 << 20);
    let q = queue();
    hub.add("c", 1, q.clone(), jl(false), true);
    let sent: Vec<Bytes> = (5..=8u64).map(|off| publish(&hub, "c", off).1).collect();
    assert!(q.take().items.is_empty(), "held back while syncing");
    // History gave it up to offset 6; 7 and 8 must follow, once, in order.
    assert!(hub.go_live("c", 1, 6));
    let items: Vec<_> = q.take().items.into_iter().collect();
    assert_eq!(items, vec![sent[2].clone(), sent[3].clone()]);
    publish(&hub, "c", 9);
    assert_eq!(q.take().items.len(), 1);
    // A late live copy of something the reply already carried is not sent again.
    publish(&hub, "c", 6);
    assert!(q.take().items.is_empty());
}

#[test]
fn syncing_buffer_is_bounded() {
    let hub = Hub::new(4);
    let q = queue();
    hub.add("c", 1, q.clone(), jl(false), true);
    publish(&hub, "c", 1);
    assert_eq!(q.take().close.map(|c| c.code), Some(3010));
}

#[test]
fn join_leave_only_to_those_who_asked() {
    let hub = Hub::new(1 << 20);
    let (a, b) = (queue(), queue());
    hub.add("c", 1, a.clone(), jl(true), false);
    hub.add("c", 2, b.clone(), jl(false), false);
    let who = ClientInfo::default();
    let j = Broadcast::new("c", PushBody::Join(&who));
    assert_eq!(hub.join_leave("c", &j, false).delivered, 1);
    assert_eq!(hub.join_leave("c", &j, true).delivered, 2);
}

#[test]
fn each_encoding_is_encoded_once_and_shared() {
    let hub = Hub::new(1 << 20);
    let json: Vec<_> = (0..3).map(|_| queue()).collect();
    let protobuf: Vec<_> = (0..3)
        .map(|_| Arc::new(Outbound::with_encoding(1 << 20, Encoding::Protobuf)))
        .collect();
    for (i, q) in json.iter().chain(protobuf.iter()).enumerate() {
        hub.add("c", i as u64, q.clone(), jl(true), false);
    }
    let p = publication(4, "1");
    let push = Broadcast::new("c", PushBody::Pub(&p));
    assert_eq!(hub.publish("c", &push, 0).delivered, 6);
    let first = |q: &Arc<Outbound>| q.take().items.pop_front().unwrap();
    let j: Vec<Bytes> = json.iter().map(first).collect();
    let b: Vec<Bytes> = protobuf.iter().map(first).collect();
    // The same allocation for every recipient of one form: encoded once.
    assert!(j.iter().all(|m| m.as_ptr() == j[0].as_ptr()));
    assert!(b.iter().all(|m| m.as_ptr() == b[0].as_ptr()));
    assert_eq!(j[0], Encoding::Json.push("c", &PushBody::Pub(&p)));
    assert_eq!(b[0], Encoding::Protobuf.push("c", &PushBody::Pub(&p)));
}

#[test]
fn a_protobuf_subscriber_in_delta_mode_gets_full_protobuf_frames() {
    let hub = Hub::new(1 << 20);
    let q = Arc::new(Outbound::with_encoding(1 << 20, Encoding::Protobuf));
    let delivery = Delivery {
        delta: true,
        ..Default::default()
    };
    hub.add("c", 1, q.clone(), delivery, false);
    for offset in 1..=3 {
        let p = publication(offset, &state(offset));
        let push = Broadcast::new("c", PushBody::Pub(&p));
        hub.publish("c", &push, 0);
        let got = q.take().items.pop_front().unwrap();
        assert_eq!(got, Encoding::Protobuf.push("c", &PushBody::Pub(&p)));
    }
}

#[test]
fn one_lag_sample_per_fan_out_on_the_last_subscriber() {
    let hub = Hub::new(1 << 20);
    let qs: Vec<_> = (0..3).map(|_| queue()).collect();
    for (i, q) in qs.iter().enumerate() {
        hub.add("c", i as u64, q.clone(), jl(false), false);
    }
    let p = publication(1, "1");
    hub.publish("c", &Broadcast::new("c", PushBody::Pub(&p)), 42);
    let probes: Vec<u64> = qs.iter().map(|q| q.take().probe).collect();
    assert_eq!(probes, [0, 0, 42]);
    let p = publication(2, "1");
    hub.publish("c", &Broadcast::new("c", PushBody::Pub(&p)), 0);
    assert!(qs.iter().all(|q| q.take().probe == 0), "0: no sample");
}
