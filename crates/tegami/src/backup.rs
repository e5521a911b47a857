//! `tegami backup` and `tegami restore` as operations: progress on a terminal, the history in
//! `log/backup.log` and the latest result in `log/backup_result.log`, retention, and the
//! data directory lock that keeps a restore from swapping a store under a running server.
//!
//! Backups run online beside a live server (no maintenance mode, nobody locked out) and do
//! not open the store for writing: the snapshot is a read transaction (see
//! `store::backup`). A restore needs the server stopped, and says so: it replaces the whole
//! data directory, which a running server holds open.

use std::fs::File;
use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gate::{Clock, oplog};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use store::backup::{self, CreateOptions, Entry, EntryState, Manifest, RestoreOptions, RootLock};
use store::human_bytes;

use crate::check::Trigger;
use ops::config::{BackupConfig, Config};

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Take a backup now, online: the server keeps running and accepting mail.
    Create {
        /// The backup directory (default: `[backup] dir` in the config, else DATA/backups).
        #[arg(long, visible_alias = "dir", value_name = "DIR")]
        to: Option<PathBuf>,
        /// Copy every blob even where a hard link to the live store would do, so the backup
        /// shares no file with live data. Blobs already in the previous backup in the same
        /// directory are still linked from there, unless that file is the live store's own.
        #[arg(long)]
        copy_blobs: bool,
        /// Verify the new backup completely before saying it is done.
        #[arg(long)]
        verify: bool,
    },
    /// List the backups: id, time, counts, size, verified or not.
    List {
        /// The backup directory (default: `[backup] dir`, else DATA/backups).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Check a backup: every file's checksum, and the database's integrity.
    Verify {
        /// A backup id, or the path of a backup directory.
        id: String,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Remove old backups, keeping the newest of each of the last N days and N weeks.
    Prune {
        /// Days to keep one backup of (default: `[backup] keep_daily`, 7).
        #[arg(long, value_name = "N")]
        keep_daily: Option<usize>,
        /// Weeks to keep one backup of (default: `[backup] keep_weekly`, 4).
        #[arg(long, value_name = "N")]
        keep_weekly: Option<usize>,
        /// Say what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A backup id (in the backup directory) or the path of a backup directory.
    backup: String,
    /// Replace the store already in the data directory (it is kept beside it, as
    /// DATA.before-restore-TIME, until you remove it).
    #[arg(long)]
    force: bool,
    /// Run as root: the owner to give the restored files, UID[:GID] (default: the owner
    /// recorded in the backup).
    #[arg(long, value_name = "UID[:GID]")]
    owner: Option<String>,
    /// Where to look up a backup id (default: `[backup] dir`, else DATA/backups).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Also put the config file the backup holds back where it was read from (the one in
    /// use is kept beside it as PATH.before-restore-TIME). Without this flag it is only
    /// restored as DATA/config/NAME, for you to compare and copy.
    #[arg(long)]
    restore_config: bool,
}

pub fn run(data: &Path, config: &Config, command: BackupCommand) -> anyhow::Result<ExitCode> {
    let settings = &config.schedule.backup;
    let clock = Clock::system().map_err(anyhow::Error::msg)?;
    match command {
        BackupCommand::Create {
            to,
            copy_blobs,
            verify,
        } => {
            let root = to.unwrap_or_else(|| settings.root(data));
            let outcome = create(
                data,
                &clock,
                &root,
                copy_blobs,
                verify,
                Trigger::Manual,
                settings.config_file.as_deref(),
            )?;
            // Damage is said first, on stderr too, and fails the command: a backup that
            // leaves mail out must not look like a good one to a script or a cron job.
            if let Some(headline) = &outcome.damage {
                eprintln!("tegami: {headline}");
            }
            print!("{}", outcome.summary);
            Ok(if outcome.damage.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        BackupCommand::List { dir } => {
            let root = dir.unwrap_or_else(|| settings.root(data));
            print!("{}", list_text(&root, clock.time_zone())?);
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Verify { id, dir } => {
            let root = dir.unwrap_or_else(|| settings.root(data));
            let path = backup::resolve(&root, &id)?;
            let report = verify(&path)?;
            let text = verify_text(&report);
            log_line(
                &data.join("log"),
                &clock,
                &format!("verify {}: {}", report.id(), verdict_line(&report)),
            );
            print!("{text}");
            if report.is_ok() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "tegami: backup {} is damaged: {}; restore refuses it: use another backup \
                     (`tegami backup list`)",
                    report.id(),
                    first_problems(&report)
                );
                Ok(ExitCode::FAILURE)
            }
        }
        BackupCommand::Prune {
            keep_daily,
            keep_weekly,
            dry_run,
            dir,
        } => {
            let root = dir.unwrap_or_else(|| settings.root(data));
            let retention = Retention {
                daily: keep_daily.unwrap_or(settings.keep_daily),
                weekly: keep_weekly.unwrap_or(settings.keep_weekly),
            };
            let text = prune(data, &clock, &root, retention, dry_run)?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What a backup run produced, for the CLI and the schedule.
pub struct Outcome {
    pub id: String,
    /// What the CLI prints and `log/backup_result.log` holds.
    pub summary: String,
    /// What is wrong, in one line, when the backup left damaged blobs out or does not
    /// verify; also the first line of `summary`.
    pub damage: Option<String>,
}

/// Takes a backup with progress and logs; used by `backup create` and the schedule.
pub fn create(
    data: &Path,
    clock: &Clock,
    root: &Path,
    copy_blobs: bool,
    verify_after: bool,
    trigger: Trigger,
    config_file: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let log_dir = data.join("log");
    let started_at = clock.now();
    let started = Instant::now();
    let label = trigger_label(trigger);
    log_line(
        &log_dir,
        clock,
        &format!("backup started ({label}) into {}", root.display()),
    );
    let now = started_at.timestamp().as_second();
    let mut options = CreateOptions::new(
        root.to_path_buf(),
        backup::compact_utc(now),
        match trigger {
            Trigger::Manual => backup::Trigger::Manual,
            Trigger::Scheduled => backup::Trigger::Scheduled,
        },
        now,
    );
    options.copy_blobs = copy_blobs;
    options.config_file = config_file.map(Path::to_path_buf);
    let bar = (trigger == Trigger::Manual && std::io::stderr().is_terminal())
        .then(|| progress_bar("backing up"));
    options.progress = bar.clone().map(bar_progress);
    let result = backup::create(data, &options);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let seconds = started.elapsed().as_secs_f64();
            let line = format!("backup failed after {seconds:.1} s: {e}");
            log_line(&log_dir, clock, &line);
            replace_result(
                &log_dir,
                &format!(
                    "result: failed: {e}\n{}\n",
                    times(&started_at, &clock.now(), seconds, trigger)
                ),
            );
            return Err(anyhow::Error::new(e).context(format!(
                "the backup into {} could not be taken (nothing was left behind)",
                root.display()
            )));
        }
    };
    let m = &report.manifest;
    let mut summary = format!(
        "backup {} taken in {:.1} s: {}\n",
        m.id,
        started.elapsed().as_secs_f64(),
        counts(m)
    );
    summary.push_str(&format!("  path: {}\n", report.path.display()));
    summary.push_str(&format!(
        "  blobs: {} hard-linked ({} from the previous backup{}), {} copied ({}); database {}\n",
        m.blobs_linked,
        report.linked_from_previous,
        report
            .previous
            .as_ref()
            .map_or(String::new(), |p| format!(" {p}")),
        m.blobs_copied,
        human_bytes(m.bytes_copied),
        human_bytes(m.database_bytes)
    ));
    if let Some(checked) = &m.checked {
        summary.push_str(&format!(
            "  checked: {} blobs read and hashed, {} trusted from the previous backup's check\n",
            checked.hashed, checked.trusted
        ));
    }
    summary.push_str(&format!("  secrets: {}\n", secrets_line(m)));
    for skipped in &report.secrets_skipped {
        summary.push_str(&format!("  not backed up: {skipped}\n"));
    }
    if m.snapshots > 1 {
        summary.push_str(&format!(
            "  {} snapshots: mail was deleted while the backup ran\n",
            m.snapshots
        ));
    }
    for (id, why) in &report.damaged {
        summary.push_str(&format!(
            "  damaged in the live store, left out: blob {id}: {why} (run `tegami check`)\n"
        ));
    }
    for leftover in &report.leftovers_removed {
        summary.push_str(&format!("  removed an interrupted backup: {leftover}\n"));
    }
    let mut verified = None;
    let mut verify_problems = String::new();
    if verify_after {
        let verification = verify(&report.path)?;
        summary.push_str(&format!("  verified: {}\n", verdict_line(&verification)));
        for problem in verification.problems.iter().take(20) {
            summary.push_str(&format!("  problem: {problem}\n"));
        }
        verified = Some(verification.is_ok());
        if !verification.is_ok() {
            verify_problems = first_problems(&verification);
        }
    }
    let damage = match (verified, report.damaged.len()) {
        (Some(false), _) => Some(format!(
            "DAMAGED: backup {} does not verify: {verify_problems}; do not rely on it",
            m.id
        )),
        (_, 0) => None,
        (_, n) => Some(format!(
            "DAMAGED: {n} blobs of the live store are damaged or missing and were left out of \
             backup {} (listed below and in its damaged.txt); their messages cannot be \
             restored from it: run `tegami check`",
            m.id
        )),
    };
    if let Some(headline) = &damage {
        summary.insert_str(0, &format!("{headline}\n"));
    }
    let seconds = started.elapsed().as_secs_f64();
    let result = match verified {
        Some(false) => format!("failed: backup {} does not verify", m.id),
        _ if !report.damaged.is_empty() => format!(
            "failed: backup {} left out {} damaged blobs of the live store",
            m.id,
            report.damaged.len()
        ),
        _ => format!("ok: backup {}", m.id),
    };
    log_line(
        &log_dir,
        clock,
        &format!(
            "backup {} finished ({label}) in {seconds:.1} s: {}; {} linked, {} copied ({}){}",
            m.id,
            counts(m),
            m.blobs_linked,
            m.blobs_copied,
            human_bytes(m.bytes_copied),
            match verified {
                Some(true) => ", verified",
                Some(false) => ", VERIFY FAILED",
                None => "",
            }
        ),
    );
    replace_result(
        &log_dir,
        &format!(
            "result: {result}\n{}\n{summary}",
            times(&started_at, &clock.now(), seconds, trigger)
        ),
    );
    Ok(Outcome {
        id: m.id.clone(),
        summary,
        damage,
    })
}

/// What a backup holds besides the store, in one line.
fn secrets_line(m: &Manifest) -> String {
    let Some(secrets) = &m.secrets else {
        return "none (taken before backups held secrets)".into();
    };
    let files: Vec<&str> = secrets
        .iter()
        .filter(|s| s.file.is_some() && s.origin.is_none())
        .map(|s| s.path.as_str())
        .collect();
    let mut line = if files.is_empty() {
        "no DKIM key, newsletter.key or ACME state in the data directory".to_string()
    } else {
        format!("{} files ({})", files.len(), abbreviated(&files, 4))
    };
    match secrets.iter().find(|s| s.origin.is_some()) {
        Some(config) => line.push_str(&format!(
            "; config file {}",
            config.origin.as_deref().unwrap_or_default()
        )),
        None => line.push_str("; no config file (none was given with --config)"),
    }
    line
}

/// The first `n` items, and how many more.
fn abbreviated(items: &[&str], n: usize) -> String {
    let shown = items[..items.len().min(n)].join(", ");
    match items.len().saturating_sub(n) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

fn counts(m: &Manifest) -> String {
    format!(
        "{} accounts, {} messages, {} blobs ({}), schema version {}",
        m.accounts,
        m.messages,
        m.blobs,
        human_bytes(m.blob_bytes),
        m.schema_version
    )
}

fn verify(path: &Path) -> anyhow::Result<backup::VerifyReport> {
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| progress_bar("verifying"));
    let progress = bar.clone().map(bar_progress);
    let report = backup::verify(path, progress.as_ref());
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(report?)
}

fn verdict_line(report: &backup::VerifyReport) -> String {
    if report.is_ok() {
        format!(
            "ok: {} files, {} checked in {:.1} s",
            report.files,
            human_bytes(report.bytes),
            report.seconds
        )
    } else {
        format!(
            "DAMAGED: {} problems: {}",
            report.problems.len(),
            first_problems(report)
        )
    }
}

/// The first problems, naming their files, in one line.
fn first_problems(report: &backup::VerifyReport) -> String {
    let shown: Vec<String> = report
        .problems
        .iter()
        .take(3)
        .map(ToString::to_string)
        .collect();
    let more = report.problems.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} (and {more} more)", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

fn verify_text(report: &backup::VerifyReport) -> String {
    let mut text = format!("backup {}: {}\n", report.id(), verdict_line(report));
    for problem in &report.problems {
        text.push_str(&format!("  problem: {problem}\n"));
    }
    for note in &report.notes {
        text.push_str(&format!("  note: {note}\n"));
    }
    text
}

// ---------------------------------------------------------------------------------------
// list

fn list_text(root: &Path, tz: &TimeZone) -> anyhow::Result<String> {
    let entries = backup::list(root)
        .with_context(|| format!("cannot list the backups in {}", root.display()))?;
    if entries.is_empty() {
        return Ok(format!(
            "no backups in {} (`tegami backup create` takes one)\n",
            root.display()
        ));
    }
    let mut rows = vec![[
        "ID".to_string(),
        "TAKEN".into(),
        "KIND".into(),
        "ACCOUNTS".into(),
        "MESSAGES".into(),
        "SIZE".into(),
        "ADDED".into(),
        "VERIFIED".into(),
    ]];
    for entry in &entries {
        rows.push(match &entry.state {
            EntryState::Complete { manifest, verified } => [
                entry.id.clone(),
                local(manifest.created_unix, tz),
                manifest.trigger.label().into(),
                manifest.accounts.to_string(),
                manifest.messages.to_string(),
                human_bytes(manifest.bytes),
                // Databases are always copies, the archives' too.
                human_bytes(
                    manifest.bytes_copied
                        + manifest.database_bytes
                        + manifest
                            .archives
                            .iter()
                            .flatten()
                            .map(|a| a.database_bytes)
                            .sum::<u64>(),
                ),
                match verified {
                    None => "no".into(),
                    Some(v) if v.ok => format!("ok {}", local(v.at_unix, tz)),
                    Some(v) => format!("FAILED {}", local(v.at_unix, tz)),
                },
            ],
            EntryState::Incomplete => [
                entry.id.clone(),
                "-".into(),
                "interrupted".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "removed by the next backup or prune".into(),
            ],
            EntryState::Unreadable(why) => [
                entry.id.clone(),
                "-".into(),
                "unreadable".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                why.clone(),
            ],
        });
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = format!("backups in {}\n", root.display());
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text.push_str(
        "SIZE is what the backup holds; ADDED what it took on disk (blobs shared with other \
         backups or the store through hard links cost nothing more)\n",
    );
    Ok(text)
}

fn local(unix: i64, tz: &TimeZone) -> String {
    Timestamp::from_second(unix)
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| unix.to_string())
}

// ---------------------------------------------------------------------------------------
// prune

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub daily: usize,
    pub weekly: usize,
}

/// Why a backup is kept; absent from the plan means it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    Newest,
    NewestVerified,
    Daily(String),
    Weekly(String),
    PreMigration,
    Unreadable,
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::Newest => f.write_str("the newest backup"),
            Keep::NewestVerified => f.write_str("the newest verified backup"),
            Keep::Daily(day) => write!(f, "daily, {day}"),
            Keep::Weekly(week) => write!(f, "weekly, {week}"),
            Keep::PreMigration => f.write_str("taken before a schema migration: remove it by hand"),
            Keep::Unreadable => f.write_str("its manifest cannot be read: look at it by hand"),
        }
    }
}

/// Decides which backups stay: the newest one of each of the last `daily` days that have
/// a backup, the newest of each of the last `weekly` ISO weeks, the newest backup and the
/// newest verified one whatever the settings, and everything retention does not own
/// (pre-migration backups, unreadable directories). Days and weeks are local time.
pub fn plan(entries: &[Entry], retention: Retention, tz: &TimeZone) -> Vec<Option<Keep>> {
    let mut keep: Vec<Option<Keep>> = entries
        .iter()
        .map(|e| match &e.state {
            EntryState::Complete { manifest, .. }
                if manifest.trigger == backup::Trigger::PreMigration =>
            {
                Some(Keep::PreMigration)
            }
            EntryState::Unreadable(_) => Some(Keep::Unreadable),
            _ => None,
        })
        .collect();
    let mut newest_first: Vec<usize> = (0..entries.len())
        .filter(|&i| keep[i].is_none() && entries[i].manifest().is_some())
        .collect();
    newest_first.sort_by_key(|&i| std::cmp::Reverse((entries[i].created(), entries[i].id.clone())));
    // As borg does it: each rule walks from the newest backup back, takes the newest one of
    // every day (or week) it meets, and counts only those no earlier rule kept already, so
    // weekly backups reach back beyond the daily ones.
    let local = |i: usize| {
        Timestamp::from_second(entries[i].created())
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(tz.clone())
            .date()
    };
    let mut rule = |limit: usize, period: &dyn Fn(usize) -> (String, Keep)| {
        let mut last = None;
        let mut kept = 0;
        for &i in &newest_first {
            if kept == limit {
                break;
            }
            let (name, why) = period(i);
            if last.as_ref() != Some(&name) {
                last = Some(name);
                if keep[i].is_none() {
                    keep[i] = Some(why);
                    kept += 1;
                }
            }
        }
    };
    rule(retention.daily, &|i| {
        let day = local(i).to_string();
        (day.clone(), Keep::Daily(day))
    });
    rule(retention.weekly, &|i| {
        let week = local(i).iso_week_date();
        let name = format!("{}-W{:02}", week.year(), week.week());
        (name.clone(), Keep::Weekly(name))
    });
    if let Some(&newest) = newest_first.first() {
        keep[newest].get_or_insert(Keep::Newest);
    }
    if let Some(&good) = newest_first.iter().find(
        |&&i| matches!(&entries[i].state, EntryState::Complete { verified: Some(v), .. } if v.ok),
    ) {
        keep[good].get_or_insert(Keep::NewestVerified);
    }
    keep
}

fn prune(
    data: &Path,
    clock: &Clock,
    root: &Path,
    retention: Retention,
    dry_run: bool,
) -> anyhow::Result<String> {
    if !root.is_dir() {
        return Ok(format!("no backups in {}\n", root.display()));
    }
    let lock = RootLock::acquire(root, false)?;
    let leftovers = if dry_run {
        Vec::new()
    } else {
        lock.clean_leftovers()?
    };
    let entries: Vec<Entry> = backup::list(root)?
        .into_iter()
        .filter(|e| !matches!(e.state, EntryState::Incomplete))
        .collect();
    let decisions = plan(&entries, retention, clock.time_zone());
    let mut text = format!(
        "backups in {} (keeping {} daily, {} weekly)\n",
        root.display(),
        retention.daily,
        retention.weekly
    );
    let mut removed = Vec::new();
    for (entry, decision) in entries.iter().zip(decisions) {
        match decision {
            Some(why) => text.push_str(&format!("  kept     {}  ({why})\n", entry.id)),
            None if dry_run => text.push_str(&format!("  would remove {}\n", entry.id)),
            None => {
                lock.remove(entry)?;
                text.push_str(&format!("  removed  {}\n", entry.id));
                removed.push(entry.id.clone());
            }
        }
    }
    for leftover in &leftovers {
        text.push_str(&format!("  removed  {leftover} (an interrupted backup)\n"));
    }
    if !dry_run {
        log_line(
            &data.join("log"),
            clock,
            &format!(
                "prune: removed {} backups{} ({} daily, {} weekly kept)",
                removed.len(),
                if removed.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", removed.join(", "))
                },
                retention.daily,
                retention.weekly
            ),
        );
    }
    Ok(text)
}

/// The scheduled run: a backup, its verification if configured, then retention.
pub fn scheduled(data: &Path, clock: &Clock, settings: &BackupConfig) -> anyhow::Result<Outcome> {
    let root = settings.root(data);
    let outcome = create(
        data,
        clock,
        &root,
        false,
        settings.verify,
        Trigger::Scheduled,
        settings.config_file.as_deref(),
    )?;
    let retention = Retention {
        daily: settings.keep_daily,
        weekly: settings.keep_weekly,
    };
    if let Err(e) = prune(data, clock, &root, retention, false) {
        tracing::error!(error = %e, "pruning old backups failed after the scheduled backup");
    }
    Ok(outcome)
}

/// The newest backup that finished, in the root the config names; for the schedule and
/// doctor.
pub fn newest(root: &Path) -> Option<Entry> {
    backup::list(root)
        .ok()?
        .into_iter()
        .filter(|e| {
            e.manifest()
                .is_some_and(|m| m.trigger != backup::Trigger::PreMigration)
        })
        .max_by_key(Entry::created)
}

/// The scheduled backup that should have run last: today's at `at` once an hour has passed
/// since (time for it to finish), else yesterday's.
pub fn last_due(now: &jiff::Zoned, at: u16) -> Option<jiff::Zoned> {
    let today = now
        .date()
        .at((at / 60) as i8, (at % 60) as i8, 0, 0)
        .to_zoned(now.time_zone().clone())
        .ok()?;
    if today
        .checked_add(jiff::SignedDuration::from_hours(1))
        .ok()?
        <= *now
    {
        Some(today)
    } else {
        today.checked_sub(jiff::Span::new().days(1)).ok()
    }
}

/// Says so when the newest backup in `root` is older than the scheduled one that should
/// have run last. No backup at all is not "missed": the first one has not been due yet.
pub fn missed(root: &Path, now: &jiff::Zoned, at: u16) -> Option<String> {
    let newest = newest(root)?;
    let due = last_due(now, at)?;
    // A minute of slack: the backup is stamped when it starts, on the minute it was due.
    if newest.created() + 60 >= due.timestamp().as_second() {
        return None;
    }
    Some(format!(
        "the scheduled backup due at {} did not happen; the newest backup, {}, is from {}",
        due.strftime("%Y-%m-%d %H:%M"),
        newest.id,
        local(newest.created(), now.time_zone())
    ))
}

// ---------------------------------------------------------------------------------------
// restore

pub fn restore(data: &Path, config: &Config, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let clock = Clock::system().map_err(anyhow::Error::msg)?;
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| config.schedule.backup.root(data));
    let path = backup::resolve(&root, &args.backup)?;
    let owner = match &args.owner {
        Some(text) => Some(parse_owner(text)?),
        None => None,
    };

    // The data directory's lock, held to the end: no server may start on the directory
    // being replaced (nor on the new one: the store holds that lock too).
    let _lock = lock_data_dir(data)?;
    let has_store = std::fs::metadata(data.join("tegami.db")).is_ok_and(|m| m.len() > 0);
    if has_store && !args.force {
        bail!(
            "{} holds a store; restore replaces it (the current data is kept beside it as {}.before-restore-TIME); add --force to go ahead",
            data.display(),
            data.display()
        );
    }

    let report = verify(&path)?;
    if !report.is_ok() {
        log_line(
            &data.join("log"),
            &clock,
            &format!(
                "restore from {} refused: the backup is damaged: {}",
                path.display(),
                first_problems(&report)
            ),
        );
        bail!(
            "backup {} is damaged: {}; nothing was changed in {}; restore another backup \
             (`tegami backup list`)",
            report.id(),
            first_problems(&report),
            data.display()
        );
    }
    let manifest = report.manifest.expect("a verified backup has a manifest");
    let euid = rustix::process::geteuid().as_raw();
    let owner = match (euid, owner) {
        (0, given) => Some(given.unwrap_or((manifest.owner_uid, manifest.owner_gid))),
        (_, Some(_)) => bail!("--owner needs root: only root can give files to another user"),
        (_, None) => None,
    };
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| progress_bar("restoring"));
    let options = RestoreOptions {
        owner,
        now_unix: clock.now().timestamp().as_second(),
        progress: bar.clone().map(bar_progress),
    };
    let result = backup::restore(&path, data, &options);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let restored = result.with_context(|| {
        format!(
            "the restore of {} failed; {} was left as it was",
            path.display(),
            data.display()
        )
    })?;
    let m = &restored.manifest;
    let mut text = format!(
        "restored backup {} (taken {}) into {} in {:.1} s: {}\n",
        m.id,
        local(m.created_unix, clock.time_zone()),
        restored.data_dir.display(),
        restored.seconds,
        counts(m)
    );
    text.push_str(&format!(
        "  owner {}:{}, directories {:04o}, files {:04o}{}\n",
        restored.owner.0,
        restored.owner.1,
        restored.dir_mode | 0o700,
        restored.file_mode | 0o600,
        if owner.is_none() && (manifest.owner_uid, manifest.owner_gid) != restored.owner {
            format!(
                " (the backup was owned by {}:{}; run restore as root to restore that owner)",
                manifest.owner_uid, manifest.owner_gid
            )
        } else {
            String::new()
        }
    ));
    text.push_str(&format!(
        "  blobs: {} hard-linked, {} copied ({})\n",
        restored.blobs_linked,
        restored.blobs_copied,
        human_bytes(restored.bytes_copied)
    ));
    text.push_str(&format!(
        "  secrets: {}\n",
        restored_secrets_line(m, &restored.carried)
    ));
    if let Some((rel, origin)) = m
        .secrets
        .iter()
        .flatten()
        .find_map(|s| Some((&s.path, s.origin.as_ref()?)))
    {
        let copy = restored.data_dir.join(rel);
        if args.restore_config {
            let kept = put_config_back(&copy, Path::new(origin), &clock)?;
            text.push_str(&format!(
                "  config file: put back at {origin}{}\n",
                kept.map_or_else(String::new, |k| format!(
                    " (the one there is kept as {})",
                    k.display()
                ))
            ));
        } else {
            text.push_str(&format!(
                "  config file: the one in use when the backup was taken ({origin}) is in {}; {}\n",
                copy.display(),
                match std::fs::read(origin) {
                    Ok(now) if std::fs::read(&copy).is_ok_and(|c| c == now) =>
                        "the file there now is the same".to_string(),
                    Ok(_) => "the file there now differs: compare them, and copy it back or run \
                              restore with --restore-config"
                        .to_string(),
                    Err(_) => "there is no file there now: copy it there (or run restore with \
                               --restore-config)"
                        .to_string(),
                }
            ));
        }
    } else if args.restore_config {
        text.push_str("  config file: the backup holds none; nothing put back\n");
    }
    if !restored.carried.is_empty() {
        text.push_str(&format!(
            "  kept from the current data directory: {}\n",
            restored.carried.join(", ")
        ));
    }
    if let Some(previous) = &restored.previous {
        text.push_str(&format!(
            "  the previous data is in {}: remove it once the restored server is fine\n",
            previous.display()
        ));
    }
    if m.schema_version < store::SCHEMA_VERSION {
        text.push_str(&format!(
            "  the backup has schema version {}; the server migrates it to {} when it starts \
             (after taking a backup of it)\n",
            m.schema_version,
            store::SCHEMA_VERSION
        ));
    }
    text.push_str("  start the server again (tegami serve)\n");
    log_line(
        &restored.data_dir.join("log"),
        &clock,
        &format!(
            "restore of backup {} from {} finished in {:.1} s; previous data: {}",
            m.id,
            path.display(),
            restored.seconds,
            restored
                .previous
                .as_ref()
                .map_or("none".to_string(), |p| p.display().to_string())
        ),
    );
    if let Some((uid, gid)) = owner {
        // The line above may have created log/ as root; the service must write there.
        for path in [
            restored.data_dir.join("log"),
            restored.data_dir.join("log/backup.log"),
        ] {
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.uid() == 0 && uid != 0) {
                let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
            }
        }
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// The secrets a restore brought back, in one line; `carried` is what moved over from the
/// data directory it replaced.
fn restored_secrets_line(m: &Manifest, carried: &[String]) -> String {
    let kept: Vec<&str> = carried
        .iter()
        .map(String::as_str)
        .filter(|c| backup::SECRETS.contains(c))
        .collect();
    match &m.secrets {
        None if kept.is_empty() => "the backup holds none (taken before backups held secrets) \
                                    and there were none to keep: copy the DKIM keys (dkim/) \
                                    and newsletter.key from the old server if you have them"
            .into(),
        None => format!(
            "the backup holds none (taken before backups held secrets); kept those of the \
             data directory it replaced: {}",
            kept.join(", ")
        ),
        Some(secrets) => {
            let files: Vec<&str> = secrets
                .iter()
                .filter(|s| s.file.is_some() && s.origin.is_none())
                .map(|s| s.path.as_str())
                .collect();
            let mut line = format!(
                "{} files restored with their modes and owners ({})",
                files.len(),
                if files.is_empty() {
                    "none in the backup".to_string()
                } else {
                    abbreviated(&files, 4)
                }
            );
            if !kept.is_empty() {
                line.push_str(&format!(
                    "; kept from the data directory it replaced, which the backup has none \
                     of: {}",
                    kept.join(", ")
                ));
            }
            line
        }
    }
}

/// Puts the restored config file back where it was read from, keeping a different file
/// found there as `PATH.before-restore-TIME`. Returns that name when it kept one.
fn put_config_back(copy: &Path, origin: &Path, clock: &Clock) -> anyhow::Result<Option<PathBuf>> {
    let content = std::fs::read(copy).with_context(|| format!("cannot read {}", copy.display()))?;
    let meta = std::fs::metadata(copy)?;
    let kept = match std::fs::read(origin) {
        Ok(now) if now == content => return Ok(None),
        Ok(_) => {
            let mut name = origin.as_os_str().to_owned();
            name.push(format!(
                ".before-restore-{}",
                backup::compact_utc(clock.now().timestamp().as_second())
            ));
            let kept = PathBuf::from(name);
            std::fs::rename(origin, &kept)
                .with_context(|| format!("cannot keep {} aside", origin.display()))?;
            Some(kept)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", origin.display()));
        }
    };
    if let Some(parent) = origin.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // Written by a temporary name and renamed, with the restored copy's mode and owner, so
    // the file is never seen half written nor, for a moment, readable by anyone else.
    let mut tmp = origin.as_os_str().to_owned();
    tmp.push(".restoring");
    let tmp = PathBuf::from(tmp);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(&content)?;
        file.sync_all()?;
    }
    let _ = std::os::unix::fs::lchown(&tmp, Some(meta.uid()), Some(meta.gid()));
    std::fs::set_permissions(&tmp, meta.permissions())?;
    std::fs::rename(&tmp, origin)
        .with_context(|| format!("cannot put the config file back at {}", origin.display()))?;
    Ok(kept)
}

fn parse_owner(text: &str) -> anyhow::Result<(u32, u32)> {
    let (uid, gid) = text.split_once(':').unwrap_or((text, text));
    match (uid.parse(), gid.parse()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => bail!("--owner {text:?} is not UID[:GID] (numbers, as in 4242:4242)"),
    }
}

/// The lock `serve` holds: if a server has it, it is running, and the restore stops here.
fn lock_data_dir(data: &Path) -> anyhow::Result<Option<File>> {
    if !data.is_dir() {
        return Ok(None);
    }
    let path = data.join("tegami.lock");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "the server is running on {}{} (it holds {}); restore replaces the whole data \
                 directory and needs the server stopped: stop it (for example `systemctl stop \
                 tegami` or SIGTERM), run the restore, then start it again; nothing was changed",
                data.display(),
                match pid.trim() {
                    "" => String::new(),
                    pid => format!(" as pid {pid}"),
                },
                path.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Logs and progress

fn trigger_label(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Manual => "manual",
        Trigger::Scheduled => "scheduled",
    }
}

fn times(started: &jiff::Zoned, finished: &jiff::Zoned, seconds: f64, trigger: Trigger) -> String {
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S %z";
    format!(
        "{} run, started {}, finished {} ({seconds:.1} s)",
        trigger_label(trigger),
        started.strftime(FORMAT),
        finished.strftime(FORMAT)
    )
}

/// A log line that cannot be written must not fail the backup itself (a full disk is one
/// reason to look), so the failure is told, not returned.
fn log_line(log_dir: &Path, clock: &Clock, line: &str) {
    if let Err(e) = oplog::append(log_dir, "backup.log", &clock.now(), line) {
        tracing::warn!(error = %e, "cannot append to log/backup.log");
        eprintln!(
            "tegami: cannot write {}: {e}",
            log_dir.join("backup.log").display()
        );
    }
}

fn replace_result(log_dir: &Path, content: &str) {
    if let Err(e) = oplog::replace(log_dir, "backup_result.log", content) {
        tracing::warn!(error = %e, "cannot replace log/backup_result.log");
        eprintln!(
            "tegami: cannot write {}: {e}",
            log_dir.join("backup_result.log").display()
        );
    }
}

fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{what} {{wide_bar}} {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left)"
    )) {
        bar.set_style(style);
    }
    bar
}

fn bar_progress(bar: indicatif::ProgressBar) -> backup::Progress {
    Arc::new(move |done, total| {
        bar.set_length(total);
        // Workers finish out of order; never let the bar step back.
        bar.set_position(done.max(bar.position()));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, created: i64, trigger: backup::Trigger, verified: Option<bool>) -> Entry {
        let mut manifest = Manifest {
            format: backup::FORMAT,
            id: id.into(),
            trigger,
            tegami_version: "0".into(),
            schema_version: 2,
            created_unix: created,
            source: String::new(),
            host: String::new(),
            owner_uid: 0,
            owner_gid: 0,
            dir_mode: 0o700,
            file_mode: 0o600,
            accounts: 0,
            messages: 0,
            blobs: 0,
            blob_bytes: 0,
            database_bytes: 0,
            files: 0,
            bytes: 0,
            blobs_linked: 0,
            blobs_copied: 0,
            bytes_copied: 0,
            damaged: 0,
            snapshots: 1,
            archives: Some(Vec::new()),
            checked: None,
            secrets: None,
            seconds: 0.0,
            sums_sha256: String::new(),
        };
        manifest.id = id.into();
        Entry {
            id: id.into(),
            path: PathBuf::from(id),
            state: EntryState::Complete {
                manifest: Box::new(manifest),
                verified: verified.map(|ok| backup::Verified {
                    at_unix: created,
                    ok,
                    problem: None,
                }),
            },
        }
    }

    fn kept(entries: &[Entry], daily: usize, weekly: usize) -> Vec<String> {
        plan(entries, Retention { daily, weekly }, &TimeZone::UTC)
            .into_iter()
            .zip(entries)
            .filter(|(k, _)| k.is_some())
            .map(|(_, e)| e.id.clone())
            .collect()
    }

    const DAY: i64 = 86_400;
    // Monday 2026-11-02 00:00 UTC.
    const MONDAY: i64 = 1_793_577_600;

    #[test]
    fn retention_keeps_the_newest_of_each_day_then_of_each_week() {
        // Two backups a day (00:00 and 23:00) for 30 days.
        let entries: Vec<Entry> = (0..30)
            .flat_map(|d| {
                [0, 23 * 3600].map(|at| {
                    let t = MONDAY + d * DAY + at;
                    entry(&backup::compact_utc(t), t, backup::Trigger::Scheduled, None)
                })
            })
            .collect();
        let kept = kept(&entries, 3, 2);
        assert_eq!(
            kept,
            [
                // The newest of the two weeks before the three days (Sundays at 23:00)...
                "20261115T230000Z",
                "20261122T230000Z",
                // ... and the newest of each of the last three days.
                "20261129T230000Z",
                "20261130T230000Z",
                "20261201T230000Z",
            ]
        );
    }

    #[test]
    fn retention_never_removes_the_newest_nor_what_it_does_not_own() {
        let entries = vec![
            entry("old-good", MONDAY, backup::Trigger::Manual, Some(true)),
            entry("pre", MONDAY + DAY, backup::Trigger::PreMigration, None),
            entry(
                "bad",
                MONDAY + 2 * DAY,
                backup::Trigger::Manual,
                Some(false),
            ),
            entry(
                "newest",
                MONDAY + 3 * DAY,
                backup::Trigger::Manual,
                Some(false),
            ),
        ];
        assert_eq!(kept(&entries, 0, 0), ["old-good", "pre", "newest"]);
        let decisions = plan(
            &entries,
            Retention {
                daily: 0,
                weekly: 0,
            },
            &TimeZone::UTC,
        );
        assert_eq!(decisions[0], Some(Keep::NewestVerified));
        assert_eq!(decisions[1], Some(Keep::PreMigration));
        assert_eq!(decisions[3], Some(Keep::Newest));
    }

    #[test]
    fn an_owner_is_numbers() {
        assert_eq!(parse_owner("4242").unwrap(), (4242, 4242));
        assert_eq!(parse_owner("4242:100").unwrap(), (4242, 100));
        assert!(parse_owner("tegami").is_err());
    }
}
