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
    /// The router could not open a connection to a node for want of its own resources:
    /// no local port left towards that node (`EADDRNOTAVAIL`: every port of
    /// `net.ipv4.ip_local_port_range` is held by a tunnel or `TIME_WAIT` to it), or no
    /// file, socket buffer or memory. Says nothing about the node, so it never counts
    /// against its health; another node has ports of its own, so it is tried next.
    #[error(
        "cannot open a connection to node {node}, out of the router's own resources: {source}"
    )]
    Local {
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

/// `ENFILE`, `EMFILE` and `ENOBUFS` on Linux, which `std::io::ErrorKind` does not name
/// on stable Rust.
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
const ENOBUFS: i32 = 105;

/// Whether a failed `connect` (or the `socket` before it) ran out of the router's own
/// resources rather than reaching the node.
pub fn local_exhaustion(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::AddrNotAvailable | ErrorKind::OutOfMemory
    ) || matches!(e.raw_os_error(), Some(ENFILE | EMFILE | ENOBUFS))
}

impl ProxyError {
    /// A failed connection to `node`: [`ProxyError::Local`] when the router ran out of
    /// its own resources, else [`ProxyError::Connect`].
    pub fn connect(node: &str, source: std::io::Error) -> Self {
        let node = node.to_owned();
        if local_exhaustion(&source) {
            ProxyError::Local { node, source }
        } else {
            ProxyError::Connect { node, source }
        }
    }

    /// Where the error came from.
    pub fn origin(&self) -> Origin {
        match self {
            ProxyError::NoNode | ProxyError::Local { .. } => Origin::Router,
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

    /// Whether the next candidate node may be tried: node faults, which another node
    /// does not share, and running out of local ports, which are counted per node.
    pub fn retryable(&self) -> bool {
        self.origin() == Origin::Node || matches!(self, ProxyError::Local { .. })
    }

    /// Whether this failure says something about the node's health: the node's own
    /// faults, but not a refusal (sorted by its status where it is read), the router's
    /// limits or a bad client request.
    pub fn counts_against_node(&self) -> bool {
        self.origin() == Origin::Node && !matches!(self, ProxyError::Refused { .. })
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoNode => "no_node",
            ProxyError::Connect { .. } => "connect",
            ProxyError::Local { .. } => "local",
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

    #[test]
    fn running_out_of_local_ports_or_files_is_the_routers_and_moves_on() {
        for source in [
            std::io::Error::from(std::io::ErrorKind::AddrNotAvailable),
            std::io::Error::from_raw_os_error(EMFILE),
            std::io::Error::from_raw_os_error(ENFILE),
            std::io::Error::from_raw_os_error(ENOBUFS),
        ] {
            let e = ProxyError::connect("n:1", source);
            assert!(matches!(e, ProxyError::Local { .. }), "{e:?}");
            assert_eq!(e.origin(), Origin::Router);
            assert!(e.retryable(), "another node has its own ports");
            assert!(!e.counts_against_node());
            assert_eq!(e.kind(), "local");
            assert!(e.to_string().contains("n:1"));
        }
        let refused = ProxyError::connect(
            "n:1",
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        assert!(refused.connect_refused());
        assert!(refused.counts_against_node());
        let timeout = ProxyError::Timeout {
            node: "n:1".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(timeout.counts_against_node());
        assert!(!ProxyError::BadRequest("x".into()).counts_against_node());
    }
}
