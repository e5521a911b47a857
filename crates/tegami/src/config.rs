//! Configuration in two steps: `RawConfig` mirrors the TOML file (every field optional),
//! `Config` is the resolved, typed result with defaults applied and values checked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub hostname: Option<String>,
    #[serde(default)]
    pub smtp: RawSmtp,
    #[serde(default)]
    pub pop3: RawPop3,
    #[serde(default)]
    pub imap: RawImap,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub disk: RawDisk,
    #[serde(default)]
    pub maintenance: RawMaintenance,
    #[serde(default)]
    pub backup: RawBackup,
    #[serde(default)]
    pub wal: RawWal,
    #[serde(default)]
    pub stats: RawStats,
    #[serde(default)]
    pub alerts: RawAlerts,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub archive: RawArchive,
    /// Mailbox name (in every account) = days its mail is kept.
    #[serde(default)]
    pub retention: std::collections::BTreeMap<String, u32>,
    #[serde(default)]
    pub submission: RawSubmission,
    #[serde(default)]
    pub queue: RawQueue,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub inbound: RawInbound,
    #[serde(default)]
    pub newsletter: RawNewsletter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNewsletter {
    pub base_url: Option<String>,
    pub bounce_domain: Option<String>,
    pub verp_prefix: Option<String>,
    pub hard_bounce_limit: Option<u32>,
    pub keep_days: Option<u32>,
    pub track_clicks: Option<bool>,
    pub track_opens: Option<bool>,
    pub rate_per_second: Option<u32>,
    pub poll_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubmission {
    pub listen: Option<SocketAddr>,
    /// AUTH only inside TLS, except from loopback (default true).
    pub require_tls: Option<bool>,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub retry_secs: Option<Vec<u64>>,
    pub give_up_after_secs: Option<u64>,
    pub delay_notice_after_secs: Option<u64>,
    pub concurrency: Option<usize>,
    pub per_destination: Option<usize>,
    pub rate_per_minute: Option<u32>,
    pub messages_per_connection: Option<usize>,
    pub mx_port: Option<u16>,
    pub tls: Option<String>,
    pub timeout_secs: Option<u64>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    pub smart_host: Option<RawSmartHost>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub domain: String,
    pub host: String,
    pub port: Option<u16>,
    pub tls: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmartHost {
    pub host: String,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// Name servers ("127.0.0.1:53"); none means the system's resolv.conf.
    #[serde(default)]
    pub servers: Vec<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInbound {
    /// SPF, DKIM and DMARC on the SMTP listener (default true).
    pub checks: Option<bool>,
    /// "record" (default: add Authentication-Results, never refuse) or "enforce" (refuse
    /// mail whose DMARC fails under a p=reject policy).
    pub policy: Option<String>,
    /// Check peers on loopback too (tests; local relays are usually trusted).
    pub check_loopback: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArchive {
    /// The first level of the IMAP names archives appear under ("Archive/2024/INBOX").
    pub imap_prefix: Option<String>,
    /// Automatic archiving rules, run by the server's daily schedule.
    #[serde(default)]
    pub auto: Vec<RawAutoArchive>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutoArchive {
    pub older_than_days: u32,
    pub every_days: Option<u32>,
    pub account: Option<String>,
    pub label: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStats {
    /// Days of daily usage totals and store sizes kept.
    pub keep_days: Option<u32>,
    /// How often the server writes the usage it counted in memory.
    pub flush_interval_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Where alerts are delivered (an account of this server, or an alias of one).
    pub admin: Option<String>,
    /// An http:// URL that receives each alert as a JSON POST.
    pub webhook: Option<String>,
    /// The same alert is not repeated within this many seconds.
    pub interval_secs: Option<u64>,
    /// How often the conditions are evaluated.
    pub check_interval_secs: Option<u64>,
    /// Alert when a day's growth exceeds the baseline (the average of the days before) by
    /// this many percent.
    pub growth_percent: Option<f64>,
    /// Days that make up the baseline.
    pub baseline_days: Option<u32>,
    /// Free-space levels of the data volume, in percent: one alert level each.
    pub free_percent_levels: Option<Vec<f64>>,
    /// Alert when the last successful backup is older than this (only if backups are
    /// scheduled).
    pub backup_max_age_hours: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWal {
    /// The write-ahead log's size cap: the server checkpoints it when it passes half of it.
    pub cap_bytes: Option<u64>,
    /// How often the server looks at the log's size.
    pub check_interval_ms: Option<u64>,
    /// How long a checkpoint waits for readers to move on (writes wait meanwhile).
    pub checkpoint_patience_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    pub min_free_bytes: Option<u64>,
    pub hard_floor_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    /// Daily time of the scheduled check and optimisation, "HH:MM" on a ten-minute step.
    pub check_at: Option<String>,
    /// The manual's behaviour: maintenance mode while the scheduled check runs.
    pub maintenance_during_check: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    /// Daily time of the scheduled backup, "HH:MM" local time.
    pub at: Option<String>,
    /// The backup directory; relative paths are taken from the data directory.
    pub dir: Option<PathBuf>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    /// Verify every scheduled backup right after taking it.
    pub verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub listen: Option<SocketAddr>,
    pub max_message_size: Option<u64>,
    pub max_recipients: Option<usize>,
    pub max_line_length: Option<usize>,
    pub command_timeout_secs: Option<u64>,
    pub data_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_errors: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPop3 {
    pub listen: Option<SocketAddr>,
    pub max_connections: Option<usize>,
    pub command_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImap {
    pub listen: Option<SocketAddr>,
    pub max_connections: Option<usize>,
    pub max_connections_per_account: Option<usize>,
    pub command_timeout_secs: Option<u64>,
    /// LOGIN and AUTHENTICATE without TLS from a peer that is not on loopback.
    pub allow_plaintext_auth: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
    pub max_file_bytes: Option<u64>,
    pub max_files: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub hostname: String,
    pub smtp: SmtpListener,
    pub pop3: Pop3Listener,
    pub imap: ImapListener,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub log: LogConfig,
    pub disk: gate::DiskThresholds,
    pub schedule: Schedule,
    pub wal: WalConfig,
    pub stats: StatsConfig,
    pub alerts: AlertsConfig,
    pub http: SocketAddr,
    pub archive: ArchiveConfig,
    /// (mailbox name, days kept), by name.
    pub retention: Vec<(String, u32)>,
    pub submission: SubmissionListener,
    pub queue: QueueSettings,
    /// Name servers for MX lookups and inbound checks; empty = the system's.
    pub dns_servers: Vec<SocketAddr>,
    pub inbound: InboundSettings,
    /// `bounce_domain` is "" when not configured: `serve` then takes the first local domain.
    pub newsletter: newsletter::NewsletterConfig,
}

#[derive(Debug, Clone)]
pub struct SubmissionListener {
    pub listen: SocketAddr,
    pub require_tls: bool,
    pub max_connections: usize,
}

/// How the outbound queue sends (`outbound::QueueConfig` is built from it in `serve.rs`).
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub retry: Vec<Duration>,
    pub give_up_after: Duration,
    pub delay_notice_after: Duration,
    pub concurrency: usize,
    pub per_destination: usize,
    pub rate_per_minute: u32,
    pub messages_per_connection: usize,
    pub mx_port: u16,
    pub tls: TlsChoice,
    pub timeout: Option<Duration>,
    pub routes: Vec<Route>,
    pub smart_host: Option<SmartHost>,
}

/// The verification policy for STARTTLS towards a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsChoice {
    /// STARTTLS when offered, any certificate (what most MTAs do on port 25).
    Opportunistic,
    /// STARTTLS when offered, and then the certificate must verify.
    Verified,
    /// STARTTLS with a verified certificate, or no delivery.
    Required,
    None,
}

impl TlsChoice {
    fn parse(key: &str, value: Option<&str>, default: TlsChoice) -> anyhow::Result<TlsChoice> {
        Ok(match value {
            None => default,
            Some("opportunistic") => TlsChoice::Opportunistic,
            Some("verified") => TlsChoice::Verified,
            Some("required") => TlsChoice::Required,
            Some("none") => TlsChoice::None,
            Some(other) => bail!(
                "{key} = {other:?} is not a TLS policy: use \"opportunistic\", \"verified\", \"required\" or \"none\""
            ),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub domain: String,
    pub host: String,
    pub port: u16,
    pub tls: TlsChoice,
}

#[derive(Debug, Clone)]
pub struct SmartHost {
    pub host: String,
    pub port: u16,
    pub tls: TlsChoice,
    pub auth: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct InboundSettings {
    pub checks: bool,
    pub enforce: bool,
    pub check_loopback: bool,
}

#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub imap_prefix: String,
    pub auto: Vec<AutoArchive>,
}

/// "Archive mail older than `older_than_days`, at most once every `every_days`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoArchive {
    pub older_than_days: u32,
    pub every_days: u32,
    pub account: Option<String>,
    /// Archives it makes are labelled "<label> <date>" (default label "auto").
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct StatsConfig {
    pub keep_days: u32,
    pub flush_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub admin: Option<String>,
    pub webhook: Option<String>,
    pub interval: Duration,
    pub check_interval: Duration,
    pub growth_percent: f64,
    pub baseline_days: u32,
    /// Descending.
    pub free_percent_levels: Vec<f64>,
    pub backup_max_age: Duration,
}

/// The bound on the write-ahead log (`wal.rs` in the store explains why it is needed).
#[derive(Debug, Clone)]
pub struct WalConfig {
    pub cap_bytes: u64,
    pub check_interval: Duration,
    pub patience: Duration,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    /// Minute of the day of the scheduled check, if one is configured.
    pub check_at: Option<u16>,
    pub maintenance_during_check: bool,
    /// The backups: their schedule, and where they go and how long they stay, which the
    /// `backup` commands use too. It lives here because the schedule runs it.
    pub backup: BackupConfig,
}

#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Minute of the day of the scheduled backup, if one is configured.
    pub at: Option<u16>,
    /// None: `backups/` in the data directory.
    pub dir: Option<PathBuf>,
    pub keep_daily: usize,
    pub keep_weekly: usize,
    pub verify: bool,
    /// The config file this config was read from (absolute); every backup holds a copy.
    pub config_file: Option<PathBuf>,
}

impl BackupConfig {
    /// The backup directory of the store in `data`.
    pub fn root(&self, data: &Path) -> PathBuf {
        match &self.dir {
            Some(dir) => data.join(dir),
            None => store::backup::default_root(data),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpListener {
    pub listen: SocketAddr,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub max_connections: usize,
    pub max_errors: usize,
}

#[derive(Debug, Clone)]
pub struct Pop3Listener {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub command_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ImapListener {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub max_connections_per_account: usize,
    pub command_timeout: Duration,
    pub allow_plaintext_auth: bool,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub max_file_bytes: u64,
    pub max_files: usize,
}

impl Config {
    /// Reads the config file if one was named; no file means every default.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let raw = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("config file {} is not valid", path.display()))?
            }
            None => RawConfig::default(),
        };
        let mut config = Config::resolve(raw)?;
        config.schedule.backup.config_file =
            path.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
        Ok(config)
    }

    pub fn resolve(raw: RawConfig) -> anyhow::Result<Config> {
        let positive = |name: &str, value: u64| -> anyhow::Result<u64> {
            if value == 0 {
                bail!("{name} must be greater than zero");
            }
            Ok(value)
        };
        let smtp = SmtpListener {
            listen: raw
                .smtp
                .listen
                .unwrap_or_else(|| "127.0.0.1:2525".parse().unwrap()),
            max_message_size: positive(
                "smtp.max_message_size",
                raw.smtp.max_message_size.unwrap_or(25 << 20),
            )?,
            max_recipients: positive(
                "smtp.max_recipients",
                raw.smtp.max_recipients.unwrap_or(100) as u64,
            )? as usize,
            max_line_length: raw.smtp.max_line_length.unwrap_or(2048).max(512),
            command_timeout: Duration::from_secs(positive(
                "smtp.command_timeout_secs",
                raw.smtp.command_timeout_secs.unwrap_or(300),
            )?),
            data_timeout: Duration::from_secs(positive(
                "smtp.data_timeout_secs",
                raw.smtp.data_timeout_secs.unwrap_or(600),
            )?),
            max_connections: positive(
                "smtp.max_connections",
                raw.smtp.max_connections.unwrap_or(200) as u64,
            )? as usize,
            max_errors: raw.smtp.max_errors.unwrap_or(20).max(1),
        };
        let pop3 = Pop3Listener {
            listen: raw
                .pop3
                .listen
                .unwrap_or_else(|| "127.0.0.1:2110".parse().unwrap()),
            max_connections: positive(
                "pop3.max_connections",
                raw.pop3.max_connections.unwrap_or(200) as u64,
            )? as usize,
            command_timeout: Duration::from_secs(positive(
                "pop3.command_timeout_secs",
                // RFC 1939 asks for an inactivity timer of at least ten minutes.
                raw.pop3.command_timeout_secs.unwrap_or(600),
            )?),
        };
        let imap = ImapListener {
            listen: raw
                .imap
                .listen
                .unwrap_or_else(|| "127.0.0.1:2143".parse().unwrap()),
            max_connections: positive(
                "imap.max_connections",
                raw.imap.max_connections.unwrap_or(500) as u64,
            )? as usize,
            max_connections_per_account: positive(
                "imap.max_connections_per_account",
                raw.imap.max_connections_per_account.unwrap_or(20) as u64,
            )? as usize,
            command_timeout: Duration::from_secs(positive(
                "imap.command_timeout_secs",
                // RFC 3501 §5.4: an idle client gets at least 30 minutes.
                raw.imap.command_timeout_secs.unwrap_or(30 * 60),
            )?),
            allow_plaintext_auth: raw.imap.allow_plaintext_auth.unwrap_or(false),
        };
        let log = LogConfig {
            level: raw.log.level.unwrap_or_else(|| "info".into()),
            max_file_bytes: raw.log.max_file_bytes.unwrap_or(10 << 20).max(4096),
            max_files: raw.log.max_files.unwrap_or(5).max(1),
        };
        // As Postfix does: room for one and a half of the largest message we accept.
        let min_free = raw
            .disk
            .min_free_bytes
            .unwrap_or(smtp.max_message_size.saturating_mul(3) / 2);
        let disk = gate::DiskThresholds {
            min_free,
            // The manual's floor: below 10 MB nothing is written.
            hard_floor: raw.disk.hard_floor_bytes.unwrap_or(10 << 20).min(min_free),
        };
        let check_at = match raw.maintenance.check_at.as_deref() {
            None => None,
            Some(text) => {
                let minute = gate::maint::parse_minutes(text).with_context(|| {
                    format!("maintenance.check_at = {text:?} is not a time (HH:MM)")
                })?;
                if minute % 10 != 0 {
                    bail!(
                        "maintenance.check_at = {text:?} must fall on a ten-minute step (00, 10, ... 50)"
                    );
                }
                Some(minute)
            }
        };
        let backup_at = match raw.backup.at.as_deref() {
            None => None,
            Some(text) => Some(
                gate::maint::parse_minutes(text)
                    .with_context(|| format!("backup.at = {text:?} is not a time (HH:MM)"))?,
            ),
        };
        let schedule = Schedule {
            check_at,
            maintenance_during_check: raw.maintenance.maintenance_during_check.unwrap_or(false),
            backup: BackupConfig {
                at: backup_at,
                dir: raw.backup.dir,
                keep_daily: raw.backup.keep_daily.unwrap_or(7),
                keep_weekly: raw.backup.keep_weekly.unwrap_or(4),
                verify: raw.backup.verify.unwrap_or(true),
                config_file: None,
            },
        };
        let wal = WalConfig {
            cap_bytes: positive("wal.cap_bytes", raw.wal.cap_bytes.unwrap_or(64 << 20))?,
            check_interval: Duration::from_millis(positive(
                "wal.check_interval_ms",
                raw.wal.check_interval_ms.unwrap_or(250),
            )?),
            patience: Duration::from_millis(positive(
                "wal.checkpoint_patience_ms",
                raw.wal.checkpoint_patience_ms.unwrap_or(5000),
            )?),
        };
        let stats = StatsConfig {
            keep_days: positive(
                "stats.keep_days",
                u64::from(raw.stats.keep_days.unwrap_or(400)),
            )? as u32,
            flush_interval: Duration::from_secs(positive(
                "stats.flush_interval_secs",
                raw.stats.flush_interval_secs.unwrap_or(60),
            )?),
        };
        let mut levels = raw
            .alerts
            .free_percent_levels
            .unwrap_or_else(|| vec![20.0, 10.0, 5.0]);
        if levels.iter().any(|l| !(0.0..100.0).contains(l)) {
            bail!("alerts.free_percent_levels must lie between 0 and 100");
        }
        levels.sort_by(|a, b| b.total_cmp(a));
        if let Some(url) = &raw.alerts.webhook
            && !url.starts_with("http://")
        {
            bail!(
                "alerts.webhook = {url:?} must be an http:// URL (send it through a local relay for https)"
            );
        }
        let alerts = AlertsConfig {
            admin: raw.alerts.admin,
            webhook: raw.alerts.webhook,
            interval: Duration::from_secs(raw.alerts.interval_secs.unwrap_or(3600)),
            check_interval: Duration::from_secs(positive(
                "alerts.check_interval_secs",
                raw.alerts.check_interval_secs.unwrap_or(60),
            )?),
            growth_percent: raw.alerts.growth_percent.unwrap_or(20.0).max(0.0),
            baseline_days: positive(
                "alerts.baseline_days",
                u64::from(raw.alerts.baseline_days.unwrap_or(7)),
            )? as u32,
            free_percent_levels: levels,
            backup_max_age: Duration::from_secs(
                3600 * positive(
                    "alerts.backup_max_age_hours",
                    raw.alerts.backup_max_age_hours.unwrap_or(36),
                )?,
            ),
        };
        let imap_prefix = raw
            .archive
            .imap_prefix
            .unwrap_or_else(|| store::archive::DEFAULT_PREFIX.to_string())
            .trim_matches('/')
            .to_string();
        if imap_prefix.is_empty() || imap_prefix.eq_ignore_ascii_case("INBOX") {
            bail!(
                "archive.imap_prefix must be a mailbox name other than INBOX, such as \"Archive\""
            );
        }
        let mut auto = Vec::new();
        for rule in raw.archive.auto {
            positive("archive.auto.older_than_days", rule.older_than_days.into())?;
            auto.push(AutoArchive {
                older_than_days: rule.older_than_days,
                every_days: positive(
                    "archive.auto.every_days",
                    rule.every_days.unwrap_or(30).into(),
                )? as u32,
                account: rule.account,
                label: rule.label.unwrap_or_else(|| "auto".into()),
            });
        }
        for (mailbox, days) in &raw.retention {
            if *days == 0 {
                bail!("retention.{mailbox} must be at least one day");
            }
        }
        let submission = SubmissionListener {
            listen: raw
                .submission
                .listen
                .unwrap_or_else(|| "127.0.0.1:2587".parse().unwrap()),
            require_tls: raw.submission.require_tls.unwrap_or(true),
            max_connections: positive(
                "submission.max_connections",
                raw.submission.max_connections.unwrap_or(200) as u64,
            )? as usize,
        };
        let queue = resolve_queue(raw.queue)?;
        let inbound = InboundSettings {
            checks: raw.inbound.checks.unwrap_or(true),
            enforce: match raw.inbound.policy.as_deref() {
                None | Some("record") => false,
                Some("enforce") => true,
                Some(other) => bail!(
                    "inbound.policy = {other:?} is not a policy: use \"record\" or \"enforce\""
                ),
            },
            check_loopback: raw.inbound.check_loopback.unwrap_or(false),
        };
        let newsletter = {
            let n = raw.newsletter;
            let default = newsletter::NewsletterConfig::default();
            let base_url = n
                .base_url
                .unwrap_or_else(|| {
                    format!(
                        "http://{}",
                        raw.http
                            .listen
                            .unwrap_or_else(|| "127.0.0.1:8025".parse().unwrap())
                    )
                })
                .trim_end_matches('/')
                .to_string();
            if !base_url.starts_with("http://") && !base_url.starts_with("https://") {
                bail!(
                    "newsletter.base_url = {base_url:?} must be the http:// or https:// address readers reach the HTTP listener at"
                );
            }
            let verp_prefix = n.verp_prefix.unwrap_or(default.verp_prefix);
            if verp_prefix.is_empty()
                || !verp_prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bail!("newsletter.verp_prefix = {verp_prefix:?} must be letters, digits, - or _");
            }
            newsletter::NewsletterConfig {
                base_url,
                bounce_domain: n.bounce_domain.unwrap_or_default().to_ascii_lowercase(),
                verp_prefix,
                hard_bounce_limit: n.hard_bounce_limit.unwrap_or(default.hard_bounce_limit),
                keep_days: positive(
                    "newsletter.keep_days",
                    n.keep_days.unwrap_or(default.keep_days).into(),
                )? as u32,
                track_clicks: n.track_clicks.unwrap_or(default.track_clicks),
                track_opens: n.track_opens.unwrap_or(default.track_opens),
                rate_per_second: n.rate_per_second.unwrap_or(default.rate_per_second),
                poll: n
                    .poll_secs
                    .map(|s| Duration::from_secs(s.max(1)))
                    .unwrap_or(default.poll),
            }
        };
        Ok(Config {
            newsletter,
            submission,
            queue,
            dns_servers: raw.dns.servers,
            inbound,
            archive: ArchiveConfig { imap_prefix, auto },
            retention: raw.retention.into_iter().collect(),
            stats,
            alerts,
            http: raw
                .http
                .listen
                .unwrap_or_else(|| "127.0.0.1:8025".parse().unwrap()),
            wal,
            disk,
            schedule,
            hostname: raw.hostname.unwrap_or_else(default_hostname),
            smtp,
            pop3,
            imap,
            tls: raw.tls.map(|t| (t.cert, t.key)),
            log,
        })
    }
}

/// The queue's settings. The default back-off doubles from five minutes to four hours and
/// then tries every four hours until five days have passed, about 35 attempts; a delay
/// notice goes out after four hours, as RFC 5321 section 4.5.4.1 suggests.
fn resolve_queue(raw: RawQueue) -> anyhow::Result<QueueSettings> {
    let retry: Vec<Duration> = raw
        .retry_secs
        .unwrap_or_else(|| vec![300, 600, 1200, 2400, 4800, 9600, 14400])
        .into_iter()
        .map(Duration::from_secs)
        .collect();
    if retry.is_empty() || retry.iter().any(|d| d.is_zero()) {
        bail!("queue.retry_secs must list at least one wait, each greater than zero");
    }
    let at_least_one = |key: &str, value: usize| -> anyhow::Result<usize> {
        if value == 0 {
            bail!("{key} must be greater than zero");
        }
        Ok(value)
    };
    let mut routes = Vec::new();
    for route in raw.route {
        if route.domain.is_empty() || route.host.is_empty() {
            bail!("every [[queue.route]] needs a domain and a host");
        }
        routes.push(Route {
            domain: route.domain.trim_end_matches('.').to_ascii_lowercase(),
            host: route.host,
            port: route.port.unwrap_or(25),
            tls: TlsChoice::parse(
                "queue.route.tls",
                route.tls.as_deref(),
                TlsChoice::Opportunistic,
            )?,
        });
    }
    let smart_host = match raw.smart_host {
        None => None,
        Some(host) => {
            let auth = match (host.username, host.password) {
                (Some(user), Some(password)) => Some((user, password)),
                (None, None) => None,
                _ => bail!("queue.smart_host needs both username and password, or neither"),
            };
            // Credentials never travel in the clear: a smart host with AUTH needs TLS.
            let default_tls = if auth.is_some() {
                TlsChoice::Required
            } else {
                TlsChoice::Opportunistic
            };
            Some(SmartHost {
                host: host.host,
                port: host.port.unwrap_or(587),
                tls: TlsChoice::parse("queue.smart_host.tls", host.tls.as_deref(), default_tls)?,
                auth,
            })
        }
    };
    Ok(QueueSettings {
        retry,
        give_up_after: Duration::from_secs(raw.give_up_after_secs.unwrap_or(5 * 86400)),
        delay_notice_after: Duration::from_secs(raw.delay_notice_after_secs.unwrap_or(4 * 3600)),
        concurrency: at_least_one("queue.concurrency", raw.concurrency.unwrap_or(32))?,
        per_destination: at_least_one("queue.per_destination", raw.per_destination.unwrap_or(4))?,
        rate_per_minute: raw.rate_per_minute.unwrap_or(0),
        messages_per_connection: at_least_one(
            "queue.messages_per_connection",
            raw.messages_per_connection.unwrap_or(100),
        )?,
        mx_port: raw.mx_port.unwrap_or(25),
        tls: TlsChoice::parse("queue.tls", raw.tls.as_deref(), TlsChoice::Opportunistic)?,
        timeout: raw.timeout_secs.map(Duration::from_secs),
        routes,
        smart_host,
    })
}

fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../tegami.example.toml");
        let raw: RawConfig = toml::from_str(text).unwrap();
        let config = Config::resolve(raw).unwrap();
        assert_eq!(config.smtp.max_recipients, 100);
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.smtp.listen.to_string(), "127.0.0.1:2525");
        assert_eq!(config.pop3.listen.to_string(), "127.0.0.1:2110");
        assert_eq!(config.imap.listen.to_string(), "127.0.0.1:2143");
        assert_eq!(config.http.to_string(), "127.0.0.1:8025");
        assert_eq!(config.wal.cap_bytes, 64 << 20);
        assert_eq!(config.stats.keep_days, 400);
        assert_eq!(config.alerts.growth_percent, 20.0);
        assert_eq!(config.alerts.free_percent_levels, [20.0, 10.0, 5.0]);
        assert!(config.tls.is_none());
    }

    #[test]
    fn unknown_keys_and_zero_limits_are_refused() {
        assert!(toml::from_str::<RawConfig>("[smtp]\nmax_mesage_size = 5").is_err());
        let raw: RawConfig = toml::from_str("[smtp]\nmax_recipients = 0").unwrap();
        assert!(
            Config::resolve(raw)
                .unwrap_err()
                .to_string()
                .contains("max_recipients")
        );
    }
}
