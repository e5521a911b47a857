//! The host and the data directory: version, OS and names; the directory's owner and
//! mode, its logs, and the free space and inodes of every volume tegami writes.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use gate::{DiskState, DiskThresholds};

use super::{Group, Verdict, fail, fine, human_bytes, not_yours_hint, plural, warn, worst};
use crate::config::Config;

pub(super) fn system(config: &Config) -> Group {
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

pub(super) fn data_directory(data: &Path, config: &Config) -> Group {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Severity;

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
    fn server_names_are_judged() {
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
            Severity::Ok
        );
        assert_eq!(
            server_name_verdict("mail.example.com", Some("mail.example.com")).0,
            Severity::Ok
        );
        assert_eq!(
            server_name_verdict("mail.example.com", Some("web1")).0,
            Severity::Warn
        );
        assert_eq!(server_name_verdict("mail", Some("mail")).0, Severity::Warn);
    }

    #[test]
    fn disk_space_and_inodes_are_judged() {
        let t = DiskThresholds {
            min_free: 1000,
            hard_floor: 10,
        };
        assert_eq!(space_verdict(1000, &t).0, Severity::Ok);
        assert_eq!(space_verdict(999, &t).0, Severity::Warn);
        assert_eq!(space_verdict(9, &t).0, Severity::Fail);
        assert_eq!(inode_verdict(5, 0).0, Severity::Ok, "no inode limit");
        assert_eq!(inode_verdict(5, 100).0, Severity::Warn);
    }
}
