//! The orchestration every scenario shares:
//!
//! 1. set up the target (a local cluster, or the given URLs);
//! 2. start the shards (in this process, or worker processes above the file limit);
//! 3. ramp: wait until every client has connected (or failed);
//! 4. measure for `--duration`: publish, inject failures, print progress;
//! 5. drain deliveries in flight, read each channel's final offset, stop the shards;
//! 6. report, and check the targets.

use super::live::{Live, Monitors, Progress};
use super::summary::{build_report, Parts, SERVER_PID_LABEL};
use super::target::{setup, Setup};
use super::{chaos, Chaos, Plan};
use crate::cli::Common;
use crate::expect;
use crate::local::procstat::Monitor;
use crate::local::LocalCluster;
use crate::publisher::{self, PublishJob, PublishStats};
use crate::report::{Report, METRICS};
use crate::shard::{Control, FinalSeqs, ShardMsg, ShardSpec, API_PUBLISHER_BASE};
use crate::worker::ShardHandle;
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// Runs one scenario; returns whether every target passed.
pub async fn run(common: Common, plan: Plan) -> anyhow::Result<bool> {
    let unknown = expect::unknown_metrics(&common.expect, METRICS);
    if !unknown.is_empty() {
        bail!(
            "unknown metric(s) in --expect: {}; known: {}",
            unknown.join(", "),
            METRICS.join(", ")
        );
    }
    if plan.clients == 0 {
        bail!("the scenario has no clients");
    }
    let setup = setup(&common, &plan).await?;
    // On Ctrl-C or SIGTERM the run is abandoned but the local cluster still torn down.
    let result = tokio::select! {
        r = drive(&common, &plan, &setup) => r,
        signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    if let Some(cluster) = setup.cluster {
        match Arc::try_unwrap(cluster) {
            Ok(c) => c.into_inner().shutdown().await,
            Err(_) => eprintln!(
                "herald-loadtest: local cluster still in use; its processes are killed on exit"
            ),
        }
    }
    let report = result?;
    println!("{}", report.table());
    if let Some(path) = &common.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.passed)
}
/// Splits the clients into shards and starts them.
fn start_shards(common: &Common, plan: &Plan, setup: &Setup) -> anyhow::Result<Vec<ShardHandle>> {
    let per = common.conns_per_worker.max(1);
    let n = if common.workers > 0 {
        common.workers
    } else {
        plan.clients.div_ceil(per)
    }
    .clamp(1, plan.clients);
    let in_process = common.workers == 0 && n == 1;
    let exe = std::env::current_exe().context("locating this binary for workers")?;
    let mut handles = Vec::with_capacity(n);
    let mut first = 0;
    for i in 0..n {
        let count = plan.clients / n + usize::from(i < plan.clients % n);
        let spec = ShardSpec {
            first,
            count,
            urls: setup.client_urls.clone(),
            secret: setup.secret.clone(),
            source_ips: common.source_ips,
            connect_rate: plan.connect_rate / n as f64,
            connect_timeout_ms: common.connect_timeout.as_millis() as u64,
            reconnect: plan.reconnect,
            channels: plan.layout.clone(),
            publish: plan.client_publish.clone(),
            sticky_query: setup.sticky_query.clone(),
            protocol: common.protocol,
            delta: plan.api_publish.as_ref().is_some_and(|p| p.delta),
        };
        first += count;
        handles.push(if in_process {
            ShardHandle::in_process(spec)
        } else {
            ShardHandle::worker(&exe, &spec)?
        });
    }
    Ok(handles)
}
/// What the phases of [`drive`] share: the merged shard messages and the progress line.
struct Driver<'a> {
    /// Messages from all shards, tagged with the shard index.
    rx: mpsc::Receiver<(usize, ShardMsg)>,
    /// The merged view.
    live: Live,
    /// Once a second: sample and print.
    ticker: tokio::time::Interval,
    /// The progress line.
    progress: Progress,
    /// CPU and memory samples.
    mon: Monitors,
    /// The local cluster, if any.
    cluster: Option<&'a Arc<Mutex<LocalCluster>>>,
    /// API publisher counts.
    stats: Arc<PublishStats>,
    /// No progress line.
    quiet: bool,
}

impl Driver<'_> {
    /// Waits for the next shard message, progress tick or `until`, whichever is first.
    async fn pump(&mut self, until: Instant) {
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            m = self.rx.recv() => match m {
                Some((i, msg)) => self.live.absorb(i, msg),
                // Every shard is gone: wait for the tick instead of spinning.
                None => {
                    self.ticker.tick().await;
                }
            },
            _ = self.ticker.tick() => {
                self.mon.sample(self.cluster).await;
                let sent = self.stats.sent.load(Ordering::Relaxed);
                let line = self.progress.line(&mut self.live, sent, self.mon.server.as_ref());
                if !self.quiet {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// Pumps until `done` holds or `deadline` passes.
    async fn pump_until(&mut self, deadline: Instant, done: impl Fn(&Live) -> bool) {
        while !done(&self.live) && Instant::now() < deadline {
            self.pump(deadline).await;
        }
    }
}

async fn drive(common: &Common, plan: &Plan, setup: &Setup) -> anyhow::Result<Report> {
    let cluster = setup.cluster.as_ref();
    let server_pids: Vec<(String, Option<u32>)> = common
        .server_pid
        .iter()
        .map(|&pid| (format!("{SERVER_PID_LABEL}{pid}"), Some(pid)))
        .collect();
    for (label, pid) in &server_pids {
        if pid.and_then(crate::local::procstat::read).is_none() {
            bail!("--server-pid: cannot read /proc for {label}; is the server on this machine?");
        }
    }
    let mut mon = Monitors {
        server: (cluster.is_some() || !server_pids.is_empty()).then(Monitor::default),
        server_pids,
        generator: Monitor::default(),
        generator_pids: vec![("loadtest".into(), Some(std::process::id()))],
    };
    mon.sample(cluster).await;
    let rss_start: BTreeMap<String, u64> = mon
        .server
        .as_ref()
        .map(|m| m.procs.iter().map(|(k, t)| (k.clone(), t.rss_kb)).collect())
        .unwrap_or_default();
    let cpu_start = mon
        .server
        .as_ref()
        .map(Monitor::cpu_by_label)
        .unwrap_or_default();
    let ramp_start = Instant::now();

    let mut handles = start_shards(common, plan, setup)?;
    for (i, h) in handles.iter().enumerate() {
        mon.generator_pids.push((format!("worker-{i}"), h.pid()));
    }
    let (tx, rx) = mpsc::channel(256);
    for (i, h) in handles.iter_mut().enumerate() {
        let mut shard_rx = h.take_rx().context("shard messages")?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(msg) = shard_rx.recv().await {
                if tx.send((i, msg)).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let publishers = plan.api_publish.as_ref().map_or(1, |p| p.publishers);
    let mut d = Driver {
        rx,
        live: Live::new(handles.len()),
        ticker,
        progress: Progress::new(plan.name, plan.clients),
        mon,
        cluster,
        stats: Arc::new(PublishStats::new(publishers)),
        quiet: common.quiet,
    };
    let run_start = crate::protocol::now_micros();

    // Ramp.
    let ramp_deadline = Instant::now() + common.ramp_timeout;
    d.pump_until(ramp_deadline, |l| {
        l.all_settled_at().is_some() || !l.errors.is_empty()
    })
    .await;
    if !d.live.errors.is_empty() {
        bail!("{}", d.live.errors.join("; "));
    }
    let ramp_s = match d.live.all_settled_at() {
        Some(at) => at.saturating_sub(run_start) as f64 / 1e6,
        None => {
            eprintln!(
                "herald-loadtest: not every client settled within --ramp-timeout; measuring anyway"
            );
            common.ramp_timeout.as_secs_f64()
        }
    };

    // A fan-out that starts with subscribers missing would report their publications
    // as neither delivered nor lost: refuse to measure it.
    if plan.require_subscribed {
        let expected = (plan.clients * plan.layout.count.min(1)) as u64;
        // Shards send their counters once a second: wait for the report that follows
        // the last confirmation.
        d.pump_until(Instant::now() + Duration::from_millis(2500), |l| {
            l.sum().subscribed >= expected
        })
        .await;
        let subscribed = d.live.sum().subscribed;
        if subscribed < expected {
            bail!(
                "only {subscribed} of {expected} subscriptions were confirmed before publishing \
                 (connections failed: {}); not measuring",
                d.live.sum().conn_failed
            );
        }
    }

    // Measure.
    for h in &mut handles {
        h.send(Control::Publish { on: true }).await;
    }
    d.mon.sample(cluster).await;
    let cpu0 = d
        .mon
        .server
        .as_ref()
        .map(Monitor::cpu_by_label)
        .unwrap_or_default();
    let ramp_wall = ramp_start.elapsed().as_secs_f64().max(1e-3);
    let ramp_cpu = cpu0
        .iter()
        .map(|(k, v)| {
            let before = cpu_start.get(k).copied().unwrap_or(0.0);
            (k.clone(), (v - before).max(0.0) / ramp_wall * 100.0)
        })
        .collect();
    let gen_cpu0 = d.mon.generator.cpu_total();
    let c0 = d.live.sum();
    let measure_start = Instant::now();
    let publisher = plan.api_publish.as_ref().map(|p| {
        let job = PublishJob {
            bases: setup.api_bases.clone(),
            auth: setup.api_auth.clone(),
            channel: p.channel.clone(),
            rate: p.rate,
            payload: p.payload,
            publishers: p.publishers,
            duration: common.duration,
            delta: p.delta,
        };
        tokio::spawn(publisher::run(job, d.stats.clone()))
    });
    let chaos_task = match cluster {
        Some(c) if plan.chaos != Chaos::None => Some(tokio::spawn(chaos::run(
            plan.chaos.clone(),
            c.clone(),
            measure_start,
        ))),
        _ => None,
    };
    d.pump_until(measure_start + common.duration, |_| false)
        .await;
    // Failure injection may outlast --duration (a slow drain): publishing goes on.
    while chaos_task.as_ref().is_some_and(|t| !t.is_finished()) {
        d.pump(Instant::now() + Duration::from_millis(100)).await;
    }
    for h in &mut handles {
        h.send(Control::Publish { on: false }).await;
    }
    let window = measure_start.elapsed().as_secs_f64();
    if let Some(p) = publisher {
        p.await.context("publisher task")??;
    }
    let events = match chaos_task {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };
    d.pump_until(Instant::now() + Duration::from_secs(5), Live::all_published)
        .await;

    // Drain: until deliveries have not moved for 1.5 s (shards report once a second),
    // at most --drain.
    let publishes = plan.api_publish.is_some() || plan.client_publish.is_some();
    if publishes {
        let quiet_for = Duration::from_millis(1500);
        let drain_end = Instant::now() + common.drain;
        let mut last = d.live.sum().deliveries;
        let mut since = Instant::now();
        while Instant::now() < drain_end && since.elapsed() < quiet_for {
            d.pump(drain_end.min(since + quiet_for)).await;
            let now = d.live.sum().deliveries;
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
    }
    d.mon.sample(cluster).await;
    let measured = measure_start.elapsed().as_secs_f64();
    let c1 = d.live.sum();

    // What every subscriber should have seen last, then stop.
    let tail_checked = d.live.all_published();
    let finals = final_seqs(plan, &d.live, &d.stats);
    for h in &mut handles {
        h.send(Control::Stop {
            finals: finals.clone(),
        })
        .await;
    }
    let stop_deadline = Instant::now() + Duration::from_secs(20);
    while !d.live.all_final() && Instant::now() < stop_deadline {
        tokio::select! {
            m = d.rx.recv() => match m {
                Some((i, msg)) => d.live.absorb(i, msg),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    for h in &mut handles {
        h.reap().await;
    }
    if !d.live.all_final() {
        bail!("some shards did not report at the end");
    }
    let parts = Parts {
        c0,
        c1,
        window,
        measured,
        ramp_s,
        cpu0,
        ramp_cpu,
        gen_cpu: d.mon.generator.cpu_total() - gen_cpu0,
        rss_start,
        api_sent: d.stats.sent.load(Ordering::Relaxed),
        api_failed: d.stats.failed.load(Ordering::Relaxed),
        tail_checked,
        events,
        chaos: plan.chaos != Chaos::None,
    };
    Ok(build_report(common, plan, setup, &d.live, &d.mon, parts))
}

/// The last sequence number of every publisher, by channel: client publishers as their
/// shards reported them, API publishers from their counters.
fn final_seqs(plan: &Plan, live: &Live, stats: &PublishStats) -> FinalSeqs {
    let mut finals = FinalSeqs::new();
    for (channel, publisher, seq) in live.published.iter().flatten().flatten() {
        finals
            .entry(channel.clone())
            .or_default()
            .push((*publisher, *seq));
    }
    if let Some(p) = &plan.api_publish {
        for (i, last) in stats.last_seq.iter().enumerate() {
            let last = last.load(Ordering::Relaxed);
            if last > 0 {
                finals
                    .entry(p.channel.clone())
                    .or_default()
                    .push((API_PUBLISHER_BASE + i as u64, last));
            }
        }
    }
    finals
}

/// Resolves on SIGINT or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
