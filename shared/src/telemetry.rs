//! Logs and metrics: `tracing` to stderr (plain or JSON, filtered by `RUST_LOG`) and one
//! process-wide Prometheus recorder.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::fmt;
use std::io::IsTerminal as _;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

pub use crate::otel::{OtelError, OtelGuard, OtelOptions};

/// The log filter when `RUST_LOG` is unset or empty: `info`.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Histogram bucket upper bounds, in seconds, for every metric whose name ends in
/// `_seconds`: 0.5 ms to 10 s, about ×2–2.5 a step. With buckets those metrics render as
/// Prometheus histograms (aggregatable across nodes) instead of summaries.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the upkeep thread folds recorded histogram samples into buckets. Rendering
/// does it too, but without scrapes the samples would pile up.
pub const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How log lines are written. Default [`LogFormat::Plain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (`plain`); colours only when stderr is a terminal.
    #[default]
    Plain,
    /// One JSON object per line (`json`), for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = ParseLogFormatError;

    /// `plain` or `json`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "plain" => Ok(LogFormat::Plain),
            "json" => Ok(LogFormat::Json),
            _ => Err(ParseLogFormatError),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Plain => "plain",
            LogFormat::Json => "json",
        })
    }
}

/// A log format other than `plain` or `json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected plain or json")]
pub struct ParseLogFormatError;

/// Checks `RUST_LOG`-style filter directives (`info,herald_node=debug`) strictly, so a
/// configuration loader can report a bad filter instead of logging with a different one.
pub fn check_log_filter(directives: &str) -> Result<(), String> {
    EnvFilter::builder()
        .parse(directives)
        .map(drop)
        .map_err(|e| format!("not a valid log filter: {e}"))
}

/// Installs the global `tracing` subscriber: stderr, `format`, filtered by `RUST_LOG`
/// (default [`DEFAULT_LOG_FILTER`]). Safe to call more than once: later calls (and calls
/// after another subscriber was installed, as in tests) do nothing.
pub fn init_tracing(format: LogFormat) {
    // Without an exporter nothing can fail.
    let _ = init_tracing_with(format, None);
}

/// [`init_tracing`], plus OpenTelemetry export of the trace spans when `otel` is given
/// (see [`crate::otel`]). Keep the returned guard until the program ends: dropping it
/// flushes the spans not exported yet. `Ok(None)` without `otel`, or when a subscriber
/// was already installed.
pub fn init_tracing_with(
    format: LogFormat,
    otel: Option<&OtelOptions>,
) -> Result<Option<OtelGuard>, OtelError> {
    use tracing_subscriber::filter::FilterExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let (filter, bad) = if directives.trim().is_empty() {
        (EnvFilter::new(DEFAULT_LOG_FILTER), None)
    } else {
        match EnvFilter::builder().parse(&directives) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(DEFAULT_LOG_FILTER), Some(e)),
        }
    };
    let builder = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // A log line that cannot be written is dropped. Reporting it would print to the
        // same broken stderr, and that print panics: the SIGTERM handler's log line
        // then killed the task that starts the drain, and the process never stopped.
        .log_internal_errors(false);
    let fmt: Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> =
        match format {
            LogFormat::Plain => builder.with_ansi(std::io::stderr().is_terminal()).boxed(),
            // Event fields at the top level, as log collectors expect, not under "fields".
            LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).boxed(),
        };
    // Trace spans are for the exporter only: the log never sees them, so with tracing
    // off no layer wants them and they are disabled where they are created.
    // A `Targets` filter (not a closure): its interest is cached per call site and it
    // reports a level hint, so the log keeps `RUST_LOG`'s maximum level and disabled
    // `debug!` call sites stay one load on the hot path.
    let not_traces = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::TRACE)
        .with_target(
            crate::otel::TRACE_TARGET,
            tracing_subscriber::filter::LevelFilter::OFF,
        );
    let fmt = fmt.with_filter(filter.and(not_traces));
    let (otel_layer, guard) = match otel {
        Some(opts) => {
            let (provider, guard) = crate::otel::provider(opts)?;
            (Some(crate::otel::layer(&provider)), Some(guard))
        }
        None => (None, None),
    };
    // Two arms, not `.with(Option<layer>)`: a `None` layer has an `always` interest, which
    // turns the log's per-layer `never` for trace spans into `sometimes`, and then every
    // trace span would be created (a slab slot and its fields) with no exporter to see it.
    let installed = match otel_layer {
        Some(otel_layer) => tracing_subscriber::registry()
            .with(fmt)
            .with(otel_layer)
            .try_init()
            .is_ok(),
        None => tracing_subscriber::registry().with(fmt).try_init().is_ok(),
    };
    if let (true, Some(e)) = (installed, bad) {
        tracing::warn!(error = %e, "RUST_LOG is not a valid filter; logging at {DEFAULT_LOG_FILTER}");
    }
    Ok(guard.filter(|_| installed))
}

/// A Prometheus builder with Herald's settings: [`LATENCY_BUCKETS_SECONDS`] for every
/// metric named `*_seconds`. For an isolated recorder in tests
/// (`prometheus_builder().build_recorder()` with `metrics::with_local_recorder`).
pub fn prometheus_builder() -> PrometheusBuilder {
    let matcher = Matcher::Suffix("_seconds".into());
    // Fails only for an empty bucket list, which a constant is not.
    PrometheusBuilder::new()
        .set_buckets_for_metric(matcher, LATENCY_BUCKETS_SECONDS)
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

/// Installs the process-wide Prometheus recorder once and returns a handle to render it.
///
/// Idempotent: every call returns a clone of the same handle, so tests can start several
/// servers in one process. The first call also starts a small thread that runs the
/// recorder's upkeep every [`METRICS_UPKEEP_INTERVAL`]. If some other recorder was
/// installed first, this one still renders, but empty (a warning is logged).
pub fn install_metrics_recorder() -> PrometheusHandle {
    install_metrics_recorder_with(|builder| builder)
}

/// [`install_metrics_recorder`], with `configure` applied to [`prometheus_builder`]
/// first (say, buckets for one metric). Only the call that installs the recorder runs
/// `configure`; later calls return the same handle.
pub fn install_metrics_recorder_with(
    configure: impl FnOnce(PrometheusBuilder) -> PrometheusBuilder,
) -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = configure(prometheus_builder()).build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will be empty");
            }
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms fold at scrape time only");
            }
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_parses_and_displays() {
        assert_eq!("plain".parse(), Ok(LogFormat::Plain));
        assert_eq!(" JSON ".parse(), Ok(LogFormat::Json));
        assert_eq!("xml".parse::<LogFormat>(), Err(ParseLogFormatError));
        assert_eq!(ParseLogFormatError.to_string(), "expected plain or json");
        assert_eq!(LogFormat::default(), LogFormat::Plain);
        for f in [LogFormat::Plain, LogFormat::Json] {
            assert_eq!(f.to_string().parse(), Ok(f));
        }
    }

    #[test]
    fn log_filters_are_checked() {
        assert!(check_log_filter("info").is_ok());
        assert!(check_log_filter("warn,herald_node=debug,hyper=off").is_ok());
        assert!(check_log_filter("herald_node=loud").is_err());
    }

    #[test]
    fn init_tracing_twice_is_harmless() {
        init_tracing(LogFormat::Json);
        init_tracing(LogFormat::Plain);
        tracing::info!("still alive");
    }

    #[test]
    fn recorder_is_installed_once_and_renders_histograms() {
        let a = install_metrics_recorder();
        let b = install_metrics_recorder();
        metrics::histogram!("telemetry_test_latency_seconds").record(0.003);
        metrics::counter!("telemetry_test_total").increment(2);
        for handle in [a, b] {
            let text = handle.render();
            assert!(
                text.contains("# TYPE telemetry_test_latency_seconds histogram"),
                "{text}"
            );
            assert!(
                text.contains(r#"telemetry_test_latency_seconds_bucket{le="0.0025"} 0"#),
                "{text}"
            );
            assert!(
                text.contains(r#"telemetry_test_latency_seconds_bucket{le="0.005"} 1"#),
                "{text}"
            );
            assert!(text.contains("telemetry_test_total 2"), "{text}");
        }
    }

    #[test]
    fn only_seconds_metrics_get_buckets() {
        let recorder = prometheus_builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("local_wait_seconds").record(0.2);
            metrics::histogram!("local_payload_bytes").record(100.0);
        });
        let text = handle.render();
        assert!(
            text.contains("# TYPE local_wait_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE local_payload_bytes summary"),
            "{text}"
        );
    }
}
