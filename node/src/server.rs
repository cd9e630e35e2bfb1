//! The HTTP side of a node: the accept loop, routing, the WebSocket upgrade and the
//! probes. One port serves `/connection/websocket`, `/api/*`, `/healthz`, `/readyz`
//! and `/metrics`.

use crate::node::Node;
use bytes::Bytes;
use herald_shared::protocol::Encoding;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use herald_shared::http::{full, json, Body};

pub use herald_shared::net::{bind, LISTEN_BACKLOG, MAX_REQUEST_HEAD};

/// Accepts connections until `node.stop` fires.
pub async fn accept_loop(node: Arc<Node>, listener: TcpListener) {
    while let Some((stream, remote)) = herald_shared::net::accept(&listener, &node.stop).await {
        let node2 = node.clone();
        node.tracker.spawn(async move {
            let svc_node = node2.clone();
            let service = hyper::service::service_fn(move |req| {
                let node = svc_node.clone();
                async move { Ok::<_, hyper::Error>(route(node, req, remote).await) }
            });
            let timeout = node2.config.limits.handshake_timeout;
            if let Err(e) =
                herald_shared::net::serve_http1(stream, service, timeout, &node2.stop).await
            {
                tracing::debug!(client.addr = %remote, error = %e, "http connection ended");
            }
        });
    }
}

async fn route(node: Arc<Node>, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/connection/websocket") => upgrade(node, req, remote),
        (&Method::GET, "/healthz") => json(StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET, "/readyz") => readyz(&node),
        (&Method::GET, "/metrics") => herald_shared::http::metrics(node.prometheus.render()),
        (&Method::POST, "/admin/drain") => admin_drain(&node, &req),
        (_, "/admin/drain") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"/admin/drain takes POST"}"#,
        ),
        (&Method::POST, p) if p.starts_with("/api/") => {
            let method = p.trim_start_matches("/api/").to_owned();
            crate::api::handle(node, req, &method).await
        }
        (_, "/connection/websocket" | "/healthz" | "/readyz" | "/metrics") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method not allowed"}"#,
        ),
        (_, p) if p.starts_with("/api/") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"the server API takes POST"}"#,
        ),
        _ => json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    }
}

/// `POST /admin/drain` (API key in `X-API-Key`): drain and exit, as on SIGTERM.
fn admin_drain(node: &Node, req: &Request<Incoming>) -> Response<Body> {
    if !crate::api::key::key_ok(node, req) {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"missing or wrong X-API-Key"}"#,
        );
    }
    let already = node.drain_requested.is_cancelled() || node.is_draining();
    node.drain_requested.cancel();
    let d = &node.config.drain;
    let body = serde_json::json!({
        "draining": true,
        "already": already,
        "clients": node.registry.num_clients(),
        "grace": d.grace.as_secs_f64(),
        "window": d.window.as_secs_f64(),
        "timeout": d.timeout.as_secs_f64(),
    });
    json(
        StatusCode::ACCEPTED,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

fn readyz(node: &Node) -> Response<Body> {
    match node.not_ready_reason() {
        None => json(StatusCode::OK, r#"{"status":"ready"}"#),
        Some(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::to_vec(&serde_json::json!({"status": "not ready", "reason": reason}))
                .unwrap_or_default(),
        ),
    }
}

/// Whether `origin` matches one allowed pattern (`*` stands for one or more host labels).
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    if allowed.is_empty() || allowed.iter().any(|a| a == "*") {
        return true;
    }
    let Some(origin) = origin else {
        return false;
    };
    allowed.iter().any(|pattern| match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(origin),
        Some((prefix, suffix)) => {
            origin.len() > prefix.len() + suffix.len()
                && origin[..prefix.len()].eq_ignore_ascii_case(prefix)
                && origin[origin.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && !origin[prefix.len()..origin.len() - suffix.len()].contains('/')
        }
    })
}

fn refuse(reason: &'static str, status: StatusCode, message: &str) -> Response<Body> {
    metrics::counter!(crate::metrics::UPGRADES_REFUSED, "reason" => reason).increment(1);
    json(
        status,
        serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default(),
    )
}

/// The upgrade under its trace span, `herald.connect`: the child of the router's span
/// when the router sent a `traceparent`. It covers the handshake request only (the
/// session that follows may last hours and is not in it).
fn upgrade(node: Arc<Node>, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
    let span = tracing::info_span!(
        target: herald_shared::otel::TRACE_TARGET,
        "herald.connect",
        node = %node.config.node_id,
        result = tracing::field::Empty,
        http.status_code = tracing::field::Empty,
    );
    herald_shared::otel::extract_into(&span, |k| {
        req.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let response = upgrade_checked(node, req, remote);
    let status = response.status();
    let result = if status == StatusCode::SWITCHING_PROTOCOLS {
        "switched"
    } else {
        "refused"
    };
    span.record("result", result);
    span.record("http.status_code", i64::from(status.as_u16()));
    response
}

fn upgrade_checked(
    node: Arc<Node>,
    mut req: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Body> {
    if node.is_leaving() {
        let mut r = refuse(
            "draining",
            StatusCode::SERVICE_UNAVAILABLE,
            "node is draining",
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return r;
    }
    // Not ready (a cluster node still setting up, or cut off from NATS): a session now
    // would only stall on its first subscribe; the client retries, or the router picks
    // a ready node.
    if node.broker.ready().is_err() {
        let mut r = refuse(
            "not_ready",
            StatusCode::SERVICE_UNAVAILABLE,
            "node is not ready",
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return r;
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return refuse(
            "not_upgrade",
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint takes a WebSocket upgrade",
        );
    }
    let origin = req.headers().get(ORIGIN).and_then(|o| o.to_str().ok());
    if !origin_allowed(&node.config.limits.allowed_origins, origin) {
        return refuse("origin", StatusCode::FORBIDDEN, "origin not allowed");
    }
    // New connections per second, before anything is reserved: answered 503 as
    // Centrifugo's `client.connection_rate_limit` does.
    if !node.connect_rate.lock().allow() {
        let mut r = refuse(
            "rate",
            StatusCode::SERVICE_UNAVAILABLE,
            "connection rate limit reached",
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return r;
    }
    // Count the session before upgrading so a storm cannot overshoot the limit.
    if !node.registry.reserve(node.config.limits.max_connections) {
        let mut r = refuse(
            "limit",
            StatusCode::SERVICE_UNAVAILABLE,
            "connection limit reached",
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return r;
    }
    let (response, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(x) => x,
        Err(e) => {
            node.registry.release();
            return refuse("bad_handshake", StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let encoding = requested_encoding(&req);
    // Only the headers a backend proxy forwards, and only when one is on.
    let headers = match &node.proxy {
        Some(p) => p.capture(req.headers()),
        None => Vec::new(),
    };
    let node2 = node.clone();
    node.tracker.spawn(async move {
        match fut.await {
            // Only the handshake is fastwebsockets': the session frames the stream
            // itself (see `session::frames`).
            Ok(ws) => {
                let upgraded = ws.into_inner().into_inner();
                crate::session::serve(node2, upgraded, remote, encoding, headers).await
            }
            Err(e) => {
                node2.registry.release();
                tracing::debug!(client.addr = %remote, error = %e, "upgrade failed");
            }
        }
    });
    let (mut parts, _) = response.into_parts();
    // Browsers fail a handshake whose answer does not select a subprotocol they
    // offered: select it.
    if encoding == Encoding::Protobuf && offers_protobuf(&req) {
        parts.headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(PROTOBUF_SUBPROTOCOL),
        );
    }
    Response::from_parts(parts, full(Bytes::new()))
}

/// The subprotocol Centrifugo's Protobuf clients ask for (centrifuge-js
/// `build/protobuf`, centrifuge-go `NewProtobufClient`, centrifuge-java).
const PROTOBUF_SUBPROTOCOL: &str = "centrifuge-protobuf";

/// Whether `Sec-WebSocket-Protocol` lists the Protobuf subprotocol.
fn offers_protobuf<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOBUF_SUBPROTOCOL)
}

/// The encoding a client asks for, as Centrifugo reads it: the Protobuf subprotocol,
/// or `cf_protocol=protobuf` (older: `format=protobuf`) in the query.
fn requested_encoding<B>(req: &Request<B>) -> Encoding {
    let query = req.uri().query().unwrap_or("");
    let in_query = query
        .split('&')
        .any(|kv| kv == "cf_protocol=protobuf" || kv == "format=protobuf");
    if in_query || offers_protobuf(req) {
        Encoding::Protobuf
    } else {
        Encoding::Json
    }
}

#[cfg(test)]
mod tests {
    use super::{origin_allowed, requested_encoding, Encoding};

    #[test]
    fn protobuf_is_recognised_by_subprotocol_or_query() {
        let req = |uri: &str, protocol: Option<&str>| {
            let mut b = hyper::Request::get(uri);
            if let Some(p) = protocol {
                b = b.header("sec-websocket-protocol", p);
            }
            b.body(()).unwrap()
        };
        let ws = "/connection/websocket";
        assert_eq!(requested_encoding(&req(ws, None)), Encoding::Json);
        assert_eq!(
            requested_encoding(&req(ws, Some("centrifuge-json"))),
            Encoding::Json
        );
        for protocol in ["centrifuge-protobuf", "other, centrifuge-protobuf"] {
            let r = req(ws, Some(protocol));
            assert_eq!(requested_encoding(&r), Encoding::Protobuf, "{protocol}");
        }
        let query = "/connection/websocket?a=1&cf_protocol=protobuf";
        assert_eq!(requested_encoding(&req(query, None)), Encoding::Protobuf);
        let json = "/connection/websocket?cf_protocol=json";
        assert_eq!(requested_encoding(&req(json, None)), Encoding::Json);
    }

    #[test]
    fn origins() {
        let allowed = vec![
            "https://app.example.com".to_owned(),
            "https://*.example.org".to_owned(),
        ];
        assert!(origin_allowed(&[], None));
        assert!(origin_allowed(&allowed, Some("https://app.example.com")));
        assert!(origin_allowed(&allowed, Some("https://a.b.example.org")));
        assert!(!origin_allowed(&allowed, Some("https://example.org")));
        assert!(!origin_allowed(&allowed, Some("https://evil.com")));
        assert!(!origin_allowed(
            &allowed,
            Some("https://evil.com/.example.org")
        ));
        assert!(!origin_allowed(&allowed, None));
    }
}
