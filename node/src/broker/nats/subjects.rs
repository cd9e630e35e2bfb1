//! NATS subject and stream names.
//!
//! A channel maps to one subject token: bytes `A-Z a-z 0-9 _ - :` stay as they are,
//! every other byte becomes `%XX` (so `.`, `*`, `>` and spaces never reach a subject).
//!
//! | what | subject |
//! |---|---|
//! | publications of channel `c` in the default namespace | `herald.ch.default.<c>` |
//! | publications of channel `ns:c` | `herald.ch.ns.<ns>.<ns:c>` |
//! | live copies republished by JetStream (history namespaces) | `herald.live.…` (same tail) |
//! | server API actions for every node | `herald.control` |
//! | heartbeats | `herald.node.heartbeat` |
//! | announcements for routers (JSON `{"id","addr","state","ttl"}`) | `herald.node.announce` |
//! | presence and channel queries | `herald.query.presence`, `herald.query.channels` |
//!
//! Backends that speak NATS publish plain JSON (the publication's `data`) on the
//! `herald.ch.…` subject of a channel. Namespaces with history are captured by one
//! JetStream stream each (`HERALD_DEFAULT`, `HERALD_NS_<ns>`), which republishes stored
//! messages on `herald.live.…` with their sequence; nodes listen there. Namespaces
//! without history have no stream: nodes listen on `herald.ch.…` directly.

/// Server API actions for every node.
pub const CONTROL: &str = "herald.control";
/// Node heartbeats.
pub const HEARTBEAT: &str = "herald.node.heartbeat";
/// Node announcements for the router's NATS discovery (JSON, see `cluster::announce`).
pub const ANNOUNCE: &str = "herald.node.announce";
/// Presence scatter-gather.
pub const PRESENCE_QUERY: &str = "herald.query.presence";
/// Channels scatter-gather.
pub const CHANNELS_QUERY: &str = "herald.query.channels";

/// The subject token for a channel name.
pub fn escape(channel: &str) -> String {
    let mut out = String::with_capacity(channel.len());
    for b in channel.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The namespace part of a channel (`None`: the default namespace).
pub fn namespace_of(channel: &str) -> Option<&str> {
    channel
        .trim_start_matches('$')
        .split_once(':')
        .map(|(ns, _)| ns)
}

fn tail(channel: &str) -> String {
    match namespace_of(channel) {
        None => format!("default.{}", escape(channel)),
        Some(ns) => format!("ns.{ns}.{}", escape(channel)),
    }
}

/// Where publications of `channel` are published (and stored, with history).
pub fn publish_subject(channel: &str) -> String {
    format!("herald.ch.{}", tail(channel))
}

/// Where nodes hear `channel`'s traffic: the republished copies when the namespace
/// keeps history, the publish subject otherwise.
pub fn delivery_subject(channel: &str, history: bool) -> String {
    if history {
        format!("herald.live.{}", tail(channel))
    } else {
        publish_subject(channel)
    }
}

/// The JetStream stream of a namespace (`None`: default).
pub fn stream_name(ns: Option<&str>) -> String {
    match ns {
        None => "HERALD_DEFAULT".to_owned(),
        Some(ns) => format!("HERALD_NS_{ns}"),
    }
}

/// Subjects a namespace's stream captures, and where it republishes them.
pub fn stream_subjects(ns: Option<&str>) -> (String, String) {
    match ns {
        None => (
            "herald.ch.default.>".to_owned(),
            "herald.live.default.>".to_owned(),
        ),
        Some(ns) => (
            format!("herald.ch.ns.{ns}.>"),
            format!("herald.live.ns.{ns}.>"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_become_single_safe_tokens() {
        assert_eq!(escape("news"), "news");
        assert_eq!(escape("chat:room-1_a"), "chat:room-1_a");
        assert_eq!(escape("a.b*c>d e"), "a%2Eb%2Ac%3Ed%20e");
        assert_eq!(escape("$secret"), "%24secret");
        assert_eq!(escape("%"), "%25");
        assert_eq!(escape("é"), "%C3%A9");
    }

    #[test]
    fn subjects_by_namespace() {
        assert_eq!(publish_subject("news"), "herald.ch.default.news");
        assert_eq!(publish_subject("chat:1"), "herald.ch.ns.chat.chat:1");
        assert_eq!(publish_subject("$chat:1"), "herald.ch.ns.chat.%24chat:1");
        assert_eq!(
            delivery_subject("chat:1", true),
            "herald.live.ns.chat.chat:1"
        );
        assert_eq!(
            delivery_subject("chat:1", false),
            "herald.ch.ns.chat.chat:1"
        );
        assert_eq!(stream_name(Some("chat")), "HERALD_NS_chat");
        assert_eq!(stream_name(None), "HERALD_DEFAULT");
    }
}
