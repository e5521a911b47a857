//! What the server measures about itself while it runs, and the task that keeps the
//! write-ahead log under its cap.
//!
//! `Monitor` holds the live figures (atomics, so any task may update them without a lock);
//! the WAL task writes its part every time it looks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use store::prelude::*;

use store::Store;
use tracing::{info, warn};

use ops::config::WalConfig;

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
/// the server stops (the caller awaits [`flush_now`] then).
pub async fn flush_usage(
    store: Arc<dyn Store>,
    config: ops::config::StatsConfig,
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
// `tegami stats`

#[derive(clap::Subcommand)]
pub enum StatsCommand {
    /// The accounts generating the most writes in the last hour, sample by sample.
    Usage {
        /// How many accounts to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// What to rank by.
        #[arg(long, value_enum, default_value_t = RankBy::WriteBytes)]
        by: RankBy,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Size and growth of the database, WAL, blobs, archives, backups and logs.
    Disk,
    /// From the measured daily growth, when the data volume crosses each threshold.
    Forecast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RankBy {
    WriteBytes,
    Messages,
    Commands,
    Time,
}

impl RankBy {
    fn key(self, u: &store::Usage) -> u64 {
        match self {
            RankBy::WriteBytes => u.write_bytes,
            RankBy::Messages => u.messages_in + u.messages_out,
            RankBy::Commands => u.commands,
            RankBy::Time => u.busy_micros,
        }
    }
}

const SAMPLE_SECS: i64 = 600;
const DAY_SECS: i64 = 86_400;

pub fn run(
    data: &std::path::Path,
    config: &ops::config::Config,
    command: StatsCommand,
) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context;
    if !data.join("tegami.db").exists() {
        anyhow::bail!(
            "no store in {} (start the server or add a domain first)",
            data.display()
        );
    }
    let store = store::SqliteStore::open(data)
        .with_context(|| format!("cannot open the store in {}", data.display()))?;
    let clock = gate::Clock::system().map_err(anyhow::Error::msg)?;
    let now = clock.now();
    let text = match command {
        StatsCommand::Usage { top, by, json } => {
            let since = (now.timestamp().as_second().div_euclid(SAMPLE_SECS) - 6) * SAMPLE_SECS;
            let rows = store.usage_samples(since)?;
            let ranked = rank(&rows, by, top);
            if json {
                usage_json(&ranked)
            } else {
                usage_text(&ranked, by, clock.time_zone())
            }
        }
        StatsCommand::Disk => {
            let history = store::Newsletters::history_bytes(&store)?;
            disk_text(data, config, &store.totals()?, &store.growth()?, history)
        }
        StatsCommand::Forecast => {
            let (free, total) = volume(data)?;
            forecast_text(
                &forecast(&store.growth()?, free, total, config),
                clock.time_zone(),
                &now,
            )
        }
    };
    print!("{text}");
    Ok(std::process::ExitCode::SUCCESS)
}

/// One account's samples and their sum.
#[derive(Debug)]
pub struct Ranked {
    pub account: String,
    pub total: store::Usage,
    pub samples: Vec<(i64, store::Usage)>,
}

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
        entry.samples.push((row.start, row.usage));
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

fn usage_json(ranked: &[Ranked]) -> String {
    let usage = |u: &store::Usage| {
        serde_json::json!({
            "messages_in": u.messages_in, "bytes_in": u.bytes_in,
            "messages_out": u.messages_out, "bytes_out": u.bytes_out,
            "write_bytes": u.write_bytes, "commands": u.commands, "busy_micros": u.busy_micros,
        })
    };
    let list: Vec<_> = ranked
        .iter()
        .map(|r| {
            serde_json::json!({
                "account": r.account,
                "total": usage(&r.total),
                "samples": r.samples.iter().map(|(start, u)| {
                    let mut v = usage(u);
                    v["start"] = (*start).into();
                    v
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    format!("{}\n", serde_json::Value::Array(list))
}

fn usage_text(ranked: &[Ranked], by: RankBy, tz: &jiff::tz::TimeZone) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "accounts by {} in the last hour (ten-minute samples, as of the server's last flush)\n",
        match by {
            RankBy::WriteBytes => "bytes written",
            RankBy::Messages => "messages",
            RankBy::Commands => "commands",
            RankBy::Time => "time spent",
        }
    );
    if ranked.is_empty() {
        out.push_str("no activity recorded in the last hour\n");
    }
    let line = |u: &store::Usage| {
        format!(
            "{} messages in ({} bytes), {} out ({} bytes), {} bytes written, {} commands, {} ms",
            u.messages_in,
            u.bytes_in,
            u.messages_out,
            u.bytes_out,
            u.write_bytes,
            u.commands,
            u.busy_micros / 1000
        )
    };
    for (n, r) in ranked.iter().enumerate() {
        let _ = writeln!(out, "{:>2}. {}: {}", n + 1, r.account, line(&r.total));
        for (start, u) in &r.samples {
            let at = jiff::Timestamp::from_second(*start)
                .map(|t| t.to_zoned(tz.clone()).strftime("%H:%M").to_string())
                .unwrap_or_default();
            let _ = writeln!(out, "      {at}  {}", line(u));
        }
    }
    out
}

/// Free and total bytes of the volume holding `path`.
pub fn volume(path: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(path)?;
    Ok((
        stat.f_bavail.saturating_mul(stat.f_frsize),
        stat.f_blocks.saturating_mul(stat.f_frsize),
    ))
}

/// Bytes of the files under `dir`, each inode counted once (backups hard-link blobs).
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
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

fn disk_text(
    data: &std::path::Path,
    config: &ops::config::Config,
    totals: &store::StoreTotals,
    growth: &[store::GrowthRow],
    newsletter_history: u64,
) -> String {
    use std::fmt::Write as _;
    let h = store::human_bytes;
    let db_file = std::fs::metadata(data.join("tegami.db")).map_or(0, |m| m.len());
    let mut out = String::new();
    let rows = [
        (
            "database",
            db_file,
            format!(
                "{} in use, {} free pages",
                h(totals.database_bytes),
                h(totals.database_free_bytes)
            ),
        ),
        (
            "wal",
            totals.wal_bytes,
            format!("cap {}", h(config.wal.cap_bytes)),
        ),
        (
            "blobs",
            totals.blob_bytes,
            format!("{} bodies for {} messages", totals.blobs, totals.messages),
        ),
        ("archives", dir_bytes(&data.join("archive")), String::new()),
        (
            "backups",
            dir_bytes(&config.schedule.backup.root(data)),
            "blobs hard-linked with the store are counted here too".into(),
        ),
        (
            "logs",
            dir_bytes(&data.join("log")),
            format!(
                "bounded: {} files × {}",
                config.log.max_files,
                h(config.log.max_file_bytes)
            ),
        ),
    ];
    for (name, bytes, note) in rows {
        let _ = writeln!(out, "{name:<9} {bytes:>14} bytes  {:>10}  {note}", h(bytes));
    }
    let _ = writeln!(
        out,
        "newsletter history {newsletter_history} bytes ({}, inside the database): sets of who received, bounced, clicked; raw events kept {} days, daily totals forever",
        h(newsletter_history),
        config.newsletter.keep_days
    );
    let size = |g: &store::GrowthRow| g.database_bytes + g.blob_bytes;
    if let Some(last) = growth.last() {
        for days in [1, 7, 30] {
            if let Some(then) = growth.iter().find(|g| g.day >= last.day - days)
                && then.day < last.day
            {
                let change = size(last) as i64 - size(then) as i64;
                let _ = writeln!(
                    out,
                    "growth over {} days: {change} bytes ({} per day)",
                    last.day - then.day,
                    change / (last.day - then.day)
                );
            }
        }
    } else {
        out.push_str("growth: no daily history yet (the server records one size per day)\n");
    }
    if let Ok((free, total)) = volume(data) {
        let _ = writeln!(out, "volume: {free} bytes free of {total} ({})", h(free));
    }
    out
}

/// The measured growth rates and when the data volume crosses each threshold.
#[derive(Debug)]
pub struct Forecast {
    /// Bytes per day over the last 7 and 30 days (as far as history reaches).
    pub rates: Vec<(i64, f64)>,
    pub free: u64,
    /// (name, threshold in free bytes, days until crossed by the fastest rate).
    pub crossings: Vec<(String, u64, Option<f64>)>,
}

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

pub fn forecast(
    growth: &[store::GrowthRow],
    free: u64,
    total: u64,
    config: &ops::config::Config,
) -> Forecast {
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
            (name, level, days)
        })
        .collect();
    Forecast {
        rates,
        free,
        crossings,
    }
}

fn forecast_text(f: &Forecast, tz: &jiff::tz::TimeZone, now: &jiff::Zoned) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if f.rates.is_empty() {
        out.push_str("no growth measured yet: the server records the store's size once a day; come back after two days\n");
    }
    for (span, rate) in &f.rates {
        let _ = writeln!(
            out,
            "growth over the last {span} days: {rate:.0} bytes per day"
        );
    }
    let _ = writeln!(out, "free on the data volume: {} bytes", f.free);
    for (name, level, days) in &f.crossings {
        let when = match days {
            Some(d) if *d <= 0.0 => "already crossed".to_string(),
            Some(d) => {
                let date = now
                    .timestamp()
                    .checked_add(jiff::SignedDuration::from_secs(
                        (d * DAY_SECS as f64) as i64,
                    ))
                    .map(|t| t.to_zoned(tz.clone()).strftime("%Y-%m-%d").to_string())
                    .unwrap_or_else(|_| "far in the future".into());
                format!("in {d:.1} days, on {date}")
            }
            None => "never at the measured growth".to_string(),
        };
        let _ = writeln!(out, "{name} ({level} bytes): {when}");
    }
    out
}

// ---------------------------------------------------------------------------------------
// What the HTTP face shows: /health and /metrics.

/// The server as the HTTP face sees it.
pub struct ServerSource(pub Arc<crate::alerts::Context>);

impl tegami_http::Source for ServerSource {
    fn maintenance(&self) -> Option<tegami_http::Maintenance> {
        self.0.gate.maintenance().map(|m| tegami_http::Maintenance {
            message: m.message,
            since: m.since,
            until: m.until,
            retry_after_secs: m.retry_after_secs,
        })
    }

    fn problems(&self) -> Vec<String> {
        let ctx = &self.0;
        let mut problems = Vec::new();
        match ctx.gate.disk() {
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
        if let Err(e) = ctx.store.domains() {
            problems.push(format!("store: {e}"));
        }
        if ctx.monitor.wal_above_cap.load(Ordering::Relaxed) {
            problems.push(format!(
                "wal: {} bytes, above its cap of {}",
                ctx.monitor.wal_bytes.load(Ordering::Relaxed),
                ctx.config.wal.cap_bytes
            ));
        }
        problems
    }

    fn metrics(&self) -> Vec<tegami_http::Family> {
        use tegami_http::{Family, Kind};
        let ctx = &self.0;
        let mut out = Vec::new();
        let usage = ctx.store.usage_total();
        out.push(Family::counter(
            "tegami_deliveries",
            "Messages stored (delivered or appended) since the server started, one per recipient.",
            usage.messages_in as f64,
        ));
        out.push(Family::counter(
            "tegami_bytes_written",
            "Blob bytes written for stored messages since the server started.",
            usage.write_bytes as f64,
        ));
        out.push(Family::counter(
            "tegami_commands",
            "POP3 and IMAP commands of logged-in sessions since the server started.",
            usage.commands as f64,
        ));
        let mut opened = Family::new(
            "tegami_sessions",
            "Connections served since the server started, by protocol.",
            Kind::Counter,
        );
        let mut open = Family::new(
            "tegami_sessions_open",
            "Connections open now, by protocol.",
            Kind::Gauge,
        );
        for (protocol, sessions) in [
            ("smtp", &smtp_server::SESSIONS),
            ("pop3", &pop3_server::SESSIONS),
            ("imap", &imap_server::SESSIONS),
        ] {
            opened = opened.with(&[("protocol", protocol)], sessions.opened() as f64);
            open = open.with(&[("protocol", protocol)], sessions.open() as f64);
        }
        out.push(opened);
        out.push(open);
        let mut rejects = Family::new(
            "tegami_smtp_rejects",
            "SMTP replies that refused mail or a client, by reason.",
            Kind::Counter,
        );
        for (reason, count) in smtp_server::REJECTS.counts() {
            rejects = rejects.with(&[("reason", reason)], count as f64);
        }
        out.push(rejects);
        if let Ok(t) = ctx.store.totals() {
            out.push(Family::gauge(
                "tegami_messages",
                "Messages stored (one per mailbox copy).",
                t.messages as f64,
            ));
            out.push(Family::gauge(
                "tegami_blob_bytes",
                "Bytes of distinct message bodies.",
                t.blob_bytes as f64,
            ));
            out.push(Family::gauge(
                "tegami_database_bytes",
                "Bytes of database pages in use.",
                t.database_bytes as f64,
            ));
        }
        out.extend(outbound_counters());
        let mut auth = Family::new(
            "tegami_inbound_auth_results",
            "SPF, DKIM and DMARC verdicts on mail received over SMTP, by method and result.",
            Kind::Counter,
        );
        for (method, result, count) in smtp_server::AUTH_RESULTS.counts() {
            auth = auth.with(&[("method", method), ("result", result)], count as f64);
        }
        out.push(auth);
        if let Ok(q) = ctx.store.queue_stats() {
            out.extend(queue_metrics(&q, ctx.clock.unix()));
        }
        let wal = ctx.store.wal_bytes();
        out.push(Family::gauge(
            "tegami_wal_bytes",
            "Size of the write-ahead log.",
            wal as f64,
        ));
        out.push(Family::gauge(
            "tegami_wal_cap_bytes",
            "The write-ahead log's cap ([wal] cap_bytes).",
            ctx.config.wal.cap_bytes as f64,
        ));
        out.push(Family::counter(
            "tegami_wal_checkpoints",
            "Truncating checkpoints run to keep the write-ahead log under its cap.",
            ctx.monitor.wal_checkpoints.load(Ordering::Relaxed) as f64,
        ));
        out.push(Family::counter(
            "tegami_wal_checkpoints_incomplete",
            "Checkpoints that readers kept from truncating the log.",
            ctx.monitor
                .wal_checkpoints_incomplete
                .load(Ordering::Relaxed) as f64,
        ));
        let mut free = Family::new(
            "tegami_volume_free_bytes",
            "Free bytes per volume.",
            Kind::Gauge,
        );
        let mut size = Family::new(
            "tegami_volume_size_bytes",
            "Size in bytes per volume.",
            Kind::Gauge,
        );
        let backups = ctx.config.schedule.backup.root(&ctx.data);
        let backups = if backups.exists() {
            backups
        } else {
            ctx.data.clone()
        };
        for (name, path) in [("data", &ctx.data), ("backups", &backups)] {
            if let Ok((f, s)) = volume(path) {
                free = free.with(&[("volume", name)], f as f64);
                size = size.with(&[("volume", name)], s as f64);
            }
        }
        out.push(free);
        out.push(size);
        let accepting = ctx.gate.disk().accepts_mail() && ctx.gate.maintenance().is_none();
        out.push(Family::gauge(
            "tegami_accepting_mail",
            "1 when new mail is accepted (no maintenance, enough space).",
            f64::from(u8::from(accepting)),
        ));
        out.push(Family::gauge(
            "tegami_maintenance",
            "1 while maintenance mode is in force.",
            f64::from(u8::from(ctx.gate.maintenance().is_some())),
        ));
        let inputs = ctx.inputs();
        let mut backup = Family::new(
            "tegami_last_backup_age_seconds",
            "Age of the newest good backup (absent when there is none).",
            Kind::Gauge,
        );
        if let Some(age) = inputs.last_backup_age {
            backup = backup.with(&[], age.as_secs() as f64);
        }
        out.push(backup);
        let mut check = Family::new(
            "tegami_check_last_result",
            "The last integrity check's outcome (1 for the current one).",
            Kind::Gauge,
        );
        for label in ["none", "healthy", "problems", "failed", "skipped"] {
            check = check.with(
                &[("result", label)],
                f64::from(u8::from(inputs.check.label() == label)),
            );
        }
        out.push(check);
        let mut active = Family::new(
            "tegami_alert_active",
            "1 while an alert's condition holds.",
            Kind::Gauge,
        );
        let mut sent = Family::new(
            "tegami_alerts_sent",
            "Alerts sent (mail and webhook) per condition.",
            Kind::Counter,
        );
        for (key, state) in ctx.alerts.snapshot() {
            active = active.with(&[("alert", &key)], f64::from(u8::from(state.active)));
            sent = sent.with(&[("alert", &key)], state.sent as f64);
        }
        out.push(active);
        out.push(sent);
        out
    }
}

/// The outbound queue's counters since the server started. The renderer adds `_total`,
/// so the names from `outbound::METRICS` lose theirs here.
fn outbound_counters() -> Vec<tegami_http::Family> {
    use tegami_http::{Family, Kind};
    let mut families: Vec<Family> = Vec::new();
    for sample in outbound::METRICS.samples() {
        let name = sample.name.trim_end_matches("_total");
        let index = match families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                let help = match name {
                    "tegami_outbound_delivered" => "Recipients delivered by the outbound queue.",
                    "tegami_outbound_failed" => "Recipients that failed for good (bounced).",
                    "tegami_outbound_attempts" => "Delivery attempts, one per recipient.",
                    "tegami_outbound_connections" => "SMTP connections opened to other servers.",
                    "tegami_outbound_notices" => {
                        "Delivery status notices (bounces, delays) queued."
                    }
                    "tegami_outbound_rate_limited" => {
                        "Messages held back by a destination's rate limit."
                    }
                    "tegami_outbound_deferred" => "Attempts that failed temporarily, by reason.",
                    _ => "Outbound queue counter.",
                };
                families.push(Family::new(name, help, Kind::Counter));
                families.len() - 1
            }
        };
        let family = std::mem::replace(&mut families[index], Family::new("", "", Kind::Counter));
        families[index] = family.with(&sample.labels, sample.value as f64);
    }
    families
}

/// The outbound queue's gauges, from the store.
fn queue_metrics(q: &store::QueueStats, now: i64) -> Vec<tegami_http::Family> {
    use tegami_http::{Family, Kind};
    let mut deferred = Family::new(
        "tegami_queue_deferred",
        "Recipients waiting after a failed attempt, by the reason of the last failure.",
        Kind::Gauge,
    );
    for (reason, count) in &q.deferred_by_reason {
        deferred = deferred.with(&[("reason", reason)], *count as f64);
    }
    let mut oldest = Family::new(
        "tegami_queue_oldest_seconds",
        "Age of the oldest queued message (absent when the queue is empty).",
        Kind::Gauge,
    );
    if let Some(created) = q.oldest {
        oldest = oldest.with(&[], (now - created).max(0) as f64);
    }
    vec![
        Family::gauge(
            "tegami_queue_messages",
            "Messages in the outbound queue.",
            q.messages as f64,
        ),
        Family::gauge(
            "tegami_queue_recipients",
            "Recipients in the outbound queue still waiting for delivery.",
            q.recipients as f64,
        ),
        Family::gauge(
            "tegami_queue_bytes",
            "Bytes of the messages in the outbound queue.",
            q.bytes as f64,
        ),
        oldest,
        deferred,
    ]
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
        let config = ops::config::Config::load(None).unwrap();
        let f = forecast(&growth, config.disk.min_free + 10_000, 1 << 50, &config);
        let min_free = f
            .crossings
            .iter()
            .find(|c| c.0.starts_with("min_free"))
            .unwrap();
        assert_eq!(min_free.2, Some(100.0));
    }
}
