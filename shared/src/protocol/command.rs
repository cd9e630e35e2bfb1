//! Commands sent by clients, and the decoder for one text frame.

use super::{RawJson, StreamPosition};
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;

/// One command: `{"id":N,"<method>":{...}}`. An object with no method and no id is a
/// pong (the client's answer to the server's `{}` ping).
#[derive(Debug, Default, Deserialize)]
pub struct Command {
    /// Correlates the reply; 0 only for pongs and `send`, which get no reply.
    #[serde(default)]
    pub id: u32,
    /// `connect`: the first command of a connection.
    #[serde(default)]
    pub connect: Option<ConnectRequest>,
    /// `subscribe` to a channel.
    #[serde(default)]
    pub subscribe: Option<SubscribeRequest>,
    /// `unsubscribe` from a channel.
    #[serde(default)]
    pub unsubscribe: Option<ChannelRequest>,
    /// `publish` into a channel.
    #[serde(default)]
    pub publish: Option<PublishRequest>,
    /// `presence`: who is in a channel.
    #[serde(default)]
    pub presence: Option<ChannelRequest>,
    /// `presence_stats`: how many clients and users are in a channel.
    #[serde(default)]
    pub presence_stats: Option<ChannelRequest>,
    /// `history`: a channel's recent publications and stream position.
    #[serde(default)]
    pub history: Option<HistoryRequest>,
    /// `ping` from the client (its body carries nothing).
    #[serde(default)]
    pub ping: Option<serde::de::IgnoredAny>,
    /// `send`: a message to the server that gets no reply.
    #[serde(default)]
    pub send: Option<SendRequest>,
    /// `rpc`: a call answered by the server.
    #[serde(default)]
    pub rpc: Option<RpcRequest>,
    /// `refresh`: a new connection token.
    #[serde(default)]
    pub refresh: Option<RefreshRequest>,
    /// `sub_refresh`: a new subscription token.
    #[serde(default)]
    pub sub_refresh: Option<SubRefreshRequest>,
}

/// The method of a command, with its request.
#[derive(Debug)]
pub enum Method {
    /// `connect`.
    Connect(ConnectRequest),
    /// `subscribe`.
    Subscribe(SubscribeRequest),
    /// `unsubscribe`.
    Unsubscribe(ChannelRequest),
    /// `publish`.
    Publish(PublishRequest),
    /// `presence`.
    Presence(ChannelRequest),
    /// `presence_stats`.
    PresenceStats(ChannelRequest),
    /// `history`.
    History(HistoryRequest),
    /// `ping` from the client.
    Ping,
    /// `send` (no reply).
    Send(SendRequest),
    /// `rpc`.
    Rpc(RpcRequest),
    /// `refresh`.
    Refresh(RefreshRequest),
    /// `sub_refresh`.
    SubRefresh(SubRefreshRequest),
    /// `{}`: the answer to a server ping.
    Pong,
    /// An id with no method we know.
    Unknown,
}

impl Method {
    /// The method's name as it appears on the wire (used in metrics labels).
    pub fn name(&self) -> &'static str {
        match self {
            Method::Connect(_) => "connect",
            Method::Subscribe(_) => "subscribe",
            Method::Unsubscribe(_) => "unsubscribe",
            Method::Publish(_) => "publish",
            Method::Presence(_) => "presence",
            Method::PresenceStats(_) => "presence_stats",
            Method::History(_) => "history",
            Method::Ping => "ping",
            Method::Send(_) => "send",
            Method::Rpc(_) => "rpc",
            Method::Refresh(_) => "refresh",
            Method::SubRefresh(_) => "sub_refresh",
            Method::Pong => "pong",
            Method::Unknown => "unknown",
        }
    }
}

impl Command {
    /// Splits the command into its id and its one method. More than one method in one
    /// command is malformed.
    pub fn into_method(self) -> Result<(u32, Method), DecodeError> {
        let Command {
            id,
            connect,
            subscribe,
            unsubscribe,
            publish,
            presence,
            presence_stats,
            history,
            ping,
            send,
            rpc,
            refresh,
            sub_refresh,
        } = self;
        let mut found: Vec<Method> = Vec::with_capacity(1);
        found.extend(connect.map(Method::Connect));
        found.extend(subscribe.map(Method::Subscribe));
        found.extend(unsubscribe.map(Method::Unsubscribe));
        found.extend(publish.map(Method::Publish));
        found.extend(presence.map(Method::Presence));
        found.extend(presence_stats.map(Method::PresenceStats));
        found.extend(history.map(Method::History));
        found.extend(ping.map(|_| Method::Ping));
        found.extend(send.map(Method::Send));
        found.extend(rpc.map(Method::Rpc));
        found.extend(refresh.map(Method::Refresh));
        found.extend(sub_refresh.map(Method::SubRefresh));
        match (found.len(), id) {
            (0, 0) => Ok((0, Method::Pong)),
            (0, id) => Ok((id, Method::Unknown)),
            (1, id) => Ok((id, found.pop().expect("one method"))),
            _ => Err(DecodeError::SeveralMethods),
        }
    }
}

/// `connect`.
#[derive(Debug, Default, Deserialize)]
pub struct ConnectRequest {
    /// The connection JWT.
    #[serde(default)]
    pub token: String,
    /// Custom data the client sends with the connect.
    #[serde(default)]
    pub data: Option<RawJson>,
    /// The server-side subscriptions the client had, with the position to recover each
    /// from (a channel the token's `channels` claim no longer lists is ignored).
    #[serde(default)]
    pub subs: HashMap<String, SubscribeRequest>,
    /// SDK name.
    #[serde(default)]
    pub name: String,
    /// SDK version.
    #[serde(default)]
    pub version: String,
}

/// `subscribe`.
#[derive(Debug, Default, Deserialize)]
pub struct SubscribeRequest {
    /// The channel, `namespace:name`.
    #[serde(default)]
    pub channel: String,
    /// Subscription token for private channels.
    #[serde(default)]
    pub token: String,
    /// Ask for the publications missed since `(epoch, offset)`.
    #[serde(default)]
    pub recover: bool,
    /// With `recover`: the epoch of the client's last known position.
    #[serde(default)]
    pub epoch: String,
    /// With `recover`: the offset of the last publication the client saw (a number, or a
    /// string as some SDKs send it).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub offset: u64,
    /// Custom data the client sends with the subscription.
    #[serde(default)]
    pub data: Option<RawJson>,
    /// The client asks for positioned delivery (offsets it can check for gaps).
    #[serde(default)]
    pub positioned: bool,
    /// The client asks for a recoverable subscription (`epoch` and `offset` in the reply).
    #[serde(default)]
    pub recoverable: bool,
    /// The client wants join/leave pushes.
    #[serde(default)]
    pub join_leave: bool,
    /// Feature bits; bit 2 asks for error 112 instead of `recovered: false`.
    #[serde(default)]
    pub flag: u64,
    /// Delta compression asked for: `fossil`, or empty for none.
    #[serde(default)]
    pub delta: String,
    /// Tags filter (`tf` on the wire; centrifuge-js's `tagsFilter`): only publications
    /// whose tags pass are delivered.
    #[serde(default)]
    pub tf: Option<super::filter::FilterNode>,
}

/// Subscribe flag: reject an unrecoverable position with error 112.
pub const FLAG_REJECT_UNRECOVERED: u64 = 2;

/// Requests that name only a channel: `unsubscribe`, `presence`, `presence_stats`.
#[derive(Debug, Default, Deserialize)]
pub struct ChannelRequest {
    /// The channel, `namespace:name`.
    #[serde(default)]
    pub channel: String,
}

/// `publish`.
#[derive(Debug, Default, Deserialize)]
pub struct PublishRequest {
    /// The channel, `namespace:name`.
    #[serde(default)]
    pub channel: String,
    /// The payload, arbitrary JSON.
    #[serde(default)]
    pub data: Option<RawJson>,
}

/// `history`.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryRequest {
    /// The channel, `namespace:name`.
    #[serde(default)]
    pub channel: String,
    /// 0: no publications, only the stream position; negative: as many as kept.
    #[serde(default)]
    pub limit: i32,
    /// Return publications after this position.
    #[serde(default)]
    pub since: Option<WirePosition>,
    /// Newest first.
    #[serde(default)]
    pub reverse: bool,
}

/// A stream position as clients send it (the offset may arrive as a string).
#[derive(Debug, Default, Deserialize)]
pub struct WirePosition {
    /// Offset of the last publication seen (a number or a string).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub offset: u64,
    /// The epoch that offset belongs to.
    #[serde(default)]
    pub epoch: String,
}

impl From<WirePosition> for StreamPosition {
    fn from(p: WirePosition) -> Self {
        StreamPosition {
            offset: p.offset,
            epoch: p.epoch,
        }
    }
}

/// `send`: asynchronous message to the server; no reply.
#[derive(Debug, Default, Deserialize)]
pub struct SendRequest {
    /// The payload, arbitrary JSON.
    #[serde(default)]
    pub data: Option<RawJson>,
}

/// `rpc`.
#[derive(Debug, Default, Deserialize)]
pub struct RpcRequest {
    /// The call's payload, arbitrary JSON.
    #[serde(default)]
    pub data: Option<RawJson>,
    /// The RPC method name, as the client gave it.
    #[serde(default)]
    pub method: String,
}

/// `refresh`: a new connection token before the old one expires.
#[derive(Debug, Default, Deserialize)]
pub struct RefreshRequest {
    /// The new connection JWT.
    #[serde(default)]
    pub token: String,
}

/// `sub_refresh`: a new subscription token.
#[derive(Debug, Default, Deserialize)]
pub struct SubRefreshRequest {
    /// The channel whose subscription token is renewed.
    #[serde(default)]
    pub channel: String,
    /// The new subscription JWT.
    #[serde(default)]
    pub token: String,
}

/// Why a frame could not be decoded. Each maps to the protocol's "bad request".
///
/// The text names the kind of problem and where it is, never the input: serde's messages
/// quote values (`invalid type: string "eyJ…"`), and a client that puts its token where
/// an object belongs must not have it written to the log.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame's bytes are not UTF-8 text.
    #[error("frame is not valid UTF-8")]
    InvalidUtf8,
    #[error(
        "malformed JSON command ({}) at line {} column {}",
        json_error_kind(.0),
        .0.line(),
        .0.column()
    )]
    /// A line is not a JSON command object.
    Json(#[from] serde_json::Error),
    /// One command names more than one method.
    #[error("a command names more than one method")]
    SeveralMethods,
    /// More commands in one frame than the limit it carries.
    #[error("frame holds more than {0} commands")]
    TooManyCommands(usize),
    /// Protobuf: a length prefix that is not a valid varint.
    #[error("malformed length prefix")]
    BadLength,
    /// Protobuf: a length prefix that runs past the end of the frame.
    #[error("length prefix past the end of the frame")]
    LengthPastEnd,
    /// Protobuf: a `Command` that does not decode (prost names the field, never its value).
    #[error("malformed Protobuf command: {0}")]
    Protobuf(prost::DecodeError),
    /// Protobuf: a `bytes` payload that is not one JSON value in UTF-8 (see
    /// [`super::protobuf`]).
    #[error("{0} is not JSON")]
    NotJson(&'static str),
}

fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected type or value",
        serde_json::error::Category::Eof => "unexpected end",
    }
}

/// Decodes one text frame: JSON objects separated by `\n` (blank lines are ignored).
/// Stops at the first malformed command, since what follows cannot be trusted either.
pub fn decode_frame(payload: &[u8], max_commands: usize) -> Result<Vec<Command>, DecodeError> {
    let text = std::str::from_utf8(payload).map_err(|_| DecodeError::InvalidUtf8)?;
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if out.len() == max_commands {
            return Err(DecodeError::TooManyCommands(max_commands));
        }
        out.push(serde_json::from_str::<Command>(line)?);
    }
    Ok(out)
}

/// Offsets are uint64: the protobuf JSON mapping writes them as strings, most SDKs as numbers.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Num(u64),
        Str(String),
    }
    match Either::deserialize(d)? {
        Either::Num(n) => Ok(n),
        Either::Str(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_several_commands_in_one_frame() {
        let frame = br#"{"id":1,"connect":{"token":"t","name":"py"}}
{"id":2,"subscribe":{"channel":"chat:1","recover":true,"offset":"7","epoch":"e"}}
{}"#;
        let cmds = decode_frame(frame, 100).unwrap();
        assert_eq!(cmds.len(), 3);
        let mut it = cmds.into_iter().map(|c| c.into_method().unwrap());
        assert!(matches!(it.next(), Some((1, Method::Connect(c))) if c.token == "t"));
        match it.next() {
            Some((2, Method::Subscribe(s))) => {
                assert_eq!(s.offset, 7);
                assert!(s.recover);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(it.next(), Some((0, Method::Pong))));
    }

    #[test]
    fn unknown_method_keeps_its_id() {
        let cmds = decode_frame(br#"{"id":5,"teleport":{}}"#, 10).unwrap();
        let (id, m) = cmds.into_iter().next().unwrap().into_method().unwrap();
        assert_eq!(id, 5);
        assert!(matches!(m, Method::Unknown));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            decode_frame(b"{\"id\":1,", 10),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            decode_frame(&[0xff, 0xfe], 10),
            Err(DecodeError::InvalidUtf8)
        ));
        assert!(matches!(
            decode_frame(b"{}\n{}\n{}", 2),
            Err(DecodeError::TooManyCommands(2))
        ));
        let two = decode_frame(br#"{"id":1,"presence":{},"history":{}}"#, 10).unwrap();
        assert!(matches!(
            two.into_iter().next().unwrap().into_method(),
            Err(DecodeError::SeveralMethods)
        ));
        // A string where an object belongs.
        assert!(decode_frame(br#"{"id":1,"subscribe":"x"}"#, 10).is_err());
        // Not an object at all.
        assert!(decode_frame(b"[1,2]", 10).is_err());
    }

    #[test]
    fn error_texts_never_quote_the_input() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2VjcmV0LXNpZ25hdHVyZQ";
        for frame in [
            format!(r#"{{"id":1,"connect":"{token}"}}"#),
            format!(r#"{{"id":1,"connect":{{"token":["{token}"]}}}}"#),
            format!(r#"{{"id":"{token}"}}"#),
        ] {
            let e = decode_frame(frame.as_bytes(), 10).unwrap_err();
            let text = e.to_string();
            assert!(!text.contains("eyJ"), "{text}");
            assert!(text.contains("line 1 column"), "{text}");
        }
    }
}
