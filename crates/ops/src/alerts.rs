//! Alerts: the conditions evaluated every `alerts.check_interval`, the decision to send or
//! hold each one (not again within `alerts.interval`), and what the admin receives: a mail
//! delivered through tegami's own store, and a JSON post to the webhook.
//!
//! The conditions follow the seed article: growth measured against the baseline (the
//! average of the days before, +20 % by default) rather than one fixed "90 % full" alarm;
//! several free-space levels; the last good backup too old; the scheduled check failed or
//! skipped; the write-ahead log above its cap; mail refused for lack of space; an ACME
//! certificate that could not be obtained or renewed (from `acme/status.json`, which the
//! renewal service writes after every attempt).
//!
//! The DDNS updater and the witness add theirs: a changed public address (once per change),
//! a DNS record that cannot be updated (while it lasts), and a configured witness sender
//! whose heartbeat is overdue.
//!
//! Mail to the admin goes straight to the store, past the disk guard's `min_free` (ordinary
//! mail is deferred there, so that is exactly when the admin must hear of it), but never
//! below the hard floor, where no write is allowed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gate::{Clock, DiskState, Gate};
use store::{GrowthRow, Resolution, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::stats::Monitor;
use crate::{Error, Result};

/// One condition as evaluated: its key (stable, used in metrics and for rate limiting),
/// whether it holds, and what to tell the admin.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub key: String,
    pub active: bool,
    pub message: String,
}

#[derive(Debug, Default, Clone)]
pub struct AlertState {
    pub active: bool,
    pub message: String,
    pub sent: u64,
    last_sent: Option<Instant>,
}

/// The alerts' state, shared with the metrics.
#[derive(Debug, Default)]
pub struct Alerts {
    states: Mutex<BTreeMap<String, AlertState>>,
}

impl Alerts {
    pub fn snapshot(&self) -> BTreeMap<String, AlertState> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the conditions and returns those to send now: active, and not sent within
    /// `interval`.
    pub fn update(
        &self,
        conditions: &[Condition],
        interval: Duration,
        now: Instant,
    ) -> Vec<Condition> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        for c in conditions {
            let state = states.entry(c.key.clone()).or_default();
            state.active = c.active;
            if !c.active {
                continue;
            }
            state.message = c.message.clone();
            let recent = state
                .last_sent
                .is_some_and(|t| now.duration_since(t) < interval);
            if !recent {
                state.last_sent = Some(now);
                state.sent += 1;
                due.push(c.clone());
            }
        }
        due
    }

    /// One round: evaluates the conditions on `inputs` and returns those to send now.
    pub fn evaluate(&self, inputs: &Inputs, config: &Config, now: Instant) -> Vec<Condition> {
        self.update(&conditions(inputs, config), config.alerts.interval, now)
    }
}

/// Everything the conditions are computed from, gathered in one place so the evaluation is
/// pure and testable.
#[derive(Debug, Default)]
pub struct Inputs {
    pub growth: Vec<GrowthRow>,
    pub free: u64,
    pub total: u64,
    pub disk: Option<DiskState>,
    pub backup_scheduled: bool,
    pub last_backup_age: Option<Duration>,
    pub check: CheckStatus,
    pub wal_bytes: u64,
    pub wal_above_cap: bool,
    /// ACME certificates whose last attempt failed: (first name, status).
    pub acme_failing: Vec<(String, acme::CertStatus)>,
    /// The DDNS updater's current failure, and the address changes since the last evaluation.
    pub ddns_failing: Option<String>,
    pub ddns_change: Option<String>,
    /// Per configured witness sender: how long since its last heartbeat (or since the
    /// server started, when none came yet).
    pub witness: Vec<WitnessAge>,
    /// Accounts at or past [`store::Quota::WARN_PERCENT`] of their storage limit.
    pub near_quota: Vec<store::QuotaUse>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WitnessAge {
    pub sender: String,
    pub silent_for: Duration,
    pub last_address: Option<std::net::IpAddr>,
}

/// Where the inputs come from. The figures of other areas (the newest backup, the DDNS
/// updater's state) are read by the caller and handed in as values.
pub struct Sources<'a> {
    pub data: &'a Path,
    pub config: &'a Config,
    pub store: &'a dyn Store,
    pub gate: &'a Gate,
    pub clock: &'a Clock,
    pub monitor: &'a Monitor,
    pub witness: Option<&'a ::ddns::WitnessBook>,
    /// When the server started (seconds since the epoch): a sender never heard from is
    /// overdue from then.
    pub started: u64,
    /// When the newest good backup was created (seconds since the epoch), if there is one.
    pub newest_backup: Option<i64>,
    /// The DDNS updater's current failure.
    pub ddns_failing: Option<String>,
}

/// Gathers the inputs (file system and store reads: call it on a blocking thread). The
/// DDNS address changes are left out: taking them consumes them, which only the alerts
/// service may do (reading the metrics must never swallow a change).
pub fn gather(sources: &Sources) -> Inputs {
    let config = sources.config;
    let (free, total) = crate::stats::volume(sources.data).unwrap_or((0, 0));
    let now = sources.clock.now().timestamp().as_second();
    Inputs {
        growth: sources.store.growth().unwrap_or_default(),
        free,
        total,
        disk: Some(sources.gate.disk()),
        backup_scheduled: config.schedule.backup.at.is_some(),
        last_backup_age: sources
            .newest_backup
            .map(|created| Duration::from_secs((now - created).max(0) as u64)),
        check: check_status(sources.data),
        wal_bytes: sources.monitor.wal_bytes.load(Ordering::Relaxed),
        wal_above_cap: sources.monitor.wal_above_cap.load(Ordering::Relaxed),
        acme_failing: acme_failing(sources.data, config),
        ddns_failing: sources.ddns_failing.clone(),
        ddns_change: None,
        witness: sources
            .witness
            .map(|book| witness_ages(book, sources.started, ::ddns::unix_now()))
            .unwrap_or_default(),
        near_quota: sources
            .store
            .quota_usage()
            .unwrap_or_default()
            .into_iter()
            .filter(|u| u.quota.nearly_full())
            .collect(),
    }
}

/// The configured ACME certificates whose last attempt failed.
fn acme_failing(data: &Path, config: &Config) -> Vec<(String, acme::CertStatus)> {
    let Some(acme) = &config.acme else {
        return Vec::new();
    };
    acme::Status::load(data)
        .map(|status| {
            status
                .failing()
                .filter(|(name, _)| acme.certificates.iter().any(|c| &c[0] == *name))
                .map(|(name, s)| (name.clone(), s.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn witness_ages(book: &::ddns::WitnessBook, started: u64, now: u64) -> Vec<WitnessAge> {
    book.last_heartbeats()
        .into_iter()
        .map(|(sender, last)| WitnessAge {
            sender,
            silent_for: Duration::from_secs(now.saturating_sub(last.map_or(started, |b| b.time))),
            last_address: last.map(|b| b.address),
        })
        .collect()
}

/// The last scheduled or manual check, as `log/maintenance.log` tells it.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum CheckStatus {
    #[default]
    None,
    Healthy,
    Problems(String),
    Failed(String),
    Skipped(String),
}

impl CheckStatus {
    pub fn label(&self) -> &'static str {
        match self {
            CheckStatus::None => "none",
            CheckStatus::Healthy => "healthy",
            CheckStatus::Problems(_) => "problems",
            CheckStatus::Failed(_) => "failed",
            CheckStatus::Skipped(_) => "skipped",
        }
    }
}

/// Reads the last check line of `log/maintenance.log`.
pub fn check_status(data: &Path) -> CheckStatus {
    let Ok(text) = std::fs::read_to_string(data.join("log").join("maintenance.log")) else {
        return CheckStatus::None;
    };
    for line in text.lines().rev() {
        if line.contains("check skipped") {
            return CheckStatus::Skipped(line.to_string());
        }
        // "finished" first: a verdict may itself mention something that failed.
        if line.contains("check") && line.contains(" finished: ") {
            return if line.contains(" finished: healthy") {
                CheckStatus::Healthy
            } else {
                CheckStatus::Problems(line.to_string())
            };
        }
        if line.contains("check") && line.contains(" failed") {
            return CheckStatus::Failed(line.to_string());
        }
    }
    CheckStatus::None
}

/// Today's growth and the baseline: the average daily growth of the `days` days before.
pub fn growth_vs_baseline(growth: &[GrowthRow], days: u32) -> Option<(f64, f64)> {
    let size = |g: &GrowthRow| (g.database_bytes + g.blob_bytes) as f64;
    let today = growth.last()?;
    let yesterday = growth.iter().rev().find(|g| g.day == today.day - 1)?;
    let start = growth
        .iter()
        .find(|g| g.day >= yesterday.day - i64::from(days))?;
    let span = (yesterday.day - start.day) as f64;
    if span < 1.0 {
        return None;
    }
    Some((
        size(today) - size(yesterday),
        (size(yesterday) - size(start)) / span,
    ))
}

/// Every condition, active or not, in a stable order.
pub fn conditions(inputs: &Inputs, config: &Config) -> Vec<Condition> {
    let mut out = Vec::new();
    let h = store::human_bytes;
    let pct = config.alerts.growth_percent;
    let (active, message) = match growth_vs_baseline(&inputs.growth, config.alerts.baseline_days) {
        Some((today, baseline)) if baseline > 0.0 && today > baseline * (1.0 + pct / 100.0) => (
            true,
            format!(
                "the store grew by {} today, {:.0} % above its baseline of {} per day \
                 (alert above +{pct} %); `tegami stats usage` shows which accounts write most",
                h(today as u64),
                (today / baseline - 1.0) * 100.0,
                h(baseline as u64)
            ),
        ),
        _ => (false, String::new()),
    };
    out.push(Condition {
        key: "growth_above_baseline".into(),
        active,
        message,
    });
    out.push(quota_condition(&inputs.near_quota));
    for level in &config.alerts.free_percent_levels {
        let free_pct = if inputs.total > 0 {
            inputs.free as f64 * 100.0 / inputs.total as f64
        } else {
            100.0
        };
        out.push(Condition {
            key: format!("free_space_below_{level}_percent"),
            active: free_pct < *level,
            message: format!(
                "the data volume has {} free ({free_pct:.1} %), below the {level} % level; \
                 `tegami stats forecast` says when it runs out",
                h(inputs.free)
            ),
        });
    }
    let backup_old = inputs.backup_scheduled
        && inputs
            .last_backup_age
            .is_none_or(|age| age > config.alerts.backup_max_age);
    out.push(Condition {
        key: "backup_too_old".into(),
        active: backup_old,
        message: match inputs.last_backup_age {
            Some(age) => format!(
                "the last good backup is {:.1} hours old (alert after {} hours); see log/backup_result.log",
                age.as_secs_f64() / 3600.0,
                config.alerts.backup_max_age.as_secs() / 3600
            ),
            None => "no backup has been taken yet; run `tegami backup create`".into(),
        },
    });
    let (failed, skipped) = match &inputs.check {
        CheckStatus::Failed(line) | CheckStatus::Problems(line) => (Some(line.clone()), None),
        CheckStatus::Skipped(line) => (None, Some(line.clone())),
        _ => (None, None),
    };
    out.push(Condition {
        key: "check_failed".into(),
        active: failed.is_some(),
        message: format!(
            "the last check did not come out healthy: {}; see log/maintenance_result.log",
            failed.unwrap_or_default()
        ),
    });
    out.push(Condition {
        key: "check_skipped".into(),
        active: skipped.is_some(),
        message: format!(
            "the scheduled check was skipped: {}",
            skipped.unwrap_or_default()
        ),
    });
    out.push(Condition {
        key: "wal_above_cap".into(),
        active: inputs.wal_above_cap,
        message: format!(
            "the write-ahead log is {} and above its cap of {}: a reader holds a transaction \
             open (a stuck client, or a tool on tegami.db)",
            h(inputs.wal_bytes),
            h(config.wal.cap_bytes)
        ),
    });
    let refused = matches!(
        inputs.disk,
        Some(DiskState::Low { .. } | DiskState::Critical { .. })
    );
    out.push(acme_condition(&inputs.acme_failing));
    out.push(Condition {
        key: "delivery_refused_no_space".into(),
        active: refused,
        message: format!(
            "new mail is refused for lack of space: {} free, min_free is {}",
            h(inputs.free),
            h(config.disk.min_free)
        ),
    });
    if config.ddns.is_some() {
        out.push(Condition {
            key: "ddns_address_changed".into(),
            active: inputs.ddns_change.is_some(),
            message: inputs.ddns_change.clone().unwrap_or_default(),
        });
        out.push(Condition {
            key: "ddns_update_failed".into(),
            active: inputs.ddns_failing.is_some(),
            message: format!(
                "{}; see log/tegami.log (lines starting \"ddns:\")",
                inputs.ddns_failing.clone().unwrap_or_default()
            ),
        });
    }
    for sender in &config.witness.senders {
        let age = inputs.witness.iter().find(|w| w.sender == sender.name);
        let (active, message) = match age {
            Some(w) if w.silent_for > sender.missing_after => (
                true,
                match w.last_address {
                    Some(ip) => format!(
                        "no heartbeat from {} for {} (alert after {}); it last called from {ip}; \
                         `tegami witness log` shows its address history",
                        sender.name,
                        span(w.silent_for),
                        span(sender.missing_after)
                    ),
                    None => format!(
                        "no heartbeat from {} since this server started {} ago (alert after {}); \
                         check its [witness] url and token",
                        sender.name,
                        span(w.silent_for),
                        span(sender.missing_after)
                    ),
                },
            ),
            _ => (false, String::new()),
        };
        out.push(Condition {
            key: format!("witness_missing_{}", sender.name),
            active,
            message,
        });
    }
    out
}

/// One condition for the accounts nearly out of storage: their owners were warned by mail;
/// the operator decides whether to raise a limit.
fn quota_condition(near: &[store::QuotaUse]) -> Condition {
    let shown: Vec<String> = near
        .iter()
        .take(5)
        .map(|u| format!("{} ({} %)", u.address, u.quota.percent().unwrap_or(0)))
        .collect();
    let more = near.len().saturating_sub(shown.len());
    let message = match near.len() {
        0 => String::new(),
        n => format!(
            "{n} account{} at or past {} % of {} storage quota: {}{}; raise a limit with              `tegami account quota ADDRESS SIZE`, `tegami stats quota` lists them all",
            if n == 1 { "" } else { "s" },
            store::Quota::WARN_PERCENT,
            if n == 1 { "its" } else { "their" },
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
        ),
    };
    Condition {
        key: "accounts_near_quota".into(),
        active: !near.is_empty(),
        message,
    }
}

/// One condition for every ACME certificate: the admin hears which ones fail and why.
fn acme_condition(failing: &[(String, acme::CertStatus)]) -> Condition {
    let lines: Vec<String> = failing
        .iter()
        .map(|(name, s)| {
            let expires = match s
                .not_after
                .and_then(|t| jiff::Timestamp::from_second(t).ok())
            {
                Some(t) => format!("the current one expires {t} and stays in use"),
                None => "there is no certificate for it yet".into(),
            };
            format!(
                "{name}: {} failed attempt(s), {expires}; last error: {}",
                s.failures,
                s.last_error.as_deref().unwrap_or("unknown")
            )
        })
        .collect();
    Condition {
        key: "acme_renewal_failing".into(),
        active: !failing.is_empty(),
        message: format!(
            "ACME certificate renewal is failing for {}; `tegami acme status` shows each one",
            lines.join(" / ")
        ),
    }
}

/// "45 s", "30 min", "2 h 05 min": a silence as people say it.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

// ---------------------------------------------------------------------------------------
// Sending.

/// Logs an alert that is due (in the server's log and in the history, `log/alerts.log`)
/// and sends it: by mail to `alerts.admin`, by POST to `alerts.webhook`. A failure to send
/// is logged; it does not stop the next alert.
pub async fn send(
    store: Arc<dyn Store>,
    gate: Arc<Gate>,
    config: &Config,
    clock: &Clock,
    data: &Path,
    alert: &Condition,
) {
    warn!(alert = %alert.key, message = %alert.message, "alert");
    let hostname = &config.hostname;
    let now = clock.now();
    record(&data.join("log"), &now, alert);
    if let Some(admin) = config.alerts.admin.clone() {
        let message = alert_mail(hostname, &admin, alert, &now);
        let task =
            tokio::task::spawn_blocking(move || deliver(&*store, &gate, &admin, &message)).await;
        match task {
            Ok(Ok(())) => info!(alert = %alert.key, "alert delivered to the admin address"),
            Ok(Err(e)) => {
                error!(alert = %alert.key, error = %e, "cannot deliver the alert to the admin address")
            }
            Err(_) => {}
        }
    }
    if let Some(url) = &config.alerts.webhook {
        let body = webhook_body(hostname, alert, &now);
        match post(url, &body).await {
            Ok(status) if (200..300).contains(&status) => {
                info!(alert = %alert.key, status, "alert posted to the webhook")
            }
            Ok(status) => error!(alert = %alert.key, status, "the webhook refused the alert"),
            Err(e) => {
                error!(alert = %alert.key, error = %e, "cannot post the alert to the webhook")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// History and the state now, for the faces.

/// The alerts sent, one line each (`<time> <key>: <message>`), in `log/`.
pub const HISTORY_LOG: &str = "alerts.log";

/// How much of the history's end is read: alerts repeat at most once per `alerts.interval`
/// per condition, so this holds weeks of them.
const HISTORY_TAIL_BYTES: u64 = 256 * 1024;

/// Appends one alert to the history. The alert is already in the server's log, so a
/// history that cannot be written is only warned about.
fn record(log_dir: &Path, now: &jiff::Zoned, alert: &Condition) {
    // One line per alert, whatever the message holds.
    let message = alert.message.replace(['\r', '\n'], " ");
    if let Err(e) = gate::oplog::append(
        log_dir,
        HISTORY_LOG,
        now,
        &format!("{}: {message}", alert.key),
    ) {
        warn!(error = %e, "cannot append to log/{HISTORY_LOG}");
    }
}

/// One alert of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// As the history stamps it: the server's local time, "YYYY-MM-DD HH:MM:SS +ZZZZ".
    pub at: String,
    pub key: String,
    pub message: String,
}

/// The alerts sent, newest first, at most `limit` (from the end of `log/alerts.log`).
pub fn history(data: &Path, limit: usize) -> Result<Vec<Sent>> {
    use std::io::{Read, Seek, SeekFrom};
    let path = data.join("log").join(HISTORY_LOG);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                context: format!("cannot read {}", path.display()),
                source: e,
            });
        }
    };
    let io = |source| Error::Io {
        context: format!("cannot read {}", path.display()),
        source,
    };
    let len = file.metadata().map_err(io)?.len();
    let start = len.saturating_sub(HISTORY_TAIL_BYTES);
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(io)?;
    let text = String::from_utf8_lossy(&tail);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line read may have begun before the tail.
        lines.remove(0);
    }
    Ok(lines
        .into_iter()
        .rev()
        .filter_map(parse_sent)
        .take(limit)
        .collect())
}

fn parse_sent(line: &str) -> Option<Sent> {
    let mut parts = line.splitn(4, ' ');
    let (date, time, zone, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let (key, message) = rest.split_once(": ")?;
    Some(Sent {
        at: format!("{date} {time} {zone}"),
        key: key.to_string(),
        message: message.to_string(),
    })
}

/// The conditions that hold now, as far as they can be read without the running server's
/// own state: its disk and WAL figures are measured afresh, and the DDNS updater's and the
/// witness's conditions (which only their services know) are left out.
pub fn active_now(ops: &crate::Ops) -> Vec<Condition> {
    let data = ops.data();
    let config = ops.config();
    let store = ops.store();
    let (free, total) = crate::stats::volume(data).unwrap_or((0, 0));
    let now = ops.clock().now().timestamp().as_second();
    let wal_bytes = store.wal_bytes();
    let inputs = Inputs {
        growth: store.growth().unwrap_or_default(),
        free,
        total,
        disk: (total > 0).then(|| gate::disk::classify(free, &config.disk)),
        backup_scheduled: config.schedule.backup.at.is_some(),
        last_backup_age: crate::backup::newest(&config.schedule.backup.root(data))
            .map(|e| Duration::from_secs((now - e.created()).max(0) as u64)),
        check: check_status(data),
        wal_bytes,
        wal_above_cap: wal_bytes > config.wal.cap_bytes,
        acme_failing: acme_failing(data, config),
        ..Inputs::default()
    };
    conditions(&inputs, config)
        .into_iter()
        .filter(|c| c.active && !c.key.starts_with("ddns_") && !c.key.starts_with("witness_"))
        .collect()
}

/// The mail to the admin: one alert, its key in the subject and in `X-Tegami-Alert`.
pub fn alert_mail(hostname: &str, admin: &str, alert: &Condition, now: &jiff::Zoned) -> Vec<u8> {
    let id = format!(
        "{}.{}.alert@{hostname}",
        now.timestamp().as_second(),
        alert.key
    );
    format!(
        "Return-Path: <>\r\nFrom: tegami <postmaster@{hostname}>\r\nTo: <{admin}>\r\n\
         Subject: [tegami alert] {}\r\nDate: {}\r\nMessage-ID: <{id}>\r\n\
         Auto-Submitted: auto-generated\r\nX-Tegami-Alert: {}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n\r\n-- \r\ntegami on {hostname}\r\n",
        alert.key,
        now.strftime("%a, %d %b %Y %H:%M:%S %z"),
        alert.key,
        alert.message
    )
    .into_bytes()
}

/// The webhook's JSON: the alert's key and message, the host and the time.
pub fn webhook_body(hostname: &str, alert: &Condition, now: &jiff::Zoned) -> String {
    serde_json::json!({
        "alert": alert.key,
        "message": alert.message,
        "host": hostname,
        "time": now.timestamp().to_string(),
    })
    .to_string()
}

/// Delivers to the admin's accounts straight through the store: past `min_free`, never
/// below the hard floor.
pub fn deliver(store: &dyn Store, gate: &Gate, admin: &str, message: &[u8]) -> Result<()> {
    if let DiskState::Critical { free } = gate.disk() {
        return Err(Error::conflict(format!(
            "the data volume is below the hard floor ({} free); nothing may be written",
            store::human_bytes(free)
        )));
    }
    match store.resolve(admin)? {
        Resolution::Local(accounts) if !accounts.is_empty() => {
            store.deliver(message, &accounts)?;
            Ok(())
        }
        _ => Err(Error::not_found(format!(
            "alerts.admin = {admin:?} is not an account or alias of this server"
        ))),
    }
}

/// A minimal HTTP/1.1 POST (http:// only) with a timeout; returns the status code.
pub async fn post(url: &str, body: &str) -> Result<u16> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::invalid("only http:// webhooks are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tegami\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        std::io::Result::Ok(head)
    };
    // The I/O error alone, as the log has always said it: the address is in the message's
    // fields already.
    let head = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| Error::failed(format!("no answer from {addr} within 10 s")))?
        .map_err(Error::failed)?;
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::failed(format!("not an HTTP answer from {addr}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(day: i64, size: u64) -> GrowthRow {
        GrowthRow {
            day,
            database_bytes: 0,
            blob_bytes: size,
            messages: 0,
        }
    }

    #[test]
    fn growth_is_measured_against_the_days_before() {
        let mut growth: Vec<_> = (0..8).map(|d| g(d, d as u64 * 100)).collect();
        growth.push(g(8, 700 + 119));
        assert_eq!(growth_vs_baseline(&growth, 7), Some((119.0, 100.0)));
        let config = Config::load(None).unwrap();
        let inputs = |growth: Vec<GrowthRow>| Inputs {
            growth,
            free: 1,
            total: 1,
            ..Inputs::default()
        };
        let active = |c: Vec<Condition>| {
            c.into_iter()
                .find(|c| c.key == "growth_above_baseline")
                .unwrap()
                .active
        };
        assert!(!active(conditions(&inputs(growth.clone()), &config)));
        growth.last_mut().unwrap().blob_bytes = 700 + 121;
        assert!(active(conditions(&inputs(growth), &config)));
    }

    #[test]
    fn an_alert_is_not_repeated_within_its_interval() {
        let alerts = Alerts::default();
        let c = |active| Condition {
            key: "x".into(),
            active,
            message: "m".into(),
        };
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(alerts.update(&[c(true)], hour, t0).len(), 1);
        assert_eq!(
            alerts
                .update(&[c(true)], hour, t0 + Duration::from_secs(60))
                .len(),
            0
        );
        assert_eq!(
            alerts
                .update(&[c(false)], hour, t0 + Duration::from_secs(120))
                .len(),
            0
        );
        assert_eq!(alerts.update(&[c(true)], hour, t0 + hour).len(), 1);
        assert_eq!(alerts.snapshot()["x"].sent, 2);
    }

    #[test]
    fn one_round_sends_only_what_is_active_and_due() {
        let config = Config::load(None).unwrap();
        let alerts = Alerts::default();
        let inputs = Inputs {
            wal_above_cap: true,
            wal_bytes: 1 << 30,
            free: 1,
            total: 1,
            ..Inputs::default()
        };
        let t0 = Instant::now();
        let due = alerts.evaluate(&inputs, &config, t0);
        assert_eq!(
            due.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
            ["wal_above_cap"]
        );
        assert!(alerts.evaluate(&inputs, &config, t0).is_empty());
        let snapshot = alerts.snapshot();
        assert!(snapshot["wal_above_cap"].active && !snapshot["backup_too_old"].active);
    }

    #[test]
    fn the_mail_and_the_webhook_name_the_alert() {
        let alert = Condition {
            key: "wal_above_cap".into(),
            active: true,
            message: "the log is big".into(),
        };
        let now = jiff::Timestamp::from_second(1_800_000_000)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC);
        let mail =
            String::from_utf8(alert_mail("mx.example", "admin@example", &alert, &now)).unwrap();
        assert!(mail.starts_with("Return-Path: <>\r\n"), "{mail}");
        assert!(
            mail.contains("Subject: [tegami alert] wal_above_cap\r\n"),
            "{mail}"
        );
        assert!(mail.contains("Message-ID: <1800000000.wal_above_cap.alert@mx.example>"));
        assert!(mail.contains("\r\n\r\nthe log is big\r\n"), "{mail}");
        let body: serde_json::Value =
            serde_json::from_str(&webhook_body("mx.example", &alert, &now)).unwrap();
        assert_eq!(body["alert"], "wal_above_cap");
        assert_eq!(body["host"], "mx.example");
        assert_eq!(body["time"], "2027-01-15T08:00:00Z");
    }

    #[test]
    fn the_last_check_line_decides() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_status(dir.path()), CheckStatus::None);
        std::fs::create_dir(dir.path().join("log")).unwrap();
        let write = |text: &str| {
            std::fs::write(dir.path().join("log/maintenance.log"), text).unwrap();
            check_status(dir.path())
        };
        let healthy =
            "2026-11-23 03:00 check finished: healthy (3 messages, 3 blobs checked) in 0.1 s\n";
        assert_eq!(write(healthy), CheckStatus::Healthy);
        let skipped =
            format!("{healthy}2026-11-24 03:00 scheduled check skipped: window 02:00-03:00\n");
        assert!(matches!(write(&skipped), CheckStatus::Skipped(_)));
        let failed =
            format!("{skipped}2026-11-25 03:00 check failed after 0.2 s: disk I/O error\n");
        assert!(matches!(write(&failed), CheckStatus::Failed(_)));
        let config = Config::load(None).unwrap();
        let keys = |check| -> Vec<String> {
            let inputs = Inputs {
                check,
                free: 1,
                total: 1,
                ..Inputs::default()
            };
            conditions(&inputs, &config)
                .into_iter()
                .filter(|c| c.active)
                .map(|c| c.key)
                .collect()
        };
        assert_eq!(keys(write(&failed)), ["check_failed"]);
        assert_eq!(keys(write(&skipped)), ["check_skipped"]);
    }

    #[test]
    fn a_backup_too_old_alerts_only_when_backups_are_scheduled() {
        let config = Config::load(None).unwrap();
        let active = |scheduled, age: Option<u64>| {
            let inputs = Inputs {
                backup_scheduled: scheduled,
                last_backup_age: age.map(|h| Duration::from_secs(h * 3600)),
                free: 1,
                total: 1,
                ..Inputs::default()
            };
            conditions(&inputs, &config)
                .into_iter()
                .any(|c| c.active && c.key == "backup_too_old")
        };
        assert!(!active(false, None));
        assert!(active(true, None));
        assert!(!active(true, Some(20)));
        assert!(active(true, Some(40)));
    }

    #[test]
    fn a_failing_acme_certificate_raises_one_alert_naming_it() {
        let config = Config::load(None).unwrap();
        let inputs = |failing| Inputs {
            acme_failing: failing,
            free: 1,
            total: 1,
            ..Inputs::default()
        };
        let find = |c: Vec<Condition>| {
            c.into_iter()
                .find(|c| c.key == "acme_renewal_failing")
                .unwrap()
        };
        assert!(!find(conditions(&inputs(Vec::new()), &config)).active);
        let status = acme::CertStatus {
            failures: 3,
            last_error: Some("the CA could not validate mail.example.com: 404".into()),
            not_after: Some(1_800_000_000),
            ..acme::CertStatus::default()
        };
        let c = find(conditions(
            &inputs(vec![("mail.example.com".into(), status)]),
            &config,
        ));
        assert!(c.active);
        assert!(
            c.message.contains("mail.example.com: 3 failed"),
            "{}",
            c.message
        );
        assert!(c.message.contains("stays in use"), "{}", c.message);
    }

    #[test]
    fn ddns_and_witness_conditions_follow_their_status() {
        let raw: crate::config::RawConfig = toml::from_str(
            r#"
[ddns]
record = "home.example.com"
check_url = "http://127.0.0.1:9/ip"
update_url = "http://127.0.0.1:9/update?host={name}&ip={ip}"
[[witness.sender]]
name = "home"
token = "0123456789abcdef"
missing_after_secs = 600
"#,
        )
        .unwrap();
        let config = Config::resolve(raw).unwrap();
        let active = |inputs: &Inputs| -> Vec<String> {
            conditions(inputs, &config)
                .into_iter()
                .filter(|c| c.active)
                .map(|c| c.key)
                .collect()
        };
        let quiet = Inputs {
            free: 1,
            total: 1,
            witness: vec![WitnessAge {
                sender: "home".into(),
                silent_for: Duration::from_secs(599),
                last_address: None,
            }],
            ..Inputs::default()
        };
        assert!(active(&quiet).is_empty());
        let troubled = Inputs {
            ddns_failing: Some("the DNS record could not be set".into()),
            ddns_change: Some("changed from a to b".into()),
            witness: vec![WitnessAge {
                sender: "home".into(),
                silent_for: Duration::from_secs(601),
                last_address: Some("192.0.2.1".parse().unwrap()),
            }],
            ..quiet
        };
        assert_eq!(
            active(&troubled),
            [
                "ddns_address_changed",
                "ddns_update_failed",
                "witness_missing_home"
            ]
        );
        let message = conditions(&troubled, &config)
            .into_iter()
            .find(|c| c.key == "witness_missing_home")
            .unwrap()
            .message;
        assert!(
            message.contains("192.0.2.1") && message.contains("witness log"),
            "{message}"
        );
    }

    #[test]
    fn the_history_keeps_one_line_per_alert_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        assert!(history(dir.path(), 10).unwrap().is_empty());
        let log = dir.path().join("log");
        let at = |s: i64| {
            jiff::Timestamp::from_second(1_800_000_000 + s)
                .unwrap()
                .to_zoned(jiff::tz::TimeZone::UTC)
        };
        let alert = |key: &str, message: &str| Condition {
            key: key.into(),
            active: true,
            message: message.into(),
        };
        record(&log, &at(0), &alert("wal_above_cap", "big: really"));
        record(&log, &at(60), &alert("check_failed", "line one\nline two"));
        let sent = history(dir.path(), 10).unwrap();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].key, "check_failed");
        assert_eq!(sent[0].message, "line one line two");
        assert_eq!(sent[1].at, "2027-01-15 08:00:00 +0000");
        assert_eq!(sent[1].message, "big: really");
        assert_eq!(history(dir.path(), 1).unwrap().len(), 1);
    }

    #[test]
    fn free_space_levels_each_raise_their_own_alert() {
        let config = Config::load(None).unwrap();
        let inputs = Inputs {
            free: 8,
            total: 100,
            ..Inputs::default()
        };
        let active: Vec<String> = conditions(&inputs, &config)
            .into_iter()
            .filter(|c| c.active && c.key.starts_with("free_space"))
            .map(|c| c.key)
            .collect();
        assert_eq!(
            active,
            ["free_space_below_20_percent", "free_space_below_10_percent"]
        );
    }
}
