//! `tegami doctor`: what an operator needs to know about this installation, and what to do.
//!
//! Doctor only looks. It opens files read-only, creates nothing (not the data directory, not
//! the database, not a log), and the data directory lock and the listener ports it tries are
//! released at once, so it gives the same answers whether the server is down or running.
//! Every WARN and FAIL carries a hint; the exit code is 1 when anything FAILs.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gate::maint::{check_skip_reason, hhmm};
use gate::{Clock, DiskState, DiskThresholds, Maintenance};
use jiff::{Timestamp, Zoned};
use serde::Serialize;

use ops::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Serialize)]
struct Finding {
    group: &'static str,
    item: String,
    status: Level,
    value: String,
    /// What to do; present for every WARN and FAIL.
    hint: Option<String>,
}

/// A judgment: the level and, unless all is well, what to do about it.
type Verdict = (Level, Option<String>);

fn fine() -> Verdict {
    (Level::Ok, None)
}

fn warn(hint: impl Into<String>) -> Verdict {
    (Level::Warn, Some(hint.into()))
}

fn fail(hint: impl Into<String>) -> Verdict {
    (Level::Fail, Some(hint.into()))
}

/// The worse of two verdicts, with both hints when both need attention.
fn worst(a: Verdict, b: Verdict) -> Verdict {
    let level = a.0.max(b.0);
    let hint = match (a.1, b.1) {
        (Some(x), Some(y)) => Some(format!("{x}; {y}")),
        (x, y) => x.or(y),
    };
    (level, hint)
}

/// The findings of one group, in the order they were made.
struct Group {
    name: &'static str,
    findings: Vec<Finding>,
}

impl Group {
    fn new(name: &'static str) -> Group {
        Group {
            name,
            findings: Vec::new(),
        }
    }

    fn judge(&mut self, item: &str, value: impl Into<String>, (status, hint): Verdict) {
        self.findings.push(Finding {
            group: self.name,
            item: item.into(),
            status,
            value: value.into(),
            hint,
        });
    }

    fn ok(&mut self, item: &str, value: impl Into<String>) {
        self.judge(item, value, fine());
    }
}

pub fn run(data: &Path, config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let (clock, clock_error) = match Clock::system() {
        Ok(clock) => (clock, None),
        Err(e) => (Clock::with_zone(jiff::tz::TimeZone::system()), Some(e)),
    };
    let data = fs::canonicalize(data)
        .or_else(|_| std::path::absolute(data))
        .unwrap_or_else(|_| data.to_path_buf());
    let groups = [
        system(config),
        data_directory(&data, config),
        store(&data, config.wal.cap_bytes),
        listeners(&data, config),
        tls(&data, config, &clock.now()),
        clock_group(&clock, clock_error),
        maintenance(&data, &clock),
        checks(&data, config, &clock),
        backups(&data, config, &clock),
        archives(&data),
        sending(&data, config),
    ];
    let findings: Vec<Finding> = groups.into_iter().flat_map(|g| g.findings).collect();
    let text = if json {
        serde_json::to_string_pretty(&findings)? + "\n"
    } else {
        render(&data, &findings)
    };
    // A reader that stops early (`doctor | head`) is not an error.
    match io::Write::write_all(&mut io::stdout().lock(), text.as_bytes()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    let failed = findings.iter().any(|f| f.status == Level::Fail);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn render(data: &Path, findings: &[Finding]) -> String {
    let width = findings
        .iter()
        .map(|f| f.item.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!("tegami doctor: {}\n", data.display());
    // Failures first: whoever reads only the top (or a cron mail's first lines) must not
    // miss that the store is damaged.
    let failures: Vec<String> = findings
        .iter()
        .filter(|f| f.status == Level::Fail)
        .map(|f| format!("{}: {}: {}", f.group, f.item, f.value))
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "FAIL: {}", failures.join("; "));
    }
    let mut group = "";
    for f in findings {
        if f.group != group {
            group = f.group;
            let _ = write!(out, "\n{group}\n");
        }
        let _ = writeln!(
            out,
            "  {:<4}  {:<width$}  {}",
            f.status.label(),
            f.item,
            f.value
        );
        if let Some(hint) = &f.hint {
            let _ = writeln!(out, "  {:<4}  {:<width$}  hint: {hint}", "", "");
        }
    }
    let count = |level| findings.iter().filter(|f| f.status == level).count();
    let (warns, fails) = (count(Level::Warn), count(Level::Fail));
    if warns + fails == 0 {
        out.push_str("\nall OK\n");
    } else {
        let _ = writeln!(out, "\n{fails} FAIL, {warns} WARN");
    }
    out
}

// ---------------------------------------------------------------------------------------
// System

fn system(config: &Config) -> Group {
    let mut g = Group::new("System");
    g.ok("version", format!("tegami {}", env!("CARGO_PKG_VERSION")));
    let os = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| os_pretty_name(&t))
        .unwrap_or_else(|| "unknown".into());
    let kernel = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
    g.ok(
        "OS",
        format!("{os}, kernel {kernel}, {}", std::env::consts::ARCH),
    );
    let host = read_trimmed("/proc/sys/kernel/hostname").or_else(|| read_trimmed("/etc/hostname"));
    g.ok(
        "host name",
        host.clone().unwrap_or_else(|| "unknown".into()),
    );
    g.judge(
        "server name",
        config.hostname.clone(),
        server_name_verdict(&config.hostname, host.as_deref()),
    );
    g
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(
            value
                .trim()
                .trim_matches('"')
                .trim_matches('\'')
                .to_string(),
        )
    })
}

/// A name other servers can look up: at least two labels of letters, digits and hyphens,
/// not an IP address, not a name that only means something on this network.
fn is_fqdn(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let last = labels.last().copied().unwrap_or("").to_ascii_lowercase();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && !last.bytes().all(|b| b.is_ascii_digit())
        && !["localhost", "localdomain", "local"].contains(&last.as_str())
}

fn server_name_verdict(name: &str, host: Option<&str>) -> Verdict {
    if !is_fqdn(name) {
        return warn(format!(
            "`{name}` is not a fully qualified domain name: set hostname = \
             \"mail.example.com\" in the config file; \
             tegami announces it in its SMTP greeting and Received headers, and other mail \
             servers check that it resolves to this machine"
        ));
    }
    let first_label = |n: &str| n.split('.').next().unwrap_or("").to_ascii_lowercase();
    match host {
        Some(host)
            if !name.eq_ignore_ascii_case(host) && first_label(name) != first_label(host) =>
        {
            warn(format!(
                "it differs from this machine's host name `{host}`: make sure {name} resolves \
                 to this machine \
             (A/AAAA, MX and PTR records), or correct `hostname` in the config file"
            ))
        }
        _ => fine(),
    }
}

// ---------------------------------------------------------------------------------------
// Data directory

/// Entries of the data directory that the server must be able to write.
const OWNED_ENTRIES: [&str; 9] = [
    "tegami.db",
    "tegami.db-wal",
    "tegami.db-shm",
    "tegami.lock",
    "maint",
    "blobs",
    "log",
    "backups",
    "archive",
];

fn data_directory(data: &Path, config: &Config) -> Group {
    let mut g = Group::new("Data directory");
    let shown = data.display().to_string();
    match fs::metadata(data) {
        Ok(meta) if meta.is_dir() => {
            g.ok("path", shown);
            owner(&mut g, data, &meta);
            let mode = meta.mode() & 0o7777;
            let verdict = match dir_mode_problem(mode) {
                Some(problem) => warn(format!(
                    "{problem}; mail is private: chmod 700 \
                                               {}",
                    data.display()
                )),
                None => fine(),
            };
            g.judge("mode", format!("{mode:04o}"), verdict);
            logs(&mut g, &data.join("log"), config);
        }
        Ok(_) => g.judge(
            "path",
            format!("{shown} is not a directory"),
            fail(
                "point --data (or TEGAMI_DATA) at the data directory, or move this file out \
                  of the way",
            ),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => g.judge(
            "path",
            format!("{shown} does not exist"),
            warn(
                "it is created by `tegami serve` or the first admin command (`tegami --data \
                 DIR domain add example.com`); \
                 if you expected data here, check --data or TEGAMI_DATA",
            ),
        ),
        Err(e) => g.judge("path", format!("{shown}: {e}"), fail(not_yours_hint())),
    }
    volumes(&mut g, data, &config.disk);
    g
}

fn not_yours_hint() -> String {
    format!(
        "doctor runs as uid {}: run it as the user the server runs as (or root), or fix the \
         permissions",
        rustix::process::geteuid().as_raw()
    )
}

fn owner(g: &mut Group, data: &Path, meta: &fs::Metadata) {
    let (uid, gid) = (meta.uid(), meta.gid());
    let user = id_name("/etc/passwd", uid).unwrap_or_else(|| uid.to_string());
    let group = id_name("/etc/group", gid).unwrap_or_else(|| gid.to_string());
    let value = format!("{user}:{group} (uid {uid}, gid {gid})");
    let foreign: Vec<String> = OWNED_ENTRIES
        .iter()
        .filter_map(|name| {
            let m = fs::symlink_metadata(data.join(name)).ok()?;
            (m.uid() != uid).then(|| {
                format!(
                    "{name} ({})",
                    id_name("/etc/passwd", m.uid()).unwrap_or_else(|| m.uid().to_string())
                )
            })
        })
        .collect();
    let me = rustix::process::geteuid().as_raw();
    let verdict = if !foreign.is_empty() {
        warn(format!(
            "owned by another user than the directory: {}; the server may be unable to write them \
             (as after a copy or restore made as root): chown -R {user}:{group} {}",
            foreign.join(", "),
            data.display()
        ))
    } else if me != 0 && me != uid {
        warn(format!(
            "you are uid {me}, not the owner: run doctor as {user}{} to see everything",
            if uid == 0 { "" } else { " (or root)" }
        ))
    } else {
        fine()
    };
    g.judge("owner", value, verdict);
}

/// The name of a numeric id in /etc/passwd or /etc/group (`name:x:id:...`).
fn id_name(file: &str, id: u32) -> Option<String> {
    fs::read_to_string(file).ok()?.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let found: u32 = fields.nth(1)?.parse().ok()?;
        (found == id).then(|| name.to_string())
    })
}

/// What is wrong with a data directory's mode, if anything: nobody but the owner should get in.
fn dir_mode_problem(mode: u32) -> Option<String> {
    let who = |bit: u32| match (mode & (bit << 3) != 0, mode & bit != 0) {
        (true, true) => Some("group members and other users"),
        (true, false) => Some("group members"),
        (false, true) => Some("other users"),
        (false, false) => None,
    };
    if let Some(who) = who(0o2) {
        Some(format!("{who} can create and delete files in it"))
    } else if let Some(who) = who(0o4) {
        Some(format!("{who} can list it"))
    } else {
        who(0o1).map(|who| {
            format!("{who} can enter it and open files whose names they know, such as tegami.db")
        })
    }
}

fn logs(g: &mut Group, log_dir: &Path, config: &Config) {
    let entries = match fs::read_dir(log_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return g.ok("logs", "log/ does not exist yet");
        }
        Err(e) => return g.judge("logs", format!("log/: {e}"), warn(not_yours_hint())),
    };
    let (mut files, mut bytes) = (0u64, 0u64);
    for meta in entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
    {
        files += 1;
        bytes += meta.len();
    }
    g.ok(
        "logs",
        format!(
            "{}, {} in log/ (tegami.log rotates at {}, {} files kept)",
            plural(files, "file"),
            human_bytes(bytes),
            human_bytes(config.log.max_file_bytes),
            config.log.max_files
        ),
    );
}

struct Volume {
    dev: u64,
    labels: Vec<&'static str>,
    path: PathBuf,
    stat: rustix::fs::StatVfs,
}

/// Free space and inodes of every volume we write, each volume once.
fn volumes(g: &mut Group, data: &Path, thresholds: &DiskThresholds) {
    let mut volumes: Vec<Volume> = Vec::new();
    for (label, path) in [
        ("data", data.to_path_buf()),
        ("log", data.join("log")),
        ("blobs", data.join("blobs")),
    ] {
        // A directory not created yet will be created on the volume of its nearest parent.
        let Some((path, meta)) = path
            .ancestors()
            .find_map(|p| fs::metadata(p).ok().map(|m| (p.to_path_buf(), m)))
        else {
            continue;
        };
        if let Some(v) = volumes.iter_mut().find(|v| v.dev == meta.dev()) {
            v.labels.push(label);
            continue;
        }
        match rustix::fs::statvfs(&path) {
            Ok(stat) => volumes.push(Volume {
                dev: meta.dev(),
                labels: vec![label],
                path,
                stat,
            }),
            Err(e) => g.judge(
                &format!("space ({label})"),
                format!("{}: {e}", path.display()),
                warn(not_yours_hint()),
            ),
        }
    }
    for v in volumes {
        let s = &v.stat;
        let free = s.f_bavail.saturating_mul(s.f_frsize);
        let total = s.f_blocks.saturating_mul(s.f_frsize);
        let percent = if total > 0 {
            free as f64 * 100.0 / total as f64
        } else {
            0.0
        };
        let (mount, fstype) = mount_of(&v.path).unwrap_or_else(|| ("?".into(), "?".into()));
        let inodes = if s.f_files > 0 {
            format!("{} inodes free", s.f_favail)
        } else {
            "no inode limit".into()
        };
        let value = format!(
            "{} free of {} ({percent:.0}%), {inodes}, on {mount} ({fstype})",
            human_bytes(free),
            human_bytes(total)
        );
        let mut verdict = worst(
            space_verdict(free, thresholds),
            inode_verdict(s.f_favail, s.f_files),
        );
        if v.labels.contains(&"data") && (fstype == "tmpfs" || fstype == "ramfs") {
            verdict = worst(
                verdict,
                warn(
                    "this volume lives in memory: mail stored on it is lost at reboot; move \
                     the data directory to a disk",
                ),
            );
        }
        g.judge(&format!("space ({})", v.labels.join(", ")), value, verdict);
    }
}

fn space_verdict(free: u64, thresholds: &DiskThresholds) -> Verdict {
    match gate::disk::classify(free, thresholds) {
        DiskState::Critical { .. } => fail(format!(
            "below the hard floor of {}: tegami refuses every write; free space on this volume now \
             (old backups and archives, other programs' logs) or move the data directory to a \
             larger disk",
            human_bytes(thresholds.hard_floor)
        )),
        DiskState::Low { .. } => warn(format!(
            "below min_free of {}: new mail is deferred (452 4.3.1) until space returns; free \
             space on this volume, \
             or lower [disk] min_free_bytes if you accept only smaller messages",
            human_bytes(thresholds.min_free)
        )),
        DiskState::Ok { .. } | DiskState::Unknown => fine(),
    }
}

fn inode_verdict(available: u64, total: u64) -> Verdict {
    if total > 0 && available < 10_000 {
        warn(
            "few inodes left and every message body is a file: remove unneeded files, or move \
             to a volume with more inodes",
        )
    } else {
        fine()
    }
}

/// The mount point and file system type holding `path`, from /proc/self/mountinfo.
fn mount_of(path: &Path) -> Option<(String, String)> {
    let path = fs::canonicalize(path).ok()?;
    let table = fs::read_to_string("/proc/self/mountinfo").ok()?;
    table
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount = left.split(' ').nth(4)?.replace("\\040", " ");
            Some((mount, right.split(' ').next()?.to_string()))
        })
        .filter(|(mount, _)| path.starts_with(mount))
        .max_by_key(|(mount, _)| mount.len())
}

// ---------------------------------------------------------------------------------------
// Store

/// What a store that cannot be read deserves: a failure when doctor runs as the data
/// directory's owner or as root (the server could not read it either), else a warning that
/// doctor may simply be the wrong user.
fn unreadable(data: &Path, what: &str) -> Verdict {
    let euid = rustix::process::geteuid().as_raw();
    let owner = fs::metadata(data).map(|m| m.uid()).ok();
    if euid == 0 || owner == Some(euid) {
        fail(format!(
            "{what} cannot be read even by {}: the server cannot serve this mail; fix the \
             permissions (chown -R the server's user, chmod u+rw), or restore from a backup \
             if the disk is failing",
            if euid == 0 { "root" } else { "its owner" }
        ))
    } else {
        warn(not_yours_hint())
    }
}

fn store(data: &Path, wal_cap: u64) -> Group {
    let mut g = Group::new("Store");
    let db = data.join("tegami.db");
    let wal = data.join("tegami.db-wal");
    let size = |p: &Path| fs::metadata(p).ok().map(|m| m.len());
    match fs::metadata(&db).map(|m| m.len()) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => g.judge(
            "database",
            format!("tegami.db: {e}"),
            unreadable(data, "the database"),
        ),
        Err(_) => g.judge(
            "database",
            "tegami.db does not exist yet",
            warn(
                "it is created when the store is first opened: `tegami serve` or an admin \
                  command such as `tegami domain add`",
            ),
        ),
        Ok(db_bytes) => {
            let wal_bytes = size(&wal).unwrap_or(0);
            let shm_bytes = size(&data.join("tegami.db-shm")).unwrap_or(0);
            g.judge(
                "database",
                format!(
                    "tegami.db {}, WAL {}, shm \
                         {}",
                    human_bytes(db_bytes),
                    human_bytes(wal_bytes),
                    human_bytes(shm_bytes)
                ),
                wal_verdict(wal_bytes, wal_cap),
            );
            let current = store::SCHEMA_VERSION;
            match read_schema_version(&db, &wal) {
                Ok((found, from_wal)) => {
                    let source = if from_wal {
                        ", read from the write-ahead log"
                    } else {
                        ""
                    };
                    g.judge(
                        "schema version",
                        format!(
                            "{found} (this tegami: \
                                                       {current}){source}"
                        ),
                        schema_verdict(found, current),
                    );
                }
                Err(SchemaError::Io(e)) => g.judge(
                    "schema version",
                    format!("cannot read tegami.db: {e}"),
                    unreadable(data, "the database"),
                ),
                Err(SchemaError::Format(e)) => g.judge(
                    "schema version",
                    format!("tegami.db {e}"),
                    fail("tegami cannot open this file: restore the data directory from a backup"),
                ),
            }
        }
    }
    match blob_stats(&data.join("blobs")) {
        Ok(Some(stats)) if stats.unreadable > 0 => g.judge(
            "blobs",
            format!(
                "{}, {}; {} of the {} opened cannot be read ({})",
                plural(stats.count, "file"),
                human_bytes(stats.bytes),
                stats.unreadable,
                stats.opened,
                stats.example.unwrap_or_default()
            ),
            unreadable(data, "message bodies"),
        ),
        Ok(Some(stats)) => g.ok(
            "blobs",
            format!(
                "{}, {}",
                plural(stats.count, "file"),
                human_bytes(stats.bytes)
            ),
        ),
        Ok(None) => g.ok("blobs", "blobs/ does not exist yet"),
        Err(e) => g.judge(
            "blobs",
            format!("cannot read blobs/: {e}"),
            unreadable(data, "blobs/ (every message body)"),
        ),
    }
    g
}

fn wal_verdict(wal_bytes: u64, wal_cap: u64) -> Verdict {
    if wal_bytes > wal_cap {
        warn(
            "the write-ahead log is above its cap ([wal] cap_bytes): something keeps it from \
             being checkpointed (a reader holding one transaction open, or a crash); the \
             running server truncates it as soon as readers let it, `tegami optimize` \
             checkpoints it, and a clean stop folds it in",
        )
    } else {
        fine()
    }
}

fn schema_verdict(found: i64, current: i64) -> Verdict {
    if found > current {
        fail(format!(
            "this database was written by a newer tegami (schema {found}, this one knows \
             {current}): \
             run that newer version, or restore a backup made with this one"
        ))
    } else if found < current {
        warn(format!(
            "this tegami migrates it to schema {current} the next time the store is opened \
             (serve or any admin command); \
             make a backup of the data directory first"
        ))
    } else {
        fine()
    }
}

#[derive(Debug)]
enum SchemaError {
    Io(io::Error),
    Format(String),
}

/// SQLite's `user_version`, where tegami keeps its schema version: from the newest committed
/// copy of page 1 in the write-ahead log if there is one (a running server may not have
/// checkpointed it yet), else from the database file's header.
fn read_schema_version(db: &Path, wal: &Path) -> Result<(i64, bool), SchemaError> {
    if let Ok(file) = File::open(wal)
        && let Some(page1) = wal_page1_header(BufReader::new(file)).map_err(SchemaError::Io)?
    {
        return db_header_version(&page1)
            .map(|v| (v, true))
            .map_err(SchemaError::Format);
    }
    let mut header = Vec::with_capacity(100);
    File::open(db)
        .and_then(|f| f.take(100).read_to_end(&mut header))
        .map_err(SchemaError::Io)?;
    db_header_version(&header)
        .map(|v| (v, false))
        .map_err(SchemaError::Format)
}

/// The user version in a SQLite file header (https://sqlite.org/fileformat.html, 1.3):
/// a big-endian 32-bit integer at offset 60. An empty file is an empty database: version 0.
fn db_header_version(header: &[u8]) -> Result<i64, String> {
    if header.is_empty() {
        return Ok(0);
    }
    if header.len() < 100 {
        return Err(format!(
            "is truncated: {} bytes, shorter than a SQLite header",
            header.len()
        ));
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Err("is not a SQLite database (its header is wrong)".into());
    }
    Ok(i32::from_be_bytes([header[60], header[61], header[62], header[63]]) as i64)
}

const WAL_MAGIC: u32 = 0x377f_0682;
const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// SQLite's WAL checksum (https://sqlite.org/fileformat.html, 4.1), continued from `sum`.
fn wal_checksum(data: &[u8], big_endian: bool, (mut s0, mut s1): (u32, u32)) -> (u32, u32) {
    let word = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    for pair in data.chunks_exact(8) {
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

/// The first 100 bytes of the newest committed copy of page 1 in a write-ahead log. Frames
/// count only while their salts match the log header and the checksum chain holds, as
/// SQLite itself decides on recovery; a page 1 not followed by a commit frame is ignored.
fn wal_page1_header(mut wal: impl Read) -> io::Result<Option<[u8; 100]>> {
    let mut header = [0u8; WAL_HEADER];
    if !read_full(&mut wal, &mut header)? {
        return Ok(None);
    }
    let magic = be32(&header[0..4]);
    let page_size = be32(&header[8..12]) as usize;
    if magic & !1 != WAL_MAGIC
        || !page_size.is_power_of_two()
        || !(512..=65536).contains(&page_size)
    {
        return Ok(None);
    }
    let big_endian = magic & 1 == 1;
    let mut sum = wal_checksum(&header[..24], big_endian, (0, 0));
    if sum != (be32(&header[24..28]), be32(&header[28..32])) {
        return Ok(None);
    }
    let mut frame = vec![0u8; FRAME_HEADER + page_size];
    let (mut pending, mut committed) = (None, None);
    while read_full(&mut wal, &mut frame)? {
        if frame[8..16] != header[16..24] {
            break;
        }
        sum = wal_checksum(&frame[..8], big_endian, sum);
        sum = wal_checksum(&frame[FRAME_HEADER..], big_endian, sum);
        if sum != (be32(&frame[16..20]), be32(&frame[20..24])) {
            break;
        }
        if be32(&frame[0..4]) == 1 {
            let mut page1 = [0u8; 100];
            page1.copy_from_slice(&frame[FRAME_HEADER..FRAME_HEADER + 100]);
            pending = Some(page1);
        }
        if be32(&frame[4..8]) != 0 && pending.is_some() {
            committed = pending.take();
        }
    }
    Ok(committed)
}

/// Fills `buf`; false at the end of the input (a partial last piece counts as the end).
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match input.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Number and total size of the blob files in `blobs/ab/<sha256>`; None without `blobs/`.
/// The archives: how many and how big, and any that a run left unfinished.
fn archives(data: &Path) -> Group {
    let mut g = Group::new("archives");
    let root = data.join("archive");
    let Ok(entries) = fs::read_dir(&root) else {
        g.ok("archives", "none");
        return g;
    };
    let (mut count, mut messages, mut bytes) = (0u64, 0u64, 0u64);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".partial") {
            g.judge(
                &name,
                "an archive whose build was interrupted (it holds nothing the live store gave up)",
                warn("the next `tegami archive create` (or the server at start) removes it"),
            );
            continue;
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match store::archive::Archive::open(&path).and_then(|a| a.info()) {
            Ok(info) => {
                count += 1;
                messages += info.messages;
                bytes += info.disk_bytes;
                if info.state != store::archive::ArchiveState::Complete {
                    g.judge(
                        &format!("archive {}", info.id),
                        "unfinished: the live store may still hold some of its messages",
                        warn("run `tegami archive create` again, or start the server: either finishes it"),
                    );
                }
            }
            Err(e) => g.judge(
                &format!("archive {name}"),
                e.to_string(),
                fail(format!(
                    "check {} (`tegami archive check {name}`)",
                    path.display()
                )),
            ),
        }
    }
    g.ok(
        "archives",
        format!(
            "{count} ({messages} messages, {} on disk, shared with the store where hard-linked)",
            store::human_bytes(bytes)
        ),
    );
    g
}

/// What outgoing mail needs: a way to authenticate users safely, and DKIM keys.
fn sending(data: &Path, config: &Config) -> Group {
    let mut g = Group::new("sending");
    let sub = &config.submission;
    // ACME certificates count as much as configured ones: the server serves both.
    let has_certificate = config.tls.is_some() || config.acme.is_some();
    if !has_certificate && sub.require_tls && !sub.listen.ip().is_loopback() {
        g.judge(
            "submission AUTH",
            "no certificate ([tls] or [acme]): only clients on loopback can log in to submit",
            warn("set [tls] cert and key, or [acme], so users can authenticate over TLS"),
        );
    } else if !sub.require_tls {
        g.judge(
            "submission AUTH",
            "allowed without TLS ([submission] require_tls = false)",
            warn("passwords may cross the network in clear text; set require_tls = true"),
        );
    } else {
        g.ok("submission AUTH", "after STARTTLS (or from loopback)");
    }
    let route = match &config.queue.smart_host {
        Some(host) => format!("smart host {}:{}", host.host, host.port),
        None => "MX lookup".to_string(),
    };
    let statics = config.queue.routes.len();
    g.ok(
        "routing",
        if statics == 0 {
            route
        } else {
            format!("{route}, {statics} static route(s)")
        },
    );
    let dkim = data.join("dkim");
    let mut domains: Vec<String> = fs::read_dir(&dkim)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    domains.sort();
    if domains.is_empty() {
        g.judge(
            "DKIM",
            "no keys: outgoing mail is not signed, and many receivers file it as spam",
            warn("run `tegami domain dkim DOMAIN` and publish the TXT record it prints"),
        );
    } else {
        g.ok("DKIM", format!("keys for {}", domains.join(", ")));
    }
    g
}

/// What `blob_stats` found: the blob files, and how many of those opened could not be.
#[derive(Default)]
struct BlobStats {
    count: u64,
    bytes: u64,
    opened: u64,
    unreadable: u64,
    /// The first one that could not be read, with the error.
    example: Option<String>,
}

/// How many blob files doctor opens (and reads a byte of) to find bodies that cannot be
/// read: enough to notice a store whose files lost their owner or mode, cheap on any
/// size of store. `tegami check` reads every one.
const BLOBS_OPENED: u64 = 2000;

fn blob_stats(root: &Path) -> io::Result<Option<BlobStats>> {
    let is_fan =
        |e: &fs::DirEntry| e.file_name().len() == 2 && e.file_type().is_ok_and(|t| t.is_dir());
    let top = match fs::read_dir(root) {
        Ok(top) => top,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut stats = BlobStats::default();
    for a in top.flatten().filter(is_fan) {
        for file in fs::read_dir(a.path())?.flatten() {
            let name = file.file_name();
            let is_blob = name.len() == 64
                && name
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|c| c.is_ascii_hexdigit()));
            if is_blob && let Ok(meta) = file.metadata() {
                stats.count += 1;
                stats.bytes += meta.len();
                if stats.opened < BLOBS_OPENED {
                    stats.opened += 1;
                    let read = File::open(file.path()).and_then(|f| f.take(1).read(&mut [0u8]));
                    match read {
                        Ok(_) => {}
                        // Removed since it was listed (an expunge): not a fault.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            stats.unreadable += 1;
                            stats.example.get_or_insert_with(|| {
                                format!(
                                    "blobs/{}/{}: {e}",
                                    a.file_name().to_string_lossy(),
                                    name.to_string_lossy()
                                )
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(Some(stats))
}

// ---------------------------------------------------------------------------------------
// Listeners

enum LockState {
    /// No lock file: no server has run here.
    Absent,
    Free,
    /// Held by a running server; the pid it wrote, for people.
    Held(String),
}

/// Whether a server holds the data directory: try its kernel lock and let go at once.
fn lock_state(data: &Path) -> io::Result<LockState> {
    let path = data.join("tegami.lock");
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockState::Absent),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(LockState::Free), // released when `file` is dropped
        Err(fs::TryLockError::WouldBlock) => Ok(LockState::Held(
            fs::read_to_string(&path)
                .unwrap_or_default()
                .trim()
                .to_string(),
        )),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

fn listeners(data: &Path, config: &Config) -> Group {
    let mut g = Group::new("Listeners");
    let running = match lock_state(data) {
        Ok(LockState::Held(pid)) => {
            let pid = if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            };
            g.ok("server", format!("running{pid}: it holds tegami.lock"));
            true
        }
        Ok(LockState::Free) => {
            g.ok("server", "not running (tegami.lock is free)");
            false
        }
        Ok(LockState::Absent) => {
            g.ok("server", "not running (no server has run here yet)");
            false
        }
        Err(e) => {
            g.judge(
                "server",
                format!("cannot tell: tegami.lock: {e}"),
                warn(not_yours_hint()),
            );
            false
        }
    };
    let implicit = config
        .implicit_tls_listeners()
        .into_iter()
        .map(|(name, addr)| {
            let name = match name {
                "imaps" => "IMAPS",
                "pop3s" => "POP3S",
                _ => "Submissions",
            };
            (name, addr)
        });
    for (name, addr) in [
        ("SMTP", config.smtp.listen),
        ("Submission", config.submission.listen),
        ("POP3", config.pop3.listen),
    ]
    .into_iter()
    .chain(implicit)
    {
        // Binding and dropping at once: nothing listens, nothing is left behind.
        let probe = TcpListener::bind(addr).map(drop);
        let (value, verdict) = listener_verdict(addr, probe, running);
        g.judge(name, value, verdict);
    }
    g
}

fn listener_verdict(addr: SocketAddr, probe: io::Result<()>, running: bool) -> (String, Verdict) {
    match probe {
        Ok(()) if !running => (format!("{addr} free (the server is not running)"), fine()),
        Ok(()) => (
            format!("{addr} free, yet the server is running"),
            warn(
                "the running server listens elsewhere: it was started with --smtp/--pop3 or \
                 another --config; \
                 doctor checks the addresses of the config it was given",
            ),
        ),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && running => {
            (format!("{addr} in use (by the running server)"), fine())
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => (
            format!("{addr} in use by another program"),
            fail(format!(
                "`tegami serve` cannot bind it: stop that program (`ss -ltnp 'sport = :{}'` \
                 names it) or choose another address in the config file",
                addr.port()
            )),
        ),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => (
            format!("{addr}: not allowed to bind it"),
            warn(
                "ports below 1024 need root or CAP_NET_BIND_SERVICE (`setcap \
                 cap_net_bind_service=+ep $(command -v tegami)`); \
                 run doctor as the server's user to tell whether the port is in use",
            ),
        ),
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => (
            format!("{addr}: this machine has no such address"),
            fail(
                "listen on an address this machine has (see `ip addr`), or 0.0.0.0 for all of them",
            ),
        ),
        Err(e) => (
            format!("{addr}: {e}"),
            warn("check the listen address in the config file"),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// TLS

fn tls(data: &Path, config: &Config, now: &Zoned) -> Group {
    let mut g = Group::new("TLS");
    let exposed: Vec<String> = [config.smtp.listen, config.pop3.listen]
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(|a| a.to_string())
        .collect();
    let sources = config.tls_sources(data);
    let files = sources.files();
    if files.is_empty() {
        if exposed.is_empty() {
            g.ok("TLS", "not configured (the listeners are on loopback only)");
        } else {
            g.judge(
                "TLS",
                format!(
                    "not configured, yet {} can be reached from other \
                         machines",
                    exposed.join(", ")
                ),
                warn(format!(
                    "passwords and mail cross the network in clear: set [tls] cert and key in \
                     the config file \
                     (for example a Let's Encrypt certificate for {})",
                    config.hostname
                )),
            );
        }
        return g;
    }
    let configured = sources.configured.len();
    let mut names = Vec::new();
    for (i, files) in files.iter().enumerate() {
        let setting = if i < configured {
            "[tls] cert and key"
        } else {
            "the ACME certificate"
        };
        names.extend(one_certificate(&mut g, files, setting, now));
    }
    // With several certificates, one of them must cover the server's own name.
    let verdict = if names.iter().any(|n| cert_name_matches(n, &config.hostname)) {
        fine()
    } else {
        warn(format!(
            "no certificate is issued for the server name {}: clients that check names will \
             refuse it; get a certificate for {}, or set `hostname` to a name one covers",
            config.hostname, config.hostname
        ))
    };
    g.judge("certificate names", names.join(", "), verdict);
    let implicit: Vec<String> = config
        .implicit_tls_listeners()
        .iter()
        .map(|(name, addr)| format!("{name} {addr}"))
        .collect();
    g.ok(
        "implicit TLS",
        if implicit.is_empty() {
            "listeners at their defaults (127.0.0.1:2993, :2995, :2465)".to_string()
        } else {
            implicit.join(", ")
        },
    );
    g
}

/// One certificate and its key: readable, valid, not expiring soon, belonging together.
/// Returns the names it covers (none when it cannot be read).
fn one_certificate(
    g: &mut Group,
    files: &net::CertFiles,
    setting: &str,
    now: &Zoned,
) -> Vec<String> {
    let Some(names) = certificate(g, &files.cert, setting, now) else {
        return Vec::new();
    };
    let key = &files.key;
    let key_read = match fs::metadata(key).and_then(|m| File::open(key).map(|_| m)) {
        Ok(meta) => {
            let mode = meta.mode() & 0o7777;
            let verdict = if mode & 0o004 != 0 {
                warn(format!(
                    "every user of this machine can read the private key: chmod 600 {}",
                    key.display()
                ))
            } else {
                fine()
            };
            g.judge(
                "key",
                format!("{} readable, mode {mode:04o}", key.display()),
                verdict,
            );
            true
        }
        Err(e) => {
            let hint = unreadable_hint(&e, setting);
            g.judge("key", format!("{}: {e}", key.display()), fail(hint));
            false
        }
    };
    if key_read {
        match net::load_cert(files) {
            Ok(_) => g.ok(
                "key pair",
                format!(
                    "{}: the certificate and key load as the server loads them",
                    files.cert.display()
                ),
            ),
            Err(e) => g.judge(
                "key pair",
                e.to_string(),
                fail(format!(
                    "the server will not serve this certificate: check that the key belongs to \
                     the certificate (PEM files; {setting})"
                )),
            ),
        }
    }
    names
}

/// What to do about a file the server needs and doctor cannot read.
fn unreadable_hint(e: &io::Error, setting: &str) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => {
            format!("the server cannot start without it: correct {setting} in the config file")
        }
        io::ErrorKind::PermissionDenied => not_yours_hint(),
        _ => "the server cannot start without it".into(),
    }
}

/// The certificate's validity; its names, or None when it cannot be read at all.
fn certificate(g: &mut Group, path: &Path, setting: &str, now: &Zoned) -> Option<Vec<String>> {
    let file = path.display();
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            let hint = unreadable_hint(&e, setting);
            g.judge("certificate", format!("{file}: {e}"), fail(hint));
            return None;
        }
    };
    let pem = x509_parser::pem::Pem::iter_from_buffer(&bytes)
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE");
    let Some(pem) = pem else {
        g.judge(
            "certificate",
            format!("{file}: no PEM certificate in it"),
            fail(format!(
                "{setting} must name a PEM file starting with -----BEGIN CERTIFICATE----- \
                  (the full chain, server certificate first)"
            )),
        );
        return Some(Vec::new());
    };
    let cert = match pem.parse_x509() {
        Ok(cert) => cert,
        Err(e) => {
            g.judge(
                "certificate",
                format!("{file}: {e}"),
                fail("the certificate is damaged: install it again"),
            );
            return Some(Vec::new());
        }
    };
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let date = |t: i64| {
        Timestamp::from_second(t)
            .map(|t| {
                t.to_zoned(now.time_zone().clone())
                    .strftime("%Y-%m-%d %H:%M %Z")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let (level, days) = expiry(not_before, not_after, now.timestamp().as_second());
    let subject = cert.subject();
    let (value, verdict) = match level {
        Expiry::NotYetValid => (
            format!("{file}: {subject}, valid only from {}", date(not_before)),
            fail("check this machine's clock, or the certificate"),
        ),
        Expiry::Expired => (
            format!(
                "{file}: {subject}, expired {} ({} days ago)",
                date(not_after),
                -days
            ),
            fail(
                "renew it (for example `certbot renew`): clients refuse an expired \
                 certificate; tegami serves the new file within seconds of it changing",
            ),
        ),
        Expiry::Soon => (
            format!(
                "{file}: {subject}, expires {} (in {days} days)",
                date(not_after)
            ),
            warn(
                "renew it now; automatic renewal (ACME) acts 30 days ahead, so it may be \
                 failing: see log/tegami.log",
            ),
        ),
        Expiry::Valid => (
            format!(
                "{file}: {subject}, expires {} (in {days} days)",
                date(not_after)
            ),
            fine(),
        ),
    };
    g.judge("certificate", value, verdict);

    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(name) => Some(name.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_string)
            .collect();
    }
    Some(names)
}

#[derive(Debug, PartialEq, Eq)]
enum Expiry {
    NotYetValid,
    Expired,
    /// Less than three weeks left.
    Soon,
    Valid,
}

/// How a certificate valid from `not_before` to `not_after` stands at `now` (seconds since
/// the epoch), and the whole days left (negative once expired).
fn expiry(not_before: i64, not_after: i64, now: i64) -> (Expiry, i64) {
    let days = (not_after - now) / 86_400;
    let level = if now < not_before {
        Expiry::NotYetValid
    } else if now >= not_after {
        Expiry::Expired
    } else if days < 21 {
        Expiry::Soon
    } else {
        Expiry::Valid
    };
    (level, days)
}

/// A certificate name covers a host name exactly, or as a wildcard for one leftmost label.
fn cert_name_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.trim_end_matches('.').eq_ignore_ascii_case(host),
    }
}

// ---------------------------------------------------------------------------------------
// Clock, maintenance, checks

fn clock_group(clock: &Clock, error: Option<String>) -> Group {
    let mut g = Group::new("Clock");
    let now = clock.now();
    let zone = clock.time_zone().iana_name().unwrap_or("system time zone");
    let local = format!("{} ({zone})", now.strftime("%Y-%m-%d %H:%M:%S %Z, UTC%:z"));
    if let Some(e) = error {
        g.judge(
            "local time",
            local,
            fail(format!(
                "{e}; unset TEGAMI_CLOCK_START: it is only for tests"
            )),
        );
    } else if std::env::var_os("TEGAMI_CLOCK_START").is_some() {
        g.judge(
            "local time",
            format!("{local}, shifted by TEGAMI_CLOCK_START"),
            warn(
                "unset TEGAMI_CLOCK_START unless you are testing: schedules and maintenance \
                  windows follow it",
            ),
        );
    } else {
        g.ok("local time", local);
    }
    g.ok(
        "UTC",
        now.timestamp()
            .strftime("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    );
    g
}

fn local(zoned: &Zoned) -> String {
    zoned.strftime("%Y-%m-%d %H:%M").to_string()
}

fn maintenance(data: &Path, clock: &Clock) -> Group {
    let mut g = Group::new("Maintenance");
    let path = data.join("maint");
    let now = clock.now();
    match Maintenance::load(&path) {
        Err(gate::MaintError::Io { source, .. })
            if source.kind() == io::ErrorKind::PermissionDenied =>
        {
            g.judge(
                "state",
                format!("{}: {source}", path.display()),
                warn(not_yours_hint()),
            )
        }
        Err(e) => g.judge(
            "state",
            e.to_string(),
            fail(format!(
                "the server treats a file it cannot read as maintenance and turns clients \
                 away: fix {} or delete it (`tegami maint off`)",
                path.display()
            )),
        ),
        Ok(None) => g.ok("state", "off"),
        Ok(Some(m)) => {
            let by = m
                .set_by
                .as_deref()
                .map(|b| format!(", set by {b}"))
                .unwrap_or_default();
            match m.status_at(&now) {
                gate::Status::Off => g.ok("state", "off"),
                gate::Status::Active {
                    message,
                    since,
                    until,
                } => {
                    let since = since
                        .map(|t| format!(" since {}", local(&t)))
                        .unwrap_or_default();
                    let until = until.map(|t| local(&t)).unwrap_or_else(|| "lifted".into());
                    g.judge(
                        "state",
                        format!("ON{since} until {until}{by}: \"{message}\""),
                        warn(format!(
                            "clients are turned away (SMTP 421, POP3 -ERR) while it lasts; \
                             `tegami maint off` or deleting {} lifts it",
                            path.display()
                        )),
                    );
                }
                gate::Status::Waiting {
                    next_start,
                    next_end,
                } => {
                    let windows: Vec<String> = m.windows.iter().map(|w| w.to_string()).collect();
                    g.ok(
                        "state",
                        format!(
                            "scheduled daily {}{by}; next {} to {}: \"{}\"",
                            windows.join(", "),
                            local(&next_start),
                            local(&next_end),
                            m.message()
                        ),
                    );
                }
            }
        }
    }
    g
}

fn checks(data: &Path, config: &Config, clock: &Clock) -> Group {
    let mut g = Group::new("Checks");
    let now = clock.now();
    let check_at = config.schedule.check_at;
    match check_at {
        None => g.judge(
            "schedule",
            "no daily check configured",
            warn(
                "set check_at = \"03:00\" under [maintenance] in the config file: the running \
                 server then checks \
                 and optimises the store every day, online",
            ),
        ),
        Some(at) => {
            let how = if config.schedule.maintenance_during_check {
                "in maintenance mode"
            } else {
                "online"
            };
            let maint = Maintenance::load(&data.join("maint")).ok().flatten();
            match check_skip_reason(at, maint.as_ref()) {
                Some(reason) => g.judge(
                    "schedule",
                    format!(
                        "daily at {} ({how}), but it is skipped while {reason}",
                        hhmm(at)
                    ),
                    warn(
                        "move [maintenance] check_at out of the maintenance windows (not at a \
                         window's end either), \
                         or lift maintenance",
                    ),
                ),
                None => g.ok("schedule", format!("daily at {} ({how})", hhmm(at))),
            }
        }
    }
    let log = data.join("log");
    last_run(
        &mut g,
        "last check",
        &log.join("maintenance_result.log"),
        check_at,
        &now,
        true,
    );
    last_run(
        &mut g,
        "last optimisation",
        &log.join("optimize_result.log"),
        check_at,
        &now,
        false,
    );
    if let Some(line) = last_line(&log.join("maintenance.log")) {
        g.ok("maintenance.log", line);
    }
    g
}

/// A `*_result.log`: when it was written and its first lines, judged against the schedule.
fn last_run(
    g: &mut Group,
    item: &str,
    path: &Path,
    check_at: Option<u16>,
    now: &Zoned,
    is_check: bool,
) {
    let read = fs::metadata(path).and_then(|m| Ok((m.modified()?, read_head(path)?)));
    let (value, age, problems) = match read {
        Ok((modified, text)) => {
            let written = Timestamp::try_from(modified).unwrap_or(Timestamp::UNIX_EPOCH);
            let age = now.timestamp().as_second() - written.as_second();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take(3)
                .collect();
            let value = format!(
                "{} ({} ago): {}",
                local(&written.to_zoned(now.time_zone().clone())),
                human_age(age),
                lines.join(" / ")
            );
            (value, Some(age), is_check && result_has_problems(&text))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => ("none yet".to_string(), None, false),
        Err(e) => {
            g.judge(
                item,
                format!("{}: {e}", path.display()),
                warn(not_yours_hint()),
            );
            return;
        }
    };
    let what = if is_check { "check" } else { "optimisation" };
    g.judge(item, value, last_run_verdict(what, age, check_at, problems));
}

fn last_run_verdict(
    what: &str,
    age_secs: Option<i64>,
    check_at: Option<u16>,
    problems: bool,
) -> Verdict {
    // A check that found problems found damage (unreadable bodies, a damaged database,
    // wrong reference counts): that fails the diagnosis, it is not a warning.
    let found = if problems {
        fail(
            "the last check found problems: `tegami check` shows the current state, \
             `tegami check --repair` fixes what can be fixed",
        )
    } else {
        fine()
    };
    let command = if what == "check" { "check" } else { "optimize" };
    let age = match (check_at, age_secs) {
        (None, _) => fine(),
        (Some(at), None) => warn(format!(
            "no {what} has run yet: the running server runs one daily at {}; `tegami \
             {command}` runs one now",
            hhmm(at)
        )),
        (Some(at), Some(age)) if age > 2 * 86_400 => warn(format!(
            "the daily {what} at {} has not run for {} days: is the server running? \
             log/maintenance.log says when runs were skipped",
            hhmm(at),
            age / 86_400
        )),
        (Some(_), Some(_)) => fine(),
    };
    worst(found, age)
}

/// Whether a check result names problems. `ops::check` writes `result: healthy ...` as the
/// first line of `maintenance_result.log` when, and only when, nothing is outstanding.
fn result_has_problems(text: &str) -> bool {
    let first = text.lines().next().unwrap_or("").trim();
    !first
        .strip_prefix("result:")
        .is_some_and(|r| r.trim_start().starts_with("healthy"))
}

/// The first 4 KiB of a file, as text.
fn read_head(path: &Path) -> io::Result<String> {
    let mut buf = Vec::new();
    File::open(path)?.take(4096).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The last non-empty line of a log, reading only its last 4 KiB.
fn last_line(path: &Path) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ok()?;
    String::from_utf8_lossy(&buf)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------
// Backups

fn backups(data: &Path, config: &Config, clock: &Clock) -> Group {
    let mut g = Group::new("Backups");
    let settings = &config.schedule.backup;
    let root = settings.root(data);
    let now = clock.now();
    match settings.at {
        None => g.judge(
            "schedule",
            "no daily backup configured",
            warn(
                "set at = \"23:00\" under [backup] in the config file: the running server \
                 then takes a verified backup every day, online, and keeps 7 daily and 4 \
                 weekly ones",
            ),
        ),
        Some(at) => g.ok(
            "schedule",
            format!(
                "daily at {}{}, keeping {} daily and {} weekly",
                hhmm(at),
                if settings.verify { ", verified" } else { "" },
                settings.keep_daily,
                settings.keep_weekly
            ),
        ),
    }
    let data_dev = fs::metadata(data).map(|m| m.dev()).ok();
    match fs::metadata(&root) {
        Ok(meta) => {
            let place = if data_dev == Some(meta.dev()) {
                "on the data's file system: hard links make each backup cheap, but one failed \
                 disk takes both; a [backup] dir on another disk survives that"
            } else {
                "on another file system than the data"
            };
            g.ok("directory", format!("{} ({place})", root.display()));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            g.ok("directory", format!("{} (not created yet)", root.display()))
        }
        Err(e) => g.judge(
            "directory",
            format!("{}: {e}", root.display()),
            warn(not_yours_hint()),
        ),
    }
    match crate::backup::newest(&root) {
        Some(entry) => {
            let (manifest, verified) = match &entry.state {
                store::backup::EntryState::Complete { manifest, verified } => {
                    (manifest, verified.clone())
                }
                _ => unreachable!("newest returns finished backups"),
            };
            let age = now.timestamp().as_second() - manifest.created_unix;
            let checked = match &verified {
                None => "not verified".to_string(),
                Some(v) if v.ok => "verified".to_string(),
                Some(v) => format!(
                    "verification FAILED: {}",
                    v.problem.as_deref().unwrap_or("see `tegami backup verify`")
                ),
            };
            let value = format!(
                "{} ({} ago): {}, {}; {checked}",
                entry.id,
                human_age(age),
                plural(manifest.messages, "message"),
                human_bytes(manifest.bytes)
            );
            let mut verdict = fine();
            if verified.as_ref().is_some_and(|v| !v.ok) {
                verdict = worst(
                    verdict,
                    warn(format!(
                        "the newest backup does not verify: take a new one (`tegami backup \
                         create --verify`); `tegami backup verify {}` names the damaged files",
                        entry.id
                    )),
                );
            }
            match settings.at {
                Some(at) => {
                    if let Some(missed) = crate::backup::missed(&root, &now, at) {
                        verdict = worst(
                            verdict,
                            warn(format!(
                                "{missed}: was the server down, or did it fail? log/backup.log \
                                 says; `tegami backup create` takes one now"
                            )),
                        );
                    }
                }
                None if age > 7 * 86_400 => {
                    verdict = worst(
                        verdict,
                        warn(
                            "the newest backup is more than a week old: `tegami backup create` takes one now, online",
                        ),
                    );
                }
                None => {}
            }
            g.judge("last backup", value, verdict);
        }
        None => g.judge(
            "last backup",
            "none",
            warn(match settings.at {
                Some(at) => format!(
                    "no backup yet: the server takes the first at {}; `tegami backup create` \
                     takes one now, online",
                    hhmm(at)
                ),
                None => "no backup at all: `tegami backup create` takes one now, online".into(),
            }),
        ),
    }
    let result = data.join("log").join("backup_result.log");
    match read_head(&result) {
        Ok(text) => {
            let first = text.lines().next().unwrap_or("").trim().to_string();
            let verdict = if first.starts_with("result: failed") {
                warn(
                    "the last backup run failed (see log/backup_result.log); fix the cause and run `tegami backup create`",
                )
            } else {
                fine()
            };
            g.judge("last run", first, verdict);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => g.judge(
            "last run",
            format!("{}: {e}", result.display()),
            warn(not_yours_hint()),
        ),
    }
    g
}

// ---------------------------------------------------------------------------------------
// Formatting

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn human_age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_version: i32) -> Vec<u8> {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(b"SQLite format 3\0");
        h[16..18].copy_from_slice(&4096u16.to_be_bytes());
        h[60..64].copy_from_slice(&user_version.to_be_bytes());
        h
    }

    #[test]
    fn the_sqlite_header_gives_the_user_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tegami.db");
        let mut file = header(7);
        file.resize(4096, 0);
        fs::write(&db, &file).unwrap();
        let wal = dir.path().join("tegami.db-wal");
        assert_eq!(read_schema_version(&db, &wal).unwrap(), (7, false));

        assert_eq!(
            db_header_version(&[]).unwrap(),
            0,
            "an empty file is an empty database"
        );
        assert!(
            db_header_version(&header(1)[..50])
                .unwrap_err()
                .contains("truncated")
        );
        let mut wrong = header(1);
        wrong[0] = b'X';
        assert!(
            db_header_version(&wrong)
                .unwrap_err()
                .contains("not a SQLite database")
        );
    }

    /// A write-ahead log built by hand: (page number, commit, user version in page 1).
    fn wal(frames: &[(u32, bool, i32)], salt: [u8; 8], frame_salt: [u8; 8]) -> Vec<u8> {
        let page_size = 512usize;
        let mut out = Vec::new();
        out.extend_from_slice(&(WAL_MAGIC | 1).to_be_bytes());
        out.extend_from_slice(&3_007_000u32.to_be_bytes());
        out.extend_from_slice(&(page_size as u32).to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&salt);
        let mut sum = wal_checksum(&out, true, (0, 0));
        out.extend_from_slice(&sum.0.to_be_bytes());
        out.extend_from_slice(&sum.1.to_be_bytes());
        for &(page, commit, version) in frames {
            let mut head = Vec::new();
            head.extend_from_slice(&page.to_be_bytes());
            head.extend_from_slice(&(if commit { 3u32 } else { 0 }).to_be_bytes());
            let mut data = if page == 1 {
                header(version)
            } else {
                vec![0xAB; 100]
            };
            data.resize(page_size, 0);
            sum = wal_checksum(&head, true, sum);
            sum = wal_checksum(&data, true, sum);
            head.extend_from_slice(&frame_salt);
            head.extend_from_slice(&sum.0.to_be_bytes());
            head.extend_from_slice(&sum.1.to_be_bytes());
            out.extend_from_slice(&head);
            out.extend_from_slice(&data);
        }
        out
    }

    fn version_in(wal: &[u8]) -> Option<i64> {
        wal_page1_header(wal)
            .unwrap()
            .map(|h| db_header_version(&h).unwrap())
    }

    #[test]
    fn the_wal_gives_the_newest_committed_page_one() {
        let salt = *b"saltsalt";
        assert_eq!(
            version_in(&wal(&[(1, false, 2), (2, true, 0)], salt, salt)),
            Some(2)
        );
        // A later committed transaction that leaves page 1 alone keeps the earlier copy.
        assert_eq!(
            version_in(&wal(&[(1, true, 2), (3, true, 0)], salt, salt)),
            Some(2)
        );
        // Page 1 written but never committed does not count.
        assert_eq!(
            version_in(&wal(&[(1, true, 2), (1, false, 3)], salt, salt)),
            Some(2)
        );
        assert_eq!(version_in(&wal(&[(1, false, 3)], salt, salt)), None);
        // Frames of an earlier generation of the log (other salts) do not count.
        assert_eq!(version_in(&wal(&[(1, true, 3)], salt, *b"oldsalt!")), None);
        // A torn frame breaks the checksum chain.
        let mut torn = wal(&[(1, true, 2), (1, true, 3)], salt, salt);
        let last = torn.len() - 1;
        torn[last] ^= 1;
        assert_eq!(version_in(&torn), Some(2));
        assert_eq!(version_in(b"not a wal"), None);

        // With a log beside it, the log wins over the file's stale header.
        let dir = tempfile::tempdir().unwrap();
        let (db, wal_path) = (
            dir.path().join("tegami.db"),
            dir.path().join("tegami.db-wal"),
        );
        fs::write(&db, header(1)).unwrap();
        fs::write(&wal_path, wal(&[(1, true, 4)], salt, salt)).unwrap();
        assert_eq!(read_schema_version(&db, &wal_path).unwrap(), (4, true));
    }

    #[test]
    fn schema_versions_are_judged() {
        assert_eq!(schema_verdict(3, 3).0, Level::Ok);
        assert_eq!(schema_verdict(2, 3).0, Level::Warn);
        assert_eq!(schema_verdict(0, 3).0, Level::Warn);
        assert_eq!(schema_verdict(4, 3).0, Level::Fail);
    }

    #[test]
    fn only_an_owner_only_directory_is_private() {
        assert_eq!(dir_mode_problem(0o700), None);
        assert_eq!(dir_mode_problem(0o1700), None);
        assert_eq!(
            dir_mode_problem(0o750).unwrap(),
            "group members can list it"
        );
        assert_eq!(
            dir_mode_problem(0o755).unwrap(),
            "group members and other users can list it"
        );
        assert!(
            dir_mode_problem(0o702)
                .unwrap()
                .starts_with("other users can create and delete")
        );
        assert!(
            dir_mode_problem(0o771)
                .unwrap()
                .starts_with("group members can create")
        );
        assert!(dir_mode_problem(0o711).unwrap().contains("can enter it"));
    }

    #[test]
    fn certificate_expiry_is_judged_in_days() {
        let day = 86_400;
        let now = 1_000 * day;
        assert_eq!(expiry(now - day, now + 90 * day, now), (Expiry::Valid, 90));
        assert_eq!(expiry(now - day, now + 21 * day, now), (Expiry::Valid, 21));
        assert_eq!(
            expiry(now - day, now + 21 * day - 1, now),
            (Expiry::Soon, 20)
        );
        assert_eq!(expiry(now - day, now + 1, now), (Expiry::Soon, 0));
        assert_eq!(expiry(now - 90 * day, now, now).0, Expiry::Expired);
        assert_eq!(
            expiry(now - 90 * day, now - 3 * day, now),
            (Expiry::Expired, -3)
        );
        assert_eq!(expiry(now + 1, now + 90 * day, now).0, Expiry::NotYetValid);
    }

    #[test]
    fn certificate_names_and_server_names() {
        assert!(cert_name_matches("mail.example.com", "MAIL.example.com."));
        assert!(cert_name_matches("*.example.com", "mail.example.com"));
        assert!(!cert_name_matches("*.example.com", "example.com"));
        assert!(!cert_name_matches("*.example.com", "a.mail.example.com"));

        assert!(is_fqdn("mail.example.com") && is_fqdn("mail.example.com."));
        for bad in [
            "localhost",
            "a1b2c3d4e5",
            "1.2.3.4",
            "-mx.example.com",
            "mx..example.com",
            "box.localdomain",
            "mx_1.example.com",
        ] {
            assert!(!is_fqdn(bad), "{bad}");
        }
        assert_eq!(
            server_name_verdict("mail.example.com", Some("mail")).0,
            Level::Ok
        );
        assert_eq!(
            server_name_verdict("mail.example.com", Some("mail.example.com")).0,
            Level::Ok
        );
        assert_eq!(
            server_name_verdict("mail.example.com", Some("web1")).0,
            Level::Warn
        );
        assert_eq!(server_name_verdict("mail", Some("mail")).0, Level::Warn);
    }

    #[test]
    fn disk_and_last_run_judgments() {
        let t = DiskThresholds {
            min_free: 1000,
            hard_floor: 10,
        };
        assert_eq!(space_verdict(1000, &t).0, Level::Ok);
        assert_eq!(space_verdict(999, &t).0, Level::Warn);
        assert_eq!(space_verdict(9, &t).0, Level::Fail);
        assert_eq!(inode_verdict(5, 0).0, Level::Ok, "no inode limit");
        assert_eq!(inode_verdict(5, 100).0, Level::Warn);
        assert_eq!(
            worst(warn("a"), fail("b")),
            (Level::Fail, Some("a; b".into()))
        );

        assert_eq!(last_run_verdict("check", None, None, false).0, Level::Ok);
        assert_eq!(
            last_run_verdict("check", None, Some(180), false).0,
            Level::Warn
        );
        assert_eq!(
            last_run_verdict("check", Some(3600), Some(180), false).0,
            Level::Ok
        );
        assert_eq!(
            last_run_verdict("check", Some(3 * 86_400), Some(180), false).0,
            Level::Warn
        );
        assert_eq!(
            last_run_verdict("check", Some(60), None, true).0,
            Level::Fail
        );
        assert!(!result_has_problems(
            "result: healthy (3 messages, 2 blobs checked)\nstarted ...\n"
        ));
        assert!(!result_has_problems(
            "result: healthy after 2 repairs (3 messages, 2 blobs checked)\n"
        ));
        assert!(result_has_problems(
            "result: 2 problems found (3 messages, 2 blobs checked)\n  damaged blob: ab12\n"
        ));
        assert!(result_has_problems(
            "result: check failed after 0.1 s: disk I/O error\n"
        ));
        assert!(result_has_problems("garbage"));
    }

    #[test]
    fn json_has_one_flat_object_per_finding() {
        let findings = [
            Finding {
                group: "TLS",
                item: "certificate".into(),
                status: Level::Warn,
                value: "CN=x".into(),
                hint: Some("renew".into()),
            },
            Finding {
                group: "System",
                item: "version".into(),
                status: Level::Ok,
                value: "tegami 0".into(),
                hint: None,
            },
        ];
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&findings).unwrap()).unwrap();
        assert_eq!(
            json[0],
            serde_json::json!({
                "group": "TLS", "item": "certificate", "status": "WARN", "value": "CN=x", "hint": "renew"
            })
        );
        assert_eq!(json[1]["status"], "OK");
        assert!(json[1]["hint"].is_null());
        assert_eq!(serde_json::to_value(Level::Fail).unwrap(), "FAIL");
    }

    #[test]
    fn a_missing_data_directory_is_described_without_creating_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("absent");
        let config = Config::load(None).unwrap();
        let g = data_directory(&data, &config);
        assert_eq!(g.findings[0].status, Level::Warn);
        assert!(g.findings.iter().any(|f| f.item.starts_with("space (data")));
        let s = store(&data, config.wal.cap_bytes);
        assert_eq!(s.findings[0].status, Level::Warn);
        let l = listeners(&data, &config);
        assert!(l.findings[0].value.contains("not running"));
        assert!(!data.exists(), "doctor must not create the data directory");
    }
}
