//! The integrity check of the SQLite backend: database, reference counts, every blob.
//!
//! It reads through one read transaction, a consistent snapshot, so it runs beside a live
//! server. Files are listed before the snapshot starts; anything written after that is
//! either in the snapshot or younger than the listing and left alone.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use rusqlite::params;

use super::{SqliteStore, release_blob};
use crate::{BlobId, CheckOptions, CheckReport, Result, StoreError};

/// Blob files younger than this may belong to a delivery that has not committed yet.
const IN_FLIGHT: Duration = Duration::from_secs(300);

pub(super) fn run(store: &SqliteStore, options: &CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let started = SystemTime::now();
    let files = store.blobs.list()?;

    let (referenced, refcounts) = store.read(|conn| {
        conn.execute_batch("BEGIN")?;
        let result = snapshot(conn, &mut report);
        conn.execute_batch("COMMIT")?;
        result
    })?;

    let on_disk: HashMap<BlobId, u64> = files.iter().map(|(id, size, _)| (*id, *size)).collect();
    let mut wrong_counts = Vec::new();
    for (id, (size, uses)) in &referenced {
        report.blobs += 1;
        report.blob_bytes += size;
        let stored = refcounts.get(id).copied();
        if stored != Some(*uses as i64) {
            report.refcount_mismatches.push(format!(
                "blob {id}: stored {stored:?}, used by {uses} messages"
            ));
            wrong_counts.push((*id, *uses, *size));
        }
        match store.blobs.get(id) {
            Ok(data) if data.len() as u64 == *size => {}
            Ok(data) => report
                .damaged_blobs
                .push(format!("blob {id}: {} bytes, expected {size}", data.len())),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                // A message expunged after our snapshot may have taken its blob with it.
                if still_referenced(store, id)? {
                    report
                        .damaged_blobs
                        .push(format!("blob {id}: file missing"));
                }
            }
            Err(e) => report.damaged_blobs.push(format!("blob {id}: {e}")),
        }
    }
    for id in refcounts.keys().filter(|id| !referenced.contains_key(*id)) {
        report
            .refcount_mismatches
            .push(format!("blob {id}: counted but used by no message"));
        wrong_counts.push((*id, 0, 0));
    }

    let young_since = started - IN_FLIGHT;
    let mut orphans = Vec::new();
    for (id, _, modified) in &files {
        if referenced.contains_key(id) || refcounts.contains_key(id) {
            continue;
        }
        if *modified > young_since {
            report.young_files += 1;
        } else {
            report.orphan_files.push(format!("blob {id}"));
            orphans.push(*id);
        }
    }
    let _ = on_disk;

    if options.repair {
        repair(store, &mut report, wrong_counts, orphans)?;
    }
    Ok(report)
}

type Referenced = HashMap<BlobId, (u64, u64)>;

fn snapshot(
    conn: &rusqlite::Connection,
    report: &mut CheckReport,
) -> Result<(Referenced, HashMap<BlobId, i64>)> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let line = row?;
        if line != "ok" {
            report.database.push(line);
        }
    }
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    for row in stmt.query_map([], |r| {
        Ok(format!(
            "{} row {:?} violates a reference to {}",
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, String>(2)?
        ))
    })? {
        report.database.push(row?);
    }

    report.messages = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    let mut referenced = Referenced::new();
    let mut stmt =
        conn.prepare("SELECT blob_hash, max(size), count(*) FROM messages GROUP BY blob_hash")?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, u64>(1)?,
            r.get::<_, u64>(2)?,
        ))
    })? {
        let (hash, size, uses) = row?;
        match BlobId::from_slice(&hash) {
            Some(id) => {
                referenced.insert(id, (size, uses));
            }
            None => report.database.push(format!(
                "a message names a malformed blob hash ({} bytes)",
                hash.len()
            )),
        }
    }
    let mut refcounts = HashMap::new();
    let mut stmt = conn.prepare("SELECT hash, refcount FROM blobs")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))? {
        let (hash, count) = row?;
        if let Some(id) = BlobId::from_slice(&hash) {
            refcounts.insert(id, count);
        }
    }
    Ok((referenced, refcounts))
}

fn still_referenced(store: &SqliteStore, id: &BlobId) -> Result<bool> {
    store.read(|conn| {
        Ok(conn.query_row(
            "SELECT count(*) FROM messages WHERE blob_hash = ?1",
            [&id.0[..]],
            |r| r.get::<_, i64>(0),
        )? > 0)
    })
}

fn repair(
    store: &SqliteStore,
    report: &mut CheckReport,
    wrong_counts: Vec<(BlobId, u64, u64)>,
    orphans: Vec<BlobId>,
) -> Result<()> {
    // Recount inside the writer so the fix reflects the data at commit time, not the snapshot.
    let fixed = store.write(move |ctx| {
        let mut fixed = Vec::new();
        for (id, _, _) in wrong_counts {
            let (uses, size): (i64, Option<i64>) = ctx.conn.query_row(
                "SELECT count(*), max(size) FROM messages WHERE blob_hash = ?1",
                [&id.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if uses == 0 {
                ctx.conn
                    .execute("DELETE FROM blobs WHERE hash = ?1", [&id.0[..]])?;
                ctx.unreferenced.push(id);
            } else {
                ctx.conn.execute(
                    "INSERT INTO blobs (hash, size, refcount) VALUES (?1, ?2, ?3)
                     ON CONFLICT (hash) DO UPDATE SET refcount = excluded.refcount",
                    params![&id.0[..], size.unwrap_or(0), uses],
                )?;
            }
            fixed.push(format!("blob {id}: reference count set to {uses}"));
        }
        // Orphans get a row with one reference and then lose it, so the writer deletes their
        // files under the write lock, exactly as for any other blob that lost its last use.
        for id in orphans {
            let known: i64 = ctx.conn.query_row(
                "SELECT count(*) FROM blobs WHERE hash = ?1",
                [&id.0[..]],
                |r| r.get(0),
            )?;
            if known == 0 {
                ctx.conn.execute(
                    "INSERT INTO blobs (hash, size, refcount) VALUES (?1, 0, 1)",
                    [&id.0[..]],
                )?;
                release_blob(ctx, &id.0)?;
                fixed.push(format!("blob {id}: orphan file removed"));
            }
        }
        Ok(fixed)
    })?;
    report.repaired = fixed;
    Ok(())
}
