//! The server API: `POST /api/<method>` with `X-API-Key`, JSON in and out, in the style
//! of Centrifugo's HTTP API so its server SDKs (e.g. Python `cent`) work unchanged.
//!
//! Transport problems are HTTP statuses (401 wrong key, 400 unreadable body, 404 unknown
//! method, 413 body too large); problems with a well-formed request are answered
//! 200 with `{"error":{"code":C,"message":"..."}}`, as that API does.

use crate::broker::HistoryQuery;
use crate::node::Node;
use crate::server::{json, Body};
use bytes::Bytes;
use herald_shared::codec::Control;
use herald_shared::protocol::command::WirePosition;
use herald_shared::protocol::{
    DisconnectCode, ErrorCode, PresenceStatsResult, Publication, RawJson, StreamPosition,
};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json as j, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong API key.
    #[error("unauthorized")]
    Unauthorized,
    /// The body is not what the method takes.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The body exceeds `HERALD_MAX_API_BODY`.
    #[error("request body too large")]
    TooLarge,
    /// No such method.
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// A protocol-level error about a well-formed request.
    #[error("{}", .0.message())]
    Protocol(ErrorCode),
}

impl ApiError {
    fn response(&self) -> Response<Body> {
        let (status, body) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                j!({"error": {"code": 401, "message": "unauthorized"}}),
            ),
            ApiError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                j!({"error": {"code": ErrorCode::BadRequest.code(), "message": format!("bad request: {m}")}}),
            ),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                j!({"error": {"code": ErrorCode::LimitExceeded.code(), "message": "request body too large"}}),
            ),
            ApiError::UnknownMethod(m) => (
                StatusCode::NOT_FOUND,
                j!({"error": {"code": ErrorCode::MethodNotFound.code(), "message": format!("method not found: {m}")}}),
            ),
            ApiError::Protocol(c) => (
                StatusCode::OK,
                j!({"error": {"code": c.code(), "message": c.message()}}),
            ),
        };
        json(status, serde_json::to_vec(&body).unwrap_or_default())
    }
}

impl From<ErrorCode> for ApiError {
    fn from(c: ErrorCode) -> Self {
        ApiError::Protocol(c)
    }
}

/// Answers one API request.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>, method: &str) -> Response<Body> {
    let label = known_method(method).unwrap_or("unknown");
    let r = run(&node, req, method).await;
    let result = match &r {
        Ok(_) => "ok",
        Err(ApiError::Unauthorized) => "unauthorized",
        Err(ApiError::BadRequest(_)) => "bad_request",
        Err(ApiError::TooLarge) => "too_large",
        Err(ApiError::UnknownMethod(_)) => "unknown_method",
        Err(ApiError::Protocol(_)) => "error",
    };
    metrics::counter!(crate::metrics::API_REQUESTS, "method" => label, "result" => result)
        .increment(1);
    match r {
        Ok(v) => json(
            StatusCode::OK,
            serde_json::to_vec(&j!({ "result": v })).unwrap_or_default(),
        ),
        Err(e) => e.response(),
    }
}

const METHODS: [&str; 11] = [
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
];

fn known_method(m: &str) -> Option<&'static str> {
    METHODS.iter().copied().find(|k| *k == m)
}

/// Whether the request carries the API key (constant-time comparison).
pub fn key_ok(node: &Node, req: &Request<Incoming>) -> bool {
    let Some(expected) = node.config.api_key.as_deref() else {
        return false;
    };
    let given = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            req.headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("apikey "))
        });
    given.is_some_and(|g| key_matches(expected.as_bytes(), g.as_bytes()))
}

/// Compares a guessed API key with the real one in constant time: the work depends only
/// on the guess's length, never on how much of it is right nor on the key's length
/// (`subtle`'s slice comparison returns at once when the lengths differ).
fn key_matches(expected: &[u8], given: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut same = given.len().ct_eq(&expected.len());
    for (i, b) in given.iter().enumerate() {
        same &= b.ct_eq(&expected[i % expected.len()]);
    }
    same.into()
}

async fn run(node: &Arc<Node>, req: Request<Incoming>, method: &str) -> Result<Value, ApiError> {
    if !key_ok(node, &req) {
        return Err(ApiError::Unauthorized);
    }
    let Some(method) = known_method(method) else {
        return Err(ApiError::UnknownMethod(method.to_owned()));
    };
    let limit = node.config.limits.max_api_body;
    let body: Bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(ApiError::TooLarge)
        }
        Err(e) => return Err(ApiError::BadRequest(format!("reading body: {e}"))),
    };
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    match method {
        "publish" => publish(node, parse(body)?).await,
        "broadcast" => broadcast(node, parse(body)?).await,
        "subscribe" => subscribe(node, parse(body)?).await,
        "unsubscribe" => unsubscribe_user(node, parse(body)?).await,
        "disconnect" => disconnect(node, parse(body)?).await,
        "presence" => presence(node, parse(body)?).await,
        "presence_stats" => presence_stats(node, parse(body)?).await,
        "history" => history(node, parse(body)?).await,
        "history_remove" => history_remove(node, parse(body)?).await,
        "channels" => channels(node, parse(body)?).await,
        "info" => Ok(info(node)),
        _ => Err(ApiError::UnknownMethod(method.to_owned())),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn check_channel(node: &Node, channel: &str) -> Result<crate::config::NamespaceOptions, ApiError> {
    if channel.is_empty() {
        return Err(ApiError::BadRequest("channel is required".into()));
    }
    if channel.len() > crate::session::handler::MAX_CHANNEL_LEN {
        return Err(ApiError::BadRequest("channel name too long".into()));
    }
    node.config
        .namespaces
        .for_channel(channel)
        .cloned()
        .ok_or(ApiError::Protocol(ErrorCode::UnknownChannel))
}

#[derive(Deserialize)]
struct PublishReq {
    channel: String,
    data: Option<RawJson>,
    #[serde(default)]
    b64data: Option<String>,
    #[serde(default)]
    skip_history: bool,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct BroadcastReq {
    channels: Vec<String>,
    data: Option<RawJson>,
    #[serde(default)]
    b64data: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    skip_history: bool,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn payload(data: Option<RawJson>, b64data: Option<String>) -> Result<RawJson, ApiError> {
    if b64data.is_some() {
        return Err(ApiError::BadRequest(
            "b64data is not supported: this node speaks the JSON protocol, send data".into(),
        ));
    }
    data.ok_or_else(|| ApiError::BadRequest("data is required".into()))
}

async fn publish_one(
    node: &Node,
    channel: &str,
    data: RawJson,
    skip_history: bool,
    tags: BTreeMap<String, String>,
    idempotency_key: Option<&str>,
) -> Result<StreamPosition, ApiError> {
    let ns = check_channel(node, channel)?;
    let publication = Publication {
        data,
        info: None,
        offset: 0,
        tags,
    };
    let pos = node
        .broker
        .publish(channel, publication, &ns, skip_history, idempotency_key)
        .await
        .map_err(|e| {
            tracing::warn!(channel = %channel, error = %e, "api publish failed");
            ApiError::Protocol(ErrorCode::Internal)
        })?;
    node.metrics.publications.increment(1);
    Ok(pos)
}

/// Longest `idempotency_key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 128;

/// An empty key counts as none; others must be short printable ASCII (they travel in a
/// NATS header).
fn idempotency_key(key: Option<&str>) -> Result<Option<&str>, ApiError> {
    match key {
        None | Some("") => Ok(None),
        Some(k) if k.len() <= MAX_IDEMPOTENCY_KEY && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k))
        }
        Some(_) => Err(ApiError::BadRequest(format!(
            "idempotency_key must be at most {MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces"
        ))),
    }
}

fn position_json(p: &StreamPosition) -> Value {
    let mut v = serde_json::Map::new();
    if p.offset != 0 {
        v.insert("offset".into(), j!(p.offset));
        v.insert("epoch".into(), j!(p.epoch));
    }
    Value::Object(v)
}

async fn publish(node: &Node, r: PublishReq) -> Result<Value, ApiError> {
    let data = payload(r.data, r.b64data)?;
    let key = idempotency_key(r.idempotency_key.as_deref())?;
    let pos = publish_one(node, &r.channel, data, r.skip_history, r.tags, key).await?;
    Ok(position_json(&pos))
}

async fn broadcast(node: &Node, r: BroadcastReq) -> Result<Value, ApiError> {
    let data = payload(r.data, r.b64data)?;
    let key = idempotency_key(r.idempotency_key.as_deref())?;
    if r.channels.is_empty() {
        return Err(ApiError::BadRequest("channels is required".into()));
    }
    let mut responses = Vec::with_capacity(r.channels.len());
    for channel in &r.channels {
        let one = publish_one(
            node,
            channel,
            data.clone(),
            r.skip_history,
            r.tags.clone(),
            key,
        )
        .await;
        responses.push(match one {
            Ok(pos) => j!({ "result": position_json(&pos) }),
            Err(ApiError::Protocol(c)) => j!({"error": {"code": c.code(), "message": c.message()}}),
            Err(e) => return Err(e),
        });
    }
    Ok(j!({ "responses": responses }))
}

#[derive(Deserialize)]
struct SubscribeReq {
    user: String,
    channel: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    info: Option<RawJson>,
    #[serde(default)]
    recover_since: Option<WirePosition>,
}

async fn subscribe(node: &Arc<Node>, r: SubscribeReq) -> Result<Value, ApiError> {
    check_channel(node, &r.channel)?;
    let control = Control::Subscribe {
        user: r.user,
        channel: r.channel,
        client: r.client,
        info: r.info.map(|i| i.as_str().to_owned()),
        recover_offset: r.recover_since.as_ref().map(|p| p.offset),
        recover_epoch: r.recover_since.map(|p| p.epoch),
    };
    send_control(node, control).await
}

#[derive(Deserialize)]
struct UnsubscribeReq {
    user: String,
    channel: String,
    #[serde(default)]
    client: Option<String>,
}

async fn unsubscribe_user(node: &Arc<Node>, r: UnsubscribeReq) -> Result<Value, ApiError> {
    check_channel(node, &r.channel)?;
    let control = Control::Unsubscribe {
        user: r.user,
        channel: r.channel,
        client: r.client,
    };
    send_control(node, control).await
}

#[derive(Deserialize)]
struct DisconnectReq {
    user: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    whitelist: Vec<String>,
    #[serde(default)]
    disconnect: Option<CustomDisconnect>,
}

#[derive(Deserialize)]
struct CustomDisconnect {
    code: u16,
    #[serde(default)]
    reason: String,
}

/// Longest close reason a WebSocket close frame can carry.
const MAX_CLOSE_REASON: usize = 123;

async fn disconnect(node: &Arc<Node>, r: DisconnectReq) -> Result<Value, ApiError> {
    let (code, reason) = match r.disconnect {
        None => (DisconnectCode::ForceReconnect.code(), String::new()),
        // A WebSocket close reason holds at most 123 bytes.
        Some(d) if d.reason.len() > MAX_CLOSE_REASON => {
            return Err(ApiError::BadRequest(format!(
                "disconnect.reason must be at most {MAX_CLOSE_REASON} bytes"
            )))
        }
        Some(d) if (3000..5000).contains(&d.code) => (d.code, d.reason),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "disconnect.code must be in 3000..4999".into(),
            ))
        }
    };
    let control = Control::Disconnect {
        user: r.user,
        client: r.client,
        whitelist: r.whitelist,
        code,
        reason,
    };
    send_control(node, control).await
}

/// Hands an action to every node (the embedded broker: applies it here).
async fn send_control(node: &Arc<Node>, control: Control) -> Result<Value, ApiError> {
    node.broker.control(node, control).await.map_err(|e| {
        tracing::warn!(error = %e, "server API action not delivered");
        ApiError::Protocol(ErrorCode::Internal)
    })?;
    Ok(j!({}))
}

#[derive(Deserialize)]
struct ChannelReq {
    channel: String,
}

async fn presence(node: &Node, r: ChannelReq) -> Result<Value, ApiError> {
    let ns = check_channel(node, &r.channel)?;
    if !ns.presence {
        return Err(ErrorCode::NotAvailable.into());
    }
    let p = node
        .broker
        .presence(&r.channel)
        .await
        .map_err(|_| ApiError::Protocol(ErrorCode::Internal))?;
    Ok(j!({ "presence": p }))
}

async fn presence_stats(node: &Node, r: ChannelReq) -> Result<Value, ApiError> {
    let ns = check_channel(node, &r.channel)?;
    if !ns.presence {
        return Err(ErrorCode::NotAvailable.into());
    }
    let s = node
        .broker
        .presence_stats(&r.channel)
        .await
        .map_err(|_| ApiError::Protocol(ErrorCode::Internal))?;
    Ok(serde_json::to_value(PresenceStatsResult {
        num_clients: s.clients as u32,
        num_users: s.users as u32,
    })
    .unwrap_or_default())
}

#[derive(Deserialize)]
struct HistoryReq {
    channel: String,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    since: Option<WirePosition>,
    #[serde(default)]
    reverse: bool,
}

async fn history(node: &Node, r: HistoryReq) -> Result<Value, ApiError> {
    let ns = check_channel(node, &r.channel)?;
    if !ns.has_history() {
        return Err(ErrorCode::NotAvailable.into());
    }
    let query = HistoryQuery {
        since: r.since.map(StreamPosition::from),
        limit: match r.limit {
            None => Some(0),
            Some(n) if n < 0 => None,
            Some(n) => Some(n as usize),
        },
        reverse: r.reverse,
        establish_position: false,
    };
    let h = node
        .broker
        .history(&r.channel, &query, &ns)
        .await
        .map_err(|_| ApiError::Protocol(ErrorCode::Internal))?;
    if let Some(since) = &query.since {
        if since.epoch != h.epoch {
            return Err(ErrorCode::UnrecoverablePosition.into());
        }
    }
    Ok(serde_json::to_value(&h).unwrap_or_default())
}

async fn history_remove(node: &Node, r: ChannelReq) -> Result<Value, ApiError> {
    check_channel(node, &r.channel)?;
    node.broker
        .remove_history(&r.channel)
        .await
        .map_err(|_| ApiError::Protocol(ErrorCode::Internal))?;
    Ok(j!({}))
}

#[derive(Deserialize, Default)]
struct ChannelsReq {
    #[serde(default)]
    pattern: Option<String>,
}

/// Glob match with `*` (any run of characters) and `?` (one character).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

async fn channels(node: &Node, r: ChannelsReq) -> Result<Value, ApiError> {
    let all = node.broker.channels(node).await.map_err(|e| {
        tracing::warn!(error = %e, "channels query failed");
        ApiError::Protocol(ErrorCode::Internal)
    })?;
    let out: HashMap<String, Value> = all
        .into_iter()
        .filter(|(name, _)| r.pattern.as_deref().is_none_or(|p| glob(p, name)))
        .map(|(name, n)| (name, j!({ "num_clients": n })))
        .collect();
    Ok(j!({ "channels": out }))
}

fn info(node: &Node) -> Value {
    let nodes: Vec<Value> = node
        .broker
        .nodes(node)
        .into_iter()
        .map(|s| {
            j!({
                "uid": s.id,
                "name": s.id,
                "version": s.version,
                "num_clients": s.num_clients,
                "num_users": s.num_users,
                "num_channels": s.num_channels,
                "num_subs": s.num_subs,
                "uptime": s.uptime,
                "draining": s.draining,
            })
        })
        .collect();
    j!({ "nodes": nodes, "broker": node.broker.kind() })
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_patterns() {
        assert!(glob("chat:*", "chat:1"));
        assert!(glob("*", "anything"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("chat:*", "news:1"));
        assert!(glob("*:*", "a:b"));
        assert!(!glob("a", "ab"));
    }

    #[test]
    fn api_key_comparison() {
        use super::key_matches;
        let key = b"s3cret-api-key";
        assert!(key_matches(key, b"s3cret-api-key"));
        assert!(!key_matches(key, b"s3cret-api-kez"));
        assert!(!key_matches(key, b"s3cret-api-ke"), "a prefix");
        assert!(
            !key_matches(key, b"s3cret-api-keys3"),
            "longer, wrapping around"
        );
        assert!(
            !key_matches(key, b"s3cret-api-keys3cret-api-key"),
            "the key twice"
        );
        assert!(!key_matches(key, b""));
        assert!(!key_matches(b"", b""), "no key configured matches nothing");
    }
}
