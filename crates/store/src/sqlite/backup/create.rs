//! Taking a backup online: a snapshot of the metadata, then every blob it names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::fsutil::{self, CopyError};
use super::manifest::{
    self, ARCHIVE_DATABASE, ARCHIVES, Archive, BlobsChecked, DAMAGED, DATABASE, Manifest, SUMS,
    Sum, Trigger,
};
use super::secrets;
use super::{BackupError, EntryState, Progress, Result, RootLock};
use crate::BlobId;
use crate::sqlite::{Open, open_connection, schema};

/// How many snapshots a backup takes before it gives up on a store whose mail is deleted
/// faster than its blobs can be fetched. Each new snapshot only fetches what changed.
const MAX_SNAPSHOTS: u32 = 8;

pub struct CreateOptions {
    /// The backup root: `<root>/<id>/` is created.
    pub root: PathBuf,
    /// The id wanted; a suffix makes it unique if a backup by that name exists.
    pub id: String,
    pub trigger: Trigger,
    /// The time recorded as the backup's (seconds since the epoch).
    pub now_unix: i64,
    pub tegami_version: String,
    /// Copy blobs from the live store even where a hard link would do, so the backup
    /// shares no inode with live data. Blobs already in an earlier backup in the same root
    /// are still linked from there, unless that file is the live store's own (the earlier
    /// backup linked it).
    pub copy_blobs: bool,
    /// The config file the server runs with, kept as `config/<its name>`.
    pub config_file: Option<PathBuf>,
    pub progress: Option<Progress>,
    /// Wait as long as it takes for another backup in the same root (else half a minute).
    pub wait_for_lock: bool,
}

impl CreateOptions {
    pub fn new(root: PathBuf, id: String, trigger: Trigger, now_unix: i64) -> CreateOptions {
        CreateOptions {
            root,
            id,
            trigger,
            now_unix,
            tegami_version: env!("CARGO_PKG_VERSION").to_string(),
            copy_blobs: false,
            config_file: None,
            progress: None,
            wait_for_lock: false,
        }
    }
}

/// What a finished backup holds, and how it was made.
#[derive(Debug, Clone)]
pub struct CreateReport {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Blobs the snapshot references that the live store could not give intact.
    pub damaged: Vec<(BlobId, String)>,
    /// Of the linked blobs, those linked from the previous backup (named here).
    pub linked_from_previous: u64,
    pub previous: Option<String>,
    /// Interrupted backups found in the root and removed.
    pub leftovers_removed: Vec<String>,
    /// What was found among the secrets but not backed up, and why.
    pub secrets_skipped: Vec<String>,
}

/// Takes a backup of the store in `data_dir` while it may be in use.
pub fn create(data_dir: &Path, options: &CreateOptions) -> Result<CreateReport> {
    let started = Instant::now();
    // Whole seconds, rounded down: a blob modified in the second the check began is read
    // again by the next backup rather than trusted.
    let checked_since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let live_db = data_dir.join(DATABASE);
    if !live_db.is_file() {
        return Err(BackupError::NoStore(data_dir.to_path_buf()));
    }
    let data_meta = fs::metadata(data_dir).map_err(BackupError::io(data_dir))?;
    let db_meta = fs::metadata(&live_db).map_err(BackupError::io(&live_db))?;
    let root_existed = options.root.is_dir();
    let lock = RootLock::acquire(&options.root, options.wait_for_lock)?;
    if !root_existed {
        // A root made by root for a store that runs as another user must stay writable
        // by the server's own scheduled backups.
        give(&options.root, data_meta.uid(), data_meta.gid());
    }
    let leftovers_removed = lock.clean_leftovers()?;
    let previous = super::list(&options.root)?
        .into_iter()
        .filter(|e| matches!(e.state, EntryState::Complete { .. }))
        .max_by_key(|e| e.created());
    let id = unique_id(&options.root, &options.id);
    let partial = options.root.join(format!(".{id}.partial"));
    fsutil::create_private_dir(&partial)?;

    let built = build(
        data_dir,
        &partial,
        previous.as_ref().map(|p| p.path.as_path()),
        options,
    );
    let built = match built {
        Ok(built) => built,
        Err(e) => {
            let _ = crate::io::remove_dir_all(&partial);
            return Err(e);
        }
    };
    let finish = || -> Result<CreateReport> {
        let root_meta = fs::metadata(&options.root).map_err(BackupError::io(&options.root))?;
        let mine = fs::metadata(&partial).map_err(BackupError::io(&partial))?;
        if (root_meta.uid(), root_meta.gid()) != (mine.uid(), mine.gid()) {
            // Everything this backup wrote belongs to the root's owner; linked blobs keep
            // the owner they share with the store or the earlier backup.
            for (path, meta) in fsutil::walk(&partial)? {
                if meta.is_dir() || meta.nlink() == 1 {
                    give(&path, root_meta.uid(), root_meta.gid());
                }
            }
            give(&partial, root_meta.uid(), root_meta.gid());
        }
        // One flush makes the database, every copied blob and every new directory entry
        // durable, before the manifest says the backup is whole.
        fsutil::sync_filesystem(&partial)?;
        let sums_text = manifest::format_sums(&built.sums);
        let sums_path = partial.join(SUMS);
        fsutil::write_durably(&sums_path, sums_text.as_bytes())
            .map_err(BackupError::io(&sums_path))?;
        let manifest = Manifest {
            format: manifest::FORMAT,
            id: id.clone(),
            trigger: options.trigger,
            tegami_version: options.tegami_version.clone(),
            schema_version: built.snapshot.schema_version,
            created_unix: options.now_unix,
            source: std::path::absolute(data_dir)
                .unwrap_or_else(|_| data_dir.to_path_buf())
                .display()
                .to_string(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            owner_uid: data_meta.uid(),
            owner_gid: data_meta.gid(),
            dir_mode: data_meta.mode() & 0o7777,
            file_mode: db_meta.mode() & 0o777,
            accounts: built.snapshot.accounts,
            messages: built.snapshot.messages,
            blobs: built.blobs,
            blob_bytes: built.blob_bytes,
            database_bytes: built.database_bytes,
            files: built.sums.len() as u64,
            bytes: built.bytes,
            blobs_linked: built.linked,
            blobs_copied: built.copied,
            bytes_copied: built.bytes_copied,
            damaged: built.damaged.len() as u64,
            snapshots: built.snapshots,
            archives: Some(built.archives),
            checked: Some(BlobsChecked {
                hashed: built.hashed,
                trusted: built.trusted,
                since_unix: checked_since,
            }),
            secrets: Some(built.secrets.secrets),
            seconds: started.elapsed().as_secs_f64(),
            sums_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sums_text)),
        };
        let manifest_path = partial.join(manifest::MANIFEST);
        fsutil::write_durably(&manifest_path, manifest.to_toml().as_bytes())
            .map_err(BackupError::io(&manifest_path))?;
        if (root_meta.uid(), root_meta.gid()) != (mine.uid(), mine.gid()) {
            give(&sums_path, root_meta.uid(), root_meta.gid());
            give(&manifest_path, root_meta.uid(), root_meta.gid());
        }
        let path = options.root.join(&id);
        crate::io::rename(&partial, &path).map_err(BackupError::io(&path))?;
        fsutil::sync_dir(&options.root)?;
        Ok(CreateReport {
            path,
            manifest,
            damaged: built.damaged,
            linked_from_previous: built.linked_from_previous,
            previous: previous.map(|p| p.id),
            leftovers_removed: leftovers_removed.clone(),
            secrets_skipped: built.secrets.skipped,
        })
    };
    finish().inspect_err(|_| {
        let _ = crate::io::remove_dir_all(&partial);
    })
}

/// Takes the backup a schema migration needs before it runs, into `<data>/backups/`.
/// Nothing to do for a new database (version 0) or one that is up to date.
pub(crate) fn before_migration(conn: &Connection, data_dir: &Path) -> crate::Result<()> {
    let found = schema::version(conn)?;
    if found == 0 || found >= schema::CURRENT {
        return Ok(());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let id = format!(
        "pre-migration-{found}-to-{}-{}",
        schema::CURRENT,
        super::compact_utc(now)
    );
    let mut options = CreateOptions::new(
        super::default_root(data_dir),
        id,
        Trigger::PreMigration,
        now,
    );
    options.wait_for_lock = true;
    match create(data_dir, &options) {
        Ok(report) => {
            tracing::info!(
                from = found,
                to = schema::CURRENT,
                backup = %report.path.display(),
                messages = report.manifest.messages,
                "backup taken before migrating the database schema"
            );
            Ok(())
        }
        Err(e) => Err(crate::StoreError::Invalid(format!(
            "the database schema must be migrated from version {found} to {}, and the backup \
             taken first failed: {e}. Nothing was changed; fix the cause (free space?) and \
             start again",
            schema::CURRENT
        ))),
    }
}

/// What the snapshot holds.
struct Snapshot {
    schema_version: i64,
    accounts: u64,
    messages: u64,
    /// Every blob it references, with its size.
    blobs: BTreeMap<BlobId, u64>,
}

/// What went into the partial backup directory.
struct Built {
    snapshot: Snapshot,
    sums: Vec<Sum>,
    damaged: Vec<(BlobId, String)>,
    blobs: u64,
    blob_bytes: u64,
    database_bytes: u64,
    bytes: u64,
    linked: u64,
    linked_from_previous: u64,
    copied: u64,
    bytes_copied: u64,
    snapshots: u32,
    archives: Vec<Archive>,
    /// Blobs read and hashed now, and blobs trusted from the previous backup's check.
    hashed: u64,
    trusted: u64,
    secrets: secrets::Collected,
}

impl Built {
    /// Counts one blob that is now in the backup.
    fn count(&mut self, how: &Fetched) {
        match how {
            Fetched::Linked {
                from_previous,
                hashed,
            } => {
                self.linked += 1;
                self.linked_from_previous += u64::from(*from_previous);
                if *hashed {
                    self.hashed += 1;
                } else {
                    self.trusted += 1;
                }
            }
            Fetched::Copied { bytes } => {
                self.copied += 1;
                self.bytes_copied += bytes;
                self.hashed += 1;
            }
            Fetched::Vanished | Fetched::Damaged(_) => {
                unreachable!("only fetched blobs are counted")
            }
        }
    }
}

/// How one blob got into the backup, or why it did not.
#[derive(Debug)]
enum Fetched {
    Linked {
        from_previous: bool,
        /// False when it was trusted from the previous backup's check instead of read.
        hashed: bool,
    },
    Copied {
        bytes: u64,
    },
    /// No file in the live store: deleted since the snapshot, or lost.
    Vanished,
    Damaged(String),
}

struct Sources<'a> {
    live: PathBuf,
    previous: Option<PathBuf>,
    dest: &'a Path,
    copy_blobs: bool,
    /// When the previous backup had checked every blob it holds: the time it began. A blob
    /// file of it not modified since still has the bytes that were checked.
    previous_checked: Option<SystemTime>,
    /// Cleared at the first sign that links cannot work (another file system), so a
    /// backup onto another disk does not try and fail once per blob.
    live_linkable: AtomicBool,
    previous_linkable: AtomicBool,
}

fn build(
    data_dir: &Path,
    partial: &Path,
    previous: Option<&Path>,
    options: &CreateOptions,
) -> Result<Built> {
    let live_db = data_dir.join(DATABASE);
    let db_out = partial.join(DATABASE);
    let blobs_out = partial.join("blobs");
    fsutil::create_private_dir(&blobs_out)?;
    let previous_checked = previous.and_then(checked_at);
    let sources = Sources {
        live: data_dir.join("blobs"),
        previous: previous.map(|p| p.join("blobs")),
        dest: &blobs_out,
        copy_blobs: options.copy_blobs,
        previous_checked,
        live_linkable: AtomicBool::new(true),
        previous_linkable: AtomicBool::new(true),
    };
    let mut staged: HashMap<BlobId, (u64, Fetched)> = HashMap::new();
    let mut damaged: BTreeMap<BlobId, String> = BTreeMap::new();
    let mut made_dirs: HashSet<String> = HashSet::new();
    let done = AtomicU64::new(0);
    // No blob file goes while the snapshots are taken and their blobs fetched (processes
    // that delete wait for nothing: they leave the files to `optimize`).
    let _hold = crate::blob::BlobHold::take(&data_dir.join("blobs"))?;
    let mut snapshots = 0;
    let snapshot = loop {
        snapshots += 1;
        take_snapshot(&live_db, &db_out)?;
        let snapshot = read_snapshot(&db_out)?;

        // Blobs fetched for an earlier snapshot that this one no longer references.
        let unneeded: Vec<BlobId> = staged
            .keys()
            .filter(|id| !snapshot.blobs.contains_key(id))
            .copied()
            .collect();
        for id in unneeded {
            let path = blobs_out.join(fsutil::blob_rel(&id.to_string()));
            crate::io::remove_file(&path).map_err(BackupError::io(&path))?;
            staged.remove(&id);
        }
        damaged.retain(|id, _| snapshot.blobs.contains_key(id));

        let wanted: Vec<(BlobId, u64)> = snapshot
            .blobs
            .iter()
            .filter(|(id, _)| !staged.contains_key(id) && !damaged.contains_key(id))
            .map(|(id, size)| (*id, *size))
            .collect();
        let total: u64 = snapshot.blobs.values().sum();
        for (id, _) in &wanted {
            let dir = id.to_string()[0..2].to_string();
            if made_dirs.insert(dir.clone()) {
                let path = blobs_out.join(&dir);
                if !path.is_dir() {
                    fsutil::create_private_dir(&path)?;
                }
            }
        }
        let progress = options.progress.as_ref();
        let fetched = fsutil::parallel(&wanted, |(id, size), buf| {
            let result = fetch(&sources, id, buf)?;
            let so_far = done.fetch_add(*size, Ordering::Relaxed) + size;
            if let Some(progress) = progress {
                progress(so_far.min(total), total);
            }
            Ok(result)
        })?;

        let mut vanished = Vec::new();
        for ((id, size), fetched) in wanted.into_iter().zip(fetched) {
            match fetched {
                Fetched::Vanished => vanished.push(id),
                Fetched::Damaged(why) => {
                    damaged.insert(id, why);
                }
                fetched => {
                    staged.insert(id, (size, fetched));
                }
            }
        }
        if vanished.is_empty() {
            break snapshot;
        }
        // A blob missing from the live store while the store still references it is
        // damage, not a race: the backup records it and goes on. One that nothing
        // references any more was deleted after the snapshot; the next snapshot agrees.
        let still = still_referenced(&live_db, &vanished)?;
        let mut deleted_since = 0;
        for id in vanished {
            if !still.contains(&id) {
                deleted_since += 1;
                continue;
            }
            // Delivered again just now? Then the file is back.
            let mut buf = vec![0u8; fsutil::BUFFER];
            match fetch(&sources, &id, &mut buf)? {
                Fetched::Vanished => {
                    damaged.insert(id, "file missing in the live store".into());
                }
                Fetched::Damaged(why) => {
                    damaged.insert(id, why);
                }
                fetched => {
                    staged.insert(id, (snapshot.blobs[&id], fetched));
                }
            }
        }
        if deleted_since == 0 {
            break snapshot;
        }
        if snapshots >= MAX_SNAPSHOTS {
            return Err(BackupError::TooBusy {
                attempts: snapshots,
            });
        }
        tracing::debug!(
            deleted_since,
            snapshots,
            "blobs were deleted while the backup ran; taking a new snapshot"
        );
    };

    let check: String = Connection::open_with_flags(&db_out, OpenFlags::SQLITE_OPEN_READ_ONLY)?
        .query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(BackupError::Refused(format!(
            "the live database is damaged ({check}); run `tegami check` and repair it first"
        )));
    }
    let mut buf = vec![0u8; fsutil::BUFFER];
    let (db_hash, database_bytes) =
        fsutil::hash_file(&db_out, &mut buf).map_err(BackupError::io(&db_out))?;
    let mut built = Built {
        snapshot,
        sums: vec![Sum {
            sha256: db_hash,
            path: DATABASE.into(),
        }],
        damaged: Vec::new(),
        blobs: 0,
        blob_bytes: 0,
        database_bytes,
        bytes: database_bytes,
        linked: 0,
        linked_from_previous: 0,
        copied: 0,
        bytes_copied: 0,
        snapshots,
        archives: Vec::new(),
        hashed: 0,
        trusted: 0,
        secrets: secrets::Collected::default(),
    };
    let mut ids: Vec<&BlobId> = staged.keys().collect();
    ids.sort();
    for id in ids {
        let (size, how) = &staged[id];
        let hex = id.to_string();
        built.sums.push(Sum {
            path: format!("blobs/{}", fsutil::blob_rel(&hex)),
            sha256: hex,
        });
        built.blobs += 1;
        built.blob_bytes += size;
        built.count(how);
    }
    built.bytes += built.blob_bytes;
    let archive_damage = add_archives(
        data_dir,
        partial,
        previous,
        previous_checked,
        options,
        &done,
        &mut built,
    )?;
    let mut collected = secrets::collect(data_dir, options.config_file.as_deref(), partial)?;
    built.bytes += collected.bytes;
    built.sums.append(&mut collected.sums);
    built.secrets = collected;
    if !damaged.is_empty() || !archive_damage.is_empty() {
        // Live blobs by id (what `verify` matches against the database), archive blobs by
        // their path in the backup.
        let text: String = damaged
            .iter()
            .map(|(id, why)| format!("{id} {why}\n"))
            .chain(
                archive_damage
                    .iter()
                    .map(|(path, _, why)| format!("{path} {why}\n")),
            )
            .collect();
        let path = partial.join(DAMAGED);
        crate::io::write(&path, text.as_bytes()).map_err(BackupError::io(&path))?;
        built.sums.push(Sum {
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&text)),
            path: DAMAGED.into(),
        });
        built.bytes += text.len() as u64;
        built.damaged = damaged.into_iter().collect();
        built.damaged.extend(
            archive_damage
                .into_iter()
                .map(|(path, id, why)| (id, format!("{path}: {why}"))),
        );
    }
    Ok(built)
}

/// The archives of a data directory: the directories in `archive/` named by a number. One
/// still being built (`<id>.partial`) and anything else found there are not archives.
fn archive_ids(data_dir: &Path) -> Result<Vec<String>> {
    let dir = data_dir.join(ARCHIVES);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::io(&dir)(e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(BackupError::io(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) && entry.path().is_dir() {
            ids.push(name);
        }
    }
    ids.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
    Ok(ids)
}

/// Adds every archive to the backup: `archive.db` by `VACUUM INTO`, its blobs as the live
/// store's are (linked from the previous backup or the archive, else copied and checked).
/// Returns the archive blobs that could not be had intact, by path in the backup.
///
/// It runs after the snapshot, never before: an archive gets its final name before its
/// messages leave the live database, so each message is in the snapshot, in an archive
/// found here, or in both, and never in neither.
fn add_archives(
    data_dir: &Path,
    partial: &Path,
    previous: Option<&Path>,
    previous_checked: Option<SystemTime>,
    options: &CreateOptions,
    done: &AtomicU64,
    built: &mut Built,
) -> Result<Vec<(String, BlobId, String)>> {
    let mut archives = Vec::new();
    for id in archive_ids(data_dir)? {
        let blobs_dir = data_dir.join(ARCHIVES).join(&id).join("blobs");
        let blobs: Vec<(BlobId, u64)> = if blobs_dir.is_dir() {
            crate::blob::list(&blobs_dir)?
                .into_iter()
                .map(|(blob, size, _)| (blob, size))
                .collect()
        } else {
            Vec::new()
        };
        archives.push((id, blobs));
    }
    let total = done.load(Ordering::Relaxed)
        + archives
            .iter()
            .flat_map(|(_, blobs)| blobs)
            .map(|(_, size)| size)
            .sum::<u64>();
    let mut damage = Vec::new();
    let mut buf = vec![0u8; fsutil::BUFFER];
    for (id, blobs) in archives {
        let rel = format!("{ARCHIVES}/{id}");
        let (from, to) = (data_dir.join(&rel), partial.join(&rel));
        let blobs_out = to.join("blobs");
        fsutil::create_private_dir_all(&blobs_out)?;
        // Read-only: the archive may take its last write (its state) while this reads,
        // and VACUUM INTO copies one consistent state of it, full-text indexes included.
        let db_out = to.join(ARCHIVE_DATABASE);
        let conn = open_connection(&from.join(ARCHIVE_DATABASE), Open::Read)?;
        vacuum_into(&conn, &db_out)?;
        drop(conn);
        let (hash, database_bytes) =
            fsutil::hash_file(&db_out, &mut buf).map_err(BackupError::io(&db_out))?;
        built.sums.push(Sum {
            sha256: hash,
            path: format!("{rel}/{ARCHIVE_DATABASE}"),
        });
        built.bytes += database_bytes;

        let prefixes: HashSet<String> = blobs
            .iter()
            .map(|(blob, _)| blob.to_string()[0..2].to_string())
            .collect();
        for prefix in prefixes {
            fsutil::create_private_dir(&blobs_out.join(prefix))?;
        }
        let sources = Sources {
            live: from.join("blobs"),
            previous: previous.map(|p| p.join(&rel).join("blobs")),
            dest: &blobs_out,
            copy_blobs: options.copy_blobs,
            previous_checked,
            live_linkable: AtomicBool::new(true),
            previous_linkable: AtomicBool::new(true),
        };
        let progress = options.progress.as_ref();
        let fetched = fsutil::parallel(&blobs, |(blob, size), buf| {
            let result = fetch(&sources, blob, buf)?;
            let so_far = done.fetch_add(*size, Ordering::Relaxed) + size;
            if let Some(progress) = progress {
                progress(so_far.min(total), total);
            }
            Ok(result)
        })?;
        let mut archive = Archive {
            id,
            blobs: 0,
            blob_bytes: 0,
            database_bytes,
        };
        for ((blob, size), how) in blobs.into_iter().zip(fetched) {
            let hex = blob.to_string();
            let path = format!("{rel}/blobs/{}", fsutil::blob_rel(&hex));
            match how {
                // An archive's blobs never change: one gone is damage, not a race.
                Fetched::Vanished => {
                    damage.push((path, blob, "file missing in the archive".into()))
                }
                Fetched::Damaged(why) => damage.push((path, blob, why)),
                how => {
                    built.count(&how);
                    built.sums.push(Sum { sha256: hex, path });
                    archive.blobs += 1;
                    archive.blob_bytes += size;
                    built.bytes += size;
                }
            }
        }
        built.archives.push(archive);
    }
    Ok(damage)
}

/// When the backup in `dir` says it checked every blob it holds: the time it began to.
fn checked_at(dir: &Path) -> Option<SystemTime> {
    let since = manifest::read(dir).ok()?.checked?.since_unix;
    UNIX_EPOCH.checked_add(std::time::Duration::from_secs(u64::try_from(since).ok()?))
}

/// Brings one blob into the backup, checked against its name: a link from the previous
/// backup (read and hashed unless that backup had checked it and it has not been written
/// since), else a link from the live store (read and hashed), else a streamed copy
/// (hashed as it goes). A blob whose bytes do not match is never kept: it is reported
/// damaged.
///
/// `--copy-blobs` never links a file that is the live store's own, even through the
/// previous backup: the previous backup may have linked it.
fn fetch(sources: &Sources<'_>, id: &BlobId, buf: &mut [u8]) -> Result<Fetched> {
    let hex = id.to_string();
    let rel = fsutil::blob_rel(&hex);
    let dest = sources.dest.join(&rel);
    let live = sources.live.join(&rel);
    if let Some(previous) = &sources.previous
        && sources.previous_linkable.load(Ordering::Relaxed)
    {
        let from = previous.join(&rel);
        match fs::metadata(&from) {
            Ok(meta) => {
                let shares_live = sources.copy_blobs
                    && fs::metadata(&live)
                        .is_ok_and(|l| (l.dev(), l.ino()) == (meta.dev(), meta.ino()));
                let trusted = sources
                    .previous_checked
                    .zip(meta.modified().ok())
                    .is_some_and(|(checked, modified)| modified < checked);
                if !shares_live {
                    match crate::io::hard_link(&from, &dest) {
                        Ok(()) if trusted => {
                            return Ok(Fetched::Linked {
                                from_previous: true,
                                hashed: false,
                            });
                        }
                        Ok(()) => {
                            if matches!(fsutil::hash_file(&dest, buf), Ok((hash, _)) if hash == hex)
                            {
                                return Ok(Fetched::Linked {
                                    from_previous: true,
                                    hashed: true,
                                });
                            }
                            // The previous backup's copy is damaged; the live store may
                            // still have the blob intact.
                            crate::io::remove_file(&dest).map_err(BackupError::io(&dest))?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) if fsutil::link_impossible(&e) => {
                            if e.kind() == io::ErrorKind::CrossesDevices {
                                sources.previous_linkable.store(false, Ordering::Relaxed);
                            }
                        }
                        Err(e) => return Err(BackupError::io(dest)(e)),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io(from)(e)),
        }
    }
    if !sources.copy_blobs && sources.live_linkable.load(Ordering::Relaxed) {
        match crate::io::hard_link(&live, &dest) {
            Ok(()) => {
                return match fsutil::hash_file(&dest, buf) {
                    Ok((hash, _)) if hash == hex => Ok(Fetched::Linked {
                        from_previous: false,
                        hashed: true,
                    }),
                    checked => {
                        crate::io::remove_file(&dest).map_err(BackupError::io(&dest))?;
                        Ok(Fetched::Damaged(match checked {
                            Ok((_, bytes)) => {
                                format!("content does not match its hash ({bytes} bytes read)")
                            }
                            Err(e) => format!("cannot be read: {e}"),
                        }))
                    }
                };
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The source is what is missing, unless the destination directory is.
                return if dest.parent().is_some_and(Path::is_dir) {
                    Ok(Fetched::Vanished)
                } else {
                    Err(BackupError::io(dest)(e))
                };
            }
            Err(e) if fsutil::link_impossible(&e) => {
                if e.kind() == io::ErrorKind::CrossesDevices {
                    sources.live_linkable.store(false, Ordering::Relaxed);
                }
            }
            Err(e) => return Err(BackupError::io(dest)(e)),
        }
    }
    // The live file's mode, so a restore on this file system can link the copy back.
    match fsutil::copy_hashed(&live, &dest, None, buf) {
        Ok((hash, bytes)) if hash == hex => Ok(Fetched::Copied { bytes }),
        Ok((_, bytes)) => {
            crate::io::remove_file(&dest).map_err(BackupError::io(&dest))?;
            Ok(Fetched::Damaged(format!(
                "content does not match its hash ({bytes} bytes read)"
            )))
        }
        Err(CopyError::Source(e)) if e.kind() == io::ErrorKind::NotFound => {
            let _ = crate::io::remove_file(&dest);
            Ok(Fetched::Vanished)
        }
        Err(CopyError::Source(e)) => {
            let _ = crate::io::remove_file(&dest);
            Ok(Fetched::Damaged(format!("cannot be read: {e}")))
        }
        Err(CopyError::Destination(e)) => Err(BackupError::io(dest)(e)),
    }
}

/// A consistent copy of the live database, by `VACUUM INTO` on a read transaction: it
/// never blocks a writer and, unlike the online backup API, never restarts when one
/// commits. Its output is not fsynced; the caller flushes the whole backup at once.
fn take_snapshot(live_db: &Path, out: &Path) -> Result<()> {
    // A reader may create the WAL index files; made by root for a store that runs as
    // another user, they would keep the server from opening its database.
    let side_files: Vec<PathBuf> = ["-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = live_db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .filter(|path| !path.exists())
        .collect();
    let conn = open_connection(live_db, Open::Read)?;
    vacuum_into(&conn, out)?;
    drop(conn);
    if let Ok(owner) = fs::metadata(live_db) {
        for path in side_files.iter().filter(|p| p.exists()) {
            give(path, owner.uid(), owner.gid());
        }
    }
    Ok(())
}

/// Writes a consistent copy of the database `conn` reads to `out` (replacing one left by
/// an earlier snapshot), readable by its owner only.
fn vacuum_into(conn: &Connection, out: &Path) -> Result<()> {
    match crate::io::remove_file(out) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(BackupError::io(out)(e)),
    }
    let target = out.to_str().ok_or_else(|| {
        BackupError::Refused(format!(
            "the backup path {} is not UTF-8; choose another directory",
            out.display()
        ))
    })?;
    conn.execute("VACUUM INTO ?1", [target])?;
    fs::set_permissions(out, fs::Permissions::from_mode(0o600)).map_err(BackupError::io(out))?;
    Ok(())
}

fn read_snapshot(path: &Path) -> Result<Snapshot> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let schema_version = schema::version(&conn)?;
    let mut blobs = BTreeMap::new();
    if table_exists(&conn, "blobs")? {
        let mut stmt = conn.prepare("SELECT hash, size FROM blobs")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, u64>(1)?)))? {
            let (hash, size) = row?;
            if let Some(id) = BlobId::from_slice(&hash) {
                blobs.insert(id, size);
            }
        }
    }
    if table_exists(&conn, "messages")? {
        // A row without its count in `blobs` is a fault the checker reports; its body is
        // still mail and goes into the backup.
        let mut stmt = conn.prepare(
            "SELECT blob_hash, max(size) FROM messages m
             WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.hash = m.blob_hash)
             GROUP BY blob_hash",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, u64>(1)?)))? {
            let (hash, size) = row?;
            if let Some(id) = BlobId::from_slice(&hash) {
                blobs.entry(id).or_insert(size);
            }
        }
    }
    Ok(Snapshot {
        schema_version,
        accounts: count(&conn, "accounts")?,
        messages: count(&conn, "messages")?,
        blobs,
    })
}

fn table_exists(conn: &Connection, table: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn count(conn: &Connection, table: &str) -> Result<u64> {
    if !table_exists(conn, table)? {
        return Ok(0);
    }
    Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
}

/// Which of `ids` the live store references now.
fn still_referenced(live_db: &Path, ids: &[BlobId]) -> Result<HashSet<BlobId>> {
    let conn = open_connection(live_db, Open::Read)?;
    let mut stmt = conn.prepare(
        "SELECT EXISTS (SELECT 1 FROM blobs WHERE hash = ?1)
             OR EXISTS (SELECT 1 FROM messages WHERE blob_hash = ?1)",
    )?;
    let mut found = HashSet::new();
    for id in ids {
        if stmt.query_row([&id.0[..]], |r| r.get::<_, bool>(0))? {
            found.insert(*id);
        }
    }
    Ok(found)
}

/// `id`, or `id-2`, `id-3` ... when a backup by that name exists.
fn unique_id(root: &Path, wanted: &str) -> String {
    let taken = |id: &str| root.join(id).exists() || root.join(format!(".{id}.partial")).exists();
    if !taken(wanted) {
        return wanted.to_string();
    }
    (2..)
        .map(|n| format!("{wanted}-{n}"))
        .find(|id| !taken(id))
        .expect("some suffix is free")
}

/// Hands a file to an owner; only root can, and only root needs to. Anyone else keeps
/// what they create, which is what they want.
fn give(path: &Path, uid: u32, gid: u32) {
    if let Err(e) = std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        && e.kind() != io::ErrorKind::PermissionDenied
    {
        tracing::debug!(error = %e, path = %path.display(), "cannot change the owner");
    }
}
