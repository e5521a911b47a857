//! The archive file format's SQLite side: each archive is `archive/<id>/archive.db`, an
//! SQLite database in rollback-journal mode with an FTS5 full-text index, whatever backend
//! holds the live store. `crate::archive` keeps the format's neutral parts (types, the
//! IMAP view's ids, the registry); everything that speaks SQL to an archive is here.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::archive::*;
use crate::{
    AccountId, BlobId, BlobStore, Flags, MailboxCounts, MessageMeta, Result, StoreError, Verdict,
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

/// An archive opened for reading.
pub struct Archive {
    id: u32,
    dir: PathBuf,
    blobs: PathBuf,
    conn: Mutex<Connection>,
    /// The figures of a complete archive, which never change: counting them walks every
    /// blob file (50,000 files: over 100 ms), so a list page would pay that each time.
    complete_info: OnceLock<ArchiveInfo>,
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
            complete_info: OnceLock::new(),
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
        if let Some(info) = self.complete_info.get() {
            return Ok(info.clone());
        }
        let info = self.count_info()?;
        if info.state == ArchiveState::Complete {
            let _ = self.complete_info.set(info.clone());
        }
        Ok(info)
    }

    fn count_info(&self) -> Result<ArchiveInfo> {
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
    pub(crate) fn generation(&self) -> Result<u64> {
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

    pub(crate) fn has_blob(&self, blob: &BlobId) -> bool {
        self.blobs.join(blob.relative_path()).exists()
    }

    /// The archive's mailboxes of one account that hold messages: (row, name, uidvalidity,
    /// uidnext).
    pub(crate) fn mailboxes_of(&self, account: AccountId) -> Result<Vec<(i64, String, u32, u32)>> {
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

    /// Every mailbox of the archive, of every account: (row, account, uidvalidity,
    /// uidnext). The full-text indexer follows them as it follows live mailboxes.
    pub(crate) fn mailbox_rows(&self) -> Result<Vec<(i64, AccountId, u32, u32)>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT id, account_id, uidvalidity, uidnext FROM mailboxes")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get(0)?, AccountId(r.get(1)?), r.get(2)?, r.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    /// Up to `limit` messages of a mailbox after `uid`, in UID order, each with its body.
    pub(crate) fn bodies_after(
        &self,
        row: i64,
        uid: u32,
        limit: usize,
    ) -> Result<Vec<(u32, BlobId)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT uid, blob_hash FROM messages WHERE mailbox_id = ?1 AND uid > ?2
                 ORDER BY uid LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(
                    params![row, uid, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| {
                        let hash: Vec<u8> = r.get(1)?;
                        Ok((
                            r.get(0)?,
                            BlobId::from_slice(&hash).unwrap_or(BlobId([0; 32])),
                        ))
                    },
                )?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    /// How many messages of a mailbox have a UID of `uid` or more.
    pub(crate) fn count_from(&self, row: i64, uid: u32) -> Result<u64> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT count(*) FROM messages WHERE mailbox_id = ?1 AND uid >= ?2",
                params![row, uid],
                |r| r.get(0),
            )?)
        })
    }

    pub(crate) fn mailbox_row(&self, row: i64) -> Result<Option<(AccountId, String, u32, u32)>> {
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

    pub(crate) fn messages(&self, row: i64) -> Result<Vec<MessageMeta>> {
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

    pub(crate) fn messages_newest(
        &self,
        row: i64,
        window: &crate::NewestFirst,
    ) -> Result<(Vec<MessageMeta>, usize)> {
        self.read(|conn| {
            crate::sqlite::messages_newest_in(
                conn,
                "id, uid, internal_date, size, flags, blob_hash, keywords",
                row,
                window,
            )
        })
    }

    pub(crate) fn counts(&self, row: i64) -> Result<MailboxCounts> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT count(*), coalesce(sum(flags & 1 = 0), 0) FROM messages WHERE mailbox_id = ?1",
                [row],
                |r| {
                    Ok(MailboxCounts {
                        messages: r.get(0)?,
                        unseen: r.get(1)?,
                        recent: 0,
                        deleted: 0,
                        deleted_bytes: 0,
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

#[cfg(test)]
mod tests {
    use super::*;

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
