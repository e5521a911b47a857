//! The full-text index of live and archived mail: `index.db` in the data directory, an
//! FTS5 table with the trigram tokenizer over the lower-cased text of each body (not each
//! message: copies, moves, archiving and one delivery to many accounts share a body, so it
//! is indexed once). An archive's mailboxes are followed like live ones, by their IMAP ids.
//!
//! ```text
//! docs     id, blob, partial      one row per indexed body; partial = always a candidate
//! text     FTS5 (headers, body)   contentless, rowid = docs.id
//! cursors  mailbox_id, uidvalidity, uid   messages of the mailbox up to uid are indexed
//! meta     key, value             where the sweep for expunged bodies stands
//! ```
//!
//! Derived data: no backup holds it and no migration changes it. A file of another
//! `user_version` is emptied and filled again by the indexer.
//!
//! The indexer follows each mailbox by UID, not the store by message id: SQLite gives a
//! new row the highest id plus one, so once the newest messages are expunged their ids come
//! back, and an id cursor would take a new message for one it has indexed. UIDs of a
//! mailbox (of one UIDVALIDITY) never come back. The rows a step adds and the cursors it
//! moves commit in one transaction, so a step killed halfway leaves nothing to redo and
//! nothing done twice.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::archive::{ArchiveMailbox, Archives};
use crate::text_index::{
    IndexCheck, IndexStep, IndexText, MAX_FIELD_TEXT, MIN_NEEDLE, TextCandidates, TextField,
    TextOf, TextQuery,
};
use crate::{BlobId, BlobStore, Result, StoreError};

/// The index file's name in the data directory.
pub const FILE: &str = "index.db";

/// The layout of `index.db`; a file with another is rebuilt.
const VERSION: i64 = 1;

const SCHEMA: &str = "
    CREATE TABLE docs (
        id      INTEGER PRIMARY KEY,
        blob    BLOB NOT NULL UNIQUE,
        partial INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX docs_partial ON docs(partial) WHERE partial = 1;
    CREATE TABLE cursors (
        mailbox_id  INTEGER PRIMARY KEY,
        uidvalidity INTEGER NOT NULL,
        uid         INTEGER NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE VIRTUAL TABLE text USING fts5(
        headers, body,
        content = '', contentless_delete = 1,
        tokenize = 'trigram case_sensitive 1'
    );";

const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The FTS5 expression for a query, or `None` when the index cannot narrow it (a needle
/// shorter than [`MIN_NEEDLE`] characters, or an alternative that cannot be narrowed).
/// Needles are lower-cased as the scan lower-cases them and quoted as phrases, which the
/// trigram tokenizer matches as substrings.
pub(crate) fn fts_match(query: &TextQuery) -> Option<String> {
    match query {
        TextQuery::Contains(field, needle) => {
            let needle = needle.to_lowercase();
            if needle.chars().count() < MIN_NEEDLE {
                return None;
            }
            let phrase = format!("\"{}\"", needle.replace('"', "\"\""));
            Some(match field {
                TextField::Headers => format!("headers : {phrase}"),
                TextField::Body => format!("body : {phrase}"),
                TextField::Any => phrase,
            })
        }
        TextQuery::All(all) => {
            let parts: Vec<String> = all.iter().filter_map(fts_match).collect();
            (!parts.is_empty()).then(|| join(&parts, " AND "))
        }
        TextQuery::Either(any) => {
            let parts: Option<Vec<String>> = any.iter().map(fts_match).collect();
            parts.filter(|p| !p.is_empty()).map(|p| join(&p, " OR "))
        }
    }
}

fn join(parts: &[String], op: &str) -> String {
    if parts.len() == 1 {
        return parts[0].clone();
    }
    parts
        .iter()
        .map(|p| format!("({p})"))
        .collect::<Vec<_>>()
        .join(op)
}

/// The index file of a data directory, opened on demand.
pub(crate) struct TextIndex {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

/// One message a step looks at.
struct Item {
    mailbox: i64,
    uid: u32,
    blob: BlobId,
    /// Its text, when the step read it; `None` with `read` set when it could not be
    /// parsed or was too long (a partial document).
    text: Option<IndexText>,
    read: bool,
}

/// What a step will index: the messages past each followed mailbox's cursor, up to the
/// step's limit, and where each cursor goes if the step finishes.
struct Plan<'a> {
    cursors: &'a HashMap<i64, (i64, u32)>,
    limit: usize,
    items: Vec<Item>,
    /// (mailbox, uidvalidity, the last UID the step covers).
    ends: Vec<(i64, i64, u32)>,
    /// Messages left for later steps.
    pending: u64,
    /// Every mailbox looked at: a cursor of any other belongs to a mailbox that is gone.
    followed: HashSet<i64>,
}

impl Plan<'_> {
    /// Takes the messages of one mailbox (whose highest UID so far is `last`) past its
    /// cursor: `after(uid, n)` lists up to n messages after a UID, `count_from(uid)` counts
    /// those from a UID on.
    fn follow(
        &mut self,
        mailbox: i64,
        uidvalidity: i64,
        last: u32,
        after: impl FnOnce(u32, usize) -> Result<Vec<(u32, BlobId)>>,
        count_from: impl FnOnce(u32) -> Result<u64>,
    ) -> Result<()> {
        self.followed.insert(mailbox);
        let current = self.cursors.get(&mailbox).filter(|c| c.0 == uidvalidity);
        let from = current.map_or(0, |c| c.1);
        if last <= from && current.is_some() {
            return Ok(());
        }
        let room = self.limit.saturating_sub(self.items.len());
        let mut end = last.max(from);
        let mut page = after(from, room + 1)?;
        if page.len() > room {
            // More than the step takes: stop just before the first one left.
            let first_left = page[room].0;
            end = first_left - 1;
            self.pending += count_from(first_left)?;
            page.truncate(room);
        }
        self.items.extend(page.into_iter().map(|(uid, blob)| Item {
            mailbox,
            uid,
            blob,
            text: None,
            read: false,
        }));
        if end > from || current.is_none() {
            self.ends.push((mailbox, uidvalidity, end));
        }
        Ok(())
    }
}

impl TextIndex {
    pub(crate) fn new(data_dir: &Path) -> TextIndex {
        TextIndex {
            path: data_dir.join(FILE),
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Whether the index has been made: with the index off it never is, and the check
    /// leaves it alone rather than create it.
    pub(crate) fn exists(&self) -> bool {
        self.path.exists()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = f(&mut conn);
        if conn.is_autocommit() {
            self.pool
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
        result
    }

    fn open(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = crate::sqlite::vfs::open_db(&self.path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Derived data: a commit lost to a power cut is indexed again, and WAL keeps each
        // step atomic either way.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != VERSION {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version != VERSION {
                tx.execute_batch(
                    "DROP TABLE IF EXISTS text; DROP TABLE IF EXISTS docs;
                     DROP TABLE IF EXISTS cursors; DROP TABLE IF EXISTS meta;",
                )?;
                tx.execute_batch(SCHEMA)?;
                tx.pragma_update(None, "user_version", VERSION)?;
            }
            tx.commit()?;
        }
        Ok(conn)
    }

    /// What the index says about `mailbox` for `query`; `None` when it cannot narrow the
    /// search (nothing of the mailbox indexed yet, or a query it cannot express).
    pub(crate) fn candidates(
        &self,
        mailbox: i64,
        uidvalidity: i64,
        query: &TextQuery,
    ) -> Result<Option<TextCandidates>> {
        let Some(expr) = fts_match(query) else {
            return Ok(None);
        };
        self.with(|conn| {
            let tx = conn.transaction()?;
            let through: Option<u32> = tx
                .query_row(
                    "SELECT uid FROM cursors WHERE mailbox_id = ?1 AND uidvalidity = ?2",
                    params![mailbox, uidvalidity],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(through) = through else {
                return Ok(None);
            };
            let mut blobs = HashSet::new();
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT d.blob FROM text JOIN docs d ON d.id = text.rowid
                     WHERE text MATCH ?1
                     UNION ALL SELECT blob FROM docs WHERE partial = 1",
                )?;
                let mut rows = stmt.query([&expr])?;
                while let Some(row) = rows.next()? {
                    blobs.insert(blob_of(&row.get::<_, Vec<u8>>(0)?)?);
                }
            }
            tx.commit()?;
            Ok(Some(TextCandidates {
                indexed_through: through,
                blobs,
            }))
        })
    }

    /// Indexes up to `limit` messages not indexed yet (of one account's mailboxes when
    /// `account` is given), in live mailboxes and in archives' mailboxes. With `replace`, a
    /// body already in the index is indexed again (a rebuild); otherwise it is only
    /// counted.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step(
        &self,
        main: &Connection,
        blobs: &BlobStore,
        archives: &Archives,
        text_of: &TextOf,
        account: Option<i64>,
        replace: bool,
        limit: usize,
    ) -> Result<IndexStep> {
        let mut done = IndexStep::default();
        let cursors = self.with(|conn| cursors_tx(conn))?;
        let mut plan = Plan {
            cursors: &cursors,
            limit,
            items: Vec::new(),
            ends: Vec::new(),
            pending: 0,
            followed: HashSet::new(),
        };
        // The live mailboxes and their new messages, from one snapshot of the store.
        main.execute_batch("BEGIN")?;
        let listed = (|| -> Result<()> {
            let mut mailboxes: Vec<(i64, i64, u32)> = Vec::new();
            {
                let mut stmt = main.prepare_cached(
                    "SELECT id, uidvalidity, uidnext FROM mailboxes
                     WHERE ?1 IS NULL OR account_id = ?1 ORDER BY id",
                )?;
                let rows = stmt.query_map([account], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, u32>(2)?.saturating_sub(1)))
                })?;
                for row in rows {
                    mailboxes.push(row?);
                }
            }
            for (mailbox, uidvalidity, last) in mailboxes {
                plan.follow(
                    mailbox,
                    uidvalidity,
                    last,
                    |from, n| {
                        let mut stmt = main.prepare_cached(
                            "SELECT uid, blob_hash FROM messages WHERE mailbox_id = ?1
                             AND uid > ?2 ORDER BY uid LIMIT ?3",
                        )?;
                        let rows = stmt.query_map(params![mailbox, from, n as i64], |r| {
                            Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?))
                        })?;
                        rows.map(|row| {
                            let (uid, hash) = row?;
                            Ok((uid, blob_of(&hash)?))
                        })
                        .collect()
                    },
                    |uid| {
                        Ok(main.query_row(
                            "SELECT count(*) FROM messages WHERE mailbox_id = ?1 AND uid >= ?2",
                            params![mailbox, uid],
                            |r| r.get(0),
                        )?)
                    },
                )?;
            }
            Ok(())
        })();
        main.execute_batch("COMMIT")?;
        listed?;
        // The archives' mailboxes: read-only, so each is walked once; their bodies were
        // mostly indexed while they were live and are only counted.
        for archive in archives.list() {
            for (row, owner, uidvalidity, uidnext) in archive.mailbox_rows()? {
                if account.is_some_and(|a| a != owner.0) {
                    continue;
                }
                let id = ArchiveMailbox {
                    archive: archive.id(),
                    row,
                }
                .id();
                plan.follow(
                    id.0,
                    i64::from(uidvalidity),
                    uidnext.saturating_sub(1),
                    |from, n| archive.bodies_after(row, from, n),
                    |uid| archive.count_from(row, uid),
                )?;
            }
        }
        let Plan {
            mut items,
            ends,
            pending,
            followed: live,
            ..
        } = plan;
        done.pending = pending;
        if ends.is_empty() && (account.is_some() || cursors.keys().all(|m| live.contains(m))) {
            return Ok(done);
        }

        // Read and parse the bodies the index lacks, outside any transaction.
        let known: HashSet<BlobId> = if replace {
            HashSet::new()
        } else {
            self.with(|conn| {
                let mut stmt = conn.prepare_cached("SELECT 1 FROM docs WHERE blob = ?1")?;
                let mut known = HashSet::new();
                for item in &items {
                    if stmt.exists([&item.blob.0[..]])? {
                        known.insert(item.blob);
                    }
                }
                Ok(known)
            })?
        };
        let mut parsed: HashMap<BlobId, Option<IndexText>> = HashMap::new();
        for item in &mut items {
            if known.contains(&item.blob) {
                continue;
            }
            let text = match parsed.get(&item.blob) {
                Some(text) => text.clone(),
                None => {
                    let text = blobs
                        .get(&item.blob)
                        .ok()
                        .or_else(|| archives.read_blob(&item.blob).and_then(|r| r.ok()))
                        .and_then(|raw| text_of(&raw))
                        .filter(|t| {
                            t.headers.len() <= MAX_FIELD_TEXT && t.body.len() <= MAX_FIELD_TEXT
                        });
                    parsed.insert(item.blob, text.clone());
                    text
                }
            };
            item.text = text;
            item.read = true;
        }

        // Write the rows and move the cursors in one transaction.
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = cursors_tx(&tx)?;
            let mut written: HashSet<BlobId> = HashSet::new();
            for &(mailbox, uidvalidity, end) in &ends {
                let from = match now.get(&mailbox) {
                    Some(&(v, uid)) if v == uidvalidity => uid,
                    _ => 0,
                };
                let mut reached = end;
                for item in items
                    .iter()
                    .filter(|i| i.mailbox == mailbox && i.uid > from)
                {
                    let id: Option<i64> = tx
                        .query_row(
                            "SELECT id FROM docs WHERE blob = ?1",
                            [&item.blob.0[..]],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if !item.read {
                        if id.is_none() {
                            // Removed since we looked: the next step reads it.
                            reached = item.uid - 1;
                            break;
                        }
                    } else if id.is_none() || (replace && written.insert(item.blob)) {
                        if let Some(id) = id {
                            tx.execute("DELETE FROM text WHERE rowid = ?1", [id])?;
                            tx.execute("DELETE FROM docs WHERE id = ?1", [id])?;
                        }
                        insert(&tx, &item.blob, item.text.as_ref())?;
                        written.insert(item.blob);
                        done.added += 1;
                    }
                    done.messages += 1;
                }
                if reached > from || now.get(&mailbox).is_none_or(|c| c.0 != uidvalidity) {
                    tx.execute(
                        "INSERT INTO cursors (mailbox_id, uidvalidity, uid) VALUES (?1, ?2, ?3)
                         ON CONFLICT (mailbox_id) DO UPDATE
                         SET uidvalidity = excluded.uidvalidity, uid = excluded.uid",
                        params![mailbox, uidvalidity, reached.max(from)],
                    )?;
                }
            }
            if account.is_none() {
                for mailbox in now.keys().filter(|m| !live.contains(m)) {
                    tx.execute("DELETE FROM cursors WHERE mailbox_id = ?1", [mailbox])?;
                }
            }
            tx.commit()?;
            Ok(())
        })?;
        Ok(done)
    }

    /// Looks at up to `limit` documents after the last one looked at and removes those no
    /// live message has any more. Each is checked against the store while this holds the
    /// index's write lock, so no indexer can count on a document this removes.
    pub(crate) fn sweep(
        &self,
        main: &Connection,
        archives: &Archives,
        limit: usize,
    ) -> Result<(u64, bool)> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let from: i64 = tx
                .query_row("SELECT value FROM meta WHERE key = 'sweep'", [], |r| {
                    r.get(0)
                })
                .optional()?
                .unwrap_or(0);
            let docs: Vec<(i64, Vec<u8>)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, blob FROM docs WHERE id > ?1 ORDER BY id LIMIT ?2",
                )?;
                stmt.query_map(params![from, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut live = main.prepare_cached("SELECT 1 FROM messages WHERE blob_hash = ?1")?;
            let mut gone = Vec::new();
            for (id, blob) in &docs {
                if !live.exists([blob])? {
                    gone.push((*id, blob_of(blob)?));
                }
            }
            // Archives are listed after the live store was asked: mail an archive's move
            // took out of it meanwhile is in an archive numbered before the move began.
            if !gone.is_empty() {
                let archived = archives.list_fresh();
                gone.retain(|(_, blob)| !archived.iter().any(|a| a.has_blob(blob)));
            }
            let removed = gone.len() as u64;
            for (id, _) in gone {
                tx.execute("DELETE FROM text WHERE rowid = ?1", [id])?;
                tx.execute("DELETE FROM docs WHERE id = ?1", [id])?;
            }
            let wrapped = docs.len() < limit;
            let next = if wrapped {
                0
            } else {
                docs.last().map_or(0, |d| d.0)
            };
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('sweep', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [next],
            )?;
            tx.commit()?;
            Ok((removed, wrapped))
        })
    }

    /// Forgets what the index holds, of everything or of the given mailboxes, so that
    /// their messages are searched by scanning until the indexer reaches them again.
    pub(crate) fn reset(&self, mailboxes: Option<&[i64]>) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            match mailboxes {
                None => tx.execute_batch(
                    "INSERT INTO text (text) VALUES ('delete-all');
                     DELETE FROM docs; DELETE FROM cursors; DELETE FROM meta;",
                )?,
                Some(mailboxes) => {
                    for m in mailboxes {
                        tx.execute("DELETE FROM cursors WHERE mailbox_id = ?1", [m])?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Compares the index with the messages of live mailboxes and archives.
    pub(crate) fn check(&self, main: &Connection, archives: &Archives) -> Result<IndexCheck> {
        // The index first: whatever it covers then is still in the store unless expunged.
        let (docs, cursors) = self.with(|conn| {
            let tx = conn.transaction()?;
            let docs: HashSet<BlobId> = {
                let mut stmt = tx.prepare("SELECT blob FROM docs")?;
                let mut rows = stmt.query([])?;
                let mut docs = HashSet::new();
                while let Some(row) = rows.next()? {
                    docs.insert(blob_of(&row.get::<_, Vec<u8>>(0)?)?);
                }
                docs
            };
            let cursors = cursors_tx(&tx)?;
            tx.commit()?;
            Ok((docs, cursors))
        })?;
        let mut report = IndexCheck {
            documents: docs.len() as u64,
            ..IndexCheck::default()
        };
        let mut missing_in = std::collections::BTreeMap::new();
        let mut live = HashSet::new();
        let mut tally = |mailbox: i64, uidvalidity: i64, uid: u32, blob: BlobId| {
            let covered =
                matches!(cursors.get(&mailbox), Some(&(v, c)) if v == uidvalidity && uid <= c);
            if !covered {
                report.pending += 1;
            } else if docs.contains(&blob) {
                report.covered += 1;
            } else {
                report.missing += 1;
                *missing_in.entry(mailbox).or_insert(0) += 1;
            }
            live.insert(blob);
        };
        main.execute_batch("BEGIN")?;
        let result = (|| -> Result<()> {
            let mut stmt = main.prepare(
                "SELECT m.mailbox_id, b.uidvalidity, m.uid, m.blob_hash
                 FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let blob = blob_of(&row.get::<_, Vec<u8>>(3)?)?;
                tally(row.get(0)?, row.get(1)?, row.get(2)?, blob);
            }
            Ok(())
        })();
        main.execute_batch("COMMIT")?;
        result?;
        // Listed after the live store was read, so mail archived meanwhile is seen here.
        for archive in archives.list_fresh() {
            for (row, _, uidvalidity, _) in archive.mailbox_rows()? {
                let mailbox = ArchiveMailbox {
                    archive: archive.id(),
                    row,
                }
                .id();
                for (uid, blob) in archive.bodies_after(row, 0, usize::MAX)? {
                    tally(mailbox.0, i64::from(uidvalidity), uid, blob);
                }
            }
        }
        report.missing_in = missing_in
            .into_iter()
            .map(|(mailbox, n)| (crate::MailboxId(mailbox), n))
            .collect();
        report.expunged = docs.iter().filter(|b| !live.contains(b)).count() as u64;
        Ok(report)
    }
}

fn insert(tx: &Connection, blob: &BlobId, text: Option<&IndexText>) -> Result<()> {
    tx.execute(
        "INSERT INTO docs (blob, partial) VALUES (?1, ?2)",
        params![&blob.0[..], text.is_none()],
    )?;
    let id = tx.last_insert_rowid();
    if let Some(text) = text {
        tx.execute(
            "INSERT INTO text (rowid, headers, body) VALUES (?1, ?2, ?3)",
            params![id, text.headers, text.body],
        )?;
    }
    Ok(())
}

fn cursors_tx(conn: &Connection) -> Result<HashMap<i64, (i64, u32)>> {
    let mut stmt = conn.prepare_cached("SELECT mailbox_id, uidvalidity, uid FROM cursors")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn blob_of(bytes: &[u8]) -> Result<BlobId> {
    bytes
        .try_into()
        .map(BlobId)
        .map_err(|_| StoreError::Invalid(format!("{FILE}: a body hash of {} bytes", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: TextQuery, expect: Option<&str>) {
        assert_eq!(fts_match(&query).as_deref(), expect, "{query:?}");
    }

    fn has(field: TextField, needle: &str) -> TextQuery {
        TextQuery::Contains(field, needle.into())
    }

    #[test]
    fn queries_become_phrases_of_lower_cased_needles() {
        check(has(TextField::Any, "Hello"), Some("\"hello\""));
        check(
            has(TextField::Body, "say \"hi\""),
            Some("body : \"say \"\"hi\"\"\""),
        );
        check(
            has(TextField::Headers, "東京都"),
            Some("headers : \"東京都\""),
        );
        // Too short for trigrams: the index cannot narrow the search.
        check(has(TextField::Any, "東京"), None);
        check(has(TextField::Any, "ab"), None);
        check(
            TextQuery::All(vec![has(TextField::Any, "ab"), has(TextField::Body, "abc")]),
            Some("body : \"abc\""),
        );
        check(
            TextQuery::All(vec![
                has(TextField::Any, "abc"),
                has(TextField::Body, "def"),
            ]),
            Some("(\"abc\") AND (body : \"def\")"),
        );
        check(
            TextQuery::Either(vec![has(TextField::Any, "abc"), has(TextField::Body, "de")]),
            None,
        );
        check(
            TextQuery::Either(vec![
                has(TextField::Any, "abc"),
                has(TextField::Body, "def"),
            ]),
            Some("(\"abc\") OR (body : \"def\")"),
        );
        check(TextQuery::All(vec![]), None);
    }

    fn text(headers: &str, body: &str) -> IndexText {
        IndexText {
            headers: headers.to_lowercase(),
            body: body.to_lowercase(),
        }
    }

    /// The index finds substrings inside words and inside runs of Japanese, in the field
    /// asked for only.
    #[test]
    fn the_index_finds_substrings_and_japanese_runs() {
        let dir = tempfile::tempdir().unwrap();
        let index = TextIndex::new(dir.path());
        let docs = [
            text("Subject: Quarterly REPORT", "the numbers are attached"),
            text("Subject: 会議の議事録", "東京都港区で打ち合わせをしました"),
            text("From: Alice <alice@example.com>", "Straße und Grüße"),
        ];
        let ids: Vec<BlobId> = (0..docs.len()).map(|i| BlobId([i as u8; 32])).collect();
        index
            .with(|conn| {
                let tx = conn.transaction()?;
                for (blob, doc) in ids.iter().zip(&docs) {
                    insert(&tx, blob, Some(doc))?;
                }
                insert(&tx, &BlobId([9; 32]), None)?;
                tx.commit()?;
                Ok(())
            })
            .unwrap();
        let found = |q: TextQuery| -> Vec<u8> {
            let expr = fts_match(&q).unwrap();
            index
                .with(|conn| {
                    let mut stmt = conn.prepare(
                        "SELECT d.blob FROM text JOIN docs d ON d.id = text.rowid
                         WHERE text MATCH ?1 ORDER BY d.id",
                    )?;
                    let rows = stmt.query_map([expr], |r| r.get::<_, Vec<u8>>(0))?;
                    Ok(rows.map(|r| r.unwrap()[0]).collect())
                })
                .unwrap()
        };
        assert_eq!(found(has(TextField::Any, "ARTERL")), vec![0]);
        assert_eq!(found(has(TextField::Headers, "umber")), Vec::<u8>::new());
        assert_eq!(found(has(TextField::Body, "umber")), vec![0]);
        assert_eq!(found(has(TextField::Any, "港区で")), vec![1]);
        assert_eq!(found(has(TextField::Headers, "議事録")), vec![1]);
        assert_eq!(found(has(TextField::Any, "STRASSE")), Vec::<u8>::new());
        assert_eq!(found(has(TextField::Any, "grüße")), vec![2]);
        assert_eq!(found(has(TextField::Any, "@example.")), vec![2]);
        assert_eq!(
            found(TextQuery::Either(vec![
                has(TextField::Any, "議事録"),
                has(TextField::Any, "alice"),
            ])),
            vec![1, 2]
        );
    }

    /// Regression guard for the cursor's design: SQLite hands the id of an expunged newest
    /// message to the next one, so only UIDs can say what the index covers. A new message
    /// with a reused id is still scanned until indexed; expunged bodies are swept; the
    /// check agrees.
    #[test]
    fn a_reused_message_id_is_not_taken_for_an_indexed_message() {
        use crate::{Directory as _, Mailboxes as _};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(dir.path()).unwrap();
        store.add_domain("example.com").unwrap();
        let account = store.add_account("a@example.com", "pw").unwrap();
        for body in ["alpha one", "beta two", "gamma three"] {
            let raw = format!("Subject: {body}\r\n\r\n{body}\r\n");
            store.deliver(raw.as_bytes(), &[account]).unwrap();
        }
        let inbox = store.mailbox(account, "INBOX").unwrap().id;
        let text_of = |raw: &[u8]| {
            Some(IndexText {
                headers: String::new(),
                body: String::from_utf8_lossy(raw).to_lowercase(),
            })
        };
        let step = store.index_step(&text_of, None, false, 2).unwrap();
        assert_eq!((step.messages, step.added, step.pending), (2, 2, 1));
        let step = store.index_step(&text_of, None, false, 100).unwrap();
        assert_eq!((step.messages, step.pending), (1, 0));
        let gamma = TextQuery::Contains(TextField::Body, "gamma".into());
        let messages = store.messages(inbox).unwrap();
        let found = store.text_candidates(inbox, &gamma).unwrap().unwrap();
        assert_eq!(found.indexed_through, 3);
        let hits: Vec<u32> = messages
            .iter()
            .filter(|m| found.may_match(m.uid, &m.blob))
            .map(|m| m.uid)
            .collect();
        assert_eq!(hits, vec![3]);

        // Expunge the newest; the next delivery takes its id, with a new UID.
        let newest = messages.last().unwrap().id;
        store.expunge(inbox, &[newest]).unwrap();
        store
            .deliver(b"Subject: delta\r\n\r\ndelta four\r\n", &[account])
            .unwrap();
        let messages = store.messages(inbox).unwrap();
        let delta = messages.last().unwrap();
        assert_eq!((delta.id, delta.uid), (newest, 4), "SQLite reused the id");
        let query = TextQuery::Contains(TextField::Body, "delta".into());
        let found = store.text_candidates(inbox, &query).unwrap().unwrap();
        assert!(
            found.may_match(delta.uid, &delta.blob),
            "not indexed yet: scanned"
        );
        let check = store.index_check().unwrap();
        assert_eq!((check.pending, check.missing, check.expunged), (1, 0, 1));

        store.index_step(&text_of, None, false, 100).unwrap();
        assert_eq!(store.index_sweep(100).unwrap(), (1, true));
        let found = store.text_candidates(inbox, &query).unwrap().unwrap();
        assert_eq!(found.indexed_through, 4);
        assert_eq!(found.blobs.iter().collect::<Vec<_>>(), vec![&delta.blob]);
        let check = store.index_check().unwrap();
        assert_eq!(
            (check.covered, check.pending, check.missing, check.expunged),
            (3, 0, 0, 0)
        );
        assert!(check.is_healthy());
    }

    /// `check` reports what the index claims but lacks, and `--repair` has the indexer
    /// take those mailboxes again; a store without an index is not given one by checking.
    #[test]
    fn the_store_check_finds_and_repairs_what_the_index_lost() {
        use crate::{CheckOptions, Directory as _, Mailboxes as _, Maintenance as _};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(dir.path()).unwrap();
        store.add_domain("example.com").unwrap();
        let account = store.add_account("a@example.com", "pw").unwrap();
        for body in ["alpha one", "beta two"] {
            let raw = format!("Subject: {body}\r\n\r\n{body}\r\n");
            store.deliver(raw.as_bytes(), &[account]).unwrap();
        }
        let check = |repair| {
            store
                .check(&CheckOptions {
                    repair,
                    progress: None,
                })
                .unwrap()
        };
        assert!(check(false).is_healthy());
        assert!(!dir.path().join(FILE).exists(), "the check made an index");

        let text_of = |raw: &[u8]| {
            Some(IndexText {
                headers: String::new(),
                body: String::from_utf8_lossy(raw).to_lowercase(),
            })
        };
        store.index_step(&text_of, None, false, 100).unwrap();
        assert!(check(false).is_healthy());

        // A body lost from the index (as a damaged file would lose it).
        let conn = Connection::open(dir.path().join(FILE)).unwrap();
        conn.execute_batch(
            "DELETE FROM text WHERE rowid = (SELECT min(id) FROM docs);
             DELETE FROM docs WHERE id = (SELECT min(id) FROM docs);",
        )
        .unwrap();
        let found = check(false);
        assert_eq!(found.text_index.len(), 1, "{found}");
        assert!(
            found.text_index[0].starts_with("a@example.com mailbox INBOX: 1 messages"),
            "{found}"
        );
        assert!(!found.is_healthy());

        let repaired = check(true);
        assert!(
            repaired
                .repaired
                .iter()
                .any(|r| r.contains("INBOX is indexed again")),
            "{repaired}"
        );
        assert_eq!(repaired.outstanding(), 0, "{repaired}");
        let inbox = store.mailbox(account, "INBOX").unwrap().id;
        let alpha = TextQuery::Contains(TextField::Body, "alpha".into());
        assert!(
            store.text_candidates(inbox, &alpha).unwrap().is_none(),
            "not yet indexed again"
        );
        store.index_step(&text_of, None, false, 100).unwrap();
        let after = store.index_check().unwrap();
        assert_eq!((after.covered, after.missing), (2, 0));
        assert!(check(false).is_healthy());
    }
}
