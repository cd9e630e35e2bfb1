//! Proxying to nodes: WebSocket upgrades ([`upgrade`]) and plain HTTP ([`http`]), with
//! the header rules in [`headers`] and the response helpers shared by both.

pub mod headers;
pub mod http;
pub mod upgrade;

use crate::router::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

/// The response body type of every route.
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// A body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON response.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// 503 with `Retry-After`: no node can take the request now.
pub fn unavailable(router: &Router, reason: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": reason }).to_string();
    let mut r = json(StatusCode::SERVICE_UNAVAILABLE, body);
    let secs = router.config.proxy.retry_after.as_secs().max(1);
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    r
}
