//! The installation at a glance, for a dashboard: the listeners, the data volume with the
//! forecast of when it fills, the WAL against its cap, the queue, the latest check,
//! optimisation and backup with their results, the alerts that hold now and maintenance.
//! Each figure comes from the function that owns it (doctor, stats, check, alerts, maint);
//! this only gathers them, with bounded reads, so it answers fast on a large store.

use store::QueueStats;

use crate::alerts::Condition;
use crate::check::{LastResult, ResultLog};
use crate::doctor::{Doctor, Finding};
use crate::maint::MaintState;
use crate::stats::Forecast;
use crate::{Ops, Result};

#[derive(Debug, Clone)]
pub struct Overview {
    /// Whether the server runs and holds each configured address.
    pub listeners: Vec<Finding>,
    /// Free and total bytes of the data volume, when it can be read.
    pub volume: Option<(u64, u64)>,
    /// When free space runs down to each threshold; `None` when the volume cannot be read.
    pub forecast: Option<Forecast>,
    pub wal_bytes: u64,
    pub wal_cap_bytes: u64,
    pub queue: QueueStats,
    /// The latest result of the check, the optimisation and the backup, in that order
    /// (`None`: it never ran).
    pub results: Vec<(ResultLog, Option<LastResult>)>,
    /// The alert conditions that hold now.
    pub alerts: Vec<Condition>,
    pub maintenance: MaintState,
}

impl Overview {
    /// Days until the data volume is full for tegami: when the hard floor, below which
    /// every write is refused, is reached at the fastest growth measured. `None` while the
    /// store does not grow (or no forecast could be made).
    pub fn days_until_full(&self) -> Option<f64> {
        self.forecast.as_ref()?.crossings.last()?.days
    }
}

impl Ops {
    pub fn overview(&self) -> Result<Overview> {
        let data = self.data();
        let config = self.config();
        let store = self.store();
        let results = ResultLog::ALL
            .into_iter()
            .map(|log| Ok((log, crate::check::last_result(data, log)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Overview {
            listeners: Doctor::new(data).listeners(config),
            volume: crate::stats::volume(data).ok(),
            forecast: self.stats_forecast().ok(),
            wal_bytes: store.wal_bytes(),
            wal_cap_bytes: config.wal.cap_bytes,
            queue: store.queue_stats()?,
            results,
            alerts: crate::alerts::active_now(self),
            maintenance: crate::maint::status(data, self.clock())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn a_fresh_store_at_a_glance() {
        let dir = tempfile::tempdir().unwrap();
        let raw: crate::config::RawConfig = toml::from_str("[backup]\nat = \"23:00\"\n").unwrap();
        let ops = Ops::open(dir.path(), Config::resolve(raw).unwrap()).unwrap();
        let o = ops.overview().unwrap();
        assert_eq!(o.queue.messages, 0);
        assert!(
            o.results.iter().all(|(_, last)| last.is_none()),
            "{:?}",
            o.results
        );
        assert_eq!(o.maintenance.status(), gate::Status::Off);
        assert_eq!(o.wal_cap_bytes, 64 << 20);
        assert!(
            o.volume
                .is_some_and(|(free, total)| free <= total && total > 0)
        );
        // A daily backup is configured and none was taken: the alert holds now.
        assert!(
            o.alerts.iter().any(|a| a.key == "backup_too_old"),
            "{:?}",
            o.alerts
        );
        assert_eq!(o.listeners[0].item, "server");

        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        std::fs::write(
            dir.path().join("log/maintenance_result.log"),
            "result: 1 problems: 1 database\nmanual run\n",
        )
        .unwrap();
        // The check alert reads the history, as the alerts service does.
        std::fs::write(
            dir.path().join("log/maintenance.log"),
            "2026-12-07 03:00:00 +0000 check finished: 1 problems: 1 database in 0.1 s\n",
        )
        .unwrap();
        crate::maint::on(
            dir.path(),
            ops.clock(),
            crate::maint::MaintOn {
                message: Some("moving".into()),
                windows: Vec::new(),
                set_by: "t".into(),
                operator: "t".into(),
            },
        )
        .unwrap();
        let o = ops.overview().unwrap();
        let (log, check) = &o.results[0];
        assert_eq!(*log, ResultLog::Check);
        assert!(
            check
                .as_ref()
                .is_some_and(|c| !c.good && c.result == "1 problems: 1 database")
        );
        assert!(matches!(
            o.maintenance.status(),
            gate::Status::Active { .. }
        ));
        assert!(
            o.alerts.iter().any(|a| a.key == "check_failed"),
            "{:?}",
            o.alerts
        );
    }
}
