//! An async SMTP client (RFC 5321) for the outbound queue: one [`Connection`] is one
//! session with one host, which can carry several transactions one after the other.
//!
//! It speaks EHLO (HELO when a server refuses EHLO), STARTTLS as the [`TlsPolicy`] says,
//! AUTH PLAIN or LOGIN for smart hosts, PIPELINING, SIZE, 8BITMIME and SMTPUTF8. The wire
//! format (replies, paths, dot-stuffing) comes from `smtp-proto`; this crate adds the
//! sockets, TLS, timeouts and the order of commands. It decides nothing about retries:
//! it reports what each recipient got ([`RcptOutcome`]) and whether an error is
//! permanent ([`ClientError::is_permanent`]), and the queue decides.

mod config;
mod connection;
mod error;
mod extensions;
mod tls;
mod transport;

pub use config::{ClientConfig, Credentials, Timeouts, TlsPolicy};
pub use connection::{Connection, RcptOutcome};
pub use error::{ClientError, Stage};
pub use extensions::Extensions;
pub use smtp_proto::{EnhancedCode, Reply};

/// The longest reply line read, in octets without the line end. RFC 5321 section
/// 4.5.3.1.5 allows 512; the margin is for servers that ignore it.
pub const MAX_REPLY_LINE: usize = 4096;
/// The most lines one reply may have; an EHLO reply has one per extension.
pub const MAX_REPLY_LINES: usize = 100;
