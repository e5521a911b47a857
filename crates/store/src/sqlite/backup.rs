//! Online backup, verification and restore of the embedded store.
//!
//! A backup is a directory `<root>/<id>/` that holds everything needed to rebuild a data
//! directory on any machine:
//!
//! ```text
//! manifest.toml     what, when, from where, counts, owner and modes (`manifest.rs`)
//! SHA256SUMS        the SHA-256 of every file below, as `sha256sum -c` reads it
//! tegami.db         the metadata, a consistent snapshot taken by VACUUM INTO
//! blobs/ab/<h>      every blob the snapshot references
//! archive/<id>/archive.db     each archive of the data directory (`archive/<digits>/`, never
//!                             an `<id>.partial` one still being built), by VACUUM INTO
//! archive/<id>/blobs/ab/<h>   and every blob file it holds
//! dkim/, newsletter.key, acme/   the secrets of the data directory, copied with their
//!                   modes and owners recorded in the manifest (`secrets.rs`)
//! config/<name>     the config file in use (`--config`), and where it was read from
//! damaged.txt       only when the live store or an archive had damaged blobs: which, and why
//! verified.toml     written by `verify`: when, and what it found (not checksummed)
//! ```
//!
//! How it stays consistent while mail keeps arriving (`create.rs`): the snapshot is one
//! read transaction, so it sees every commit before it and none after. Blobs are immutable
//! and a committed row always names a complete, fsynced file, so every blob the snapshot
//! names can be linked or copied afterwards. A blob whose last reference is removed in the
//! meantime keeps its file: the backup holds `blobs/.hold` (a shared flock) while it works,
//! and the writer of any process deletes blob files only when it can lock that file
//! exclusively; otherwise it leaves them as orphans for `optimize`. Under constant expunges
//! the first snapshot therefore always completes (before the hold, a busy store could make
//! a backup retry its snapshot until it gave up). Should a file vanish anyway, the backup
//! takes a new snapshot (which no longer names it) and fetches only what changed; a blob
//! that is missing while the live store still references it is damage, recorded in
//! `damaged.txt`, not a reason to fail.
//!
//! Archives are copied after the snapshot, never before: an archive gets its final name
//! before its messages leave the live database, so a message is in the snapshot, in an
//! archive, or in both, never in neither. An archive's blobs never change, so they take
//! the same way into the backup as the live store's, and only a new archive adds files.
//!
//! Incremental: a blob (live or archived) already at the same path in the newest earlier
//! backup in the same root is hard-linked from there; otherwise it is hard-linked from the
//! live store (or archive) when both are on one file system, and copied (streamed, hashed,
//! never held in memory) only when neither works. `--copy-blobs` never links a file that
//! is the live store's own, not even through an earlier backup that linked it.
//!
//! No blob goes into a backup unchecked: each one linked is read and hashed, except one
//! linked from an earlier backup that had checked every blob (its manifest says how) and
//! that has not been written since that backup's manifest was. A blob whose bytes do not
//! match its name is left out and named in `damaged.txt`, and the command says so and
//! fails. The manifest records how many blobs were hashed and how many trusted.
//! Nothing is reported done before it is durable: one `syncfs` flushes the new files, then
//! the manifest is written, fsynced, and the directory renamed from `.<id>.partial` to
//! `<id>`, so a backup either exists completely or not at all.

mod create;
mod fsutil;
mod manifest;
#[cfg(test)]
mod migration_tests;
mod restore;
mod secrets;
mod verify;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use create::{CreateOptions, CreateReport, create};
pub use manifest::{
    Archive, BlobsChecked, CONFIG_DIR, FORMAT, Manifest, Secret, Trigger, Verified,
};
pub use restore::{RestoreOptions, RestoreReport, restore};
pub use secrets::IN_DATA_DIR as SECRETS;
pub use verify::{Problem, VerifyReport, verify};

/// What an open did after an unclean shutdown (`SqliteStore::recovery`).
pub use super::recovery::Recovery;
pub(crate) use create::before_migration;

/// Called with (bytes done, bytes in all) while a backup, verification or restore runs;
/// may be called from several threads.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What went wrong with a backup operation, worded for the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error(
        "another backup operation is running in {root} (it holds {root}/.lock); wait for it to finish"
    )]
    Busy { root: PathBuf },
    #[error("{path} is not a tegami backup: {reason}")]
    NotABackup { path: PathBuf, reason: String },
    #[error("no store in {0} (no tegami.db): nothing to back up; check --data")]
    NoStore(PathBuf),
    #[error(
        "the backup holds schema version {found}, newer than this tegami understands ({known}); \
         restore it with the tegami release that made it, or a newer one"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(
        "the store changed too fast to snapshot: after {attempts} snapshots, blobs were still \
         being removed while they were copied; try again when fewer messages are being deleted"
    )]
    TooBusy { attempts: u32 },
    #[error("{file} in the backup changed after it was verified ({problem}); nothing was changed")]
    ChangedSinceVerify { file: String, problem: String },
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

impl From<rusqlite::Error> for BackupError {
    fn from(e: rusqlite::Error) -> BackupError {
        BackupError::Store(e.into())
    }
}

impl BackupError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BackupError {
        let path = path.into();
        move |source| BackupError::Io { path, source }
    }
}

type Result<T, E = BackupError> = std::result::Result<T, E>;

/// The default backup root of a data directory.
pub fn default_root(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}

/// One entry of a backup root, as `list` finds it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub path: PathBuf,
    pub state: EntryState,
}

#[derive(Debug, Clone)]
pub enum EntryState {
    /// A finished backup.
    Complete {
        manifest: Box<Manifest>,
        verified: Option<Verified>,
    },
    /// A backup that was interrupted (`.<id>.partial`); the next backup or prune removes it.
    Incomplete,
    /// A directory whose manifest cannot be read.
    Unreadable(String),
}

impl Entry {
    pub fn manifest(&self) -> Option<&Manifest> {
        match &self.state {
            EntryState::Complete { manifest, .. } => Some(manifest),
            _ => None,
        }
    }

    /// Seconds since the epoch when it was taken; 0 when unknown.
    pub fn created(&self) -> i64 {
        self.manifest().map_or(0, |m| m.created_unix)
    }
}

/// Every backup in `root`, oldest first. A root that does not exist holds no backups.
pub fn list(root: &Path) -> Result<Vec<Entry>> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::io(root)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(BackupError::io(root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if let Some(id) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".partial"))
        {
            out.push(Entry {
                id: id.to_string(),
                path,
                state: EntryState::Incomplete,
            });
            continue;
        }
        if name.starts_with('.') {
            continue;
        }
        let state = match manifest::read(&path) {
            Ok(manifest) => EntryState::Complete {
                manifest: Box::new(manifest),
                verified: manifest::read_verified(&path),
            },
            Err(e) if !path.join(manifest::MANIFEST).exists() => {
                // Not ours (a directory the operator keeps there): leave it out of the list.
                let _ = e;
                continue;
            }
            Err(e) => EntryState::Unreadable(e),
        };
        out.push(Entry {
            id: name,
            path,
            state,
        });
    }
    out.sort_by(|a, b| a.created().cmp(&b.created()).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Finds a backup named on the command line: a path to a backup directory, or an id in
/// `root`.
pub fn resolve(root: &Path, name: &str) -> Result<PathBuf> {
    let as_path = Path::new(name);
    if as_path.join(manifest::MANIFEST).is_file() {
        return Ok(as_path.to_path_buf());
    }
    let in_root = root.join(name);
    if in_root.is_dir() {
        return Ok(in_root);
    }
    if as_path.is_dir() {
        return Err(BackupError::NotABackup {
            path: as_path.to_path_buf(),
            reason: format!("it has no {}", manifest::MANIFEST),
        });
    }
    Err(BackupError::NotABackup {
        path: in_root,
        reason: format!(
            "no such backup in {} (`tegami backup list` shows them)",
            root.display()
        ),
    })
}

/// The exclusive right to change a backup root (create, prune), held through a kernel
/// lock on `<root>/.lock` so it dies with its process.
pub struct RootLock {
    root: PathBuf,
    _file: File,
}

/// How long a backup waits for another one in the same root before giving up.
const LOCK_PATIENCE: Duration = Duration::from_secs(30);

impl RootLock {
    /// Takes the lock, waiting up to half a minute (`wait`: as long as it takes).
    pub fn acquire(root: &Path, wait: bool) -> Result<RootLock> {
        fsutil::create_private_dir_all(root)?;
        let path = root.join(".lock");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(BackupError::io(&path))?;
        if wait {
            file.lock().map_err(BackupError::io(&path))?;
        } else {
            let deadline = std::time::Instant::now() + LOCK_PATIENCE;
            loop {
                match file.try_lock() {
                    Ok(()) => break,
                    Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(fs::TryLockError::WouldBlock) => {
                        return Err(BackupError::Busy {
                            root: root.to_path_buf(),
                        });
                    }
                    Err(fs::TryLockError::Error(e)) => return Err(BackupError::io(&path)(e)),
                }
            }
        }
        Ok(RootLock {
            root: root.to_path_buf(),
            _file: file,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes one backup (or an interrupted one). Files shared with other backups through
    /// hard links stay for them.
    pub fn remove(&self, entry: &Entry) -> Result<()> {
        if entry.path.parent() != Some(self.root.as_path()) {
            return Err(BackupError::Refused(format!(
                "{} is not in {}",
                entry.path.display(),
                self.root.display()
            )));
        }
        // Renamed first, so an interrupted removal never leaves something that looks whole.
        let doomed = self.root.join(format!(".{}.removing", entry.id));
        crate::io::rename(&entry.path, &doomed).map_err(BackupError::io(&entry.path))?;
        crate::io::remove_dir_all(&doomed).map_err(BackupError::io(&doomed))?;
        fsutil::sync_dir(&self.root)
    }

    /// Removes what interrupted backups and removals left behind.
    pub fn clean_leftovers(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let entries = fs::read_dir(&self.root).map_err(BackupError::io(&self.root))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let leftover = name.starts_with('.')
                && (name.ends_with(".partial") || name.ends_with(".removing"));
            if leftover && entry.path().is_dir() {
                crate::io::remove_dir_all(&entry.path()).map_err(BackupError::io(entry.path()))?;
                removed.push(name);
            }
        }
        Ok(removed)
    }
}

/// `2026-11-23T14:00:00Z` for seconds since the epoch.
pub fn rfc3339_utc(unix: i64) -> String {
    utc(unix, "%Y-%m-%dT%H:%M:%SZ")
}

/// `20261123T140000Z`: sortable, and safe in a file name.
pub fn compact_utc(unix: i64) -> String {
    utc(unix, "%Y%m%dT%H%M%SZ")
}

fn utc(unix: i64, format: &str) -> String {
    let time = jiff::Timestamp::from_second(unix).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    time.strftime(format).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_right_on_both_sides_of_leap_days() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(compact_utc(1_795_442_400), "20261123T140000Z");
    }
}
