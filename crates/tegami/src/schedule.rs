//! The daily check and optimisation, and the daily backup, built into the server: no cron
//! needed. This is the service (its loop, its threads, the gate it waits on); what is due,
//! skipped or missed, and what a scheduled backup does, `ops::schedule` decides.
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

use gate::maint::hhmm;
use gate::{Clock, Gate};
use net::Shutdown;
use ops::config::{BackupConfig, Schedule};
use ops::schedule::{Daily, until_next_minute};
use store::Store;
use tracing::{error, info, warn};

use ops::check::{CheckRequest, Trigger};

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
    let mut daily = Daily::new(check_at);
    loop {
        let now = clock.now();
        if daily.due(&now) {
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
    if let Some(reason) = ops::schedule::check_skipped(data, clock, check_at) {
        warn!(%reason, "scheduled check skipped");
        return;
    }
    // The manual's behaviour, on request: maintenance mode for the length of the run.
    let set_maintenance = schedule.maintenance_during_check;
    if set_maintenance {
        match ops::schedule::check_maintenance_set(data, clock) {
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
            Err(e) => {
                error!(error = %e.one_line(), "cannot set maintenance mode for the scheduled check")
            }
        }
    }
    let (store, dir, clock_for_run) = (store.clone(), data.to_path_buf(), clock.clone());
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let silent = ops::progress::silent();
        let request = CheckRequest {
            repair: false,
            trigger: Trigger::Scheduled,
        };
        let outcome = ops::check::check(store.as_ref(), &dir, &clock_for_run, &request, &silent)?;
        info!(result = %outcome.verdict, seconds = outcome.seconds, "scheduled check finished");
        if !outcome.healthy {
            error!("the scheduled check found problems; see log/maintenance_result.log");
        }
        let outcome = ops::check::optimize(
            store.as_ref(),
            &dir,
            &clock_for_run,
            Trigger::Scheduled,
            &silent,
        )?;
        info!(result = %outcome.done, seconds = outcome.seconds, "scheduled optimisation finished");
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
        match ops::schedule::check_maintenance_lift(data) {
            Ok(true) => {
                let _ = tokio::time::timeout(GATE_NOTICE, gate.maintenance_seen(false)).await;
            }
            Ok(false) => {}
            Err(e) => {
                error!(error = %e.one_line(), "cannot lift the maintenance mode set for the scheduled check")
            }
        }
    }
}

async fn backups(settings: BackupConfig, data: PathBuf, clock: Clock, mut stop: Shutdown) {
    let Some(at) = settings.at else {
        return;
    };
    info!(
        at = %hhmm(at),
        dir = %settings.root(&data).display(),
        keep_daily = settings.keep_daily,
        keep_weekly = settings.keep_weekly,
        "daily backup scheduled"
    );
    let (dir, start_clock, start_settings) = (data.clone(), clock.clone(), settings.clone());
    if let Ok(Some(missed)) = tokio::task::spawn_blocking(move || {
        ops::schedule::backup_missed_at_start(&dir, &start_settings, &start_clock)
    })
    .await
    {
        error!(%missed, "scheduled backup missed");
    }
    let mut daily = Daily::new(at);
    loop {
        let now = clock.now();
        if daily.due(&now) {
            let (data, clock, settings) = (data.clone(), clock.clone(), settings.clone());
            let result = tokio::task::spawn_blocking(move || {
                ops::schedule::backup(&data, &settings, &clock)
            })
            .await;
            match result {
                Ok(Ok(created)) => match created.damage() {
                    Some(damage) => error!(
                        backup = %created.id(),
                        %damage,
                        "the scheduled backup found damage; see log/backup_result.log"
                    ),
                    None => info!(backup = %created.id(), "scheduled backup finished"),
                },
                Ok(Err(e)) => error!(error = %e.one_line(), "scheduled backup failed"),
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
