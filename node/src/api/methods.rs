//! The server API's methods: each one's request shape and answer. What they do to
//! channels is a channel operation ([`crate::channel`]), shared with the client
//! protocol.

use super::error::ApiError;
use crate::broker::HistoryQuery;
use crate::channel::{self, history, presence, Caller};
use crate::node::Node;
use herald_shared::codec::Control;
use herald_shared::protocol::command::WirePosition;
use herald_shared::protocol::{DisconnectCode, ErrorCode, RawJson, StreamPosition};
use serde::Deserialize;
use serde_json::{json as j, Value};
use std::collections::{BTreeMap, HashMap};

#[derive(Deserialize)]
pub(super) struct PublishReq {
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
    /// Publish in delta mode (Centrifugo's `delta`; `delta_publish` also accepted).
    #[serde(default, alias = "delta_publish")]
    delta: bool,
}

#[derive(Deserialize)]
pub(super) struct BroadcastReq {
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
    /// Publish in delta mode (Centrifugo's `delta`; `delta_publish` also accepted).
    #[serde(default, alias = "delta_publish")]
    delta: bool,
}

/// `data`, or `b64data` decoded (which wins when not empty, as in Centrifugo). The JSON
/// protocol carries a publication's data as a JSON value, so decoded bytes that are not
/// one are refused (Centrifugo would pass them on and break its JSON clients' frames).
fn payload(data: Option<RawJson>, b64data: Option<String>) -> Result<RawJson, ApiError> {
    use base64::Engine;
    if let Some(b64) = b64data.filter(|s| !s.is_empty()) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| invalid("b64data is not valid base64"))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| not_json())?;
        return RawJson::parse(text).map_err(|_| not_json());
    }
    data.ok_or_else(|| invalid("data is required"))
}

fn not_json() -> ApiError {
    invalid("b64data must decode to a JSON value: this node speaks the JSON client protocol")
}

/// A well-formed request with a value the method cannot take: answered 200 with error
/// 107 "bad request", as Centrifugo does; the detail goes to the log.
fn invalid(why: &str) -> ApiError {
    tracing::debug!(reason = why, "server API request refused");
    ApiError::Protocol(ErrorCode::BadRequest)
}

#[derive(Deserialize)]
pub(super) struct RefreshReq {
    user: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    expired: bool,
    #[serde(default)]
    expire_at: i64,
}

/// `refresh`: changes when a user's connections expire, or expires them now, on every
/// node. Herald connections have no session id: a non-empty `session` matches none.
pub(super) async fn refresh(node: &Node, r: RefreshReq) -> Result<Value, ApiError> {
    if r.session.as_deref().is_some_and(|s| !s.is_empty()) {
        return Ok(j!({}));
    }
    let control = Control::Refresh {
        user: r.user,
        client: r.client,
        expired: r.expired,
        expire_at: u64::try_from(r.expire_at).unwrap_or(0),
    };
    send_control(node, control).await
}

async fn publish_one(
    node: &Node,
    channel: &str,
    data: RawJson,
    skip_history: bool,
    tags: BTreeMap<String, String>,
    idempotency_key: Option<&str>,
    delta: bool,
) -> Result<StreamPosition, ApiError> {
    let p = channel::publish::Publish {
        data: Some(data),
        skip_history,
        tags,
        idempotency_key,
        delta,
    };
    Ok(channel::publish::publish(node, Caller::Server, channel, p).await?)
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
        Some(_) => Err(invalid(
            "idempotency_key must be at most 128 printable ASCII characters without spaces",
        )),
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

/// `publish`: one channel.
pub(super) async fn publish(node: &Node, r: PublishReq) -> Result<Value, ApiError> {
    let data = payload(r.data, r.b64data)?;
    let key = idempotency_key(r.idempotency_key.as_deref())?;
    let pos = publish_one(node, &r.channel, data, r.skip_history, r.tags, key, r.delta).await?;
    Ok(position_json(&pos))
}

/// `broadcast`: the same publication to several channels, answered one by one.
pub(super) async fn broadcast(node: &Node, r: BroadcastReq) -> Result<Value, ApiError> {
    let data = payload(r.data, r.b64data)?;
    let key = idempotency_key(r.idempotency_key.as_deref())?;
    if r.channels.is_empty() {
        return Err(invalid("channels is required"));
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
            r.delta,
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
pub(super) struct SubscribeReq {
    user: String,
    channel: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    info: Option<RawJson>,
    #[serde(default)]
    recover_since: Option<WirePosition>,
}

/// `subscribe`: a user's connections, on every node.
pub(super) async fn subscribe(node: &Node, r: SubscribeReq) -> Result<Value, ApiError> {
    channel::namespace(node, &r.channel)?;
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
pub(super) struct UnsubscribeReq {
    user: String,
    channel: String,
    #[serde(default)]
    client: Option<String>,
}

/// `unsubscribe`: a user's connections, on every node.
pub(super) async fn unsubscribe_user(node: &Node, r: UnsubscribeReq) -> Result<Value, ApiError> {
    channel::namespace(node, &r.channel)?;
    let control = Control::Unsubscribe {
        user: r.user,
        channel: r.channel,
        client: r.client,
    };
    send_control(node, control).await
}

#[derive(Deserialize)]
pub(super) struct DisconnectReq {
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

/// `disconnect`: a user's connections, on every node.
pub(super) async fn disconnect(node: &Node, r: DisconnectReq) -> Result<Value, ApiError> {
    let (code, reason) = match r.disconnect {
        None => (DisconnectCode::ForceReconnect.code(), String::new()),
        // A WebSocket close reason holds at most 123 bytes.
        Some(d) if d.reason.len() > MAX_CLOSE_REASON => {
            return Err(invalid("disconnect.reason must be at most 123 bytes"))
        }
        Some(d) if (3000..5000).contains(&d.code) => (d.code, d.reason),
        Some(_) => return Err(invalid("disconnect.code must be in 3000..4999")),
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
async fn send_control(node: &Node, control: Control) -> Result<Value, ApiError> {
    node.broker.control(control).await.map_err(|e| {
        tracing::warn!(error = %e, "server API action not delivered");
        ApiError::Protocol(ErrorCode::Internal)
    })?;
    Ok(j!({}))
}

#[derive(Deserialize)]
pub(super) struct ChannelReq {
    channel: String,
}

/// `presence`.
pub(super) async fn presence(node: &Node, r: ChannelReq) -> Result<Value, ApiError> {
    let p = presence::presence(node, Caller::Server, &r.channel).await?;
    Ok(j!({ "presence": p }))
}

/// `presence_stats`.
pub(super) async fn presence_stats(node: &Node, r: ChannelReq) -> Result<Value, ApiError> {
    let s = presence::stats(node, Caller::Server, &r.channel).await?;
    Ok(serde_json::to_value(s).unwrap_or_default())
}

#[derive(Deserialize)]
pub(super) struct HistoryReq {
    channel: String,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    since: Option<WirePosition>,
    #[serde(default)]
    reverse: bool,
}

/// `history`: without a `limit`, the position only.
pub(super) async fn history(node: &Node, r: HistoryReq) -> Result<Value, ApiError> {
    let query = HistoryQuery {
        since: r.since.map(StreamPosition::from),
        limit: r.limit.map_or(Some(0), history::limit),
        reverse: r.reverse,
        establish_position: false,
    };
    let h = history::history(node, Caller::Server, &r.channel, query).await?;
    Ok(serde_json::to_value(&h).unwrap_or_default())
}

/// `history_remove`.
pub(super) async fn history_remove(node: &Node, r: ChannelReq) -> Result<Value, ApiError> {
    history::remove(node, &r.channel).await?;
    Ok(j!({}))
}

#[derive(Deserialize, Default)]
pub(super) struct ChannelsReq {
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

/// `channels`: with subscribers anywhere, optionally matching a glob pattern.
pub(super) async fn channels(node: &Node, r: ChannelsReq) -> Result<Value, ApiError> {
    let all = node.broker.channels().await.map_err(|e| {
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

/// `info`: every live node.
pub(super) fn info(node: &Node) -> Value {
    let nodes: Vec<Value> = node
        .broker
        .nodes()
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
}
