//! Mailboxes beyond INBOX and the message operations IMAP needs: create, delete and rename,
//! subscriptions, append, flags, expunge of \Deleted, copy and move, \Recent, and telling a
//! listener about committed changes.
//!
//! Every change to a mailbox's messages bumps its `modseq` in the transaction that makes
//! it, and the listener hears of the change only after that transaction committed, from the
//! caller's thread, with no lock held. UIDs come from `uidnext`, which only ever grows, and
//! UIDVALIDITY from one counter that only ever grows, so neither is handed out twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::writer::WriteCtx;
use super::{SqliteStore, now, reference_blob, release_blob};
use crate::{
    AccountId, ChangeListener, Copied, Delivered, FlagOp, FlagState, FlagUpdate, Flags,
    MailboxCounts, MailboxId, MailboxInfo, Result, SpecialUse, StoreError,
};

/// The longest mailbox name accepted, in bytes.
const MAX_NAME: usize = 512;

/// The widest time zone offset a date-time can carry (RFC 3501's `zone` is ±HHMM), in
/// minutes.
const MAX_ZONE: i16 = 99 * 60 + 59;

/// The system flags a message can carry; any other bit asked for is dropped.
const SYSTEM_FLAGS: u32 =
    Flags::SEEN | Flags::ANSWERED | Flags::FLAGGED | Flags::DELETED | Flags::DRAFT;

/// The columns [`mailbox_info`] reads, in its order.
pub(super) const MAILBOX_COLUMNS: &str =
    "id, account_id, name, uidvalidity, uidnext, special_use, modseq";

/// The counts of one mailbox, in one statement so that they come from one snapshot. The
/// unseen count is spelled exactly as the partial index `messages_unseen` is, so it uses it.
const COUNTS: &str = "SELECT (SELECT count(*) FROM messages WHERE mailbox_id = b.id),
        (SELECT count(*) FROM messages WHERE mailbox_id = b.id AND flags & 1 = 0),
        (SELECT count(*) FROM messages WHERE mailbox_id = b.id AND uid >= b.recent_uid),
        (SELECT count(*) FROM messages WHERE mailbox_id = b.id AND flags & 8 != 0),
        (SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = b.id AND flags & 8 != 0)
    FROM mailboxes b WHERE b.id = ?1";

/// The messages of a mailbox flagged \Deleted, spelled as the partial index
/// `messages_deleted` is, so only those rows are read.
const DELETED: &str =
    "SELECT id, uid FROM messages WHERE mailbox_id = ?1 AND flags & 8 != 0 ORDER BY uid";

pub(super) fn mailbox_info(row: &rusqlite::Row<'_>) -> rusqlite::Result<MailboxInfo> {
    let role: Option<String> = row.get(5)?;
    Ok(MailboxInfo {
        id: MailboxId(row.get(0)?),
        account: AccountId(row.get(1)?),
        name: row.get(2)?,
        uid_validity: row.get(3)?,
        uid_next: row.get(4)?,
        // The column holds the role's name; a role this build does not know is no role.
        special_use: role.and_then(|r| SpecialUse::ALL.into_iter().find(|u| u.name() == r)),
        modseq: row.get(6)?,
        read_only: false,
    })
}

/// Keywords as the `messages.keywords` column holds them: sorted, unique, space-separated.
pub(super) fn parse_keywords(stored: &str) -> BTreeSet<String> {
    stored.split_whitespace().map(String::from).collect()
}

fn join_keywords(keywords: &BTreeSet<String>) -> String {
    keywords
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks keywords from a caller and returns them as a set. Whitespace would break the
/// stored form, and a leading backslash marks a system flag, which lives in the bit set.
fn keyword_set(keywords: &[String]) -> Result<BTreeSet<String>> {
    for keyword in keywords {
        if keyword.is_empty()
            || keyword.starts_with('\\')
            || keyword.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(StoreError::Invalid(format!(
                "'{}' is not a keyword (keywords are non-empty, without spaces or control \
                 characters, and do not start with '\\')",
                keyword.escape_debug()
            )));
        }
    }
    Ok(keywords.iter().cloned().collect())
}

/// Checks a mailbox name as [`crate::Store::create_mailbox`] documents it.
fn check_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_NAME {
        "is longer than 512 bytes"
    } else if name.starts_with('/') || name.ends_with('/') {
        "starts or ends with the hierarchy delimiter '/'"
    } else if name.contains("//") {
        "has an empty level ('//')"
    } else if name.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(StoreError::Invalid(format!(
        "mailbox name '{}' {problem}",
        name.escape_debug()
    )))
}

/// A UIDVALIDITY above every one handed out before, and not below the clock: a mailbox
/// that is deleted and re-created, or renamed, within one second still gets a new value.
pub(super) fn next_uid_validity(conn: &Connection) -> Result<u32> {
    Ok(conn
        .prepare_cached(
            "UPDATE counters SET value = max(value + 1, ?1) WHERE name = 'uidvalidity'
             RETURNING value",
        )?
        .query_row([now()], |r| r.get(0))?)
}

/// Gives a new account its special-use mailboxes and subscribes it to them and to INBOX.
pub(super) fn create_defaults(
    conn: &Connection,
    account: AccountId,
    uid_validity: u32,
) -> Result<()> {
    let mut mailbox = conn.prepare_cached(
        "INSERT OR IGNORE INTO mailboxes (account_id, name, uidvalidity, uidnext, special_use)
         VALUES (?1, ?2, ?3, 1, ?2)",
    )?;
    let mut subscribe = conn
        .prepare_cached("INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?1, ?2)")?;
    subscribe.execute(params![account.0, "INBOX"])?;
    for role in SpecialUse::ALL {
        mailbox.execute(params![account.0, role.name(), uid_validity])?;
        subscribe.execute(params![account.0, role.name()])?;
    }
    Ok(())
}

pub(super) fn by_name(
    conn: &Connection,
    account: AccountId,
    name: &str,
) -> Result<Option<MailboxInfo>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ?1 AND name = ?2"
        ))?
        .query_row(params![account.0, name], mailbox_info)
        .optional()?)
}

fn named(conn: &Connection, account: AccountId, name: &str) -> Result<MailboxInfo> {
    by_name(conn, account, name)?.ok_or_else(|| StoreError::NotFound {
        what: format!("mailbox '{name}'"),
    })
}

fn gone(mailbox: MailboxId) -> StoreError {
    StoreError::NotFound {
        what: format!("mailbox with id {}", mailbox.0),
    }
}

/// The account a mailbox belongs to; `NotFound` once it was deleted.
fn account_of(conn: &Connection, mailbox: MailboxId) -> Result<AccountId> {
    conn.prepare_cached("SELECT account_id FROM mailboxes WHERE id = ?1")?
        .query_row([mailbox.0], |r| r.get(0))
        .optional()?
        .map(AccountId)
        .ok_or_else(|| gone(mailbox))
}

fn account_exists(conn: &Connection, account: AccountId) -> Result<()> {
    conn.prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
        .query_row([account.0], |_| Ok(()))
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: format!("account with id {}", account.0),
        })
}

/// Records that a mailbox's messages changed.
fn touch(conn: &Connection, mailbox: MailboxId) -> Result<()> {
    conn.prepare_cached("UPDATE mailboxes SET modseq = modseq + 1 WHERE id = ?1")?
        .execute([mailbox.0])?;
    Ok(())
}

/// UIDs from a caller, ascending and without repeats.
fn sorted(uids: &[u32]) -> Vec<u32> {
    let mut uids = uids.to_vec();
    uids.sort_unstable();
    uids.dedup();
    uids
}

impl SqliteStore {
    /// Tells the listener about committed changes. The listener is cloned out of its lock
    /// before it is called, so it runs holding nothing of ours: it may call back into the
    /// store, or even replace itself.
    pub(super) fn notify(&self, changed: &[(AccountId, MailboxId)]) {
        if changed.is_empty() {
            return;
        }
        let listener = self
            .listener
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(listener) = listener else { return };
        let mut told = Vec::with_capacity(changed.len());
        for &(account, mailbox) in changed {
            if !told.contains(&mailbox) {
                told.push(mailbox);
                listener.mailbox_changed(account, mailbox);
            }
        }
    }
}

pub(super) fn list(s: &SqliteStore, account: AccountId) -> Result<Vec<MailboxInfo>> {
    s.read(|conn| {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ?1 ORDER BY name"
        ))?;
        let rows = stmt
            .query_map([account.0], mailbox_info)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    })
}

pub(super) fn by_id(s: &SqliteStore, mailbox: MailboxId) -> Result<MailboxInfo> {
    s.read(|conn| {
        conn.prepare_cached(&format!(
            "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?1"
        ))?
        .query_row([mailbox.0], mailbox_info)
        .optional()?
        .ok_or_else(|| gone(mailbox))
    })
}

pub(super) fn size(s: &SqliteStore, mailbox: MailboxId) -> Result<u64> {
    s.read(|conn| {
        let size: Option<i64> = conn
            .prepare_cached(
                "SELECT (SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = b.id)
                 FROM mailboxes b WHERE b.id = ?1",
            )?
            .query_row([mailbox.0], |r| r.get(0))
            .optional()?;
        Ok(size.ok_or_else(|| gone(mailbox))? as u64)
    })
}

pub(super) fn counts(s: &SqliteStore, mailbox: MailboxId) -> Result<MailboxCounts> {
    s.read(|conn| {
        conn.prepare_cached(COUNTS)?
            .query_row([mailbox.0], |r| {
                Ok(MailboxCounts {
                    messages: r.get(0)?,
                    unseen: r.get(1)?,
                    recent: r.get(2)?,
                    deleted: r.get(3)?,
                    deleted_bytes: r.get(4)?,
                })
            })
            .optional()?
            .ok_or_else(|| gone(mailbox))
    })
}

/// Creates a mailbox, with a special-use role when given. The role is checked inside the
/// write, so two sessions cannot give one role to two mailboxes.
pub(super) fn create(
    s: &SqliteStore,
    account: AccountId,
    name: &str,
    role: Option<SpecialUse>,
) -> Result<MailboxInfo> {
    check_name(name)?;
    let name = name.to_string();
    s.write(move |ctx| {
        account_exists(ctx.conn, account)?;
        if by_name(ctx.conn, account, &name)?.is_some() {
            return Err(StoreError::AlreadyExists {
                what: format!("mailbox '{name}'"),
            });
        }
        if let Some(role) = role {
            let holder: Option<String> = ctx
                .conn
                .prepare_cached(
                    "SELECT name FROM mailboxes WHERE account_id = ?1 AND special_use = ?2",
                )?
                .query_row(params![account.0, role.name()], |r| r.get(0))
                .optional()?;
            if let Some(holder) = holder {
                return Err(StoreError::AlreadyExists {
                    what: format!("a {} mailbox ('{holder}')", role.attribute()),
                });
            }
        }
        let uid_validity = next_uid_validity(ctx.conn)?;
        Ok(ctx
            .conn
            .prepare_cached(&format!(
                "INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext, special_use)
                 VALUES (?1, ?2, ?3, 1, ?4) RETURNING {MAILBOX_COLUMNS}"
            ))?
            .query_row(
                params![account.0, name, uid_validity, role.map(SpecialUse::name)],
                mailbox_info,
            )?)
    })
}

pub(super) fn delete(s: &SqliteStore, account: AccountId, name: &str) -> Result<()> {
    if name == "INBOX" {
        return Err(StoreError::Invalid(
            "INBOX cannot be deleted; expunge its messages instead".into(),
        ));
    }
    let name = name.to_string();
    let mailbox = s.write(move |ctx| {
        let mailbox = named(ctx.conn, account, &name)?;
        let hashes: Vec<Vec<u8>> = ctx
            .conn
            .prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 RETURNING blob_hash")?
            .query_map([mailbox.id.0], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for hash in hashes {
            release_blob(ctx, &hash)?;
        }
        ctx.conn
            .execute("DELETE FROM mailboxes WHERE id = ?1", [mailbox.id.0])?;
        Ok(mailbox.id)
    })?;
    s.notify(&[(account, mailbox)]);
    Ok(())
}

pub(super) fn rename(s: &SqliteStore, account: AccountId, from: &str, to: &str) -> Result<()> {
    check_name(to)?;
    let (from, to) = (from.to_string(), to.to_string());
    let changed = s.write(move |ctx| {
        let source = named(ctx.conn, account, &from)?;
        if by_name(ctx.conn, account, &to)?.is_some() {
            return Err(StoreError::AlreadyExists {
                what: format!("mailbox '{to}'"),
            });
        }
        if from == "INBOX" {
            return rename_inbox(ctx, source, &to);
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(StoreError::Invalid(format!(
                "mailbox '{from}' cannot be renamed to '{to}', below itself"
            )));
        }
        // The mailbox and everything below it, with the names they will have.
        let below = format!("{from}/");
        let moving: Vec<(MailboxId, String)> = ctx
            .conn
            .prepare_cached("SELECT id, name FROM mailboxes WHERE account_id = ?1")?
            .query_map([account.0], |r| {
                Ok((MailboxId(r.get(0)?), r.get::<_, String>(1)?))
            })?
            .filter_map(|row| match row {
                Ok((id, name)) if name == from || name.starts_with(&below) => {
                    Some(Ok((id, format!("{to}{}", &name[from.len()..]))))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<rusqlite::Result<_>>()?;
        for (_, name) in &moving {
            check_name(name)?;
            if let Some(other) = by_name(ctx.conn, account, name)?
                && !moving.iter().any(|(id, _)| *id == other.id)
            {
                return Err(StoreError::AlreadyExists {
                    what: format!("mailbox '{name}'"),
                });
            }
        }
        // Two steps, so that no order of single renames can trip over the unique names:
        // first names that no mailbox can have (valid names hold no control character),
        // then the real ones. One new UIDVALIDITY serves them all: it is above every value
        // handed out before, so each differs from what its mailbox had.
        let uid_validity = next_uid_validity(ctx.conn)?;
        let mut park = ctx
            .conn
            .prepare_cached("UPDATE mailboxes SET name = char(1) || id WHERE id = ?1")?;
        for (id, _) in &moving {
            park.execute([id.0])?;
        }
        let mut place = ctx.conn.prepare_cached(
            "UPDATE mailboxes SET name = ?2, uidvalidity = ?3, modseq = modseq + 1 WHERE id = ?1",
        )?;
        for (id, name) in &moving {
            place.execute(params![id.0, name, uid_validity])?;
        }
        Ok(moving.into_iter().map(|(id, _)| (account, id)).collect())
    })?;
    s.notify(&changed);
    Ok(())
}

/// RFC 3501's RENAME of INBOX: a new mailbox takes INBOX's messages, INBOX stays, empty,
/// with its UIDVALIDITY and UIDNEXT, and mailboxes below INBOX stay where they are.
fn rename_inbox(
    ctx: &mut WriteCtx<'_>,
    inbox: MailboxInfo,
    to: &str,
) -> Result<Vec<(AccountId, MailboxId)>> {
    let uid_validity = next_uid_validity(ctx.conn)?;
    let target: i64 = ctx.conn.query_row(
        "INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext) VALUES (?1, ?2, ?3, 1)
         RETURNING id",
        params![inbox.account.0, to, uid_validity],
        |r| r.get(0),
    )?;
    let uids: Vec<u32> = ctx
        .conn
        .prepare_cached("SELECT uid FROM messages WHERE mailbox_id = ?1 ORDER BY uid")?
        .query_map([inbox.id.0], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    transfer(ctx, inbox.id, &uids, MailboxId(target), true)?;
    Ok(vec![
        (inbox.account, inbox.id),
        (inbox.account, MailboxId(target)),
    ])
}

pub(super) fn set_subscribed(
    s: &SqliteStore,
    account: AccountId,
    name: &str,
    on: bool,
) -> Result<()> {
    check_name(name)?;
    let name = name.to_string();
    s.write(move |ctx| {
        account_exists(ctx.conn, account)?;
        // Both directions are idempotent: the caller wants a state, not a transition.
        let sql = if on {
            "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?1, ?2)"
        } else {
            "DELETE FROM subscriptions WHERE account_id = ?1 AND name = ?2"
        };
        ctx.conn
            .prepare_cached(sql)?
            .execute(params![account.0, name])?;
        Ok(())
    })
}

pub(super) fn subscriptions(s: &SqliteStore, account: AccountId) -> Result<Vec<String>> {
    s.read(|conn| {
        let mut stmt = conn
            .prepare_cached("SELECT name FROM subscriptions WHERE account_id = ?1 ORDER BY name")?;
        let names = stmt
            .query_map([account.0], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(names)
    })
}

pub(super) fn append(
    s: &SqliteStore,
    mailbox: MailboxId,
    message: &[u8],
    flags: Flags,
    keywords: &[String],
    date: Option<i64>,
    zone: i16,
) -> Result<Delivered> {
    if !(-MAX_ZONE..=MAX_ZONE).contains(&zone) {
        return Err(StoreError::Invalid(format!(
            "time zone offset of {zone} minutes is beyond ±99:59"
        )));
    }
    let keywords = join_keywords(&keyword_set(keywords)?);
    let flags = flags.0 & SYSTEM_FLAGS;
    let date = date.unwrap_or_else(now);
    // Asking first spares the disk a blob file for a mailbox that is gone; the writer
    // asks again, since the mailbox may go in between.
    by_id(s, mailbox)?;
    let delivered = s.write_message(message, move |ctx, blob, size| {
        reference_blob(ctx, blob, size, 1)?;
        let delivered = place(ctx, mailbox, blob, size, flags, &keywords, (date, zone))?;
        super::quota::enforce(ctx, [delivered.account])?;
        Ok(delivered)
    })?;
    s.notify(&[(delivered.account, mailbox)]);
    Ok(delivered)
}

/// Gives a message whose blob the caller has referenced the mailbox's next UID.
fn place(
    ctx: &mut WriteCtx<'_>,
    mailbox: MailboxId,
    blob: crate::BlobId,
    size: u64,
    flags: u32,
    keywords: &str,
    (date, zone): (i64, i16),
) -> Result<Delivered> {
    let (account, uid, modseq): (i64, u32, i64) = ctx
        .conn
        .prepare_cached(
            "UPDATE mailboxes SET uidnext = uidnext + 1, modseq = modseq + 1 WHERE id = ?1
             RETURNING account_id, uidnext - 1, modseq",
        )?
        .query_row([mailbox.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .ok_or_else(|| gone(mailbox))?;
    ctx.conn
        .prepare_cached(
            "INSERT INTO messages (mailbox_id, uid, internal_date, internal_zone, size, flags,
                 keywords, blob_hash, modseq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            mailbox.0,
            uid,
            date,
            zone,
            size,
            flags,
            keywords,
            &blob.0[..],
            modseq
        ])?;
    Ok(Delivered {
        account: AccountId(account),
        mailbox,
        uid,
    })
}

/// [`SqliteStore::append_batch`]: the bodies written unflushed, one `syncfs`, one transaction.
pub(super) fn append_batch(
    s: &SqliteStore,
    mailbox: MailboxId,
    messages: Vec<crate::NewMessage>,
) -> Result<Vec<Delivered>> {
    by_id(s, mailbox)?;
    let mut rows = Vec::with_capacity(messages.len());
    for message in messages {
        let keywords = join_keywords(&keyword_set(&message.keywords)?);
        let blob = crate::BlobId::of(&message.bytes);
        s.blobs.put_unsynced(&blob, &message.bytes)?;
        rows.push((message, keywords, blob));
    }
    s.blobs.sync_all()?;
    let delivered = s.write(move |ctx| {
        let mut delivered = Vec::with_capacity(rows.len());
        for (message, keywords, blob) in &rows {
            let size = message.bytes.len() as u64;
            match reference_blob(ctx, *blob, size, 1) {
                // Its last other reference went, and its file with it, after we wrote it:
                // write it again, durably, here where no file can be deleted meanwhile.
                Err(StoreError::BlobVanished(_)) => {
                    ctx.blobs.put_with_id(blob, &message.bytes)?;
                    reference_blob(ctx, *blob, size, 1)?;
                }
                result => result?,
            }
            let date = message.internal_date.unwrap_or_else(now);
            let flags = message.flags.0 & SYSTEM_FLAGS;
            delivered.push(place(
                ctx,
                mailbox,
                *blob,
                size,
                flags,
                keywords,
                (date, 0),
            )?);
        }
        super::quota::enforce(ctx, delivered.first().map(|d| d.account))?;
        Ok(delivered)
    })?;
    if let Some(first) = delivered.first() {
        s.notify(&[(first.account, mailbox)]);
    }
    Ok(delivered)
}

pub(super) fn update_flags(
    s: &SqliteStore,
    mailbox: MailboxId,
    uids: &[u32],
    op: FlagOp,
    flags: Flags,
    keywords: &[String],
    unchanged_since: Option<u64>,
) -> Result<FlagUpdate> {
    let keywords = keyword_set(keywords)?;
    let flags = flags.0 & SYSTEM_FLAGS;
    let uids = sorted(uids);
    let (account, changed, update) = s.write(move |ctx| {
        let account = account_of(ctx.conn, mailbox)?;
        // Every message this change touches takes the mod-sequence the mailbox gets by it.
        let next: u64 = ctx
            .conn
            .prepare_cached("SELECT modseq + 1 FROM mailboxes WHERE id = ?1")?
            .query_row([mailbox.0], |r| r.get(0))?;
        let mut select = ctx.conn.prepare_cached(
            "SELECT id, flags, keywords, modseq FROM messages WHERE mailbox_id = ?1 AND uid = ?2",
        )?;
        let mut update = ctx.conn.prepare_cached(
            "UPDATE messages SET flags = ?2, keywords = ?3, modseq = ?4 WHERE id = ?1",
        )?;
        let mut changed = false;
        let mut result = FlagUpdate {
            states: Vec::with_capacity(uids.len()),
            modified: Vec::new(),
        };
        for uid in uids {
            let Some((id, old_flags, old_keywords, modseq)) = select
                .query_row(params![mailbox.0, uid], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, u64>(3)?,
                    ))
                })
                .optional()?
            else {
                continue;
            };
            // RFC 7162 §3.1.3: a message changed after the client last looked is left
            // alone and reported, whether or not this change would alter it.
            if unchanged_since.is_some_and(|since| modseq > since) {
                result.modified.push(uid);
                continue;
            }
            let old_keywords = parse_keywords(&old_keywords);
            let (new_flags, new_keywords) = match op {
                FlagOp::Replace => (flags, keywords.clone()),
                FlagOp::Add => (
                    old_flags | flags,
                    old_keywords.union(&keywords).cloned().collect(),
                ),
                FlagOp::Remove => (
                    old_flags & !flags,
                    old_keywords.difference(&keywords).cloned().collect(),
                ),
            };
            let modseq = if new_flags != old_flags || new_keywords != old_keywords {
                update.execute(params![id, new_flags, join_keywords(&new_keywords), next])?;
                changed = true;
                next
            } else {
                modseq
            };
            result.states.push(FlagState {
                uid,
                flags: Flags(new_flags),
                keywords: new_keywords.into_iter().collect(),
                modseq,
            });
        }
        if changed {
            touch(ctx.conn, mailbox)?;
        }
        Ok((account, changed, result))
    })?;
    if changed {
        s.notify(&[(account, mailbox)]);
    }
    Ok(update)
}

/// [`crate::Mailboxes::expunged_since`]: the remembered ranges expunged after `modseq`,
/// merged where they touch, or `None` when some of them may have been forgotten.
pub(super) fn expunged_since(
    s: &SqliteStore,
    mailbox: MailboxId,
    modseq: u64,
) -> Result<Option<Vec<(u32, u32)>>> {
    s.read(|conn| {
        let floor: u64 = conn
            .prepare_cached("SELECT expunge_floor FROM mailboxes WHERE id = ?1")?
            .query_row([mailbox.0], |r| r.get(0))
            .optional()?
            .ok_or_else(|| gone(mailbox))?;
        if modseq < floor {
            return Ok(None);
        }
        let mut stmt = conn.prepare_cached(
            "SELECT first_uid, last_uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2
             ORDER BY first_uid",
        )?;
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for row in stmt.query_map(params![mailbox.0, modseq], |r| Ok((r.get(0)?, r.get(1)?)))? {
            let (first, last): (u32, u32) = row?;
            match ranges.last_mut() {
                Some(prev) if prev.1.checked_add(1) == Some(first) => prev.1 = last,
                _ => ranges.push((first, last)),
            }
        }
        Ok(Some(ranges))
    })
}

pub(super) fn expunge_deleted(
    s: &SqliteStore,
    mailbox: MailboxId,
    uids: Option<&[u32]>,
) -> Result<Vec<u32>> {
    let only = uids.map(sorted);
    let (account, removed) = s.write(move |ctx| {
        let account = account_of(ctx.conn, mailbox)?;
        let flagged: Vec<(i64, u32)> = ctx
            .conn
            .prepare_cached(DELETED)?
            .query_map([mailbox.0], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut delete = ctx
            .conn
            .prepare_cached("DELETE FROM messages WHERE id = ?1 RETURNING blob_hash")?;
        let mut removed = Vec::new();
        let mut hashes = Vec::new();
        for (id, uid) in flagged {
            if only
                .as_ref()
                .is_some_and(|only| only.binary_search(&uid).is_err())
            {
                continue;
            }
            hashes.push(delete.query_row([id], |r| r.get::<_, Vec<u8>>(0))?);
            removed.push(uid);
        }
        drop(delete);
        for hash in hashes {
            release_blob(ctx, &hash)?;
        }
        if !removed.is_empty() {
            touch(ctx.conn, mailbox)?;
        }
        Ok((account, removed))
    })?;
    if !removed.is_empty() {
        s.notify(&[(account, mailbox)]);
    }
    Ok(removed)
}

pub(super) fn copy(
    s: &SqliteStore,
    from: MailboxId,
    uids: &[u32],
    to: MailboxId,
    remove: bool,
) -> Result<Copied> {
    let uids = sorted(uids);
    let (copied, changed) = s.write(move |ctx| {
        let source = account_of(ctx.conn, from)?;
        let target = account_of(ctx.conn, to)?;
        let copied = transfer(ctx, from, &uids, to, remove)?;
        // A move within an account adds nothing, so it is allowed even over the limit.
        if !remove || source != target {
            super::quota::enforce(ctx, [target])?;
        }
        let mut changed = Vec::new();
        if !copied.uids.is_empty() {
            changed.push((target, to));
            if remove {
                changed.push((source, from));
            }
        }
        Ok((copied, changed))
    })?;
    s.notify(&changed);
    Ok(copied)
}

/// Copies the messages with these UIDs (ascending) from one mailbox to another under new
/// UIDs, or moves them when `remove`. A copy adds a reference to each blob; a move carries
/// its reference along, so the counts stay as they are.
fn transfer(
    ctx: &mut WriteCtx<'_>,
    from: MailboxId,
    uids: &[u32],
    to: MailboxId,
    remove: bool,
) -> Result<Copied> {
    let uid_validity: u32 = ctx
        .conn
        .prepare_cached("SELECT uidvalidity FROM mailboxes WHERE id = ?1")?
        .query_row([to.0], |r| r.get(0))
        .optional()?
        .ok_or_else(|| gone(to))?;
    struct Row {
        id: i64,
        uid: u32,
        date: i64,
        zone: i16,
        size: i64,
        flags: u32,
        keywords: String,
        hash: Vec<u8>,
    }
    let mut select = ctx.conn.prepare_cached(
        "SELECT id, internal_date, size, flags, keywords, blob_hash, internal_zone FROM messages
         WHERE mailbox_id = ?1 AND uid = ?2",
    )?;
    let mut rows = Vec::with_capacity(uids.len());
    for &uid in uids {
        let row = select
            .query_row(params![from.0, uid], |r| {
                Ok(Row {
                    id: r.get(0)?,
                    uid,
                    date: r.get(1)?,
                    size: r.get(2)?,
                    flags: r.get(3)?,
                    keywords: r.get(4)?,
                    hash: r.get(5)?,
                    zone: r.get(6)?,
                })
            })
            .optional()?;
        rows.extend(row);
    }
    let mut copied = Copied {
        uid_validity,
        uids: Vec::with_capacity(rows.len()),
    };
    if rows.is_empty() {
        return Ok(copied);
    }
    let count = rows.len() as i64;
    let (first, modseq): (u32, i64) = ctx
        .conn
        .prepare_cached(
            "UPDATE mailboxes SET uidnext = uidnext + ?2, modseq = modseq + 1 WHERE id = ?1
             RETURNING uidnext - ?2, modseq",
        )?
        .query_row(params![to.0, count], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut insert = ctx.conn.prepare_cached(
        "INSERT INTO messages (mailbox_id, uid, internal_date, internal_zone, size, flags,
             keywords, blob_hash, modseq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (row, uid) in rows.iter().zip(first..) {
        insert.execute(params![
            to.0,
            uid,
            row.date,
            row.zone,
            row.size,
            row.flags,
            row.keywords,
            row.hash,
            modseq
        ])?;
        copied.uids.push((row.uid, uid));
    }
    if remove {
        let mut delete = ctx
            .conn
            .prepare_cached("DELETE FROM messages WHERE id = ?1")?;
        for row in &rows {
            delete.execute([row.id])?;
        }
        touch(ctx.conn, from)?;
    } else {
        let mut uses: HashMap<&[u8], i64> = HashMap::new();
        for row in &rows {
            *uses.entry(&row.hash).or_default() += 1;
        }
        let mut share = ctx
            .conn
            .prepare_cached("UPDATE blobs SET refcount = refcount + ?2 WHERE hash = ?1")?;
        for (hash, n) in uses {
            share.execute(params![hash, n])?;
        }
    }
    Ok(copied)
}

pub(super) fn claim_recent(s: &SqliteStore, mailbox: MailboxId) -> Result<u32> {
    s.write(move |ctx| {
        let (recent, next): (u32, u32) = ctx
            .conn
            .prepare_cached("SELECT recent_uid, uidnext FROM mailboxes WHERE id = ?1")?
            .query_row([mailbox.0], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .ok_or_else(|| gone(mailbox))?;
        if recent != next {
            ctx.conn
                .prepare_cached("UPDATE mailboxes SET recent_uid = ?2 WHERE id = ?1")?
                .execute(params![mailbox.0, next])?;
        }
        Ok(recent)
    })
}

pub(super) fn set_change_listener(s: &SqliteStore, listener: Arc<dyn ChangeListener>) {
    *s.listener.write().unwrap_or_else(|p| p.into_inner()) = Some(listener);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query plan of `sql` on a freshly migrated database, one step a line.
    fn plan(sql: &str) -> String {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let steps: Vec<String> = stmt
            .query_map([1], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        steps.join("\n")
    }

    #[test]
    fn counts_and_expunge_read_only_the_index_rows_they_need() {
        let counts = plan(COUNTS);
        assert!(
            counts.contains("COVERING INDEX messages_unseen"),
            "{counts}"
        );
        assert!(!counts.contains("SCAN"), "{counts}");
        let deleted = plan(DELETED);
        assert!(
            deleted.contains("COVERING INDEX messages_deleted"),
            "{deleted}"
        );
        assert!(
            !deleted.contains("TEMP B-TREE"),
            "sorted by the index: {deleted}"
        );
    }

    #[test]
    fn mailbox_names_follow_the_documented_rules() {
        for good in [
            "INBOX",
            "a",
            "a/b/c",
            "Sent Items",
            "Entwürfe",
            &"x".repeat(512),
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "/", "/a", "a/", "a//b", "a\u{1}", &"x".repeat(513)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
