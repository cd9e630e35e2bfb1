//! Node-to-node messages: bincode 2 envelopes behind one version byte.
//!
//! Every message Herald nodes send each other over NATS is `[VERSION] ++ bincode(Envelope)`.
//! The version byte lets two releases run side by side during a rolling upgrade: a node
//! that receives a version it does not know rejects the message with a clear error
//! instead of misreading it. bincode sits behind this module alone (its 3.0.0 release is
//! an empty crate that refuses to compile, so 2.x is pinned and kept swappable).
//!
//! Publications are special: backends that speak NATS may publish plain JSON on a
//! channel's subject. A JSON text never starts with a byte below 0x09, so the version byte
//! (0x01) tells the two apart; [`decode_publication`] accepts both.

use crate::protocol::{ClientInfo, Publication, RawJson};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The envelope version this build writes and reads.
pub const VERSION: u8 = 1;

/// Largest envelope decoded; a bigger length prefix is rejected before allocating.
pub const MAX_ENVELOPE: usize = 16 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_ENVELOPE>()
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// No bytes at all.
    #[error("empty message")]
    Empty,
    /// Written by a release that speaks another envelope version.
    #[error("unknown envelope version {0} (this node reads version {VERSION})")]
    UnknownVersion(u8),
    /// The bytes do not decode as an envelope.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// JSON carried inside is not valid JSON.
    #[error("invalid JSON in {0}")]
    InvalidJson(&'static str),
    /// A publication envelope was expected.
    #[error("not a publication")]
    NotPublication,
}

/// Who did something, on the wire (JSON kept as text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WireClientInfo {
    /// User id (empty for anonymous).
    pub user: String,
    /// Connection id.
    pub client: String,
    /// The connection token's `info` claim, JSON text.
    pub conn_info: Option<String>,
    /// The subscription token's `info` claim, JSON text.
    pub chan_info: Option<String>,
}

/// A publication on the wire; offset travels outside (the JetStream sequence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePublication {
    /// The payload, JSON text.
    pub data: String,
    /// The publisher, when a client published.
    pub info: Option<WireClientInfo>,
    /// Free-form string tags set by the publisher.
    pub tags: BTreeMap<String, String>,
}

/// Actions on connections, broadcast to every node (server API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Close the user's connections (or one client's) with a code.
    Disconnect {
        /// The user whose connections close.
        user: String,
        /// Only this connection of the user (`None`: all of them).
        client: Option<String>,
        /// Connection ids left open.
        whitelist: Vec<String>,
        /// The disconnect code sent to the clients.
        code: u16,
        /// Custom reason text; empty: the code's own.
        reason: String,
    },
    /// Subscribe the user's connections to a channel.
    Subscribe {
        /// The user whose connections subscribe.
        user: String,
        /// The channel, `namespace:name`.
        channel: String,
        /// Only this connection of the user (`None`: all of them).
        client: Option<String>,
        /// Channel info attached to the subscription (like a subscription token's `info`),
        /// JSON text.
        info: Option<String>,
        /// Recover from this offset: the position the user last saw.
        recover_offset: Option<u64>,
        /// The epoch `recover_offset` belongs to.
        recover_epoch: Option<String>,
    },
    /// Unsubscribe the user's connections from a channel.
    Unsubscribe {
        /// The user whose connections unsubscribe.
        user: String,
        /// The channel, `namespace:name`.
        channel: String,
        /// Only this connection of the user (`None`: all of them).
        client: Option<String>,
    },
    /// Change when the user's connections expire (the server API's `refresh`). Added
    /// last: a node of an older version fails to decode it and ignores it.
    Refresh {
        /// The user whose connections are refreshed.
        user: String,
        /// Only this connection of the user (`None`: all of them).
        client: Option<String>,
        /// Close them now with 3005 "expired" instead.
        expired: bool,
        /// New expiry, unix seconds; 0: never expire.
        expire_at: u64,
    },
}

/// A node's heartbeat: alive, and what it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeStatus {
    /// The node's id (`HERALD_NODE_ID`).
    pub id: String,
    /// The node's version.
    pub version: String,
    /// Connections it serves.
    pub num_clients: u64,
    /// Distinct users among them.
    pub num_users: u64,
    /// Channels with at least one local subscriber.
    pub num_channels: u64,
    /// Subscriptions over all its connections.
    pub num_subs: u64,
    /// Seconds since the node started.
    pub uptime: u64,
    /// Draining nodes take no new connections.
    pub draining: bool,
}

/// Everything nodes send each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// A publication (channel implied by the subject).
    Publication(WirePublication),
    /// Someone joined the channel named by the subject.
    Join(WireClientInfo),
    /// Someone left the channel named by the subject.
    Leave(WireClientInfo),
    /// A server API action for every node.
    Control(Control),
    /// Periodic liveness and numbers.
    Heartbeat(NodeStatus),
    /// Question to every node: your local members of `channel`.
    PresenceQuery {
        /// The channel asked about.
        channel: String,
    },
    /// Answer: connection id → who, from node `node`.
    PresenceReply {
        /// The answering node's id.
        node: String,
        /// Its local members: connection id and who.
        members: Vec<(String, WireClientInfo)>,
    },
    /// Question to every node: your channels and local subscriber counts.
    ChannelsQuery,
    /// Answer to [`Envelope::ChannelsQuery`].
    ChannelsReply {
        /// The answering node's id.
        node: String,
        /// Its channels and the local subscriber count of each.
        channels: Vec<(String, u64)>,
    },
    /// Someone left because their node is draining: they will likely rejoin on another
    /// node at once, so receivers hold this leave back for a grace and drop it (and
    /// the rejoin's join) if they do. Older nodes reject it cleanly.
    LeaveMoving(WireClientInfo),
    /// A publication published in delta mode (server API `delta`, namespace
    /// `delta_publish`): receivers may send it to delta subscribers as a fossil delta.
    /// Last variant: older nodes reject it cleanly.
    DeltaPublication(WirePublication),
}

/// Encodes an envelope with the version byte.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let mut out = vec![VERSION];
    let body = bincode::serde::encode_to_vec(envelope, config())
        .expect("envelopes always encode: no maps with non-string keys, no unsized data");
    out.extend_from_slice(&body);
    out
}

/// Decodes an envelope, checking the version byte.
pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    let (env, used) = bincode::serde::decode_from_slice::<Envelope, _>(body, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes",
            body.len() - used
        )));
    }
    Ok(env)
}

fn raw(text: &Option<String>, what: &'static str) -> Result<Option<RawJson>, CodecError> {
    text.as_deref()
        .map(|t| RawJson::parse(t).map_err(|_| CodecError::InvalidJson(what)))
        .transpose()
}

impl WireClientInfo {
    /// From the protocol type.
    pub fn from_info(info: &ClientInfo) -> Self {
        WireClientInfo {
            user: info.user.clone(),
            client: info.client.clone(),
            conn_info: info.conn_info.as_ref().map(|r| r.as_str().to_owned()),
            chan_info: info.chan_info.as_ref().map(|r| r.as_str().to_owned()),
        }
    }

    /// To the protocol type, validating the JSON inside.
    pub fn to_info(&self) -> Result<ClientInfo, CodecError> {
        Ok(ClientInfo {
            user: self.user.clone(),
            client: self.client.clone(),
            conn_info: raw(&self.conn_info, "conn_info")?,
            chan_info: raw(&self.chan_info, "chan_info")?,
        })
    }
}

/// Encodes a publication (its offset is not carried: the stream assigns it).
/// A publication in delta mode travels as [`Envelope::DeltaPublication`].
pub fn encode_publication(p: &Publication) -> Vec<u8> {
    let w = WirePublication {
        data: p.data.as_str().to_owned(),
        info: p.info.as_ref().map(WireClientInfo::from_info),
        tags: p.tags.clone(),
    };
    encode(&if p.delta_publish {
        Envelope::DeltaPublication(w)
    } else {
        Envelope::Publication(w)
    })
}

/// Decodes what arrives on a channel subject: an envelope from a node, or plain JSON
/// published by a backend. The offset is left at 0 for the caller to fill in.
pub fn decode_publication(bytes: &[u8]) -> Result<Publication, CodecError> {
    let first = *bytes.first().ok_or(CodecError::Empty)?;
    if first < 0x09 {
        let (w, delta_publish) = match decode(bytes)? {
            Envelope::Publication(w) => (w, false),
            Envelope::DeltaPublication(w) => (w, true),
            _ => return Err(CodecError::NotPublication),
        };
        return Ok(Publication {
            data: RawJson::parse(&w.data).map_err(|_| CodecError::InvalidJson("data"))?,
            info: w.info.as_ref().map(WireClientInfo::to_info).transpose()?,
            offset: 0,
            tags: w.tags,
            delta: false,
            delta_publish,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidJson("data"))?;
    Ok(Publication {
        data: RawJson::parse(text).map_err(|_| CodecError::InvalidJson("data"))?,
        info: None,
        offset: 0,
        tags: BTreeMap::new(),
        delta: false,
        delta_publish: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Envelope> {
        let who = WireClientInfo {
            user: "42".into(),
            client: "c".into(),
            conn_info: Some(r#"{"name":"Ann"}"#.into()),
            chan_info: None,
        };
        vec![
            Envelope::Publication(WirePublication {
                data: r#"{"x":1}"#.into(),
                info: Some(who.clone()),
                tags: BTreeMap::from([("k".into(), "v".into())]),
            }),
            Envelope::Join(who.clone()),
            Envelope::Leave(who.clone()),
            Envelope::LeaveMoving(who.clone()),
            Envelope::Control(Control::Disconnect {
                user: "u".into(),
                client: None,
                whitelist: vec!["a".into()],
                code: 3011,
                reason: "bye".into(),
            }),
            Envelope::Heartbeat(NodeStatus {
                id: "n1".into(),
                num_clients: 7,
                ..Default::default()
            }),
            Envelope::PresenceQuery {
                channel: "c".into(),
            },
            Envelope::PresenceReply {
                node: "n1".into(),
                members: vec![("c".into(), who)],
            },
            Envelope::ChannelsQuery,
            Envelope::ChannelsReply {
                node: "n1".into(),
                channels: vec![("a".into(), 2)],
            },
        ]
    }

    #[test]
    fn every_envelope_round_trips() {
        for e in samples() {
            let bytes = encode(&e);
            assert_eq!(bytes[0], VERSION);
            assert_eq!(decode(&bytes).unwrap(), e);
        }
    }

    #[test]
    fn unknown_version_is_rejected_not_misread() {
        let mut bytes = encode(&Envelope::ChannelsQuery);
        bytes[0] = 2;
        assert_eq!(decode(&bytes), Err(CodecError::UnknownVersion(2)));
        assert_eq!(decode(&[]), Err(CodecError::Empty));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[1u8][..],
            &[1, 255, 255, 255, 255, 255, 255, 255, 255, 255],
            &[1, 0, 250, 0, 0, 0, 0],
        ] {
            assert!(decode(bytes).is_err(), "{bytes:?}");
        }
        let mut bytes = encode(&Envelope::ChannelsQuery);
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn publications_from_nodes_and_from_backends() {
        let p = Publication {
            data: RawJson::parse(r#"{"t":"hi"}"#).unwrap(),
            info: Some(ClientInfo {
                user: "u".into(),
                ..Default::default()
            }),
            offset: 9,
            tags: BTreeMap::new(),
            delta: false,
            delta_publish: false,
        };
        let back = decode_publication(&encode_publication(&p)).unwrap();
        assert!(!back.delta_publish);
        let delta = Publication {
            delta_publish: true,
            ..p.clone()
        };
        let bytes = encode_publication(&delta);
        assert!(matches!(decode(&bytes), Ok(Envelope::DeltaPublication(_))));
        assert!(
            decode_publication(&bytes).unwrap().delta_publish,
            "travels between nodes"
        );
        assert_eq!(back.data, p.data);
        assert_eq!(back.info, p.info);
        assert_eq!(back.offset, 0, "offsets travel outside the envelope");
        let plain = decode_publication(br#" {"from":"backend"}"#).unwrap();
        assert_eq!(plain.data.as_str(), r#"{"from":"backend"}"#);
        assert!(plain.info.is_none());
        assert_eq!(
            decode_publication(b"not json"),
            Err(CodecError::InvalidJson("data"))
        );
        assert_eq!(
            decode_publication(&encode(&Envelope::ChannelsQuery)),
            Err(CodecError::NotPublication)
        );
    }
}
