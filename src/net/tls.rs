//! TLS for both listeners (`tls_cert` and `tls_key`, PEM): rustls through tokio-rustls, so
//! a page served over https can use `wss://` and native clients get an encrypted stream,
//! without a proxy in front. The certificate and key are read once, at start; a handshake
//! that fails or does not finish within the idle timeout closes only its own connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, rustls};

/// Why the certificate or key could not be used (the server does not start).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no PEM certificate.
    #[error("tls_cert {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    /// The key file is unreadable or holds no PEM private key.
    #[error("tls_key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    /// The two do not make a server configuration (the key does not match, say).
    #[error("tls_cert and tls_key: {0}")]
    Config(#[from] rustls::Error),
}

/// The ALPN protocol the WebSocket listener offers (browsers ask for it under `wss://`).
pub const HTTP1_ALPN: &[u8] = b"http/1.1";

/// A TLS acceptor for the certificate chain in `cert` and the private key in `key`; `alpn`:
/// the protocols offered by ALPN (none for the game protocol over TCP).
pub fn acceptor(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
    let certificate = |reason: String| TlsError::Certificate {
        path: cert.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| certificate(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(certificate("no PEM certificate in it".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS handshake of a new connection, within `timeout`; `None` (logged) if it failed or
/// took too long: rustls has told the client why where it could (an alert), and dropping
/// the socket closes it.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed; connection closed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, ?timeout, "TLS handshake not done in time; connection closed");
            None
        }
    }
}
