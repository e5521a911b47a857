//! The growing delay after failed logins, shared by every protocol that takes passwords.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins are forgotten after this long without another.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

/// Recent failed logins per client address. One per server, so a client cannot reset its
/// delay by reconnecting or by switching from POP3 to IMAP.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginThrottle {
    /// Records a failed login and says how long to wait before answering it: one second for
    /// the first, doubling up to sixteen, so guessing passwords gets slow fast.
    pub fn failed(&self, peer: IpAddr) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        failures.retain(|_, (_, last)| now.duration_since(*last) < FAILURE_MEMORY);
        let entry = failures.entry(peer).or_insert((0, now));
        entry.0 += 1;
        entry.1 = now;
        Duration::from_secs(1 << (entry.0 - 1).min(4))
    }

    pub fn succeeded(&self, peer: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_delay_grows_and_is_capped() {
        let throttle = LoginThrottle::default();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let delays: Vec<u64> = (0..7).map(|_| throttle.failed(peer).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 16, 16]);
        throttle.succeeded(peer);
        assert_eq!(throttle.failed(peer).as_secs(), 1);
        let other: IpAddr = "::1".parse().unwrap();
        assert_eq!(throttle.failed(other).as_secs(), 1);
    }
}
