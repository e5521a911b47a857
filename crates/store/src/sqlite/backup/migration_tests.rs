//! Safe upgrades: a store made by every earlier schema version migrates on open after a
//! backup, and a migration that fails leaves the old data as it was.

use crate::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::sqlite::{Open, open_connection, schema};
use crate::{BlobStore, SqliteStore};

/// A data directory as release `version` left it: one account with one message.
fn store_at_version(dir: &Path, version: i64) -> Vec<u8> {
    fs::create_dir_all(dir).unwrap();
    let mut conn = open_connection(&dir.join("tegami.db"), Open::New).unwrap();
    schema::migrate_to(&mut conn, version).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), version);
    let body = format!("Subject: made by schema version {version}\r\n\r\nhello\r\n").into_bytes();
    let blob = BlobStore::open(dir.join("blobs"))
        .unwrap()
        .put(&body)
        .unwrap();
    // Versions 1 to 3 kept bodies two levels deep (blobs/ab/cd/<hash>) until commit 2d71e23.
    if version <= 3 {
        let hex = blob.to_string();
        let old = dir.join("blobs").join(&hex[0..2]).join(&hex[2..4]);
        fs::create_dir_all(&old).unwrap();
        fs::rename(dir.join("blobs").join(blob.relative_path()), old.join(&hex)).unwrap();
    }
    // Only the version-1 columns: every later version keeps them.
    conn.execute_batch(
        "INSERT INTO domains (id, name, created) VALUES (1, 'example.com', 0);
         INSERT INTO accounts (id, address, domain_id, password_hash, created)
             VALUES (1, 'old@example.com', 1, 'x', 0);
         INSERT INTO mailboxes (id, account_id, name, uidvalidity, uidnext)
             VALUES (1, 1, 'INBOX', 7, 2);",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO blobs (hash, size, refcount) VALUES (?1, ?2, 1)",
        params![&blob.0[..], body.len()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO messages (mailbox_id, uid, internal_date, size, blob_hash)
         VALUES (1, 1, 0, ?1, ?2)",
        params![body.len(), &blob.0[..]],
    )
    .unwrap();
    body
}

fn pre_migration_backups(data: &Path) -> Vec<PathBuf> {
    let root = data.join("backups");
    let Ok(entries) = fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pre-migration-"))
        })
        .collect();
    found.sort();
    found
}

fn only_message(store: &SqliteStore) -> Vec<u8> {
    let account = store.accounts().unwrap()[0].id;
    let inbox = store.mailbox(account, "INBOX").unwrap();
    let messages = store.messages(inbox.id).unwrap();
    assert_eq!(messages.len(), 1);
    store.read_blob(&messages[0].blob).unwrap()
}

#[test]
fn every_earlier_schema_version_migrates_after_a_backup() {
    const { assert!(schema::CURRENT >= 2, "no earlier version to migrate from") };
    for version in 1..schema::CURRENT {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let body = store_at_version(&data, version);

        let store = SqliteStore::open(&data).unwrap();
        let found = store.read(schema::version).unwrap();
        assert_eq!(found, schema::CURRENT, "from version {version}");
        assert_eq!(only_message(&store), body, "from version {version}");
        drop(store);

        let backups = pre_migration_backups(&data);
        assert_eq!(backups.len(), 1, "from version {version}: {backups:?}");
        let name = backups[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(&format!("pre-migration-{version}-to-{}-", schema::CURRENT)),
            "{name}"
        );
        let verified = super::verify(&backups[0], None).unwrap();
        assert!(verified.is_ok(), "{:?}", verified.problems);
        let manifest = verified.manifest.unwrap();
        assert_eq!(manifest.schema_version, version);
        assert_eq!(manifest.trigger, super::Trigger::PreMigration);
        assert_eq!(manifest.messages, 1);
        let kept = backups[0]
            .join("blobs")
            .join(crate::BlobId::of(&body).relative_path());
        assert_eq!(fs::read(&kept).unwrap(), body, "from version {version}");

        // The backup is the old store: restored, it holds the old version, and opening it
        // migrates it again.
        let restored = dir.path().join("restored");
        super::restore(
            &backups[0],
            &restored,
            &super::RestoreOptions {
                owner: None,
                now_unix: 0,
                progress: None,
            },
        )
        .unwrap();
        let conn = Connection::open(restored.join("tegami.db")).unwrap();
        assert_eq!(schema::version(&conn).unwrap(), version);
        drop(conn);
        assert_eq!(only_message(&SqliteStore::open(&restored).unwrap()), body);

        // Up to date: the next open takes no backup.
        drop(SqliteStore::open(&data).unwrap());
        assert_eq!(pre_migration_backups(&data).len(), 1);
    }
}

#[test]
fn a_failing_migration_leaves_the_old_data_as_it_was() {
    // Break the newest step that creates a table by creating that table first; a step of
    // several statements that fails half-way must leave nothing of its first half.
    let (target, table) = (1..=schema::CURRENT)
        .rev()
        .find_map(|v| {
            let sql = schema::migration(v)?;
            let last = sql
                .rsplit("CREATE TABLE ")
                .next()
                .filter(|_| sql.contains("CREATE TABLE "))?;
            let name: String = last
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            Some((v, name))
        })
        .expect("some migration creates a table");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let from = target - 1;
    let body = (from > 0).then(|| store_at_version(&data, from));
    if from == 0 {
        fs::create_dir_all(&data).unwrap();
    }
    let conn = Connection::open(data.join("tegami.db")).unwrap();
    conn.execute_batch(&format!("CREATE TABLE {table} (in_the_way INTEGER)"))
        .unwrap();
    let schema_before: Vec<String> = conn
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    drop(conn);

    let err = match SqliteStore::open(&data) {
        Err(e) => e,
        Ok(_) => panic!("the broken migration to version {target} succeeded"),
    };
    assert!(err.to_string().contains(&table), "{err}");

    let conn = Connection::open(data.join("tegami.db")).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), from);
    let schema_after: Vec<String> = conn
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        schema_after, schema_before,
        "the failed step left changes behind"
    );
    drop(conn);
    if let Some(body) = body {
        let backups = pre_migration_backups(&data);
        assert_eq!(backups.len(), 1, "{backups:?}");
        assert!(super::verify(&backups[0], None).unwrap().is_ok());
        let blob = crate::BlobId::of(&body);
        assert_eq!(
            fs::read(BlobStore::open(data.join("blobs")).unwrap().path(&blob)).unwrap(),
            body
        );
    }
}
