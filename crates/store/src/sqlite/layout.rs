//! The blob layout as a migration step: stores written before commit 2d71e23 keep their
//! bodies in two levels of directories (`blobs/ab/cd/<hash>`); today's code reads one
//! (`blobs/ab/<hash>`). Without this step such a store opens, migrates its database, and
//! then cannot read a single message.
//!
//! It runs at every open before the pre-migration backup, so that backup (which takes blobs
//! from the new paths) holds every body. It is:
//! - durable: files are renamed within `blobs/`, and each directory that lost or gained a
//!   name is fsynced before the step counts as done;
//! - resumable: a rename is atomic, so a kill leaves every blob under at least one of its
//!   two names, and the next open carries on from there;
//! - careful: when both names exist (a crash between a rename's two directory entries
//!   reaching the disk, or a blob delivered again after a first, interrupted pass), the
//!   old file is removed only when the new one is the same file or hashes to its name. A
//!   new file that does not is replaced by a good old one; when neither is good the old
//!   bytes go to `quarantine/old-layout/` rather than away.
//!
//! `blobs/.layout` records that no old-layout file is left, so a normal open costs one
//! `stat`. It is ignored (and the scan made) whenever the database still has to migrate,
//! because only then may an older binary have written to the store since.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::schema;
use crate::blob::{BlobId, sync_dir};
use crate::{Result, StoreError, io};

/// The marker written once `blobs/` holds no old-layout file.
pub(super) const MARKER: &str = ".layout";

const MARKER_TEXT: &[u8] = b"ab/<hash>\n";

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Moved {
    /// Old-layout files renamed to their new name.
    pub renamed: u64,
    /// Old-layout files removed because the new name already held the same bytes.
    pub duplicates_removed: u64,
    /// New-layout files that did not hash to their name and were replaced by the old copy.
    pub replaced_damaged: u64,
    /// Old-layout files kept in `quarantine/old-layout/` because neither copy was intact.
    pub quarantined: u64,
}

/// Brings `data_dir/blobs` to the one-level layout if it is not known to be there already.
/// `schema_version` is the database's version before it migrates.
pub(super) fn upgrade(data_dir: &Path, schema_version: i64) -> Result<Moved> {
    let root = data_dir.join("blobs");
    let marker = root.join(MARKER);
    // A database newer than this binary is refused by the migration, and a refusal must
    // change nothing.
    if schema_version > schema::CURRENT || (schema_version == schema::CURRENT && marker.exists()) {
        return Ok(Moved::default());
    }
    if !root.is_dir() {
        // A new store: `BlobStore::open` makes the directory; nothing can be in the old
        // layout, and the marker is written by the next open.
        return Ok(Moved::default());
    }
    let moved = move_all(data_dir, &root)?;
    if moved != Moved::default() {
        tracing::info!(
            renamed = moved.renamed,
            duplicates_removed = moved.duplicates_removed,
            replaced_damaged = moved.replaced_damaged,
            quarantined = moved.quarantined,
            "blob files moved from blobs/ab/cd/<hash> to blobs/ab/<hash>"
        );
    }
    if !marker.exists()
        && let Err(e) = write_marker(&root, &marker)
    {
        // Only a saving: without the marker the next open looks again, and finds nothing.
        tracing::warn!(error = %e, "cannot record that blobs/ has the one-level layout");
    }
    Ok(moved)
}

fn move_all(data_dir: &Path, root: &Path) -> Result<Moved> {
    let mut moved = Moved::default();
    for a in two_hex_dirs(root)? {
        let mut touched = false;
        for b in two_hex_dirs(&a)? {
            for old in entries(&b)? {
                let Some(id) = old
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(BlobId::from_hex)
                else {
                    continue;
                };
                // A file under the wrong first-level directory is not this layout's.
                let new = root.join(id.relative_path());
                if new.parent() != Some(a.as_path()) {
                    continue;
                }
                move_one(data_dir, &id, &old, &new, &mut moved)?;
                touched = true;
            }
            // The removals are durable before the directory goes; then `a` is synced below.
            sync_dir(&b)?;
            match io::remove_dir(&b) {
                Ok(()) => touched = true,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                // Something that is not a blob is left: keep it, it is not ours to delete.
                Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
                    tracing::warn!(dir = %b.display(), "old blob directory kept: it holds files that are not blobs");
                }
                Err(e) => return Err(StoreError::io(&b)(e)),
            }
        }
        if touched {
            sync_dir(&a)?;
        }
    }
    Ok(moved)
}

fn move_one(data_dir: &Path, id: &BlobId, old: &Path, new: &Path, moved: &mut Moved) -> Result<()> {
    let new_meta = match fs::symlink_metadata(new) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(StoreError::io(new)(e)),
    };
    let Some(new_meta) = new_meta else {
        return rename(old, new).map(|done| moved.renamed += u64::from(done));
    };
    let old_meta = match fs::symlink_metadata(old) {
        Ok(meta) => meta,
        // Another process finished this one since the directory was read.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(old)(e)),
    };
    // Both names: the same file (a rename whose removal of the old entry was lost in a
    // crash) needs only the old name gone.
    if (old_meta.dev(), old_meta.ino()) == (new_meta.dev(), new_meta.ino()) || intact(new, id)? {
        remove(old)?;
        moved.duplicates_removed += 1;
    } else if intact(old, id)? {
        rename(old, new)?;
        moved.replaced_damaged += 1;
    } else {
        let dir = data_dir.join("quarantine").join("old-layout");
        io::create_dir_all(&dir, None).map_err(StoreError::io(&dir))?;
        let mut to = dir.join(id.to_string());
        let mut n = 1;
        while to.exists() {
            to = dir.join(format!("{id}.{n}"));
            n += 1;
        }
        io::rename(old, &to).map_err(StoreError::io(old))?;
        sync_dir(&dir)?;
        tracing::warn!(blob = %id, kept = %to.display(), "both copies of a blob are damaged; the old one is kept aside");
        moved.quarantined += 1;
    }
    Ok(())
}

/// Renames; false when `from` was already gone (another process moved it).
fn rename(from: &Path, to: &Path) -> Result<bool> {
    match io::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound && !from.exists() => Ok(false),
        Err(e) => Err(StoreError::io(from)(e)),
    }
}

fn remove(path: &Path) -> Result<()> {
    match io::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path)(e)),
    }
}

/// Whether the file's bytes hash to `id`; a file that cannot be read is not intact.
fn intact(path: &Path, id: &BlobId) -> Result<bool> {
    let Ok(mut file) = File::open(path) else {
        return Ok(false);
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Ok(false),
        }
    }
    Ok(BlobId(hasher.finalize().into()) == *id)
}

/// The two-hex-digit subdirectories of `dir`, sorted (the fan-out level of either layout).
fn two_hex_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in entries(dir)? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let two_hex = name.len() == 2 && name.bytes().all(|c| c.is_ascii_hexdigit());
        if two_hex && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            out.push(path);
        }
    }
    Ok(out)
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(StoreError::io(dir)(e)),
    };
    paths.sort();
    Ok(paths)
}

fn write_marker(root: &Path, marker: &Path) -> Result<()> {
    let tmp = root.join(".layout.tmp");
    (|| {
        let mut file = io::create(&tmp, io::Create::Truncate, None)?;
        file.write_all(MARKER_TEXT)?;
        file.sync()?;
        io::rename(&tmp, marker)
    })()
    .map_err(StoreError::io(marker))?;
    sync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a blob where the old layout kept it; returns its id and old path.
    fn old_blob(root: &Path, body: &[u8]) -> (BlobId, PathBuf) {
        let id = BlobId::of(body);
        let hex = id.to_string();
        let dir = root.join(&hex[0..2]).join(&hex[2..4]);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(&hex);
        fs::write(&path, body).unwrap();
        (id, path)
    }

    fn new_path(root: &Path, id: &BlobId) -> PathBuf {
        root.join(id.relative_path())
    }

    fn bodies(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes())
            .collect()
    }

    #[test]
    fn moves_every_old_blob_and_removes_the_old_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        let ids: Vec<_> = bodies(40)
            .iter()
            .map(|b| (old_blob(&root, b).0, b.clone()))
            .collect();

        let moved = upgrade(dir.path(), 2).unwrap();
        assert_eq!(moved.renamed, 40);
        for (id, body) in &ids {
            assert_eq!(&fs::read(new_path(&root, id)).unwrap(), body);
        }
        // No second-level directory is left, and the marker says so.
        for a in two_hex_dirs(&root).unwrap() {
            assert_eq!(two_hex_dirs(&a).unwrap(), Vec::<PathBuf>::new(), "{a:?}");
        }
        assert!(root.join(MARKER).exists());
        // Idempotent: a second pass finds nothing to do.
        assert_eq!(
            upgrade(dir.path(), schema::CURRENT).unwrap(),
            Moved::default()
        );
        assert_eq!(upgrade(dir.path(), 2).unwrap(), Moved::default());
    }

    #[test]
    fn a_pass_killed_midway_is_finished_by_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        let all = bodies(30);
        let olds: Vec<_> = all.iter().map(|b| old_blob(&root, b)).collect();
        // The state a kill leaves: some moved, one under both names (the rename's removal
        // of the old entry lost), one directory already gone, no marker.
        for (id, old) in &olds[..10] {
            fs::rename(old, new_path(&root, id)).unwrap();
        }
        let (id, old) = &olds[10];
        fs::hard_link(old, new_path(&root, id)).unwrap();
        for (_, old) in &olds[..10] {
            let _ = fs::remove_dir(old.parent().unwrap());
        }
        assert!(!root.join(MARKER).exists());

        let moved = upgrade(dir.path(), schema::CURRENT).unwrap();
        assert_eq!(moved.renamed, 19);
        assert_eq!(moved.duplicates_removed, 1);
        for ((id, old), body) in olds.iter().zip(&all) {
            assert_eq!(&fs::read(new_path(&root, id)).unwrap(), body);
            assert!(!old.exists());
        }
        assert!(root.join(MARKER).exists());
    }

    #[test]
    fn when_both_names_exist_the_intact_copy_wins() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        let good_new = b"Subject: a\r\n\r\nthe new copy is intact\r\n".to_vec();
        let bad_new = b"Subject: b\r\n\r\nthe new copy is damaged\r\n".to_vec();
        let both_bad = b"Subject: c\r\n\r\nboth copies damaged\r\n".to_vec();

        let (a, old_a) = old_blob(&root, &good_new);
        fs::write(new_path(&root, &a), &good_new).unwrap();
        let (b, old_b) = old_blob(&root, &bad_new);
        fs::write(new_path(&root, &b), b"torn").unwrap();
        let (c, old_c) = old_blob(&root, &both_bad);
        fs::write(new_path(&root, &c), b"bad new").unwrap();
        fs::write(&old_c, b"bad old").unwrap();

        let moved = upgrade(dir.path(), 1).unwrap();
        assert_eq!(
            moved,
            Moved {
                renamed: 0,
                duplicates_removed: 1,
                replaced_damaged: 1,
                quarantined: 1
            }
        );
        assert_eq!(fs::read(new_path(&root, &a)).unwrap(), good_new);
        assert_eq!(fs::read(new_path(&root, &b)).unwrap(), bad_new);
        // Neither copy of c is thrown away: the new one stays for check to report, the
        // old one is kept aside.
        assert_eq!(fs::read(new_path(&root, &c)).unwrap(), b"bad new");
        let kept = dir.path().join("quarantine/old-layout").join(c.to_string());
        assert_eq!(fs::read(kept).unwrap(), b"bad old");
        assert!(!old_a.exists() && !old_b.exists() && !old_c.exists());
    }

    #[test]
    fn the_marker_is_trusted_only_when_the_database_is_current() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        fs::create_dir_all(&root).unwrap();
        assert_eq!(upgrade(dir.path(), 2).unwrap(), Moved::default());
        assert!(root.join(MARKER).exists());
        // An older binary wrote old-layout files since (the database still old): found.
        let (id, _) = old_blob(&root, b"written by an old binary");
        assert_eq!(upgrade(dir.path(), 2).unwrap().renamed, 1);
        assert!(new_path(&root, &id).exists());
        // With the database current and the marker there, nothing is read.
        let (_, old) = old_blob(&root, b"not looked for");
        assert_eq!(
            upgrade(dir.path(), schema::CURRENT).unwrap(),
            Moved::default()
        );
        assert!(old.exists());
    }

    #[test]
    fn files_that_are_not_blobs_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        let (id, old) = old_blob(&root, b"a blob");
        let stray = old.parent().unwrap().join("notes.txt");
        fs::write(&stray, b"not a blob").unwrap();
        fs::create_dir_all(root.join("tmp")).unwrap();
        fs::write(root.join("tmp/in-flight"), b"x").unwrap();

        assert_eq!(upgrade(dir.path(), 1).unwrap().renamed, 1);
        assert!(new_path(&root, &id).exists());
        assert!(stray.exists());
        assert!(root.join("tmp/in-flight").exists());
    }
}
