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
//! - [`dispatch`]: the method names and running one method on its body;
//! - [`batch`]: `batch`, many commands in one request;
//! - [`error`]: failures and their responses; [`key`]: the API key check.

pub mod batch;
pub mod dispatch;
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
use serde_json::{json as j, Value};
use std::sync::Arc;

/// Answers one API request.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>, method: &str) -> Response<Body> {
    let label = dispatch::known_method(method).unwrap_or("unknown");
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
        // `batch` answers `{"replies": [...]}` without the `result` wrapper, as Centrifugo.
        Ok(v) if label == "batch" => {
            json(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default())
        }
        Ok(v) => json(
            StatusCode::OK,
            serde_json::to_vec(&j!({ "result": v })).unwrap_or_default(),
        ),
        Err(e) => e.response(),
    }
}

async fn run(node: &Arc<Node>, req: Request<Incoming>, method: &str) -> Result<Value, ApiError> {
    if !key::key_ok(node, &req) {
        return Err(ApiError::Unauthorized);
    }
    let Some(method) = dispatch::known_method(method) else {
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
    if method == "batch" {
        return batch::batch(node, dispatch::parse(body)?).await;
    }
    dispatch::dispatch(node, method, body).await
}
