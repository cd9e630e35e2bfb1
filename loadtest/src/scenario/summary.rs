//! Turning a run's measurements into the report and its flat metrics.

use super::live::Monitors;
use super::live::{Live, ShardFinal};
use super::target::Setup;
use super::Plan;
use crate::cli::Common;
use crate::expect;
use crate::report::{ProcReport, Report, RunEvent};
use crate::stats::hist::{new_hist, Summary};
use crate::stats::Counters;
use std::collections::BTreeMap;

/// Label prefix of `--server-pid` processes in the report (`server-<pid>`).
pub const SERVER_PID_LABEL: &str = "server-";

/// Measurements gathered by the run for the report.
pub struct Parts {
    /// Counters when the measured phase began.
    pub c0: Counters,
    /// Counters when it ended (after the drain).
    pub c1: Counters,
    /// Seconds publishing was on: the denominator of rates.
    pub window: f64,
    /// Seconds of the measured phase, drain included: the denominator of CPU use.
    pub measured: f64,
    /// Seconds until every client had settled.
    pub ramp_s: f64,
    /// Server CPU seconds by process when the measured phase began.
    pub cpu0: BTreeMap<String, f64>,
    /// Server CPU during the ramp (connecting), percent of one core by process.
    pub ramp_cpu: BTreeMap<String, f64>,
    /// Generator CPU seconds spent in the measured phase.
    pub gen_cpu: f64,
    /// Server resident memory before any client connected, KiB by process.
    pub rss_start: BTreeMap<String, u64>,
    /// Publications the server API accepted.
    pub api_sent: u64,
    /// Publications through the server API that failed.
    pub api_failed: u64,
    /// Whether every shard reported its publishers' last numbers.
    pub tail_checked: bool,
    /// Failure injections.
    pub events: Vec<RunEvent>,
    /// A failure was injected: node memory no longer divides by connections.
    pub chaos: bool,
}

/// The report of a finished run.
pub fn build_report(
    common: &Common,
    plan: &Plan,
    setup: &Setup,
    live: &Live,
    mon: &Monitors,
    p: Parts,
) -> Report {
    let mut totals = Counters::default();
    let (mut lat, mut conn, mut reconn) = (new_hist(), new_hist(), new_hist());
    for f in live.finals.iter().flatten() {
        let ShardFinal {
            counters,
            latency,
            connect,
            reconnect,
        } = f;
        totals.add(counters);
        latency.merge_into(&mut lat);
        connect.merge_into(&mut conn);
        reconnect.merge_into(&mut reconn);
    }
    let latency = Summary::of(&lat);
    let connect_time = Summary::of(&conn);
    let reconnect_time = Summary::of(&reconn);
    let window = p.window.max(1e-3);
    let publications = p.api_sent + p.c1.client_publishes.saturating_sub(p.c0.client_publishes);
    let deliveries = p.c1.deliveries.saturating_sub(p.c0.deliveries);
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: f64| {
        m.insert(k.to_owned(), v);
    };
    put("clients", plan.clients as f64);
    put("connections_opened", totals.conn_ok as f64);
    put("connections_failed", totals.conn_failed as f64);
    put(
        "connect_rate",
        connect_time.count as f64 / p.ramp_s.max(1e-3),
    );
    put("connect_p50_ms", connect_time.p50_ms);
    put("connect_p99_ms", connect_time.p99_ms);
    put("publications", publications as f64);
    put("publications_per_sec", publications as f64 / window);
    put(
        "publish_errors",
        (p.api_failed + totals.client_publish_errors) as f64,
    );
    put("deliveries", deliveries as f64);
    put("deliveries_per_sec", deliveries as f64 / window);
    if deliveries > 0 {
        let bytes = p.c1.pub_bytes.saturating_sub(p.c0.pub_bytes);
        put("wire_bytes_per_delivery", bytes as f64 / deliveries as f64);
    }
    put("p50_ms", latency.p50_ms);
    put("p90_ms", latency.p90_ms);
    put("p99_ms", latency.p99_ms);
    put("p999_ms", latency.p999_ms);
    put("max_ms", latency.max_ms);
    put("lost", totals.lost as f64);
    put("duplicates", totals.duplicates as f64);
    put("gaps", totals.gaps as f64);
    put("recovered", totals.recovered as f64);
    put("unrecovered", totals.unrecovered as f64);
    put("disconnects", totals.disconnects as f64);
    put("reconnects", totals.reconnects as f64);
    put("reconnect_p50_ms", reconnect_time.p50_ms);
    put("reconnect_p99_ms", reconnect_time.p99_ms);
    put("reconnect_max_ms", reconnect_time.max_ms);
    put(
        "generator_cpu_pct",
        p.gen_cpu / p.measured.max(1e-3) * 100.0,
    );
    let mut server = Vec::new();
    if let Some(sm) = &mon.server {
        let mut cpu_sum = 0.0;
        for (name, t) in &sm.procs {
            let cpu = (t.cpu_total() - p.cpu0.get(name).copied().unwrap_or(0.0)).max(0.0)
                / p.measured.max(1e-3)
                * 100.0;
            cpu_sum += cpu;
            server.push(ProcReport {
                name: name.clone(),
                cpu_pct: cpu,
                ramp_cpu_pct: p.ramp_cpu.get(name).copied().unwrap_or(0.0),
                rss_start_mb: p.rss_start.get(name).copied().unwrap_or(0) as f64 / 1024.0,
                rss_end_mb: t.rss_kb as f64 / 1024.0,
                rss_peak_mb: t.rss_peak_kb as f64 / 1024.0,
            });
        }
        // The nodes of a local cluster, or every --server-pid process: the processes
        // that hold the connections.
        let holds_conns = |k: &str| k.starts_with("lt-node") || k.starts_with(SERVER_PID_LABEL);
        let node_end: f64 = sm
            .procs
            .iter()
            .filter(|(k, _)| holds_conns(k))
            .map(|(_, t)| t.rss_kb as f64)
            .sum();
        let node_start: u64 = p
            .rss_start
            .iter()
            .filter(|(k, _)| holds_conns(k))
            .map(|(_, v)| v)
            .sum();
        put("server_cpu_pct", cpu_sum);
        // Over the measured phase, drain included: the same span the deliveries count.
        let cpu_s = cpu_sum / 100.0 * p.measured.max(1e-3);
        put("server_cpu_s", cpu_s);
        if cpu_s > 0.0 {
            put("deliveries_per_server_cpu_s", deliveries as f64 / cpu_s);
        }
        put("server_rss_mb", node_end / 1024.0);
        let connected = p.c1.conn_ok.saturating_sub(p.c1.disconnects);
        if connected > 0 && !p.chaos {
            put(
                "mem_per_conn_kb",
                (node_end - node_start as f64).max(0.0) / connected as f64,
            );
        }
    }
    let expectations = expect::evaluate(&common.expect, &m);
    let passed = expectations.iter().all(|o| o.passed);
    Report {
        scenario: plan.name.to_owned(),
        target: setup.description.clone(),
        params: plan.params.clone(),
        measured_s: p.measured,
        ramp_s: p.ramp_s,
        totals,
        api_publications: p.api_sent,
        api_publish_errors: p.api_failed,
        latency,
        connect_time,
        reconnect_time,
        server,
        events: p.events,
        tail_checked: p.tail_checked,
        metrics: m,
        expectations,
        passed,
    }
}
