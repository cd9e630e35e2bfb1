//! The server API: `POST /api/<method>` with `X-API-Key`, JSON in and out, in the style
//! of Centrifugo's HTTP API so its server SDKs (e.g. Python `cent`) work unchanged.
//!
//! Transport problems are HTTP statuses (401 wrong key, 400 unreadable body, 404 unknown
//! method, 413 body too large); problems with a well-formed request are answered
//! 200 with `{"error":{"code":C,"message":"..."}}`, as that API does.

use crate::broker::HistoryQuery;
use crate::node::Node;
use crate::server::{json, Body};
use crate::session::conn::{ChannelState, Conn};
use crate::session::handler::{attach, unsubscribe_conn, AttachOptions, Failure};
use bytes::Bytes;
use herald_shared::protocol::codes::unsubscribe;
use herald_shared::protocol::command::WirePosition;
use herald_shared::protocol::reply::{encode_subscribe_push, encode_unsubscribe_push};
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

fn key_ok(node: &Node, req: &Request<Incoming>) -> bool {
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
    match given {
        // Constant time: the comparison must not reveal how much of a guess was right.
        Some(g) => bool::from(g.as_bytes().ct_eq(expected.as_bytes())),
        None => false,
    }
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
        "disconnect" => disconnect(node, parse(body)?),
        "presence" => presence(node, parse(body)?).await,
        "presence_stats" => presence_stats(node, parse(body)?).await,
        "history" => history(node, parse(body)?).await,
        "history_remove" => history_remove(node, parse(body)?).await,
        "channels" => Ok(channels(node, parse(body)?)),
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
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct BroadcastReq {
    channels: Vec<String>,
    data: Option<RawJson>,
    #[serde(default)]
    b64data: Option<String>,
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
        .publish(channel, publication, &ns, skip_history)
        .await
        .map_err(|e| {
            tracing::warn!(channel = %channel, error = %e, "api publish failed");
            ApiError::Protocol(ErrorCode::Internal)
        })?;
    node.metrics.publications.increment(1);
    Ok(pos)
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
    let pos = publish_one(node, &r.channel, data, r.skip_history, r.tags).await?;
    Ok(position_json(&pos))
}

async fn broadcast(node: &Node, r: BroadcastReq) -> Result<Value, ApiError> {
    let data = payload(r.data, r.b64data)?;
    if r.channels.is_empty() {
        return Err(ApiError::BadRequest("channels is required".into()));
    }
    let mut responses = Vec::with_capacity(r.channels.len());
    for channel in &r.channels {
        let one = publish_one(node, channel, data.clone(), r.skip_history, r.tags.clone()).await;
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

fn targets(node: &Node, user: &str, client: Option<&str>) -> Vec<Arc<Conn>> {
    node.registry.find(user, client.filter(|c| !c.is_empty()))
}

async fn subscribe(node: &Node, r: SubscribeReq) -> Result<Value, ApiError> {
    let ns = check_channel(node, &r.channel)?;
    for conn in targets(node, &r.user, r.client.as_deref()) {
        let already = conn
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&r.channel);
        if already {
            continue;
        }
        let state = ChannelState {
            chan_info: r.info.clone(),
            expires_at: 0,
        };
        let options = AttachOptions {
            join_leave: false,
            recover: r.recover_since.take_position(),
            reject_unrecovered: false,
        };
        match attach(node, &conn, &r.channel, &ns, state, options).await {
            Ok((result, up_to)) => {
                conn.out.push(encode_subscribe_push(&r.channel, &result));
                node.hub.go_live(&r.channel, conn.id, up_to);
            }
            Err(Failure::Error(c)) => return Err(c.into()),
            Err(Failure::Close(_)) => return Err(ErrorCode::Internal.into()),
        }
    }
    Ok(j!({}))
}

trait TakePosition {
    fn take_position(&self) -> Option<StreamPosition>;
}

impl TakePosition for Option<WirePosition> {
    fn take_position(&self) -> Option<StreamPosition> {
        self.as_ref().map(|p| StreamPosition {
            offset: p.offset,
            epoch: p.epoch.clone(),
        })
    }
}

#[derive(Deserialize)]
struct UnsubscribeReq {
    user: String,
    channel: String,
    #[serde(default)]
    client: Option<String>,
}

async fn unsubscribe_user(node: &Node, r: UnsubscribeReq) -> Result<Value, ApiError> {
    check_channel(node, &r.channel)?;
    for conn in targets(node, &r.user, r.client.as_deref()) {
        if unsubscribe_conn(node, &conn, &r.channel).await {
            conn.out.push(encode_unsubscribe_push(
                &r.channel,
                unsubscribe::SERVER,
                "server unsubscribe",
            ));
        }
    }
    Ok(j!({}))
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

fn disconnect(node: &Node, r: DisconnectReq) -> Result<Value, ApiError> {
    let close = match r.disconnect {
        None => DisconnectCode::ForceReconnect.into(),
        Some(d) => {
            if !(3000..5000).contains(&d.code) {
                return Err(ApiError::BadRequest(
                    "disconnect.code must be in 3000..4999".into(),
                ));
            }
            let known = DisconnectCode::ALL.iter().find(|c| c.code() == d.code);
            crate::session::outbound::CloseReason {
                code: d.code,
                // Close reasons are static: custom texts map to the known reason or a generic one.
                reason: known.map(|c| c.reason()).unwrap_or(if d.reason.is_empty() {
                    "disconnect"
                } else {
                    "server disconnect"
                }),
                push: true,
            }
        }
    };
    for conn in targets(node, &r.user, r.client.as_deref()) {
        let spared = conn
            .identity()
            .is_some_and(|i| r.whitelist.contains(&i.client));
        if !spared {
            conn.out.close(close);
        }
    }
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
        since: r.since.take_position(),
        limit: match r.limit {
            None => Some(0),
            Some(n) if n < 0 => None,
            Some(n) => Some(n as usize),
        },
        reverse: r.reverse,
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

fn channels(node: &Node, r: ChannelsReq) -> Value {
    let mut out: HashMap<String, Value> = HashMap::new();
    for (name, n) in node.hub.channels() {
        if r.pattern.as_deref().is_none_or(|p| glob(p, &name)) {
            out.insert(name, j!({ "num_clients": n }));
        }
    }
    j!({ "channels": out })
}

fn info(node: &Node) -> Value {
    let conns = node.registry.all();
    let channels = node.hub.channels();
    j!({
        "nodes": [{
            "uid": node.config.node_id,
            "name": node.config.node_id,
            "version": env!("CARGO_PKG_VERSION"),
            "num_clients": conns.len(),
            "num_users": node.registry.num_users(),
            "num_channels": channels.len(),
            "num_subs": channels.iter().map(|(_, n)| n).sum::<usize>(),
            "uptime": node.started.elapsed().as_secs(),
            "broker": node.broker.kind(),
        }]
    })
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
}
