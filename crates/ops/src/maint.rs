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

/// Sets maintenance: writes the file and logs who did it.
pub fn on(data: &Path, clock: &gate::Clock, request: MaintOn) -> Result<MaintState> {
    let windows = request
        .windows
        .iter()
        .map(|w| Window::parse(w))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::invalid)?;
    std::fs::create_dir_all(data).io_context(|| format!("cannot create {}", data.display()))?;
    let now = clock.now();
    let maintenance = Maintenance {
        message: request.message,
        windows,
        set_by: Some(request.set_by),
        set_at: Some(now.timestamp()),
    };
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
}
