//! Publishers through the server API, paced to a target rate.

use crate::api::{Api, ApiAuth};
use crate::protocol::{encode_payload, now_micros, Stamp};
use crate::shard::API_PUBLISHER_BASE;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts shared by the publisher tasks.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Publications the API accepted.
    pub sent: AtomicU64,
    /// Publications that failed (error answer, refused connection, timeout).
    pub failed: AtomicU64,
    /// Last sequence number accepted, per publisher.
    pub last_seq: Vec<AtomicU64>,
}

impl PublishStats {
    /// Counts for `publishers` publishers.
    pub fn new(publishers: usize) -> Self {
        PublishStats {
            last_seq: (0..publishers.max(1)).map(|_| AtomicU64::new(0)).collect(),
            ..Default::default()
        }
    }
}

/// What to publish.
#[derive(Clone, Debug)]
pub struct PublishJob {
    /// Server API base URLs (`http://host:port`).
    pub bases: Vec<String>,
    /// How requests are authenticated (and which API they go to).
    pub auth: ApiAuth,
    /// Target channel.
    pub channel: String,
    /// Publications per second over all publishers (0: as fast as they go).
    pub rate: f64,
    /// Payload size in bytes.
    pub payload: usize,
    /// Concurrent API connections.
    pub publishers: usize,
    /// How long to publish.
    pub duration: Duration,
    /// Publish with `delta: true`.
    pub delta: bool,
}

/// Publishes for `job.duration` and returns; counts go to `stats`.
pub async fn run(job: PublishJob, stats: Arc<PublishStats>) -> anyhow::Result<()> {
    let n = job.publishers.max(1);
    let mut set = tokio::task::JoinSet::new();
    let start = Instant::now();
    for p in 0..n {
        let api = Api::new(&job.bases, &job.auth, p).await?;
        set.spawn(one(
            api,
            p,
            job.clone(),
            Pace {
                rate: job.rate / n as f64,
                phase: p as f64 / n as f64,
            },
            start,
            stats.clone(),
        ));
    }
    while set.join_next().await.is_some() {}
    Ok(())
}

/// When one publisher's publications are due.
#[derive(Clone, Copy, Debug)]
struct Pace {
    /// Publications per second of this publisher (0: as fast as it goes).
    rate: f64,
    /// Offset of its schedule, as a fraction of its period. Publisher `p` of `n` starts
    /// `p / n` of a period late, so that together they publish evenly: with a common
    /// schedule all of them fired at the same instant, and a "500/s" run was bursts of
    /// 32 publications every 64 ms, whose latency measured the burst, not the rate.
    phase: f64,
}

/// One publisher: publication `k` is due at `start + (k + phase) / rate`. When it falls more than
/// a second behind (the server cannot keep up) it skips ahead instead of bursting, so
/// the achieved rate shows the server's limit. A failed publication is retried with the
/// same sequence number, so subscribers can tell a real loss from a refused request.
async fn one(
    mut api: Api,
    index: usize,
    job: PublishJob,
    pace: Pace,
    start: Instant,
    stats: Arc<PublishStats>,
) {
    let Pace { rate, phase } = pace;
    let end = start + job.duration;
    let mut data = Vec::with_capacity(job.payload + 32);
    let mut k: u64 = 0;
    let mut seq: u64 = 1;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if rate > 0.0 {
            let due_at = |k: u64| start + Duration::from_secs_f64((k as f64 + phase) / rate);
            let mut due = due_at(k);
            if now > due + Duration::from_secs(1) {
                k = (now.duration_since(start).as_secs_f64() * rate - phase).max(0.0) as u64;
                due = due_at(k);
            }
            if due >= end {
                break;
            }
            if due > now {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        data.clear();
        let stamp = Stamp {
            sent_micros: now_micros(),
            publisher: API_PUBLISHER_BASE + index as u64,
            seq,
        };
        encode_payload(&mut data, stamp, job.payload);
        match api.publish(&job.channel, &data, job.delta).await {
            Ok(_) => {
                if let Some(last) = stats.last_seq.get(index) {
                    last.store(seq, Ordering::Relaxed);
                }
                seq += 1;
                stats.sent.fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => {
                // A node going away: pause briefly (bounded by the end) and go on.
                tokio::time::sleep(
                    Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())),
                )
                .await;
                stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        k += 1;
    }
}
