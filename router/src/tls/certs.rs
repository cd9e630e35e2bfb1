//! Reading the certificate chain and key from their PEM files into the `CertifiedKey`
//! rustls serves, refusing anything a client would reject or that cannot work: no
//! certificate, no or an unusable key, a key of another certificate, dates outside the
//! validity period.

use super::error::TlsError;
use super::validity;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{Error as RustlsError, InconsistentKeys};

/// A loaded certificate and what the router reports about it.
pub struct Loaded {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// The first certificate's validity.
    pub validity: validity::Validity,
}

/// Reads `cert` (chain, own certificate first) and `key`, and checks them against each
/// other and against the clock.
pub fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    let Some(own) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
            reason: "the file has none".into(),
        });
    };
    let dates = validity::of(own).map_err(|reason| TlsError::BadCertificate {
        path: cert.to_owned(),
        reason: reason.into(),
    })?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|source| TlsError::BadKey {
            path: key.to_owned(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
        }
        // The ring provider knows the public key of every key it loads; a key it cannot
        // tell is served as it is, as rustls itself does.
        Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(TlsError::BadCertificate {
                path: cert.to_owned(),
                reason: e.to_string(),
            })
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if now > dates.not_after {
        return Err(TlsError::Expired {
            path: cert.to_owned(),
            at: validity::format(dates.not_after),
        });
    }
    if now < dates.not_before {
        return Err(TlsError::NotYetValid {
            path: cert.to_owned(),
            from: validity::format(dates.not_before),
        });
    }
    Ok(Loaded {
        key: Arc::new(certified),
        validity: dates,
    })
}
