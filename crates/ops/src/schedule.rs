//! The daily schedules' decisions, for the service that runs them in `serve`: when a daily
//! job is due, whether the scheduled check must be skipped for a maintenance window, the
//! maintenance mode it may set and lift, which scheduled backup a down server missed, and
//! what a scheduled backup run does (take, verify if configured, prune). The service
//! itself (the loop, the waiting, the threads) is the face's.

use std::path::Path;
use std::time::Duration;

use gate::maint::check_skip_reason;
use gate::{Clock, Maintenance, oplog};
use jiff::Zoned;
use jiff::civil::Date;

use crate::backup::{self, CreateRequest, Created, PruneRequest, Trigger};
use crate::config::BackupConfig;
use crate::error::{Error, Result};
use crate::progress::silent;

/// A job that runs once a day in the minute `at` (minutes after local midnight).
#[derive(Debug, Clone)]
pub struct Daily {
    at: u16,
    last_run: Option<Date>,
}

impl Daily {
    pub fn new(at: u16) -> Daily {
        Daily { at, last_run: None }
    }

    /// True when the job should run now: `now` is in its minute and it has not run today.
    /// Saying so counts as the day's run, so a second look in the same minute (or after a
    /// clock step back) says false.
    pub fn due(&mut self, now: &Zoned) -> bool {
        let minute = now.hour() as u16 * 60 + now.minute() as u16;
        if minute == self.at && self.last_run != Some(now.date()) {
            self.last_run = Some(now.date());
            true
        } else {
            false
        }
    }
}

/// Just after the next minute begins, so each minute is looked at once.
pub fn until_next_minute(now: &Zoned) -> Duration {
    let into_minute = Duration::from_millis(
        (now.second() as u64) * 1000 + (now.subsec_nanosecond() as u64) / 1_000_000,
    );
    Duration::from_secs(60).saturating_sub(into_minute) + Duration::from_millis(50)
}

// ---------------------------------------------------------------------------------------
// The daily check

/// Who sets the maintenance mode the scheduled check runs under, so that it lifts only its
/// own (an operator may have taken over meanwhile).
const CHECK_SETS_MAINTENANCE: &str = "the scheduled check";

/// Why the scheduled check starting at `check_at` must not run now (its start falls in a
/// maintenance window, or maintenance mode is in force until lifted); the skip is logged
/// in `log/maintenance.log`. None: run it.
pub fn check_skipped(data: &Path, clock: &Clock, check_at: u16) -> Option<String> {
    let maintenance = Maintenance::load(&data.join("maint")).unwrap_or(None);
    let reason = check_skip_reason(check_at, maintenance.as_ref())?;
    if let Err(e) = oplog::append(
        &data.join("log"),
        "maintenance.log",
        &clock.now(),
        &format!("scheduled check skipped: {reason}"),
    ) {
        tracing::warn!(error = %e, "cannot append to log/maintenance.log");
    }
    Some(reason)
}

/// Sets maintenance mode for the length of the scheduled check (when the config asks for
/// the manual's behaviour), marked as the check's own.
pub fn check_maintenance_set(data: &Path, clock: &Clock) -> Result<()> {
    let during = Maintenance {
        message: Some("Scheduled database check in progress".into()),
        windows: Vec::new(),
        set_by: Some(CHECK_SETS_MAINTENANCE.into()),
        set_at: Some(clock.now().timestamp()),
    };
    during.save(&data.join("maint")).map_err(Error::failed)
}

/// Lifts the maintenance mode the scheduled check set, and only that: one an operator set
/// meanwhile stays. True when it lifted it.
pub fn check_maintenance_lift(data: &Path) -> Result<bool> {
    let path = data.join("maint");
    let ours = Maintenance::load(&path)
        .ok()
        .flatten()
        .is_some_and(|m| m.set_by.as_deref() == Some(CHECK_SETS_MAINTENANCE));
    if !ours {
        return Ok(false);
    }
    std::fs::remove_file(&path).map_err(|source| Error::Io {
        context: format!("cannot remove {}", path.display()),
        source,
    })?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------
// The daily backup

/// The scheduled backup that should have run last: today's at `at` once an hour has passed
/// since (time for it to finish), else yesterday's.
pub fn last_due(now: &Zoned, at: u16) -> Option<Zoned> {
    let today = now
        .date()
        .at((at / 60) as i8, (at % 60) as i8, 0, 0)
        .to_zoned(now.time_zone().clone())
        .ok()?;
    if today
        .checked_add(jiff::SignedDuration::from_hours(1))
        .ok()?
        <= *now
    {
        Some(today)
    } else {
        today.checked_sub(jiff::Span::new().days(1)).ok()
    }
}

/// A scheduled backup that did not happen: the newest backup is older than it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissedBackup {
    /// When it was due.
    pub due: Zoned,
    /// The newest backup there is, and when it was taken (seconds since the epoch).
    pub newest: String,
    pub newest_unix: i64,
}

impl std::fmt::Display for MissedBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the scheduled backup due at {} did not happen; the newest backup, {}, is from {}",
            self.due.strftime("%Y-%m-%d %H:%M"),
            self.newest,
            backup::local_time(self.newest_unix, self.due.time_zone())
        )
    }
}

/// The scheduled backup missed, when the newest backup in `root` is older than the one
/// that should have run last. No backup at all is not "missed": the first one has not been
/// due yet.
pub fn missed_backup(root: &Path, now: &Zoned, at: u16) -> Option<MissedBackup> {
    let newest = backup::newest(root)?;
    let due = last_due(now, at)?;
    // A minute of slack: the backup is stamped when it starts, on the minute it was due.
    if newest.created() + 60 >= due.timestamp().as_second() {
        return None;
    }
    Some(MissedBackup {
        due,
        newest_unix: newest.created(),
        newest: newest.id,
    })
}

/// At the start of the service: the backup missed while the server was down, if one was,
/// logged in `log/backup.log`.
pub fn backup_missed_at_start(
    data: &Path,
    settings: &BackupConfig,
    clock: &Clock,
) -> Option<MissedBackup> {
    let at = settings.at?;
    let missed = missed_backup(&settings.root(data), &clock.now(), at)?;
    backup::log_line(
        &data.join("log"),
        clock,
        &format!("scheduled backup missed: {missed}"),
    );
    Some(missed)
}

/// The scheduled run: a backup, its verification if configured, then the configured
/// retention. A prune that fails does not fail the run (the backup was taken); it is
/// logged.
pub fn backup(data: &Path, settings: &BackupConfig, clock: &Clock) -> Result<Created> {
    let request = CreateRequest {
        dir: None,
        copy_blobs: false,
        verify: settings.verify,
        trigger: Trigger::Scheduled,
    };
    let created = backup::create(data, settings, clock, &request, &silent())?;
    if let Err(e) = backup::prune(data, settings, clock, &PruneRequest::default()) {
        tracing::error!(error = %e.one_line(), "pruning old backups failed after the scheduled backup");
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn at(text: &str) -> Zoned {
        text.parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(TimeZone::UTC)
            .unwrap()
    }

    #[test]
    fn a_daily_job_is_due_once_in_its_minute() {
        let mut job = Daily::new(3 * 60);
        assert!(!job.due(&at("2026-11-23T02:59:59")));
        assert!(job.due(&at("2026-11-23T03:00:00")));
        assert!(!job.due(&at("2026-11-23T03:00:30")), "twice in the minute");
        assert!(!job.due(&at("2026-11-23T03:01:00")));
        assert!(job.due(&at("2026-11-24T03:00:10")), "the next day");
    }

    #[test]
    fn the_last_due_backup_is_todays_an_hour_after_it() {
        let due = |now: &str| last_due(&at(now), 3 * 60).unwrap().datetime().to_string();
        assert_eq!(due("2026-11-23T03:59:00"), "2026-11-22T03:00:00");
        assert_eq!(due("2026-11-23T04:00:00"), "2026-11-23T03:00:00");
        assert_eq!(due("2026-11-23T00:10:00"), "2026-11-22T03:00:00");
    }

    #[test]
    fn the_minute_wait_ends_just_after_the_next_minute() {
        assert_eq!(
            until_next_minute(&at("2026-11-23T03:00:45")),
            Duration::from_millis(15_050)
        );
        assert_eq!(
            until_next_minute(&at("2026-11-23T03:00:00")),
            Duration::from_millis(60_050)
        );
    }

    #[test]
    fn a_backup_older_than_the_last_due_one_was_missed() {
        use crate::backup::tests::plant;
        use store::backup::Trigger::{PreMigration, Scheduled};
        let root = tempfile::tempdir().unwrap();
        let unix = |text: &str| at(text).timestamp().as_second();
        plant(
            root.path(),
            "yesterday",
            unix("2026-11-22T03:00:00"),
            Scheduled,
        );
        // The store's own backup before a migration is not the schedule's.
        plant(
            root.path(),
            "pre",
            unix("2026-11-23T02:00:00"),
            PreMigration,
        );
        let missed = missed_backup(root.path(), &at("2026-11-23T12:00:00"), 3 * 60).unwrap();
        assert_eq!(
            missed.to_string(),
            "the scheduled backup due at 2026-11-23 03:00 did not happen; the newest backup, \
             yesterday, is from 2026-11-22 03:00"
        );
        // Within the hour after it was due, yesterday's is the one that counts.
        assert_eq!(
            missed_backup(root.path(), &at("2026-11-23T03:30:00"), 3 * 60),
            None
        );
        // Stamped a few seconds after it was due: taken, not missed.
        plant(root.path(), "today", unix("2026-11-23T03:00:20"), Scheduled);
        assert_eq!(
            missed_backup(root.path(), &at("2026-11-23T12:00:00"), 3 * 60),
            None
        );
    }

    #[test]
    fn no_backup_at_all_was_not_missed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            missed_backup(dir.path(), &at("2026-11-23T12:00:00"), 3 * 60),
            None
        );
    }
}
