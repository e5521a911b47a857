//! Orphan blob files (message bodies that no row names): which are proven garbage, which are
//! quarantined, and how quarantined ones come back as mail.
//!
//! The files alone cannot tell garbage from lost mail. Garbage is the file of a blob whose
//! last reference a commit removed, when the writer could not delete it at once because a
//! backup held the blobs (`blob::BlobHold`): the writer then writes the hash to
//! `blobs/.released`, under the write lock, so such a file carries proof. Any other orphan
//! old enough not to be a delivery in flight may be the only copy of an acknowledged
//! message whose row was lost (a write-ahead log cut short by a crash, a database restored
//! from an older backup than the blobs). The store never deletes those: the repair and the
//! optimisation move them to `quarantine/orphans/`, every check counts them until the
//! operator has decided, and [`SqliteStore::recover_orphans`] turns them back into mail.

use crate::prelude::*;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use super::SqliteStore;
use super::check::{known_blobs, scan_orphans};
use super::writer::WriteCtx;
use crate::blob::sync_dir;
use crate::{BlobId, Flags, Result, StoreError};

/// Where unreferenced bodies wait for the operator, below the data directory.
pub const ORPHANS_DIR: &str = "quarantine/orphans";

/// The hashes a commit released whose files a backup kept, one hex hash a line.
const RELEASED: &str = ".released";

/// The blobs the writer's current batch releases, written (not synced) before its commit
/// and removed once their files are deleted after it. Another process's check or
/// optimisation reads it under the write lock: in the moment between that commit and those
/// deletes, a released file is not mistaken for lost mail. A record a crash leaves names
/// blobs whose release either committed (garbage) or did not (a row still names them, so
/// they are no orphans).
const RELEASING: &str = ".releasing";

/// The largest quarantined file taken back as a message: far above any message size the
/// server accepts, so only a file that is no mail body at all is left alone.
const MAX_RECOVERED: u64 = 1 << 30;

/// Records that a commit released these blobs while a backup kept their files, so the
/// optimisation may delete them later. The writer calls this under the write lock. It is
/// not synced: a record lost in a crash only makes the file look like possible lost mail,
/// which is quarantined instead of deleted, the safe side.
pub(super) fn record_released(blobs_root: &Path, ids: &[BlobId]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let path = blobs_root.join(RELEASED);
    let mut text = String::with_capacity(ids.len() * 65);
    for id in ids {
        text.push_str(&id.to_string());
        text.push('\n');
    }
    crate::io::create(&path, crate::io::Create::Append, None)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(StoreError::io(&path))
}

/// Names the blobs the batch about to commit releases (see [`RELEASING`]).
pub(super) fn record_releasing(blobs_root: &Path, ids: &[BlobId]) -> Result<()> {
    let path = blobs_root.join(RELEASING);
    let mut text = String::with_capacity(ids.len() * 65);
    for id in ids {
        text.push_str(&id.to_string());
        text.push('\n');
    }
    crate::io::write(&path, text.as_bytes()).map_err(StoreError::io(&path))
}

/// The batch's released files are deleted (or recorded as released): forget its record.
pub(super) fn releasing_done(blobs_root: &Path) {
    let path = blobs_root.join(RELEASING);
    if let Err(e) = crate::io::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, path = %path.display(), "cannot remove the record of released blobs");
    }
}

/// The blobs a commit released while a backup kept their files.
pub(super) fn released(blobs_root: &Path) -> HashSet<BlobId> {
    read_ids(&blobs_root.join(RELEASED))
}

/// The blobs the writer's batch (perhaps another process's) releases right now.
fn releasing(blobs_root: &Path) -> HashSet<BlobId> {
    read_ids(&blobs_root.join(RELEASING))
}

fn read_ids(path: &Path) -> HashSet<BlobId> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| BlobId::from_hex(line.trim()))
        .collect()
}

/// Replaces the record of released blobs with `keep` (an empty record is removed).
fn rewrite_released(blobs_root: &Path, keep: &HashSet<BlobId>) -> Result<()> {
    let path = blobs_root.join(RELEASED);
    if keep.is_empty() {
        return match crate::io::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(&path)(e)),
            _ => Ok(()),
        };
    }
    let mut text = String::new();
    for id in keep {
        text.push_str(&id.to_string());
        text.push('\n');
    }
    let tmp = blobs_root.join(".released.new");
    crate::io::write(&tmp, text.as_bytes())
        .and_then(|()| crate::io::rename(&tmp, &path))
        .map_err(StoreError::io(&path))
}

/// How many files wait in `quarantine/orphans/`.
pub(super) fn waiting(data_dir: &Path) -> u64 {
    fs::read_dir(data_dir.join(ORPHANS_DIR)).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .count() as u64
    })
}

/// True when a row names the blob: a message or a reference count.
fn referenced(conn: &Connection, id: &BlobId) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM blobs WHERE hash = ?1)
                 OR EXISTS (SELECT 1 FROM messages WHERE blob_hash = ?1)",
        )?
        .query_row([&id.0[..]], |r| r.get(0))?)
}

/// True when nothing names the blob now and its file is still there, asked in the writer:
/// a commit deletes the files it released only after it commits (and a blob released
/// earlier in the writer's current batch is still on its way out), so only the writer sees
/// a released file and an orphan apart. A read beside it took the last batch of an
/// archive's move, between its commit and its deletes, for 25 orphans.
fn unnamed(ctx: &WriteCtx<'_>, id: &BlobId) -> Result<bool> {
    Ok(!ctx.unreferenced.contains(id) && !referenced(ctx.conn, id)? && ctx.blobs.exists(id))
}

/// The candidates that no row names now and whose file is still there: a file named by no
/// row of an earlier snapshot may have been released by a commit and deleted by its writer
/// since, or claimed by a delivery.
pub(super) fn still_orphans(
    store: &SqliteStore,
    candidates: Vec<(BlobId, u64)>,
) -> Result<StillOrphans> {
    let root = store.blobs.root().to_path_buf();
    if candidates.is_empty() {
        return Ok(StillOrphans::default());
    }
    store.write(move |ctx| {
        let mut files = Vec::new();
        for (id, size) in candidates {
            if unnamed(ctx, &id)? {
                files.push((id, size));
            }
        }
        let mut released = released(&root);
        released.extend(releasing(&root));
        Ok(StillOrphans { files, released })
    })
}

/// What [`still_orphans`] found, in one turn of the writer.
#[derive(Default)]
pub(super) struct StillOrphans {
    /// Files no row names, with their sizes.
    pub files: Vec<(BlobId, u64)>,
    /// The blobs a commit released (their files' deletion is only late): no lost mail.
    pub released: HashSet<BlobId>,
}

/// What [`sweep`] did with the orphans it was given.
#[derive(Debug, Default)]
pub(super) struct Swept {
    /// Released by a commit: deleted (or, while a backup holds the blobs, recorded again).
    pub removed: Vec<(BlobId, u64)>,
    /// Possibly lost mail: moved to `quarantine/orphans/`, with where each went.
    pub quarantined: Vec<(BlobId, PathBuf)>,
}

/// Deals with old orphan files under the write lock, so no delivery can claim one meanwhile
/// (a delivery that finds its blob's file gone writes it again): a file whose release by a
/// commit is recorded goes the way of every released blob, after the commit; any other is
/// moved to `quarantine/orphans/`, never deleted. A file a row names again is left alone.
pub(super) fn sweep(store: &SqliteStore, candidates: Vec<(BlobId, u64)>) -> Result<Swept> {
    let orphans_dir = store.data_dir.join(ORPHANS_DIR);
    let root = store.blobs.root().to_path_buf();
    let has_record = root.join(RELEASED).exists();
    if candidates.is_empty() && !has_record {
        return Ok(Swept::default());
    }
    store.write(move |ctx| {
        let released = released(&root);
        let releasing = releasing(&root);
        let mut swept = Swept::default();
        for (id, size) in candidates {
            if !unnamed(ctx, &id)? {
                continue;
            }
            if released.contains(&id) || releasing.contains(&id) {
                ctx.unreferenced.push(id);
                swept.removed.push((id, size));
            } else if let Some(to) = ctx.blobs.quarantine(&id, &orphans_dir)? {
                swept.quarantined.push((id, to));
            }
        }
        // Keep only records of files still there and still unused: one that a delivery
        // claimed again must not stand as proof if that delivery's row is lost later.
        let handed_on: HashSet<BlobId> = swept.removed.iter().map(|(id, _)| *id).collect();
        let mut keep = HashSet::new();
        for id in released {
            if !handed_on.contains(&id) && ctx.blobs.exists(&id) && !referenced(ctx.conn, &id)? {
                keep.insert(id);
            }
        }
        rewrite_released(&root, &keep)?;
        Ok(swept)
    })
}

/// What [`SqliteStore::recover_orphans`] did.
#[derive(Debug, Clone, Default)]
pub struct OrphanRecovery {
    /// The account and mailbox the bodies went to.
    pub account: String,
    pub mailbox: String,
    /// Old orphans found in `blobs/` and moved to `quarantine/orphans/` first.
    pub quarantined: u64,
    /// Bodies appended as messages, and their bytes.
    pub recovered: u64,
    pub bytes: u64,
    /// Bodies the mailbox already held (a run interrupted after the append): not doubled.
    pub already_present: u64,
    /// Orphans younger than the in-flight margin, left alone: perhaps a delivery in flight.
    pub young: u64,
    /// Files left in `quarantine/orphans/`, each with why.
    pub left: Vec<String>,
}

impl SqliteStore {
    /// Turns every unreferenced message body back into mail: the old orphans in `blobs/`
    /// (those a commit released excepted, as garbage) are quarantined first, then each file
    /// of `quarantine/orphans/` is appended, unread and dated when its file was written, to
    /// `mailbox` of `account` (created if missing), and removed from the quarantine once its
    /// message is durable. Safe to run again after an interruption: a body the mailbox
    /// already holds is not appended twice.
    pub fn recover_orphans(&self, account: &str, mailbox: &str) -> Result<OrphanRecovery> {
        let address = account.to_lowercase();
        let account = self
            .accounts()?
            .into_iter()
            .find(|a| a.address == address)
            .ok_or_else(|| StoreError::NotFound {
                what: format!("account {address}"),
            })?;
        let mut report = OrphanRecovery {
            account: account.address.clone(),
            mailbox: mailbox.to_string(),
            ..OrphanRecovery::default()
        };

        let listed = SystemTime::now();
        let files = self.blobs.list()?;
        let known = self.read(known_blobs)?;
        let orphans = scan_orphans(&files, listed, |id| known.contains(id));
        report.young = orphans.young;
        report.quarantined = sweep(self, orphans.old)?.quarantined.len() as u64;

        let dir = self.data_dir.join(ORPHANS_DIR);
        let mut names: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StoreError::io(&dir)(e)),
        };
        names.sort();
        if names.is_empty() {
            return Ok(report);
        }
        let target = match self.mailbox(account.id, mailbox) {
            Ok(found) => found,
            Err(StoreError::NotFound { .. }) => self.create_mailbox(account.id, mailbox)?,
            Err(e) => return Err(e),
        };
        let mut present: HashSet<BlobId> = self
            .messages(target.id)?
            .into_iter()
            .map(|m| m.blob)
            .collect();
        for path in names {
            let shown = path.display().to_string();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // `quarantine` names a second copy of one hash `<hash>.1`.
            let Some(id) = BlobId::from_hex(name.split('.').next().unwrap_or("")) else {
                report
                    .left
                    .push(format!("{shown}: not named by a blob hash"));
                continue;
            };
            let meta = fs::metadata(&path).map_err(StoreError::io(&path))?;
            if !meta.is_file() || meta.len() > MAX_RECOVERED {
                report.left.push(format!(
                    "{shown}: not a message body ({} bytes)",
                    meta.len()
                ));
                continue;
            }
            let bytes = fs::read(&path).map_err(StoreError::io(&path))?;
            if BlobId::of(&bytes) != id {
                report.left.push(format!(
                    "{shown}: its bytes do not match its name (damaged); kept for inspection"
                ));
                continue;
            }
            if present.contains(&id) {
                report.already_present += 1;
            } else {
                let written = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64);
                self.append(target.id, &bytes, Flags::default(), &[], written)?;
                present.insert(id);
                report.recovered += 1;
                report.bytes += bytes.len() as u64;
            }
            crate::io::remove_file(&path).map_err(StoreError::io(&path))?;
        }
        sync_dir(&dir)?;
        Ok(report)
    }
}
