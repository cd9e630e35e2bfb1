//! A shard: a set of clients run by one process, and what it reports.
//!
//! The parent runs one shard in-process when the clients fit under one process's file
//! limit, or starts worker processes (`herald-loadtest worker`) that each run one shard
//! and report the same [`ShardMsg`]s as JSON lines.
//!
//! # Layout
//! - this file: running a shard (starting its clients, progress, the final report).
//! - [`spec`]: the shard's parameters and the messages between parent and shard.
//! - [`ctx`]: the state the shard's clients share.

pub mod ctx;
pub mod spec;

pub use ctx::ShardCtx;
pub use spec::{
    ClientPublish, Control, FinalSeqs, Layout, ShardMsg, ShardSpec, API_PUBLISHER_BASE,
};

use crate::client::Client;
use crate::stats::hist::WireHist;
use crate::ws::Target;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Runs a shard until told to stop (or until `control` closes), sending progress every
/// second and a final report to `tx`.
pub async fn run(
    spec: ShardSpec,
    mut control: mpsc::Receiver<Control>,
    tx: mpsc::Sender<ShardMsg>,
) {
    let mut targets = Vec::with_capacity(spec.urls.len());
    for url in &spec.urls {
        match Target::parse(url).await {
            Ok(t) => targets.push(t),
            Err(message) => {
                let _ = tx.send(ShardMsg::Error { message }).await;
                return;
            }
        }
    }
    if targets.is_empty() {
        let _ = tx
            .send(ShardMsg::Error {
                message: "no target URL".into(),
            })
            .await;
        return;
    }
    let loopback = targets.iter().all(|t| t.addr.ip().is_loopback());
    let sources = if loopback {
        (0..spec.source_ips.min(250))
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))
            .collect()
    } else {
        Vec::new()
    };
    let ctx = Arc::new(ShardCtx::new(spec, targets, sources));
    let clients = tokio::spawn(launch(ctx.clone()));
    let progress = tokio::spawn(progress(ctx.clone(), tx.clone()));
    let settled = tokio::spawn(watch_settled(ctx.clone(), tx.clone()));
    let finals = loop {
        match control.recv().await {
            Some(Control::Publish { on: true }) => ctx.publishing.store(true, Ordering::Relaxed),
            Some(Control::Publish { on: false }) => {
                ctx.publishing.store(false, Ordering::Relaxed);
                // Let a publish that read the flag just before finish recording its number.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx
                    .send(ShardMsg::Published {
                        seqs: published(&ctx),
                    })
                    .await;
            }
            Some(Control::Stop { finals }) => break finals,
            None => break FinalSeqs::default(),
        }
    };
    let _ = ctx.final_seqs.set(finals);
    ctx.stop.cancel();
    // Clients close politely within a second; do not wait for stragglers forever.
    let _ = tokio::time::timeout(Duration::from_secs(5), clients).await;
    progress.abort();
    settled.abort();
    let msg = ShardMsg::Final {
        counters: ctx.counters.snapshot(),
        latency: WireHist::from_hist(&ctx.latency.total()),
        connect: WireHist::from_hist(&ctx.connect_hist.lock()),
        reconnect: WireHist::from_hist(&ctx.reconnect_hist.lock()),
    };
    let _ = tx.send(msg).await;
}

/// Starts the clients at the shard's connect rate, then waits for all of them.
async fn launch(ctx: Arc<ShardCtx>) {
    let mut set = tokio::task::JoinSet::new();
    let start = Instant::now();
    let rate = ctx.spec.connect_rate;
    for i in 0..ctx.spec.count {
        if rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::select! {
                _ = ctx.stop.cancelled() => break,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        } else if ctx.stop.is_cancelled() {
            break;
        }
        set.spawn(Client::new(ctx.clone(), ctx.spec.first + i).run());
    }
    while set.join_next().await.is_some() {}
}

/// Sends a progress message every second.
async fn progress(ctx: Arc<ShardCtx>, tx: mpsc::Sender<ShardMsg>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    loop {
        every.tick().await;
        let msg = ShardMsg::Progress {
            counters: ctx.counters.snapshot(),
            interval: WireHist::from_hist(&ctx.latency.take_interval()),
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

/// Reports the moment every client has settled (polled every few milliseconds, which
/// bounds the error of the measured connect rate).
async fn watch_settled(ctx: Arc<ShardCtx>, tx: mpsc::Sender<ShardMsg>) {
    let count = ctx.spec.count as u64;
    while !ctx.stop.is_cancelled() {
        if ctx.counters.settled.load(Ordering::Relaxed) >= count {
            let at_micros = crate::protocol::now_micros();
            let _ = tx.send(ShardMsg::Settled { at_micros }).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `(channel, publisher, last seq)` of every client of the shard that published.
fn published(ctx: &ShardCtx) -> Vec<(String, u64, u64)> {
    ctx.pub_seqs
        .iter()
        .enumerate()
        .filter_map(|(i, seq)| {
            let seq = seq.load(Ordering::Relaxed);
            let index = ctx.spec.first + i;
            let channel = ctx.spec.channels.channels_of(index).into_iter().next()?;
            (seq > 0).then_some((channel, index as u64, seq))
        })
        .collect()
}
