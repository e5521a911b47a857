//! `tegami stats` and the HTTP face's `/health` and `/metrics`: the figures come from
//! `ops::stats`, this file draws them.
//!
//! The services `serve` starts (the WAL bound, the usage flush) and the live figures they
//! keep live in `ops::stats`; their names are re-exported here for `serve`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ops::stats::{DiskReport, Forecast, RankBy, Ranked, UsageRequest};

pub use ops::stats::{Monitor, bound_wal, flush_usage};

#[derive(clap::Subcommand)]
pub enum StatsCommand {
    /// The accounts generating the most writes in the last hour, sample by sample.
    Usage {
        /// How many accounts to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// What to rank by.
        #[arg(long, value_enum, default_value_t = Rank::WriteBytes)]
        by: Rank,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Size and growth of the database, WAL, blobs, archives, backups and logs.
    Disk,
    /// From the measured daily growth, when the data volume crosses each threshold.
    Forecast,
    /// The accounts under a storage quota, fullest first.
    Quota {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `--by`: the command line's names for [`RankBy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rank {
    WriteBytes,
    Messages,
    Commands,
    Time,
}

impl From<Rank> for RankBy {
    fn from(rank: Rank) -> RankBy {
        match rank {
            Rank::WriteBytes => RankBy::WriteBytes,
            Rank::Messages => RankBy::Messages,
            Rank::Commands => RankBy::Commands,
            Rank::Time => RankBy::Time,
        }
    }
}

pub fn run(
    data: &std::path::Path,
    config: &ops::config::Config,
    command: StatsCommand,
) -> anyhow::Result<ExitCode> {
    let ops = ops::stats::open(data, config)?;
    let tz = ops.clock().time_zone().clone();
    let text = match command {
        StatsCommand::Usage { top, by, json } => {
            let by = RankBy::from(by);
            let report = ops.stats_usage(UsageRequest { top, by })?;
            if json {
                // Through a `Value`, whose keys are sorted: the JSON reads as it always has.
                format!("{}\n", serde_json::to_value(&report)?)
            } else {
                usage_text(&report.accounts, by, &tz)
            }
        }
        StatsCommand::Disk => disk_text(&ops.stats_disk()?),
        StatsCommand::Forecast => forecast_text(&ops.stats_forecast()?, &tz),
        StatsCommand::Quota { json } => quota_text(&ops.quota_usage()?, json),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn quota_text(usage: &[store::QuotaUse], json: bool) -> String {
    if json {
        let rows: Vec<_> = usage
            .iter()
            .map(|u| {
                serde_json::json!({
                    "address": u.address,
                    "used": u.quota.used,
                    "limit": u.quota.limit,
                    "percent": u.quota.percent(),
                    "warned": u.warned,
                })
            })
            .collect();
        return format!("{}\n", serde_json::Value::from(rows));
    }
    if usage.is_empty() {
        return "no account has a storage quota (set one with `tegami account quota ADDRESS SIZE` \
                or `tegami domain quota DOMAIN SIZE`)\n"
            .to_owned();
    }
    let mut out = String::from("accounts under a storage quota, fullest first\n");
    for u in usage {
        let _ = writeln!(
            out,
            "{:>4} %  {:>10} of {:>10}  {}{}",
            u.quota.percent().unwrap_or(0),
            store::human_bytes(u.quota.used),
            ops::quota::show_limit(u.quota.limit),
            u.address,
            if u.warned { "  (owner warned)" } else { "" }
        );
    }
    out
}

fn usage_text(ranked: &[Ranked], by: RankBy, tz: &jiff::tz::TimeZone) -> String {
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
        for sample in &r.samples {
            let at = jiff::Timestamp::from_second(sample.start)
                .map(|t| t.to_zoned(tz.clone()).strftime("%H:%M").to_string())
                .unwrap_or_default();
            let _ = writeln!(out, "      {at}  {}", line(&sample.usage));
        }
    }
    out
}

fn disk_text(report: &DiskReport) -> String {
    let h = store::human_bytes;
    let totals = &report.totals;
    let mut out = String::new();
    let rows = [
        (
            "database",
            report.database_file_bytes,
            format!(
                "{} in use, {} free pages",
                h(totals.database_bytes),
                h(totals.database_free_bytes)
            ),
        ),
        (
            "wal",
            totals.wal_bytes,
            format!("cap {}", h(report.wal_cap_bytes)),
        ),
        (
            "blobs",
            totals.blob_bytes,
            format!("{} bodies for {} messages", totals.blobs, totals.messages),
        ),
        ("archives", report.archive_bytes, String::new()),
        (
            "backups",
            report.backup_bytes,
            "blobs hard-linked with the store are counted here too".into(),
        ),
        (
            "logs",
            report.log_bytes,
            format!(
                "bounded: {} files × {}",
                report.log_max_files,
                h(report.log_max_file_bytes)
            ),
        ),
    ];
    for (name, bytes, note) in rows {
        let _ = writeln!(out, "{name:<9} {bytes:>14} bytes  {:>10}  {note}", h(bytes));
    }
    let _ = writeln!(
        out,
        "newsletter history {} bytes ({}, inside the database): sets of who received, bounced, clicked; raw events kept {} days, daily totals forever",
        report.newsletter_history_bytes,
        h(report.newsletter_history_bytes),
        report.newsletter_keep_days
    );
    match &report.growth {
        Some(spans) => {
            for g in spans {
                let _ = writeln!(
                    out,
                    "growth over {} days: {} bytes ({} per day)",
                    g.days, g.change, g.per_day
                );
            }
        }
        None => {
            out.push_str("growth: no daily history yet (the server records one size per day)\n")
        }
    }
    if let Some((free, total)) = report.volume {
        let _ = writeln!(out, "volume: {free} bytes free of {total} ({})", h(free));
    }
    out
}

fn forecast_text(f: &Forecast, tz: &jiff::tz::TimeZone) -> String {
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
    for c in &f.crossings {
        let when = match c.days {
            Some(d) if d <= 0.0 => "already crossed".to_string(),
            Some(d) => {
                let date =
                    c.on.map(|t| t.to_zoned(tz.clone()).strftime("%Y-%m-%d").to_string())
                        .unwrap_or_else(|| "far in the future".into());
                format!("in {d:.1} days, on {date}")
            }
            None => "never at the measured growth".to_string(),
        };
        let _ = writeln!(out, "{} ({} bytes): {when}", c.name, c.level);
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
        ops::stats::problems(&*ctx.store, &ctx.gate, &ctx.monitor, &ctx.config)
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
        for (name, (f, s)) in ops::stats::volumes(&ctx.data, &ctx.config) {
            free = free.with(&[("volume", name)], f as f64);
            size = size.with(&[("volume", name)], s as f64);
        }
        out.push(free);
        out.push(size);
        let accepting = ops::stats::accepting_mail(&ctx.gate);
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
