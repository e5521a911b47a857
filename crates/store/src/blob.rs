//! Content-addressed blob files: message bodies named by their SHA-256, written once.
//!
//! Commit protocol for one blob: write a temporary file in `blobs/tmp/`, fsync it, rename it
//! to `blobs/ab/<hash>`, fsync the directory. A name under `ab/` therefore always holds
//! complete, durable bytes, so finding the name is proof enough to share it (deduplication).
//!
//! One level of 256 directories, as git does: a million messages make about 4,000 names per
//! directory, which every file system indexes well, while a second level would give small
//! stores a directory (a 4 KiB block and an fsync) for almost every message.
//! Assumed of the disk: fsync means durable, and rename within one file system is atomic.

use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::{Result, StoreError, io};

/// The SHA-256 of a blob's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    pub fn of(data: &[u8]) -> BlobId {
        BlobId(Sha256::digest(data).into())
    }

    pub fn from_hex(text: &str) -> Option<BlobId> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(text, &mut id).ok()?;
        Some(BlobId(id))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<BlobId> {
        Some(BlobId(bytes.try_into().ok()?))
    }
}

impl BlobId {
    /// Where the blob lives below a blob root (`ab/<hash>`), in the store and in backups.
    pub fn relative_path(&self) -> String {
        let hex = self.to_string();
        format!("{}/{hex}", &hex[0..2])
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

/// What [`BlobStore::verify`] found in a blob file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The bytes hash to the blob's name.
    Intact { size: u64 },
    /// No file by that name.
    Missing,
    /// The bytes hash to something else: the file was damaged after it was written.
    Corrupt { size: u64, found: BlobId },
    /// The file exists but could not be read (permissions, an I/O error of the disk).
    Unreadable(String),
}

/// The `blobs/` directory of a data directory.
pub struct BlobStore {
    root: PathBuf,
    tmp: PathBuf,
    next_tmp: AtomicU64,
}

impl BlobStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<BlobStore> {
        let root = root.into();
        let tmp = root.join("tmp");
        io::create_dir_all(&tmp, None).map_err(StoreError::io(&tmp))?;
        // Temporary files are never referenced, so any left by a crash are garbage. Young ones
        // may belong to a delivery in flight in another process (the CLI opens the store
        // beside a running server), so only files older than an hour are removed.
        let stale = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for entry in fs::read_dir(&tmp).map_err(StoreError::io(&tmp))?.flatten() {
            let modified = entry.metadata().and_then(|m| m.modified());
            if modified.is_ok_and(|m| m < stale) {
                let _ = io::remove_file(&entry.path());
            }
        }
        sync_dir(&root)?;
        Ok(BlobStore {
            root,
            tmp,
            next_tmp: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, id: &BlobId) -> PathBuf {
        self.root.join(id.relative_path())
    }

    pub fn exists(&self, id: &BlobId) -> bool {
        self.path(id).exists()
    }

    /// Writes `data` durably and returns its id. A blob already present is not written again.
    pub fn put(&self, data: &[u8]) -> Result<BlobId> {
        let id = BlobId::of(data);
        self.put_with_id(&id, data)?;
        Ok(id)
    }

    pub(crate) fn put_with_id(&self, id: &BlobId, data: &[u8]) -> Result<()> {
        self.write(id, data, true)
    }

    /// Writes a blob without flushing it: only for a batch that [`BlobStore::sync_all`]
    /// makes durable, all at once, before anything references it.
    pub(crate) fn put_unsynced(&self, id: &BlobId, data: &[u8]) -> Result<()> {
        self.write(id, data, false)
    }

    /// Flushes everything written to the blobs' file system (one `syncfs`).
    pub(crate) fn sync_all(&self) -> Result<()> {
        io::syncfs(&self.root).map_err(StoreError::io(&self.root))
    }

    fn write(&self, id: &BlobId, data: &[u8], durable: bool) -> Result<()> {
        let path = self.path(id);
        if path.exists() {
            return Ok(());
        }
        let dir = path.parent().expect("blob paths have a parent");
        self.ensure_dir(dir)?;
        let tmp = self.tmp.join(format!(
            "{id}.{}.{}",
            std::process::id(),
            self.next_tmp.fetch_add(1, Ordering::Relaxed)
        ));
        let written =
            io::write_new(&tmp, data, None, durable).and_then(|()| io::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = io::remove_file(&tmp);
            return Err(StoreError::Io { path, source: e });
        }
        if durable { sync_dir(dir) } else { Ok(()) }
    }

    /// Reads a blob and checks that its bytes still hash to its name.
    pub fn get(&self, id: &BlobId) -> Result<Vec<u8>> {
        let path = self.path(id);
        let data = fs::read(&path).map_err(StoreError::io(&path))?;
        if BlobId::of(&data) != *id {
            return Err(StoreError::BlobCorrupt {
                blob: id.to_string(),
                detail: format!("content hash differs ({} bytes read)", data.len()),
            });
        }
        Ok(data)
    }

    /// Reads a blob file in pieces, hashing as it goes, and says what state it is in.
    ///
    /// Unlike [`BlobStore::get`] this never holds the whole body in memory, so the checker
    /// can verify many large blobs in parallel.
    pub fn verify(&self, id: &BlobId) -> Verdict {
        let path = self.path(id);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Verdict::Missing,
            Err(e) => return Verdict::Unreadable(e.to_string()),
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Verdict::Unreadable(e.to_string()),
            }
        }
        let found = BlobId(hasher.finalize().into());
        if found == *id {
            Verdict::Intact { size }
        } else {
            Verdict::Corrupt { size, found }
        }
    }

    /// Moves a damaged blob file into `dir` (as `dir/<hash>`, or `<hash>.N` when an earlier
    /// copy is already there) so its bytes stay for forensics while no reader can take them
    /// for good mail. `Ok(None)` when there was no file to move.
    pub(crate) fn quarantine(&self, id: &BlobId, dir: &Path) -> Result<Option<PathBuf>> {
        let from = self.path(id);
        if !from.exists() {
            return Ok(None);
        }
        io::create_dir_all(dir, None).map_err(StoreError::io(dir))?;
        let name = id.to_string();
        let mut to = dir.join(&name);
        let mut n = 1;
        while to.exists() {
            to = dir.join(format!("{name}.{n}"));
            n += 1;
        }
        match io::rename(&from, &to) {
            Ok(()) => {}
            // Quarantine on another file system (a mount point): copy, make durable, remove.
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                io::copy_new(&from, &to, None)
                    .and_then(|_| io::sync_path(&to))
                    .map_err(StoreError::io(&to))?;
                io::remove_file(&from).map_err(StoreError::io(&from))?;
            }
            Err(e) => {
                return Err(StoreError::Io {
                    path: from,
                    source: e,
                });
            }
        }
        sync_dir(dir)?;
        sync_dir(from.parent().expect("blob paths have a parent"))?;
        Ok(Some(to))
    }

    /// Removes a blob file; called only after the metadata that referenced it is gone.
    pub(crate) fn remove(&self, id: &BlobId) -> Result<()> {
        let path = self.path(id);
        match io::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Every blob file present, with its size and modification time.
    pub fn list(&self) -> Result<Vec<(BlobId, u64, std::time::SystemTime)>> {
        list(&self.root)
    }

    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        io::create_dir_all(dir, None).map_err(StoreError::io(dir))?;
        // A new directory entry is durable only once its parent directory is synced.
        sync_dir(dir.parent().expect("blob dirs have a parent"))
    }
}

/// Every blob file below `root` (a store's `blobs/` or an archive's), with its size and
/// modification time. Only reads: an archive must not be written to.
pub(crate) fn list(root: &Path) -> Result<Vec<(BlobId, u64, std::time::SystemTime)>> {
    let mut out = Vec::new();
    for a in read_dir_sorted(root)? {
        if a.file_name().is_none_or(|n| n.len() != 2) || !a.is_dir() {
            continue;
        }
        for file in read_dir_sorted(&a)? {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(id) = BlobId::from_hex(name) {
                let meta = match fs::metadata(&file) {
                    Ok(meta) => meta,
                    // Deleted since the directory was read: a writer released it after a
                    // commit (an expunge, an archive's move). Not there is not damage.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(StoreError::Io {
                            path: file,
                            source: e,
                        });
                    }
                };
                out.push((
                    id,
                    meta.len(),
                    meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                ));
            }
        }
    }
    Ok(out)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(StoreError::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    Ok(paths)
}

/// A backup's hold on a blobs directory: while any is held, no process deletes the file of
/// a blob that lost its last reference (it stays as an orphan that `optimize` removes
/// later), so a backup never finds a file gone that its snapshot names. A shared flock on
/// `blobs/.hold`: several backups may hold it at once, and the kernel lets go however the
/// process ends.
pub(crate) struct BlobHold(#[allow(dead_code)] File);

impl BlobHold {
    /// Waits while a deletion is under way, then holds.
    pub(crate) fn take(blobs: &Path) -> Result<BlobHold> {
        let file = hold_file(blobs)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockShared).map_err(|e| {
            StoreError::Io {
                path: blobs.join(".hold"),
                source: e.into(),
            }
        })?;
        Ok(BlobHold(file))
    }

    /// The right to delete blob files now, or `None` while a backup holds them.
    pub(crate) fn for_deletion(blobs: &Path) -> Result<Option<File>> {
        let file = hold_file(blobs)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(file)),
            Err(_) => Ok(None),
        }
    }
}

fn hold_file(blobs: &Path) -> Result<File> {
    let path = blobs.join(".hold");
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StoreError::io(&path))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    io::sync_dir(dir).map_err(StoreError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_idempotent_and_get_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path().join("blobs")).unwrap();
        let a = blobs.put(b"hello").unwrap();
        let b = blobs.put(b"hello").unwrap();
        assert_eq!(a, b);
        assert_eq!(blobs.get(&a).unwrap(), b"hello");
        assert_eq!(blobs.list().unwrap().len(), 1);
        assert!(blobs.path(&a).ends_with(format!("2c/{a}")));

        std::fs::write(blobs.path(&a), b"hellO").unwrap();
        assert!(matches!(blobs.get(&a), Err(StoreError::BlobCorrupt { .. })));
    }

    #[test]
    fn verify_tells_intact_missing_and_corrupt_apart() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path().join("blobs")).unwrap();
        let id = blobs.put(b"hello").unwrap();
        assert_eq!(blobs.verify(&id), Verdict::Intact { size: 5 });
        fs::write(blobs.path(&id), b"hellO").unwrap();
        assert_eq!(
            blobs.verify(&id),
            Verdict::Corrupt {
                size: 5,
                found: BlobId::of(b"hellO")
            }
        );
        fs::remove_file(blobs.path(&id)).unwrap();
        assert_eq!(blobs.verify(&id), Verdict::Missing);
    }

    #[test]
    fn quarantine_keeps_every_damaged_copy() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path().join("blobs")).unwrap();
        let quarantine = dir.path().join("quarantine");
        let id = blobs.put(b"hello").unwrap();
        fs::write(blobs.path(&id), b"hellO").unwrap();
        let first = blobs.quarantine(&id, &quarantine).unwrap().unwrap();
        assert_eq!(first, quarantine.join(id.to_string()));
        assert!(!blobs.exists(&id));
        assert_eq!(blobs.quarantine(&id, &quarantine).unwrap(), None);

        fs::write(blobs.path(&id), b"jello").unwrap();
        let second = blobs.quarantine(&id, &quarantine).unwrap().unwrap();
        assert_eq!(second, quarantine.join(format!("{id}.1")));
        assert_eq!(fs::read(first).unwrap(), b"hellO");
        assert_eq!(fs::read(second).unwrap(), b"jello");
    }

    #[test]
    fn leftover_temporary_files_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        BlobStore::open(dir.path()).unwrap();
        let old = dir.path().join("tmp/half-written");
        let young = dir.path().join("tmp/in-flight");
        std::fs::write(&old, b"xx").unwrap();
        std::fs::write(&young, b"xx").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        BlobStore::open(dir.path()).unwrap();
        assert!(!old.exists());
        assert!(young.exists());
    }
}
