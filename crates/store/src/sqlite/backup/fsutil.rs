//! The file operations backups are made of: streamed and hashed copies, hard links, private
//! directories, and making a whole tree durable at once.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{BackupError, Result};
use crate::io;

/// Copies and hashes go through a buffer of this size: a blob is never held in memory whole.
pub const BUFFER: usize = 1 << 20;

/// Creates `dir` and any missing parents with mode 0700 (backups hold everyone's mail).
pub fn create_private_dir_all(dir: &Path) -> Result<()> {
    io::create_dir_all(dir, Some(0o700)).map_err(BackupError::io(dir))
}

pub fn create_private_dir(dir: &Path) -> Result<()> {
    io::create_dir(dir, Some(0o700)).map_err(BackupError::io(dir))
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    io::sync_dir(dir).map_err(BackupError::io(dir))
}

/// Writes a small file by a temporary name, fsyncs it, renames it into place and fsyncs
/// the directory: readers see the old file or the new one, never half of it.
pub fn write_durably(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut file = io::create(&tmp, io::Create::Truncate, Some(0o600))?;
        file.write_all(content)?;
        file.sync()?;
        io::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = io::remove_file(&tmp);
    }
    written?;
    io::sync_dir(dir)
}

/// The SHA-256 (hex) and length of a file, read in pieces.
pub fn hash_file(path: &Path, buf: &mut [u8]) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Which side of a copy failed: the source (missing, unreadable) or the destination.
#[derive(Debug)]
pub enum CopyError {
    Source(std::io::Error),
    Destination(std::io::Error),
}

/// Copies `from` to a new file `to` with mode `mode` (None: the source's), hashing what it
/// reads; returns the SHA-256 (hex) and the length. Not fsynced: the caller flushes the
/// whole tree at once.
pub fn copy_hashed(
    from: &Path,
    to: &Path,
    mode: Option<u32>,
    buf: &mut [u8],
) -> Result<(String, u64), CopyError> {
    let mut source = File::open(from).map_err(CopyError::Source)?;
    let mode = match mode {
        Some(mode) => mode,
        None => {
            source
                .metadata()
                .map_err(CopyError::Source)?
                .permissions()
                .mode()
                & 0o777
        }
    };
    let mut dest = io::create(to, io::Create::New, Some(mode)).map_err(CopyError::Destination)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = match source.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Source(e)),
        };
        hasher.update(&buf[..n]);
        dest.write_all(&buf[..n]).map_err(CopyError::Destination)?;
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// True when an error means "hard links cannot work here" rather than "something is
/// wrong": another file system, too many links to one inode, or no hard links at all.
pub fn link_impossible(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::CrossesDevices
            | std::io::ErrorKind::TooManyLinks
            | std::io::ErrorKind::Unsupported
    ) || e.raw_os_error() == Some(EPERM)
}

const EPERM: i32 = 1;

/// Flushes everything written to the file system that holds `path`: data, inodes and
/// directories. One call instead of an fsync per file and per directory, which for a
/// backup of many thousand blobs is the difference between a moment and minutes.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    io::syncfs(path).map_err(BackupError::io(path))
}

/// Swaps two paths in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`): at every
/// moment each name points at one complete directory. `Unsupported` when the file system
/// cannot do it.
pub fn rename_exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    io::rename_exchange(a, b)
}

/// The most threads that link, copy or hash files at once: enough to keep a disk busy.
const MAX_THREADS: usize = 4;

/// Runs `work` on every item on a few threads, each with its own buffer, and returns the
/// results in the items' order. The first error stops every thread at its next item.
pub fn parallel<T, R>(
    items: &[T],
    work: impl Fn(&T, &mut [u8]) -> Result<R> + Sync,
) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
{
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
        .min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<BackupError>> = Mutex::new(None);
    let mut results: Vec<Option<R>> = Vec::with_capacity(items.len());
    results.resize_with(items.len(), || None);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut buf = vec![0u8; BUFFER];
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        match work(item, &mut buf) {
                            Ok(r) => done.push((i, r)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get_or_insert(e);
                            }
                        }
                    }
                    done
                })
            })
            .collect();
        for worker in workers {
            let done = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (i, r) in done {
                results[i] = Some(r);
            }
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every item was done"))
        .collect())
}

/// `ab/<hash>`: where a blob lives below `blobs/`, in the store and in a backup.
pub fn blob_rel(hex: &str) -> String {
    format!("{}/{hex}", &hex[0..2])
}

/// Every directory and file below `dir` (not `dir` itself), with its metadata.
pub fn walk(dir: &Path) -> Result<Vec<(std::path::PathBuf, fs::Metadata)>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).map_err(BackupError::io(&current))? {
            let entry = entry.map_err(BackupError::io(&current))?;
            let meta = fs::symlink_metadata(entry.path()).map_err(BackupError::io(entry.path()))?;
            if meta.is_dir() {
                pending.push(entry.path());
            }
            out.push((entry.path(), meta));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_hashed_and_exchange_swaps_two_directories() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"hello").unwrap();
        let mut buf = vec![0; 3];
        let (hash, size) = copy_hashed(&a, &b, Some(0o600), &mut buf).unwrap();
        assert_eq!(size, 5);
        assert_eq!(hash, hex::encode(Sha256::digest(b"hello")));
        assert_eq!(hash_file(&b, &mut buf).unwrap(), (hash, 5));
        assert!(matches!(
            copy_hashed(&a, &b, Some(0o600), &mut buf),
            Err(CopyError::Destination(_))
        ));

        let (x, y) = (dir.path().join("x"), dir.path().join("y"));
        fs::create_dir(&x).unwrap();
        fs::create_dir(&y).unwrap();
        fs::write(x.join("in-x"), b"").unwrap();
        match rename_exchange(&x, &y) {
            Ok(()) => {
                assert!(y.join("in-x").exists());
                assert!(!x.join("in-x").exists());
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}"),
        }
        sync_filesystem(dir.path()).unwrap();
    }
}
