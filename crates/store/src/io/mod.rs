//! The store's file operations, all in one narrow interface.
//!
//! Every change the store makes to its files (blob writes, renames, directory fsyncs,
//! removals, links, backups and archives) goes through these functions, and SQLite's own
//! file I/O can go through the SQLite backend's VFS (`sqlite/vfs.rs`), which asks the same
//! plan. In production they are thin wrappers over `std::fs` and `rustix`. Tests put a [`Plan`] on a directory tree to fail the Nth
//! operation (EIO, ENOSPC) or to simulate a power cut at a chosen sync point: that is how
//! the store's claims of durability are tested, as redb and SQLite test theirs.
//!
//! Reads are not part of the seam: a failed read loses nothing, and the store already
//! reports it as such. Nor are the lock files (`blobs/.hold`, `archive/.lock`, a backup
//! root's `.lock`, the open marker's flock and emptying), owners and modes: they hold no
//! mail.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod plan;

pub use plan::{CRASH_EXIT, EIO, ENOSPC, Fault, Installed, Op, Plan, plan_for};

/// A file the store writes: opened through this module, so its writes and its fsync are
/// seen by a test plan.
pub struct IoFile {
    file: File,
    path: PathBuf,
    plan: Option<Arc<Plan>>,
}

/// How [`create`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// A new file: fails if the name exists (`O_EXCL`).
    New,
    /// Created or emptied.
    Truncate,
    /// Created if missing, written at its end.
    Append,
}

/// Opens a file for writing. `mode` is the permission of a new file (default 0666 less
/// the umask).
pub fn create(path: &Path, how: Create, mode: Option<u32>) -> io::Result<IoFile> {
    let mut options = OpenOptions::new();
    options.write(true);
    match how {
        Create::New => options.create_new(true),
        Create::Truncate => options.create(true).truncate(true),
        Create::Append => options.create(true).append(true),
    };
    if let Some(mode) = mode {
        options.mode(mode);
    }
    let plan = plan_for(path);
    let file = match &plan {
        None => options.open(path)?,
        Some(p) => p.create(path, || options.open(path), how == Create::Truncate)?,
    };
    Ok(IoFile {
        file,
        path: path.to_path_buf(),
        plan,
    })
}

impl IoFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match &self.plan {
            None => self.file.write_all(data),
            Some(p) => {
                let file = &self.file;
                p.write(&self.path, file, || (&*file).write_all(data))
            }
        }
    }

    /// Makes the file's data durable (`fsync`). Not its name: that takes [`sync_dir`].
    pub fn sync(&self) -> io::Result<()> {
        match &self.plan {
            None => self.file.sync_all(),
            Some(p) => p.sync_file(&self.file),
        }
    }
}

/// Writes a new file (`O_EXCL`) with `data`, fsynced when `durable`.
pub fn write_new(path: &Path, data: &[u8], mode: Option<u32>, durable: bool) -> io::Result<()> {
    let mut file = create(path, Create::New, mode)?;
    file.write_all(data)?;
    if durable {
        file.sync()?;
    }
    Ok(())
}

/// Fsyncs a file the store holds open for other reasons (a lock file).
pub fn sync_handle(file: &File, path: &Path) -> io::Result<()> {
    match plan_for(path) {
        None => file.sync_all(),
        Some(p) => p.sync_file(file),
    }
}

/// Fsyncs an existing file by name.
pub fn sync_path(path: &Path) -> io::Result<()> {
    match plan_for(path) {
        None => File::open(path)?.sync_all(),
        Some(p) => p.sync_path(path),
    }
}

/// Makes a directory's entries durable: names created, renamed into or out of it, removed.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match plan_for(dir) {
        None => File::open(dir)?.sync_all(),
        Some(p) => p.sync_dir(dir),
    }
}

/// Flushes everything written to the file system that holds `path` (`syncfs`).
pub fn syncfs(path: &Path) -> io::Result<()> {
    match plan_for(path) {
        None => rustix::fs::syncfs(&File::open(path)?).map_err(io::Error::from),
        Some(p) => p.syncfs(path),
    }
}

pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    match plan_for(to) {
        None => fs::rename(from, to),
        Some(p) => p.rename(from, to),
    }
}

/// Swaps two paths in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`). `Unsupported`
/// when the file system cannot do it.
pub fn rename_exchange(a: &Path, b: &Path) -> io::Result<()> {
    match plan_for(b) {
        None => exchange(a, b),
        Some(p) => p.exchange(a, b),
    }
}

fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        // The file system has no exchange, or the kernel has no renameat2.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the file system cannot exchange two names atomically",
        )),
        Err(e) => Err(e.into()),
    }
}

pub fn remove_file(path: &Path) -> io::Result<()> {
    match plan_for(path) {
        None => fs::remove_file(path),
        Some(p) => p.remove_file(path),
    }
}

/// Removes an empty directory; `DirectoryNotEmpty` (and nothing changed) otherwise.
pub fn remove_dir(path: &Path) -> io::Result<()> {
    match plan_for(path) {
        None => fs::remove_dir(path),
        // The plan models removal of a tree; an empty one is the same removal.
        Some(p) => match fs::read_dir(path)?.next() {
            None => p.remove_dir_all(path),
            Some(_) => fs::remove_dir(path),
        },
    }
}

pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    match plan_for(path) {
        None => fs::remove_dir_all(path),
        Some(p) => p.remove_dir_all(path),
    }
}

pub fn hard_link(from: &Path, to: &Path) -> io::Result<()> {
    match plan_for(to) {
        None => fs::hard_link(from, to),
        Some(p) => p.hard_link(from, to),
    }
}

/// Creates one directory (its parent must exist), with `mode` when given.
pub fn create_dir(path: &Path, mode: Option<u32>) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    if let Some(mode) = mode {
        builder.mode(mode);
    }
    match plan_for(path) {
        None => builder.create(path),
        Some(p) => p.mkdir(path, false, || builder.create(path)),
    }
}

/// Creates a directory and any missing parents, with `mode` when given.
pub fn create_dir_all(path: &Path, mode: Option<u32>) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    if let Some(mode) = mode {
        builder.mode(mode);
    }
    match plan_for(path) {
        None => builder.create(path),
        Some(p) => p.mkdir(path, true, || builder.create(path)),
    }
}

/// Copies `from` into a new file `to` (`O_EXCL`, mode `mode` or 0666 less the umask); not
/// fsynced. Returns the bytes copied.
pub fn copy_new(from: &Path, to: &Path, mode: Option<u32>) -> io::Result<u64> {
    use std::io::Read;
    let mut source = File::open(from)?;
    let mut dest = create(to, Create::New, mode)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut copied = 0u64;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dest.write_all(&buf[..n])?;
        copied += n as u64;
    }
    Ok(copied)
}

/// Writes `data` into `path`, created or emptied first; not fsynced.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    create(path, Create::Truncate, None)?.write_all(data)
}

#[cfg(test)]
pub(crate) mod tests;
