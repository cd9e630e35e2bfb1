//! The Centrifugo client protocol v2, JSON and Protobuf encodings.
//!
//! The shape follows `definitions/client.proto` of the open `centrifugal/protocol`
//! repository. JSON: a WebSocket text frame carries one or more JSON objects separated
//! by `\n`. Protobuf ([`protobuf`]): a binary frame carries one or more varint
//! length-delimited messages. Both decode into and encode from the same values.
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
//! - [`delta`]: fossil deltas of publication data (delta compression).
//! - [`filter`]: tags filters of subscriptions.
//! - [`protobuf`]: the Protobuf messages (`shared/proto/client.proto`) and conversions.
//! - [`encoding`]: [`Encoding`], and what a connection sends as values until encoded.

pub mod codes;
pub mod command;
pub mod delta;
pub mod encoding;
pub mod filter;
pub mod protobuf;
pub mod reply;

pub use codes::{DisconnectCode, ErrorCode};
pub use command::{decode_frame, Command, DecodeError, Method};
pub use encoding::{Broadcast, Encoding, PushBody, ReplyBody};
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
///
/// Never holds a raw `\n`: frames carry several JSON objects separated by `\n`, so a
/// pretty-printed payload (from the server API, a token's `info`, or a backend
/// publishing on NATS) copied verbatim would split every frame it is written into.
/// Outside strings (where JSON forbids raw control characters) a newline is only
/// whitespace, so it becomes a space on the way in ([`without_newlines`]).
///
/// Nested at most [`MAX_RAW_DEPTH`] levels: serde_json reads a raw value without a
/// recursion limit, and a payload nested 30 000 levels deep (it fits in 64 KiB) would
/// pass through the node only to blow the stack or recursion limit of every
/// subscriber's JSON parser.
#[derive(Clone)]
pub struct RawJson(std::sync::Arc<RawValue>);

impl RawJson {
    /// Parses `text`, failing when it is not exactly one JSON value.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let raw = RawValue::from_string(text.to_owned())?;
        check_depth(raw.get()).map_err(<serde_json::Error as serde::de::Error>::custom)?;
        Ok(RawJson(without_newlines(raw)?.into()))
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
        check_depth(raw.get()).map_err(serde::de::Error::custom)?;
        Ok(RawJson(
            without_newlines(raw)
                .map_err(serde::de::Error::custom)?
                .into(),
        ))
    }
}

/// Deepest nesting of arrays and objects accepted in a [`RawJson`]: serde_json's own
/// recursion limit for everything it parses into types.
pub const MAX_RAW_DEPTH: usize = 128;

/// Fails when valid JSON `text` nests deeper than [`MAX_RAW_DEPTH`]. One pass over the
/// bytes, skipping strings.
fn check_depth(text: &str) -> Result<(), String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_RAW_DEPTH {
                    return Err(format!("JSON nested deeper than {MAX_RAW_DEPTH} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// `raw` with every `\n` turned into a space (the same JSON value; see [`RawJson`]).
/// Leaves the common case, compact JSON, untouched and unallocated.
fn without_newlines(raw: Box<RawValue>) -> Result<Box<RawValue>, serde_json::Error> {
    if !raw.get().contains('\n') {
        return Ok(raw);
    }
    RawValue::from_string(raw.get().replace('\n', " "))
}

/// The identity and position of a channel's stream: what recovery is measured against.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Offset of the newest publication (0 when the stream is empty).
    pub offset: u64,
    /// Identity of the stream; it changes when the stream is lost or reset.
    pub epoch: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_json_never_keeps_a_newline() {
        // Pretty-printed JSON from the server API, a token claim or a backend on NATS.
        let pretty = "{\n  \"a\": \"x\\ny\",\n  \"b\": [\n    1\n  ]\n}\n";
        let raw = RawJson::parse(pretty).unwrap();
        assert!(!raw.as_str().contains('\n'), "{:?}", raw.as_str());
        let value: serde_json::Value = serde_json::from_str(raw.as_str()).unwrap();
        assert_eq!(value, serde_json::json!({"a": "x\ny", "b": [1]}));

        #[derive(Deserialize)]
        struct Holder {
            data: RawJson,
        }
        let h: Holder = serde_json::from_str("{\"data\":{\"a\":\n1}}").unwrap();
        assert_eq!(h.data.as_str(), r#"{"a": 1}"#);
        // Nesting: up to serde_json's own limit, not one level more.
        let nested = |n: usize| format!("{}\"[]{{}}\\\"\"{}", "[".repeat(n), "]".repeat(n));
        assert!(RawJson::parse(&nested(MAX_RAW_DEPTH)).is_ok());
        assert!(RawJson::parse(&nested(MAX_RAW_DEPTH + 1)).is_err());
        let deep = format!("{{\"data\":{}}}", nested(30_000));
        assert!(serde_json::from_str::<Holder>(&deep).is_err());
        // Brackets inside strings do not count.
        assert!(RawJson::parse(&format!("\"{}\"", "[".repeat(1000))).is_ok());
        // Compact JSON is kept byte for byte.
        assert_eq!(RawJson::parse(r#"{"a":1}"#).unwrap().as_str(), r#"{"a":1}"#);
    }
}
