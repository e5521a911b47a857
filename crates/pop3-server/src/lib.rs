//! POP3 service: drives `pop3-proto` over a network connection against the store.

mod session;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gate::Gate;
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
    /// Recent failed logins per client address, for the growing delay.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Failed logins are forgotten after this long without another.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

impl Pop3Server {
    pub fn new(config: Pop3Config, store: Arc<dyn Store>, gate: Arc<Gate>) -> Pop3Server {
        Pop3Server {
            config,
            store,
            gate,
            locked: Mutex::default(),
            failures: Mutex::default(),
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

    /// Records a failed login and says how long to wait before answering it: one second for
    /// the first, doubling up to sixteen, so guessing passwords gets slow fast.
    fn login_failed(&self, peer: IpAddr) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        failures.retain(|_, (_, last)| now.duration_since(*last) < FAILURE_MEMORY);
        let entry = failures.entry(peer).or_insert((0, now));
        entry.0 += 1;
        entry.1 = now;
        Duration::from_secs(1 << (entry.0 - 1).min(4))
    }

    fn login_succeeded(&self, peer: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&peer);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_delay_grows_and_is_capped() {
        let dir = std::env::temp_dir().join(format!("pop3-delay-{}", std::process::id()));
        let store = Arc::new(store::SqliteStore::open(&dir).unwrap());
        let server = Pop3Server::new(Pop3Config::default(), store, Gate::open());
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let delays: Vec<u64> = (0..7)
            .map(|_| server.login_failed(peer).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 16, 16]);
        server.login_succeeded(peer);
        assert_eq!(server.login_failed(peer).as_secs(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_maildrop_is_locked_once() {
        let dir = std::env::temp_dir().join(format!("pop3-lock-{}", std::process::id()));
        let store = Arc::new(store::SqliteStore::open(&dir).unwrap());
        let server = Arc::new(Pop3Server::new(Pop3Config::default(), store, Gate::open()));
        let first = server.lock_maildrop(AccountId(1));
        assert!(first.is_some());
        assert!(server.lock_maildrop(AccountId(1)).is_none());
        drop(first);
        assert!(server.lock_maildrop(AccountId(1)).is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
