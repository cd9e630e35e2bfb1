//! Replies and pushes sent to clients, and their encoders.
//!
//! Every encoder returns one JSON object without a trailing newline; the session joins
//! several with `\n` into one frame. A publication push is encoded once and the same
//! bytes go to every subscriber.

use super::{ErrorCode, RawJson, StreamPosition};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

fn is_zero(n: &u64) -> bool {
    *n == 0
}
fn is_zero32(n: &u32) -> bool {
    *n == 0
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// Who a publication, join or leave comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// User id from the token's `sub` (empty for anonymous).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Connection id assigned by the node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client: String,
    /// The connection token's `info` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_info: Option<RawJson>,
    /// The subscription token's `info` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chan_info: Option<RawJson>,
}

/// One message in a channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The payload, arbitrary JSON.
    pub data: RawJson,
    /// The publisher, when a client published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    /// Position in the channel's stream; 0 for channels without history.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// Free-form string tags set by the publisher.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `data` is a fossil delta (a JSON string) against the previous publication's
    /// data; only ever sent to a subscription in delta mode.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delta: bool,
    /// Published in delta mode (server API `delta`, namespace `delta_publish`): delta
    /// subscribers may get it as a delta. Carried between nodes, never sent to clients.
    #[serde(skip)]
    pub delta_publish: bool,
}

/// Result of `connect`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ConnectResult {
    /// Connection id the node assigned.
    pub client: String,
    /// Server version, for the SDK's logs.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The connection expires (its token has `exp`) and must be refreshed.
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    /// Seconds until expiry, when `expires`.
    #[serde(skip_serializing_if = "is_zero32")]
    pub ttl: u32,
    /// Custom data for the client, answering the connect's `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<RawJson>,
    /// Results of the subscriptions requested in the connect, by channel.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub subs: HashMap<String, SubscribeResult>,
    /// Seconds between server pings.
    #[serde(skip_serializing_if = "is_zero32")]
    pub ping: u32,
    /// The server expects an answer to its pings.
    #[serde(skip_serializing_if = "is_false")]
    pub pong: bool,
    /// The node the client landed on.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
}

/// Result of `subscribe` (also the body of a `subscribe` push).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SubscribeResult {
    /// The subscription expires (its token has `exp`) and must be refreshed.
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    /// Seconds until expiry, when `expires`.
    #[serde(skip_serializing_if = "is_zero32")]
    pub ttl: u32,
    /// The channel keeps history: the client may recover later from `(epoch, offset)`.
    #[serde(skip_serializing_if = "is_false")]
    pub recoverable: bool,
    /// Identity of the channel's stream.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// Publications recovered since the requested position, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    /// Every missed publication was recovered (`false` with `was_recovering`: not possible).
    #[serde(skip_serializing_if = "is_false")]
    pub recovered: bool,
    /// Offset of the newest publication in the stream.
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// Publications carry offsets the client can check for gaps.
    #[serde(skip_serializing_if = "is_false")]
    pub positioned: bool,
    /// Custom data for the subscriber.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<RawJson>,
    /// The client asked to recover (so `recovered: false` means it could not).
    #[serde(skip_serializing_if = "is_false")]
    pub was_recovering: bool,
    /// Delta mode is on: every publication's `data` is a JSON string, full or a fossil
    /// delta (`delta: true`) against the previous one.
    #[serde(skip_serializing_if = "is_false")]
    pub delta: bool,
}

/// Result of `refresh` and `sub_refresh`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RefreshResult {
    /// Connection id (empty: unchanged).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client: String,
    /// Server version (empty: unchanged).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The new token expires too.
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    /// Seconds until the new expiry, when `expires`.
    #[serde(skip_serializing_if = "is_zero32")]
    pub ttl: u32,
}

/// Result of `history`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryResult {
    /// The publications asked for, oldest first unless `reverse`. Written even when
    /// empty, as Centrifugo does.
    #[serde(default)]
    pub publications: Vec<Publication>,
    /// Identity of the channel's stream.
    #[serde(default)]
    pub epoch: String,
    /// Offset of the newest publication in the stream.
    #[serde(default)]
    pub offset: u64,
}

impl HistoryResult {
    /// The stream position this result reports.
    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.offset,
            epoch: self.epoch.clone(),
        }
    }
}

/// Result of `presence`: connection id → who.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PresenceResult {
    /// Connection id → who, for every member of the channel.
    pub presence: HashMap<String, ClientInfo>,
}

/// Result of `presence_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceStatsResult {
    /// Connections in the channel.
    pub num_clients: u32,
    /// Distinct users among them.
    pub num_users: u32,
}

/// An error reply body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplyError {
    /// The protocol's error code (see `ErrorCode`).
    pub code: u32,
    /// Its text.
    pub message: String,
    /// The client may retry the same command later.
    #[serde(skip_serializing_if = "is_false")]
    pub temporary: bool,
}

impl From<ErrorCode> for ReplyError {
    fn from(code: ErrorCode) -> Self {
        ReplyError {
            code: code.code(),
            message: code.message().to_owned(),
            temporary: code.temporary(),
        }
    }
}

/// Body of a `disconnect` push.
#[derive(Clone, Debug, Serialize)]
pub struct Disconnect {
    /// The protocol's disconnect code (see `DisconnectCode`).
    pub code: u32,
    /// Why, for the client's logs.
    pub reason: String,
    /// The client should reconnect (derived from the code's range).
    pub reconnect: bool,
}

/// `{"id":N,"<method>":<result>}`.
pub fn encode_reply<T: Serialize>(id: u32, method: &str, result: &T) -> Vec<u8> {
    let body = serde_json::to_vec(result).expect("reply types always serialise");
    encode_reply_raw(id, method, &body)
}

/// `{"id":N,"<method>":<body>}` around an already encoded result body.
pub fn encode_reply_raw(id: u32, method: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + method.len() + 16);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(body);
    out.push(b'}');
    out
}

/// `{"id":N,"error":{...}}`.
pub fn encode_error(id: u32, error: &ReplyError) -> Vec<u8> {
    #[derive(Serialize)]
    struct E<'a> {
        id: u32,
        error: &'a ReplyError,
    }
    serde_json::to_vec(&E { id, error }).expect("error replies always serialise")
}

fn encode_push<T: Serialize>(channel: &str, kind: &str, body: &T) -> Bytes {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"{\"push\":{");
    if !channel.is_empty() {
        out.extend_from_slice(b"\"channel\":");
        serde_json::to_writer(&mut out, channel).expect("a string serialises");
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\":");
    serde_json::to_writer(&mut out, body).expect("push types always serialise");
    out.extend_from_slice(b"}}");
    Bytes::from(out)
}

/// The publication push, encoded once for all subscribers.
pub fn encode_pub_push(channel: &str, publication: &Publication) -> Bytes {
    encode_push(channel, "pub", publication)
}

#[derive(Serialize)]
struct InfoBody<'a> {
    info: &'a ClientInfo,
}

/// `join` push.
pub fn encode_join_push(channel: &str, info: &ClientInfo) -> Bytes {
    encode_push(channel, "join", &InfoBody { info })
}

/// `leave` push.
pub fn encode_leave_push(channel: &str, info: &ClientInfo) -> Bytes {
    encode_push(channel, "leave", &InfoBody { info })
}

/// `unsubscribe` push: the server ended a subscription.
pub fn encode_unsubscribe_push(channel: &str, code: u32, reason: &str) -> Bytes {
    #[derive(Serialize)]
    struct U<'a> {
        code: u32,
        reason: &'a str,
    }
    encode_push(channel, "unsubscribe", &U { code, reason })
}

/// `subscribe` push: the server subscribed the client (server-side subscription).
pub fn encode_subscribe_push(channel: &str, result: &SubscribeResult) -> Bytes {
    encode_push(channel, "subscribe", result)
}

/// `disconnect` push, sent before the close frame carrying the same code.
pub fn encode_disconnect_push(code: u16, reason: &str, reconnect: bool) -> Bytes {
    encode_push(
        "",
        "disconnect",
        &Disconnect {
            code: code.into(),
            reason: reason.to_owned(),
            reconnect,
        },
    )
}

/// `message` push: asynchronous data for one connection.
pub fn encode_message_push(data: &RawJson) -> Bytes {
    #[derive(Serialize)]
    struct M<'a> {
        data: &'a RawJson,
    }
    encode_push("", "message", &M { data })
}

/// `refresh` push: the server extended the connection.
pub fn encode_refresh_push(expires: bool, ttl: u32) -> Bytes {
    encode_push(
        "",
        "refresh",
        &RefreshResult {
            expires,
            ttl,
            ..Default::default()
        },
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A publication with client info, shared with the encoding tests.
    pub(crate) fn publication() -> Publication {
        Publication {
            data: RawJson::parse(r#"{"text":"hi"}"#).unwrap(),
            info: Some(ClientInfo {
                user: "42".into(),
                client: "c1".into(),
                conn_info: Some(RawJson::parse(r#"{"name":"Ann"}"#).unwrap()),
                chan_info: None,
            }),
            offset: 3,
            tags: BTreeMap::new(),
            delta: false,
            delta_publish: false,
        }
    }

    #[test]
    fn pub_push_matches_the_wire_shape() {
        let bytes = encode_pub_push("chat:1", &publication());
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"push":{"channel":"chat:1","pub":{"data":{"text":"hi"},"info":{"user":"42","client":"c1","conn_info":{"name":"Ann"}},"offset":3}}}"#
        );
    }

    #[test]
    fn replies_and_errors() {
        let r = encode_reply(7, "publish", &serde_json::json!({}));
        assert_eq!(r, br#"{"id":7,"publish":{}}"#);
        let e = encode_error(8, &ErrorCode::PermissionDenied.into());
        assert_eq!(
            e,
            br#"{"id":8,"error":{"code":103,"message":"permission denied"}}"#
        );
        let d = encode_disconnect_push(3001, "shutdown", true);
        assert_eq!(
            &d[..],
            br#"{"push":{"disconnect":{"code":3001,"reason":"shutdown","reconnect":true}}}"#
        );
    }

    #[test]
    fn publication_round_trips() {
        let p = publication();
        let text = serde_json::to_string(&p).unwrap();
        let back: Publication = serde_json::from_str(&text).unwrap();
        assert_eq!(p, back);
    }
}
