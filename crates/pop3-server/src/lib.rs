//! POP3 service: drives `pop3-proto` over a network connection against the store.

mod session;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gate::Gate;
use net::LoginThrottle;
use store::{AccountId, Store};

pub use session::run;

/// Sent to a client that arrives while every connection slot is taken.
pub const BUSY_REPLY: &[u8] = b"-ERR [SYS/TEMP] Too many connections, try again later\r\n";

#[derive(Clone)]
pub struct Pop3Config {
    pub hostname: String,
    /// Longest command line accepted; RFC 2449 allows 255 octets, passwords may need more.
    pub max_line_length: usize,
    pub command_timeout: Duration,
    /// Protocol errors tolerated in one session before it is closed.
    pub max_errors: usize,
    /// Offered through STLS when present.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            hostname: "localhost".into(),
            max_line_length: 1024,
            command_timeout: Duration::from_secs(600),
            max_errors: 20,
            tls: None,
        }
    }
}

/// State shared by all POP3 sessions of one server.
pub struct Pop3Server {
    config: Pop3Config,
    store: Arc<dyn Store>,
    gate: Arc<Gate>,
    /// Maildrops held by a session in the TRANSACTION state (RFC 1939's exclusive lock).
    locked: Mutex<HashSet<AccountId>>,
    /// Shared with every listener that takes passwords.
    throttle: Arc<LoginThrottle>,
}

impl Pop3Server {
    pub fn new(
        config: Pop3Config,
        store: Arc<dyn Store>,
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
