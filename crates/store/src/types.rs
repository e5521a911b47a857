//! Plain data types that cross the store interface.

use crate::BlobId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub i64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub id: AccountId,
    pub address: String,
    pub messages: u64,
    pub bytes: u64,
    /// Administers the server: the web console's operator screens.
    pub admin: bool,
    /// The storage limit that applies: the account's own, else its domain's default.
    pub quota: Option<u64>,
}

/// An account's storage: what its live messages take and the limit that applies (its own,
/// else its domain's default; `None` for no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub used: u64,
    pub limit: Option<u64>,
}

/// Whether a message fits an account's quota, and if not, whether it ever can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    Fits,
    /// Not now: the owner may free space or the limit may be raised, so a sender should
    /// try again later (SMTP 452 4.2.2).
    Full,
    /// Never: the message alone is bigger than the limit (SMTP 552 5.2.2).
    TooLarge,
}

/// An account under a limit, for the warnings, the alerts and `stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaUse {
    pub account: AccountId,
    pub address: String,
    pub quota: Quota,
    /// Its owner was told it is nearly full, and it has not had room since.
    pub warned: bool,
}

/// One account's quota as `tegami account quota` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountQuota {
    pub account: AccountId,
    pub quota: Quota,
    /// Its own limit; `None` when its domain's default (or nothing) applies.
    pub own: Option<u64>,
}

impl Quota {
    /// The share of its limit past which an account's owner is warned.
    pub const WARN_PERCENT: u64 = 90;

    /// Whether `size` more bytes fit: the usage after it must not pass the limit.
    pub fn room(&self, size: u64) -> Room {
        match self.limit {
            None => Room::Fits,
            Some(limit) if size > limit => Room::TooLarge,
            Some(limit) if self.used.saturating_add(size) > limit => Room::Full,
            Some(_) => Room::Fits,
        }
    }

    /// Usage as a whole percentage of the limit (rounded down); `None` without a limit.
    pub fn percent(&self) -> Option<u64> {
        let limit = self.limit?;
        Some(if limit == 0 {
            100
        } else {
            (u128::from(self.used) * 100 / u128::from(limit)) as u64
        })
    }

    /// At or past [`Quota::WARN_PERCENT`] of a limit.
    pub fn nearly_full(&self) -> bool {
        self.percent().is_some_and(|p| p >= Self::WARN_PERCENT)
    }
}

/// Who an account is when it signs in to the web console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: AccountId,
    pub address: String,
    pub admin: bool,
    /// The RFC 6238 secret (base32) of an administrator who turned on a second factor.
    pub totp_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasInfo {
    pub address: String,
    pub targets: Vec<String>,
}

/// What a recipient address means to this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Deliver to these accounts (an alias may name several; duplicates removed).
    Local(Vec<AccountId>),
    /// The domain is ours but nobody by that name lives here.
    UnknownUser,
    /// Not one of our domains: accepting it would make us an open relay.
    NotLocal,
    /// An alias with at least one target outside our domains: deliver to `accounts` (may
    /// be empty) and forward to `remote` through the outbound queue.
    Forward {
        accounts: Vec<AccountId>,
        remote: Vec<String>,
    },
}

/// A mailbox. Names are UTF-8 with "/" as the hierarchy delimiter; "INBOX" is always
/// spelled that way (protocol sessions fold its case before asking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub id: MailboxId,
    pub account: AccountId,
    pub name: String,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub special_use: Option<SpecialUse>,
    /// Grows with every change to the mailbox or its messages (delivery, append, flags,
    /// expunge, copy or move in): a session that remembers it knows cheaply whether
    /// anything happened since it last looked.
    pub modseq: u64,
    /// An archive's mailbox (see `archive.rs`): it can be read, searched and copied from,
    /// never changed.
    pub read_only: bool,
}

/// The RFC 6154 roles; every account gets one mailbox of each, named as the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    pub const ALL: [SpecialUse; 5] = [
        SpecialUse::Sent,
        SpecialUse::Drafts,
        SpecialUse::Trash,
        SpecialUse::Junk,
        SpecialUse::Archive,
    ];

    /// The mailbox name created for this role.
    pub fn name(self) -> &'static str {
        match self {
            SpecialUse::Sent => "Sent",
            SpecialUse::Drafts => "Drafts",
            SpecialUse::Trash => "Trash",
            SpecialUse::Junk => "Junk",
            SpecialUse::Archive => "Archive",
        }
    }

    /// The LIST attribute, as RFC 6154 spells it.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }
}

/// Counts for IMAP STATUS and SELECT, read in one consistent snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxCounts {
    pub messages: u32,
    /// Messages without \Seen.
    pub unseen: u32,
    /// Messages not yet claimed by any session that selected the mailbox
    /// (see [`crate::Store::claim_recent`]).
    pub recent: u32,
    /// Messages flagged \Deleted, and their size (STATUS DELETED and DELETED-STORAGE).
    pub deleted: u32,
    pub deleted_bytes: u64,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Replace,
    Add,
    Remove,
}

/// A message's flags after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagState {
    pub uid: u32,
    pub flags: Flags,
    pub keywords: Vec<String>,
    /// The message's mod-sequence after the change (RFC 7162): unchanged when the change
    /// changed nothing.
    pub modseq: u64,
}

/// What a conditional flag change did: the messages changed (or left as they were asked to
/// be), and the UIDs refused because they changed after the caller's mod-sequence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlagUpdate {
    pub states: Vec<FlagState>,
    /// UIDs whose mod-sequence was above `unchanged_since`, ascending: not touched
    /// (RFC 7162's MODIFIED).
    pub modified: Vec<u32>,
}

/// Where COPY or MOVE put messages: for the UIDPLUS COPYUID response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub uid_validity: u32,
    /// (source UID, destination UID), in source UID order.
    pub uids: Vec<(u32, u32)>,
}

/// Told after every committed change to a mailbox, from the thread that made it, so that
/// open sessions (IMAP IDLE above all) learn of it at once. Must return quickly.
pub trait ChangeListener: Send + Sync {
    fn mailbox_changed(&self, account: AccountId, mailbox: MailboxId);
}

/// One message for [`crate::SqliteStore::append_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub bytes: Vec<u8>,
    pub flags: Flags,
    pub keywords: Vec<String>,
    /// Defaults to now.
    pub internal_date: Option<i64>,
}

/// Where one recipient's copy of a delivered message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub account: AccountId,
    pub mailbox: MailboxId,
    pub uid: u32,
}

/// A page of a mailbox for a mail reader, newest (highest UID) first: the messages below
/// `below_uid` when given, dated in `[since, until)` when given, `skip` of them skipped and
/// at most `limit` returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NewestFirst {
    pub below_uid: Option<u32>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub skip: usize,
    pub limit: usize,
}

impl NewestFirst {
    fn dated(&self, meta: &MessageMeta) -> bool {
        self.since.is_none_or(|s| meta.internal_date >= s)
            && self.until.is_none_or(|u| meta.internal_date < u)
    }

    /// The page taken from a whole mailbox in UID order, and how many messages the dates
    /// select in all: the rule every backend's faster query must agree with.
    pub fn take(&self, in_uid_order: Vec<MessageMeta>) -> (Vec<MessageMeta>, usize) {
        let dated: Vec<MessageMeta> = in_uid_order
            .into_iter()
            .rev()
            .filter(|m| self.dated(m))
            .collect();
        let total = dated.len();
        let page = dated
            .into_iter()
            .filter(|m| self.below_uid.is_none_or(|b| m.uid < b))
            .skip(self.skip)
            .take(self.limit)
            .collect();
        (page, total)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub id: MessageId,
    pub uid: u32,
    /// Seconds since the Unix epoch when the message arrived.
    pub internal_date: i64,
    /// The time zone the internal date was given in (APPEND's date-time), in minutes east
    /// of UTC; 0 for mail the server dated itself.
    pub internal_zone: i16,
    /// The message's mod-sequence (RFC 7162): the mailbox's `modseq` at its last change
    /// (arrival or flags). Never above the mailbox's.
    pub modseq: u64,
    pub size: u64,
    pub flags: Flags,
    /// IMAP keywords (user flags such as `$Forwarded`), sorted, without duplicates.
    pub keywords: Vec<String>,
    pub blob: BlobId,
}

/// IMAP system flags as a bit set; keywords live beside them in [`MessageMeta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u32);

impl Flags {
    pub const SEEN: u32 = 1;
    pub const ANSWERED: u32 = 2;
    pub const FLAGGED: u32 = 4;
    pub const DELETED: u32 = 8;
    pub const DRAFT: u32 = 16;
}

/// What the store holds, measured: the inputs of the capacity planner and of `stats disk`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTotals {
    pub accounts: u64,
    /// Message rows: one per copy in a mailbox, so a message to three accounts counts three.
    pub messages: u64,
    /// The sum of those rows' sizes (what users see; shared bodies counted once per copy).
    pub message_bytes: u64,
    /// Distinct bodies on disk and their bytes (what the blob volume really holds).
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Pages in use in the database file (without free pages), in bytes.
    pub database_bytes: u64,
    /// Free pages inside the database file, in bytes.
    pub database_free_bytes: u64,
    /// The write-ahead log's file size.
    pub wal_bytes: u64,
}

/// What one attempt to bound the write-ahead log did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCheckpoint {
    pub wal_bytes_before: u64,
    pub wal_bytes_after: u64,
    /// False when readers kept the checkpoint from restarting the log within its patience.
    pub complete: bool,
    /// Frames in the log and frames copied back into the database.
    pub frames: i64,
    pub copied: i64,
}

/// One account's activity over a period: what it received, what its clients fetched, what
/// it cost the disk, and how busy its sessions kept the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Messages delivered or appended to the account, and their bytes.
    pub messages_in: u64,
    pub bytes_in: u64,
    /// Messages its clients downloaded (POP3 RETR, IMAP FETCH of a body), and their bytes.
    pub messages_out: u64,
    pub bytes_out: u64,
    /// Blob bytes written for it: a body shared by several recipients is split between them.
    pub write_bytes: u64,
    /// Protocol commands its sessions ran, and the time the server spent on them.
    pub commands: u64,
    pub busy_micros: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.messages_in += other.messages_in;
        self.bytes_in += other.bytes_in;
        self.messages_out += other.messages_out;
        self.bytes_out += other.bytes_out;
        self.write_bytes += other.write_bytes;
        self.commands += other.commands;
        self.busy_micros += other.busy_micros;
    }

    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
}

/// One account's usage in one period (a ten-minute sample or a day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The account's address; `#<id>` once the account was removed.
    pub account: String,
    /// Unix time at which the period starts.
    pub start: i64,
    pub usage: Usage,
}

/// The store's size at the last flush of a day, for the growth forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrowthRow {
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    pub database_bytes: u64,
    pub blob_bytes: u64,
    pub messages: u64,
}

/// A message in the outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub i64);

/// One recipient of a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecipientId(pub i64);

/// The envelope of a message handed to the outbound queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The envelope sender; empty for the null sender `<>` (a bounce), which is never
    /// bounced itself.
    pub sender: String,
    /// Recipient addresses as given (duplicates removed by the store, case-insensitively).
    pub recipients: Vec<String>,
    /// The account that submitted it; `None` for forwarded mail and notices.
    pub account: Option<AccountId>,
}

/// What [`crate::Queue::accept`] did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub delivered: Vec<Delivered>,
    pub queued: Option<QueueId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientState {
    /// Waiting for its next attempt.
    Queued,
    Delivered,
    /// Bounced (a failure notice was queued for the sender, unless the sender was null).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecipient {
    pub id: RecipientId,
    pub address: String,
    /// The domain part, lower case: what routing and per-destination limits key on.
    pub domain: String,
    pub state: RecipientState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix seconds.
    pub next_attempt: i64,
    /// Short machine-readable class of the last temporary failure ("connect", "dns",
    /// "tls", "4xx", ...), for metrics; `None` before any failure.
    pub last_reason: Option<String>,
    /// The last failure as text (a remote reply or a local error).
    pub last_error: Option<String>,
    /// A delay notice has been queued for this recipient.
    pub delay_notified: bool,
    /// Campaign or step mail: a second copy is worse than a lost one. Its transactions
    /// are recorded before they start ([`crate::Queue::queue_begin`]), and one whose
    /// outcome a crash left unknown counts as delivered ([`crate::Queue::queue_unfinished`]).
    pub at_most_once: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: QueueId,
    pub sender: String,
    pub account: Option<AccountId>,
    pub size: u64,
    /// Unix seconds when it was queued.
    pub created: i64,
    pub recipients: Vec<QueuedRecipient>,
}

/// What one delivery attempt decided for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Delivered {
        recipient: RecipientId,
    },
    /// Try again at `next_attempt` (Unix seconds). `delay_notified` is set once a delay
    /// notice for this recipient is part of the same settle call.
    Deferred {
        recipient: RecipientId,
        next_attempt: i64,
        reason: String,
        error: String,
        delay_notified: bool,
    },
    Failed {
        recipient: RecipientId,
        error: String,
    },
}

/// A notice (a DSN) queued in the same transaction as the settlements that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub envelope: Outbound,
    pub message: Vec<u8>,
}

/// The queue at a glance, for `/metrics` and `tegami queue list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub messages: u64,
    /// Recipients still waiting.
    pub recipients: u64,
    pub bytes: u64,
    /// Unix seconds of the oldest queued message.
    pub oldest: Option<i64>,
    /// Waiting recipients whose last attempt failed, by `last_reason`, sorted by reason.
    pub deferred_by_reason: Vec<(String, u64)>,
}

#[cfg(test)]
mod quota_tests {
    use super::*;

    #[test]
    fn a_message_fits_until_the_usage_after_it_passes_the_limit() {
        let q = Quota {
            used: 900,
            limit: Some(1000),
        };
        assert_eq!(q.room(100), Room::Fits);
        assert_eq!(q.room(101), Room::Full);
        assert_eq!(q.room(1001), Room::TooLarge);
        assert_eq!(
            Quota {
                used: 5,
                limit: None
            }
            .room(u64::MAX),
            Room::Fits
        );
        // An account over a lowered limit takes nothing, not even an empty message.
        assert_eq!(
            Quota {
                used: 1200,
                limit: Some(1000)
            }
            .room(0),
            Room::Full
        );
    }

    #[test]
    fn nearly_full_is_ninety_percent_of_a_limit() {
        assert_eq!(
            Quota {
                used: 899,
                limit: Some(1000)
            }
            .percent(),
            Some(89)
        );
        assert!(
            !Quota {
                used: 899,
                limit: Some(1000)
            }
            .nearly_full()
        );
        assert!(
            Quota {
                used: 900,
                limit: Some(1000)
            }
            .nearly_full()
        );
        assert!(
            Quota {
                used: 0,
                limit: Some(0)
            }
            .nearly_full()
        );
        assert!(
            !Quota {
                used: u64::MAX,
                limit: None
            }
            .nearly_full()
        );
        assert_eq!(
            Quota {
                used: u64::MAX,
                limit: Some(u64::MAX)
            }
            .percent(),
            Some(100)
        );
    }
}
