//! What the backend proxy needs of one connection: the forwarded headers, the connect
//! answer's `meta`, and when the refresh and sub_refresh proxies are due. Kept in the
//! session (the reader), which runs those refreshes when they fall due.

use crate::proxy::Headers;
use herald_shared::protocol::RawJson;
use std::collections::HashMap;

/// What the backend proxy needs of one connection. Empty (no allocation) when no proxy
/// is on.
#[derive(Default)]
pub(in crate::session) struct Backend {
    /// The upgrade request's headers listed in `HERALD_PROXY_HTTP_HEADERS`. Kept after
    /// `connect` only when a later proxy (refresh, subscribe...) will send them.
    pub(in crate::session) headers: Headers,
    /// `meta` from the connect proxy (or refresh): sent in later proxy requests.
    pub(in crate::session) meta: Option<RawJson>,
    /// When the refresh proxy is to be asked about this connection (unix seconds).
    pub(in crate::session) refresh_at: Option<u64>,
    /// When the sub_refresh proxy is to be asked about each proxied subscription.
    pub(in crate::session) sub_refresh_at: HashMap<String, u64>,
}

impl Backend {
    /// The earliest refresh or sub_refresh due, unix seconds.
    pub(in crate::session) fn next_due(&self) -> Option<u64> {
        self.sub_refresh_at
            .values()
            .copied()
            .chain(self.refresh_at)
            .min()
    }
}
