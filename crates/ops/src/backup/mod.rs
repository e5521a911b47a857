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
    fn the_newest_backup_is_never_a_pre_migration_one() {
        let root = tempfile::tempdir().unwrap();
        assert!(newest(root.path()).is_none());
        plant(root.path(), "old", 1_000, stored::Trigger::Scheduled);
        plant(root.path(), "mine", 2_000, stored::Trigger::Manual);
        plant(root.path(), "pre", 3_000, stored::Trigger::PreMigration);
        assert_eq!(newest(root.path()).unwrap().id, "mine");
    }
}
