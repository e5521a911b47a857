//! The watcher: one task that re-reads the maintenance file and measures free space every
//! second, and publishes the result for every session to consult.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::disk::{self, DiskState, DiskThresholds};
use crate::maint::{Maintenance, Status};
use crate::room::{self, NoRoom, Reservation, Room};
use crate::{Clock, oplog};

#[derive(Debug, Clone)]
pub struct GateConfig {
    pub data_dir: PathBuf,
    pub thresholds: DiskThresholds,
    pub clock: Clock,
    /// How often the file and the disk are looked at. The contract is "within 2 seconds".
    pub poll: Duration,
}

/// Maintenance in force, as sessions show it to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveMaintenance {
    pub message: String,
    /// Local "YYYY-MM-DD HH:MM" when it began, when known.
    pub since: Option<String>,
    /// Local "YYYY-MM-DD HH:MM" when it ends, if it has a window.
    pub until: Option<String>,
    pub retry_after_secs: Option<u64>,
}

impl ActiveMaintenance {
    /// One line for a protocol reply: the message and the end time.
    pub fn reply_text(&self) -> String {
        match &self.until {
            Some(until) => format!("{} (maintenance until {until})", self.message),
            None => format!("{} (maintenance until further notice)", self.message),
        }
    }
}

pub struct Gate {
    maintenance: watch::Receiver<Option<ActiveMaintenance>>,
    disk: watch::Receiver<DiskState>,
    /// Free space promised to messages being written; none without a data directory.
    room: Option<Arc<Room>>,
}

impl Gate {
    /// Looks once, synchronously, so the first connection already sees the truth, then
    /// starts the watcher task on the current tokio runtime.
    pub fn start(config: GateConfig) -> Arc<Gate> {
        let room = Arc::new(Room::new(config.data_dir.clone(), config.thresholds));
        let mut watcher = Watcher {
            config,
            maintenance: None,
            maint_error: None,
            disk: DiskState::Unknown,
        };
        let (maint_tx, maint_rx) = watch::channel(watcher.look_at_maintenance());
        let (disk_tx, disk_rx) = watch::channel(watcher.look_at_disk());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(watcher.config.poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if maint_tx.is_closed() && disk_tx.is_closed() {
                    return;
                }
                let maintenance = watcher.look_at_maintenance();
                maint_tx.send_if_modified(|current| replace_if_changed(current, maintenance));
                let disk = watcher.look_at_disk();
                disk_tx.send_if_modified(|current| replace_if_changed(current, disk));
            }
        });
        Arc::new(Gate {
            maintenance: maint_rx,
            disk: disk_rx,
            room: Some(room),
        })
    }

    /// A gate that never closes, for tests and tools that run without the watcher.
    pub fn open() -> Arc<Gate> {
        let (_, maintenance) = watch::channel(None);
        let (_, disk) = watch::channel(DiskState::Unknown);
        Arc::new(Gate {
            maintenance,
            disk,
            room: None,
        })
    }

    pub fn maintenance(&self) -> Option<ActiveMaintenance> {
        self.maintenance.borrow().clone()
    }

    /// Resolves once maintenance is in force (at once if it already is).
    pub async fn maintenance_started(&self) {
        let mut rx = self.maintenance.clone();
        if rx.wait_for(Option::is_some).await.is_err() {
            // The watcher is gone (the server is stopping): never resolve.
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once the watcher has seen maintenance begin (`true`) or end (`false`).
    /// Whoever writes the maint file and must know that sessions obey it waits on this.
    pub async fn maintenance_seen(&self, active: bool) {
        let mut rx = self.maintenance.clone();
        if rx.wait_for(|m| m.is_some() == active).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub fn disk(&self) -> DiskState {
        *self.disk.borrow()
    }

    /// Claims free space for a message of `bytes` about to be written, measured now and
    /// net of every other claim, so concurrent deliveries cannot together pass the hard
    /// floor. Hold the reservation until the message is committed or abandoned.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation, NoRoom> {
        match &self.room {
            Some(room) => room.reserve(bytes),
            None => Ok(room::unlimited()),
        }
    }
}

fn replace_if_changed<T: PartialEq>(current: &mut T, new: T) -> bool {
    if *current == new {
        return false;
    }
    *current = new;
    true
}

struct Watcher {
    config: GateConfig,
    /// What was in force at the last look, to log only the changes.
    maintenance: Option<ActiveMaintenance>,
    maint_error: Option<String>,
    disk: DiskState,
}

impl Watcher {
    fn look_at_maintenance(&mut self) -> Option<ActiveMaintenance> {
        let path = self.config.data_dir.join("maint");
        let now = self.config.clock.now();
        let file = match Maintenance::load(&path) {
            Ok(file) => {
                self.maint_error = None;
                file
            }
            Err(e) => {
                // The file is there, so maintenance was meant; a file we cannot read still
                // closes the doors rather than letting users in on a guess.
                let text = e.to_string();
                if self.maint_error.as_ref() != Some(&text) {
                    error!(error = %text, "cannot read the maintenance file; treating it as maintenance until fixed or removed");
                    self.maint_error = Some(text);
                }
                Some(Maintenance {
                    message: None,
                    windows: Vec::new(),
                    set_by: None,
                    set_at: None,
                })
            }
        };
        let active = file.as_ref().and_then(|m| match m.status_at(&now) {
            Status::Active {
                message,
                since,
                until,
            } => Some(ActiveMaintenance {
                message,
                since: since.map(|t| t.strftime("%Y-%m-%d %H:%M").to_string()),
                retry_after_secs: until.as_ref().map(|u| {
                    u.timestamp()
                        .duration_since(now.timestamp())
                        .as_secs()
                        .max(60) as u64
                }),
                until: until.map(|t| t.strftime("%Y-%m-%d %H:%M").to_string()),
            }),
            _ => None,
        });
        let log_dir = self.config.data_dir.join("log");
        match (&self.maintenance, &active) {
            (None, Some(now_active)) => {
                let by = file
                    .as_ref()
                    .and_then(|m| m.set_by.clone())
                    .unwrap_or_else(|| "the maint file".into());
                let how = if file.as_ref().is_some_and(|m| !m.windows.is_empty()) {
                    "window opened"
                } else {
                    "set"
                };
                info!(by = %by, message = %now_active.message, until = ?now_active.until, "maintenance started ({how})");
                let _ = oplog::append(
                    &log_dir,
                    "maintenance.log",
                    &now,
                    &format!(
                        "maintenance started ({how} by {by}): {}",
                        now_active.reply_text()
                    ),
                );
            }
            (Some(_), None) => {
                let why = if file.is_none() {
                    "the maint file was removed"
                } else {
                    "its window closed"
                };
                info!(reason = why, "maintenance ended");
                let _ = oplog::append(
                    &log_dir,
                    "maintenance.log",
                    &now,
                    &format!("maintenance ended: {why}"),
                );
            }
            _ => {}
        }
        self.maintenance = active.clone();
        active
    }

    fn look_at_disk(&mut self) -> DiskState {
        let state = match disk::free_space(&self.config.data_dir) {
            Ok((free, _)) => disk::classify(free, &self.config.thresholds),
            Err(e) => {
                if self.disk != DiskState::Unknown {
                    warn!(error = %e, "cannot measure free space of the data directory");
                }
                DiskState::Unknown
            }
        };
        let class = |s: &DiskState| std::mem::discriminant(s);
        if class(&state) != class(&self.disk) {
            let thresholds = self.config.thresholds;
            match state {
                DiskState::Ok { free } => {
                    info!(free, "disk space is sufficient again; accepting mail")
                }
                DiskState::Low { free } => warn!(
                    free,
                    min_free = thresholds.min_free,
                    "disk space low: new mail is deferred with 452 4.3.1 until space is freed"
                ),
                DiskState::Critical { free } => error!(
                    free,
                    hard_floor = thresholds.hard_floor,
                    "disk space critical: every write is refused until space is freed"
                ),
                DiskState::Unknown => {}
            }
        }
        self.disk = state;
        state
    }
}
