//! The per-destination rate limit: a token bucket on a monotonic clock.

use std::time::{Duration, Instant};

/// Refills `per_minute` tokens a minute up to `burst`; one token sends one message.
///
/// The burst is one second's worth (at least one message), so that a limit of 600 a
/// minute means about ten a second rather than 600 at once and then nothing.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_minute: u32,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `per_minute = 0` never limits.
    pub fn new(per_minute: u32, now: Instant) -> TokenBucket {
        let burst = (f64::from(per_minute) / 60.0).ceil().max(1.0);
        TokenBucket {
            per_minute,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * f64::from(self.per_minute) / 60.0).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next token, for logs; zero when one is there.
    pub fn wait(&self) -> Duration {
        if self.per_minute == 0 || self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) * 60.0 / f64::from(self.per_minute))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_refuses() {
        let t = Instant::now();
        let mut b = TokenBucket::new(0, t);
        assert!((0..10_000).all(|_| b.try_take(t)));
    }

    #[test]
    fn refills_at_the_rate_up_to_the_burst() {
        let t = Instant::now();
        let mut b = TokenBucket::new(60, t); // one a second, burst one
        assert!(b.try_take(t));
        assert!(!b.try_take(t));
        assert!(b.wait() > Duration::from_millis(900));
        assert!(!b.try_take(t + Duration::from_millis(500)));
        assert!(b.try_take(t + Duration::from_millis(1000)));
        // A long pause does not buy more than the burst.
        let later = t + Duration::from_secs(3600);
        assert!(b.try_take(later));
        assert!(!b.try_take(later));
    }

    #[test]
    fn burst_is_one_second_of_tokens() {
        let t = Instant::now();
        let mut b = TokenBucket::new(600, t);
        let taken = (0..100).filter(|_| b.try_take(t)).count();
        assert_eq!(taken, 10);
        // Over a minute the count matches the rate.
        let mut b = TokenBucket::new(120, t);
        let taken = (0..=600)
            .filter(|i| b.try_take(t + Duration::from_millis(100 * i)))
            .count();
        assert!((120..=123).contains(&taken), "{taken}");
    }
}
