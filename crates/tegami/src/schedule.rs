//! The daily check and optimisation, and the daily backup, built into the server: no cron
//! needed.
//!
//! Once a day at `maintenance.check_at` (local time) the server runs the integrity check and
//! then the optimisation, online, on a consistent snapshot. As in the manual it replaces,
//! the run is skipped, and the log says why, when its start falls inside a maintenance
//! window or equals a window's end.
//!
//! Once a day at `backup.at` it takes a backup, online, verifies it if configured and
//! applies the retention. Maintenance windows do not stop it: it locks nobody out. A backup
//! that fails, does not verify, or was missed (the server was down when it was due) is
//! logged at error level; `doctor` shows it too.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gate::maint::{check_skip_reason, hhmm};
use gate::{Clock, Gate, Maintenance, oplog};
use net::Shutdown;
use store::Store;
use tracing::{error, info, warn};

use crate::backup::Outcome;
use crate::check::{self, Trigger};
use ops::config::{BackupConfig, Schedule};

/// How long to wait for the watcher to notice the maint file we set or removed; it looks
/// every second, so this only runs out when the watcher is gone.
const GATE_NOTICE: Duration = Duration::from_secs(5);

pub async fn run(
    schedule: Schedule,
    data: PathBuf,
    store: Arc<dyn Store>,
    gate: Arc<Gate>,
    clock: Clock,
    stop: Shutdown,
) {
    // One future for both, so the service ends when both have finished their step.
    tokio::join!(
        backups(
            schedule.backup.clone(),
            data.clone(),
            clock.clone(),
            stop.clone()
        ),
        checks(schedule, data, store, gate, clock, stop),
    );
}

/// Just after the next minute begins, so each minute is looked at once.
fn until_next_minute(now: &jiff::Zoned) -> Duration {
    let into_minute = Duration::from_millis(
        (now.second() as u64) * 1000 + (now.subsec_nanosecond() as u64) / 1_000_000,
    );
    Duration::from_secs(60).saturating_sub(into_minute) + Duration::from_millis(50)
}

async fn checks(
    schedule: Schedule,
    data: PathBuf,
    store: Arc<dyn Store>,
    gate: Arc<Gate>,
    clock: Clock,
    mut stop: Shutdown,
) {
    let Some(check_at) = schedule.check_at else {
        return;
    };
    info!(at = %hhmm(check_at), "daily check and optimisation scheduled");
    let mut last_run: Option<jiff::civil::Date> = None;
    loop {
        let now = clock.now();
        let minute = now.hour() as u16 * 60 + now.minute() as u16;
        if minute == check_at && last_run != Some(now.date()) {
            last_run = Some(now.date());
            run_once(&schedule, &data, &store, &gate, &clock, check_at).await;
        }
        // Wake just after the next minute begins.
        if !stop
            .pause(tokio::time::sleep(until_next_minute(&now)))
            .await
        {
            return;
        }
    }
}

async fn run_once(
    schedule: &Schedule,
    data: &std::path::Path,
    store: &Arc<dyn Store>,
    gate: &Gate,
    clock: &Clock,
    check_at: u16,
) {
    let log_dir = data.join("log");
    let maint_path = data.join("maint");
    let maintenance = Maintenance::load(&maint_path).unwrap_or(None);
    if let Some(reason) = check_skip_reason(check_at, maintenance.as_ref()) {
        warn!(%reason, "scheduled check skipped");
        let _ = oplog::append(
            &log_dir,
            "maintenance.log",
            &clock.now(),
            &format!("scheduled check skipped: {reason}"),
        );
        return;
    }
    // The manual's behaviour, on request: maintenance mode for the length of the run.
    let set_maintenance = schedule.maintenance_during_check;
    if set_maintenance {
        let during = Maintenance {
            message: Some("Scheduled database check in progress".into()),
            windows: Vec::new(),
            set_by: Some("the scheduled check".into()),
            set_at: Some(clock.now().timestamp()),
        };
        match during.save(&maint_path) {
            // Start only once sessions are turned away, or the check is not "during" anything.
            Ok(()) => {
                if tokio::time::timeout(GATE_NOTICE, gate.maintenance_seen(true))
                    .await
                    .is_err()
                {
                    warn!(
                        "maintenance for the scheduled check not in force after {GATE_NOTICE:?}; checking anyway"
                    );
                }
            }
            Err(e) => error!(error = %e, "cannot set maintenance mode for the scheduled check"),
        }
    }
    let (store, dir, clock_for_run) = (store.clone(), data.to_path_buf(), clock.clone());
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let outcome = check::check(
            store.as_ref(),
            &dir,
            &clock_for_run,
            false,
            Trigger::Scheduled,
        )?;
        if !outcome.healthy {
            error!("the scheduled check found problems; see log/maintenance_result.log");
        }
        check::optimize(store.as_ref(), &dir, &clock_for_run, Trigger::Scheduled)?;
        Ok(())
    })
    .await;
    match result {
        Ok(Ok(())) => info!("scheduled check and optimisation finished"),
        Ok(Err(e)) => error!(error = %e, "scheduled check or optimisation failed"),
        Err(e) => error!(error = %e, "scheduled check task failed"),
    }
    if set_maintenance {
        // Lift only what we set: an operator may have taken over maintenance meanwhile.
        let ours = Maintenance::load(&maint_path)
            .ok()
            .flatten()
            .is_some_and(|m| m.set_by.as_deref() == Some("the scheduled check"));
        if ours {
            match std::fs::remove_file(&maint_path) {
                Ok(()) => {
                    let _ = tokio::time::timeout(GATE_NOTICE, gate.maintenance_seen(false)).await;
                }
                Err(e) => {
                    error!(error = %e, "cannot lift the maintenance mode set for the scheduled check")
                }
            }
        }
    }
}

async fn backups(settings: BackupConfig, data: PathBuf, clock: Clock, mut stop: Shutdown) {
    let Some(at) = settings.at else {
        return;
    };
    let root = settings.root(&data);
    info!(
        at = %hhmm(at),
        dir = %root.display(),
        keep_daily = settings.keep_daily,
        keep_weekly = settings.keep_weekly,
        "daily backup scheduled"
    );
    let (dir, now) = (root.clone(), clock.now());
    if let Ok(Some(missed)) =
        tokio::task::spawn_blocking(move || crate::backup::missed(&dir, &now, at)).await
    {
        error!(%missed, "scheduled backup missed");
        let _ = oplog::append(
            &data.join("log"),
            "backup.log",
            &clock.now(),
            &format!("scheduled backup missed: {missed}"),
        );
    }
    let mut last_run: Option<jiff::civil::Date> = None;
    loop {
        let now = clock.now();
        let minute = now.hour() as u16 * 60 + now.minute() as u16;
        if minute == at && last_run != Some(now.date()) {
            last_run = Some(now.date());
            let (data, clock, settings) = (data.clone(), clock.clone(), settings.clone());
            let result = tokio::task::spawn_blocking(move || {
                crate::backup::scheduled(&data, &clock, &settings)
            })
            .await;
            match result {
                Ok(Ok(Outcome {
                    id,
                    damage: Some(damage),
                    ..
                })) => error!(
                    backup = %id,
                    %damage,
                    "the scheduled backup found damage; see log/backup_result.log"
                ),
                Ok(Ok(outcome)) => info!(backup = %outcome.id, "scheduled backup finished"),
                Ok(Err(e)) => error!(error = %format!("{e:#}"), "scheduled backup failed"),
                Err(e) => error!(error = %e, "scheduled backup task failed"),
            }
        }
        if !stop
            .pause(tokio::time::sleep(until_next_minute(&now)))
            .await
        {
            return;
        }
    }
}
