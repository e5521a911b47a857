//! The embedded backend: SQLite in WAL mode for metadata, blob files for bodies.

pub mod archive;
pub(crate) mod archive_file;
pub mod backup;
mod check;
mod history;
pub mod inspect;
mod layout;
mod lists;
mod mailboxes;
mod optimize;
mod orphans;
mod queue;
mod quota;
mod recovery;
mod retention;
mod schema;
mod stats;
mod suppressions;
pub(crate) mod text_index;
pub(crate) mod vfs;
mod wal;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::Directory;
use crate::archive::{ArchiveMailbox, Archives};
use crate::password;
use crate::{
    AccountId, AccountInfo, AliasInfo, BlobId, BlobStore, ChangeListener, CheckOptions,
    CheckReport, Copied, Delivered, FlagOp, FlagUpdate, Flags, MailboxCounts, MailboxId,
    MailboxInfo, Mailboxes, Maintenance, MessageId, MessageMeta, NewestFirst, OptimizeReport,
    Principal, Queue, Resolution, Result, SpecialUse, Statistics, StoreError,
};
pub use orphans::{ORPHANS_DIR, OrphanRecovery};
use writer::{WriteCtx, Writer};

pub use retention::Expired;
pub use schema::CURRENT as SCHEMA_VERSION;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        let transient = matches!(
            &e,
            rusqlite::Error::SqliteFailure(f, _) if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
            )
        );
        StoreError::Database {
            message: e.to_string(),
            transient,
        }
    }
}

/// How deep aliases may point at aliases before we call it a loop.
const MAX_ALIAS_DEPTH: usize = 8;

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The WAL is cut back to this size whenever it is reset, so one burst of writes does not
/// leave a large file behind for ever.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

pub struct SqliteStore {
    data_dir: PathBuf,
    db_path: PathBuf,
    blobs: Arc<BlobStore>,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    /// Told of every committed change to a mailbox (see [`SqliteStore::notify`]).
    listener: RwLock<Option<Arc<dyn ChangeListener>>>,
    /// Usage recorded since the last flush (`stats.rs`).
    meter: stats::Meter,
    /// The read-only archives beside the store (`archive/`), which IMAP sees as mailboxes.
    archives: Archives,
    /// The full-text index of live mail (`index.db`), opened when first used.
    text_index: text_index::TextIndex,
    /// Who receives postmaster@ of a local domain that has no account or alias of that name
    /// (see [`Directory::set_postmaster`]).
    postmaster: RwLock<Option<String>>,
    /// Reads the VERP senders of queued newsletter mail when the queue settles it
    /// (see [`crate::BounceRouter`]).
    bounce_router: RwLock<Option<Arc<dyn crate::BounceRouter>>>,
    /// This process's hold on the store (`recovery.rs`). Keep it the last field: it is
    /// dropped after every connection has closed, and only then is the shutdown clean.
    open_guard: recovery::OpenGuard,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in a data directory: `tegami.db` and `blobs/`.
    pub fn open(data_dir: &Path) -> Result<SqliteStore> {
        crate::io::create_dir_all(data_dir, None).map_err(StoreError::io(data_dir))?;
        let db_path = data_dir.join("tegami.db");
        let mut open_guard = recovery::OpenGuard::acquire(data_dir)?;
        let new = std::fs::metadata(&db_path).map_or(true, |m| m.len() == 0);
        let mut conn = open_connection(&db_path, if new { Open::New } else { Open::Write })?;
        open_guard.recover(&conn, data_dir)?;
        // Before the backup, so that it finds every body where today's code looks.
        layout::upgrade(data_dir, schema::version(&conn)?)?;
        backup::before_migration(&conn, data_dir)?;
        schema::migrate(&mut conn)?;
        let blobs = Arc::new(BlobStore::open(data_dir.join("blobs"))?);
        open_guard.opened();
        Ok(SqliteStore {
            writer: Writer::start(conn, blobs.clone()),
            data_dir: data_dir.to_path_buf(),
            db_path,
            blobs,
            readers: Mutex::new(Vec::new()),
            listener: RwLock::new(None),
            meter: stats::Meter::default(),
            archives: Archives::new(data_dir),
            text_index: text_index::TextIndex::new(data_dir),
            postmaster: RwLock::new(None),
            bounce_router: RwLock::new(None),
            open_guard,
        })
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Runs `f` on a pooled read-only connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_connection(&self.db_path, Open::Read)?,
        };
        let result = f(&conn);
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        result
    }

    fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T> + Send + 'static,
    {
        self.writer.write(work)
    }

    /// Stores a new message body and then runs `work` in the writer to reference it: the
    /// commit protocol of ARCHITECTURE.md, shared by delivery and APPEND. The blob is
    /// written (and fsynced) outside the writer so that many deliveries write their bodies
    /// in parallel; only the small metadata commit is serialised. `work` gets the blob's id
    /// and size and must reference it through [`reference_blob`].
    fn write_message<T, F>(&self, message: &[u8], work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>, BlobId, u64) -> Result<T> + Clone + Send + 'static,
    {
        let blob = BlobId::of(message);
        let size = message.len() as u64;
        let mut attempt = 0;
        loop {
            self.blobs.put_with_id(&blob, message)?;
            let work = work.clone();
            match self.write(move |ctx| work(ctx, blob, size)) {
                // The blob's last reference went away (and its file with it) between our
                // write and our commit: write it again.
                Err(StoreError::BlobVanished(_)) if attempt < 3 => attempt += 1,
                result => return result,
            }
        }
    }
}

/// The full-text index of live and archived mail (`text_index.rs`): the indexer's steps,
/// its reset and its check. SEARCH reads it through [`Mailboxes::text_candidates`].
impl SqliteStore {
    /// Indexes up to `limit` messages the index does not cover yet (of one account when
    /// given); with `replace`, bodies already indexed are indexed again.
    pub fn index_step(
        &self,
        text_of: &crate::text_index::TextOf,
        account: Option<AccountId>,
        replace: bool,
        limit: usize,
    ) -> Result<crate::text_index::IndexStep> {
        self.read(|conn| {
            self.text_index.step(
                conn,
                &self.blobs,
                &self.archives,
                text_of,
                account.map(|a| a.0),
                replace,
                limit,
            )
        })
    }

    /// Removes from the index up to a slice of `limit` bodies that no live message has any
    /// more; also says whether the slice reached the end (a whole round is done).
    pub fn index_sweep(&self, limit: usize) -> Result<(u64, bool)> {
        self.read(|conn| self.text_index.sweep(conn, &self.archives, limit))
    }

    /// Forgets what the index holds of every mailbox, or of one account's.
    pub fn index_reset(&self, account: Option<AccountId>) -> Result<()> {
        match account {
            None => self.text_index.reset(None),
            Some(account) => {
                let mut mailboxes: Vec<i64> = self.read(|conn| {
                    let mut stmt =
                        conn.prepare("SELECT id FROM mailboxes WHERE account_id = ?1")?;
                    let rows = stmt.query_map([account.0], |r| r.get(0))?;
                    Ok(rows.collect::<rusqlite::Result<_>>()?)
                })?;
                mailboxes.extend(self.archives.mailboxes(account)?.iter().map(|m| m.id.0));
                self.text_index.reset(Some(&mailboxes))
            }
        }
    }

    /// How long no write of the main database has been asked for: the indexer, whose own
    /// writes compete with deliveries for the disk, waits for a lull of its own length.
    pub fn writes_quiet_for(&self) -> std::time::Duration {
        self.writer.quiet_for()
    }

    /// Compares the index with the live messages.
    pub fn index_check(&self) -> Result<crate::text_index::IndexCheck> {
        self.read(|conn| self.text_index.check(conn, &self.archives))
    }
}

impl SqliteStore {
    /// Appends many messages to one mailbox (an import): the bodies are written without a
    /// flush each and made durable together by one `syncfs`, then one transaction takes them
    /// all, in order. Durable on return, like [`Store::append`], at the disk's speed rather
    /// than its flush rate.
    pub fn append_batch(
        &self,
        mailbox: MailboxId,
        messages: Vec<crate::NewMessage>,
    ) -> Result<Vec<Delivered>> {
        writable(mailbox)?;
        let bytes: Vec<u64> = messages.iter().map(|m| m.bytes.len() as u64).collect();
        let delivered = mailboxes::append_batch(self, mailbox, messages)?;
        for (d, size) in delivered.iter().zip(bytes) {
            self.meter.delivered(std::slice::from_ref(d), size);
        }
        Ok(delivered)
    }
}

/// Refuses any change to an archive's mailbox.
fn writable(mailbox: MailboxId) -> Result<()> {
    match ArchiveMailbox::from_id(mailbox) {
        Some(_) => Err(StoreError::ReadOnly("an archive mailbox".into())),
        None => Ok(()),
    }
}

impl SqliteStore {
    /// Refuses to create, delete or rename a mailbox inside an archive's IMAP folder.
    fn writable_name(&self, name: &str) -> Result<()> {
        if self.archives.owns_name(name.trim_end_matches('/')) {
            return Err(StoreError::ReadOnly(format!("'{name}' (an archive)")));
        }
        Ok(())
    }

    /// COPY from an archive: each message appended to the live mailbox with its flags,
    /// keywords and internal date (its body may be only in the archive now).
    fn copy_out_of_archive(&self, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<Copied> {
        let target = self.mailbox_by_id(to)?;
        let wanted: std::collections::HashSet<u32> = uids.iter().copied().collect();
        let mut copied = Copied {
            uid_validity: target.uid_validity,
            uids: Vec::new(),
        };
        for meta in self.messages(from)? {
            if !wanted.contains(&meta.uid) {
                continue;
            }
            let bytes = self.read_blob(&meta.blob)?;
            let delivered = self.append(
                to,
                &bytes,
                meta.flags,
                &meta.keywords,
                Some(meta.internal_date),
            )?;
            copied.uids.push((meta.uid, delivered.uid));
        }
        Ok(copied)
    }
}

/// How a connection is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Read,
    Write,
    /// The writer of a database file that does not exist yet (or is empty).
    New,
}

fn open_connection(path: &Path, open: Open) -> Result<Connection> {
    let read_only = open == Open::Read;
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = crate::sqlite::vfs::open_db(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if open == Open::New {
        // Only a database whose first page is not yet written takes this mode (switching
        // to WAL writes it, so this comes first). It lets the optimisation give free pages
        // back to the file system online, a few at a time, where NONE needs a VACUUM that
        // rewrites the whole file.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    }
    // FULL makes every commit fsync the WAL: an acknowledged message survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Lower-cases an address and checks that it has the form local@domain.
pub fn normalize_address(address: &str) -> Result<(String, String)> {
    let address = address.trim().to_lowercase();
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(StoreError::Invalid(format!(
            "'{address}' is not an address (expected user@domain)"
        )));
    };
    if local.is_empty() || domain.is_empty() || local.len() > 64 || domain.len() > 255 {
        return Err(StoreError::Invalid(format!(
            "'{address}' is not a valid address"
        )));
    }
    let domain = normalize_domain(domain)?;
    Ok((format!("{local}@{domain}"), domain))
}

pub fn normalize_domain(name: &str) -> Result<String> {
    let name = name.trim().trim_end_matches('.').to_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if !valid {
        return Err(StoreError::Invalid(format!(
            "'{name}' is not a valid domain name"
        )));
    }
    Ok(name)
}

fn domain_id(conn: &Connection, domain: &str) -> Result<i64> {
    conn.query_row("SELECT id FROM domains WHERE name = ?1", [domain], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or_else(|| StoreError::NotFound {
        what: format!("domain '{domain}' (add it first with `tegami domain add {domain}`)"),
    })
}

fn is_local_domain(conn: &Connection, domain: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM domains WHERE name = ?1")?
        .query_row([domain], |_| Ok(()))
        .optional()?
        .is_some())
}

fn address_taken(conn: &Connection, address: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM accounts WHERE address = ?1 UNION ALL SELECT 1 FROM aliases WHERE address = ?1",
            [address],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

pub(crate) fn message_meta(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageMeta> {
    let hash: Vec<u8> = row.get(5)?;
    // Archive files keep neither zone nor mod-sequence (read-only mail, dated by the
    // server): their queries stop at column 6, and one row reader serves both.
    let extended = row.as_ref().column_count() > 8;
    Ok(MessageMeta {
        id: MessageId(row.get(0)?),
        uid: row.get(1)?,
        internal_date: row.get(2)?,
        internal_zone: if extended { row.get(7)? } else { 0 },
        modseq: if extended { row.get(8)? } else { 1 },
        size: row.get(3)?,
        flags: Flags(row.get(4)?),
        keywords: mailboxes::parse_keywords(&row.get::<_, String>(6)?)
            .into_iter()
            .collect(),
        blob: BlobId::from_slice(&hash).unwrap_or(BlobId([0; 32])),
    })
}

/// One page of a mailbox newest first (see [`NewestFirst`]) from a `messages` table, with
/// `columns` as [`message_meta`] reads them, and how many messages its dates select: the
/// live store's and an archive's tables share this.
pub(crate) fn messages_newest_in(
    conn: &Connection,
    columns: &str,
    mailbox_row: i64,
    window: &NewestFirst,
) -> Result<(Vec<MessageMeta>, usize)> {
    let below = window.below_uid.map_or(i64::MAX, i64::from);
    let since = window.since.unwrap_or(i64::MIN);
    let until = window.until.unwrap_or(i64::MAX);
    let limit = i64::try_from(window.limit).unwrap_or(i64::MAX);
    let skip = i64::try_from(window.skip).unwrap_or(i64::MAX);
    // `+internal_date` keeps the date index out: walking (mailbox_id, uid) backwards reads
    // one page of one mailbox, where the date index would visit every account's mail of
    // those days.
    let mut page = conn.prepare_cached(&format!(
        "SELECT {columns} FROM messages
         WHERE mailbox_id = ?1 AND uid < ?2 AND +internal_date >= ?3 AND +internal_date < ?4
         ORDER BY uid DESC LIMIT ?5 OFFSET ?6"
    ))?;
    let rows = page
        .query_map(
            params![mailbox_row, below, since, until, limit, skip],
            message_meta,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let total: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM messages
             WHERE mailbox_id = ?1 AND +internal_date >= ?2 AND +internal_date < ?3",
        )?
        .query_row(params![mailbox_row, since, until], |r| r.get(0))?;
    Ok((rows, usize::try_from(total).unwrap_or(0)))
}

/// Adds `references` to a blob that the caller has just written, creating its row if it
/// has none. No row means nobody references the blob, so it may have been deleted since it
/// was written (its last reference went away): then `BlobVanished` asks the caller to write
/// it again. Blob files are deleted only under the write lock we hold now, so a file seen
/// here stays until we commit.
fn reference_blob(ctx: &mut WriteCtx<'_>, blob: BlobId, size: u64, references: i64) -> Result<()> {
    let shared = ctx
        .conn
        .prepare_cached("UPDATE blobs SET refcount = refcount + ?2 WHERE hash = ?1")?
        .execute(params![&blob.0[..], references])?;
    if shared == 0 {
        if !ctx.blobs.exists(&blob) {
            return Err(StoreError::BlobVanished(blob.to_string()));
        }
        ctx.conn
            .prepare_cached("INSERT INTO blobs (hash, size, refcount) VALUES (?1, ?2, ?3)")?
            .execute(params![&blob.0[..], size, references])?;
    }
    Ok(())
}

/// Drops one reference to a blob; the last one deletes its row and schedules its file.
fn release_blob(ctx: &mut WriteCtx<'_>, hash: &[u8]) -> Result<()> {
    let remaining: i64 = ctx.conn.query_row(
        "UPDATE blobs SET refcount = refcount - 1 WHERE hash = ?1 AND refcount > 1 RETURNING refcount",
        [hash],
        |r| r.get(0),
    ).optional()?.unwrap_or(0);
    if remaining == 0 {
        ctx.conn
            .execute("DELETE FROM blobs WHERE hash = ?1", [hash])?;
        if let Some(id) = BlobId::from_slice(hash) {
            ctx.unreferenced.push(id);
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Sets one column of an account; `column` is one of ours, never input.
    fn update_account(
        &self,
        address: &str,
        column: &'static str,
        value: rusqlite::types::Value,
    ) -> Result<()> {
        let (address, _) = normalize_address(address)?;
        self.write(move |ctx| {
            let changed = ctx.conn.execute(
                &format!("UPDATE accounts SET {column} = ?1 WHERE address = ?2"),
                params![value, address],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound {
                    what: format!("account '{address}'"),
                });
            }
            Ok(())
        })
    }
}

impl Directory for SqliteStore {
    fn set_quota(&self, address: &str, limit: Option<u64>) -> Result<()> {
        self.set_quota_impl(address, limit)
    }

    fn set_domain_quota(&self, domain: &str, limit: Option<u64>) -> Result<()> {
        self.set_domain_quota_impl(domain, limit)
    }

    fn domain_quota(&self, domain: &str) -> Result<Option<u64>> {
        self.domain_quota_impl(domain)
    }

    fn account_quota(&self, address: &str) -> Result<crate::AccountQuota> {
        self.account_quota_impl(address)
    }

    fn quota(&self, account: AccountId) -> Result<crate::Quota> {
        self.read(|conn| quota::quota(conn, account))
    }

    fn quota_usage(&self) -> Result<Vec<crate::QuotaUse>> {
        self.read(quota::usage)
    }

    fn set_quota_warned(&self, account: AccountId, warned: bool) -> Result<()> {
        self.set_quota_warned_impl(account, warned)
    }

    fn set_postmaster(&self, target: Option<String>) {
        *self.postmaster.write().unwrap_or_else(|e| e.into_inner()) =
            target.map(|t| t.trim().to_lowercase());
    }

    fn add_domain(&self, name: &str) -> Result<()> {
        let name = normalize_domain(name)?;
        self.write(move |ctx| {
            let inserted = ctx.conn.execute(
                "INSERT INTO domains (name, created) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![name, now()],
            )?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists {
                    what: format!("domain '{name}'"),
                });
            }
            Ok(())
        })
    }

    fn remove_domain(&self, name: &str) -> Result<()> {
        let name = normalize_domain(name)?;
        self.write(move |ctx| {
            let id = domain_id(ctx.conn, &name)?;
            let users: i64 = ctx.conn.query_row(
                "SELECT (SELECT count(*) FROM accounts WHERE domain_id = ?1)
                      + (SELECT count(*) FROM aliases WHERE domain_id = ?1)",
                [id],
                |r| r.get(0),
            )?;
            if users > 0 {
                return Err(StoreError::Invalid(format!(
                    "domain '{name}' still has {users} accounts or aliases; remove them first"
                )));
            }
            ctx.conn
                .execute("DELETE FROM domains WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    fn domains(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT name FROM domains ORDER BY name")?;
            let names = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(names)
        })
    }

    fn add_account(&self, address: &str, password: &str) -> Result<AccountId> {
        let (address, domain) = normalize_address(address)?;
        if password.is_empty() {
            return Err(StoreError::Invalid("the password must not be empty".into()));
        }
        let hash = password::hash(password);
        self.write(move |ctx| {
            let domain_id = domain_id(ctx.conn, &domain)?;
            if address_taken(ctx.conn, &address)? {
                return Err(StoreError::AlreadyExists { what: format!("account or alias '{address}'") });
            }
            ctx.conn.execute(
                "INSERT INTO accounts (address, domain_id, password_hash, created) VALUES (?1, ?2, ?3, ?4)",
                params![address, domain_id, hash, now()],
            )?;
            let account = AccountId(ctx.conn.last_insert_rowid());
            // the same name.
            let uid_validity = mailboxes::next_uid_validity(ctx.conn)?;
            ctx.conn.execute(
                "INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext) VALUES (?1, 'INBOX', ?2, 1)",
                params![account.0, uid_validity],
            )?;
            mailboxes::create_defaults(ctx.conn, account, uid_validity)?;
            Ok(account)
        })
    }

    fn remove_account(&self, address: &str) -> Result<()> {
        let (address, _) = normalize_address(address)?;
        self.write(move |ctx| {
            let account: i64 = ctx
                .conn
                .query_row("SELECT id FROM accounts WHERE address = ?1", [&address], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound { what: format!("account '{address}'") })?;
            let hashes: Vec<Vec<u8>> = ctx
                .conn
                .prepare(
                    "SELECT m.blob_hash FROM messages m JOIN mailboxes b ON m.mailbox_id = b.id
                     WHERE b.account_id = ?1",
                )?
                .query_map([account], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            ctx.conn.execute(
                "DELETE FROM messages WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?1)",
                [account],
            )?;
            for hash in hashes {
                release_blob(ctx, &hash)?;
            }
            ctx.conn.execute("DELETE FROM mailboxes WHERE account_id = ?1", [account])?;
            ctx.conn.execute("DELETE FROM subscriptions WHERE account_id = ?1", [account])?;
            ctx.conn.execute("DELETE FROM alias_targets WHERE target = ?1", [&address])?;
            ctx.conn.execute("DELETE FROM accounts WHERE id = ?1", [account])?;
            Ok(())
        })
    }

    fn set_password(&self, address: &str, password: &str) -> Result<()> {
        if password.is_empty() {
            return Err(StoreError::Invalid("the password must not be empty".into()));
        }
        self.update_account(address, "password_hash", password::hash(password).into())
    }

    fn accounts(&self) -> Result<Vec<AccountInfo>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT a.id, a.address, count(m.id), coalesce(sum(m.size), 0), a.admin,
                        coalesce(a.quota, d.default_quota)
                 FROM accounts a
                 JOIN domains d ON d.id = a.domain_id
                 LEFT JOIN mailboxes b ON b.account_id = a.id
                 LEFT JOIN messages m ON m.mailbox_id = b.id
                 GROUP BY a.id ORDER BY a.address",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(AccountInfo {
                        id: AccountId(r.get(0)?),
                        address: r.get(1)?,
                        messages: r.get(2)?,
                        bytes: r.get(3)?,
                        admin: r.get(4)?,
                        quota: r.get::<_, Option<i64>>(5)?.map(|l| l.max(0) as u64),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn set_admin(&self, address: &str, admin: bool) -> Result<()> {
        self.update_account(address, "admin", rusqlite::types::Value::from(admin))
    }

    fn set_totp_secret(&self, address: &str, secret: Option<&str>) -> Result<()> {
        let value = secret.map_or(rusqlite::types::Value::Null, |s| s.to_string().into());
        self.update_account(address, "totp_secret", value)
    }

    fn principal(&self, account: AccountId) -> Result<Option<Principal>> {
        self.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT address, admin, totp_secret FROM accounts WHERE id = ?1",
                    [account.0],
                    |r| {
                        Ok(Principal {
                            id: account,
                            address: r.get(0)?,
                            admin: r.get(1)?,
                            totp_secret: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    fn authenticate(&self, address: &str, password: &str) -> Result<Option<AccountId>> {
        let Ok((address, _)) = normalize_address(address) else {
            password::verify(password, password::dummy_hash());
            return Ok(None);
        };
        let found: Option<(i64, String)> = self.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT id, password_hash FROM accounts WHERE address = ?1",
                    [&address],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?)
        })?;
        Ok(match found {
            Some((id, hash)) if password::verify(password, &hash) => Some(AccountId(id)),
            Some(_) => None,
            None => {
                password::verify(password, password::dummy_hash());
                None
            }
        })
    }

    fn add_alias(&self, address: &str, targets: &[String]) -> Result<()> {
        let (address, domain) = normalize_address(address)?;
        if targets.is_empty() {
            return Err(StoreError::Invalid(
                "an alias needs at least one target".into(),
            ));
        }
        let targets = targets
            .iter()
            .map(|t| normalize_address(t).map(|(a, _)| a))
            .collect::<Result<Vec<_>>>()?;
        self.write(move |ctx| {
            let domain_id = domain_id(ctx.conn, &domain)?;
            if address_taken(ctx.conn, &address)? {
                return Err(StoreError::AlreadyExists {
                    what: format!("account or alias '{address}'"),
                });
            }
            // ours must exist, or mail to the alias would vanish.
            for target in &targets {
                let (_, target_domain) = target.rsplit_once('@').unwrap_or_default();
                if is_local_domain(ctx.conn, target_domain)? && !address_taken(ctx.conn, target)? {
                    return Err(StoreError::Invalid(format!(
                        "alias target '{target}' is in a local domain but is neither an \
                         account nor an alias"
                    )));
                }
            }
            ctx.conn.execute(
                "INSERT INTO aliases (address, domain_id) VALUES (?1, ?2)",
                params![address, domain_id],
            )?;
            let alias = ctx.conn.last_insert_rowid();
            for target in &targets {
                ctx.conn.execute(
                    "INSERT OR IGNORE INTO alias_targets (alias_id, target) VALUES (?1, ?2)",
                    params![alias, target],
                )?;
            }
            Ok(())
        })
    }

    fn remove_alias(&self, address: &str) -> Result<()> {
        let (address, _) = normalize_address(address)?;
        self.write(move |ctx| {
            let removed = ctx
                .conn
                .execute("DELETE FROM aliases WHERE address = ?1", [&address])?;
            if removed == 0 {
                return Err(StoreError::NotFound {
                    what: format!("alias '{address}'"),
                });
            }
            Ok(())
        })
    }

    fn aliases(&self) -> Result<Vec<AliasInfo>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT a.address, t.target FROM aliases a JOIN alias_targets t ON t.alias_id = a.id
                 ORDER BY a.address, t.target",
            )?;
            let mut out: Vec<AliasInfo> = Vec::new();
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (address, target) = row?;
                match out.last_mut() {
                    Some(last) if last.address == address => last.targets.push(target),
                    _ => out.push(AliasInfo {
                        address,
                        targets: vec![target],
                    }),
                }
            }
            Ok(out)
        })
    }

    fn resolve(&self, address: &str) -> Result<Resolution> {
        let Ok((address, domain)) = normalize_address(address) else {
            return Ok(Resolution::UnknownUser);
        };
        self.read(|conn| {
            if domain_id(conn, &domain).is_err() {
                return Ok(Resolution::NotLocal);
            }
            let mut found = Expansion::default();
            expand(conn, &address, 0, &mut found)?;
            if found.accounts.is_empty()
                && found.remote.is_empty()
                && let Some((local, _)) = address.split_once('@')
                && let Some((base, _)) = local.split_once('+')
            {
                expand(conn, &format!("{base}@{domain}"), 0, &mut found)?;
            }
            if found.accounts.is_empty() && found.remote.is_empty() {
                let local = address.split_once('@').map_or("", |(l, _)| l);
                let base = local.split_once('+').map_or(local, |(b, _)| b);
                let target = self
                    .postmaster
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if base == "postmaster"
                    && let Some(target) = target
                {
                    expand(conn, &target, 0, &mut found)?;
                }
            }
            let Expansion {
                mut accounts,
                mut remote,
            } = found;
            accounts.sort();
            accounts.dedup();
            remote.sort();
            remote.dedup();
            Ok(if !remote.is_empty() {
                Resolution::Forward { accounts, remote }
            } else if accounts.is_empty() {
                Resolution::UnknownUser
            } else {
                Resolution::Local(accounts)
            })
        })
    }

    fn sender_addresses(&self, account: AccountId) -> Result<Vec<String>> {
        self.sender_addresses_impl(account)
    }
}

impl Mailboxes for SqliteStore {
    fn deliver(&self, message: &[u8], recipients: &[AccountId]) -> Result<Vec<Delivered>> {
        let recipients = recipients.to_vec();
        let delivered = self.write_message(message, move |ctx, blob, size| {
            insert_message(ctx, blob, size, &recipients)
        })?;
        self.meter.delivered(&delivered, message.len() as u64);
        let changed: Vec<_> = delivered.iter().map(|d| (d.account, d.mailbox)).collect();
        self.notify(&changed);
        Ok(delivered)
    }

    fn mailbox(&self, account: AccountId, name: &str) -> Result<MailboxInfo> {
        if let Some(archived) = self.archives.mailbox(account, name)? {
            return Ok(archived);
        }
        self.read(|conn| {
            mailboxes::by_name(conn, account, name)?.ok_or_else(|| StoreError::NotFound {
                what: format!("mailbox '{name}'"),
            })
        })
    }

    fn text_candidates(
        &self,
        mailbox: MailboxId,
        query: &crate::text_index::TextQuery,
    ) -> Result<Option<crate::text_index::TextCandidates>> {
        let uidvalidity = match self.mailbox_by_id(mailbox) {
            Ok(info) => info.uid_validity,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.text_index
            .candidates(mailbox.0, i64::from(uidvalidity), query)
    }

    fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageMeta>> {
        if let Some(archived) = ArchiveMailbox::from_id(mailbox) {
            return self.archives.messages(archived);
        }
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, uid, internal_date, size, flags, blob_hash, keywords, internal_zone,
                        modseq
                 FROM messages WHERE mailbox_id = ?1 ORDER BY uid",
            )?;
            let rows = stmt
                .query_map([mailbox.0], message_meta)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn messages_changed_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Vec<MessageMeta>> {
        if let Some(archived) = ArchiveMailbox::from_id(mailbox) {
            let mut messages = self.archives.messages(archived)?;
            messages.retain(|m| m.modseq > modseq);
            return Ok(messages);
        }
        self.read(|conn| {
            // The mailbox's rows are walked by (mailbox_id, uid) and only the changed ones
            // are built, which is what costs at a million messages.
            let mut stmt = conn.prepare_cached(
                "SELECT id, uid, internal_date, size, flags, blob_hash, keywords, internal_zone,
                        modseq
                 FROM messages WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid",
            )?;
            let rows = stmt
                .query_map(params![mailbox.0, modseq as i64], message_meta)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    fn messages_newest(
        &self,
        mailbox: MailboxId,
        window: &NewestFirst,
    ) -> Result<(Vec<MessageMeta>, usize)> {
        if let Some(archived) = ArchiveMailbox::from_id(mailbox) {
            return self.archives.messages_newest(archived, window);
        }
        self.read(|conn| {
            messages_newest_in(
                conn,
                "id, uid, internal_date, size, flags, blob_hash, keywords, internal_zone, modseq",
                mailbox.0,
                window,
            )
        })
    }

    fn read_blob(&self, blob: &BlobId) -> Result<Vec<u8>> {
        match self.blobs.get(blob) {
            Err(StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    && let Some(archived) = self.archives.read_blob(blob) =>
            {
                archived
            }
            result => result,
        }
    }

    fn expunge(&self, mailbox: MailboxId, messages: &[MessageId]) -> Result<()> {
        writable(mailbox)?;
        let messages = messages.to_vec();
        let account = self.write(move |ctx| {
            let mut removed = false;
            for message in messages {
                let hash: Option<Vec<u8>> = ctx
                    .conn
                    .query_row(
                        "DELETE FROM messages WHERE id = ?1 AND mailbox_id = ?2 RETURNING blob_hash",
                        params![message.0, mailbox.0],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(hash) = hash {
                    release_blob(ctx, &hash)?;
                    removed = true;
                }
            }
            if !removed {
                return Ok(None);
            }
            Ok(ctx
                .conn
                .query_row(
                    "UPDATE mailboxes SET modseq = modseq + 1 WHERE id = ?1 RETURNING account_id",
                    [mailbox.0],
                    |r| r.get(0),
                )
                .optional()?
                .map(AccountId))
        })?;
        if let Some(account) = account {
            self.notify(&[(account, mailbox)]);
        }
        Ok(())
    }

    fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxInfo>> {
        let mut all = mailboxes::list(self, account)?;
        all.extend(self.archives.mailboxes(account)?);
        Ok(all)
    }

    fn mailbox_by_id(&self, mailbox: MailboxId) -> Result<MailboxInfo> {
        match ArchiveMailbox::from_id(mailbox) {
            Some(archived) => self.archives.mailbox_by_id(archived),
            None => mailboxes::by_id(self, mailbox),
        }
    }

    fn mailbox_counts(&self, mailbox: MailboxId) -> Result<MailboxCounts> {
        match ArchiveMailbox::from_id(mailbox) {
            Some(archived) => self.archives.counts(archived),
            None => mailboxes::counts(self, mailbox),
        }
    }

    fn mailbox_size(&self, mailbox: MailboxId) -> Result<u64> {
        match ArchiveMailbox::from_id(mailbox) {
            Some(archived) => Ok(self
                .archives
                .messages(archived)?
                .iter()
                .map(|m| m.size)
                .sum()),
            None => mailboxes::size(self, mailbox),
        }
    }

    fn create_mailbox(&self, account: AccountId, name: &str) -> Result<MailboxInfo> {
        self.writable_name(name)?;
        mailboxes::create(self, account, name, None)
    }

    fn create_special_use_mailbox(
        &self,
        account: AccountId,
        name: &str,
        role: SpecialUse,
    ) -> Result<MailboxInfo> {
        self.writable_name(name)?;
        mailboxes::create(self, account, name, Some(role))
    }

    fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()> {
        self.writable_name(name)?;
        mailboxes::delete(self, account, name)
    }

    fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        self.writable_name(from)?;
        self.writable_name(to)?;
        mailboxes::rename(self, account, from, to)
    }

    fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<()> {
        mailboxes::set_subscribed(self, account, name, subscribed)
    }

    fn subscriptions(&self, account: AccountId) -> Result<Vec<String>> {
        mailboxes::subscriptions(self, account)
    }

    fn append_in_zone(
        &self,
        mailbox: MailboxId,
        message: &[u8],
        flags: Flags,
        keywords: &[String],
        internal_date: Option<i64>,
        zone_minutes: i16,
    ) -> Result<Delivered> {
        writable(mailbox)?;
        let delivered = mailboxes::append(
            self,
            mailbox,
            message,
            flags,
            keywords,
            internal_date,
            zone_minutes,
        )?;
        self.meter
            .delivered(std::slice::from_ref(&delivered), message.len() as u64);
        Ok(delivered)
    }

    fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<FlagUpdate> {
        writable(mailbox)?;
        mailboxes::update_flags(self, mailbox, uids, op, flags, keywords, unchanged_since)
    }

    fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Option<Vec<(u32, u32)>>> {
        // An archive keeps no expunge history: while it is finishing, the messages their
        // owners expunged during the move leave it, so a client compares UIDs instead.
        if ArchiveMailbox::from_id(mailbox).is_some() {
            return Ok(None);
        }
        mailboxes::expunged_since(self, mailbox, modseq)
    }

    fn expunge_deleted(&self, mailbox: MailboxId, uids: Option<&[u32]>) -> Result<Vec<u32>> {
        writable(mailbox)?;
        mailboxes::expunge_deleted(self, mailbox, uids)
    }

    fn copy_messages(&self, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<Copied> {
        writable(to)?;
        if ArchiveMailbox::from_id(from).is_some() {
            return self.copy_out_of_archive(from, uids, to);
        }
        mailboxes::copy(self, from, uids, to, false)
    }

    fn move_messages(&self, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<Copied> {
        writable(from)?;
        writable(to)?;
        mailboxes::copy(self, from, uids, to, true)
    }

    fn claim_recent(&self, mailbox: MailboxId) -> Result<u32> {
        if ArchiveMailbox::from_id(mailbox).is_some() {
            return Ok(self.mailbox_by_id(mailbox)?.uid_next);
        }
        mailboxes::claim_recent(self, mailbox)
    }

    fn set_change_listener(&self, listener: Arc<dyn ChangeListener>) {
        mailboxes::set_change_listener(self, listener)
    }
}

impl Queue for SqliteStore {
    fn accept(
        &self,
        message: &[u8],
        local: &[AccountId],
        outbound: Option<&crate::Outbound>,
    ) -> Result<crate::Accepted> {
        self.queue_accept(message, local, outbound)
    }

    fn queue_due(&self, now: i64, limit: usize) -> Result<Vec<crate::QueuedMessage>> {
        self.queue_due_impl(now, limit)
    }

    fn queue_body(&self, id: crate::QueueId) -> Result<Vec<u8>> {
        self.queue_body_impl(id)
    }

    fn queue_settle(
        &self,
        id: crate::QueueId,
        settled: &[crate::Settlement],
        notices: &[crate::Notice],
    ) -> Result<()> {
        self.queue_settle_impl(id, settled, notices)
    }

    fn queue_begin(
        &self,
        id: crate::QueueId,
        recipients: &[crate::RecipientId],
        now: i64,
    ) -> Result<()> {
        self.queue_begin_impl(id, recipients, now)
    }

    fn queue_unfinished(&self, now: i64) -> Result<u64> {
        self.queue_unfinished_impl(now)
    }

    fn queue_list(&self) -> Result<Vec<crate::QueuedMessage>> {
        self.queue_list_impl()
    }

    fn queue_get(&self, id: crate::QueueId) -> Result<crate::QueuedMessage> {
        self.queue_get_impl(id)
    }

    fn queue_retry(&self, id: Option<crate::QueueId>, now: i64) -> Result<u64> {
        self.queue_retry_impl(id, now)
    }

    fn queue_remove(&self, id: crate::QueueId) -> Result<()> {
        self.queue_remove_impl(id)
    }

    fn queue_stats(&self) -> Result<crate::QueueStats> {
        self.queue_stats_impl()
    }
}

impl Maintenance for SqliteStore {
    fn check(&self, options: &CheckOptions) -> Result<CheckReport> {
        check::run(self, options)
    }

    fn optimize(&self) -> Result<OptimizeReport> {
        optimize::run(self)
    }

    fn totals(&self) -> Result<crate::StoreTotals> {
        wal::totals(self)
    }

    fn wal_bytes(&self) -> u64 {
        wal::wal_bytes(&self.db_path)
    }

    fn checkpoint_wal(&self, patience: std::time::Duration) -> Result<crate::WalCheckpoint> {
        wal::checkpoint(self, patience)
    }
}

impl Statistics for SqliteStore {
    fn record_usage(&self, account: AccountId, usage: crate::Usage) {
        self.meter.add(account, &usage);
    }

    fn usage_total(&self) -> crate::Usage {
        self.meter.total()
    }

    fn flush_usage(&self, now: i64, keep_days: u32) -> Result<()> {
        stats::flush(self, now, keep_days)
    }

    fn usage_samples(&self, since: i64) -> Result<Vec<crate::UsageRow>> {
        self.read(|conn| stats::rows(conn, stats::Period::Sample, since))
    }

    fn usage_daily(&self, since: i64) -> Result<Vec<crate::UsageRow>> {
        self.read(|conn| stats::rows(conn, stats::Period::Day, since))
    }

    fn growth(&self) -> Result<Vec<crate::GrowthRow>> {
        self.read(stats::growth)
    }
}

/// Where alias expansion led: local accounts and addresses in other domains.
#[derive(Default)]
struct Expansion {
    accounts: Vec<AccountId>,
    /// Lower case (alias targets are stored normalised).
    remote: Vec<String>,
}

/// Follows accounts and aliases from `address`, collecting account ids and the targets
/// that lie outside our domains.
fn expand(conn: &Connection, address: &str, depth: usize, found: &mut Expansion) -> Result<()> {
    if depth > MAX_ALIAS_DEPTH {
        tracing::warn!(address, "alias chain too deep; ignoring the rest");
        return Ok(());
    }
    let account: Option<i64> = conn
        .prepare_cached("SELECT id FROM accounts WHERE address = ?1")?
        .query_row([address], |r| r.get(0))
        .optional()?;
    if let Some(id) = account {
        found.accounts.push(AccountId(id));
        return Ok(());
    }
    let targets: Vec<String> = conn
        .prepare_cached(
            "SELECT t.target FROM aliases a JOIN alias_targets t ON t.alias_id = a.id WHERE a.address = ?1",
        )?
        .query_map([address], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if targets.is_empty() {
        // Neither an account nor an alias: an address elsewhere is forwarded, an unknown
        // one of ours (a target whose account went away) is dropped.
        if let Some((_, domain)) = address.rsplit_once('@')
            && !is_local_domain(conn, domain)?
        {
            found.remote.push(address.to_string());
        }
        return Ok(());
    }
    for target in targets {
        expand(conn, &target, depth + 1, found)?;
    }
    Ok(())
}

fn insert_message(
    ctx: &mut WriteCtx<'_>,
    blob: BlobId,
    size: u64,
    recipients: &[AccountId],
) -> Result<Vec<Delivered>> {
    let mut delivered = Vec::with_capacity(recipients.len());
    for &account in recipients {
        let mailbox: Option<(i64, u32)> = ctx
            .conn
            .prepare_cached(
                "UPDATE mailboxes SET uidnext = uidnext + 1, modseq = modseq + 1
                 WHERE account_id = ?1 AND name = 'INBOX'
                 RETURNING id, uidnext - 1",
            )?
            .query_row([account.0], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match mailbox {
            Some((mailbox, uid)) => delivered.push(Delivered {
                account,
                mailbox: MailboxId(mailbox),
                uid,
            }),
            // The account was removed after RCPT; the others still get their copy.
            None => tracing::warn!(account = account.0, "recipient vanished before delivery"),
        }
    }
    if delivered.is_empty() {
        return Ok(delivered);
    }
    reference_blob(ctx, blob, size, delivered.len() as i64)?;
    let date = now();
    let mut insert = ctx.conn.prepare_cached(
        "INSERT INTO messages (mailbox_id, uid, internal_date, size, blob_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for d in &delivered {
        insert.execute(params![d.mailbox.0, d.uid, date, size, &blob.0[..]])?;
    }
    quota::enforce(ctx, delivered.iter().map(|d| d.account))?;
    Ok(delivered)
}
