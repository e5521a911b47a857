//! The queue's resolved configuration: schedule, limits, routes. The binary maps its TOML
//! onto these; nothing here reads files.

use std::time::Duration;

use smtp_client::{Credentials, Timeouts, TlsPolicy};

/// How the queue delivers: schedule, limits and the SMTP client's settings.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Our host name: EHLO, the DSNs' `Reporting-MTA` and `MAILER-DAEMON@` address.
    pub helo_name: String,
    /// Waits after attempt 1, 2, ...; the last one repeats. Empty means 5 minutes.
    pub retry: Vec<Duration>,
    /// Since the message was queued; then a temporary failure counts as permanent.
    pub give_up_after: Duration,
    /// Since the message was queued; the first deferral after it sends one delay DSN.
    pub delay_notice_after: Duration,
    /// Connections at once over all destinations.
    pub concurrency: usize,
    /// Connections at once to one destination.
    pub per_destination: usize,
    /// Messages per minute to one destination; 0 = no limit.
    pub rate_per_minute: u32,
    /// A connection carries at most this many messages before it is closed.
    pub messages_per_connection: usize,
    /// The port of MX (and implicit MX) delivery: 25, except in tests.
    pub mx_port: u16,
    /// STARTTLS policy of MX delivery; routes and the smart host carry their own.
    pub tls: TlsPolicy,
    pub timeouts: Timeouts,
    /// How often the queue is looked at without a wake-up; this is also what picks up
    /// retries that fall due.
    pub poll: Duration,
    /// Most queued messages read in one look at the queue.
    pub batch: usize,
}

impl QueueConfig {
    /// The defaults of the contract (retries 5 min .. 4 h, 5 days, delay notice at 4 h).
    pub fn new(helo_name: impl Into<String>) -> QueueConfig {
        let secs = Duration::from_secs;
        QueueConfig {
            helo_name: helo_name.into(),
            retry: [300, 900, 1800, 3600, 7200, 14400].map(secs).to_vec(),
            give_up_after: secs(5 * 86400),
            delay_notice_after: secs(4 * 3600),
            concurrency: 32,
            per_destination: 4,
            rate_per_minute: 0,
            messages_per_connection: 100,
            mx_port: 25,
            tls: TlsPolicy::Opportunistic,
            timeouts: Timeouts::default(),
            poll: Duration::from_secs(1),
            batch: 1000,
        }
    }
}

/// Mail for `domain` goes to `host:port` instead of the domain's MX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    pub domain: String,
    /// A host name (resolved with the queue's resolver) or an IP address.
    pub host: String,
    pub port: u16,
    pub tls: TlsPolicy,
}

/// Every remote domain without a static route goes here instead of to its MX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartHost {
    pub host: String,
    pub port: u16,
    pub tls: TlsPolicy,
    pub auth: Option<Credentials>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    pub static_routes: Vec<StaticRoute>,
    pub smart_host: Option<SmartHost>,
}
