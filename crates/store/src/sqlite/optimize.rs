//! The online optimisation of the SQLite backend: planner statistics, free pages given back
//! to the file system, a WAL checkpoint, and orphan blob files dealt with: deleted when a
//! commit is known to have released them, quarantined otherwise.
//!
//! Every step that writes runs on the writer thread, as a job of its own between batches of
//! deliveries, and the long ones (giving back free pages) are cut into short steps, so mail
//! keeps arriving while it runs. Nothing here holds the write lock for long, with one
//! deliberate exception: the single VACUUM that converts an old database to incremental
//! auto-vacuum, done only while the database is small enough for that to take a moment.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rusqlite::Connection;

use super::check::{known_blobs, scan_orphans};
use super::{BUSY_TIMEOUT, SqliteStore, orphans};
use crate::{OptimizeReport, Result, human_bytes};

/// Pages given back per step of incremental vacuum: a few megabytes, one short transaction.
const VACUUM_STEP: u64 = 2048;

/// The largest database converted online by one VACUUM (which holds the write lock and
/// rewrites the whole file): at this size that takes well under a second on any disk.
const VACUUM_ONLINE_LIMIT: u64 = 64 * 1024 * 1024;

/// How long a checkpoint waits for readers before it settles for copying what it can.
const CHECKPOINT_PATIENCE: Duration = Duration::from_secs(2);

/// SQLite's `auto_vacuum` modes, as `PRAGMA auto_vacuum` reports them.
const AUTO_VACUUM_NONE: i64 = 0;
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

pub(super) fn run(store: &SqliteStore) -> Result<OptimizeReport> {
    let wal_path = wal_path(&store.db_path);
    let mut report = OptimizeReport {
        database: store.db_path.clone(),
        database_bytes_before: file_len(&store.db_path),
        wal_bytes_before: file_len(&wal_path),
        ..OptimizeReport::default()
    };

    let before = store.writer.write_alone(|ctx| pages(ctx.conn))?;
    report.page_size = before.page_size;
    report.free_pages_before = before.free;

    // Orphan blob files first: the same scan as the check. Only those a commit is recorded
    // to have released are deleted; the rest go to quarantine. Age alone is no proof: the
    // orphans a crash that cut the write-ahead log short leaves are exactly as old as the
    // acknowledged messages whose rows it lost, and deleting them (as this step once did)
    // destroys their only copy. Quarantine instead of deletion for all would keep that
    // mail too, but would also fill the quarantine with every message expunged while a
    // backup ran and ask the operator about each; the record of releases tells the two
    // apart at the one place that knows, the commit.
    let listed = SystemTime::now();
    let files = store.blobs.list()?;
    let known = store.read(known_blobs)?;
    let candidates = scan_orphans(&files, listed, |id| known.contains(id));
    report.young_files = candidates.young;
    let swept = orphans::sweep(store, candidates.old)?;
    report.orphans_removed = swept.removed.len() as u64;
    report.orphan_bytes = swept.removed.iter().map(|(_, size)| size).sum();
    report.orphans_quarantined = swept.quarantined.len() as u64;

    // A bounded ANALYZE (a thousand rows per index) keeps this quick on a large database.
    store.writer.write_alone(|ctx| {
        ctx.conn
            .execute_batch("PRAGMA analysis_limit = 1000; ANALYZE; PRAGMA optimize;")?;
        Ok(())
    })?;
    report.analyzed = true;

    // The statistics may have taken a few free pages, so look again.
    let current = store.writer.write_alone(|ctx| pages(ctx.conn))?;
    match current.auto_vacuum {
        AUTO_VACUUM_INCREMENTAL => {
            let mut free = current.free;
            while free > 0 {
                let now = store.writer.write_alone(|ctx| {
                    step_to_done(
                        ctx.conn,
                        &format!("PRAGMA incremental_vacuum({VACUUM_STEP})"),
                    )?;
                    pages(ctx.conn)
                })?;
                if now.free >= free {
                    break;
                }
                free = now.free;
            }
        }
        AUTO_VACUUM_NONE if report.database_bytes_before <= VACUUM_ONLINE_LIMIT => {
            store.writer.write_alone(|ctx| {
                ctx.conn
                    .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
                Ok(())
            })?;
            report.vacuumed = true;
        }
        AUTO_VACUUM_NONE => report.not_done.push(format!(
            "the database was created before incremental auto-vacuum and is too large \
             ({}) to convert online; its {} free pages ({}) are reused by new mail but not \
             given back to the file system. Converting needs one VACUUM with the server \
             stopped and about twice the database's size free on the disk",
            human_bytes(report.database_bytes_before),
            current.free,
            human_bytes(current.free * current.page_size)
        )),
        // FULL: SQLite already gives pages back at every commit.
        _ => {}
    }
    let after = store.writer.write_alone(|ctx| pages(ctx.conn))?;
    report.free_pages_after = after.free;
    report.pages_freed = before.count.saturating_sub(after.count);

    // Last, so the pages given back above leave the WAL and the file shrinks.
    let (busy, log, copied) = store.writer.write_alone(|ctx| checkpoint(ctx.conn))?;
    report.checkpoint_complete = busy == 0 && log == copied;
    report.wal_bytes_after = file_len(&wal_path);
    report.database_bytes_after = file_len(&store.db_path);
    if !report.checkpoint_complete {
        report.not_done.push(format!(
            "the write-ahead log could not be truncated: readers held {} of {} frames; \
             SQLite finishes it at a later checkpoint",
            log.saturating_sub(copied).max(0),
            log.max(0)
        ));
    }
    Ok(report)
}

struct Pages {
    page_size: u64,
    count: u64,
    free: u64,
    auto_vacuum: i64,
}

fn pages(conn: &Connection) -> Result<Pages> {
    let get =
        |name: &str| -> Result<i64> { Ok(conn.pragma_query_value(None, name, |r| r.get(0))?) };
    Ok(Pages {
        page_size: get("page_size")? as u64,
        count: get("page_count")? as u64,
        free: get("freelist_count")? as u64,
        auto_vacuum: get("auto_vacuum")?,
    })
}

/// Runs a statement that does its work a row at a time (incremental vacuum frees one page
/// per step) until it is done.
fn step_to_done(conn: &Connection, sql: &str) -> Result<()> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Copies the WAL back into the database and truncates it, waiting only briefly for
/// readers: a reader in another process (a POP3 download) must not stall our deliveries.
/// When readers are in the way it settles for a passive checkpoint of what it can copy.
/// Returns SQLite's (busy, frames in the log, frames copied).
fn checkpoint(conn: &Connection) -> Result<(i64, i64, i64)> {
    let run = |mode: &str| -> Result<(i64, i64, i64)> {
        Ok(
            conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?,
        )
    };
    conn.busy_timeout(CHECKPOINT_PATIENCE)?;
    let truncated = run("TRUNCATE");
    conn.busy_timeout(BUSY_TIMEOUT)?;
    match truncated {
        Ok((0, log, copied)) => Ok((0, log, copied)),
        _ => run("PASSIVE").map(|(_, log, copied)| (1, log, copied)),
    }
}

fn wal_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
