//! OpenTelemetry traces: the spans whose target is [`TRACE_TARGET`] are exported over
//! OTLP/HTTP (protobuf) to a collector, and the W3C trace context (`traceparent`) is
//! carried in and out of the process by [`inject`] and [`extract_into`].
//!
//! Off unless an endpoint is configured. Then only spans of [`TRACE_TARGET`] reach the
//! exporter (the per-connection log spans never do), and the log output never sees them:
//! with tracing off they are disabled at their call site and cost a branch.
//!
//! The exporter posts each batch with hyper 1 on a private single-thread runtime of its
//! own, from the SDK's batch thread: no gRPC stack, no TLS (point it at a collector
//! agent or sidecar on the host or pod), no dependence on the program's runtime.

use http_body_util::{BodyExt, Full};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `tracing` target of every span meant for the trace exporter.
pub const TRACE_TARGET: &str = "herald_trace";

/// The default of the sampling ratio setting: every trace.
pub const DEFAULT_SAMPLE_RATIO: f64 = 1.0;

/// How long one export may take before it is given up (the batch is dropped).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to export traces.
#[derive(Clone, Debug, PartialEq)]
pub struct OtelOptions {
    /// OTLP/HTTP base URL (`http://collector:4318`); spans go to `<endpoint>/v1/traces`.
    pub endpoint: String,
    /// Share of new traces recorded, 0 to 1; a span with a sampled parent (from a
    /// `traceparent`) follows its parent's decision.
    pub sample_ratio: f64,
    /// `service.name` of the exported spans (`herald-node`, `herald-router`).
    pub service_name: &'static str,
    /// `service.instance.id`: the node id, or the listen address.
    pub instance: String,
}

/// Errors setting up the exporter.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The endpoint is not an `http://host[:port][/path]` URL.
    #[error("{0}")]
    BadEndpoint(String),
    /// The OTLP exporter refused its configuration.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// Checks an endpoint setting: `http://host[:port][/path]`, no query. (No TLS client is
/// built in: export to a local collector agent.)
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("not a URL ({e}); expected http://host:port"))?;
    if uri.scheme_str() != Some("http") {
        return Err(
            "expected an http:// URL (https is not supported: export to a local collector)".into(),
        );
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if uri.query().is_some() {
        return Err("the URL may not have a query".into());
    }
    Ok(())
}

/// Checks a sampling ratio: a number from 0 to 1.
pub fn check_sample_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("expected a number from 0 to 1, such as 0.1".into()),
    }
}

/// Flushes and stops the exporter when dropped (at the end of `main`).
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("OpenTelemetry: flushing spans at exit failed: {e}");
        }
    }
}

/// The tracer provider for `opts` and the W3C propagator, installed as the global one.
pub(crate) fn provider(opts: &OtelOptions) -> Result<(SdkTracerProvider, OtelGuard), OtelError> {
    check_endpoint(&opts.endpoint).map_err(OtelError::BadEndpoint)?;
    let endpoint = format!("{}/v1/traces", opts.endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(OwnRuntimeClient::default())
        .build()
        .map_err(|e| OtelError::Exporter(e.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(opts.service_name)
        .with_attribute(KeyValue::new("service.instance.id", opts.instance.clone()))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            opts.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let guard = OtelGuard {
        provider: provider.clone(),
    };
    Ok((provider, guard))
}

/// The `tracing` layer exporting [`TRACE_TARGET`] spans through `provider`.
pub(crate) fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    let tracer = provider.tracer("herald");
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target(TRACE_TARGET, tracing::Level::TRACE),
        )
}

/// Writes `span`'s context as W3C `traceparent` (and `tracestate`) through `set`. Does
/// nothing when tracing is off or the span is not sampled.
pub fn inject(span: &tracing::Span, mut set: impl FnMut(&'static str, String)) {
    if span.is_disabled() {
        return;
    }
    struct Set<'a>(&'a mut dyn FnMut(&'static str, String));
    impl Injector for Set<'_> {
        fn set(&mut self, key: &str, value: String) {
            match key {
                "traceparent" => (self.0)("traceparent", value),
                "tracestate" if !value.is_empty() => (self.0)("tracestate", value),
                _ => {}
            }
        }
    }
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut Set(&mut set));
}

/// Makes the context that `get` reads (`traceparent`, `tracestate`) the parent of
/// `span`. Does nothing when tracing is off or there is no valid `traceparent`.
pub fn extract_into(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    if span.is_disabled() {
        return;
    }
    /// `traceparent` and `tracestate`.
    struct Get([String; 2]);
    impl Extractor for Get {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                "traceparent" => Some(self.0[0].as_str()),
                "tracestate" => Some(self.0[1].as_str()),
                _ => None,
            }
            .filter(|s| !s.is_empty())
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent", "tracestate"]
        }
    }
    let Some(parent) = get("traceparent") else {
        return;
    };
    let state = get("tracestate").unwrap_or_default();
    let cx = TraceContextPropagator::new().extract(&Get([parent, state]));
    let _ = span.set_parent(cx);
}

/// The exporter's HTTP client: hyper 1, one HTTP/1.1 connection per export, on a
/// current-thread runtime of its own (the SDK calls it from its batch thread, where no
/// runtime runs).
#[derive(Debug, Default)]
struct OwnRuntimeClient {
    runtime: OnceLock<tokio::runtime::Runtime>,
}

#[async_trait::async_trait]
impl HttpClient for OwnRuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking here would stall a runtime thread (and tokio refuses it).
            return Err("the OTLP export was called on a runtime thread".into());
        }
        let runtime = match self.runtime.get() {
            Some(r) => r,
            None => {
                let r = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                self.runtime.get_or_init(|| r)
            }
        };
        runtime.block_on(async {
            tokio::time::timeout(EXPORT_TIMEOUT, post(request))
                .await
                .map_err(|_| HttpError::from("the OTLP endpoint did not answer in time"))?
        })
    }
}

async fn post(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (mut parts, body) = request.into_parts();
    let host = parts
        .uri
        .host()
        .ok_or("the endpoint has no host")?
        .to_owned();
    let port = parts.uri.port_u16().unwrap_or(80);
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| host.clone());
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    // Origin-form on the wire, the authority in Host.
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()?;
    parts
        .headers
        .insert(hyper::header::HOST, authority.parse()?);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_ratios_are_checked() {
        assert!(check_endpoint("http://127.0.0.1:4318").is_ok());
        assert!(check_endpoint("http://collector/otlp").is_ok());
        for bad in [
            "https://c:4318",
            "collector:4318",
            "http://",
            "http://c/?x=1",
            "ftp://c",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        assert_eq!(check_sample_ratio("0.25"), Ok(0.25));
        assert_eq!(check_sample_ratio("1"), Ok(1.0));
        for bad in ["-0.1", "1.5", "half", "NaN", ""] {
            assert!(check_sample_ratio(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn context_goes_out_and_comes_back_only_when_tracing_is_on() {
        // No OpenTelemetry layer here: spans carry no context, nothing is injected.
        let span = tracing::info_span!(target: "herald_trace", "t");
        let mut got = Vec::new();
        inject(&span, |k, v| got.push((k, v)));
        assert!(got.is_empty(), "{got:?}");
        extract_into(&span, |_| Some("garbage".into()));
    }
}
