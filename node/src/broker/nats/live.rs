//! Listening to channels: one NATS subscription and one task per channel this node
//! serves, started by the first local subscriber and stopped a while after the last.
//!
//! The task hands publications up to the node in order. For namespaces with history each
//! message carries its stream sequence and the previous sequence of its subject; when
//! the previous one was never seen here (NATS dropped it, or the connection was down)
//! the task reads the missing ones from JetStream before going on, so subscribers
//! never see a gap.

use super::rejoin::HeldLeaves;
use super::state::{Inner, LiveChannel, MARKER_HEADER};
use super::subjects;
use crate::broker::BrokerError;
use async_nats::Message;
use futures_util::StreamExt;
use herald_shared::codec::{self, Envelope};
use herald_shared::protocol::{Broadcast, Publication, PushBody};
use std::sync::{Arc, Weak};
use tokio::sync::oneshot;

/// Starts listening to `channel` unless already listening; returns once the
/// subscription is active at the NATS server, so history read afterwards cannot miss
/// a publication that is not delivered live.
pub(super) async fn subscribe(inner: &Arc<Inner>, channel: &str) -> Result<(), BrokerError> {
    let entry = inner
        .live
        .lock()
        .entry(channel.to_owned())
        .or_insert_with(|| Arc::new(LiveChannel::new()))
        .clone();
    entry
        .ready
        .get_or_try_init(|| start(inner.clone(), channel.to_owned(), entry.clone()))
        .await?;
    Ok(())
}

async fn start(
    inner: Arc<Inner>,
    channel: String,
    entry: Arc<LiveChannel>,
) -> Result<(), BrokerError> {
    let history = inner
        .ns_options(&channel)
        .is_some_and(|ns| ns.has_history());
    let subject = subjects::delivery_subject(&channel, history);
    let sub = inner
        .client
        .subscribe(subject)
        .await
        .map_err(|e| BrokerError::nats("NATS subscribe", e))?;
    // The subscription must be active before anyone reads history.
    inner
        .client
        .flush()
        .await
        .map_err(|e| BrokerError::nats("NATS flush", e))?;
    let baseline = if history {
        let s = inner.ns_stream(&channel)?;
        inner
            .last_seq(&s.stream, &subjects::publish_subject(&channel))
            .await?
    } else {
        0
    };
    // `ready` runs this once per entry, so the receiver is still there.
    let Some(rx) = entry.catch_up_rx.lock().take() else {
        return Ok(());
    };
    // Weak: the entry owns the task (dropping it aborts the task).
    let recent = Arc::downgrade(&entry);
    let task = tokio::spawn(run(
        inner.clone(),
        channel,
        history,
        sub,
        rx,
        Cursor {
            baseline,
            delivered: 0,
            recent,
        },
    ));
    *entry.task.lock() = Some(task);
    Ok(())
}

/// Stops listening after the configured delay unless a subscriber came back.
pub(super) fn schedule_unsubscribe(inner: &Arc<Inner>, channel: &str) {
    let inner = inner.clone();
    let channel = channel.to_owned();
    tokio::spawn(async move {
        tokio::time::sleep(inner.opts.unsubscribe_delay).await;
        let mut live = inner.live.lock();
        // The node is the truth: a subscriber in the middle of subscribing is already there.
        if !inner.events().is_some_and(|e| e.serves(&channel)) {
            let gone = live.remove(&channel);
            drop(live);
            drop(gone);
        }
    });
}

/// Asks every channel task to catch up with its stream; returns when all did.
pub(super) async fn catch_up_all(inner: &Arc<Inner>) {
    let entries: Vec<Arc<LiveChannel>> = inner.live.lock().values().cloned().collect();
    for e in entries {
        let (tx, rx) = oneshot::channel();
        if e.catch_up.send(tx).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Where the task stands in its channel's stream.
struct Cursor {
    /// Newest sequence when listening started.
    baseline: u64,
    /// Newest sequence handed up.
    delivered: u64,
    /// The channel's entry, whose shared recovery range live messages extend.
    recent: Weak<LiveChannel>,
}

impl Cursor {
    fn seen(&self) -> u64 {
        self.baseline.max(self.delivered)
    }
}

async fn run(
    inner: Arc<Inner>,
    channel: String,
    history: bool,
    mut sub: async_nats::Subscriber,
    mut catch_up: tokio::sync::mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    mut cursor: Cursor,
) {
    let mut held = HeldLeaves::default();
    loop {
        let due = held.next_deadline();
        tokio::select! {
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                handle(&inner, &channel, history, &mut cursor, &mut held, msg).await;
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                let force_jl = inner.ns_options(&channel).is_some_and(|ns| ns.force_push_join_leave);
                for info in held.due(tokio::time::Instant::now()) {
                    join_leave(&inner, &channel, PushBody::Leave(&info), force_jl);
                }
            }
            Some(done) = catch_up.recv() => {
                if history {
                    repair_to_newest(&inner, &channel, &mut cursor).await;
                }
                let _ = done.send(());
            }
        }
    }
}

fn header_u64(msg: &Message, name: &str) -> Option<u64> {
    msg.headers
        .as_ref()?
        .get(name)
        .and_then(|v| v.as_str().parse().ok())
}

async fn handle(
    inner: &Arc<Inner>,
    channel: &str,
    history: bool,
    cursor: &mut Cursor,
    held: &mut HeldLeaves,
    msg: Message,
) {
    let received = crate::metrics::now_nanos();
    // The fan-out on this node, in the trace of the publish that sent it (its context
    // came in the message's headers; backends' messages have none: a trace of its own).
    let span = tracing::info_span!(
        target: herald_shared::otel::TRACE_TARGET,
        "herald.fanout",
        channel = %channel,
        node = %inner.node_id,
    );
    if let Some(h) = msg.headers.as_ref() {
        herald_shared::otel::extract_into(&span, |k| h.get(k).map(|v| v.as_str().to_owned()));
    }
    let handled = handle_message(inner, channel, history, cursor, held, msg, received);
    tracing::Instrument::instrument(handled, span).await
}

async fn handle_message(
    inner: &Arc<Inner>,
    channel: &str,
    history: bool,
    cursor: &mut Cursor,
    held: &mut HeldLeaves,
    msg: Message,
    received: u64,
) {
    let force_jl = inner
        .ns_options(channel)
        .is_some_and(|ns| ns.force_push_join_leave);
    if let (true, Some(seq)) = (history, header_u64(&msg, "Nats-Sequence")) {
        let prev = header_u64(&msg, "Nats-Last-Sequence").unwrap_or(0);
        if seq <= cursor.delivered {
            // Already delivered by a repair.
            metrics::counter!(crate::metrics::JETSTREAM_SKIPPED, "reason" => "duplicate")
                .increment(1);
            return;
        }
        if prev > cursor.seen() {
            repair(inner, channel, cursor, seq).await;
        }
        cursor.delivered = seq;
        let marker = msg
            .headers
            .as_ref()
            .is_some_and(|h| h.get(MARKER_HEADER).is_some());
        if marker {
            extend_recent(cursor, prev, seq, None);
            return;
        }
        match codec::decode_publication(&msg.payload) {
            Ok(mut p) => {
                p.offset = seq;
                extend_recent(cursor, prev, seq, Some(&p));
                deliver(inner, channel, &p, received);
            }
            Err(e) => {
                tracing::warn!(channel, offset = seq, error = %e, "skipping undecodable publication")
            }
        }
        return;
    }
    if msg.payload.first().is_some_and(|b| *b < 0x09) {
        match codec::decode(&msg.payload) {
            Ok(Envelope::Join(w)) => match w.to_info() {
                Ok(info) if !info.user.is_empty() && held.rejoined(&info.user) => {
                    tracing::debug!(channel, user = %info.user, "member moved nodes: no leave/join pushed");
                }
                Ok(info) => {
                    join_leave(inner, channel, PushBody::Join(&info), force_jl);
                }
                Err(e) => tracing::warn!(channel, error = %e, "bad join envelope"),
            },
            Ok(Envelope::Leave(w)) => match w.to_info() {
                Ok(info) => {
                    join_leave(inner, channel, PushBody::Leave(&info), force_jl);
                }
                Err(e) => tracing::warn!(channel, error = %e, "bad leave envelope"),
            },
            Ok(Envelope::LeaveMoving(w)) => match w.to_info() {
                // Anonymous members cannot be matched with a rejoin: push at once.
                Ok(info) if info.user.is_empty() => {
                    join_leave(inner, channel, PushBody::Leave(&info), force_jl);
                }
                Ok(info) => {
                    held.hold(info, tokio::time::Instant::now() + inner.opts.rejoin_grace);
                }
                Err(e) => tracing::warn!(channel, error = %e, "bad leave envelope"),
            },
            Ok(Envelope::Publication(_) | Envelope::DeltaPublication(_)) => {
                deliver_bytes(inner, channel, 0, &msg.payload, received)
            }
            Ok(other) => {
                tracing::warn!(channel, kind = ?std::mem::discriminant(&other), "unexpected envelope on a channel subject")
            }
            Err(e) => {
                tracing::warn!(channel, error = %e, "undecodable message on a channel subject")
            }
        }
        return;
    }
    // Plain JSON from a backend, on a channel without history.
    deliver_bytes(inner, channel, 0, &msg.payload, received);
}

/// Extends the channel's shared recovery range with a live message, if one exists and
/// no recovery holds it right now (then a later recovery reads the message instead).
fn extend_recent(cursor: &Cursor, prev: u64, seq: u64, p: Option<&Publication>) {
    let Some(entry) = cursor.recent.upgrade() else {
        return;
    };
    if let Ok(mut slot) = entry.recent.try_lock() {
        if let Some(range) = slot.as_mut() {
            range.live(prev, seq, p);
        }
    };
}

fn deliver_bytes(inner: &Inner, channel: &str, offset: u64, payload: &[u8], received: u64) {
    match codec::decode_publication(payload) {
        Ok(mut p) => {
            p.offset = offset;
            deliver(inner, channel, &p, received);
        }
        Err(e) => tracing::warn!(channel, offset, error = %e, "skipping undecodable publication"),
    }
}

fn deliver(inner: &Inner, channel: &str, p: &Publication, received: u64) {
    if let Some(events) = inner.events() {
        events.publication(
            channel,
            p.offset,
            &Broadcast::new(channel, PushBody::Pub(p)),
            received,
        );
    }
}

fn join_leave(inner: &Inner, channel: &str, body: PushBody<'_>, force: bool) {
    if let Some(events) = inner.events() {
        events.join_leave(channel, &Broadcast::new(channel, body), force);
    }
}

/// Subscribers of a channel whose stream cannot be followed must resubscribe and
/// recover themselves.
fn resync(inner: &Inner, channel: &str) {
    if let Some(events) = inner.events() {
        events.resync(channel);
    }
}

/// Reads and delivers the stored messages between what was seen and `before`.
async fn repair(inner: &Arc<Inner>, channel: &str, cursor: &mut Cursor, before: u64) {
    let from = cursor.seen();
    if before <= from + 1 {
        return;
    }
    tracing::info!(
        channel,
        from,
        to = before,
        "live gap: reading missed publications from JetStream"
    );
    let result = match inner.ns_stream(channel) {
        Ok(s) => {
            inner
                .read_range(
                    &s.stream,
                    &subjects::publish_subject(channel),
                    from,
                    before - 1,
                )
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(pubs) => {
            metrics::counter!(crate::metrics::JETSTREAM_REREAD).increment(pubs.len() as u64);
            let received = crate::metrics::now_nanos();
            for p in pubs {
                deliver(inner, channel, &p, received);
                cursor.delivered = p.offset;
            }
        }
        Err(e) => {
            metrics::counter!(crate::metrics::JETSTREAM_SKIPPED, "reason" => "unreadable")
                .increment(1);
            // Cannot fill the gap: subscribers must resubscribe and recover themselves.
            tracing::warn!(channel, error = %e, "cannot read missed publications; closing subscribers");
            resync(inner, channel);
        }
    }
}

/// After a reconnect: deliver whatever was stored while this node was away.
async fn repair_to_newest(inner: &Arc<Inner>, channel: &str, cursor: &mut Cursor) {
    let newest = match inner.ns_stream(channel) {
        Ok(s) => {
            inner
                .last_seq(&s.stream, &subjects::publish_subject(channel))
                .await
        }
        Err(e) => Err(e),
    };
    match newest {
        Ok(n) if n > cursor.seen() => {
            repair(inner, channel, cursor, n + 1).await;
            cursor.delivered = cursor.delivered.max(n);
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(channel, error = %e, "cannot check for missed publications; closing subscribers");
            resync(inner, channel);
        }
    }
}
