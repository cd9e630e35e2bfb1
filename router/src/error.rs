//! What can go wrong while proxying, and whose fault it was.
//!
//! As in pingora, each error says where it came from, so the proxy can choose the status
//! (502 for a node's fault, 503 when no node can take the request), decide whether
//! another node may be tried, and label metrics.

use std::time::Duration;

/// Who caused an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The client: a malformed request, an early hang-up.
    Client,
    /// A node: refused, unreachable, slow or broken.
    Node,
    /// The router itself: no healthy node, a limit, shutting down.
    Router,
}

/// A proxying failure.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No node is healthy, or every candidate failed.
    #[error("no healthy node can take the request")]
    NoNode,
    /// The TCP connection to a node failed (refused, unreachable).
    #[error("cannot connect to node {node}: {source}")]
    Connect {
        /// The node's address.
        node: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The node did not answer within the connect timeout.
    #[error("node {node} did not answer within {timeout:?}")]
    Timeout {
        /// The node's address.
        node: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The HTTP exchange with a node failed after connecting.
    #[error("HTTP exchange with node {node} failed: {source}")]
    Exchange {
        /// The node's address.
        node: String,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// The node answered an upgrade with a status that says "try elsewhere" (5xx).
    #[error("node {node} refused the upgrade with status {status}")]
    Refused {
        /// The node's address.
        node: String,
        /// Its status.
        status: hyper::StatusCode,
    },
    /// The request could not be rebuilt for a node (a header hyper refuses).
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl ProxyError {
    /// Where the error came from.
    pub fn origin(&self) -> Origin {
        match self {
            ProxyError::NoNode => Origin::Router,
            ProxyError::Connect { .. }
            | ProxyError::Timeout { .. }
            | ProxyError::Exchange { .. }
            | ProxyError::Refused { .. } => Origin::Node,
            ProxyError::BadRequest(_) => Origin::Client,
        }
    }

    /// Whether nothing listened at the node's address (see [`crate::health::Outcome::Refused`]).
    pub fn connect_refused(&self) -> bool {
        matches!(self, ProxyError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused)
    }

    /// Whether the next candidate node may be tried: only node faults, which another node
    /// does not share.
    pub fn retryable(&self) -> bool {
        self.origin() == Origin::Node
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoNode => "no_node",
            ProxyError::Connect { .. } => "connect",
            ProxyError::Timeout { .. } => "timeout",
            ProxyError::Exchange { .. } => "exchange",
            ProxyError::Refused { .. } => "refused",
            ProxyError::BadRequest(_) => "bad_request",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_faults_are_retryable_others_not() {
        let refused = ProxyError::Connect {
            node: "n:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(refused.origin(), Origin::Node);
        assert!(refused.retryable());
        assert!(refused.to_string().contains("n:1"));
        assert!(!ProxyError::NoNode.retryable());
        assert!(!ProxyError::BadRequest("x".into()).retryable());
        assert_eq!(ProxyError::BadRequest("x".into()).origin(), Origin::Client);
    }
}
