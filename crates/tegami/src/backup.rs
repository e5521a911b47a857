//! `tegami backup` and `tegami restore`, the terminal's face of `ops::backup`: the commands'
//! arguments, progress bars, the reports as text, and exit codes. What a backup, a prune
//! or a restore does, and what it logs, is `ops::backup`'s.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use jiff::tz::TimeZone;
use ops::backup::{
    self, Compared, ConfigFile, CreateRequest, PruneRequest, RestoreRequest, Trigger, VerifyRequest,
};
use ops::config::Config;
use store::backup::{EntryState, Manifest};
use store::human_bytes;

use crate::progress::terminal;

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
    let clock = ops::clock()?;
    match command {
        BackupCommand::Create {
            to,
            copy_blobs,
            verify,
        } => {
            let request = CreateRequest {
                dir: to,
                copy_blobs,
                verify,
                trigger: Trigger::Manual,
            };
            let created = backup::create(data, settings, &clock, &request, &terminal())?;
            // Damage is said first, on stderr too, and fails the command: a backup that
            // leaves mail out must not look like a good one to a script or a cron job.
            let damage = created.damage();
            if let Some(headline) = &damage {
                eprintln!("tegami: {headline}");
            }
            print!("{}", created.summary());
            Ok(if damage.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        BackupCommand::List { dir } => {
            let listing = backup::list(data, settings, dir.as_deref())?;
            print!("{}", list_text(&listing, clock.time_zone()));
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Verify { id, dir } => {
            let request = VerifyRequest { backup: id, dir };
            let report = backup::verify(data, settings, &clock, &request, &terminal())?;
            print!("{}", verify_text(&report));
            if report.is_ok() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "tegami: backup {} is damaged: {}; restore refuses it: use another backup \
                     (`tegami backup list`)",
                    report.id(),
                    backup::first_problems(&report)
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
            let request = PruneRequest {
                keep_daily,
                keep_weekly,
                dry_run,
                dir,
            };
            let pruned = backup::prune(data, settings, &clock, &request)?;
            print!("{}", prune_text(&pruned));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify_text(report: &store::backup::VerifyReport) -> String {
    let mut text = format!("backup {}: {}\n", report.id(), backup::verdict(report));
    for problem in &report.problems {
        text.push_str(&format!("  problem: {problem}\n"));
    }
    for note in &report.notes {
        text.push_str(&format!("  note: {note}\n"));
    }
    text
}

fn list_text(listing: &backup::Listing, tz: &TimeZone) -> String {
    let root = &listing.root;
    if listing.entries.is_empty() {
        return format!(
            "no backups in {} (`tegami backup create` takes one)\n",
            root.display()
        );
    }
    let local = |unix| backup::local_time(unix, tz);
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
    for entry in &listing.entries {
        rows.push(match &entry.state {
            EntryState::Complete { manifest, verified } => [
                entry.id.clone(),
                local(manifest.created_unix),
                manifest.trigger.label().into(),
                manifest.accounts.to_string(),
                manifest.messages.to_string(),
                human_bytes(manifest.bytes),
                human_bytes(backup::added_bytes(manifest)),
                match verified {
                    None => "no".into(),
                    Some(v) if v.ok => format!("ok {}", local(v.at_unix)),
                    Some(v) => format!("FAILED {}", local(v.at_unix)),
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
    text
}

fn prune_text(pruned: &backup::Pruned) -> String {
    if !pruned.found {
        return format!("no backups in {}\n", pruned.root.display());
    }
    let mut text = format!(
        "backups in {} (keeping {} daily, {} weekly)\n",
        pruned.root.display(),
        pruned.retention.daily,
        pruned.retention.weekly
    );
    for decision in &pruned.decisions {
        match &decision.keep {
            Some(why) => text.push_str(&format!("  kept     {}  ({why})\n", decision.id)),
            None if pruned.dry_run => text.push_str(&format!("  would remove {}\n", decision.id)),
            None => text.push_str(&format!("  removed  {}\n", decision.id)),
        }
    }
    for leftover in &pruned.leftovers {
        text.push_str(&format!("  removed  {leftover} (an interrupted backup)\n"));
    }
    text
}

// ---------------------------------------------------------------------------------------
// restore

pub fn restore(data: &Path, config: &Config, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let clock = ops::clock()?;
    let request = RestoreRequest {
        owner: args.owner.as_deref().map(str::parse).transpose()?,
        backup: args.backup,
        force: args.force,
        dir: args.dir,
        restore_config: args.restore_config,
    };
    let restored = backup::restore(data, &config.schedule.backup, &clock, &request, &terminal())?;
    print!("{}", restore_text(&restored, clock.time_zone()));
    Ok(ExitCode::SUCCESS)
}

fn restore_text(restored: &backup::Restored, tz: &TimeZone) -> String {
    let report = &restored.report;
    let m = &report.manifest;
    let mut text = format!(
        "restored backup {} (taken {}) into {} in {:.1} s: {}\n",
        m.id,
        backup::local_time(m.created_unix, tz),
        report.data_dir.display(),
        report.seconds,
        backup::counts(m)
    );
    text.push_str(&format!(
        "  owner {}:{}, directories {:04o}, files {:04o}{}\n",
        report.owner.0,
        report.owner.1,
        report.dir_mode | 0o700,
        report.file_mode | 0o600,
        match restored.owner_not_restored {
            Some((uid, gid)) => format!(
                " (the backup was owned by {uid}:{gid}; run restore as root to restore that owner)"
            ),
            None => String::new(),
        }
    ));
    text.push_str(&format!(
        "  blobs: {} hard-linked, {} copied ({})\n",
        report.blobs_linked,
        report.blobs_copied,
        human_bytes(report.bytes_copied)
    ));
    text.push_str(&format!(
        "  secrets: {}\n",
        restored_secrets_line(m, &restored.secrets_kept)
    ));
    match &restored.config_file {
        Some(ConfigFile::PutBack { origin, kept }) => text.push_str(&format!(
            "  config file: put back at {origin}{}\n",
            kept.as_ref().map_or_else(String::new, |k| format!(
                " (the one there is kept as {})",
                k.display()
            ))
        )),
        Some(ConfigFile::Beside { origin, copy, now }) => text.push_str(&format!(
            "  config file: the one in use when the backup was taken ({origin}) is in {}; {}\n",
            copy.display(),
            match now {
                Compared::Same => "the file there now is the same",
                Compared::Differs =>
                    "the file there now differs: compare them, and copy it back \
                                      or run restore with --restore-config",
                Compared::Missing =>
                    "there is no file there now: copy it there (or run restore \
                                      with --restore-config)",
            }
        )),
        Some(ConfigFile::NoneInBackup) => {
            text.push_str("  config file: the backup holds none; nothing put back\n")
        }
        None => {}
    }
    if !report.carried.is_empty() {
        text.push_str(&format!(
            "  kept from the current data directory: {}\n",
            report.carried.join(", ")
        ));
    }
    if let Some(previous) = &report.previous {
        text.push_str(&format!(
            "  the previous data is in {}: remove it once the restored server is fine\n",
            previous.display()
        ));
    }
    if let Some(version) = restored.migrates_to {
        text.push_str(&format!(
            "  the backup has schema version {}; the server migrates it to {version} when it \
             starts (after taking a backup of it)\n",
            m.schema_version,
        ));
    }
    text.push_str("  start the server again (tegami serve)\n");
    text
}

/// The secrets a restore brought back, in one line; `kept` are the secrets that moved over
/// from the data directory it replaced.
fn restored_secrets_line(m: &Manifest, kept: &[String]) -> String {
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
                    backup::abbreviated(&files, 4)
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
