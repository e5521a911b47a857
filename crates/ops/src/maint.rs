//! Maintenance mode: set, lift and read the `maint` file of the data directory. No running
//! server and no open store are needed; the server notices the file within two seconds.
//! Setting and lifting are logged in `log/maintenance.log` with who did it.

use std::path::Path;

use gate::{Maintenance, Status, Window, oplog};

use crate::error::IoContext;
use crate::{Error, Result};

/// `maint on`: a message for clients, and daily windows (none: in force until lifted).
#[derive(Debug, Clone)]
pub struct MaintOn {
    pub message: Option<String>,
    /// Each `HH:MM-HH:MM` on ten-minute steps; may cross midnight.
    pub windows: Vec<String>,
    /// Who sets it, for the file and the log ("alice@host with `tegami maint on`").
    pub set_by: String,
    /// Who sets it, for the log line ("alice@host").
    pub operator: String,
}

/// Maintenance as configured, and what it means at `now`.
#[derive(Debug, Clone)]
pub struct MaintState {
    pub maintenance: Option<Maintenance>,
    pub now: jiff::Zoned,
}

impl MaintState {
    /// In force, waiting for its next window, or off.
    pub fn status(&self) -> Status {
        self.maintenance
            .as_ref()
            .map_or(Status::Off, |m| m.status_at(&self.now))
    }
}

/// The longest message clients are shown: it goes into one protocol reply line (SMTP 421,
/// POP3 -ERR, IMAP BYE) beside the host name and the end time.
pub const MESSAGE_MAX_CHARS: usize = 200;

/// At most this many daily windows.
pub const WINDOWS_MAX: usize = 24;

/// What `request` would set, judged at the clock's now, without writing anything: the
/// console's preview of what users will see, and the first step of [`on`].
pub fn preview(clock: &gate::Clock, request: &MaintOn) -> Result<MaintState> {
    let now = clock.now();
    let maintenance = build(request, &now)?;
    Ok(MaintState {
        maintenance: Some(maintenance),
        now,
    })
}

/// The maintenance `request` describes, its windows and message checked.
fn build(request: &MaintOn, now: &jiff::Zoned) -> Result<Maintenance> {
    if request.windows.len() > WINDOWS_MAX {
        return Err(Error::invalid(format!(
            "{} windows given; at most {WINDOWS_MAX} are allowed",
            request.windows.len()
        )));
    }
    let windows = request
        .windows
        .iter()
        .map(|w| Window::parse(w))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::invalid)?;
    let message = match request.message.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(m) => {
            // The message goes into a protocol reply line: a line break there would let
            // it speak as the server.
            if m.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "the maintenance message must be one line without control characters",
                ));
            }
            if m.chars().count() > MESSAGE_MAX_CHARS {
                return Err(Error::invalid(format!(
                    "the maintenance message has {} characters; at most {MESSAGE_MAX_CHARS} are allowed",
                    m.chars().count()
                )));
            }
            Some(m.to_string())
        }
    };
    Ok(Maintenance {
        message,
        windows,
        set_by: Some(request.set_by.clone()),
        set_at: Some(now.timestamp()),
    })
}

/// Sets maintenance: writes the file and logs who did it.
pub fn on(data: &Path, clock: &gate::Clock, request: MaintOn) -> Result<MaintState> {
    let now = clock.now();
    let maintenance = build(&request, &now)?;
    std::fs::create_dir_all(data).io_context(|| format!("cannot create {}", data.display()))?;
    maintenance
        .save(&data.join("maint"))
        .map_err(Error::failed)?;
    // The file is the truth; a log that cannot be written does not undo it.
    let _ = oplog::append(
        &data.join("log"),
        "maintenance.log",
        &now,
        &format!("maintenance configured by {}", request.operator),
    );
    Ok(MaintState {
        maintenance: Some(maintenance),
        now,
    })
}

/// Lifts maintenance (removes the file); false when it was not on.
pub fn off(data: &Path, clock: &gate::Clock, operator: &str) -> Result<bool> {
    let path = data.join("maint");
    match std::fs::remove_file(&path) {
        Ok(()) => {
            let _ = oplog::append(
                &data.join("log"),
                "maintenance.log",
                &clock.now(),
                &format!("maintenance lifted by {operator}"),
            );
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).io_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Maintenance as the file says, now.
pub fn status(data: &Path, clock: &gate::Clock) -> Result<MaintState> {
    let maintenance = Maintenance::load(&data.join("maint")).map_err(Error::failed)?;
    Ok(MaintState {
        maintenance,
        now: clock.now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> gate::Clock {
        gate::Clock::with_zone(jiff::tz::TimeZone::UTC)
    }

    #[test]
    fn on_then_off_writes_and_removes_the_file_and_logs_who() {
        let dir = tempfile::tempdir().unwrap();
        let state = on(
            dir.path(),
            &clock(),
            MaintOn {
                message: Some("moving disks".into()),
                windows: Vec::new(),
                set_by: "ann@host with `tegami maint on`".into(),
                operator: "ann@host".into(),
            },
        )
        .unwrap();
        assert!(matches!(state.status(), Status::Active { .. }));
        assert!(matches!(
            status(dir.path(), &clock()).unwrap().status(),
            Status::Active { .. }
        ));
        assert!(off(dir.path(), &clock(), "ann@host").unwrap());
        assert!(!off(dir.path(), &clock(), "ann@host").unwrap());
        assert_eq!(status(dir.path(), &clock()).unwrap().status(), Status::Off);
        let log = std::fs::read_to_string(dir.path().join("log/maintenance.log")).unwrap();
        assert!(log.contains("maintenance configured by ann@host"), "{log}");
        assert!(log.contains("maintenance lifted by ann@host"), "{log}");
    }

    #[test]
    fn a_bad_window_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let e = on(
            dir.path(),
            &clock(),
            MaintOn {
                message: None,
                windows: vec!["22:05-23:00".into()],
                set_by: "x".into(),
                operator: "x".into(),
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        assert!(!dir.path().join("maint").exists());
    }

    fn request(message: &str, windows: &[&str]) -> MaintOn {
        MaintOn {
            message: Some(message.into()),
            windows: windows.iter().map(|w| w.to_string()).collect(),
            set_by: "x".into(),
            operator: "x".into(),
        }
    }

    #[test]
    fn a_message_that_would_break_a_reply_line_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "two\r\n250 lines",
            "tab\there",
            &"x".repeat(MESSAGE_MAX_CHARS + 1),
        ] {
            let e = on(dir.path(), &clock(), request(bad, &[])).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{bad:?}: {e}");
            assert!(!dir.path().join("maint").exists(), "{bad:?} wrote the file");
        }
        let longest = "メ".repeat(MESSAGE_MAX_CHARS);
        let state = on(dir.path(), &clock(), request(&longest, &[])).unwrap();
        assert_eq!(
            state.maintenance.unwrap().message.as_deref(),
            Some(&*longest)
        );
        let many: Vec<String> = (0..=WINDOWS_MAX)
            .map(|h| format!("{:02}:00-{:02}:10", h % 24, h % 24))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            preview(&clock(), &request("m", &many)),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn a_preview_says_what_on_would_set_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let clock = gate::Clock::with_zone(jiff::tz::TimeZone::UTC);
        let now = clock.now();
        let minute = now.hour() as u16 * 60 + now.minute() as u16;
        let start = minute / 10 * 10;
        let end = (start + 20) % 1440;
        let window = format!("{}-{}", gate::maint::hhmm(start), gate::maint::hhmm(end));
        let state = preview(&clock, &request("  disks  ", &[&window])).unwrap();
        match state.status() {
            Status::Active {
                message,
                since,
                until,
            } => {
                assert_eq!(message, "disks");
                assert!(since.unwrap() <= now && until.unwrap() > now);
            }
            other => panic!("a window around now is not in force: {other:?}"),
        }
        assert!(!dir.path().join("maint").exists());
        let empty = preview(&clock, &request("", &[])).unwrap();
        assert_eq!(
            empty.maintenance.unwrap().message(),
            gate::maint::DEFAULT_MESSAGE
        );
    }
}
