//! What can be wrong with the router's certificate and key, naming the file.

use std::path::PathBuf;

/// A certificate or key the router will not serve, at start (exit 64) or on SIGHUP (the
/// old one stays).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no usable `CERTIFICATE` block.
    #[error("{}: no PEM CERTIFICATE block ({reason})", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        reason: String,
    },
    /// The key file holds no private key PEM block.
    #[error("{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) ({reason})", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        reason: String,
    },
    /// The key is of a kind the ring provider cannot sign with.
    #[error("{}: unusable private key: {source}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        #[source]
        source: tokio_rustls::rustls::Error,
    },
    /// The certificate cannot be parsed as X.509.
    #[error("{}: not an X.509 certificate: {reason}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key does not belong to the first certificate of the chain.
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate's `notAfter` has passed.
    #[error("the certificate in {} expired at {at}", path.display())]
    Expired {
        /// The file.
        path: PathBuf,
        /// `notAfter`, RFC 3339.
        at: String,
    },
    /// rustls refused the provider's defaults (a build problem, not the files').
    #[error("TLS set-up failed: {0}")]
    Setup(#[source] tokio_rustls::rustls::Error),
    /// The certificate's `notBefore` is still ahead.
    #[error("the certificate in {} is not valid before {from}", path.display())]
    NotYetValid {
        /// The file.
        path: PathBuf,
        /// `notBefore`, RFC 3339.
        from: String,
    },
}

impl TlsError {
    /// Whether the key file (not the certificate) is at fault, to name the right setting.
    pub fn is_key(&self) -> bool {
        matches!(self, TlsError::NoKey { .. } | TlsError::BadKey { .. })
    }
}
