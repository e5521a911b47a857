//! SQLite's file I/O through the seam: a VFS named `tegami-io` that wraps the default
//! `unix` VFS. Writes, syncs, truncations and deletions of a file below a [`Plan`]'s roots
//! are counted by the plan, may fail as it says (`SQLITE_FULL` for ENOSPC, an
//! `SQLITE_IOERR_*` otherwise), and are remembered for a simulated power cut; locks and the
//! shared-memory index pass straight through.
//!
//! Only connections to a database below an installed plan use it ([`open_db`]); every
//! other connection, which is every connection in production, uses SQLite's default VFS
//! unchanged.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use rusqlite::ffi;
use rusqlite::{Connection, OpenFlags};

use crate::io::{ENOSPC, Plan, plan_for};

const NAME: &CStr = c"tegami-io";

/// Opens a connection, through the seam's VFS when a plan covers `path`.
pub(crate) fn open_db(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    if plan_for(path).is_some() {
        register();
        Connection::open_with_flags_and_vfs(path, flags, NAME)
    } else {
        Connection::open_with_flags(path, flags)
    }
}

#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    /// The unix VFS's file, which lives right after this struct in SQLite's allocation.
    real: *mut ffi::sqlite3_file,
    /// Null for a file no plan covers (and for SQLite's nameless temporary files).
    plan: *const Plan,
    path: *mut PathBuf,
    /// A log or journal: the unix VFS syncs its directory with its first sync.
    syncs_dir: bool,
}

static REGISTER: Once = Once::new();

/// Registers the VFS once per process (not as the default).
pub(crate) fn register() {
    REGISTER.call_once(|| unsafe {
        let real = ffi::sqlite3_vfs_find(std::ptr::null());
        assert!(!real.is_null(), "SQLite has a default VFS");
        let mut vfs: ffi::sqlite3_vfs = *real;
        vfs.zName = NAME.as_ptr();
        vfs.pAppData = real.cast();
        vfs.pNext = std::ptr::null_mut();
        vfs.szOsFile = (std::mem::size_of::<ShimFile>() as c_int) + (*real).szOsFile;
        vfs.xOpen = Some(x_open);
        vfs.xDelete = Some(x_delete);
        // SQLite keeps the pointer for the life of the process.
        let vfs = Box::leak(Box::new(vfs));
        let rc = ffi::sqlite3_vfs_register(vfs, 0);
        assert_eq!(rc, ffi::SQLITE_OK, "registering the tegami-io VFS");
    });
}

unsafe fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    unsafe { (*vfs).pAppData.cast() }
}

unsafe fn path_of(name: *const c_char) -> Option<PathBuf> {
    if name.is_null() {
        return None;
    }
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
    use std::os::unix::ffi::OsStrExt;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        let real_vfs = real_vfs(vfs);
        let shim = file.cast::<ShimFile>();
        let real = file
            .cast::<u8>()
            .add(std::mem::size_of::<ShimFile>())
            .cast::<ffi::sqlite3_file>();
        let path = path_of(name);
        let plan = path.as_deref().and_then(plan_for);
        let existed = path.as_deref().is_some_and(Path::exists);
        let rc = ((*real_vfs).xOpen.expect("unix xOpen"))(real_vfs, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            (*shim).base.pMethods = std::ptr::null();
            return rc;
        }
        (*shim).base.pMethods = &METHODS;
        (*shim).real = real;
        (*shim).syncs_dir =
            flags & (ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_MAIN_JOURNAL) != 0 && !existed;
        match (plan, path) {
            (Some(plan), Some(path)) => {
                plan.db_opened(&path, !existed);
                (*shim).plan = Arc::into_raw(plan);
                (*shim).path = Box::into_raw(Box::new(path));
            }
            _ => {
                (*shim).plan = std::ptr::null();
                (*shim).path = std::ptr::null_mut();
            }
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    unsafe {
        let real_vfs = real_vfs(vfs);
        let delete = (*real_vfs).xDelete.expect("unix xDelete");
        let path = path_of(name);
        let Some((plan, path)) = path.and_then(|p| Some((plan_for(&p)?, p))) else {
            return delete(real_vfs, name, sync_dir);
        };
        let mut guard = match plan.db_delete(&path) {
            Ok(guard) => guard,
            Err(_) => return ffi::SQLITE_IOERR_DELETE,
        };
        let rc = delete(real_vfs, name, sync_dir);
        if rc == ffi::SQLITE_OK && sync_dir != 0 {
            Plan::db_synced(&mut guard, &path, true);
        }
        rc
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};

unsafe fn parts<'a>(
    file: *mut ffi::sqlite3_file,
) -> (
    *mut ffi::sqlite3_file,
    &'a ffi::sqlite3_io_methods,
    Option<(&'a Plan, &'a Path)>,
) {
    unsafe {
        let shim = file.cast::<ShimFile>();
        let real = (*shim).real;
        let methods = &*(*real).pMethods;
        let tracked = if (*shim).plan.is_null() {
            None
        } else {
            Some((&*(*shim).plan, (*(*shim).path).as_path()))
        };
        (real, methods, tracked)
    }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let shim = file.cast::<ShimFile>();
        let real = (*shim).real;
        let rc = match (*real).pMethods.as_ref() {
            Some(methods) => (methods.xClose.expect("xClose"))(real),
            None => ffi::SQLITE_OK,
        };
        if !(*shim).plan.is_null() {
            drop(Arc::from_raw((*shim).plan));
            drop(Box::from_raw((*shim).path));
            (*shim).plan = std::ptr::null();
            (*shim).path = std::ptr::null_mut();
        }
        rc
    }
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let (real, m, _) = parts(file);
        (m.xRead.expect("xRead"))(real, buf, amount, offset)
    }
}

/// The file's size now, and a reader of its bytes, for the plan's undo record.
unsafe fn size_and_reader(
    real: *mut ffi::sqlite3_file,
    m: &ffi::sqlite3_io_methods,
) -> (u64, impl FnMut(u64, &mut [u8]) -> bool) {
    unsafe {
        let mut size: i64 = 0;
        (m.xFileSize.expect("xFileSize"))(real, &mut size);
        let read = m.xRead.expect("xRead");
        let reader = move |offset: u64, buf: &mut [u8]| {
            read(
                real,
                buf.as_mut_ptr().cast(),
                buf.len() as c_int,
                offset as i64,
            ) == ffi::SQLITE_OK
        };
        (size.max(0) as u64, reader)
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let (real, m, tracked) = parts(file);
        let write = m.xWrite.expect("xWrite");
        let Some((plan, path)) = tracked else {
            return write(real, buf, amount, offset);
        };
        let (size, mut reader) = size_and_reader(real, m);
        match plan.db_write(path, offset as u64, amount as usize, size, &mut reader) {
            // The guard is held while the write runs.
            Ok(_guard) => write(real, buf, amount, offset),
            Err(ENOSPC) => ffi::SQLITE_FULL,
            Err(_) => ffi::SQLITE_IOERR_WRITE,
        }
    }
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    unsafe {
        let (real, m, tracked) = parts(file);
        let truncate = m.xTruncate.expect("xTruncate");
        let Some((plan, path)) = tracked else {
            return truncate(real, size);
        };
        let (now, mut reader) = size_and_reader(real, m);
        match plan.db_truncate(path, size as u64, now, &mut reader) {
            Ok(_guard) => truncate(real, size),
            Err(_) => ffi::SQLITE_IOERR_TRUNCATE,
        }
    }
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    unsafe {
        let (real, m, tracked) = parts(file);
        let sync = m.xSync.expect("xSync");
        let Some((plan, path)) = tracked else {
            return sync(real, flags);
        };
        let mut guard = match plan.db_sync() {
            Ok(guard) => guard,
            Err(_) => return ffi::SQLITE_IOERR_FSYNC,
        };
        let rc = sync(real, flags);
        if rc == ffi::SQLITE_OK {
            let shim = file.cast::<ShimFile>();
            // The unix VFS syncs a new log's or journal's directory with its first sync.
            let dir_too = (*shim).syncs_dir && Plan::db_name_pending(&mut guard, path);
            (*shim).syncs_dir = false;
            Plan::db_synced(&mut guard, path, dir_too);
        }
        rc
    }
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    unsafe {
        let (real, m, _) = parts(file);
        (m.xFileSize.expect("xFileSize"))(real, size)
    }
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe {
        let (real, m, _) = parts(file);
        (m.xLock.expect("xLock"))(real, level)
    }
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe {
        let (real, m, _) = parts(file);
        (m.xUnlock.expect("xUnlock"))(real, level)
    }
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    unsafe {
        let (real, m, _) = parts(file);
        (m.xCheckReservedLock.expect("xCheckReservedLock"))(real, out)
    }
}

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    unsafe {
        let (real, m, _) = parts(file);
        (m.xFileControl.expect("xFileControl"))(real, op, arg)
    }
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let (real, m, _) = parts(file);
        (m.xSectorSize.expect("xSectorSize"))(real)
    }
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let (real, m, _) = parts(file);
        (m.xDeviceCharacteristics.expect("xDeviceCharacteristics"))(real)
    }
}

unsafe extern "C" fn x_shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    unsafe {
        let (real, m, _) = parts(file);
        match m.xShmMap {
            Some(f) => f(real, region, size, extend, out),
            None => ffi::SQLITE_IOERR_SHMMAP,
        }
    }
}

unsafe extern "C" fn x_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    unsafe {
        let (real, m, _) = parts(file);
        match m.xShmLock {
            Some(f) => f(real, offset, n, flags),
            None => ffi::SQLITE_IOERR_SHMLOCK,
        }
    }
}

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    unsafe {
        let (real, m, _) = parts(file);
        if let Some(f) = m.xShmBarrier {
            f(real)
        }
    }
}

unsafe extern "C" fn x_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    unsafe {
        let (real, m, _) = parts(file);
        match m.xShmUnmap {
            Some(f) => f(real, delete),
            None => ffi::SQLITE_OK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::tests::tracked;

    #[test]
    fn a_power_cut_takes_back_sqlite_writes_that_were_not_synced() {
        let dir = tempfile::tempdir().unwrap();
        let (root, plan, installed) = tracked(dir.path());
        let db = root.join("t.db");
        let conn = open_db(
            &db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let synced = plan.syncs();
        assert!(synced > 0, "SQLite's syncs go through the VFS");
        conn.pragma_update(None, "synchronous", "OFF").unwrap();
        conn.execute("INSERT INTO t VALUES (2)", []).unwrap();
        // Closing checkpoints the log into the database and deletes it, without a sync.
        drop(conn);
        assert!(!root.join("t.db-wal").exists());
        plan.take_back();
        drop(installed);

        let conn = rusqlite::Connection::open(&db).unwrap();
        let rows: Vec<i64> = conn
            .prepare("SELECT x FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows, [1]);
    }
}
