//! The two encodings of the client protocol behind one interface: what a connection
//! sends is a value ([`ReplyBody`], [`PushBody`]) until the connection's [`Encoding`]
//! turns it into the bytes of one frame element.
//!
//! - JSON: one object per element; a frame joins elements with `\n` (text frame).
//! - Protobuf: one varint length-delimited `Reply` per element; a frame is elements
//!   back to back (binary frame).
//!
//! A push for many connections ([`Broadcast`]) is encoded at most once per encoding,
//! on first use: a publication costs one JSON encoding when a JSON subscriber is
//! there, one Protobuf encoding when a Protobuf subscriber is there, and every
//! subscriber gets a clone of the same `Bytes`.

use super::command::{decode_frame, Command, DecodeError};
use super::protobuf::{decode_protobuf_frame, delimited, pb};
use super::reply::{
    encode_disconnect_push, encode_error, encode_join_push, encode_leave_push, encode_message_push,
    encode_pub_push, encode_refresh_push, encode_reply, encode_reply_raw, encode_subscribe_push,
    encode_unsubscribe_push, ClientInfo, ConnectResult, HistoryResult, PresenceResult,
    PresenceStatsResult, Publication, RefreshResult, ReplyError, SubscribeResult,
};
use super::RawJson;
use bytes::Bytes;
use std::cell::OnceCell;

/// The encoding a client chose at the upgrade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JSON objects in text frames (the default).
    #[default]
    Json,
    /// Length-delimited Protobuf messages in binary frames (subprotocol
    /// `centrifuge-protobuf`, or `?cf_protocol=protobuf`).
    Protobuf,
}

/// The result of a command, before encoding.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyBody {
    /// `connect`.
    Connect(ConnectResult),
    /// `subscribe`.
    Subscribe(SubscribeResult),
    /// `unsubscribe` (empty result).
    Unsubscribe,
    /// `publish` (empty result).
    Publish,
    /// `presence`.
    Presence(PresenceResult),
    /// `presence_stats`.
    PresenceStats(PresenceStatsResult),
    /// `history`.
    History(HistoryResult),
    /// `ping` (empty result).
    Ping,
    /// `refresh`.
    Refresh(RefreshResult),
    /// `sub_refresh` (only `expires` and `ttl` are sent).
    SubRefresh(RefreshResult),
    /// `rpc`: the backend's answer data (`None`: an empty result).
    Rpc(Option<RawJson>),
}

/// A push, before encoding. Borrowed: it is encoded from the values where they are.
#[derive(Clone, Copy, Debug)]
pub enum PushBody<'a> {
    /// A publication.
    Pub(&'a Publication),
    /// Someone joined the channel.
    Join(&'a ClientInfo),
    /// Someone left the channel.
    Leave(&'a ClientInfo),
    /// The server ended a subscription.
    Unsubscribe {
        /// Unsubscribe code (see `codes::unsubscribe`).
        code: u32,
        /// Why.
        reason: &'a str,
    },
    /// The server subscribed the client (server-side subscription).
    Subscribe(&'a SubscribeResult),
    /// The server closes the connection; sent before the close frame.
    Disconnect {
        /// Disconnect code, also the close code.
        code: u16,
        /// Why.
        reason: &'a str,
        /// Whether the client should reconnect.
        reconnect: bool,
    },
    /// Asynchronous data for one connection.
    Message(&'a RawJson),
    /// The server extended the connection.
    Refresh {
        /// The connection still expires.
        expires: bool,
        /// Seconds until it does.
        ttl: u32,
    },
}

/// The JSON ping `{}`, and the Protobuf one: an empty `Reply` (length 0).
const JSON_PING: &[u8] = b"{}";
const PROTOBUF_PING: &[u8] = &[0];

impl Encoding {
    /// Whether frames are binary (Protobuf) rather than text (JSON).
    pub fn is_binary(self) -> bool {
        self == Encoding::Protobuf
    }

    /// The name used in logs and metric labels: `json` or `protobuf`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Protobuf => "protobuf",
        }
    }

    /// Decodes one complete message from a client into its commands.
    pub fn decode_frame(
        self,
        payload: &[u8],
        max_commands: usize,
    ) -> Result<Vec<Command>, DecodeError> {
        match self {
            Encoding::Json => decode_frame(payload, max_commands),
            Encoding::Protobuf => decode_protobuf_frame(payload, max_commands),
        }
    }

    /// The server's ping.
    pub fn ping(self) -> Bytes {
        Bytes::from_static(match self {
            Encoding::Json => JSON_PING,
            Encoding::Protobuf => PROTOBUF_PING,
        })
    }

    /// The reply to command `id`.
    pub fn reply(self, id: u32, body: &ReplyBody) -> Bytes {
        match self {
            Encoding::Json => Bytes::from(json_reply(id, body)),
            Encoding::Protobuf => Bytes::from(delimited(&protobuf_reply(id, body))),
        }
    }

    /// The error reply to command `id`.
    pub fn error(self, id: u32, error: &ReplyError) -> Bytes {
        match self {
            Encoding::Json => Bytes::from(encode_error(id, error)),
            Encoding::Protobuf => Bytes::from(delimited(&pb::Reply {
                id,
                error: Some(error.into()),
                ..Default::default()
            })),
        }
    }

    /// A push in `channel` (empty for the connection-level ones).
    pub fn push(self, channel: &str, body: &PushBody<'_>) -> Bytes {
        match self {
            Encoding::Json => json_push(channel, body),
            Encoding::Protobuf => Bytes::from(delimited(&pb::Reply {
                push: Some(protobuf_push(channel, body)),
                ..Default::default()
            })),
        }
    }
}

fn json_reply(id: u32, body: &ReplyBody) -> Vec<u8> {
    const EMPTY: &[u8] = b"{}";
    match body {
        ReplyBody::Connect(r) => encode_reply(id, "connect", r),
        ReplyBody::Subscribe(r) => encode_reply(id, "subscribe", r),
        ReplyBody::Unsubscribe => encode_reply_raw(id, "unsubscribe", EMPTY),
        ReplyBody::Publish => encode_reply_raw(id, "publish", EMPTY),
        ReplyBody::Presence(r) => encode_reply(id, "presence", r),
        ReplyBody::PresenceStats(r) => encode_reply(id, "presence_stats", r),
        ReplyBody::History(r) => encode_reply(id, "history", r),
        ReplyBody::Ping => encode_reply_raw(id, "ping", EMPTY),
        ReplyBody::Refresh(r) => encode_reply(id, "refresh", r),
        ReplyBody::SubRefresh(r) => encode_reply(id, "sub_refresh", r),
        ReplyBody::Rpc(None) => encode_reply_raw(id, "rpc", EMPTY),
        ReplyBody::Rpc(Some(data)) => encode_reply(id, "rpc", &RpcData { data }),
    }
}

/// The JSON `rpc` result with data: `{"data":...}`.
#[derive(serde::Serialize)]
struct RpcData<'a> {
    data: &'a RawJson,
}

fn protobuf_reply(id: u32, body: &ReplyBody) -> pb::Reply {
    let mut reply = pb::Reply {
        id,
        ..Default::default()
    };
    match body {
        ReplyBody::Connect(r) => reply.connect = Some(r.into()),
        ReplyBody::Subscribe(r) => reply.subscribe = Some(r.into()),
        ReplyBody::Unsubscribe => reply.unsubscribe = Some(pb::UnsubscribeResult {}),
        ReplyBody::Publish => reply.publish = Some(pb::PublishResult {}),
        ReplyBody::Presence(r) => reply.presence = Some(r.into()),
        ReplyBody::PresenceStats(r) => reply.presence_stats = Some(r.into()),
        ReplyBody::History(r) => reply.history = Some(r.into()),
        ReplyBody::Ping => reply.ping = Some(pb::PingResult {}),
        ReplyBody::Refresh(r) => reply.refresh = Some(r.into()),
        ReplyBody::SubRefresh(r) => {
            reply.sub_refresh = Some(pb::SubRefreshResult {
                expires: r.expires,
                ttl: r.ttl,
            })
        }
        ReplyBody::Rpc(data) => {
            reply.rpc = Some(pb::RpcResult {
                data: data
                    .as_ref()
                    .map(|d| d.as_str().as_bytes().to_vec())
                    .unwrap_or_default(),
            })
        }
    }
    reply
}

fn json_push(channel: &str, body: &PushBody<'_>) -> Bytes {
    match *body {
        PushBody::Pub(p) => encode_pub_push(channel, p),
        PushBody::Join(i) => encode_join_push(channel, i),
        PushBody::Leave(i) => encode_leave_push(channel, i),
        PushBody::Unsubscribe { code, reason } => encode_unsubscribe_push(channel, code, reason),
        PushBody::Subscribe(r) => encode_subscribe_push(channel, r),
        PushBody::Disconnect {
            code,
            reason,
            reconnect,
        } => encode_disconnect_push(code, reason, reconnect),
        PushBody::Message(data) => encode_message_push(data),
        PushBody::Refresh { expires, ttl } => encode_refresh_push(expires, ttl),
    }
}

fn protobuf_push(channel: &str, body: &PushBody<'_>) -> pb::Push {
    let mut push = pb::Push {
        channel: channel.to_owned(),
        ..Default::default()
    };
    match *body {
        PushBody::Pub(p) => push.r#pub = Some(p.into()),
        PushBody::Join(i) => {
            push.join = Some(pb::Join {
                info: Some(i.into()),
            })
        }
        PushBody::Leave(i) => {
            push.leave = Some(pb::Leave {
                info: Some(i.into()),
            })
        }
        PushBody::Unsubscribe { code, reason } => {
            push.unsubscribe = Some(pb::Unsubscribe {
                code,
                reason: reason.to_owned(),
            })
        }
        PushBody::Subscribe(r) => {
            push.subscribe = Some(pb::Subscribe {
                recoverable: r.recoverable,
                epoch: r.epoch.clone(),
                offset: r.offset,
                positioned: r.positioned,
                data: r
                    .data
                    .as_ref()
                    .map(|d| d.as_str().as_bytes().to_vec())
                    .unwrap_or_default(),
            })
        }
        PushBody::Disconnect {
            code,
            reason,
            reconnect,
        } => {
            push.disconnect = Some(pb::Disconnect {
                code: code.into(),
                reason: reason.to_owned(),
                reconnect,
            })
        }
        PushBody::Message(data) => {
            push.message = Some(pb::Message {
                data: data.as_str().as_bytes().to_vec(),
            })
        }
        PushBody::Refresh { expires, ttl } => push.refresh = Some(pb::Refresh { expires, ttl }),
    }
    push
}

/// A push for every local subscriber of a channel, encoded at most once per encoding,
/// when the first subscriber of that encoding asks for it. Lives for one fan-out.
pub struct Broadcast<'a> {
    channel: &'a str,
    body: PushBody<'a>,
    json: OnceCell<Bytes>,
    protobuf: OnceCell<Bytes>,
}

impl<'a> Broadcast<'a> {
    /// `body` in `channel`, not encoded yet.
    pub fn new(channel: &'a str, body: PushBody<'a>) -> Self {
        Broadcast {
            channel,
            body,
            json: OnceCell::new(),
            protobuf: OnceCell::new(),
        }
    }

    /// What is pushed.
    pub fn body(&self) -> &PushBody<'a> {
        &self.body
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        self.channel
    }

    /// The push in `encoding`: encoded now if this is the first ask, else the same bytes.
    pub fn get(&self, encoding: Encoding) -> &Bytes {
        let cell = match encoding {
            Encoding::Json => &self.json,
            Encoding::Protobuf => &self.protobuf,
        };
        cell.get_or_init(|| encoding.push(self.channel, &self.body))
    }

    /// Whether the push was encoded in `encoding` (for tests of encode-once).
    pub fn is_encoded(&self, encoding: Encoding) -> bool {
        match encoding {
            Encoding::Json => self.json.get().is_some(),
            Encoding::Protobuf => self.protobuf.get().is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::collections::BTreeMap;

    fn publication() -> Publication {
        Publication {
            tags: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            ..crate::protocol::reply::tests::publication()
        }
    }

    fn one_reply(bytes: &[u8]) -> pb::Reply {
        let mut rest = bytes;
        let r = pb::Reply::decode_length_delimited(&mut rest).unwrap();
        assert!(rest.is_empty(), "one length-delimited reply");
        r
    }

    #[test]
    fn json_is_what_it_was() {
        let p = publication();
        assert_eq!(
            Encoding::Json.push("chat:1", &PushBody::Pub(&p)),
            encode_pub_push("chat:1", &p)
        );
        assert_eq!(
            &Encoding::Json.reply(3, &ReplyBody::Ping)[..],
            br#"{"id":3,"ping":{}}"#
        );
        assert_eq!(&Encoding::Json.ping()[..], b"{}");
    }

    #[test]
    fn protobuf_replies_and_pushes_carry_the_same_values() {
        let p = publication();
        let push = one_reply(&Encoding::Protobuf.push("chat:1", &PushBody::Pub(&p)));
        assert_eq!(push.id, 0);
        let push = push.push.unwrap();
        assert_eq!(push.channel, "chat:1");
        let got = push.r#pub.unwrap();
        assert_eq!(got.data, br#"{"text":"hi"}"#, "JSON text as bytes");
        assert_eq!(got.offset, 3);
        assert_eq!(got.tags["k"], "v");
        let info = got.info.unwrap();
        assert_eq!((info.user.as_str(), info.client.as_str()), ("42", "c1"));
        assert_eq!(info.conn_info, br#"{"name":"Ann"}"#);
        assert!(info.chan_info.is_empty());

        let history = HistoryResult {
            publications: vec![p.clone(), p],
            epoch: "e".into(),
            offset: 9,
        };
        let r = one_reply(&Encoding::Protobuf.reply(7, &ReplyBody::History(history)));
        assert_eq!(r.id, 7);
        let h = r.history.unwrap();
        assert_eq!(
            (h.publications.len(), h.epoch.as_str(), h.offset),
            (2, "e", 9)
        );

        let e = one_reply(
            &Encoding::Protobuf.error(8, &super::super::ErrorCode::PermissionDenied.into()),
        );
        let err = e.error.unwrap();
        assert_eq!(
            (e.id, err.code, err.message.as_str()),
            (8, 103, "permission denied")
        );

        let d = PushBody::Disconnect {
            code: 3501,
            reason: "bad request",
            reconnect: false,
        };
        let d = one_reply(&Encoding::Protobuf.push("", &d)).push.unwrap();
        let d = d.disconnect.unwrap();
        assert_eq!(
            (d.code, d.reason.as_str(), d.reconnect),
            (3501, "bad request", false)
        );

        // Empty results are present (the SDKs tell a reply by its result field).
        assert!(one_reply(&Encoding::Protobuf.reply(1, &ReplyBody::Publish))
            .publish
            .is_some());
        assert_eq!(&Encoding::Protobuf.ping()[..], &[0], "an empty reply");
    }

    #[test]
    fn a_broadcast_encodes_each_form_once_on_demand() {
        let p = publication();
        let b = Broadcast::new("c", PushBody::Pub(&p));
        assert!(!b.is_encoded(Encoding::Json) && !b.is_encoded(Encoding::Protobuf));
        let first = b.get(Encoding::Protobuf).clone();
        assert!(!b.is_encoded(Encoding::Json), "JSON only when asked for");
        assert_eq!(
            first.as_ptr(),
            b.get(Encoding::Protobuf).as_ptr(),
            "the same bytes"
        );
        assert_eq!(b.get(Encoding::Json), &encode_pub_push("c", &p));
    }
}
