//! The write-ahead log kept bounded, and the store's measured totals.
//!
//! SQLite checkpoints by itself (PASSIVE, every thousand pages), but a passive checkpoint
//! copies only the frames no reader still needs, and the log restarts from its beginning
//! only when no reader uses it at all. Readers that overlap without pause (IMAP sessions,
//! POP3 downloads, the check) therefore let the log grow without bound: Exchange's
//! transaction-log disk filling up, in miniature. A TRUNCATE checkpoint instead waits (with
//! a busy timeout, new writes held back meanwhile) until every reader has moved to the
//! newest snapshot, copies everything back and cuts the file to zero.
//!
//! One reader holding a single transaction open for ever cannot be helped by any checkpoint:
//! SQLite may not overwrite pages its snapshot still reads. The checkpoint then reports
//! itself incomplete, and the server raises its WAL alert.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{BUSY_TIMEOUT, SqliteStore};
use crate::{Result, StoreTotals, WalCheckpoint};

pub(super) fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

pub(super) fn wal_bytes(db: &Path) -> u64 {
    std::fs::metadata(wal_path(db)).map_or(0, |m| m.len())
}

pub(super) fn totals(store: &SqliteStore) -> Result<StoreTotals> {
    let mut totals = store.read(|conn| {
        // One read transaction, so the counts describe one moment.
        conn.execute_batch("BEGIN")?;
        let result = (|| -> Result<StoreTotals> {
            let count = |sql: &str| -> Result<(u64, u64)> {
                Ok(conn.query_row(sql, [], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                })?)
            };
            let pragma = |name: &str| -> Result<u64> {
                Ok(conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0))? as u64)
            };
            let (accounts, _) = count("SELECT count(*), 0 FROM accounts")?;
            let (messages, message_bytes) =
                count("SELECT count(*), coalesce(sum(size), 0) FROM messages")?;
            let (blobs, blob_bytes) = count("SELECT count(*), coalesce(sum(size), 0) FROM blobs")?;
            let page_size = pragma("page_size")?;
            let pages = pragma("page_count")?;
            let free = pragma("freelist_count")?;
            Ok(StoreTotals {
                accounts,
                messages,
                message_bytes,
                blobs,
                blob_bytes,
                database_bytes: pages.saturating_sub(free) * page_size,
                database_free_bytes: free * page_size,
                wal_bytes: 0,
            })
        })();
        let _ = conn.execute_batch("COMMIT");
        result
    })?;
    totals.wal_bytes = wal_bytes(&store.db_path);
    Ok(totals)
}

pub(super) fn checkpoint(store: &SqliteStore, patience: Duration) -> Result<WalCheckpoint> {
    let before = wal_bytes(&store.db_path);
    let (busy, frames, copied) = store.writer.write_alone(move |ctx| {
        ctx.conn.busy_timeout(patience)?;
        let result = ctx
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            });
        ctx.conn.busy_timeout(BUSY_TIMEOUT)?;
        match result {
            Ok(row) => Ok(row),
            // SQLITE_BUSY from the busy handler: readers stayed on old snapshots.
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                Ok((1, -1, -1))
            }
            Err(e) => Err(e.into()),
        }
    })?;
    Ok(WalCheckpoint {
        wal_bytes_before: before,
        wal_bytes_after: wal_bytes(&store.db_path),
        complete: busy == 0,
        frames,
        copied,
    })
}
