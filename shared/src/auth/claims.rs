//! Reading a connection token's claims (and a subscription token's options) with Centrifugo's meaning: `subs` over `channels`,
//! `expire_at` over `exp`, `b64info` over `info`, `meta` kept for the server side.
//!
//! Everything here is bounded: a claim past its limit, base64 that does not decode, or
//! decoded bytes that are not JSON make the token invalid (the client is closed with
//! 3500 "invalid token", as Centrifugo closes for a bad `b64info` in `subs`), so nothing
//! a token carries can reach another client except as a well-formed JSON value.

use super::{AuthError, ConnectionClaims, SubscribeOptions, SubscribeOverride};
use crate::protocol::RawJson;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Largest `info` (or decoded `b64info`) of a connection or of one `subs` entry, bytes.
/// It travels with every publication, join and presence entry of the user.
pub const MAX_INFO_BYTES: usize = 4096;
/// Largest `data` (or decoded `b64data`) of one `subs` entry, bytes.
pub const MAX_SUB_DATA_BYTES: usize = 16 * 1024;
/// Largest `meta`, bytes. Kept server-side for the connection's lifetime.
pub const MAX_META_BYTES: usize = 16 * 1024;
/// Most entries of `subs` or `channels` read from one token; the node's channel limit
/// per connection is checked after this, with its own close code.
pub const MAX_CLAIMED_CHANNELS: usize = 1024;

/// `override` of one `subs` entry: each option `{"value": bool}` as Centrifugo writes it.
#[derive(Deserialize, Default)]
pub(super) struct WireOverride {
    #[serde(default)]
    presence: Option<BoolValue>,
    #[serde(default)]
    join_leave: Option<BoolValue>,
    #[serde(default)]
    force_push_join_leave: Option<BoolValue>,
    #[serde(default)]
    force_recovery: Option<BoolValue>,
    #[serde(default)]
    force_positioning: Option<BoolValue>,
}

/// `{"value": true}`; a missing `value` is false, as in Centrifugo.
#[derive(Deserialize)]
struct BoolValue {
    #[serde(default)]
    value: bool,
}

/// One entry of the `subs` claim as the token writes it.
#[derive(Deserialize, Default)]
pub(super) struct WireSubscribeOptions {
    #[serde(default)]
    pub(super) info: Option<RawJson>,
    #[serde(default)]
    pub(super) b64info: Option<String>,
    #[serde(default)]
    pub(super) data: Option<RawJson>,
    #[serde(default)]
    pub(super) b64data: Option<String>,
    #[serde(default, rename = "override")]
    pub(super) override_: Option<WireOverride>,
}

/// The connection-token claims beyond the registered ones, as written.
#[derive(Default)]
pub(super) struct WireConnection {
    pub(super) sub: Option<String>,
    pub(super) exp: Option<u64>,
    pub(super) expire_at: Option<u64>,
    pub(super) info: Option<RawJson>,
    pub(super) b64info: Option<String>,
    pub(super) channels: Option<Vec<String>>,
    pub(super) subs: Option<BTreeMap<String, WireSubscribeOptions>>,
    pub(super) meta: Option<RawJson>,
}

impl WireConnection {
    /// Checks bounds and decodes base64, giving the claims a node acts on.
    pub(super) fn into_claims(self) -> Result<ConnectionClaims, AuthError> {
        let info = payload(self.info, self.b64info, "info", MAX_INFO_BYTES)?;
        let meta = bounded(self.meta, "meta", MAX_META_BYTES)?;
        let channels = self.channels.unwrap_or_default();
        if channels.len() > MAX_CLAIMED_CHANNELS {
            return Err(too_many("channels"));
        }
        let wire_subs = self.subs.unwrap_or_default();
        if wire_subs.len() > MAX_CLAIMED_CHANNELS {
            return Err(too_many("subs"));
        }
        let mut subs = BTreeMap::new();
        for (channel, w) in wire_subs {
            subs.insert(channel, w.into_options()?);
        }
        Ok(ConnectionClaims {
            sub: self.sub.unwrap_or_default(),
            exp: self.exp,
            // `expire_at` present wins over `exp`, and 0 means "never", as in Centrifugo.
            expire_at: match self.expire_at {
                Some(0) => None,
                Some(at) => Some(at),
                None => self.exp,
            },
            info,
            channels,
            subs,
            meta,
        })
    }
}

impl WireSubscribeOptions {
    /// Checks bounds and decodes base64 (a `subs` entry, or a subscription token's own).
    pub(super) fn into_options(self) -> Result<SubscribeOptions, AuthError> {
        let o = self.override_.unwrap_or_default();
        let get = |v: Option<BoolValue>| v.map(|b| b.value);
        Ok(SubscribeOptions {
            info: payload(self.info, self.b64info, "subs info", MAX_INFO_BYTES)?,
            data: payload(self.data, self.b64data, "subs data", MAX_SUB_DATA_BYTES)?,
            override_: SubscribeOverride {
                presence: get(o.presence),
                join_leave: get(o.join_leave),
                force_push_join_leave: get(o.force_push_join_leave),
                force_recovery: get(o.force_recovery),
                force_positioning: get(o.force_positioning),
            },
        })
    }
}

/// The JSON value, or the base64 one when given (it wins, as in Centrifugo). An empty
/// `b64...` string counts as absent, as Go's `omitempty` reads it.
fn payload(
    json: Option<RawJson>,
    b64: Option<String>,
    what: &str,
    max: usize,
) -> Result<Option<RawJson>, AuthError> {
    match b64.filter(|s| !s.is_empty()) {
        None => bounded(json, what, max),
        Some(text) => {
            // The encoded form is 4/3 the decoded: refuse before decoding a huge one.
            if text.len() > max / 3 * 4 + 4 {
                return Err(too_large(what, max));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|_| AuthError::Invalid(format!("b64{what} is not valid base64")))?;
            // The JSON protocol carries payloads as JSON values: bytes that are not one
            // would corrupt every frame they are copied into.
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| AuthError::Invalid(format!("b64{what} does not decode to JSON")))?;
            let raw = RawJson::parse(text)
                .map_err(|_| AuthError::Invalid(format!("b64{what} does not decode to JSON")))?;
            bounded(Some(raw), what, max)
        }
    }
}

fn bounded(v: Option<RawJson>, what: &str, max: usize) -> Result<Option<RawJson>, AuthError> {
    match v {
        Some(raw) if raw.len() > max => Err(too_large(what, max)),
        other => Ok(other),
    }
}

fn too_large(what: &str, max: usize) -> AuthError {
    AuthError::Invalid(format!("{what} claim is larger than {max} bytes"))
}

fn too_many(what: &str) -> AuthError {
    AuthError::Invalid(format!(
        "{what} claim has more than {MAX_CLAIMED_CHANNELS} channels"
    ))
}
