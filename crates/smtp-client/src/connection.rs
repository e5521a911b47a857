//! One SMTP session with one host: greeting, EHLO, STARTTLS, AUTH, then transactions.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::ServerName;
use smtp_proto::{ForwardPath, Reply, ReversePath, encode_data};
use tokio::net::TcpStream;

use crate::config::{ClientConfig, Credentials, Timeouts, TlsPolicy};
use crate::error::{ClientError, Stage};
use crate::extensions::Extensions;
use crate::tls;
use crate::transport::Transport;

/// Message data is written in blocks of this size, each under the data-block timeout,
/// so that a slow but moving server is not cut off while a stalled one is.
const DATA_BLOCK: usize = 64 * 1024;

/// What became of one recipient of [`Connection::send`], with the reply that decided it:
/// the reply to the end of data for an accepted recipient, otherwise the refusal (to
/// RCPT, or to MAIL or DATA, which refuse every recipient at once).
///
/// A recipient refused before anything was sent (an address that does not parse, or
/// that needs SMTPUTF8 the server lacks) gets a reply made up locally, whose text starts
/// with `(local)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// The server took responsibility for the message for this recipient.
    Accepted(Reply),
    /// A 4xx reply: try again later.
    TempFailed(Reply),
    /// A 5xx reply: do not try again; bounce.
    PermFailed(Reply),
}

impl RcptOutcome {
    /// Sorts a reply: 2xx accepts, 5xx fails for good, anything else is worth a retry.
    fn from_reply(reply: Reply) -> Self {
        match reply.class() {
            2 => RcptOutcome::Accepted(reply),
            5 => RcptOutcome::PermFailed(reply),
            _ => RcptOutcome::TempFailed(reply),
        }
    }

    pub fn reply(&self) -> &Reply {
        match self {
            RcptOutcome::Accepted(r) | RcptOutcome::TempFailed(r) | RcptOutcome::PermFailed(r) => r,
        }
    }

    pub fn is_accepted(&self) -> bool {
        matches!(self, RcptOutcome::Accepted(_))
    }
}

/// An open SMTP session, ready for a transaction.
///
/// After an error that leaves the session in an unknown state (I/O, timeout, TLS, a
/// protocol violation) every further call returns [`ClientError::Broken`]; drop it and
/// connect again. A refused message or recipient leaves it usable.
pub struct Connection {
    transport: Transport,
    extensions: Extensions,
    timeouts: Timeouts,
    peer: SocketAddr,
    broken: bool,
}

impl Connection {
    /// Connects to `addr`, reads the greeting, says EHLO (HELO if EHLO is refused with
    /// 5xx), starts TLS as `config.tls` says and says EHLO again, then logs in when
    /// `config.auth` is set (AUTH PLAIN, else LOGIN).
    ///
    /// `server_name` is the host name the certificate must carry under a verifying
    /// policy: the MX or smart host name, not the recipient's domain.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<Connection, ClientError> {
        if config.helo_name.is_empty() || config.helo_name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(ClientError::Config(
                "helo_name must be one word without controls",
            ));
        }
        let timeouts = config.timeouts;
        let tcp = match tokio::time::timeout(timeouts.connect, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(ClientError::Connect(e)),
            Err(_) => return Err(ClientError::Timeout(Stage::Connect)),
        };
        // Commands are small and each waits for a reply; Nagle would only add delay.
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            transport: Transport::new(tcp),
            extensions: Extensions::default(),
            timeouts,
            peer: addr,
            broken: false,
        };
        let greeting = conn.read(Stage::Greeting, timeouts.greeting).await?;
        if greeting.code != 220 {
            return Err(ClientError::Rejected {
                stage: Stage::Greeting,
                reply: greeting,
            });
        }
        conn.hello(&config.helo_name).await?;
        conn.negotiate_tls(server_name, config).await?;
        if let Some(credentials) = &config.auth {
            conn.authenticate(credentials).await?;
        }
        tracing::debug!(
            peer = %addr,
            tls = conn.transport.is_tls(),
            pipelining = conn.extensions.pipelining(),
            "smtp client connected"
        );
        Ok(conn)
    }

    /// What the server announced in its last EHLO reply (after STARTTLS, the one inside TLS).
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// True when the session runs inside TLS.
    pub fn is_tls(&self) -> bool {
        self.transport.is_tls()
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one message to `recipients` and reports each recipient's fate, in order.
    ///
    /// `from` is the envelope sender without angle brackets, empty for the null sender
    /// of bounces; `message` is the message with CRLF line ends (any bare LF or CR is
    /// sent as CRLF). MAIL carries `SIZE=` when the server offers SIZE, `BODY=8BITMIME`
    /// when the message has 8-bit octets, and `SMTPUTF8` when an address needs it.
    /// Commands are pipelined when the server offers PIPELINING.
    ///
    /// Errors refuse the whole message: [`ClientError::is_permanent`] tells whether to
    /// bounce. A message larger than the server's SIZE, or 8-bit without 8BITMIME, is
    /// refused before anything is sent. A [`ClientError::Timeout`] at
    /// [`Stage::DataEnd`] leaves unknown whether the server took the message.
    ///
    /// When no recipient was accepted, or DATA was refused, the transaction is reset,
    /// so the connection is ready for the next message either way.
    pub async fn send(
        &mut self,
        from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<Vec<RcptOutcome>, ClientError> {
        if self.broken {
            return Err(ClientError::Broken);
        }
        let result = self.send_inner(from, recipients, message).await;
        match &result {
            Ok(outcomes) => tracing::debug!(
                peer = %self.peer,
                recipients = outcomes.len(),
                accepted = outcomes.iter().filter(|o| o.is_accepted()).count(),
                "smtp client transaction done"
            ),
            Err(e) => {
                self.broken |= breaks_session(e);
                tracing::debug!(peer = %self.peer, error = %e, "smtp client transaction failed");
            }
        }
        result
    }

    /// RSET: abandons any transaction, for reuse of the connection.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Broken);
        }
        let result = self.rset().await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// QUIT, then close. Errors are ignored: the session ends either way.
    pub async fn quit(mut self) {
        if !self.broken {
            let limit = self.timeouts.command;
            if self
                .transport
                .write(b"QUIT\r\n", Stage::Quit, limit)
                .await
                .is_ok()
            {
                let _ = self.transport.read_reply(Stage::Quit, limit).await;
            }
        }
        self.transport.shutdown().await;
    }

    /// Reads a reply and notes a 421, after which the server closes the connection.
    async fn read(&mut self, stage: Stage, limit: Duration) -> Result<Reply, ClientError> {
        let reply = self.transport.read_reply(stage, limit).await?;
        if reply.code == 421 {
            self.broken = true;
        }
        Ok(reply)
    }

    async fn command(
        &mut self,
        line: &str,
        stage: Stage,
        limit: Duration,
    ) -> Result<Reply, ClientError> {
        self.transport.write(line.as_bytes(), stage, limit).await?;
        self.read(stage, limit).await
    }

    /// EHLO, or HELO when EHLO gets a 5xx (a server from before ESMTP).
    async fn hello(&mut self, name: &str) -> Result<(), ClientError> {
        let limit = self.timeouts.command;
        let reply = self
            .command(&format!("EHLO {name}\r\n"), Stage::Ehlo, limit)
            .await?;
        if reply.is_completion() {
            self.extensions = Extensions::from_ehlo(&reply);
            return Ok(());
        }
        if !reply.is_permanent() || self.broken {
            return Err(ClientError::Rejected {
                stage: Stage::Ehlo,
                reply,
            });
        }
        let reply = self
            .command(&format!("HELO {name}\r\n"), Stage::Helo, limit)
            .await?;
        if !reply.is_completion() {
            return Err(ClientError::Rejected {
                stage: Stage::Helo,
                reply,
            });
        }
        self.extensions = Extensions::default();
        Ok(())
    }

    async fn negotiate_tls(
        &mut self,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<(), ClientError> {
        let (verify, required) = match config.tls {
            TlsPolicy::Disabled => return Ok(()),
            TlsPolicy::Opportunistic => (false, false),
            TlsPolicy::OpportunisticVerified => (true, false),
            TlsPolicy::Required => (true, true),
        };
        if !self.extensions.starttls() {
            return if required {
                Err(ClientError::TlsUnavailable(None))
            } else {
                Ok(())
            };
        }
        let limit = self.timeouts.command;
        let reply = self.command("STARTTLS\r\n", Stage::StartTls, limit).await?;
        if reply.code != 220 {
            return if required || self.broken {
                Err(ClientError::TlsUnavailable(Some(reply)))
            } else {
                Ok(())
            };
        }
        // Anything the server sent after its 220 was written before the handshake and
        // must not be read as if it came through TLS (the STARTTLS injection attacks).
        if self.transport.has_unread() {
            return Err(ClientError::Protocol {
                stage: Stage::StartTls,
                detail: "the server sent data after its reply to STARTTLS".into(),
            });
        }
        let name = match ServerName::try_from(server_name.to_owned()) {
            Ok(name) => name,
            // Without verification the name only goes into SNI, so the address will do.
            Err(_) if !verify => ServerName::IpAddress(self.peer.ip().into()),
            Err(e) => {
                return Err(ClientError::Tls(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{server_name:?} is not a valid server name: {e}"),
                )));
            }
        };
        let tls_config = tls::client_config(verify, &config.extra_roots)
            .map_err(|e| ClientError::Tls(std::io::Error::other(e)))?;
        self.transport.start_tls(tls_config, name, limit).await?;
        // RFC 3207: forget everything learnt before TLS and ask again.
        self.extensions = Extensions::default();
        self.hello(&config.helo_name).await
    }

    async fn authenticate(&mut self, credentials: &Credentials) -> Result<(), ClientError> {
        if !self.transport.is_tls() && !self.peer.ip().is_loopback() {
            return Err(ClientError::Auth(
                "credentials are sent only inside TLS (or to a loopback address)",
            ));
        }
        let limit = self.timeouts.command;
        let mechanisms = self.extensions.auth_mechanisms();
        let reply = if mechanisms.iter().any(|m| m == "PLAIN") {
            let token = format!("\0{}\0{}", credentials.username, credentials.password);
            let line = format!("AUTH PLAIN {}\r\n", BASE64.encode(token));
            self.command(&line, Stage::Auth, limit).await?
        } else if mechanisms.iter().any(|m| m == "LOGIN") {
            let mut reply = self.command("AUTH LOGIN\r\n", Stage::Auth, limit).await?;
            for secret in [&credentials.username, &credentials.password] {
                if reply.code != 334 {
                    break;
                }
                let line = format!("{}\r\n", BASE64.encode(secret));
                reply = self.command(&line, Stage::Auth, limit).await?;
            }
            reply
        } else {
            return Err(ClientError::Auth(
                "the server offers neither AUTH PLAIN nor AUTH LOGIN",
            ));
        };
        if reply.code == 235 {
            return Ok(());
        }
        if reply.code == 334 {
            // A challenge we cannot answer: cancel the exchange (RFC 4954 "*").
            let _ = self.command("*\r\n", Stage::Auth, limit).await;
        }
        Err(ClientError::Rejected {
            stage: Stage::Auth,
            reply,
        })
    }

    async fn rset(&mut self) -> Result<(), ClientError> {
        let reply = self
            .command("RSET\r\n", Stage::Rset, self.timeouts.command)
            .await?;
        if reply.is_completion() {
            Ok(())
        } else {
            Err(ClientError::Rejected {
                stage: Stage::Rset,
                reply,
            })
        }
    }

    async fn send_inner(
        &mut self,
        from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<Vec<RcptOutcome>, ClientError> {
        let ext = &self.extensions;
        let sender = if from.is_empty() {
            ReversePath::Null
        } else {
            ReversePath::parse(&format!("<{from}>"))
                .map_err(|_| ClientError::InvalidSender(from.to_owned()))?
        };
        let mut smtputf8 = !sender.is_ascii();
        if smtputf8 && !ext.smtputf8() {
            return Err(ClientError::Utf8Unsupported);
        }

        // Recipients that cannot be sent get their outcome now; the rest are sent.
        let mut outcomes: Vec<Option<RcptOutcome>> = vec![None; recipients.len()];
        let mut paths = Vec::with_capacity(recipients.len());
        for (i, rcpt) in recipients.iter().enumerate() {
            match ForwardPath::parse(&format!("<{rcpt}>")) {
                Err(e) => {
                    outcomes[i] = Some(RcptOutcome::PermFailed(Reply::status(
                        553,
                        (5, 1, 3),
                        format!("(local) invalid recipient address: {e}"),
                    )));
                }
                Ok(path) if !path.is_ascii() && !ext.smtputf8() => {
                    outcomes[i] = Some(RcptOutcome::PermFailed(Reply::status(
                        553,
                        (5, 6, 7),
                        "(local) the address needs SMTPUTF8, which the server does not offer",
                    )));
                }
                Ok(path) => {
                    smtputf8 |= !path.is_ascii();
                    paths.push((i, path));
                }
            }
        }
        if paths.is_empty() {
            return Ok(outcomes.into_iter().flatten().collect());
        }

        let mut data = Vec::new();
        let size = encode_data(message, &mut data);
        if let Some(limit) = ext.size_limit()
            && size > limit
        {
            return Err(ClientError::TooLarge { size, limit });
        }
        let eight_bit = !message.is_ascii();
        if eight_bit && !ext.eight_bit_mime() {
            return Err(ClientError::EightBitUnsupported);
        }
        let mut mail = format!("MAIL FROM:{sender}");
        if ext.size_offered() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");

        let t = self.timeouts;
        let (mail_reply, rcpt_replies, data_reply) = if ext.pipelining() {
            // RFC 2920: MAIL, every RCPT and DATA in one write, then the replies in order.
            let mut batch = mail;
            for (_, path) in &paths {
                batch.push_str(&format!("RCPT TO:{path}\r\n"));
            }
            batch.push_str("DATA\r\n");
            self.transport
                .write(batch.as_bytes(), Stage::Mail, t.mail)
                .await?;
            let mail_reply = self.read(Stage::Mail, t.mail).await?;
            let mut rcpt_replies = Vec::with_capacity(paths.len());
            for _ in &paths {
                rcpt_replies.push(self.read(Stage::Rcpt, t.rcpt).await?);
            }
            let data_reply = self.read(Stage::Data, t.data_init).await?;
            if data_reply.code == 354
                && (!mail_reply.is_completion() || !rcpt_replies.iter().any(Reply::is_completion))
            {
                // A server that says 354 with no recipient gets an empty message, which
                // RFC 2920 says it must then refuse.
                self.transport
                    .write(b".\r\n", Stage::DataEnd, t.data_end)
                    .await?;
                self.read(Stage::DataEnd, t.data_end).await?;
            }
            (mail_reply, rcpt_replies, Some(data_reply))
        } else {
            let mail_reply = self.command(&mail, Stage::Mail, t.mail).await?;
            let mut rcpt_replies = Vec::with_capacity(paths.len());
            if mail_reply.is_completion() {
                for (_, path) in &paths {
                    let line = format!("RCPT TO:{path}\r\n");
                    rcpt_replies.push(self.command(&line, Stage::Rcpt, t.rcpt).await?);
                }
            }
            let data_reply = if rcpt_replies.iter().any(Reply::is_completion) {
                Some(self.command("DATA\r\n", Stage::Data, t.data_init).await?)
            } else {
                None
            };
            (mail_reply, rcpt_replies, data_reply)
        };

        if !mail_reply.is_completion() {
            for (i, _) in &paths {
                outcomes[*i] = Some(RcptOutcome::from_reply(mail_reply.clone()));
            }
            return Ok(outcomes.into_iter().flatten().collect());
        }
        let mut accepted = Vec::new();
        for ((i, _), reply) in paths.iter().zip(rcpt_replies) {
            if reply.is_completion() {
                accepted.push(*i);
            } else {
                outcomes[*i] = Some(RcptOutcome::from_reply(reply));
            }
        }
        let final_reply = match data_reply {
            Some(reply) if !accepted.is_empty() && reply.code == 354 => {
                for block in data.chunks(DATA_BLOCK) {
                    self.transport
                        .write(block, Stage::DataBlock, t.data_block)
                        .await?;
                }
                let reply = self.read(Stage::DataEnd, t.data_end).await?;
                if !reply.is_completion() && reply.class() != 4 && reply.class() != 5 {
                    return Err(ClientError::Protocol {
                        stage: Stage::DataEnd,
                        detail: format!("unexpected reply {}", crate::error::summary(&reply)),
                    });
                }
                Some(reply)
            }
            Some(reply) if !accepted.is_empty() => {
                // DATA refused: the transaction is still open.
                let refusal = if reply.is_completion() {
                    // 2xx to DATA is no reply a server may give; count it as a retry.
                    Reply::status(
                        451,
                        (4, 5, 0),
                        format!(
                            "(local) unexpected reply to DATA: {}",
                            crate::error::summary(&reply)
                        ),
                    )
                } else {
                    reply
                };
                for i in &accepted {
                    outcomes[*i] = Some(RcptOutcome::from_reply(refusal.clone()));
                }
                None
            }
            _ => None,
        };
        match final_reply {
            Some(reply) => {
                for i in &accepted {
                    outcomes[*i] = Some(RcptOutcome::from_reply(reply.clone()));
                }
            }
            // A transaction left open is reset so the next message starts clean. If that
            // fails the outcomes still stand; only the connection is lost.
            None => {
                if !self.broken && self.rset().await.is_err() {
                    self.broken = true;
                }
            }
        }
        Ok(outcomes.into_iter().flatten().collect())
    }
}

/// Errors after which the session's state is unknown.
fn breaks_session(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Io { .. }
            | ClientError::Timeout(_)
            | ClientError::Protocol { .. }
            | ClientError::Tls(_)
            | ClientError::Broken
    )
}
