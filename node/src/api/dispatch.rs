//! The server API's method names, and running one method (other than `batch`) on its
//! JSON body: shared by single requests and by each command of a `batch`.

use super::{methods, ApiError};
use crate::node::Node;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Every method the API serves.
const METHODS: [&str; 13] = [
    "batch",
    "refresh",
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

/// The method named `m`, as a static label.
pub(crate) fn known_method(m: &str) -> Option<&'static str> {
    METHODS.iter().copied().find(|k| *k == m)
}

/// Runs one method other than `batch` on its JSON body.
pub(crate) async fn dispatch(node: &Node, method: &str, body: &[u8]) -> Result<Value, ApiError> {
    match method {
        "refresh" => methods::refresh(node, parse(body)?).await,
        "publish" => methods::publish(node, parse(body)?).await,
        "broadcast" => methods::broadcast(node, parse(body)?).await,
        "subscribe" => methods::subscribe(node, parse(body)?).await,
        "unsubscribe" => methods::unsubscribe_user(node, parse(body)?).await,
        "disconnect" => methods::disconnect(node, parse(body)?).await,
        "presence" => methods::presence(node, parse(body)?).await,
        "presence_stats" => methods::presence_stats(node, parse(body)?).await,
        "history" => methods::history(node, parse(body)?).await,
        "history_remove" => methods::history_remove(node, parse(body)?).await,
        "channels" => methods::channels(node, parse(body)?).await,
        "info" => Ok(methods::info(node)),
        _ => Err(ApiError::UnknownMethod(method.to_owned())),
    }
}

/// Reads a method's body.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(e.to_string()))
}
