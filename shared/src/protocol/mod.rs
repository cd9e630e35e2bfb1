//! The Centrifugo client protocol v2, JSON encoding.
//!
//! The shape follows `definitions/client.proto` of the open `centrifugal/protocol`
//! repository: a WebSocket text frame carries one or more JSON objects separated by `\n`.
//! Commands go client → server (`{"id":N,"<method>":{...}}`), replies and pushes go
//! server → client. Fields at their default value are omitted, as protobuf's JSON
//! mapping does, so the official SDKs read our output unchanged.
//!
//! Payloads (`data`, `info`) are arbitrary JSON and are kept as raw JSON text
//! ([`RawJson`]): the node never re-parses what it only forwards.
//!
//! # Layout
//! - [`codes`]: error and disconnect codes from the protocol's published tables.
//! - [`command`]: what clients send, and the decoder for a whole frame.
//! - [`reply`]: replies, pushes and the publication type, with encoders.

pub mod codes;
pub mod command;
pub mod reply;

pub use codes::{DisconnectCode, ErrorCode};
pub use command::{decode_frame, Command, DecodeError, Method};
pub use reply::{
    ClientInfo, ConnectResult, Disconnect, HistoryResult, PresenceStatsResult, Publication,
    ReplyError, SubscribeResult,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// Arbitrary JSON carried through untouched (publication data, connection info).
///
/// Validated once when it enters (parsing a command, or [`RawJson::parse`]) and then
/// written verbatim. Cloning is a reference-count bump so one publication can sit in
/// many places at once.
#[derive(Clone)]
pub struct RawJson(std::sync::Arc<RawValue>);

impl RawJson {
    /// Parses `text`, failing when it is not exactly one JSON value.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        Ok(RawJson(RawValue::from_string(text.to_owned())?.into()))
    }

    /// Encodes any serialisable value.
    pub fn from_value<T: Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(RawJson(serde_json::value::to_raw_value(value)?.into()))
    }

    /// JSON `null`.
    pub fn null() -> Self {
        RawJson::parse("null").expect("null is JSON")
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Length of the JSON text in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// True when the text is empty (never the case for a parsed value).
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for RawJson {}

impl std::fmt::Debug for RawJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(deserializer)?;
        Ok(RawJson(raw.into()))
    }
}

/// The identity and position of a channel's stream: what recovery is measured against.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Offset of the newest publication (0 when the stream is empty).
    pub offset: u64,
    /// Identity of the stream; it changes when the stream is lost or reset.
    pub epoch: String,
}
