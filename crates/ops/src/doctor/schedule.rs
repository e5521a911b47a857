//! Time and what runs on a schedule: the clock, maintenance mode, the daily check and
//! optimisation, and the backups.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use gate::maint::{check_skip_reason, hhmm};
use gate::{Clock, Maintenance};
use jiff::{Timestamp, Zoned};

use super::{
    Backups, Group, Verdict, fail, fine, human_age, human_bytes, local, not_yours_hint, plural,
    warn, worst,
};
use crate::config::Config;

pub(super) fn clock(clock: &Clock, error: Option<String>) -> Group {
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

pub(super) fn maintenance(data: &Path, clock: &Clock) -> Group {
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

pub(super) fn checks(data: &Path, config: &Config, clock: &Clock) -> Group {
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
        .is_some_and(|r| crate::check::ResultLog::Check.good(r.trim_start()))
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

/// The backup schedule, where backups go, the newest one and the last run. `backups` is
/// what the backup area found under the backup directory.
pub(super) fn backups(data: &Path, config: &Config, clock: &Clock, backups: Backups) -> Group {
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
    // Only a finished backup has a manifest to describe; the backup area hands in no other.
    let newest = backups
        .newest
        .as_ref()
        .and_then(|entry| match &entry.state {
            store::backup::EntryState::Complete { manifest, verified } => {
                Some((entry, manifest, verified.clone()))
            }
            _ => None,
        });
    match newest {
        Some((entry, manifest, verified)) => {
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
                Some(_) => {
                    if let Some(missed) = &backups.missed {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Severity;

    #[test]
    fn last_runs_are_judged_by_age_and_result() {
        assert_eq!(last_run_verdict("check", None, None, false).0, Severity::Ok);
        assert_eq!(
            last_run_verdict("check", None, Some(180), false).0,
            Severity::Warn
        );
        assert_eq!(
            last_run_verdict("check", Some(3600), Some(180), false).0,
            Severity::Ok
        );
        assert_eq!(
            last_run_verdict("check", Some(3 * 86_400), Some(180), false).0,
            Severity::Warn
        );
        assert_eq!(
            last_run_verdict("check", Some(60), None, true).0,
            Severity::Fail
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
    fn the_backups_handed_in_are_judged() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None).unwrap();
        let clock = Clock::with_zone(jiff::tz::TimeZone::UTC);
        let last = |g: Group| {
            g.findings
                .into_iter()
                .find(|f| f.item == "last backup")
                .unwrap()
        };
        config.schedule.backup.at = None;
        let none = last(backups(dir.path(), &config, &clock, Backups::default()));
        assert_eq!((none.value.as_str(), none.status), ("none", Severity::Warn));
        assert!(none.hint.unwrap().starts_with("no backup at all"));

        // A missed scheduled backup only counts when a schedule is set, and only with a
        // backup to compare with.
        config.schedule.backup.at = Some(23 * 60);
        let missed = Backups {
            newest: None,
            missed: Some("the scheduled backup due at ... did not happen".into()),
        };
        let none = last(backups(dir.path(), &config, &clock, missed));
        assert!(
            none.hint
                .unwrap()
                .starts_with("no backup yet: the server takes the first at 23:00")
        );
    }
}
