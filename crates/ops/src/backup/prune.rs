//! The retention policy of backups and the prune that applies it: which backups stay (the
//! newest of each of the last days and weeks, the newest and the newest verified one, what
//! retention does not own) and removing the rest.

use std::path::{Path, PathBuf};

use gate::Clock;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use store::backup::{self as stored, Entry, EntryState, RootLock};

use super::{from_backup, log_line};
use crate::config::BackupConfig;
use crate::error::Result;

/// How many days and ISO weeks keep one backup each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub daily: usize,
    pub weekly: usize,
}

impl Retention {
    /// The configured retention (`[backup] keep_daily`, `keep_weekly`).
    pub fn configured(settings: &BackupConfig) -> Retention {
        Retention {
            daily: settings.keep_daily,
            weekly: settings.keep_weekly,
        }
    }
}

/// Why a backup is kept; absent from the plan means it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    Newest,
    NewestVerified,
    Daily(String),
    Weekly(String),
    PreMigration,
    Unreadable,
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::Newest => f.write_str("the newest backup"),
            Keep::NewestVerified => f.write_str("the newest verified backup"),
            Keep::Daily(day) => write!(f, "daily, {day}"),
            Keep::Weekly(week) => write!(f, "weekly, {week}"),
            Keep::PreMigration => f.write_str("taken before a schema migration: remove it by hand"),
            Keep::Unreadable => f.write_str("its manifest cannot be read: look at it by hand"),
        }
    }
}

/// Decides which backups stay: the newest one of each of the last `daily` days that have
/// a backup, the newest of each of the last `weekly` ISO weeks, the newest backup and the
/// newest verified one whatever the settings, and everything retention does not own
/// (pre-migration backups, unreadable directories). Days and weeks are local time.
pub fn plan(entries: &[Entry], retention: Retention, tz: &TimeZone) -> Vec<Option<Keep>> {
    let mut keep: Vec<Option<Keep>> = entries
        .iter()
        .map(|e| match &e.state {
            EntryState::Complete { manifest, .. }
                if manifest.trigger == stored::Trigger::PreMigration =>
            {
                Some(Keep::PreMigration)
            }
            EntryState::Unreadable(_) => Some(Keep::Unreadable),
            _ => None,
        })
        .collect();
    let mut newest_first: Vec<usize> = (0..entries.len())
        .filter(|&i| keep[i].is_none() && entries[i].manifest().is_some())
        .collect();
    newest_first.sort_by_key(|&i| std::cmp::Reverse((entries[i].created(), entries[i].id.clone())));
    // As borg does it: each rule walks from the newest backup back, takes the newest one of
    // every day (or week) it meets, and counts only those no earlier rule kept already, so
    // weekly backups reach back beyond the daily ones.
    let local = |i: usize| {
        Timestamp::from_second(entries[i].created())
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(tz.clone())
            .date()
    };
    let mut rule = |limit: usize, period: &dyn Fn(usize) -> (String, Keep)| {
        let mut last = None;
        let mut kept = 0;
        for &i in &newest_first {
            if kept == limit {
                break;
            }
            let (name, why) = period(i);
            if last.as_ref() != Some(&name) {
                last = Some(name);
                if keep[i].is_none() {
                    keep[i] = Some(why);
                    kept += 1;
                }
            }
        }
    };
    rule(retention.daily, &|i| {
        let day = local(i).to_string();
        (day.clone(), Keep::Daily(day))
    });
    rule(retention.weekly, &|i| {
        let week = local(i).iso_week_date();
        let name = format!("{}-W{:02}", week.year(), week.week());
        (name.clone(), Keep::Weekly(name))
    });
    if let Some(&newest) = newest_first.first() {
        keep[newest].get_or_insert(Keep::Newest);
    }
    if let Some(&good) = newest_first.iter().find(
        |&&i| matches!(&entries[i].state, EntryState::Complete { verified: Some(v), .. } if v.ok),
    ) {
        keep[good].get_or_insert(Keep::NewestVerified);
    }
    keep
}

/// A prune to run: retention from the request where given, else from the config.
#[derive(Debug, Clone, Default)]
pub struct PruneRequest {
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    /// Decide, and remove nothing.
    pub dry_run: bool,
    /// The backup directory; None: the configured one.
    pub dir: Option<PathBuf>,
}

/// What became of one backup: kept and why, or (`None`) removed, or to be removed in a dry
/// run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: String,
    pub keep: Option<Keep>,
}

#[derive(Debug, Clone)]
pub struct Pruned {
    pub root: PathBuf,
    /// False when the backup directory does not exist: nothing to prune.
    pub found: bool,
    pub retention: Retention,
    pub dry_run: bool,
    /// Every finished or unreadable backup, oldest first.
    pub decisions: Vec<Decision>,
    /// Interrupted backups and removals that were cleaned up (none in a dry run).
    pub leftovers: Vec<String>,
}

/// Applies the retention to a backup directory under its lock (a backup running meanwhile
/// is waited for), cleans up what interrupted runs left, and logs what it removed.
pub fn prune(
    data: &Path,
    settings: &BackupConfig,
    clock: &Clock,
    request: &PruneRequest,
) -> Result<Pruned> {
    let root = request.dir.clone().unwrap_or_else(|| settings.root(data));
    let configured = Retention::configured(settings);
    let retention = Retention {
        daily: request.keep_daily.unwrap_or(configured.daily),
        weekly: request.keep_weekly.unwrap_or(configured.weekly),
    };
    let mut pruned = Pruned {
        root,
        found: false,
        retention,
        dry_run: request.dry_run,
        decisions: Vec::new(),
        leftovers: Vec::new(),
    };
    if !pruned.root.is_dir() {
        return Ok(pruned);
    }
    pruned.found = true;
    let lock = RootLock::acquire(&pruned.root, false).map_err(from_backup)?;
    if !request.dry_run {
        pruned.leftovers = lock.clean_leftovers().map_err(from_backup)?;
    }
    let entries: Vec<Entry> = stored::list(&pruned.root)
        .map_err(from_backup)?
        .into_iter()
        .filter(|e| !matches!(e.state, EntryState::Incomplete))
        .collect();
    let plan = plan(&entries, retention, clock.time_zone());
    let mut removed = Vec::new();
    for (entry, keep) in entries.iter().zip(plan) {
        if keep.is_none() && !request.dry_run {
            lock.remove(entry).map_err(from_backup)?;
            removed.push(entry.id.clone());
        }
        pruned.decisions.push(Decision {
            id: entry.id.clone(),
            keep,
        });
    }
    if !request.dry_run {
        log_line(
            &data.join("log"),
            clock,
            &format!(
                "prune: removed {} backups{} ({} daily, {} weekly kept)",
                removed.len(),
                if removed.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", removed.join(", "))
                },
                retention.daily,
                retention.weekly
            ),
        );
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, created: i64, trigger: stored::Trigger, verified: Option<bool>) -> Entry {
        Entry {
            id: id.into(),
            path: PathBuf::from(id),
            state: EntryState::Complete {
                manifest: Box::new(super::super::tests::manifest(id, created, trigger)),
                verified: verified.map(|ok| stored::Verified {
                    at_unix: created,
                    ok,
                    problem: None,
                }),
            },
        }
    }

    fn kept(entries: &[Entry], daily: usize, weekly: usize) -> Vec<String> {
        plan(entries, Retention { daily, weekly }, &TimeZone::UTC)
            .into_iter()
            .zip(entries)
            .filter(|(k, _)| k.is_some())
            .map(|(_, e)| e.id.clone())
            .collect()
    }

    const DAY: i64 = 86_400;
    // Monday 2026-11-02 00:00 UTC.
    const MONDAY: i64 = 1_793_577_600;

    #[test]
    fn retention_keeps_the_newest_of_each_day_then_of_each_week() {
        // Two backups a day (00:00 and 23:00) for 30 days.
        let entries: Vec<Entry> = (0..30)
            .flat_map(|d| {
                [0, 23 * 3600].map(|at| {
                    let t = MONDAY + d * DAY + at;
                    entry(&stored::compact_utc(t), t, stored::Trigger::Scheduled, None)
                })
            })
            .collect();
        let kept = kept(&entries, 3, 2);
        assert_eq!(
            kept,
            [
                // The newest of the two weeks before the three days (Sundays at 23:00)...
                "20261115T230000Z",
                "20261122T230000Z",
                // ... and the newest of each of the last three days.
                "20261129T230000Z",
                "20261130T230000Z",
                "20261201T230000Z",
            ]
        );
    }

    #[test]
    fn retention_never_removes_the_newest_nor_what_it_does_not_own() {
        let entries = vec![
            entry("old-good", MONDAY, stored::Trigger::Manual, Some(true)),
            entry("pre", MONDAY + DAY, stored::Trigger::PreMigration, None),
            entry(
                "bad",
                MONDAY + 2 * DAY,
                stored::Trigger::Manual,
                Some(false),
            ),
            entry(
                "newest",
                MONDAY + 3 * DAY,
                stored::Trigger::Manual,
                Some(false),
            ),
        ];
        assert_eq!(kept(&entries, 0, 0), ["old-good", "pre", "newest"]);
        let decisions = plan(
            &entries,
            Retention {
                daily: 0,
                weekly: 0,
            },
            &TimeZone::UTC,
        );
        assert_eq!(decisions[0], Some(Keep::NewestVerified));
        assert_eq!(decisions[1], Some(Keep::PreMigration));
        assert_eq!(decisions[3], Some(Keep::Newest));
    }
}
