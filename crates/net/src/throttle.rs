//! The growing delay after failed logins, shared by every protocol that takes passwords.
//!
//! Two counters decide the delay: one per client address (per /64 for IPv6, which one
//! customer usually holds whole) and one per target account. Attempts from one address
//! are checked one at a time, and a failure's delay is served before the next attempt from
//! that address may start, so opening thirty connections buys an attacker nothing: the
//! thirtieth guess waits behind the other twenty-nine. A success clears only its own
//! account's counter, never the address's, so logging in to one's own account does not
//! reset the delay on guesses at someone else's. The account counter only lengthens the
//! answer to a failure; it never delays a correct password, so guessing at an account
//! from elsewhere cannot lock its owner out.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

/// Failed logins are forgotten after this long without another.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

/// The longest an attempt waits for its address's turn. Past it the login is refused as
/// busy without the password being looked at, so a queue of guesses cannot hold a session
/// for ever.
pub const MAX_TURN_WAIT: Duration = Duration::from_secs(60);

/// Addresses and accounts remembered at most; the oldest is forgotten to make room, so an
/// attacker spraying addresses or user names costs memory only up to this bound.
const MAX_ENTRIES: usize = 10_000;

/// The delay after the `n`th failure in a row: one second, doubling up to sixteen.
pub fn delay_after(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => Duration::from_secs(1 << (n - 1).min(4)),
    }
}

/// The key an address is counted under: the address itself for IPv4, its /64 for IPv6
/// (an IPv4 address mapped into IPv6 counts as the IPv4 address).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

struct Entry {
    failures: u32,
    last: Instant,
}

/// A bounded map of failure counters.
struct Counters<K> {
    entries: HashMap<K, Entry>,
    cap: usize,
}

impl<K: Eq + Hash + Clone> Counters<K> {
    fn new(cap: usize) -> Self {
        Counters {
            entries: HashMap::new(),
            cap,
        }
    }

    fn get(&self, key: &K, now: Instant) -> u32 {
        match self.entries.get(key) {
            Some(e) if now.duration_since(e.last) < FAILURE_MEMORY => e.failures,
            _ => 0,
        }
    }

    fn fail(&mut self, key: &K, now: Instant) -> u32 {
        let current = self.get(key, now);
        if !self.entries.contains_key(key) && self.entries.len() >= self.cap {
            self.entries
                .retain(|_, e| now.duration_since(e.last) < FAILURE_MEMORY);
            if self.entries.len() >= self.cap {
                // Still full of recent entries: forget the one quiet for longest.
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.entries.remove(&oldest);
                }
            }
        }
        let entry = self.entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            last: now,
        });
        entry.failures = current + 1;
        entry.last = now;
        entry.failures
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

struct Inner {
    addresses: Counters<IpAddr>,
    accounts: Counters<String>,
    /// One queue per address with an attempt in flight: attempts from an address are
    /// checked one after another. Entries go when nobody holds or waits for them.
    queues: HashMap<IpAddr, Arc<tokio::sync::Mutex<()>>>,
}

/// Recent failed logins per client address and per account. One per server, so a client
/// cannot reset its delay by reconnecting or by switching from POP3 to IMAP.
pub struct LoginThrottle {
    inner: Mutex<Inner>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::with_capacity(MAX_ENTRIES)
    }
}

/// Too many login attempts from this address are waiting already: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many login attempts from this address are waiting; try again later")]
pub struct Busy;

/// One login attempt's turn: taken before the password is checked, and reported as a
/// success or a failure once it has been.
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    address: IpAddr,
    account: String,
    /// Holds the address's queue, so the next attempt from it waits for this one's answer.
    _turn: OwnedMutexGuard<()>,
}

impl LoginThrottle {
    fn with_capacity(cap: usize) -> Self {
        LoginThrottle {
            inner: Mutex::new(Inner {
                addresses: Counters::new(cap),
                accounts: Counters::new(cap),
                queues: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for this address's turn to try a password for `account`. An address with no
    /// attempt in flight goes at once; `Err(Busy)` after [`MAX_TURN_WAIT`] in the queue.
    pub async fn attempt(&self, peer: IpAddr, account: &str) -> Result<Attempt<'_>, Busy> {
        self.attempt_within(peer, account, MAX_TURN_WAIT).await
    }

    async fn attempt_within(
        &self,
        peer: IpAddr,
        account: &str,
        patience: Duration,
    ) -> Result<Attempt<'_>, Busy> {
        let address = address_key(peer);
        let queue = {
            let mut inner = self.lock();
            // Forget queues nobody holds (only the map has them), so the map stays small.
            if inner.queues.len() >= 1024 {
                inner.queues.retain(|_, q| Arc::strong_count(q) > 1);
            }
            inner.queues.entry(address).or_default().clone()
        };
        let turn = tokio::time::timeout(patience, queue.lock_owned())
            .await
            .map_err(|_| Busy)?;
        Ok(Attempt {
            throttle: self,
            address,
            account: account.to_lowercase(),
            _turn: turn,
        })
    }

    /// How many recent failures count against an address and an account (for tests and logs).
    pub fn failures(&self, peer: IpAddr, account: &str) -> (u32, u32) {
        let inner = self.lock();
        let now = Instant::now();
        (
            inner.addresses.get(&address_key(peer), now),
            inner.accounts.get(&account.to_lowercase(), now),
        )
    }

    /// Entries held, addresses and accounts (for the memory bound's test).
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.addresses.len(), inner.accounts.len())
    }
}

impl Attempt<'_> {
    /// Records the failure and returns how long to wait before answering it: the longer of
    /// the address's and the account's delay. The caller sleeps it while still holding the
    /// attempt ([`Attempt::failed`] does both).
    pub fn record_failure(&self) -> Duration {
        let mut inner = self.throttle.lock();
        let now = Instant::now();
        let by_address = inner.addresses.fail(&self.address, now);
        let by_account = inner.accounts.fail(&self.account, now);
        delay_after(by_address).max(delay_after(by_account))
    }

    /// Records a failed password and sleeps its delay before giving the address's turn to
    /// the next attempt. Returns the delay served.
    pub async fn failed(self) -> Duration {
        let delay = self.record_failure();
        tokio::time::sleep(delay).await;
        delay
    }

    /// Records a correct password: the account's own counter starts over. The address's
    /// counter is left alone, since whoever shares the address may be guessing elsewhere.
    pub fn succeeded(self) {
        self.throttle.lock().accounts.clear(&self.account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn login_delay_grows_and_is_capped() {
        let delays: Vec<u64> = (1..=7).map(|n| delay_after(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(delay_after(0), Duration::ZERO);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(address_key(ip("10.0.0.1")), ip("10.0.0.1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_as_another_account_does_not_reset_the_address() {
        let throttle = LoginThrottle::default();
        let peer = ip("192.0.2.7");
        for _ in 0..3 {
            throttle.attempt(peer, "bob").await.unwrap().failed().await;
        }
        throttle.attempt(peer, "mallory").await.unwrap().succeeded();
        assert_eq!(throttle.failures(peer, "bob"), (3, 3));
        let next = throttle
            .attempt(peer, "bob")
            .await
            .unwrap()
            .record_failure();
        assert_eq!(next, delay_after(4));
    }

    #[tokio::test(start_paused = true)]
    async fn guesses_at_an_account_never_delay_its_owner_elsewhere() {
        let throttle = LoginThrottle::default();
        for i in 0..5 {
            let attacker = ip(&format!("198.51.100.{i}"));
            throttle
                .attempt(attacker, "Alice")
                .await
                .unwrap()
                .failed()
                .await;
        }
        assert_eq!(throttle.failures(ip("203.0.113.9"), "alice"), (0, 5));
        // The owner from a clean address gets its turn at once.
        let started = tokio::time::Instant::now();
        let attempt = throttle.attempt(ip("203.0.113.9"), "alice").await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
        attempt.succeeded();
        assert_eq!(throttle.failures(ip("203.0.113.9"), "alice"), (0, 0));
        // A new address's first failure at the attacked account is answered slowly.
        let delay = throttle
            .attempt(ip("198.51.100.99"), "alice")
            .await
            .unwrap()
            .record_failure();
        assert_eq!(delay, delay_after(1));
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_guesses_from_one_address_queue_behind_each_other() {
        let throttle = Arc::new(LoginThrottle::default());
        let started = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let throttle = throttle.clone();
                tokio::spawn(async move {
                    let peer = ip("192.0.2.1");
                    throttle
                        .attempt(peer, &format!("user{i}"))
                        .await
                        .unwrap()
                        .failed()
                        .await;
                    started.elapsed()
                })
            })
            .collect();
        let mut ends = Vec::new();
        for t in tasks {
            ends.push(t.await.unwrap().as_secs());
        }
        ends.sort();
        // One at a time: 1, 1+2, 1+2+4, ... seconds, not all within sixteen.
        assert_eq!(ends, [1, 3, 7, 15, 31, 47]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_queue_answers_busy_instead_of_waiting_for_ever() {
        let throttle = LoginThrottle::default();
        let peer = ip("192.0.2.5");
        let first = throttle.attempt(peer, "bob").await.unwrap();
        let started = tokio::time::Instant::now();
        let second = throttle
            .attempt_within(peer, "bob", Duration::from_secs(5))
            .await;
        assert_eq!(second.err(), Some(Busy));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(first);
        assert!(throttle.attempt(peer, "bob").await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded() {
        let throttle = LoginThrottle::with_capacity(100);
        for i in 0..1000u32 {
            let peer = IpAddr::V4(i.into());
            throttle
                .attempt(peer, &format!("user{i}"))
                .await
                .unwrap()
                .record_failure();
        }
        let (addresses, accounts) = throttle.sizes();
        assert!(
            addresses <= 100 && accounts <= 100,
            "{addresses} {accounts}"
        );
        // The newest are remembered.
        assert_eq!(
            throttle.failures(IpAddr::V4(999u32.into()), "user999"),
            (1, 1)
        );
    }
}
