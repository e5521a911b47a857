//! IMAP service: drives `imap-proto` over a network connection against the store.

mod changes;
mod fetch;
mod list;
mod search;
mod selected;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gate::Gate;
use net::LoginThrottle;
use store::{AccountId, MailAccess};

pub use changes::Changes;
pub use session::run;

/// Sent to a client that arrives while every connection slot is taken.
pub const BUSY_REPLY: &[u8] = b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n";

#[derive(Clone)]
pub struct ImapConfig {
    pub hostname: String,
    /// Longest command line, literals excluded.
    pub max_line_length: usize,
    /// Largest APPEND literal: the largest message accepted.
    pub max_message_size: usize,
    /// RFC 3501 asks for at least 30 minutes of patience with an idle client.
    pub command_timeout: Duration,
    /// How long a client may stay connected without logging in.
    pub login_timeout: Duration,
    /// How long IDLE may last before the server ends it (RFC 2177: clients re-issue IDLE
    /// at least every 29 minutes).
    pub idle_timeout: Duration,
    /// Protocol errors tolerated in one session before it is closed.
    pub max_errors: usize,
    /// Sessions one account may hold at once.
    pub max_connections_per_account: usize,
    /// Offered through STARTTLS when present.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether LOGIN and AUTHENTICATE are allowed before STARTTLS on a non-loopback peer
    /// when TLS is configured.
    pub allow_plaintext_auth: bool,
    /// Whether loopback peers count as local (no TLS needed for passwords). False when a
    /// proxy on this host forwards remote clients.
    pub trust_loopback: bool,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            hostname: "localhost".into(),
            max_line_length: 64 * 1024,
            max_message_size: 25 * 1024 * 1024,
            command_timeout: Duration::from_secs(30 * 60),
            login_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30 * 60),
            max_errors: 20,
            max_connections_per_account: 20,
            tls: None,
            allow_plaintext_auth: false,
            trust_loopback: true,
        }
    }
}

/// State shared by all IMAP sessions of one server.
pub struct ImapServer {
    config: ImapConfig,
    store: Arc<dyn MailAccess>,
    gate: Arc<Gate>,
    changes: Arc<Changes>,
    throttle: Arc<LoginThrottle>,
    /// Sessions per account, for the per-account connection limit.
    sessions: Mutex<HashMap<AccountId, usize>>,
}

impl ImapServer {
    /// `changes` must be the listener registered with the store
    /// ([`Store::set_change_listener`]), or sessions learn of changes only when they ask.
    pub fn new(
        config: ImapConfig,
        store: Arc<dyn MailAccess>,
        gate: Arc<Gate>,
        changes: Arc<Changes>,
        throttle: Arc<LoginThrottle>,
    ) -> ImapServer {
        ImapServer {
            config,
            store,
            gate,
            changes,
            throttle,
            sessions: Mutex::default(),
        }
    }

    /// Counts a session against its account's limit; the guard gives the slot back.
    fn enter(self: &Arc<Self>, account: AccountId) -> Option<AccountSlot> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let count = sessions.entry(account).or_default();
        if *count >= self.config.max_connections_per_account {
            return None;
        }
        *count += 1;
        Some(AccountSlot {
            server: self.clone(),
            account,
        })
    }
}

struct AccountSlot {
    server: Arc<ImapServer>,
    account: AccountId,
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        let mut sessions = self
            .server
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = sessions.get_mut(&self.account) {
            *count -= 1;
            if *count == 0 {
                sessions.remove(&self.account);
            }
        }
    }
}

/// Sessions of this listener since the server started and open now, for `/metrics`.
pub static SESSIONS: net::SessionCounts = net::SessionCounts::new();
