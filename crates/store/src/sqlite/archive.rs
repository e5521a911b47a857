//! Moving old mail out of the live store into a read-only archive (format: `crate::archive`).
//!
//! The move is online and survives being killed at any instant, because every message is
//! always in the live store or in a finished archive, never in neither:
//!
//! 1. **Snapshot.** One statement reads the messages to move; their rows are copied into
//!    `archive/<id>.partial/archive.db`. Nothing else waits on it.
//! 2. **Index.** Each body is hard-linked into the archive (copied when the archive is on
//!    another file system), read back, checked against its hash and indexed. A message
//!    whose body is missing or damaged stays live and is reported.
//! 3. **Seal.** One `syncfs`, then the directory is renamed to `archive/<id>/`. From here the
//!    archive holds every message completely and durably; before here, a crash leaves only
//!    a `.partial` directory that the next run removes, the live store untouched.
//! 4. **Move.** Batches of messages leave the live store, each batch one transaction of the
//!    writer that also records in `archive_moves` which messages went and with which flags.
//!    A message is deleted only if its id, mailbox, UID and hash still match, so one that a
//!    user expunged or moved meanwhile is never mistaken for another.
//! 5. **Finish.** The archive takes the flags the messages had when they went, drops the
//!    messages that never went (expunged by their owner meanwhile), and is marked complete;
//!    then the live store forgets `archive_moves` and is optimised (space given back).
//!
//! A rerun (or `resume`) after a crash in 4 or 5 repeats them: both are idempotent.

use crate::prelude::*;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, release_blob};
use crate::archive::{self, Archives, Document, MAX_INDEXED_TEXT, index_text, set_meta};
use crate::blob::sync_dir;
use crate::{AccountId, BlobId, MailboxId, Result, StoreError};

/// Messages removed from the live store per transaction: small enough that deliveries
/// queued behind one wait milliseconds, large enough that the move is not all fsyncs.
pub const DEFAULT_BATCH: usize = 2000;

/// What to archive.
#[derive(Debug, Clone)]
pub struct ArchiveRequest {
    /// Messages with an internal date before this (Unix seconds) go.
    pub before: i64,
    /// Only this account's, when given.
    pub account: Option<String>,
    /// What the archive is called, in listings and in IMAP (`Archive/<label>/INBOX`).
    pub label: Option<String>,
    /// Messages per transaction of the move.
    pub batch: usize,
    /// Free space that must remain after the archive is made (the disk guard's hard floor).
    pub reserve_bytes: u64,
}

/// What an archive run would do, measured before it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivePlan {
    pub messages: u64,
    /// The messages' bytes, and the bytes of their distinct bodies.
    pub bytes: u64,
    pub body_bytes: u64,
    pub accounts: Vec<String>,
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// What the run writes: the archive's database and index, the bodies when they cannot
    /// be hard-linked, and the live write-ahead log the deletions pass through.
    pub needed_bytes: u64,
    pub free_bytes: u64,
    /// True when the archive directory is on another file system than the blobs, so
    /// bodies are copied, not linked.
    pub copies_bodies: bool,
}

/// The steps of a run, for progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Snapshot,
    Index,
    Seal,
    Move,
    Finish,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Snapshot => "snapshot",
            Phase::Index => "index",
            Phase::Seal => "seal",
            Phase::Move => "move",
            Phase::Finish => "finish",
        }
    }
}

/// Called with (phase, done, total) as a run goes; from one thread at a time.
pub type ArchiveProgress<'a> = &'a (dyn Fn(Phase, u64, u64) + Sync);

/// Makes the stored header fields and index text of a message from its bytes.
pub type Indexer<'a> = &'a (dyn Fn(&[u8]) -> Document + Sync);

/// What one archive's run did.
#[derive(Debug, Clone, Default)]
pub struct ArchiveReport {
    pub id: u32,
    pub label: String,
    /// Messages now in the archive and no longer live, and their bytes.
    pub messages: u64,
    pub bytes: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// Messages expunged by their owners between the snapshot and the move: not archived.
    pub withdrawn: u64,
    /// Messages left live because their body could not be read, each with the reason.
    pub skipped: Vec<String>,
    pub dir: PathBuf,
    /// How long each phase took.
    pub timings: Vec<(Phase, Duration)>,
}

/// What `archive create` did: archives finished for earlier, interrupted runs, then the new
/// one (none when nothing was old enough).
#[derive(Debug, Default)]
pub struct ArchiveOutcome {
    pub resumed: Vec<ArchiveReport>,
    pub created: Option<ArchiveReport>,
}

/// Rows of the live store the snapshot takes, per message.
const CANDIDATES: &str = "
    SELECT m.id, m.mailbox_id, m.uid, m.internal_date, m.size, m.flags, m.keywords,
           m.blob_hash, b.account_id, a.address, b.name
    FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
    JOIN accounts a ON a.id = b.account_id
    WHERE m.internal_date < ?1 AND (?2 IS NULL OR a.address = ?2)
    ORDER BY m.id";

impl SqliteStore {
    pub fn archives(&self) -> &Archives {
        &self.archives
    }

    /// Measures what archiving `request` would move and need, without changing anything.
    pub fn archive_plan(&self, request: &ArchiveRequest) -> Result<ArchivePlan> {
        let account = request.account.as_deref().map(str::to_lowercase);
        let before = request.before;
        let mut plan = self.read(|conn| {
            let filter = "FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
                JOIN accounts a ON a.id = b.account_id
                WHERE m.internal_date < ?1 AND (?2 IS NULL OR a.address = ?2)";
            let tx = conn.unchecked_transaction()?;
            let (messages, bytes, first, last) = tx.query_row(
                &format!(
                    "SELECT count(*), coalesce(sum(m.size), 0), min(m.internal_date),
                     max(m.internal_date) {filter}"
                ),
                params![before, account],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let body_bytes = tx.query_row(
                &format!(
                    "SELECT coalesce(sum(size), 0) FROM blobs
                     WHERE hash IN (SELECT m.blob_hash {filter})"
                ),
                params![before, account],
                |r| r.get(0),
            )?;
            let mut stmt = tx.prepare(&format!("SELECT DISTINCT a.address {filter} ORDER BY 1"))?;
            let accounts = stmt
                .query_map(params![before, account], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ArchivePlan {
                messages,
                bytes,
                body_bytes,
                accounts,
                first,
                last,
                ..ArchivePlan::default()
            })
        })?;
        if let Some(account) = &account
            && plan.messages == 0
        {
            let known = self.read(|conn| {
                Ok(conn
                    .query_row(
                        "SELECT 1 FROM accounts WHERE address = ?1",
                        [account],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some())
            })?;
            if !known {
                return Err(StoreError::NotFound {
                    what: format!("account '{account}'"),
                });
            }
        }
        let root = self.archives.root();
        crate::io::create_dir_all(root, None).map_err(StoreError::io(root))?;
        plan.copies_bodies = device(root)? != device(self.blobs.root())?;
        // Measured on this format: rows and their indexes take about 600 bytes a message,
        // the full-text index about half the text it holds. Text is at most the message.
        let text = plan.bytes.min(plan.messages * MAX_INDEXED_TEXT as u64);
        plan.needed_bytes = plan.messages * 600
            + text / 2
            + plan.messages * 256
            + if plan.copies_bodies {
                plan.body_bytes
            } else {
                0
            };
        let stat = rustix::fs::statvfs(root).map_err(|e| StoreError::Io {
            path: root.to_path_buf(),
            source: e.into(),
        })?;
        plan.free_bytes = stat.f_bavail.saturating_mul(stat.f_frsize);
        Ok(plan)
    }

    /// Finishes archives that an interrupted run left behind, then archives what `request`
    /// names. Refuses, changing nothing, when the disk cannot hold the archive.
    pub fn archive_create(
        &self,
        request: &ArchiveRequest,
        indexer: Indexer<'_>,
        progress: ArchiveProgress<'_>,
    ) -> Result<ArchiveOutcome> {
        let _lock = ArchiveLock::take(self.archives.root())?;
        let resumed = self.resume_locked(progress)?;
        let plan = self.archive_plan(request)?;
        if plan.messages == 0 {
            return Ok(ArchiveOutcome {
                resumed,
                created: None,
            });
        }
        let needed = plan.needed_bytes + request.reserve_bytes;
        if plan.free_bytes < needed {
            return Err(StoreError::Invalid(format!(
                "archive needs {} free ({} for {} messages{} + {} kept free), {} is free in {}; \
                 free some space or archive a shorter period (an earlier --before)",
                crate::human_bytes(needed),
                crate::human_bytes(plan.needed_bytes),
                plan.messages,
                if plan.copies_bodies {
                    ", bodies copied to another file system"
                } else {
                    ""
                },
                crate::human_bytes(request.reserve_bytes),
                crate::human_bytes(plan.free_bytes),
                self.archives.root().display()
            )));
        }
        let mut report = self.build(request, indexer, progress)?;
        self.move_and_finish(&mut report, request.batch, progress)?;
        Ok(ArchiveOutcome {
            resumed,
            created: Some(report),
        })
    }

    /// Finishes every archive an interrupted run left behind (the server calls this at
    /// start). An archive still `.partial` was never sealed and is removed: the live store
    /// still holds all of its messages.
    pub fn archive_resume(&self, progress: ArchiveProgress<'_>) -> Result<Vec<ArchiveReport>> {
        let _lock = ArchiveLock::take(self.archives.root())?;
        self.resume_locked(progress)
    }

    fn resume_locked(&self, progress: ArchiveProgress<'_>) -> Result<Vec<ArchiveReport>> {
        let root = self.archives.root().to_path_buf();
        for partial in partial_dirs(&root) {
            tracing::warn!(dir = %partial.display(), "removing an archive that was never sealed");
            crate::io::remove_dir_all(&partial).map_err(StoreError::io(&partial))?;
        }
        let mut reports = Vec::new();
        for (id, dir) in archive::numbered_dirs(&root) {
            let conn = open_archive_db(&dir.join("archive.db"))?;
            if archive::meta(&conn, "state")?.as_deref() == Some("complete") {
                // Complete, but the live store may not have forgotten the move yet.
                drop(conn);
                self.forget_moves(id)?;
                continue;
            }
            let label = archive::meta(&conn, "label")?.unwrap_or_else(|| id.to_string());
            drop(conn);
            tracing::info!(archive = id, "finishing an interrupted archive");
            let mut report = ArchiveReport {
                id,
                label,
                dir,
                ..ArchiveReport::default()
            };
            self.move_and_finish(&mut report, batch_size(), progress)?;
            reports.push(report);
        }
        Ok(reports)
    }

    /// Steps 1–3: a sealed archive holding every message of the snapshot it could read.
    fn build(
        &self,
        request: &ArchiveRequest,
        indexer: Indexer<'_>,
        progress: ArchiveProgress<'_>,
    ) -> Result<ArchiveReport> {
        let root = self.archives.root().to_path_buf();
        let id = next_id(&root);
        let partial = root.join(format!("{id}.partial"));
        crate::io::create_dir_all(&partial.join("blobs"), None)
            .map_err(StoreError::io(&partial))?;
        let label = request.label.clone().unwrap_or_else(|| id.to_string());
        let created = super::now();
        let db_path = partial.join("archive.db");
        let mut conn = crate::sqlite::vfs::open_db(
            &db_path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        // Nothing in a .partial archive is worth a journal: a crash throws it away whole.
        conn.pragma_update(None, "journal_mode", "OFF")?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        archive::create_schema(&conn)?;
        for (key, value) in [
            ("id", id.to_string()),
            ("label", label.clone()),
            ("before", request.before.to_string()),
            ("account", request.account.clone().unwrap_or_default()),
            ("created", created.to_string()),
            ("state", "building".to_string()),
            ("generation", "1".to_string()),
        ] {
            set_meta(&conn, key, &value)?;
        }
        let mut report = ArchiveReport {
            id,
            label,
            dir: root.join(id.to_string()),
            ..ArchiveReport::default()
        };

        let started = Instant::now();
        let total = self.snapshot(&mut conn, request, created)?;
        progress(Phase::Snapshot, total, total);
        report.timings.push((Phase::Snapshot, started.elapsed()));

        let started = Instant::now();
        report.skipped = self.index(&mut conn, &partial.join("blobs"), total, indexer, progress)?;
        report.timings.push((Phase::Index, started.elapsed()));

        let started = Instant::now();
        progress(Phase::Seal, 0, 1);
        // Merging the index's segments now makes every later search cheaper.
        conn.execute("INSERT INTO text(text) VALUES ('optimize')", [])?;
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        set_meta(&conn, "state", "moving")?;
        drop(conn);
        crate::io::sync_path(&db_path).map_err(StoreError::io(&db_path))?;
        // One flush for every linked or copied body and directory entry, then the rename
        // that makes the archive exist.
        crate::io::syncfs(&partial).map_err(StoreError::io(&partial))?;
        crate::io::rename(&partial, &report.dir).map_err(StoreError::io(&report.dir))?;
        sync_dir(&root)?;
        progress(Phase::Seal, 1, 1);
        report.timings.push((Phase::Seal, started.elapsed()));
        Ok(report)
    }

    /// Copies the rows of every message to archive into the archive database, from one
    /// statement of the live store (one snapshot). Returns how many.
    fn snapshot(
        &self,
        conn: &mut Connection,
        request: &ArchiveRequest,
        created: i64,
    ) -> Result<u64> {
        let account = request.account.as_deref().map(str::to_lowercase);
        let tx = conn.transaction()?;
        let count = self.read(|live| {
            let mut stmt = live.prepare(CANDIDATES)?;
            let mut rows = stmt.query(params![request.before, account])?;
            let mut mailboxes: HashMap<i64, (i64, u32)> = HashMap::new();
            let mut count = 0u64;
            while let Some(r) = rows.next()? {
                let (id, mailbox, uid): (i64, i64, u32) = (r.get(0)?, r.get(1)?, r.get(2)?);
                let entry = match mailboxes.get_mut(&mailbox) {
                    Some(entry) => entry,
                    None => {
                        let (account_id, address, name): (i64, String, String) =
                            (r.get(8)?, r.get(9)?, r.get(10)?);
                        // A new mailbox to IMAP clients: its own UIDVALIDITY. Archives
                        // are made seconds apart at least, so the creation time serves.
                        tx.execute(
                            "INSERT INTO mailboxes
                                 (source_id, account_id, account, name, uidvalidity, uidnext)
                             VALUES (?1, ?2, ?3, ?4, ?5, 1)",
                            params![mailbox, account_id, address, name, created as u32],
                        )?;
                        mailboxes
                            .entry(mailbox)
                            .or_insert((tx.last_insert_rowid(), 1))
                    }
                };
                entry.1 = entry.1.max(uid + 1);
                let row = entry.0;
                tx.prepare_cached(
                    "INSERT INTO messages (source_id, mailbox_id, uid, internal_date, size,
                         flags, keywords, blob_hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    id,
                    row,
                    uid,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Vec<u8>>(7)?
                ])?;
                count += 1;
            }
            for (row, uid_next) in mailboxes.values() {
                tx.execute(
                    "UPDATE mailboxes SET uidnext = ?2 WHERE id = ?1",
                    params![row, uid_next],
                )?;
            }
            Ok(count)
        })?;
        tx.commit()?;
        Ok(count)
    }

    /// Links, verifies and indexes every body (several threads read and parse; this one
    /// writes). Messages whose body cannot be had are dropped from the archive and named.
    fn index(
        &self,
        conn: &mut Connection,
        blobs: &Path,
        total: u64,
        indexer: Indexer<'_>,
        progress: ArchiveProgress<'_>,
    ) -> Result<Vec<String>> {
        let work: Vec<(i64, Vec<u8>, String)> = {
            let mut stmt = conn.prepare(
                "SELECT m.id, m.blob_hash, b.account || ' ' || b.name || ' UID ' || m.uid
                 FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id ORDER BY m.id",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let queue = Mutex::new(work.into_iter());
        let live = self.blobs.root();
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4);
        let (tx, rx) =
            mpsc::sync_channel::<(i64, String, std::result::Result<Document, String>)>(64);
        let mut skipped = Vec::new();
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..workers {
                let tx = tx.clone();
                let queue = &queue;
                scope.spawn(move || {
                    loop {
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                        let Some((row, hash, name)) = next else { break };
                        let doc = take_body(live, blobs, &hash).map(|bytes| {
                            let mut doc = indexer(&bytes);
                            truncate(&mut doc.text, MAX_INDEXED_TEXT);
                            doc
                        });
                        if tx.send((row, name, doc)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut done = 0u64;
            let mut batch = conn.transaction()?;
            for (row, name, doc) in rx.iter() {
                match doc {
                    Ok(doc) => {
                        batch
                            .prepare_cached(
                                "UPDATE messages SET sent_date = ?2, from_addr = ?3, to_addr = ?4,
                                     subject = ?5, message_id = ?6 WHERE id = ?1",
                            )?
                            .execute(params![
                                row,
                                doc.sent_date,
                                doc.from,
                                doc.to,
                                doc.subject,
                                doc.message_id
                            ])?;
                        batch
                            .prepare_cached(
                                "INSERT INTO text (rowid, subject, from_addr, to_addr, body)
                                 VALUES (?1, ?2, ?3, ?4, ?5)",
                            )?
                            .execute(params![
                                row,
                                index_text(&doc.subject),
                                index_text(&doc.from),
                                index_text(&doc.to),
                                index_text(&doc.text)
                            ])?;
                    }
                    Err(reason) => {
                        batch.execute("DELETE FROM messages WHERE id = ?1", [row])?;
                        skipped.push(format!("{name}: {reason}; left in the live store"));
                    }
                }
                done += 1;
                if done.is_multiple_of(1000) {
                    batch.commit()?;
                    batch = conn.transaction()?;
                    progress(Phase::Index, done, total);
                }
            }
            batch.commit()?;
            progress(Phase::Index, done, total);
            Ok(())
        })?;
        Ok(skipped)
    }

    /// Steps 4–5, for a sealed archive; safe to repeat after a crash.
    fn move_and_finish(
        &self,
        report: &mut ArchiveReport,
        batch: usize,
        progress: ArchiveProgress<'_>,
    ) -> Result<()> {
        let id = report.id;
        let db_path = report.dir.join("archive.db");
        let rows: Vec<(i64, i64, u32, Vec<u8>)> = {
            let conn = open_archive_db(&db_path)?;
            let mut stmt = conn.prepare(
                "SELECT m.source_id, b.source_id, m.uid, m.blob_hash
                 FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id ORDER BY m.source_id",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let total = rows.len() as u64;

        let started = Instant::now();
        let already: HashSet<i64> = self.moved(id)?.into_keys().collect();
        let pending: Vec<_> = rows
            .into_iter()
            .filter(|r| !already.contains(&r.0))
            .collect();
        let mut done = already.len() as u64;
        progress(Phase::Move, done, total);
        for chunk in pending.chunks(batch.max(1)) {
            let chunk = chunk.to_vec();
            let n = chunk.len() as u64;
            let changed = self.write(move |ctx| {
                let mut changed: HashSet<i64> = HashSet::new();
                for (message, mailbox, uid, hash) in chunk {
                    let gone: Option<(i64, String)> = ctx
                        .conn
                        .prepare_cached(
                            "DELETE FROM messages
                             WHERE id = ?1 AND mailbox_id = ?2 AND uid = ?3 AND blob_hash = ?4
                             RETURNING flags, keywords",
                        )?
                        .query_row(params![message, mailbox, uid, hash], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()?;
                    if let Some((flags, keywords)) = gone {
                        release_blob(ctx, &hash)?;
                        ctx.conn
                            .prepare_cached(
                                "INSERT OR REPLACE INTO archive_moves
                                     (archive_id, message_id, flags, keywords)
                                 VALUES (?1, ?2, ?3, ?4)",
                            )?
                            .execute(params![id, message, flags, keywords])?;
                        changed.insert(mailbox);
                    }
                }
                let mut touched = Vec::new();
                for mailbox in changed {
                    let account: Option<i64> = ctx
                        .conn
                        .query_row(
                            "UPDATE mailboxes SET modseq = modseq + 1 WHERE id = ?1
                             RETURNING account_id",
                            [mailbox],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(account) = account {
                        touched.push((AccountId(account), MailboxId(mailbox)));
                    }
                }
                Ok(touched)
            })?;
            self.notify(&changed);
            done += n;
            progress(Phase::Move, done, total);
        }
        report.timings.push((Phase::Move, started.elapsed()));

        let started = Instant::now();
        progress(Phase::Finish, 0, 1);
        let moved = self.moved(id)?;
        let conn = open_archive_db(&db_path)?;
        let tx = conn.unchecked_transaction()?;
        let archived: Vec<(i64, i64, i64, String, Vec<u8>)> = {
            let mut stmt =
                tx.prepare("SELECT id, source_id, flags, keywords, blob_hash FROM messages")?;
            stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        let mut dropped_blobs = Vec::new();
        let mut withdrawn = 0;
        for (row, source, flags, keywords, hash) in archived {
            match moved.get(&source) {
                Some((now_flags, now_keywords)) => {
                    if (*now_flags, now_keywords) != (flags, &keywords) {
                        tx.execute(
                            "UPDATE messages SET flags = ?2, keywords = ?3 WHERE id = ?1",
                            params![row, now_flags, now_keywords],
                        )?;
                    }
                }
                None => {
                    // Its owner expunged (or moved) it before the move reached it.
                    tx.execute("DELETE FROM text WHERE rowid = ?1", [row])?;
                    tx.execute("DELETE FROM messages WHERE id = ?1", [row])?;
                    dropped_blobs.push(hash);
                    withdrawn += 1;
                }
            }
        }
        dropped_blobs.retain(|hash| {
            tx.query_row(
                "SELECT 1 FROM messages WHERE blob_hash = ?1",
                [hash],
                |_| Ok(()),
            )
            .optional()
            .is_ok_and(|found| found.is_none())
        });
        set_meta(&tx, "state", "complete")?;
        let generation: u64 = archive::meta(&tx, "generation")?
            .and_then(|g| g.parse().ok())
            .unwrap_or(1);
        set_meta(&tx, "generation", &(generation + 1).to_string())?;
        let (count, bytes, first, last): (u64, u64, Option<i64>, Option<i64>) = tx.query_row(
            "SELECT count(*), coalesce(sum(size), 0), min(internal_date), max(internal_date)
             FROM messages",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        tx.commit()?;
        drop(conn);
        for hash in dropped_blobs {
            if let Some(blob) = BlobId::from_slice(&hash) {
                let path = report.dir.join("blobs").join(blob.relative_path());
                let _ = crate::io::remove_file(&path);
            }
        }
        self.forget_moves(id)?;
        report.messages = count;
        report.bytes = bytes;
        report.first = first;
        report.last = last;
        report.withdrawn = withdrawn;
        if count == 0 {
            // Everything was expunged meanwhile: an empty archive is only clutter.
            crate::io::remove_dir_all(&report.dir).map_err(StoreError::io(&report.dir))?;
        }
        // The live store shrank: give the space back now, not at the next scheduled run.
        self.optimize()?;
        progress(Phase::Finish, 1, 1);
        report.timings.push((Phase::Finish, started.elapsed()));
        tracing::info!(
            archive = id,
            messages = count,
            bytes,
            withdrawn,
            "archive complete"
        );
        Ok(())
    }

    /// The messages the live store gave up to an archive, with their flags at that moment.
    fn moved(&self, archive: u32) -> Result<HashMap<i64, (i64, String)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT message_id, flags, keywords FROM archive_moves WHERE archive_id = ?1",
            )?;
            let rows = stmt
                .query_map([archive], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn forget_moves(&self, archive: u32) -> Result<()> {
        self.write(move |ctx| {
            ctx.conn
                .execute("DELETE FROM archive_moves WHERE archive_id = ?1", [archive])?;
            Ok(())
        })
    }
}

/// Messages per transaction of the move: `TEGAMI_ARCHIVE_BATCH` when set (tests use a small
/// one to stop a run in the middle), else [`DEFAULT_BATCH`].
pub fn batch_size() -> usize {
    std::env::var("TEGAMI_ARCHIVE_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_BATCH)
}

/// Puts a body into the archive's blobs (a hard link to the live file, or a copy) and reads
/// it back, verified. The live file may have gone since the snapshot (its message was
/// expunged): then the message is not archived.
fn take_body(live: &Path, archive: &Path, hash: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let blob = BlobId::from_slice(hash).ok_or("malformed body hash")?;
    let relative = blob.relative_path();
    let target = archive.join(&relative);
    if !target.exists() {
        let dir = target.parent().expect("blob paths have a parent");
        crate::io::create_dir_all(dir, None).map_err(|e| format!("{}: {e}", dir.display()))?;
        let source = live.join(&relative);
        match crate::io::hard_link(&source, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("its body is no longer in the live store".into());
            }
            // Another file system (EXDEV), or links not allowed: copy, and fsync the copy
            // (the seal's syncfs covers only the archive's own file system).
            Err(_) => {
                let copied = crate::io::copy_new(&source, &target, None)
                    .and_then(|_| crate::io::sync_path(&target));
                if let Err(e) = copied {
                    let _ = crate::io::remove_file(&target);
                    return Err(format!("cannot copy {}: {e}", source.display()));
                }
            }
        }
    }
    let bytes = fs::read(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    if BlobId::of(&bytes) != blob {
        let _ = crate::io::remove_file(&target);
        return Err(format!("body {blob} is damaged (run `tegami check`)"));
    }
    Ok(bytes)
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

fn open_archive_db(path: &Path) -> Result<Connection> {
    let conn = crate::sqlite::vfs::open_db(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // EXTRA, not FULL: in DELETE journal mode a commit is the journal's unlink, and only
    // EXTRA syncs the directory after it. Under FULL a power cut right after the commit
    // that seals an archive can bring the journal back and roll the commit back, while
    // the live store has already forgotten the moves; the resumed run then takes every
    // archived message for one expunged meanwhile and drops it (found by the power-loss
    // suite, `power_loss_in_an_archive_run`).
    conn.pragma_update(None, "synchronous", "EXTRA")?;
    Ok(conn)
}

fn device(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata(path).map_err(StoreError::io(path))?.dev())
}

/// The next archive id: above every archive and every `.partial` one.
fn next_id(root: &Path) -> u32 {
    let finished = archive::numbered_dirs(root).into_iter().map(|(id, _)| id);
    let partial = partial_dirs(root).into_iter().filter_map(|p| {
        p.file_name()?
            .to_str()?
            .strip_suffix(".partial")?
            .parse::<u32>()
            .ok()
    });
    finished.chain(partial).max().unwrap_or(0) + 1
}

fn partial_dirs(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".partial"))
        })
        .collect()
}

/// `archive/.lock`, held while an archive is made or finished: one run at a time, whether
/// from the command line or the server's schedule.
struct ArchiveLock(#[allow(dead_code)] File);

impl ArchiveLock {
    fn take(root: &Path) -> Result<ArchiveLock> {
        crate::io::create_dir_all(root, None).map_err(StoreError::io(root))?;
        let path = root.join(".lock");
        let file = File::create(&path).map_err(StoreError::io(&path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(ArchiveLock(file)),
            Err(_) => Err(StoreError::Invalid(format!(
                "another archive run holds {}; wait for it to finish",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CheckOptions, FlagOp, Flags};

    fn indexer(bytes: &[u8]) -> Document {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or("")
            .to_string();
        Document {
            subject,
            text,
            ..Document::default()
        }
    }

    fn request(before: i64) -> ArchiveRequest {
        ArchiveRequest {
            before,
            account: None,
            label: Some("old".into()),
            batch: 3,
            reserve_bytes: 0,
        }
    }

    fn setup() -> (tempfile::TempDir, SqliteStore, AccountId) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.add_domain("example.com").unwrap();
        let alice = store.add_account("alice@example.com", "pw").unwrap();
        let inbox = store.mailbox(alice, "INBOX").unwrap().id;
        let sent = store.mailbox(alice, "Sent").unwrap().id;
        for i in 0..10 {
            let body = format!("Subject: old {i}\r\n\r\n請求書 number {i}\r\n");
            store
                .append(
                    inbox,
                    body.as_bytes(),
                    Flags(Flags::SEEN * (i % 2)),
                    &[],
                    Some(1000 + i as i64),
                )
                .unwrap();
        }
        store
            .append(
                sent,
                b"Subject: sent\r\n\r\nx\r\n",
                Flags::default(),
                &[],
                Some(1500),
            )
            .unwrap();
        store
            .append(
                inbox,
                b"Subject: new\r\n\r\nfresh\r\n",
                Flags::default(),
                &[],
                None,
            )
            .unwrap();
        (dir, store, alice)
    }

    #[test]
    fn old_mail_moves_to_a_read_only_archive_that_imap_can_read() {
        let (_dir, store, alice) = setup();
        let live_before: Vec<_> = store
            .messages(store.mailbox(alice, "INBOX").unwrap().id)
            .unwrap();
        let bodies: Vec<Vec<u8>> = live_before
            .iter()
            .map(|m| store.read_blob(&m.blob).unwrap())
            .collect();

        let plan = store.archive_plan(&request(2000)).unwrap();
        assert_eq!(
            (plan.messages, plan.accounts.clone()),
            (11, vec!["alice@example.com".to_string()])
        );
        let outcome = store
            .archive_create(&request(2000), &indexer, &|_, _, _| {})
            .unwrap();
        let report = outcome.created.unwrap();
        assert_eq!((report.id, report.messages, report.withdrawn), (1, 11, 0));
        assert_eq!((report.first, report.last), (Some(1000), Some(1500)));

        let inbox = store.mailbox(alice, "INBOX").unwrap();
        assert_eq!(
            store.messages(inbox.id).unwrap().len(),
            1,
            "only the new message stays live"
        );
        let archived = store.mailbox(alice, "Archive/old/INBOX").unwrap();
        assert!(archived.read_only);
        let names: Vec<String> = store
            .mailboxes(alice)
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert!(names.contains(&"Archive/old/Sent".to_string()), "{names:?}");
        let messages = store.messages(archived.id).unwrap();
        assert_eq!(messages.len(), 10);
        for (meta, (before, body)) in messages.iter().zip(live_before.iter().zip(&bodies)) {
            assert_eq!(
                (meta.uid, meta.flags, meta.internal_date),
                (before.uid, before.flags, before.internal_date)
            );
            assert_eq!(
                &store.read_blob(&meta.blob).unwrap(),
                body,
                "read from the archive"
            );
        }
        let counts = store.mailbox_counts(archived.id).unwrap();
        assert_eq!((counts.messages, counts.unseen), (10, 5));
        // A reader's page comes from the archive's UID index, by the same rule as a whole read.
        for window in [
            crate::NewestFirst {
                limit: 3,
                ..Default::default()
            },
            crate::NewestFirst {
                below_uid: Some(5),
                skip: 1,
                limit: 2,
                ..Default::default()
            },
            crate::NewestFirst {
                since: Some(1100),
                until: Some(1400),
                limit: 20,
                ..Default::default()
            },
        ] {
            assert_eq!(
                store.messages_newest(archived.id, &window).unwrap(),
                window.take(messages.clone()),
                "{window:?}"
            );
        }

        // Reads only.
        let refused =
            store.update_flags(archived.id, &[1], FlagOp::Add, Flags(Flags::FLAGGED), &[]);
        assert!(
            matches!(refused, Err(StoreError::ReadOnly(_))),
            "{refused:?}"
        );
        assert!(matches!(
            store.append(archived.id, b"x", Flags::default(), &[], None),
            Err(StoreError::ReadOnly(_))
        ));
        assert!(matches!(
            store.create_mailbox(alice, "Archive/old/New"),
            Err(StoreError::ReadOnly(_))
        ));
        assert!(matches!(
            store.move_messages(archived.id, &[1], inbox.id),
            Err(StoreError::ReadOnly(_))
        ));
        // Copying out restores a message, body and all.
        let copied = store
            .copy_messages(archived.id, &[messages[3].uid], inbox.id)
            .unwrap();
        let restored = store
            .messages(inbox.id)
            .unwrap()
            .into_iter()
            .find(|m| m.uid == copied.uids[0].1)
            .unwrap();
        assert_eq!(store.read_blob(&restored.blob).unwrap(), bodies[3]);
        assert_eq!(restored.internal_date, 1003);

        let archive = store.archives().get(1).unwrap();
        let hits = archive
            .search(&archive::SearchQuery {
                text: Some("請求".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(hits.len(), 10);
        let hits = archive
            .search(&archive::SearchQuery {
                subject: Some("sent".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].mailbox, "Sent");
        assert!(archive.check(&|_, _| {}).unwrap().is_healthy());
        assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
        let info = archive.info().unwrap();
        assert_eq!(
            (info.messages, info.state),
            (11, archive::ArchiveState::Complete)
        );

        // Only the message copied back is old enough for another run, which gets a folder
        // of its own beside the first archive with the same label.
        let again = store
            .archive_create(&request(2000), &indexer, &|_, _, _| {})
            .unwrap();
        assert!(again.resumed.is_empty());
        assert_eq!(again.created.map(|r| (r.id, r.messages)), Some((2, 1)));
        assert!(
            store
                .mailbox(alice, "Archive/old #2/INBOX")
                .unwrap()
                .read_only
        );
        let third = store
            .archive_create(&request(2000), &indexer, &|_, _, _| {})
            .unwrap();
        assert!(third.created.is_none(), "nothing old is left");
    }

    #[test]
    fn a_run_stopped_after_the_seal_is_finished_by_the_next_and_skips_what_users_expunged() {
        let (dir, store, alice) = setup();
        let inbox = store.mailbox(alice, "INBOX").unwrap().id;
        // Build and seal, as a run killed before its first move transaction leaves it.
        let mut report = store
            .build(&request(2000), &indexer, &|_, _, _| {})
            .unwrap();
        // Half moved, then killed.
        let rows = store.messages(inbox).unwrap();
        let first_five: Vec<_> = rows.iter().take(5).map(|m| m.uid).collect();
        let _ = &mut report;
        store
            .write({
                let ids: Vec<i64> = rows.iter().take(5).map(|m| m.id.0).collect();
                move |ctx| {
                    for id in ids {
                        let (flags, keywords, hash): (i64, String, Vec<u8>) = ctx.conn.query_row(
                            "DELETE FROM messages WHERE id = ?1 RETURNING flags, keywords, blob_hash",
                            [id],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )?;
                        release_blob(ctx, &hash)?;
                        ctx.conn.execute(
                            "INSERT INTO archive_moves VALUES (1, ?1, ?2, ?3)",
                            params![id, flags, keywords],
                        )?;
                    }
                    Ok(())
                }
            })
            .unwrap();
        assert_eq!(first_five.len(), 5);
        // Meanwhile the owner flags one message and expunges another that was not moved yet.
        let sixth = rows[5].uid;
        let seventh = rows[6].uid;
        store
            .update_flags(inbox, &[sixth], FlagOp::Add, Flags(Flags::FLAGGED), &[])
            .unwrap();
        store
            .update_flags(inbox, &[seventh], FlagOp::Add, Flags(Flags::DELETED), &[])
            .unwrap();
        store.expunge_deleted(inbox, Some(&[seventh])).unwrap();
        // A .partial left by another killed run is thrown away.
        fs::create_dir_all(dir.path().join("archive/7.partial/blobs")).unwrap();

        let resumed = store.archive_resume(&|_, _, _| {}).unwrap();
        assert_eq!(resumed.len(), 1);
        assert_eq!((resumed[0].messages, resumed[0].withdrawn), (10, 1));
        assert!(!dir.path().join("archive/7.partial").exists());
        let live = store.messages(inbox).unwrap();
        assert_eq!(live.len(), 1, "only the new message stays live: {live:?}");
        let archived = store
            .messages(store.mailbox(alice, "Archive/old/INBOX").unwrap().id)
            .unwrap();
        assert_eq!(archived.len(), 9);
        assert!(
            !archived.iter().any(|m| m.uid == seventh),
            "the expunged message is not archived"
        );
        let flagged = archived.iter().find(|m| m.uid == sixth).unwrap();
        assert_ne!(
            flagged.flags.0 & Flags::FLAGGED,
            0,
            "flags as they were when the message went"
        );
        assert!(
            store.moved(1).unwrap().is_empty(),
            "the live store forgot the move"
        );
        assert!(
            store
                .archives()
                .get(1)
                .unwrap()
                .check(&|_, _| {})
                .unwrap()
                .is_healthy()
        );
        assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
    }

    #[test]
    fn a_disk_that_cannot_hold_the_archive_is_refused_before_anything_changes() {
        let (dir, store, alice) = setup();
        let mut too_big = request(2000);
        too_big.reserve_bytes = u64::MAX / 2;
        let err = store
            .archive_create(&too_big, &indexer, &|_, _, _| {})
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("archive needs") && text.contains("is free"),
            "{text}"
        );
        let inbox = store.mailbox(alice, "INBOX").unwrap().id;
        assert_eq!(store.messages(inbox).unwrap().len(), 11, "nothing moved");
        let left: Vec<_> = fs::read_dir(dir.path().join("archive"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != ".lock")
            .collect();
        assert!(left.is_empty(), "no archive directory made: {left:?}");
    }
}
