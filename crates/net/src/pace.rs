//! Deadlines for input that arrives in pieces: a command line or a message must arrive
//! whole within its time, however the client spreads the bytes (slowloris).

use std::time::{Duration, Instant};

/// The slowest average rate a transfer may keep once its grace time is spent, in bytes per
/// second: 25 MiB still gets seven hours, while a client trickling a byte a second is cut
/// off soon after the grace time.
pub const MIN_RATE: u64 = 1024;

/// When a transfer that started at `started` and has brought `bytes` so far must be done:
/// the grace time, plus one second for every [`MIN_RATE`] bytes received.
pub fn deadline(started: Instant, grace: Duration, bytes: usize) -> Instant {
    started + grace + Duration::from_millis(bytes as u64 * 1000 / MIN_RATE)
}

/// The deadline of the command line under way, if any: `pending` bytes of it are buffered,
/// and `started` remembers when its first byte came (cleared once nothing is pending, so
/// the next line gets a fresh start).
pub fn line_deadline(
    started: &mut Option<Instant>,
    pending: usize,
    grace: Duration,
    now: Instant,
) -> Option<Instant> {
    if pending == 0 {
        *started = None;
        return None;
    }
    Some(deadline(*started.get_or_insert(now), grace, pending))
}

/// How long the next read may wait: the idle timeout, cut short by the deadline of a
/// transfer under way. Zero once the deadline has passed.
pub fn next_wait(idle: Duration, transfer: Option<Instant>, now: Instant) -> Duration {
    match transfer {
        Some(deadline) => idle.min(deadline.saturating_duration_since(now)),
        None => idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickle_runs_out_of_time_and_a_fast_transfer_does_not() {
        let start = Instant::now();
        let grace = Duration::from_secs(5);
        // One byte a second: after t seconds t bytes, and the deadline is 5 + t/1024 s.
        let at = |t: u64| start + Duration::from_secs(t);
        assert!(deadline(start, grace, 4) > at(4));
        assert!(deadline(start, grace, 6) < at(6));
        // 10 MiB in 10 s is far inside its deadline.
        assert!(deadline(start, grace, 10 << 20) > at(10));
    }

    #[test]
    fn a_line_deadline_starts_at_its_first_byte_and_ends_with_the_line() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(3);
        let grace = Duration::from_secs(5);
        let mut started = None;
        assert_eq!(line_deadline(&mut started, 0, grace, t0), None);
        let first = line_deadline(&mut started, 10, grace, t0).unwrap();
        // More bytes of the same line: still timed from its first byte.
        assert_eq!(
            line_deadline(&mut started, 20, grace, later),
            Some(deadline(t0, grace, 20))
        );
        assert!(first < deadline(t0, grace, 20));
        // The line is done: the next one starts afresh.
        assert_eq!(line_deadline(&mut started, 0, grace, later), None);
        assert_eq!(
            line_deadline(&mut started, 1, grace, later),
            Some(deadline(later, grace, 1))
        );
    }

    #[test]
    fn the_wait_is_the_shorter_of_idle_and_what_is_left() {
        let now = Instant::now();
        let idle = Duration::from_secs(300);
        assert_eq!(next_wait(idle, None, now), idle);
        let soon = now + Duration::from_secs(2);
        assert_eq!(next_wait(idle, Some(soon), now), Duration::from_secs(2));
        assert_eq!(next_wait(idle, Some(now), soon), Duration::ZERO);
    }
}
