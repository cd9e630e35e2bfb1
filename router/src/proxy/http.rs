//! Plain HTTP requests (the server API, anything that is not an upgrade): sent to any
//! healthy node, round-robin, since they carry no session.
//!
//! Only a failure to connect moves the request to the next node: once the request is
//! sent its body is gone, and a `POST /api/publish` must not be published twice.

use super::headers::{add_forwarded, client_ip, strip_hop_by_hop};
use super::upgrade::pass_back;
use super::{json, trace, unavailable, Body};
use crate::error::ProxyError;
use crate::health::Outcome;
use crate::metrics;
use crate::router::Router;
use crate::upstream;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Uri};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

/// Proxies one request from `client` to a healthy node.
pub async fn handle(router: &Router, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let span = trace::request(req.headers(), req.method().as_str(), req.uri().path());
    let ring = router.backends.ring();
    if ring.is_empty() {
        metrics::http_request("no_node");
        trace::finish(&span, "no_node", 503);
        return unavailable(router, "no healthy node");
    }
    let nodes = ring.nodes();
    let first = router.next_http.fetch_add(1, Ordering::Relaxed);
    let attempts = nodes.len().min(1 + router.config.proxy.retries);
    let addr = client_ip(client, req.headers(), &router.config.proxy.trusted_proxies);
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    add_forwarded(&mut parts.headers, client, router.tls.is_some());
    trace::forward(&span, &mut parts.headers);
    // Origin form: nodes expect a path, even if the client sent an absolute URI.
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = path.parse().unwrap_or_else(|_| Uri::from_static("/"));
    parts.version = hyper::Version::HTTP_11;
    let timeout = router.config.proxy.connect_timeout;
    for i in 0..attempts {
        let node = &nodes[(first + i) % nodes.len()];
        span.record("node", &*node.addr);
        if i > 0 {
            metrics::retry();
        }
        let connected = match tokio::time::timeout(timeout, upstream::connect(&node.addr)).await {
            Ok(r) => r,
            Err(_) => Err(ProxyError::Timeout {
                node: node.addr.to_string(),
                timeout,
            }),
        };
        let mut sender = match connected {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(client.addr = %addr, node = %node.addr, error = %e, "cannot reach node");
                span.record("error", tracing::field::display(&e));
                router.backends.attempt_failed(&node.addr, &e, "http");
                continue;
            }
        };
        return match sender.send_request(Request::from_parts(parts, body)).await {
            Ok(response) => {
                metrics::http_request("ok");
                trace::finish(&span, "ok", response.status().as_u16());
                pass_back(response)
            }
            Err(e) => {
                tracing::info!(client.addr = %addr, node = %node.addr, error = %e, "node failed the request");
                router.backends.observe(&node.addr, Outcome::Failed);
                metrics::http_request("failed");
                span.record("error", tracing::field::display(&e));
                trace::finish(&span, "failed", 502);
                json(
                    StatusCode::BAD_GATEWAY,
                    r#"{"error":"the node failed the request"}"#,
                )
            }
        };
    }
    metrics::http_request("failed");
    trace::finish(&span, "failed", 503);
    unavailable(router, "no node took the request")
}
