//! Trace spans of proxied requests: one per upgrade or plain request, never per byte or
//! frame. Its context goes to the node in `traceparent`, so the node's span of the same
//! request is its child.
//!
//! With `HERALD_ROUTER_OTEL_ENDPOINT` unset the spans are disabled at their call site:
//! making one costs a branch, recording into it and [`forward`] cost nothing more, and
//! the client's own `traceparent` passes through untouched.

use herald_shared::otel::{self, TRACE_TARGET};
use hyper::header::HeaderMap;
use tracing::Span;

/// The trace headers: replaced by the router's own when it traces.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// The span of one WebSocket upgrade; a `traceparent` from the client is its parent.
pub fn upgrade(headers: &HeaderMap, sticky_source: &'static str) -> Span {
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "herald.router.upgrade",
        sticky.source = sticky_source,
        node = tracing::field::Empty,
        attempts = tracing::field::Empty,
        error = tracing::field::Empty,
        result = tracing::field::Empty,
        http.status_code = tracing::field::Empty,
    );
    adopt(&span, headers);
    span
}

/// The span of one plain HTTP request (the server API); a `traceparent` from the
/// client is its parent.
pub fn request(headers: &HeaderMap, method: &str, path: &str) -> Span {
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "herald.router.http",
        http.method = method,
        http.path = path,
        node = tracing::field::Empty,
        error = tracing::field::Empty,
        result = tracing::field::Empty,
        http.status_code = tracing::field::Empty,
    );
    adopt(&span, headers);
    span
}

/// Makes the client's trace context, if any, the parent of `span`.
fn adopt(span: &Span, headers: &HeaderMap) {
    otel::extract_into(span, |k| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
}

/// Puts `span`'s context into the request headers going to the node, in place of the
/// client's (which is `span`'s parent already). Leaves them alone when tracing is off.
pub fn forward(span: &Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    for h in TRACE_HEADERS {
        headers.remove(h);
    }
    otel::inject(span, |k, v| {
        if let Ok(v) = v.parse() {
            headers.insert(k, v);
        }
    });
}

/// Records how the request ended: `result` and, when the client got an HTTP answer of
/// the router's or the node's, its status.
pub fn finish(span: &Span, result: &'static str, status: u16) {
    span.record("result", result);
    // An i64: OpenTelemetry has no unsigned integers (a u64 is exported as text).
    span.record("http.status_code", i64::from(status));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_tracing_off_the_clients_trace_headers_pass_through() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", "00-abc-def-01".parse().unwrap());
        let span = upgrade(&headers, "cookie");
        assert!(span.is_disabled());
        forward(&span, &mut headers);
        assert_eq!(headers["traceparent"], "00-abc-def-01");
    }
}
