//! The Protobuf encoding of the client protocol: binary frames of varint
//! length-delimited `Command`s (client → server) and `Reply`s (server → client), the
//! messages of `shared/proto/client.proto` (compiled by `build.rs` with prost).
//!
//! Nothing here has a model of its own: commands decode into the same [`Command`] the
//! JSON decoder builds, and replies and pushes encode from the same values the JSON
//! encoder writes, so every rule of the session applies to both encodings unchanged.
//!
//! Payloads (`data`, `info`) are `bytes` in Protobuf and JSON values in Herald, which
//! keeps every publication readable by JSON and Protobuf subscribers alike (history,
//! the server API and backends on NATS are JSON too):
//! - going out, a payload's JSON text is the `bytes` (what Centrifugo sends a Protobuf
//!   client for a JSON publisher);
//! - coming in, `bytes` must hold one JSON value in UTF-8 ([`DecodeError::NotJson`]
//!   otherwise: the connection is closed as for malformed JSON). Empty `bytes` are no
//!   payload, as an absent `data` is in JSON.

use super::command::{
    ChannelRequest, Command, ConnectRequest, DecodeError, HistoryRequest, PublishRequest,
    RefreshRequest, RpcRequest, SendRequest, SubRefreshRequest, SubscribeRequest, WirePosition,
};
use super::reply::{
    ClientInfo, ConnectResult, HistoryResult, PresenceResult, PresenceStatsResult, Publication,
    RefreshResult, ReplyError, SubscribeResult,
};
use super::RawJson;
use prost::Message;

/// The generated messages of `shared/proto/client.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    include!(concat!(
        env!("OUT_DIR"),
        "/centrifugal.centrifuge.protocol.rs"
    ));
}

/// Decodes one binary frame: varint length-delimited `Command`s, back to back. An empty
/// frame holds no command; a zero-length `Command` is a pong.
///
/// Stops at the first problem, since what follows cannot be trusted either: a length
/// prefix that is not a varint ([`DecodeError::BadLength`]), one that runs past the end
/// of the frame ([`DecodeError::LengthPastEnd`]), a message that does not decode
/// ([`DecodeError::Protobuf`]) or a payload that is not JSON ([`DecodeError::NotJson`]).
pub fn decode_protobuf_frame(
    payload: &[u8],
    max_commands: usize,
) -> Result<Vec<Command>, DecodeError> {
    let mut rest = payload;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if out.len() == max_commands {
            return Err(DecodeError::TooManyCommands(max_commands));
        }
        let len = prost::encoding::decode_varint(&mut rest).map_err(|_| DecodeError::BadLength)?;
        if len > rest.len() as u64 {
            return Err(DecodeError::LengthPastEnd);
        }
        let (message, tail) = rest.split_at(len as usize);
        let command = pb::Command::decode(message).map_err(DecodeError::Protobuf)?;
        out.push(command.try_into()?);
        rest = tail;
    }
    Ok(out)
}

/// A `bytes` payload as JSON: empty is none.
fn json(bytes: Vec<u8>, field: &'static str) -> Result<Option<RawJson>, DecodeError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| DecodeError::NotJson(field))?;
    RawJson::parse(text)
        .map(Some)
        .map_err(|_| DecodeError::NotJson(field))
}

impl TryFrom<pb::Command> for Command {
    type Error = DecodeError;

    fn try_from(c: pb::Command) -> Result<Self, DecodeError> {
        Ok(Command {
            id: c.id,
            connect: c.connect.map(ConnectRequest::try_from).transpose()?,
            subscribe: c.subscribe.map(SubscribeRequest::try_from).transpose()?,
            unsubscribe: c.unsubscribe.map(|r| ChannelRequest { channel: r.channel }),
            publish: c
                .publish
                .map(|r| {
                    Ok::<_, DecodeError>(PublishRequest {
                        channel: r.channel,
                        data: json(r.data, "publish.data")?,
                    })
                })
                .transpose()?,
            presence: c.presence.map(|r| ChannelRequest { channel: r.channel }),
            presence_stats: c
                .presence_stats
                .map(|r| ChannelRequest { channel: r.channel }),
            history: c.history.map(|r| HistoryRequest {
                channel: r.channel,
                limit: r.limit,
                since: r.since.map(|s| WirePosition {
                    offset: s.offset,
                    epoch: s.epoch,
                }),
                reverse: r.reverse,
            }),
            ping: c.ping.map(|_| serde::de::IgnoredAny),
            send: c
                .send
                .map(|r| {
                    Ok::<_, DecodeError>(SendRequest {
                        data: json(r.data, "send.data")?,
                    })
                })
                .transpose()?,
            rpc: c
                .rpc
                .map(|r| {
                    Ok::<_, DecodeError>(RpcRequest {
                        data: json(r.data, "rpc.data")?,
                        method: r.method,
                    })
                })
                .transpose()?,
            refresh: c.refresh.map(|r| RefreshRequest { token: r.token }),
            sub_refresh: c.sub_refresh.map(|r| SubRefreshRequest {
                channel: r.channel,
                token: r.token,
            }),
        })
    }
}

impl TryFrom<pb::ConnectRequest> for ConnectRequest {
    type Error = DecodeError;

    fn try_from(r: pb::ConnectRequest) -> Result<Self, DecodeError> {
        let mut subs = std::collections::HashMap::with_capacity(r.subs.len());
        for (channel, sub) in r.subs {
            subs.insert(channel, sub.try_into()?);
        }
        Ok(ConnectRequest {
            token: r.token,
            data: json(r.data, "connect.data")?,
            subs,
            name: r.name,
            version: r.version,
        })
    }
}

impl TryFrom<pb::SubscribeRequest> for SubscribeRequest {
    type Error = DecodeError;

    fn try_from(r: pb::SubscribeRequest) -> Result<Self, DecodeError> {
        Ok(SubscribeRequest {
            channel: r.channel,
            token: r.token,
            recover: r.recover,
            epoch: r.epoch,
            offset: r.offset,
            data: json(r.data, "subscribe.data")?,
            positioned: r.positioned,
            recoverable: r.recoverable,
            join_leave: r.join_leave,
            flag: r.flag as u64,
            // Delta compression and tags filters are JSON-only for now (README:
            // Differences from Centrifugo); Protobuf subscribers get full publications.
            delta: String::new(),
            tf: None,
        })
    }
}

// -- Going out: the values the JSON encoder writes, as Protobuf messages ----------------

/// A payload's JSON text as `bytes`.
fn bytes(raw: &Option<RawJson>) -> Vec<u8> {
    raw.as_ref()
        .map(|r| r.as_str().as_bytes().to_vec())
        .unwrap_or_default()
}

impl From<&ClientInfo> for pb::ClientInfo {
    fn from(i: &ClientInfo) -> Self {
        pb::ClientInfo {
            user: i.user.clone(),
            client: i.client.clone(),
            conn_info: bytes(&i.conn_info),
            chan_info: bytes(&i.chan_info),
        }
    }
}

impl From<&Publication> for pb::Publication {
    fn from(p: &Publication) -> Self {
        pb::Publication {
            data: p.data.as_str().as_bytes().to_vec(),
            info: p.info.as_ref().map(Into::into),
            offset: p.offset,
            tags: p.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

impl From<&SubscribeResult> for pb::SubscribeResult {
    fn from(r: &SubscribeResult) -> Self {
        pb::SubscribeResult {
            expires: r.expires,
            ttl: r.ttl,
            recoverable: r.recoverable,
            epoch: r.epoch.clone(),
            publications: r.publications.iter().map(Into::into).collect(),
            recovered: r.recovered,
            offset: r.offset,
            positioned: r.positioned,
            data: bytes(&r.data),
            was_recovering: r.was_recovering,
        }
    }
}

impl From<&ConnectResult> for pb::ConnectResult {
    fn from(r: &ConnectResult) -> Self {
        pb::ConnectResult {
            client: r.client.clone(),
            version: r.version.clone(),
            expires: r.expires,
            ttl: r.ttl,
            data: bytes(&r.data),
            subs: r.subs.iter().map(|(k, v)| (k.clone(), v.into())).collect(),
            ping: r.ping,
            pong: r.pong,
            session: String::new(),
            node: r.node.clone(),
        }
    }
}

impl From<&HistoryResult> for pb::HistoryResult {
    fn from(r: &HistoryResult) -> Self {
        pb::HistoryResult {
            publications: r.publications.iter().map(Into::into).collect(),
            epoch: r.epoch.clone(),
            offset: r.offset,
        }
    }
}

impl From<&PresenceResult> for pb::PresenceResult {
    fn from(r: &PresenceResult) -> Self {
        pb::PresenceResult {
            presence: r
                .presence
                .iter()
                .map(|(k, v)| (k.clone(), v.into()))
                .collect(),
        }
    }
}

impl From<&PresenceStatsResult> for pb::PresenceStatsResult {
    fn from(r: &PresenceStatsResult) -> Self {
        pb::PresenceStatsResult {
            num_clients: r.num_clients,
            num_users: r.num_users,
        }
    }
}

impl From<&RefreshResult> for pb::RefreshResult {
    fn from(r: &RefreshResult) -> Self {
        pb::RefreshResult {
            client: r.client.clone(),
            version: r.version.clone(),
            expires: r.expires,
            ttl: r.ttl,
        }
    }
}

impl From<&ReplyError> for pb::Error {
    fn from(e: &ReplyError) -> Self {
        pb::Error {
            code: e.code,
            message: e.message.clone(),
            temporary: e.temporary,
        }
    }
}

/// `reply` with its varint length in front: one element of a frame.
pub fn delimited(reply: &pb::Reply) -> Vec<u8> {
    reply.encode_length_delimited_to_vec()
}

// -- The client's side, for the load tester and the tests --------------------------------

/// A binary frame of `commands`, each length-delimited, as an SDK sends them.
pub fn encode_commands(commands: &[pb::Command]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in commands {
        out.extend_from_slice(&c.encode_length_delimited_to_vec());
    }
    out
}

/// The replies and pushes in a binary frame from the server, as an SDK reads them.
pub fn decode_replies(frame: &[u8]) -> Result<Vec<pb::Reply>, DecodeError> {
    let mut rest = frame;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = prost::encoding::decode_varint(&mut rest).map_err(|_| DecodeError::BadLength)?;
        if len > rest.len() as u64 {
            return Err(DecodeError::LengthPastEnd);
        }
        let (message, tail) = rest.split_at(len as usize);
        out.push(pb::Reply::decode(message).map_err(DecodeError::Protobuf)?);
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Method;

    fn frame(commands: &[pb::Command]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in commands {
            c.encode_length_delimited(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn decodes_several_commands_in_one_frame_into_the_json_model() {
        let mut subs = std::collections::HashMap::new();
        subs.insert(
            "news".to_owned(),
            pb::SubscribeRequest {
                recover: true,
                offset: 7,
                epoch: "e".into(),
                ..Default::default()
            },
        );
        let f = frame(&[
            pb::Command {
                id: 1,
                connect: Some(pb::ConnectRequest {
                    token: "t".into(),
                    data: br#"{"a":1}"#.to_vec(),
                    subs,
                    name: "py".into(),
                    version: "0.7".into(),
                }),
                ..Default::default()
            },
            pb::Command {
                id: 2,
                publish: Some(pb::PublishRequest {
                    channel: "chat:1".into(),
                    data: b"{\n\"text\": \"hi\"}".to_vec(),
                }),
                ..Default::default()
            },
            pb::Command {
                id: 3,
                history: Some(pb::HistoryRequest {
                    channel: "c".into(),
                    limit: -1,
                    since: Some(pb::StreamPosition {
                        offset: 4,
                        epoch: "x".into(),
                    }),
                    reverse: true,
                }),
                ..Default::default()
            },
            pb::Command::default(),
        ]);
        let cmds = decode_protobuf_frame(&f, 100).unwrap();
        let mut it = cmds.into_iter().map(|c| c.into_method().unwrap());
        match it.next() {
            Some((1, Method::Connect(c))) => {
                assert_eq!(c.token, "t");
                assert_eq!(c.data.unwrap().as_str(), r#"{"a":1}"#);
                assert_eq!(c.subs["news"].offset, 7);
                assert!(c.subs["news"].recover);
            }
            other => panic!("{other:?}"),
        }
        match it.next() {
            // The payload is JSON from here on, newlines and all handled as for JSON.
            Some((2, Method::Publish(p))) => {
                assert_eq!(p.data.unwrap().as_str(), r#"{ "text": "hi"}"#)
            }
            other => panic!("{other:?}"),
        }
        match it.next() {
            Some((3, Method::History(h))) => {
                assert_eq!((h.limit, h.reverse), (-1, true));
                assert_eq!(h.since.map(|s| (s.offset, s.epoch)), Some((4, "x".into())));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(it.next(), Some((0, Method::Pong))),
            "empty command"
        );
        assert!(decode_protobuf_frame(b"", 10).unwrap().is_empty());
    }

    #[test]
    fn refuses_bad_input() {
        let ping = frame(&[pb::Command {
            id: 1,
            ping: Some(pb::PingRequest {}),
            ..Default::default()
        }]);
        // A length prefix past the end of the frame.
        let mut past = ping.clone();
        past[0] += 1;
        assert!(matches!(
            decode_protobuf_frame(&past, 10),
            Err(DecodeError::LengthPastEnd)
        ));
        // Truncated: the second message's prefix promises more than is there.
        let mut cut = ping.repeat(2);
        cut.pop();
        assert!(matches!(
            decode_protobuf_frame(&cut, 10),
            Err(DecodeError::LengthPastEnd)
        ));
        // A varint that never ends, or overflows 64 bits.
        assert!(matches!(
            decode_protobuf_frame(&[0x80, 0x80], 10),
            Err(DecodeError::BadLength)
        ));
        assert!(matches!(
            decode_protobuf_frame(&[0xff; 11], 10),
            Err(DecodeError::BadLength)
        ));
        // A message that does not decode: a field with wire type 7.
        assert!(matches!(
            decode_protobuf_frame(&[2, 0x0f, 0x00], 10),
            Err(DecodeError::Protobuf(_))
        ));
        // A JSON command in a binary frame does not pass for Protobuf.
        assert!(decode_protobuf_frame(br#"{"id":1,"connect":{}}"#, 10).is_err());
        // A payload that is not JSON.
        let f = frame(&[pb::Command {
            id: 1,
            publish: Some(pb::PublishRequest {
                channel: "c".into(),
                data: vec![0xff, 0x00, 0x01],
            }),
            ..Default::default()
        }]);
        assert!(matches!(
            decode_protobuf_frame(&f, 10),
            Err(DecodeError::NotJson("publish.data"))
        ));
        assert!(matches!(
            decode_protobuf_frame(&ping.repeat(3), 2),
            Err(DecodeError::TooManyCommands(2))
        ));
        // Two methods in one command are malformed, as in JSON.
        let two = frame(&[pb::Command {
            id: 1,
            ping: Some(pb::PingRequest {}),
            presence: Some(pb::PresenceRequest::default()),
            ..Default::default()
        }]);
        let c = decode_protobuf_frame(&two, 10).unwrap().pop().unwrap();
        assert!(matches!(c.into_method(), Err(DecodeError::SeveralMethods)));
    }

    #[test]
    fn error_texts_never_quote_the_input() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9";
        let mut f = frame(&[pb::Command {
            id: 1,
            connect: Some(pb::ConnectRequest {
                token: token.into(),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        // Break the string's UTF-8 inside the message.
        let at = f.len() - 3;
        f[at] = 0xff;
        let e = decode_protobuf_frame(&f, 10).unwrap_err();
        assert!(!e.to_string().contains("eyJ"), "{e}");
    }
}
