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
];

/// The schema version this build writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

pub fn version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Brings the database up to [`CURRENT`], one transaction per step.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found = version(&tx)?;
        if found > CURRENT {
            return Err(StoreError::SchemaTooNew {
                found,
                known: CURRENT,
            });
        }
        if found == CURRENT {
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
}
