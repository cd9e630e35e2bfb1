//! The server API: `POST /api/<method>` with `X-API-Key`, JSON in and out, in the style
//! of Centrifugo's HTTP API so its server SDKs (e.g. Python `cent`) work unchanged.
//!
//! Transport problems are HTTP statuses (401 wrong key, 400 unreadable body, 404 unknown
//! method, 413 body too large); problems with a well-formed request are answered
//! 200 with `{"error":{"code":C,"message":"..."}}`, as that API does.
//!
//! # Layout
//! - this file: reading the request and dispatching it;
//! - [`methods`]: each method's request shape and answer, over the channel operations;
//! - [`error`]: failures and their responses; [`key`]: the API key check.

pub mod error;
pub mod key;
pub mod methods;

use crate::node::Node;
use bytes::Bytes;
pub use error::ApiError;
use herald_shared::http::{json, Body};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json as j, Value};
use std::sync::Arc;

/// Answers one API request.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>, method: &str) -> Response<Body> {
    let label = known_method(method).unwrap_or("unknown");
    // The root of a publish's trace (or a child of the caller's, from its traceparent).
    let span = tracing::info_span!(
        target: herald_shared::otel::TRACE_TARGET,
        "herald.api",
        http.method = "POST",
        api.method = label,
        node = %node.config.node_id,
        api.result = tracing::field::Empty,
    );
    herald_shared::otel::extract_into(&span, |k| {
        req.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let r = tracing::Instrument::instrument(run(&node, req, method), span.clone()).await;
    let result = match &r {
        Ok(_) => "ok",
        Err(e) => e.label(),
    };
    span.record("api.result", result);
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

async fn run(node: &Arc<Node>, req: Request<Incoming>, method: &str) -> Result<Value, ApiError> {
    if !key::key_ok(node, &req) {
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

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(e.to_string()))
}
