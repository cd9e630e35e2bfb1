//! What one publication becomes on the way to a channel's local subscribers: the
//! broker's encoded push for ordinary subscribers, and, only when a subscriber in delta
//! mode is among them, the delta-mode forms (data as a JSON string, in full or as a
//! fossil delta against the channel's previous publication). Each form is built at
//! most once per publication, however many subscribers take it.
//!
//! Also the channel's tags filter groups: subscribers with equal filters share one
//! evaluation per publication.

use bytes::Bytes;
use herald_shared::protocol::delta::{as_json_string, fossil};
use herald_shared::protocol::filter::FilterNode;
use herald_shared::protocol::reply::encode_pub_push;
use herald_shared::protocol::{Broadcast, Encoding, Publication, RawJson};
use std::sync::Arc;

/// The forms of one publication, built on first use.
pub(super) struct Frames<'a, 'b> {
    channel: &'a str,
    publication: &'a Publication,
    /// The previous publication's data, when the channel has one to delta against.
    previous: Option<&'a RawJson>,
    /// The push ordinary subscribers get, encoded once per encoding.
    plain: &'a Broadcast<'b>,
    full: Option<Bytes>,
    /// `Some(None)`: tried, and a delta would not be smaller (or not UTF-8).
    delta: Option<Option<Bytes>>,
}

impl<'a, 'b> Frames<'a, 'b> {
    pub(super) fn new(
        channel: &'a str,
        publication: &'a Publication,
        previous: Option<&'a RawJson>,
        plain: &'a Broadcast<'b>,
    ) -> Self {
        Frames {
            channel,
            publication,
            previous: previous.filter(|_| publication.delta_publish),
            plain,
            full: None,
            delta: None,
        }
    }

    /// The frame for an ordinary subscriber in `encoding`.
    pub(super) fn plain(&self, encoding: Encoding) -> Bytes {
        self.plain.get(encoding).clone()
    }

    /// The frame for a delta-mode subscriber; `has_base`: it got the channel's previous
    /// publication, so a delta against it can be decoded. Returns the frame and whether
    /// it is a delta.
    pub(super) fn for_delta(&mut self, has_base: bool) -> (Bytes, bool) {
        if has_base {
            if let Some(previous) = self.previous {
                let (channel, p) = (self.channel, self.publication);
                let delta = self.delta.get_or_insert_with(|| {
                    let d = fossil(previous.as_str(), p.data.as_str())?;
                    Some(encode(channel, p, as_json_string(&d), true))
                });
                if let Some(frame) = delta {
                    return (frame.clone(), true);
                }
            }
        }
        let (channel, p) = (self.channel, self.publication);
        let full = self
            .full
            .get_or_insert_with(|| encode(channel, p, as_json_string(p.data.as_str()), false));
        (full.clone(), false)
    }
}

fn encode(channel: &str, p: &Publication, data: RawJson, delta: bool) -> Bytes {
    let q = Publication {
        data,
        info: p.info.clone(),
        offset: p.offset,
        tags: p.tags.clone(),
        delta,
        delta_publish: false,
    };
    encode_pub_push(channel, &q)
}

/// A publication in the delta-mode form a subscribe reply carries: data as a JSON
/// string, in full.
pub fn full_form(p: &Publication) -> Publication {
    Publication {
        data: as_json_string(p.data.as_str()),
        delta: false,
        ..p.clone()
    }
}

/// The distinct tags filters of a channel's subscribers, each with its number of users.
/// A freed slot is reused, so subscribers' slot numbers stay valid.
#[derive(Default)]
pub(super) struct FilterGroups {
    slots: Vec<(Option<Arc<FilterNode>>, usize)>,
}

impl FilterGroups {
    /// The slot of `filter`, joined as one more user.
    pub(super) fn join(&mut self, filter: &Arc<FilterNode>) -> usize {
        if let Some(i) = self
            .slots
            .iter()
            .position(|(f, _)| f.as_deref() == Some(filter.as_ref()))
        {
            self.slots[i].1 += 1;
            return i;
        }
        if let Some(i) = self.slots.iter().position(|(f, _)| f.is_none()) {
            self.slots[i] = (Some(filter.clone()), 1);
            return i;
        }
        self.slots.push((Some(filter.clone()), 1));
        self.slots.len() - 1
    }

    /// One user of slot `i` left.
    pub(super) fn leave(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            slot.1 = slot.1.saturating_sub(1);
            if slot.1 == 0 {
                slot.0 = None;
            }
        }
    }

    /// Whether publications with `tags` pass each slot's filter: one evaluation per
    /// distinct filter. Empty (no allocation) when no subscriber has a filter.
    pub(super) fn evaluate(&self, tags: &std::collections::BTreeMap<String, String>) -> Vec<bool> {
        self.slots
            .iter()
            .map(|(f, _)| f.as_ref().is_some_and(|f| f.matches(tags)))
            .collect()
    }

    /// Distinct filters in use.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.iter().filter(|(f, _)| f.is_some()).count()
    }
}
