//! What a client does with each message from a Pusher-protocol server: subscribe once
//! the connection is established, count confirmations, answer pings, and account for
//! publications exactly as with the Centrifugo protocol (the stamp is in `data`).

use super::{Batch, Client, Phase};
use crate::pusher;
use crate::stats::hist::record;
use crate::stats::AtomicCounters;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Client {
    /// Handles one message (Pusher sends one event per frame); `Err` ends the session.
    pub(super) fn handle_pusher(
        &mut self,
        text: &[u8],
        phase: &mut Phase,
        started: Instant,
        batch: &mut Batch,
    ) -> Result<(), ()> {
        let msg = pusher::decode(text).map_err(|_| ())?;
        match msg.event.as_ref() {
            "pusher:connection_established" => {
                if *phase != Phase::Connecting {
                    return Ok(());
                }
                AtomicCounters::add(&self.ctx.counters.conn_ok, 1);
                if self.outage_since.is_none() && !self.settled {
                    let micros = started.elapsed().as_micros() as u64;
                    record(&mut self.ctx.connect_hist.lock(), micros);
                }
                if self.subs.is_empty() {
                    *phase = Phase::Ready;
                    self.on_ready();
                    return Ok(());
                }
                // One line each; every line goes out as its own frame.
                let mut out = std::mem::take(&mut self.out);
                for sub in &self.subs {
                    if !out.is_empty() {
                        out.push(b'\n');
                    }
                    pusher::encode_subscribe(&mut out, &sub.channel);
                }
                self.out = out;
                *phase = Phase::Subscribing(self.subs.len());
            }
            "pusher_internal:subscription_succeeded" => {
                let channel = msg.channel.as_deref().unwrap_or_default();
                let Some(sub) = self.subs.iter_mut().find(|s| s.channel == channel) else {
                    return Ok(());
                };
                // No offsets nor epochs: the tracker counts by publisher sequence only.
                let publishing = self.ctx.publishing.load(Ordering::Relaxed);
                batch
                    .delta
                    .add(sub.tracker.on_subscribed("", 0, false, false, publishing));
                batch.subscribed += 1;
                self.subscription_answered(phase);
            }
            "pusher:ping" => {
                self.push_command(pusher::PONG);
                batch.pings += 1;
            }
            "pusher:error" | "pusher:subscription_error" => {
                if let Phase::Subscribing(_) = phase {
                    batch.sub_failed += 1;
                }
                if *phase != Phase::Ready {
                    return Err(());
                }
            }
            event if event.starts_with("pusher:") || event.starts_with("pusher_internal:") => {}
            _ => {
                let mut now = None;
                let stamp = msg
                    .data_str()
                    .and_then(|d| crate::protocol::read_stamp(d.as_bytes()));
                let channel = msg.channel.as_deref().unwrap_or_default();
                self.on_publication(channel, 0, stamp, batch, &mut now);
            }
        }
        Ok(())
    }
}
