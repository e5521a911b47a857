//! A small HTTP/1.1 client for what the DDNS updater and the witness ask of the web: one
//! request per connection, http:// or https:// (rustls with Mozilla's roots, plus any
//! extra roots), a deadline on the whole exchange and a bound on the answer's size.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::http::uri::Scheme;
use hyper::{Method, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("{url:?} is not an http:// or https:// URL with a host")]
    BadUrl { url: String },
    #[error("cannot connect to {addr}: {source} (is the service up and reachable?)")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS with {host} failed: {source} (does its certificate name this host?)")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("HTTP exchange with {addr} failed: {source}")]
    Protocol { addr: String, source: hyper::Error },
    #[error("no complete answer from {addr} within {secs} s")]
    Timeout { addr: String, secs: u64 },
    #[error("the answer from {addr} is larger than {max} bytes")]
    TooLarge { addr: String, max: usize },
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] rustls::Error),
}

/// What came back: the status and the body (bounded).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The start of the body as text, for log lines.
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let line = text.trim().lines().next().unwrap_or("").to_string();
        line.chars().take(120).collect()
    }
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub method: Method,
    pub url: &'a str,
    pub basic_auth: Option<(&'a str, &'a str)>,
    pub bearer: Option<&'a str>,
    /// (content type, body)
    pub body: Option<(&'a str, Vec<u8>)>,
}

impl<'a> Call<'a> {
    pub fn get(url: &'a str) -> Call<'a> {
        Call {
            method: Method::GET,
            url,
            basic_auth: None,
            bearer: None,
            body: None,
        }
    }

    pub fn post(url: &'a str, content_type: &'a str, body: Vec<u8>) -> Call<'a> {
        Call {
            method: Method::POST,
            url,
            basic_auth: None,
            bearer: None,
            body: Some((content_type, body)),
        }
    }
}

#[derive(Clone)]
pub struct HttpClient {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    max_body: usize,
}

impl HttpClient {
    /// `extra_roots` are trusted beside Mozilla's roots (a private CA, or a test's).
    pub fn new(
        extra_roots: &[CertificateDer<'static>],
        timeout: Duration,
        max_body: usize,
    ) -> Result<HttpClient, HttpError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in extra_roots {
            roots.add(cert.clone())?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpClient {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
            max_body,
        })
    }

    pub async fn send(&self, call: Call<'_>) -> Result<Response, HttpError> {
        let target = Target::parse(call.url)?;
        let addr = format!("{}:{}", target.host, target.port);
        let secs = self.timeout.as_secs().max(1);
        let exchange = async {
            let tcp = TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|source| HttpError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
            let request = build_request(&target, &call);
            if target.tls {
                let name =
                    ServerName::try_from(target.host.clone()).map_err(|_| HttpError::BadUrl {
                        url: call.url.to_string(),
                    })?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .map_err(|source| HttpError::Tls {
                        host: target.host.clone(),
                        source,
                    })?;
                exchange(tls, request, &addr, self.max_body).await
            } else {
                exchange(tcp, request, &addr, self.max_body).await
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                addr: addr.clone(),
                secs,
            })?
    }
}

/// Where a URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// Without brackets for IPv6 (what connect and SNI want).
    host: String,
    port: u16,
    /// The Host header: host and port as the URL wrote them.
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, HttpError> {
        let bad = || HttpError::BadUrl {
            url: url.to_string(),
        };
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return Err(bad()),
        };
        let authority = uri.authority().ok_or_else(bad)?;
        if authority.as_str().contains('@') {
            // Credentials go in their own config keys, never in a URL that gets logged.
            return Err(bad());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Target {
            tls,
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.as_str().to_string(),
            path_and_query: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
        })
    }
}

fn build_request(target: &Target, call: &Call<'_>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(call.method.clone())
        .uri(target.path_and_query.as_str())
        .header("Host", target.authority.as_str())
        .header("User-Agent", concat!("tegami/", env!("CARGO_PKG_VERSION")))
        .header("Connection", "close");
    if let Some((user, password)) = call.basic_auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        builder = builder.header("Authorization", format!("Basic {token}"));
    } else if let Some(token) = call.bearer {
        builder = builder.header("Authorization", format!("Bearer {token}"));
    }
    let body = match &call.body {
        Some((content_type, body)) => {
            builder = builder.header("Content-Type", *content_type);
            Bytes::from(body.clone())
        }
        None => Bytes::new(),
    };
    builder
        .body(Full::new(body))
        .expect("a request made of checked parts")
}

async fn exchange<S>(
    io: S,
    request: Request<Full<Bytes>>,
    addr: &str,
    max_body: usize,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = |source| HttpError::Protocol {
        addr: addr.to_string(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(protocol)?;
    // The connection task ends with the exchange (Connection: close) or when the caller's
    // deadline drops the sender.
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(protocol)?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| match e.downcast::<hyper::Error>() {
            Ok(e) => protocol(*e),
            Err(_) => HttpError::TooLarge {
                addr: addr.to_string(),
                max: max_body,
            },
        })?
        .to_bytes()
        .to_vec();
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_into_what_the_connection_needs() {
        let t =
            Target::parse("https://dyn.example.net/nic/update?hostname=a&myip=1.2.3.4").unwrap();
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.port), ("dyn.example.net", 443));
        assert_eq!(t.path_and_query, "/nic/update?hostname=a&myip=1.2.3.4");
        let t = Target::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("::1", 8080, "[::1]:8080")
        );
        assert_eq!(t.path_and_query, "/");
        for bad in [
            "ftp://x/",
            "dyn.example.net/x",
            "http://user:pw@x/",
            "http:///x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
