//! The socket under a session, plain or TLS, and bounded reading of replies.

use std::io;
use std::time::Duration;

use smtp_proto::{Reply, parse_reply_limited};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::error::{ClientError, Stage};
use crate::{MAX_REPLY_LINE, MAX_REPLY_LINES};

enum Socket {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while a handshake holds the socket, or after one failed.
    Detached,
}

/// A socket with the bytes read from it but not yet parsed.
pub(crate) struct Transport {
    socket: Socket,
    buf: Vec<u8>,
}

impl Transport {
    pub(crate) fn new(tcp: TcpStream) -> Self {
        Transport {
            socket: Socket::Plain(tcp),
            buf: Vec::with_capacity(4096),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.socket, Socket::Tls(_))
    }

    /// Writes all of `data` and flushes it (TLS buffers otherwise).
    pub(crate) async fn write(
        &mut self,
        data: &[u8],
        stage: Stage,
        limit: Duration,
    ) -> Result<(), ClientError> {
        let io = async {
            match &mut self.socket {
                Socket::Plain(s) => {
                    s.write_all(data).await?;
                    s.flush().await
                }
                Socket::Tls(s) => {
                    s.write_all(data).await?;
                    s.flush().await
                }
                Socket::Detached => Err(detached()),
            }
        };
        match tokio::time::timeout(limit, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(ClientError::Io { stage, source }),
            Err(_) => Err(ClientError::Timeout(stage)),
        }
    }

    /// Reads one complete reply, waiting at most `limit` for all of it.
    pub(crate) async fn read_reply(
        &mut self,
        stage: Stage,
        limit: Duration,
    ) -> Result<Reply, ClientError> {
        match tokio::time::timeout(limit, self.read_reply_inner(stage)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(stage)),
        }
    }

    async fn read_reply_inner(&mut self, stage: Stage) -> Result<Reply, ClientError> {
        loop {
            match parse_reply_limited(&self.buf, MAX_REPLY_LINE, MAX_REPLY_LINES) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(ClientError::Protocol {
                        stage,
                        detail: e.to_string(),
                    });
                }
            }
            // Reading at most a few KiB at a time keeps the buffer within the reply
            // limits plus one read, whatever the server sends.
            self.buf.reserve(4096);
            let read = match &mut self.socket {
                Socket::Plain(s) => s.read_buf(&mut self.buf).await,
                Socket::Tls(s) => s.read_buf(&mut self.buf).await,
                Socket::Detached => Err(detached()),
            };
            match read {
                Ok(0) => {
                    return Err(ClientError::Protocol {
                        stage,
                        detail: "the server closed the connection".into(),
                    });
                }
                Ok(_) => {}
                Err(source) => return Err(ClientError::Io { stage, source }),
            }
        }
    }

    /// True when the server sent bytes we have not read as a reply yet.
    pub(crate) fn has_unread(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Runs the client handshake on the plain socket.
    pub(crate) async fn start_tls(
        &mut self,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        limit: Duration,
    ) -> Result<(), ClientError> {
        let Socket::Plain(tcp) = std::mem::replace(&mut self.socket, Socket::Detached) else {
            return Err(ClientError::Protocol {
                stage: Stage::StartTls,
                detail: "TLS is already active".into(),
            });
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match tokio::time::timeout(limit, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => {
                self.socket = Socket::Tls(Box::new(tls));
                Ok(())
            }
            Ok(Err(e)) => Err(ClientError::Tls(e)),
            Err(_) => Err(ClientError::Timeout(Stage::StartTls)),
        }
    }

    /// Closes the write side politely, ignoring errors: the session is over anyway.
    pub(crate) async fn shutdown(&mut self) {
        let _ = match &mut self.socket {
            Socket::Plain(s) => s.shutdown().await,
            Socket::Tls(s) => s.shutdown().await,
            Socket::Detached => Ok(()),
        };
    }
}

fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection was lost")
}
