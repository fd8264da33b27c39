//! Trusting a server's TLS certificate: the roots a client trusts ([`TlsConfig`]), and the
//! handshake on a TCP stream made with them (for `Target::Tls` and `wss://`).

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};

use crate::error::ClientError;

/// The certificates a TLS client trusts, and the name it expects the server's to carry.
/// Built once (the rustls configuration is shared by every connection made with it).
#[derive(Clone)]
pub struct TlsConfig {
    connector: TlsConnector,
    server_name: Option<String>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Trusts the certificates in `pem` (one or more `CERTIFICATE` blocks): a private CA, or
    /// a server's self-signed certificate.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ClientError> {
        let roots = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Tls(format!("not PEM certificates: {e}")))?;
        if roots.is_empty() {
            return Err(ClientError::Tls("no certificate in the PEM".into()));
        }
        let mut store = RootCertStore::empty();
        for root in roots {
            store
                .add(root)
                .map_err(|e| ClientError::Tls(format!("a root certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: None,
        })
    }

    /// Expects the server's certificate to name `name` (by default: the host connected to),
    /// e.g. `localhost` when connecting to 127.0.0.1.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The TLS handshake on `stream` to `host`.
    pub(crate) async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| ClientError::Tls(format!("server name {name:?}: {e}")))?;
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| ClientError::Tls(format!("handshake: {e}")))
    }
}
