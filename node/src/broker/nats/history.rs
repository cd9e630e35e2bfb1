//! History reads, recovery and purges, by the recovery rule of the [module](super).

use super::recent;
use super::rounds::Answer;
use super::state::{Inner, LiveChannel, NsStream};
use super::subjects;
use crate::broker::{BrokerError, HistoryQuery, Recovery};
use crate::config::NamespaceOptions;
use async_nats::jetstream::stream;
use herald_shared::protocol::{HistoryResult, Publication, StreamPosition};

/// Reads history; see [`crate::broker::Broker::history`].
pub(super) async fn history(
    inner: &Inner,
    channel: &str,
    q: &HistoryQuery,
    ns: &NamespaceOptions,
) -> Result<HistoryResult, BrokerError> {
    let Some(s) = stream_of(inner, channel, ns).await? else {
        return Ok(HistoryResult::default());
    };
    read(inner, &s, channel, q, ns, Reader::History).await
}

/// The stream of `channel`'s namespace, once connected; `None` when the namespace keeps
/// no history (nothing to read, nothing to recover).
async fn stream_of(
    inner: &Inner,
    channel: &str,
    ns: &NamespaceOptions,
) -> Result<Option<NsStream>, BrokerError> {
    if !ns.has_history() {
        return Ok(None);
    }
    inner.ensure_connected().await?;
    inner.ns_stream(channel).map(Some)
}

/// Who reads: a history request, or a recovery, whose lookups are counted and, with
/// the channel's live entry, shared with the channel's other recoveries
/// ([`super::rounds`], [`recent`]).
#[derive(Clone, Copy)]
enum Reader<'a> {
    History,
    Recovery(Option<&'a LiveChannel>),
}

/// [`history`] from the namespace's stream `s`, read by `reader`.
async fn read(
    inner: &Inner,
    s: &NsStream,
    channel: &str,
    q: &HistoryQuery,
    ns: &NamespaceOptions,
    reader: Reader<'_>,
) -> Result<HistoryResult, BrokerError> {
    let subject = subjects::publish_subject(channel);
    let ask = || inner.last_seq(&s.stream, &subject);
    let mut top = match reader {
        Reader::History => ask().await?,
        Reader::Recovery(live) => {
            let (top, answer) = match live {
                Some(e) => e.top.get(s.epoch.clone(), ask).await?,
                None => (ask().await?, Answer::Asked),
            };
            lookup("top", answer);
            top
        }
    };
    if top == 0 && q.establish_position {
        top = inner.write_marker(&s.stream, &subject).await?;
    }
    let limit = q.limit.unwrap_or(usize::MAX);
    let mut publications = Vec::new();
    if limit > 0 && top > 0 {
        let mut after = q.since.as_ref().map(|p| p.offset).unwrap_or(0);
        if q.reverse && limit == 1 {
            // Only the newest (cache recovery): `top` is the channel's own last
            // sequence, so reading from just before it is enough.
            after = after.max(top - 1);
        }
        publications = if let Reader::Recovery(Some(entry)) = reader {
            read_shared(inner, entry, s, &subject, after, top, ns).await?
        } else {
            inner.read_range(&s.stream, &subject, after, top).await?
        };
        // The stream keeps one message more per channel (room for a position
        // marker); without a marker that extra one is past the history size.
        let excess = publications.len().saturating_sub(ns.history_size);
        publications.drain(..excess);
        if q.reverse {
            publications.reverse();
        }
        publications.truncate(limit);
    }
    Ok(HistoryResult {
        publications,
        offset: top,
        epoch: s.epoch.clone(),
    })
}

/// Recovery by the module's recovery rule.
pub(super) async fn recover(
    inner: &Inner,
    channel: &str,
    since: &StreamPosition,
    ns: &NamespaceOptions,
) -> Result<Recovery, BrokerError> {
    let Some(s) = stream_of(inner, channel, ns).await? else {
        return Ok(Recovery::from_history(HistoryResult::default(), false));
    };
    let query = HistoryQuery {
        since: Some(since.clone()),
        limit: None,
        reverse: false,
        establish_position: true,
    };
    // The subscriber is registered first, so this node listens to the channel.
    let live = inner.live.lock().get(channel).cloned();
    let h = read(
        inner,
        &s,
        channel,
        &query,
        ns,
        Reader::Recovery(live.as_deref()),
    )
    .await?;
    let recovered = recoverable(&s, channel, live.as_deref(), since, h.offset).await?;
    Ok(Recovery::from_history(h, recovered))
}

/// Stored publications in `(after, top]` through the channel's shared range.
async fn read_shared(
    inner: &Inner,
    entry: &LiveChannel,
    s: &NsStream,
    subject: &str,
    after: u64,
    top: u64,
    ns: &NamespaceOptions,
) -> Result<Vec<Publication>, BrokerError> {
    // The single flight: recoveries of this channel take turns with the range.
    let mut slot = entry.recent.lock().await;
    let target = recent::Target {
        stream: &s.stream,
        epoch: &s.epoch,
        subject,
    };
    // The stream keeps one message more per subject than the history size.
    let keep = ns.history_size.saturating_add(1);
    let (pubs, source) = recent::read(
        |a, b| inner.read_range(target.stream, target.subject, a, b),
        &mut slot,
        target,
        after,
        top,
        keep,
    )
    .await?;
    metrics::counter!(crate::metrics::RECOVERY_READS, "source" => source.label()).increment(1);
    Ok(pubs)
}

/// Whether recovery from `since` can be complete: it is the channel's newest
/// position, or it is still stored (see the module's recovery rule).
async fn recoverable(
    s: &NsStream,
    channel: &str,
    live: Option<&LiveChannel>,
    since: &StreamPosition,
    top: u64,
) -> Result<bool, BrokerError> {
    if since.epoch != s.epoch || since.offset > top {
        return Ok(false);
    }
    if since.offset == top {
        return Ok(true);
    }
    if since.offset == 0 {
        return Ok(false);
    }
    // Asked after this recovery's range was read, as the rule needs ([`super::rounds`]).
    let ask = || async {
        match s.stream.direct_get(since.offset).await {
            Ok(m) => Ok(m.subject.as_str() == subjects::publish_subject(channel)),
            Err(e) if matches!(e.kind(), stream::DirectGetErrorKind::NotFound) => Ok(false),
            Err(e) => Err(BrokerError::nats("JetStream read", e)),
        }
    };
    let (stored, answer) = match live {
        Some(e) => e.stored.get((s.epoch.clone(), since.offset), ask).await?,
        None => (ask().await?, Answer::Asked),
    };
    lookup("position", answer);
    Ok(stored)
}

/// Counts one of a recovery's JetStream lookups (`top` or `position`).
fn lookup(kind: &'static str, answer: Answer) {
    metrics::counter!(crate::metrics::RECOVERY_LOOKUPS, "lookup" => kind, "answer" => answer.label())
        .increment(1);
}

pub(super) async fn remove_history(inner: &Inner, channel: &str) -> Result<(), BrokerError> {
    inner.ensure_connected().await?;
    let ns = subjects::namespace_of(channel).map(str::to_owned);
    let has = match &ns {
        None => inner.namespaces.default.has_history(),
        Some(n) => inner
            .namespaces
            .named
            .get(n)
            .is_some_and(|o| o.has_history()),
    };
    if !has {
        return Ok(());
    }
    // What recoveries shared is gone from the stream now.
    let entry = inner.live.lock().get(channel).cloned();
    if let Some(entry) = entry {
        *entry.recent.lock().await = None;
    }
    let s = inner.ns_stream(channel)?;
    s.stream
        .purge()
        .filter(subjects::publish_subject(channel))
        .await
        .map(|_| ())
        .map_err(|e| BrokerError::nats("JetStream purge", e))
}
