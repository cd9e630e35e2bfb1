//! The client side of the Centrifugo v2 JSON protocol, as much as the scenarios use.
//!
//! Decoding borrows from the read buffer (`Cow`/`RawValue` fields), so a publication push
//! is handled without allocating; encoders append to a reused buffer.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::io::Write;

/// Any message from the server: a reply (`id` set), a push, or `{}` (a ping).
#[derive(Debug, Default, Deserialize)]
pub struct Incoming<'a> {
    /// The id of the command this answers; 0 for pushes and pings.
    #[serde(default)]
    pub id: u32,
    /// Set on pushes.
    #[serde(borrow, default)]
    pub push: Option<Push<'a>>,
    /// Set on error replies.
    #[serde(default)]
    pub error: Option<ErrorBody>,
    /// Set on the reply to `connect`.
    #[serde(default)]
    pub connect: Option<IgnoredAny>,
    /// Set on the reply to `subscribe`.
    #[serde(borrow, default)]
    pub subscribe: Option<SubscribeReply<'a>>,
    /// Set on the reply to `publish`.
    #[serde(default)]
    pub publish: Option<IgnoredAny>,
}

impl Incoming<'_> {
    /// `{}`: the server's ping, which must be answered with `{}`.
    pub fn is_ping(&self) -> bool {
        self.id == 0
            && self.push.is_none()
            && self.error.is_none()
            && self.connect.is_none()
            && self.subscribe.is_none()
            && self.publish.is_none()
    }
}

/// `{"code":N,"message":"..."}` of an error reply.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// Protocol error code (e.g. 102 unknown channel).
    pub code: u32,
    /// Human text.
    #[serde(default)]
    pub message: String,
}

/// A push; the scenarios care about publications and disconnects.
#[derive(Debug, Deserialize)]
pub struct Push<'a> {
    /// The channel of a channel push; empty for connection pushes.
    #[serde(borrow, default)]
    pub channel: Cow<'a, str>,
    /// A publication.
    #[serde(borrow, default, rename = "pub")]
    pub publication: Option<Pub<'a>>,
    /// The server is about to close the connection.
    #[serde(default)]
    pub disconnect: Option<DisconnectBody>,
}

/// A publication.
#[derive(Debug, Deserialize)]
pub struct Pub<'a> {
    /// The payload, kept as raw JSON text.
    #[serde(borrow)]
    pub data: &'a RawValue,
    /// Position in the channel's stream (0 without history).
    #[serde(default)]
    pub offset: u64,
    /// Delta mode: `data` is a fossil delta (a JSON string) against the previous one.
    #[serde(default)]
    pub delta: bool,
}

/// Body of a `disconnect` push.
#[derive(Debug, Deserialize)]
pub struct DisconnectBody {
    /// Disconnect code (3000–3499 and 4000–4499 mean reconnect).
    pub code: u32,
    /// Whether the client should reconnect.
    #[serde(default)]
    pub reconnect: bool,
}

/// The reply to `subscribe`.
#[derive(Debug, Default, Deserialize)]
pub struct SubscribeReply<'a> {
    /// Identity of the channel's stream.
    #[serde(borrow, default)]
    pub epoch: Cow<'a, str>,
    /// Top offset of the stream at subscribe time.
    #[serde(default)]
    pub offset: u64,
    /// True when every missed publication is in `publications`.
    #[serde(default)]
    pub recovered: bool,
    /// Missed publications, oldest first.
    #[serde(borrow, default)]
    pub publications: Vec<Pub<'a>>,
}

/// Parses one line of a frame.
pub fn decode(line: &[u8]) -> Result<Incoming<'_>, serde_json::Error> {
    serde_json::from_slice(line)
}

/// A publication push as Herald writes it for a server-API publication of ours
/// (see [`fast_pub`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastPub<'a> {
    /// The channel (never contains an escape: such a line is not taken).
    pub channel: &'a str,
    /// The stamp read from the payload.
    pub stamp: Stamp,
    /// Position in the channel's stream (0 when the push carries none).
    pub offset: u64,
}

/// Reads `{"push":{"channel":"<c>","pub":{"data":<payload>,"offset":<n>}}}` (or the
/// same without `"offset"`), where the payload is one [`encode_payload`] wrote, without
/// a JSON parse; `None` for every other line, which the caller parses in full. At a
/// million deliveries a second the generator's JSON parse took a third of its CPU, CPU
/// it took from the node it measures on the same cores.
pub fn fast_pub(line: &[u8]) -> Option<FastPub<'_>> {
    let rest = line.strip_prefix(b"{\"push\":{\"channel\":\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    let (channel, rest) = rest.split_at(end);
    let rest = rest.strip_prefix(b"\",\"pub\":{\"data\":")?;
    let (stamp, rest) = stamp_and_rest(rest)?;
    // The rest of the payload: `,"p":"xxx…"}`.
    let rest = rest.strip_prefix(b",\"p\":\"")?;
    let pad = rest.iter().position(|&b| b != b'x')?;
    let rest = rest[pad..].strip_prefix(b"\"}")?;
    let offset = if rest == b"}}}" {
        0
    } else {
        let (offset, tail) = number(rest.strip_prefix(b",\"offset\":")?)?;
        if tail != b"}}}" {
            return None;
        }
        offset
    };
    Some(FastPub {
        channel: std::str::from_utf8(channel).ok()?,
        stamp,
        offset,
    })
}

/// Appends `{"id":N,"connect":{"token":"...","name":"herald-loadtest"}}`.
pub fn encode_connect(out: &mut Vec<u8>, id: u32, token: &str) {
    let _ = write!(out, "{{\"id\":{id},\"connect\":{{\"token\":");
    let _ = serde_json::to_writer(&mut *out, token);
    out.extend_from_slice(b",\"name\":\"herald-loadtest\"}}");
}

/// Appends a `subscribe`, asking to recover from `(epoch, offset)` when given.
pub fn encode_subscribe(
    out: &mut Vec<u8>,
    id: u32,
    channel: &str,
    recover: Option<(&str, u64)>,
    delta: bool,
) {
    let _ = write!(out, "{{\"id\":{id},\"subscribe\":{{\"channel\":");
    let _ = serde_json::to_writer(&mut *out, channel);
    if delta {
        out.extend_from_slice(b",\"delta\":\"fossil\"");
    }
    if let Some((epoch, offset)) = recover {
        out.extend_from_slice(b",\"recover\":true,\"epoch\":");
        let _ = serde_json::to_writer(&mut *out, epoch);
        let _ = write!(out, ",\"offset\":{offset}");
    }
    out.extend_from_slice(b"}}");
}

/// Appends a `publish` of `data` (already JSON) to `channel`.
pub fn encode_publish(out: &mut Vec<u8>, id: u32, channel: &str, data: &[u8]) {
    let _ = write!(out, "{{\"id\":{id},\"publish\":{{\"channel\":");
    let _ = serde_json::to_writer(&mut *out, channel);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data);
    out.extend_from_slice(b"}}");
}

/// Microseconds since the Unix epoch: the send timestamp carried in payloads. Wall
/// clock rather than `Instant` because sender and receiver may be different processes.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The padding characters payloads are filled with.
const PAD: &[u8; 256] = &[b'x'; 256];

/// What a payload written by [`encode_payload`] says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, microseconds since the Unix epoch.
    pub sent_micros: u64,
    /// Who published it.
    pub publisher: u64,
    /// The publisher's sequence number (1, 2, 3…).
    pub seq: u64,
}

/// Appends a payload of about `size` bytes:
/// `{"t":<send micros>,"g":<publisher>,"s":<sequence>,"p":"xxxx"}`. Payloads never go
/// below the size of the stamp itself (about 40 bytes).
pub fn encode_payload(out: &mut Vec<u8>, stamp: Stamp, size: usize) {
    let start = out.len();
    let _ = write!(
        out,
        "{{\"t\":{},\"g\":{},\"s\":{},\"p\":\"",
        stamp.sent_micros, stamp.publisher, stamp.seq
    );
    let fixed = out.len() - start + 2;
    let mut pad = size.saturating_sub(fixed);
    while pad > 0 {
        let n = pad.min(PAD.len());
        out.extend_from_slice(&PAD[..n]);
        pad -= n;
    }
    out.extend_from_slice(b"\"}");
}

/// Reads the stamp of a payload written by [`encode_payload`]; `None` for payloads
/// from anyone else. A fixed field order keeps this a few comparisons, no JSON parse.
pub fn read_stamp(data: &[u8]) -> Option<Stamp> {
    stamp_and_rest(data).map(|(stamp, _)| stamp)
}

/// The stamp at the start of a payload, and what follows it.
fn stamp_and_rest(data: &[u8]) -> Option<(Stamp, &[u8])> {
    let rest = data.strip_prefix(b"{\"t\":")?;
    let (sent_micros, rest) = number(rest)?;
    let rest = rest.strip_prefix(b",\"g\":")?;
    let (publisher, rest) = number(rest)?;
    let rest = rest.strip_prefix(b",\"s\":")?;
    let (seq, rest) = number(rest)?;
    let stamp = Stamp {
        sent_micros,
        publisher,
        seq,
    };
    Some((stamp, rest))
}

/// A decimal number at the start of `text`, and what follows it.
fn number(text: &[u8]) -> Option<(u64, &[u8])> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let n = text[..digits].iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })?;
    Some((n, &text[digits..]))
}
