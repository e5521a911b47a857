//! Why a connection or a transaction failed, and whether trying again can help.

use std::fmt;
use std::io;

use smtp_proto::Reply;

/// Where in the session something happened, for errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    Connect,
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    DataBlock,
    DataEnd,
    Rset,
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::Helo => "HELO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::DataBlock => "message data",
            Stage::DataEnd => "end of data",
            Stage::Rset => "RSET",
            Stage::Quit => "QUIT",
        })
    }
}

/// A failure that ends a connection or refuses a message as a whole. Failures of single
/// recipients are not errors but [`crate::RcptOutcome`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    #[error("timed out at {0}")]
    Timeout(Stage),
    /// The TLS handshake failed, including a certificate that did not verify.
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    /// The policy requires TLS and the server did not offer STARTTLS (no reply) or
    /// refused it (its reply).
    #[error("TLS is required but the server {}", tls_unavailable(.0.as_ref()))]
    TlsUnavailable(Option<Reply>),
    /// A reply that does not let the session go on: a refused greeting, EHLO and HELO
    /// both refused, a failed login.
    #[error("the server refused {stage}: {}", summary(.reply))]
    Rejected { stage: Stage, reply: Reply },
    /// The configuration cannot be used, for example a HELO name with spaces.
    #[error("invalid client configuration: {0}")]
    Config(&'static str),
    /// Credentials are configured but cannot be used with this server.
    #[error("cannot authenticate: {0}")]
    Auth(&'static str),
    /// The message is larger than the server's advertised SIZE; nothing was sent.
    #[error("the message has {size} octets, more than the server's limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    /// The message has 8-bit octets and the server lacks 8BITMIME; nothing was sent.
    #[error("the message has 8-bit content and the server does not offer 8BITMIME")]
    EightBitUnsupported,
    /// The sender's address needs SMTPUTF8 and the server lacks it; nothing was sent.
    #[error("the sender address needs SMTPUTF8, which the server does not offer")]
    Utf8Unsupported,
    #[error("invalid sender address {0:?}")]
    InvalidSender(String),
    /// The server broke the protocol: a malformed or oversized reply, an unexpected
    /// close, data sent where none may be.
    #[error("protocol error at {stage}: {detail}")]
    Protocol { stage: Stage, detail: String },
    #[error("I/O error at {stage}: {source}")]
    Io { stage: Stage, source: io::Error },
    /// An earlier error left the connection in an unknown state.
    #[error("the connection is unusable after an earlier error")]
    Broken,
}

impl ClientError {
    /// True when sending the same message to the same server again cannot succeed: a
    /// 5xx reply, or a message the server cannot take as it is. Everything else (network,
    /// timeouts, TLS, 4xx) is worth another try later.
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Rejected { reply, .. } => reply.is_permanent(),
            ClientError::TooLarge { .. }
            | ClientError::EightBitUnsupported
            | ClientError::Utf8Unsupported
            | ClientError::InvalidSender(_) => true,
            _ => false,
        }
    }

    /// The server's reply behind this error, if there is one (for a bounce's
    /// Diagnostic-Code).
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Rejected { reply, .. } => Some(reply),
            ClientError::TlsUnavailable(reply) => reply.as_ref(),
            _ => None,
        }
    }
}

/// A reply on one line, as `550 5.1.1 text`.
pub(crate) fn summary(reply: &Reply) -> String {
    match reply.enhanced {
        Some(e) => format!("{} {} {}", reply.code, e, reply.text()),
        None => format!("{} {}", reply.code, reply.text()),
    }
}

fn tls_unavailable(reply: Option<&Reply>) -> String {
    match reply {
        None => "does not offer STARTTLS".to_owned(),
        Some(reply) => format!("refused STARTTLS: {}", summary(reply)),
    }
}
