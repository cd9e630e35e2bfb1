//! The client side: the accept loop, the router's own endpoints (`/healthz`, `/readyz`,
//! `/metrics`), and dispatch of everything else to the proxy.

use crate::proxy::{self, full, json, Body};
use crate::router::{Router, Slot};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Largest request head (request line and headers) read from a client, bytes; a
/// bigger one is answered 431. hyper's default (its ~400 KiB read buffer) lets every slow client pin
/// that much memory; browsers send a few KiB (cookies included).
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

pub use herald_shared::net::LISTEN_BACKLOG;
/// How long a keep-alive HTTP connection may take to finish its request at shutdown.
const HTTP_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Binds a listener with a backlog large enough for connect storms.
pub use herald_shared::net::bind;

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
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .max_header_size(MAX_REQUEST_HEAD)
                .header_read_timeout(router2.config.limits.handshake_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(client.addr = %client, error = %e, "client connection ended");
                    }
                }
                _ = router2.stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(HTTP_SHUTDOWN_WAIT, conn).await;
                }
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
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(full(router.prometheus.render()));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
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
