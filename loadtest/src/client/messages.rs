//! Handling what the server sends: replies, publications, pings, and the accounting
//! that goes with them.

use super::{Batch, Client, Phase, CONNECT_ID, FIRST_PUBLISH_ID};
use crate::cli::Protocol;
use crate::protocol::{self, Incoming};
use crate::stats::hist::record;
use crate::stats::AtomicCounters;
use crate::ws::{Event, WsConn};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Client {
    /// Handles every complete event in the read buffer; `Err` when the session is over.
    pub(super) fn drain_events(
        &mut self,
        ws: &mut WsConn,
        phase: &mut Phase,
        started: Instant,
        batch: &mut Batch,
    ) -> Result<(), ()> {
        loop {
            let event = match ws.next_event() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(_) => return Err(()),
            };
            match event {
                Event::Close(code) => {
                    // 3500–3999 and 4500–4999: the protocol's "do not reconnect" codes.
                    if matches!(code, 3500..=3999 | 4500..=4999) {
                        self.give_up = true;
                    }
                    return Err(());
                }
                Event::Control => {}
                Event::Message(_) | Event::Reassembled => {
                    let text = ws.payload(&event);
                    let r = match self.ctx.spec.protocol {
                        Protocol::Centrifugo => self.handle_text(text, phase, started, batch),
                        Protocol::Pusher => self.handle_pusher(text, phase, started, batch),
                    };
                    if event == Event::Reassembled {
                        ws.done_reassembled();
                    }
                    r?;
                }
            }
        }
        if !self.out.is_empty() {
            match self.ctx.spec.protocol {
                Protocol::Centrifugo => ws.queue_text(&self.out),
                // Pusher has no batching: one event per frame (JSON lines hold no raw
                // newline, so the lines are the events).
                Protocol::Pusher => {
                    for line in self.out.split(|&b| b == b'\n') {
                        ws.queue_text(line);
                    }
                }
            }
            self.out.clear();
        }
        Ok(())
    }

    /// Handles one text message (one or more JSON lines).
    fn handle_text(
        &mut self,
        text: &[u8],
        phase: &mut Phase,
        started: Instant,
        batch: &mut Batch,
    ) -> Result<(), ()> {
        // One clock reading per frame: everything in it arrived together.
        let mut now = None;
        for line in text.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            if let Some(p) = protocol::fast_pub(line) {
                batch.pub_bytes += line.len() as u64;
                self.on_publication(p.channel, p.offset, Some(p.stamp), batch, &mut now);
                continue;
            }
            let Ok(msg) = protocol::decode(line) else {
                return Err(());
            };
            if msg.push.as_ref().is_some_and(|p| p.publication.is_some()) {
                batch.pub_bytes += line.len() as u64;
            }
            self.handle_message(msg, phase, started, batch, &mut now)?;
        }
        Ok(())
    }

    /// A publication pushed on `channel`: integrity accounting, and its latency when it
    /// carries our stamp.
    pub(super) fn on_publication(
        &mut self,
        channel: &str,
        offset: u64,
        stamp: Option<protocol::Stamp>,
        batch: &mut Batch,
        now: &mut Option<u64>,
    ) {
        if let Some(sub) = self.subs.iter_mut().find(|s| s.channel == channel) {
            let id = stamp.map(|s| (s.publisher, s.seq));
            batch.delta.add(sub.tracker.on_publication(offset, id));
        }
        batch.deliveries += 1;
        if let Some(s) = stamp {
            let now = *now.get_or_insert_with(protocol::now_micros);
            self.latencies.push(now.saturating_sub(s.sent_micros));
        }
    }

    fn handle_message(
        &mut self,
        msg: Incoming<'_>,
        phase: &mut Phase,
        started: Instant,
        batch: &mut Batch,
        now: &mut Option<u64>,
    ) -> Result<(), ()> {
        if let Some(push) = msg.push {
            if let Some(p) = push.publication {
                let stamp = if self.ctx.spec.delta {
                    let sub = self.subs.iter_mut().find(|s| s.channel == push.channel);
                    let Some(sub) = sub else { return Ok(()) };
                    decode_delta(&mut sub.base, &p)?
                } else {
                    protocol::read_stamp(p.data.get().as_bytes())
                };
                self.on_publication(&push.channel, p.offset, stamp, batch, now);
            }
            // A `disconnect` push is followed by the close frame, which ends the session;
            // the SDKs stop reconnecting when it says so, and so does this client.
            if push.disconnect.is_some_and(|d| !d.reconnect) {
                self.give_up = true;
            }
            return Ok(());
        }
        if msg.is_ping() {
            self.push_command(b"{}");
            batch.pings += 1;
            return Ok(());
        }
        match msg.id {
            CONNECT_ID => {
                if msg.error.is_some() {
                    return Err(());
                }
                AtomicCounters::add(&self.ctx.counters.conn_ok, 1);
                if self.outage_since.is_none() && !self.settled {
                    let micros = started.elapsed().as_micros() as u64;
                    record(&mut self.ctx.connect_hist.lock(), micros);
                }
                self.queue_subscribes(phase);
            }
            id if id > CONNECT_ID && id < FIRST_PUBLISH_ID => {
                let Some(sub) = self.subs.get_mut((id - CONNECT_ID - 1) as usize) else {
                    return Ok(());
                };
                if let Some(reply) = msg.subscribe {
                    // Recovered publications count as deliveries but stay out of the
                    // latency histogram: their delay is the outage (reconnect time).
                    for p in &reply.publications {
                        let stamp = if self.ctx.spec.delta {
                            decode_delta(&mut sub.base, p)?
                        } else {
                            protocol::read_stamp(p.data.get().as_bytes())
                        };
                        let id = stamp.map(|s| (s.publisher, s.seq));
                        batch.delta.add(sub.tracker.on_publication(p.offset, id));
                        batch.deliveries += 1;
                    }
                    let publishing = self.ctx.publishing.load(Ordering::Relaxed);
                    batch.delta.add(sub.tracker.on_subscribed(
                        &reply.epoch,
                        reply.offset,
                        sub.recovering,
                        reply.recovered,
                        publishing,
                    ));
                    batch.subscribed += 1;
                } else {
                    batch.sub_failed += 1;
                }
                self.subscription_answered(phase);
            }
            _ => {
                if msg.error.is_some() {
                    batch.publish_errors += 1;
                }
            }
        }
        Ok(())
    }

    /// After the connect reply: subscribe to every channel in one frame.
    fn queue_subscribes(&mut self, phase: &mut Phase) {
        if self.subs.is_empty() {
            *phase = Phase::Ready;
            self.on_ready();
            return;
        }
        let recover = self.ctx.spec.reconnect;
        let mut out = std::mem::take(&mut self.out);
        for (i, sub) in self.subs.iter_mut().enumerate() {
            if !out.is_empty() {
                out.push(b'\n');
            }
            let from = if recover {
                sub.tracker.recover_from()
            } else {
                None
            };
            sub.recovering = from.is_some();
            let delta = self.ctx.spec.delta;
            if delta {
                // A new subscription starts from a full payload.
                sub.base.clear();
            }
            let id = CONNECT_ID + 1 + i as u32;
            protocol::encode_subscribe(&mut out, id, &sub.channel, from, delta);
        }
        self.out = out;
        *phase = Phase::Subscribing(self.subs.len());
    }

    /// Connected and subscribed: settles the first attempt or ends an outage.
    /// One subscription of the opening batch was answered (either protocol): the last
    /// answer makes the client ready.
    pub(super) fn subscription_answered(&mut self, phase: &mut Phase) {
        if let Phase::Subscribing(n) = phase {
            *phase = if *n <= 1 {
                Phase::Ready
            } else {
                Phase::Subscribing(*n - 1)
            };
            if *phase == Phase::Ready {
                self.on_ready();
            }
        }
    }

    pub(super) fn on_ready(&mut self) {
        if let Some(since) = self.outage_since.take() {
            AtomicCounters::add(&self.ctx.counters.reconnects, 1);
            record(
                &mut self.ctx.reconnect_hist.lock(),
                since.elapsed().as_micros() as u64,
            );
        }
        self.settle();
    }

    /// Counts this client's first attempt as finished, once.
    pub(super) fn settle(&mut self) {
        if !self.settled {
            self.settled = true;
            AtomicCounters::add(&self.ctx.counters.settled, 1);
        }
    }

    /// Adds a command to the next outgoing frame.
    pub(super) fn push_command(&mut self, cmd: &[u8]) {
        if !self.out.is_empty() {
            self.out.push(b'\n');
        }
        self.out.extend_from_slice(cmd);
    }

    /// Adds one read's results to the shard's counters and histogram.
    pub(super) fn flush_batch(&mut self, b: &mut Batch) {
        let c = &self.ctx.counters;
        AtomicCounters::add(&c.deliveries, b.deliveries);
        AtomicCounters::add(&c.pub_bytes, b.pub_bytes);
        AtomicCounters::add(&c.lost, b.delta.lost);
        AtomicCounters::add(&c.duplicates, b.delta.duplicates);
        AtomicCounters::add(&c.gaps, b.delta.gaps);
        AtomicCounters::add(&c.recovered, b.delta.recovered);
        AtomicCounters::add(&c.unrecovered, b.delta.unrecovered);
        AtomicCounters::add(&c.offset_skips, b.delta.offset_skips);
        AtomicCounters::add(&c.pings, b.pings);
        AtomicCounters::add(&c.client_publish_errors, b.publish_errors);
        AtomicCounters::add(&c.sub_failed, b.sub_failed);
        AtomicCounters::add(&c.subscribed, b.subscribed);
        self.ctx.latency.record_batch(self.index, &self.latencies);
        self.latencies.clear();
    }

    /// At the end: publications up to each publisher's last one that never arrived.
    pub(super) fn count_tail(&self) {
        let Some(finals) = self.ctx.final_seqs.get() else {
            return;
        };
        for sub in &self.subs {
            if let Some(last) = finals.get(&sub.channel) {
                let (lost, gaps) = sub.tracker.tail(last);
                AtomicCounters::add(&self.ctx.counters.lost, lost);
                AtomicCounters::add(&self.ctx.counters.gaps, gaps);
            }
        }
    }
}

/// A publication of a delta-mode subscription: `data` is a JSON string, the payload's
/// text in full or a fossil delta against `base`. Updates `base` and reads the stamp;
/// `Err` when a delta does not apply (the session ends, as an SDK would fail it).
fn decode_delta(base: &mut Vec<u8>, p: &protocol::Pub<'_>) -> Result<Option<protocol::Stamp>, ()> {
    let text: String = serde_json::from_str(p.data.get()).map_err(|_| ())?;
    let payload = if p.delta {
        let source = std::str::from_utf8(base).map_err(|_| ())?;
        herald_shared::protocol::delta::apply(source, &text).ok_or(())?
    } else {
        text
    };
    let stamp = protocol::read_stamp(payload.as_bytes());
    *base = payload.into_bytes();
    Ok(stamp)
}
