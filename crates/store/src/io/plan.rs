//! The test backend of the I/O seam: a [`Plan`] put on directory trees counts every
//! operation the store makes there, can fail the Nth with EIO or ENOSPC, and can simulate
//! a power cut at the Nth sync point.
//!
//! A power cut is simulated by remembering, for every write made since the last fsync that
//! covers it, how to take it back: a file's bytes as they were when last synced, a database
//! file's overwritten regions and length, and every directory entry created, removed or
//! renamed since its directory was last synced (removed files are kept alive by a hard
//! link in a stash directory, removed directories are moved there). At the chosen sync
//! point, before that sync happens, every such write is taken back, newest first, and the
//! process ends at once, as a machine that lost power would. That is the POSIX model, which
//! is stricter than ext4's journal: a renamed or created name is durable only once its
//! directory is fsynced, a file's bytes only once the file is.
//!
//! Production never constructs a plan: [`plan_for`] is one relaxed atomic load then.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

pub const EIO: i32 = 5;
pub const ENOSPC: i32 = 28;

/// What an operation is, for counting and for the error a fault turns into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Write,
    Sync,
    SyncDir,
    SyncFs,
    Rename,
    Remove,
    RemoveDir,
    Link,
    Mkdir,
    /// SQLite's own, through the VFS.
    DbWrite,
    DbSync,
    DbTruncate,
    DbDelete,
}

impl Op {
    pub fn is_sync(self) -> bool {
        matches!(self, Op::Sync | Op::SyncDir | Op::SyncFs | Op::DbSync)
    }
}

/// Which operations fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Operation `at` (counted from 1) fails with `errno`; the others succeed (a transient
    /// error of the disk).
    Once {
        at: u64,
        errno: i32,
    },
    /// Operation `at` and every later one fail with `errno` until [`Plan::heal`] (a disk
    /// that stays full).
    From {
        at: u64,
        errno: i32,
    },
}

/// The exit status of a process that a simulated power cut ended.
pub const CRASH_EXIT: i32 = 86;

pub struct Plan {
    roots: Vec<PathBuf>,
    inner: Mutex<Inner>,
}

pub(crate) struct Inner {
    ops: u64,
    syncs: u64,
    fault: Fault,
    injected: u64,
    crash_at: Option<u64>,
    per_op: HashMap<Op, u64>,
    power: Option<Power>,
}

/// What a power cut would take back.
struct Power {
    stash: PathBuf,
    next: u64,
    /// Files written through [`super::IoFile`] since their last fsync, by inode: a link to
    /// the inode and its bytes as last synced.
    files: HashMap<(u64, u64), (PathBuf, Vec<u8>)>,
    /// SQLite's files written since their last xSync, by path.
    db: HashMap<PathBuf, DbUndo>,
    /// Directory changes not yet made durable by a sync of their directory, oldest first.
    dirs: Vec<DirUndo>,
}

#[derive(Default)]
struct DbUndo {
    /// The length at the last sync.
    size: u64,
    /// Regions overwritten since, with the bytes they held, oldest first.
    saved: Vec<(u64, Vec<u8>)>,
}

impl DbUndo {
    /// Keeps the bytes of `from..to` that the last sync made durable (none past its
    /// length), before a write or a truncation changes them.
    fn keep(&mut self, from: u64, to: u64, read: &mut dyn FnMut(u64, &mut [u8]) -> bool) {
        let to = to.min(self.size);
        if from < to {
            let mut old = vec![0u8; (to - from) as usize];
            if read(from, &mut old) {
                self.saved.push((from, old));
            }
        }
    }
}

enum DirUndo {
    /// A name made (file or directory): removed again.
    Created { path: PathBuf, dir: PathBuf },
    /// A file's name removed (or replaced): linked back from the stash.
    Removed {
        path: PathBuf,
        dir: PathBuf,
        stash: PathBuf,
    },
    /// A directory moved (renamed, or removed into the stash): moved back.
    Moved {
        from: PathBuf,
        to: PathBuf,
        dir: PathBuf,
    },
    /// Two names exchanged: exchanged back.
    Exchanged {
        a: PathBuf,
        b: PathBuf,
        dir: PathBuf,
    },
}

impl DirUndo {
    fn dir(&self) -> &Path {
        match self {
            DirUndo::Created { dir, .. }
            | DirUndo::Removed { dir, .. }
            | DirUndo::Moved { dir, .. }
            | DirUndo::Exchanged { dir, .. } => dir,
        }
    }
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
static PLANS: RwLock<Vec<Arc<Plan>>> = RwLock::new(Vec::new());

/// The plan on the tree that holds `path`, if a test installed one.
pub fn plan_for(path: &Path) -> Option<Arc<Plan>> {
    if !ACTIVE.load(Ordering::Relaxed) {
        return None;
    }
    let plans = PLANS.read().unwrap_or_else(|e| e.into_inner());
    plans
        .iter()
        .find(|p| p.roots.iter().any(|r| path.starts_with(r)))
        .cloned()
}

/// Removes its plan when dropped.
pub struct Installed(Arc<Plan>);

impl Drop for Installed {
    fn drop(&mut self) {
        let mut plans = PLANS.write().unwrap_or_else(|e| e.into_inner());
        plans.retain(|p| !Arc::ptr_eq(p, &self.0));
        ACTIVE.store(!plans.is_empty(), Ordering::Relaxed);
    }
}

impl Plan {
    /// A plan over these trees (absolute paths); it counts and changes nothing until told.
    pub fn new(roots: &[&Path]) -> Arc<Plan> {
        Arc::new(Plan {
            roots: roots.iter().map(|r| r.to_path_buf()).collect(),
            inner: Mutex::new(Inner {
                ops: 0,
                syncs: 0,
                fault: Fault::None,
                injected: 0,
                crash_at: None,
                per_op: HashMap::new(),
                power: None,
            }),
        })
    }

    /// Puts the plan in force for every operation below its roots, SQLite's included
    /// (connections opened from now on use the SQLite backend's VFS, `sqlite/vfs.rs`).
    pub fn install(self: &Arc<Plan>) -> Installed {
        PLANS
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.clone());
        ACTIVE.store(true, Ordering::Relaxed);
        Installed(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_fault(&self, fault: Fault) {
        self.lock().fault = fault;
    }

    /// No more faults; counting goes on.
    pub fn heal(&self) {
        self.lock().fault = Fault::None;
    }

    /// Starts counting again from zero (after the setup a test does not want counted).
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.ops = 0;
        inner.syncs = 0;
        inner.per_op.clear();
    }

    /// Operations counted so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Sync points counted so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Operations counted so far, by kind.
    pub fn per_op(&self) -> Vec<(Op, u64)> {
        let mut all: Vec<_> = self.lock().per_op.iter().map(|(o, n)| (*o, *n)).collect();
        all.sort_by_key(|(o, _)| format!("{o:?}"));
        all
    }

    /// From now on, remembers how to take back every write not yet durable; `stash` (on
    /// the same file system, outside the roots) keeps what removals and replacements took
    /// away. With `crash_at`, the process ends by a simulated power cut just before sync
    /// point `crash_at` (counted from 1 since the plan was made).
    pub fn track_power(&self, stash: &Path, crash_at: Option<u64>) -> io::Result<()> {
        fs::create_dir_all(stash)?;
        let mut inner = self.lock();
        inner.crash_at = crash_at;
        inner.power = Some(Power {
            stash: stash.to_path_buf(),
            next: 0,
            files: HashMap::new(),
            db: HashMap::new(),
            dirs: Vec::new(),
        });
        Ok(())
    }

    /// Cuts the power now: takes back every write not durable and ends the process.
    pub fn cut_power(&self) -> ! {
        self.lock().power_cut()
    }

    /// Takes back every write not durable, as a power cut would, but goes on living: for
    /// testing the model itself, with nothing of the store open.
    pub fn take_back(&self) {
        self.lock().take_back()
    }

    /// Counts one operation, and fails it, or cuts the power before it, as planned. The
    /// guard it returns is held while the operation runs, so that a power cut on another
    /// thread never sees half an operation.
    pub(super) fn begin(&self, op: Op) -> Result<MutexGuard<'_, Inner>, i32> {
        let mut inner = self.lock();
        inner.ops += 1;
        *inner.per_op.entry(op).or_default() += 1;
        if op.is_sync() {
            inner.syncs += 1;
            if inner.crash_at == Some(inner.syncs) {
                inner.power_cut();
            }
        }
        let n = inner.ops;
        let failing = match inner.fault {
            Fault::None => None,
            Fault::Once { at, errno } => (n == at).then_some(errno),
            Fault::From { at, errno } => (n >= at).then_some(errno),
        };
        if let Some(errno) = failing {
            inner.injected += 1;
            return Err(errno);
        }
        Ok(inner)
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new("/")).to_path_buf()
}

fn inode(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

impl Inner {
    fn power(&mut self) -> Option<&mut Power> {
        self.power.as_mut()
    }

    /// Takes back everything not durable, newest first, and ends the process.
    fn power_cut(&mut self) -> ! {
        self.take_back();
        std::process::exit(CRASH_EXIT)
    }

    /// Takes back every write not yet durable, newest first, and stops tracking.
    fn take_back(&mut self) {
        if let Some(power) = self.power.take() {
            for (link, bytes) in power.files.values() {
                let _ = fs::write(link, bytes);
            }
            for (path, undo) in &power.db {
                if let Ok(file) = fs::OpenOptions::new().write(true).open(path) {
                    use std::os::unix::fs::FileExt;
                    let _ = file.set_len(undo.size);
                    for (offset, bytes) in undo.saved.iter().rev() {
                        let _ = file.write_all_at(bytes, *offset);
                    }
                }
            }
            for undo in power.dirs.iter().rev() {
                match undo {
                    DirUndo::Created { path, .. } => {
                        if path.is_dir() {
                            let _ = fs::remove_dir_all(path);
                        } else {
                            let _ = fs::remove_file(path);
                        }
                    }
                    DirUndo::Removed { path, stash, .. } => {
                        let _ = fs::remove_file(path);
                        let _ = fs::hard_link(stash, path);
                    }
                    DirUndo::Moved { from, to, .. } => {
                        let _ = fs::rename(to, from);
                    }
                    DirUndo::Exchanged { a, b, .. } => {
                        let _ = super::exchange(a, b);
                    }
                }
            }
            // The shared-memory index is rebuilt from the log by the next opener.
        }
    }
}

impl Power {
    /// What a power cut must restore of the database file `path`, whose size is `size`
    /// before its first change since the last sync.
    fn db_undo(&mut self, path: &Path, size: u64) -> &mut DbUndo {
        self.db.entry(path.to_path_buf()).or_insert_with(|| DbUndo {
            size,
            saved: Vec::new(),
        })
    }

    fn stash_path(&mut self) -> PathBuf {
        self.next += 1;
        self.stash.join(self.next.to_string())
    }

    /// Keeps a removed or replaced file reachable, and records how to put its name back.
    fn before_unlink(&mut self, path: &Path) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if meta.is_dir() {
            return;
        }
        let stash = self.stash_path();
        if fs::hard_link(path, &stash).is_ok() {
            if let Some(undo) = self.db.remove(path) {
                self.db.insert(stash.clone(), undo);
            }
            self.dirs.push(DirUndo::Removed {
                path: path.to_path_buf(),
                dir: parent(path),
                stash,
            });
        }
    }

    fn created(&mut self, path: &Path) {
        self.dirs.push(DirUndo::Created {
            path: path.to_path_buf(),
            dir: parent(path),
        });
    }

    /// A file is about to be written through the seam: remembers its bytes as last synced.
    fn file_written(&mut self, path: &Path, synced: Vec<u8>) {
        let Ok(meta) = fs::metadata(path) else {
            return;
        };
        let key = inode(&meta);
        if self.files.contains_key(&key) {
            return;
        }
        let link = self.stash_path();
        if fs::hard_link(path, &link).is_ok() {
            self.files.insert(key, (link, synced));
        }
    }

    fn file_synced(&mut self, meta: &fs::Metadata) {
        self.files.remove(&inode(meta));
    }

    fn dir_synced(&mut self, dir: &Path) {
        self.dirs.retain(|u| u.dir() != dir);
    }

    fn everything_synced(&mut self) {
        self.files.clear();
        self.db.clear();
        self.dirs.clear();
    }
}

// The operations of the seam under a plan: each counts, may fail or cut the power, runs the
// real operation, and records how to take it back.

fn fault(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

impl Plan {
    pub(super) fn create(
        &self,
        path: &Path,
        open: impl FnOnce() -> io::Result<fs::File>,
        truncate: bool,
    ) -> io::Result<fs::File> {
        let mut inner = self.begin(Op::Create).map_err(fault)?;
        let existed = path.exists();
        let before = match (&inner.power, existed) {
            (Some(_), true) => fs::read(path).unwrap_or_default(),
            _ => Vec::new(),
        };
        let file = open()?;
        if let Some(power) = inner.power() {
            if !existed {
                power.created(path);
            }
            if truncate || !existed {
                power.file_written(path, before);
            }
        }
        Ok(file)
    }

    pub(super) fn write(
        &self,
        path: &Path,
        file: &fs::File,
        write: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        let mut inner = self.begin(Op::Write).map_err(fault)?;
        if let Some(power) = inner.power()
            && let Ok(meta) = file.metadata()
            && !power.files.contains_key(&inode(&meta))
        {
            let before = fs::read(path).unwrap_or_default();
            power.file_written(path, before);
        }
        write()
    }

    pub(super) fn sync_file(&self, file: &fs::File) -> io::Result<()> {
        let mut inner = self.begin(Op::Sync).map_err(fault)?;
        file.sync_all()?;
        if let Some(power) = inner.power()
            && let Ok(meta) = file.metadata()
        {
            power.file_synced(&meta);
        }
        Ok(())
    }

    /// A file synced by name: a blob's, or an archive's database after SQLite closed it.
    pub(super) fn sync_path(&self, path: &Path) -> io::Result<()> {
        let mut inner = self.begin(Op::Sync).map_err(fault)?;
        let file = fs::File::open(path)?;
        file.sync_all()?;
        if let Some(power) = inner.power() {
            if let Ok(meta) = file.metadata() {
                power.file_synced(&meta);
            }
            power.db.remove(path);
        }
        Ok(())
    }

    pub(super) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.begin(Op::SyncDir).map_err(fault)?;
        fs::File::open(dir)?.sync_all()?;
        if let Some(power) = inner.power() {
            power.dir_synced(dir);
        }
        Ok(())
    }

    pub(super) fn syncfs(&self, path: &Path) -> io::Result<()> {
        let mut inner = self.begin(Op::SyncFs).map_err(fault)?;
        let dir = fs::File::open(path)?;
        rustix::fs::syncfs(&dir).map_err(io::Error::from)?;
        if let Some(power) = inner.power() {
            power.everything_synced();
        }
        Ok(())
    }

    pub(super) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut inner = self.begin(Op::Rename).map_err(fault)?;
        let is_dir = from.is_dir();
        if let Some(power) = inner.power() {
            if is_dir {
                fs::rename(from, to)?;
                power.dirs.push(DirUndo::Moved {
                    from: from.to_path_buf(),
                    to: to.to_path_buf(),
                    dir: parent(to),
                });
                return Ok(());
            }
            let mark = power.dirs.len();
            power.before_unlink(to);
            power.before_unlink(from);
            if let Err(e) = fs::rename(from, to) {
                power.dirs.truncate(mark);
                return Err(e);
            }
            power.created(to);
            return Ok(());
        }
        fs::rename(from, to)
    }

    pub(super) fn exchange(&self, a: &Path, b: &Path) -> io::Result<()> {
        let mut inner = self.begin(Op::Rename).map_err(fault)?;
        super::exchange(a, b)?;
        if let Some(power) = inner.power() {
            power.dirs.push(DirUndo::Exchanged {
                a: a.to_path_buf(),
                b: b.to_path_buf(),
                dir: parent(b),
            });
        }
        Ok(())
    }

    pub(super) fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut inner = self.begin(Op::Remove).map_err(fault)?;
        if let Some(power) = inner.power() {
            let mark = power.dirs.len();
            power.before_unlink(path);
            if let Err(e) = fs::remove_file(path) {
                power.dirs.truncate(mark);
                return Err(e);
            }
            return Ok(());
        }
        fs::remove_file(path)
    }

    pub(super) fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut inner = self.begin(Op::RemoveDir).map_err(fault)?;
        if let Some(power) = inner.power() {
            // Moved aside, not deleted, so that a power cut can bring it back.
            let stash = power.stash_path();
            fs::rename(path, &stash)?;
            power.dirs.push(DirUndo::Moved {
                from: path.to_path_buf(),
                to: stash,
                dir: parent(path),
            });
            return Ok(());
        }
        fs::remove_dir_all(path)
    }

    pub(super) fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut inner = self.begin(Op::Link).map_err(fault)?;
        fs::hard_link(from, to)?;
        if let Some(power) = inner.power() {
            power.created(to);
        }
        Ok(())
    }

    /// Creates `path` (and, with `all`, its missing parents) by `make`.
    pub(super) fn mkdir(
        &self,
        path: &Path,
        all: bool,
        make: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        let mut inner = self.begin(Op::Mkdir).map_err(fault)?;
        let mut missing = Vec::new();
        if all {
            let mut p = Some(path);
            while let Some(dir) = p {
                if dir.exists() {
                    break;
                }
                missing.push(dir.to_path_buf());
                p = dir.parent();
            }
            missing.reverse();
        } else {
            missing.push(path.to_path_buf());
        }
        make()?;
        if let Some(power) = inner.power() {
            for dir in missing {
                power.created(&dir);
            }
        }
        Ok(())
    }
}

// SQLite's side, called by the VFS shim. Errors are errnos; the shim maps them to SQLite's
// codes.
impl Plan {
    /// A database file the VFS opened; `created` when it did not exist before.
    pub(crate) fn db_opened(&self, path: &Path, created: bool) {
        if !created {
            return;
        }
        let mut inner = self.lock();
        if let Some(power) = inner.power() {
            power.created(path);
        }
    }

    /// Before SQLite writes `len` bytes at `offset`: `read` fetches what is there now.
    pub(crate) fn db_write(
        &self,
        path: &Path,
        offset: u64,
        len: usize,
        size: u64,
        read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    ) -> Result<MutexGuard<'_, Inner>, i32> {
        let mut inner = self.begin(Op::DbWrite)?;
        if let Some(power) = inner.power() {
            let undo = power.db_undo(path, size);
            undo.keep(offset, offset + len as u64, read);
        }
        Ok(inner)
    }

    pub(crate) fn db_truncate(
        &self,
        path: &Path,
        new_size: u64,
        size: u64,
        read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    ) -> Result<MutexGuard<'_, Inner>, i32> {
        let mut inner = self.begin(Op::DbTruncate)?;
        if let Some(power) = inner.power() {
            let undo = power.db_undo(path, size);
            undo.keep(new_size, undo.size, read);
        }
        Ok(inner)
    }

    /// Before SQLite syncs a file; `dir_too` when SQLite's unix VFS syncs its directory with
    /// it (the first sync of a new log or journal).
    pub(crate) fn db_sync(&self) -> Result<MutexGuard<'_, Inner>, i32> {
        self.begin(Op::DbSync)
    }

    pub(crate) fn db_synced(inner: &mut MutexGuard<'_, Inner>, path: &Path, dir_too: bool) {
        if let Some(power) = inner.power() {
            power.db.remove(path);
            if dir_too {
                power.dir_synced(&parent(path));
            }
        }
    }

    /// Before SQLite deletes a file (a rollback journal, a log at the last close).
    pub(crate) fn db_delete(&self, path: &Path) -> Result<MutexGuard<'_, Inner>, i32> {
        let mut inner = self.begin(Op::DbDelete)?;
        if let Some(power) = inner.power() {
            power.before_unlink(path);
        }
        Ok(inner)
    }

    /// True when `path` was created and its name is not durable yet.
    pub(crate) fn db_name_pending(inner: &mut MutexGuard<'_, Inner>, path: &Path) -> bool {
        inner.power().is_some_and(|p| {
            p.dirs
                .iter()
                .any(|u| matches!(u, DirUndo::Created { path: c, .. } if c == path))
        })
    }
}
