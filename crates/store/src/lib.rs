//! The mail store: accounts, mailboxes and messages behind one interface.
//!
//! Metadata lives in a backend (SQLite today, PostgreSQL later); message bodies live in a
//! content-addressed [`BlobStore`] shared by every backend. Nothing outside a backend
//! writes SQL: protocol sessions, the CLI and operations talk to the [`Store`] trait.

pub mod archive;
mod blob;
mod check;
#[doc(hidden)]
pub mod conformance;
mod error;
#[doc(hidden)]
pub mod io;
mod lists;
mod password;
pub mod segment;
mod sqlite;
pub mod text_index;
mod types;

pub use blob::{BlobId, BlobStore, Verdict};
pub use check::{
    AffectedMessage, CheckOptions, CheckReport, OptimizeReport, Progress, human_bytes,
};
pub use error::StoreError;
pub use lists::*;
pub use segment::{Segment, Term};
pub use sqlite::archive::{
    ArchiveOutcome, ArchivePlan, ArchiveProgress, ArchiveReport, ArchiveRequest, Indexer, Phase,
    batch_size as archive_batch_size,
};
pub use sqlite::inspect;
pub use sqlite::text_index::FILE as TEXT_INDEX_FILE;
pub use sqlite::{Expired, ORPHANS_DIR, OrphanRecovery, SCHEMA_VERSION, SqliteStore, backup};
pub use types::*;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// `use store::prelude::*` brings every role's methods into scope (for callers holding
/// `Arc<dyn Store>`) without taking their names.
pub mod prelude {
    pub use crate::{
        Directory as _, MailAccess, Mailboxes as _, Maintenance as _, Newsletters as _, Queue as _,
        Statistics as _, Store,
    };
}

/// Everything the rest of tegami may ask of the store: the sum of its roles, so a caller
/// holding `Arc<dyn Store>` reaches all of them. A session or service that needs fewer can
/// be given only the roles it uses.
///
/// Methods block: SQLite is a synchronous library, so async callers run them on a blocking
/// thread pool. Every method that changes data returns only after the change is durable.
pub trait Store: MailAccess + Queue + Maintenance {}

impl<T: MailAccess + Queue + Maintenance + ?Sized> Store for T {}

/// What a session that reads mail needs (IMAP, POP3): who logs in, their mailboxes, and the
/// usage meter, and nothing of the queue or of maintenance. An `Arc<dyn Store>` becomes an
/// `Arc<dyn MailAccess>` by coercion.
pub trait MailAccess: Directory + Mailboxes + Statistics {}

impl<T: Directory + Mailboxes + Statistics + ?Sized> MailAccess for T {}

/// What the newsletter engine needs: the lists and their history, and the rest of the store
/// (it queues mail and resolves addresses like any sender).
pub trait Mailing: Newsletters + Store {}

impl<T: Newsletters + Store + ?Sized> Mailing for T {}

/// The addresses this server answers for: domains, accounts, aliases, and what a recipient resolves to.
pub trait Directory: Send + Sync {
    fn add_domain(&self, name: &str) -> Result<()>;
    fn remove_domain(&self, name: &str) -> Result<()>;
    fn domains(&self) -> Result<Vec<String>>;
    fn add_account(&self, address: &str, password: &str) -> Result<AccountId>;
    fn remove_account(&self, address: &str) -> Result<()>;
    fn set_password(&self, address: &str, password: &str) -> Result<()>;
    fn accounts(&self) -> Result<Vec<AccountInfo>>;
    /// Checks a password; `Ok(None)` for an unknown account or a wrong password alike.
    fn authenticate(&self, address: &str, password: &str) -> Result<Option<AccountId>>;
    /// Makes an account an administrator of the server, or no longer one.
    fn set_admin(&self, address: &str, admin: bool) -> Result<()>;
    /// Sets or clears an account's TOTP secret (base32).
    fn set_totp_secret(&self, address: &str, secret: Option<&str>) -> Result<()>;
    /// The account behind a sign-in; `Ok(None)` when it no longer exists.
    fn principal(&self, account: AccountId) -> Result<Option<Principal>>;
    fn add_alias(&self, address: &str, targets: &[String]) -> Result<()>;
    fn remove_alias(&self, address: &str) -> Result<()>;
    fn aliases(&self) -> Result<Vec<AliasInfo>>;
    /// Decides what a recipient address means here: local accounts (after alias
    /// expansion), an unknown user in a local domain, or a domain we do not serve.
    fn resolve(&self, address: &str) -> Result<Resolution>;
    /// The addresses an account may send as: its own address and every alias that names
    /// it directly as a target, lower case.
    fn sender_addresses(&self, account: AccountId) -> Result<Vec<String>>;
    /// RFC 5321 section 4.5.1: every domain must accept mail for postmaster@. When no
    /// account or alias answers to postmaster@ a local domain, [`Directory::resolve`]
    /// delivers it to `target` (an account, an alias, or an address elsewhere). Resolution
    /// is the one place that rule lives, so SMTP, submission and local delivery from the
    /// queue agree.
    fn set_postmaster(&self, target: Option<String>);
    /// Sets an account's own storage limit in bytes; `None` lets its domain's default apply.
    fn set_quota(&self, address: &str, limit: Option<u64>) -> Result<()>;
    /// Sets the storage limit of a domain's accounts that have none of their own.
    fn set_domain_quota(&self, domain: &str, limit: Option<u64>) -> Result<()>;
    fn domain_quota(&self, domain: &str) -> Result<Option<u64>>;
    fn account_quota(&self, address: &str) -> Result<AccountQuota>;
    /// An account's usage and the limit that applies to it. Every write that adds mail
    /// checks the limit in its own transaction and fails with `OverQuota`; this is for
    /// answering before the mail arrives (SMTP's RCPT, IMAP's GETQUOTA).
    fn quota(&self, account: AccountId) -> Result<Quota>;
    /// Whether `size` more bytes fit each of `accounts`: the first that has no room, with
    /// why; `None` when all do.
    fn quota_room(&self, accounts: &[AccountId], size: u64) -> Result<Option<(AccountId, Room)>> {
        for &account in accounts {
            match self.quota(account)?.room(size) {
                Room::Fits => {}
                room => return Ok(Some((account, room))),
            }
        }
        Ok(None)
    }
    /// Every account under a limit (its own or its domain's), by address.
    fn quota_usage(&self) -> Result<Vec<QuotaUse>>;
    /// Records that an account's owner was warned it is nearly full, or that it has room again.
    fn set_quota_warned(&self, account: AccountId, warned: bool) -> Result<()>;
}

/// What IMAP and POP3 need: mailboxes, messages, flags, bodies, and the change listener.
pub trait Mailboxes: Send + Sync {
    /// Stores one message for every recipient account's INBOX. The body is written once
    /// (content-addressed) and shared; the call returns after blob and metadata are on disk.
    fn deliver(&self, message: &[u8], recipients: &[AccountId]) -> Result<Vec<Delivered>>;
    fn mailbox(&self, account: AccountId, name: &str) -> Result<MailboxInfo>;
    /// The messages of a mailbox in UID order.
    fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageMeta>>;
    /// What the full-text index says about a text search in `mailbox`: which messages may
    /// match (a superset, to be verified by scanning). `None` when it cannot narrow the
    /// search, and every message must be scanned.
    fn text_candidates(
        &self,
        _mailbox: MailboxId,
        _query: &text_index::TextQuery,
    ) -> Result<Option<text_index::TextCandidates>> {
        Ok(None)
    }
    /// One page of a mailbox, newest first (see [`NewestFirst`]), and how many messages its
    /// dates select in all. A mail reader's page of a 100,000-message mailbox should read
    /// its 50 rows, not all of them: backends answer from their UID index.
    fn messages_newest(
        &self,
        mailbox: MailboxId,
        window: &NewestFirst,
    ) -> Result<(Vec<MessageMeta>, usize)> {
        Ok(window.take(self.messages(mailbox)?))
    }
    /// A message's bytes, verified against its content hash.
    fn read_blob(&self, blob: &BlobId) -> Result<Vec<u8>>;
    /// Removes messages from a mailbox in one atomic transaction.
    fn expunge(&self, mailbox: MailboxId, messages: &[MessageId]) -> Result<()>;
    /// Every mailbox of an account, ordered by name.
    fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxInfo>>;
    /// A mailbox by id: `NotFound` once it was deleted.
    fn mailbox_by_id(&self, mailbox: MailboxId) -> Result<MailboxInfo>;
    fn mailbox_counts(&self, mailbox: MailboxId) -> Result<MailboxCounts>;
    /// The octets of every message in the mailbox (IMAP STATUS SIZE). Kept out of
    /// `mailbox_counts`, which every STATUS reads, since adding sizes reads every row. The
    /// default adds up `messages`; a backend with an aggregate does better.
    fn mailbox_size(&self, mailbox: MailboxId) -> Result<u64> {
        Ok(self.messages(mailbox)?.iter().map(|m| m.size).sum())
    }
    /// `AlreadyExists` if the name is taken; `Invalid` for an empty name, an empty level
    /// ("a//b"), a leading or trailing "/", or a name longer than 512 bytes.
    fn create_mailbox(&self, account: AccountId, name: &str) -> Result<MailboxInfo>;
    /// [`Mailboxes::create_mailbox`] with a special-use role (IMAP's CREATE-SPECIAL-USE,
    /// RFC 6154). A role belongs to at most one mailbox of an account: `AlreadyExists` when
    /// another one holds it (the default mailboxes hold every role until deleted).
    fn create_special_use_mailbox(
        &self,
        account: AccountId,
        name: &str,
        role: SpecialUse,
    ) -> Result<MailboxInfo>;
    /// Deletes a mailbox and its messages (blobs released); INBOX cannot be deleted.
    /// Mailboxes below it ("name/...") stay.
    fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()>;
    /// Renames a mailbox and everything below it; the renamed mailboxes get a new
    /// UIDVALIDITY. Renaming INBOX moves its messages into a new mailbox and leaves INBOX
    /// empty, as RFC 3501 says.
    fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()>;
    /// Subscriptions are names, not mailboxes: a name may be subscribed without existing.
    fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<()>;
    fn subscriptions(&self, account: AccountId) -> Result<Vec<String>>;
    /// Stores one message into a mailbox by the same durable path as [`Mailboxes::deliver`].
    /// `internal_date` defaults to now.
    fn append(
        &self,
        mailbox: MailboxId,
        message: &[u8],
        flags: Flags,
        keywords: &[String],
        internal_date: Option<i64>,
    ) -> Result<Delivered> {
        self.append_in_zone(mailbox, message, flags, keywords, internal_date, 0)
    }
    /// [`Mailboxes::append`] with the time zone the internal date was given in, in minutes
    /// east of UTC (IMAP APPEND's date-time), kept so that INTERNALDATE gives it back.
    /// `Invalid` beyond ±99:59.
    fn append_in_zone(
        &self,
        mailbox: MailboxId,
        message: &[u8],
        flags: Flags,
        keywords: &[String],
        internal_date: Option<i64>,
        zone_minutes: i16,
    ) -> Result<Delivered>;
    /// Changes the flags of the messages with these UIDs (missing UIDs are skipped) in one
    /// transaction and returns their new flags, in UID order.
    fn update_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
    ) -> Result<Vec<FlagState>> {
        Ok(self
            .store_flags(mailbox, uids, op, flags, keywords, None)?
            .states)
    }
    /// [`Mailboxes::update_flags`], and with `unchanged_since` (RFC 7162 STORE
    /// UNCHANGEDSINCE) only for messages whose mod-sequence is not above it; the others
    /// are left alone and listed in `modified`. Each message changed takes the mailbox's
    /// new mod-sequence.
    fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<FlagUpdate>;
    /// The messages changed or added after mod-sequence `modseq`, in UID order: with
    /// `expunged_since`, what a session that saw the mailbox at `modseq` lacks. The default
    /// filters `messages`; a backend that can find them directly does better.
    fn messages_changed_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Vec<MessageMeta>> {
        let mut messages = self.messages(mailbox)?;
        messages.retain(|m| m.modseq > modseq);
        Ok(messages)
    }
    /// The UID ranges expunged from a mailbox after mod-sequence `modseq`, ascending (for
    /// QRESYNC's VANISHED). Expunges are remembered for a bounded time and number; `None`
    /// when some after `modseq` may have been forgotten, so the caller must compare UIDs.
    /// A range may name UIDs that never existed, never one that still does.
    fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Option<Vec<(u32, u32)>>>;
    /// Removes the messages flagged \Deleted (only those among `uids`, when given) in one
    /// transaction; returns the UIDs removed, ascending.
    fn expunge_deleted(&self, mailbox: MailboxId, uids: Option<&[u32]>) -> Result<Vec<u32>>;
    /// Copies messages (flags, keywords and internal date kept; blobs shared, not copied).
    fn copy_messages(&self, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<Copied>;
    /// Like copy, and removes them from `from` in the same transaction.
    fn move_messages(&self, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<Copied>;
    /// Claims the \Recent messages of a mailbox for one session: returns the lowest UID
    /// not claimed before, and marks everything up to UIDNEXT as claimed.
    fn claim_recent(&self, mailbox: MailboxId) -> Result<u32>;
    /// Registers who is told of every committed change to a mailbox (one listener; a
    /// second call replaces the first).
    fn set_change_listener(&self, listener: std::sync::Arc<dyn ChangeListener>);
}

/// Accepting mail for local and remote recipients at once, and the outbound queue.
pub trait Queue: Send + Sync {
    /// Accepts one message in one transaction: delivered to the INBOX of each `local`
    /// account and, when `outbound` is given, queued for its remote recipients. Durable on
    /// return, so the caller may say 250.
    fn accept(
        &self,
        message: &[u8],
        local: &[AccountId],
        outbound: Option<&Outbound>,
    ) -> Result<Accepted>;
    /// Queued messages with at least one recipient due (`Queued`, `next_attempt <= now`,
    /// and no transaction begun: see [`Queue::queue_begin`]), earliest due first, at most
    /// `limit`; each lists only its due recipients.
    fn queue_due(&self, now: i64, limit: usize) -> Result<Vec<QueuedMessage>>;
    /// A queued message's bytes; `NotFound` once it left the queue.
    fn queue_body(&self, id: QueueId) -> Result<Vec<u8>>;
    /// Records an attempt's outcome for some recipients of one message and queues the
    /// notices it caused, in one transaction. Adds one to `attempts` of each settled
    /// recipient. A message with no recipient left `Queued` leaves the queue. Settling a
    /// recipient that is gone (removed by an operator) is not an error.
    ///
    /// When the registered [`BounceRouter`] reads the message's sender as a campaign's or
    /// step's VERP address, the same transaction records the outcome in its history
    /// (delivered, deferred, failed) and a failure as a hard bounce (a delay notice as a
    /// soft one), once per recipient, and the notices addressed to that sender are not
    /// queued: the bounce they would carry is already counted.
    fn queue_settle(&self, id: QueueId, settled: &[Settlement], notices: &[Notice]) -> Result<()>;
    /// Records, durably, that an SMTP transaction (or a local delivery) for these
    /// recipients begins at `now`. Only recipients queued `at_most_once` (campaign and step
    /// mail) are marked; settling them clears the mark. Call it before the transaction
    /// starts and do not start it if this fails.
    fn queue_begin(&self, id: QueueId, recipients: &[RecipientId], now: i64) -> Result<()>;
    /// After a restart, before the first delivery: the recipients whose transaction began
    /// and never settled (the process died or stopped in the middle) have an unknown
    /// outcome. They are settled as delivered (with that said in their last error, and in
    /// the newsletter history as a delivery), because a second copy of campaign mail is
    /// worse than a lost one. Returns how many there were.
    fn queue_unfinished(&self, now: i64) -> Result<u64>;
    /// Every queued message with all its recipients, oldest first.
    fn queue_list(&self) -> Result<Vec<QueuedMessage>>;
    /// One queued message with all its recipients.
    fn queue_get(&self, id: QueueId) -> Result<QueuedMessage>;
    /// Makes the waiting recipients of one message (or of all, for `None`) due at `now`;
    /// returns how many recipients changed.
    fn queue_retry(&self, id: Option<QueueId>, now: i64) -> Result<u64>;
    /// Drops a message from the queue without notice; `NotFound` if it is not there.
    fn queue_remove(&self, id: QueueId) -> Result<()>;
    fn queue_stats(&self) -> Result<QueueStats>;
}

/// Keeping the store healthy: the integrity check, optimisation, sizes and the log's bound.
pub trait Maintenance: Send + Sync {
    /// Integrity check of metadata and every blob, against a consistent snapshot, beside a
    /// live server. With `repair` it also fixes what can be fixed without loss.
    fn check(&self, options: &CheckOptions) -> Result<CheckReport>;
    /// Online optimisation: planner statistics, WAL checkpoint, free pages given back to the
    /// file system, orphan blob files removed. Deliveries go on while it runs.
    fn optimize(&self) -> Result<OptimizeReport>;
    /// Counts and sizes of what is stored, from a consistent snapshot.
    fn totals(&self) -> Result<StoreTotals>;
    /// The write-ahead log's current size in bytes (a `stat`, no lock).
    fn wal_bytes(&self) -> u64;
    /// Copies the write-ahead log back into the database and truncates it, waiting up to
    /// `patience` for readers to move to the newest snapshot; new writes wait meanwhile.
    /// Readers that never pause starve SQLite's own passive checkpoints; this is what keeps
    /// the log under its cap (`[store] wal_cap_bytes`).
    fn checkpoint_wal(&self, patience: std::time::Duration) -> Result<WalCheckpoint>;
}

/// Usage statistics, bounded (see `sqlite/stats.rs`).
pub trait Statistics: Send + Sync {
    /// Adds to an account's usage in memory; no I/O, so sessions may call it per command.
    /// Deliveries and appends are counted by the store itself.
    fn record_usage(&self, account: AccountId, usage: Usage);
    /// Everything counted since the store was opened, all accounts together.
    fn usage_total(&self) -> Usage;
    /// Writes what was recorded since the last flush into the ten-minute sample and the day
    /// of `now` (Unix seconds), records the store's size for the day, and drops samples
    /// older than an hour and days older than `keep_days`. One transaction.
    fn flush_usage(&self, now: i64, keep_days: u32) -> Result<()>;
    /// Ten-minute samples starting at or after `since` (Unix seconds), oldest first.
    fn usage_samples(&self, since: i64) -> Result<Vec<UsageRow>>;
    /// Daily totals of days starting at or after `since` (Unix seconds), oldest first.
    fn usage_daily(&self, since: i64) -> Result<Vec<UsageRow>>;
    /// The store's size per day, oldest first.
    fn growth(&self) -> Result<Vec<GrowthRow>>;
}
