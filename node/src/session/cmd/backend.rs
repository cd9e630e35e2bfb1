//! The session's side of the backend proxy: how a command asks, and how a backend's
//! answer becomes what the client sees (what a connection keeps for it is
//! [`crate::session::proxied`]).
//!
//! Mapping, as Centrifugo does it: the backend's `error` is the client's error reply
//! (the backend's code and text); its `disconnect` closes the connection with that code;
//! a call that fails (timeout, backend down, a status other than 200, an answer that
//! does not parse) is error 100 "internal server error", temporary, so the SDK retries.
//! The failure itself was logged by [`crate::proxy`], without header values or bodies.

use super::{Client, Failure};
use crate::config::ProxyKind;
use crate::conn::outbound::CloseReason;
use crate::proxy::wire::ProxyRequest;
use crate::proxy::Answer;
use herald_shared::protocol::{ErrorCode, ReplyError};
use serde::de::DeserializeOwned;
use std::borrow::Cow;

impl Client {
    /// Whether the proxy of `kind` is on.
    pub(in crate::session) fn proxied(&self, kind: ProxyKind) -> bool {
        self.node.proxy.as_ref().is_some_and(|p| p.enabled(kind))
    }

    /// A request for this connection: client id, user and meta filled in.
    pub(in crate::session) fn proxy_request(&self) -> ProxyRequest<'_> {
        let (client, user) = match self.conn.identity() {
            Some(i) => (i.client.as_str(), i.user.as_str()),
            None => ("", ""),
        };
        ProxyRequest {
            user,
            meta: self.backend.meta.as_ref(),
            ..ProxyRequest::new(client, self.conn.encoding())
        }
    }

    /// Asks the backend; its error or disconnect, or a failed call, come back as the
    /// command's failure.
    pub(in crate::session) async fn ask<R: DeserializeOwned>(
        &self,
        kind: ProxyKind,
        request: &ProxyRequest<'_>,
    ) -> Result<Option<R>, Failure> {
        let Some(proxy) = &self.node.proxy else {
            return Err(ErrorCode::NotAvailable.into());
        };
        match proxy.call(kind, &self.backend.headers, request).await {
            Ok(Answer::Result(r)) => Ok(r),
            Ok(Answer::Error(e)) => Err(Failure::Reply(ReplyError {
                code: e.code,
                message: e.message,
                temporary: e.temporary,
            })),
            Ok(Answer::Disconnect(d)) => Err(Failure::Disconnect(CloseReason {
                // Checked to be 3000-4999 when the answer was read.
                code: d.code as u16,
                reason: Cow::Owned(d.reason),
                push: true,
            })),
            Err(_) => Err(ErrorCode::Internal.into()),
        }
    }
}

/// Logs an answer that parsed as JSON but cannot be used (bad base64, a field out of
/// range) and makes it an internal error, as a failed call is.
pub(in crate::session) fn unusable(kind: ProxyKind, what: &'static str) -> Failure {
    tracing::warn!(
        proxy = kind.name(),
        reason = what,
        "backend answer unusable"
    );
    ErrorCode::Internal.into()
}
