//! Merging what the shards report while the run goes on, sampling the processes, and
//! the progress line.

use crate::local::procstat::Monitor;
use crate::local::LocalCluster;
use crate::shard::ShardMsg;
use crate::stats::hist::{new_hist, WireHist};
use crate::stats::Counters;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

/// The final report of one shard.
#[derive(Clone, Debug, Default)]
pub struct ShardFinal {
    /// Counters, tail losses included.
    pub counters: Counters,
    /// Live publication latencies.
    pub latency: WireHist,
    /// First connect times.
    pub connect: WireHist,
    /// Reconnect times.
    pub reconnect: WireHist,
}

/// The merged view of all shards.
pub struct Live {
    /// Latest cumulative counters of each shard.
    latest: Vec<Counters>,
    /// When each shard settled (µs since the epoch).
    settled_at: Vec<Option<u64>>,
    /// Final reports, as they arrive.
    pub finals: Vec<Option<ShardFinal>>,
    /// Each shard's publishers' last numbers `(channel, publisher, seq)`, once reported.
    pub published: Vec<Option<Vec<(String, u64, u64)>>>,
    /// Latencies since the last progress line.
    interval: Histogram<u64>,
    /// Shard errors (bad URL, unreadable worker output...).
    pub errors: Vec<String>,
}

impl Live {
    /// For `n` shards.
    pub fn new(n: usize) -> Self {
        Live {
            latest: vec![Counters::default(); n],
            settled_at: vec![None; n],
            finals: vec![None; n],
            published: vec![None; n],
            interval: new_hist(),
            errors: Vec::new(),
        }
    }

    /// Takes in one message of shard `i`.
    pub fn absorb(&mut self, i: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Progress { counters, interval } => {
                self.latest[i] = counters;
                interval.merge_into(&mut self.interval);
            }
            ShardMsg::Settled { at_micros } => self.settled_at[i] = Some(at_micros),
            ShardMsg::Published { seqs } => self.published[i] = Some(seqs),
            ShardMsg::Final {
                counters,
                latency,
                connect,
                reconnect,
            } => {
                self.latest[i] = counters;
                self.finals[i] = Some(ShardFinal {
                    counters,
                    latency,
                    connect,
                    reconnect,
                });
            }
            ShardMsg::Error { message } => {
                self.errors.push(format!("shard {i}: {message}"));
                // A failed shard will send nothing more; count it as done.
                self.settled_at[i].get_or_insert(0);
                self.published[i].get_or_insert_with(Vec::new);
                self.finals[i].get_or_insert_with(ShardFinal::default);
            }
        }
    }

    /// Counters of all shards.
    pub fn sum(&self) -> Counters {
        let mut c = Counters::default();
        for s in &self.latest {
            c.add(s);
        }
        c
    }

    /// When the last shard settled, once all have.
    pub fn all_settled_at(&self) -> Option<u64> {
        self.settled_at
            .iter()
            .try_fold(0u64, |acc, s| s.map(|s| acc.max(s)))
    }

    /// True when every shard has said what its clients published.
    pub fn all_published(&self) -> bool {
        self.published.iter().all(Option::is_some)
    }

    /// True when every shard has sent its final report.
    pub fn all_final(&self) -> bool {
        self.finals.iter().all(Option::is_some)
    }
}

/// The once-a-second progress line.
pub struct Progress {
    /// Scenario name.
    name: &'static str,
    /// Number of clients.
    clients: usize,
    /// When the run started.
    start: Instant,
    /// Counters at the previous line.
    last: Counters,
    /// API publications at the previous line.
    last_api: u64,
    /// Server CPU seconds at the previous line.
    last_cpu: f64,
    /// Time of the previous line.
    last_t: Instant,
}

impl Progress {
    /// A progress printer starting now.
    pub fn new(name: &'static str, clients: usize) -> Self {
        let now = Instant::now();
        Progress {
            name,
            clients,
            start: now,
            last: Counters::default(),
            last_api: 0,
            last_cpu: 0.0,
            last_t: now,
        }
    }

    /// The next line; `api_sent` counts API publications, `monitor` the server.
    pub fn line(&mut self, live: &mut Live, api_sent: u64, monitor: Option<&Monitor>) -> String {
        let now = Instant::now();
        let dt = now.duration_since(self.last_t).as_secs_f64().max(1e-3);
        let c = live.sum();
        let pubs = (c.client_publishes - self.last.client_publishes.min(c.client_publishes)) as f64
            + api_sent.saturating_sub(self.last_api) as f64;
        let deliv = c.deliveries.saturating_sub(self.last.deliveries) as f64;
        let p99 = if live.interval.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.2}ms",
                live.interval.value_at_quantile(0.99) as f64 / 1000.0
            )
        };
        live.interval.reset();
        let mut line = format!(
            "[{:>4.0}s] {} conns {}/{} fail {} | pub {:.0}/s | deliv {:.0}/s | p99 {} | lost {} dup {} | disc {} reconn {}",
            now.duration_since(self.start).as_secs_f64(),
            self.name,
            c.conn_ok.saturating_sub(c.disconnects),
            self.clients,
            c.conn_failed,
            pubs / dt,
            deliv / dt,
            p99,
            c.lost,
            c.duplicates,
            c.disconnects,
            c.reconnects,
        );
        if let Some(m) = monitor {
            let cpu = m.cpu_total();
            line.push_str(&format!(
                " | server cpu {:.0}% rss {:.0}MiB",
                (cpu - self.last_cpu).max(0.0) / dt * 100.0,
                m.rss_kb("") as f64 / 1024.0
            ));
            self.last_cpu = cpu;
        }
        self.last = c;
        self.last_api = api_sent;
        self.last_t = now;
        line
    }
}

/// Samples of the server and of the generator.
pub struct Monitors {
    /// Server processes (a local cluster's, or those given by `--server-pid`).
    pub server: Option<Monitor>,
    /// `--server-pid` processes, labelled `server-<pid>` (empty for a local cluster).
    pub server_pids: Vec<(String, Option<u32>)>,
    /// This process and its workers.
    pub generator: Monitor,
    /// Pids of the generator processes.
    pub generator_pids: Vec<(String, Option<u32>)>,
}

impl Monitors {
    /// Samples the server's processes (skipped while a drain holds the cluster) and the
    /// generator's.
    pub async fn sample(&mut self, cluster: Option<&Arc<Mutex<LocalCluster>>>) {
        match (&mut self.server, cluster) {
            (Some(m), Some(c)) => {
                // A drain in progress holds the lock for seconds: skip this sample then.
                if let Ok(c) = c.try_lock() {
                    m.sample(&c.pids());
                }
            }
            (Some(m), None) => m.sample(&self.server_pids),
            (None, _) => {}
        }
        self.generator.sample(&self.generator_pids);
    }
}
