//! Maintenance mode: the file `maint` in the data directory, and what it means at a moment.
//!
//! The file's presence is the truth. Without windows, maintenance is in force from the
//! moment it was set until the file goes; with windows, it is in force inside each window,
//! every day, until the file goes. Windows are whole ten-minute steps and may cross midnight.

use std::fmt;
use std::path::Path;

use jiff::civil::Time;
use jiff::{ToSpan, Zoned};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaintError {
    #[error("'{0}' is not a window: expected HH:MM-HH:MM, for example 22:00-02:30")]
    BadWindow(String),
    #[error("window '{0}': times must fall on ten-minute steps (00, 10, 20, 30, 40, 50)")]
    NotTenMinutes(String),
    #[error(
        "window '{0}' starts and ends at the same time; leave out --window for maintenance until lifted"
    )]
    EmptyWindow(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid maintenance file: {detail}")]
    Parse { path: String, detail: String },
}

/// A daily window, as minutes since midnight. `end < start` crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u16,
    pub end: u16,
}

impl Window {
    pub fn parse(text: &str) -> Result<Window, MaintError> {
        let bad = || MaintError::BadWindow(text.to_string());
        let (start, end) = text.trim().split_once('-').ok_or_else(bad)?;
        let start = parse_minutes(start).ok_or_else(bad)?;
        let end = parse_minutes(end).ok_or_else(bad)?;
        if start % 10 != 0 || end % 10 != 0 {
            return Err(MaintError::NotTenMinutes(text.to_string()));
        }
        if start == end {
            return Err(MaintError::EmptyWindow(text.to_string()));
        }
        Ok(Window { start, end })
    }

    /// True when the minute of the day lies in [start, end).
    pub fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", hhmm(self.start), hhmm(self.end))
    }
}

/// "HH:MM" of a minute of the day; 24:00 is accepted as an end and means midnight.
pub fn parse_minutes(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(0),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

pub fn hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// The file as stored (TOML).
#[derive(Debug, Default, Serialize, Deserialize)]
struct RawFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    windows: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    set_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    set_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Maintenance {
    pub message: Option<String>,
    pub windows: Vec<Window>,
    pub set_by: Option<String>,
    pub set_at: Option<jiff::Timestamp>,
}

/// What maintenance means at one moment.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Off,
    Active {
        message: String,
        since: Option<Zoned>,
        until: Option<Zoned>,
    },
    /// Configured with windows, but outside them now.
    Waiting {
        next_start: Zoned,
        next_end: Zoned,
    },
}

pub const DEFAULT_MESSAGE: &str = "The mail server is under maintenance";

impl Maintenance {
    pub fn load(path: &Path) -> Result<Option<Maintenance>, MaintError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(MaintError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Maintenance::parse(&text)
            .map(Some)
            .map_err(|detail| MaintError::Parse {
                path: path.display().to_string(),
                detail,
            })
    }

    pub fn parse(text: &str) -> Result<Maintenance, String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let windows = raw
            .windows
            .iter()
            .map(|w| Window::parse(w))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let set_at = raw.set_at.as_deref().and_then(|t| t.parse().ok());
        Ok(Maintenance {
            message: raw.message,
            windows,
            set_by: raw.set_by,
            set_at,
        })
    }

    pub fn to_toml(&self) -> String {
        let raw = RawFile {
            message: self.message.clone(),
            windows: self.windows.iter().map(Window::to_string).collect(),
            set_by: self.set_by.clone(),
            set_at: self.set_at.map(|t| t.to_string()),
        };
        toml::to_string(&raw).expect("a maintenance file always serialises")
    }

    /// Writes the file atomically, so the server never reads half of it.
    pub fn save(&self, path: &Path) -> Result<(), MaintError> {
        let io = |source| MaintError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_toml()).map_err(io)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    pub fn message(&self) -> &str {
        self.message
            .as_deref()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or(DEFAULT_MESSAGE)
    }

    pub fn status_at(&self, now: &Zoned) -> Status {
        if self.windows.is_empty() {
            let since = self.set_at.map(|t| t.to_zoned(now.time_zone().clone()));
            return Status::Active {
                message: self.message().to_string(),
                since,
                until: None,
            };
        }
        let minute = (now.hour() as u16) * 60 + now.minute() as u16;
        if let Some(w) = self.windows.iter().find(|w| w.contains(minute)) {
            // The occurrence that covers now began today, or yesterday if it crossed midnight.
            let began_yesterday = w.start > w.end && minute < w.end;
            let start_day = if began_yesterday {
                now.date().yesterday().unwrap_or(now.date())
            } else {
                now.date()
            };
            let since = at(now, start_day, w.start);
            let end_day = if w.start > w.end {
                start_day.tomorrow().unwrap_or(start_day)
            } else {
                start_day
            };
            let until = at(now, end_day, w.end);
            return Status::Active {
                message: self.message().to_string(),
                since: Some(since),
                until: Some(until),
            };
        }
        let (next_start, next_end) = self
            .windows
            .iter()
            .map(|w| {
                let mut day = now.date();
                if w.start <= minute {
                    day = day.tomorrow().unwrap_or(day);
                }
                let end_day = if w.start > w.end {
                    day.tomorrow().unwrap_or(day)
                } else {
                    day
                };
                (at(now, day, w.start), at(now, end_day, w.end))
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .expect("windows is not empty");
        Status::Waiting {
            next_start,
            next_end,
        }
    }
}

fn at(now: &Zoned, day: jiff::civil::Date, minute: u16) -> Zoned {
    let time =
        Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0).unwrap_or(Time::midnight());
    day.to_datetime(time)
        .to_zoned(now.time_zone().clone())
        .unwrap_or_else(|_| now.checked_add(1.minute()).unwrap_or_else(|_| now.clone()))
}

/// The manual's rule for the scheduled check: it is skipped when its start falls inside a
/// maintenance window or equals a window's end. Returns the reason when it is skipped.
pub fn check_skip_reason(check_at: u16, maintenance: Option<&Maintenance>) -> Option<String> {
    let maintenance = maintenance?;
    if maintenance.windows.is_empty() {
        return Some("maintenance mode is in force until lifted".into());
    }
    maintenance.windows.iter().find_map(|w| {
        if w.contains(check_at) {
            Some(format!(
                "its start {} falls inside the maintenance window {w}",
                hhmm(check_at)
            ))
        } else if w.end == check_at {
            Some(format!(
                "its start {} equals the end of the maintenance window {w}",
                hhmm(check_at)
            ))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn check_window(input: &str, expect: Result<(u16, u16), &str>) {
        match (Window::parse(input), expect) {
            (Ok(w), Ok((s, e))) => assert_eq!((w.start, w.end), (s, e), "{input}"),
            (Err(err), Err(fragment)) => {
                assert!(err.to_string().contains(fragment), "{input}: {err}")
            }
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn windows_parse_in_ten_minute_steps() {
        check_window("22:00-02:00", Ok((1320, 120)));
        check_window("00:00-24:00", Err("same time"));
        check_window("9:10-9:40", Ok((550, 580)));
        check_window(" 12:00-13:00 ", Ok((720, 780)));
        check_window("12:05-13:00", Err("ten-minute"));
        check_window("12:00-12:00", Err("same time"));
        check_window("25:00-01:00", Err("HH:MM-HH:MM"));
        check_window("12:00", Err("HH:MM-HH:MM"));
        check_window("12:60-13:00", Err("HH:MM-HH:MM"));
        check_window("ab:cd-ef:gh", Err("HH:MM-HH:MM"));
        check_window("", Err("HH:MM-HH:MM"));
    }

    fn at_time(h: i8, m: i8) -> Zoned {
        jiff::civil::date(2026, 11, 23)
            .at(h, m, 0, 0)
            .to_zoned(TimeZone::UTC)
            .unwrap()
    }

    fn maint(windows: &[&str]) -> Maintenance {
        Maintenance {
            message: Some("disk swap".into()),
            windows: windows.iter().map(|w| Window::parse(w).unwrap()).collect(),
            set_by: Some("test".into()),
            set_at: None,
        }
    }

    #[test]
    fn a_window_across_midnight_is_active_on_both_sides() {
        let m = maint(&["22:00-02:00"]);
        let Status::Active {
            since,
            until,
            message,
        } = m.status_at(&at_time(1, 30))
        else {
            panic!()
        };
        assert_eq!(message, "disk swap");
        assert_eq!(since.unwrap().strftime("%d %H:%M").to_string(), "22 22:00");
        assert_eq!(until.unwrap().strftime("%d %H:%M").to_string(), "23 02:00");
        let Status::Active { until, .. } = m.status_at(&at_time(23, 0)) else {
            panic!()
        };
        assert_eq!(until.unwrap().strftime("%d %H:%M").to_string(), "24 02:00");
        let Status::Waiting { next_start, .. } = m.status_at(&at_time(2, 0)) else {
            panic!()
        };
        assert_eq!(next_start.strftime("%d %H:%M").to_string(), "23 22:00");
    }

    #[test]
    fn without_windows_maintenance_lasts_until_lifted() {
        let m = maint(&[]);
        assert!(matches!(
            m.status_at(&at_time(12, 0)),
            Status::Active { until: None, .. }
        ));
    }

    #[test]
    fn the_file_round_trips() {
        let m = maint(&["22:00-02:00", "12:00-12:30"]);
        assert_eq!(Maintenance::parse(&m.to_toml()).unwrap(), m);
        assert!(Maintenance::parse("windows = [\"1:00\"]").is_err());
        assert_eq!(Maintenance::parse("").unwrap().message(), DEFAULT_MESSAGE);
    }

    #[test]
    fn the_scheduled_check_is_skipped_inside_a_window_or_at_its_end() {
        let m = maint(&["02:00-04:00"]);
        let skip = |hhmm: &str| check_skip_reason(parse_minutes(hhmm).unwrap(), Some(&m));
        assert!(skip("01:50").is_none());
        assert!(skip("02:00").unwrap().contains("inside"));
        assert!(skip("03:50").unwrap().contains("inside"));
        assert!(skip("04:00").unwrap().contains("equals the end"));
        assert!(skip("04:10").is_none());
        assert!(check_skip_reason(120, None).is_none());
        assert!(check_skip_reason(120, Some(&maint(&[]))).is_some());
        let night = maint(&["23:00-01:00"]);
        assert!(check_skip_reason(parse_minutes("00:30").unwrap(), Some(&night)).is_some());
        assert!(check_skip_reason(parse_minutes("01:00").unwrap(), Some(&night)).is_some());
        assert!(check_skip_reason(parse_minutes("01:10").unwrap(), Some(&night)).is_none());
    }
}
