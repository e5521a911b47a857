//! Backups as operations: take one, list them, verify one, prune them by the retention
//! policy, restore one. Each leaves its line in `log/backup.log`, and a backup its result
//! in `log/backup_result.log`; the faces render what comes back.
//!
//! Backups run online beside a live server (no maintenance mode, nobody locked out) and do
//! not open the store for writing: the snapshot is a read transaction (see
//! `store::backup`), so these are free functions over the data directory, not `Ops`
//! methods. A restore needs the server stopped, and says so: it replaces the whole data
//! directory, which a running server holds open.

mod create;
pub mod download;
mod prune;
mod restore;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use gate::{Clock, oplog};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use store::backup::{self as stored, BackupError, Entry, Manifest, VerifyReport};

use crate::config::BackupConfig;
use crate::error::{Error, Result};
use crate::progress::{Reporter, Unit, for_store};

pub use create::{CreateRequest, Created, create};
pub use prune::{Decision, Keep, PruneRequest, Pruned, Retention, plan, prune};
pub use restore::{Compared, ConfigFile, Owner, RestoreRequest, Restored, restore};

pub use crate::progress::Trigger;

/// The manifest's name for who asked.
fn stored(trigger: Trigger) -> stored::Trigger {
    match trigger {
        Trigger::Manual => stored::Trigger::Manual,
        Trigger::Scheduled => stored::Trigger::Scheduled,
    }
}

// ---------------------------------------------------------------------------------------
// list

/// The backups of one root, oldest first.
#[derive(Debug, Clone)]
pub struct Listing {
    pub root: PathBuf,
    pub entries: Vec<Entry>,
}

/// Lists the backups in `dir`, else in the configured backup directory.
pub fn list(data: &Path, settings: &BackupConfig, dir: Option<&Path>) -> Result<Listing> {
    let root = dir.map_or_else(|| settings.root(data), Path::to_path_buf);
    let entries = stored::list(&root).map_err(|e| {
        from_backup_in(
            format_args!("cannot list the backups in {}", root.display()),
            e,
        )
    })?;
    Ok(Listing { root, entries })
}

/// What a backup took on disk beyond what it shares with other backups or the live store
/// through hard links: the blobs it copied, and its databases, which are always copies
/// (the archives' too).
pub fn added_bytes(manifest: &Manifest) -> u64 {
    manifest.bytes_copied
        + manifest.database_bytes
        + manifest
            .archives
            .iter()
            .flatten()
            .map(|a| a.database_bytes)
            .sum::<u64>()
}

/// The newest backup that finished in `root`, leaving out the ones the store took before a
/// migration (they are not the operator's backups); for the schedule, doctor and alerts.
pub fn newest(root: &Path) -> Option<Entry> {
    stored::list(root)
        .ok()?
        .into_iter()
        .filter(|e| {
            e.manifest()
                .is_some_and(|m| m.trigger != stored::Trigger::PreMigration)
        })
        .max_by_key(Entry::created)
}

/// A backup id as a face receives it (a URL, a form): a plain name in the backup directory,
/// never a path, so a request cannot point an operation at another directory.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 200 || id.starts_with('.') || id.contains(['/', '\\', '\0']) {
        return Err(Error::invalid(format!("{id:?} is not a backup id")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// verify

/// Which backup to verify: an id in `dir` (else the configured backup directory), or the
/// path of a backup directory.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    pub backup: String,
    pub dir: Option<PathBuf>,
}

/// Checks a backup completely (every file's checksum, the databases' integrity) and logs
/// the verdict. Damage is in the report (`is_ok`), not an error: only a backup that cannot
/// be found or read at all is.
pub fn verify(
    data: &Path,
    settings: &BackupConfig,
    clock: &Clock,
    request: &VerifyRequest,
    progress: &Reporter,
) -> Result<VerifyReport> {
    let root = request.dir.clone().unwrap_or_else(|| settings.root(data));
    let path = stored::resolve(&root, &request.backup).map_err(from_backup)?;
    let report = verify_path(&path, progress)?;
    log_line(
        &data.join("log"),
        clock,
        &format!("verify {}: {}", report.id(), verdict(&report)),
    );
    Ok(report)
}

/// Verifies the backup at `path`, with a "verifying" phase.
fn verify_path(path: &Path, progress: &Reporter) -> Result<VerifyReport> {
    progress.phase("verifying", Unit::Bytes, None);
    let report = stored::verify(path, Some(&for_store(progress)));
    progress.finish();
    report.map_err(from_backup)
}

/// The verdict in one line: "ok: ..." or "DAMAGED: N problems: ...".
pub fn verdict(report: &VerifyReport) -> String {
    if report.is_ok() {
        format!(
            "ok: {} files, {} checked in {:.1} s",
            report.files,
            store::human_bytes(report.bytes),
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
pub fn first_problems(report: &VerifyReport) -> String {
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

// ---------------------------------------------------------------------------------------
// The restore, as the operator types it

/// The commands that restore backup `id` of the configured backup directory as this
/// server's data directory, ready to paste into a root shell: stop the service, restore
/// (which needs the server stopped, verifies first and keeps the current data beside),
/// start it again. `unpacked` names where a downloaded archive was unpacked instead, for a
/// restore on another machine: the backup is then `<unpacked>/<id>`.
pub fn restore_commands(
    data: &Path,
    settings: &BackupConfig,
    id: &str,
    unpacked: Option<&Path>,
) -> Vec<String> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let backup = match unpacked {
        Some(dir) => absolute(dir).join(id),
        None => absolute(&settings.root(data)).join(id),
    };
    let mut restore = format!(
        "tegami --data {}",
        shell_quote(&absolute(data).display().to_string())
    );
    if let Some(config) = &settings.config_file {
        restore.push_str(&format!(
            " --config {}",
            shell_quote(&config.display().to_string())
        ));
    }
    restore.push_str(&format!(
        " restore {} --force",
        shell_quote(&backup.display().to_string())
    ));
    let mut commands = vec!["systemctl stop tegami".to_string()];
    if let Some(dir) = unpacked {
        let dir = shell_quote(&absolute(dir).display().to_string());
        commands.push(format!("mkdir -p {dir}"));
        commands.push(format!(
            "tar -xf {} -C {dir}",
            shell_quote(&format!("tegami-backup-{id}.tar"))
        ));
    }
    commands.push(restore);
    commands.push("systemctl start tegami".into());
    commands
}

/// A word for a POSIX shell: as it is when it holds nothing the shell reads specially,
/// else in single quotes (a quote inside as `'\''`).
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@%,".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

// ---------------------------------------------------------------------------------------
// Words shared by the result log and the faces

/// What a backup holds, in one line.
pub fn counts(m: &Manifest) -> String {
    format!(
        "{} accounts, {} messages, {} blobs ({}), schema version {}",
        m.accounts,
        m.messages,
        m.blobs,
        store::human_bytes(m.blob_bytes),
        m.schema_version
    )
}

/// The first `n` items, and how many more.
pub fn abbreviated(items: &[&str], n: usize) -> String {
    let shown = items[..items.len().min(n)].join(", ");
    match items.len().saturating_sub(n) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// A backup's time to the minute in the server's zone, as the logs and listings show it.
pub fn local_time(unix: i64, tz: &TimeZone) -> String {
    Timestamp::from_second(unix)
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|_| unix.to_string())
}

// ---------------------------------------------------------------------------------------
// Logs and errors

/// A log line that cannot be written must not fail the backup itself (a full disk is one
/// reason to look), so the failure is told, not returned.
pub(crate) fn log_line(log_dir: &Path, clock: &Clock, line: &str) {
    if let Err(e) = oplog::append(log_dir, "backup.log", &clock.now(), line) {
        tracing::warn!(
            error = %e,
            "cannot write {}",
            log_dir.join("backup.log").display()
        );
    }
}

fn replace_result(log_dir: &Path, content: &str) {
    if let Err(e) = oplog::replace(log_dir, "backup_result.log", content) {
        tracing::warn!(
            error = %e,
            "cannot write {}",
            log_dir.join("backup_result.log").display()
        );
    }
}

/// The store's backup error as the operation's, by what a face should make of it. The text
/// and its chain of causes stay as the store words them.
fn from_backup(e: BackupError) -> Error {
    match e {
        BackupError::Io { path, source } => Error::Io {
            context: path.display().to_string(),
            source,
        },
        BackupError::Store(e) => Error::Store(e),
        e => kind(&e)(e.to_string()),
    }
}

/// `from_backup` under a sentence saying what could not be done.
fn from_backup_in(context: impl Display, e: BackupError) -> Error {
    match e {
        BackupError::Io { path, source } => Error::Io {
            context: format!("{context}: {}", path.display()),
            source,
        },
        e => kind(&e)(format!("{context}: {}", chain(&e))),
    }
}

fn kind(e: &BackupError) -> fn(String) -> Error {
    match e {
        BackupError::Busy { .. }
        | BackupError::TooBusy { .. }
        | BackupError::SchemaTooNew { .. }
        | BackupError::Refused(_) => Error::Conflict,
        BackupError::NotABackup { .. } | BackupError::NoStore(_) => Error::NotFound,
        _ => Error::Failed,
    }
}

/// An error and its causes in one line, as the CLI shows a chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A manifest with the fields retention and the schedule look at; the rest zero.
    pub(crate) fn manifest(id: &str, created: i64, trigger: stored::Trigger) -> Manifest {
        Manifest {
            format: stored::FORMAT,
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
        }
    }

    /// A finished backup in `root` as `list` finds it: a directory with its manifest.
    pub(crate) fn plant(root: &Path, id: &str, created: i64, trigger: stored::Trigger) {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("manifest.toml"),
            manifest(id, created, trigger).to_toml(),
        )
        .unwrap();
    }

    #[test]
    fn the_restore_commands_stop_restore_by_path_and_start() {
        let settings = BackupConfig {
            at: None,
            dir: None,
            keep_daily: 7,
            keep_weekly: 4,
            verify: true,
            config_file: Some(PathBuf::from("/etc/tegami/tegami.toml")),
        };
        let data = Path::new("/var/lib/tegami");
        assert_eq!(
            restore_commands(data, &settings, "20261207T064100Z", None),
            [
                "systemctl stop tegami",
                "tegami --data /var/lib/tegami --config /etc/tegami/tegami.toml restore \
                 /var/lib/tegami/backups/20261207T064100Z --force",
                "systemctl start tegami",
            ]
        );
        let elsewhere = restore_commands(
            Path::new("/srv/my data"),
            &BackupConfig {
                config_file: None,
                ..settings
            },
            "X",
            Some(Path::new("/tmp/restore")),
        );
        assert_eq!(
            elsewhere,
            [
                "systemctl stop tegami",
                "mkdir -p /tmp/restore",
                "tar -xf tegami-backup-X.tar -C /tmp/restore",
                "tegami --data '/srv/my data' restore /tmp/restore/X --force",
                "systemctl start tegami",
            ]
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_newest_backup_is_never_a_pre_migration_one() {
        let root = tempfile::tempdir().unwrap();
        assert!(newest(root.path()).is_none());
        plant(root.path(), "old", 1_000, stored::Trigger::Scheduled);
        plant(root.path(), "mine", 2_000, stored::Trigger::Manual);
        plant(root.path(), "pre", 3_000, stored::Trigger::PreMigration);
        assert_eq!(newest(root.path()).unwrap().id, "mine");
    }
}
