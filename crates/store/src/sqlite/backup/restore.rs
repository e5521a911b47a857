//! Restoring a backup: a new data directory built beside the live one, then swapped in
//! with one rename. Never an overwrite-copy.
//!
//! The caller verifies the backup first and makes sure no server holds the data directory
//! (its `tegami.lock`); this module builds `<data>.restoring-<time>`, gives it the owner
//! and modes the manifest recorded, makes it durable, and exchanges it with `<data>`
//! (atomically where the file system can, else with two renames), keeping the old one as
//! `<data>.before-restore-<time>` for the operator to remove. What a backup does not hold
//! (other backups, logs, the maintenance file) moves over from the old one; so do the
//! archives, but only from a backup taken before backups held them. A newer backup brings
//! its own, and an archive made after it holds messages its database still has. The
//! secrets (DKIM keys, `newsletter.key`, ACME state) come from the backup with the modes
//! and owners it recorded; one the backup does not hold at all (every one, for a backup
//! taken before backups held secrets) moves over from the old directory, so a restore
//! never leaves a server that cannot sign or honour the links it sent. The config file
//! the backup holds is restored as `config/<name>` in the data directory; putting it back
//! where it was read from is the caller's choice (`tegami restore --restore-config`).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::fsutil::{self, CopyError};
use super::manifest::{
    self, ARCHIVE_DATABASE, ARCHIVES, DAMAGED, DATABASE, Manifest, SUMS, Secret,
};
use super::secrets;
use super::{BackupError, Progress, Result};
use crate::sqlite::schema;

/// What a backup does not hold but a data directory keeps across a restore.
const CARRIED: [&str; 4] = ["backups", "log", "archive", "maint"];

pub struct RestoreOptions {
    /// Give every restored file this owner (uid, gid); only root can. None keeps the
    /// files as the caller creates them.
    pub owner: Option<(u32, u32)>,
    /// The time used in the names of the directories beside the data directory.
    pub now_unix: i64,
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub data_dir: PathBuf,
    /// Where the data directory that was replaced now is; None when there was none.
    pub previous: Option<PathBuf>,
    /// What moved over from the previous data directory.
    pub carried: Vec<String>,
    pub manifest: Manifest,
    pub blobs_linked: u64,
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    /// True when the swap was one atomic exchange; false when two renames were needed.
    pub atomic: bool,
    /// The owner and modes the restored files have.
    pub owner: (u32, u32),
    pub dir_mode: u32,
    pub file_mode: u32,
    pub seconds: f64,
}

/// Restores the (verified) backup in `backup` as the data directory `data_dir`.
pub fn restore(backup: &Path, data_dir: &Path, options: &RestoreOptions) -> Result<RestoreReport> {
    let started = Instant::now();
    let manifest = manifest::read(backup).map_err(|reason| BackupError::NotABackup {
        path: backup.to_path_buf(),
        reason,
    })?;
    if manifest.schema_version > schema::CURRENT {
        return Err(BackupError::SchemaTooNew {
            found: manifest.schema_version,
            known: schema::CURRENT,
        });
    }
    let sums_path = backup.join(SUMS);
    let sums_text = fs::read_to_string(&sums_path).map_err(BackupError::io(&sums_path))?;
    if hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sums_text)) != manifest.sums_sha256 {
        return Err(BackupError::ChangedSinceVerify {
            file: SUMS.into(),
            problem: "its checksum differs from the manifest's".into(),
        });
    }
    let sums = manifest::parse_sums(&sums_text).map_err(|reason| BackupError::NotABackup {
        path: backup.to_path_buf(),
        reason,
    })?;

    let data_dir = match fs::canonicalize(data_dir) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::path::absolute(data_dir).map_err(BackupError::io(data_dir))?
        }
        Err(e) => return Err(BackupError::io(data_dir)(e)),
    };
    let parent = data_dir
        .parent()
        .ok_or_else(|| BackupError::Refused("cannot restore onto the root directory".into()))?
        .to_path_buf();
    let name = data_dir
        .file_name()
        .ok_or_else(|| BackupError::Refused("the data directory needs a name".into()))?
        .to_string_lossy()
        .into_owned();
    let live = match fs::symlink_metadata(&data_dir) {
        Ok(meta) if meta.is_dir() => {
            let parent_meta = fs::metadata(&parent).map_err(BackupError::io(&parent))?;
            if meta.dev() != parent_meta.dev() {
                return Err(BackupError::Refused(format!(
                    "{} is a mount point, so it cannot be swapped for the restored copy; \
                     restore into a new directory on that volume (--data {}/restored) and \
                     point the server there",
                    data_dir.display(),
                    data_dir.display()
                )));
            }
            true
        }
        Ok(_) => {
            return Err(BackupError::Refused(format!(
                "{} is not a directory",
                data_dir.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(BackupError::io(&data_dir)(e)),
    };
    crate::io::create_dir_all(&parent, None).map_err(BackupError::io(&parent))?;
    let stamp = super::compact_utc(options.now_unix);
    let building = parent.join(format!("{name}.restoring-{stamp}"));
    let kept = parent.join(format!("{name}.before-restore-{stamp}"));
    if kept.exists() || building.exists() {
        return Err(BackupError::Refused(format!(
            "{} already exists; wait a second and try again",
            kept.display()
        )));
    }
    fsutil::create_private_dir(&building)?;
    let built = build(backup, &building, &manifest, &sums, options);
    let (lock, counts) = match built {
        Ok(built) => built,
        Err(e) => {
            let _ = crate::io::remove_dir_all(&building);
            return Err(e);
        }
    };

    let atomic = if live {
        match fsutil::rename_exchange(&building, &data_dir) {
            Ok(()) => {
                // `building` now holds the old data.
                crate::io::rename(&building, &kept).map_err(BackupError::io(&building))?;
                true
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                crate::io::rename(&data_dir, &kept).map_err(BackupError::io(&data_dir))?;
                if let Err(e) = crate::io::rename(&building, &data_dir) {
                    // Put the live data back where it was; the restore did not happen.
                    let _ = crate::io::rename(&kept, &data_dir);
                    let _ = crate::io::remove_dir_all(&building);
                    return Err(BackupError::io(&data_dir)(e));
                }
                false
            }
            Err(e) => {
                let _ = crate::io::remove_dir_all(&building);
                return Err(BackupError::io(&data_dir)(e));
            }
        }
    } else {
        crate::io::rename(&building, &data_dir).map_err(BackupError::io(&data_dir))?;
        true
    };
    fsutil::sync_dir(&parent)?;
    let mut carried = Vec::new();
    if live {
        // A secret the backup holds nothing of: the old directory's is the only one.
        let held = |name: &str| {
            manifest.secrets.iter().flatten().any(|s| {
                s.path == name
                    || s.path
                        .strip_prefix(name)
                        .is_some_and(|r| r.starts_with('/'))
            })
        };
        let secrets_missing = secrets::IN_DATA_DIR.into_iter().filter(|name| !held(name));
        for entry in CARRIED.into_iter().chain(secrets_missing) {
            if entry == ARCHIVES && manifest.archives.is_some() {
                continue;
            }
            let (from, to) = (kept.join(entry), data_dir.join(entry));
            if fs::symlink_metadata(&from).is_ok() && fs::symlink_metadata(&to).is_err() {
                crate::io::rename(&from, &to).map_err(BackupError::io(&from))?;
                carried.push(entry.to_string());
            }
        }
        fsutil::sync_dir(&data_dir)?;
        fsutil::sync_dir(&kept)?;
    }
    drop(lock);
    let meta = fs::metadata(&data_dir).map_err(BackupError::io(&data_dir))?;
    Ok(RestoreReport {
        previous: live.then_some(kept),
        carried,
        blobs_linked: counts.linked,
        blobs_copied: counts.copied,
        bytes_copied: counts.bytes_copied,
        atomic,
        owner: (meta.uid(), meta.gid()),
        dir_mode: manifest.dir_mode,
        file_mode: manifest.file_mode,
        seconds: started.elapsed().as_secs_f64(),
        manifest,
        data_dir,
    })
}

struct Counts {
    linked: u64,
    copied: u64,
    bytes_copied: u64,
}

/// Fills `dir` from the backup, gives it owner and modes, and makes it durable. Returns
/// the lock on its `tegami.lock`, held so no server starts on it until it is in place.
fn build(
    backup: &Path,
    dir: &Path,
    manifest: &Manifest,
    sums: &[manifest::Sum],
    options: &RestoreOptions,
) -> Result<(File, Counts)> {
    let lock_path = dir.join("tegami.lock");
    let lock = File::create(&lock_path).map_err(BackupError::io(&lock_path))?;
    lock.lock().map_err(BackupError::io(&lock_path))?;

    let files: Vec<&manifest::Sum> = sums.iter().filter(|s| s.path != DAMAGED).collect();
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|s| Path::new(&s.path).parent().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    dirs.push(PathBuf::from("blobs/tmp"));
    dirs.sort();
    for rel in &dirs {
        fsutil::create_private_dir_all(&dir.join(rel))?;
    }

    // The owner and modes the service had, whoever runs the restore. The owner always
    // keeps the access the server needs, whatever was recorded.
    let dir_mode = (manifest.dir_mode & 0o7777) | 0o700;
    let file_mode = (manifest.file_mode & 0o777) | 0o600;
    let mine = fs::metadata(dir).map_err(BackupError::io(dir))?;
    let owner = options.owner.unwrap_or((mine.uid(), mine.gid()));

    let secrets: HashMap<&str, &Secret> = manifest
        .secrets
        .iter()
        .flatten()
        .map(|s| (s.path.as_str(), s))
        .collect();
    // A secret keeps its recorded owner, except that one owned by the data directory's
    // owner follows the data directory to the owner it is restored for.
    let secret_owner = |s: &Secret| {
        options.owner.map(|owner| {
            if (s.uid, s.gid) == (manifest.owner_uid, manifest.owner_gid) {
                owner
            } else {
                (s.uid, s.gid)
            }
        })
    };
    for secret in secrets.values().filter(|s| s.file.is_none()) {
        fsutil::create_private_dir_all(&dir.join(&secret.path))?;
    }

    let total: u64 = manifest.bytes;
    let done = AtomicU64::new(0);
    let linkable = AtomicBool::new(true);
    let (linked, copied, bytes_copied) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    fsutil::parallel(&files, |sum, buf| {
        let (from, to) = (backup.join(&sum.path), dir.join(&sum.path));
        // The databases change once the server runs (an archive's too, in place: it keeps
        // a rollback journal), so they are always copies of their own; blobs never change
        // and may share their inode with the backup.
        // A link shares owner and mode with the backup (and often the live store), which
        // must not change under them: only a file that already has both is linked.
        let shareable = || {
            fs::metadata(&from)
                .is_ok_and(|m| (m.uid(), m.gid()) == owner && m.mode() & 0o7777 == file_mode)
        };
        let database = sum.path == DATABASE || sum.path.ends_with(&format!("/{ARCHIVE_DATABASE}"));
        // Secrets are always copies: they get their own mode and owner.
        let secret = secrets.contains_key(sum.path.as_str());
        if !database && !secret && linkable.load(Ordering::Relaxed) && shareable() {
            match crate::io::hard_link(&from, &to) {
                Ok(()) => {
                    linked.fetch_add(1, Ordering::Relaxed);
                    let size = fs::metadata(&to).map_or(0, |m| m.len());
                    let so_far = done.fetch_add(size, Ordering::Relaxed) + size;
                    if let Some(progress) = &options.progress {
                        progress(so_far.min(total), total);
                    }
                    return Ok(());
                }
                Err(e) if fsutil::link_impossible(&e) => linkable.store(false, Ordering::Relaxed),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(BackupError::ChangedSinceVerify {
                        file: sum.path.clone(),
                        problem: "missing".into(),
                    });
                }
                Err(e) => return Err(BackupError::io(to)(e)),
            }
        }
        let (hash, size) =
            fsutil::copy_hashed(&from, &to, Some(file_mode), buf).map_err(|e| match e {
                CopyError::Source(e) => BackupError::ChangedSinceVerify {
                    file: sum.path.clone(),
                    problem: e.to_string(),
                },
                CopyError::Destination(e) => BackupError::io(&to)(e),
            })?;
        if hash != sum.sha256 {
            return Err(BackupError::ChangedSinceVerify {
                file: sum.path.clone(),
                problem: "its content no longer matches its checksum".into(),
            });
        }
        copied.fetch_add(1, Ordering::Relaxed);
        bytes_copied.fetch_add(size, Ordering::Relaxed);
        let so_far = done.fetch_add(size, Ordering::Relaxed) + size;
        if let Some(progress) = &options.progress {
            progress(so_far.min(total), total);
        }
        Ok(())
    })?;
    let counts = Counts {
        linked: linked.into_inner(),
        copied: copied.into_inner(),
        bytes_copied: bytes_copied.into_inner(),
    };

    let mut entries = fsutil::walk(dir)?;
    entries.push((dir.to_path_buf(), mine));
    // Deepest first, so a directory's mode never keeps its own entries from being set.
    entries.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
    for (path, meta) in &entries {
        if !meta.is_dir() && meta.nlink() > 1 {
            continue; // linked: it has them already
        }
        let rel = path.strip_prefix(dir).ok().and_then(Path::to_str);
        let (mode, owner) = match rel.and_then(|rel| secrets.get(rel)) {
            Some(secret) => (secret.mode & 0o7777, secret_owner(secret)),
            None if meta.is_dir() => (dir_mode, options.owner),
            None => (file_mode, options.owner),
        };
        if let Some((uid, gid)) = owner {
            // Owner first: a chown clears the set-id bits a mode may carry.
            std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(BackupError::io(path))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(BackupError::io(path))?;
    }
    fsutil::sync_filesystem(dir)?;
    Ok((lock, counts))
}
