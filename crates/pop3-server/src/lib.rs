//! POP3 service: drives `pop3-proto` over a network connection against the store.

mod session;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gate::Gate;
use net::LoginThrottle;
use store::{AccountId, MailAccess};

pub use session::run;

/// Sent to a client that arrives while every connection slot is taken.
pub const BUSY_REPLY: &[u8] = b"-ERR [SYS/TEMP] Too many connections, try again later\r\n";

#[derive(Clone)]
pub struct Pop3Config {
    pub hostname: String,
    /// Longest command line accepted; RFC 2449 allows 255 octets, passwords may need more.
    pub max_line_length: usize,
    pub command_timeout: Duration,
    /// How long a client may stay connected without logging in.
    pub login_timeout: Duration,
    /// Protocol errors tolerated in one session before it is closed.
    pub max_errors: usize,
    /// Offered through STLS when present.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether USER and PASS are allowed outside TLS from a peer that is not local when
    /// TLS is configured (RFC 2595 section 2.1 asks servers to refuse them).
    pub allow_plaintext_auth: bool,
    /// Whether loopback peers count as local (no TLS needed for passwords). False when a
    /// proxy on this host forwards remote clients.
    pub trust_loopback: bool,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            hostname: "localhost".into(),
            max_line_length: 1024,
            command_timeout: Duration::from_secs(600),
            login_timeout: Duration::from_secs(60),
            max_errors: 20,
            tls: None,
            allow_plaintext_auth: false,
            trust_loopback: true,
        }
    }
}

/// State shared by all POP3 sessions of one server.
pub struct Pop3Server {
    config: Pop3Config,
    store: Arc<dyn MailAccess>,
    gate: Arc<Gate>,
    /// Maildrops held by a session in the TRANSACTION state (RFC 1939's exclusive lock).
    locked: Mutex<HashSet<AccountId>>,
    /// Shared with every listener that takes passwords.
    throttle: Arc<LoginThrottle>,
}

impl Pop3Server {
    pub fn new(
        config: Pop3Config,
        store: Arc<dyn MailAccess>,
        gate: Arc<Gate>,
        throttle: Arc<LoginThrottle>,
    ) -> Pop3Server {
        Pop3Server {
            config,
            store,
            gate,
            locked: Mutex::default(),
            throttle,
        }
    }

    /// Takes the maildrop lock; the guard releases it however the session ends.
    fn lock_maildrop(self: &Arc<Self>, account: AccountId) -> Option<MaildropLock> {
        let mut locked = self.locked.lock().unwrap_or_else(|p| p.into_inner());
        locked.insert(account).then(|| MaildropLock {
            server: self.clone(),
            account,
        })
    }
}

struct MaildropLock {
    server: Arc<Pop3Server>,
    account: AccountId,
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        self.server
            .locked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.account);
    }
}

/// Sessions of this listener since the server started and open now, for `/metrics`.
pub static SESSIONS: net::SessionCounts = net::SessionCounts::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maildrop_is_locked_once() {
        let dir = std::env::temp_dir().join(format!("pop3-lock-{}", std::process::id()));
        let store = Arc::new(store::SqliteStore::open(&dir).unwrap());
        let server = Arc::new(Pop3Server::new(
            Pop3Config::default(),
            store,
            Gate::open(),
            Arc::default(),
        ));
        let first = server.lock_maildrop(AccountId(1));
        assert!(first.is_some());
        assert!(server.lock_maildrop(AccountId(1)).is_none());
        drop(first);
        assert!(server.lock_maildrop(AccountId(1)).is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
