//! SMTP reception: drives `smtp-proto` over a network connection and delivers into the store.

mod inbound;
/// Public for the fuzz target of SMTP commands (crates/fuzz-targets).
pub mod sasl;
mod session;
mod trace;

use std::sync::Arc;
use std::time::Duration;

pub use inbound::{AUTH_RESULTS, AuthResults, DmarcPolicy, InboundChecks};
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
    /// How long a client may wait before its first command (on submission: before it has
    /// logged in); a command line under way must also arrive whole within it.
    pub login_timeout: Duration,
    /// A message must arrive whole within this, plus a second per `net::pace::MIN_RATE`
    /// bytes; no single wait for data is longer either.
    pub data_timeout: Duration,
    /// Whether loopback peers count as local (AUTH without TLS on submission). False when a
    /// proxy on this host forwards remote clients.
    pub trust_loopback: bool,
    /// Protocol errors tolerated in one session before it is closed.
    pub max_errors: usize,
    /// Offered through STARTTLS when present.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `Some` makes this a submission (MSA) listener: clients log in with AUTH and may then
    /// relay; `None` is the MX listener, which takes mail only for local domains.
    pub submission: Option<SubmissionPolicy>,
    /// The growing delay after a failed AUTH, shared with the other listeners that take
    /// passwords. Without it a failure is answered at once.
    pub throttle: Option<Arc<net::LoginThrottle>>,
    /// Woken after a message was queued for remote recipients.
    pub queue: Option<Arc<tokio::sync::Notify>>,
    /// SPF, DKIM and DMARC checks of mail arriving on the MX listener.
    pub inbound: Option<InboundChecks>,
    /// Takes mail for addresses it claims (the newsletter's VERP bounce addresses)
    /// instead of a mailbox.
    pub bounces: Option<Arc<dyn BounceSink>>,
}

/// Mail for addresses that are not mailboxes but a program's input: bounces coming back
/// to the newsletter's VERP envelope senders. The sink decides which addresses are its own
/// and takes the message durably before the client hears 250.
pub trait BounceSink: Send + Sync {
    /// Whether mail for this recipient goes to the sink (cheap: no I/O).
    fn claims(&self, recipient: &str) -> bool;
    /// Takes one message for one claimed recipient; blocking (called on a blocking
    /// thread). An error defers the whole message with a 451.
    fn accept(&self, recipient: &str, message: &[u8]) -> Result<(), String>;
}

/// How the submission listener treats logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmissionPolicy {
    /// AUTH only inside TLS, except from a loopback peer (a password sent in clear over the
    /// loopback interface never leaves the machine).
    pub require_tls: bool,
}

impl Default for SubmissionPolicy {
    fn default() -> Self {
        SubmissionPolicy { require_tls: true }
    }
}

impl SmtpConfig {
    pub fn new(hostname: impl Into<String>) -> SmtpConfig {
        SmtpConfig {
            hostname: hostname.into(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 2048,
            command_timeout: Duration::from_secs(300),
            login_timeout: Duration::from_secs(60),
            data_timeout: Duration::from_secs(600),
            trust_loopback: true,
            max_errors: 20,
            tls: None,
            submission: None,
            throttle: None,
            queue: None,
            inbound: None,
            bounces: None,
        }
    }
}

/// Sent to a client that arrives while every connection slot is taken.
pub const BUSY_REPLY: &[u8] = b"421 4.7.0 Too many connections, try again later\r\n";

/// Sessions of this listener since the server started and open now, for `/metrics`.
pub static SESSIONS: net::SessionCounts = net::SessionCounts::new();

/// Replies that turned mail or a client away, by reason, for `/metrics`.
pub static REJECTS: Rejects = Rejects::new();

/// The reasons, in the order [`Rejects::counts`] gives them.
pub const REJECT_REASONS: [&str; 10] = [
    "maintenance",
    "no_space",
    "unknown_user",
    "relay_denied",
    "too_large",
    "too_many_recipients",
    "too_many_errors",
    "protocol",
    "other_temporary",
    "other_permanent",
];

pub struct Rejects([std::sync::atomic::AtomicU64; 10]);

impl Rejects {
    const fn new() -> Rejects {
        Rejects([const { std::sync::atomic::AtomicU64::new(0) }; 10])
    }

    /// Counts a reply if it refuses something (4xx or 5xx).
    pub(crate) fn count(&self, reply: &smtp_proto::Reply) {
        if let Some(i) = reject_reason(reply.code, reply.enhanced.map(|e| (e.0, e.1, e.2))) {
            self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn counts(&self) -> [(&'static str, u64); 10] {
        std::array::from_fn(|i| {
            (
                REJECT_REASONS[i],
                self.0[i].load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }
}

/// The index in [`REJECT_REASONS`] of a refusing reply, by its code and enhanced code.
fn reject_reason(code: u16, enhanced: Option<(u8, u16, u16)>) -> Option<usize> {
    let reason = match (code, enhanced) {
        (200..=399, _) => return None,
        (421, Some((4, 3, 2))) => "maintenance",
        (421, _) => "too_many_errors",
        (_, Some((_, 3, 1))) => "no_space",
        (_, Some((5, 1, 1))) => "unknown_user",
        (_, Some((5, 7, 1))) => "relay_denied",
        (552, _) | (_, Some((5, 3, 4))) => "too_large",
        (_, Some((4, 5, 3))) => "too_many_recipients",
        (_, Some((_, 5, _))) | (500..=504, _) => "protocol",
        (400..=499, _) => "other_temporary",
        _ => "other_permanent",
    };
    REJECT_REASONS.iter().position(|r| *r == reason)
}

#[cfg(test)]
mod reject_tests {
    use super::*;

    #[test]
    fn replies_are_classified_by_reason() {
        let check = |code, enhanced, expect: Option<&str>| {
            assert_eq!(
                reject_reason(code, enhanced).map(|i| REJECT_REASONS[i]),
                expect
            );
        };
        check(250, Some((2, 0, 0)), None);
        check(421, Some((4, 3, 2)), Some("maintenance"));
        check(452, Some((4, 3, 1)), Some("no_space"));
        check(550, Some((5, 1, 1)), Some("unknown_user"));
        check(550, Some((5, 7, 1)), Some("relay_denied"));
        check(552, Some((5, 3, 4)), Some("too_large"));
        check(503, Some((5, 5, 1)), Some("protocol"));
        check(451, None, Some("other_temporary"));
    }
}
