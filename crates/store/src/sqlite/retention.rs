//! Retention: mail older than a mailbox's configured age leaves for good (Trash and Junk
//! above all), so that what users throw away does not grow the store for ever.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, release_blob};
use crate::{AccountId, MailboxId, Result};

/// Messages removed per transaction, so deliveries wait milliseconds behind one.
const BATCH: usize = 2000;

/// What one retention rule removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub messages: u64,
    pub bytes: u64,
}

impl SqliteStore {
    /// Removes from the mailbox called `mailbox` in every account the messages whose internal
    /// date is before `before` (Unix seconds). With `dry_run` it only counts them.
    pub fn expire(&self, mailbox: &str, before: i64, dry_run: bool) -> Result<Expired> {
        let doomed: Vec<(i64, i64, u64)> = self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT m.id, m.mailbox_id, m.size FROM messages m
                 JOIN mailboxes b ON b.id = m.mailbox_id
                 WHERE m.internal_date < ?2 AND b.name = ?1",
            )?;
            let rows = stmt
                .query_map(params![mailbox, before], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })?;
        if dry_run {
            return Ok(Expired {
                messages: doomed.len() as u64,
                bytes: doomed.iter().map(|d| d.2).sum(),
            });
        }
        let mut expired = Expired::default();
        for chunk in doomed.chunks(BATCH) {
            let chunk: Vec<(i64, i64)> = chunk.iter().map(|d| (d.0, d.1)).collect();
            let (removed, bytes, changed) = self.write(move |ctx| {
                let (mut removed, mut bytes) = (0u64, 0u64);
                let mut mailboxes = HashSet::new();
                for (id, mailbox) in chunk {
                    // A message moved or expunged since it was counted is no longer ours.
                    let gone: Option<(Vec<u8>, u64)> = ctx
                        .conn
                        .prepare_cached(
                            "DELETE FROM messages WHERE id = ?1 AND mailbox_id = ?2
                             RETURNING blob_hash, size",
                        )?
                        .query_row(params![id, mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    if let Some((hash, size)) = gone {
                        release_blob(ctx, &hash)?;
                        removed += 1;
                        bytes += size;
                        mailboxes.insert(mailbox);
                    }
                }
                let mut changed = Vec::new();
                for mailbox in mailboxes {
                    let account: i64 = ctx.conn.query_row(
                        "UPDATE mailboxes SET modseq = modseq + 1 WHERE id = ?1 RETURNING account_id",
                        [mailbox],
                        |r| r.get(0),
                    )?;
                    changed.push((AccountId(account), MailboxId(mailbox)));
                }
                Ok((removed, bytes, changed))
            })?;
            self.notify(&changed);
            expired.messages += removed;
            expired.bytes += bytes;
        }
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::{CheckOptions, Flags};

    #[test]
    fn only_old_mail_of_the_named_mailbox_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.add_domain("example.com").unwrap();
        let mut trashes = Vec::new();
        for user in ["a", "b"] {
            let account = store
                .add_account(&format!("{user}@example.com"), "pw")
                .unwrap();
            let trash = store.mailbox(account, "Trash").unwrap().id;
            let inbox = store.mailbox(account, "INBOX").unwrap().id;
            for (date, body) in [(100, "old"), (5000, "young")] {
                let body = format!("Subject: {body}\r\n\r\n{user}\r\n");
                store
                    .append(trash, body.as_bytes(), Flags::default(), &[], Some(date))
                    .unwrap();
                store
                    .append(inbox, body.as_bytes(), Flags::default(), &[], Some(date))
                    .unwrap();
            }
            trashes.push(trash);
        }
        let counted = store.expire("Trash", 1000, true).unwrap();
        assert_eq!(counted.messages, 2);
        assert_eq!(
            store.messages(trashes[0]).unwrap().len(),
            2,
            "a dry run removes nothing"
        );
        let expired = store.expire("Trash", 1000, false).unwrap();
        assert_eq!(expired, counted);
        for trash in trashes {
            let left = store.messages(trash).unwrap();
            assert_eq!(
                left.iter().map(|m| m.internal_date).collect::<Vec<_>>(),
                vec![5000]
            );
        }
        assert_eq!(
            store.totals().unwrap().messages,
            6,
            "INBOX keeps its old mail"
        );
        assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
    }
}
