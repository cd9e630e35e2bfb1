//! The end-of-run report: a JSON document, a human table, and the flat metric map that
//! `--expect` targets are checked against.

use crate::expect::Outcome;
use crate::stats::hist::Summary;
use crate::stats::Counters;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Every metric name a target may use (validated before the run starts).
pub const METRICS: &[&str] = &[
    "clients",
    "connections_opened",
    "connections_failed",
    "connect_rate",
    "connect_p50_ms",
    "connect_p99_ms",
    "publications",
    "publications_per_sec",
    "publish_errors",
    "deliveries",
    "deliveries_per_sec",
    "wire_bytes_per_delivery",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "lost",
    "duplicates",
    "gaps",
    "recovered",
    "unrecovered",
    "disconnects",
    "reconnects",
    "reconnect_p50_ms",
    "reconnect_p99_ms",
    "reconnect_max_ms",
    "server_cpu_pct",
    "server_cpu_s",
    "deliveries_per_server_cpu_s",
    "server_rss_mb",
    "mem_per_conn_kb",
    "generator_cpu_pct",
];

/// Something that happened during the run (a node killed, drained, back).
#[derive(Clone, Debug, Serialize)]
pub struct RunEvent {
    /// Seconds since the measured phase began.
    pub at_s: f64,
    /// What happened.
    pub what: String,
}

/// CPU and memory of one server process over the measured phase.
#[derive(Clone, Debug, Serialize)]
pub struct ProcReport {
    /// Node id, `nats-server`, `herald-router`, or `server-<pid>` for `--server-pid`.
    pub name: String,
    /// Average CPU over the measured phase, percent of one core.
    pub cpu_pct: f64,
    /// Average CPU while the clients were connecting, percent of one core.
    pub ramp_cpu_pct: f64,
    /// Resident memory before any client connected, MiB.
    pub rss_start_mb: f64,
    /// Resident memory at the end of the measured phase, MiB.
    pub rss_end_mb: f64,
    /// Highest resident memory seen, MiB.
    pub rss_peak_mb: f64,
}

/// The whole report, written with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// What was targeted (`local: N nodes (+router)` or the URLs).
    pub target: String,
    /// The scenario's parameters.
    pub params: serde_json::Value,
    /// Length of the measured phase, seconds.
    pub measured_s: f64,
    /// Time from the first connect attempt until every client had settled, seconds.
    pub ramp_s: f64,
    /// Counters over the whole run (ramp included).
    pub totals: Counters,
    /// Publications accepted by the server API.
    pub api_publications: u64,
    /// Publications the server API refused or that failed.
    pub api_publish_errors: u64,
    /// End-to-end latency of live publications (send timestamp to receipt).
    pub latency: Summary,
    /// First connects: TCP connect to `connect` reply.
    pub connect_time: Summary,
    /// Reconnects: connection lost to subscribed again.
    pub reconnect_time: Summary,
    /// Server processes (local targets only).
    pub server: Vec<ProcReport>,
    /// Failure injections.
    pub events: Vec<RunEvent>,
    /// Whether losses at the end of the run were checked against the channels' final
    /// offsets (needs the server API).
    pub tail_checked: bool,
    /// The flat metrics targets are checked against.
    pub metrics: BTreeMap<String, f64>,
    /// Each target and its verdict.
    pub expectations: Vec<Outcome>,
    /// True when every target passed.
    pub passed: bool,
}

impl Report {
    /// The human summary.
    pub fn table(&self) -> String {
        let m = |k: &str| self.metrics.get(k).copied();
        let mut s = String::new();
        let _ = writeln!(s, "\nherald-loadtest {} — {}", self.scenario, self.target);
        let _ = writeln!(s, "  params       {}", self.params);
        let _ = writeln!(
            s,
            "  measured     {:.1} s (ramp {:.2} s)",
            self.measured_s, self.ramp_s
        );
        let row = |s: &mut String, name: &str, text: String| {
            let _ = writeln!(s, "  {name:<12} {text}");
        };
        let t = &self.totals;
        row(
            &mut s,
            "connections",
            format!(
                "{} opened, {} failed, {:.0}/s during the ramp; connect p50 {:.2} ms p99 {:.2} ms",
                t.conn_ok,
                t.conn_failed,
                m("connect_rate").unwrap_or(0.0),
                self.connect_time.p50_ms,
                self.connect_time.p99_ms
            ),
        );
        row(
            &mut s,
            "publications",
            format!(
                "{} ({:.0}/s), {} errors",
                m("publications").unwrap_or(0.0),
                m("publications_per_sec").unwrap_or(0.0),
                m("publish_errors").unwrap_or(0.0)
            ),
        );
        row(
            &mut s,
            "deliveries",
            format!(
                "{} ({:.0}/s)",
                m("deliveries").unwrap_or(0.0),
                m("deliveries_per_sec").unwrap_or(0.0)
            ),
        );
        if let Some(b) = m("wire_bytes_per_delivery") {
            row(
                &mut s,
                "wire bytes",
                format!("{b:.0} per delivered publication (push JSON, before framing)"),
            );
        }
        let l = &self.latency;
        row(
            &mut s,
            "latency",
            format!(
                "p50 {:.2} ms  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (n={})",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
            ),
        );
        row(
            &mut s,
            "integrity",
            format!(
                "lost {}  duplicates {}  gaps {}  recovered {}  unrecovered {}{}",
                t.lost,
                t.duplicates,
                t.gaps,
                t.recovered,
                t.unrecovered,
                if self.tail_checked {
                    ""
                } else {
                    "  (tail not checked)"
                }
            ),
        );
        if t.disconnects > 0 || t.reconnects > 0 {
            let r = &self.reconnect_time;
            row(
                &mut s,
                "reconnects",
                format!(
                    "{} disconnects, {} reconnects; p50 {:.0} ms p99 {:.0} ms max {:.0} ms",
                    t.disconnects, t.reconnects, r.p50_ms, r.p99_ms, r.max_ms
                ),
            );
        }
        for p in &self.server {
            row(
                &mut s,
                &p.name,
                format!(
                    "cpu {:.0}% (ramp {:.0}%)  rss {:.1} → {:.1} MiB (peak {:.1})",
                    p.cpu_pct, p.ramp_cpu_pct, p.rss_start_mb, p.rss_end_mb, p.rss_peak_mb
                ),
            );
        }
        if let (Some(cpu_s), Some(per)) = (m("server_cpu_s"), m("deliveries_per_server_cpu_s")) {
            row(
                &mut s,
                "per cpu",
                format!("{per:.0} deliveries per server CPU-second ({cpu_s:.2} CPU-s)"),
            );
        }
        if let Some(kb) = m("mem_per_conn_kb") {
            row(
                &mut s,
                "memory",
                format!("{kb:.1} KiB per connection (node RSS growth / connections)"),
            );
        }
        if let Some(g) = m("generator_cpu_pct") {
            row(
                &mut s,
                "generator",
                format!("cpu {g:.0}% (this process and its workers)"),
            );
        }
        for e in &self.events {
            row(&mut s, "event", format!("+{:.1} s {}", e.at_s, e.what));
        }
        for o in &self.expectations {
            let actual = o.actual.map_or("missing".to_owned(), |a| format!("{a}"));
            row(
                &mut s,
                if o.passed { "PASS" } else { "FAIL" },
                format!("{} (actual {actual})", o.expect),
            );
        }
        s
    }
}
