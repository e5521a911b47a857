//! What the server measures about itself: the usage ranking, the disk report, the growth
//! forecast, the health problems, and the two services that keep figures fresh (the WAL
//! bound and the usage flush).
//!
//! [`Monitor`] holds the live figures (atomics, so any task may update them without a
//! lock); the WAL task writes its part every time it looks.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;
use store::Store;
use tracing::{info, warn};

use crate::config::{Config, StatsConfig, WalConfig};
use crate::{Error, Ops, Result};

/// The length of one usage sample; `stats usage` covers the last six of them.
const SAMPLE_SECS: i64 = 600;
const DAY_SECS: i64 = 86_400;

/// The server's live figures.
#[derive(Debug, Default)]
pub struct Monitor {
    pub wal_bytes: AtomicU64,
    pub wal_checkpoints: AtomicU64,
    /// Checkpoints that readers kept from truncating the log.
    pub wal_checkpoints_incomplete: AtomicU64,
    /// True while the log is above its cap even after a checkpoint.
    pub wal_above_cap: AtomicBool,
}

// ---------------------------------------------------------------------------------------
// The services.

/// Looks at the WAL's size every `check_interval` and checkpoints it (TRUNCATE) when it is
/// above half its cap, so that it stays under the cap between two looks. A checkpoint that
/// readers kept from finishing is retried at the next look; a log still above the cap
/// afterwards is logged at warn level once, and `monitor.wal_above_cap` says so.
pub async fn bound_wal(
    store: Arc<dyn Store>,
    config: WalConfig,
    monitor: Arc<Monitor>,
    mut stop: net::Shutdown,
) {
    let trigger = config.cap_bytes / 2;
    let mut ticker = tokio::time::interval(config.check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while stop.pause(ticker.tick()).await {
        let size = store.wal_bytes();
        monitor.wal_bytes.store(size, Ordering::Relaxed);
        if size <= trigger {
            if monitor.wal_above_cap.swap(false, Ordering::Relaxed) {
                info!(
                    wal_bytes = size,
                    cap = config.cap_bytes,
                    "the write-ahead log is under its cap again"
                );
            }
            continue;
        }
        let checkpoint = {
            let store = store.clone();
            let patience = config.patience;
            tokio::task::spawn_blocking(move || store.checkpoint_wal(patience)).await
        };
        let result = match checkpoint {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                warn!(error = %e, "write-ahead log checkpoint failed");
                continue;
            }
            Err(_) => continue,
        };
        monitor.wal_checkpoints.fetch_add(1, Ordering::Relaxed);
        monitor
            .wal_bytes
            .store(result.wal_bytes_after, Ordering::Relaxed);
        if result.complete {
            info!(
                before = result.wal_bytes_before,
                after = result.wal_bytes_after,
                frames = result.frames,
                "write-ahead log checkpointed and truncated"
            );
        } else {
            monitor
                .wal_checkpoints_incomplete
                .fetch_add(1, Ordering::Relaxed);
            info!(
                wal_bytes = result.wal_bytes_after,
                "write-ahead log checkpoint waited for readers in vain; retrying"
            );
        }
        let above = result.wal_bytes_after > config.cap_bytes;
        if above && !monitor.wal_above_cap.swap(true, Ordering::Relaxed) {
            warn!(
                wal_bytes = result.wal_bytes_after,
                cap = config.cap_bytes,
                "the write-ahead log is above its cap: a reader has held one transaction open \
                 too long (a stuck client or a tool on tegami.db); it cannot shrink until \
                 that reader finishes"
            );
        }
    }
}

/// Writes the usage the store counted in memory every `flush_interval`, and once more when
/// the server stops.
pub async fn flush_usage(
    store: Arc<dyn Store>,
    config: StatsConfig,
    clock: gate::Clock,
    mut stop: net::Shutdown,
) {
    let mut ticker = tokio::time::interval(config.flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    while stop.pause(ticker.tick()).await {
        flush_now(&store, config.keep_days, &clock).await;
    }
    // Services stop after the sessions, so this last flush holds everything they counted.
    flush_now(&store, config.keep_days, &clock).await;
}

/// One flush of the usage counted in memory; a failure keeps the figures for the next try.
pub async fn flush_now(store: &Arc<dyn Store>, keep_days: u32, clock: &gate::Clock) {
    let store = store.clone();
    let now = clock.now().timestamp().as_second();
    match tokio::task::spawn_blocking(move || store.flush_usage(now, keep_days)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(error = %e, "cannot write the usage statistics; kept in memory for the next try")
        }
        Err(_) => {}
    }
}

// ---------------------------------------------------------------------------------------
// `stats usage`, `stats disk`, `stats forecast`.

/// Opens the store for the statistics, which only read: a data directory without a store
/// has nothing to report, and must not get one.
pub fn open(data: &Path, config: &Config) -> Result<Ops> {
    if !data.join("tegami.db").exists() {
        return Err(Error::not_found(format!(
            "no store in {} (start the server or add a domain first)",
            data.display()
        )));
    }
    Ops::open(data, config.clone())
}

/// What `stats usage` ranks the accounts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RankBy {
    #[default]
    WriteBytes,
    Messages,
    Commands,
    Time,
}

impl RankBy {
    /// The figure of `u` the ranking sorts by (messages: received and fetched together).
    pub fn key(self, u: &store::Usage) -> u64 {
        match self {
            RankBy::WriteBytes => u.write_bytes,
            RankBy::Messages => u.messages_in + u.messages_out,
            RankBy::Commands => u.commands,
            RankBy::Time => u.busy_micros,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct UsageRequest {
    /// How many accounts to list.
    pub top: usize,
    pub by: RankBy,
}

/// The accounts generating the most activity in the last hour, busiest first; as JSON, the
/// list of accounts itself.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct UsageReport {
    pub accounts: Vec<Ranked>,
}

/// One account's samples and their sum.
#[derive(Debug, Serialize)]
pub struct Ranked {
    pub account: String,
    #[serde(serialize_with = "usage_fields")]
    pub total: store::Usage,
    pub samples: Vec<Sample>,
}

/// One ten-minute sample: when it starts (Unix time) and what the account did in it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub start: i64,
    #[serde(flatten, serialize_with = "usage_fields")]
    pub usage: store::Usage,
}

/// `store::Usage` as the JSON of `stats usage --json` names its fields.
fn usage_fields<S: serde::Serializer>(
    u: &store::Usage,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(7))?;
    map.serialize_entry("messages_in", &u.messages_in)?;
    map.serialize_entry("bytes_in", &u.bytes_in)?;
    map.serialize_entry("messages_out", &u.messages_out)?;
    map.serialize_entry("bytes_out", &u.bytes_out)?;
    map.serialize_entry("write_bytes", &u.write_bytes)?;
    map.serialize_entry("commands", &u.commands)?;
    map.serialize_entry("busy_micros", &u.busy_micros)?;
    map.end()
}

/// The starts of the ten-minute samples `stats usage` covers at `now`: the six before the
/// current one, and the current one (still filling), oldest first.
pub fn sample_starts(now: i64) -> Vec<i64> {
    let current = now.div_euclid(SAMPLE_SECS);
    (current - 6..=current).map(|s| s * SAMPLE_SECS).collect()
}

/// Ranks the accounts of `rows` by the sum of their samples and keeps the first `top`.
pub fn rank(rows: &[store::UsageRow], by: RankBy, top: usize) -> Vec<Ranked> {
    let mut accounts: Vec<Ranked> = Vec::new();
    for row in rows {
        let entry = match accounts.iter_mut().position(|r| r.account == row.account) {
            Some(i) => &mut accounts[i],
            None => {
                accounts.push(Ranked {
                    account: row.account.clone(),
                    total: store::Usage::default(),
                    samples: Vec::new(),
                });
                accounts.last_mut().unwrap()
            }
        };
        entry.total.add(&row.usage);
        entry.samples.push(Sample {
            start: row.start,
            usage: row.usage,
        });
    }
    // Ties keep a stable order by address, so the output does not flicker.
    accounts.sort_by(|a, b| {
        by.key(&b.total)
            .cmp(&by.key(&a.total))
            .then_with(|| a.account.cmp(&b.account))
    });
    accounts.truncate(top);
    accounts
}

/// The size of the data and what each part is bounded by.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskReport {
    /// The database file's size on disk, and the store's own totals.
    pub database_file_bytes: u64,
    pub totals: store::StoreTotals,
    pub wal_cap_bytes: u64,
    pub archive_bytes: u64,
    /// Blobs hard-linked with the store are counted here too.
    pub backup_bytes: u64,
    pub log_bytes: u64,
    pub log_max_files: usize,
    pub log_max_file_bytes: u64,
    /// Bytes of the newsletters' history inside the database, and the days raw events are kept.
    pub newsletter_history_bytes: u64,
    pub newsletter_keep_days: u32,
    /// Growth over the last 1, 7 and 30 days as far as history reaches; `None` while there
    /// is no daily history at all.
    pub growth: Option<Vec<Growth>>,
    /// Free and total bytes of the data volume, when it can be read.
    pub volume: Option<(u64, u64)>,
}

/// How much the store grew over a span of days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Growth {
    pub days: i64,
    pub change: i64,
    pub per_day: i64,
}

/// The measured growth rates and when the data volume crosses each threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Bytes per day over the last 7 and 30 days (as far as history reaches).
    pub rates: Vec<(i64, f64)>,
    pub free: u64,
    pub crossings: Vec<Crossing>,
}

/// One threshold of free space and when the fastest growth reaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    pub name: String,
    /// The threshold in free bytes.
    pub level: u64,
    /// Days until it is crossed: `Some(0.0)` when already crossed, `None` when the store
    /// does not grow.
    pub days: Option<f64>,
    /// The moment it is crossed, counted from the forecast's time; `None` when never or
    /// beyond what a timestamp holds.
    pub on: Option<jiff::Timestamp>,
}

impl Ops {
    /// `stats usage`: the accounts ranked over the last hour of ten-minute samples, as of the
    /// server's last flush.
    pub fn stats_usage(&self, request: UsageRequest) -> Result<UsageReport> {
        let now = self.clock().now().timestamp().as_second();
        let since = sample_starts(now)[0];
        let rows = self.store().usage_samples(since)?;
        Ok(UsageReport {
            accounts: rank(&rows, request.by, request.top),
        })
    }

    /// `stats disk`: the size of every part of the data and the growth measured so far.
    pub fn stats_disk(&self) -> Result<DiskReport> {
        let store = self.store();
        let newsletter_history_bytes = store::Newsletters::history_bytes(&**self.sqlite())?;
        let totals = store.totals()?;
        let growth = store.growth()?;
        let data = self.data();
        let config = self.config();
        Ok(DiskReport {
            database_file_bytes: std::fs::metadata(data.join("tegami.db")).map_or(0, |m| m.len()),
            totals,
            wal_cap_bytes: config.wal.cap_bytes,
            archive_bytes: dir_bytes(&data.join("archive")),
            backup_bytes: dir_bytes(&config.schedule.backup.root(data)),
            log_bytes: dir_bytes(&data.join("log")),
            log_max_files: config.log.max_files,
            log_max_file_bytes: config.log.max_file_bytes,
            newsletter_history_bytes,
            newsletter_keep_days: config.newsletter.keep_days,
            growth: growth_spans(&growth),
            volume: volume(data).ok(),
        })
    }

    /// `stats forecast`: from the measured daily growth, when the data volume crosses each
    /// threshold.
    pub fn stats_forecast(&self) -> Result<Forecast> {
        let (free, total) = volume(self.data())?;
        let mut forecast = forecast(&self.store().growth()?, free, total, self.config());
        forecast.date(self.clock().now().timestamp());
        Ok(forecast)
    }
}

/// The store's growth over the last 1, 7 and 30 days, each span as far back as the history
/// reaches (one size per day); `None` without any history.
fn growth_spans(growth: &[store::GrowthRow]) -> Option<Vec<Growth>> {
    let size = |g: &store::GrowthRow| g.database_bytes + g.blob_bytes;
    let last = growth.last()?;
    let mut spans = Vec::new();
    for days in [1, 7, 30] {
        if let Some(then) = growth.iter().find(|g| g.day >= last.day - days)
            && then.day < last.day
        {
            let change = size(last) as i64 - size(then) as i64;
            let span = last.day - then.day;
            spans.push(Growth {
                days: span,
                change,
                per_day: change / span,
            });
        }
    }
    Some(spans)
}

/// Free and total bytes of the volume holding `path`.
pub fn volume(path: &Path) -> Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(path).map_err(|e| Error::Io {
        context: format!("cannot read the free space of {}", path.display()),
        source: e.into(),
    })?;
    Ok((
        stat.f_bavail.saturating_mul(stat.f_frsize),
        stat.f_blocks.saturating_mul(stat.f_frsize),
    ))
}

/// Bytes of the files under `dir`, each inode counted once (backups hard-link blobs).
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    total
}

/// Bytes per day over the last `days` days, as far as the history reaches: the span
/// actually measured and the rate.
pub fn growth_rate(growth: &[store::GrowthRow], days: i64) -> Option<(i64, f64)> {
    let last = growth.last()?;
    let first = growth.iter().find(|g| g.day >= last.day - days)?;
    let span = last.day - first.day;
    if span == 0 {
        return None;
    }
    let size = |g: &store::GrowthRow| (g.database_bytes + g.blob_bytes) as f64;
    Some((span, (size(last) - size(first)) / span as f64))
}

/// When `free` bytes run down to each threshold (the alerts' free-space levels, `min_free`,
/// the hard floor) at the fastest growth measured over 7 and 30 days. The crossings carry
/// no dates yet: [`Forecast::date`] counts them from a moment.
pub fn forecast(growth: &[store::GrowthRow], free: u64, total: u64, config: &Config) -> Forecast {
    let rates: Vec<(i64, f64)> = [7, 30]
        .iter()
        .filter_map(|d| growth_rate(growth, *d))
        .collect();
    let fastest = rates.iter().map(|r| r.1).fold(0.0, f64::max);
    let mut thresholds: Vec<(String, u64)> = config
        .alerts
        .free_percent_levels
        .iter()
        .map(|p| (format!("{p} % free"), (total as f64 * p / 100.0) as u64))
        .collect();
    thresholds.push(("min_free (new mail deferred)".into(), config.disk.min_free));
    thresholds.push((
        "hard floor (all writes refused)".into(),
        config.disk.hard_floor,
    ));
    let crossings = thresholds
        .into_iter()
        .map(|(name, level)| {
            let days = if free <= level {
                Some(0.0)
            } else if fastest > 0.0 {
                Some((free - level) as f64 / fastest)
            } else {
                None
            };
            Crossing {
                name,
                level,
                days,
                on: None,
            }
        })
        .collect();
    Forecast {
        rates,
        free,
        crossings,
    }
}

impl Forecast {
    /// Dates each crossing still ahead, counting its days from `now`.
    pub fn date(&mut self, now: jiff::Timestamp) {
        for crossing in &mut self.crossings {
            crossing.on = match crossing.days {
                Some(d) if d > 0.0 => now
                    .checked_add(jiff::SignedDuration::from_secs(
                        (d * DAY_SECS as f64) as i64,
                    ))
                    .ok(),
                _ => None,
            };
        }
    }
}

// ---------------------------------------------------------------------------------------
// Daily totals and the store's size per day, over a period (the console's statistics).

/// The longest period the daily figures are asked for: ten years of days.
pub const MAX_PERIOD_DAYS: u32 = 3660;

/// Every account's usage added up per day over a period, and over the whole period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyTotals {
    /// One entry per day of the period, oldest first; a day without activity is all zeros.
    pub days: Vec<DayTotal>,
    pub total: store::Usage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayTotal {
    /// Unix time at which the day (UTC) starts.
    pub start: i64,
    pub usage: store::Usage,
}

/// Adds up the daily rows of every account per day, for the `days` days ending with the
/// day `today` (days since the epoch). Rows outside the period are left out.
pub fn daily_totals(rows: &[store::UsageRow], today: i64, days: u32) -> DailyTotals {
    let first = today - i64::from(days.max(1)) + 1;
    let mut out: Vec<DayTotal> = (first..=today)
        .map(|day| DayTotal {
            start: day * DAY_SECS,
            usage: store::Usage::default(),
        })
        .collect();
    let mut total = store::Usage::default();
    for row in rows {
        let day = row.start.div_euclid(DAY_SECS);
        if (first..=today).contains(&day) {
            out[(day - first) as usize].usage.add(&row.usage);
            total.add(&row.usage);
        }
    }
    DailyTotals { days: out, total }
}

impl Ops {
    /// Every account's usage per day over the last `days` days, today included (at most
    /// [`MAX_PERIOD_DAYS`]; days before `[stats] keep_days` are no longer kept).
    pub fn stats_daily(&self, days: u32) -> Result<DailyTotals> {
        let days = period(days)?;
        let today = self.clock().unix().div_euclid(DAY_SECS);
        let since = (today - i64::from(days) + 1) * DAY_SECS;
        let rows = self.store().usage_daily(since)?;
        Ok(daily_totals(&rows, today, days))
    }

    /// The store's size per day over the last `days` days, oldest first (the days the server
    /// recorded one).
    pub fn stats_growth(&self, days: u32) -> Result<Vec<store::GrowthRow>> {
        let days = period(days)?;
        let today = self.clock().unix().div_euclid(DAY_SECS);
        let mut growth = self.store().growth()?;
        growth.retain(|g| g.day > today - i64::from(days));
        Ok(growth)
    }
}

fn period(days: u32) -> Result<u32> {
    if (1..=MAX_PERIOD_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(Error::invalid(format!(
            "a period of {days} days: give 1 to {MAX_PERIOD_DAYS}"
        )))
    }
}

// ---------------------------------------------------------------------------------------
// What /health and /metrics report beyond the raw counters.

/// What is wrong with the running server right now, one line each; empty when healthy.
pub fn problems(
    store: &dyn Store,
    gate: &gate::Gate,
    monitor: &Monitor,
    config: &Config,
) -> Vec<String> {
    let mut problems = Vec::new();
    match gate.disk() {
        gate::DiskState::Low { free } => problems.push(format!(
            "disk: {} free, below min_free: new mail is deferred",
            store::human_bytes(free)
        )),
        gate::DiskState::Critical { free } => problems.push(format!(
            "disk: {} free, below the hard floor: every write is refused",
            store::human_bytes(free)
        )),
        _ => {}
    }
    if let Err(e) = store.domains() {
        problems.push(format!("store: {e}"));
    }
    if monitor.wal_above_cap.load(Ordering::Relaxed) {
        problems.push(format!(
            "wal: {} bytes, above its cap of {}",
            monitor.wal_bytes.load(Ordering::Relaxed),
            config.wal.cap_bytes
        ));
    }
    problems
}

/// Whether new mail is accepted now: no maintenance, and enough space.
pub fn accepting_mail(gate: &gate::Gate) -> bool {
    gate.disk().accepts_mail() && gate.maintenance().is_none()
}

/// The volumes worth watching, by name, with their free and total bytes: the data volume,
/// and the backups' (the data volume's again while the backup root does not exist yet).
/// A volume that cannot be read is left out.
pub fn volumes(data: &Path, config: &Config) -> Vec<(&'static str, (u64, u64))> {
    let backups = config.schedule.backup.root(data);
    let backups = if backups.exists() {
        backups
    } else {
        data.to_path_buf()
    };
    [("data", data), ("backups", backups.as_path())]
        .into_iter()
        .filter_map(|(name, path)| volume(path).ok().map(|v| (name, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(account: &str, start: i64, write: u64, commands: u64) -> store::UsageRow {
        store::UsageRow {
            account: account.into(),
            start,
            usage: store::Usage {
                write_bytes: write,
                commands,
                ..store::Usage::default()
            },
        }
    }

    #[test]
    fn accounts_are_ranked_by_the_sum_of_their_samples() {
        let rows = [
            row("a@x", 0, 10, 5),
            row("b@x", 0, 30, 1),
            row("a@x", 600, 25, 5),
            row("c@x", 600, 1, 0),
        ];
        let ranked = rank(&rows, RankBy::WriteBytes, 2);
        assert_eq!(ranked.len(), 2);
        assert_eq!(
            (ranked[0].account.as_str(), ranked[0].total.write_bytes),
            ("a@x", 35)
        );
        assert_eq!(ranked[0].samples.len(), 2);
        assert_eq!(ranked[1].account, "b@x");
        assert_eq!(rank(&rows, RankBy::Commands, 1)[0].account, "a@x");
    }

    #[test]
    fn the_usage_json_names_every_figure_and_puts_start_in_each_sample() {
        let report = UsageReport {
            accounts: rank(&[row("a@x", 600, 10, 5)], RankBy::WriteBytes, 10),
        };
        let json = serde_json::to_value(&report).unwrap();
        let expected = serde_json::json!([{
            "account": "a@x",
            "total": {"messages_in": 0, "bytes_in": 0, "messages_out": 0, "bytes_out": 0,
                      "write_bytes": 10, "commands": 5, "busy_micros": 0},
            "samples": [{"start": 600, "messages_in": 0, "bytes_in": 0, "messages_out": 0,
                         "bytes_out": 0, "write_bytes": 10, "commands": 5, "busy_micros": 0}],
        }]);
        assert_eq!(json, expected);
    }

    #[test]
    fn the_forecast_divides_free_space_by_the_fastest_growth() {
        let g = |day, blob| store::GrowthRow {
            day,
            database_bytes: 0,
            blob_bytes: blob,
            messages: 0,
        };
        let growth = [g(100, 0), g(110, 1000), g(130, 3000)];
        assert_eq!(growth_rate(&growth, 30), Some((30, 100.0)));
        assert_eq!(growth_rate(&growth, 7), None);
        let config = Config::load(None).unwrap();
        let mut f = forecast(&growth, config.disk.min_free + 10_000, 1 << 50, &config);
        let now = jiff::Timestamp::from_second(1_000_000_000).unwrap();
        f.date(now);
        let min_free = f
            .crossings
            .iter()
            .find(|c| c.name.starts_with("min_free"))
            .unwrap();
        assert_eq!(min_free.days, Some(100.0));
        assert_eq!(
            min_free.on,
            Some(jiff::Timestamp::from_second(1_000_000_000 + 100 * 86_400).unwrap())
        );
        let floor = f.crossings.last().unwrap();
        assert!(floor.name.starts_with("hard floor") && floor.days.unwrap() > 100.0);
    }

    #[test]
    fn the_usage_covers_six_samples_and_the_current_one() {
        // 15,001 s is one second into the sample starting at 15,000.
        assert_eq!(
            sample_starts(15_001),
            [11_400, 12_000, 12_600, 13_200, 13_800, 14_400, 15_000]
        );
        assert_eq!(sample_starts(15_000).last(), Some(&15_000));
    }

    #[test]
    fn daily_totals_add_up_the_accounts_and_fill_quiet_days() {
        let day = |d: i64| d * DAY_SECS;
        let rows = [
            row("a@x", day(7), 10, 1),
            row("a@x", day(9), 5, 2),
            row("b@x", day(9), 7, 3),
            row("b@x", day(10), 100, 100),
        ];
        let totals = daily_totals(&rows, 9, 3);
        let starts: Vec<i64> = totals.days.iter().map(|d| d.start).collect();
        assert_eq!(starts, [day(7), day(8), day(9)]);
        let written: Vec<u64> = totals.days.iter().map(|d| d.usage.write_bytes).collect();
        assert_eq!(written, [10, 0, 12]);
        assert_eq!(totals.total.commands, 6);
        assert_eq!(daily_totals(&[], 9, 0).days.len(), 1);
        assert!(matches!(period(0), Err(Error::Invalid(_))));
        assert!(matches!(
            period(MAX_PERIOD_DAYS + 1),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn growth_spans_reach_as_far_as_the_history() {
        let g = |day, blob| store::GrowthRow {
            day,
            database_bytes: 10,
            blob_bytes: blob,
            messages: 0,
        };
        assert_eq!(growth_spans(&[]), None);
        assert_eq!(growth_spans(&[g(5, 100)]), Some(Vec::new()));
        let spans = growth_spans(&[g(1, 0), g(9, 800), g(10, 900)]).unwrap();
        let span = |days, change, per_day| Growth {
            days,
            change,
            per_day,
        };
        assert_eq!(
            spans,
            [span(1, 100, 100), span(1, 100, 100), span(9, 900, 100)]
        );
    }
}
