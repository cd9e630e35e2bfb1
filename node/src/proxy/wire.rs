//! The bodies of proxy requests and answers: Centrifugo's proxy JSON
//! (`internal/proxyproto/proxy.proto` of Centrifugo v6, JSON with empty fields left
//! out), so a backend written for Centrifugo's HTTP proxy works unchanged.
//!
//! Requests carry `client`, `transport`, `protocol`, `encoding` and then per kind `user`,
//! `channel`, `method`, `token`, `data`, `meta`, `name`, `version`. Answers are
//! `{"result":{...}}`, `{"error":{"code","message","temporary"}}` or
//! `{"disconnect":{"code","reason"}}`. `data`, `info` and `meta` are JSON values; the
//! `b64data`/`b64info` forms are accepted in answers when they decode to JSON. The
//! proxy's own encoding is always `json`: a Protobuf client's payloads must be JSON
//! (README "Client protocol"), so they travel as `data` here too, as Centrifugo sends
//! them with its default (non-base64) proxy encoding.

use base64::Engine;
use herald_shared::protocol::{Encoding, RawJson};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The transport every client of this node uses.
pub const TRANSPORT: &str = "websocket";
/// The proxy body's encoding: JSON, so `data` not `b64data`.
pub const JSON: &str = "json";

/// One proxy request. Fields left empty are not written, as Centrifugo's encoder does.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProxyRequest<'a> {
    /// The connection's client id (given before the connect proxy is called).
    pub client: &'a str,
    /// Always `websocket`.
    pub transport: &'static str,
    /// The client protocol's encoding: `json` or `protobuf`.
    pub protocol: &'static str,
    /// Always `json`: how `data` is carried in this body (Centrifugo's `binary`, with
    /// `b64data`, is its base64 proxy option, which this node does not have).
    pub encoding: &'static str,
    /// The user id (not for connect; left out when anonymous).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub user: &'a str,
    /// Subscribe, publish, sub_refresh: the channel.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub channel: &'a str,
    /// Subscribe: the subscription token the client sent, if any.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub token: &'a str,
    /// Rpc: the method the client named.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub method: &'a str,
    /// Connect, subscribe, publish, rpc: the client's `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a RawJson>,
    /// Every kind but connect: the `meta` the connect proxy attached to the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<&'a RawJson>,
    /// Connect: the SDK's name.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: &'a str,
    /// Connect: the SDK's version.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub version: &'a str,
}

impl<'a> ProxyRequest<'a> {
    /// A request for connection `client`, whose client protocol is `encoding`, with
    /// the fixed transport fields set.
    pub fn new(client: &'a str, encoding: Encoding) -> Self {
        ProxyRequest {
            client,
            transport: TRANSPORT,
            protocol: encoding.name(),
            encoding: JSON,
            ..Default::default()
        }
    }
}

/// An answer as the backend writes it: at most one of the three is acted on, in
/// Centrifugo's order (disconnect, then error, then result).
#[derive(Debug, Deserialize)]
#[serde(bound = "R: Deserialize<'de>")]
pub(super) struct Envelope<R> {
    #[serde(default)]
    pub(super) result: Option<R>,
    #[serde(default)]
    pub(super) error: Option<BackendError>,
    #[serde(default)]
    pub(super) disconnect: Option<BackendDisconnect>,
}

/// `error`: the client gets this error reply.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct BackendError {
    /// The error code the client sees (the backend's own, e.g. 403 or 1000).
    pub code: u32,
    /// Its text.
    #[serde(default)]
    pub message: String,
    /// Whether the client may retry.
    #[serde(default)]
    pub temporary: bool,
}

/// `disconnect`: the connection closes with this code and reason.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct BackendDisconnect {
    /// The close code (3000–4999).
    pub code: u32,
    /// Why, shown to the client.
    #[serde(default)]
    pub reason: String,
}

/// Options of one subscription: an entry of the connect proxy's `subs`, or the subscribe
/// proxy's `result` (the same fields in Centrifugo's proxy JSON).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SubOptions {
    /// `info`: the subscriber's channel info (`chan_info`).
    #[serde(default)]
    pub info: Option<RawJson>,
    /// `b64info`: the same, base64.
    #[serde(default)]
    pub b64info: String,
    /// `data`: sent to the client with the subscription (in the connect or subscribe
    /// reply).
    #[serde(default)]
    pub data: Option<RawJson>,
    /// `b64data`: the same, base64.
    #[serde(default)]
    pub b64data: String,
    /// `expire_at`: unix seconds when the sub_refresh proxy is asked; 0 = never. Ignored
    /// for the connect proxy's `subs` (server-side subscriptions do not expire here).
    #[serde(default)]
    pub expire_at: i64,
}

/// `result` of the connect proxy: who the connection is, as a token's claims would say.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ConnectResult {
    /// `user`: the user id; empty for anonymous.
    #[serde(default)]
    pub user: String,
    /// `expire_at`: unix seconds when the connection must be refreshed; 0 = never.
    #[serde(default)]
    pub expire_at: i64,
    /// `info`: connection info, attached to presence and publications.
    #[serde(default)]
    pub info: Option<RawJson>,
    /// `b64info`: the same, base64.
    #[serde(default)]
    pub b64info: String,
    /// `data`: sent to the client in the connect reply.
    #[serde(default)]
    pub data: Option<RawJson>,
    /// `b64data`: the same, base64.
    #[serde(default)]
    pub b64data: String,
    /// `channels`: subscribed server-side at connect.
    #[serde(default)]
    pub channels: Vec<String>,
    /// `subs`: subscribed server-side at connect, with options.
    #[serde(default)]
    pub subs: HashMap<String, SubOptions>,
    /// `meta`: kept with the connection and sent in its later proxy requests, never to
    /// the client.
    #[serde(default)]
    pub meta: Option<RawJson>,
}

/// `result` of the refresh proxy.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RefreshResult {
    /// `expired`: the connection ends (close 3005).
    #[serde(default)]
    pub expired: bool,
    /// `expire_at`: the new expiry, unix seconds; 0 = never again.
    #[serde(default)]
    pub expire_at: i64,
    /// `meta`: replaces the connection's meta.
    #[serde(default)]
    pub meta: Option<RawJson>,
}

/// `result` of the subscribe proxy.
pub type SubscribeResult = SubOptions;

/// `result` of the publish proxy.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PublishResult {
    /// `data`: published instead of the client's data.
    #[serde(default)]
    pub data: Option<RawJson>,
    /// `b64data`: the same, base64.
    #[serde(default)]
    pub b64data: String,
    /// `skip_history`: deliver without keeping it in history.
    #[serde(default)]
    pub skip_history: bool,
    /// `tags`: carried with the publication.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `idempotency_key`: publish once per key.
    #[serde(default)]
    pub idempotency_key: String,
}

/// `result` of the rpc proxy.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RpcResult {
    /// `data`: the rpc reply's data.
    #[serde(default)]
    pub data: Option<RawJson>,
    /// `b64data`: the same, base64.
    #[serde(default)]
    pub b64data: String,
}

/// `result` of the sub_refresh proxy.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SubRefreshResult {
    /// `expired`: the subscription ends.
    #[serde(default)]
    pub expired: bool,
    /// `expire_at`: the new expiry, unix seconds; 0 = never again.
    #[serde(default)]
    pub expire_at: i64,
}

/// The JSON value of a `data`/`b64data` (or `info`/`b64info`) pair: the base64 form
/// wins when set, as in Centrifugo. Err: base64 that does not decode to one JSON value
/// (a JSON client could not be sent it).
pub fn pick(plain: Option<RawJson>, b64: &str) -> Result<Option<RawJson>, &'static str> {
    if b64.is_empty() {
        return Ok(plain);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "base64 field does not decode")?;
    let text = String::from_utf8(bytes).map_err(|_| "base64 field is not UTF-8 JSON")?;
    RawJson::parse(&text)
        .map(Some)
        .map_err(|_| "base64 field is not JSON")
}

/// A Unix time from an answer: `expire_at <= 0` means none.
pub fn unix(expire_at: i64) -> Option<u64> {
    (expire_at > 0).then_some(expire_at as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_leave_empty_fields_out() {
        let data = RawJson::parse(r#"{"a":1}"#).unwrap();
        let mut r = ProxyRequest::new("c1", Encoding::Protobuf);
        r.data = Some(&data);
        r.name = "py";
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"client":"c1","transport":"websocket","protocol":"protobuf","encoding":"json","data":{"a":1},"name":"py"}"#
        );
    }

    #[test]
    fn answers_read_every_form() {
        let e: Envelope<ConnectResult> = serde_json::from_str(
            r#"{"result":{"user":"u","expire_at":5,"b64info":"eyJ4IjoxfQ==","channels":["a"],"meta":{"m":1}}}"#,
        )
        .unwrap();
        let r = e.result.unwrap();
        assert_eq!(
            pick(r.info, &r.b64info).unwrap().unwrap().as_str(),
            r#"{"x":1}"#
        );
        assert_eq!(unix(r.expire_at), Some(5));
        let e: Envelope<RpcResult> =
            serde_json::from_str(r#"{"error":{"code":1000,"message":"no"}}"#).unwrap();
        assert_eq!(e.error.unwrap().code, 1000);
        let e: Envelope<RpcResult> =
            serde_json::from_str(r#"{"disconnect":{"code":4501,"reason":"bye"}}"#).unwrap();
        assert_eq!(e.disconnect.unwrap().code, 4501);
        assert!(pick(None, "!!").is_err());
        assert!(pick(None, "bm90IGpzb24=").is_err(), "'not json'");
        assert_eq!(unix(-3), None);
    }
}
