//! TLS errors, the one-certificate loader, and the handshake of the implicit-TLS listeners
//! (RFC 8314: IMAPS, POP3S, submissions), which runs before the session starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::Stream;
use crate::certs::{CertFiles, CertSources, Certificates};

/// How long a client on an implicit-TLS listener has to complete its handshake. A client
/// that connects and says nothing would otherwise hold one of the listener's slots.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    // The I/O error is part of the message, not a `source`: shown once in an error chain.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    #[error("{path}: the certificate cannot be parsed: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{0}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(PathBuf),
    #[error("{path}: the private key cannot be used: {error}")]
    Key { path: PathBuf, error: rustls::Error },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("certificate and key do not make a usable TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS configuration serving one certificate (no reload).
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = Certificates::load(CertSources {
        configured: vec![CertFiles {
            cert: cert.into(),
            key: key.into(),
        }],
        dir: None,
    })?;
    Ok(certs.server_config())
}

/// The server side of the handshake on an implicit-TLS listener, bounded by
/// `HANDSHAKE_TIMEOUT`. None when it failed or timed out: the connection is then closed.
pub(crate) async fn accept_implicit(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    protocol: &'static str,
    peer: SocketAddr,
) -> Option<Stream> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(tcp)).await {
        Ok(Ok(tls)) => Some(Stream::Tls(Box::new(tls))),
        Ok(Err(e)) => {
            tracing::debug!(protocol, %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(
                protocol,
                %peer,
                seconds = HANDSHAKE_TIMEOUT.as_secs(),
                "no TLS handshake in time; closing"
            );
            None
        }
    }
}
