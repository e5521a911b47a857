//! Read-only archives: old mail moved out of the live store into `archive/<id>/`.
//!
//! ```text
//! archive/<id>/archive.db         metadata and a full-text index (SQLite, rollback journal)
//! archive/<id>/blobs/ab/<sha256>  the bodies, hard links to the live store's files when the
//!                                 archive was made (copied when it is on another disk)
//! archive/<id>.partial/           an archive being built; it holds nothing the live store
//!                                 has given up yet, so a crash may simply throw it away
//! archive/.lock                   held by whoever creates or finishes an archive
//! ```
//!
//! An archive never changes once it is complete, so backups take it once and readers need
//! no locks beyond SQLite's own. This module is the format and the read side (list,
//! IMAP view, search, export, check); the move out of the live store belongs to the backend
//! (`sqlite/archive.rs`), because only it can delete rows and the archive's record of them
//! in one transaction.
//!
//! Each archive shows itself to its accounts over IMAP as read-only mailboxes
//! `<prefix>/<label>/<mailbox>`. Their ids are negative ([`ArchiveMailbox`]), so the store
//! routes any call naming one here and refuses every write to it.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::{
    AccountId, BlobId, BlobStore, Flags, MailboxCounts, MailboxId, MailboxInfo, MessageMeta,
    Result, StoreError, Verdict,
};

/// The archive database's schema. `source_id` is a row's id in the live store: the move
/// matches a message by its id, mailbox, UID and hash before it deletes anything.
///
/// The full-text table keeps no copy of the text (`content=''`), so the index costs a
/// fraction of the mail. CJK text has no spaces between words, so [`index_text`] puts one
/// between CJK characters and a search looks for them as a phrase: any run of characters
/// is found, which is what users of Japanese mail expect from a search box.
const SCHEMA: &str = "
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE mailboxes (
        id          INTEGER PRIMARY KEY,
        source_id   INTEGER NOT NULL UNIQUE,
        account_id  INTEGER NOT NULL,
        account     TEXT NOT NULL,
        name        TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uidnext     INTEGER NOT NULL,
        UNIQUE (account_id, name)
    );
    CREATE TABLE messages (
        id            INTEGER PRIMARY KEY,
        source_id     INTEGER NOT NULL UNIQUE,
        mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id),
        uid           INTEGER NOT NULL,
        internal_date INTEGER NOT NULL,
        size          INTEGER NOT NULL,
        flags         INTEGER NOT NULL,
        keywords      TEXT NOT NULL,
        blob_hash     BLOB NOT NULL,
        sent_date     INTEGER,
        from_addr     TEXT NOT NULL DEFAULT '',
        to_addr       TEXT NOT NULL DEFAULT '',
        subject       TEXT NOT NULL DEFAULT '',
        message_id    TEXT NOT NULL DEFAULT '',
        UNIQUE (mailbox_id, uid)
    );
    CREATE INDEX messages_date ON messages(internal_date);
    CREATE INDEX messages_blob ON messages(blob_hash);
    CREATE VIRTUAL TABLE text USING fts5(
        subject, from_addr, to_addr, body,
        content = '', contentless_delete = 1,
        tokenize = 'unicode61 remove_diacritics 2'
    );";

/// The archive format this build writes and reads (`meta.format`).
pub const FORMAT: &str = "1";

/// The most text of one message that goes into the index: enough for any letter, not a
/// megabyte of a log file pasted into a mail.
pub const MAX_INDEXED_TEXT: usize = 256 * 1024;

/// How many mailboxes one archive may hold: the bits of a virtual mailbox id left for them.
const MAILBOX_BITS: u32 = 24;

/// Where an archive is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveState {
    /// Built and durable; the live store is still giving up the messages it holds. A rerun
    /// (or the server at start) finishes the move.
    Moving,
    /// Done; never changes again.
    Complete,
}

impl ArchiveState {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveState::Moving => "moving",
            ArchiveState::Complete => "complete",
        }
    }
}

/// One archive, as `archive list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    pub id: u32,
    pub label: String,
    pub accounts: Vec<String>,
    /// Internal dates of the oldest and newest message (Unix seconds).
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// Every message with an internal date before this went (Unix seconds).
    pub before: i64,
    pub messages: u64,
    /// The messages' bytes, and the bytes of the directory on disk (bodies counted once).
    pub bytes: u64,
    pub disk_bytes: u64,
    pub state: ArchiveState,
    pub created: i64,
    pub dir: PathBuf,
}

/// What an archive remembers of a message besides its body, for listings and search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMessage {
    pub account: String,
    pub mailbox: String,
    pub uid: u32,
    pub internal_date: i64,
    pub size: u64,
    pub flags: Flags,
    pub keywords: Vec<String>,
    pub blob: BlobId,
    pub sent_date: Option<i64>,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub message_id: String,
}

/// The header fields and text of a message an archive keeps and indexes. The store does not
/// parse mail: whoever archives hands in a function that makes one of these from the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    pub sent_date: Option<i64>,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub message_id: String,
    /// The decoded text of the message, cut at [`MAX_INDEXED_TEXT`] bytes.
    pub text: String,
}

/// `archive search`: every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Words (or runs of CJK characters) that must all occur in subject, addresses or text.
    pub text: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    /// Internal date at or after, and before (Unix seconds).
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub account: Option<String>,
    pub limit: Option<usize>,
}

/// What `archive check` found in one archive.
#[derive(Debug, Clone, Default)]
pub struct ArchiveCheck {
    pub id: u32,
    pub messages: u64,
    pub blobs: u64,
    pub bytes: u64,
    /// Each problem in one line, naming the file or the message.
    pub problems: Vec<String>,
}

impl ArchiveCheck {
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A mailbox of an archive, as IMAP addresses it: negative ids, so they never meet a live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArchiveMailbox {
    pub archive: u32,
    pub row: i64,
}

impl ArchiveMailbox {
    pub fn id(self) -> MailboxId {
        MailboxId(-((i64::from(self.archive) << MAILBOX_BITS) | self.row))
    }

    pub fn from_id(id: MailboxId) -> Option<ArchiveMailbox> {
        if id.0 >= 0 {
            return None;
        }
        let n = -id.0;
        Some(ArchiveMailbox {
            archive: u32::try_from(n >> MAILBOX_BITS).ok()?,
            row: n & ((1 << MAILBOX_BITS) - 1),
        })
    }
}

/// Creates the schema of a new archive database.
pub(crate) fn create_schema(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA)?;
    set_meta(conn, "format", FORMAT)?;
    Ok(())
}

pub(crate) fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

pub(crate) fn meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Text as the index stores it: CJK characters stand apart, so that each is a token and a
/// run of them is found as a phrase.
pub(crate) fn index_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut last_cjk = false;
    for c in text.chars() {
        let cjk = is_cjk(c);
        if (cjk || last_cjk)
            && !c.is_whitespace()
            && !out.ends_with(char::is_whitespace)
            && !out.is_empty()
        {
            out.push(' ');
        }
        out.push(c);
        last_cjk = cjk;
    }
    out
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // compatibility ideographs
        | 0xFF66..=0xFF9F    // half-width katakana
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0x20000..=0x2FFFF) // the supplementary ideographs
}

/// A full-text query in FTS5 syntax from what a user typed: every word must occur; each
/// word is a quoted phrase (so no word is taken as an operator), CJK spaced as indexed.
/// `None` when nothing searchable remains.
pub(crate) fn fts_query(column: Option<&str>, words: &str) -> Option<String> {
    let phrases: Vec<String> = words
        .split_whitespace()
        .map(|w| {
            let spaced = index_text(w);
            format!("\"{}\"", spaced.trim().replace('"', "\"\""))
        })
        .filter(|p| p.len() > 2)
        .collect();
    if phrases.is_empty() {
        return None;
    }
    let joined = phrases.join(" AND ");
    Some(match column {
        Some(column) => format!("{column} : ({joined})"),
        None => joined,
    })
}

/// An archive opened for reading.
pub struct Archive {
    id: u32,
    dir: PathBuf,
    blobs: PathBuf,
    conn: Mutex<Connection>,
}

impl Archive {
    /// Opens `archive/<id>/` read-only.
    pub fn open(dir: &Path) -> Result<Archive> {
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| StoreError::Invalid(format!("{} is not an archive", dir.display())))?;
        let db = dir.join("archive.db");
        if !db.is_file() {
            return Err(StoreError::NotFound {
                what: format!("archive database {}", db.display()),
            });
        }
        // A run killed while it finished the archive leaves a hot journal, which only a
        // connection that may write can roll back; until then a read-only one cannot read.
        let journal = dir.join("archive.db-journal");
        if journal.exists() {
            let rw = crate::sqlite::vfs::open_db(&db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            rw.busy_timeout(std::time::Duration::from_secs(10))?;
            rw.query_row("SELECT count(*) FROM meta", [], |_| Ok(()))?;
        }
        let conn = Connection::open_with_flags(
            &db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let format = meta(&conn, "format")?.unwrap_or_default();
        if format != FORMAT {
            return Err(StoreError::Invalid(format!(
                "{} has archive format {format:?}; this tegami reads format {FORMAT}",
                db.display()
            )));
        }
        Ok(Archive {
            id,
            dir: dir.to_path_buf(),
            blobs: dir.join("blobs"),
            conn: Mutex::new(conn),
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    pub fn state(&self) -> Result<ArchiveState> {
        self.read(|conn| {
            Ok(match meta(conn, "state")?.as_deref() {
                Some("complete") => ArchiveState::Complete,
                _ => ArchiveState::Moving,
            })
        })
    }

    pub fn label(&self) -> Result<String> {
        self.read(|conn| Ok(meta(conn, "label")?.unwrap_or_else(|| self.id.to_string())))
    }

    pub fn info(&self) -> Result<ArchiveInfo> {
        let (label, before, created, state) = (
            self.label()?,
            self.read(|c| meta(c, "before"))?,
            self.read(|c| meta(c, "created"))?,
            self.state()?,
        );
        self.read(|conn| {
            let (messages, bytes, first, last): (u64, u64, Option<i64>, Option<i64>) = conn
                .query_row(
                "SELECT count(*), coalesce(sum(size), 0), min(internal_date), max(internal_date)
                     FROM messages",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let mut stmt = conn.prepare(
                "SELECT DISTINCT account FROM mailboxes b
                 WHERE EXISTS (SELECT 1 FROM messages m WHERE m.mailbox_id = b.id)
                 ORDER BY account",
            )?;
            let accounts = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ArchiveInfo {
                id: self.id,
                label,
                accounts,
                first,
                last,
                before: before.and_then(|b| b.parse().ok()).unwrap_or(0),
                messages,
                bytes,
                disk_bytes: dir_bytes(&self.dir),
                state,
                created: created.and_then(|c| c.parse().ok()).unwrap_or(0),
                dir: self.dir.clone(),
            })
        })
    }

    /// Grows whenever the archive changes (only while its move finishes): the IMAP modseq.
    fn generation(&self) -> Result<u64> {
        self.read(|conn| {
            Ok(meta(conn, "generation")?
                .and_then(|g| g.parse().ok())
                .unwrap_or(1))
        })
    }

    /// A body, verified against its hash.
    pub fn read_blob(&self, blob: &BlobId) -> Result<Vec<u8>> {
        let path = self.blobs.join(blob.relative_path());
        let data = fs::read(&path).map_err(StoreError::io(&path))?;
        if BlobId::of(&data) != *blob {
            return Err(StoreError::BlobCorrupt {
                blob: format!("{blob} in archive {}", self.id),
                detail: format!("content hash differs ({} bytes read)", data.len()),
            });
        }
        Ok(data)
    }

    fn has_blob(&self, blob: &BlobId) -> bool {
        self.blobs.join(blob.relative_path()).exists()
    }

    /// The archive's mailboxes of one account that hold messages: (row, name, uidvalidity,
    /// uidnext).
    fn mailboxes_of(&self, account: AccountId) -> Result<Vec<(i64, String, u32, u32)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, uidvalidity, uidnext FROM mailboxes b WHERE account_id = ?1
                 AND EXISTS (SELECT 1 FROM messages m WHERE m.mailbox_id = b.id) ORDER BY name",
            )?;
            let rows = stmt
                .query_map([account.0], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn mailbox_row(&self, row: i64) -> Result<Option<(AccountId, String, u32, u32)>> {
        self.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT account_id, name, uidvalidity, uidnext FROM mailboxes WHERE id = ?1",
                    [row],
                    |r| Ok((AccountId(r.get(0)?), r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?)
        })
    }

    fn messages(&self, row: i64) -> Result<Vec<MessageMeta>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, uid, internal_date, size, flags, blob_hash, keywords FROM messages
                 WHERE mailbox_id = ?1 ORDER BY uid",
            )?;
            // The live store's columns in the live store's order: one reader for both.
            let rows = stmt
                .query_map([row], crate::sqlite::message_meta)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn counts(&self, row: i64) -> Result<MailboxCounts> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT count(*), coalesce(sum(flags & 1 = 0), 0) FROM messages WHERE mailbox_id = ?1",
                [row],
                |r| {
                    Ok(MailboxCounts {
                        messages: r.get(0)?,
                        unseen: r.get(1)?,
                        recent: 0,
                    })
                },
            )?)
        })
    }

    /// Messages matching every condition of `query`, oldest first.
    pub fn search(&self, query: &SearchQuery) -> Result<Vec<ArchivedMessage>> {
        let mut sql = format!("{LISTED} WHERE 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut matches = Vec::new();
        for (column, words) in [
            (None, &query.text),
            (Some("from_addr"), &query.from),
            (Some("to_addr"), &query.to),
            (Some("subject"), &query.subject),
        ] {
            if let Some(words) = words {
                match fts_query(column, words) {
                    Some(q) => matches.push(q),
                    None => {
                        return Err(StoreError::Invalid(format!(
                            "nothing to search for in {words:?}"
                        )));
                    }
                }
            }
        }
        if !matches.is_empty() {
            sql.push_str(" AND m.id IN (SELECT rowid FROM text WHERE text MATCH ?)");
            args.push(matches.join(" AND ").into());
        }
        if let Some(since) = query.since {
            sql.push_str(" AND m.internal_date >= ?");
            args.push(since.into());
        }
        if let Some(until) = query.until {
            sql.push_str(" AND m.internal_date < ?");
            args.push(until.into());
        }
        if let Some(account) = &query.account {
            sql.push_str(" AND b.account = ?");
            args.push(account.to_lowercase().into());
        }
        sql.push_str(" ORDER BY m.internal_date, m.id");
        if let Some(limit) = query.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        self.read(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), listed)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    /// Every message (of one account, of one mailbox), in mailbox and UID order, handed to
    /// `each` one at a time so an export of a large archive stays small in memory.
    pub fn for_each(
        &self,
        account: Option<&str>,
        mailbox: Option<&str>,
        mut each: impl FnMut(ArchivedMessage) -> Result<()>,
    ) -> Result<u64> {
        // Collected in pages of rows (not bodies), so the connection is free between them.
        let mut after: (String, String, i64) = (String::new(), String::new(), -1);
        let mut count = 0;
        loop {
            let page: Vec<ArchivedMessage> = self.read(|conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "{LISTED} WHERE (?1 IS NULL OR b.account = ?1) AND (?2 IS NULL OR b.name = ?2)
                     AND (b.account, b.name, m.uid) > (?3, ?4, ?5)
                     ORDER BY b.account, b.name, m.uid LIMIT 500"
                ))?;
                let rows = stmt
                    .query_map(
                        params![
                            account.map(str::to_lowercase),
                            mailbox,
                            after.0,
                            after.1,
                            after.2
                        ],
                        listed,
                    )?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(rows)
            })?;
            let Some(last) = page.last() else {
                return Ok(count);
            };
            after = (
                last.account.clone(),
                last.mailbox.clone(),
                i64::from(last.uid),
            );
            for message in page {
                count += 1;
                each(message)?;
            }
        }
    }

    /// Checks the database, the index and every body against its hash.
    pub fn check(&self, progress: &dyn Fn(u64, u64)) -> Result<ArchiveCheck> {
        let mut report = ArchiveCheck {
            id: self.id,
            ..ArchiveCheck::default()
        };
        let integrity: Vec<String> = self.read(|conn| {
            let mut stmt = conn.prepare("PRAGMA integrity_check")?;
            let rows = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })?;
        if integrity != ["ok"] {
            for line in integrity {
                report.problems.push(format!("archive.db: {line}"));
            }
        }
        if let Err(e) = self.read(|conn| {
            conn.execute("INSERT INTO text(text) VALUES ('integrity-check')", [])
                .map_err(StoreError::from)
        }) {
            // A read-only connection cannot run the command; open one that may.
            let db = self.dir.join("archive.db");
            let checked = crate::sqlite::vfs::open_db(
                &db,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            )
            .and_then(|c| {
                c.busy_timeout(std::time::Duration::from_secs(10))?;
                c.execute("INSERT INTO text(text) VALUES ('integrity-check')", [])
            });
            if let Err(second) = checked {
                report.problems.push(format!(
                    "archive.db: full-text index damaged: {second} (first try: {e})"
                ));
            }
        }
        let (rows, unindexed): (Vec<(Vec<u8>, u64, String)>, u64) = self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT DISTINCT m.blob_hash, m.size, b.account || ' ' || b.name || ' UID ' || m.uid
                 FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id GROUP BY m.blob_hash",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let unindexed = conn.query_row(
                "SELECT count(*) FROM messages WHERE id NOT IN (SELECT rowid FROM text)",
                [],
                |r| r.get(0),
            )?;
            Ok((rows, unindexed))
        })?;
        if unindexed > 0 {
            report.problems.push(format!(
                "archive.db: {unindexed} messages missing from the full-text index"
            ));
        }
        report.messages =
            self.read(|c| Ok(c.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?))?;
        let total: u64 = rows.iter().map(|r| r.1).sum();
        let blobs = BlobStore::open(&self.blobs)?;
        let mut done = 0;
        for (hash, size, example) in &rows {
            let Some(id) = BlobId::from_slice(hash) else {
                report
                    .problems
                    .push(format!("{example}: malformed body hash"));
                continue;
            };
            match blobs.verify(&id) {
                Verdict::Intact { .. } => {}
                verdict => report.problems.push(format!(
                    "blobs/{}: {verdict:?} (held by {example})",
                    id.relative_path()
                )),
            }
            report.blobs += 1;
            report.bytes += size;
            done += size;
            progress(done, total);
        }
        Ok(report)
    }
}

/// The columns [`listed`] reads.
const LISTED: &str = "SELECT b.account, b.name, m.uid, m.internal_date, m.size, m.flags,
        m.keywords, m.blob_hash, m.sent_date, m.from_addr, m.to_addr, m.subject, m.message_id
    FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id";

fn listed(r: &rusqlite::Row<'_>) -> rusqlite::Result<ArchivedMessage> {
    let hash: Vec<u8> = r.get(7)?;
    Ok(ArchivedMessage {
        account: r.get(0)?,
        mailbox: r.get(1)?,
        uid: r.get(2)?,
        internal_date: r.get(3)?,
        size: r.get(4)?,
        flags: Flags(r.get(5)?),
        keywords: r
            .get::<_, String>(6)?
            .split_whitespace()
            .map(String::from)
            .collect(),
        blob: BlobId::from_slice(&hash).unwrap_or(BlobId([0; 32])),
        sent_date: r.get(8)?,
        from: r.get(9)?,
        to: r.get(10)?,
        subject: r.get(11)?,
        message_id: r.get(12)?,
    })
}

/// The bytes of the files below a directory (hard links counted where they are).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// The archives of a data directory, opened once and found again when the directory
/// changes (another process may make one while the server runs).
pub struct Archives {
    root: PathBuf,
    prefix: RwLock<String>,
    cache: Mutex<(Option<SystemTime>, Vec<Arc<Archive>>)>,
}

/// The IMAP prefix archives appear under unless the config names another.
pub const DEFAULT_PREFIX: &str = "Archive";

impl Archives {
    pub(crate) fn new(data_dir: &Path) -> Archives {
        Archives {
            root: data_dir.join("archive"),
            prefix: RwLock::new(DEFAULT_PREFIX.to_string()),
            cache: Mutex::new((None, Vec::new())),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The first level of the IMAP names archives appear under (`Archive/2024/INBOX`).
    pub fn set_prefix(&self, prefix: &str) {
        *self.prefix.write().unwrap_or_else(|p| p.into_inner()) =
            prefix.trim_matches('/').to_string();
    }

    fn prefix(&self) -> String {
        self.prefix
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every finished archive (moving or complete), by id.
    pub fn list(&self) -> Vec<Arc<Archive>> {
        let modified = fs::metadata(&self.root).and_then(|m| m.modified()).ok();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if modified.is_none() || cache.0 != modified {
            let mut found: Vec<Arc<Archive>> = Vec::new();
            let mut complete = true;
            for (id, dir) in numbered_dirs(&self.root) {
                let known = cache.1.iter().find(|a| a.id == id).cloned();
                match known.map_or_else(|| Archive::open(&dir).map(Arc::new), Ok) {
                    Ok(archive) => found.push(archive),
                    Err(e) => {
                        complete = false;
                        tracing::warn!(archive = %dir.display(), error = %e, "cannot open archive")
                    }
                }
            }
            // One that could not be opened is tried again next time, not forgotten.
            *cache = (modified.filter(|_| complete), found);
        }
        cache.1.clone()
    }

    pub fn get(&self, id: u32) -> Result<Arc<Archive>> {
        self.list()
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| StoreError::NotFound {
                what: format!("archive {id} (see `tegami archive list`)"),
            })
    }

    /// The IMAP folder of each archive under the prefix: its label, made unique with the id
    /// when two archives share one, and without "/".
    fn folders(&self) -> Vec<(Arc<Archive>, String)> {
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut out = Vec::new();
        for archive in self.list() {
            let label = archive
                .label()
                .unwrap_or_else(|_| archive.id.to_string())
                .replace('/', "-");
            let folder = if seen.contains_key(&label) {
                format!("{label} #{}", archive.id)
            } else {
                label.clone()
            };
            seen.insert(label, archive.id);
            out.push((archive, folder));
        }
        out
    }

    /// The read-only mailboxes an account sees, named under the prefix.
    pub(crate) fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxInfo>> {
        let prefix = self.prefix();
        let mut out = Vec::new();
        for (archive, folder) in self.folders() {
            let generation = archive.generation()?;
            for (row, name, uid_validity, uid_next) in archive.mailboxes_of(account)? {
                out.push(MailboxInfo {
                    id: ArchiveMailbox {
                        archive: archive.id,
                        row,
                    }
                    .id(),
                    account,
                    name: format!("{prefix}/{folder}/{name}"),
                    uid_validity,
                    uid_next,
                    special_use: None,
                    modseq: generation,
                    read_only: true,
                });
            }
        }
        Ok(out)
    }

    /// Whether a mailbox name lies inside an archive's folder (writes there are refused).
    pub(crate) fn owns_name(&self, name: &str) -> bool {
        let prefix = self.prefix();
        let Some(rest) = name.strip_prefix(&prefix).and_then(|r| r.strip_prefix('/')) else {
            return false;
        };
        let folder = rest.split('/').next().unwrap_or("");
        self.folders().iter().any(|(_, f)| f == folder)
    }

    pub(crate) fn mailbox(&self, account: AccountId, name: &str) -> Result<Option<MailboxInfo>> {
        if !self.owns_name(name) {
            return Ok(None);
        }
        Ok(self
            .mailboxes(account)?
            .into_iter()
            .find(|m| m.name == name))
    }

    fn archive_of(&self, mailbox: ArchiveMailbox) -> Result<Arc<Archive>> {
        self.get(mailbox.archive).map_err(|_| gone(mailbox))
    }

    pub(crate) fn mailbox_by_id(&self, mailbox: ArchiveMailbox) -> Result<MailboxInfo> {
        let archive = self.archive_of(mailbox)?;
        let (account, _, _, _) = archive
            .mailbox_row(mailbox.row)?
            .ok_or_else(|| gone(mailbox))?;
        self.mailboxes(account)?
            .into_iter()
            .find(|m| m.id == mailbox.id())
            .ok_or_else(|| gone(mailbox))
    }

    pub(crate) fn messages(&self, mailbox: ArchiveMailbox) -> Result<Vec<MessageMeta>> {
        self.archive_of(mailbox)?.messages(mailbox.row)
    }

    pub(crate) fn counts(&self, mailbox: ArchiveMailbox) -> Result<MailboxCounts> {
        self.archive_of(mailbox)?.counts(mailbox.row)
    }

    /// A body that left the live store: the first archive that holds it.
    pub(crate) fn read_blob(&self, blob: &BlobId) -> Option<Result<Vec<u8>>> {
        self.list()
            .into_iter()
            .find(|a| a.has_blob(blob))
            .map(|a| a.read_blob(blob))
    }
}

fn gone(mailbox: ArchiveMailbox) -> StoreError {
    StoreError::NotFound {
        what: format!("archive mailbox {}", mailbox.id().0),
    }
}

/// The directories `archive/<digits>` (finished archives), by id.
pub(crate) fn numbered_dirs(root: &Path) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((name.parse().ok()?, e.path()))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjk_characters_stand_apart_and_latin_words_do_not() {
        assert_eq!(index_text("請求書 invoice"), "請 求 書 invoice");
        assert_eq!(index_text("abcカナdef"), "abc カ ナ def");
        assert_eq!(index_text("plain words"), "plain words");
    }

    #[test]
    fn queries_are_phrases_all_required_and_never_operators() {
        assert_eq!(
            fts_query(None, "invoice 請求書").as_deref(),
            Some("\"invoice\" AND \"請 求 書\"")
        );
        assert_eq!(
            fts_query(Some("subject"), "OR \"x").as_deref(),
            Some("subject : (\"OR\" AND \"\"\"x\")")
        );
        assert_eq!(fts_query(None, "   "), None);
    }

    #[test]
    fn virtual_mailbox_ids_round_trip_and_never_meet_live_ones() {
        let m = ArchiveMailbox {
            archive: 7,
            row: 12345,
        };
        assert!(m.id().0 < 0);
        assert_eq!(ArchiveMailbox::from_id(m.id()), Some(m));
        assert_eq!(ArchiveMailbox::from_id(MailboxId(5)), None);
    }

    #[test]
    fn the_index_finds_japanese_runs_and_words() {
        let conn = Connection::open_in_memory().unwrap();
        create_schema(&conn).unwrap();
        for (id, body) in [
            (1, "今月の請求書を送ります"),
            (2, "Meeting notes: invoice attached"),
        ] {
            conn.execute(
                "INSERT INTO text (rowid, subject, from_addr, to_addr, body) VALUES (?1, '', '', '', ?2)",
                params![id, index_text(body)],
            )
            .unwrap();
        }
        let hits = |q: &str| -> Vec<i64> {
            let query = fts_query(None, q).unwrap();
            let mut stmt = conn
                .prepare("SELECT rowid FROM text WHERE text MATCH ?1 ORDER BY rowid")
                .unwrap();
            stmt.query_map([query], |r| r.get(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(hits("請求"), vec![1]);
        assert_eq!(hits("請求書"), vec![1]);
        assert_eq!(hits("求請"), Vec::<i64>::new());
        assert_eq!(hits("INVOICE"), vec![2]);
        assert_eq!(hits("invoice notes"), vec![2]);
        assert_eq!(hits("invoice 請求"), Vec::<i64>::new());
    }
}
