//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! Migrations only ever get appended: the Nth entry turns a version N-1 database into
//! version N. A database newer than the list is refused rather than guessed at.

use rusqlite::Connection;

use crate::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    // Version 1: the foundation.
    "CREATE TABLE domains (
         id      INTEGER PRIMARY KEY,
         name    TEXT NOT NULL UNIQUE,
         created INTEGER NOT NULL
     );
     CREATE TABLE accounts (
         id            INTEGER PRIMARY KEY,
         address       TEXT NOT NULL UNIQUE,
         domain_id     INTEGER NOT NULL REFERENCES domains(id),
         password_hash TEXT NOT NULL,
         created       INTEGER NOT NULL
     );
     CREATE TABLE aliases (
         id        INTEGER PRIMARY KEY,
         address   TEXT NOT NULL UNIQUE,
         domain_id INTEGER NOT NULL REFERENCES domains(id)
     );
     CREATE TABLE alias_targets (
         alias_id INTEGER NOT NULL REFERENCES aliases(id) ON DELETE CASCADE,
         target   TEXT NOT NULL,
         PRIMARY KEY (alias_id, target)
     ) WITHOUT ROWID;
     CREATE TABLE mailboxes (
         id          INTEGER PRIMARY KEY,
         account_id  INTEGER NOT NULL REFERENCES accounts(id),
         name        TEXT NOT NULL,
         uidvalidity INTEGER NOT NULL,
         uidnext     INTEGER NOT NULL,
         UNIQUE (account_id, name)
     );
     CREATE TABLE blobs (
         hash     BLOB PRIMARY KEY,
         size     INTEGER NOT NULL,
         refcount INTEGER NOT NULL CHECK (refcount > 0)
     ) WITHOUT ROWID;
     CREATE TABLE messages (
         id            INTEGER PRIMARY KEY,
         mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id),
         uid           INTEGER NOT NULL,
         internal_date INTEGER NOT NULL,
         size          INTEGER NOT NULL,
         flags         INTEGER NOT NULL DEFAULT 0,
         blob_hash     BLOB NOT NULL REFERENCES blobs(hash),
         UNIQUE (mailbox_id, uid)
     );
     CREATE INDEX messages_blob ON messages(blob_hash);",
    // Version 2: IMAP. Mailboxes beyond INBOX with their roles, keywords, \Recent, the
    // change counter (modseq) and subscriptions.
    //
    // `recent_uid` starts at 1: no IMAP session has ever selected a mailbox that predates
    // this version, so all of its mail is new to IMAP. `counters.uidvalidity` is the last
    // UIDVALIDITY handed out; a new one is always above it, so a mailbox deleted and
    // re-created (or renamed) within one second still gets a different value.
    //
    // The two partial indexes hold only the rows they name, so STATUS UNSEEN and EXPUNGE
    // cost what they find rather than the size of the mailbox; `flags` in them makes them
    // covering, so those rows are counted without reading the table.
    "ALTER TABLE mailboxes ADD COLUMN special_use TEXT NULL;
     ALTER TABLE mailboxes ADD COLUMN modseq INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE messages ADD COLUMN keywords TEXT NOT NULL DEFAULT '';
     CREATE INDEX messages_unseen ON messages(mailbox_id, flags) WHERE flags & 1 = 0;
     CREATE INDEX messages_deleted ON messages(mailbox_id, uid, flags) WHERE flags & 8 != 0;
     CREATE TABLE subscriptions (
         account_id INTEGER NOT NULL REFERENCES accounts(id),
         name       TEXT NOT NULL,
         PRIMARY KEY (account_id, name)
     ) WITHOUT ROWID;
     CREATE TABLE counters (
         name  TEXT PRIMARY KEY,
         value INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO counters (name, value) VALUES ('uidvalidity',
         max(unixepoch(), coalesce((SELECT max(uidvalidity) FROM mailboxes), 0) + 1));
     WITH roles (name) AS (VALUES ('Sent'), ('Drafts'), ('Trash'), ('Junk'), ('Archive'))
     INSERT OR IGNORE INTO mailboxes (account_id, name, uidvalidity, uidnext, special_use)
         SELECT a.id, r.name, (SELECT value FROM counters WHERE name = 'uidvalidity'), 1, r.name
         FROM accounts a CROSS JOIN roles r;
     WITH roles (name) AS (VALUES ('INBOX'), ('Sent'), ('Drafts'), ('Trash'), ('Junk'), ('Archive'))
     INSERT INTO subscriptions (account_id, name)
         SELECT a.id, r.name FROM accounts a CROSS JOIN roles r;",
    // Version 3: usage statistics, bounded by design (`stats.rs` prunes them at every
    // flush): per account, ten-minute samples for the last hour and daily totals for a
    // configured number of days; store-wide, one row of sizes per day for the forecast.
    // No foreign key to accounts: removing an account must not wait on its history, which
    // ages out with the rest.
    "CREATE TABLE usage_samples (
         account_id   INTEGER NOT NULL,
         slot         INTEGER NOT NULL,
         messages_in  INTEGER NOT NULL,
         bytes_in     INTEGER NOT NULL,
         messages_out INTEGER NOT NULL,
         bytes_out    INTEGER NOT NULL,
         write_bytes  INTEGER NOT NULL,
         commands     INTEGER NOT NULL,
         busy_micros  INTEGER NOT NULL,
         PRIMARY KEY (account_id, slot)
     ) WITHOUT ROWID;
     CREATE TABLE usage_daily (
         account_id   INTEGER NOT NULL,
         day          INTEGER NOT NULL,
         messages_in  INTEGER NOT NULL,
         bytes_in     INTEGER NOT NULL,
         messages_out INTEGER NOT NULL,
         bytes_out    INTEGER NOT NULL,
         write_bytes  INTEGER NOT NULL,
         commands     INTEGER NOT NULL,
         busy_micros  INTEGER NOT NULL,
         PRIMARY KEY (account_id, day)
     ) WITHOUT ROWID;
     CREATE TABLE growth_daily (
         day            INTEGER PRIMARY KEY,
         database_bytes INTEGER NOT NULL,
         blob_bytes     INTEGER NOT NULL,
         messages       INTEGER NOT NULL
     );",
    // Version 4: archives and retention. `archive_moves` is the live store's half of moving
    // mail into an archive (`archive.rs`): each row is written in the transaction that
    // deletes the message, so after a crash the archive knows which of its messages the
    // live store really gave up, and with which flags. Rows go once the archive is complete.
    // The date index serves archiving and retention, which both ask for mail older than a day.
    "CREATE TABLE archive_moves (
         archive_id INTEGER NOT NULL,
         message_id INTEGER NOT NULL,
         flags      INTEGER NOT NULL,
         keywords   TEXT NOT NULL,
         PRIMARY KEY (archive_id, message_id)
     ) WITHOUT ROWID;
     CREATE INDEX messages_date ON messages(internal_date);",
    // Version 5: the outbound queue (`queue.rs`). A queued message's body lives inline in
    // its row, not in the blob store: one transaction makes envelope and body durable
    // together, the message leaves the queue with its row (no reference to drop, no file
    // to delete after the commit), backups copy it with the database, the checker and the
    // recovery count blob references without a special case, and the pages it frees go
    // back by the incremental vacuum the optimisation runs. `body` is the last column so
    // that scans which read only the envelope never touch its overflow pages.
    //
    // A message keeps its delivered and failed recipients until none is left waiting, so
    // `tegami queue show` tells the whole story; then the message goes with all of them.
    // Removing the account that submitted a message leaves the message queued.
    "CREATE TABLE queue_messages (
         id         INTEGER PRIMARY KEY,
         sender     TEXT NOT NULL,
         account_id INTEGER NULL REFERENCES accounts(id) ON DELETE SET NULL,
         size       INTEGER NOT NULL,
         created    INTEGER NOT NULL,
         body       BLOB NOT NULL
     );
     CREATE INDEX queue_messages_account ON queue_messages(account_id)
         WHERE account_id IS NOT NULL;
     CREATE TABLE queue_recipients (
         id             INTEGER PRIMARY KEY,
         message_id     INTEGER NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
         address        TEXT NOT NULL,
         domain         TEXT NOT NULL,
         state          TEXT NOT NULL DEFAULT 'queued'
                            CHECK (state IN ('queued', 'delivered', 'failed')),
         attempts       INTEGER NOT NULL DEFAULT 0,
         next_attempt   INTEGER NOT NULL,
         last_reason    TEXT NULL,
         last_error     TEXT NULL,
         delay_notified INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX queue_recipients_due ON queue_recipients(state, next_attempt);
     CREATE INDEX queue_recipients_message ON queue_recipients(message_id);",
    // Version 6: newsletters and step mail (`lists.rs`, `history.rs`). Subscriber ids are
    // the members of the history bitmaps, so they are global, never reused (AUTOINCREMENT)
    // and must stay below 2^32. An address is unique per list whatever its case.
    //
    // A sequence's `join_existing` decides what a subscriber who started before the
    // sequence was `created` gets: nothing (0), or the sequence counted from its creation
    // (1). One column instead of a members table: joining is a pure function of the
    // subscriber's start, so there is nothing to write per subscriber and nothing to keep
    // in step with imports and confirmations.
    //
    // The history is bounded by design: `history_sets` holds one roaring bitmap of
    // subscriber ids per (campaign or step, outcome), a few KB for 20,000 subscribers;
    // `history_daily` a handful of rows a day; `history_events` (click URLs, bounce texts,
    // the action log) is pruned by age in small batches, oldest first through its `at`
    // index. No row is written per mail sent.
    "CREATE TABLE nl_lists (
         id            INTEGER PRIMARY KEY,
         name          TEXT NOT NULL UNIQUE,
         from_address  TEXT NOT NULL,
         from_name     TEXT NOT NULL,
         double_opt_in INTEGER NOT NULL,
         created       INTEGER NOT NULL
     );
     CREATE TABLE nl_subscribers (
         id           INTEGER PRIMARY KEY AUTOINCREMENT,
         list_id      INTEGER NOT NULL REFERENCES nl_lists(id) ON DELETE CASCADE,
         email        TEXT NOT NULL,
         name         TEXT NOT NULL,
         attributes   TEXT NOT NULL,
         status       TEXT NOT NULL
                          CHECK (status IN ('unconfirmed', 'active', 'unsubscribed', 'bounced')),
         created      INTEGER NOT NULL,
         confirmed    INTEGER NULL,
         hard_bounces INTEGER NOT NULL DEFAULT 0,
         soft_bounces INTEGER NOT NULL DEFAULT 0
     );
     CREATE UNIQUE INDEX nl_subscribers_email ON nl_subscribers(list_id, email COLLATE NOCASE);
     CREATE TABLE nl_campaigns (
         id              INTEGER PRIMARY KEY,
         list_id         INTEGER NOT NULL REFERENCES nl_lists(id) ON DELETE CASCADE,
         subject         TEXT NOT NULL,
         text            TEXT NOT NULL,
         html            TEXT NULL,
         send_at         INTEGER NOT NULL,
         state           TEXT NOT NULL,
         rate_per_second INTEGER NOT NULL,
         rate_per_domain INTEGER NOT NULL,
         created         INTEGER NOT NULL
     );
     CREATE INDEX nl_campaigns_list ON nl_campaigns(list_id);
     CREATE TABLE nl_sequences (
         id            INTEGER PRIMARY KEY,
         list_id       INTEGER NOT NULL REFERENCES nl_lists(id) ON DELETE CASCADE,
         name          TEXT NOT NULL,
         time_zone     TEXT NOT NULL,
         join_existing INTEGER NOT NULL,
         created       INTEGER NOT NULL,
         existing_upto INTEGER NOT NULL DEFAULT 0,
         UNIQUE (list_id, name)
     );
     CREATE TABLE nl_steps (
         id          INTEGER PRIMARY KEY,
         sequence_id INTEGER NOT NULL REFERENCES nl_sequences(id) ON DELETE CASCADE,
         position    INTEGER NOT NULL,
         days_after  INTEGER NOT NULL,
         send_minute INTEGER NOT NULL CHECK (send_minute BETWEEN 0 AND 1439),
         subject     TEXT NOT NULL,
         text        TEXT NOT NULL,
         html        TEXT NULL,
         UNIQUE (sequence_id, position)
     );
     CREATE TABLE history_sets (
         kind    TEXT NOT NULL,
         ref     INTEGER NOT NULL,
         outcome TEXT NOT NULL,
         bitmap  BLOB NOT NULL,
         PRIMARY KEY (kind, ref, outcome)
     );
     CREATE TABLE history_daily (
         day     INTEGER NOT NULL,
         kind    TEXT NOT NULL,
         ref     INTEGER NOT NULL,
         outcome TEXT NOT NULL,
         count   INTEGER NOT NULL,
         PRIMARY KEY (day, kind, ref, outcome)
     ) WITHOUT ROWID;
     CREATE TABLE history_events (
         id         INTEGER PRIMARY KEY,
         at         INTEGER NOT NULL,
         kind       TEXT NULL,
         ref        INTEGER NULL,
         subscriber INTEGER NULL,
         event      TEXT NOT NULL,
         detail     TEXT NULL
     );
     CREATE INDEX history_events_at ON history_events(at);
     CREATE INDEX history_events_ref ON history_events(kind, ref, at);
     CREATE TABLE history_links (
         kind     TEXT NOT NULL,
         ref      INTEGER NOT NULL,
         position INTEGER NOT NULL,
         url      TEXT NOT NULL,
         PRIMARY KEY (kind, ref, position)
     ) WITHOUT ROWID;",
    // Version 7: who administers the server (the web console's operator screens), and an
    // administrator's TOTP secret (RFC 6238, base32) when they chose a second factor.
    "ALTER TABLE accounts ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE accounts ADD COLUMN totp_secret TEXT NULL;",
    // Version 8: CONDSTORE and QRESYNC (RFC 7162), and APPEND's time zone.
    //
    // Every message carries the mod-sequence of its last change, and every expunge is
    // remembered as a UID range with the mod-sequence it happened at, so a client that
    // comes back with a mod-sequence learns what changed and what vanished without
    // fetching every flag. Triggers keep both, so no writer (delivery, POP3, retention,
    // archiving, IMAP) can forget to. The convention every writer already follows: a
    // message is inserted after its mailbox's `modseq` was bumped (it takes that value),
    // and flags change or messages go before the bump (they take the value to come).
    // A writer that sets `messages.modseq` itself is left alone.
    //
    // `expunged` is bounded per mailbox: ranges go after 90 days, and beyond 1,000 ranges
    // the one changed longest ago goes. `mailboxes.expunge_floor` is the highest
    // mod-sequence forgotten, below which a client must be told by comparing UIDs instead.
    // Adjacent expunges (no message left between them) extend one range.
    "ALTER TABLE messages ADD COLUMN modseq INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE messages ADD COLUMN internal_zone INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE mailboxes ADD COLUMN expunge_floor INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE expunged (
         mailbox_id INTEGER NOT NULL,
         first_uid  INTEGER NOT NULL,
         last_uid   INTEGER NOT NULL,
         modseq     INTEGER NOT NULL,
         at         INTEGER NOT NULL,
         PRIMARY KEY (mailbox_id, first_uid)
     ) WITHOUT ROWID;
     CREATE TRIGGER messages_modseq_inserted AFTER INSERT ON messages WHEN NEW.modseq = 1
     BEGIN
         UPDATE messages SET modseq = (SELECT modseq FROM mailboxes WHERE id = NEW.mailbox_id)
             WHERE id = NEW.id;
     END;
     CREATE TRIGGER messages_modseq_flags AFTER UPDATE OF flags, keywords ON messages
         WHEN NEW.modseq = OLD.modseq
             AND (NEW.flags != OLD.flags OR NEW.keywords != OLD.keywords)
     BEGIN
         UPDATE messages SET modseq = (SELECT modseq + 1 FROM mailboxes WHERE id = NEW.mailbox_id)
             WHERE id = NEW.id;
     END;
     CREATE TRIGGER messages_expunged AFTER DELETE ON messages
     BEGIN
         UPDATE expunged SET last_uid = OLD.uid, at = unixepoch(),
                 modseq = (SELECT modseq + 1 FROM mailboxes WHERE id = OLD.mailbox_id)
             WHERE mailbox_id = OLD.mailbox_id
               AND first_uid = (SELECT first_uid FROM expunged
                                WHERE mailbox_id = OLD.mailbox_id AND first_uid < OLD.uid
                                ORDER BY first_uid DESC LIMIT 1)
               AND last_uid < OLD.uid
               AND NOT EXISTS (SELECT 1 FROM messages WHERE mailbox_id = OLD.mailbox_id
                               AND uid > expunged.last_uid AND uid < OLD.uid);
         INSERT INTO expunged (mailbox_id, first_uid, last_uid, modseq, at)
             SELECT OLD.mailbox_id, OLD.uid, OLD.uid, modseq + 1, unixepoch() FROM mailboxes
             WHERE id = OLD.mailbox_id
               AND NOT EXISTS (SELECT 1 FROM (SELECT last_uid FROM expunged
                                              WHERE mailbox_id = OLD.mailbox_id
                                                AND first_uid <= OLD.uid
                                              ORDER BY first_uid DESC LIMIT 1)
                               WHERE last_uid >= OLD.uid);
     END;
     CREATE TRIGGER expunged_aged AFTER INSERT ON expunged
         WHEN EXISTS (SELECT 1 FROM expunged WHERE mailbox_id = NEW.mailbox_id
                      AND at < NEW.at - 7776000)
     BEGIN
         UPDATE mailboxes SET expunge_floor = max(expunge_floor,
                 (SELECT max(modseq) FROM expunged WHERE mailbox_id = NEW.mailbox_id
                  AND at < NEW.at - 7776000))
             WHERE id = NEW.mailbox_id;
         DELETE FROM expunged WHERE mailbox_id = NEW.mailbox_id AND at < NEW.at - 7776000;
     END;
     CREATE TRIGGER expunged_bounded AFTER INSERT ON expunged
         WHEN (SELECT count(*) FROM expunged WHERE mailbox_id = NEW.mailbox_id) > 1000
     BEGIN
         UPDATE mailboxes SET expunge_floor = max(expunge_floor,
                 (SELECT min(modseq) FROM expunged WHERE mailbox_id = NEW.mailbox_id))
             WHERE id = NEW.mailbox_id;
         DELETE FROM expunged WHERE mailbox_id = NEW.mailbox_id
             AND first_uid = (SELECT first_uid FROM expunged WHERE mailbox_id = NEW.mailbox_id
                              ORDER BY modseq, first_uid LIMIT 1);
     END;
     CREATE TRIGGER mailboxes_expunged_gone AFTER DELETE ON mailboxes
     BEGIN
         DELETE FROM expunged WHERE mailbox_id = OLD.id;
     END;",
    // Version 9: campaign and step mail is sent at most once (issue 21.5). The newsletter
    // sender queues its mail with `at_most_once`; the delivery engine writes `began`
    // before an SMTP transaction for such a recipient starts, and every settlement clears
    // it. A recipient still `queued` with `began` set after a restart has an unknown
    // outcome (the remote may have answered 250 just before the process died), and is
    // counted as sent rather than sent again. Both columns are on the recipients: a column
    // added to `queue_messages` would come after `body`, and reading it would walk the
    // body's overflow pages on every scan of the queue.
    "ALTER TABLE queue_recipients ADD COLUMN at_most_once INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE queue_recipients ADD COLUMN began INTEGER NULL;",
    // Version 10: the global suppression list (issue 21): addresses that no campaign or
    // step mail goes to, whatever list they are on, because they bounced, complained (an
    // ARF report), asked to hear nothing more, or the operator said so. One row per
    // address, keyed by the address in lower case (`suppression_key`), so the table is as
    // big as the set of bad addresses and no bigger: it is not a per-delivery table and
    // needs no pruning. The key is the primary key so the senders' batch lookup
    // (`address IN (...)`) reads only the index.
    "CREATE TABLE nl_suppressions (
         address TEXT PRIMARY KEY,
         reason  TEXT NOT NULL
                     CHECK (reason IN ('bounced', 'complained', 'unsubscribed', 'manual')),
         at      INTEGER NOT NULL,
         note    TEXT NULL
     ) WITHOUT ROWID;",
    // Version 11: storage quotas (issue 20, RFC 9208). `accounts.quota` is the account's
    // own limit in bytes, `domains.default_quota` the limit of a domain's accounts without
    // one; NULL for none. `accounts.used` is the size of the account's live messages (the
    // sizes a client sees, so a blob shared by two copies counts twice, as every IMAP
    // server counts it). Triggers keep it, so no writer (delivery, APPEND, COPY, POP3,
    // retention, archiving) can forget to, and a delivery reads one row instead of
    // summing a mailbox. `quota_warned` is set once the owner was told the account is
    // nearly full, and cleared when it has room again, so the warning goes once per
    // filling.
    "ALTER TABLE accounts ADD COLUMN quota INTEGER NULL;
     ALTER TABLE accounts ADD COLUMN used INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE accounts ADD COLUMN quota_warned INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE domains ADD COLUMN default_quota INTEGER NULL;
     UPDATE accounts SET used = (SELECT coalesce(sum(m.size), 0)
                                 FROM mailboxes b JOIN messages m ON m.mailbox_id = b.id
                                 WHERE b.account_id = accounts.id);
     CREATE TRIGGER messages_used_insert AFTER INSERT ON messages
     BEGIN
         UPDATE accounts SET used = used + NEW.size
             WHERE id = (SELECT account_id FROM mailboxes WHERE id = NEW.mailbox_id);
     END;
     CREATE TRIGGER messages_used_delete AFTER DELETE ON messages
     BEGIN
         UPDATE accounts SET used = used - OLD.size
             WHERE id = (SELECT account_id FROM mailboxes WHERE id = OLD.mailbox_id);
     END;
     CREATE TRIGGER messages_used_update AFTER UPDATE OF mailbox_id, size ON messages
     BEGIN
         UPDATE accounts SET used = used - OLD.size
             WHERE id = (SELECT account_id FROM mailboxes WHERE id = OLD.mailbox_id);
         UPDATE accounts SET used = used + NEW.size
             WHERE id = (SELECT account_id FROM mailboxes WHERE id = NEW.mailbox_id);
     END;",
    // Version 12: segments and campaigns to several lists (issue 21). `segment` holds the
    // campaign's filter, one term per line (`store::Segment`), empty for the whole list;
    // it is small text read with the campaign, not an index of who matches, so it needs
    // no upkeep when subscribers change. `nl_campaign_lists` names the lists a campaign
    // goes to besides its `list_id`, in order (the order decides which subscriber row an
    // address on two lists is mailed and counted as). Removing such a list removes its
    // row here and nothing else: the campaign and its history stay with its first list.
    "ALTER TABLE nl_campaigns ADD COLUMN segment TEXT NOT NULL DEFAULT '';
     CREATE TABLE nl_campaign_lists (
         campaign_id INTEGER NOT NULL REFERENCES nl_campaigns(id) ON DELETE CASCADE,
         position    INTEGER NOT NULL,
         list_id     INTEGER NOT NULL REFERENCES nl_lists(id) ON DELETE CASCADE,
         PRIMARY KEY (campaign_id, position)
     ) WITHOUT ROWID;
     CREATE INDEX nl_campaign_lists_list ON nl_campaign_lists(list_id);",
    // Version 13: clicks per link that outlive the raw events, and steps that wait for an
    // event or branch on it (issue 21).
    //
    // `history_link_clicks` holds, per campaign or step, link and reader, how often that
    // reader clicked it: a row per reader who clicked, not per click, so the report's
    // clicks and clickers per link stay when raw events are pruned. Filled here from the
    // raw events still kept.
    //
    // A step's `condition` is empty (always sent) or one event term on an earlier step of
    // its sequence (`clicked:ID`, `not-opened:ID`, ...); `otherwise` says what a reader for
    // whom it does not hold gets: 'skip' (the step is passed over and the sequence goes
    // on) or 'wait' (the reader stays at this step until it holds).
    "CREATE TABLE history_link_clicks (
         kind       TEXT NOT NULL,
         ref        INTEGER NOT NULL,
         url        TEXT NOT NULL,
         subscriber INTEGER NOT NULL,
         clicks     INTEGER NOT NULL,
         PRIMARY KEY (kind, ref, url, subscriber)
     ) WITHOUT ROWID;
     INSERT INTO history_link_clicks (kind, ref, url, subscriber, clicks)
         SELECT kind, ref, detail, subscriber, count(*) FROM history_events
         WHERE event = 'click' AND kind IS NOT NULL AND ref IS NOT NULL
           AND subscriber IS NOT NULL AND detail IS NOT NULL
         GROUP BY kind, ref, detail, subscriber;
     ALTER TABLE nl_steps ADD COLUMN condition TEXT NOT NULL DEFAULT '';
     ALTER TABLE nl_steps ADD COLUMN otherwise TEXT NOT NULL DEFAULT 'skip'
         CHECK (otherwise IN ('skip', 'wait'));",
];

/// The schema version this build writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

pub fn version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Brings the database up to [`CURRENT`], one transaction per step.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, CURRENT)?;
    complete_version_6(conn)
}

/// Version 6 first shipped (commit 12359e1) without `nl_sequences.existing_upto`, which
/// dc8a047 then added to that same step; a database made in between says version 6 and
/// lacks it, and every `sequence create` on it failed. The column is added here, set so
/// that those sequences keep the rule they were made under: an existing subscriber is
/// known by start time alone.
fn complete_version_6(conn: &mut Connection) -> Result<()> {
    let incomplete: bool = conn.query_row(
        "SELECT (SELECT count(*) FROM pragma_table_info('nl_sequences')) > 0
            AND (SELECT count(*) FROM pragma_table_info('nl_sequences')
                 WHERE name = 'existing_upto') = 0",
        [],
        |r| r.get(0),
    )?;
    if !incomplete {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "ALTER TABLE nl_sequences ADD COLUMN existing_upto INTEGER NOT NULL DEFAULT 0;
         UPDATE nl_sequences SET existing_upto = 9223372036854775807;",
    )?;
    tx.commit()?;
    tracing::info!("database schema 6 completed: nl_sequences.existing_upto added");
    Ok(())
}

/// The SQL of the step that makes a database version `version`; tests read it to break
/// that step on purpose.
#[cfg(test)]
pub(crate) fn migration(version: i64) -> Option<&'static str> {
    let index = usize::try_from(version).ok()?.checked_sub(1)?;
    MIGRATIONS.get(index).copied()
}

/// Brings the database up to `target` (at most [`CURRENT`]); tests use it to build the
/// databases that earlier releases left behind.
pub(crate) fn migrate_to(conn: &mut Connection, target: i64) -> Result<()> {
    let target = target.min(CURRENT);
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found = version(&tx)?;
        if found > CURRENT {
            return Err(StoreError::SchemaTooNew {
                found,
                known: CURRENT,
            });
        }
        if found >= target {
            return Ok(());
        }
        tx.execute_batch(MIGRATIONS[found as usize])?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
        tracing::info!(from = found, to = found + 1, "migrated database schema");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_database_and_refuses_a_newer_one() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), CURRENT);
        migrate(&mut conn).unwrap();

        conn.pragma_update(None, "user_version", CURRENT + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer than this tegami"));
    }

    #[test]
    fn a_version_6_database_from_before_existing_upto_is_completed() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 5).unwrap();
        // Version 6 as commit 12359e1 wrote it.
        let first = migration(6)
            .unwrap()
            .replace("existing_upto INTEGER NOT NULL DEFAULT 0,", "");
        conn.execute_batch(&first).unwrap();
        conn.pragma_update(None, "user_version", 6).unwrap();
        conn.execute_batch(
            "INSERT INTO nl_lists VALUES (1, 'news', 'n@example.com', '', 0, 0);
             INSERT INTO nl_sequences (id, list_id, name, time_zone, join_existing, created)
                 VALUES (1, 1, 'welcome', 'UTC', 1, 100);",
        )
        .unwrap();

        migrate(&mut conn).unwrap();
        let upto: i64 = conn
            .query_row(
                "SELECT existing_upto FROM nl_sequences WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(upto, i64::MAX, "the old sequence keeps the time-only rule");
        conn.execute(
            "INSERT INTO nl_sequences (list_id, name, time_zone, join_existing, created, existing_upto)
             VALUES (1, 'second', 'UTC', 0, 200, 0)",
            [],
        )
        .unwrap();
        // Complete now: the next open changes nothing.
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), CURRENT);
    }

    #[test]
    fn a_version_1_database_keeps_its_mail_and_gains_the_imap_mailboxes() {
        use crate::prelude::*;
        use crate::{AccountId, BlobStore, CheckOptions, Flags, SpecialUse, SqliteStore};

        let dir = tempfile::tempdir().unwrap();
        let message = b"Subject: old\r\n\r\nfrom before IMAP\r\n";
        let blob = BlobStore::open(dir.path().join("blobs"))
            .unwrap()
            .put(message)
            .unwrap();
        {
            let mut conn = Connection::open(dir.path().join("tegami.db")).unwrap();
            migrate_to(&mut conn, 1).unwrap();
            assert_eq!(version(&conn).unwrap(), 1);
            conn.execute_batch(
                "INSERT INTO domains (id, name, created) VALUES (1, 'example.com', 0);
                 INSERT INTO accounts (id, address, domain_id, password_hash, created)
                     VALUES (1, 'alice@example.com', 1, 'not a hash', 0);
                 INSERT INTO mailboxes (id, account_id, name, uidvalidity, uidnext)
                     VALUES (1, 1, 'INBOX', 1000, 8);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO blobs (hash, size, refcount) VALUES (?1, ?2, 1)",
                rusqlite::params![&blob.0[..], message.len()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO messages (mailbox_id, uid, internal_date, size, flags, blob_hash)
                 VALUES (1, 7, 1234, ?1, ?2, ?3)",
                rusqlite::params![message.len(), Flags::SEEN, &blob.0[..]],
            )
            .unwrap();
        }

        let store = SqliteStore::open(dir.path()).unwrap();
        let conn = Connection::open(store.db_path()).unwrap();
        assert_eq!(version(&conn).unwrap(), CURRENT);
        let alice = AccountId(1);
        let inbox = store.mailbox(alice, "INBOX").unwrap();
        assert_eq!(
            (inbox.uid_validity, inbox.uid_next, inbox.special_use),
            (1000, 8, None)
        );
        let messages = store.messages(inbox.id).unwrap();
        assert_eq!(messages.len(), 1);
        let old = &messages[0];
        assert_eq!(
            (old.uid, old.internal_date, old.flags),
            (7, 1234, Flags(Flags::SEEN))
        );
        assert!(old.keywords.is_empty());
        assert_eq!(store.read_blob(&old.blob).unwrap(), message);
        // No IMAP session has seen it yet.
        let counts = store.mailbox_counts(inbox.id).unwrap();
        assert_eq!((counts.messages, counts.unseen, counts.recent), (1, 0, 1));

        let mailboxes = store.mailboxes(alice).unwrap();
        assert_eq!(mailboxes.len(), 1 + SpecialUse::ALL.len());
        for role in SpecialUse::ALL {
            let mailbox = store.mailbox(alice, role.name()).unwrap();
            assert_eq!(mailbox.special_use, Some(role));
            assert_eq!(mailbox.uid_next, 1);
            assert!(mailbox.uid_validity > 1000);
        }
        let mut expected: Vec<_> = SpecialUse::ALL.iter().map(|r| r.name()).collect();
        expected.push("INBOX");
        expected.sort();
        assert_eq!(store.subscriptions(alice).unwrap(), expected);

        // What comes after the migration builds on it.
        let created = store.create_mailbox(alice, "New").unwrap();
        assert!(created.uid_validity > mailboxes[0].uid_validity);
        store.deliver(b"after\r\n", &[alice]).unwrap();
        assert_eq!(store.mailbox(alice, "INBOX").unwrap().uid_next, 9);
        let report = store.check(&CheckOptions::default()).unwrap();
        assert!(report.is_healthy(), "{report}");
        assert_eq!(report.messages, 2);
    }
}
