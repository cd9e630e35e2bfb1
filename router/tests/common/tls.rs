//! TLS test support: a test CA made with `rcgen`, certificates it issues written to PEM
//! files, and a `wss://` client trusting that CA.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;

use super::WAIT;

/// A WebSocket over TLS.
pub(crate) type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A certificate authority of the test's own.
pub(crate) struct TestCa {
    /// Signs the certificates.
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// One issued certificate and its key, PEM.
pub(crate) struct Issued {
    /// The certificate, PEM.
    pub(crate) cert_pem: String,
    /// The key, PEM (PKCS#8).
    pub(crate) key_pem: String,
    /// The certificate, DER, to compare with what a client was shown.
    pub(crate) der: CertificateDer<'static>,
}

impl TestCa {
    /// A new CA.
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "herald router tests CA");
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA certificate, PEM (for `NODE_EXTRA_CA_CERTS` and the like).
    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `localhost` and `127.0.0.1`, valid from `not_before` to
    /// `not_after` (rcgen's defaults, decades either way, when `None`).
    pub(crate) fn issue_between(
        &self,
        not_before: Option<(i32, u8, u8)>,
        not_after: Option<(i32, u8, u8)>,
    ) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        if let Some((y, m, d)) = not_before {
            params.not_before = rcgen::date_time_ymd(y, m, d);
        }
        if let Some((y, m, d)) = not_after {
            params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A certificate valid now.
    pub(crate) fn issue(&self) -> Issued {
        self.issue_between(None, None)
    }

    /// A client configuration trusting only this CA, offering ALPN `http/1.1`.
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("CA root");
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Certificate and key files in a directory of their own.
pub(crate) struct TlsFiles {
    /// Holds the files.
    pub(crate) dir: tempfile::TempDir,
    /// The certificate file.
    pub(crate) cert: PathBuf,
    /// The key file.
    pub(crate) key: PathBuf,
}

impl TlsFiles {
    /// Writes `issued` to `cert.pem` and `key.pem`.
    pub(crate) fn new(issued: &Issued) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            dir,
        };
        files.replace(&issued.cert_pem, &issued.key_pem);
        files
    }

    /// Replaces both files' contents, each by a rename (as a secret volume update or
    /// certbot does), so a reload never reads half a file.
    pub(crate) fn replace(&self, cert_pem: &str, key_pem: &str) {
        write_atomically(&self.cert, cert_pem);
        write_atomically(&self.key, key_pem);
    }

    /// The router's TLS setting for these files.
    pub(crate) fn config(&self) -> herald_router::config::TlsConfig {
        herald_router::config::TlsConfig {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A TLS connection to `addr` (name `localhost`) with `config`.
pub(crate) async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(WAIT, TlsConnector::from(config).connect(name, tcp))
        .await
        .expect("TLS handshake in time")
}

/// The certificate the server showed on `tls`.
pub(crate) fn peer_certificate(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone()
}

/// Opens `wss://localhost/connection/websocket` on `addr`, sends the protocol's connect
/// and returns the socket, the node it landed on and the certificate it was shown.
pub(crate) async fn wss_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> (Wss, String, CertificateDer<'static>) {
    let tls = tls_connect(addr, config).await.expect("TLS to the router");
    let shown = peer_certificate(&tls);
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let url = format!("wss://localhost:{}/connection/websocket", addr.port());
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, tls))
        .await
        .expect("upgrade in time")
        .expect("upgrade over TLS through the router");
    let reply = super::command(&mut ws, 1, r#"{"id":1,"connect":{}}"#).await;
    let node = reply["connect"]["node"]
        .as_str()
        .unwrap_or_else(|| panic!("connect reply names the node: {reply}"))
        .to_owned();
    (ws, node, shown)
}

/// GETs `path` over TLS and returns the whole response as text.
pub(crate) async fn https_get(addr: SocketAddr, config: Arc<ClientConfig>, path: &str) -> String {
    https_request(addr, config, "GET", path, &[], "").await
}

/// Sends one request over TLS (`Connection: close`) and returns the whole response as text.
pub(crate) async fn https_request(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect(addr, config).await.expect("TLS to the router");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tls.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}
