//! SMTP reception: drives `smtp-proto` over a network connection and delivers into the store.

mod session;
mod trace;

use std::sync::Arc;
use std::time::Duration;

pub use session::run;

/// Everything an SMTP session needs to know, resolved from the config file.
#[derive(Clone)]
pub struct SmtpConfig {
    /// Our name in the greeting, EHLO reply and Received header.
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// Protocol errors tolerated in one session before it is closed.
    pub max_errors: usize,
    /// Offered through STARTTLS when present.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl SmtpConfig {
    pub fn new(hostname: impl Into<String>) -> SmtpConfig {
        SmtpConfig {
            hostname: hostname.into(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 2048,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            max_errors: 20,
            tls: None,
        }
    }
}

/// Sent to a client that arrives while every connection slot is taken.
pub const BUSY_REPLY: &[u8] = b"421 4.7.0 Too many connections, try again later\r\n";
