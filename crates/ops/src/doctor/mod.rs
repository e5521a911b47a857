//! `doctor`: what an operator needs to know about this installation, and what to do, as a
//! list of findings a face shows as text or JSON.
//!
//! Doctor only looks. It opens files read-only, creates nothing (not the data directory, not
//! the database, not a log), and the data directory lock and the listener ports it tries are
//! released at once, so it gives the same answers whether the server is down or running. It
//! never opens the store: the SQLite backend reads its own files for it
//! ([`store::inspect`]). Every WARN and FAIL carries a hint; the diagnosis fails when any
//! finding FAILs.

mod network;
mod schedule;
mod storage;
mod system;

use std::fs;
use std::path::{Path, PathBuf};

use gate::Clock;
use jiff::Zoned;
use serde::Serialize;

use crate::config::Config;

/// How a finding stands; ordered from good to bad, so the worse of two is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Ok,
    Warn,
    Fail,
}

impl Severity {
    /// The word a report shows for it, as in the JSON.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Warn => "WARN",
            Severity::Fail => "FAIL",
        }
    }
}

/// One line of the report: in which area, about what, how it stands, what was found, and
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The area ("Store", "TLS"); findings of one area follow each other.
    pub group: &'static str,
    /// What was looked at ("schema version", "certificate").
    pub item: String,
    pub status: Severity,
    /// What was found, for people.
    pub value: String,
    /// What to do; present for every WARN and FAIL.
    pub hint: Option<String>,
}

/// The diagnosis: every finding in the order the areas were examined. It serialises as the
/// list of findings alone, one flat object each.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Report {
    /// The data directory examined, made absolute.
    #[serde(skip)]
    pub data: PathBuf,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether anything FAILs: the diagnosis as a whole fails then.
    pub fn failed(&self) -> bool {
        self.count(Severity::Fail) > 0
    }

    pub fn count(&self, status: Severity) -> usize {
        self.findings.iter().filter(|f| f.status == status).count()
    }
}

/// What the backup area knows about the backups under the config's backup directory.
#[derive(Debug, Default)]
pub struct Backups {
    /// The newest finished backup, pre-migration ones left out.
    pub newest: Option<store::backup::Entry>,
    /// When a daily backup is configured and the one that should have run last did not:
    /// a sentence saying so.
    pub missed: Option<String>,
}

impl Backups {
    /// Reads the backup directory the config names (never creating it).
    pub fn read(data: &Path, config: &Config, now: &Zoned) -> Backups {
        let root = config.schedule.backup.root(data);
        Backups {
            newest: crate::backup::newest(&root),
            missed: config
                .schedule
                .backup
                .at
                .and_then(|at| crate::schedule::missed_backup(&root, now, at))
                .map(|missed| missed.to_string()),
        }
    }
}

/// An examination of one data directory: the directory made absolute (without requiring it
/// to exist) and the clock to judge ages by.
pub struct Doctor {
    data: PathBuf,
    clock: Clock,
    /// Why the configured clock could not be used; the system clock stands in.
    clock_error: Option<String>,
}

impl Doctor {
    pub fn new(data: &Path) -> Doctor {
        let (clock, clock_error) = match Clock::system() {
            Ok(clock) => (clock, None),
            Err(e) => (Clock::with_zone(jiff::tz::TimeZone::system()), Some(e)),
        };
        let data = fs::canonicalize(data)
            .or_else(|_| std::path::absolute(data))
            .unwrap_or_else(|_| data.to_path_buf());
        Doctor {
            data,
            clock,
            clock_error,
        }
    }

    /// The data directory as the report names it.
    pub fn data(&self) -> &Path {
        &self.data
    }

    pub fn now(&self) -> Zoned {
        self.clock.now()
    }

    /// The listeners alone (whether the server runs and holds each configured address),
    /// for a face that shows them without the whole diagnosis.
    pub fn listeners(&self, config: &Config) -> Vec<Finding> {
        network::listeners(&self.data, config).findings
    }

    /// Examines everything, area by area.
    pub fn run(&self, config: &Config) -> Report {
        self.run_with(config, Backups::read(&self.data, config, &self.clock.now()))
    }

    /// As [`Doctor::run`], with what is known of the backups given (tests).
    pub fn run_with(&self, config: &Config, backups: Backups) -> Report {
        let data = &self.data;
        let clock = &self.clock;
        let groups = [
            system::system(config),
            system::data_directory(data, config),
            storage::store(data, config.wal.cap_bytes),
            network::listeners(data, config),
            network::tls(data, config, &clock.now()),
            schedule::clock(clock, self.clock_error.clone()),
            schedule::maintenance(data, clock),
            schedule::checks(data, config, clock),
            schedule::backups(data, config, clock, backups),
            storage::archives(data),
            network::sending(data, config),
        ];
        Report {
            data: data.clone(),
            findings: groups.into_iter().flat_map(|g| g.findings).collect(),
        }
    }
}

/// A judgment: the severity and, unless all is well, what to do about it.
type Verdict = (Severity, Option<String>);

fn fine() -> Verdict {
    (Severity::Ok, None)
}

fn warn(hint: impl Into<String>) -> Verdict {
    (Severity::Warn, Some(hint.into()))
}

fn fail(hint: impl Into<String>) -> Verdict {
    (Severity::Fail, Some(hint.into()))
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

/// The findings of one area, in the order they were made.
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

fn not_yours_hint() -> String {
    format!(
        "doctor runs as uid {}: run it as the user the server runs as (or root), or fix the \
         permissions",
        rustix::process::geteuid().as_raw()
    )
}

/// What a store that cannot be read deserves: a failure when doctor runs as the data
/// directory's owner or as root (the server could not read it either), else a warning that
/// doctor may simply be the wrong user.
fn unreadable(data: &Path, what: &str) -> Verdict {
    use std::os::unix::fs::MetadataExt;
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

// The findings' values are sentences for people, made here so every face shows the same.

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

fn local(zoned: &Zoned) -> String {
    zoned.strftime("%Y-%m-%d %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_one_flat_object_per_finding() {
        let report = Report {
            data: "/var/lib/tegami".into(),
            findings: vec![
                Finding {
                    group: "TLS",
                    item: "certificate".into(),
                    status: Severity::Warn,
                    value: "CN=x".into(),
                    hint: Some("renew".into()),
                },
                Finding {
                    group: "System",
                    item: "version".into(),
                    status: Severity::Ok,
                    value: "tegami 0".into(),
                    hint: None,
                },
            ],
        };
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(
            json[0],
            serde_json::json!({
                "group": "TLS", "item": "certificate", "status": "WARN", "value": "CN=x", "hint": "renew"
            })
        );
        assert_eq!(json[1]["status"], "OK");
        assert!(json[1]["hint"].is_null());
        assert_eq!(json.as_array().unwrap().len(), 2, "the report is the list");
        assert_eq!(serde_json::to_value(Severity::Fail).unwrap(), "FAIL");
        assert!(!report.failed());
        assert_eq!(report.count(Severity::Warn), 1);
    }

    #[test]
    fn the_worse_verdict_wins_and_keeps_both_hints() {
        assert_eq!(
            worst(warn("a"), fail("b")),
            (Severity::Fail, Some("a; b".into()))
        );
        assert_eq!(worst(fine(), warn("a")), (Severity::Warn, Some("a".into())));
        assert_eq!(worst(fine(), fine()), (Severity::Ok, None));
    }

    #[test]
    fn a_missing_data_directory_is_described_without_creating_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("absent");
        let config = Config::load(None).unwrap();
        let report = Doctor::new(&data).run_with(&config, Backups::default());
        assert_eq!(report.data, data);
        let first = |group: &str| {
            report
                .findings
                .iter()
                .find(|f| f.group == group)
                .unwrap()
                .clone()
        };
        assert_eq!(first("Data directory").status, Severity::Warn);
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.group == "Data directory" && f.item.starts_with("space (data"))
        );
        assert_eq!(first("Store").status, Severity::Warn);
        assert!(first("Listeners").value.contains("not running"));
        assert_eq!(
            report
                .findings
                .iter()
                .find(|f| f.item == "last backup")
                .unwrap()
                .value,
            "none"
        );
        assert!(!data.exists(), "doctor must not create the data directory");
    }
}
