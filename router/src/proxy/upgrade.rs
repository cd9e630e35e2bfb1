//! WebSocket upgrades: choose the node by the client's key, forward the upgrade request,
//! pass the node's 101 back (with the stickiness cookie), then tunnel the bytes.
//!
//! Candidates are tried in rendezvous order. A node that cannot be reached, times out,
//! or answers 5xx is skipped for the next one (up to `HERALD_ROUTER_RETRIES` more); each
//! such failure also counts against its health, and a refusal that says "draining" takes
//! it out of the ring at once. A 4xx (bad handshake, Origin refused) is the client's
//! problem and is passed back as it is: another node would say the same.

use super::headers::{add_forwarded, client_ip, set_upgrade, strip_hop_by_hop};
use super::{throttled, trace, unavailable, Body};
use crate::error::ProxyError;
use crate::health::{self, Outcome};
use crate::metrics;
use crate::ring::RingNode;
use crate::router::{Router, Slot};
use crate::sticky::{self, KeySource};
use crate::{tunnel, upstream};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, SET_COOKIE};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest refusal body read to see why a node refused, bytes.
const MAX_REFUSAL_BODY: usize = 4096;

/// What a node did with the upgrade.
enum Answer {
    /// 101: the connection is the node's.
    Switched(Response<Incoming>),
    /// A final answer for the client (4xx and the like).
    Final(Response<Incoming>),
}

/// Proxies one upgrade request from `client`; `slot` is held by the tunnel.
pub async fn handle(
    router: Arc<Router>,
    mut req: Request<Incoming>,
    client: SocketAddr,
    slot: Arc<Slot>,
) -> Response<Body> {
    let addr = client_ip(client, req.headers(), &router.config.proxy.trusted_proxies);
    let key = sticky::key(&router.config.sticky, req.headers(), req.uri(), addr);
    // Ends when the client gets its answer: the tunnel that may follow is not in it.
    let span = trace::upgrade(req.headers(), key.source.as_str());
    let candidates = router
        .backends
        .ring()
        .candidates(key.hash, 1 + router.config.proxy.retries);
    if candidates.is_empty() {
        metrics::upgrade("no_node");
        trace::finish(&span, "no_node", 503);
        return unavailable(&router, "no healthy node");
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut headers = req.headers().clone();
    strip_hop_by_hop(&mut headers);
    set_upgrade(&mut headers);
    add_forwarded(&mut headers, client, router.tls.is_some());
    trace::forward(&span, &mut headers);
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    for (attempt, node) in candidates.iter().enumerate() {
        span.record("node", &*node.addr);
        span.record("attempts", attempt as i64 + 1);
        // Over budget: wait, do not move. Another node would break stickiness and take
        // the whole herd of a node that just came back.
        if !router.admission.admit(&node.addr) {
            tracing::debug!(client.addr = %addr, node = %node.addr, "upgrade over the node's budget");
            metrics::upgrade("throttled");
            trace::finish(&span, "throttled", 503);
            return throttled(&router);
        }
        if attempt > 0 {
            metrics::retry();
        }
        match ask(&router, node, &path, &headers).await {
            Ok(Answer::Switched(response)) => {
                metrics::upgrade("ok");
                trace::finish(&span, "tunnelled", 101);
                let set_cookie = (key.source != KeySource::Cookie)
                    .then(|| sticky::set_cookie(&router.config.sticky, &key));
                return switch(
                    &router,
                    node,
                    response,
                    client_upgrade,
                    set_cookie,
                    slot,
                    addr,
                );
            }
            Ok(Answer::Final(response)) => {
                metrics::upgrade("refused");
                trace::finish(&span, "refused", response.status().as_u16());
                return pass_back(response);
            }
            Err(e) => {
                if matches!(e, ProxyError::Local { .. }) {
                    tracing::warn!(client.addr = %addr, node = %node.addr, error = %e, "upgrade attempt failed: the router is out of local ports or files (widen net.ipv4.ip_local_port_range, raise the file limit, or add routers)");
                } else {
                    tracing::info!(client.addr = %addr, node = %node.addr, error = %e, "upgrade attempt failed");
                }
                span.record("error", tracing::field::display(&e));
                if !e.retryable() {
                    break;
                }
            }
        }
    }
    metrics::upgrade("failed");
    trace::finish(&span, "failed", 503);
    unavailable(&router, "no node took the connection")
}

/// Sends the upgrade to `node` and sorts its answer, reporting failures to its health.
async fn ask(
    router: &Router,
    node: &RingNode,
    path: &str,
    headers: &HeaderMap,
) -> Result<Answer, ProxyError> {
    let timeout = router.config.proxy.connect_timeout;
    let exchange = async {
        let mut sender = upstream::connect::<Empty<Bytes>>(&node.addr).await?;
        let mut request = Request::get(path)
            .body(Empty::new())
            .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
        *request.headers_mut() = headers.clone();
        let response =
            sender
                .send_request(request)
                .await
                .map_err(|source| ProxyError::Exchange {
                    node: node.addr.to_string(),
                    source,
                })?;
        if !response.status().is_server_error() {
            return Ok(response);
        }
        // Why did it refuse? A draining node says so; the body is tiny.
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_REFUSAL_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let outcome = health::classify(status, &body);
        // A 503 that is not draining is a full node: skip it, but it is not unhealthy.
        if outcome == Outcome::Draining || status != StatusCode::SERVICE_UNAVAILABLE {
            router.backends.observe(&node.addr, outcome);
        }
        Err(ProxyError::Refused {
            node: node.addr.to_string(),
            status,
        })
    };
    let result = match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::Timeout {
            node: node.addr.to_string(),
            timeout,
        }),
    };
    match result {
        Ok(r) if r.status() == StatusCode::SWITCHING_PROTOCOLS => Ok(Answer::Switched(r)),
        Ok(r) => Ok(Answer::Final(r)),
        Err(e) => {
            router.backends.attempt_failed(&node.addr, &e, "upgrade");
            Err(e)
        }
    }
}

/// Answers the client with the node's 101 and starts the tunnel once both sides have
/// switched.
fn switch(
    router: &Arc<Router>,
    node: &Arc<RingNode>,
    mut response: Response<Incoming>,
    client_upgrade: OnUpgrade,
    set_cookie: Option<hyper::header::HeaderValue>,
    slot: Arc<Slot>,
    client: std::net::IpAddr,
) -> Response<Body> {
    let node_upgrade = hyper::upgrade::on(&mut response);
    let mut headers = response.headers().clone();
    strip_hop_by_hop(&mut headers);
    set_upgrade(&mut headers);
    if let Some(cookie) = set_cookie {
        headers.append(SET_COOKIE, cookie);
    }
    let router2 = router.clone();
    let node2 = node.clone();
    router.tracker.spawn(async move {
        let _slot = slot;
        let both = async { tokio::try_join!(client_upgrade, node_upgrade) };
        let wait = router2.config.limits.handshake_timeout;
        let (client_io, node_io) = match tokio::time::timeout(wait, both).await {
            Ok(Ok(ios)) => ios,
            Ok(Err(e)) => {
                tracing::debug!(node = %node2.addr, error = %e, "a side did not switch protocols");
                return;
            }
            Err(_) => {
                tracing::debug!(node = %node2.addr, "a side took too long to switch protocols");
                return;
            }
        };
        let started = std::time::Instant::now();
        let end = tunnel::run(
            TokioIo::new(client_io),
            TokioIo::new(node_io),
            &node2,
            router2.config.proxy.idle_timeout,
            router2.close.clone(),
        )
        .await;
        // One line per connection close (fields documented in the README's log section).
        tracing::debug!(
            client.addr = %client,
            node = %node2.addr,
            end = end.as_str(),
            duration_s = started.elapsed().as_secs_f64(),
            "tunnel closed"
        );
        // Ends by idling or by our own shutdown say nothing about the node.
        if matches!(end, tunnel::End::Closed | tunnel::End::Error) {
            router2.backends.tunnel_ended(&node2.addr);
        }
    });
    let mut out = Response::new(super::full(Bytes::new()));
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = headers;
    out
}

/// A node's final answer, streamed back without its hop-by-hop headers.
pub fn pass_back(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.boxed())
}
