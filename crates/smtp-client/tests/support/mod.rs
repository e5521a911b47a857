//! A scripted SMTP server on 127.0.0.1 for the client's tests: it plays one script per
//! connection and reports what the client sent in DATA, or the first way the client
//! strayed from the script.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;

/// Every wait of the server ends after this, so a test that goes wrong still ends.
const SERVER_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes (one or more reply lines, CRLFs included).
    Send(String),
    /// Read one line, which must be exactly this (without its CRLF).
    Expect(String),
    /// As `Expect`, and then nothing more may arrive for a moment: the client waits for
    /// our reply before it goes on (no pipelining).
    ExpectAlone(String),
    /// Read message data up to and including the final `.` line, and record it raw.
    Data,
    /// Run the server side of a TLS handshake with the test certificate.
    StartTls,
    /// Say nothing more; wait until the client goes away.
    Hang,
}

pub fn send(s: &str) -> Step {
    Step::Send(s.to_owned())
}

pub fn expect(s: &str) -> Step {
    Step::Expect(s.to_owned())
}

pub fn alone(s: &str) -> Step {
    Step::ExpectAlone(s.to_owned())
}

/// A self-signed certificate for `localhost`, made once per test binary.
pub fn test_cert() -> &'static (CertificateDer<'static>, Vec<u8>) {
    static CERT: OnceLock<(CertificateDer<'static>, Vec<u8>)> = OnceLock::new();
    CERT.get_or_init(|| {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (made.cert.der().clone(), made.signing_key.serialize_der())
    })
}

fn server_tls() -> Arc<rustls::ServerConfig> {
    let (cert, key) = test_cert();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
        )
        .unwrap();
    Arc::new(config)
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

struct Server {
    io: Io,
    buf: Vec<u8>,
}

impl Server {
    async fn read_more(&mut self, limit: Duration) -> Result<usize, String> {
        let read = async {
            match &mut self.io {
                Io::Plain(s) => s.read_buf(&mut self.buf).await,
                Io::Tls(s) => s.read_buf(&mut self.buf).await,
                Io::Gone => Ok(0),
            }
        };
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(format!("read failed: {e}")),
            Err(_) => Err("timed out waiting for the client".into()),
        }
    }

    async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            if self.read_more(SERVER_WAIT).await? == 0 {
                return Err(format!("the client closed; unread {:?}", self.buf));
            }
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        let result = match &mut self.io {
            Io::Plain(s) => s.write_all(data).await,
            Io::Tls(s) => match s.write_all(data).await {
                Ok(()) => s.flush().await,
                Err(e) => Err(e),
            },
            Io::Gone => Ok(()),
        };
        result.map_err(|e| format!("write failed: {e}"))
    }

    async fn play(&mut self, script: Vec<Step>) -> Result<Vec<Vec<u8>>, String> {
        let mut data = Vec::new();
        for step in script {
            match step {
                Step::Send(s) => self.write(s.as_bytes()).await?,
                Step::Expect(want) => {
                    let got = self.line().await?;
                    if got != want {
                        return Err(format!("expected {want:?}, got {got:?}"));
                    }
                }
                Step::ExpectAlone(want) => {
                    let got = self.line().await?;
                    if got != want {
                        return Err(format!("expected {want:?}, got {got:?}"));
                    }
                    if self.buf.is_empty() {
                        let _ = self.read_more(Duration::from_millis(100)).await;
                    }
                    if !self.buf.is_empty() {
                        return Err(format!(
                            "after {want:?} the client sent {:?} before our reply",
                            String::from_utf8_lossy(&self.buf)
                        ));
                    }
                }
                Step::Data => loop {
                    let end = if self.buf.starts_with(b".\r\n") {
                        Some(3)
                    } else {
                        self.buf
                            .windows(5)
                            .position(|w| w == b"\r\n.\r\n")
                            .map(|p| p + 5)
                    };
                    if let Some(end) = end {
                        data.push(self.buf.drain(..end).collect());
                        break;
                    }
                    if self.read_more(SERVER_WAIT).await? == 0 {
                        return Err("the client closed during DATA".into());
                    }
                },
                Step::StartTls => {
                    let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
                        return Err("TLS twice".into());
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(server_tls());
                    match tokio::time::timeout(SERVER_WAIT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => self.io = Io::Tls(Box::new(tls)),
                        Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
                        Err(_) => return Err("TLS handshake timed out".into()),
                    }
                }
                Step::Hang => while self.read_more(SERVER_WAIT).await? > 0 {},
            }
        }
        Ok(data)
    }
}

/// Starts a server that accepts one connection and plays `script` on it. The handle
/// gives the message data received, or what went wrong.
pub async fn serve(script: Vec<Step>) -> (SocketAddr, JoinHandle<Result<Vec<Vec<u8>>, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (tcp, _) = tokio::time::timeout(SERVER_WAIT, listener.accept())
            .await
            .map_err(|_| "no client came".to_owned())?
            .map_err(|e| e.to_string())?;
        let mut server = Server {
            io: Io::Plain(tcp),
            buf: Vec::new(),
        };
        server.play(script).await
    });
    (addr, handle)
}
