//! Recovery after an unclean shutdown, run by every open.
//!
//! Every process that opens the store holds a shared kernel lock (flock) on
//! `tegami.db-open`, and the first one, which finds nobody else holding it, takes it
//! exclusively for the length of its open. That first opener writes `open` into the file;
//! the last one to close empties it again. So when the first opener finds the file not
//! empty, the last process that had the store open ended without closing it: a kill -9, a
//! crash, a power cut. It then recovers before anyone else gets in:
//!
//! - SQLite replays the write-ahead log by itself when the database is first read; a
//!   checkpoint then moves it into the database file and says how many frames it held.
//! - Temporary blob files (`blobs/tmp/`) of interrupted writes are removed. The first
//!   opener always does this: with nobody else in, no write can be in flight.
//! - Reference counts of blobs are checked against the messages that use them and fixed.
//!   Every change to them is part of the transaction that changes the messages, so they
//!   cannot really drift; this is a cheap safety net (one indexed pass), not a repair that
//!   is expected to find anything.
//!
//! It logs one line saying what was done. No prompt, no manual step. The lock is the
//! kernel's, so it dies with its process and can never be stale.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use super::SqliteStore;
use crate::{BlobId, Result, StoreError};

/// The open marker and lock, beside the database.
pub const MARKER: &str = "tegami.db-open";

const OPEN: &[u8] = b"open\n";

/// What the recovery after an unclean shutdown did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Frames the write-ahead log held (committed transactions SQLite replayed).
    pub wal_frames: u64,
    /// Temporary files of interrupted blob writes that were removed.
    pub temp_files_removed: u64,
    /// Blob reference counts that were wrong and were set right.
    pub refcounts_fixed: u64,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recovered after an unclean shutdown: write-ahead log replayed ({} frames), {} \
             temporary files removed, reference counts {}",
            self.wal_frames,
            self.temp_files_removed,
            match self.refcounts_fixed {
                0 => "ok".to_string(),
                n => format!("fixed for {n} blobs"),
            }
        )
    }
}

/// This process's hold on the store: the shared lock on the marker, released (and the
/// marker emptied, by the last one out) when the store is dropped.
pub(super) struct OpenGuard {
    file: Option<File>,
    /// False when the marker could only be opened for reading (another user's file).
    writable: bool,
    first: bool,
    recovered: Option<Recovery>,
}

impl OpenGuard {
    /// Takes the lock: exclusively when nobody else has the store open, else shared
    /// (waiting while a first opener is still recovering).
    pub(super) fn acquire(data_dir: &Path) -> Result<OpenGuard> {
        let path = data_dir.join(MARKER);
        let existed = path.exists();
        let (file, writable) = match File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => match File::open(&path) {
                Ok(file) => (file, false),
                Err(_) => {
                    // Without the marker this process neither recovers nor counts as
                    // having the store open; it works as before recovery existed.
                    tracing::warn!(path = %path.display(), error = %e, "cannot open the store's open marker; recovery after a crash is left to the server");
                    return Ok(OpenGuard {
                        file: None,
                        writable: false,
                        first: false,
                        recovered: None,
                    });
                }
            },
            Err(e) => return Err(StoreError::io(&path)(e)),
        };
        if !existed && let Ok(dir) = fs::metadata(data_dir) {
            // Made by root for a store that runs as another user: the server must be able
            // to write it.
            let _ = std::os::unix::fs::lchown(&path, Some(dir.uid()), Some(dir.gid()));
        }
        let first = match file.try_lock() {
            Ok(()) => true,
            Err(fs::TryLockError::WouldBlock) => {
                file.lock_shared().map_err(StoreError::io(&path))?;
                false
            }
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::io(&path)(e)),
        };
        Ok(OpenGuard {
            file: Some(file),
            writable,
            first,
            recovered: None,
        })
    }

    /// Recovers if this is the first opener after an unclean shutdown, and marks the store
    /// open. `conn` is the write connection, before any migration.
    pub(super) fn recover(&mut self, conn: &Connection, data_dir: &Path) -> Result<()> {
        if !self.first || !self.writable {
            return Ok(());
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut marker = Vec::new();
        file.rewind()
            .and_then(|_| file.read_to_end(&mut marker))
            .map_err(StoreError::io(data_dir.join(MARKER)))?;
        let unclean = !marker.is_empty();
        let temp_files_removed = remove_temporary_files(&data_dir.join("blobs").join("tmp"));
        if unclean {
            // A passive checkpoint reports how many frames the log held (a truncating one
            // reports the emptied log); then the log is cut back to nothing.
            let checkpoint = |mode: &str| -> rusqlite::Result<i64> {
                conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
            };
            let log = checkpoint("PASSIVE")?;
            checkpoint("TRUNCATE")?;
            let recovery = Recovery {
                wal_frames: log.max(0) as u64,
                temp_files_removed,
                refcounts_fixed: fix_refcounts(conn, &data_dir.join("blobs"))?,
            };
            tracing::info!(
                wal_frames = recovery.wal_frames,
                temp_files_removed = recovery.temp_files_removed,
                refcounts_fixed = recovery.refcounts_fixed,
                "{recovery}"
            );
            self.recovered = Some(recovery);
        } else if temp_files_removed > 0 {
            tracing::info!(
                temp_files_removed,
                "removed temporary files left by interrupted blob writes"
            );
        }
        let path = data_dir.join(MARKER);
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(OPEN))
            .and_then(|_| crate::io::sync_handle(file, &path))
            .map_err(StoreError::io(&path))?;
        Ok(())
    }

    /// Lets other processes in once this one is open.
    pub(super) fn opened(&mut self) {
        if self.first
            && let Some(file) = &self.file
            && let Err(e) = file.lock_shared()
        {
            tracing::warn!(error = %e, "cannot share the store's open marker");
        }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        // The last one out (nobody else holds the lock) marks the shutdown clean.
        if let Some(file) = &self.file
            && self.writable
            && file.try_lock().is_ok()
        {
            let _ = file.set_len(0);
            let _ = file.sync_all();
        }
    }
}

impl SqliteStore {
    /// What this open recovered after an unclean shutdown; None after a clean one (or when
    /// another process had the store open already).
    pub fn recovery(&self) -> Option<&Recovery> {
        self.open_guard.recovered.as_ref()
    }
}

/// Removes every file in `blobs/tmp/`; returns how many.
fn remove_temporary_files(tmp: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(tmp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file())
            && crate::io::remove_file(&entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Sets every blob's reference count to the number of messages that use it, in one
/// transaction; a blob nobody uses loses its row and its file (nobody else has the store
/// open, so no delivery can be about to share it). Returns how many were wrong.
///
/// Messages are the only users of blobs today, as the checker (`check.rs`) also assumes:
/// a new kind of reference must be counted in both places. The outbound queue is not one:
/// it keeps its bodies inline in the database (schema version 5).
fn fix_refcounts(conn: &Connection, blobs_root: &Path) -> Result<u64> {
    // A crash during the very first migration leaves a database without tables.
    let has_tables: bool = conn.query_row(
        "SELECT count(*) = 2 FROM sqlite_master WHERE type = 'table' AND name IN ('blobs', 'messages')",
        [],
        |r| r.get(0),
    )?;
    if !has_tables {
        return Ok(0);
    }
    let tx = conn.unchecked_transaction()?;
    let wrong: Vec<(Vec<u8>, i64, Option<i64>)> = tx
        .prepare(
            "SELECT hash, uses, size FROM (
                 SELECT b.hash, b.refcount,
                        (SELECT count(*) FROM messages m WHERE m.blob_hash = b.hash) AS uses,
                        b.size
                 FROM blobs b)
             WHERE uses != refcount
             UNION ALL
             SELECT m.blob_hash, count(*), max(m.size) FROM messages m
             WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.hash = m.blob_hash)
             GROUP BY m.blob_hash",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut unused = Vec::new();
    for (hash, uses, size) in &wrong {
        if *uses == 0 {
            tx.execute("DELETE FROM blobs WHERE hash = ?1", [hash])?;
            unused.extend(BlobId::from_slice(hash));
        } else {
            tx.execute(
                "INSERT INTO blobs (hash, size, refcount) VALUES (?1, ?2, ?3)
                 ON CONFLICT (hash) DO UPDATE SET refcount = excluded.refcount",
                params![hash, size.unwrap_or(0), uses],
            )?;
        }
    }
    tx.commit()?;
    for id in unused {
        let path: PathBuf = blobs_root.join(id.relative_path());
        let _ = crate::io::remove_file(&path);
    }
    if !wrong.is_empty() {
        tracing::warn!(
            blobs = wrong.len(),
            "blob reference counts were wrong after the unclean shutdown and were fixed"
        );
    }
    Ok(wrong.len() as u64)
}
