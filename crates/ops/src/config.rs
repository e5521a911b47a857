//! Configuration in two steps: `RawConfig` mirrors the TOML file (every field optional),
//! `Config` is the resolved, typed result with defaults applied and values checked.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::fmt::Display;

use serde::Deserialize;

/// A config that cannot be used: what is wrong, naming the key, in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

type Result<T> = std::result::Result<T, ConfigError>;

macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(ConfigError(format!($($arg)*)))
    };
}

/// `context` and `with_context` for any failure that displays: the message, a colon, the
/// cause, as every error line of the CLI reads.
trait Context<T> {
    fn context(self, what: impl Display) -> Result<T>;
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| ConfigError(format!("{what}: {e}")))
    }
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| ConfigError(format!("{}: {e}", what())))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Result<T> {
        self.ok_or_else(|| ConfigError(what.to_string()))
    }
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| ConfigError(what().to_string()))
    }
}

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
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub limits: RawLimits,
    pub acme: Option<RawAcme>,
    #[serde(default)]
    pub clients: RawClients,
    pub ddns: Option<RawDdns>,
    #[serde(default)]
    pub witness: RawWitness,
    #[serde(default)]
    pub console: RawConsole,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Started as root: the user `serve` switches to once every listener is bound.
    pub user: Option<String>,
    /// Its group; default the user's primary group.
    pub group: Option<String>,
    pub public_ipv4: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    /// The account (or alias) that receives postmaster@ of every local domain.
    pub postmaster: Option<String>,
    /// Where DMARC and TLS-RPT reports go (default: postmaster@ the domain).
    pub report_address: Option<String>,
    /// "testing" (default) or "enforce".
    pub mta_sts_mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Connections one client address (one /64 for IPv6) may hold on each listener before
    /// logging in (on the SMTP listener: at all).
    pub max_connections_per_address: Option<usize>,
    /// Seconds a client may stay connected without logging in, or on the SMTP listener
    /// before its first command.
    pub login_timeout_secs: Option<u64>,
    /// Loopback peers count as local: exempt from the per-address limit, and they may send
    /// passwords without TLS (default true).
    pub trust_loopback: Option<bool>,
}

/// `[acme]`: certificates obtained and renewed from an ACME CA (RFC 8555).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    /// The CA's directory URL.
    pub directory: Option<String>,
    /// `mailto:` addresses the CA may write to about the account.
    #[serde(default)]
    pub contact: Vec<String>,
    /// Host names for one certificate.
    #[serde(default)]
    pub names: Vec<String>,
    /// More certificates, one table each.
    #[serde(default)]
    pub certificate: Vec<RawAcmeCertificate>,
    pub renew_before_days: Option<u64>,
    /// A PEM file of extra roots to trust for the directory's HTTPS.
    pub ca_file: Option<PathBuf>,
    pub check_interval_secs: Option<u64>,
    pub retry_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcmeCertificate {
    pub names: Vec<String>,
}

/// What mail clients are told (DNS SRV records, autoconfiguration): the host and ports
/// they connect to, which behind NAT or a port mapping differ from the listen addresses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClients {
    pub host: Option<String>,
    pub imaps: Option<u16>,
    pub imap: Option<u16>,
    pub pop3s: Option<u16>,
    pub pop3: Option<u16>,
    pub submissions: Option<u16>,
    pub submission: Option<u16>,
}

/// `[ddns]`: keep a DNS record pointing at this server's public address.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDdns {
    /// The name whose A (or AAAA) record is kept up to date.
    pub record: String,
    /// Where the address comes from: a URL that answers the caller's address as plain
    /// text, or a network interface. Exactly one.
    pub check_url: Option<String>,
    pub interface: Option<String>,
    /// "ipv4" (A record, default) or "ipv6" (AAAA).
    pub family: Option<String>,
    pub interval_secs: Option<u64>,
    /// After a failed update the next try comes this soon (default 60, at most the interval).
    pub retry_secs: Option<u64>,
    pub ttl: Option<u32>,
    /// RFC 2136: the DNS server ("192.0.2.53" or "192.0.2.53:53"), the zone (default: the
    /// record without its first label), and a TSIG key (HMAC-SHA256) as name and base64
    /// secret, or a BIND key file.
    pub server: Option<String>,
    pub zone: Option<String>,
    pub tsig_key_name: Option<String>,
    pub tsig_secret: Option<String>,
    pub tsig_key_file: Option<PathBuf>,
    /// Or an HTTP update URL with `{name}` and `{ip}`, and optional basic auth.
    pub update_url: Option<String>,
    pub update_username: Option<String>,
    pub update_password: Option<String>,
    /// Seconds one check or update may take.
    pub timeout_secs: Option<u64>,
}

/// `[witness]`: heartbeats to another server, and receiving theirs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWitness {
    /// Sending: the witness's URL (a tegami serves `/witness/heartbeat`), this server's
    /// name there (default: hostname), the shared token, and how often.
    pub url: Option<String>,
    pub name: Option<String>,
    pub token: Option<String>,
    pub interval_secs: Option<u64>,
    /// Receiving: the senders allowed, and what is kept of each.
    #[serde(default)]
    pub sender: Vec<RawWitnessSender>,
    /// Peers whose X-Forwarded-For is believed (a reverse proxy on this host).
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub keep_heartbeats: Option<usize>,
    pub keep_addresses: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWitnessSender {
    pub name: String,
    pub token: String,
    /// Alert when no heartbeat came for this long (default 1800: three missed at 600).
    pub missing_after_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNewsletter {
    pub base_url: Option<String>,
    pub bounce_domain: Option<String>,
    pub verp_prefix: Option<String>,
    pub hard_bounce_limit: Option<u32>,
    /// Mails soft-bounced within `soft_bounce_days` that disable a subscriber (0: never).
    pub soft_bounce_limit: Option<u32>,
    pub soft_bounce_days: Option<u32>,
    pub keep_days: Option<u32>,
    pub track_clicks: Option<bool>,
    pub track_opens: Option<bool>,
    pub rate_per_second: Option<u32>,
    pub poll_secs: Option<u64>,
    /// The subscribe form sends one address at most one confirmation mail in this long.
    pub confirm_interval_secs: Option<u64>,
    /// Subscribe requests one caller address may make in an hour.
    pub subscribe_per_hour: Option<u32>,
    /// Callers of /subscribe (addresses or ADDRESS/BITS) whose subscribers to a list
    /// without double opt-in are active at once; anyone else's get a confirmation mail.
    pub subscribe_trusted: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubmission {
    pub listen: Option<SocketAddr>,
    /// Submission over implicit TLS (RFC 8314, port 465).
    pub tls_listen: Option<SocketAddr>,
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

/// `[console]`: the web console on the HTTP listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    /// Allow signing in over plain HTTP from other hosts (a TLS proxy on another host).
    pub allow_plain_http: Option<bool>,
    /// A session unused this long ends (default 30).
    pub session_idle_minutes: Option<u64>,
    /// A session ends this long after sign-in (default 12).
    pub session_hours: Option<u64>,
    /// Cookies get `Secure`: set when a TLS proxy serves the console (default false).
    pub secure_cookies: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<SocketAddr>,
    /// HTTPS with the server's certificates (default 127.0.0.1:8443 when there is one).
    pub tls_listen: Option<SocketAddr>,
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
    /// POP3 over implicit TLS (port 995).
    pub tls_listen: Option<SocketAddr>,
    pub max_connections: Option<usize>,
    pub command_timeout_secs: Option<u64>,
    /// USER and PASS without TLS from a peer that is not on loopback.
    pub allow_plaintext_auth: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImap {
    pub listen: Option<SocketAddr>,
    /// IMAP over implicit TLS (port 993).
    pub tls_listen: Option<SocketAddr>,
    pub max_connections: Option<usize>,
    pub max_connections_per_account: Option<usize>,
    pub command_timeout_secs: Option<u64>,
    /// LOGIN and AUTHENTICATE without TLS from a peer that is not on loopback.
    pub allow_plaintext_auth: Option<bool>,
    /// Keep the full-text index of live mail (`index.db`) that SEARCH uses (default false:
    /// it takes about 1.8 times the mail's size on disk and a third of the delivery rate on
    /// two cores, which an operator should choose).
    pub full_text_index: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The default certificate (served to clients without SNI or with an unknown name).
    pub cert: Option<PathBuf>,
    /// Its key; left out, the key is read from the `cert` file.
    pub key: Option<PathBuf>,
    /// More certificates, chosen by the name the client asks for (SNI).
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
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
    /// The configured certificates, the default first; None without a `[tls]` section.
    /// Certificates in `DATA/acme/certs/` are loaded besides (see `tls_sources`).
    pub tls: Option<Vec<net::CertFiles>>,
    pub log: LogConfig,
    pub disk: gate::DiskThresholds,
    pub schedule: Schedule,
    pub wal: WalConfig,
    pub stats: StatsConfig,
    pub alerts: AlertsConfig,
    pub http: SocketAddr,
    /// The HTTPS listener: the same routes over TLS.
    pub https: Option<SocketAddr>,
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
    pub server: ServerSettings,
    pub limits: Limits,
    /// `[acme]`, when configured.
    pub acme: Option<acme::AcmeConfig>,
    pub clients: ClientsConfig,
    pub ddns: Option<::ddns::Config>,
    pub witness: WitnessSettings,
    pub console: ConsoleSettings,
}

/// `[console]`: who may sign in to the web console how, and for how long.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub allow_plain_http: bool,
    pub session_idle: Duration,
    pub session_lifetime: Duration,
    pub secure_cookies: bool,
}

/// `[server]`: who `serve` runs as after binding its listeners, and what the world sees of
/// the server (the addresses that go into DNS, who reads postmaster@ mail).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub user: Option<String>,
    pub group: Option<String>,
    pub public_ipv4: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    /// Who receives postmaster@ of every local domain: `[server] postmaster`, else
    /// `[alerts] admin`; `None` when neither is set.
    pub postmaster: Option<String>,
    /// `None`: postmaster@ each domain.
    pub report_address: Option<String>,
    pub mta_sts_mode: dns_records::MtaStsMode,
}

#[derive(Debug, Clone)]
pub struct ClientsConfig {
    /// Default: `hostname`.
    pub host: String,
    /// 0 = not offered.
    pub ports: dns_records::ClientPorts,
}

/// What every listener applies to clients that have not logged in.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections_per_address: usize,
    pub login_timeout: Duration,
    pub trust_loopback: bool,
}

#[derive(Debug, Clone)]
pub struct WitnessSettings {
    /// Heartbeats this server sends, and how often.
    pub send: Option<(::ddns::witness::Heartbeat, Duration)>,
    /// Senders this server records; empty = no witness endpoint.
    pub senders: Vec<WitnessSender>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub limits: ::ddns::WitnessLimits,
}

#[derive(Debug, Clone)]
pub struct WitnessSender {
    pub name: String,
    pub token: String,
    pub missing_after: Duration,
}

#[derive(Debug, Clone)]
pub struct SubmissionListener {
    pub listen: SocketAddr,
    /// Implicit TLS; None when not bound (no certificate).
    pub tls_listen: Option<SocketAddr>,
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
    fn parse(key: &str, value: Option<&str>, default: TlsChoice) -> Result<TlsChoice> {
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
    /// Implicit TLS; None when not bound (no certificate).
    pub tls_listen: Option<SocketAddr>,
    pub max_connections: usize,
    pub command_timeout: Duration,
    pub allow_plaintext_auth: bool,
}

#[derive(Debug, Clone)]
pub struct ImapListener {
    pub listen: SocketAddr,
    /// Implicit TLS; None when not bound (no certificate).
    pub tls_listen: Option<SocketAddr>,
    pub max_connections: usize,
    pub max_connections_per_account: usize,
    pub command_timeout: Duration,
    pub allow_plaintext_auth: bool,
    /// The server runs the indexer of live mail (SEARCH then uses what it has indexed).
    pub full_text_index: bool,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub max_file_bytes: u64,
    pub max_files: usize,
}

impl Config {
    /// Reads the config file if one was named; no file means every default.
    pub fn load(path: Option<&Path>) -> Result<Config> {
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

    pub fn resolve(raw: RawConfig) -> Result<Config> {
        let smtp = resolve_smtp(raw.smtp)?;
        let pop3 = resolve_pop3(raw.pop3)?;
        let imap = resolve_imap(raw.imap)?;
        let log = LogConfig {
            level: log_level(raw.log.level.unwrap_or_else(|| "info".into()))?,
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
        let schedule = resolve_schedule(raw.maintenance, raw.backup)?;
        let wal = resolve_wal(raw.wal)?;
        let stats = resolve_stats(raw.stats)?;
        let alerts = resolve_alerts(raw.alerts)?;
        let archive = resolve_archive(raw.archive, &raw.retention)?;
        let submission = resolve_submission(raw.submission)?;
        let queue = resolve_queue(raw.queue)?;
        let inbound = resolve_inbound(raw.inbound)?;
        let newsletter = resolve_newsletter(raw.newsletter, raw.http.listen)?;
        let tls = raw.tls.map(resolve_tls).transpose()?;
        let limits = resolve_limits(raw.limits)?;
        let acme = raw.acme.map(resolve_acme).transpose()?;
        let hostname = raw.hostname.unwrap_or_else(default_hostname);
        let server = resolve_server(raw.server, alerts.admin.as_deref())?;
        let clients = resolve_clients(raw.clients, &hostname)?;
        let ddns = raw.ddns.map(resolve_ddns).transpose()?;
        let witness = resolve_witness(raw.witness, &hostname)?;
        let console = resolve_console(raw.console)?;
        let mut config = Config {
            console,
            ddns,
            witness,
            acme,
            server,
            clients,
            newsletter,
            limits,
            submission,
            queue,
            dns_servers: raw.dns.servers,
            inbound,
            archive,
            retention: raw.retention.into_iter().collect(),
            stats,
            alerts,
            http: raw
                .http
                .listen
                .unwrap_or_else(|| "127.0.0.1:8025".parse().unwrap()),
            https: raw.http.tls_listen,
            wal,
            disk,
            schedule,
            hostname,
            smtp,
            pop3,
            imap,
            tls,
            log,
        };
        if config.tls.is_some() {
            config.default_implicit_tls();
        }
        Ok(config)
    }

    /// Gives each implicit-TLS listener not set explicitly its default loopback address.
    /// Called when there is a certificate: at resolve time for `[tls]`, and by `serve` when
    /// only ACME certificates exist.
    pub fn default_implicit_tls(&mut self) {
        let default = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        self.imap.tls_listen.get_or_insert(default(2993));
        self.pop3.tls_listen.get_or_insert(default(2995));
        self.submission.tls_listen.get_or_insert(default(2465));
        self.https.get_or_insert(default(8443));
    }

    /// The implicit-TLS listeners that are set: (name, flag, address).
    pub fn implicit_tls_listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        [
            ("imaps", self.imap.tls_listen),
            ("pop3s", self.pop3.tls_listen),
            ("submissions", self.submission.tls_listen),
            ("https", self.https),
        ]
        .into_iter()
        .filter_map(|(name, addr)| Some((name, addr?)))
        .collect()
    }

    /// Where the server's certificates come from: `[tls]`, then `DATA/acme/certs/*.pem`.
    pub fn tls_sources(&self, data: &Path) -> net::CertSources {
        net::CertSources {
            configured: self.tls.clone().unwrap_or_default(),
            dir: Some(acme_cert_dir(data)),
        }
    }
}

/// A setting that must be greater than zero, named in the refusal.
fn positive(name: &str, value: u64) -> Result<u64> {
    if value == 0 {
        bail!("{name} must be greater than zero");
    }
    Ok(value)
}

fn resolve_console(raw: RawConsole) -> Result<ConsoleSettings> {
    let idle = positive(
        "console.session_idle_minutes",
        raw.session_idle_minutes.unwrap_or(30),
    )?;
    let hours = positive("console.session_hours", raw.session_hours.unwrap_or(12))?;
    Ok(ConsoleSettings {
        allow_plain_http: raw.allow_plain_http.unwrap_or(false),
        session_idle: Duration::from_secs(idle * 60),
        session_lifetime: Duration::from_secs(hours * 3600),
        secure_cookies: raw.secure_cookies.unwrap_or(false),
    })
}

fn resolve_smtp(raw: RawSmtp) -> Result<SmtpListener> {
    let smtp = SmtpListener {
        listen: raw
            .listen
            .unwrap_or_else(|| "127.0.0.1:2525".parse().unwrap()),
        max_message_size: positive(
            "smtp.max_message_size",
            raw.max_message_size.unwrap_or(25 << 20),
        )?,
        max_recipients: positive(
            "smtp.max_recipients",
            raw.max_recipients.unwrap_or(100) as u64,
        )? as usize,
        max_line_length: raw.max_line_length.unwrap_or(2048).max(512),
        command_timeout: Duration::from_secs(positive(
            "smtp.command_timeout_secs",
            raw.command_timeout_secs.unwrap_or(300),
        )?),
        data_timeout: Duration::from_secs(positive(
            "smtp.data_timeout_secs",
            raw.data_timeout_secs.unwrap_or(600),
        )?),
        max_connections: positive(
            "smtp.max_connections",
            raw.max_connections.unwrap_or(200) as u64,
        )? as usize,
        max_errors: raw.max_errors.unwrap_or(20).max(1),
    };
    Ok(smtp)
}

fn resolve_pop3(raw: RawPop3) -> Result<Pop3Listener> {
    let pop3 = Pop3Listener {
        listen: raw
            .listen
            .unwrap_or_else(|| "127.0.0.1:2110".parse().unwrap()),
        tls_listen: raw.tls_listen,
        max_connections: positive(
            "pop3.max_connections",
            raw.max_connections.unwrap_or(200) as u64,
        )? as usize,
        command_timeout: Duration::from_secs(positive(
            "pop3.command_timeout_secs",
            // RFC 1939 asks for an inactivity timer of at least ten minutes.
            raw.command_timeout_secs.unwrap_or(600),
        )?),
        allow_plaintext_auth: raw.allow_plaintext_auth.unwrap_or(false),
    };
    Ok(pop3)
}

fn resolve_imap(raw: RawImap) -> Result<ImapListener> {
    let imap = ImapListener {
        full_text_index: raw.full_text_index.unwrap_or(false),
        listen: raw
            .listen
            .unwrap_or_else(|| "127.0.0.1:2143".parse().unwrap()),
        tls_listen: raw.tls_listen,
        max_connections: positive(
            "imap.max_connections",
            raw.max_connections.unwrap_or(500) as u64,
        )? as usize,
        max_connections_per_account: positive(
            "imap.max_connections_per_account",
            raw.max_connections_per_account.unwrap_or(20) as u64,
        )? as usize,
        command_timeout: Duration::from_secs(positive(
            "imap.command_timeout_secs",
            // RFC 3501 §5.4: an idle client gets at least 30 minutes.
            raw.command_timeout_secs.unwrap_or(30 * 60),
        )?),
        allow_plaintext_auth: raw.allow_plaintext_auth.unwrap_or(false),
    };
    Ok(imap)
}

fn resolve_schedule(maintenance: RawMaintenance, backup: RawBackup) -> Result<Schedule> {
    let check_at = match maintenance.check_at.as_deref() {
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
    let backup_at = match backup.at.as_deref() {
        None => None,
        Some(text) => Some(
            gate::maint::parse_minutes(text)
                .with_context(|| format!("backup.at = {text:?} is not a time (HH:MM)"))?,
        ),
    };
    let schedule = Schedule {
        check_at,
        maintenance_during_check: maintenance.maintenance_during_check.unwrap_or(false),
        backup: BackupConfig {
            at: backup_at,
            dir: backup.dir,
            keep_daily: backup.keep_daily.unwrap_or(7),
            keep_weekly: backup.keep_weekly.unwrap_or(4),
            verify: backup.verify.unwrap_or(true),
            config_file: None,
        },
    };
    Ok(schedule)
}

fn resolve_wal(raw: RawWal) -> Result<WalConfig> {
    let wal = WalConfig {
        cap_bytes: positive("wal.cap_bytes", raw.cap_bytes.unwrap_or(64 << 20))?,
        check_interval: Duration::from_millis(positive(
            "wal.check_interval_ms",
            raw.check_interval_ms.unwrap_or(250),
        )?),
        patience: Duration::from_millis(positive(
            "wal.checkpoint_patience_ms",
            raw.checkpoint_patience_ms.unwrap_or(5000),
        )?),
    };
    Ok(wal)
}

fn resolve_stats(raw: RawStats) -> Result<StatsConfig> {
    let stats = StatsConfig {
        keep_days: positive("stats.keep_days", u64::from(raw.keep_days.unwrap_or(400)))? as u32,
        flush_interval: Duration::from_secs(positive(
            "stats.flush_interval_secs",
            raw.flush_interval_secs.unwrap_or(60),
        )?),
    };
    Ok(stats)
}

fn resolve_alerts(raw: RawAlerts) -> Result<AlertsConfig> {
    let mut levels = raw
        .free_percent_levels
        .unwrap_or_else(|| vec![20.0, 10.0, 5.0]);
    if levels.iter().any(|l| !(0.0..100.0).contains(l)) {
        bail!("alerts.free_percent_levels must lie between 0 and 100");
    }
    levels.sort_by(|a, b| b.total_cmp(a));
    if let Some(url) = &raw.webhook
        && !url.starts_with("http://")
    {
        bail!(
            "alerts.webhook = {url:?} must be an http:// URL (send it through a local relay for https)"
        );
    }
    let alerts = AlertsConfig {
        admin: raw.admin,
        webhook: raw.webhook,
        interval: Duration::from_secs(raw.interval_secs.unwrap_or(3600)),
        check_interval: Duration::from_secs(positive(
            "alerts.check_interval_secs",
            raw.check_interval_secs.unwrap_or(60),
        )?),
        growth_percent: raw.growth_percent.unwrap_or(20.0).max(0.0),
        baseline_days: positive(
            "alerts.baseline_days",
            u64::from(raw.baseline_days.unwrap_or(7)),
        )? as u32,
        free_percent_levels: levels,
        backup_max_age: Duration::from_secs(
            3600 * positive(
                "alerts.backup_max_age_hours",
                raw.backup_max_age_hours.unwrap_or(36),
            )?,
        ),
    };
    Ok(alerts)
}

fn resolve_archive(
    raw: RawArchive,
    retention: &std::collections::BTreeMap<String, u32>,
) -> Result<ArchiveConfig> {
    let imap_prefix = raw
        .imap_prefix
        .unwrap_or_else(|| store::archive::DEFAULT_PREFIX.to_string())
        .trim_matches('/')
        .to_string();
    if imap_prefix.is_empty() || imap_prefix.eq_ignore_ascii_case("INBOX") {
        bail!("archive.imap_prefix must be a mailbox name other than INBOX, such as \"Archive\"");
    }
    let mut auto = Vec::new();
    for rule in raw.auto {
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
    for (mailbox, days) in retention {
        if *days == 0 {
            bail!("retention.{mailbox} must be at least one day");
        }
    }
    Ok(ArchiveConfig { imap_prefix, auto })
}

fn resolve_submission(raw: RawSubmission) -> Result<SubmissionListener> {
    let submission = SubmissionListener {
        listen: raw
            .listen
            .unwrap_or_else(|| "127.0.0.1:2587".parse().unwrap()),
        tls_listen: raw.tls_listen,
        require_tls: raw.require_tls.unwrap_or(true),
        max_connections: positive(
            "submission.max_connections",
            raw.max_connections.unwrap_or(200) as u64,
        )? as usize,
    };
    Ok(submission)
}

fn resolve_inbound(raw: RawInbound) -> Result<InboundSettings> {
    let inbound = InboundSettings {
        checks: raw.checks.unwrap_or(true),
        enforce: match raw.policy.as_deref() {
            None | Some("record") => false,
            Some("enforce") => true,
            Some(other) => {
                bail!("inbound.policy = {other:?} is not a policy: use \"record\" or \"enforce\"")
            }
        },
        check_loopback: raw.check_loopback.unwrap_or(false),
    };
    Ok(inbound)
}

fn resolve_newsletter(
    n: RawNewsletter,
    http: Option<SocketAddr>,
) -> Result<newsletter::NewsletterConfig> {
    let newsletter = {
        let default = newsletter::NewsletterConfig::default();
        let base_url = n
            .base_url
            .unwrap_or_else(|| {
                format!(
                    "http://{}",
                    http.unwrap_or_else(|| "127.0.0.1:8025".parse().unwrap())
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
            soft_bounce_limit: n.soft_bounce_limit.unwrap_or(default.soft_bounce_limit),
            soft_bounce_days: positive(
                "newsletter.soft_bounce_days",
                n.soft_bounce_days
                    .unwrap_or(default.soft_bounce_days)
                    .into(),
            )? as u32,
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
            confirm_interval: n
                .confirm_interval_secs
                .map(Duration::from_secs)
                .unwrap_or(default.confirm_interval),
            subscribe_per_hour: positive(
                "newsletter.subscribe_per_hour",
                n.subscribe_per_hour
                    .unwrap_or(default.subscribe_per_hour)
                    .into(),
            )? as u32,
            subscribe_trusted: n
                .subscribe_trusted
                .unwrap_or_default()
                .iter()
                .map(|text| {
                    newsletter::Network::parse(text)
                        .map_err(|e| ConfigError(format!("newsletter.subscribe_trusted: {e}")))
                })
                .collect::<Result<_>>()?,
        }
    };
    Ok(newsletter)
}

fn resolve_limits(raw: RawLimits) -> Result<Limits> {
    let limits = Limits {
        max_connections_per_address: positive(
            "limits.max_connections_per_address",
            raw.max_connections_per_address.unwrap_or(20) as u64,
        )? as usize,
        login_timeout: Duration::from_secs(positive(
            "limits.login_timeout_secs",
            raw.login_timeout_secs.unwrap_or(60),
        )?),
        trust_loopback: raw.trust_loopback.unwrap_or(true),
    };
    Ok(limits)
}

/// Where the ACME client keeps issued certificates: one PEM file per certificate holding
/// the chain and then its key, replaced atomically.
pub fn acme_cert_dir(data: &Path) -> PathBuf {
    data.join("acme").join("certs")
}

fn resolve_tls(raw: RawTls) -> Result<Vec<net::CertFiles>> {
    let mut certs = Vec::new();
    match (raw.cert, raw.key) {
        (Some(cert), key) => certs.push(net::CertFiles {
            key: key.unwrap_or_else(|| cert.clone()),
            cert,
        }),
        (None, Some(key)) => bail!(
            "[tls] key = {:?} has no cert: add `cert = \"/path/to/fullchain.pem\"` beside it",
            key.display().to_string()
        ),
        (None, None) => {}
    }
    for c in raw.certificates {
        certs.push(net::CertFiles {
            key: c.key.unwrap_or_else(|| c.cert.clone()),
            cert: c.cert,
        });
    }
    if certs.is_empty() {
        bail!(
            "[tls] names no certificate: set `cert` and `key`, or add [[tls.certificates]] \
             entries, or remove the [tls] section"
        );
    }
    Ok(certs)
}

/// The queue's settings. The default back-off doubles from five minutes to four hours and
/// then tries every four hours until five days have passed, about 35 attempts; a delay
/// notice goes out after four hours, as RFC 5321 section 4.5.4.1 suggests.
/// The levels `[log] level` takes, quietest first.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `[log] level`: one level, or comma-separated directives such as `info,store=debug`, each
/// a level or `target=level`. Anything else is refused, because the log filter would read
/// it as the name of a module to log and log nothing else: a server that says nothing.
fn log_level(text: String) -> Result<String> {
    let valid_target = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
    };
    let valid = text.split(',').all(|directive| {
        let (target, level) = match directive.trim().split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive.trim()),
        };
        target.is_none_or(valid_target) && LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str())
    });
    if !valid {
        bail!(
            "log.level = {text:?} is not a log level: use one of {} (or directives such as \
             \"info,store=debug\")",
            LOG_LEVELS.join(", ")
        );
    }
    Ok(text)
}

fn resolve_queue(raw: RawQueue) -> Result<QueueSettings> {
    let retry: Vec<Duration> = raw
        .retry_secs
        .unwrap_or_else(|| vec![300, 600, 1200, 2400, 4800, 9600, 14400])
        .into_iter()
        .map(Duration::from_secs)
        .collect();
    if retry.is_empty() || retry.iter().any(|d| d.is_zero()) {
        bail!("queue.retry_secs must list at least one wait, each greater than zero");
    }
    let at_least_one = |key: &str, value: usize| -> Result<usize> {
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

/// An optional name that, when given, must be a name.
fn nonempty(key: &str, value: Option<String>) -> Result<Option<String>> {
    match value {
        Some(v) if v.trim().is_empty() => {
            bail!("{key} is empty: name a user, or leave the key out")
        }
        v => Ok(v),
    }
}

/// `[acme]`: an https directory, mailto contacts, at least one certificate of valid host
/// names, and no two certificates sharing a first name (it names the file).
fn resolve_acme(raw: RawAcme) -> Result<acme::AcmeConfig> {
    let directory = raw.directory.unwrap_or_default();
    if !directory.starts_with("https://") {
        bail!(
            "acme.directory = {directory:?} must be the CA's https:// directory URL \
             (Let's Encrypt: https://acme-v02.api.letsencrypt.org/directory)"
        );
    }
    for c in &raw.contact {
        if !c.starts_with("mailto:") || c.len() <= "mailto:".len() {
            bail!(
                "acme.contact = {c:?} must be a mailto: address, such as \"mailto:postmaster@example.com\""
            );
        }
    }
    let mut lists = Vec::new();
    if !raw.names.is_empty() {
        lists.push(raw.names);
    }
    lists.extend(raw.certificate.into_iter().map(|c| c.names));
    if lists.is_empty() || lists.iter().any(Vec::is_empty) {
        bail!(
            "[acme] needs the host names to certify: names = [\"mail.example.com\"] (or [[acme.certificate]] tables, each with names)"
        );
    }
    let mut certificates: Vec<Vec<String>> = Vec::new();
    for list in lists {
        let mut names = Vec::new();
        for n in list {
            let n = acme::check_name(&n).map_err(|e| ConfigError(format!("acme names: {e}")))?;
            if !names.contains(&n) {
                names.push(n);
            }
        }
        if certificates.iter().any(|c| c[0] == names[0]) {
            bail!(
                "two ACME certificates start with {:?}; the first name names the file, so each must differ",
                names[0]
            );
        }
        certificates.push(names);
    }
    let days = raw.renew_before_days.unwrap_or(30);
    let positive = |name: &str, value: u64| -> Result<u64> {
        if value == 0 {
            bail!("acme.{name} must be greater than zero");
        }
        Ok(value)
    };
    Ok(acme::AcmeConfig {
        directory,
        contact: raw.contact,
        certificates,
        renew_before: Duration::from_secs(days.saturating_mul(86400)),
        ca_file: raw.ca_file,
        check_interval: Duration::from_secs(positive(
            "check_interval_secs",
            raw.check_interval_secs.unwrap_or(12 * 3600),
        )?),
        retry_first: Duration::from_secs(positive("retry_secs", raw.retry_secs.unwrap_or(300))?),
        timeout: Duration::from_secs(positive("timeout_secs", raw.timeout_secs.unwrap_or(300))?),
    })
}

fn resolve_server(raw: RawServer, alerts_admin: Option<&str>) -> Result<ServerSettings> {
    let address = |key: &str, value: Option<String>| -> Result<Option<String>> {
        match value {
            None => Ok(None),
            Some(a) => {
                let a = a.trim().to_ascii_lowercase();
                match a.split_once('@') {
                    Some((local, domain)) if !local.is_empty() && domain.contains('.') => {
                        Ok(Some(a))
                    }
                    _ => bail!("{key} = {a:?} is not an address (user@domain)"),
                }
            }
        }
    };
    let mta_sts_mode = match raw.mta_sts_mode.as_deref() {
        None | Some("testing") => dns_records::MtaStsMode::Testing,
        Some("enforce") => dns_records::MtaStsMode::Enforce,
        Some(other) => {
            bail!("server.mta_sts_mode = {other:?} is not a mode: use \"testing\" or \"enforce\"")
        }
    };
    Ok(ServerSettings {
        user: nonempty("[server] user", raw.user)?,
        group: nonempty("[server] group", raw.group)?,
        public_ipv4: raw.public_ipv4,
        public_ipv6: raw.public_ipv6,
        postmaster: match address("server.postmaster", raw.postmaster)? {
            Some(a) => Some(a),
            None => alerts_admin.map(|a| a.trim().to_ascii_lowercase()),
        },
        report_address: address("server.report_address", raw.report_address)?,
        mta_sts_mode,
    })
}

fn resolve_clients(raw: RawClients, hostname: &str) -> Result<ClientsConfig> {
    let standard = dns_records::ClientPorts::default();
    let host = raw
        .host
        .unwrap_or_else(|| hostname.to_string())
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        bail!("clients.host = {host:?} is not a host name");
    }
    Ok(ClientsConfig {
        host,
        ports: dns_records::ClientPorts {
            imaps: raw.imaps.unwrap_or(standard.imaps),
            imap: raw.imap.unwrap_or(standard.imap),
            pop3s: raw.pop3s.unwrap_or(standard.pop3s),
            pop3: raw.pop3.unwrap_or(standard.pop3),
            submissions: raw.submissions.unwrap_or(standard.submissions),
            submission: raw.submission.unwrap_or(standard.submission),
        },
    })
}

/// `[ddns]`: one address source, one update method, each checked here so that `serve`
/// never starts an updater that cannot work.
fn resolve_ddns(raw: RawDdns) -> Result<::ddns::Config> {
    let record = raw.record.trim().trim_end_matches('.').to_ascii_lowercase();
    if record.is_empty() || !record.contains('.') {
        bail!(
            "ddns.record = {:?} must be a full host name such as \"home.example.com\"",
            raw.record
        );
    }
    let source = match (raw.check_url, raw.interface) {
        (Some(url), None) => {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                bail!("ddns.check_url = {url:?} must be an http:// or https:// URL");
            }
            ::ddns::AddressSource::Url(url)
        }
        (None, Some(name)) => ::ddns::AddressSource::Interface(name),
        _ => bail!(
            "[ddns] needs exactly one of check_url (a URL that answers the caller's address) or interface (such as \"eth0\")"
        ),
    };
    let family = match raw.family.as_deref() {
        None | Some("ipv4") => ::ddns::Family::V4,
        Some("ipv6") => ::ddns::Family::V6,
        Some(other) => bail!("ddns.family = {other:?} must be \"ipv4\" or \"ipv6\""),
    };
    let interval = Duration::from_secs(raw.interval_secs.unwrap_or(300).max(1));
    let retry = Duration::from_secs(raw.retry_secs.unwrap_or(60).max(1));
    let timeout = Duration::from_secs(raw.timeout_secs.unwrap_or(15).max(1));
    let ttl = raw.ttl.unwrap_or(300);
    let updater = match (raw.server, raw.update_url) {
        (Some(server), None) => {
            let server: SocketAddr = server
                .parse()
                .or_else(|_| server.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    ConfigError(format!("ddns.server = {server:?} must be an address such as \"192.0.2.53\" or \"192.0.2.53:53\""))
                })?;
            let key = match (raw.tsig_key_file, raw.tsig_key_name, raw.tsig_secret) {
                (Some(path), None, None) => {
                    let text = std::fs::read_to_string(&path).with_context(|| {
                        format!("cannot read ddns.tsig_key_file {}", path.display())
                    })?;
                    ::ddns::TsigKey::parse_bind(&text)
                        .with_context(|| format!("ddns.tsig_key_file {}", path.display()))?
                }
                (None, Some(name), Some(secret)) => {
                    ::ddns::TsigKey::new(&name, &secret).context("ddns.tsig_secret")?
                }
                _ => bail!(
                    "RFC 2136 updates are signed: give ddns.tsig_key_name and ddns.tsig_secret, or ddns.tsig_key_file (from `tsig-keygen -a hmac-sha256 NAME`)"
                ),
            };
            let zone = match raw.zone {
                Some(zone) => zone.trim_end_matches('.').to_ascii_lowercase(),
                None => record
                    .split_once('.')
                    .map(|(_, z)| z.to_string())
                    .unwrap_or_default(),
            };
            if record != zone && !record.ends_with(&format!(".{zone}")) {
                bail!("ddns.record {record:?} is not inside ddns.zone {zone:?}");
            }
            ::ddns::Updater::Rfc2136(::ddns::Rfc2136 {
                server,
                zone,
                record,
                ttl,
                key,
                timeout,
            })
        }
        (None, Some(template)) => {
            if !template.starts_with("http://") && !template.starts_with("https://") {
                bail!("ddns.update_url = {template:?} must be an http:// or https:// URL");
            }
            if !template.contains("{ip}") {
                bail!(
                    "ddns.update_url must contain {{ip}} where the new address goes (and {{name}} for the record)"
                );
            }
            let auth = match (raw.update_username, raw.update_password) {
                (Some(user), Some(password)) => Some((user, password)),
                (None, None) => None,
                _ => bail!("ddns.update_username and ddns.update_password go together"),
            };
            ::ddns::Updater::Http(::ddns::httpupdate::HttpUpdate {
                template,
                record,
                auth,
            })
        }
        _ => bail!(
            "[ddns] needs exactly one update method: server (RFC 2136 with a TSIG key) or update_url (an HTTP update URL)"
        ),
    };
    Ok(::ddns::Config {
        source,
        family,
        interval,
        retry,
        timeout,
        updater,
    })
}

fn resolve_witness(raw: RawWitness, hostname: &str) -> Result<WitnessSettings> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    let send = match (raw.url, raw.token) {
        (None, None) => None,
        (Some(url), Some(token)) => {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                bail!("witness.url = {url:?} must be an http:// or https:// URL");
            }
            if token.len() < 16 {
                bail!(
                    "witness.token must be at least 16 characters (a random one: `openssl rand -hex 24`)"
                );
            }
            let name = raw.name.unwrap_or_else(|| hostname.to_string());
            if !valid_name(&name) {
                bail!("witness.name = {name:?} must be 1 to 64 letters, digits, '.', '-' or '_'");
            }
            let interval = Duration::from_secs(raw.interval_secs.unwrap_or(600).max(1));
            Some((::ddns::witness::Heartbeat { url, name, token }, interval))
        }
        _ => bail!(
            "witness.url and witness.token go together (the token the witness lists for this server)"
        ),
    };
    let mut senders = Vec::new();
    for s in raw.sender {
        if !valid_name(&s.name) {
            bail!(
                "witness.sender name {:?} must be 1 to 64 letters, digits, '.', '-' or '_'",
                s.name
            );
        }
        if s.token.len() < 16 {
            bail!(
                "the token of witness.sender {:?} must be at least 16 characters",
                s.name
            );
        }
        if senders.iter().any(|o: &WitnessSender| o.name == s.name) {
            bail!("witness.sender {:?} is listed twice", s.name);
        }
        senders.push(WitnessSender {
            name: s.name,
            token: s.token,
            missing_after: Duration::from_secs(s.missing_after_secs.unwrap_or(1800).max(1)),
        });
    }
    Ok(WitnessSettings {
        send,
        senders,
        trusted_proxies: raw.trusted_proxies,
        limits: ::ddns::WitnessLimits {
            keep_heartbeats: raw.keep_heartbeats.unwrap_or(144).max(1),
            keep_addresses: raw.keep_addresses.unwrap_or(1000).max(1),
        },
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
    fn newsletter_bounce_limits_and_trusted_callers_resolve() {
        let config = resolve(
            "[newsletter]\nsoft_bounce_limit = 3\nsoft_bounce_days = 7\nsubscribe_trusted = [\"10.0.0.0/8\", \"::1\"]",
        )
        .unwrap();
        let n = &config.newsletter;
        assert_eq!((n.soft_bounce_limit, n.soft_bounce_days), (3, 7));
        assert!(n.trusts_subscriber("10.9.8.7".parse().unwrap()));
        assert!(n.trusts_subscriber("::1".parse().unwrap()));
        assert!(!n.trusts_subscriber("192.0.2.1".parse().unwrap()));
        assert!(
            !resolve("")
                .unwrap()
                .newsletter
                .trusts_subscriber("127.0.0.1".parse().unwrap())
        );
        let e = resolve("[newsletter]\nsubscribe_trusted = [\"10.0.0.0/33\"]").unwrap_err();
        assert!(
            e.to_string().starts_with("newsletter.subscribe_trusted: "),
            "{e}"
        );
        let e = resolve("[newsletter]\nsoft_bounce_days = 0").unwrap_err();
        assert!(e.to_string().contains("newsletter.soft_bounce_days"), "{e}");
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

    fn resolve(text: &str) -> Result<Config> {
        Config::resolve(toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?)
    }

    #[test]
    fn implicit_tls_listens_by_default_only_with_a_certificate() {
        let none = resolve("").unwrap();
        assert!(none.implicit_tls_listeners().is_empty());
        let with = resolve("[tls]\ncert = \"a.pem\"\nkey = \"a.key\"").unwrap();
        let addrs: Vec<String> = with
            .implicit_tls_listeners()
            .iter()
            .map(|(name, addr)| format!("{name} {addr}"))
            .collect();
        assert_eq!(
            addrs,
            [
                "imaps 127.0.0.1:2993",
                "pop3s 127.0.0.1:2995",
                "submissions 127.0.0.1:2465",
                "https 127.0.0.1:8443"
            ]
        );
        let set = resolve(
            "[imap]\ntls_listen = \"0.0.0.0:993\"\n[tls]\ncert = \"a.pem\"\nkey = \"a.key\"",
        )
        .unwrap();
        assert_eq!(set.imap.tls_listen.unwrap().to_string(), "0.0.0.0:993");
        // Without [tls] an explicit address is kept: `serve` refuses it unless ACME
        // certificates exist.
        let alone = resolve("[pop3]\ntls_listen = \"127.0.0.1:995\"").unwrap();
        assert_eq!(alone.implicit_tls_listeners().len(), 1);
    }

    #[test]
    fn tls_certificates_default_first_and_one_file_keys() {
        let config = resolve(
            "[tls]\ncert = \"a.pem\"\nkey = \"a.key\"\n\
             [[tls.certificates]]\ncert = \"b.pem\"\nkey = \"b.key\"\n\
             [[tls.certificates]]\ncert = \"both.pem\"",
        )
        .unwrap();
        let certs = config.tls.unwrap();
        let pairs: Vec<(&str, &str)> = certs
            .iter()
            .map(|c| (c.cert.to_str().unwrap(), c.key.to_str().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a.pem", "a.key"),
                ("b.pem", "b.key"),
                ("both.pem", "both.pem")
            ]
        );
        let only_list = resolve("[[tls.certificates]]\ncert = \"b.pem\"").unwrap();
        assert_eq!(only_list.tls.unwrap().len(), 1);
        let e = resolve("[tls]\nkey = \"a.key\"").unwrap_err().to_string();
        assert!(e.contains("has no cert"), "{e}");
        let e = resolve("[tls]").unwrap_err().to_string();
        assert!(e.contains("names no certificate"), "{e}");
    }

    #[test]
    fn acme_certificates_are_resolved_and_checked() {
        let resolve = |text: &str| Config::resolve(toml::from_str(text).unwrap());
        let config = resolve(
            "[acme]\ndirectory = \"https://ca.test/dir\"\ncontact = [\"mailto:a@example.com\"]\n\
             names = [\"Mail.Example.com\", \"example.com\", \"mail.example.com\"]\n\
             [[acme.certificate]]\nnames = [\"mx.example.net\"]\n",
        )
        .unwrap();
        let acme = config.acme.unwrap();
        assert_eq!(
            acme.certificates,
            [
                vec!["mail.example.com".to_string(), "example.com".to_string()],
                vec!["mx.example.net".to_string()]
            ]
        );
        assert_eq!(acme.renew_before, Duration::from_secs(30 * 86400));
        assert!(Config::load(None).unwrap().acme.is_none());
        for (text, complaint) in [
            ("[acme]\nnames = [\"a.example\"]", "https://"),
            ("[acme]\ndirectory = \"https://x/d\"", "host names"),
            (
                "[acme]\ndirectory = \"https://x/d\"\nnames = [\"*.example.com\"]",
                "wildcard",
            ),
            (
                "[acme]\ndirectory = \"https://x/d\"\nnames = [\"a.b\"]\ncontact = [\"a@b\"]",
                "mailto",
            ),
            (
                "[acme]\ndirectory = \"https://x/d\"\nnames = [\"a.b\"]\n[[acme.certificate]]\nnames = [\"a.b\"]",
                "first name",
            ),
        ] {
            let e = resolve(text).unwrap_err().to_string();
            assert!(e.contains(complaint), "{text}: {e}");
        }
    }

    #[test]
    fn postmaster_falls_back_to_the_alerts_admin_and_client_ports_to_the_standard() {
        let parse = |text: &str| Config::resolve(toml::from_str(text).unwrap());
        let config =
            parse("hostname = \"mx.example.com\"\n[alerts]\nadmin = \"Ops@example.com\"").unwrap();
        assert_eq!(config.server.postmaster.as_deref(), Some("ops@example.com"));
        assert_eq!(config.clients.host, "mx.example.com");
        assert_eq!(config.clients.ports, dns_records::ClientPorts::default());
        let config = parse(
            "[server]\npostmaster = \"pm@example.com\"\n[alerts]\nadmin = \"ops@example.com\"\n[clients]\nhost = \"imap.example.com\"\nimaps = 10993\npop3 = 0",
        )
        .unwrap();
        assert_eq!(config.server.postmaster.as_deref(), Some("pm@example.com"));
        assert_eq!(config.clients.host, "imap.example.com");
        assert_eq!(
            (config.clients.ports.imaps, config.clients.ports.pop3),
            (10993, 0)
        );
        assert!(Config::load(None).unwrap().server.postmaster.is_none());
        let err = parse("[server]\npostmaster = \"nobody\"").unwrap_err();
        assert!(err.to_string().contains("server.postmaster"), "{err}");
        let err = parse("[server]\nmta_sts_mode = \"on\"").unwrap_err();
        assert!(err.to_string().contains("testing"), "{err}");
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

    #[test]
    fn abuse_limits_resolve_with_defaults_and_refuse_zero() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.limits.max_connections_per_address, 20);
        assert_eq!(config.limits.login_timeout, Duration::from_secs(60));
        assert!(config.limits.trust_loopback && !config.pop3.allow_plaintext_auth);
        assert_eq!(config.newsletter.subscribe_per_hour, 20);
        let raw: RawConfig = toml::from_str(
            "[limits]\ntrust_loopback = false\nlogin_timeout_secs = 5\n[pop3]\nallow_plaintext_auth = true\n[newsletter]\nconfirm_interval_secs = 600",
        )
        .unwrap();
        let config = Config::resolve(raw).unwrap();
        assert!(!config.limits.trust_loopback && config.pop3.allow_plaintext_auth);
        assert_eq!(config.limits.login_timeout, Duration::from_secs(5));
        assert_eq!(config.newsletter.confirm_interval, Duration::from_secs(600));
        for zero in [
            "[limits]\nmax_connections_per_address = 0",
            "[limits]\nlogin_timeout_secs = 0",
            "[newsletter]\nsubscribe_per_hour = 0",
        ] {
            let raw: RawConfig = toml::from_str(zero).unwrap();
            assert!(Config::resolve(raw).is_err(), "{zero}");
        }
    }

    #[test]
    fn ddns_needs_one_source_and_one_method() {
        let resolve = |text: &str| {
            toml::from_str::<RawConfig>(text)
                .map_err(|e| ConfigError(e.to_string()))
                .and_then(Config::resolve)
        };
        let base = "[ddns]\nrecord = \"home.example.com\"\ncheck_url = \"https://echo.test/ip\"\n";
        let rfc = format!(
            "{base}server = \"192.0.2.53\"\ntsig_key_name = \"k\"\ntsig_secret = \"c2VjcmV0\"\n"
        );
        let config = resolve(&rfc).unwrap();
        let ddns = config.ddns.unwrap();
        let ::ddns::Updater::Rfc2136(u) = &ddns.updater else {
            panic!("not RFC 2136: {:?}", ddns.updater);
        };
        assert_eq!(u.server.to_string(), "192.0.2.53:53");
        assert_eq!(u.zone, "example.com");
        assert_eq!(ddns.interval, Duration::from_secs(300));
        let err = |text: &str| format!("{:#}", resolve(text).unwrap_err());
        assert!(err(base).contains("exactly one update method"));
        assert!(err(&format!("{base}server = \"192.0.2.53\"\n")).contains("tsig_key_file"));
        assert!(err(&format!("{rfc}interface = \"eth0\"\n")).contains("exactly one of check_url"));
        assert!(err(&format!("{rfc}zone = \"example.org\"\n")).contains("not inside ddns.zone"));
        assert!(
            err(&format!(
                "{base}update_url = \"https://dyn.test/u?h={{name}}\"\n"
            ))
            .contains("{ip}")
        );
        let key_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            key_file.path(),
            "key \"k\" { algorithm hmac-md5; secret \"c2VjcmV0\"; };",
        )
        .unwrap();
        let with_file = format!(
            "{base}server = \"192.0.2.53:5353\"\ntsig_key_file = {:?}\n",
            key_file.path().display().to_string()
        );
        assert!(
            err(&with_file).contains("hmac-sha256"),
            "{}",
            err(&with_file)
        );
    }

    #[test]
    fn witness_senders_need_names_and_long_tokens() {
        let resolve = |text: &str| {
            toml::from_str::<RawConfig>(text)
                .map_err(|e| ConfigError(e.to_string()))
                .and_then(Config::resolve)
        };
        let good = "[witness]\nurl = \"http://w.test/witness/heartbeat\"\ntoken = \"0123456789abcdef\"\n\
                    [[witness.sender]]\nname = \"home\"\ntoken = \"0123456789abcdef\"\n";
        let config = resolve(good).unwrap();
        let (heartbeat, interval) = config.witness.send.unwrap();
        assert_eq!(heartbeat.name, config.hostname);
        assert_eq!(interval, Duration::from_secs(600));
        assert_eq!(
            config.witness.senders[0].missing_after,
            Duration::from_secs(1800)
        );
        let err = |text: &str| format!("{:#}", resolve(text).unwrap_err());
        assert!(err(&good.replace("0123456789abcdef\"\n[", "short\"\n[")).contains("16"));
        assert!(err(&good.replace("\"home\"", "\"no spaces\"")).contains("letters"));
        assert!(err("[witness]\nurl = \"http://w.test/\"\n").contains("go together"));
    }

    #[test]
    fn a_log_level_that_is_no_level_is_refused() {
        for good in [
            "info",
            "DEBUG",
            "off",
            "warn,store=debug",
            "info, imap_server=trace",
        ] {
            assert_eq!(log_level(good.to_string()).unwrap(), good);
        }
        for bad in [
            "verbose!!",
            "",
            "info,",
            "loud",
            "store=",
            "=info",
            "info,verbose!!=debug",
        ] {
            let e = log_level(bad.to_string()).unwrap_err().to_string();
            assert!(
                e.starts_with("log.level = ") && e.contains("off, error, warn"),
                "{e}"
            );
        }
    }
}
