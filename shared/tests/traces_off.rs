//! With no OTLP endpoint the trace spans must not exist at all: a span that exists costs
//! a slab slot and its fields on every publication and upgrade, and the router would
//! treat it as a trace to propagate. Its own test binary: it installs the global
//! subscriber.

// Cargo links each test crate with every dependency of the package, and this test uses
// a few: an unused one shows on the library target, where it means something.
#![allow(unused_crate_dependencies)]

use herald_shared::otel::TRACE_TARGET;
use herald_shared::telemetry::{init_tracing_with, LogFormat};

#[test]
fn trace_spans_are_disabled_without_an_exporter_and_log_spans_are_not() {
    let guard = init_tracing_with(LogFormat::Plain, None).expect("no exporter, nothing fails");
    assert!(guard.is_none());
    for _ in 0..2 {
        // Twice: the first call registers the call site, the second uses its cached interest.
        let trace = tracing::info_span!(target: TRACE_TARGET, "herald.test", x = 1);
        assert!(trace.is_disabled(), "a trace span exists with tracing off");
    }
    // The log's own spans still exist (the default filter is `info`), so the filter is
    // not simply off.
    let log = tracing::error_span!("connection", client.addr = "127.0.0.1");
    assert!(!log.is_disabled());
}
