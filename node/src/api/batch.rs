//! `batch`: many server API commands in one request, as Centrifugo's
//! `{"commands": [{"publish": {...}}, ...], "parallel": false}`, answered
//! `{"replies": [{"publish": {...}}, {"error": {...}}, ...]}` in the same order.
//!
//! Without `parallel` the commands run one after another (so publications keep their
//! order); with it they run concurrently inside this request. One command's failure is
//! its own reply and never stops the others.

use super::dispatch::{dispatch, known_method};
use super::ApiError;
use crate::node::Node;
use herald_shared::protocol::ErrorCode;
use serde::Deserialize;
use serde_json::{json as j, Map, Value};

/// Most commands in one batch. The body limit bounds it too; this keeps a body of tiny
/// commands from queueing unbounded work in one request.
pub const MAX_BATCH_COMMANDS: usize = 1000;

/// The request body.
#[derive(Deserialize)]
pub(super) struct BatchReq {
    /// Commands, each an object with one method name as its key.
    #[serde(default)]
    commands: Vec<Value>,
    /// Run the commands concurrently.
    #[serde(default)]
    parallel: bool,
}

/// Runs every command and gathers the replies.
pub(super) async fn batch(node: &Node, r: BatchReq) -> Result<Value, ApiError> {
    if r.commands.len() > MAX_BATCH_COMMANDS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BATCH_COMMANDS} commands in one batch"
        )));
    }
    let replies: Vec<Value> = if r.parallel {
        futures_util::future::join_all(r.commands.iter().map(|c| one(node, c))).await
    } else {
        let mut replies = Vec::with_capacity(r.commands.len());
        for c in &r.commands {
            replies.push(one(node, c).await);
        }
        replies
    };
    Ok(j!({ "replies": replies }))
}

/// One command's reply: `{"<method>": result}` or `{"error": {...}}`.
async fn one(node: &Node, command: &Value) -> Value {
    // As Centrifugo: `null` (or anything not an object) is "bad request" 107, an object
    // naming no method it knows is "not found" 104; a batch inside a batch is not a
    // command.
    if !command.is_object() {
        return error(
            ErrorCode::BadRequest.code(),
            ErrorCode::BadRequest.message(),
        );
    }
    let Some((method, body)) = command.as_object().and_then(|o| {
        o.iter()
            .find(|(k, _)| known_method(k).is_some_and(|m| m != "batch"))
    }) else {
        return error(104, "not found");
    };
    let body = serde_json::to_vec(body).unwrap_or_default();
    let body: &[u8] = if body == b"null" { b"{}" } else { &body };
    match dispatch(node, method, body).await {
        Ok(v) => {
            let mut reply = Map::new();
            reply.insert(method.clone(), v);
            Value::Object(reply)
        }
        Err(ApiError::Protocol(c)) => error(c.code(), c.message()),
        // A command that does not fit its method: the request's own "bad request".
        Err(ApiError::BadRequest(_)) => error(
            ErrorCode::BadRequest.code(),
            ErrorCode::BadRequest.message(),
        ),
        Err(e) => error(ErrorCode::Internal.code(), &e.to_string()),
    }
}

fn error(code: u32, message: &str) -> Value {
    j!({ "error": { "code": code, "message": message } })
}
