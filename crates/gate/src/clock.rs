//! The wall clock that schedules and maintenance windows follow, in the server's time zone.
//!
//! Tests need to control it: `TEGAMI_CLOCK_START=2026-11-23T02:59:50` makes the clock start
//! at that local time and run on at the real rate from there. `TEGAMI_CLOCK_FILE=path`
//! lets a test move time while the server runs: the file holds a number of seconds added to
//! the clock, read again at every `now()` (a missing or unreadable file adds nothing), so
//! the outbound queue's five days of retries can pass in seconds. Nothing else uses either
//! variable.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

#[derive(Clone, Debug)]
pub struct Clock {
    offset: SignedDuration,
    tz: TimeZone,
    /// `TEGAMI_CLOCK_FILE`: more seconds to add, read at every `now()`.
    shift_file: Option<std::path::PathBuf>,
}

impl Clock {
    /// The system clock and time zone, shifted if `TEGAMI_CLOCK_START` is set.
    pub fn system() -> Result<Clock, String> {
        let tz = TimeZone::system();
        let offset = match std::env::var("TEGAMI_CLOCK_START") {
            Ok(start) => {
                let civil: jiff::civil::DateTime = start
                    .parse()
                    .map_err(|e| format!("TEGAMI_CLOCK_START={start:?} is not a date-time: {e}"))?;
                let start = civil.to_zoned(tz.clone()).map_err(|e| e.to_string())?;
                start.timestamp().duration_since(Timestamp::now())
            }
            Err(_) => SignedDuration::ZERO,
        };
        let shift_file = std::env::var_os("TEGAMI_CLOCK_FILE").map(std::path::PathBuf::from);
        Ok(Clock {
            offset,
            tz,
            shift_file,
        })
    }

    /// A clock fixed to a time zone with no offset, for tests.
    pub fn with_zone(tz: TimeZone) -> Clock {
        Clock {
            offset: SignedDuration::ZERO,
            tz,
            shift_file: None,
        }
    }

    pub fn now(&self) -> Zoned {
        let offset = self.offset + self.shift();
        let now = Timestamp::now()
            .checked_add(offset)
            .unwrap_or_else(|_| Timestamp::now());
        now.to_zoned(self.tz.clone())
    }

    /// Unix seconds now, by this clock.
    pub fn unix(&self) -> i64 {
        self.now().timestamp().as_second()
    }

    fn shift(&self) -> SignedDuration {
        let Some(path) = &self.shift_file else {
            return SignedDuration::ZERO;
        };
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .map(SignedDuration::from_secs)
            .unwrap_or(SignedDuration::ZERO)
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shift_file_moves_the_clock_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shift");
        let clock = Clock {
            shift_file: Some(file.clone()),
            ..Clock::with_zone(TimeZone::UTC)
        };
        let before = clock.unix();
        std::fs::write(&file, "86400\n").unwrap();
        let shifted = clock.unix() - before;
        assert!((86400..86400 + 5).contains(&shifted), "moved {shifted} s");
        std::fs::write(&file, "not a number").unwrap();
        assert!(clock.unix() - before < 5, "a bad file adds nothing");
    }
}
