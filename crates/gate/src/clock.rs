//! The wall clock that schedules and maintenance windows follow, in the server's time zone.
//!
//! Tests need to control it: `TEGAMI_CLOCK_START=2026-11-23T02:59:50` makes the clock start
//! at that local time and run on at the real rate from there. Nothing else uses the variable.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

#[derive(Clone, Debug)]
pub struct Clock {
    offset: SignedDuration,
    tz: TimeZone,
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
        Ok(Clock { offset, tz })
    }

    /// A clock fixed to a time zone with no offset, for tests.
    pub fn with_zone(tz: TimeZone) -> Clock {
        Clock {
            offset: SignedDuration::ZERO,
            tz,
        }
    }

    pub fn now(&self) -> Zoned {
        let now = Timestamp::now()
            .checked_add(self.offset)
            .unwrap_or_else(|_| Timestamp::now());
        now.to_zoned(self.tz.clone())
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }
}
