//! The client side: the accept loop (and the TLS handshake, when configured), the
//! router's own endpoints (`/healthz`, `/readyz`, `/metrics`), and dispatch of
//! everything else to the proxy.

use crate::proxy::{self, json, Body};
use crate::router::{Router, Slot};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use herald_shared::net::{bind, LISTEN_BACKLOG, MAX_REQUEST_HEAD};

/// Accepts client connections until `router.stop` fires.
pub async fn accept_loop(router: Arc<Router>, listener: TcpListener) {
    while let Some((stream, client)) = herald_shared::net::accept(&listener, &router.stop).await {
        let (slot, over_limit) = router.slot();
        let router2 = router.clone();
        router.tracker.spawn(async move {
            let svc_router = router2.clone();
            let service = hyper::service::service_fn(move |req| {
                let router = svc_router.clone();
                let slot = slot.clone();
                async move {
                    let response = if over_limit {
                        over_limit_response(&router, &req)
                    } else {
                        route(router, req, client, slot).await
                    };
                    Ok::<_, hyper::Error>(response)
                }
            });
            let timeout = router2.config.limits.handshake_timeout;
            let stop = &router2.stop;
            let served = match &router2.tls {
                None => herald_shared::net::serve_http1(stream, service, timeout, stop).await,
                Some(tls) => {
                    let handshake = tokio::select! {
                        h = tls.accept(stream, timeout) => h,
                        _ = stop.cancelled() => return,
                    };
                    match handshake {
                        Ok(tls_stream) => {
                            herald_shared::net::serve_http1(tls_stream, service, timeout, stop)
                                .await
                        }
                        Err(e) => {
                            tracing::debug!(client.addr = %client, error = %e, "TLS handshake failed");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(client.addr = %client, error = %e, "client connection ended");
            }
        });
    }
}

fn over_limit_response(router: &Router, req: &Request<Incoming>) -> Response<Body> {
    if proxy::headers::is_websocket_upgrade(req.headers()) {
        crate::metrics::upgrade("limit");
    } else {
        crate::metrics::http_request("limit");
    }
    let mut r = proxy::unavailable(router, "connection limit reached");
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn route(
    router: Arc<Router>,
    req: Request<Incoming>,
    client: SocketAddr,
    slot: Arc<Slot>,
) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET, "/readyz") => readyz(&router),
        (&Method::GET, "/metrics") => herald_shared::http::metrics(router.prometheus.render()),
        _ if proxy::headers::is_websocket_upgrade(req.headers()) => {
            proxy::upgrade::handle(router, req, client, slot).await
        }
        _ => proxy::http::handle(&router, req, client).await,
    }
}

/// 200 while at least one node takes connections, else 503; the body lists every known
/// node and its state either way.
fn readyz(router: &Router) -> Response<Body> {
    let nodes = router.backends.view();
    let healthy = router.backends.ring().len();
    let reason = if router.stop.is_cancelled() {
        Some("draining")
    } else if healthy == 0 {
        Some("no healthy node")
    } else {
        None
    };
    let (status, body) = match reason {
        None => (
            StatusCode::OK,
            serde_json::json!({"status": "ready", "healthy": healthy, "nodes": nodes}),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "not ready", "reason": reason, "healthy": healthy, "nodes": nodes}),
        ),
    };
    json(status, body.to_string())
}
