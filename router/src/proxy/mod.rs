//! Proxying to nodes: WebSocket upgrades ([`upgrade`]) and plain HTTP ([`http`]), with
//! the header rules in [`headers`] and the response helpers shared by both.

pub mod headers;
pub mod http;
pub mod trace;
pub mod upgrade;

use crate::router::Router;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

pub use herald_shared::http::{full, json, Body};

/// 503 with `Retry-After`: no node can take the request now.
pub fn unavailable(router: &Router, reason: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": reason }).to_string();
    let mut r = json(StatusCode::SERVICE_UNAVAILABLE, body);
    let secs = router.config.proxy.retry_after.as_secs().max(1);
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// 503 for an upgrade over its node's budget, with a `Retry-After` jittered around
/// `HERALD_ROUTER_RETRY_AFTER` so the refused clients come back spread out.
pub fn throttled(router: &Router) -> Response<Body> {
    let mut r = json(
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":"node is over its connect budget"}"#,
    );
    let secs = crate::admission::retry_after(router.config.proxy.retry_after.as_secs());
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    r
}
